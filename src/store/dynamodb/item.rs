//! Attribute values and SDK errors: building and reading the items'
//! attributes, the old item of a failed conditional write, and the one
//! mapping of an SDK error to a store error.
//!
//! This module must never put a key value, owner token, service message or
//! credential into an error.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::store::StoreError;

/// One item's attributes.
pub(super) type Item = HashMap<String, AttributeValue>;

/// The old item of a `PutItem` whose condition failed (`Some(None)` when
/// the server returned none); `None` for every other error.
pub(super) fn condition_failed_put<R>(err: &SdkError<PutItemError, R>) -> Option<Option<Item>> {
    match err {
        SdkError::ServiceError(ctx) => match ctx.err() {
            PutItemError::ConditionalCheckFailedException(e) => Some(e.item().cloned()),
            _ => None,
        },
        _ => None,
    }
}

/// Turn an SDK error into `Unavailable` with a short description: the
/// operation and the kind of failure (or the service's error code), never
/// the service's message, a key value or a credential.
pub(super) fn unavailable<E: ProvideErrorMetadata, R>(
    op: &str,
    err: &SdkError<E, R>,
) -> StoreError {
    let what = match err {
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "timed out".to_owned(),
        SdkError::DispatchFailure(failure) if failure.is_io() => "connection failed".to_owned(),
        SdkError::DispatchFailure(_) => "request not sent".to_owned(),
        SdkError::ConstructionFailure(_) => {
            "request could not be built (credentials or settings)".to_owned()
        }
        SdkError::ResponseError(_) => "unreadable response".to_owned(),
        SdkError::ServiceError(ctx) => {
            format!("service error {}", ctx.err().code().unwrap_or("(no code)"))
        }
        _ => "unexpected SDK error".to_owned(),
    };
    StoreError::Unavailable(format!("dynamodb {op}: {what}"))
}

pub(super) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub(super) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn b(value: Vec<u8>) -> AttributeValue {
    AttributeValue::B(Blob::new(value))
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

pub(super) fn get_n(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

pub(super) fn get_b<'a>(item: &'a Item, name: &str) -> Option<&'a [u8]> {
    match item.get(name) {
        Some(AttributeValue::B(value)) => Some(value.as_ref()),
        _ => None,
    }
}

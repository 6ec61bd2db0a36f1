//! Attribute values and SDK errors: building and reading the items'
//! attributes, the old item of a failed conditional write, the size of a
//! completed item, and the one mapping of an SDK error to a store error
//! (outage or invalid call).
//!
//! This module must never put a key value, owner token, service message or
//! credential into an error.

use std::collections::HashMap;

use aws_sdk_dynamodb::config::http::HttpResponse;
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

/// DynamoDB's item size limit, in bytes as DynamoDB counts them (attribute
/// names plus values).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// The largest `max_response_bytes` a route may have on the DynamoDB store:
/// the item limit less 16 KiB for the answer's headers and the record's
/// other attributes. `check` refuses more; an answer whose item would
/// still not fit is recorded without its body (see [`completed_item_bytes`]).
pub const MAX_RESPONSE_BYTES: usize = MAX_ITEM_BYTES - 16 * 1024;

/// Allowance for the attributes of a completed record other than `pk`,
/// `owner`, the headers and the body: every attribute name, `status`, a
/// 64-digit fingerprint and each number at DynamoDB's largest (21 bytes).
const FIXED_ATTRIBUTE_BYTES: usize = 512;

/// An upper bound on the size of a completed idempotency item holding
/// `headers` and `body`, as DynamoDB counts it.
pub(super) fn completed_item_bytes(pk: &str, owner: &str, headers: usize, body: usize) -> usize {
    FIXED_ATTRIBUTE_BYTES + pk.len() + owner.len() + headers + body
}

/// Error codes of a throttled or transiently failing call (the AWS SDK's
/// own retry lists, plus DynamoDB's 5xx codes): an outage, not our bug.
const OUTAGE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "PriorRequestNotComplete",
    "RequestTimeout",
    "RequestTimeoutException",
    "ReplicatedWriteConflictException",
    "InternalServerError",
    "ServiceUnavailable",
];

/// Whether a service's answer (HTTP status, error code) is an outage:
/// 5xx, 429, or a throttling / transient code. Every other answer — a
/// `ValidationException`, any other 4xx — is a call the store refuses.
pub(super) fn is_outage(status: u16, code: Option<&str>) -> bool {
    status >= 500 || status == 429 || code.is_some_and(|code| OUTAGE_CODES.contains(&code))
}

/// Turn an SDK error into a store error with a short description: the
/// operation and the kind of failure (or the service's error code), never
/// the service's message, a key value or a credential. Timeouts,
/// connection and dispatch failures, unreadable answers and
/// [`is_outage`] answers are `Unavailable`; every other service error is
/// `Invalid` (never failed open).
pub(super) fn store_error<E: ProvideErrorMetadata>(
    op: &str,
    err: &SdkError<E, HttpResponse>,
) -> StoreError {
    let what = match err {
        SdkError::TimeoutError(_) => "timed out",
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "timed out",
        SdkError::DispatchFailure(failure) if failure.is_io() => "connection failed",
        SdkError::DispatchFailure(_) => "request not sent",
        SdkError::ConstructionFailure(_) => "request could not be built (credentials or settings)",
        SdkError::ResponseError(_) => "unreadable response",
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code();
            let what = format!(
                "service error {} (HTTP {status})",
                code.unwrap_or("(no code)")
            );
            return if is_outage(status, code) {
                StoreError::Unavailable(format!("dynamodb {op}: {what}"))
            } else {
                StoreError::Invalid(format!("dynamodb {op}: {what}"))
            };
        }
        _ => "unexpected SDK error",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_allowed_answer_fits_one_item() {
        let pk = format!("idem#{}", "0".repeat(32));
        let owner = "0".repeat(32);
        let headers = 16 * 1024 - FIXED_ATTRIBUTE_BYTES - pk.len() - owner.len();
        let size = completed_item_bytes(&pk, &owner, headers, MAX_RESPONSE_BYTES);
        assert_eq!(size, MAX_ITEM_BYTES);
    }

    #[test]
    fn only_5xx_429_and_throttling_codes_are_outages() {
        assert!(is_outage(500, Some("InternalServerError")));
        assert!(is_outage(503, None));
        assert!(is_outage(429, None));
        assert!(is_outage(400, Some("ThrottlingException")));
        assert!(is_outage(
            400,
            Some("ProvisionedThroughputExceededException")
        ));
        assert!(is_outage(400, Some("RequestLimitExceeded")));
        assert!(!is_outage(400, Some("ValidationException")));
        assert!(!is_outage(400, Some("SerializationException")));
        assert!(!is_outage(400, Some("ResourceNotFoundException")));
        assert!(!is_outage(400, Some("AccessDeniedException")));
        assert!(!is_outage(413, None));
    }
}

//! The checks of the request path, one module each, cheapest first:
//! [`rate_limit`] → [`freshness`] → [`signature`] (scheme `v1`) or
//! [`rfc9421`] → [`nonce`] → [`idempotency`].
//!
//! Each check is whole in its module: it reads its own headers, builds its
//! own store keys, calls the store (through [`StoreAccess`]), applies
//! `on_error` and turns every outcome into a typed
//! [`Rejection`]. Each has one entry point
//! whose inputs (store, clock, rule, headers) are passed in, so it can be
//! unit-tested against the memory store and a manual clock without a
//! proxy. None of them builds an HTTP response, forwards anything or knows
//! about report mode.

pub mod freshness;
pub mod idempotency;
pub mod nonce;
pub mod rate_limit;
pub mod rfc9421;
pub mod signature;

use http::header::HeaderName;
use http::HeaderMap;

use crate::clock::Clock;
use crate::config::OnStoreError;
use crate::metrics::Metrics;
use crate::rejection::Rejection;
use crate::store::{Store, StoreError};

/// A header's value as text when present and non-empty (after trimming).
/// Non-UTF-8 or repeated headers count as present but unreadable: `Err(())`.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Result<&'a str, ()>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Err(()));
    }
    match first.to_str() {
        Ok(text) if text.trim().is_empty() => None,
        Ok(text) => Some(Ok(text.trim())),
        Err(_) => Some(Err(())),
    }
}

/// What a check that writes to the store needs: the store, the clock the
/// conditions are decided on, and what to do when the store fails.
#[derive(Debug, Clone, Copy)]
pub struct StoreAccess<'a> {
    /// Replay state.
    pub store: &'a dyn Store,
    /// The proxy's clock (`:now` in every condition).
    pub clock: &'a dyn Clock,
    /// `[store] on_error`.
    pub on_error: OnStoreError,
    /// Where a fail-open is counted.
    pub metrics: &'a Metrics,
    /// The route's name, for the fail-open count and the log line.
    pub route: &'a str,
}

impl StoreAccess<'_> {
    /// Apply `on_error` to a failed store call: fail closed with a
    /// rejection, or fail open (`Ok`, counted and logged). A full memory
    /// store and a write the store refuses are never failed open.
    pub fn failed(&self, error: StoreError, op: &str) -> Result<(), Rejection> {
        let route = self.route;
        match (self.on_error, &error) {
            (OnStoreError::Allow, StoreError::Unavailable(_)) => {
                self.metrics.fail_open(route);
                tracing::warn!(route, op, error = %error, "store failed; forwarding unchecked (on_error = \"allow\")");
                Ok(())
            }
            (_, StoreError::Full) => Err(Rejection::StoreFull),
            _ => {
                tracing::warn!(route, op, error = %error, "store failed; refusing (on_error = \"reject\")");
                Err(Rejection::StoreUnavailable)
            }
        }
    }
}

/// A random token identifying one claim attempt (the `owner` of a record).
pub fn owner_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What the checks' unit tests run against: the memory store, a manual
/// clock at 2025-11-28T10:40:00Z and fresh metrics, failing closed.
#[cfg(test)]
pub(crate) struct Fixture {
    pub clock: std::sync::Arc<crate::clock::ManualClock>,
    pub store: crate::store::memory::MemoryStore,
    pub metrics: Metrics,
}

#[cfg(test)]
impl Fixture {
    pub fn new() -> Self {
        Self {
            clock: crate::clock::ManualClock::at_secs(1_764_326_400),
            store: crate::store::memory::MemoryStore::new(100),
            metrics: Metrics::new(),
        }
    }

    pub fn access(&self) -> StoreAccess<'_> {
        StoreAccess {
            store: &self.store,
            clock: self.clock.as_ref(),
            on_error: OnStoreError::Reject,
            metrics: &self.metrics,
            route: "r",
        }
    }
}

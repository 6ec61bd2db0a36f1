//! The checks of the request path, one module each, cheapest first:
//! [`rate_limit`] → [`freshness`] → [`signature`] → [`nonce`] →
//! [`idempotency`]. Each exposes one entry point that returns a typed
//! [`Rejection`](crate::rejection::Rejection); none of them builds an HTTP
//! response or forwards anything.

pub mod freshness;
pub mod idempotency;
pub mod nonce;
pub mod rate_limit;
pub mod signature;

use http::header::HeaderName;
use http::HeaderMap;

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

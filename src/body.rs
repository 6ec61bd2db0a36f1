//! One body type for everything the proxy sends or forwards.
//!
//! Streaming bodies (pass-through routes) and buffered ones (protected
//! routes, rejections) share [`Body`], so handlers have one signature.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};

/// Boxed error for body streams.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The proxy's body type.
pub type Body = BoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Any streaming body (a client's request, an upstream's answer) as a
/// [`Body`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed()
}

/// A body from bytes in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

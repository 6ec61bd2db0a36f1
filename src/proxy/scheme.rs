//! The signature step of the checks phase, dispatched on the route's
//! scheme: `v1` ([`crate::checks::signature`]) or `rfc9421`
//! ([`crate::checks::rfc9421`]). Either way it hands the nonce step what it
//! needs: the verified key, the instant the nonce's retention is measured
//! from (the timestamp header for `v1`, the signed `created` for RFC 9421)
//! and where the nonce is read (the header, or the signed `nonce`).
//!
//! This step must never write to the store, and never let an RFC 9421
//! route fall back to the timestamp or nonce headers.

use http::request::Parts;

use super::ctx::RequestCtx;
use super::{Proxy, RouteState};
use crate::checks::freshness::Fresh;
use crate::checks::{rfc9421, signature, Content};
use crate::config::SignatureScheme;
use crate::rejection::Rejection;

/// Where the route's nonce comes from.
pub(super) enum NonceSource {
    /// The nonce header (scheme `v1`).
    Header,
    /// The signature's `nonce` parameter (RFC 9421), if it had one.
    Signed(Option<String>),
}

/// What the signature step established.
pub(super) struct Signed<'k> {
    /// The verified key id, if a signature was verified.
    pub(super) key: Option<&'k str>,
    /// The request's verified instant, for the nonce's retention.
    pub(super) fresh: Option<Fresh>,
    /// Where the nonce is read.
    pub(super) nonce: NonceSource,
}

impl Proxy {
    /// Verify the route's signature, whatever its scheme. `fresh` is what
    /// the head checks read from the timestamp header (never set on an
    /// RFC 9421 route, whose freshness is the signed `created`).
    pub(super) fn signature_step(
        &self,
        route: &RouteState,
        parts: &Parts,
        body: &Content<'_>,
        fresh: Option<Fresh>,
        ctx: &RequestCtx,
    ) -> Result<Signed<'_>, Rejection> {
        let rule = &route.rule;
        let path = ctx.target.path();
        let SignatureScheme::Rfc9421(scheme) = &rule.scheme else {
            let key = signature::check(&self.config.keys, rule, parts, path, body)?;
            return Ok(Signed {
                key,
                fresh,
                nonce: NonceSource::Header,
            });
        };
        // The route's fences guard its nonces, as for a timestamp header.
        let fences = if rule.nonce.is_some() {
            &route.fences[..]
        } else {
            &[]
        };
        let now = rfc9421::Now {
            clock: self.clock.as_ref(),
            fences,
        };
        let request = rfc9421::Request {
            parts,
            path,
            body,
            https: ctx.peer.https,
        };
        Ok(
            match rfc9421::check(&self.config.keys, rule, scheme, &request, now)? {
                Some(verified) => Signed {
                    key: Some(verified.key_id),
                    fresh: Some(verified.fresh),
                    nonce: NonceSource::Signed(verified.nonce),
                },
                None => Signed {
                    key: None,
                    fresh: None,
                    nonce: NonceSource::Signed(None),
                },
            },
        )
    }
}

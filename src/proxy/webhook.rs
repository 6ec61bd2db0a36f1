//! The checks phase of a webhook route: the provider's own signature,
//! timestamp and delivery id ([`crate::checks::webhook`]) instead of
//! freshness, signature and nonce; what it hands back is the idempotency
//! step of the delivery id's claim, so forwarding, recording and replaying
//! are the idempotency path's own.
//!
//! This step must never forward or answer, and never fall back to the
//! route's replay headers.

use bytes::Bytes;
use http::request::Parts;

use super::ctx::RequestCtx;
use super::{Proxy, RouteState};
use crate::checks::idempotency::Step;
use crate::checks::webhook::{self, Delivery};
use crate::config::Webhook;
use crate::rejection::Rejection;

impl Proxy {
    /// Verify a delivery and claim its id.
    pub(super) async fn webhook_checks(
        &self,
        route: &RouteState,
        hook: &Webhook,
        parts: &Parts,
        body: &Bytes,
        ctx: &RequestCtx,
    ) -> Result<Step, Rejection> {
        let access = self.store_access(&route.rule.name, ctx.request_id());
        let delivery = Delivery {
            headers: &parts.headers,
            method: &parts.method,
            path: ctx.target.path(),
            body,
        };
        webhook::check(&access, hook, delivery).await
    }
}

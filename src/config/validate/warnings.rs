//! Warnings: configurations that are valid but almost certainly not what
//! the operator meant. `check` prints them and `run` logs them at startup;
//! they never refuse a file.
//!
//! This module must never turn a warning into an error, and never name a
//! secret: it only looks at routes and the unmatched policy.

use std::ops::Range;

use super::Problems;
use crate::config::{Identity, Route, Server, Unmatched};

/// Where a route's keys are written, for the warnings' positions.
#[derive(Debug, Clone)]
pub(super) struct RouteSpans {
    /// The whole `[[routes]]` table.
    pub(super) whole: Range<usize>,
    /// The first entry of `methods`.
    pub(super) methods: Option<Range<usize>>,
    /// `identity`'s value.
    pub(super) identity: Option<Range<usize>>,
    /// The `idempotency` table.
    pub(super) idempotency: Option<Range<usize>>,
}

/// Every warning of a valid route table (`spans[i]` belongs to `routes[i]`).
pub(super) fn check(server: &Server, routes: &[Route], spans: &[RouteSpans], p: &mut Problems<'_>) {
    for (i, (route, at)) in routes.iter().zip(spans).enumerate() {
        unchecked_methods(server, route, i, routes, at, p);
        if let Identity::Header(name) = &route.identity {
            if route.signature != Some(true) {
                p.warn_at(
                    at.identity.clone().unwrap_or_else(|| at.whole.clone()),
                    format!(
                        "route {:?}: identity = \"header:{name}\" without a required signature: any client can send any {name}, so a fresh value is a fresh rate-limit budget and nonce scope; add signature = {{ required = true }} (identity then scopes only the rate limit) or use identity = \"client_ip\"",
                        route.name
                    ),
                );
            }
        }
        if route.signature == Some(true) && route.idempotency.is_some() && route.nonce != Some(true)
        {
            p.warn_at(
                at.idempotency.clone().unwrap_or_else(|| at.whole.clone()),
                format!(
                    "route {:?}: idempotency on a signed route without a nonce: a captured request replayed with another Idempotency-Key (or after the record's ttl) executes again; add nonce = {{ required = true }}",
                    route.name
                ),
            );
        }
    }
}

/// A protected route that lists methods while unmatched requests are
/// forwarded: the path's other methods reach the upstream unchecked
/// unless another route (listed anywhere) takes them.
fn unchecked_methods(
    server: &Server,
    route: &Route,
    index: usize,
    routes: &[Route],
    at: &RouteSpans,
    p: &mut Problems<'_>,
) {
    let Some(methods) = &route.methods else {
        return;
    };
    // Replay protections only: a rate limit alone throttles, it does not
    // protect a path whose other methods would then be the way around it.
    let protects = route.freshness.is_some()
        || route.nonce.is_some()
        || route.signature.is_some()
        || route.idempotency.is_some();
    if server.unmatched != Unmatched::Forward || !protects {
        return;
    }
    let path = route.path.to_string();
    let covered = routes
        .iter()
        .enumerate()
        .any(|(j, other)| j != index && other.methods.is_none() && other.path.to_string() == path);
    if covered {
        return;
    }
    let listed: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
    p.warn_at(
        at.methods.clone().unwrap_or_else(|| at.whole.clone()),
        format!(
            "route {:?} checks only {} on {path}, and with [server] unmatched = \"forward\" every other method on {path} (PUT, PATCH, DELETE, …) goes upstream unchecked; set unmatched = \"reject\", or add a route for {path} without methods",
            route.name,
            listed.join(", ")
        ),
    );
}

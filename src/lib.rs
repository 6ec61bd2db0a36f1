//! # replay-guard
//!
//! A reverse-proxy sidecar that stops replay attacks in front of HTTP APIs
//! that cannot be changed. It forwards only requests that are fresh, signed
//! where required, never seen before and within their rate.
//!
//! ## Layout
//!
//! - [`config`]: raw TOML → validated, typed [`config::Config`]; every
//!   problem reported with `file:line:col`.
//! - [`routes`] and [`path`]: the ordered route table, matched on the
//!   normalised path so no spelling bypasses a route.
//! - [`checks`]: one module per check — [`checks::rate_limit`],
//!   [`checks::freshness`], [`checks::signature`], [`checks::nonce`],
//!   [`checks::idempotency`] — each returning a typed rejection.
//! - [`rejection`]: the rejection enum and its one HTTP mapping
//!   (problem+json with a stable `reason`).
//! - [`proxy`]: the request path, top to bottom, and the idempotent
//!   response recording.
//! - [`forward`]: header hygiene both ways; [`upstream`]: the pooled
//!   keep-alive connections to the upstream and their timeouts.
//! - [`store`]: the narrow store trait; [`store::memory`] (single
//!   instance) and [`store::dynamodb`] (shared by replicas).
//! - [`server`]: listeners, admin endpoints, connection cap, graceful
//!   shutdown. [`server::start`] is what the binary and the tests call;
//!   [`tls`] loads the optional TLS listener.
//! - [`metrics`], [`clock`], [`identity`], [`body`]: support;
//!   [`log_output`]: the log writer that never blocks or fails a request.
//! - [`client`]: signing helpers used by the binary's `sign`, `demo` and
//!   `loadgen` subcommands (which live in the binary crate, `src/cli/`,
//!   not in this library).
//!
//! ## The request path
//!
//! The one chart of it (README and docs link here). Each phase is one call
//! in [`proxy`]'s sequencing function, over one per-request context; the
//! first refusal answers and nothing is forwarded.
//!
//! ```text
//! framing        both framings, several Host headers, overlong target,
//!                ambiguous path → 400/414; normalise the path
//! route          first route whose methods and normalised path match;
//!                unmatched → forward, or 404 (unmatched = "reject");
//!                a route with no rules streams straight to forward
//! head checks    rate limit (identity known before parsing: client_ip,
//!                header:) → declared size (413) → freshness
//! body           read whole, capped at max_body_bytes, timed
//! signature      v1 HMAC over method, host, path, query, timestamp,
//!                nonce, body hash → rate limit for identity = "key_id"
//! nonce          claimed in the store for the scope (first store write)
//! idempotency    claim / replay stored answer / in flight / reused
//! report mode    a refused check on a report-mode route is forwarded
//!                anyway, named in X-Replay-Guard-Report
//! forward        normalised path, hop-by-hop hygiene, X-Forwarded-*;
//!                a claimed request runs on its own task → record the
//!                answer (or release the claim)
//! respond        problem+json for a refusal; request id, RateLimit
//!                headers; counted and logged once
//! ```
//!
//! Stateless checks run before anything that writes to the store, so
//! forged, stale or throttled requests never cost a store write.

pub mod body;
pub mod checks;
pub mod client;
pub mod clock;
pub mod config;
pub mod forward;
pub mod identity;
pub mod log_output;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod rejection;
pub mod routes;
pub mod server;
pub mod store;
pub mod tls;
pub mod upstream;

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
//! - [`metrics`], [`clock`], [`identity`], [`body`]: support.
//! - [`client`]: signing helpers used by the binary's `sign`, `demo` and
//!   `loadgen` subcommands (which live in the binary crate, `src/cli/`,
//!   not in this library).
//!
//! ## The request path
//!
//! ```text
//! framing → normalise → route → rate limit → freshness → body (capped)
//!   → signature → nonce (store) → idempotency (store) → forward → record
//! ```

pub mod body;
pub mod checks;
pub mod client;
pub mod clock;
pub mod config;
pub mod forward;
pub mod identity;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod rejection;
pub mod routes;
pub mod server;
pub mod store;
pub mod tls;
pub mod upstream;

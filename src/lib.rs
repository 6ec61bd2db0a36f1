//! # replay-guard
//!
//! A reverse-proxy sidecar that stops replay attacks in front of HTTP APIs
//! that cannot be changed. It forwards only requests that are fresh, signed
//! where required, never seen before and within their rate.
//!
//! ## Layout
//!
//! One sentence per module; each module's own doc says what it must never
//! do.
//!
//! - [`config`]: raw TOML (`config/raw.rs`) → validation that reports every
//!   problem with `file:line:col` (`config/validate/`, reading variables
//!   and files only through an injectable [`config::Environment`]) → the
//!   typed, frozen [`config::Config`] and its route rules
//!   (`config/rules.rs`, `config/pattern.rs`, `config/secret.rs`, keys'
//!   algorithms and public keys in `config/algorithm.rs`, a route's
//!   signature scheme in `config/rfc9421.rs`).
//! - [`routes`]: the ordered route table, first match wins, over anything
//!   that carries a route.
//! - [`path`]: path normalisation and the match key, so no spelling of a
//!   protected path bypasses its route.
//! - [`proxy`]: the request path as named phases over one
//!   [`proxy::RequestCtx`] (framing, route, checks, report mode, forward,
//!   record, respond), with per-route [`proxy::RouteState`].
//! - [`checks`]: one module per check — [`checks::rate_limit`],
//!   [`checks::freshness`], [`checks::signature`] (scheme `v1`),
//!   [`checks::rfc9421`] (RFC 9421 HTTP Message Signatures),
//!   [`checks::nonce`],
//!   [`checks::idempotency`], [`checks::webhook`] (Stripe, GitHub, Slack,
//!   Standard Webhooks receivers) — each whole (headers, keys, store call,
//!   `on_error`) behind one entry point returning a typed rejection.
//! - [`rejection`]: every reason the proxy answers instead of the upstream
//!   and its one HTTP mapping (problem+json with a stable `reason`).
//! - [`identity`]: who the client is, one module per kind (client address
//!   behind trusted proxies and header identities; [`identity::jwt`]
//!   bearer-token claims verified against `[jwt]`; [`identity::client_cert`]
//!   the names of a verified client certificate), resolved in one place
//!   ([`identity::resolve`]), and how identities become scopes, store-key
//!   text and log tags.
//! - [`forward`]: header hygiene both ways and the proxy's own headers.
//! - [`upstream`]: the pooled keep-alive connections to the upstream, one
//!   idle stack per worker, and their timeouts.
//! - [`store`]: the narrow store trait, [`store::memory`] (one instance),
//!   [`store::dynamodb`] (shared by replicas) and [`store::MeteredStore`]
//!   (timing and error counts around either).
//! - [`server`]: store construction, worker event loops and connections,
//!   the admin listener, reload; [`server::start`] is what the binary and
//!   the tests call.
//! - [`tls`]: the optional TLS listener's certificate and key, and client
//!   certificate verification (mTLS).
//! - [`metrics`]: the Prometheus registry and per-route series.
//! - [`log_output`]: the log writer that never blocks, fails or panics a
//!   request (lost lines are counted).
//! - [`clock`]: the injected time source (system and manual clocks).
//! - [`body`]: the one body type and its constructors.
//! - [`client`]: client-side signing helpers, used by the binary's `sign`,
//!   `demo` and `loadgen` (the subcommands live in the binary crate,
//!   `src/cli/`, not in this library).
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
//! identity       client_ip, header:, a verified jwt: claim (401
//!                missing_token / bad_token) or client_cert
//! head checks    rate limit (by that identity) → declared size (413)
//!                → freshness
//! body           read whole, capped at max_body_bytes, timed
//! signature      v1 HMAC over method, host, path, query, timestamp,
//!                nonce, body hash; or RFC 9421 (scheme = "rfc9421":
//!                created is the timestamp, Content-Digest the body)
//!                → rate limit for identity = "key_id"
//! nonce          claimed in the store for the scope (first store write)
//! idempotency    claim / replay stored answer / in flight / reused
//! (webhook)      on a webhook route, instead of signature, nonce and
//!                idempotency: the provider's signature and timestamp,
//!                then its delivery id claimed like an Idempotency-Key
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

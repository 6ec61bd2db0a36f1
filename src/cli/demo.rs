//! `replay-guard demo`: a self-contained walkthrough on loopback.
//!
//! It starts the built-in upstream ([`super::demo_upstream`]) and the real
//! proxy in-process on the memory store with the bundled [`DEMO_CONFIG`],
//! sends one scripted request per outcome — fresh, replayed, stale, forged,
//! idempotent retry, reused key, rate-limited burst, and a Stripe webhook
//! delivered, redelivered and forged — and prints a table of
//! what the client got and what the upstream received. It ends by itself
//! and exits 0 when every step had the expected outcome (2 otherwise).
//!
//! Everything listens on and talks to 127.0.0.1 only; the secret is a
//! throwaway written inline, which the proxy warns about (fine for a demo,
//! never for production); the webhook secret, which has no inline form, is
//! handed to validation by a demo-only [`Environment`]. This module must never be used by `run`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::demo_upstream::DemoUpstream;
use replay_guard::client::{self, SignRequest};
use replay_guard::clock::{SharedClock, SystemClock};
use replay_guard::config::{Config, Environment, ProcessEnvironment, Secret};
use replay_guard::server;

/// The demo client's key id.
const KEY_ID: &str = "demo-client";
/// The demo client's secret (inline in the bundled config: demo only).
const SECRET: &str = "demo-secret-do-not-use-in-production";
/// What a forger without the secret signs with.
const FORGED_SECRET: &str = "an-attackers-guess";
/// The variable the demo's webhook route reads its secret from.
const WEBHOOK_SECRET_ENV: &str = "DEMO_STRIPE_WEBHOOK_SECRET";
/// The demo's Stripe endpoint secret (a throwaway: demo only).
const WEBHOOK_SECRET: &str = "whsec_demo_do_not_use_in_production";
/// Per-request time limit of the demo client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The bundled configuration; `{upstream}` is replaced by the built-in
/// upstream's address.
pub const DEMO_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"
upstream_timeout_ms = 5000
shutdown_grace_secs = 1

[store]
kind = "memory"

[store.memory]
max_entries = 10_000

[[keys]]
id = "demo-client"
secret = "demo-secret-do-not-use-in-production"   # inline: demo only

[[routes]]
name = "create-payment"
methods = ["POST"]
path = "/payments"
identity = "key_id"
freshness = { max_skew_secs = 120 }
signature = { required = true }
nonce = { required = true }
idempotency = { required = true, ttl_secs = 3600, lease_secs = 60 }

[[routes]]
name = "stripe-events"
methods = ["POST"]
path = "/webhooks/stripe"
webhook = { provider = "stripe", secret_env = "DEMO_STRIPE_WEBHOOK_SECRET" }

[[routes]]
name = "quotes"
methods = ["GET"]
path = "/quotes"
identity = "client_ip"
rate_limit = { per_minute = 6, burst = 3 }
"#;

/// One request of the script.
#[derive(Debug, Clone)]
struct DemoRequest {
    method: Method,
    path: &'static str,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// What the client got back.
#[derive(Debug)]
struct Reply {
    status: u16,
    reason: Option<String>,
    idempotent_replayed: bool,
    retry_after: Option<String>,
    body: Bytes,
}

/// What a step expects: the status, and the `reason` (or none).
#[derive(Debug, Clone, Copy)]
struct Expect {
    status: u16,
    reason: Option<&'static str>,
    idempotent_replayed: bool,
}

impl Expect {
    const fn ok() -> Self {
        Self {
            status: 200,
            reason: None,
            idempotent_replayed: false,
        }
    }
    const fn rejected(status: u16, reason: &'static str) -> Self {
        Self {
            status,
            reason: Some(reason),
            idempotent_replayed: false,
        }
    }

    /// Whether `reply` is what this step expects.
    fn matches(&self, reply: &Reply) -> bool {
        reply.status == self.status
            && reply.reason.as_deref() == self.reason
            && reply.idempotent_replayed == self.idempotent_replayed
    }

    /// `409 replayed_nonce`, `200 - (Idempotent-Replayed: true)`.
    fn describe(&self) -> String {
        format!(
            "{} {}{}",
            self.status,
            self.reason.unwrap_or("-"),
            if self.idempotent_replayed {
                " (Idempotent-Replayed: true)"
            } else {
                ""
            }
        )
    }
}

/// The demo's client side: signs and sends, and prints one row per step.
struct Demo {
    client: Client<HttpConnector, Full<Bytes>>,
    proxy: SocketAddr,
    upstream: DemoUpstream,
    clock: SharedClock,
    step: usize,
    surprises: usize,
}

impl Demo {
    /// A signed POST /payments with a fresh timestamp and nonce unless given.
    fn payment(
        &self,
        body: &'static str,
        idempotency_key: &str,
        timestamp: u64,
        secret: &str,
    ) -> DemoRequest {
        let host = self.proxy.to_string();
        let signed = client::sign(
            &Secret::new(secret.as_bytes().to_vec()),
            &SignRequest {
                method: "POST",
                host: &host,
                path_and_query: "/payments",
                body: body.as_bytes(),
                timestamp: timestamp.to_string(),
                nonce: client::new_nonce(),
                key_id: KEY_ID,
            },
        );
        let mut headers = signed.headers;
        headers.push(("Content-Type".into(), "application/json".into()));
        headers.push(("Idempotency-Key".into(), idempotency_key.into()));
        DemoRequest {
            method: Method::POST,
            path: "/payments",
            headers,
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    async fn send(&self, request: &DemoRequest) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(request.method.clone())
            .uri(format!("http://{}{}", self.proxy, request.path));
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let http_request = builder
            .body(Full::new(request.body.clone()))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let exchange = async {
            let response = self.client.request(http_request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| "the proxy did not answer in time".to_owned())?
            .map_err(|e| format!("request to the proxy failed: {e}"))?;
        let reason = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned));
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Reply {
            status: parts.status.as_u16(),
            reason,
            idempotent_replayed: header("idempotent-replayed").as_deref() == Some("true"),
            retry_after: header("retry-after"),
            body,
        })
    }

    /// Send one request, print its row, and note any surprise.
    async fn step(
        &mut self,
        name: &str,
        summary: &str,
        request: &DemoRequest,
        expect: Expect,
    ) -> Result<(), String> {
        self.step += 1;
        let hits_before = self.upstream.hits();
        let reply = self.send(request).await?;
        let upstream = self.upstream_since(hits_before);
        print_row(
            &self.step.to_string(),
            name,
            summary,
            &reply.status.to_string(),
            reply.reason.as_deref().unwrap_or("-"),
            &upstream,
        );
        print_notes(&reply);
        if !expect.matches(&reply) {
            self.surprises += 1;
            println!("    !! expected {}", expect.describe());
        }
        Ok(())
    }

    /// The upstream column: hits so far, and what arrived after the
    /// first `hits_before`.
    fn upstream_since(&self, hits_before: usize) -> String {
        let received = self.upstream.received();
        match received.get(hits_before..) {
            Some([]) | None => format!("{} (nothing new)", received.len()),
            Some(new) => {
                let seen: Vec<String> = new
                    .iter()
                    .map(|r| {
                        let body = String::from_utf8_lossy(&r.body);
                        if body.is_empty() {
                            format!("{} {}", r.method, r.path_and_query)
                        } else {
                            format!("{} {} {}", r.method, r.path_and_query, body)
                        }
                    })
                    .collect();
                format!("{} (+{}: {})", received.len(), new.len(), seen.join("; "))
            }
        }
    }
}

/// One row of the table (also its heading): number, step, request,
/// status, reason, upstream.
fn print_row(number: &str, name: &str, summary: &str, status: &str, reason: &str, upstream: &str) {
    println!("{number:>2}  {name:<26} {summary:<44} {status:>6}  {reason:<24} {upstream}");
}

/// The ruler above and below the table.
fn print_rule() {
    println!("{}", "-".repeat(140));
}

/// The lines under a row: a stored idempotent answer, a `Retry-After`.
fn print_notes(reply: &Reply) {
    if reply.idempotent_replayed {
        println!(
            "    -> Idempotent replay: stored answer {} with Idempotent-Replayed: true; the upstream was not called",
            String::from_utf8_lossy(&reply.body)
        );
    }
    if let Some(retry_after) = &reply.retry_after {
        println!("    -> Retry-After: {retry_after}");
    }
}

/// The process's environment, plus the demo's throwaway webhook secret.
struct DemoEnvironment;

impl Environment for DemoEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        if name == WEBHOOK_SECRET_ENV {
            return Some(WEBHOOK_SECRET.to_owned());
        }
        ProcessEnvironment.var(name)
    }

    fn read_file(&self, path: &std::path::Path) -> std::io::Result<Vec<u8>> {
        ProcessEnvironment.read_file(path)
    }
}

/// The bundled config, compiled for an upstream address.
pub fn demo_config(upstream: SocketAddr) -> Result<Config, String> {
    let text = DEMO_CONFIG.replace("{upstream}", &upstream.to_string());
    Config::parse_with(&text, "demo.toml", &DemoEnvironment)
        .map_err(|e| format!("the bundled demo config is invalid:\n{e}"))
}

/// Run the demo.
pub async fn run() -> Result<(), ExitCode> {
    match walkthrough().await {
        Ok(0) => Ok(()),
        Ok(surprises) => {
            eprintln!("demo: {surprises} step(s) did not have the expected outcome");
            Err(ExitCode::from(2))
        }
        Err(message) => {
            eprintln!("demo failed: {message}");
            Err(ExitCode::from(2))
        }
    }
}

/// Start everything, run the script, stop everything; the number of steps
/// whose outcome was not the expected one.
async fn walkthrough() -> Result<usize, String> {
    let upstream = DemoUpstream::start()
        .await
        .map_err(|e| format!("cannot start the built-in upstream: {e}"))?;
    let config = demo_config(upstream.addr)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let running = server::start(config, clock.clone())
        .await
        .map_err(|e| format!("cannot start the proxy: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut demo = Demo {
        client,
        proxy: running.addr,
        upstream,
        clock,
        step: 0,
        surprises: 0,
    };
    let result = script(&mut demo).await;
    let surprises = demo.surprises;
    drop(demo);
    running.shutdown().await;
    result.map(|()| surprises)
}

/// The walkthrough: what runs, the steps, and how to go on from here.
async fn script(demo: &mut Demo) -> Result<(), String> {
    print_intro(demo);
    payment_steps(demo).await?;
    webhook_steps(demo).await?;
    rate_limit_steps(demo).await?;
    print_outro(demo);
    Ok(())
}

/// What runs where, and the table's heading.
fn print_intro(demo: &Demo) {
    println!("replay-guard demo");
    println!(
        "  proxy    http://{}  (memory store, bundled config)",
        demo.proxy
    );
    println!(
        "  upstream http://{}  (built-in: answers {{\"payment_id\":\"pay_N\",\"hit\":N}})",
        demo.upstream.addr
    );
    println!(
        "  routes   POST /payments: freshness ±120 s + HMAC signature + nonce + Idempotency-Key"
    );
    println!(
        "           POST /webhooks/stripe: Stripe-Signature verified, each event id forwarded once"
    );
    println!("           GET /quotes: rate limit 3 burst, 6/min per client IP");
    println!();
    print_row(
        "#",
        "step",
        "request",
        "status",
        "reason",
        "upstream hits (what it received)",
    );
    print_rule();
}

/// POST /payments: fresh, replayed, stale, forged, idempotent retry,
/// reused key.
async fn payment_steps(demo: &mut Demo) -> Result<(), String> {
    const PAY: &str = r#"{"amount":1250,"currency":"EUR"}"#;
    const PAY_OTHER: &str = r#"{"amount":9999,"currency":"EUR"}"#;
    let now = demo.clock.now_secs();
    let first = demo.payment(PAY, "order-1001", now, SECRET);
    demo.step(
        "fresh signed request",
        "POST /payments new nonce, key order-1001",
        &first,
        Expect::ok(),
    )
    .await?;
    demo.step(
        "replay, byte-for-byte",
        "the same bytes as #1 again",
        &first,
        Expect::rejected(409, "replayed_nonce"),
    )
    .await?;
    let stale = demo.payment(PAY, "order-1002", now.saturating_sub(600), SECRET);
    demo.step(
        "stale timestamp",
        "signed, new nonce, timestamp 10 min old",
        &stale,
        Expect::rejected(400, "stale_timestamp"),
    )
    .await?;
    let forged = demo.payment(PAY, "order-1003", now, FORGED_SECRET);
    demo.step(
        "forged signature",
        "signed with a guessed secret",
        &forged,
        Expect::rejected(401, "bad_signature"),
    )
    .await?;
    let retry = demo.payment(PAY, "order-1001", demo.clock.now_secs(), SECRET);
    demo.step(
        "idempotent retry",
        "new nonce, same key order-1001 + body",
        &retry,
        Expect {
            idempotent_replayed: true,
            ..Expect::ok()
        },
    )
    .await?;
    let reused = demo.payment(PAY_OTHER, "order-1001", demo.clock.now_secs(), SECRET);
    demo.step(
        "same key, other body",
        "new nonce, key order-1001, amount 9999",
        &reused,
        Expect::rejected(422, "idempotency_key_reused"),
    )
    .await
}

/// A Stripe delivery as Stripe sends it: `Stripe-Signature: t=..,v1=..`,
/// an HMAC-SHA256 over `<t>.<body>` with the endpoint secret.
fn stripe_delivery(body: &'static str, timestamp: u64, secret: &str) -> DemoRequest {
    use hmac::{Hmac, Mac};
    let signature = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .map(|mut mac| {
            mac.update(format!("{timestamp}.").as_bytes());
            mac.update(body.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default();
    DemoRequest {
        method: Method::POST,
        path: "/webhooks/stripe",
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            (
                "Stripe-Signature".into(),
                format!("t={timestamp},v1={signature}"),
            ),
        ],
        body: Bytes::from_static(body.as_bytes()),
    }
}

/// POST /webhooks/stripe: a delivery, Stripe's redelivery of the same
/// event (a fresh signature), and a forgery.
async fn webhook_steps(demo: &mut Demo) -> Result<(), String> {
    const EVENT: &str = r#"{"id":"evt_demo_1","object":"event","type":"invoice.paid"}"#;
    let now = demo.clock.now_secs();
    demo.step(
        "webhook delivery (Stripe)",
        "POST /webhooks/stripe event evt_demo_1",
        &stripe_delivery(EVENT, now, WEBHOOK_SECRET),
        Expect::ok(),
    )
    .await?;
    demo.step(
        "webhook redelivery",
        "same event, re-signed 1 s later",
        &stripe_delivery(EVENT, now + 1, WEBHOOK_SECRET),
        Expect {
            idempotent_replayed: true,
            ..Expect::ok()
        },
    )
    .await?;
    demo.step(
        "forged webhook",
        "signed with a guessed endpoint secret",
        &stripe_delivery(EVENT, now, "whsec_guess"),
        Expect::rejected(401, "bad_signature"),
    )
    .await
}

/// GET /quotes five times: the burst of 3 passes, the rest is limited.
async fn rate_limit_steps(demo: &mut Demo) -> Result<(), String> {
    let quote = DemoRequest {
        method: Method::GET,
        path: "/quotes",
        headers: Vec::new(),
        body: Bytes::new(),
    };
    for i in 1..=5 {
        let expect = if i <= 3 {
            Expect::ok()
        } else {
            Expect::rejected(429, "rate_limited")
        };
        demo.step(
            &format!("rate-limited burst {i}/5"),
            "GET /quotes (burst of 3 allowed)",
            &quote,
            expect,
        )
        .await?;
    }
    Ok(())
}

/// How to go on from the demo.
const NEXT_STEPS: &str = r#"Run it in front of your own upstream:
  1. Write replay-guard.toml (start from config.example.toml): set [server] upstream = "http://127.0.0.1:9000",
     a [[keys]] entry with secret_env, and a [[routes]] entry per endpoint to protect.
  2. replay-guard check --config replay-guard.toml
  3. BILLING_SVC_SECRET=... replay-guard run --config replay-guard.toml
  4. Sign a request as a client would and send it (the example's /payments needs an Idempotency-Key):
     replay-guard sign --url http://127.0.0.1:8080/payments --key-id billing-svc \
       --secret-env BILLING_SVC_SECRET --body '{"amount":1250}' --header 'Idempotency-Key: order-42' | sh
  5. Put it under load, below the example's rate limit of 50/s, one Idempotency-Key per operation:
     replay-guard loadgen --url http://127.0.0.1:8080/payments --key-id billing-svc \
       --secret-env BILLING_SVC_SECRET --idempotency --rate 40 --duration 10s --replay-ratio 0.1
"#;

/// The tally of what reached the upstream, and how to go on.
fn print_outro(demo: &Demo) {
    print_rule();
    println!(
        "The upstream received {} of {} requests: only the fresh, signed, unique ones within their rate.",
        demo.upstream.hits(),
        demo.step
    );
    println!();
    print!("{NEXT_STEPS}");
}

//! Webhook receivers end to end (SPEC §3.3, issue 23): deliveries signed by
//! each provider's own library — `stripe`, `slack_sdk`, `standardwebhooks`
//! (PyPI) and `@octokit/webhooks-methods` (npm), driven through
//! `tests/support/webhook_signer.py` — sent through the real proxy to a
//! real upstream, on the memory store and on DynamoDB (moto and dynalite)
//! by `store_matrix!`. Each case asserts the status, the `reason` and what
//! the upstream received.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::client::{Reply, Req};
use support::matrix::Backend;
use support::proxy::{TestProxy, T0};
use support::upstream::Upstream;

/// One provider's route in the test config.
#[derive(Debug, Clone, Copy)]
struct Provider {
    name: &'static str,
    path: &'static str,
    secret: &'static str,
    /// The header that carries the provider's signature.
    signature_header: &'static str,
    /// Whether the scheme signs a timestamp (all but GitHub).
    timestamped: bool,
}

const PROVIDERS: [Provider; 4] = [
    Provider {
        name: "stripe",
        path: "/hooks/stripe",
        secret: "whsec_5f3c0a1e9b7d4c2a8e6f1b3d5c7a9e0f",
        signature_header: "stripe-signature",
        timestamped: true,
    },
    Provider {
        name: "github",
        path: "/hooks/github",
        secret: "It's a Secret to Everybody",
        signature_header: "x-hub-signature-256",
        timestamped: false,
    },
    Provider {
        name: "slack",
        path: "/hooks/slack",
        secret: "8f742231b10e8888abcd99yyyzzz85a5",
        signature_header: "x-slack-signature",
        timestamped: true,
    },
    Provider {
        name: "standard-webhooks",
        path: "/hooks/standard",
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        signature_header: "webhook-signature",
        timestamped: true,
    },
];

/// The secrets as files, once per test process.
fn secrets_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        for p in PROVIDERS {
            std::fs::write(dir.path().join(p.name), format!("{}\n", p.secret)).unwrap();
        }
        std::fs::write(dir.path().join("old"), "whsec_b2xkLXNlY3JldA==\n").unwrap();
        dir
    })
    .path()
}

fn routes() -> String {
    let dir = secrets_dir().display().to_string();
    let mut text = String::new();
    for p in PROVIDERS {
        // The previous secret (rotation) is on every route; never the one
        // a test signs with, so it must not make a wrong secret pass.
        text.push_str(&format!(
            "[[routes]]\nname = \"{name}-events\"\nmethods = [\"POST\"]\npath = \"{path}\"\nwebhook = {{ provider = \"{name}\", secret_file = \"{dir}/{name}\", previous_secret_file = \"{dir}/old\" }}\n\n",
            name = p.name,
            path = p.path,
        ));
    }
    text
}

async fn setup(backend: Backend, server_extra: &str) -> (Upstream, TestProxy) {
    let store = backend.store_toml().await;
    let upstream = Upstream::start().await;
    let body = format!("{server_extra}\n{store}\n{}", routes());
    let proxy = TestProxy::start(&upstream.url(), &body).await;
    (upstream, proxy)
}

/// One delivery for the provider's library to sign.
#[derive(Debug, Clone)]
struct Spec {
    provider: Provider,
    secret: String,
    body: String,
    timestamp: u64,
    id: String,
}

impl Spec {
    /// Delivery `n` of `provider`, signed at `timestamp` with its secret.
    fn new(provider: Provider, n: usize, timestamp: u64) -> Spec {
        let body = match provider.name {
            "stripe" => format!(r#"{{"id":"evt_{n:08}","object":"event","type":"invoice.paid"}}"#),
            "github" => format!(r#"{{"action":"opened","number":{n}}}"#),
            "slack" => format!(
                r#"{{"type":"event_callback","event_id":"Ev{n:08}","event":{{"type":"app_mention"}}}}"#
            ),
            _ => format!(r#"{{"type":"invoice.paid","n":{n}}}"#),
        };
        Spec {
            provider,
            secret: provider.secret.to_owned(),
            body,
            timestamp,
            id: format!("delivery-{n:08}"),
        }
    }

    fn secret(mut self, secret: &str) -> Spec {
        self.secret = secret.to_owned();
        self
    }

    fn json(&self) -> Value {
        json!({
            "provider": self.provider.name,
            "secret": self.secret,
            "body": self.body,
            "timestamp": self.timestamp,
            "id": self.id,
        })
    }
}

/// Sign every spec with the providers' libraries; one request each.
fn sign(specs: &[Spec]) -> Vec<Req> {
    let input = Value::Array(specs.iter().map(Spec::json).collect()).to_string();
    let out = support::python::run(
        "webhook_signer.py",
        &[],
        &input,
        "stripe, slack_sdk, standardwebhooks and @octokit/webhooks-methods",
    );
    let headers: Vec<Vec<(String, String)>> = serde_json::from_str(&out).expect("header lists");
    specs
        .iter()
        .zip(headers)
        .map(|(spec, headers)| {
            let mut req = Req::post(spec.provider.path)
                .header("Content-Type", "application/json")
                .body(spec.body.clone());
            for (name, value) in headers {
                req = req.header(&name, value);
            }
            req
        })
        .collect()
}

/// Send a redelivery once `landed` completion records have been written,
/// as a provider's retry seconds later would find them: the record is
/// written after the answer (off the client's critical path), and a
/// redelivery that arrives before it lands gets 409
/// `idempotency_in_flight` (`tests/idempotency.rs` covers that gap).
async fn redeliver(req: &Req, proxy: &TestProxy, landed: usize) -> Reply {
    proxy.until_recorded(landed).await;
    req.clone().send(proxy.addr).await
}

fn sign_one(spec: Spec) -> Req {
    sign(&[spec]).remove(0)
}

#[track_caller]
fn assert_refused(reply: &Reply, status: u16, reason: &str, what: &str) {
    assert_eq!(
        reply.status_reason(),
        (status, reason.to_owned()),
        "{what}: {:?}",
        reply.body
    );
}

/// A metric series' value from the admin listener's `/metrics`.
async fn metric(proxy: &TestProxy, series: &str) -> f64 {
    let text = support::metrics::scrape(proxy.admin.unwrap()).await;
    support::metrics::sample(&text, series).unwrap_or_else(|| panic!("no series {series}"))
}

// ------------------------------------------------------------------ cases

/// A valid delivery of every provider is forwarded once, unchanged, with
/// `X-Replay-Guard-Webhook` (a client's copy dropped); its redelivery —
/// re-signed at a later timestamp, as providers retry — gets the stored
/// answer and the upstream sees nothing more.
async fn valid_deliveries_are_forwarded_once_and_redeliveries_get_the_stored_answer(
    backend: Backend,
) {
    let (upstream, proxy) = setup(backend, "").await;
    let firsts = sign(&PROVIDERS.map(|p| Spec::new(p, 1, T0)));
    let redeliveries = sign(&PROVIDERS.map(|p| Spec::new(p, 1, T0 + 30)));
    for (i, p) in PROVIDERS.iter().enumerate() {
        let first = firsts[i]
            .clone()
            .header("X-Replay-Guard-Webhook", "forged-by-the-client");
        let reply = first.send(proxy.addr).await;
        assert_eq!(reply.status, 200, "{}: {:?}", p.name, reply.body);
        reply.assert_not_replayed();
        assert_eq!(upstream.count(), i + 1, "{}: forwarded once", p.name);
        let seen = upstream.seen().pop().unwrap();
        assert_eq!(seen.path_and_query, p.path);
        assert_eq!(seen.body, first.body, "{}: the body unchanged", p.name);
        let sent = |name: &str| {
            first
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            seen.headers[p.signature_header]
                .to_str()
                .ok()
                .map(str::to_owned),
            sent(p.signature_header),
            "{}: the provider's signature reaches the upstream for its own check",
            p.name
        );
        let marks: Vec<_> = seen
            .headers
            .get_all("x-replay-guard-webhook")
            .iter()
            .collect();
        assert_eq!(marks, [p.name], "{}: the proxy's mark only", p.name);

        let again = redeliver(&redeliveries[i], &proxy, i + 1).await;
        assert_eq!(again.status, 200, "{}: {:?}", p.name, again.body);
        again.assert_replayed();
        assert_eq!(again.body, reply.body, "{}: the stored answer", p.name);
        assert_eq!(
            upstream.count(),
            i + 1,
            "{}: nothing more forwarded",
            p.name
        );
    }
    for p in PROVIDERS {
        let series = |outcome: &str| {
            format!(
                "replay_guard_webhook_deliveries_total{{route=\"{}-events\",provider=\"{}\",outcome=\"{outcome}\"}}",
                p.name, p.name
            )
        };
        assert_eq!(
            metric(&proxy, &series("forwarded")).await,
            1.0,
            "{}",
            p.name
        );
        assert_eq!(metric(&proxy, &series("replayed")).await, 1.0, "{}", p.name);
        assert_eq!(metric(&proxy, &series("rejected")).await, 0.0, "{}", p.name);
    }
    proxy.shutdown().await;
}

/// A delivery whose first attempt failed (the upstream answered 500) is
/// forwarded again when the provider redelivers; once it succeeded, the
/// next redelivery gets the stored answer.
async fn a_delivery_that_failed_is_forwarded_again(backend: Backend) {
    let (upstream, proxy) = setup(backend, "").await;
    let firsts = sign(&PROVIDERS.map(|p| Spec::new(p, 2, T0)));
    let seconds = sign(&PROVIDERS.map(|p| Spec::new(p, 2, T0 + 60)));
    let thirds = sign(&PROVIDERS.map(|p| Spec::new(p, 2, T0 + 120)));
    for (i, p) in PROVIDERS.iter().enumerate() {
        let failed = firsts[i].clone().header("X-Test-Status", "500");
        let reply = failed.send(proxy.addr).await;
        assert_eq!(reply.status, 500, "{}: the upstream's answer", p.name);
        assert_eq!(upstream.count(), 2 * i + 1);
        let retried = seconds[i].send(proxy.addr).await;
        assert_eq!(retried.status, 200, "{}: {:?}", p.name, retried.body);
        retried.assert_not_replayed();
        assert_eq!(upstream.count(), 2 * i + 2, "{}: forwarded again", p.name);
        let third = redeliver(&thirds[i], &proxy, i + 1).await;
        third.assert_replayed();
        assert_eq!(third.body, retried.body);
        assert_eq!(upstream.count(), 2 * i + 2, "{}: then deduplicated", p.name);
    }
    proxy.shutdown().await;
}

/// 200 identical deliveries at once (a provider's retries racing a slow
/// upstream): exactly one is forwarded; the others get 409
/// `idempotency_in_flight` (the provider retries) or, once the first is
/// answered, its stored answer.
///
/// On DynamoDB (moto and dynalite share this 2-core machine with every
/// other test) the storm runs for two providers — GitHub's, whose only
/// replay defence this is, and Stripe's — with a patient store timeout.
async fn a_storm_of_identical_deliveries_is_forwarded_once(backend: Backend) {
    let store = backend
        .store_toml()
        .await
        .replace("timeout_ms = 5000", "timeout_ms = 30000");
    let upstream = Upstream::start().await;
    let body = format!("{store}\n{}", routes());
    let proxy = TestProxy::start(&upstream.url(), &body).await;
    let providers: Vec<Provider> = match backend {
        Backend::Memory => PROVIDERS.to_vec(),
        _ => vec![PROVIDERS[1], PROVIDERS[0]],
    };
    let signed = sign(
        &providers
            .iter()
            .map(|p| Spec::new(*p, 3, T0))
            .collect::<Vec<_>>(),
    );
    for (i, p) in providers.iter().enumerate() {
        let req = signed[i].clone().header("X-Test-Delay-Ms", "300");
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let req = req.clone();
            let addr = proxy.addr;
            tasks.push(tokio::spawn(async move { req.send(addr).await }));
        }
        let (mut executed, mut in_flight, mut replayed) = (0, 0, 0);
        for task in tasks {
            let reply = task.await.unwrap();
            match (reply.status.as_u16(), reply.header("idempotent-replayed")) {
                (200, None) => executed += 1,
                (200, Some(_)) => replayed += 1,
                (409, _) => {
                    assert_eq!(reply.reason(), "idempotency_in_flight");
                    assert!(reply.header("retry-after").is_some());
                    in_flight += 1;
                }
                other => panic!("{}: unexpected answer {other:?} {:?}", p.name, reply.body),
            }
        }
        assert_eq!(executed, 1, "{}: one forwarded", p.name);
        assert_eq!(executed + in_flight + replayed, 200);
        assert_eq!(
            upstream.count(),
            i + 1,
            "{}: the upstream ran it once",
            p.name
        );
    }
    proxy.shutdown().await;
}

/// Forged, tampered, stale and future deliveries are refused with the
/// existing reasons, and nothing reaches the upstream.
async fn forgeries_are_refused_and_nothing_is_forwarded(backend: Backend) {
    let (upstream, proxy) = setup(backend, "").await;
    for p in PROVIDERS {
        let name = p.name;
        let mut specs = vec![
            Spec::new(p, 4, T0).secret(if p.name == "standard-webhooks" {
                "whsec_d3Jvbmctc2VjcmV0"
            } else {
                "wrong-secret"
            }),
        ];
        if p.timestamped {
            specs.push(Spec::new(p, 4, T0 - 301));
            specs.push(Spec::new(p, 4, T0 + 301));
        }
        specs.push(Spec::new(p, 4, T0));
        let mut signed = sign(&specs).into_iter();
        let wrong = signed.next().unwrap().send(proxy.addr).await;
        assert_refused(
            &wrong,
            401,
            "bad_signature",
            &format!("{name}: wrong secret"),
        );
        if p.timestamped {
            let stale = signed.next().unwrap().send(proxy.addr).await;
            assert_refused(&stale, 400, "stale_timestamp", &format!("{name}: stale"));
            let future = signed.next().unwrap().send(proxy.addr).await;
            assert_refused(&future, 400, "future_timestamp", &format!("{name}: future"));
        }
        let valid = signed.next().unwrap();
        let tampered = valid.clone().body(valid.body.to_vec().repeat(2));
        let reply = tampered.send(proxy.addr).await;
        assert_refused(
            &reply,
            401,
            "bad_signature",
            &format!("{name}: tampered body"),
        );
        let unsigned = valid.clone().without_header(p.signature_header);
        let reply = unsigned.send(proxy.addr).await;
        assert_refused(
            &reply,
            401,
            "missing_signature",
            &format!("{name}: unsigned"),
        );
        let garble = if p.name == "stripe" {
            format!("t={T0},v1=00")
        } else {
            "v1=00".to_owned()
        };
        let garbled = valid.clone().replace_header(p.signature_header, garble);
        let reply = garbled.send(proxy.addr).await;
        assert_refused(&reply, 401, "bad_signature", &format!("{name}: garbled"));
    }
    assert_eq!(upstream.count(), 0, "nothing was forwarded");
    assert_eq!(
        metric(
            &proxy,
            "replay_guard_webhook_deliveries_total{route=\"stripe-events\",provider=\"stripe\",outcome=\"rejected\"}"
        )
        .await,
        6.0
    );
    proxy.shutdown().await;
}

store_matrix! {
    targets {
        memory => Backend::Memory,
        dynamodb => Backend::Dynamo,
        dynalite => Backend::Dynalite,
    }
    cases {
        valid_deliveries_are_forwarded_once_and_redeliveries_get_the_stored_answer,
        a_delivery_that_failed_is_forwarded_again,
        a_storm_of_identical_deliveries_is_forwarded_once,
        forgeries_are_refused_and_nothing_is_forwarded,
    }
}

// ------------------------------------------- provider-specific, memory

/// A delivery that got no answer in time (upstream timeout) is released:
/// the provider's redelivery runs.
#[tokio::test]
async fn a_delivery_that_timed_out_is_forwarded_again() {
    let (upstream, proxy) = setup(Backend::Memory, "upstream_timeout_ms = 300").await;
    let p = PROVIDERS[0];
    let signed = sign(&[Spec::new(p, 5, T0), Spec::new(p, 5, T0 + 60)]);
    let slow = signed[0].clone().header("X-Test-Delay-Ms", "1000");
    assert_refused(
        &slow.send(proxy.addr).await,
        504,
        "upstream_timeout",
        "slow",
    );
    let retried = signed[1].send(proxy.addr).await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    retried.assert_not_replayed();
    assert_eq!(upstream.count(), 2, "forwarded again after no answer");
    proxy.shutdown().await;
}

/// A delivery that never reached the upstream (connect error) is released:
/// once the upstream is back, the redelivery runs.
#[tokio::test]
async fn a_delivery_the_upstream_never_got_is_forwarded_when_it_is_back() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let body = format!("[store]\nkind = \"memory\"\n{}", routes());
    let proxy = TestProxy::start(&format!("http://{addr}"), &body).await;
    let p = PROVIDERS[3];
    let signed = sign(&[Spec::new(p, 6, T0), Spec::new(p, 6, T0 + 60)]);
    let down = signed[0].send(proxy.addr).await;
    assert_refused(&down, 502, "upstream_unavailable", "upstream down");
    let upstream = Upstream::start_at(addr).await;
    let retried = signed[1].send(proxy.addr).await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    assert_eq!(upstream.count(), 1);
    proxy.shutdown().await;
}

/// Slack requests without an `event_id` (slash commands: form bodies) are
/// identified by their signature: a byte-for-byte replay inside the window
/// is a duplicate; a request Slack signed anew is a new delivery.
#[tokio::test]
async fn a_slack_command_is_deduplicated_by_its_signature() {
    let (upstream, proxy) = setup(Backend::Memory, "").await;
    let p = PROVIDERS[2];
    let command = |ts| Spec {
        body: "token=x&team_id=T1&command=%2Fdeploy&text=prod".into(),
        ..Spec::new(p, 7, ts)
    };
    let signed = sign(&[command(T0), command(T0 + 1)]);
    let form = |req: &Req| {
        req.clone()
            .replace_header("Content-Type", "application/x-www-form-urlencoded")
    };
    assert_eq!(form(&signed[0]).send(proxy.addr).await.status, 200);
    let replay = redeliver(&form(&signed[0]), &proxy, 1).await;
    replay.assert_replayed();
    assert_eq!(upstream.count(), 1);
    let resigned = form(&signed[1]).send(proxy.addr).await;
    resigned.assert_not_replayed();
    assert_eq!(upstream.count(), 2);
    proxy.shutdown().await;
}

/// GitHub signs the body only: its `X-GitHub-Delivery` GUID is not
/// signed, so the delivery id is the verified MAC. A captured delivery
/// re-sent under a GUID the attacker chose, without a GUID, or with the
/// MAC's hex in upper case is the same delivery: the stored answer, and
/// nothing more reaches the upstream.
#[tokio::test]
async fn github_deduplicates_by_the_signed_body_not_the_unsigned_guid() {
    let (upstream, proxy) = setup(Backend::Memory, "").await;
    let p = PROVIDERS[1];
    let captured = sign_one(Spec::new(p, 8, T0));
    assert_eq!(captured.send(proxy.addr).await.status, 200);
    redeliver(&captured, &proxy, 1).await.assert_replayed();
    assert_eq!(upstream.count(), 1);
    let new_guid = captured
        .clone()
        .replace_header("X-GitHub-Delivery", "a-guid-the-attacker-chose");
    new_guid.send(proxy.addr).await.assert_replayed();
    let no_guid = captured.clone().without_header("X-GitHub-Delivery");
    no_guid.send(proxy.addr).await.assert_replayed();
    assert_eq!(
        upstream.count(),
        1,
        "a re-sent delivery never executes twice"
    );
    let other = sign_one(Spec::new(p, 9, T0));
    assert_eq!(other.send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 2, "another event is forwarded");
    proxy.shutdown().await;
}

/// A Stripe or Standard Webhooks delivery replayed by an attacker with a
/// different id is refused: the id is signed (Stripe's inside the body,
/// `webhook-id` in the signed content).
#[tokio::test]
async fn signed_delivery_ids_cannot_be_changed() {
    let (upstream, proxy) = setup(Backend::Memory, "").await;
    let standard = sign_one(Spec::new(PROVIDERS[3], 9, T0));
    assert_eq!(standard.send(proxy.addr).await.status, 200);
    let renamed = standard.clone().replace_header("webhook-id", "msg_renamed");
    assert_refused(
        &renamed.send(proxy.addr).await,
        401,
        "bad_signature",
        "renamed webhook-id",
    );
    assert_eq!(upstream.count(), 1);
    proxy.shutdown().await;
}

/// `check` prints a webhook route's profile and refuses the rules it
/// replaces, with file:line:col, exiting 1.
#[test]
fn check_prints_webhook_routes_and_refuses_mixing_them_with_signature() {
    use support::binary::{command, config_file};
    let good = config_file(&format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\n\n{}",
        routes()
    ));
    let output = command()
        .args(["check", "--config"])
        .arg(good.path())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{table}");
    for expected in [
        "webhook(stripe: ±300s, dedupe 604800s)",
        "webhook(github: no timestamp, dedupe 604800s)",
        "webhook(slack: ±300s",
        "webhook(standard-webhooks: ±300s",
    ] {
        assert!(table.contains(expected), "{expected} missing in\n{table}");
    }
    let dir = secrets_dir().display();
    let mixed = config_file(&format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\n\n[[routes]]\nname = \"s\"\npath = \"/s\"\nfreshness = {{ max_skew_secs = 60 }}\nsignature = {{ required = true }}\nwebhook = {{ provider = \"stripe\", secret_file = \"{dir}/stripe\" }}\n"
    ));
    let output = command()
        .args(["check", "--config"])
        .arg(mixed.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let name = mixed.path().display().to_string();
    assert!(
        stderr.contains(&format!(
            "{name}:9:13: signature cannot be combined with webhook"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{name}:8:13: freshness cannot be combined with webhook"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("whsec_"),
        "no secret in a message: {stderr}"
    );
}

/// On a report-mode webhook route a forged delivery is forwarded, named
/// `X-Replay-Guard-Report: bad_signature`, and never marked
/// `X-Replay-Guard-Webhook` (which means "verified").
#[tokio::test]
async fn report_mode_never_marks_a_forgery_verified() {
    let upstream = Upstream::start().await;
    let body = format!(
        "[store]\nkind = \"memory\"\n[defaults]\nmode = \"report\"\n{}",
        routes()
    );
    let proxy = TestProxy::start(&upstream.url(), &body).await;
    let forged = sign_one(Spec::new(PROVIDERS[0], 10, T0).secret("whsec_guess"));
    let reply = forged.send(proxy.addr).await;
    assert_eq!(reply.status, 200, "forwarded in report mode");
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.headers["x-replay-guard-report"], "bad_signature");
    assert!(seen.headers.get("x-replay-guard-webhook").is_none());
    let valid = sign_one(Spec::new(PROVIDERS[0], 11, T0));
    assert_eq!(valid.send(proxy.addr).await.status, 200);
    let seen = upstream.seen().pop().unwrap();
    assert_eq!(seen.headers["x-replay-guard-webhook"], "stripe");
    assert!(seen.headers.get("x-replay-guard-report").is_none());
    proxy.shutdown().await;
}

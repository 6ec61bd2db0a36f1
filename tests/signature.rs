//! Signed requests end to end (SPEC §3 "Signature, scheme v1"): a real
//! upstream, the real proxy on loopback, requests signed as a client would.
//! Each case asserts the status, the `reason` and what the upstream saw.

mod support;

use std::sync::Once;

use support::client::{nonce, Req};
use support::config;
use support::proxy::{TestProxy, T0};
use support::raw::{expect_raw, raw, signed_raw, WAIT};
use support::upstream::Upstream;

/// Secrets live in environment variables with names unique to this file.
const BILLING_SECRET: &str = "sigtest-billing-current-5b8e1d";
const BILLING_OLD_SECRET: &str = "sigtest-billing-previous-93c0aa";
const OTHER_SECRET: &str = "sigtest-other-current-d41f07";

fn set_secrets() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("RG_SIGTEST_BILLING", BILLING_SECRET);
        std::env::set_var("RG_SIGTEST_BILLING_OLD", BILLING_OLD_SECRET);
        std::env::set_var("RG_SIGTEST_OTHER", OTHER_SECRET);
    });
}

const KEYS: &str = r#"
[[keys]]
id = "billing-svc"
secret_env = "RG_SIGTEST_BILLING"
previous_secret_env = "RG_SIGTEST_BILLING_OLD"

[[keys]]
id = "other-svc"
secret_env = "RG_SIGTEST_OTHER"
"#;

const ROUTES: &str = r#"
[[routes]]
name = "signed-api"
path = "/v1/{*rest}"
freshness = { max_skew_secs = 120 }
nonce = { required = true }
signature = { required = true }

[[routes]]
name = "fresh-only"
path = "/fresh"
identity = "header:X-Client"
freshness = { max_skew_secs = 120 }

[[routes]]
name = "optional-signature"
path = "/optional"
freshness = { max_skew_secs = 120 }
signature = { required = false }

[[routes]]
name = "public"
path = "/public/{*rest}"
"#;

async fn setup() -> (Upstream, TestProxy) {
    set_secrets();
    let upstream = Upstream::start().await;
    let proxy = TestProxy::start(&upstream.url(), &format!("{KEYS}\n{ROUTES}")).await;
    (upstream, proxy)
}

const BODY: &str = r#"{"amount":1250,"currency":"EUR"}"#;

/// A request to `/v1/payments?dry_run=false` signed with billing's secret.
fn genuine(proxy: &TestProxy, n: usize) -> Req {
    Req::post("/v1/payments?dry_run=false").body(BODY).signed(
        &proxy.host(),
        "billing-svc",
        BILLING_SECRET,
        T0,
        &nonce(n),
    )
}

#[tokio::test]
async fn valid_signature_is_forwarded_with_the_verified_key_id() {
    let (upstream, proxy) = setup().await;
    let reply = genuine(&proxy, 1).send(proxy.addr).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/v1/payments?dry_run=false");
    assert_eq!(&seen[0].body[..], BODY.as_bytes());
    let key_ids: Vec<_> = seen[0]
        .headers
        .get_all("x-replay-guard-key-id")
        .iter()
        .collect();
    assert_eq!(key_ids, ["billing-svc"]);
}

#[tokio::test]
async fn every_single_change_after_signing_is_bad_signature() {
    let (upstream, proxy) = setup().await;
    let base = genuine(&proxy, 1);
    let mut method = base.clone();
    method.method = http::Method::PUT;
    let mut path = base.clone();
    path.path = "/v1/refunds?dry_run=false".into();
    let mut query = base.clone();
    query.path = "/v1/payments?dry_run=true".into();
    let mut no_query = base.clone();
    no_query.path = "/v1/payments".into();
    let mut body = base.clone();
    body.body = r#"{"amount":9250,"currency":"EUR"}"#.into();
    let mut empty_body = base.clone();
    empty_body.body = bytes::Bytes::new();
    let cases: Vec<(&str, Req)> = vec![
        ("method", method),
        (
            "host",
            base.clone()
                .replace_header("Host", "payments.internal:8080"),
        ),
        ("path", path),
        ("query", query),
        ("query removed", no_query),
        ("body", body),
        ("body removed", empty_body),
        (
            "timestamp",
            base.clone().replace_header("X-Request-Timestamp", T0 + 1),
        ),
        (
            "nonce",
            base.clone().replace_header("X-Request-Nonce", nonce(2)),
        ),
        (
            "key id",
            base.clone().replace_header("X-Key-Id", "other-svc"),
        ),
    ];
    for (what, request) in cases {
        let reply = request.send(proxy.addr).await;
        assert_eq!(reply.status, 401, "{what}: {:?}", reply.body);
        assert_eq!(reply.reason(), "bad_signature", "{what}");
        // The answer never says which part differed.
        let text = String::from_utf8_lossy(&reply.body).to_lowercase();
        for part in [
            "method",
            "host",
            "path",
            "query",
            "body",
            "timestamp",
            "nonce",
        ] {
            assert!(
                !text.contains(part),
                "{what}: the answer names {part}: {text}"
            );
        }
    }
    assert_eq!(upstream.count(), 0, "nothing forged reaches the upstream");
    // The forged requests reused nonce 1 and never burned it.
    assert_eq!(base.send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn host_is_compared_case_insensitively() {
    let (upstream, proxy) = setup().await;
    // Signed for the lowercase host, sent with an uppercase Host header.
    let request = Req::post("/v1/payments").body(BODY).signed(
        "localhost:1",
        "billing-svc",
        BILLING_SECRET,
        T0,
        &nonce(1),
    );
    let reply = request
        .replace_header("Host", "LocalHost:1")
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn signature_is_over_the_normalised_path() {
    let (upstream, proxy) = setup().await;
    // Signed for the normalised path; sent with a dot segment and a
    // duplicate slash: the proxy verifies (and forwards) the normal form.
    let mut request = Req::post("/v1/payments").body(BODY).signed(
        &proxy.host(),
        "billing-svc",
        BILLING_SECRET,
        T0,
        &nonce(1),
    );
    request.path = "/v1/x/..//payments".into();
    let reply = request.send(proxy.addr).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(upstream.seen()[0].path_and_query, "/v1/payments");

    // Signed over the raw spelling: not what the proxy forwards, refused.
    let request = Req::post("/v1/x/../payments").body(BODY).signed(
        &proxy.host(),
        "billing-svc",
        BILLING_SECRET,
        T0,
        &nonce(2),
    );
    assert_eq!(request.send(proxy.addr).await.reason(), "bad_signature");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn unknown_key_is_401_unknown_key() {
    let (upstream, proxy) = setup().await;
    let request =
        Req::post("/v1/payments").signed(&proxy.host(), "nobody", BILLING_SECRET, T0, &nonce(1));
    let reply = request.send(proxy.addr).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.reason(), "unknown_key");
    assert_eq!(
        reply.header("www-authenticate").as_deref(),
        Some(r#"Signature realm="replay-guard", scheme="v1""#),
        "every 401 says how to authenticate (RFC 9110 §11.6.1)"
    );
    assert_eq!(reply.header("accept-signature"), None, "a v1 route");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn missing_key_id_or_signature_is_401_missing_signature() {
    let (upstream, proxy) = setup().await;
    let base = genuine(&proxy, 1);
    let cases: Vec<(&str, Req)> = vec![
        ("no key id", base.clone().without_header("X-Key-Id")),
        ("no signature", base.clone().without_header("X-Signature")),
        ("empty key id", base.clone().replace_header("X-Key-Id", "")),
        (
            "empty signature",
            base.clone().replace_header("X-Signature", ""),
        ),
        (
            "neither",
            base.clone()
                .without_header("X-Key-Id")
                .without_header("X-Signature"),
        ),
        ("only fresh", Req::post("/v1/payments").fresh(T0, &nonce(1))),
    ];
    for (what, request) in cases {
        let reply = request.send(proxy.addr).await;
        assert_eq!(reply.status, 401, "{what}: {:?}", reply.body);
        assert_eq!(reply.reason(), "missing_signature", "{what}");
        assert!(
            reply.header("www-authenticate").is_some(),
            "{what}: a 401 without WWW-Authenticate"
        );
    }
    assert_eq!(upstream.count(), 0);
    assert_eq!(base.send(proxy.addr).await.status, 200);
}

#[tokio::test]
async fn signature_header_without_a_well_formed_v1_value_is_bad_signature() {
    let (upstream, proxy) = setup().await;
    let base = genuine(&proxy, 1);
    let good = base
        .headers
        .iter()
        .find(|(n, _)| n == "X-Signature")
        .map(|(_, v)| v.clone())
        .unwrap();
    let hex = good.strip_prefix("v1=").unwrap().to_owned();
    let cases = [
        format!("v2={hex}"),
        format!("sha256={hex}"),
        hex.clone(),
        format!("v1={}", hex.to_uppercase()),
        format!("v1={}", &hex[..62]),
        format!("v1={hex}00"),
        "v1=zz".to_owned(),
        "v1=".to_owned(),
        ",,,".to_owned(),
    ];
    for value in cases {
        let reply = base
            .clone()
            .replace_header("X-Signature", &value)
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 401, "{value}: {:?}", reply.body);
        assert_eq!(reply.reason(), "bad_signature", "{value}");
    }
    assert_eq!(upstream.count(), 0);

    // Several values, one of them valid: accepted.
    let several = format!("v1={}, v1={hex}", "0".repeat(64));
    let reply = base
        .replace_header("X-Signature", &several)
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

#[tokio::test]
async fn current_and_previous_secret_both_verify_during_rotation() {
    let (upstream, proxy) = setup().await;
    let sign = |secret: &str, n: usize| {
        Req::post("/v1/payments").body(BODY).signed(
            &proxy.host(),
            "billing-svc",
            secret,
            T0,
            &nonce(n),
        )
    };
    assert_eq!(sign(BILLING_SECRET, 1).send(proxy.addr).await.status, 200);
    assert_eq!(
        sign(BILLING_OLD_SECRET, 2).send(proxy.addr).await.status,
        200
    );
    // Another key's secret is not billing's.
    assert_eq!(
        sign(OTHER_SECRET, 3).send(proxy.addr).await.reason(),
        "bad_signature"
    );
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn spoofed_replay_guard_key_id_never_reaches_the_upstream() {
    let (upstream, proxy) = setup().await;
    const SPOOF: &str = "X-Replay-Guard-Key-Id";
    let signed = genuine(&proxy, 1).header(SPOOF, "admin");
    assert_eq!(signed.send(proxy.addr).await.status, 200);
    let fresh_only = Req::get("/fresh")
        .header("X-Client", "c")
        .header("X-Request-Timestamp", T0)
        .header(SPOOF, "admin");
    assert_eq!(fresh_only.send(proxy.addr).await.status, 200);
    let optional_unsigned = Req::get("/optional")
        .header("X-Request-Timestamp", T0)
        .header(SPOOF, "admin");
    assert_eq!(optional_unsigned.send(proxy.addr).await.status, 200);
    let pass_through = Req::get("/public/readme").header(SPOOF, "admin");
    assert_eq!(pass_through.send(proxy.addr).await.status, 200);
    let unmatched = Req::get("/elsewhere")
        .header(SPOOF, "admin")
        .header(SPOOF, "billing-svc");
    assert_eq!(unmatched.send(proxy.addr).await.status, 200);

    let seen = upstream.seen();
    assert_eq!(seen.len(), 5);
    let key_ids = |i: usize| -> Vec<String> {
        seen[i]
            .headers
            .get_all("x-replay-guard-key-id")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        key_ids(0),
        ["billing-svc"],
        "signed route: only the verified id"
    );
    for (i, request) in seen.iter().enumerate().skip(1) {
        assert!(
            key_ids(i).is_empty(),
            "request {i} ({}): {:?}",
            request.path_and_query,
            key_ids(i)
        );
    }
}

#[tokio::test]
async fn optional_signature_is_checked_when_present() {
    let (upstream, proxy) = setup().await;
    let unsigned = Req::get("/optional").header("X-Request-Timestamp", T0);
    assert_eq!(unsigned.send(proxy.addr).await.status, 200);
    let signed = Req::get("/optional").signed(&proxy.host(), "other-svc", OTHER_SECRET, T0, "");
    let signed = signed.without_header("X-Request-Nonce");
    assert_eq!(signed.send(proxy.addr).await.status, 200);
    let forged = Req::get("/optional").signed(&proxy.host(), "other-svc", "guess", T0, "");
    let forged = forged.without_header("X-Request-Nonce");
    assert_eq!(forged.send(proxy.addr).await.reason(), "bad_signature");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].headers.get("x-replay-guard-key-id").is_none());
    assert_eq!(seen[1].headers["x-replay-guard-key-id"], "other-svc");
}

#[tokio::test]
async fn a_forged_request_never_burns_the_nonce() {
    let (upstream, proxy) = setup().await;
    let forged = Req::post("/v1/payments").body(BODY).signed(
        &proxy.host(),
        "billing-svc",
        "attacker-guess",
        T0,
        &nonce(7),
    );
    for _ in 0..3 {
        assert_eq!(forged.send(proxy.addr).await.reason(), "bad_signature");
    }
    let real = Req::post("/v1/payments").body(BODY).signed(
        &proxy.host(),
        "billing-svc",
        BILLING_SECRET,
        T0,
        &nonce(7),
    );
    assert_eq!(real.send(proxy.addr).await.status, 200);
    assert_eq!(real.send(proxy.addr).await.reason(), "replayed_nonce");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn key_id_identity_scopes_nonces_per_key() {
    let (upstream, proxy) = setup().await;
    let as_key = |key: &str, secret: &str| {
        Req::post("/v1/payments")
            .body(BODY)
            .signed(&proxy.host(), key, secret, T0, &nonce(42))
    };
    assert_eq!(
        as_key("billing-svc", BILLING_SECRET)
            .send(proxy.addr)
            .await
            .status,
        200
    );
    assert_eq!(
        as_key("other-svc", OTHER_SECRET)
            .send(proxy.addr)
            .await
            .status,
        200,
        "same nonce, another key"
    );
    let replay = as_key("billing-svc", BILLING_SECRET).send(proxy.addr).await;
    assert_eq!(replay.status, 409);
    assert_eq!(replay.reason(), "replayed_nonce");
    // Signed with the previous secret: still billing's identity, still a replay.
    let rotated = as_key("billing-svc", BILLING_OLD_SECRET)
        .send(proxy.addr)
        .await;
    assert_eq!(rotated.reason(), "replayed_nonce");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn stale_signed_request_is_refused_before_the_signature() {
    let (upstream, proxy) = setup().await;
    let stale = Req::post("/v1/payments").body(BODY).signed(
        &proxy.host(),
        "billing-svc",
        BILLING_SECRET,
        T0 - 121,
        &nonce(1),
    );
    assert_eq!(stale.send(proxy.addr).await.reason(), "stale_timestamp");
    let bad_nonce = Req::post("/v1/payments").body(BODY).signed(
        &proxy.host(),
        "billing-svc",
        BILLING_SECRET,
        T0,
        "short",
    );
    assert_eq!(bad_nonce.send(proxy.addr).await.reason(), "malformed_nonce");
    assert_eq!(upstream.count(), 0);
}

// ------------------------------------------ the signed Host and authority
//
// Raw requests against the hostile-input config (`config::guarded`), so
// the Host header lines and the request target are exactly as sent.

async fn setup_guarded() -> (Upstream, TestProxy) {
    TestProxy::with_upstream("", &config::guarded()).await
}

#[tokio::test]
async fn an_absolute_form_target_gets_the_routes_checks_and_the_signature_binds_its_authority() {
    let (upstream, proxy) = setup_guarded().await;
    // Unsigned, fresh-less: refused by the route's checks, whatever the
    // authority says.
    let answer = expect_raw(
        proxy.addr,
        b"POST http://evil.example/payments HTTP/1.1\r\nHost: payments.internal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        &[400],
        "",
    )
    .await;
    assert_eq!(answer.reason(), "missing_timestamp");
    let answer = raw(
        proxy.addr,
        b"POST http://evil.example//x/../payments HTTP/1.1\r\nHost: payments.internal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        WAIT,
    )
    .await;
    assert_eq!(answer.reason(), "missing_timestamp", "{answer:?}");

    // Signed for the Host header while the target names another
    // authority: the proxy verifies against the target's authority
    // (RFC 9112 §3.2.2: the Host header is ignored), so this fails.
    let request = signed_raw(
        "http://evil.example/signed",
        &["payments.internal"],
        "payments.internal",
        config::BILLING,
        &nonce(1),
    );
    let answer = expect_raw(proxy.addr, &request, &[401], "").await;
    assert_eq!(answer.reason(), "bad_signature");
    assert_eq!(upstream.count(), 0);

    // Signed for the target's authority: it verifies, and the upstream
    // gets the normalised path with that authority as its one Host.
    let request = signed_raw(
        "http://evil.example/signed",
        &["payments.internal"],
        "evil.example",
        config::BILLING,
        &nonce(2),
    );
    expect_raw(proxy.addr, &request, &[200], "").await;
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/signed");
    assert_eq!(seen[0].headers["x-replay-guard-key-id"], "billing-svc");
    assert_eq!(seen[0].headers.get_all("host").iter().count(), 1);
    assert_eq!(seen[0].headers["host"], "evil.example");
}

#[tokio::test]
async fn a_host_header_other_than_the_signed_host_fails_the_signature() {
    let (upstream, proxy) = setup_guarded().await;
    for sent_host in [
        "evil.example",
        "payments.internal:8080",
        "payments.internal.",
    ] {
        let request = signed_raw(
            "/signed",
            &[sent_host],
            "payments.internal",
            config::BILLING,
            &nonce(1),
        );
        let answer = expect_raw(proxy.addr, &request, &[401], sent_host).await;
        assert_eq!(answer.reason(), "bad_signature");
    }
    assert_eq!(upstream.count(), 0);
    // Host is compared case-insensitively (lowercased on both sides).
    let request = signed_raw(
        "/signed",
        &["Payments.Internal"],
        "payments.internal",
        config::BILLING,
        &nonce(2),
    );
    expect_raw(proxy.addr, &request, &[200], "").await;
    assert_eq!(upstream.seen()[0].headers["host"], "Payments.Internal");
}

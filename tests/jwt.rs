//! `identity = "jwt:<claim>"` end to end (SPEC §2.1, §3.1): tokens minted
//! by PyJWT (tests/support/jwt_client.py) for RS256, ES256, EdDSA and
//! HS256; JWKS from a file (reloaded) and from a loopback HTTP server
//! (rotation, outage); every refusal asserts the status, the `reason` and
//! that nothing reached the upstream; nonces, idempotency keys and rate
//! limits scoped by the claim on the memory store, moto and dynalite.

mod support;

use std::sync::OnceLock;

use serde_json::{json, Value};
use support::binary::ProxyProcess;
use support::ca::Ca;
use support::client::{nonce, Reply, Req};
use support::jwt::{mint, JwksServer, KeySet};
use support::matrix::Backend;
use support::proxy::{TestProxy, T0};
use support::upstream::Upstream;

const ISSUER: &str = "https://auth.test/";
const AUDIENCE: &str = "payments-api";
const HS_SECRET_ENV: &str = "RG_JWT_TEST_HS256_SECRET";
const HS_SECRET: &str = "jwt-test-hs256-secret-0123456789abcdef";

/// The signing keys every test shares (PyJWT/cryptography key generation).
fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| KeySet::generate("primary"))
}

/// Standard claims at T0: right issuer and audience, valid for 10 min.
fn claims(sub: impl Into<Value>) -> Value {
    json!({"sub": sub.into(), "iss": ISSUER, "aud": AUDIENCE, "iat": T0, "exp": T0 + 600})
}

/// `claims(sub)` with `changes` applied (`null` removes a claim).
fn claims_with(sub: &str, changes: Value) -> Value {
    let mut claims = claims(sub);
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn hs256(claims: Value) -> Value {
    json!({"alg": "HS256", "secret": HS_SECRET, "claims": claims})
}

/// `[jwt]` with `keys_line` (jwks_file / jwks_url) and the HS256 secret,
/// and the routes: `/orders` (nonce, optional idempotency) and `/search`
/// (rate limit), both `identity = "jwt:sub"`, and `/public` (no checks).
fn config(keys_line: &str, refresh_secs: u64) -> String {
    std::env::set_var(HS_SECRET_ENV, HS_SECRET);
    format!(
        r#"[jwt]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}", "other-api"]
algorithms = ["RS256", "ES256", "EdDSA", "HS256"]
{keys_line}
secret_env = "{HS_SECRET_ENV}"
jwks_refresh_secs = {refresh_secs}
leeway_secs = 30

[[routes]]
name = "orders"
methods = ["POST"]
path = "/orders"
identity = "jwt:sub"
freshness = {{ max_skew_secs = 300 }}
nonce = {{ required = true }}
idempotency = {{ required = false, ttl_secs = 86400, lease_secs = 60 }}

[[routes]]
name = "search"
path = "/search"
identity = "jwt:sub"
rate_limit = {{ per_second = 1, burst = 2 }}

[[routes]]
name = "public"
path = "/public/{{*rest}}"
"#
    )
}

fn jwks_file(dir: &tempfile::TempDir, jwks: &str) -> String {
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks).unwrap();
    format!("jwks_file = {:?}", path.display().to_string())
}

async fn start_with_file(extra_store: &str) -> (Upstream, TestProxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{extra_store}\n{}",
        config(&jwks_file(&dir, &keys().jwks), 300)
    );
    let (upstream, proxy) = TestProxy::with_upstream("", &body).await;
    (upstream, proxy, dir)
}

fn order(token: &str, i: usize) -> Req {
    Req::post("/orders")
        .fresh(T0, &nonce(i))
        .header("Authorization", format!("Bearer {token}"))
        .body(r#"{"amount":1}"#)
}

#[track_caller]
fn assert_refused(reply: &Reply, status: u16, reason: &str, what: &str) {
    assert_eq!(
        reply.status_reason(),
        (status, reason.to_owned()),
        "{what}: {:?}",
        reply.body
    );
    let body = String::from_utf8_lossy(&reply.body);
    assert!(!body.contains("eyJ"), "{what}: no token text in the body");
}

#[tokio::test]
async fn every_algorithm_verifies_and_the_token_reaches_the_upstream_unchanged() {
    let (upstream, proxy, _dir) = start_with_file("").await;
    let mut specs: Vec<Value> = ["RS256", "ES256", "EdDSA"]
        .iter()
        .map(|alg| keys().spec(alg, claims(format!("alice-{alg}"))))
        .collect();
    specs.push(hs256(claims("alice-HS256")));
    // A numeric claim is an identity too; so is the second audience, and
    // a token within its leeway (expired 20 s ago, leeway 30 s; nbf 20 s
    // ahead).
    specs.push(keys().spec("ES256", claims(4711)));
    specs.push(keys().spec("RS256", claims_with("bob", json!({"aud": "other-api"}))));
    specs.push(keys().spec("EdDSA", claims_with("carol", json!({"exp": T0 - 20}))));
    specs.push(keys().spec("EdDSA", claims_with("dave", json!({"nbf": T0 + 20}))));
    let tokens = mint(&specs);
    for (i, token) in tokens.iter().enumerate() {
        let reply = order(token, i).send(proxy.addr).await;
        assert_eq!(reply.status, 200, "token {i}: {:?}", reply.body);
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), tokens.len());
    for (seen, token) in seen.iter().zip(&tokens) {
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {token}").as_str(),
            "the proxy does not replace the service's own authorisation"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn forged_expired_misaddressed_and_confused_tokens_are_refused() {
    let (upstream, proxy, _dir) = start_with_file("").await;
    let k = keys();
    let stranger = KeySet::generate("primary"); // same kids, other keys
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "expired beyond the leeway",
            k.spec("RS256", claims_with("a", json!({"exp": T0 - 31}))),
            401,
            "bad_token",
        ),
        (
            "not yet valid beyond the leeway",
            k.spec("ES256", claims_with("a", json!({"nbf": T0 + 31}))),
            401,
            "bad_token",
        ),
        (
            "no exp",
            k.spec("EdDSA", claims_with("a", json!({"exp": null}))),
            401,
            "bad_token",
        ),
        (
            "wrong issuer",
            k.spec(
                "RS256",
                claims_with("a", json!({"iss": "https://evil.test/"})),
            ),
            401,
            "bad_token",
        ),
        (
            "no issuer",
            k.spec("RS256", claims_with("a", json!({"iss": null}))),
            401,
            "bad_token",
        ),
        (
            "wrong audience",
            k.spec("ES256", claims_with("a", json!({"aud": "billing-api"}))),
            401,
            "bad_token",
        ),
        (
            "no audience",
            k.spec("ES256", claims_with("a", json!({"aud": null}))),
            401,
            "bad_token",
        ),
        (
            "alg none",
            json!({"alg": "none", "kid": k.kid("RS256"), "claims": claims("a")}),
            401,
            "bad_token",
        ),
        (
            "HS256 keyed with the RSA public key PEM (alg confusion)",
            json!({"confusion_pem_file": k.public_key("RS256"), "kid": k.kid("RS256"), "claims": claims("a")}),
            401,
            "bad_token",
        ),
        (
            "signed by another key under a known kid",
            stranger.spec("RS256", claims("a")),
            401,
            "bad_token",
        ),
        (
            "HS256 with the wrong secret",
            json!({"alg": "HS256", "secret": "not-the-secret-0123456789abcdefgh", "claims": claims("a")}),
            401,
            "bad_token",
        ),
        (
            "an algorithm off the allow-list (RS384)",
            json!({"alg": "RS384", "kid": k.kid("RS256"), "key_file": k.private_key("RS256"), "claims": claims("a")}),
            401,
            "bad_token",
        ),
        (
            "no sub claim",
            k.spec("RS256", claims_with("a", json!({"sub": null}))),
            400,
            "missing_identity",
        ),
        // RFC 7519 §4.1.2: `sub` is a StringOrURI; jsonwebtoken refuses a
        // token whose `sub` is an object outright.
        (
            "sub is an object",
            k.spec("RS256", claims_with("a", json!({"sub": {"id": 1}}))),
            401,
            "bad_token",
        ),
    ];
    let specs: Vec<Value> = cases.iter().map(|c| c.1.clone()).collect();
    let tokens = mint(&specs);
    for (i, ((what, _, status, reason), token)) in cases.iter().zip(&tokens).enumerate() {
        let reply = order(token, i).send(proxy.addr).await;
        assert_refused(&reply, *status, reason, what);
        if *reason == "bad_token" {
            assert_eq!(
                reply.header("www-authenticate").as_deref(),
                Some("Bearer realm=\"replay-guard\", error=\"invalid_token\""),
                "{what}"
            );
        }
    }
    // A tampered payload under a good signature.
    let good = k.token("EdDSA", claims("alice"));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replace('A', "B");
    let tampered = parts.join(".");
    let reply = order(&tampered, 100).send(proxy.addr).await;
    assert_refused(&reply, 401, "bad_token", "tampered");
    // No token, another scheme, an empty bearer, a repeated header, junk.
    let base = Req::post("/orders").fresh(T0, &nonce(200));
    for (what, req, reason) in [
        ("no Authorization", base.clone(), "missing_token"),
        (
            "Basic credentials",
            base.clone().header("Authorization", "Basic dXNlcjpwdw=="),
            "missing_token",
        ),
        (
            "empty bearer",
            base.clone().header("Authorization", "Bearer "),
            "missing_token",
        ),
        (
            "two Authorization headers",
            base.clone()
                .header("Authorization", format!("Bearer {good}"))
                .header("Authorization", format!("Bearer {good}")),
            "bad_token",
        ),
        (
            "not a JWT",
            base.clone().header("Authorization", "Bearer not.a.jwt"),
            "bad_token",
        ),
    ] {
        let reply = req.send(proxy.addr).await;
        assert_refused(&reply, 401, reason, what);
        if reason == "missing_token" {
            assert_eq!(
                reply.header("www-authenticate").as_deref(),
                Some("Bearer realm=\"replay-guard\""),
                "{what}"
            );
        }
    }
    assert_eq!(upstream.count(), 0, "nothing refused reached the upstream");
    // The good token still passes: the refusals spent nothing of it.
    let reply = order(&good, 300).send(proxy.addr).await;
    assert_eq!(reply.status, 200);
    let metrics = support::client::Req::get("/metrics")
        .send(proxy.admin.unwrap())
        .await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        !text.contains("eyJ") && !text.contains("alice"),
        "no token or claim in metrics"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_remembered_token_still_expires_on_the_proxy_clock() {
    let (upstream, proxy, _dir) = start_with_file("").await;
    let token = keys().token("ES256", claims_with("alice", json!({"exp": T0 + 100})));
    // Verified once, then served from the verification cache.
    assert_eq!(order(&token, 1).send(proxy.addr).await.status, 200);
    assert_eq!(order(&token, 2).send(proxy.addr).await.status, 200);
    // Past exp but within the leeway: still accepted.
    proxy.clock.advance(std::time::Duration::from_secs(120));
    let reply = Req::post("/orders")
        .fresh(T0 + 120, &nonce(3))
        .header("Authorization", format!("Bearer {token}"))
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    // Past exp + leeway: refused, cached or not.
    proxy.clock.advance(std::time::Duration::from_secs(11));
    let reply = Req::post("/orders")
        .fresh(T0 + 131, &nonce(4))
        .header("Authorization", format!("Bearer {token}"))
        .send(proxy.addr)
        .await;
    assert_refused(&reply, 401, "bad_token", "expired while remembered");
    assert_eq!(upstream.count(), 3);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_jwks_url_rotates_on_an_unknown_kid_once_and_keeps_its_keys_when_the_server_goes() {
    let next = KeySet::generate("next");
    let server = JwksServer::start(&keys().jwks).await;
    let upstream = Upstream::start().await;
    let body = config(&format!("jwks_url = {:?}", server.url()), 300);
    let proxy = TestProxy::start(&upstream.url(), &body).await;
    // Every token is minted first: the on-demand refresh interval is
    // wall-clock time, and minting (Python) can be slow on a busy machine.
    let old = keys().token("RS256", claims("alice"));
    let stranger = KeySet::generate("made-up");
    let specs: Vec<Value> = (0..5)
        .map(|i| {
            let mut spec = stranger.spec("RS256", claims("mallory"));
            spec["kid"] = json!(format!("made-up-{i}"));
            spec
        })
        .collect();
    let made_up = mint(&specs);
    let new = next.token("ES256", claims("bob"));
    let again = next.token("EdDSA", claims("bob"));
    let later = next.token("RS256", claims("bob"));
    // The first fetch runs at start; a request that arrives before it
    // ends waits for it.
    let reply = order(&old, 1).send(proxy.addr).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let after_start = server.hits();
    assert_eq!(after_start, 1, "one fetch at start");

    // Rotation: the issuer publishes a new kid; a token signed with it is
    // accepted after exactly one more fetch, and a second one costs none.
    server.serve(&keys().jwks_with(&next));
    let reply = order(&new, 2).send(proxy.addr).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(
        server.hits(),
        after_start + 1,
        "the new kid was fetched once"
    );
    let reply = order(&again, 3).send(proxy.addr).await;
    assert_eq!(reply.status, 200);
    assert_eq!(server.hits(), after_start + 1, "a known kid costs no fetch");

    // A flood of made-up kids: refused, and the refresh is rate-limited.
    for (i, token) in made_up.iter().enumerate() {
        let reply = order(token, 10 + i).send(proxy.addr).await;
        assert_refused(&reply, 401, "bad_token", "unknown kid");
    }
    assert_eq!(
        server.hits(),
        after_start + 1,
        "unknown kids within the interval fetch nothing"
    );

    // The JWKS server goes away: the last good set is kept.
    server.stop();
    let reply = order(&later, 20).send(proxy.addr).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(upstream.count(), 4);
    proxy.shutdown().await;
}

/// README, `[jwt] jwks_url`: an issuer behind a private CA is trusted
/// through `SSL_CERT_FILE` (read by rustls-native-certs in place of the
/// system roots). Run as real processes, since the variable is the
/// process's: without it the JWKS cannot be fetched and the token is
/// refused; with the CA's bundle the same token reaches the upstream.
#[tokio::test]
async fn a_jwks_url_behind_a_private_ca_is_trusted_through_ssl_cert_file() {
    let ca = Ca::new("replay-guard test issuer CA");
    let leaf = ca.server(&["127.0.0.1"]);
    let server = JwksServer::start_tls(&keys().jwks, leaf.chain.clone(), leaf.private_key()).await;
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("private-ca.pem");
    std::fs::write(&bundle, ca.pem()).unwrap();
    let upstream = Upstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"{}\"\n{}",
        upstream.url(),
        config(&format!("jwks_url = {:?}", server.url()), 300)
    );
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let issued = now();
    let token = keys().token(
        "ES256",
        json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": issued, "exp": issued + 600}),
    );
    // Timestamped when sent: a memory store's restart fence refuses
    // timestamps from before the process started.
    let order_now = |i: usize| {
        Req::post("/orders")
            .fresh(now(), &nonce(i))
            .header("Authorization", format!("Bearer {token}"))
            .body(r#"{"amount":1}"#)
    };
    let jwks_keys = |admin| async move {
        let text = support::metrics::scrape(admin).await;
        support::metrics::sample(&text, "replay_guard_jwks_keys{source=\"url\"}")
    };
    let published: Value = serde_json::from_str(&keys().jwks).unwrap();
    let published = published["keys"].as_array().unwrap().len() as f64;

    // The system roots alone: the handshake fails, no key is loaded.
    let untrusting = ProxyProcess::start_with_env(&toml, &[(HS_SECRET_ENV, HS_SECRET)]);
    let reply = order_now(1).send(untrusting.addr).await;
    assert_refused(&reply, 401, "bad_token", "a JWKS the proxy could not fetch");
    assert_eq!(jwks_keys(untrusting.admin.unwrap()).await, Some(0.0));
    assert_eq!(upstream.count(), 0);
    assert_eq!(server.hits(), 0, "no request got past the handshake");

    // SSL_CERT_FILE names the private CA: fetched, verified, forwarded.
    let bundle = bundle.to_str().unwrap();
    let trusting = ProxyProcess::start_with_env(
        &toml,
        &[(HS_SECRET_ENV, HS_SECRET), ("SSL_CERT_FILE", bundle)],
    );
    let reply = order_now(2).send(trusting.addr).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(jwks_keys(trusting.admin.unwrap()).await, Some(published));
    assert!(server.hits() >= 1);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {token}"),
        "the token reaches the upstream unchanged"
    );
}

#[tokio::test]
async fn a_failed_scheduled_refresh_keeps_the_last_good_set() {
    let server = JwksServer::start(&keys().jwks).await;
    let upstream = Upstream::start().await;
    let body = config(&format!("jwks_url = {:?}", server.url()), 1);
    let proxy = TestProxy::start(&upstream.url(), &body).await;
    let token = keys().token("EdDSA", claims("alice"));
    assert_eq!(order(&token, 1).send(proxy.addr).await.status, 200);
    // A broken document, then no server at all: two failed refreshes.
    server.serve("{\"keys\": [");
    let hits = server.hits();
    for _ in 0..50 {
        if server.hits() > hits {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(server.hits() > hits, "the schedule refreshed");
    assert_eq!(order(&token, 2).send(proxy.addr).await.status, 200);
    server.stop();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(order(&token, 3).send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 3);
    // What an operator alerts on: the failures are counted, and the set in
    // use still has every key.
    let text = support::metrics::scrape(proxy.admin.unwrap()).await;
    let refreshes = |result: &str| {
        support::metrics::sample(
            &text,
            &format!("replay_guard_jwks_refreshes_total{{result=\"{result}\"}}"),
        )
        .unwrap_or_else(|| panic!("no {result} series in\n{text}"))
    };
    assert!(refreshes("ok") >= 1.0, "the first fetch");
    assert!(
        refreshes("error") >= 2.0,
        "the broken document and the dead server"
    );
    let published: Value = serde_json::from_str(&keys().jwks).unwrap();
    assert_eq!(
        support::metrics::sample(&text, "replay_guard_jwks_keys{source=\"url\"}"),
        Some(published["keys"].as_array().unwrap().len() as f64),
        "the last good set is still in use"
    );
    assert!(!text.contains("127.0.0.1"), "no JWKS URL in a label");
    proxy.shutdown().await;
}

#[tokio::test]
async fn reload_picks_up_a_new_jwks_file_and_refuses_one_that_does_not_parse() {
    let next = KeySet::generate("next");
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start().await;
    let file = dir.path().join("replay-guard.toml");
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, &keys().jwks).unwrap();
    let toml =
        format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"{}\"\n{}",
        upstream.url(),
        config(&format!("jwks_file = {:?}", jwks_path.display().to_string()), 300)
    );
    std::fs::write(&file, &toml).unwrap();
    let proxy = TestProxy::start_file(&file).await;
    let new = next.token("RS256", claims("bob"));
    assert_refused(
        &order(&new, 1).send(proxy.addr).await,
        401,
        "bad_token",
        "before the reload",
    );

    std::fs::write(&jwks_path, next.jwks.as_bytes()).unwrap();
    let reload = Req::post("/reload").send(proxy.admin.unwrap()).await;
    assert_eq!(reload.status, 200, "{:?}", reload.body);
    assert_eq!(order(&new, 2).send(proxy.addr).await.status, 200);

    // A JWKS that does not parse: `check` and reload refuse it, naming
    // the file; the proxy keeps serving the last good keys.
    std::fs::write(
        &jwks_path,
        "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}",
    )
    .unwrap();
    let errors = replay_guard::config::Config::load(&file)
        .unwrap_err()
        .errors;
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&jwks_path.display().to_string()) && e.contains("symmetric")),
        "{errors:?}"
    );
    let reload = Req::post("/reload").send(proxy.admin.unwrap()).await;
    assert_ne!(reload.status, 200);
    assert_eq!(order(&new, 3).send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 2);
    proxy.shutdown().await;
}

#[test]
fn check_refuses_alg_none_hmac_against_a_jwks_and_routes_without_jwt() {
    let parse = support::config::problems;
    let route = "[[routes]]\nname = \"r\"\npath = \"/r\"\nidentity = \"jwt:sub\"\nrate_limit = { per_second = 1 }\n";
    let errors = parse(route);
    assert!(errors[0].contains("needs a [jwt] section"), "{errors:?}");
    let errors = parse(
        "[jwt]\njwks_url = \"http://127.0.0.1:9/jwks\"\nalgorithms = [\"none\", \"HS256\"]\n",
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("\"none\" is never accepted")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("HS256 is an HMAC algorithm")),
        "{errors:?}"
    );
    let errors = parse("[jwt]\njwks_file = \"/nonexistent/jwks.json\"\n");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("t.toml:5:13:") && e.contains("/nonexistent/jwks.json")),
        "{errors:?}"
    );
}

/// Nonces, idempotency keys and rate limits scoped by the verified claim.
async fn nonce_idempotency_and_rate_limit_by_claim(backend: Backend) {
    let (upstream, proxy, _dir) = start_with_file(&backend.store_toml().await).await;
    let tokens = mint(&[
        keys().spec("RS256", claims("alice")),
        keys().spec("ES256", claims("bob")),
        hs256(claims("alice")),
    ]);
    let (alice, bob, alice_hs) = (&tokens[0], &tokens[1], &tokens[2]);
    // One nonce, two subjects: two scopes.
    assert_eq!(order(alice, 1).send(proxy.addr).await.status, 200);
    assert_eq!(order(bob, 1).send(proxy.addr).await.status, 200);
    // The same subject with another token (another algorithm even): the
    // same scope, so the nonce is a replay.
    let reply = order(alice_hs, 1).send(proxy.addr).await;
    assert_refused(&reply, 409, "replayed_nonce", "alice's nonce again");
    assert_eq!(upstream.count(), 2);

    // One idempotency key: alice's retry is her stored answer, bob's is his own.
    let idem = |token: &str, i: usize| order(token, i).header("Idempotency-Key", "op-1");
    let first = idem(alice, 10).send(proxy.addr).await;
    assert_eq!(first.status, 200);
    first.assert_not_replayed();
    proxy.until_recorded(1).await;
    let retry = idem(alice_hs, 11).send(proxy.addr).await;
    retry.assert_replayed();
    assert_eq!(retry.body, first.body);
    let other = idem(bob, 12).send(proxy.addr).await;
    assert_eq!(other.status, 200);
    other.assert_not_replayed();
    assert_eq!(upstream.count(), 4);

    // Rate limit per subject: alice's burst of 2, then 429; bob unaffected.
    let search =
        |token: &str| Req::get("/search").header("Authorization", format!("Bearer {token}"));
    assert_eq!(search(alice).send(proxy.addr).await.status, 200);
    assert_eq!(search(alice_hs).send(proxy.addr).await.status, 200);
    let limited = search(alice).send(proxy.addr).await;
    assert_refused(&limited, 429, "rate_limited", "alice's third");
    assert_eq!(search(bob).send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 7);
    proxy.shutdown().await;
}

store_matrix! {
    targets {
        memory => Backend::Memory,
        dynamodb => Backend::Dynamo,
        dynalite => Backend::Dynalite,
    }
    cases { nonce_idempotency_and_rate_limit_by_claim }
}

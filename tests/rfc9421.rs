//! RFC 9421 routes end to end (SPEC §3.2), interoperating with a client
//! library nobody here wrote (pyauth's `http-message-signatures`): every
//! algorithm verifies through the real proxy, every tampering is refused
//! with its reason and nothing reaches the upstream, a replayed signature
//! is `replayed_nonce`.

mod support;

use std::sync::Once;

use support::client::{Reply, Req};
use support::httpsig::{keys_dir, sign_all, signed, Spec};
use support::proxy::{TestProxy, T0};
use support::upstream::Upstream;

/// 64 random bytes, base64 (the shape of RFC 9421's `test-shared-secret`).
const HMAC_SECRET_B64: &str =
    "xNWz3c5Qa0Vjl0p2cnl0ZXN0LWhtYWMtc2VjcmV0LWZvci1yZmM5NDIxLWludGVyb3AtdGVzdHMtb25seQ==";

const BODY: &str = r#"{"item":"widget","quantity":3}"#;
const TAG: &str = "partner-api";
const COMPONENTS: [&str; 4] = ["@method", "@authority", "@path", "@query"];

/// (algorithm, key id) of every configured key.
const KEYS: [(&str, &str); 5] = [
    ("hmac-sha256", "partner-hmac"),
    ("ed25519", "partner-ed25519"),
    ("ecdsa-p256-sha256", "partner-ecdsa"),
    ("rsa-pss-sha512", "partner-rsa-pss"),
    ("rsa-v1_5-sha256", "partner-rsa-v15"),
];

fn config() -> String {
    static ENV: Once = Once::new();
    ENV.call_once(|| std::env::set_var("RG_RFC9421_TEST_HMAC", HMAC_SECRET_B64));
    let dir = keys_dir();
    let mut toml = String::from(
        "[[keys]]\nid = \"partner-hmac\"\nsecret_env = \"RG_RFC9421_TEST_HMAC\"\nsecret_encoding = \"base64\"\nalgorithm = \"hmac-sha256\"\n",
    );
    for (algorithm, id) in &KEYS[1..] {
        let file = dir.join(format!("{algorithm}.pub.pem"));
        toml.push_str(&format!(
            "[[keys]]\nid = \"{id}\"\npublic_key_file = {:?}\nalgorithm = \"{algorithm}\"\n",
            file.to_str().unwrap()
        ));
    }
    toml.push_str(&format!(
        r#"
[[routes]]
name = "partner-orders"
methods = ["POST", "PUT"]
path = "/v1/{{*rest}}"
freshness = {{ max_skew_secs = 300 }}
nonce = {{ required = true }}
signature = {{ required = true, scheme = "rfc9421", tag = "{TAG}" }}

[[routes]]
name = "public"
path = "/public/{{*rest}}"
"#
    ));
    toml
}

async fn setup() -> (Upstream, TestProxy) {
    TestProxy::with_upstream("", &config()).await
}

fn order(n: usize) -> Req {
    Req::post(&format!("/v1/orders?batch={n}")).body(BODY)
}

fn nonce(n: usize) -> String {
    format!("rfc9421-interop-{n:08}")
}

/// `req` signed by the library with `algorithm`'s key, the route's tag and
/// a fresh nonce, covering the default components (+ content-digest).
fn spec(proxy: &TestProxy, req: &Req, (algorithm, key_id): (&str, &str), n: usize) -> Spec {
    let spec = Spec::new(req, &proxy.host(), algorithm, key_id, T0, &COMPONENTS)
        .set("nonce", nonce(n))
        .set("tag", TAG);
    if algorithm == "hmac-sha256" {
        spec.set("secret_b64", HMAC_SECRET_B64)
    } else {
        spec
    }
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

#[tokio::test]
async fn every_algorithm_signed_by_the_library_is_forwarded() {
    let (upstream, proxy) = setup().await;
    let reqs: Vec<Req> = (0..KEYS.len()).map(order).collect();
    let specs: Vec<Spec> = KEYS
        .iter()
        .enumerate()
        .map(|(n, key)| spec(&proxy, &reqs[n], *key, n))
        .collect();
    let headers = sign_all(&specs);
    for (n, (req, added)) in reqs.into_iter().zip(headers).enumerate() {
        let req = added.into_iter().fold(req, |r, (k, v)| r.header(&k, v));
        let reply = req.send(proxy.addr).await;
        assert_eq!(reply.status, 200, "{}: {:?}", KEYS[n].0, reply.body);
        let seen = upstream.seen();
        assert_eq!(seen.len(), n + 1, "{}", KEYS[n].0);
        assert_eq!(seen[n].path_and_query, format!("/v1/orders?batch={n}"));
        assert_eq!(&seen[n].body[..], BODY.as_bytes());
        assert_eq!(seen[n].headers["x-replay-guard-key-id"], KEYS[n].1);
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_replayed_signature_is_replayed_nonce() {
    let (upstream, proxy) = setup().await;
    let req = order(1);
    let req = signed(req.clone(), spec(&proxy, &req, KEYS[1], 1));
    assert_eq!(req.send(proxy.addr).await.status, 200);
    let replay = req.send(proxy.addr).await;
    assert_refused(&replay, 409, "replayed_nonce", "byte-for-byte resend");
    assert_eq!(upstream.count(), 1);
    proxy.shutdown().await;
}

/// Each covered component, the digest, `created`, `nonce`, `keyid` and
/// `tag` changed after signing: refused with its reason, nothing forwarded.
#[tokio::test]
async fn tampering_after_signing_is_refused_and_nothing_is_forwarded() {
    let (upstream, proxy) = setup().await;
    let base = order(7);
    let good = signed(base.clone(), spec(&proxy, &base, KEYS[1], 7));
    let input = good
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("signature-input"))
        .map(|(_, v)| v.clone())
        .expect("Signature-Input");
    let with_input = |text: String| good.clone().replace_header("Signature-Input", text);
    let other_body = r#"{"item":"widget","quantity":300}"#;
    let other_digest = replay_guard::checks::rfc9421::digest::header_value(
        other_body.as_bytes(),
        replay_guard::checks::rfc9421::digest::DigestAlgorithm::Sha256,
    );
    let mut method = good.clone();
    method.method = http::Method::PUT;
    let mut path = good.clone();
    path.path = "/v1/refunds?batch=7".into();
    let mut query = good.clone();
    query.path = "/v1/orders?batch=8".into();
    let cases: Vec<(&str, Req, u16, &str)> = vec![
        ("@method", method, 401, "bad_signature"),
        (
            "@authority",
            good.clone().replace_header("Host", "evil.example"),
            401,
            "bad_signature",
        ),
        ("@path", path, 401, "bad_signature"),
        ("@query", query, 401, "bad_signature"),
        (
            "body",
            good.clone().body(other_body),
            400,
            "bad_content_digest",
        ),
        (
            "content-digest with the body",
            good.clone()
                .body(other_body)
                .replace_header("Content-Digest", &other_digest),
            401,
            "bad_signature",
        ),
        (
            "created",
            with_input(input.replace(&format!("created={T0}"), &format!("created={}", T0 - 1))),
            401,
            "bad_signature",
        ),
        (
            "nonce",
            with_input(input.replace(&nonce(7), &nonce(8))),
            401,
            "bad_signature",
        ),
        (
            "keyid (another key)",
            with_input(input.replace("partner-ed25519", "partner-ecdsa")),
            401,
            "bad_signature",
        ),
        (
            "keyid (unknown)",
            with_input(input.replace("partner-ed25519", "partner-nobody")),
            401,
            "unknown_key",
        ),
        (
            "tag",
            with_input(input.replace(TAG, "other-api")),
            401,
            "bad_signature",
        ),
        (
            "alg",
            with_input(input.replace("alg=\"ed25519\"", "alg=\"hmac-sha256\"")),
            401,
            "bad_signature",
        ),
        (
            "content-digest not covered",
            with_input(input.replace(" \"content-digest\"", "")),
            401,
            "bad_signature",
        ),
        (
            "33 signature labels (more than a request may carry)",
            with_input(extra_labels(&input, 32)),
            401,
            "bad_signature",
        ),
        (
            "no Signature",
            good.clone().without_header("Signature"),
            401,
            "missing_signature",
        ),
        ("unsigned", base.clone(), 401, "missing_signature"),
    ];
    for (what, req, status, reason) in cases {
        let reply = req.send(proxy.addr).await;
        assert_refused(&reply, status, reason, what);
        if status == 401 {
            assert_eq!(
                reply.header("accept-signature").as_deref(),
                Some(
                    r#"sig=("@method" "@authority" "@path" "@query");created;nonce;tag="partner-api""#
                ),
                "{what}: a 401 names what the route requires"
            );
            assert_eq!(
                reply.header("www-authenticate").as_deref(),
                Some(r#"Signature realm="replay-guard", scheme="rfc9421""#),
                "{what}"
            );
        }
    }
    assert_eq!(upstream.count(), 0, "nothing tampered reaches the upstream");
    assert_eq!(
        good.send(proxy.addr).await.status,
        200,
        "the untouched request still passes"
    );
    let other = order(9);
    let signed_other = signed(other.clone(), spec(&proxy, &other, KEYS[1], 9));
    let input = signed_other
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("signature-input"))
        .map(|(_, v)| v.clone())
        .expect("Signature-Input");
    let reply = signed_other
        .replace_header("Signature-Input", extra_labels(&input, 31))
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200, "32 labels are within the bound");
    assert_eq!(upstream.count(), 2);
    proxy.shutdown().await;
}

/// `input` followed by `n` unsigned labels of empty inner lists.
fn extra_labels(input: &str, n: usize) -> String {
    let extra: Vec<String> = (0..n).map(|i| format!("extra{i}=()")).collect();
    format!("{input}, {}", extra.join(", "))
}

#[tokio::test]
async fn created_is_the_timestamp_and_nonce_a_signature_parameter() {
    let (upstream, proxy) = setup().await;
    let req = order(3);
    let cases = [
        (
            "stale created",
            spec(&proxy, &req, KEYS[0], 3).set("created", T0 - 301),
            400,
            "stale_timestamp",
        ),
        (
            "future created",
            spec(&proxy, &req, KEYS[0], 4).set("created", T0 + 301),
            400,
            "future_timestamp",
        ),
        (
            "no nonce",
            spec(&proxy, &req, KEYS[0], 5).set("nonce", Value::Null),
            400,
            "missing_nonce",
        ),
        (
            "short nonce",
            spec(&proxy, &req, KEYS[0], 6).set("nonce", "short"),
            400,
            "malformed_nonce",
        ),
    ];
    for (what, spec, status, reason) in cases {
        let reply = signed(req.clone(), spec).send(proxy.addr).await;
        assert_refused(&reply, status, reason, what);
    }
    // A timestamp header is not the freshness of an RFC 9421 route.
    let unsigned_fresh = req.clone().fresh(T0, &nonce(9));
    assert_refused(
        &unsigned_fresh.send(proxy.addr).await,
        401,
        "missing_signature",
        "headers only",
    );
    assert_eq!(upstream.count(), 0);
    proxy.shutdown().await;
}

/// The signature covers the path as received and the proxy forwards the
/// normalised path: a spelling the proxy would rewrite is refused, so the
/// upstream only ever receives the path that was signed.
#[tokio::test]
async fn a_path_spelling_the_proxy_would_rewrite_is_refused() {
    let (upstream, proxy) = setup().await;
    for (n, path) in [
        "/v1//orders",
        "/v1/./orders",
        "/v1/x/../orders",
        "/v1/%6Frders",
    ]
    .into_iter()
    .enumerate()
    {
        let req = Req::post(path).body(BODY);
        let reply = signed(req.clone(), spec(&proxy, &req, KEYS[1], 20 + n))
            .send(proxy.addr)
            .await;
        assert_refused(&reply, 401, "bad_signature", path);
    }
    assert_eq!(upstream.count(), 0);
    proxy.shutdown().await;
}

/// `replay-guard sign --scheme rfc9421` (HMAC with a base64 secret, and
/// Ed25519 with a private key file): its output, sent verbatim, verifies
/// through the proxy.
#[tokio::test]
async fn sign_scheme_rfc9421_output_verifies_through_the_proxy() {
    let (upstream, proxy) = setup().await;
    let url = format!("http://{}/v1/orders?batch=42", proxy.host());
    let ed_key = keys_dir().join("ed25519.key.pem");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "partner-hmac",
            vec![
                "--secret-env",
                "RG_RFC9421_TEST_HMAC",
                "--secret-encoding",
                "base64",
            ],
        ),
        (
            "partner-ed25519",
            vec![
                "--private-key-file",
                ed_key.to_str().unwrap(),
                "--algorithm",
                "ed25519",
            ],
        ),
    ];
    for (n, (key_id, key_args)) in cases.into_iter().enumerate() {
        let nonce = nonce(100 + n);
        let created = T0.to_string();
        let mut args = vec![
            "sign",
            "--scheme",
            "rfc9421",
            "--format",
            "json",
            "--url",
            &url,
            "--body",
            BODY,
            "--key-id",
            key_id,
            "--tag",
            TAG,
            "--timestamp",
            &created,
            "--nonce",
            &nonce,
        ];
        args.extend(key_args);
        let out = support::binary::run_cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let headers: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
        let names: Vec<&str> = headers.keys().map(String::as_str).collect();
        assert_eq!(
            names.len(),
            3,
            "Content-Digest, Signature-Input, Signature: {names:?}"
        );
        let req = headers
            .iter()
            .fold(Req::post("/v1/orders?batch=42").body(BODY), |r, (k, v)| {
                r.header(k, v.as_str().unwrap())
            });
        let reply = req.send(proxy.addr).await;
        assert_eq!(reply.status, 200, "{key_id}: {:?}", reply.body);
        assert_eq!(upstream.seen()[n].headers["x-replay-guard-key-id"], key_id);
    }
    let refused = support::binary::run_cli(&[
        "sign",
        "--scheme",
        "rfc9421",
        "--url",
        &format!("http://{}/v1//orders", proxy.host()),
        "--key-id",
        "partner-hmac",
        "--secret-env",
        "RG_RFC9421_TEST_HMAC",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("use the path \"/v1/orders\""));
    let v1 = support::binary::run_cli(&[
        "sign",
        "--url",
        &url,
        "--key-id",
        "k",
        "--secret-env",
        "RG_RFC9421_TEST_HMAC",
        "--tag",
        "x",
    ]);
    assert!(String::from_utf8_lossy(&v1.stderr).contains("--tag needs --scheme rfc9421"));
    proxy.shutdown().await;
}

/// `replay-guard loadgen --scheme rfc9421` (Ed25519 from a private key
/// file, the route's tag): every fresh request is forwarded, every replay
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_scheme_rfc9421_is_forwarded_and_its_replays_refused() {
    let (upstream, proxy) = setup().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    proxy.clock.set(now);
    let url = format!("http://{}/v1/orders", proxy.addr);
    let key = keys_dir().join("ed25519.key.pem");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_replay-guard"))
        .args([
            "loadgen",
            "--scheme",
            "rfc9421",
            "--url",
            &url,
            "--body-size",
            "64",
            "--concurrency",
            "2",
            "--requests",
            "40",
            "--replay-ratio",
            "0.25",
            "--key-id",
            "partner-ed25519",
            "--private-key-file",
            key.to_str().unwrap(),
            "--algorithm",
            "ed25519",
            "--tag",
            TAG,
            "--json",
            "--quiet",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output)
        .await
        .expect("loadgen ends by itself")
        .expect("loadgen output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(json["sent"], 40);
    assert_eq!(json["replays_admitted"], 0);
    // The replay ratio is a probability: how many of the 40 are fresh
    // varies; every fresh one executes once, every replay is refused.
    let fresh = json["fresh"]["sent"].as_u64().unwrap_or(0);
    let replays = json["replays"]["sent"].as_u64().unwrap_or(0);
    assert!(fresh >= 1 && replays >= 1, "{json}");
    assert_eq!(fresh + replays, 40, "{json}");
    assert_eq!(json["statuses"]["200"].as_u64(), Some(fresh), "{json}");
    assert_eq!(json["statuses"]["409"].as_u64(), Some(replays), "{json}");
    assert_eq!(
        json["reasons"]["replayed_nonce"].as_u64(),
        Some(replays),
        "{json}"
    );
    assert_eq!(upstream.count() as u64, fresh);
    proxy.shutdown().await;
}

use serde_json::Value;

//! Client-side signing, proved against the real proxy: the output of
//! `replay-guard sign`, of `clients/python/sign.py` and of
//! `clients/shell/sign.sh` (openssl) is used verbatim as request headers,
//! and each reproduces the SPEC's known-answer signature.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use support::client::Req;
use support::proxy::TestProxy;
use support::upstream::Upstream;

const SECRET: &str = "signcli-secret-4e1f9b20";
const BODY: &str = r#"{"amount":1250,"currency":"EUR"}"#;

/// The SPEC's known answer (§3).
const KAT_URL: &str = "http://payments.internal:8080/payments?dry_run=false";
const KAT_SECRET: &str = "s3cr3t-billing";
const KAT_TIMESTAMP: &str = "1764326400";
const KAT_NONCE: &str = "4f9c2a7e1b3d4c5a8e6f7a9b0c1d2e3f";
const KAT_SIGNATURE: &str = "v1=a500ea0bce531bc6c180bd3f5bf683024cf55c8b32ecc7c6b158c0ef67da7dbc";

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A proxy with one signed route whose key is read from a secret file
/// (written with a trailing newline), its manual clock set to now because
/// the clients sign the current time by default.
async fn setup() -> (Upstream, TestProxy, tempfile::NamedTempFile) {
    let mut secret_file = tempfile::NamedTempFile::new().unwrap();
    writeln!(secret_file, "{SECRET}").unwrap();
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
[[keys]]
id = "billing-svc"
secret_file = "{}"

[[routes]]
name = "signed-api"
path = "/v1/{{*rest}}"
freshness = {{ max_skew_secs = 120 }}
nonce = {{ required = true }}
signature = {{ required = true }}
"#,
        secret_file.path().display()
    );
    let proxy = TestProxy::start(&upstream.url(), &toml).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    proxy.clock.set(now);
    (upstream, proxy, secret_file)
}

fn run(command: &mut Command) -> String {
    let output: Output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn replay_guard_sign() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_replay-guard"));
    command.arg("sign");
    command
}

fn python_sign() -> Command {
    let mut command = Command::new("python3");
    command.arg(repo_file("clients/python/sign.py"));
    command
}

/// `Name: value` lines → a request carrying exactly those headers.
fn with_header_lines(mut req: Req, lines: &str) -> Req {
    let mut n = 0;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let (name, value) = line.split_once(": ").expect("Name: value");
        req = req.header(name, value);
        n += 1;
    }
    assert_eq!(n, 4, "timestamp, nonce, key id and signature: {lines}");
    req
}

fn header_from_lines(lines: &str, name: &str) -> String {
    lines
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {lines}"))
        .to_owned()
}

#[tokio::test]
async fn sign_headers_output_is_accepted_verbatim() {
    let (upstream, proxy, secret_file) = setup().await;
    let url = format!("http://{}/v1/payments?dry_run=false", proxy.addr);
    let lines = run(replay_guard_sign()
        .args(["--format", "headers", "--method", "post", "--url", &url])
        .args(["--body", BODY, "--key-id", "billing-svc", "--secret-file"])
        .arg(secret_file.path()));
    let request = with_header_lines(Req::post("/v1/payments?dry_run=false").body(BODY), &lines);
    let reply = request.send(proxy.addr).await;
    assert_eq!(reply.status, 200, "{:?}\n{lines}", reply.body);
    assert_eq!(request.send(proxy.addr).await.reason(), "replayed_nonce");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-replay-guard-key-id"], "billing-svc");

    // A body file, and the secret from the environment.
    let mut body_file = tempfile::NamedTempFile::new().unwrap();
    body_file.write_all(b"line one\nline two\n").unwrap();
    let lines = run(replay_guard_sign()
        .args(["--format", "headers", "--method", "PUT", "--url", &url])
        .args([
            "--key-id",
            "billing-svc",
            "--secret-env",
            "RG_SIGNCLI_SECRET",
        ])
        .arg("--body-file")
        .arg(body_file.path())
        .env("RG_SIGNCLI_SECRET", SECRET));
    let request = with_header_lines(
        Req::new("PUT", "/v1/payments?dry_run=false").body("line one\nline two\n"),
        &lines,
    );
    assert_eq!(request.send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn sign_json_output_reproduces_the_known_answer() {
    let out = run(replay_guard_sign()
        .args(["--format", "json", "--method", "POST", "--url", KAT_URL])
        .args(["--body", BODY, "--key-id", "billing-svc"])
        .args(["--timestamp", KAT_TIMESTAMP, "--nonce", KAT_NONCE])
        .args(["--secret-env", "RG_SIGNCLI_KAT"])
        .env("RG_SIGNCLI_KAT", KAT_SECRET));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["X-Signature"], KAT_SIGNATURE);
    assert_eq!(json["X-Request-Timestamp"], KAT_TIMESTAMP);
    assert_eq!(json["X-Request-Nonce"], KAT_NONCE);
    assert_eq!(json["X-Key-Id"], "billing-svc");
}

#[tokio::test]
async fn sign_curl_output_is_a_working_curl_command() {
    let (upstream, proxy, secret_file) = setup().await;
    let url = format!("http://{}/v1/payments?dry_run=false", proxy.addr);
    let command = run(replay_guard_sign()
        .args(["--method", "POST", "--url", &url, "--body", BODY])
        .args(["--key-id", "billing-svc", "--secret-file"])
        .arg(secret_file.path()));
    // Shape: one curl command, a -H per header, the body, the URL last.
    assert!(command.starts_with("curl -sS -X POST \\\n"), "{command}");
    for name in [
        "X-Request-Timestamp",
        "X-Request-Nonce",
        "X-Key-Id",
        "X-Signature",
    ] {
        assert!(
            command.contains(&format!("-H '{name}: ")),
            "{name}: {command}"
        );
    }
    assert!(
        command.contains(&format!("--data-binary '{BODY}'")),
        "{command}"
    );
    assert!(
        command.trim_end().ends_with(&format!("'{url}'")),
        "{command}"
    );
    assert!(!command.contains(SECRET));

    // And it works, when curl is installed.
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl not installed: shape checked only");
        return;
    }
    let curl_line = command.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .args(["-c", &format!("{} --max-time 10", curl_line.trim_end())])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), r#"{"hit":1}"#);
    assert_eq!(upstream.count(), 1);
    assert_eq!(
        upstream.seen()[0].headers["x-replay-guard-key-id"],
        "billing-svc"
    );
}

#[tokio::test]
async fn python_snippet_reproduces_the_known_answer() {
    let out = run(python_sign()
        .args(["--method", "POST", "--url", KAT_URL, "--body", BODY])
        .args(["--key-id", "billing-svc", "--secret-env", "RG_PY_KAT"])
        .args(["--timestamp", KAT_TIMESTAMP, "--nonce", KAT_NONCE])
        .env("RG_PY_KAT", KAT_SECRET));
    assert_eq!(header_from_lines(&out, "X-Signature"), KAT_SIGNATURE);
    assert_eq!(
        header_from_lines(&out, "X-Request-Timestamp"),
        KAT_TIMESTAMP
    );
    assert_eq!(header_from_lines(&out, "X-Request-Nonce"), KAT_NONCE);
    assert_eq!(header_from_lines(&out, "X-Key-Id"), "billing-svc");
}

#[tokio::test]
async fn python_snippet_headers_verify_through_the_proxy() {
    let (upstream, proxy, secret_file) = setup().await;
    // Uppercase host in the URL: the snippet lowercases it, like the proxy.
    let url = format!(
        "http://LOCALHOST:{}/v1/payments?dry_run=false&x=%41",
        proxy.addr.port()
    );
    let lines = run(python_sign()
        .args(["--method", "POST", "--url", &url, "--body", BODY])
        .args(["--key-id", "billing-svc", "--secret-file"])
        .arg(secret_file.path()));
    let request = with_header_lines(
        Req::post("/v1/payments?dry_run=false&x=%41")
            .body(BODY)
            .header("Host", format!("localhost:{}", proxy.addr.port())),
        &lines,
    );
    let reply = request.send(proxy.addr).await;
    assert_eq!(reply.status, 200, "{:?}\n{lines}", reply.body);
    assert_eq!(upstream.count(), 1);
    assert_eq!(
        upstream.seen()[0].path_and_query,
        "/v1/payments?dry_run=false&x=%41"
    );

    // JSON output, no body, a GET.
    let url = format!("http://{}/v1/accounts/7", proxy.addr);
    let out = run(python_sign()
        .args(["--method", "GET", "--url", &url, "--format", "json"])
        .args(["--key-id", "billing-svc", "--secret-env", "RG_PY_SECRET"])
        .env("RG_PY_SECRET", SECRET));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut request = Req::get("/v1/accounts/7");
    for (name, value) in json.as_object().unwrap() {
        request = request.header(name, value.as_str().unwrap());
    }
    assert_eq!(request.send(proxy.addr).await.status, 200);
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn openssl_snippet_reproduces_the_known_answer_and_verifies() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed: skipped");
        return;
    }
    let mut body = tempfile::NamedTempFile::new().unwrap();
    body.write_all(BODY.as_bytes()).unwrap();
    let script = repo_file("clients/shell/sign.sh");
    let out = run(Command::new("bash")
        .arg(&script)
        .args(["POST", "payments.internal:8080", "/payments?dry_run=false"])
        .arg(body.path())
        .args(["billing-svc", KAT_TIMESTAMP, KAT_NONCE])
        .env("SECRET", KAT_SECRET));
    assert_eq!(header_from_lines(&out, "X-Signature"), KAT_SIGNATURE);

    let (upstream, proxy, _secret_file) = setup().await;
    let lines = run(Command::new("bash")
        .arg(&script)
        .args(["POST", &proxy.host(), "/v1/payments?dry_run=false"])
        .arg(body.path())
        .arg("billing-svc")
        .env("SECRET", SECRET));
    let request = with_header_lines(Req::post("/v1/payments?dry_run=false").body(BODY), &lines);
    assert_eq!(request.send(proxy.addr).await.status, 200, "{lines}");
    assert_eq!(upstream.count(), 1);
}

/// The proxy verifies the path it forwards (normalised); `sign` signs that
/// same normal form, so any spelling of the URL it is given works — with
/// curl (which resolves dot segments itself) and sent as written.
#[tokio::test]
async fn sign_signs_the_normalised_path() {
    let (upstream, proxy, secret_file) = setup().await;
    for (n, spelling) in ["/v1//payments?q=1", "/v1/./x/../%70ayments?q=1"]
        .into_iter()
        .enumerate()
    {
        let url = format!("http://{}{spelling}", proxy.addr);
        let lines = run(replay_guard_sign()
            .args(["--format", "headers", "--method", "POST", "--url", &url])
            .args(["--key-id", "billing-svc", "--secret-file"])
            .arg(secret_file.path()));
        let reply = with_header_lines(Req::post(spelling), &lines)
            .send(proxy.addr)
            .await;
        assert_eq!(reply.status, 200, "{spelling}: {:?}", reply.body);
        assert_eq!(upstream.count(), n + 1);
        assert_eq!(upstream.seen()[n].path_and_query, "/v1/payments?q=1");
    }
    let url = format!("http://{}/v1/./payments", proxy.addr);
    let command = run(replay_guard_sign()
        .args(["--method", "POST", "--url", &url])
        .args(["--key-id", "billing-svc", "--secret-file"])
        .arg(secret_file.path()));
    if Command::new("curl").arg("--version").output().is_ok() {
        let output = tokio::task::spawn_blocking(move || {
            Command::new("sh")
                .args(["-c", &format!("{} --max-time 10", command.trim_end())])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            r#"{"hit":3}"#,
            "{output:?}"
        );
    }
}

/// `sign --header 'Idempotency-Key: …' | sh` works on a route that needs
/// the key: the header is in the curl command (and in `--format headers`),
/// the upstream executes once, a freshly signed retry with the same key
/// gets the stored answer. Without `--header` the route refuses.
#[tokio::test]
async fn sign_header_option_reaches_a_route_that_needs_an_idempotency_key() {
    let mut secret_file = tempfile::NamedTempFile::new().unwrap();
    writeln!(secret_file, "{SECRET}").unwrap();
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"
[[keys]]
id = "billing-svc"
secret_file = "{}"

[[routes]]
name = "create-payment"
methods = ["POST"]
path = "/payments"
freshness = {{ max_skew_secs = 120 }}
nonce = {{ required = true }}
signature = {{ required = true }}
idempotency = {{ required = true }}
"#,
        secret_file.path().display()
    );
    let proxy = TestProxy::start(&upstream.url(), &toml).await;
    proxy
        .clock
        .set(SystemTime::now().duration_since(UNIX_EPOCH).unwrap());
    let url = format!("http://{}/payments", proxy.addr);
    let sign = |extra: &[&str]| {
        run(replay_guard_sign()
            .args(["--url", &url, "--body", BODY, "--key-id", "billing-svc"])
            .arg("--secret-file")
            .arg(secret_file.path())
            .args(extra))
    };
    let lines = sign(&[
        "--header",
        "Idempotency-Key: order-42",
        "--format",
        "headers",
    ]);
    assert_eq!(header_from_lines(&lines, "Idempotency-Key"), "order-42");

    let sh = |command: String| async move {
        tokio::task::spawn_blocking(move || {
            Command::new("sh")
                .args(["-c", &format!("{} -i --max-time 10", command.trim_end())])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    // Without the header: refused, nothing forwarded.
    let refused = sh(sign(&[])).await;
    let text = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.contains("\"reason\":\"missing_idempotency_key\""),
        "{text}"
    );
    assert_eq!(upstream.count(), 0);

    // With it: executed once, then the stored answer for a fresh signature.
    let first = sh(sign(&["--header", "Idempotency-Key: order-42"])).await;
    let text = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    proxy.until_recorded(1).await;
    let retry = sh(sign(&["--header", "Idempotency-Key: order-42"])).await;
    let text = String::from_utf8_lossy(&retry.stdout).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("idempotent-replayed: true"),
        "{text}"
    );
    assert_eq!(upstream.count(), 1, "the retry was not executed again");
    assert_eq!(upstream.seen()[0].headers["idempotency-key"], "order-42");

    // A header that is part of the signature cannot be overridden.
    let output = replay_guard_sign()
        .args(["--url", &url, "--key-id", "billing-svc", "--secret-file"])
        .arg(secret_file.path())
        .args(["--header", "X-Signature: v1=00"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("part of the signature"));
}

/// With `--scheme rfc9421`, a `--component` naming a `--header` covers it:
/// the header is sent and listed in `Signature-Input`.
#[test]
fn rfc9421_signs_a_header_given_with_header() {
    let mut secret_file = tempfile::NamedTempFile::new().unwrap();
    writeln!(secret_file, "{SECRET}").unwrap();
    let lines = run(replay_guard_sign()
        .args([
            "--scheme",
            "rfc9421",
            "--url",
            "http://127.0.0.1:8080/orders",
        ])
        .args(["--body", BODY, "--key-id", "partner", "--secret-file"])
        .arg(secret_file.path())
        .args([
            "--component",
            "@method",
            "--component",
            "@authority",
            "--component",
            "@path",
        ])
        .args([
            "--component",
            "content-digest",
            "--component",
            "idempotency-key",
        ])
        .args([
            "--header",
            "Idempotency-Key: order-7",
            "--format",
            "headers",
        ]));
    assert_eq!(header_from_lines(&lines, "Idempotency-Key"), "order-7");
    let input = header_from_lines(&lines, "Signature-Input");
    assert!(input.contains("\"idempotency-key\""), "{input}");
    // Without the header, the component cannot be signed.
    let output = replay_guard_sign()
        .args([
            "--scheme",
            "rfc9421",
            "--url",
            "http://127.0.0.1:8080/orders",
        ])
        .args(["--key-id", "partner", "--secret-file"])
        .arg(secret_file.path())
        .args([
            "--component",
            "@method",
            "--component",
            "@path",
            "--component",
            "idempotency-key",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}

//! The process survives its own log output (SPEC §5, issue 18): a real
//! `replay-guard run` whose stderr reader has exited (every log write
//! fails with EPIPE) keeps answering requests, including the rejections
//! it logs, reloads on `POST /reload`, counts the lost lines, and drains
//! and exits 0 on SIGTERM.

mod support;

use std::time::{Duration, Instant};

use support::binary::ProxyProcess;
use support::client::Req;
use support::upstream::Upstream;

fn toml(upstream: &Upstream) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{}"
shutdown_grace_secs = 5

[[routes]]
name = "create-payment"
methods = ["POST"]
path = "/payments"
freshness = {{ max_skew_secs = 120 }}
nonce = {{ required = true }}
"#,
        upstream.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_pipe_never_stops_requests_reload_or_sigterm() {
    let upstream = Upstream::start().await;
    let mut proxy = ProxyProcess::start_then_close_stderr(&toml(&upstream));
    let admin = proxy.admin.expect("admin listener");
    // Let the reader thread drop its end of the pipe.
    tokio::time::sleep(Duration::from_millis(200)).await;

    for _ in 0..20 {
        // A rejection: logged at info, so each one writes to the dead pipe.
        let reply = Req::post("/payments").send(proxy.addr).await;
        assert_eq!(reply.status_reason(), (400, "missing_timestamp".into()));
        // A plain forward, logged too.
        let reply = Req::get("/other").send(proxy.addr).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }
    assert_eq!(
        upstream.count(),
        20,
        "only the pass-through requests arrive"
    );

    let reload = Req::post("/reload").send(admin).await;
    assert_eq!(reload.status, 200, "{:?}", reload.body);

    let text = support::metrics::scrape(admin).await;
    let dropped = support::metrics::sample(&text, "replay_guard_log_lines_dropped_total");
    assert!(
        dropped.is_some_and(|n| n >= 20.0),
        "lost lines are counted: {dropped:?}"
    );

    let asked = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "SIGTERM drains and exits 0: {status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "{:?}",
        asked.elapsed()
    );
}

// ---------------------------------------------------------------------
// What the lines say (issue 20): colour, the startup line, request ids,
// upstream failures, the access log.

/// Every stderr line of `proxy` as JSON (the process logs JSON).
fn json_lines(proxy: &ProxyProcess) -> Vec<serde_json::Value> {
    proxy
        .lines()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The first line whose message is `message`, waiting for it a little
/// (lines are written by a background thread).
async fn line_with(proxy: &ProxyProcess, message: &str) -> serde_json::Value {
    for _ in 0..50 {
        if let Some(line) = json_lines(proxy)
            .into_iter()
            .find(|l| l["fields"]["message"] == message)
        {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {message:?} line in {:#?}", proxy.lines());
}

/// A loopback port nothing listens on.
fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_startup_line_names_everything_in_plain_values() {
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{}"
workers = 2

[store.memory]
max_entries = 5000

[[routes]]
name = "create-payment"
methods = ["POST"]
path = "/payments"
freshness = {{ max_skew_secs = 120 }}
nonce = {{ required = true }}

[[routes]]
name = "health"
path = "/health"
"#,
        upstream.url()
    );
    let proxy = ProxyProcess::start(&toml);
    let line = line_with(&proxy, "replay-guard listening").await;
    let fields = &line["fields"];
    assert_eq!(fields["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        fields["config"],
        proxy.config_path().display().to_string().as_str()
    );
    assert_eq!(fields["listen"], proxy.addr.to_string().as_str());
    assert_eq!(
        fields["admin"],
        proxy.admin.expect("admin").to_string().as_str()
    );
    assert_eq!(fields["upstream"], upstream.url().as_str());
    assert_eq!(fields["store"], "memory (max_entries 5000)");
    assert_eq!(fields["routes"], 2);
    assert_eq!(fields["route_names"], "create-payment,health");
    assert_eq!(fields["workers"], 2);
    assert_eq!(
        json_lines(&proxy)
            .iter()
            .filter(|l| l["fields"]["message"] == "replay-guard listening")
            .count(),
        1,
        "one startup line"
    );
    Req::post("/payments").send(proxy.addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for line in proxy.lines() {
        assert!(
            !line.contains("Some(") && !line.contains("None"),
            "Rust Debug formatting in a log line: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_have_no_colour_codes_on_a_pipe_or_under_no_color() {
    let upstream = Upstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
        upstream.url()
    );
    let config = support::binary::config_file(&toml);
    for no_color in [None, Some("1")] {
        let mut command = support::binary::command();
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let mut child = command
            .args(["run", "--config"])
            .arg(config.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("a listening line");
            if line.contains("replay-guard listening") {
                break line;
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            !line.contains('\u{1b}'),
            "ANSI escape on a pipe (NO_COLOR={no_color:?}): {line:?}"
        );
        assert!(line.contains(" INFO "), "{line:?}");
    }
}

/// On a terminal (a pseudo-terminal from util-linux's `script`, as `docker
/// run -t` or an operator's shell gives one) the text log is coloured, and
/// `NO_COLOR` turns that off there too.
#[test]
fn text_logs_are_coloured_on_a_terminal_unless_no_color_is_set() {
    let config = support::binary::config_file(
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n",
    );
    let binary = env!("CARGO_BIN_EXE_replay-guard");
    for (no_color, coloured) in [(None, true), (Some("1"), false)] {
        // `timeout` ends the proxy (SIGTERM, then its drain) after its
        // startup line; everything the pty showed is `script`'s stdout.
        let inner = format!(
            "timeout -s TERM 3 {binary} run --config {}",
            config.path().display()
        );
        let mut command = std::process::Command::new("script");
        command
            .args(["-q", "-e", "-c", &inner, "/dev/null"])
            .env("RUST_LOG", "info")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("NO_COLOR")
            .stdin(std::process::Stdio::null());
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let out = command
            .output()
            .expect("util-linux `script` (Debian's essential bsdutils) runs the proxy on a pty");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|line| line.contains("replay-guard listening"))
            .unwrap_or_else(|| panic!("no startup line on the pty: {text:?}"));
        assert_eq!(
            line.contains('\u{1b}'),
            coloured,
            "NO_COLOR={no_color:?} on a terminal: {line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_and_upstream_lines_carry_the_request_id_and_say_why() {
    let upstream = Upstream::start().await;
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
upstream = "{}"
upstream_timeout_ms = 300

[[routes]]
name = "trial"
methods = ["POST"]
path = "/trial"
mode = "report"
freshness = {{ max_skew_secs = 120 }}
"#,
        upstream.url()
    );
    let proxy = ProxyProcess::start(&toml);
    let reply = Req::post("/trial")
        .header("X-Request-Id", "rid-report-1")
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200, "report mode forwards");
    let line = line_with(&proxy, "would reject (report mode): forwarding").await;
    assert_eq!(line["fields"]["request_id"], "rid-report-1", "{line}");
    assert_eq!(line["fields"]["reason"], "missing_timestamp");

    let reply = Req::get("/slow")
        .header("X-Request-Id", "rid-timeout-1")
        .header("x-test-delay-ms", 2000)
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status_reason(), (504, "upstream_timeout".into()));
    let line = line_with(&proxy, "upstream request failed").await;
    assert_eq!(line["fields"]["request_id"], "rid-timeout-1", "{line}");
    assert_eq!(
        line["fields"]["error"],
        format!("no response from {} within 300 ms", upstream.url()).as_str()
    );
    assert_eq!(upstream.count(), 2, "both reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_and_store_failures_name_the_request_and_the_cause() {
    let nowhere = closed_port();
    let no_store = closed_port();
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
upstream = "http://{nowhere}"

[store]
kind = "dynamodb"
on_error = "reject"
[store.dynamodb]
table = "replay-guard-log-test"
region = "us-east-1"
endpoint_url = "http://{no_store}"
timeout_ms = 2000

[[routes]]
name = "create-payment"
methods = ["POST"]
path = "/payments"
freshness = {{ max_skew_secs = 120 }}
nonce = {{ required = true }}
"#
    );
    let proxy = ProxyProcess::start(&toml);
    let reply = Req::get("/anything")
        .header("X-Request-Id", "rid-refused-1")
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status_reason(), (502, "upstream_unavailable".into()));
    let line = line_with(&proxy, "upstream request failed").await;
    assert_eq!(line["fields"]["request_id"], "rid-refused-1", "{line}");
    assert_eq!(
        line["fields"]["error"],
        format!("cannot connect to http://{nowhere}: connection refused").as_str()
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reply = Req::post("/payments")
        .fresh(now, &support::client::nonce(1))
        .header("X-Request-Id", "rid-store-1")
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status_reason(), (503, "store_unavailable".into()));
    let line = line_with(&proxy, "store failed; refusing (on_error = \"reject\")").await;
    assert_eq!(line["fields"]["request_id"], "rid-store-1", "{line}");
    let rejection = json_lines(&proxy)
        .into_iter()
        .find(|l| l["fields"]["reason"] == "store_unavailable")
        .expect("the failure line");
    assert_eq!(rejection["fields"]["request_id"], "rid-store-1");
}

/// The access-log lines once `n` have been read from the child's stderr
/// (bounded: the line is written as the exchange ends), after a moment
/// more for any extra line that should not be there.
async fn access_lines(proxy: &ProxyProcess, n: usize) -> Vec<serde_json::Value> {
    let read = || -> Vec<serde_json::Value> {
        json_lines(proxy)
            .into_iter()
            .filter(|l| l["target"] == "replay_guard::access")
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while read().len() < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    read()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_is_one_json_object_with_the_chosen_fields() {
    let upstream = Upstream::start().await;
    let server = |fields: &str| {
        format!(
            r#"[server]
listen = "127.0.0.1:0"
upstream = "{}"
access_log = true
{fields}

[[routes]]
name = "search"
path = "/search"
identity = "header:X-Client"
rate_limit = {{ per_minute = 1, burst = 1 }}
"#,
            upstream.url()
        )
    };

    // The default fields, like Envoy's default format.
    let proxy = ProxyProcess::start(&server(""));
    let reply = Req::post("/echo")
        .header("X-Request-Id", "rid-access-1")
        .header("x-test-body-size", 1234)
        .body("eleven byte")
        .send(proxy.addr)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), 1234);
    let lines = access_lines(&proxy, 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let fields = &lines[0]["fields"];
    assert_eq!(fields["request_id"], "rid-access-1");
    assert_eq!(fields["method"], "POST");
    assert_eq!(fields["route"], "unmatched");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["bytes_in"], 11);
    assert_eq!(fields["bytes_out"], 1234);
    assert!(fields["duration_ms"].as_f64().is_some(), "{fields}");
    assert!(fields["upstream_ms"].as_f64().is_some(), "{fields}");
    let client: std::net::SocketAddr = fields["client"].as_str().unwrap().parse().unwrap();
    assert!(client.ip().is_loopback());
    assert!(fields.get("identity").is_none() && fields.get("key_id").is_none());
    assert!(
        fields.get("reason").is_none(),
        "no reason on a forwarded answer"
    );
    drop(proxy);

    // Chosen fields: exactly those, with a hashed identity and the reason.
    let proxy = ProxyProcess::start(&server(
        r#"access_log_fields = ["status", "reason", "identity", "bytes_out"]"#,
    ));
    let identity = "alice-raw-identity-text";
    for _ in 0..2 {
        Req::get("/search")
            .header("X-Client", identity)
            .send(proxy.addr)
            .await;
    }
    let lines = access_lines(&proxy, 2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let refused = &lines[1]["fields"];
    assert_eq!(refused["status"], 429);
    assert_eq!(refused["reason"], "rate_limited");
    assert!(refused["bytes_out"].as_u64().is_some_and(|n| n > 0));
    let tag = refused["identity"].as_str().expect("identity tag");
    assert!(!tag.is_empty() && !tag.contains("alice"), "{tag}");
    let mut names: Vec<&str> = refused
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["bytes_out", "identity", "message", "reason", "status"]
    );
    assert!(
        proxy.lines().iter().all(|l| !l.contains(identity)),
        "the raw identity is never logged"
    );
    assert_eq!(upstream.count(), 2, "the echo and the first search");
}

#[test]
fn an_unknown_access_log_field_is_refused_with_a_suggestion() {
    let config = support::binary::config_file(
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\naccess_log_fields = [\"status\", \"byte_out\"]\n",
    );
    let output = support::binary::run_cli(&["check", "--config", config.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains(":4:") && text.contains("did you mean \"bytes_out\""),
        "{text}"
    );
}

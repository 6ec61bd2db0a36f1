//! `replay-guard check`: the compiled route table on a good config, every
//! problem with file:line:col on a bad one, and the exit codes.

mod support;

use support::binary::{command, config_file};

#[test]
fn check_prints_the_route_table_of_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let output = command()
        .args(["check", "--config", example])
        .env("BILLING_SVC_SECRET", "not-a-real-secret")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.starts_with("config OK:"), "{table}");
    for expected in [
        "create-payment",
        "POST",
        "/payments",
        "key_id",
        "signature",
        "nonce",
        "order-status",
        "pass-through",
        "(unmatched)",
    ] {
        assert!(table.contains(expected), "{expected} missing in\n{table}");
    }
    // The first route is listed first: match order.
    assert!(table.find("create-payment").unwrap() < table.find("order-status").unwrap());
    assert!(!table.contains("not-a-real-secret"));
}

#[test]
fn check_reports_every_problem_with_its_position_and_exits_1() {
    let file = config_file(
        "[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\n\n[[routes]]\nname = \"a\"\npath = \"/a/\"\nnonce = { required = true }\n\n[[routes]]\nname = \"b\"\npath = \"/b\"\nidentity = \"whoever\"\n",
    );
    let output = command()
        .args(["check", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let name = file.path().display().to_string();
    assert!(
        stderr.contains(&format!(
            "{name}:7:8: path \"/a/\" ends with '/': write \"/a\""
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:8:9: nonce needs freshness")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:13:12: identity \"whoever\" is unknown")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn unknown_keys_and_usage_errors_exit_1() {
    let file = config_file("[server]\nlisten = \"127.0.0.1:8080\"\nupstream = \"http://127.0.0.1:9000\"\nunmached = \"reject\"\n");
    let output = command()
        .args(["check", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(":4:1: unknown field `unmached`"),
        "{stderr}"
    );
    let usage = command().args(["check"]).output().unwrap();
    assert_eq!(
        usage.status.code(),
        Some(1),
        "missing --config is a usage error"
    );
    let missing = command()
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

/// A self-signed certificate and its key, as PEM.
fn certificate() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (cert.cert.pem(), cert.key_pair.serialize_pem())
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `check` is the truth about `run`: every startup refusal that can be
/// known from the file is a `check` error with its position, and `run`
/// refuses the same file with the same message (before binding anything).
#[test]
fn check_refuses_everything_run_refuses_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate();
    let (_, other_key) = certificate();
    let cert_file = write(dir.path(), "cert.pem", &cert);
    let key_file = write(dir.path(), "key.pem", &key);
    let other_key_file = write(dir.path(), "other-key.pem", &other_key);
    let garbage = write(dir.path(), "garbage.pem", "not a certificate\n");
    let missing = dir.path().join("missing.pem").display().to_string();
    let server = "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n";
    let tls = |cert: &str, key: &str| {
        format!("{server}[server.tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n")
    };
    let key_line = key.lines().nth(1).unwrap();
    let cases: Vec<(&str, String, String)> = vec![
        (
            "admin_listen equal to listen",
            "[server]\nlisten = \"127.0.0.1:18080\"\nadmin_listen = \"127.0.0.1:18080\"\nupstream = \"http://127.0.0.1:9\"\n".into(),
            ":3:16: admin_listen 127.0.0.1:18080 and listen 127.0.0.1:18080 cannot both be bound".into(),
        ),
        (
            "admin_listen on the wildcard of listen's port",
            "[server]\nlisten = \"127.0.0.1:18080\"\nadmin_listen = \"0.0.0.0:18080\"\nupstream = \"http://127.0.0.1:9\"\n".into(),
            "cannot both be bound".into(),
        ),
        (
            "a missing certificate file",
            tls(&missing, &key_file),
            format!(":4:1: cert_file {missing} cannot be read"),
        ),
        (
            "a certificate file that is not PEM",
            tls(&garbage, &key_file),
            format!("TLS certificate {garbage}: no PEM certificate found"),
        ),
        (
            "a key file that is not PEM",
            tls(&cert_file, &garbage),
            format!("TLS private key {garbage}"),
        ),
        (
            "a key that does not match the certificate",
            tls(&cert_file, &other_key_file),
            "TLS configuration".into(),
        ),
        (
            "an unreadable secret file",
            format!("{server}[[keys]]\nid = \"k\"\nsecret_file = {missing:?}\n"),
            ":6:15:".into(),
        ),
        (
            "an empty DynamoDB table name",
            format!("{server}[store]\nkind = \"dynamodb\"\n[store.dynamodb]\ntable = \"\"\nregion = \"us-east-1\"\n"),
            "is not a DynamoDB table name".into(),
        ),
    ];
    for (case, toml, expected) in cases {
        let file = config_file(&toml);
        for subcommand in ["check", "run"] {
            let output =
                support::binary::run_cli(&[subcommand, "--config", file.path().to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(1),
                "{case}: {subcommand}: {stderr}"
            );
            assert!(
                stderr.contains(&expected),
                "{case}: {subcommand}: {expected:?} not in\n{stderr}"
            );
            assert!(!stderr.contains(key_line), "no key material in messages");
        }
    }
    // The positive control: a matching pair is OK.
    let file = config_file(&tls(&cert_file, &key_file));
    let output = support::binary::run_cli(&["check", "--config", file.path().to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Valid but almost certainly not meant: `check` warns (exit 0, on stderr,
/// with the position and what to do) and `run` logs the same lines at
/// startup.
#[test]
fn check_and_run_warn_about_configurations_that_are_valid_but_not_meant() {
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n\n[[keys]]\nid = \"k\"\nsecret = \"inline-demo-secret\"\n\n[[routes]]\nname = \"pay\"\nmethods = [\"POST\"]\npath = \"/pay\"\nfreshness = { max_skew_secs = 60 }\nsignature = { required = true }\nidempotency = { required = true }\n\n[[routes]]\nname = \"transfers\"\npath = \"/transfers\"\nidentity = \"header:X-Client-Id\"\nfreshness = { max_skew_secs = 60 }\nnonce = { required = true }\n\n[[routes]]\nname = \"status\"\nmethods = [\"GET\"]\npath = \"/status\"\nrate_limit = { per_second = 5 }\n";
    let file = config_file(toml);
    let name = file.path().display().to_string();
    let output = support::binary::run_cli(&["check", "--config", &name]);
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let expected = [
        format!("{name}:11:12: warning: route \"pay\" checks only POST on /pay, and with [server] unmatched = \"forward\" every other method on /pay"),
        format!("{name}:15:15: warning: route \"pay\": idempotency on a signed route without a nonce"),
        format!("{name}:20:12: warning: route \"transfers\": identity = \"header:x-client-id\" without a required signature"),
    ];
    for line in &expected {
        assert!(stderr.contains(line.as_str()), "{line}\nnot in\n{stderr}");
    }
    assert!(
        stderr.contains(&format!(
            "{name}: warning: key \"k\": the secret is written inline"
        )),
        "run warns about it at startup, so check does: {stderr}"
    );
    assert_eq!(
        stderr.matches("warning:").count(),
        4,
        "a rate-limit-only GET route is no warning: {stderr}"
    );
    assert!(!stderr.contains("inline-demo-secret"));
    assert!(String::from_utf8(output.stdout)
        .unwrap()
        .starts_with("config OK"));

    // The fixes silence them.
    let fixed = toml
        .replace("upstream = \"http://127.0.0.1:9\"\n", "upstream = \"http://127.0.0.1:9\"\nunmatched = \"reject\"\n")
        .replace("idempotency = { required = true }", "idempotency = { required = true }\nnonce = { required = true }")
        .replace("nonce = { required = true }\n\n[[routes]]\nname = \"status\"", "nonce = { required = true }\nsignature = { required = true }\n\n[[routes]]\nname = \"status\"");
    let fixed_file = config_file(&fixed);
    let output =
        support::binary::run_cli(&["check", "--config", fixed_file.path().to_str().unwrap()]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("warning:").count(),
        1,
        "only the inline secret: {stderr}"
    );

    // run logs the same warnings at startup (its config is another file
    // with the same text).
    let proxy = support::binary::ProxyProcess::start(toml);
    let logged: Vec<String> = proxy
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["level"] == "WARN")
        .filter_map(|l| l["fields"]["message"].as_str().map(str::to_owned))
        .collect();
    for line in &expected {
        assert!(
            logged
                .iter()
                .any(|l| l.ends_with(&line[name.len()..]) || l.contains(&line[name.len()..])),
            "{line}\nnot logged in\n{logged:#?}"
        );
    }
}

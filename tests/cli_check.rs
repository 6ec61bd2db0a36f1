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

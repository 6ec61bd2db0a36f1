//! `replay-guard demo` end to end: the real binary, its exit code and the
//! outcomes its table shows.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_exits_zero_and_shows_every_outcome() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_replay-guard"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Bounded wait: the demo ends by itself; never leave it running.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("waiting on the demo").is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().expect("waiting on the demo").is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("demo did not end by itself within 60 s");
    }
    let output = child.wait_with_output().expect("demo output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    for outcome in [
        "200",
        "replayed_nonce",
        "stale_timestamp",
        "bad_signature",
        "Idempotent replay",
        "Idempotent-Replayed: true",
        "idempotency_key_reused",
        "webhook delivery (Stripe)",
        "webhook redelivery",
        "forged webhook",
        "429",
        "rate_limited",
    ] {
        assert!(
            stdout.contains(outcome),
            "{outcome} missing from:\n{stdout}"
        );
    }
    assert!(!stdout.contains("!! expected"), "{stdout}");
    assert!(
        stdout.contains("The upstream received 5 of 14 requests"),
        "{stdout}"
    );
    assert!(stdout.contains("replay-guard run --config"), "{stdout}");
}

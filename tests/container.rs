//! The container pieces: `replay-guard healthcheck` follows the configured
//! admin address (what the Dockerfile's `HEALTHCHECK` runs), and the
//! Dockerfile is built the way its comments promise (dependencies in their
//! own layer, the health check without a hard-wired port).

mod support;

use std::process::Command;
use std::sync::Arc;

use replay_guard::clock::{SharedClock, SystemClock};
use replay_guard::config::Config;
use support::binary::config_file;

fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_replay-guard"));
    command
        .arg("healthcheck")
        .args(args)
        .env_remove("REPLAY_GUARD_CONFIG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// A port free a moment ago (the admin listener must be written in the
/// file for the health check to follow it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_follows_the_configured_admin_address() {
    let port = free_port();
    // A wildcard admin listener is asked on loopback; the secret of a key
    // is not needed by the health check (it reads admin_listen only).
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"0.0.0.0:{port}\"\nupstream = \"http://127.0.0.1:9\"\n"
    );
    let file = config_file(&format!(
        "{toml}[[keys]]\nid = \"k\"\nsecret_env = \"RG_HEALTHCHECK_SURELY_UNSET\"\n"
    ));
    let path = file.path().to_str().unwrap().to_owned();
    let config = Config::parse(&toml, "healthcheck.toml").unwrap();
    let clock: SharedClock = Arc::new(SystemClock);
    let running = replay_guard::server::start(config, clock).await.unwrap();

    let by_flag = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || healthcheck(&["--config", &path], &[]))
    }
    .await
    .unwrap();
    assert_eq!(by_flag.status.code(), Some(0), "{by_flag:?}");
    // The image sets REPLAY_GUARD_CONFIG; HEALTHCHECK runs it bare.
    let by_env = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || healthcheck(&[], &[("REPLAY_GUARD_CONFIG", &path)]))
    }
    .await
    .unwrap();
    assert_eq!(by_env.status.code(), Some(0), "{by_env:?}");

    running.shutdown().await;
    let down = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || healthcheck(&["--config", &path], &[]))
    }
    .await
    .unwrap();
    assert_eq!(down.status.code(), Some(2), "{down:?}");
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}/healthz")),
        "{stderr}"
    );

    // No admin listener configured: a config problem, said as such.
    let none =
        config_file("[server]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n");
    let output = healthcheck(&["--config", none.path().to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("has no admin_listen"));
}

fn dockerfile() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap()
}

#[test]
fn the_dockerfile_health_check_reads_the_config_and_dependencies_have_their_own_layer() {
    let text = dockerfile();
    let check = text
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(check.contains("\"healthcheck\"]"), "{check}");
    assert!(!check.contains("9901"), "no hard-wired admin port: {check}");
    // The manifest is copied and the dependencies built before the sources.
    let manifest = text.find("COPY Cargo.toml Cargo.lock").unwrap();
    let deps = text.find("cargo build --release --locked").unwrap();
    let sources = text.find("COPY src ./src").unwrap();
    assert!(manifest < deps && deps < sources, "{text}");
}

//! The real `replay-guard` binary, started as a child process with a
//! config file; its address is read from its JSON log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The real binary with a config file; returns the child and its
/// listening addresses read from its JSON log.
pub fn spawn_binary(
    config: &str,
) -> (
    Child,
    std::net::SocketAddr,
    tempfile::NamedTempFile,
    std::sync::mpsc::Receiver<String>,
) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, config.as_bytes()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_replay-guard"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(file.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy logs its address");
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if json["fields"]["message"] == "replay-guard listening" {
            break json["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    (child, addr, file, rx)
}

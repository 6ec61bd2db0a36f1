//! The real `replay-guard` binary as a child process, for tests that need
//! a process boundary (kill -9, two replicas, CLI exit codes).
//!
//! Every child gets static dummy AWS credentials, a region and
//! `AWS_EC2_METADATA_DISABLED=true`, so nothing leaves 127.0.0.1. A
//! [`ProxyProcess`] is killed (SIGKILL) and reaped on drop, so a failing
//! test leaves no process behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::NamedTempFile;

/// How long a child may take to report its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The binary under test, with a loopback-only AWS environment.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_replay-guard"));
    command
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("REPLAY_GUARD_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

/// Write `toml` to a temporary file (kept alive by the returned handle).
pub fn config_file(toml: &str) -> NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp config file");
    std::io::Write::write_all(&mut file, toml.as_bytes()).expect("write config");
    file
}

/// Run a subcommand to completion (e.g. `init-table`), bounded in time.
pub fn run_cli(args: &[&str]) -> Output {
    let child = command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn replay-guard");
    let (tx, rx) = mpsc::channel();
    let id = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.expect("replay-guard output"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(id.to_string())
                .status();
            panic!("replay-guard {args:?} did not finish within 60 s");
        }
    }
}

/// `replay-guard run` in a child process.
pub struct ProxyProcess {
    /// The child; `None` once killed.
    child: Option<Child>,
    /// Public listener, as logged by the child.
    pub addr: SocketAddr,
    /// Admin listener, as logged by the child (if configured).
    pub admin: Option<SocketAddr>,
    /// Every stderr line so far, for failure messages.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The config file's path.
    path: std::path::PathBuf,
    /// The config file, when the process made it; deleted on drop.
    _config: Option<NamedTempFile>,
}

impl ProxyProcess {
    /// Start `replay-guard run --config <toml> --log-format json` and wait
    /// for its "replay-guard listening" line. Use `listen = "127.0.0.1:0"`.
    pub fn start(toml: &str) -> ProxyProcess {
        Self::start_with_env(toml, &[])
    }

    /// Like [`ProxyProcess::start`], with extra environment variables
    /// (e.g. a `secret_env` secret, or `RUST_LOG`).
    pub fn start_with_env(toml: &str, env: &[(&str, &str)]) -> ProxyProcess {
        Self::start_inner(toml, env, false)
    }

    /// Like [`ProxyProcess::start`], then close the read end of the
    /// child's stderr pipe (a log reader that exited): every later log
    /// write of the child fails with EPIPE.
    pub fn start_then_close_stderr(toml: &str) -> ProxyProcess {
        Self::start_inner(toml, &[], true)
    }

    /// Like [`ProxyProcess::start`], on a config file the test owns (to
    /// edit it, or reach it through symlinks as a ConfigMap mount does).
    pub fn start_path(path: &std::path::Path, env: &[(&str, &str)]) -> ProxyProcess {
        Self::spawn(path.to_path_buf(), None, env, false)
    }

    fn start_inner(toml: &str, env: &[(&str, &str)], close_stderr: bool) -> ProxyProcess {
        let config = config_file(toml);
        Self::spawn(config.path().to_path_buf(), Some(config), env, close_stderr)
    }

    fn spawn(
        path: std::path::PathBuf,
        config: Option<NamedTempFile>,
        env: &[(&str, &str)],
        close_stderr: bool,
    ) -> ProxyProcess {
        let mut command = command();
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .arg("--log-format")
            .arg("json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn replay-guard run");
        let stderr = child.stderr.take().expect("stderr pipe");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                // Keep draining until the child exits, so it never blocks
                // on a full pipe.
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let addrs = listening(&line);
                    log.lock().unwrap().push(line);
                    if let Some(addrs) = addrs {
                        let _ = tx.send(addrs);
                        if close_stderr {
                            // Dropping the reader closes the pipe.
                            return;
                        }
                    }
                }
            });
        }
        let mut process = ProxyProcess {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
            log,
            path,
            _config: config,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok((addr, admin)) => {
                process.addr = addr;
                process.admin = admin;
                process
            }
            Err(_) => {
                process.kill();
                panic!(
                    "replay-guard did not report its address; stderr:\n{}",
                    process.log.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// The child's process id (for `kill -TERM`, `kill -HUP`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The config file the child reads (rewrite it, then send SIGHUP).
    pub fn config_path(&self) -> &std::path::Path {
        &self.path
    }

    /// Send a signal by name (`TERM`, `HUP`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Wait (bounded) for the child to exit by itself; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        let child = self.child.as_mut().expect("child running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "child did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every stderr line so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Wait (bounded) until a stderr line contains `needle`: lines are
    /// read by a background thread, so one written a moment ago may not be
    /// here yet.
    pub async fn until_line(&self, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.lines().iter().any(|line| line.contains(needle)) {
            assert!(
                std::time::Instant::now() < deadline,
                "no line with {needle:?} in {:#?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (kill -9) and reap: no drain, no cleanup, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parse the JSON "replay-guard listening" log line.
fn listening(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &value["fields"];
    if fields["message"] != "replay-guard listening" {
        return None;
    }
    let addr = fields["listen"].as_str()?.parse().ok()?;
    // `admin` is an address or "none".
    let admin = fields["admin"].as_str().and_then(|a| a.parse().ok());
    Some((addr, admin))
}

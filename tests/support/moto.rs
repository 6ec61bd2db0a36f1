//! A local DynamoDB-compatible server (moto) for tests.
//!
//! Starts `scripts/moto_locked.py` on a free loopback port: moto behind one
//! lock, so conditional writes are atomic as in DynamoDB. The server exits
//! with the test process (it watches its parent), so the shared instance
//! needs no cleanup. Nothing here ever talks to anything but 127.0.0.1.
//!
//! ```ignore
//! mod support;
//! use support::moto::MotoServer;
//!
//! let moto = MotoServer::shared();                  // one per test binary
//! let settings = moto.fresh_table_settings().await;  // new table, TTL on
//! let store = DynamoStore::connect(&settings).await.unwrap();
//!
//! let own = MotoServer::start();   // a private server for outage tests
//! own.stop();                      // connection refused from now on
//! own.restart().await;             // same port; tables re-created, empty
//! own.pause(); own.resume();       // requests hang meanwhile; data kept
//! ```
//!
//! Set `REPLAY_GUARD_MOTO_URL=http://127.0.0.1:PORT` to make
//! [`MotoServer::shared`] use a server you started yourself.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use replay_guard::store::dynamodb::{init_table, DynamoSettings};

/// Operation timeout of the settings handed out: generous, because moto
/// serves one request at a time and CI machines are small.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A running (or stopped) moto server.
pub struct MotoServer {
    /// The loopback port; kept across `stop`/`restart`.
    port: u16,
    /// The server process and its stdout (kept open so it never sees
    /// a closed pipe); `None` when stopped or external.
    process: Mutex<Option<(Child, BufReader<ChildStdout>)>>,
    /// Tables made by `fresh_table_settings`, re-created on `restart`.
    tables: Mutex<Vec<String>>,
    /// Whether the server came from `REPLAY_GUARD_MOTO_URL` (not ours to stop).
    external: bool,
    /// Whether it ignores `ReturnValuesOnConditionCheckFailure`.
    no_old_items: bool,
}

/// Make the AWS SDK's environment safe for tests: fixed fake credentials,
/// a region, and no instance-metadata lookups. Done once per process,
/// before any client is built.
pub fn safe_aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
    });
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/moto_locked.py")
}

/// Spawn the script on `port` (0: any) and wait for its `PORT=` line.
fn spawn(port: u16, no_old_items: bool) -> (Child, BufReader<ChildStdout>, u16) {
    let mut command = Command::new("python3");
    command.arg(script()).arg("--port").arg(port.to_string());
    if no_old_items {
        command.arg("--no-old-items");
    }
    spawn_reporting_port(
        &mut command,
        "moto_locked.py",
        "is `moto[server]` installed? (pip install \"moto[server]\")",
    )
}

/// A table name no other test (of any process) uses.
pub fn unique_table_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "rg-test-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Start a local server process that prints `PORT=<n>` on its stdout once
/// it listens on 127.0.0.1; its stdout stays open (the server exits when
/// the pipe closes). `what` and `hint` name it in failures.
pub fn spawn_reporting_port(
    command: &mut Command,
    what: &str,
    hint: &str,
) -> (Child, BufReader<ChildStdout>, u16) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} could not be started: {e}; {hint}"));
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what}: no stdout pipe");
    };
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        let read = stdout.read_line(&mut line);
        let port = line.trim().strip_prefix("PORT=").map(str::parse::<u16>);
        match (read, port) {
            (Ok(_), Some(Ok(port))) => return (child, stdout, port),
            (Ok(n), None) if n > 0 => continue,
            (read, _) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("{what} did not report its port ({read:?}, {status:?}); {hint}");
            }
        }
    }
}

impl MotoServer {
    /// Start a private server on a free port; it is killed on drop.
    pub fn start() -> MotoServer {
        Self::spawned(false)
    }

    /// Like [`MotoServer::start`], but the server never returns the old
    /// item of a failed conditional write (as some DynamoDB-compatible
    /// servers do), so the store must fall back to a consistent read.
    pub fn start_without_old_items() -> MotoServer {
        Self::spawned(true)
    }

    fn spawned(no_old_items: bool) -> MotoServer {
        safe_aws_env();
        let (child, stdout, port) = spawn(0, no_old_items);
        MotoServer {
            port,
            process: Mutex::new(Some((child, stdout))),
            tables: Mutex::new(Vec::new()),
            external: false,
            no_old_items,
        }
    }

    /// A shared server started with [`MotoServer::start_without_old_items`].
    pub fn shared_without_old_items() -> &'static MotoServer {
        static SHARED: OnceLock<MotoServer> = OnceLock::new();
        SHARED.get_or_init(MotoServer::start_without_old_items)
    }

    /// The one server shared by every test of this test binary (or the one
    /// named by `REPLAY_GUARD_MOTO_URL`). Do not stop or pause it.
    pub fn shared() -> &'static MotoServer {
        static SHARED: OnceLock<MotoServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            safe_aws_env();
            match std::env::var("REPLAY_GUARD_MOTO_URL") {
                Ok(url) => {
                    let port = url
                        .strip_prefix("http://127.0.0.1:")
                        .and_then(|p| p.trim_end_matches('/').parse().ok())
                        .expect("REPLAY_GUARD_MOTO_URL must be http://127.0.0.1:PORT");
                    MotoServer {
                        port,
                        process: Mutex::new(None),
                        tables: Mutex::new(Vec::new()),
                        external: true,
                        no_old_items: false,
                    }
                }
                Err(_) => MotoServer::start(),
            }
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port, stable across `stop` and `restart`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Settings for `table` on this server with the given timeout.
    pub fn settings(&self, table: &str, timeout: Duration) -> DynamoSettings {
        DynamoSettings {
            table: table.to_owned(),
            region: "us-east-1".to_owned(),
            endpoint_url: Some(self.endpoint()),
            timeout,
        }
    }

    /// Create a uniquely named table (with `init_table`) and return its
    /// settings, with [`TEST_TIMEOUT`]; change `.timeout` as needed.
    pub async fn fresh_table_settings(&self) -> DynamoSettings {
        let table = unique_table_name();
        let settings = self.settings(&table, TEST_TIMEOUT);
        init_table(&settings).await.expect("init_table on moto");
        self.tables.lock().unwrap().push(table);
        settings
    }

    fn signal(&self, name: &str) {
        let guard = self.process.lock().unwrap();
        let (child, _) = guard.as_ref().expect("server is running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Make every request hang (an unresponsive store); data is kept.
    pub fn pause(&self) {
        self.signal("USR1");
    }

    /// Answer requests again after [`MotoServer::pause`].
    pub fn resume(&self) {
        self.signal("USR2");
    }

    /// Kill the server: connections are refused until `restart`.
    pub fn stop(&self) {
        assert!(!self.external, "cannot stop an external moto server");
        if let Some((mut child, _)) = self.process.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start a new server on the same port and re-create the tables made
    /// by `fresh_table_settings` (empty: moto keeps state in memory only).
    pub async fn restart(&self) {
        self.stop();
        let (child, stdout, port) = spawn(self.port, self.no_old_items);
        assert_eq!(port, self.port, "moto restarted on another port");
        *self.process.lock().unwrap() = Some((child, stdout));
        let tables = self.tables.lock().unwrap().clone();
        for table in tables {
            init_table(&self.settings(&table, TEST_TIMEOUT))
                .await
                .expect("re-creating a table after restart");
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.process.lock() {
            if let Some((mut child, _)) = guard.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

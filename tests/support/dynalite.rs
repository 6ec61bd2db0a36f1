//! A second, stricter DynamoDB-compatible server for tests: dynalite (npm),
//! started by `scripts/dynalite_server.js` on a free loopback port.
//!
//! Where moto is lenient, dynalite behaves like DynamoDB: it refuses, whole,
//! an item over 400 KB or a partition key over 2048 bytes
//! (`ValidationException`), and it never returns the old item of a failed
//! conditional write, so every collision goes through the store's
//! consistent-`GetItem` fallback. It keeps no TTL (expired items stay),
//! which every condition must tolerate anyway.
//!
//! ```ignore
//! let dynalite = DynaliteServer::shared();              // one per test binary
//! let settings = dynalite.fresh_table_settings().await; // new table via init_table
//! ```
//!
//! `scripts/test.sh` installs dynalite into `.tools/`; set
//! `REPLAY_GUARD_DYNALITE_URL=http://127.0.0.1:PORT` to use a server you
//! started yourself. Nothing here talks to anything but 127.0.0.1.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command};
use std::sync::{Mutex, OnceLock};

use replay_guard::store::dynamodb::{init_table, DynamoSettings};

use super::moto::{safe_aws_env, spawn_reporting_port, unique_table_name, TEST_TIMEOUT};

/// A running dynalite server; killed on drop.
pub struct DynaliteServer {
    /// The loopback port.
    port: u16,
    /// The server process and its stdout (kept open so it never sees a
    /// closed pipe); `None` when external.
    process: Mutex<Option<(Child, BufReader<ChildStdout>)>>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/dynalite_server.js")
}

impl DynaliteServer {
    /// Start a private server on a free port.
    pub fn start() -> DynaliteServer {
        safe_aws_env();
        let mut command = Command::new("node");
        command.arg(script()).arg("--port").arg("0");
        let (child, stdout, port) = spawn_reporting_port(
            &mut command,
            "dynalite_server.js",
            "is node on PATH and dynalite installed? (scripts/test.sh installs both: npm install --prefix .tools dynalite)",
        );
        DynaliteServer {
            port,
            process: Mutex::new(Some((child, stdout))),
        }
    }

    /// The one server shared by every test of this test binary (or the one
    /// named by `REPLAY_GUARD_DYNALITE_URL`).
    pub fn shared() -> &'static DynaliteServer {
        static SHARED: OnceLock<DynaliteServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            safe_aws_env();
            match std::env::var("REPLAY_GUARD_DYNALITE_URL") {
                Ok(url) => DynaliteServer {
                    port: url
                        .strip_prefix("http://127.0.0.1:")
                        .and_then(|p| p.trim_end_matches('/').parse().ok())
                        .expect("REPLAY_GUARD_DYNALITE_URL must be http://127.0.0.1:PORT"),
                    process: Mutex::new(None),
                },
                Err(_) => DynaliteServer::start(),
            }
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create a uniquely named table (with `init_table`) and return its
    /// settings, with [`TEST_TIMEOUT`].
    pub async fn fresh_table_settings(&self) -> DynamoSettings {
        let table = unique_table_name();
        let settings = DynamoSettings {
            table,
            region: "us-east-1".to_owned(),
            endpoint_url: Some(self.endpoint()),
            timeout: TEST_TIMEOUT,
        };
        init_table(&settings).await.expect("init_table on dynalite");
        settings
    }
}

impl Drop for DynaliteServer {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.process.lock() {
            if let Some((mut child, _)) = guard.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

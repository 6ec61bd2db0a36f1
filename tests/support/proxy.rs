//! The real proxy, started in-process from a TOML string on 127.0.0.1:0,
//! with a manual clock the test controls.

use std::net::SocketAddr;
use std::sync::Arc;

use replay_guard::clock::ManualClock;
use replay_guard::config::Config;
use replay_guard::server::{self, Running};

use super::upstream::Upstream;

/// The instant every test starts at (2025-11-28T10:40:00Z).
pub const T0: u64 = 1_764_326_400;

pub struct TestProxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub clock: Arc<ManualClock>,
    pub running: Option<Running>,
}

impl TestProxy {
    /// Start from a TOML text whose `{upstream}` is replaced by the URL.
    /// `[server]` with listen/upstream is added in front of `body`.
    pub async fn start(upstream: &str, body: &str) -> TestProxy {
        Self::start_full(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{body}"
        ))
        .await
    }

    /// A fresh recording upstream and a proxy in front of it: `server_extra`
    /// goes into `[server]`, then `body` (routes, keys, store).
    pub async fn with_upstream(server_extra: &str, body: &str) -> (Upstream, TestProxy) {
        let upstream = Upstream::start().await;
        let proxy = Self::start(&upstream.url(), &format!("{server_extra}\n{body}")).await;
        (upstream, proxy)
    }

    /// Start from a complete TOML text.
    pub async fn start_full(toml: &str) -> TestProxy {
        let mut config =
            Config::parse(toml, "test.toml").unwrap_or_else(|e| panic!("config:\n{e}"));
        // Tests start the clock at T0 and send timestamps from before it;
        // the restart fence is tested on its own, where the TOML names it.
        if !toml.contains("restart_fence") {
            config.store.restart_fence = false;
        }
        Self::run(config).await
    }

    /// Start from a config file (so it can be reloaded), with the
    /// restart fence as the file says.
    pub async fn start_file(path: &std::path::Path) -> TestProxy {
        Self::run(Config::load(path).unwrap_or_else(|e| panic!("config:\n{e}"))).await
    }

    async fn run(config: Config) -> TestProxy {
        let clock = ManualClock::at_secs(T0);
        let running = server::start(config, clock.clone())
            .await
            .expect("proxy starts");
        TestProxy {
            addr: running.addr,
            admin: running.admin_addr,
            clock,
            running: Some(running),
        }
    }

    /// Wait (bounded) until this proxy has finished `n` idempotency
    /// completion writes. The record is written after the answer is sent
    /// (off the client's critical path, issue 19), so a retry sent the
    /// moment the answer arrives may still find the key in flight (409,
    /// documented); a case that asserts the stored answer waits here first.
    /// Needs the admin listener (`start` and `with_upstream` open one).
    pub async fn until_recorded(&self, n: usize) {
        let admin = self
            .admin
            .expect("until_recorded reads the admin listener's /metrics");
        super::metrics::until_recorded(admin, n).await;
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

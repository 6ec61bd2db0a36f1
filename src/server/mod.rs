//! The server: binds the public proxy listener and the admin listener,
//! wires the proxy, its store and the reload handle together, and returns
//! a [`Running`] handle with graceful shutdown.
//!
//! [`start`] binds both listeners from the config (port 0 picks a free
//! port, which tests use), starts `workers` threads that each accept and
//! serve public connections on their own single-threaded event loop, and
//! returns a [`Running`] handle with the bound addresses. The admin
//! listener, the store's background tasks and signal handling stay on the
//! caller's runtime. Shutdown stops accepting,
//! turns `/readyz` to 503, lets in-flight requests finish within
//! `shutdown_grace`, then returns. The admin endpoints must never be served
//! on the public listener.
//!
//! By concern: `store` builds the configured store ([`build_store`]),
//! `workers` runs the public listener (accept loop, connection cap, worker
//! threads, connections), `admin` the admin endpoints and `reload` the
//! [`Reloader`]. This file only wires them together; it must never handle
//! a request itself.

mod admin;
mod reload;
mod store;
mod watch;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

pub use reload::{Reloaded, Reloader, Trigger};
pub use store::{build_store, dynamo_settings};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::store::{Store, StoreError};

/// The `target` of every log line the server writes: the same for all its
/// files, so log filters and log lines stay what they were before the
/// server was split into modules.
const LOG_TARGET: &str = "replay_guard::server";

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store could not be set up.
    #[error("cannot set up the store: {0}")]
    Store(#[from] StoreError),
    /// The TLS listener could not be set up.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A worker thread or its event loop could not be started.
    #[error("cannot start worker threads: {0}")]
    Workers(std::io::Error),
}

/// A running proxy.
#[derive(Debug)]
pub struct Running {
    /// Where the public listener is bound.
    pub addr: SocketAddr,
    /// Where the admin listener is bound, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// The metrics, for tests and the demo.
    pub metrics: Arc<Metrics>,
    shutdown: signal::Sender<bool>,
    task: JoinHandle<()>,
    reloader: Reloader,
}

impl Running {
    /// Start draining and wait until every connection finished (or the
    /// grace period ran out).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Resolve when the server has stopped (after a shutdown signal).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// The reload handle (for SIGHUP handlers).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// A sender that triggers shutdown (for signal handlers).
    pub fn shutdown_trigger(&self) -> signal::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Bind the listeners and serve until shut down.
pub async fn start(config: Config, clock: SharedClock) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::with_upstream_timeout(
        config.server.upstream_timeout,
    ));
    let store = build_store(&config, &clock, &metrics).await?;
    start_with_store(config, clock, store, metrics).await
}

/// Like [`start`], over an already built store.
pub async fn start_with_store(
    config: Config,
    clock: SharedClock,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
) -> Result<Running, StartError> {
    let tls = config
        .server
        .tls
        .as_ref()
        .map(crate::tls::acceptor)
        .transpose()?
        .map(|acceptor| Arc::new(ArcSwap::from_pointee(acceptor)));
    let listen = config.server.listen;
    let listener = bind(listen).await?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let admin = match config.server.admin_listen {
        Some(admin_addr) => Some(bind(admin_addr).await?),
        None => None,
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    for key in config.keys.values().filter(|k| k.inline) {
        tracing::warn!(target: LOG_TARGET, key_id = %key.id, "key secret is written inline in the config file: use secret_env or secret_file outside demos");
    }
    let path = PathBuf::from(&config.source);
    let config = Arc::new(config);
    let current = Arc::new(ArcSwap::from_pointee(Proxy::new(
        config.clone(),
        store,
        clock,
        metrics.clone(),
    )));
    let reloader = Reloader::new(current.clone(), path, tls.clone());
    let (shutdown, shutdown_rx) = signal::channel(false);
    let draining = Arc::new(AtomicBool::new(false));

    spawn_limiter_sweeper(&current, shutdown_rx.clone());
    if config.server.watch_config {
        watch::spawn(reloader.clone(), shutdown_rx.clone());
    }

    if let Some(admin) = admin {
        let reloader = reloader.clone();
        let draining = draining.clone();
        let stop = shutdown_rx.clone();
        tokio::spawn(admin::serve_admin(admin, reloader, draining, stop));
    }

    log_startup(&config, addr, admin_addr);
    let task = workers::spawn_workers(listener, tls, current, config, draining, shutdown_rx)?;
    Ok(Running {
        addr,
        admin_addr,
        metrics,
        shutdown,
        task,
        reloader,
    })
}

/// The one startup line: version, config file, bound addresses, upstream,
/// store, routes and workers — each a plain value (`admin = "none"`, never
/// a Rust `Some(…)`).
fn log_startup(config: &Config, addr: SocketAddr, admin: Option<SocketAddr>) {
    let admin = admin.map_or_else(|| "none".to_owned(), |a| a.to_string());
    let upstream = &config.server.upstream;
    let upstream = format!("{}://{}", upstream.scheme, upstream.authority);
    let store = store::describe(config);
    let routes: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    tracing::info!(
        target: LOG_TARGET,
        version = env!("CARGO_PKG_VERSION"),
        config = %config.source,
        listen = %addr,
        admin = %admin,
        upstream = %upstream,
        store = %store,
        routes = routes.len(),
        route_names = %routes.join(","),
        workers = config.server.workers,
        tls = config.server.tls.is_some(),
        "replay-guard listening"
    );
}

/// Bind one listener; the error names the configured address.
async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Rate-limit state sweeper: every 10 s, forget the idle rate-limit
/// identities of the current generation, until shutdown or until the
/// proxy is gone.
fn spawn_limiter_sweeper(current: &Arc<ArcSwap<Proxy>>, mut stop: signal::Receiver<bool>) {
    let proxy = Arc::downgrade(current);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let Some(proxy) = proxy.upgrade() else { break };
            proxy.load().sweep_limiters();
        }
    });
}

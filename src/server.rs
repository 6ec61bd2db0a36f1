//! Listeners: the public proxy listener and the admin listener, with a
//! connection cap, header-read timeout and graceful shutdown.
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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::body::{self, Body};
use crate::clock::SharedClock;
use crate::config::{Config, ConfigErrors, StoreKind};
use crate::forward::Peer;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::store::dynamodb::{DynamoSettings, DynamoStore};
use crate::store::memory::MemoryStore;
use crate::store::{MeteredStore, Store, StoreError};

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
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    reloader: Reloader,
}

/// Swaps in a new configuration generation for new requests; in-flight
/// requests finish on the one they started with.
#[derive(Debug, Clone)]
pub struct Reloader {
    current: Arc<ArcSwap<Proxy>>,
    path: PathBuf,
}

impl Reloader {
    /// Re-read the config file; if valid, swap routes, keys and limits
    /// atomically (unchanged rate-limit rules keep their state). If invalid,
    /// keep serving the old config and return the errors.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let old = self.current.load_full();
        let result = Config::load(&self.path);
        old.metrics().reload(result.is_ok());
        let config = match result {
            Ok(config) => config,
            Err(errors) => {
                tracing::error!(errors = %errors, "config reload failed; still serving the previous config");
                return Err(errors);
            }
        };
        let before = old.config();
        let needs_restart = [
            ("listen", before.server.listen != config.server.listen),
            (
                "admin_listen",
                before.server.admin_listen != config.server.admin_listen,
            ),
            (
                "tls",
                before.server.tls.is_some() != config.server.tls.is_some(),
            ),
            (
                "max_connections",
                before.server.max_connections != config.server.max_connections,
            ),
            ("workers", before.server.workers != config.server.workers),
            (
                "header_read_timeout_ms",
                before.server.header_read_timeout != config.server.header_read_timeout,
            ),
            (
                "shutdown_grace_secs",
                before.server.shutdown_grace != config.server.shutdown_grace,
            ),
            (
                "[store]",
                format!("{:?}", before.store) != format!("{:?}", config.store),
            ),
        ];
        for (key, changed) in needs_restart {
            if changed {
                tracing::warn!(
                    key,
                    "changed in the config file; takes effect only after a restart"
                );
            }
        }
        self.current.store(Arc::new(old.reload(Arc::new(config))));
        tracing::info!(path = %self.path.display(), "config reloaded");
        Ok(())
    }
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
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Build the configured store (memory or DynamoDB), wrapped for metrics.
pub async fn build_store(
    config: &Config,
    clock: &SharedClock,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Store>, StoreError> {
    let inner: Arc<dyn Store> = match (config.store.kind, &config.store.dynamodb) {
        (StoreKind::Dynamodb, Some(dynamo)) => {
            Arc::new(DynamoStore::connect(&dynamo_settings(dynamo)).await?)
        }
        _ => {
            let memory = Arc::new(MemoryStore::new(config.store.max_entries));
            memory.spawn_purger(clock.clone(), Duration::from_secs(5));
            memory
        }
    };
    Ok(Arc::new(MeteredStore::new(inner, metrics.clone())))
}

/// DynamoDB settings from the config.
pub fn dynamo_settings(dynamo: &crate::config::DynamoConfig) -> DynamoSettings {
    DynamoSettings {
        table: dynamo.table.clone(),
        region: dynamo.region.clone(),
        endpoint_url: dynamo.endpoint_url.clone(),
        timeout: dynamo.timeout,
    }
}

/// Bind the listeners and serve until shut down.
pub async fn start(config: Config, clock: SharedClock) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
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
        .transpose()?;
    let listen = config.server.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let admin = match config.server.admin_listen {
        Some(admin_addr) => {
            let admin = TcpListener::bind(admin_addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: admin_addr,
                    source,
                })?;
            Some(admin)
        }
        None => None,
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    for key in config.keys.values().filter(|k| k.inline) {
        tracing::warn!(key_id = %key.id, "key secret is written inline in the config file: use secret_env or secret_file outside demos");
    }
    let path = PathBuf::from(&config.source);
    let config = Arc::new(config);
    let current = Arc::new(ArcSwap::from_pointee(Proxy::new(
        config.clone(),
        store,
        clock,
        metrics.clone(),
    )));
    let reloader = Reloader {
        current: current.clone(),
        path,
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let draining = Arc::new(AtomicBool::new(false));

    // Rate-limit state sweeper.
    {
        let proxy = Arc::downgrade(&current);
        let mut stop = shutdown_rx.clone();
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

    if let Some(admin) = admin {
        let reloader = reloader.clone();
        let draining = draining.clone();
        let stop = shutdown_rx.clone();
        tokio::spawn(serve_admin(admin, reloader, draining, stop));
    }

    let task = spawn_workers(listener, tls, current, config, draining, shutdown_rx)?;
    tracing::info!(%addr, admin = ?admin_addr, "replay-guard listening");
    Ok(Running {
        addr,
        admin_addr,
        metrics,
        shutdown,
        task,
        reloader,
    })
}

/// Serve the public listener on `config.server.workers` threads, each
/// running its own single-threaded event loop (like nginx's worker
/// processes): a connection, its upstream connections and its tasks stay on
/// one thread, so nothing per request crosses threads. One accept loop on
/// the caller's runtime takes a connection slot, accepts, and hands the
/// connection to the worker with the fewest open connections (a shared
/// listening socket would let whichever worker wakes first take a whole
/// burst of connections). The returned task ends when every worker has
/// drained.
fn spawn_workers(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    current: Arc<ArcSwap<Proxy>>,
    config: Arc<Config>,
    draining: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StartError> {
    let workers = config.server.workers.max(1);
    // A worker's event loop stays up until every worker has drained: an
    // in-flight request elsewhere may still use a store connection it owns.
    let all_drained = Arc::new(tokio::sync::Barrier::new(workers));
    let mut dispatch = Vec::with_capacity(workers);
    let mut done = Vec::with_capacity(workers);
    for index in 0..workers {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Workers)?;
        let (handoff, accepted) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            tls: tls.clone(),
            current: current.clone(),
            config: config.clone(),
            accepted,
            open: open.clone(),
        };
        let (finished, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let all_drained = all_drained.clone();
        std::thread::Builder::new()
            .name(format!("rg-worker-{index}"))
            .spawn(move || {
                crate::upstream::pin_worker_thread(index);
                runtime.block_on(async move {
                    worker.run().await;
                    all_drained.wait().await;
                });
                drop(runtime);
                let _ = finished.send(());
            })
            .map_err(StartError::Workers)?;
        dispatch.push(Dispatch { handoff, open });
        done.push(finished_rx);
    }
    let slots = Arc::new(Semaphore::new(config.server.max_connections));
    Ok(tokio::spawn(async move {
        accept_loop(listener, dispatch, slots, draining, stop).await;
        for finished in done {
            let _ = finished.await;
        }
    }))
}

/// A connection accepted for a worker, with its connection slot.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// The accept loop's handle on one worker.
struct Dispatch {
    handoff: mpsc::UnboundedSender<Accepted>,
    /// Connections the worker has open (or queued).
    open: Arc<AtomicUsize>,
}

/// Accept until told to stop, then close the listener: dropping the
/// hand-offs tells every worker to drain.
async fn accept_loop(
    listener: TcpListener,
    dispatch: Vec<Dispatch>,
    slots: Arc<Semaphore>,
    draining: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // Back-pressure: wait for a free connection slot before accepting.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "cannot hand the connection to a worker");
                continue;
            }
        };
        let Some(worker) = dispatch
            .iter()
            .min_by_key(|worker| worker.open.load(Ordering::Relaxed))
        else {
            break;
        };
        worker.open.fetch_add(1, Ordering::Relaxed);
        if worker
            .handoff
            .send(Accepted {
                stream,
                peer,
                permit,
            })
            .is_err()
        {
            worker.open.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(%peer, "a worker thread has stopped; connection dropped");
        }
    }
    draining.store(true, Ordering::SeqCst);
    drop(listener);
    tracing::info!("draining in-flight requests");
}

/// One worker thread: serves the connections handed to it until the
/// accept loop stops, then drains them within `shutdown_grace`.
struct Worker {
    tls: Option<TlsAcceptor>,
    current: Arc<ArcSwap<Proxy>>,
    config: Arc<Config>,
    accepted: mpsc::UnboundedReceiver<Accepted>,
    open: Arc<AtomicUsize>,
}

/// Counts a worker's connection as closed when its task ends, however.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Worker {
    async fn run(mut self) {
        let builder = http_builder(&self.config);
        let graceful = GracefulShutdown::new();
        let handshake_timeout = self.config.server.header_read_timeout;
        while let Some(Accepted {
            stream,
            peer,
            permit,
        }) = self.accepted.recv().await
        {
            let open = OpenConnection(self.open.clone());
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, %peer, "worker cannot take the connection");
                    continue;
                }
            };
            let proxy = self.current.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                serve_accepted(
                    stream,
                    peer,
                    tls,
                    builder,
                    proxy,
                    watcher,
                    handshake_timeout,
                )
                .await;
                drop(permit);
                drop(open);
            });
        }
        let deadline = tokio::time::Instant::now() + self.config.server.shutdown_grace;
        if tokio::time::timeout_at(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period ended with requests still in flight");
        }
        // Claimed idempotent requests whose client hung up run on their
        // own tasks, possibly on this thread: keep the event loop up until
        // every one of them (on any worker) has recorded its answer.
        let detached = self.current.load().detached_tasks().clone();
        detached.close();
        if tokio::time::timeout_at(deadline, detached.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = detached.len(),
                "shutdown grace period ended with idempotent requests still being recorded; their keys stay leased until lease_secs"
            );
        }
    }
}

fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.server.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    builder
}

/// One accepted connection: wait (bounded) for its first byte or its TLS
/// handshake, then serve it.
async fn serve_accepted(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    proxy: Arc<ArcSwap<Proxy>>,
    watcher: Watcher,
    handshake_timeout: Duration,
) {
    match tls {
        None => {
            // hyper-util sniffs the HTTP version before any timeout
            // applies: bound the wait for the first byte ourselves,
            // so silent connections cannot hold every slot.
            let mut first = [0u8; 1];
            match tokio::time::timeout(handshake_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {
                    serve_connection(builder, TokioIo::new(stream), proxy, peer, false, watcher)
                        .await
                }
                _ => tracing::debug!(%peer, "no request within header_read_timeout"),
            }
        }
        Some(acceptor) => {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    // ALPN decided the protocol: no sniffing needed.
                    let builder = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        builder.http2_only()
                    } else {
                        builder.http1_only()
                    };
                    serve_connection(builder, TokioIo::new(stream), proxy, peer, true, watcher)
                        .await
                }
                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Serve one client connection (plain or TLS) until it ends or drains.
async fn serve_connection<I>(
    builder: auto::Builder<TokioExecutor>,
    io: I,
    current: Arc<ArcSwap<Proxy>>,
    peer: SocketAddr,
    https: bool,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = Peer::new(peer, https);
    let service = service_fn(move |request: Request<Incoming>| {
        // Each request runs on the config generation current when it arrived.
        let proxy = current.load_full();
        // Boxed: the request path's future is large, and hyper moves the
        // service future around; a box makes each move a pointer copy.
        Box::pin(proxy.handle(request, peer.clone()))
    });
    let connection = builder.serve_connection(io, service).into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

async fn serve_admin(
    listener: TcpListener,
    reloader: Reloader,
    draining: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
                // Keep answering (readyz = 503) while the proxy drains.
                draining.store(true, Ordering::SeqCst);
                continue;
            }
        };
        let reloader = reloader.clone();
        let draining = draining.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let reloader = reloader.clone();
            let draining = draining.clone();
            async move { Ok::<_, Infallible>(admin(request, &reloader, &draining).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

async fn admin(
    request: Request<Incoming>,
    reloader: &Reloader,
    draining: &AtomicBool,
) -> Response<Body> {
    let proxy = reloader.current.load_full();
    let text = |status: StatusCode, body: String| {
        let mut response = Response::new(body::full(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    };
    if request.uri().path() == "/reload" {
        if request.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "POST /reload\n".into());
        }
        return match reloader.reload() {
            Ok(()) => text(StatusCode::OK, "reloaded\n".into()),
            Err(errors) => text(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{errors}\nstill serving the previous config\n"),
            ),
        };
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            if draining.load(Ordering::SeqCst) {
                return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
            }
            match proxy.store().ping().await {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(_) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store unreachable\n".into(),
                ),
            }
        }
        "/metrics" => {
            let mut response = text(StatusCode::OK, proxy_metrics(&proxy));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

fn proxy_metrics(proxy: &Proxy) -> String {
    proxy.metrics().encode()
}

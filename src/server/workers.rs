//! The public listener: one accept loop with the connection cap
//! (`max_connections`), `workers` threads each running its own
//! single-threaded event loop, the per-connection first-byte / TLS
//! handshake bound (`header_read_timeout`), the HTTP/1 and HTTP/2 builder,
//! and the drain within `shutdown_grace`.
//!
//! This module must never serve the admin endpoints, and must never accept
//! a connection without first holding a connection slot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::tls::SharedAcceptor;

use super::{StartError, LOG_TARGET};
use crate::config::Config;
use crate::forward::Peer;
use crate::proxy::Proxy;

/// Serve the public listener on `config.server.workers` threads, each
/// running its own single-threaded event loop (like nginx's worker
/// processes): a connection, its upstream connections and its tasks stay on
/// one thread, so nothing per request crosses threads. One accept loop on
/// the caller's runtime takes a connection slot, accepts, and hands the
/// connection to the worker with the fewest open connections (a shared
/// listening socket would let whichever worker wakes first take a whole
/// burst of connections). The returned task ends when every worker has
/// drained.
pub(super) fn spawn_workers(
    listener: TcpListener,
    tls: Option<SharedAcceptor>,
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
            index,
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
                    tracing::warn!(target: LOG_TARGET, error = %e, "accept failed");
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
                tracing::warn!(target: LOG_TARGET, error = %e, %peer, "cannot hand the connection to a worker");
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
            tracing::error!(target: LOG_TARGET, %peer, "a worker thread has stopped; connection dropped");
        }
    }
    draining.store(true, Ordering::SeqCst);
    drop(listener);
    tracing::info!(target: LOG_TARGET, "draining in-flight requests");
}

/// One worker thread: serves the connections handed to it until the
/// accept loop stops, then drains them within `shutdown_grace`.
struct Worker {
    /// Which worker: names its stack of idle upstream connections.
    index: usize,
    /// The TLS acceptor of the current config generation (swapped by
    /// reload: a new CA file applies to new connections).
    tls: Option<SharedAcceptor>,
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
                    tracing::warn!(target: LOG_TARGET, error = %e, %peer, "worker cannot take the connection");
                    continue;
                }
            };
            let proxy = self.current.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = self.tls.clone();
            let worker = self.index;
            tokio::spawn(async move {
                serve_accepted(
                    stream,
                    Client { peer, worker },
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
            tracing::warn!(target: LOG_TARGET, "shutdown grace period ended with requests still in flight");
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
            tracing::warn!(target: LOG_TARGET,
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

/// Who is on the other end of an accepted connection, and which worker
/// serves it.
#[derive(Debug, Clone, Copy)]
struct Client {
    peer: SocketAddr,
    worker: usize,
}

/// How the client reached us: TLS or not, and with which verified client
/// certificate.
struct Transport {
    https: bool,
    client_cert: Option<crate::identity::CertIdentity>,
}

/// One accepted connection: wait (bounded) for its first byte or its TLS
/// handshake, then serve it.
async fn serve_accepted(
    stream: TcpStream,
    client: Client,
    tls: Option<SharedAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    proxy: Arc<ArcSwap<Proxy>>,
    watcher: Watcher,
    handshake_timeout: Duration,
) {
    let peer = client.peer;
    match tls {
        None => {
            // hyper-util sniffs the HTTP version before any timeout
            // applies: bound the wait for the first byte ourselves,
            // so silent connections cannot hold every slot.
            let mut first = [0u8; 1];
            match tokio::time::timeout(handshake_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {
                    let plain = Transport {
                        https: false,
                        client_cert: None,
                    };
                    serve_connection(builder, TokioIo::new(stream), proxy, client, plain, watcher)
                        .await
                }
                _ => {
                    tracing::debug!(target: LOG_TARGET, %peer, "no request within header_read_timeout")
                }
            }
        }
        Some(acceptor) => {
            let acceptor = acceptor.load_full();
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    // The certificate the handshake verified, read once.
                    let tls = Transport {
                        https: true,
                        client_cert: crate::tls::client_identity(stream.get_ref().1),
                    };
                    // ALPN decided the protocol: no sniffing needed.
                    let builder = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                        builder.http2_only()
                    } else {
                        builder.http1_only()
                    };
                    serve_connection(builder, TokioIo::new(stream), proxy, client, tls, watcher)
                        .await
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: LOG_TARGET, error = %e, %peer, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(target: LOG_TARGET, %peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Serve one client connection (plain or TLS) until it ends or drains.
async fn serve_connection<I>(
    builder: auto::Builder<TokioExecutor>,
    io: I,
    current: Arc<ArcSwap<Proxy>>,
    client: Client,
    transport: Transport,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = Peer::new(client.peer, transport.https)
        .on_worker(client.worker)
        .with_client_cert(transport.client_cert);
    let service = service_fn(move |request: Request<Incoming>| {
        // Each request runs on the config generation current when it arrived.
        let proxy = current.load_full();
        // Boxed: the request path's future is large, and hyper moves the
        // service future around; a box makes each move a pointer copy.
        Box::pin(proxy.handle(request, peer.clone()))
    });
    let connection = builder.serve_connection(io, service).into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(target: LOG_TARGET, error = %e, "connection ended with an error");
    }
}

//! The admin listener: `/healthz`, `/readyz`, `/metrics` (OpenMetrics
//! text) and `POST /reload`, on its own address.
//!
//! `/readyz` is 503 while draining, and when the store fails in a way that
//! refuses requests: an outage under `on_error = "reject"`, or a store that
//! refuses our calls as invalid (those are never failed open). Under
//! `on_error = "allow"` an outage keeps the replica ready and the body says
//! `degraded`, so a store outage does not take every replica out of the
//! Service at once. `POST /reload` answers loopback peers only (403
//! otherwise): the admin listener may be bound to the pod network for
//! probes.
//!
//! This module must never be reachable from the public listener, never
//! forward a request to the upstream, and never reload for a peer that is
//! not on loopback.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Reloaded, Reloader, Trigger};
use crate::body::{self, Body};
use crate::config::{ConfigErrors, OnStoreError};
use crate::proxy::Proxy;
use crate::store::StoreError;

pub(super) async fn serve_admin(
    listener: TcpListener,
    reloader: Reloader,
    draining: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
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
            async move { Ok::<_, Infallible>(admin(request, peer.ip(), &reloader, &draining).await) }
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
    peer: IpAddr,
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
        if !reload_allowed(peer) {
            return text(
                StatusCode::FORBIDDEN,
                "forbidden: POST /reload answers loopback peers only (or send SIGHUP)\n".into(),
            );
        }
        return reload_answer(reloader.reload_for(Trigger::Admin));
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
            let ping = proxy.store().ping().await;
            let (status, body) = readiness(ping.as_ref().err(), proxy.config().store.on_error);
            text(status, body.into())
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

/// `POST /reload`'s JSON answer: 200 with the settings that changed but
/// need a restart, or 422 with every problem (`file:line:col`) while the
/// previous config keeps serving.
fn reload_answer(result: Result<Reloaded, ConfigErrors>) -> Response<Body> {
    let (status, body) = match result {
        Ok(reloaded) => (
            StatusCode::OK,
            serde_json::json!({
                "status": "reloaded",
                "restart_required": reloaded.restart_required,
            }),
        ),
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({
                "status": "invalid",
                "errors": errors.errors,
                "detail": "still serving the previous config",
            }),
        ),
    };
    let mut response = Response::new(body::full(format!("{body}\n")));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Whether `POST /reload` may be answered for this peer: loopback only
/// (`127.0.0.0/8`, `::1`, and IPv4-mapped `::ffff:127.x.y.z`).
pub(super) fn reload_allowed(peer: IpAddr) -> bool {
    match peer {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// `/readyz` from the store probe: ready unless the store's failure would
/// refuse requests. An outage under `on_error = "allow"` is `degraded`
/// but ready; a store that refuses our calls as invalid or is full is
/// never failed open, so it is not ready whatever `on_error` says.
pub(super) fn readiness(
    ping: Option<&StoreError>,
    on_error: OnStoreError,
) -> (StatusCode, &'static str) {
    match (ping, on_error) {
        (None, _) => (StatusCode::OK, "ready\n"),
        (Some(StoreError::Unavailable(_)), OnStoreError::Allow) => (
            StatusCode::OK,
            "ready, degraded: store unreachable, forwarding unchecked (on_error = \"allow\")\n",
        ),
        (Some(StoreError::Unavailable(_)), OnStoreError::Reject) => {
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n")
        }
        (Some(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "store failing\n"),
    }
}

fn proxy_metrics(proxy: &Proxy) -> String {
    proxy.metrics().encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_answers_loopback_peers_only() {
        for peer in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            assert!(reload_allowed(peer.parse().unwrap()), "{peer}");
        }
        for peer in [
            "10.0.0.7",
            "192.168.1.2",
            "0.0.0.0",
            "::",
            "fe80::1",
            "::ffff:10.0.0.7",
        ] {
            assert!(!reload_allowed(peer.parse().unwrap()), "{peer}");
        }
    }

    #[test]
    fn readiness_reports_the_store_only_where_an_outage_refuses_requests() {
        let down = StoreError::Unavailable("down".into());
        assert_eq!(readiness(None, OnStoreError::Reject).0, StatusCode::OK);
        assert_eq!(
            readiness(Some(&down), OnStoreError::Reject).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (status, body) = readiness(Some(&down), OnStoreError::Allow);
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("degraded"), "{body}");
        assert_eq!(
            readiness(Some(&StoreError::Full), OnStoreError::Allow).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

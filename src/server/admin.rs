//! The admin listener: `/healthz`, `/readyz` (503 while draining or when
//! the store is unreachable), `/metrics` (OpenMetrics text) and
//! `POST /reload`, on its own address.
//!
//! This module must never be reachable from the public listener, and must
//! never forward a request to the upstream.

use std::convert::Infallible;
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

use super::Reloader;
use crate::body::{self, Body};
use crate::proxy::Proxy;

pub(super) async fn serve_admin(
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

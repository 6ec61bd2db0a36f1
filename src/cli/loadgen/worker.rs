//! The sending side of loadgen: one pooled HTTP client shared by
//! `--concurrency` workers, each claiming the next sequence slot, waiting
//! for its scheduled time in open-loop, sending the slot's request and
//! counting what it came to.
//!
//! A worker must never send past `--requests` or `--duration`, never wait
//! longer than `--timeout` for one answer, and in open-loop must measure
//! latency from the scheduled time, not the actual send (no coordinated
//! omission). Only new operations answered 2xx are remembered for replays.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::response::Parts;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::plan::{Kind, Plan};
use super::pool::{Pool, Sent};
use super::progress::Progress;
use super::report::{Outcome, Tally};
use super::LoadgenError;

/// Everything the workers share: the plan, and what changes as they go.
pub(super) struct Run {
    /// What to send.
    pub plan: Plan,
    /// One client: its pool keeps a connection per worker.
    client: Client<HttpConnector, Full<Bytes>>,
    /// Next sequence slot.
    next: AtomicU64,
    /// Finished requests, for the progress line.
    pub progress: Arc<Progress>,
    /// Answered 2xx operations for replays and retries.
    pool: Pool,
}

impl Run {
    /// A run of `plan` with a client sized for it.
    pub fn new(plan: Plan) -> Self {
        let client = http_client(plan.concurrency, plan.timeout);
        Self {
            plan,
            client,
            next: AtomicU64::new(0),
            progress: Arc::new(Progress::default()),
            pool: Pool::new(),
        }
    }

    /// Run `plan.concurrency` workers to the end; their merged tally.
    pub async fn all_workers(self: &Arc<Self>, started: Instant) -> Result<Tally, LoadgenError> {
        let workers: Vec<_> = (0..self.plan.concurrency)
            .map(|_| tokio::spawn(self.clone().worker(started)))
            .collect();
        let mut total = Tally::new()?;
        for handle in workers {
            match handle.await {
                Ok(Ok(tally)) => total.merge(tally),
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(LoadgenError::Usage(format!("a worker failed: {e}"))),
            }
        }
        Ok(total)
    }

    /// One worker: claim, wait, send, count — until the run is over.
    async fn worker(self: Arc<Self>, started: Instant) -> Result<Tally, LoadgenError> {
        let mut tally = Tally::new()?;
        while let Some(slot) = self.claim() {
            let Some(scheduled) = self.wait_for(slot, started).await else {
                break;
            };
            let (kind, request) = self.request_for(slot);
            let Sent {
                headers,
                body,
                idempotency_key,
            } = request;
            let kept = (kind == Kind::Fresh).then(|| Sent {
                headers: headers.clone(),
                body: body.clone(),
                idempotency_key,
            });
            let outcome = self.exchange(headers, body).await;
            let ok = tally.record(kind, outcome, scheduled.elapsed());
            self.progress.finished();
            if ok {
                self.progress.answered_ok();
                if let Some(sent) = kept {
                    self.pool.remember(sent);
                }
            }
        }
        Ok(tally)
    }

    /// Claim the next slot, or `None` when the run is over.
    fn claim(&self) -> Option<u64> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        self.plan.within_bounds(slot).then_some(slot)
    }

    /// The time latency is measured from: open-loop, the slot's scheduled
    /// time (after waiting for it), or `None` if that is past the deadline;
    /// closed-loop, now.
    async fn wait_for(&self, slot: u64, started: Instant) -> Option<Instant> {
        let Some(rate) = self.plan.rate else {
            return Some(Instant::now());
        };
        let at = self.plan.scheduled_at(rate, slot, started)?;
        tokio::time::sleep_until(at.into()).await;
        Some(at)
    }

    /// The kind and request of slot `slot`, picking an admitted operation
    /// for a replay or retry.
    fn request_for(&self, slot: u64) -> (Kind, Sent) {
        let kind = self.plan.kind(slot);
        let earlier = match kind {
            Kind::Fresh => None,
            Kind::Replay | Kind::Retry => self.pool.pick(slot),
        };
        self.plan.request(kind, slot, earlier.as_deref())
    }

    /// Send one request and read its whole answer, within the timeout.
    async fn exchange(&self, headers: HeaderMap, body: Bytes) -> Outcome {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = self.plan.method.clone();
        *request.uri_mut() = self.plan.uri.clone();
        *request.headers_mut() = headers;
        let call = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    "connect"
                } else {
                    "io"
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|_| "io")?.to_bytes();
            Ok::<_, &'static str>((parts, body))
        };
        match tokio::time::timeout(self.plan.timeout, call).await {
            Err(_) => Outcome::Failed("timeout"),
            Ok(Err(kind)) => Outcome::Failed(kind),
            Ok(Ok((parts, body))) => answered(&parts, &body),
        }
    }
}

/// What an answer says: its status, problem+json `reason` and whether it
/// is a stored idempotent answer.
fn answered(parts: &Parts, body: &Bytes) -> Outcome {
    let problem = parts
        .headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let reason = if problem {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("reason")?.as_str().map(str::to_owned))
    } else {
        None
    };
    Outcome::Answered {
        status: parts.status.as_u16(),
        reason,
        stored_answer: parts
            .headers
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes() == b"true"),
    }
}

/// The pooled client: no Nagle, connect bounded by the request timeout,
/// one idle connection kept per worker.
fn http_client(concurrency: usize, timeout: Duration) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeout));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build(connector)
}

//! Forward / replay / record for idempotency: a claimed request is
//! forwarded on its own task and its answer recorded (or its claim
//! released), and a completed record is replayed as the stored answer.
//! The completion write runs on the tracked background task after the
//! answer is handed back, so the client never waits for it; until it
//! lands, a retry on this process gets the answer held in [`Landing`](idempotency::Landing), on
//! another replica 409 `idempotency_in_flight` (the lease). A release
//! (the upstream was never reached, or answered a `release_statuses`
//! status) is still awaited before answering, so that whoever gets that
//! answer can retry at once.
//!
//! A claimed attempt must end in a recorded answer or a released claim even
//! when the client hangs up, or the client's retry would wait out the lease
//! and then execute the request a second time; so it runs on a task the
//! shutdown waits for. This module must never forward a request whose key
//! it does not hold, and never answer from a record that is not completed.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::Frame;

use super::ctx::RequestCtx;
use super::forward::{stream_response, upstream_rejection};
use super::{Answer, Proxy};
use crate::body::{self, Body, BoxError};
use crate::checks::idempotency::{self, Claim};
use crate::forward;
use crate::metrics::Outcome;
use crate::rejection::Rejection;
use crate::store::{Fenced, StoreError, StoredResponse};
use crate::upstream::UpstreamBody;

/// Response header marking a stored idempotent answer.
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

impl Proxy {
    /// Forward a claimed request on its own task and wait for its answer;
    /// the task goes on (and records) if this future is dropped.
    pub(super) async fn forward_claimed(
        self: &Arc<Self>,
        parts: Parts,
        body: Bytes,
        claim: Claim,
        ctx: &RequestCtx,
    ) -> Result<Answer, Rejection> {
        let proxy = Arc::clone(self);
        let owned = ctx.clone();
        let task = async move { proxy.forward_and_record(parts, body, claim, &owned).await };
        match self.detached.spawn(task).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(request_id = ctx.request_id(), error = %e, "idempotent forward task failed");
                Err(Rejection::Internal)
            }
        }
    }

    /// Forward a request whose idempotency key we claimed, record the
    /// answer (or release the claim), and answer the caller.
    async fn forward_and_record(
        self: &Arc<Self>,
        parts: Parts,
        body: Bytes,
        claim: Claim,
        ctx: &RequestCtx,
    ) -> Result<Answer, Rejection> {
        // One deadline covers the response head and the buffered body: the
        // first attempt must end within `upstream_timeout` so that it
        // cannot outlive its lease.
        let deadline = tokio::time::Instant::now() + self.upstream.timeout();
        let response = match self.send(parts, body::full(body), ctx).await {
            Ok(response) => response,
            Err(error) => {
                // A webhook delivery that got no answer is the sender's to
                // retry: its provider redelivers, and the redelivery runs.
                if error.is_connect() || ctx.webhook_provider().is_some() {
                    // Never reached the upstream: a retry may run.
                    claim
                        .release(self.store.as_ref(), &self.metrics, ctx.request_id())
                        .await;
                }
                // Timeout or a failure after sending: it may have executed;
                // the lease stays until it expires.
                return Err(upstream_rejection(error));
            }
        };
        let status = response.status().as_u16();
        if claim.rule.release_statuses.contains(&status) {
            // Released before answering: whoever gets this answer may retry
            // at once and run again (a rare path, worth the round trip).
            claim
                .release(self.store.as_ref(), &self.metrics, ctx.request_id())
                .await;
            return Ok(Answer::forwarded(stream_response(response)));
        }
        let (mut head, upstream_body) = response.into_parts();
        forward::strip_hop_by_hop(&mut head.headers);
        let limit = claim.rule.max_response_bytes;
        let buffered = tokio::time::timeout_at(deadline, buffer_up_to(upstream_body, limit)).await;
        let (kept, rest) = match buffered {
            Ok(Ok(buffered)) => buffered,
            Ok(Err(_)) | Err(_) => {
                // The head arrived: the operation evidently executed. Its
                // answer is lost, so the key is recorded completed without
                // a body — a retry gets `idempotency_response_not_retained`,
                // never a second execution once the lease ends.
                let stored = idempotency::record(status, &head.headers, None);
                self.record_later(claim, stored, ctx);
                return Err(match buffered {
                    Err(_) => Rejection::UpstreamTimeout,
                    Ok(_) => Rejection::UpstreamUnavailable,
                });
            }
        };
        let retained = rest.is_none().then(|| kept.clone());
        let stored = idempotency::record(status, &head.headers, retained);
        // Off the client's critical path: the answer goes out now; until
        // the record lands the lease holds, so a retry gets 409
        // `idempotency_in_flight`, never a second execution.
        self.record_later(claim, stored, ctx);
        let body = match rest {
            None => body::full(kept),
            Some(rest) => chain(kept, rest),
        };
        Ok(Answer::forwarded(Response::from_parts(head, body)))
    }

    /// Complete the record on the tracked background task, so the caller
    /// gets the answer as soon as it is buffered (SPEC §6, round trips).
    /// Shutdown waits for it within `shutdown_grace_secs`.
    /// Until the write ends, the answer is held in [`Landing`](idempotency::Landing): a retry
    /// this process receives meanwhile gets it instead of 409.
    fn record_later(self: &Arc<Self>, claim: Claim, stored: StoredResponse, ctx: &RequestCtx) {
        let proxy = Arc::clone(self);
        let route = ctx.route_name().to_owned();
        let request_id = ctx.request_id().to_owned();
        // Held now, before the answer is handed back; one copy shared with
        // the write.
        let stored = Arc::new(stored);
        let held = claim.hold(&self.landing, Arc::clone(&stored));
        self.detached.spawn(async move {
            proxy.record(claim, stored, &route, &request_id).await;
            drop(held);
        });
    }

    /// Complete the record; when the store cannot take it now, keep
    /// offering it, with growing pauses, for one lease. While the lease
    /// lasts a retry gets 409 `idempotency_in_flight`; once the answer is
    /// stored, the stored answer — without the retries, the lease would
    /// expire and the retry would execute the request again. Fenced by the
    /// owner token like every completion: if the record was taken over
    /// meanwhile, nothing is overwritten.
    async fn record(
        &self,
        claim: Claim,
        mut stored: Arc<StoredResponse>,
        route: &str,
        request_id: &str,
    ) {
        let expires_at = self.clock.now_secs() + claim.rule.ttl.as_secs();
        let give_up = tokio::time::Instant::now() + claim.rule.lease;
        let mut pause = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = claim
                .complete(self.store.as_ref(), &stored, expires_at)
                .await;
            match result {
                Ok(Fenced::Done) => {
                    if attempt > 1 {
                        tracing::info!(
                            request_id,
                            route,
                            attempt,
                            "stored an idempotent response on a later attempt"
                        );
                    }
                    return;
                }
                Ok(Fenced::LostOwnership) => {
                    self.metrics.lost_ownership("complete_idempotency");
                    tracing::warn!(request_id, route, "idempotency record was taken over before completion; the caller was answered anyway");
                    return;
                }
                Err(StoreError::Invalid(cause))
                    if stored.body.is_some() || !stored.headers.is_empty() =>
                {
                    // Never leave the record in flight (a retry would
                    // execute again after the lease): offer it without the
                    // parts the store refused.
                    tracing::error!(request_id, route, error = %cause, "the store refused the idempotent response as invalid; recording it without its body");
                    stored = Arc::new(StoredResponse {
                        status: stored.status,
                        headers: Vec::new(),
                        body: None,
                    });
                    continue;
                }
                Err(e) if tokio::time::Instant::now() + pause >= give_up => {
                    tracing::error!(request_id, route, error = %e, "gave up storing an idempotent response: once its lease ends, a retry executes again");
                    return;
                }
                Err(e) => {
                    if attempt == 1 {
                        tracing::warn!(request_id, route, error = %e, "could not store the idempotent response; the caller was answered, retrying in the background");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The stored answer of a completed record, marked `Idempotent-Replayed`.
pub(super) fn replay(stored: StoredResponse) -> Answer {
    let mut response = Response::new(body::full(stored.body.unwrap_or_default()));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    Answer {
        response,
        outcome: Outcome::Replayed,
    }
}

/// Read at most `limit` bytes; if more arrive, hand back the rest unread.
async fn buffer_up_to(
    mut body: UpstreamBody,
    limit: usize,
) -> Result<(Bytes, Option<UpstreamBody>), hyper::Error> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            buffer.extend_from_slice(&data);
            if buffer.len() > limit {
                return Ok((buffer.freeze(), Some(body)));
            }
        }
    }
    Ok((buffer.freeze(), None))
}

/// Bytes already read, followed by the rest of a streaming body.
fn chain(head: Bytes, rest: UpstreamBody) -> Body {
    let first = stream::once(async move { Ok::<_, BoxError>(Frame::data(head)) });
    let tail = BodyStream::new(rest).map(|frame| frame.map_err(|e| -> BoxError { Box::new(e) }));
    BodyExt::boxed(StreamBody::new(first.chain(tail)))
}

//! [`MeteredStore`]: a [`Store`] wrapper that times every call and counts
//! failures into [`Metrics`] (the `store_duration_seconds` and
//! `store_errors` families), labelled by operation name only.
//!
//! This module must never change what the wrapped store answers, retry a
//! call, or put a key, nonce or identity into a label.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    Fenced, IdemClaim, IdemOutcome, NonceClaim, NonceOutcome, PairOutcome, RateOutcome,
    RateReservation, Store, StoreError, StoredResponse,
};
use crate::metrics::Metrics;

/// A store wrapper that times every call and counts failures.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wrap a store.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn claim_nonce(&self, claim: NonceClaim<'_>) -> Result<NonceOutcome, StoreError> {
        let started = Instant::now();
        let result = self.inner.claim_nonce(claim).await;
        self.metrics
            .store_call("claim_nonce", started, result.is_err());
        result
    }

    async fn claim_idempotency(&self, claim: IdemClaim<'_>) -> Result<IdemOutcome, StoreError> {
        let started = Instant::now();
        let result = self.inner.claim_idempotency(claim).await;
        self.metrics
            .store_call("claim_idempotency", started, result.is_err());
        result
    }

    async fn complete_idempotency(
        &self,
        pk: &str,
        owner: &str,
        response: &StoredResponse,
        expires_at: u64,
    ) -> Result<Fenced, StoreError> {
        let started = Instant::now();
        let result = self
            .inner
            .complete_idempotency(pk, owner, response, expires_at)
            .await;
        self.metrics
            .store_call("complete_idempotency", started, result.is_err());
        result
    }

    async fn release_idempotency(&self, pk: &str, owner: &str) -> Result<Fenced, StoreError> {
        let started = Instant::now();
        let result = self.inner.release_idempotency(pk, owner).await;
        self.metrics
            .store_call("release_idempotency", started, result.is_err());
        result
    }

    async fn reserve_rate(
        &self,
        reservation: RateReservation<'_>,
    ) -> Result<RateOutcome, StoreError> {
        let started = Instant::now();
        let result = self.inner.reserve_rate(reservation).await;
        self.metrics
            .store_call("reserve_rate", started, result.is_err());
        result
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.ping().await;
        self.metrics.store_call("ping", started, result.is_err());
        result
    }

    /// Counted as one `claim_nonce` and one `claim_idempotency` call (two
    /// conditional writes), each timed over the shared round trip, so
    /// writes per request stay readable from the `op` counts.
    async fn claim_pair(&self, nonce: NonceClaim<'_>, idem: IdemClaim<'_>) -> PairOutcome {
        let started = Instant::now();
        let outcome = self.inner.claim_pair(nonce, idem).await;
        self.metrics
            .store_call("claim_nonce", started, outcome.nonce.is_err());
        self.metrics
            .store_call("claim_idempotency", started, outcome.idem.is_err());
        outcome
    }
}

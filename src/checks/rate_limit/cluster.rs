//! Cluster rate limits (`scope = "cluster"`): one GCRA bucket per route
//! and identity shared by every replica, kept in the store's `rate#<h>`
//! record and moved by conditional writes on the proxy's clock
//! ([`Store::reserve_rate`]). The guide is docs/rate-limiting.md.
//!
//! Cost is kept well below one write per request by **batch
//! reservation**: a replica that has no cell left for an identity takes
//! `k` cells in one write (the shared TAT moves by `k` periods) and spends
//! them locally. `k` adapts: it is the identity's demand on this replica
//! over [`HORIZON_NS`] (so 1 at low rates), at most twice the previous
//! batch, at most a quarter of what the shared bucket still holds (so 1
//! near the limit), and at most `max_batch = max(1, burst / 10)`. A busy
//! identity (batches of 4 or more) is **refilled ahead**: when a quarter
//! of its batch is left, one background write reserves the next, so its
//! requests do not wait for the store. A refusal learns when the next cell
//! is due ("not before") and later refusals before that instant are
//! answered locally, without a write.
//!
//! The bound: every admitted request spends a cell that the shared GCRA
//! charged when it was reserved, and a cell charged before a window began
//! can only be spent in it if a replica held it at the window's start. A
//! replica holds at most `max_held = max_batch − 1` cells without refill
//! ahead (`max_batch < 4`), else `max_batch + max_batch / 4` (a quarter
//! left plus the next batch). So over any window the cluster admits at most
//! what one exact GCRA would, plus **≤ N × max_held** for N replicas (zero
//! when `burst < 20`). Cells held by a replica that dies are lost to the
//! cluster until they refill (GCRA: one per period), never given to anyone
//! twice.
//!
//! A store failure follows `on_error`: `"reject"` refuses with 503
//! `store_unavailable` (`store_full` / 500 `internal_error` as every
//! check), `"allow"` decides by a per-instance limiter with the rate and
//! burst divided by the route's `replicas` (counted in
//! `replay_guard_rate_limit_fallback_total`). Either way the store is left
//! alone for [`DOWN_BACKOFF_NS`] after an outage, so a down store costs one
//! timeout per second per route, not one per request.
//!
//! This module must never put the identity into a store key (only its
//! hash, [`hashed_key`]), a log line or a metric label, and never admit a
//! request the shared state refused (a conflict or an error never adds a
//! cell).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::gcra::Gcra;
use super::{admitted, gcra_of, refused, Admitted, Limiter};
use crate::checks::{hashed_key, owner_token};
use crate::clock::SharedClock;
use crate::config::{OnStoreError, RateLimit, Secret};
use crate::metrics::Metrics;
use crate::rejection::Rejection;
use crate::store::{RateOutcome, RateReservation, Store, StoreError};

/// How long a reserved batch should last at the identity's current demand
/// on this replica: 100 ms.
pub const HORIZON_NS: u64 = 100_000_000;

/// After a store outage, how long the store is left alone (decisions go
/// straight to the failure mode): 1 s.
pub const DOWN_BACKOFF_NS: u64 = 1_000_000_000;

/// Smallest batch that is refilled ahead, in the background.
const AHEAD_FROM: u64 = 4;

/// Reservation writes per decision before giving up on a contended record
/// (each conflict returns the stored TAT, so the next try is informed).
const ATTEMPTS: usize = 4;

/// Lock shards of the local state.
const SHARDS: usize = 16;

/// What the store-side limiter needs besides the rule and the clock.
#[derive(Debug, Clone)]
pub struct ClusterParts {
    /// The shared store (metered).
    pub store: Arc<dyn Store>,
    /// `[store] on_error`.
    pub on_error: OnStoreError,
    /// Where the fallback is counted.
    pub metrics: Arc<Metrics>,
    /// The route's name: part of the record's hashed key, and the metric
    /// and log label.
    pub route: String,
    /// `[store] key_hash_secret_env`.
    pub key_hash: Option<Secret>,
}

/// This replica's view of one identity's shared bucket.
#[derive(Debug)]
struct Local {
    /// Reserved cells not spent yet.
    tokens: u64,
    /// The last TAT this replica wrote or was told (nanoseconds; 0 none).
    tat: u64,
    /// No cell before this instant, as far as this replica knows: refuse
    /// locally until then.
    not_before: u64,
    /// The size of the last reservation.
    batch: u64,
    /// When the last reservation landed (0: never).
    reserved_at: u64,
    /// Cells spent since then: the demand the next batch is sized by.
    spent: u64,
    /// Last request, for the sweep.
    last_used: u64,
    /// A refill ahead is running.
    refilling: bool,
}

/// One identity on this replica.
#[derive(Debug)]
struct Slot {
    /// The record's key, `rate#<h>`.
    pk: String,
    /// The local view; never held across an `.await`.
    state: Mutex<Local>,
    /// Held across a reservation write, so that one identity's writes from
    /// this replica never race each other and concurrent requests share
    /// one write.
    writer: tokio::sync::Mutex<()>,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, Local> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One lock shard of the slots.
type Shard = HashMap<Box<str>, Arc<Slot>>;

/// Everything a reservation needs, shared with the refills ahead.
#[derive(Debug)]
struct Core {
    /// The whole cluster's rule in nanoseconds.
    gcra: Gcra,
    /// Largest batch one write reserves.
    max_batch: u64,
    rule: RateLimit,
    clock: SharedClock,
    parts: ClusterParts,
    /// The store is left alone until this instant (nanoseconds).
    down_until: AtomicU64,
}

/// What one reservation came to.
enum Reserved {
    /// Cells added to the slot's tokens.
    Cells,
    /// The shared bucket is empty: the wait, nanoseconds.
    Empty(u64),
}

/// One route's cluster limiter.
#[derive(Debug)]
pub struct ClusterLimiter {
    /// Slots by identity (the identity never leaves this map).
    shards: Vec<Mutex<Shard>>,
    /// Picks an identity's shard.
    hasher: RandomState,
    core: Arc<Core>,
    /// Decides while the store is failing and `on_error = "allow"`.
    fallback: Limiter,
}

/// The instance rule a failing store falls back to: rate and burst divided
/// by `replicas` (each at least 1).
fn fallback_rule(rule: &RateLimit) -> RateLimit {
    let replicas = rule.replicas.get();
    let quota =
        std::num::NonZeroU32::new((rule.quota.get() / replicas).max(1)).unwrap_or(rule.quota);
    let burst =
        std::num::NonZeroU32::new((rule.burst.get() / replicas).max(1)).unwrap_or(rule.burst);
    RateLimit {
        period: std::time::Duration::from_secs(rule.window_secs) / quota.get(),
        quota,
        burst,
        ..*rule
    }
}

impl Core {
    fn now(&self) -> u64 {
        u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX)
    }

    fn is_down(&self, now: u64) -> bool {
        now < self.down_until.load(Ordering::Relaxed)
    }

    /// Spend a held cell, or refuse from the local "not before"; `None`
    /// when the store must decide. The bool: start a refill ahead.
    fn local(&self, local: &mut Local, now: u64) -> Option<(Result<Admitted, Rejection>, bool)> {
        if local.tokens > 0 {
            local.tokens -= 1;
            local.spent = local.spent.saturating_add(1);
            let ahead = local.batch >= AHEAD_FROM
                && local.tokens <= local.batch / 4
                && !local.refilling
                && !self.is_down(now);
            if ahead {
                local.refilling = true;
            }
            return Some((Ok(self.admitted_now(local, now)), ahead));
        }
        if now < local.not_before {
            return Some((Err(refused(&self.rule, local.not_before - now)), false));
        }
        None
    }

    /// Reserve a batch for `slot` at `now` (the caller holds its writer).
    async fn reserve(&self, slot: &Slot, now: u64) -> Result<Reserved, StoreError> {
        for _ in 0..ATTEMPTS {
            let (base, cells) = {
                let mut local = slot.state();
                let base = local.tat.max(now);
                let available = self.available(base, now);
                if available == 0 {
                    local.not_before = self.due(base);
                    return Ok(Reserved::Empty(local.not_before.saturating_sub(now)));
                }
                let cells = self.batch(&local, now).min(available.div_ceil(4)).max(1);
                (base, cells)
            };
            let tat = base.saturating_add(cells.saturating_mul(self.gcra.period));
            let owner = owner_token();
            let reservation = RateReservation {
                pk: &slot.pk,
                base,
                tat,
                owner: &owner,
                expires_at: tat.div_ceil(1_000_000_000),
                now,
            };
            match self.parts.store.reserve_rate(reservation).await? {
                RateOutcome::Reserved => {
                    let mut local = slot.state();
                    local.tat = tat;
                    local.tokens = local.tokens.saturating_add(cells);
                    local.batch = cells;
                    local.reserved_at = now;
                    local.spent = 0;
                    local.not_before = 0;
                    return Ok(Reserved::Cells);
                }
                RateOutcome::Conflict { tat } => slot.state().tat = tat,
            }
        }
        // Replicas keep moving the record: refuse for one period rather
        // than admit anything the shared state did not grant.
        Ok(Reserved::Empty(self.gcra.period))
    }

    /// Cells a reservation at `now` may take from a bucket whose TAT is
    /// `base` (`base >= now`).
    fn available(&self, base: u64, now: u64) -> u64 {
        let capacity = self.gcra.period.saturating_mul(self.gcra.burst);
        capacity.saturating_sub(base - now) / self.gcra.period.max(1)
    }

    /// When a bucket whose TAT is `base` has its next cell.
    fn due(&self, base: u64) -> u64 {
        let capacity = self.gcra.period.saturating_mul(self.gcra.burst);
        base.saturating_sub(capacity)
            .saturating_add(self.gcra.period)
    }

    /// The batch to ask for: this identity's demand here over the horizon,
    /// measured by how fast the previous batch went, ramping by at most ×2.
    fn batch(&self, local: &Local, now: u64) -> u64 {
        if local.reserved_at == 0 || local.batch == 0 {
            return 1;
        }
        let spent = local.spent.max(1);
        let lasted = u128::from(now.saturating_sub(local.reserved_at).max(1));
        let demand = u128::from(spent) * u128::from(HORIZON_NS) / lasted;
        let demand = u64::try_from(demand).unwrap_or(u64::MAX);
        demand
            .clamp(1, local.batch.saturating_mul(2))
            .min(self.max_batch)
    }

    /// The headers of a request admitted at `now`: the shared bucket as
    /// this replica last saw it, with its unspent cells counted as left.
    fn admitted_now(&self, local: &Local, now: u64) -> Admitted {
        let held = local.tokens.saturating_mul(self.gcra.period);
        let tat = local.tat.saturating_sub(held).max(now);
        let used = (tat - now).div_ceil(self.gcra.period.max(1));
        let remaining = self.gcra.burst.saturating_sub(used);
        admitted(&self.rule, u32::try_from(remaining).unwrap_or(u32::MAX))
    }

    /// A store error: leave the store alone for a while after an outage,
    /// and log it.
    fn note_error(&self, error: &StoreError) {
        let route = self.parts.route.as_str();
        match error {
            StoreError::Unavailable(message) => {
                self.down_until.store(
                    self.now().saturating_add(DOWN_BACKOFF_NS),
                    Ordering::Relaxed,
                );
                match self.parts.on_error {
                    OnStoreError::Allow => {
                        tracing::warn!(route, op = "reserve_rate", error = %message, "store failed; cluster rate limit decided per instance for 1 s (on_error = \"allow\")")
                    }
                    OnStoreError::Reject => {
                        tracing::warn!(route, op = "reserve_rate", error = %message, "store failed; refusing for 1 s (on_error = \"reject\")")
                    }
                }
            }
            StoreError::Invalid(message) => {
                tracing::error!(route, op = "reserve_rate", error = %message, "store refused the call as invalid; refusing with 500 (a bug of ours, never failed open)");
            }
            StoreError::Full => {}
        }
    }

    /// Refill `slot` ahead, in the background; a reservation already
    /// running (a request's, or another refill) makes this one unneeded.
    fn refill_ahead(self: &Arc<Self>, slot: Arc<Slot>) {
        let core = Arc::clone(self);
        tokio::spawn(async move {
            if let Ok(_writer) = slot.writer.try_lock() {
                let now = core.now();
                if let Err(error) = core.reserve(&slot, now).await {
                    core.note_error(&error);
                }
            }
            slot.state().refilling = false;
        });
    }
}

impl ClusterLimiter {
    /// A limiter for one route's cluster rule.
    pub fn new(rule: RateLimit, clock: SharedClock, parts: ClusterParts) -> Self {
        let gcra = gcra_of(&rule);
        parts.metrics.rate_fallback(&parts.route, 0);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            fallback: Limiter::new(fallback_rule(&rule), clock.clone()),
            core: Arc::new(Core {
                max_batch: (gcra.burst / 10).max(1),
                gcra,
                rule,
                clock,
                parts,
                down_until: AtomicU64::new(0),
            }),
        }
    }

    /// The rule this limiter enforces.
    pub fn rule(&self) -> &RateLimit {
        &self.core.rule
    }

    /// Largest batch one reservation takes.
    pub fn max_batch(&self) -> u64 {
        self.core.max_batch
    }

    /// Most cells one replica can hold unspent: the overshoot bound per
    /// replica (see the module docs).
    pub fn max_held(&self) -> u64 {
        let max_batch = self.core.max_batch;
        if max_batch < AHEAD_FROM {
            max_batch - 1
        } else {
            max_batch + max_batch / 4
        }
    }

    fn shard(&self, identity: &str) -> Option<MutexGuard<'_, Shard>> {
        let index = (self.hasher.hash_one(identity) as usize) % self.shards.len();
        let shard = self.shards.get(index)?;
        Some(
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// The identity's slot, created on first use.
    fn slot(&self, identity: &str) -> Option<Arc<Slot>> {
        let mut shard = self.shard(identity)?;
        if let Some(slot) = shard.get(identity) {
            return Some(Arc::clone(slot));
        }
        let parts = &self.core.parts;
        let slot = Arc::new(Slot {
            pk: hashed_key("rate", parts.key_hash.as_ref(), &parts.route, identity),
            state: Mutex::new(Local {
                tokens: 0,
                tat: 0,
                not_before: 0,
                batch: 0,
                reserved_at: 0,
                spent: 0,
                last_used: 0,
                refilling: false,
            }),
            writer: tokio::sync::Mutex::new(()),
        });
        shard.insert(identity.into(), Arc::clone(&slot));
        Some(slot)
    }

    /// Decide from the slot's local state; `None` when the store must.
    fn try_local(&self, slot: &Arc<Slot>, now: u64) -> Option<Result<Admitted, Rejection>> {
        let (decision, ahead) = {
            let mut local = slot.state();
            local.last_used = now;
            self.core.local(&mut local, now)?
        };
        if ahead {
            self.core.refill_ahead(Arc::clone(slot));
        }
        Some(decision)
    }

    /// Admit or refuse one request of `identity`. Waits for at most one
    /// reservation (a few writes when replicas contend), and for none while
    /// the identity is refilled ahead; concurrent requests of one identity
    /// on this replica wait for the same one.
    pub async fn check(&self, identity: &str) -> Result<Admitted, Rejection> {
        let Some(slot) = self.slot(identity) else {
            return self.fallback.check(identity);
        };
        let core = &self.core;
        if let Some(decision) = self.try_local(&slot, core.now()) {
            return decision;
        }
        if core.is_down(core.now()) {
            return self.store_failed(identity, None);
        }
        let _writer = slot.writer.lock().await;
        // The reservation we waited for may have filled the slot.
        let now = core.now();
        if let Some(decision) = self.try_local(&slot, now) {
            return decision;
        }
        match core.reserve(&slot, now).await {
            Ok(Reserved::Cells) => {
                let mut local = slot.state();
                local.tokens = local.tokens.saturating_sub(1);
                local.spent = local.spent.saturating_add(1);
                Ok(core.admitted_now(&local, now))
            }
            Ok(Reserved::Empty(wait)) => Err(refused(&core.rule, wait)),
            Err(error) => self.store_failed(identity, Some(error)),
        }
    }

    /// `on_error` for a cluster limit: fail closed, or decide per instance.
    /// `error` is `None` while the store is being left alone after an
    /// outage.
    fn store_failed(
        &self,
        identity: &str,
        error: Option<StoreError>,
    ) -> Result<Admitted, Rejection> {
        if let Some(error) = &error {
            self.core.note_error(error);
        }
        match (&error, self.core.parts.on_error) {
            (Some(StoreError::Full), _) => Err(Rejection::StoreFull),
            (Some(StoreError::Invalid(_)), _) => Err(Rejection::Internal),
            (_, OnStoreError::Allow) => {
                self.core
                    .parts
                    .metrics
                    .rate_fallback(&self.core.parts.route, 1);
                self.fallback.check(identity)
            }
            (_, OnStoreError::Reject) => Err(Rejection::StoreUnavailable),
        }
    }

    /// Give back the cell an admitted request of `identity` took: it stays
    /// charged in the shared state and returns to this replica's batch (or
    /// to the fallback while the store is down).
    pub fn refund(&self, identity: &str) {
        if self.core.is_down(self.core.now()) {
            self.fallback.refund(identity);
            return;
        }
        let slot = self
            .shard(identity)
            .and_then(|shard| shard.get(identity).cloned());
        if let Some(slot) = slot {
            let mut local = slot.state();
            local.tokens = local.tokens.saturating_add(1).min(self.core.max_batch);
        }
    }

    /// Forget identities idle for a whole refill window (their unspent
    /// cells are forfeited, which only admits less); returns how many
    /// remain.
    pub fn sweep(&self) -> usize {
        let now = self.core.now();
        let window = self.core.gcra.period.saturating_mul(self.core.gcra.burst);
        self.fallback.sweep();
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                shard.retain(|_, slot| {
                    let local = slot.state();
                    local.last_used.saturating_add(window) >= now
                        || local.not_before > now
                        || local.refilling
                });
                shard.shrink_to_fit();
                shard.len()
            })
            .sum()
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;

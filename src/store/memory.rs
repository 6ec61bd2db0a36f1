//! The embedded in-memory store: one process, no sharing.
//!
//! Records live in a sharded map of `std::sync::Mutex<HashMap>` (a lock is
//! never held across an `.await`). A purge task removes expired records on
//! a schedule; until it runs, an expired record is treated as absent by
//! every operation. The number of live records is capped by `max_entries`:
//! when full, a new claim answers [`StoreError::Full`] — a live record is
//! never evicted, because evicting a nonce would let its replay through.
//!
//! Every record is fixed-size, so `max_entries` bounds memory: the map is
//! keyed by a 16-byte digest of the partition key (the checks' keys are
//! already hashes, `nonce#<h>`, and hold no client text), the owner token
//! is kept as a 64-bit hash, and the only variable part — an idempotent
//! answer — is bounded by `max_response_bytes`.
//!
//! This store must never be used by more than one replica: each replica
//! would have its own memory and a replay sent to another replica would
//! pass. Use the DynamoDB store for that.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{
    Fenced, IdemClaim, IdemOutcome, NonceClaim, NonceOutcome, PairOutcome, RateOutcome,
    RateReservation, Store, StoreError, StoredResponse,
};
use crate::clock::SharedClock;

const SHARDS: usize = 64;

/// A record's slot in the map: the first 16 bytes of SHA-256 of its
/// partition key, the same size whatever the key.
type Slot = [u8; 16];

/// One shard of the record map.
type Shard = Mutex<HashMap<Slot, Record>>;

fn slot(pk: &str) -> Slot {
    let digest = Sha256::digest(pk.as_bytes());
    let mut slot = [0; 16];
    slot.copy_from_slice(&digest[..16]);
    slot
}

/// One stored record.
///
/// Kept at 24 bytes: nonces are the bulk of the records, and every map
/// slot is as large as the largest variant, so the (rarer, larger)
/// idempotency record lives behind a box.
#[derive(Debug)]
enum Record {
    /// A claimed nonce. The owner is kept as a 64-bit hash to keep the
    /// per-nonce footprint small; it only serves to recognise a retry.
    Nonce { expires_at: u64, owner: u64 },
    /// An idempotency key, in flight or completed.
    Idem(Box<IdemRecord>),
}

/// An idempotency record.
#[derive(Debug)]
struct IdemRecord {
    expires_at: u64,
    owner: Box<str>,
    fingerprint: Box<str>,
    state: IdemState,
}

#[derive(Debug)]
enum IdemState {
    InFlight { lease_until: u64 },
    Completed(StoredResponse),
}

impl Record {
    fn expires_at(&self) -> u64 {
        match self {
            Record::Nonce { expires_at, .. } => *expires_at,
            Record::Idem(idem) => idem.expires_at,
        }
    }

    /// Absent for every condition: expired, or an in-flight lease that ended.
    fn is_expired(&self, now: u64) -> bool {
        self.expires_at() < now
    }
}

/// The embedded store. Cheap to clone through `Arc`.
#[derive(Debug)]
pub struct MemoryStore {
    /// Records by partition key, spread over shards to reduce contention.
    shards: Box<[Shard]>,
    /// Records currently held (live or expired-not-yet-purged).
    len: AtomicUsize,
    /// Upper bound on records held.
    max_entries: usize,
    /// Rate-limit state (`reserve_rate`): slot → (TAT, owner hash). Kept
    /// apart from the replay records; bounded by `max_entries` on its own.
    rates: Mutex<HashMap<Slot, (u64, u64)>>,
}

fn owner_hash(owner: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    owner.hash(&mut hasher);
    hasher.finish()
}

impl MemoryStore {
    /// An empty store holding at most `max_entries` records.
    pub fn new(max_entries: usize) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Self {
            shards,
            len: AtomicUsize::new(0),
            max_entries,
            rates: Mutex::new(HashMap::new()),
        }
    }

    /// Records currently held, including expired ones not purged yet.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, slot: &Slot) -> MutexGuard<'_, HashMap<Slot, Record>> {
        let index = usize::from(u16::from_be_bytes([slot[0], slot[1]])) % self.shards.len();
        // A poisoned shard only means a panic elsewhere; the map is intact.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remove every expired record; returns how many were removed.
    pub fn purge(&self, now: u64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            let before = map.len();
            map.retain(|_, record| !record.is_expired(now));
            removed += before - map.len();
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Start the purge task. It stops by itself when the store is dropped.
    pub fn spawn_purger(self: &Arc<Self>, clock: SharedClock, every: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                store.purge(clock.now_secs());
            }
        });
    }

    /// Reserve room for one new record, purging this shard first if full.
    fn reserve(&self, map: &mut HashMap<Slot, Record>, now: u64) -> Result<(), StoreError> {
        if self.len.load(Ordering::Relaxed) >= self.max_entries {
            let before = map.len();
            map.retain(|_, record| !record.is_expired(now));
            self.len.fetch_sub(before - map.len(), Ordering::Relaxed);
            if self.len.load(Ordering::Relaxed) >= self.max_entries {
                return Err(StoreError::Full);
            }
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn claim_nonce(&self, claim: NonceClaim<'_>) -> Result<NonceOutcome, StoreError> {
        let owner = owner_hash(claim.owner);
        let record = Record::Nonce {
            expires_at: claim.expires_at,
            owner,
        };
        let key = slot(claim.pk);
        let mut map = self.shard(&key);
        if let Some(existing) = map.get_mut(&key) {
            let ours = matches!(existing, Record::Nonce { owner: o, .. } if *o == owner);
            if ours || existing.is_expired(claim.now) {
                *existing = record;
                return Ok(NonceOutcome::Claimed);
            }
            return Ok(NonceOutcome::Replayed);
        }
        self.reserve(&mut map, claim.now)?;
        map.insert(key, record);
        Ok(NonceOutcome::Claimed)
    }

    async fn claim_idempotency(&self, claim: IdemClaim<'_>) -> Result<IdemOutcome, StoreError> {
        let record = Record::Idem(Box::new(IdemRecord {
            expires_at: claim.expires_at,
            owner: claim.owner.into(),
            fingerprint: claim.fingerprint.into(),
            state: IdemState::InFlight {
                lease_until: claim.lease_until,
            },
        }));
        let key = slot(claim.pk);
        let mut map = self.shard(&key);
        if let Some(existing) = map.get_mut(&key) {
            let takeable = match &*existing {
                Record::Nonce { .. } => true,
                Record::Idem(idem) => {
                    *idem.owner == *claim.owner
                        || idem.expires_at < claim.now
                        || matches!(idem.state, IdemState::InFlight { lease_until } if lease_until < claim.now)
                }
            };
            if takeable {
                *existing = record;
                return Ok(IdemOutcome::Claimed);
            }
            return Ok(match &*existing {
                Record::Idem(idem) => match &idem.state {
                    IdemState::InFlight { lease_until } => IdemOutcome::InFlight {
                        fingerprint: idem.fingerprint.to_string(),
                        lease_until: *lease_until,
                    },
                    IdemState::Completed(response) => IdemOutcome::Completed {
                        fingerprint: idem.fingerprint.to_string(),
                        response: response.clone(),
                    },
                },
                Record::Nonce { .. } => IdemOutcome::Claimed,
            });
        }
        self.reserve(&mut map, claim.now)?;
        map.insert(key, record);
        Ok(IdemOutcome::Claimed)
    }

    async fn complete_idempotency(
        &self,
        pk: &str,
        owner: &str,
        response: &StoredResponse,
        expires_at: u64,
    ) -> Result<Fenced, StoreError> {
        let key = slot(pk);
        let mut map = self.shard(&key);
        match map.get_mut(&key) {
            Some(Record::Idem(idem)) if *idem.owner == *owner => {
                idem.state = IdemState::Completed(response.clone());
                idem.expires_at = expires_at;
                Ok(Fenced::Done)
            }
            _ => Ok(Fenced::LostOwnership),
        }
    }

    async fn release_idempotency(&self, pk: &str, owner: &str) -> Result<Fenced, StoreError> {
        let key = slot(pk);
        let mut map = self.shard(&key);
        let ours = matches!(map.get(&key), Some(Record::Idem(idem)) if *idem.owner == *owner);
        if !ours {
            return Ok(Fenced::LostOwnership);
        }
        if map.remove(&key).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(Fenced::Done)
    }

    /// The same condition as DynamoDB's, on this process's memory: a
    /// `cluster` limit on the memory store is an `instance` one.
    async fn reserve_rate(
        &self,
        reservation: RateReservation<'_>,
    ) -> Result<RateOutcome, StoreError> {
        let owner = owner_hash(reservation.owner);
        let key = slot(reservation.pk);
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        match rates.get(&key).copied() {
            Some((tat, by)) if tat > reservation.base && by != owner => {
                return Ok(RateOutcome::Conflict { tat })
            }
            Some(_) => {}
            None if rates.len() >= self.max_entries => {
                // A record whose TAT is past is a full bucket: forget it.
                rates.retain(|_, (tat, _)| *tat > reservation.now);
                if rates.len() >= self.max_entries {
                    return Err(StoreError::Full);
                }
            }
            None => {}
        }
        rates.insert(key, (reservation.tat, owner));
        Ok(RateOutcome::Reserved)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// One call, no I/O: the two claims, each decided as on its own.
    async fn claim_pair(&self, nonce: NonceClaim<'_>, idem: IdemClaim<'_>) -> PairOutcome {
        PairOutcome {
            nonce: self.claim_nonce(nonce).await,
            idem: self.claim_idempotency(idem).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_stays_small() {
        // Every map slot is this large; see BENCHMARKS.md (bytes per nonce).
        assert!(std::mem::size_of::<Record>() <= 24);
        // And the key is a fixed 16 bytes whatever the client sent, so
        // `max_entries` bounds the map's memory.
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        assert_eq!(slot(&format!("nonce#{}", "x".repeat(5000))).len(), 16);
    }
}

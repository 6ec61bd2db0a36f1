//! Replay state: nonce claims and idempotency records.
//!
//! This module defines the one narrow trait every store implements
//! ([`Store`]) and the records that cross it. Two implementations exist:
//! [`memory::MemoryStore`] (single instance, embedded) and
//! [`dynamodb::DynamoStore`] (shared by many replicas). [`MeteredStore`]
//! wraps either one to time its calls.
//!
//! Semantics every implementation must honour (checked by the shared
//! behavioural suite in `tests/store_contract.rs`):
//! - a record whose `expires_at` is in the past is absent, whether or not
//!   it has been physically deleted yet;
//! - a failed conditional write is an *outcome* (`Replayed`, `InFlight`,
//!   `Completed`), never an error; errors mean "the store could not answer"
//!   ([`StoreError::Unavailable`], an outage) or "the store refused the call"
//!   ([`StoreError::Invalid`], our bug: never failed open);
//! - a write carrying an `owner` token that finds a record with the same
//!   token treats it as its own earlier attempt (an SDK retry), not as a
//!   replay;
//! - complete and release are fenced by the owner token;
//! - [`Store::claim_pair`] decides each of its two claims exactly as the
//!   single claim would, independently, in one round trip.
//!
//! This module must never decide HTTP behaviour: it reports outcomes, and
//! the checks turn them into rejections.

pub mod dynamodb;
pub mod memory;
mod metered;

pub use metered::MeteredStore;

use async_trait::async_trait;
use bytes::Bytes;

/// Why the store could not answer. Never carries a secret or a key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An outage: timeout, throttling, a 5xx answer, a connection or
    /// dispatch failure, an unreadable answer. `on_error` decides.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the call as invalid (`ValidationException` and
    /// every other 4xx client error), or answered with a record we cannot
    /// read: a bug or misconfiguration of ours, never an outage, so never
    /// failed open (500 `internal_error`).
    #[error("store refused the call as invalid: {0}")]
    Invalid(String),
    /// The memory store reached `max_entries` live records.
    #[error("store full")]
    Full,
}

/// A nonce claim: `pk` is `nonce#<h>` (a hash of scope and nonce, SPEC §6).
#[derive(Debug, Clone)]
pub struct NonceClaim<'a> {
    /// Partition key of the record.
    pub pk: &'a str,
    /// Random token of this claim attempt; a retry of the same attempt
    /// carries the same token and is recognised as our own.
    pub owner: &'a str,
    /// Epoch seconds after which the record is absent.
    pub expires_at: u64,
    /// The proxy's clock, epoch seconds.
    pub now: u64,
}

/// Result of a nonce claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    /// No live record existed (or it was our own earlier attempt): fresh.
    Claimed,
    /// A live record from another request exists: a replay.
    Replayed,
}

/// An idempotency claim: `pk` is `idem#<h>` (a hash of scope and key, SPEC §6).
#[derive(Debug, Clone)]
pub struct IdemClaim<'a> {
    /// Partition key of the record.
    pub pk: &'a str,
    /// Random token of the claimant; fences complete and release.
    pub owner: &'a str,
    /// Lowercase hex SHA-256 of method, path, query and body.
    pub fingerprint: &'a str,
    /// Epoch seconds until which the claimant holds the lease.
    pub lease_until: u64,
    /// Epoch seconds after which the in-flight record is absent
    /// (at least `lease_until`).
    pub expires_at: u64,
    /// The proxy's clock, epoch seconds.
    pub now: u64,
}

/// Result of an idempotency claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdemOutcome {
    /// The caller now holds the lease and must forward, then complete or release.
    Claimed,
    /// Another request holds a live lease.
    InFlight {
        /// Fingerprint of the request holding the lease.
        fingerprint: String,
        /// Epoch seconds when that lease ends.
        lease_until: u64,
    },
    /// A completed record exists.
    Completed {
        /// Fingerprint of the request that completed it.
        fingerprint: String,
        /// What the upstream answered.
        response: StoredResponse,
    },
}

/// An upstream answer kept for idempotent replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status code.
    pub status: u16,
    /// End-to-end response headers, in order (hop-by-hop ones removed).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, or `None` when it was larger than `max_response_bytes`
    /// and was not retained.
    pub body: Option<Bytes>,
}

/// Result of a fenced write (complete or release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// The record was ours and the write landed.
    Done,
    /// Another claimant took the record over (our lease had expired).
    LostOwnership,
}

/// What each side of [`Store::claim_pair`] came to: each exactly what its
/// own single claim would have answered, decided independently (a
/// replayed nonce does not stop the idempotency claim from landing; the
/// caller gives a key it cannot use back with `release_idempotency`).
#[derive(Debug)]
pub struct PairOutcome {
    /// The nonce claim's outcome.
    pub nonce: Result<NonceOutcome, StoreError>,
    /// The idempotency claim's outcome.
    pub idem: Result<IdemOutcome, StoreError>,
}

/// A cluster rate-limit reservation (SPEC §6): move the GCRA state of one
/// route and identity, `pk` = `rate#<h>`, from at most `base` to `tat`.
/// Times are nanoseconds since the Unix epoch on the proxy's clock.
#[derive(Debug, Clone)]
pub struct RateReservation<'a> {
    /// Partition key of the record.
    pub pk: &'a str,
    /// The stored theoretical arrival time (TAT) the caller computed from:
    /// the write lands only if the record is absent or holds a TAT of at
    /// most this (an older TAT only means a fuller bucket, and an expired
    /// record always holds one).
    pub base: u64,
    /// The TAT to store: `base` plus the reserved cells' periods.
    pub tat: u64,
    /// Random token of this attempt: an SDK retry of a write that did land
    /// finds its own token and is `Reserved`, not a conflict.
    pub owner: &'a str,
    /// Epoch seconds after which the record is absent (TTL): when the
    /// bucket is full again.
    pub expires_at: u64,
    /// The proxy's clock, nanoseconds (at most `base`).
    pub now: u64,
}

/// Result of a rate reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateOutcome {
    /// The write landed: the cells are the caller's.
    Reserved,
    /// Another writer moved the state past `base`: the TAT stored now.
    Conflict {
        /// The stored TAT, nanoseconds.
        tat: u64,
    },
}

/// The store trait: everything the checks need, nothing more.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Atomically claim a nonce: insert if absent (or expired, or ours).
    async fn claim_nonce(&self, claim: NonceClaim<'_>) -> Result<NonceOutcome, StoreError>;

    /// Atomically claim an idempotency key, or report the existing record.
    /// An in-flight record whose lease ended counts as absent.
    async fn claim_idempotency(&self, claim: IdemClaim<'_>) -> Result<IdemOutcome, StoreError>;

    /// Store the response of a claimed key, if `owner` still holds it.
    async fn complete_idempotency(
        &self,
        pk: &str,
        owner: &str,
        response: &StoredResponse,
        expires_at: u64,
    ) -> Result<Fenced, StoreError>;

    /// Delete a claimed key so a retry can run, if `owner` still holds it.
    async fn release_idempotency(&self, pk: &str, owner: &str) -> Result<Fenced, StoreError>;

    /// Cluster rate limits: one conditional write of a route's GCRA state
    /// (see [`RateReservation`]). The memory store keeps it in the process,
    /// so on memory a `cluster` limit is an `instance` one.
    async fn reserve_rate(
        &self,
        reservation: RateReservation<'_>,
    ) -> Result<RateOutcome, StoreError>;

    /// Cheap reachability probe for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    // ---- one round trip for a request's two claims (issue #19) ----

    /// Claim a request's nonce and its idempotency key in **one** store
    /// round trip (both writes in flight at once on DynamoDB; one call on
    /// the memory store). Each side is decided exactly as
    /// [`Store::claim_nonce`] / [`Store::claim_idempotency`] would decide
    /// it; see [`PairOutcome`]. No default: a wrapper that forgot it would
    /// silently fall back to two sequential calls.
    async fn claim_pair(&self, nonce: NonceClaim<'_>, idem: IdemClaim<'_>) -> PairOutcome;
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl StoredResponse {
    /// Serialise headers as one compact blob: for each header,
    /// `u16 name length, name, u32 value length, value` (big endian).
    pub fn encode_headers(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in &self.headers {
            let name_len = u16::try_from(name.len()).unwrap_or(u16::MAX);
            let value_len = u32::try_from(value.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&name_len.to_be_bytes());
            out.extend_from_slice(&name.as_bytes()[..usize::from(name_len)]);
            out.extend_from_slice(&value_len.to_be_bytes());
            out.extend_from_slice(&value[..value_len as usize]);
        }
        out
    }

    /// Inverse of [`StoredResponse::encode_headers`]; `None` on a corrupt blob.
    pub fn decode_headers(mut blob: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
        let mut headers = Vec::new();
        while !blob.is_empty() {
            let (len, rest) = blob.split_first_chunk::<2>()?;
            let len = usize::from(u16::from_be_bytes(*len));
            let name = String::from_utf8(rest.get(..len)?.to_vec()).ok()?;
            let rest = &rest[len..];
            let (len, rest) = rest.split_first_chunk::<4>()?;
            let len = u32::from_be_bytes(*len) as usize;
            let value = rest.get(..len)?.to_vec();
            blob = &rest[len..];
            headers.push((name, value));
        }
        Some(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blob_round_trips() {
        let response = StoredResponse {
            status: 201,
            headers: vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("x-odd".into(), vec![0xff, 0x00, b'a']),
                ("empty".into(), Vec::new()),
            ],
            body: None,
        };
        let blob = response.encode_headers();
        assert_eq!(
            StoredResponse::decode_headers(&blob),
            Some(response.headers)
        );
        assert_eq!(
            StoredResponse::decode_headers(&blob[..blob.len() - 1]),
            None
        );
    }
}

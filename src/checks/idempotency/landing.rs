//! Answers this process has handed back whose completion records have not
//! landed in the store yet. The record is written after the answer goes
//! out (off the client's critical path), so for a few milliseconds — or,
//! while the store is down, up to a lease — the store still says "in
//! flight". A retry that reaches the same process in that gap is answered
//! from here instead of with 409 `idempotency_in_flight`: the same answer
//! the record will hold, under the same record key (key and scope) and
//! fingerprint. A retry on another replica still gets 409 until the record
//! lands.
//!
//! The answer is looked up *before* the retry's claim is sent
//! ([`Landing::answered`]) and applied to the store's outcome after it
//! ([`resolve`]): an answer is forgotten as soon as its write is
//! acknowledged, which can fall between the store reading "in flight" for
//! the retry and the retry looking here. Looked up first, an answer that is
//! gone was acknowledged before the claim was sent, so the store reads it
//! as completed.
//!
//! This module must never answer a request whose record key or
//! fingerprint differs from the executed one, and never keep an answer
//! once its write has ended (landed, lost ownership or given up): the
//! store's record is then the truth.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::store::{IdemOutcome, StoredResponse};

/// One answer whose record is being written.
#[derive(Debug)]
struct Entry {
    /// Which hold this is: a later hold of the same key is not ours to drop.
    token: u64,
    answered: Answered,
}

/// An executed request's fingerprint and the answer it got (shared with
/// the write that records it: no copy per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    fingerprint: String,
    response: Arc<StoredResponse>,
}

/// The answers this process is still recording, by record key. Shared by
/// every config generation, like the tasks that write them.
#[derive(Debug, Default)]
pub struct Landing {
    entries: Mutex<HashMap<String, Entry>>,
    /// The next hold's token.
    holds: AtomicU64,
}

impl Landing {
    /// Hold `response` to the request `fingerprint` for the record `pk`
    /// until the returned guard is dropped (when its completion write has
    /// ended).
    pub fn hold(
        self: &Arc<Self>,
        pk: &str,
        fingerprint: &str,
        response: Arc<StoredResponse>,
    ) -> Held {
        let token = self.holds.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            token,
            answered: Answered {
                fingerprint: fingerprint.to_owned(),
                response,
            },
        };
        self.lock().insert(pk.to_owned(), entry);
        Held {
            landing: Arc::clone(self),
            pk: pk.to_owned(),
            token,
        }
    }

    /// The answer this process is still recording for `pk`, if any: look
    /// it up before the claim is sent, then [`resolve`] the outcome.
    pub fn answered(&self, pk: &str) -> Option<Answered> {
        self.lock().get(pk).map(|entry| entry.answered.clone())
    }

    /// How many answers are being recorded.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no answer is being recorded.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves a consistent map (every
        // operation is one insert, lookup or remove).
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The store's `outcome` of a claim, with an in-flight record this process
/// had already answered (`answered`, looked up before the claim) read as
/// the completed record it is about to become. Anything else — another
/// fingerprint under the key, a completed record, a claim — is the
/// store's word, unchanged.
pub fn resolve(outcome: IdemOutcome, answered: Option<Answered>) -> IdemOutcome {
    match (outcome, answered) {
        (IdemOutcome::InFlight { fingerprint, .. }, Some(answered))
            if answered.fingerprint == fingerprint =>
        {
            IdemOutcome::Completed {
                fingerprint: answered.fingerprint,
                response: Arc::unwrap_or_clone(answered.response),
            }
        }
        (outcome, _) => outcome,
    }
}

/// An answer held while its record is written; dropping it forgets the
/// answer (unless a later claimant of the same key holds its own).
#[derive(Debug)]
pub struct Held {
    landing: Arc<Landing>,
    pk: String,
    token: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut entries = self.landing.lock();
        if entries.get(&self.pk).is_some_and(|e| e.token == self.token) {
            entries.remove(&self.pk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &'static str) -> Arc<StoredResponse> {
        Arc::new(StoredResponse {
            status: 201,
            headers: vec![("content-type".into(), b"text/plain".to_vec())],
            body: Some(bytes::Bytes::from_static(body.as_bytes())),
        })
    }

    fn in_flight(fingerprint: &str) -> IdemOutcome {
        IdemOutcome::InFlight {
            fingerprint: fingerprint.into(),
            lease_until: 100,
        }
    }

    #[test]
    fn an_in_flight_record_this_process_answered_reads_as_completed() {
        let landing = Arc::new(Landing::default());
        let held = landing.hold("idem#a", "fp", answer("done"));
        match resolve(in_flight("fp"), landing.answered("idem#a")) {
            IdemOutcome::Completed {
                fingerprint,
                response,
            } => {
                assert_eq!(fingerprint, "fp");
                assert_eq!(response, *answer("done"));
            }
            other => panic!("{other:?}"),
        }
        // Looked up before the write ended, applied after: still the answer.
        let before = landing.answered("idem#a");
        drop(held);
        assert!(landing.is_empty());
        assert!(matches!(
            resolve(in_flight("fp"), before),
            IdemOutcome::Completed { .. }
        ));
        assert!(matches!(
            resolve(in_flight("fp"), landing.answered("idem#a")),
            IdemOutcome::InFlight { .. }
        ));
    }

    #[test]
    fn another_key_or_fingerprint_or_outcome_is_left_alone() {
        let landing = Arc::new(Landing::default());
        let _held = landing.hold("idem#a", "fp", answer("done"));
        assert!(matches!(
            resolve(in_flight("fp"), landing.answered("idem#b")),
            IdemOutcome::InFlight { .. }
        ));
        // The store holds another request's lease under this key: its
        // fingerprint decides (422), never our answer.
        match resolve(in_flight("other"), landing.answered("idem#a")) {
            IdemOutcome::InFlight { fingerprint, .. } => assert_eq!(fingerprint, "other"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve(IdemOutcome::Claimed, landing.answered("idem#a")),
            IdemOutcome::Claimed
        ));
    }

    #[test]
    fn a_later_claimants_answer_outlives_the_earlier_guard() {
        let landing = Arc::new(Landing::default());
        let first = landing.hold("idem#a", "fp", answer("first"));
        let _second = landing.hold("idem#a", "fp", answer("second"));
        drop(first);
        assert_eq!(landing.len(), 1);
        match resolve(in_flight("fp"), landing.answered("idem#a")) {
            IdemOutcome::Completed { response, .. } => assert_eq!(response, *answer("second")),
            other => panic!("{other:?}"),
        }
    }
}

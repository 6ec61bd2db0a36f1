//! The operations a loadgen run may send again: the last [`POOL_SIZE`]
//! requests the target answered 2xx, from which replays and idempotent
//! retries are picked.
//!
//! The pool must never grow past [`POOL_SIZE`] (the oldest entry goes
//! first) and must never hold a request that was not answered 2xx — the
//! worker only remembers admitted new operations.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderMap;

/// How many answered requests are kept for replays and retries.
const POOL_SIZE: usize = 4096;

/// One request as sent; once answered 2xx, kept to be replayed or retried.
#[derive(Debug)]
pub(super) struct Sent {
    /// The exact headers sent.
    pub headers: HeaderMap,
    /// The exact body sent.
    pub body: Bytes,
    /// Its Idempotency-Key, if any (set on new operations only: the key a
    /// retry reuses).
    pub idempotency_key: Option<String>,
}

/// Admitted operations, shared by the workers.
pub(super) struct Pool {
    /// Oldest first.
    sent: Mutex<VecDeque<Arc<Sent>>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Self {
        Self {
            sent: Mutex::new(VecDeque::with_capacity(POOL_SIZE)),
        }
    }

    /// Pick an earlier admitted operation for slot `slot`.
    pub fn pick(&self, slot: u64) -> Option<Arc<Sent>> {
        let pool = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if pool.is_empty() {
            return None;
        }
        let index = (slot.wrapping_mul(0x9E37_79B9_7F4A_7C15) % pool.len() as u64) as usize;
        pool.get(index).cloned()
    }

    /// Keep an admitted operation, dropping the oldest when full.
    pub fn remember(&self, sent: Sent) {
        let mut pool = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() >= POOL_SIZE {
            pool.pop_front();
        }
        pool.push_back(Arc::new(sent));
    }
}

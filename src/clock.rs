//! Time, injected.
//!
//! Every check asks a [`Clock`] for the time instead of calling
//! `SystemTime::now()`, so tests drive freshness windows, nonce expiry,
//! leases and rate-limit refills with a [`ManualClock`] and never sleep.
//! This module must never be bypassed on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, as a duration since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;

    /// Whole seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now().as_secs()
    }
}

/// Shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// A clock that moves only when told to. For tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock set to `secs` seconds after the epoch.
    pub fn at_secs(secs: u64) -> Arc<Self> {
        Arc::new(Self {
            nanos: AtomicU64::new(secs.saturating_mul(1_000_000_000)),
        })
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }

    /// Set the clock to an absolute time.
    pub fn set(&self, since_epoch: Duration) {
        let nanos = u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

//! Rate limiting: one keyed GCRA limiter per route, keyed by the request's
//! identity, with the arithmetic in [`gcra`]. A route's [`RateLimiter`] is
//! either this module's per-instance [`Limiter`] or, for `scope =
//! "cluster"` on DynamoDB, the shared [`cluster::ClusterLimiter`].
//!
//! The limiter reads time from the proxy's [`Clock`](crate::clock::Clock),
//! so tests refill buckets by moving a manual clock. A cell an admitted
//! request took can be given back ([`Limiter::refund`]): a request refused
//! as a replay must not spend the budget of the identity it claims to be.
//! Keyed state grows with distinct identities; [`Limiter::sweep`] runs on a
//! schedule and forgets every full bucket. [`Limiter`] is per instance and
//! never touches the store; only [`cluster`] does. Nothing here reads the
//! body.

pub mod cluster;
pub mod gcra;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use gcra::{Decision, Gcra};

use crate::clock::SharedClock;
use crate::config::{RateLimit, RateScope};
use crate::rejection::Rejection;
use cluster::{ClusterLimiter, ClusterParts};

/// A route's limiter: per instance, or shared by the cluster.
#[derive(Debug)]
pub enum RateLimiter {
    /// `scope = "instance"`, or `"cluster"` on the memory store.
    Instance(Limiter),
    /// `scope = "cluster"` on a shared store (boxed: it is the larger).
    Cluster(Box<ClusterLimiter>),
}

impl RateLimiter {
    /// The limiter for `rule`: shared when the rule says `cluster` and a
    /// shared store is given (`cluster`), else per instance.
    pub fn new(rule: RateLimit, clock: SharedClock, cluster: Option<ClusterParts>) -> Self {
        match (rule.scope, cluster) {
            (RateScope::Cluster, Some(parts)) => {
                RateLimiter::Cluster(Box::new(ClusterLimiter::new(rule, clock, parts)))
            }
            _ => RateLimiter::Instance(Limiter::new(rule, clock)),
        }
    }

    /// The rule this limiter enforces.
    pub fn rule(&self) -> &RateLimit {
        match self {
            RateLimiter::Instance(limiter) => limiter.rule(),
            RateLimiter::Cluster(limiter) => limiter.rule(),
        }
    }

    /// Admit or refuse one request of `identity`.
    pub async fn check(&self, identity: &str) -> Result<Admitted, Rejection> {
        match self {
            RateLimiter::Instance(limiter) => limiter.check(identity),
            RateLimiter::Cluster(limiter) => limiter.check(identity).await,
        }
    }

    /// Give back the cell an admitted request took (a refused replay).
    pub fn refund(&self, identity: &str) {
        match self {
            RateLimiter::Instance(limiter) => limiter.refund(identity),
            RateLimiter::Cluster(limiter) => limiter.refund(identity),
        }
    }

    /// Forget idle identities; returns how many remain.
    pub fn sweep(&self) -> usize {
        match self {
            RateLimiter::Instance(limiter) => limiter.sweep(),
            RateLimiter::Cluster(limiter) => limiter.sweep(),
        }
    }
}

/// A rule in nanoseconds.
fn gcra_of(rule: &RateLimit) -> Gcra {
    Gcra {
        period: u64::try_from(rule.period.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1),
        burst: u64::from(rule.burst.get()),
    }
}

/// `RateLimit-Policy` header value: quota the burst, window the time to
/// refill it.
fn policy(rule: &RateLimit) -> String {
    format!("\"default\";q={};w={}", rule.burst, window_secs(rule))
}

/// Seconds to refill a full burst (the policy window).
fn window_secs(rule: &RateLimit) -> u64 {
    let secs = rule.period.as_secs_f64() * f64::from(rule.burst.get());
    secs.ceil().max(1.0) as u64
}

/// Seconds until a bucket with `remaining` cells is full again, rounded
/// up: each used cell comes back after one period (GCRA). Exact to within
/// one period, never early.
fn reset_secs(rule: &RateLimit, remaining: u32) -> u64 {
    let used = rule.burst.get().saturating_sub(remaining);
    let nanos = rule.period.as_nanos().saturating_mul(u128::from(used));
    u64::try_from(nanos.div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
}

/// The headers of an admitted request with `remaining` cells left.
fn admitted(rule: &RateLimit, remaining: u32) -> Admitted {
    Admitted {
        policy: policy(rule),
        header: format!(
            "\"default\";r={remaining};t={}",
            reset_secs(rule, remaining)
        ),
    }
}

/// The rejection of a request that must wait `wait` nanoseconds.
fn refused(rule: &RateLimit, wait: u64) -> Rejection {
    let retry_after = wait.div_ceil(1_000_000_000).max(1);
    Rejection::RateLimited {
        retry_after,
        policy: policy(rule),
        limit: format!("\"default\";r=0;t={retry_after}"),
    }
}

/// Lock shards of the keyed state (independent identities rarely contend).
const SHARDS: usize = 16;

/// One route's limiter.
#[derive(Debug)]
pub struct Limiter {
    /// Theoretical arrival times by identity, nanoseconds on the clock.
    shards: Vec<Mutex<HashMap<Box<str>, u64>>>,
    /// Picks an identity's shard.
    hasher: RandomState,
    /// The rule in nanoseconds.
    gcra: Gcra,
    clock: SharedClock,
    rule: RateLimit,
}

/// A request that passed: the headers its answer carries.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// `RateLimit-Policy` response header value.
    pub policy: String,
    /// `RateLimit` response header value.
    pub header: String,
}

impl Limiter {
    /// A limiter for one route's rule.
    pub fn new(rule: RateLimit, clock: SharedClock) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            gcra: gcra_of(&rule),
            clock,
            rule,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX)
    }

    fn shard(&self, identity: &str) -> Option<MutexGuard<'_, HashMap<Box<str>, u64>>> {
        let index = (self.hasher.hash_one(identity) as usize) % self.shards.len();
        // A poisoned shard still holds valid numbers: keep using it.
        let shard = self.shards.get(index)?;
        Some(
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// The rule this limiter enforces.
    pub fn rule(&self) -> &RateLimit {
        &self.rule
    }

    /// Admit or refuse one request of `identity`.
    pub fn check(&self, identity: &str) -> Result<Admitted, Rejection> {
        let now = self.now();
        let decision = match self.shard(identity) {
            Some(mut shard) => {
                let decision = self.gcra.decide(shard.get(identity).copied(), now);
                if let Decision::Admit { tat, .. } = decision {
                    match shard.get_mut(identity) {
                        Some(stored) => *stored = tat,
                        None => {
                            shard.insert(identity.into(), tat);
                        }
                    }
                }
                decision
            }
            None => self.gcra.decide(None, now),
        };
        match decision {
            Decision::Admit { remaining, .. } => Ok(admitted(
                &self.rule,
                u32::try_from(remaining).unwrap_or(u32::MAX),
            )),
            Decision::Refuse { wait } => Err(refused(&self.rule, wait)),
        }
    }

    /// Give back the cell that an admitted request of `identity` took (it
    /// turned out to be a replay, refused without effect).
    pub fn refund(&self, identity: &str) {
        let now = self.now();
        if let Some(mut shard) = self.shard(identity) {
            let refunded = shard
                .get(identity)
                .and_then(|tat| self.gcra.refund(*tat, now));
            match refunded {
                Some(tat) => {
                    shard.insert(identity.into(), tat);
                }
                None => {
                    shard.remove(identity);
                }
            }
        }
    }

    /// Forget identities whose buckets are full again; returns how many remain.
    pub fn sweep(&self) -> usize {
        let now = self.now();
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                shard.retain(|_, tat| !self.gcra.is_full(*tat, now));
                shard.shrink_to_fit();
                shard.len()
            })
            .sum()
    }

    /// Identities currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |shard| shard.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::num::NonZeroU32;
    use std::sync::Arc;
    use std::time::Duration;

    fn rule(per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            period: Duration::from_secs(1) / per_second,
            quota: NonZeroU32::new(per_second).unwrap(),
            window_secs: 1,
            burst: NonZeroU32::new(burst).unwrap(),
            scope: RateScope::Instance,
            replicas: NonZeroU32::new(1).unwrap(),
        }
    }

    #[test]
    fn burst_then_refusal_then_refill() {
        let clock = ManualClock::at_secs(1_000);
        let limiter = Limiter::new(rule(1, 3), clock.clone());
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        match limiter.check("a") {
            Err(Rejection::RateLimited { retry_after, .. }) => assert_eq!(retry_after, 1),
            other => panic!("expected rate_limited, got {other:?}"),
        }
        assert!(limiter.check("b").is_ok(), "identities are independent");
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_err());
    }

    #[test]
    fn a_refund_returns_the_cell_to_its_identity_only() {
        let clock = ManualClock::at_secs(1_000);
        let limiter = Limiter::new(rule(1, 2), clock.clone());
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_err());
        limiter.refund("a");
        assert!(limiter.check("a").is_ok(), "the refunded cell is available");
        assert!(limiter.check("a").is_err());
        limiter.refund("b");
        assert!(limiter.check("b").is_ok());
        assert!(limiter.check("b").is_ok());
        assert!(
            limiter.check("b").is_err(),
            "a refund never overfills a bucket"
        );
    }

    #[test]
    fn sweep_forgets_idle_identities() {
        let clock = ManualClock::at_secs(1_000);
        let limiter = Limiter::new(rule(10, 10), clock.clone());
        for i in 0..10_000 {
            assert!(limiter.check(&format!("id-{i}")).is_ok());
        }
        assert_eq!(limiter.tracked(), 10_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(limiter.sweep(), 0);
        let _ = Arc::clone(&clock);
    }
}

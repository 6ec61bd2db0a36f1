//! Rate limiting: one keyed GCRA limiter (`governor`) per route, keyed by
//! the request's identity.
//!
//! The limiter reads time from the proxy's [`Clock`](crate::clock::Clock)
//! through [`GovernorClock`], so tests refill buckets by moving a manual
//! clock. Keyed state grows with distinct identities; [`Limiter::sweep`]
//! (`retain_recent` + shrink) runs on a schedule to bound it. Limits are per
//! instance. This module must never touch the store or read the body.

use std::num::NonZeroU32;

use governor::clock::Clock as _;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::SharedClock;
use crate::config::RateLimit;
use crate::rejection::Rejection;

/// Adapts the proxy clock to governor's clock trait.
#[derive(Debug, Clone)]
pub struct GovernorClock(pub SharedClock);

impl governor::clock::Clock for GovernorClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.now())
    }
}

type Keyed =
    RateLimiter<String, DashMapStateStore<String>, GovernorClock, StateInformationMiddleware>;

/// One route's limiter.
#[derive(Debug)]
pub struct Limiter {
    limiter: Keyed,
    clock: GovernorClock,
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
        let clock = GovernorClock(clock);
        let quota = Quota::with_period(rule.period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(rule.burst);
        let limiter = RateLimiter::dashmap_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Self {
            limiter,
            clock,
            rule,
        }
    }

    /// The rule this limiter enforces.
    pub fn rule(&self) -> &RateLimit {
        &self.rule
    }

    /// `RateLimit-Policy` header value.
    pub fn policy(&self) -> String {
        format!("\"default\";q={};w={}", self.rule.burst, self.window_secs())
    }

    /// Seconds to refill a full burst (the policy window).
    fn window_secs(&self) -> u64 {
        let secs = self.rule.period.as_secs_f64() * f64::from(self.rule.burst.get());
        secs.ceil().max(1.0) as u64
    }

    /// Seconds until a bucket with `remaining` cells is full again, rounded
    /// up: each used cell comes back after one period (GCRA). Exact to
    /// within one period, never early.
    fn reset_secs(&self, remaining: u32) -> u64 {
        let used = self.rule.burst.get().saturating_sub(remaining);
        let nanos = self.rule.period.as_nanos().saturating_mul(u128::from(used));
        u64::try_from(nanos.div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
    }

    /// Admit or refuse one request of `identity`.
    pub fn check(&self, identity: &str) -> Result<Admitted, Rejection> {
        match self.limiter.check_key(&identity.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(Admitted {
                    policy: self.policy(),
                    header: format!("\"default\";r={remaining};t={}", self.reset_secs(remaining)),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let retry_after = retry_after.max(1);
                Err(Rejection::RateLimited {
                    retry_after,
                    policy: self.policy(),
                    limit: format!("\"default\";r=0;t={retry_after}"),
                })
            }
        }
    }

    /// Forget identities whose buckets are full again; returns how many remain.
    pub fn sweep(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }

    /// Identities currently tracked.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;
    use std::time::Duration;

    fn rule(per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            period: Duration::from_secs(1) / per_second,
            quota: NonZeroU32::new(per_second).unwrap(),
            window_secs: 1,
            burst: NonZeroU32::new(burst).unwrap(),
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

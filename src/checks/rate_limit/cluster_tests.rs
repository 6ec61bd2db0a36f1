//! The cluster limiter's batching and overshoot bound, without a store.

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config::RateScope;
use crate::store::memory::MemoryStore;
use std::num::NonZeroU32;
use std::time::Duration;

fn rule(per_second: u32, burst: u32) -> RateLimit {
    RateLimit {
        period: Duration::from_secs(1) / per_second,
        quota: NonZeroU32::new(per_second).unwrap(),
        window_secs: 1,
        burst: NonZeroU32::new(burst).unwrap(),
        scope: RateScope::Cluster,
        replicas: NonZeroU32::new(2).unwrap(),
    }
}

fn limiter(rule: RateLimit, clock: SharedClock, store: Arc<dyn Store>) -> ClusterLimiter {
    ClusterLimiter::new(
        rule,
        clock,
        ClusterParts {
            store,
            on_error: OnStoreError::Reject,
            metrics: Arc::new(Metrics::new()),
            route: "r".into(),
            key_hash: None,
        },
    )
}

#[tokio::test]
async fn two_replicas_share_one_bucket_and_refusals_cost_no_write() {
    let clock = ManualClock::at_secs(1_000);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    let a = limiter(rule(5, 5), clock.clone(), store.clone());
    let b = limiter(rule(5, 5), clock.clone(), store.clone());
    let mut admitted = 0;
    for i in 0..40 {
        let replica = if i % 2 == 0 { &a } else { &b };
        if replica.check("alice").await.is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5, "burst 5 < 20: batches of one, exact");
    clock.advance(Duration::from_millis(200));
    assert!(a.check("alice").await.is_ok(), "one cell refilled");
    assert!(b.check("alice").await.is_err());
    assert!(b.check("bob").await.is_ok(), "identities are independent");
}

#[tokio::test]
async fn batches_grow_with_demand_and_stay_within_the_shared_bucket() {
    let clock = ManualClock::at_secs(1_000);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    let a = limiter(rule(1_000, 1_000), clock.clone(), store.clone());
    assert_eq!(a.max_batch(), 100);
    let mut admitted = 0;
    // 500 requests per second for 4 s, 1 ms apart at first then 2 ms.
    for _ in 0..2_000 {
        clock.advance(Duration::from_millis(2));
        if a.check("k").await.is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 2_000, "half the limit is always admitted");
    let slot = a.slot("k").unwrap();
    let batch = slot.state().batch;
    assert!(batch > 10, "the batch grew: {batch}");
    assert_eq!(a.max_held(), 125);
}

#[tokio::test]
async fn over_any_window_three_replicas_admit_at_most_gcra_plus_what_they_hold() {
    let clock = ManualClock::at_secs(1_000);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    let replicas: Vec<_> = (0..3)
        .map(|_| limiter(rule(1_000, 1_000), clock.clone(), store.clone()))
        .collect();
    let held = replicas[0].max_held();
    // 2,000 req/s for 3 s, each to a pseudo-random replica, with idle
    // gaps so that batches build up and then the bucket refills.
    let mut seed = 0x2545_f491_u64;
    let mut admitted = Vec::new();
    let start = clock.now();
    for i in 0..6_000u64 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let gap = if i % 1_500 == 0 { 400_000 } else { 500 };
        clock.advance(Duration::from_micros(gap));
        let replica = &replicas[(seed >> 33) as usize % replicas.len()];
        if replica.check("k").await.is_ok() {
            admitted.push((clock.now() - start).as_micros() as u64);
        }
        tokio::task::yield_now().await;
    }
    assert!(admitted.len() > 3_000, "{}", admitted.len());
    for window_us in [50_000u64, 200_000, 1_000_000] {
        let allowed = 1_000 + window_us / 1_000 + 3 * held;
        let mut first = 0;
        for (last, &t) in admitted.iter().enumerate() {
            while admitted[first] + window_us < t {
                first += 1;
            }
            let inside = (last - first + 1) as u64;
            assert!(
                inside <= allowed,
                "{inside} admitted in {window_us} µs ending at {t} µs (bound {allowed})"
            );
        }
    }
}

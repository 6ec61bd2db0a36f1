//! Memory of the rate limiter under a flood of distinct identities
//! (spoofed headers, many client IPs): measured with a counting global
//! allocator, and proved to return to (near) zero once the clock has moved
//! and `sweep()` (`retain_recent` + shrink, run by the server every 10 s)
//! has run. One test in its own binary, so no other test's allocations
//! are counted.
//!
//! `cargo test --test rate_limit_memory -- --nocapture` prints the numbers
//! quoted in docs/rate-limiting.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use replay_guard::checks::rate_limit::Limiter;
use replay_guard::clock::ManualClock;
use replay_guard::config::{RateLimit, RateScope};

/// Live heap bytes (requested sizes; the allocator's own per-chunk
/// overhead comes on top).
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const KEYS: u32 = 100_000;

#[test]
fn a_flood_of_distinct_keys_is_forgotten_after_sweep() {
    let clock = ManualClock::at_secs(1_764_326_400);
    // 50/s, burst 100: a used bucket is full again after 2 s.
    let rule = RateLimit {
        period: Duration::from_millis(20),
        quota: NonZeroU32::new(50).unwrap(),
        window_secs: 1,
        burst: NonZeroU32::new(100).unwrap(),
        scope: RateScope::Instance,
        replicas: NonZeroU32::new(1).unwrap(),
    };
    let limiter = Limiter::new(rule, clock.clone());
    // One identity that keeps its bucket drained must survive sweeps.
    for _ in 0..100 {
        limiter.check("busy").unwrap();
    }
    assert!(limiter.check("busy").is_err());
    limiter.sweep();
    let baseline = live();

    // Client-IP-like identities (7–15 bytes), one request each.
    for i in 0..KEYS {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff);
        limiter.check(&ip).unwrap();
    }
    let peak = live();
    assert_eq!(limiter.tracked(), KEYS as usize + 1);
    let per_key = (peak - baseline) as f64 / f64::from(KEYS);
    println!(
        "rate limiter: {KEYS} tracked identities = {} KiB live heap, {per_key:.1} bytes per identity",
        (peak - baseline) / 1024
    );

    // A sweep before the buckets refill keeps them (they are still in use).
    clock.advance(Duration::from_millis(10));
    assert_eq!(limiter.sweep(), KEYS as usize + 1);

    // Once the clock has moved past a full refill, a sweep forgets them all
    // — except the identity still over its limit.
    clock.advance(Duration::from_secs(3));
    assert!(limiter.check("busy").is_ok());
    for _ in 0..99 {
        let _ = limiter.check("busy");
    }
    assert_eq!(limiter.sweep(), 1, "only the busy identity is left");
    let after = live();
    println!(
        "after sweep: {} tracked, live heap {} bytes above the baseline (peak was {} bytes above)",
        limiter.tracked(),
        after - baseline,
        peak - baseline
    );
    assert!(
        after - baseline < (peak - baseline) / 100,
        "memory did not return: baseline {baseline}, peak {peak}, after {after}"
    );
    assert!(per_key < 200.0, "{per_key} bytes per identity");
}

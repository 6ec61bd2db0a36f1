//! Benchmark helper: resident memory per live nonce in the memory store and
//! per tracked identity in a rate limiter, read from /proc/self/statm.
//!
//! `cargo run --release --example footprint -- [NONCES] [RATE_KEYS]`
//! (defaults 1,000,000 and 100,000). Linux only; touches no network.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use replay_guard::checks::nonce;
use replay_guard::checks::rate_limit::Limiter;
use replay_guard::clock::{ManualClock, SharedClock};
use replay_guard::config::{RateLimit, RateScope};
use replay_guard::identity;
use replay_guard::store::memory::MemoryStore;
use replay_guard::store::{NonceClaim, NonceOutcome, Store};

/// Resident set size in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let nonces: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rate_keys: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let now = 1_764_326_400;

    // Nonces: the record keys and owner tokens the proxy itself makes.
    let store = MemoryStore::new(nonces as usize + 1);
    let scope = identity::encode("billing-svc");
    let before = rss();
    for i in 0..nonces {
        let value = uuid::Uuid::from_u128(u128::from(i) * 0x9E37_79B9_7F4A_7C15 + 1)
            .simple()
            .to_string();
        let pk = nonce::record_key(None, &scope, &value);
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let outcome = store
            .claim_nonce(NonceClaim {
                pk: &pk,
                owner: &owner,
                expires_at: now + 180,
                now,
            })
            .await;
        assert!(matches!(outcome, Ok(NonceOutcome::Claimed)));
    }
    let after = rss();
    println!(
        "nonces: {nonces} live, rss +{:.1} MiB, {:.0} bytes per live nonce (key {} bytes)",
        (after - before) as f64 / 1048576.0,
        (after - before) as f64 / nonces as f64,
        nonce::record_key(None, &scope, "0123456789abcdef0123456789abcdef").len()
    );

    // Rate-limit identities: one tracked entry per distinct client.
    let clock: SharedClock = ManualClock::at_secs(now);
    let rule = RateLimit {
        period: Duration::from_millis(20),
        quota: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
        window_secs: 1,
        burst: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
        scope: RateScope::Instance,
        replicas: NonZeroU32::MIN,
    };
    let limiter = Arc::new(Limiter::new(rule, clock));
    let before = rss();
    for i in 0..rate_keys {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i as u32).to_string();
        let _ = limiter.check(&ip);
    }
    let after = rss();
    println!(
        "rate-limit identities: {} tracked, rss +{:.1} MiB, {:.0} bytes per identity",
        limiter.tracked(),
        (after - before) as f64 / 1048576.0,
        (after - before) as f64 / rate_keys as f64
    );
}

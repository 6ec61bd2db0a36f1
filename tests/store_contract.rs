//! The store contract: one behavioural suite for every `Store`
//! implementation.
//!
//! Each behaviour is an `async fn(Arc<dyn Store>)`; `store_matrix!` (in
//! `tests/support/matrix.rs`) runs it against a fresh `MemoryStore`
//! (module `memory`), the same behind the `MeteredStore` wrapper the
//! server puts around every store (module `metered`), a `DynamoStore` on
//! a fresh table of a local moto server (module `dynamo`), and again on a
//! moto that returns no old item from a failed conditional write (module
//! `dynamo_without_old_items`: the fallback-read path), and on dynalite,
//! a stricter independent implementation (module `dynalite`: DynamoDB's
//! size limits, no old items). Times are real
//! epoch seconds (moto may honour TTL), but every `now` is passed
//! explicitly, so nothing sleeps. DynamoDB-only failure behaviour
//! (outage, hang, `init_table`) is at the end.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use replay_guard::store::dynamodb::{init_table, DynamoStore};
use replay_guard::store::{
    Fenced, IdemClaim, IdemOutcome, NonceClaim, NonceOutcome, Store, StoreError, StoredResponse,
};
use support::matrix::{
    dynalite_store, dynamo_store, dynamo_store_without_old_items, memory_store, metered_store,
};
use support::moto::MotoServer;

type Shared = Arc<dyn Store>;

/// A realistic "now" in epoch seconds.
fn t0() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn nonce<'a>(pk: &'a str, owner: &'a str, expires_at: u64, now: u64) -> NonceClaim<'a> {
    NonceClaim {
        pk,
        owner,
        expires_at,
        now,
    }
}

/// Claim the nonce `pk` once per step `(owner, expires_at, now, expected)`,
/// in order, asserting each outcome.
async fn nonce_steps(store: &Shared, pk: &str, steps: &[(&str, u64, u64, NonceOutcome)]) {
    for (step, &(owner, expires_at, now, expected)) in steps.iter().enumerate() {
        let claim = nonce(pk, owner, expires_at, now);
        let outcome = store.claim_nonce(claim.clone()).await.unwrap();
        assert_eq!(outcome, expected, "step {step}: {claim:?}");
    }
}

/// An idempotency claim with a 60 s lease and a 120 s in-flight expiry.
fn idem<'a>(pk: &'a str, owner: &'a str, fingerprint: &'a str, now: u64) -> IdemClaim<'a> {
    IdemClaim {
        pk,
        owner,
        fingerprint,
        lease_until: now + 60,
        expires_at: now + 120,
        now,
    }
}

/// Claim an idempotency key and assert the outcome.
async fn expect_idem(store: &Shared, claim: IdemClaim<'_>, expected: IdemOutcome) {
    let outcome = store.claim_idempotency(claim.clone()).await.unwrap();
    assert_eq!(outcome, expected, "{claim:?}");
}

async fn complete(
    store: &Shared,
    pk: &str,
    owner: &str,
    response: &StoredResponse,
    expires_at: u64,
) -> Fenced {
    store
        .complete_idempotency(pk, owner, response, expires_at)
        .await
        .unwrap()
}

async fn release(store: &Shared, pk: &str, owner: &str) -> Fenced {
    store.release_idempotency(pk, owner).await.unwrap()
}

fn response(body: Option<&[u8]>) -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("x-binary".into(), vec![0xff, 0xfe, 0x00, b'a', 0x80]),
            ("x-empty".into(), Vec::new()),
            ("set-cookie".into(), b"a=1".to_vec()),
            ("set-cookie".into(), b"b=2".to_vec()),
        ],
        body: body.map(Bytes::copy_from_slice),
    }
}

// ---------------------------------------------------------------- nonces

async fn nonce_claim_then_replay(store: Shared) {
    let now = t0();
    let steps = [
        ("o1", now + 180, now, NonceOutcome::Claimed),
        ("o2", now + 181, now + 1, NonceOutcome::Replayed),
    ];
    nonce_steps(&store, "nonce#client-a#4f9c2a7e1b3d4c5a8e6f", &steps).await;
}

async fn nonce_keys_are_independent(store: Shared) {
    let now = t0();
    for (pk, owner) in [
        ("nonce#client-a#samesamesamesame", "o1"),
        ("nonce#client-b#samesamesamesame", "o2"),
        ("nonce#client-a#othersothersothe", "o3"),
    ] {
        nonce_steps(
            &store,
            pk,
            &[(owner, now + 180, now, NonceOutcome::Claimed)],
        )
        .await;
    }
}

async fn nonce_expired_record_is_absent(store: Shared) {
    let now = t0();
    let steps = [
        ("o1", now + 10, now, NonceOutcome::Claimed),
        // Still live at exactly `expires_at`.
        ("o2", now + 200, now + 10, NonceOutcome::Replayed),
        // Past it, the record is absent although nobody deleted it.
        ("o3", now + 200, now + 11, NonceOutcome::Claimed),
        // And the new claim is live.
        ("o4", now + 300, now + 12, NonceOutcome::Replayed),
    ];
    nonce_steps(&store, "nonce#client-a#expiring-nonce-0001", &steps).await;
}

async fn nonce_own_retry_is_claimed(store: Shared) {
    let now = t0();
    let steps = [
        ("owner-a", now + 180, now, NonceOutcome::Claimed),
        // The same attempt again (same owner token): still ours.
        ("owner-a", now + 180, now, NonceOutcome::Claimed),
        ("owner-b", now + 180, now, NonceOutcome::Replayed),
    ];
    nonce_steps(&store, "nonce#client-a#retried-nonce-0001", &steps).await;
}

async fn nonce_concurrent_claims_one_winner(store: Shared) {
    let now = t0();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.spawn(async move {
            let owner = format!("owner-{i}");
            store
                .claim_nonce(nonce(
                    "nonce#client-a#contended-nonce-01",
                    &owner,
                    now + 180,
                    now,
                ))
                .await
                .unwrap()
        });
    }
    let mut claimed = 0;
    while let Some(outcome) = tasks.join_next().await {
        if outcome.unwrap() == NonceOutcome::Claimed {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 1, "exactly one of 50 concurrent claims wins");
}

// ---------------------------------------------------------- idempotency

async fn idem_other_owner_sees_in_flight(store: Shared) {
    let now = t0();
    let pk = "idem#client-a#order-1";
    expect_idem(&store, idem(pk, "a", "fp-a", now), IdemOutcome::Claimed).await;
    let in_flight = IdemOutcome::InFlight {
        fingerprint: "fp-a".into(),
        lease_until: now + 60,
    };
    expect_idem(&store, idem(pk, "b", "fp-b", now + 5), in_flight).await;
}

async fn idem_own_retry_is_claimed(store: Shared) {
    let now = t0();
    let claim = idem("idem#client-a#order-retry", "a", "fp-a", now);
    expect_idem(&store, claim.clone(), IdemOutcome::Claimed).await;
    expect_idem(&store, claim, IdemOutcome::Claimed).await;
}

async fn idem_completed_response_round_trips(store: Shared) {
    let now = t0();
    for (pk, body) in [
        ("idem#client-a#order-body", Some(&b"{\"id\":1}\x00\xff"[..])),
        ("idem#client-a#order-empty-body", Some(&b""[..])),
        ("idem#client-a#order-not-retained", None),
    ] {
        let stored = response(body);
        expect_idem(&store, idem(pk, "a", "fp-a", now), IdemOutcome::Claimed).await;
        let done = complete(&store, pk, "a", &stored, now + 86_400).await;
        assert_eq!(done, Fenced::Done, "{pk}");
        // Long after the lease: a completed record does not lapse with it.
        let completed = IdemOutcome::Completed {
            fingerprint: "fp-a".into(),
            response: stored.clone(),
        };
        expect_idem(&store, idem(pk, "b", "fp-a", now + 600), completed).await;
        // After `expires_at` the record is absent.
        let after_expiry = idem(pk, "c", "fp-c", now + 86_401);
        expect_idem(&store, after_expiry, IdemOutcome::Claimed).await;
    }
}

async fn idem_lease_expiry_allows_takeover(store: Shared) {
    let now = t0();
    let pk = "idem#client-a#order-slow";
    expect_idem(&store, idem(pk, "a", "fp", now), IdemOutcome::Claimed).await;
    // a's lease ends at now + 60; b takes over after it.
    let later = now + 61;
    expect_idem(&store, idem(pk, "b", "fp", later), IdemOutcome::Claimed).await;
    // The slow first attempt can neither complete nor release b's record.
    let stale = response(Some(b"stale"));
    assert_eq!(
        complete(&store, pk, "a", &stale, now + 86_400).await,
        Fenced::LostOwnership
    );
    assert_eq!(release(&store, pk, "a").await, Fenced::LostOwnership);
    let in_flight = IdemOutcome::InFlight {
        fingerprint: "fp".into(),
        lease_until: later + 60,
    };
    expect_idem(&store, idem(pk, "c", "fp", later + 1), in_flight).await;
    let fresh = response(Some(b"fresh"));
    assert_eq!(
        complete(&store, pk, "b", &fresh, later + 86_400).await,
        Fenced::Done
    );
    let completed = IdemOutcome::Completed {
        fingerprint: "fp".into(),
        response: fresh,
    };
    expect_idem(&store, idem(pk, "c", "fp", later + 2), completed).await;
}

async fn idem_release_by_owner_frees_key(store: Shared) {
    let now = t0();
    let pk = "idem#client-a#order-released";
    expect_idem(&store, idem(pk, "a", "fp", now), IdemOutcome::Claimed).await;
    assert_eq!(release(&store, pk, "a").await, Fenced::Done);
    expect_idem(&store, idem(pk, "b", "fp", now + 1), IdemOutcome::Claimed).await;
}

async fn idem_release_by_non_owner_is_refused(store: Shared) {
    let now = t0();
    let pk = "idem#client-a#order-kept";
    expect_idem(&store, idem(pk, "a", "fp", now), IdemOutcome::Claimed).await;
    assert_eq!(release(&store, pk, "b").await, Fenced::LostOwnership);
    let in_flight = IdemOutcome::InFlight {
        fingerprint: "fp".into(),
        lease_until: now + 60,
    };
    expect_idem(&store, idem(pk, "c", "fp", now + 1), in_flight).await;
}

async fn idem_concurrent_claims_one_winner(store: Shared) {
    let now = t0();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            let owner = format!("owner-{i}");
            store
                .claim_idempotency(idem("idem#client-a#contended", &owner, "fp", now))
                .await
                .unwrap()
        });
    }
    let mut claimed = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            IdemOutcome::Claimed => claimed += 1,
            IdemOutcome::InFlight { fingerprint, .. } => assert_eq!(fingerprint, "fp"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(claimed, 1, "exactly one of 20 concurrent claims wins");
}

async fn ping_answers(store: Shared) {
    store.ping().await.unwrap();
}

// ------------------------------------------- both claims in one call

/// Both sides of `claim_pair`, unwrapped.
async fn pair(
    store: &Shared,
    nonce_claim: NonceClaim<'_>,
    idem_claim: IdemClaim<'_>,
) -> (NonceOutcome, IdemOutcome) {
    let outcome = store.claim_pair(nonce_claim, idem_claim).await;
    (outcome.nonce.unwrap(), outcome.idem.unwrap())
}

async fn pair_claims_both_then_reports_both(store: Shared) {
    let now = t0();
    let (n, i) = ("nonce#pair-both", "idem#pair-both");
    let first = pair(
        &store,
        nonce(n, "a", now + 300, now),
        idem(i, "a", "fp", now),
    )
    .await;
    assert_eq!(first, (NonceOutcome::Claimed, IdemOutcome::Claimed));
    // Another request with the same nonce and key: each side as alone.
    let second = pair(
        &store,
        nonce(n, "b", now + 300, now),
        idem(i, "b", "fp", now),
    )
    .await;
    let in_flight = IdemOutcome::InFlight {
        fingerprint: "fp".into(),
        lease_until: now + 60,
    };
    assert_eq!(second, (NonceOutcome::Replayed, in_flight));
    // The same attempt again (an SDK retry): both its own.
    let retry = pair(
        &store,
        nonce(n, "a", now + 300, now),
        idem(i, "a", "fp", now),
    )
    .await;
    assert_eq!(retry, (NonceOutcome::Claimed, IdemOutcome::Claimed));
    // The single claims see what the pair wrote.
    nonce_steps(&store, n, &[("c", now + 300, now, NonceOutcome::Replayed)]).await;
}

async fn pair_sides_are_independent(store: Shared) {
    let now = t0();
    let (n, i) = ("nonce#pair-independent", "idem#pair-independent");
    nonce_steps(&store, n, &[("old", now + 300, now, NonceOutcome::Claimed)]).await;
    // A replayed nonce does not stop the key's claim from landing: the
    // caller gives it back, fenced by its owner token.
    let replay = pair(
        &store,
        nonce(n, "r", now + 300, now),
        idem(i, "r", "fp", now),
    )
    .await;
    assert_eq!(replay, (NonceOutcome::Replayed, IdemOutcome::Claimed));
    assert_eq!(release(&store, i, "other").await, Fenced::LostOwnership);
    assert_eq!(release(&store, i, "r").await, Fenced::Done);
    expect_idem(&store, idem(i, "next", "fp", now), IdemOutcome::Claimed).await;
}

async fn pair_fresh_nonce_gets_the_stored_answer(store: Shared) {
    let now = t0();
    let i = "idem#pair-completed";
    let stored = response(Some(b"{\"paid\":true}"));
    let first = pair(
        &store,
        nonce("nonce#pair-c1", "a", now + 300, now),
        idem(i, "a", "fp", now),
    )
    .await;
    assert_eq!(first, (NonceOutcome::Claimed, IdemOutcome::Claimed));
    assert_eq!(
        complete(&store, i, "a", &stored, now + 3600).await,
        Fenced::Done
    );
    // A retry: fresh nonce, same key. The nonce is consumed and the
    // stored answer comes back in the same call.
    let retry = pair(
        &store,
        nonce("nonce#pair-c2", "b", now + 300, now),
        idem(i, "b", "fp", now),
    )
    .await;
    let completed = IdemOutcome::Completed {
        fingerprint: "fp".into(),
        response: stored,
    };
    assert_eq!(retry, (NonceOutcome::Claimed, completed));
    nonce_steps(
        &store,
        "nonce#pair-c2",
        &[("c", now + 300, now, NonceOutcome::Replayed)],
    )
    .await;
}

async fn pair_concurrent_one_winner_per_side(store: Shared) {
    let now = t0();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("o{i}");
            let n = nonce("nonce#pair-race", &owner, now + 300, now);
            let k = idem("idem#pair-race", &owner, "fp", now);
            pair(&store, n, k).await
        }));
    }
    let (mut nonces, mut keys) = (0, 0);
    for task in tasks {
        let (n, i) = task.await.unwrap();
        nonces += usize::from(n == NonceOutcome::Claimed);
        keys += usize::from(i == IdemOutcome::Claimed);
    }
    assert_eq!(
        (nonces, keys),
        (1, 1),
        "one winner per side of 10 racing pairs"
    );
}

store_matrix! {
    targets {
        memory => memory_store(),
        metered => metered_store(),
        dynamo => dynamo_store().await,
        dynamo_without_old_items => dynamo_store_without_old_items().await,
        dynalite => dynalite_store().await,
    }
    cases {
        nonce_claim_then_replay,
        nonce_keys_are_independent,
        nonce_expired_record_is_absent,
        nonce_own_retry_is_claimed,
        nonce_concurrent_claims_one_winner,
        idem_other_owner_sees_in_flight,
        idem_own_retry_is_claimed,
        idem_completed_response_round_trips,
        idem_lease_expiry_allows_takeover,
        idem_release_by_owner_frees_key,
        idem_release_by_non_owner_is_refused,
        idem_concurrent_claims_one_winner,
        ping_answers,
        pair_claims_both_then_reports_both,
        pair_sides_are_independent,
        pair_fresh_nonce_gets_the_stored_answer,
        pair_concurrent_one_winner_per_side,
    }
}

// ------------------------------------------------- DynamoDB-only behaviour

/// Await `call` and assert it fails as `Unavailable`, promptly (< 2 s).
async fn assert_unavailable<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) {
    let started = Instant::now();
    match call.await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}, not prompt");
}

/// A store with a 300 ms timeout on a fresh table of `moto`.
async fn short_timeout_store(moto: &MotoServer) -> DynamoStore {
    let mut settings = moto.fresh_table_settings().await;
    settings.timeout = Duration::from_millis(300);
    DynamoStore::connect(&settings).await.unwrap()
}

/// A healthy-path call on a short-timeout store: retried while the store
/// is unavailable (a loaded CI machine may miss 300 ms once), up to ~5 s.
/// Safe because a claim retried with the same owner is recognised as ours.
async fn claim_eventually(store: &DynamoStore, claim: NonceClaim<'_>) -> NonceOutcome {
    for _ in 0..25 {
        match store.claim_nonce(claim.clone()).await {
            Ok(outcome) => return outcome,
            Err(StoreError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    panic!("store did not recover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_stopped_server_is_unavailable_then_recovers() {
    let moto = MotoServer::start();
    let store = short_timeout_store(&moto).await;
    let now = t0();
    let pk = "nonce#client-a#outage-nonce-00001";
    assert_eq!(
        claim_eventually(&store, nonce(pk, "o1", now + 180, now)).await,
        NonceOutcome::Claimed
    );

    moto.stop();
    assert_unavailable(store.claim_nonce(nonce(pk, "o2", now + 180, now))).await;
    assert_unavailable(store.ping()).await;
    assert_unavailable(store.claim_idempotency(idem("idem#client-a#k", "a", "fp", now))).await;

    // Same port, same client: the store works again (moto lost its data).
    moto.restart().await;
    assert_eq!(
        claim_eventually(&store, nonce(pk, "o3", now + 180, now)).await,
        NonceOutcome::Claimed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_hung_server_times_out_then_recovers() {
    let moto = MotoServer::start();
    let store = short_timeout_store(&moto).await;
    let now = t0();
    let pk = "nonce#client-a#hung-nonce-000001";
    assert_eq!(
        claim_eventually(&store, nonce(pk, "o1", now + 180, now)).await,
        NonceOutcome::Claimed
    );

    moto.pause();
    assert_unavailable(store.claim_nonce(nonce(pk, "o2", now + 180, now))).await;
    moto.resume();

    // State survived the hang: the nonce is still remembered.
    assert_eq!(
        claim_eventually(&store, nonce(pk, "o3", now + 180, now)).await,
        NonceOutcome::Replayed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_init_table_is_idempotent() {
    let moto = MotoServer::shared();
    let settings = moto.fresh_table_settings().await; // first run
    let again = init_table(&settings).await.unwrap();
    assert!(!again.created, "{again}");
    assert!(!again.ttl_newly_enabled, "{again}");

    let mut other = settings.clone();
    other.table = format!("{}-second", settings.table);
    let first = init_table(&other).await.unwrap();
    assert!(first.created && first.ttl_newly_enabled, "{first}");
    assert!(first.to_string().contains("created"), "{first}");
}

/// A missing table is a configuration error, not an outage: DynamoDB
/// answers `ResourceNotFoundException` (a 4xx client error), which is
/// `Invalid` — never failed open, and `/readyz` stays 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_missing_table_is_invalid_not_an_outage() {
    let moto = MotoServer::shared();
    let settings = moto.settings("rg-test-no-such-table", Duration::from_secs(2));
    let store = DynamoStore::connect(&settings).await.unwrap();
    assert!(matches!(store.ping().await, Err(StoreError::Invalid(_))));
    let now = t0();
    let claim = nonce("nonce#x#missing-table-0001", "o", now + 1, now);
    let outcome = store.claim_nonce(claim).await;
    assert!(
        matches!(outcome, Err(StoreError::Invalid(_))),
        "{outcome:?}"
    );
}

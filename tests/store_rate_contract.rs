//! The behavioural contract of `Store::reserve_rate` (cluster rate limits,
//! SPEC §6), run on every store as `tests/store_contract.rs` is: memory,
//! metered, DynamoDB on moto (old items returned, and not), dynalite.
//! Kept in its own file so the rate contract and the replay contract can
//! change independently. Times are nanoseconds, passed explicitly.

mod support;

use std::sync::Arc;

use replay_guard::store::{RateOutcome, RateReservation, Store};
use support::matrix::{
    dynalite_store, dynamo_store, dynamo_store_without_old_items, memory_store, metered_store,
};

type Shared = Arc<dyn Store>;

const SEC: u64 = 1_000_000_000;
/// 2025-11-28T10:40:00Z in nanoseconds.
const NOW: u64 = 1_764_326_400 * SEC;

fn pk() -> String {
    format!("rate#{}", uuid::Uuid::new_v4().simple())
}

fn reserve<'a>(pk: &'a str, owner: &'a str, base: u64, tat: u64) -> RateReservation<'a> {
    RateReservation {
        pk,
        base,
        tat,
        owner,
        expires_at: tat.div_ceil(SEC),
        now: NOW,
    }
}

async fn first_reservation_lands_then_a_stale_base_conflicts(store: Shared) {
    let pk = pk();
    let first = store
        .reserve_rate(reserve(&pk, "a", NOW, NOW + 3 * SEC))
        .await;
    assert_eq!(first.unwrap(), RateOutcome::Reserved);
    // Another replica still believes the bucket is full: told the TAT.
    let stale = store.reserve_rate(reserve(&pk, "b", NOW, NOW + SEC)).await;
    assert_eq!(stale.unwrap(), RateOutcome::Conflict { tat: NOW + 3 * SEC });
    // Informed, it lands on top.
    let informed = store
        .reserve_rate(reserve(&pk, "b", NOW + 3 * SEC, NOW + 4 * SEC))
        .await;
    assert_eq!(informed.unwrap(), RateOutcome::Reserved);
    let again = store
        .reserve_rate(reserve(&pk, "c", NOW + 3 * SEC, NOW + 5 * SEC))
        .await;
    assert_eq!(again.unwrap(), RateOutcome::Conflict { tat: NOW + 4 * SEC });
}

async fn a_base_past_the_stored_tat_lands(store: Shared) {
    // A stored TAT before `base` is a fuller bucket (or an expired record
    // not deleted yet): the write lands.
    let pk = pk();
    let old = store.reserve_rate(reserve(&pk, "a", NOW, NOW + SEC)).await;
    assert_eq!(old.unwrap(), RateOutcome::Reserved);
    let later = store
        .reserve_rate(reserve(&pk, "b", NOW + 10 * SEC, NOW + 11 * SEC))
        .await;
    assert_eq!(later.unwrap(), RateOutcome::Reserved);
}

async fn an_sdk_retry_of_a_landed_write_is_reserved(store: Shared) {
    let pk = pk();
    let write = reserve(&pk, "me", NOW, NOW + 2 * SEC);
    assert_eq!(
        store.reserve_rate(write.clone()).await.unwrap(),
        RateOutcome::Reserved
    );
    // The same attempt again (its answer was lost): our own, not a conflict.
    assert_eq!(
        store.reserve_rate(write).await.unwrap(),
        RateOutcome::Reserved
    );
}

async fn concurrent_reservations_from_one_base_have_one_winner(store: Shared) {
    let pk = Arc::new(pk());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let pk = pk.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("replica-{i}");
            store
                .reserve_rate(reserve(&pk, &owner, NOW, NOW + SEC))
                .await
                .unwrap()
        }));
    }
    let mut reserved = 0;
    for task in tasks {
        match task.await.unwrap() {
            RateOutcome::Reserved => reserved += 1,
            RateOutcome::Conflict { tat } => assert_eq!(tat, NOW + SEC),
        }
    }
    assert_eq!(reserved, 1, "one write per base lands");
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
        first_reservation_lands_then_a_stale_base_conflicts,
        a_base_past_the_stored_tat_lands,
        an_sdk_retry_of_a_landed_write_is_reserved,
        concurrent_reservations_from_one_base_have_one_winner,
    }
}

//! Cluster rate limits on DynamoDB (SPEC §6): one `rate#<h>` item per
//! route and identity holding the GCRA state, moved by one conditional
//! `PutItem` on the proxy's clock.
//!
//! Item: `pk` (S), `tat` (N: theoretical arrival time, nanoseconds since
//! the epoch), `owner` (S: random token of the write), `expires_at` (N:
//! epoch seconds when the bucket is full again, the TTL). The write lands
//! when `attribute_not_exists(pk) OR tat <= :base`: the caller computed
//! the new TAT from `base`, and a stored TAT at or before it only means a
//! fuller bucket, so the write never admits more than GCRA would. An item
//! DynamoDB has not deleted yet after its `expires_at` always holds a TAT
//! before `:now <= :base`, so it counts as absent, as SPEC §6 requires.
//! There is no read before the write: a failed condition returns the
//! stored item (`ALL_OLD`) and its TAT is the answer; only when a server
//! returns no old item is it read once, consistently.
//!
//! This module must never put client text into an item (the key is a hash
//! built by the check), never turn a failed condition into an error, and
//! never decide admission: it reports `Reserved` or the stored TAT.

use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

use super::item::{condition_failed_put, get_n, get_s, n, s, store_error, Item};
use super::{DynamoStore, CLAIM_ATTEMPTS};
use crate::store::{RateOutcome, RateReservation, StoreError};

/// What the item a reservation collided with means.
enum Collision {
    /// Final answer.
    Outcome(RateOutcome),
    /// Gone or at most `base` now (it changed between write and read):
    /// write again.
    Retry,
}

/// Decide a failed reservation from the item it collided with.
fn decide(item: Option<&Item>, reservation: &RateReservation<'_>) -> Result<Collision, StoreError> {
    let Some(item) = item else {
        return Ok(Collision::Retry);
    };
    if get_s(item, "owner") == Some(reservation.owner) {
        // An SDK retry of our own write that did land.
        return Ok(Collision::Outcome(RateOutcome::Reserved));
    }
    let tat = get_n(item, "tat")
        .ok_or_else(|| StoreError::Invalid("corrupt rate-limit record".into()))?;
    if tat <= reservation.base {
        return Ok(Collision::Retry);
    }
    Ok(Collision::Outcome(RateOutcome::Conflict { tat }))
}

impl DynamoStore {
    /// [`crate::store::Store::reserve_rate`] on DynamoDB.
    pub(super) async fn put_rate(
        &self,
        reservation: &RateReservation<'_>,
    ) -> Result<RateOutcome, StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(reservation.pk))
                .item("tat", n(reservation.tat))
                .item("owner", s(reservation.owner))
                .item("expires_at", n(reservation.expires_at))
                .condition_expression("attribute_not_exists(pk) OR #tat <= :base")
                .expression_attribute_names("#tat", "tat")
                .expression_attribute_values(":base", n(reservation.base))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let old = match result {
                Ok(_) => return Ok(RateOutcome::Reserved),
                Err(err) => match condition_failed_put(&err) {
                    Some(old) => old,
                    None => return Err(store_error("PutItem", &err)),
                },
            };
            let item = self.collided(reservation.pk, old).await?;
            match decide(item.as_ref(), reservation)? {
                Collision::Outcome(outcome) => return Ok(outcome),
                Collision::Retry => continue,
            }
        }
        Err(StoreError::Unavailable(
            "rate reservation kept colliding with a changing record".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(tat: u64, owner: &str) -> Item {
        [("tat".to_owned(), n(tat)), ("owner".to_owned(), s(owner))]
            .into_iter()
            .collect()
    }

    fn reservation(owner: &str) -> RateReservation<'_> {
        RateReservation {
            pk: "rate#0",
            base: 1_000,
            tat: 1_200,
            owner,
            expires_at: 1,
            now: 900,
        }
    }

    #[test]
    fn collisions() {
        let r = reservation("me");
        assert!(matches!(
            decide(Some(&item(1_500, "other")), &r),
            Ok(Collision::Outcome(RateOutcome::Conflict { tat: 1_500 }))
        ));
        assert!(matches!(
            decide(Some(&item(1_200, "me")), &r),
            Ok(Collision::Outcome(RateOutcome::Reserved))
        ));
        assert!(matches!(
            decide(Some(&item(1_000, "other")), &r),
            Ok(Collision::Retry)
        ));
        assert!(matches!(decide(None, &r), Ok(Collision::Retry)));
        let corrupt: Item = [("owner".to_owned(), s("x"))].into_iter().collect();
        assert!(matches!(
            decide(Some(&corrupt), &r),
            Err(StoreError::Invalid(_))
        ));
    }
}

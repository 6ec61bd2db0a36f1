//! What a collided-with item means for a claim: the pure decisions of the
//! DynamoDB store, taken on the old item a failed conditional write (or
//! the fallback read) returned, on the proxy's clock.
//!
//! This module must never talk to DynamoDB; it only reads items.

use super::item::{get_b, get_n, get_s, Item};
use super::{COMPLETED, IN_FLIGHT};
use bytes::Bytes;

use crate::store::{IdemClaim, IdemOutcome, NonceClaim, NonceOutcome, StoreError, StoredResponse};

/// What a collided-with item means for a claim.
pub(super) enum Decision<T> {
    /// Final answer.
    Outcome(T),
    /// The item is gone or claimable now: write the claim again.
    Retry,
}

pub(super) fn nonce_decision(
    item: Option<&Item>,
    claim: &NonceClaim<'_>,
) -> Decision<NonceOutcome> {
    let Some(item) = item else {
        return Decision::Retry;
    };
    if get_s(item, "owner") == Some(claim.owner) {
        // An SDK retry of our own write that did land.
        return Decision::Outcome(NonceOutcome::Claimed);
    }
    match get_n(item, "expires_at") {
        Some(expires_at) if expires_at < claim.now => Decision::Retry,
        _ => Decision::Outcome(NonceOutcome::Replayed),
    }
}

/// Decide an idempotency claim from the item it collided with.
pub(super) fn idem_decision(
    item: Option<&Item>,
    claim: &IdemClaim<'_>,
) -> Result<Decision<IdemOutcome>, StoreError> {
    let Some(item) = item else {
        return Ok(Decision::Retry);
    };
    let corrupt = || StoreError::Invalid("corrupt idempotency record".into());
    let expires_at = get_n(item, "expires_at").ok_or_else(corrupt)?;
    if expires_at < claim.now || get_s(item, "owner") == Some(claim.owner) {
        // Only a read that raced a change can see this: claim again.
        return Ok(Decision::Retry);
    }
    let fingerprint = get_s(item, "fingerprint").ok_or_else(corrupt)?.to_owned();
    match get_s(item, "status") {
        Some(IN_FLIGHT) => {
            let lease_until = get_n(item, "lease_until").ok_or_else(corrupt)?;
            if lease_until < claim.now {
                return Ok(Decision::Retry);
            }
            Ok(Decision::Outcome(IdemOutcome::InFlight {
                fingerprint,
                lease_until,
            }))
        }
        Some(COMPLETED) => {
            let status = get_n(item, "resp_status")
                .and_then(|status| u16::try_from(status).ok())
                .ok_or_else(corrupt)?;
            let headers = get_b(item, "resp_headers")
                .and_then(StoredResponse::decode_headers)
                .ok_or_else(corrupt)?;
            let body = get_b(item, "resp_body").map(Bytes::copy_from_slice);
            Ok(Decision::Outcome(IdemOutcome::Completed {
                fingerprint,
                response: StoredResponse {
                    status,
                    headers,
                    body,
                },
            }))
        }
        _ => Err(corrupt()),
    }
}

#[cfg(test)]
mod tests {
    //! The decisions taken on a collided-with item, including the cases
    //! only a racing fallback read can produce.
    use super::*;
    use crate::store::dynamodb::item::{b, n, s};
    use aws_sdk_dynamodb::types::AttributeValue;

    fn item(attrs: &[(&str, AttributeValue)]) -> Item {
        attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn nonce_claim(owner: &str) -> NonceClaim<'_> {
        NonceClaim {
            pk: "nonce#id#n",
            owner,
            expires_at: 200,
            now: 100,
        }
    }

    fn idem_claim(owner: &str) -> IdemClaim<'_> {
        IdemClaim {
            pk: "idem#id#k",
            owner,
            fingerprint: "fp-new",
            lease_until: 160,
            expires_at: 220,
            now: 100,
        }
    }

    #[test]
    fn nonce_decisions() {
        let live = item(&[("owner", s("other")), ("expires_at", n(150))]);
        let expired = item(&[("owner", s("other")), ("expires_at", n(99))]);
        let ours = item(&[("owner", s("me")), ("expires_at", n(150))]);
        let claim = nonce_claim("me");
        assert!(matches!(
            nonce_decision(Some(&live), &claim),
            Decision::Outcome(NonceOutcome::Replayed)
        ));
        assert!(matches!(
            nonce_decision(Some(&ours), &claim),
            Decision::Outcome(NonceOutcome::Claimed)
        ));
        assert!(matches!(
            nonce_decision(Some(&expired), &claim),
            Decision::Retry
        ));
        assert!(matches!(nonce_decision(None, &claim), Decision::Retry));
    }

    #[test]
    fn idem_decisions() {
        let claim = idem_claim("me");
        let in_flight = item(&[
            ("status", s(IN_FLIGHT)),
            ("owner", s("other")),
            ("fingerprint", s("fp")),
            ("lease_until", n(130)),
            ("expires_at", n(190)),
        ]);
        match idem_decision(Some(&in_flight), &claim) {
            Ok(Decision::Outcome(IdemOutcome::InFlight {
                fingerprint,
                lease_until: 130,
            })) => assert_eq!(fingerprint, "fp"),
            _ => panic!("expected InFlight"),
        }
        let mut lapsed = in_flight.clone();
        lapsed.insert("lease_until".into(), n(99));
        assert!(matches!(
            idem_decision(Some(&lapsed), &claim),
            Ok(Decision::Retry)
        ));
        assert!(matches!(idem_decision(None, &claim), Ok(Decision::Retry)));

        let completed = item(&[
            ("status", s(COMPLETED)),
            ("owner", s("other")),
            ("fingerprint", s("fp")),
            ("expires_at", n(9_000)),
            ("resp_status", n(201)),
            ("resp_headers", b(Vec::new())),
        ]);
        match idem_decision(Some(&completed), &claim) {
            Ok(Decision::Outcome(IdemOutcome::Completed { response, .. })) => {
                assert_eq!(response.status, 201);
                assert_eq!(response.body, None, "no resp_body: not retained");
            }
            _ => panic!("expected Completed"),
        }
        let mut corrupt = completed.clone();
        corrupt.insert("resp_status".into(), n(70_000));
        assert!(matches!(
            idem_decision(Some(&corrupt), &claim),
            Err(StoreError::Invalid(_))
        ));
    }
}

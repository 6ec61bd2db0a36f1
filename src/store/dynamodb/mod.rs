//! The DynamoDB store: replay state shared by every replica.
//!
//! One table, partition key `pk` (S), TTL attribute `expires_at` (N, epoch
//! seconds); the exact items and conditional writes are SPEC §6. Every
//! claim is a single conditional `PutItem`, so two replicas racing on the
//! same nonce or idempotency key can never both win. DynamoDB deletes
//! expired items lazily, so every condition treats `expires_at < :now` as
//! absent, with `:now` taken from the proxy's clock (the caller's `now`).
//!
//! Item attributes (`pk` is `nonce#<h>` / `idem#<h>`, a hash built by the
//! checks: no client text is stored anywhere in an item):
//! - nonce: `pk`, `expires_at` (N), `owner` (S);
//! - idempotency: `pk`, `status` (S: `in_flight` | `completed`),
//!   `fingerprint` (S), `owner` (S), `expires_at` (N), and
//!   - while in flight: `lease_until` (N);
//!   - once completed: `resp_status` (N), `resp_headers` (B, see
//!     [`StoredResponse::encode_headers`]) and `resp_body` (B) **only when
//!     the body was retained**: the absence of `resp_body` is what marks a
//!     response as not retained (an empty retained body is an empty `B`).
//!     A completed item is sized before it is written: one that would
//!     exceed DynamoDB's 400 KB limit is written without body and headers.
//! - cluster rate limit (`rate#<h>`): `pk`, `tat` (N), `owner` (S),
//!   `expires_at` (N); its write is in the `rate` module.
//!
//! SDK errors are classified once (`item::store_error`): timeouts,
//! throttling, 5xx and connection failures are `Unavailable` (an outage);
//! every other service error is `Invalid` (never failed open).
//!
//! Conflicts are read from the failed write itself
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`); only when a server
//! returns no old item does this store fall back to one strongly
//! consistent `GetItem`. If that read finds the record gone or claimable
//! (it expired or was released in between), the write is tried again, a
//! bounded number of times.
//!
//! A request with both a nonce and an idempotency key sends both claims
//! at once ([`Store::claim_pair`]): one round trip before forwarding.
//!
//! This module must never: build more than one SDK client per store, use
//! anything but the standard AWS credential chain, put a key value, owner
//! token or secret into an error or log line, decide an outcome by
//! matching error `Display` text, or turn a failed condition into an error
//! (a failed condition is an outcome; errors mean "could not answer").
mod decide;
mod init;
mod item;
mod rate;

use std::time::Duration;

use async_trait::async_trait;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use aws_sdk_dynamodb::Client;

use super::{
    Fenced, IdemClaim, IdemOutcome, NonceClaim, NonceOutcome, PairOutcome, RateOutcome,
    RateReservation, Store, StoreError, StoredResponse,
};

use decide::{idem_decision, nonce_decision, Decision};
pub use init::{init_table, InitReport};
use item::{b, completed_item_bytes, condition_failed_put, n, s, store_error, Item};
pub use item::{MAX_ITEM_BYTES, MAX_RESPONSE_BYTES};
/// Name of the TTL attribute (SPEC §6).
const TTL_ATTRIBUTE: &str = "expires_at";
/// `status` value of a claimed, unfinished idempotency record.
const IN_FLIGHT: &str = "in_flight";
/// `status` value of an idempotency record holding a response.
const COMPLETED: &str = "completed";
/// How many times a claim is written when the record it collided with
/// vanished or became claimable before it could be read.
const CLAIM_ATTEMPTS: usize = 3;
/// Partition key read by [`Store::ping`]; never written.
const PING_KEY: &str = "ping#readiness-probe";
/// Smallest operation timeout used by [`init_table`]: control-plane calls
/// are slower than item writes.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on waiting for a new table to become `ACTIVE`.
const INIT_ACTIVE_WAIT: Duration = Duration::from_secs(120);

/// Where the table lives and how long one store call may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoSettings {
    /// Table name (`[store.dynamodb] table`).
    pub table: String,
    /// AWS region (`[store.dynamodb] region`).
    pub region: String,
    /// A DynamoDB-compatible server to use instead of AWS, e.g. a local
    /// test server; `None` for the regional AWS endpoint.
    pub endpoint_url: Option<String>,
    /// Operation timeout: the whole call, SDK retries included.
    pub timeout: Duration,
}

/// The shared store: one SDK client (cheap to clone, pooled) and a table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    /// The one SDK client, built by [`DynamoStore::connect`].
    client: Client,
    /// Table holding every record.
    table: String,
}

/// Build the one SDK client: region, optional endpoint, operation timeout,
/// standard credential chain. Makes no network call.
async fn build_client(settings: &DynamoSettings, timeout: Duration) -> Client {
    let timeouts = TimeoutConfig::builder().operation_timeout(timeout).build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .timeout_config(timeouts);
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    Client::new(&loader.load().await)
}

fn check_settings(settings: &DynamoSettings) -> Result<(), StoreError> {
    if settings.table.is_empty() || settings.region.is_empty() || settings.timeout.is_zero() {
        return Err(StoreError::Unavailable(
            "dynamodb settings need a table, a region and a non-zero timeout".into(),
        ));
    }
    Ok(())
}

impl DynamoStore {
    /// Build the store's client. No request is sent: an unreachable table
    /// shows up on the first call (and on `/readyz` through [`Store::ping`]),
    /// so the proxy can start while DynamoDB is down.
    pub async fn connect(settings: &DynamoSettings) -> Result<DynamoStore, StoreError> {
        check_settings(settings)?;
        Ok(DynamoStore {
            client: build_client(settings, settings.timeout).await,
            table: settings.table.clone(),
        })
    }

    /// One strongly consistent read of `pk`; `None` when absent.
    async fn read(&self, pk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", &e))?;
        Ok(out.item)
    }

    /// The item a failed claim collided with: the `ALL_OLD` copy from the
    /// failed write, or else one consistent read.
    async fn collided(&self, pk: &str, old: Option<Item>) -> Result<Option<Item>, StoreError> {
        match old {
            Some(item) if !item.is_empty() => Ok(Some(item)),
            _ => self.read(pk).await,
        }
    }

    /// One conditional `PutItem` of a nonce claim.
    async fn put_nonce(&self, claim: &NonceClaim<'_>) -> Result<Write, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(claim.pk))
            .item("expires_at", n(claim.expires_at))
            .item("owner", s(claim.owner))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", n(claim.now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Write::Landed),
            Err(err) => match condition_failed_put(&err) {
                Some(old) => Ok(Write::Collided(old)),
                None => Err(store_error("PutItem", &err)),
            },
        }
    }

    /// One conditional `PutItem` of an idempotency claim.
    ///
    /// Besides SPEC §6's three arms, the condition has `owner = :me`: when
    /// the SDK retries a write whose first attempt did land (the answer was
    /// lost), the record it finds is our own and the retry must succeed,
    /// not report our own request as in flight.
    async fn put_idem(&self, claim: &IdemClaim<'_>) -> Result<Write, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(claim.pk))
            .item("status", s(IN_FLIGHT))
            .item("fingerprint", s(claim.fingerprint))
            .item("lease_until", n(claim.lease_until))
            .item("owner", s(claim.owner))
            .item("expires_at", n(claim.expires_at))
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now \
                 OR (#status = :in_flight AND lease_until < :now) OR #owner = :me",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", n(claim.now))
            .expression_attribute_values(":in_flight", s(IN_FLIGHT))
            .expression_attribute_values(":me", s(claim.owner))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Write::Landed),
            Err(err) => match condition_failed_put(&err) {
                Some(old) => Ok(Write::Collided(old)),
                None => Err(store_error("PutItem", &err)),
            },
        }
    }
}

/// Result of one conditional claim write.
enum Write {
    /// The condition held and the item is ours.
    Landed,
    /// The condition failed; the old item if the server returned it.
    Collided(Option<Item>),
}

#[async_trait]
impl Store for DynamoStore {
    async fn claim_nonce(&self, claim: NonceClaim<'_>) -> Result<NonceOutcome, StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let old = match self.put_nonce(&claim).await? {
                Write::Landed => return Ok(NonceOutcome::Claimed),
                Write::Collided(old) => old,
            };
            match nonce_decision(self.collided(claim.pk, old).await?.as_ref(), &claim) {
                Decision::Outcome(outcome) => return Ok(outcome),
                Decision::Retry => continue,
            }
        }
        Err(StoreError::Unavailable(
            "nonce claim kept colliding with a vanishing record".into(),
        ))
    }

    async fn claim_idempotency(&self, claim: IdemClaim<'_>) -> Result<IdemOutcome, StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let old = match self.put_idem(&claim).await? {
                Write::Landed => return Ok(IdemOutcome::Claimed),
                Write::Collided(old) => old,
            };
            match idem_decision(self.collided(claim.pk, old).await?.as_ref(), &claim)? {
                Decision::Outcome(outcome) => return Ok(outcome),
                Decision::Retry => continue,
            }
        }
        Err(StoreError::Unavailable(
            "idempotency claim kept colliding with a vanishing record".into(),
        ))
    }

    async fn complete_idempotency(
        &self,
        pk: &str,
        owner: &str,
        response: &StoredResponse,
        expires_at: u64,
    ) -> Result<Fenced, StoreError> {
        let headers = response.encode_headers();
        let body = response.body.as_ref().map_or(0, |body| body.len());
        if completed_item_bytes(pk, owner, headers.len(), body) <= MAX_ITEM_BYTES {
            return self
                .update_completed(pk, owner, response, headers, expires_at)
                .await;
        }
        // DynamoDB would refuse the whole update and leave the record in
        // flight, so a retry would execute again after the lease: record
        // the answer completed but not retained instead.
        tracing::warn!(
            status = response.status,
            body_bytes = body,
            header_bytes = headers.len(),
            "idempotent answer does not fit one DynamoDB item; recorded without its body (a retry gets idempotency_response_not_retained)"
        );
        let not_retained = StoredResponse {
            status: response.status,
            headers: Vec::new(),
            body: None,
        };
        self.update_completed(pk, owner, &not_retained, Vec::new(), expires_at)
            .await
    }

    /// Note: if the SDK retries a delete whose first attempt landed, the
    /// retry finds no item and reports `LostOwnership`; the caller only
    /// logs and counts that, so the false alarm is harmless.
    async fn release_idempotency(&self, pk: &str, owner: &str) -> Result<Fenced, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Fenced::Done),
            Err(SdkError::ServiceError(ctx))
                if matches!(
                    ctx.err(),
                    DeleteItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(Fenced::LostOwnership)
            }
            Err(err) => Err(store_error("DeleteItem", &err)),
        }
    }

    /// Cluster rate limits: see the `rate` module.
    async fn reserve_rate(
        &self,
        reservation: RateReservation<'_>,
    ) -> Result<RateOutcome, StoreError> {
        self.put_rate(&reservation).await
    }

    /// A consistent `GetItem` of a key that is never written: proves the
    /// table exists and answers, with the same permission the proxy needs
    /// anyway (no `DescribeTable` grant required).
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(PING_KEY).await.map(|_| ())
    }

    /// Both conditional `PutItem`s in flight at once (two pooled
    /// connections): one round trip, one write unit each — not a
    /// `TransactWriteItems`, which costs two per item and which dynalite
    /// does not implement (docs/dynamodb.md, "One round trip").
    async fn claim_pair(&self, nonce: NonceClaim<'_>, idem: IdemClaim<'_>) -> PairOutcome {
        let (nonce, idem) = tokio::join!(self.claim_nonce(nonce), self.claim_idempotency(idem));
        PairOutcome { nonce, idem }
    }
}

impl DynamoStore {
    /// The fenced `UpdateItem` that completes a record (SPEC §6), with the
    /// answer's encoded `headers`.
    async fn update_completed(
        &self,
        pk: &str,
        owner: &str,
        response: &StoredResponse,
        headers: Vec<u8>,
        expires_at: u64,
    ) -> Result<Fenced, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":rs", n(u64::from(response.status)))
            .expression_attribute_values(":rh", b(headers))
            .expression_attribute_values(":exp", n(expires_at));
        let set = "SET #status = :completed, resp_status = :rs, resp_headers = :rh, \
                   expires_at = :exp";
        request = match &response.body {
            Some(body) => request
                .update_expression(format!("{set}, resp_body = :rb REMOVE lease_until"))
                .expression_attribute_values(":rb", b(body.to_vec())),
            None => request.update_expression(format!("{set} REMOVE lease_until, resp_body")),
        };
        match request.send().await {
            Ok(_) => Ok(Fenced::Done),
            Err(SdkError::ServiceError(ctx))
                if matches!(
                    ctx.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(Fenced::LostOwnership)
            }
            Err(err) => Err(store_error("UpdateItem", &err)),
        }
    }
}

//! The DynamoDB store: replay state shared by every replica.
//!
//! One table, partition key `pk` (S), TTL attribute `expires_at` (N, epoch
//! seconds); the exact items and conditional writes are SPEC §6. Every
//! claim is a single conditional `PutItem`, so two replicas racing on the
//! same nonce or idempotency key can never both win. DynamoDB deletes
//! expired items lazily, so every condition treats `expires_at < :now` as
//! absent, with `:now` taken from the proxy's clock (the caller's `now`).
//!
//! Item attributes:
//! - nonce: `pk`, `expires_at` (N), `owner` (S);
//! - idempotency: `pk`, `status` (S: `in_flight` | `completed`),
//!   `fingerprint` (S), `owner` (S), `expires_at` (N), and
//!   - while in flight: `lease_until` (N);
//!   - once completed: `resp_status` (N), `resp_headers` (B, see
//!     [`StoredResponse::encode_headers`]) and `resp_body` (B) **only when
//!     the body was retained**: the absence of `resp_body` is what marks a
//!     response as not retained (an empty retained body is an empty `B`).
//!
//! Conflicts are read from the failed write itself
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`); only when a server
//! returns no old item does this store fall back to one strongly
//! consistent `GetItem`. If that read finds the record gone or claimable
//! (it expired or was released in between), the write is tried again, a
//! bounded number of times.
//!
//! This module must never: build more than one SDK client per store, use
//! anything but the standard AWS credential chain, put a key value, owner
//! token or secret into an error or log line, decide an outcome by
//! matching error `Display` text, or turn a failed condition into an error
//! (a failed condition is an outcome; errors mean "could not answer").

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::config::Region;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;
use bytes::Bytes;

use super::{
    Fenced, IdemClaim, IdemOutcome, NonceClaim, NonceOutcome, Store, StoreError, StoredResponse,
};

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

/// What [`init_table`] did; `Display` prints one line for the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Table name.
    pub table: String,
    /// `true` if this run created the table, `false` if it already existed.
    pub created: bool,
    /// `true` if this run turned TTL on, `false` if it already was on.
    pub ttl_newly_enabled: bool,
}

impl fmt::Display for InitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = if self.created {
            "created"
        } else {
            "already existed"
        };
        let ttl = if self.ttl_newly_enabled {
            "enabled now"
        } else {
            "already enabled"
        };
        write!(
            f,
            "table {:?}: {table}; TTL on `{TTL_ATTRIBUTE}`: {ttl}",
            self.table
        )
    }
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
            .map_err(|e| unavailable("GetItem", &e))?;
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
                None => Err(unavailable("PutItem", &err)),
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
                None => Err(unavailable("PutItem", &err)),
            },
        }
    }
}

/// A DynamoDB item.
type Item = HashMap<String, AttributeValue>;

/// Result of one conditional claim write.
enum Write {
    /// The condition held and the item is ours.
    Landed,
    /// The condition failed; the old item if the server returned it.
    Collided(Option<Item>),
}

/// What a collided-with item means for a claim.
enum Decision<T> {
    /// Final answer.
    Outcome(T),
    /// The item is gone or claimable now: write the claim again.
    Retry,
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
            .expression_attribute_values(":rh", b(response.encode_headers()))
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
            Err(err) => Err(unavailable("UpdateItem", &err)),
        }
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
            Err(err) => Err(unavailable("DeleteItem", &err)),
        }
    }

    /// A consistent `GetItem` of a key that is never written: proves the
    /// table exists and answers, with the same permission the proxy needs
    /// anyway (no `DescribeTable` grant required).
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(PING_KEY).await.map(|_| ())
    }
}

/// Decide a nonce claim from the item it collided with.
fn nonce_decision(item: Option<&Item>, claim: &NonceClaim<'_>) -> Decision<NonceOutcome> {
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
fn idem_decision(
    item: Option<&Item>,
    claim: &IdemClaim<'_>,
) -> Result<Decision<IdemOutcome>, StoreError> {
    let Some(item) = item else {
        return Ok(Decision::Retry);
    };
    let corrupt = || StoreError::Unavailable("corrupt idempotency record".into());
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

/// The old item of a `PutItem` whose condition failed (`Some(None)` when
/// the server returned none); `None` for every other error.
fn condition_failed_put<R>(err: &SdkError<PutItemError, R>) -> Option<Option<Item>> {
    match err {
        SdkError::ServiceError(ctx) => match ctx.err() {
            PutItemError::ConditionalCheckFailedException(e) => Some(e.item().cloned()),
            _ => None,
        },
        _ => None,
    }
}

/// Turn an SDK error into `Unavailable` with a short description: the
/// operation and the kind of failure (or the service's error code), never
/// the service's message, a key value or a credential.
fn unavailable<E: ProvideErrorMetadata, R>(op: &str, err: &SdkError<E, R>) -> StoreError {
    let what = match err {
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "timed out".to_owned(),
        SdkError::DispatchFailure(failure) if failure.is_io() => "connection failed".to_owned(),
        SdkError::DispatchFailure(_) => "request not sent".to_owned(),
        SdkError::ConstructionFailure(_) => {
            "request could not be built (credentials or settings)".to_owned()
        }
        SdkError::ResponseError(_) => "unreadable response".to_owned(),
        SdkError::ServiceError(ctx) => {
            format!("service error {}", ctx.err().code().unwrap_or("(no code)"))
        }
        _ => "unexpected SDK error".to_owned(),
    };
    StoreError::Unavailable(format!("dynamodb {op}: {what}"))
}

/// Create the table (`pk` S hash key, on-demand billing) unless it exists,
/// wait until it is `ACTIVE`, then turn TTL on `expires_at` on unless it
/// is on. Safe to run twice, and concurrently with itself. Uses an
/// operation timeout of at least 10 s: control-plane calls are slow.
pub async fn init_table(settings: &DynamoSettings) -> Result<InitReport, StoreError> {
    check_settings(settings)?;
    let client = build_client(settings, settings.timeout.max(INIT_TIMEOUT)).await;
    let table = settings.table.as_str();

    let created = match client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|_| StoreError::Unavailable("bad table definition".into()))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|_| StoreError::Unavailable("bad table definition".into()))?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
    {
        Ok(_) => true,
        Err(SdkError::ServiceError(ctx))
            if matches!(ctx.err(), CreateTableError::ResourceInUseException(_)) =>
        {
            false
        }
        Err(err) => return Err(unavailable("CreateTable", &err)),
    };

    wait_active(&client, table).await?;
    let ttl_newly_enabled = enable_ttl(&client, table).await?;
    Ok(InitReport {
        table: table.to_owned(),
        created,
        ttl_newly_enabled,
    })
}

/// Poll `DescribeTable` until the table is `ACTIVE`, for a bounded time.
async fn wait_active(client: &Client, table: &str) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + INIT_ACTIVE_WAIT;
    loop {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| unavailable("DescribeTable", &e))?;
        let status = out.table.and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(
                "dynamodb table did not become ACTIVE in time".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// TTL state of the table: `Some(true)` on `expires_at`, `Some(false)` off.
async fn ttl_enabled(client: &Client, table: &str) -> Result<bool, StoreError> {
    let out = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| unavailable("DescribeTimeToLive", &e))?;
    let Some(description) = out.time_to_live_description else {
        return Ok(false);
    };
    let on = matches!(
        description.time_to_live_status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    );
    match description.attribute_name.as_deref() {
        Some(TTL_ATTRIBUTE) => Ok(on),
        Some(_) if on => Err(StoreError::Unavailable(format!(
            "dynamodb table has TTL on another attribute than `{TTL_ATTRIBUTE}`"
        ))),
        _ => Ok(false),
    }
}

/// Turn TTL on `expires_at` on; `false` if it already was on.
async fn enable_ttl(client: &Client, table: &str) -> Result<bool, StoreError> {
    if ttl_enabled(client, table).await? {
        return Ok(false);
    }
    let spec = TimeToLiveSpecification::builder()
        .attribute_name(TTL_ATTRIBUTE)
        .enabled(true)
        .build()
        .map_err(|_| StoreError::Unavailable("bad TTL specification".into()))?;
    match client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        // Another `init-table` may have enabled it in between: DynamoDB
        // then refuses the update. Believe the table, not the error.
        Err(err) => match ttl_enabled(client, table).await {
            Ok(true) => Ok(false),
            _ => Err(unavailable("UpdateTimeToLive", &err)),
        },
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn b(value: Vec<u8>) -> AttributeValue {
    AttributeValue::B(Blob::new(value))
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

fn get_n(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

fn get_b<'a>(item: &'a Item, name: &str) -> Option<&'a [u8]> {
    match item.get(name) {
        Some(AttributeValue::B(value)) => Some(value.as_ref()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! The decisions taken on a collided-with item, including the cases
    //! only a racing fallback read can produce.
    use super::*;

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
            Err(StoreError::Unavailable(_))
        ));
    }
}

//! DynamoDB store — placeholder until the real implementation lands.

use std::time::Duration;

use async_trait::async_trait;

use super::{Fenced, IdemClaim, IdemOutcome, NonceClaim, NonceOutcome, Store, StoreError, StoredResponse};

/// Connection settings.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    /// Table.
    pub table: String,
    /// Region.
    pub region: String,
    /// Endpoint.
    pub endpoint_url: Option<String>,
    /// Timeout.
    pub timeout: Duration,
}

/// Placeholder.
#[derive(Debug)]
pub struct DynamoStore;

impl DynamoStore {
    /// Placeholder.
    pub async fn connect(_settings: &DynamoSettings) -> Result<Self, StoreError> {
        Err(StoreError::Unavailable("dynamodb store not built yet".into()))
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn claim_nonce(&self, _claim: NonceClaim<'_>) -> Result<NonceOutcome, StoreError> {
        Err(StoreError::Unavailable("unimplemented".into()))
    }
    async fn claim_idempotency(&self, _claim: IdemClaim<'_>) -> Result<IdemOutcome, StoreError> {
        Err(StoreError::Unavailable("unimplemented".into()))
    }
    async fn complete_idempotency(&self, _pk: &str, _owner: &str, _r: &StoredResponse, _e: u64) -> Result<Fenced, StoreError> {
        Err(StoreError::Unavailable("unimplemented".into()))
    }
    async fn release_idempotency(&self, _pk: &str, _owner: &str) -> Result<Fenced, StoreError> {
        Err(StoreError::Unavailable("unimplemented".into()))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("unimplemented".into()))
    }
}

/// Placeholder.
pub async fn init_table(_settings: &DynamoSettings) -> Result<String, StoreError> {
    Err(StoreError::Unavailable("unimplemented".into()))
}

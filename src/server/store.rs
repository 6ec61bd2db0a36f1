//! Store construction for the server: the memory store (with its purger)
//! or the DynamoDB store, as the config says, always wrapped in
//! [`MeteredStore`] so every call is timed.
//!
//! This module must never decide request behaviour or retry: it only
//! builds the store the checks call.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::{Config, StoreKind};
use crate::metrics::Metrics;
use crate::store::dynamodb::{DynamoSettings, DynamoStore};
use crate::store::memory::MemoryStore;
use crate::store::{MeteredStore, Store, StoreError};

/// Build the configured store (memory or DynamoDB), wrapped for metrics.
pub async fn build_store(
    config: &Config,
    clock: &SharedClock,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Store>, StoreError> {
    let inner: Arc<dyn Store> = match (config.store.kind, &config.store.dynamodb) {
        (StoreKind::Dynamodb, Some(dynamo)) => {
            Arc::new(DynamoStore::connect(&dynamo_settings(dynamo)).await?)
        }
        _ => {
            let memory = Arc::new(MemoryStore::new(config.store.max_entries));
            memory.spawn_purger(clock.clone(), Duration::from_secs(5));
            let entries = Arc::downgrade(&memory);
            metrics.memory_store(config.store.max_entries, move || {
                entries.upgrade().map_or(0, |store| store.len())
            });
            memory
        }
    };
    Ok(Arc::new(MeteredStore::new(inner, metrics.clone())))
}

/// The store in one phrase for the startup line: `memory (max_entries
/// 1000000)` or `dynamodb (table replay-guard, region eu-west-1)`.
pub(super) fn describe(config: &Config) -> String {
    match (config.store.kind, &config.store.dynamodb) {
        (StoreKind::Dynamodb, Some(dynamo)) => {
            let endpoint = dynamo
                .endpoint_url
                .as_deref()
                .map(|url| format!(", endpoint {url}"))
                .unwrap_or_default();
            format!(
                "dynamodb (table {}, region {}{endpoint})",
                dynamo.table, dynamo.region
            )
        }
        _ => format!("memory (max_entries {})", config.store.max_entries),
    }
}

/// DynamoDB settings from the config.
pub fn dynamo_settings(dynamo: &crate::config::DynamoConfig) -> DynamoSettings {
    DynamoSettings {
        table: dynamo.table.clone(),
        region: dynamo.region.clone(),
        endpoint_url: dynamo.endpoint_url.clone(),
        timeout: dynamo.timeout,
    }
}

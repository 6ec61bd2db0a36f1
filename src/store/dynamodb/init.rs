//! `init-table`: create the table and turn TTL on, safe to run twice and
//! concurrently with itself.
//!
//! This module must never touch replay records; it only manages the table.

use std::fmt;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

use super::item::store_error;
use super::{
    build_client, check_settings, DynamoSettings, INIT_ACTIVE_WAIT, INIT_TIMEOUT, TTL_ATTRIBUTE,
};
use crate::store::StoreError;

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
        Err(err) => return Err(store_error("CreateTable", &err)),
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
            .map_err(|e| store_error("DescribeTable", &e))?;
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
        .map_err(|e| store_error("DescribeTimeToLive", &e))?;
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
            _ => Err(store_error("UpdateTimeToLive", &err)),
        },
    }
}

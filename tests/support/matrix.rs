//! The store matrix: one behaviour, written once as
//! `async fn case(target)`, run as one test per store target.
//!
//! ```ignore
//! store_matrix! {
//!     targets { memory => memory_store(), dynamo => dynamo_store().await }
//!     cases { nonce_claim_then_replay, idem_own_retry_is_claimed }
//! }
//! ```
//!
//! expands to `mod memory { #[tokio::test] async fn nonce_claim_then_replay()
//! { super::nonce_claim_then_replay(memory_store()).await } … }` and the
//! same for `dynamo`. Inside each module everything of the calling file is
//! in scope (`use super::*`), so a target expression names the file's own
//! helpers or the ones below.
//!
//! The targets below are the stores themselves (`Arc<dyn Store>`, for the
//! store contract) and the `[store]` TOML of a proxy ([`Backend`], for the
//! end-to-end suites).

use std::sync::Arc;

use replay_guard::metrics::Metrics;
use replay_guard::store::dynamodb::DynamoStore;
use replay_guard::store::memory::MemoryStore;
use replay_guard::store::Store;

use super::dynalite::DynaliteServer;
use super::moto::MotoServer;

/// The metered store wrapper; the one place the tests name its module.
pub use replay_guard::store::MeteredStore;

/// Runs every case against every target: module `target`, test `case`.
/// Each test is a multi-threaded tokio test with two workers.
#[macro_export]
macro_rules! store_matrix {
    (
        targets { $($target:ident => $make:expr),+ $(,)? }
        cases $cases:tt
    ) => {
        $( $crate::store_matrix!(@target $target, $make, $cases); )+
    };
    (@target $target:ident, $make:expr, { $($case:ident),* $(,)? }) => {
        mod $target {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($make).await
                }
            )*
        }
    };
}

// ------------------------------------------------------- store targets

/// A fresh memory store.
pub fn memory_store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new(10_000))
}

/// A fresh memory store behind the metered wrapper, as the server runs it.
pub fn metered_store() -> Arc<dyn Store> {
    Arc::new(MeteredStore::new(memory_store(), Arc::new(Metrics::new())))
}

/// A `DynamoStore` on a fresh table of the shared moto server.
pub async fn dynamo_store() -> Arc<dyn Store> {
    let settings = MotoServer::shared().fresh_table_settings().await;
    Arc::new(DynamoStore::connect(&settings).await.expect("connect"))
}

/// A `DynamoStore` on a moto that returns no old item from a failed
/// conditional write: exercises the fallback `GetItem`.
pub async fn dynamo_store_without_old_items() -> Arc<dyn Store> {
    let moto = MotoServer::shared_without_old_items();
    let settings = moto.fresh_table_settings().await;
    Arc::new(DynamoStore::connect(&settings).await.expect("connect"))
}

/// A `DynamoStore` on a fresh table of the shared dynalite server: the
/// stricter implementation (item-size and key-size limits enforced, no
/// old item from a failed conditional write).
pub async fn dynalite_store() -> Arc<dyn Store> {
    let settings = DynaliteServer::shared().fresh_table_settings().await;
    Arc::new(DynamoStore::connect(&settings).await.expect("connect"))
}

// ------------------------------------------------------- proxy targets

/// Which store a proxy under test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Memory,
    /// DynamoDB on the shared moto server.
    Dynamo,
    /// DynamoDB on the shared dynalite server.
    Dynalite,
}

impl Backend {
    /// The `[store]` tables; DynamoDB gets a fresh table on the shared
    /// moto server.
    pub async fn store_toml(self) -> String {
        match self {
            Backend::Memory => "[store]\nkind = \"memory\"\n".to_owned(),
            Backend::Dynamo => {
                let settings = MotoServer::shared().fresh_table_settings().await;
                dynamo_toml(&settings)
            }
            Backend::Dynalite => {
                let settings = DynaliteServer::shared().fresh_table_settings().await;
                dynamo_toml(&settings)
            }
        }
    }

    /// The shared server a DynamoDB backend runs on, as a URL.
    pub fn endpoint(self) -> Option<String> {
        match self {
            Backend::Memory => None,
            Backend::Dynamo => Some(MotoServer::shared().endpoint()),
            Backend::Dynalite => Some(DynaliteServer::shared().endpoint()),
        }
    }
}

/// `[store]` on the table `settings` names (5 s timeout).
pub fn dynamo_toml(settings: &replay_guard::store::dynamodb::DynamoSettings) -> String {
    format!(
        "[store]\nkind = \"dynamodb\"\n[store.dynamodb]\ntable = \"{}\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\ntimeout_ms = 5000\n",
        settings.table,
        settings.endpoint_url.as_deref().unwrap_or_default()
    )
}

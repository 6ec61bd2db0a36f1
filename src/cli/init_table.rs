//! `replay-guard init-table`: create the DynamoDB table with TTL enabled.

use std::process::ExitCode;

use replay_guard::config::StoreConfig;
use replay_guard::server::dynamo_settings;
use replay_guard::store::dynamodb;

/// Create the table named in `[store.dynamodb]` of `source` (only the
/// `[store]` table was read: no signing secret is needed).
pub async fn run(store: &StoreConfig, source: &str) -> Result<(), ExitCode> {
    let Some(dynamo) = &store.dynamodb else {
        eprintln!("{source}: init-table needs a [store.dynamodb] table with table and region");
        return Err(ExitCode::from(1));
    };
    match dynamodb::init_table(&dynamo_settings(dynamo)).await {
        Ok(report) => {
            println!("{report}");
            Ok(())
        }
        Err(e) => {
            eprintln!("init-table failed: {e}");
            Err(ExitCode::from(2))
        }
    }
}

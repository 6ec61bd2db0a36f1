//! `replay-guard init-table`: create the DynamoDB table with TTL enabled.

use std::process::ExitCode;

use replay_guard::config::Config;
use replay_guard::server::dynamo_settings;
use replay_guard::store::dynamodb;

/// Create the table named in `[store.dynamodb]`.
pub async fn run(config: &Config) -> Result<(), ExitCode> {
    let Some(dynamo) = &config.store.dynamodb else {
        eprintln!(
            "{}: init-table needs a [store.dynamodb] table with table and region",
            config.source
        );
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

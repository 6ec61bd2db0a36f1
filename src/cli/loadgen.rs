//! `replay-guard loadgen` (to be written).

use std::process::ExitCode;

use clap::Args;

/// Arguments of `loadgen`.
#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// Target URL.
    #[arg(long)]
    pub url: String,
}

/// Run the load generator.
pub async fn run(_args: LoadgenArgs) -> Result<(), ExitCode> {
    eprintln!("loadgen: not built yet");
    Err(ExitCode::from(2))
}

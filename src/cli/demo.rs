//! `replay-guard demo` (to be written).

use std::process::ExitCode;

/// Run the demo.
pub async fn run() -> Result<(), ExitCode> {
    eprintln!("demo: not built yet");
    Err(ExitCode::from(2))
}

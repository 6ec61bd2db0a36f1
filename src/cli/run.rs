//! `replay-guard run`: start the proxy on the system clock, reload the
//! config on SIGHUP, drain on SIGTERM or Ctrl-C, exit when stopped.
//!
//! This module only wires signals to the server's handles: it must never
//! serve a request or decide what a reload changes.

use std::process::ExitCode;

use replay_guard::clock::{SharedClock, SystemClock};
use replay_guard::config::Config;
use replay_guard::server;

/// The `target` of this module's log lines: the one they had when this
/// code lived in `main.rs`, so log output and filters are unchanged.
const LOG_TARGET: &str = "replay_guard";

/// Serve until SIGTERM or Ctrl-C; SIGHUP reloads the config file.
pub async fn serve(config: Config) -> Result<(), ExitCode> {
    // Valid but almost certainly not meant: the same lines `check` prints.
    for warning in &config.warnings {
        tracing::warn!(target: LOG_TARGET, "{warning}");
    }
    let clock: SharedClock = std::sync::Arc::new(SystemClock);
    let running = server::start(config, clock).await.map_err(|e| {
        tracing::error!(target: LOG_TARGET, error = %e, "cannot start");
        ExitCode::from(2)
    })?;
    let reloader = running.reloader();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hangup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hangup.recv().await.is_some() {
                tracing::info!(target: LOG_TARGET, "SIGHUP: reloading the config");
                // Errors are logged by the reloader; the old config keeps serving.
                let _ = reloader.reload_for(server::Trigger::Signal);
            }
        }
    });
    let trigger = running.shutdown_trigger();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(target: LOG_TARGET, "shutdown signal received");
        let _ = trigger.send(true);
    });
    running.wait().await;
    tracing::info!(target: LOG_TARGET, "stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

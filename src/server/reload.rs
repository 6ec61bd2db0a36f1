//! [`Reloader`]: re-reads the config file (on SIGHUP or `POST /reload`)
//! and swaps in a new configuration generation for new requests, while
//! in-flight requests finish on the one they started with.
//!
//! This module must never rebind a listener, restart workers or rebuild the
//! store: those settings are only warned about and take effect after a
//! restart. An invalid file must never replace the config being served.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::LOG_TARGET;
use crate::config::{Config, ConfigErrors};
use crate::proxy::Proxy;

/// Swaps in a new configuration generation for new requests; in-flight
/// requests finish on the one they started with.
#[derive(Debug, Clone)]
pub struct Reloader {
    /// The configuration generation new requests run on.
    pub(super) current: Arc<ArcSwap<Proxy>>,
    /// The config file re-read on reload.
    pub(super) path: PathBuf,
}

impl Reloader {
    /// Re-read the config file; if valid, swap routes, keys and limits
    /// atomically (unchanged rate-limit rules keep their state). If invalid,
    /// keep serving the old config and return the errors.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let started = std::time::Instant::now();
        let old = self.current.load_full();
        let result = Config::load(&self.path);
        old.metrics().reload(result.is_ok(), started.elapsed());
        let config = match result {
            Ok(config) => config,
            Err(errors) => {
                tracing::error!(target: LOG_TARGET, errors = %errors, "config reload failed; still serving the previous config");
                return Err(errors);
            }
        };
        warn_restart_only_changes(old.config(), &config);
        self.current.store(Arc::new(old.reload(Arc::new(config))));
        tracing::info!(target: LOG_TARGET, path = %self.path.display(), "config reloaded");
        Ok(())
    }
}

/// Warn about every setting that changed in the file but only takes effect
/// after a restart (listeners, worker threads, timeouts, the store).
fn warn_restart_only_changes(before: &Config, after: &Config) {
    let needs_restart = [
        ("listen", before.server.listen != after.server.listen),
        (
            "admin_listen",
            before.server.admin_listen != after.server.admin_listen,
        ),
        (
            "tls",
            before.server.tls.is_some() != after.server.tls.is_some(),
        ),
        (
            "max_connections",
            before.server.max_connections != after.server.max_connections,
        ),
        ("workers", before.server.workers != after.server.workers),
        (
            "header_read_timeout_ms",
            before.server.header_read_timeout != after.server.header_read_timeout,
        ),
        (
            "shutdown_grace_secs",
            before.server.shutdown_grace != after.server.shutdown_grace,
        ),
        (
            "[store]",
            format!("{:?}", before.store) != format!("{:?}", after.store),
        ),
    ];
    for (key, changed) in needs_restart {
        if changed {
            tracing::warn!(target: LOG_TARGET,
                key,
                "changed in the config file; takes effect only after a restart"
            );
        }
    }
}

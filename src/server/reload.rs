//! [`Reloader`]: re-reads the config file (on SIGHUP, `POST /reload` or a
//! change of the file itself, see `watch`) and swaps in a new
//! configuration generation for new requests, while in-flight requests
//! finish on the one they started with.
//!
//! Every trigger goes through the same [`Reloader::reload`]: the same
//! validation, the same metrics, one reload at a time. Secret files
//! (`secret_file`, `previous_secret_file`) are re-read with the config;
//! environment variables are the process's own and cannot change under it.
//!
//! The TLS listener's certificate, key and client CA file are re-read and
//! its acceptor swapped for new connections.
//!
//! This module must never rebind a listener, restart workers or rebuild the
//! store: those settings are named as needing a restart (in the log and in
//! `POST /reload`'s answer) and take effect only after one. An invalid file
//! must never replace the config being served.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::LOG_TARGET;
use crate::config::{Config, ConfigErrors};
use crate::proxy::Proxy;

/// What asked for a reload (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// `POST /reload` on the admin listener.
    Admin,
    /// The config file (or the symlink it is reached through) changed.
    FileChanged,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Admin => "POST /reload",
            Trigger::FileChanged => "file changed",
        }
    }
}

/// A successful reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Settings that changed in the file but take effect only after a
    /// restart (`listen`, `admin_listen`, `workers`, `[store]`, …).
    pub restart_required: Vec<&'static str>,
}

/// Swaps in a new configuration generation for new requests; in-flight
/// requests finish on the one they started with.
#[derive(Clone)]
pub struct Reloader {
    /// The configuration generation new requests run on.
    pub(super) current: Arc<ArcSwap<Proxy>>,
    /// The config file re-read on reload.
    pub(super) path: PathBuf,
    /// One reload at a time; holds the SHA-256 of the file content the
    /// last attempt read, so that a file watcher's wake-up for content
    /// already tried (a touch, a reload already asked for) does nothing.
    pub(super) last: Arc<Mutex<Option<[u8; 32]>>>,
    /// The TLS listener's acceptor, rebuilt from the new file's
    /// `[server.tls]` (certificate, key, client CA file).
    pub(super) tls: Option<crate::tls::SharedAcceptor>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader for the file `path`, whose current content is served.
    pub(super) fn new(
        current: Arc<ArcSwap<Proxy>>,
        path: PathBuf,
        tls: Option<crate::tls::SharedAcceptor>,
    ) -> Self {
        let seen = content_hash(&path, &current.load().config().files);
        Self {
            current,
            path,
            last: Arc::new(Mutex::new(seen)),
            tls,
        }
    }

    /// Re-read the config file; if valid, swap routes, keys and limits
    /// atomically (unchanged rate-limit rules keep their state). If invalid,
    /// keep serving the old config and return the errors.
    pub fn reload(&self) -> Result<Reloaded, ConfigErrors> {
        self.reload_for(Trigger::Admin)
    }

    /// [`Reloader::reload`], logged as asked for by `trigger`.
    pub fn reload_for(&self, trigger: Trigger) -> Result<Reloaded, ConfigErrors> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = self.attempt(trigger);
        *last = self.content_hash();
        result
    }

    /// Reload only if the file's content differs from what the last
    /// attempt read (`None`: unchanged, nothing done).
    pub(super) fn reload_if_changed(&self) -> Option<Result<Reloaded, ConfigErrors>> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = self.content_hash();
        if now.is_none() || now == *last {
            // Unreadable (mid-swap, or removed): the next event retries.
            return None;
        }
        let result = self.attempt(Trigger::FileChanged);
        // Over the files the config now in use reads (a reload may name
        // other secret files).
        *last = self.content_hash();
        Some(result)
    }

    /// The files the config in use was built from, besides its own.
    pub(super) fn files(&self) -> Vec<PathBuf> {
        self.current.load().config().files.clone()
    }

    fn content_hash(&self) -> Option<[u8; 32]> {
        content_hash(&self.path, &self.current.load().config().files)
    }

    /// One attempt; the caller holds the lock.
    fn attempt(&self, trigger: Trigger) -> Result<Reloaded, ConfigErrors> {
        let started = Instant::now();
        let old = self.current.load_full();
        let config = match Config::load(&self.path) {
            Ok(config) => config,
            Err(errors) => {
                old.metrics().reload(false, started.elapsed());
                tracing::error!(target: LOG_TARGET, trigger = trigger.label(), errors = %errors, "config reload failed; still serving the previous config");
                return Err(errors);
            }
        };
        // Certificates and the client CA file are re-read with the config;
        // one that cannot be loaded keeps the old config and acceptor.
        let acceptor = match (&self.tls, &config.server.tls) {
            (Some(_), Some(files)) => match crate::tls::acceptor(files) {
                Ok(acceptor) => Some(acceptor),
                Err(e) => {
                    old.metrics().reload(false, started.elapsed());
                    tracing::error!(target: LOG_TARGET, trigger = trigger.label(), error = %e, "config reload failed; still serving the previous config");
                    return Err(ConfigErrors {
                        errors: vec![format!("{}: {e}", self.path.display())],
                    });
                }
            },
            _ => None,
        };
        let restart_required = restart_only_changes(old.config(), &config);
        for key in &restart_required {
            tracing::warn!(target: LOG_TARGET,
                key,
                "changed in the config file; takes effect only after a restart"
            );
        }
        if let (Some(shared), Some(acceptor)) = (&self.tls, acceptor) {
            shared.store(Arc::new(acceptor));
        }
        self.current.store(Arc::new(old.reload(Arc::new(config))));
        // Counted once the new generation serves, so that a scrape that
        // sees the count also sees the new config at work.
        old.metrics().reload(true, started.elapsed());
        tracing::info!(target: LOG_TARGET,
            trigger = trigger.label(),
            path = %self.path.display(),
            restart_required = %if restart_required.is_empty() {
                "none".to_owned()
            } else {
                restart_required.join(",")
            },
            "config reloaded"
        );
        Ok(Reloaded { restart_required })
    }
}

/// SHA-256 over the config file's bytes and every file it reads (path,
/// then content, or a mark when unreadable: the reload that follows says
/// why); `None` when the config file itself cannot be read.
fn content_hash(path: &std::path::Path, files: &[PathBuf]) -> Option<[u8; 32]> {
    let mut hash = Sha256::new();
    let config = std::fs::read(path).ok()?;
    hash.update((config.len() as u64).to_be_bytes());
    hash.update(&config);
    for file in files {
        let name = file.as_os_str().as_encoded_bytes();
        hash.update((name.len() as u64).to_be_bytes());
        hash.update(name);
        match std::fs::read(file) {
            Ok(bytes) => {
                hash.update([1]);
                hash.update((bytes.len() as u64).to_be_bytes());
                hash.update(&bytes);
            }
            Err(_) => hash.update([0]),
        }
    }
    Some(hash.finalize().into())
}

/// Every setting that changed in the file but only takes effect after a
/// restart (listeners, worker threads, connection handling, the store, the
/// file watcher itself), by its name in the file.
pub(super) fn restart_only_changes(before: &Config, after: &Config) -> Vec<&'static str> {
    let (b, a) = (&before.server, &after.server);
    // Certificate, key and client CA files are re-read on reload; only
    // turning TLS on or off needs a restart.
    let tls = |server: &crate::config::Server| server.tls.is_some();
    let changes = [
        ("listen", b.listen != a.listen),
        ("admin_listen", b.admin_listen != a.admin_listen),
        ("tls", tls(b) != tls(a)),
        ("max_connections", b.max_connections != a.max_connections),
        ("workers", b.workers != a.workers),
        (
            "header_read_timeout_ms",
            b.header_read_timeout != a.header_read_timeout,
        ),
        ("shutdown_grace_secs", b.shutdown_grace != a.shutdown_grace),
        ("watch_config", b.watch_config != a.watch_config),
        (
            "[store]",
            format!("{:?}", before.store) != format!("{:?}", after.store),
        ),
    ];
    changes
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
}

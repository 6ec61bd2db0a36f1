//! Reload when the config file changes (`[server] watch_config`, on by
//! default): Kubernetes updates a mounted ConfigMap by swapping a symlink
//! and sends no signal, and editors save by renaming a new file over the
//! old one.
//!
//! The same holds for every file the config reads (`secret_file`,
//! `public_key_file`, `jwks_file`, the TLS certificate, key and client CA:
//! a mounted Secret is swapped like a ConfigMap, e.g. by cert-manager).
//!
//! The watcher watches each file's directory (not the file: a rename or a
//! symlink swap replaces the inode a file watch would follow) and, when
//! the file resolves through a symlink into another directory, that
//! directory too. Events on a file, on the directory entries the
//! Kubernetes atomic writer uses (`..data`, `..<timestamp>`) and on a
//! symlink's target wake it; after a quiet [`DEBOUNCE`] it asks the
//! [`Reloader`] to reload *if the content changed* (of the config file or
//! of any file it reads), with the same validation and metrics as SIGHUP.
//! After each reload it watches the directories of the files the new
//! config reads, and stops watching those no file needs any more (a
//! ConfigMap's previous `..<timestamp>` directory, a file the config no
//! longer reads), so the watch list does not grow with every swap. Reads
//! (access events) are ignored, so the reload's own reads never wake it
//! again.
//!
//! This module must never reload without the content having changed, and
//! never block the event loop: the reload runs on a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::{Reloader, LOG_TARGET};

/// How long the directory must be quiet before the file is re-read: a
/// ConfigMap swap or an editor's save is several events in a few
/// milliseconds.
pub(super) const DEBOUNCE: Duration = Duration::from_millis(300);

/// Start watching `reloader`'s file until `stop` fires. A watcher that
/// cannot start (no inotify instances left, an unreadable directory) is
/// logged and leaves SIGHUP and `POST /reload` working.
pub(super) fn spawn(reloader: Reloader, mut stop: watch::Receiver<bool>) {
    if !reloader.path.is_file() {
        // A config parsed from text (the demo, tests): no file to watch.
        return;
    }
    let (wake, mut woken) = mpsc::unbounded_channel::<()>();
    let relevant = Arc::new(Mutex::new(Relevant::of(&reloader.path, &reloader.files())));
    let handler = {
        let relevant = Arc::clone(&relevant);
        move |event: notify::Result<Event>| {
            let Ok(event) = event else { return };
            let wakes = relevant
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .wakes(&event);
            if wakes {
                let _ = wake.send(());
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!(target: LOG_TARGET, error = %e, "cannot watch the config file; reload with SIGHUP or POST /reload");
            return;
        }
    };
    let mut watched = Vec::new();
    let dirs = relevant
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .directories();
    if !rewatch(&mut watcher, &mut watched, dirs) {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = woken.recv() => if got.is_none() { break },
                _ = stop.changed() => break,
            }
            // Debounce: wait until nothing happened for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, woken.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let task = reloader.clone();
            // Errors are logged and counted by the reloader.
            let _ = tokio::task::spawn_blocking(move || task.reload_if_changed()).await;
            // The config now in use may read other files.
            let now = Relevant::of(&reloader.path, &reloader.files());
            let dirs = now.directories();
            *relevant
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = now;
            rewatch(&mut watcher, &mut watched, dirs);
        }
        // Owned by the task until here: dropping it stops the watch.
        drop(watcher);
    });
}

/// Watch exactly `dirs`: stop watching the directories in `watched` that
/// are not among them, start on those not watched yet; `false` (logged)
/// when one cannot be watched.
fn rewatch(watcher: &mut impl Watcher, watched: &mut Vec<PathBuf>, dirs: Vec<PathBuf>) -> bool {
    watched.retain(|dir| {
        if dirs.contains(dir) {
            return true;
        }
        // A deleted directory (the atomic writer removes the old one) has
        // lost its watch already: the error says only that.
        let _ = watcher.unwatch(dir);
        false
    });
    for dir in dirs {
        if watched.contains(&dir) {
            continue;
        }
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(target: LOG_TARGET, dir = %dir.display(), error = %e, "cannot watch a directory of the config's files; reload with SIGHUP or POST /reload");
            return false;
        }
        watched.push(dir);
    }
    true
}

/// The file's directory and, if it resolves elsewhere, the target's.
fn directories(file: &Path, target: Option<&Path>) -> Vec<PathBuf> {
    let parent = |path: &Path| match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![parent(file)];
    if let Some(target) = target {
        let dir = parent(target);
        let same = std::fs::canonicalize(&dirs[0]).is_ok_and(|d| d == dir);
        if !same {
            dirs.push(dir);
        }
    }
    dirs
}

/// Which events may have changed a watched file's content.
struct Relevant {
    files: Vec<Watched>,
}

/// One file the config depends on.
struct Watched {
    /// The path as given.
    file: PathBuf,
    /// What it resolved to when it was last read.
    target: Option<PathBuf>,
}

impl Relevant {
    /// The config file and the files it reads.
    fn of(config: &Path, files: &[PathBuf]) -> Relevant {
        Relevant {
            files: std::iter::once(config)
                .chain(files.iter().map(PathBuf::as_path))
                .map(|file| Watched {
                    file: file.to_path_buf(),
                    target: std::fs::canonicalize(file).ok(),
                })
                .collect(),
        }
    }

    /// Every directory to watch, each once.
    fn directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for watched in &self.files {
            for dir in directories(&watched.file, watched.target.as_deref()) {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        dirs
    }

    fn wakes(&self, event: &Event) -> bool {
        if matches!(event.kind, EventKind::Access(_)) {
            return false;
        }
        event
            .paths
            .iter()
            .any(|path| self.files.iter().any(|watched| watched.names(path)))
    }
}

impl Watched {
    fn names(&self, path: &Path) -> bool {
        let same_name = path.file_name().is_some() && path.file_name() == self.file.file_name();
        // The Kubernetes atomic writer: `..data` and `..<timestamp>` entries.
        let atomic_writer = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(".."));
        let on_target = self
            .target
            .as_deref()
            .is_some_and(|target| target == path || target.starts_with(path));
        same_name || atomic_writer || on_target
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, ModifyKind, RenameMode};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    /// A watcher that records what it was asked to watch.
    #[derive(Default)]
    struct Recording {
        watching: Vec<PathBuf>,
    }

    impl Watcher for Recording {
        fn new<F: notify::EventHandler>(_: F, _: notify::Config) -> notify::Result<Self> {
            Ok(Recording::default())
        }
        fn watch(&mut self, path: &Path, _: RecursiveMode) -> notify::Result<()> {
            self.watching.push(path.to_path_buf());
            Ok(())
        }
        fn unwatch(&mut self, path: &Path) -> notify::Result<()> {
            let before = self.watching.len();
            self.watching.retain(|p| p != path);
            if self.watching.len() == before {
                return Err(notify::Error::watch_not_found());
            }
            Ok(())
        }
        fn kind() -> notify::WatcherKind {
            notify::WatcherKind::NullWatcher
        }
    }

    #[test]
    fn a_swap_moves_the_watch_to_the_new_directory_and_drops_the_old() {
        let mut watcher = Recording::default();
        let mut watched = Vec::new();
        let dirs = |names: &[&str]| names.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert!(rewatch(
            &mut watcher,
            &mut watched,
            dirs(&["/etc/rg", "/etc/rg/..2026_01_01"])
        ));
        // Ten ConfigMap updates: always the mount and the current target.
        for day in 2..12 {
            let target = format!("/etc/rg/..2026_01_{day:02}");
            assert!(rewatch(
                &mut watcher,
                &mut watched,
                dirs(&["/etc/rg", &target])
            ));
            assert_eq!(watched, dirs(&["/etc/rg", &target]));
            assert_eq!(watcher.watching, watched, "nothing left behind");
        }
        // A file the config no longer reads: its directory is dropped; a
        // directory whose watch is already gone is no error.
        watcher
            .watching
            .retain(|p| p.as_os_str() != "/etc/rg/..2026_01_11");
        assert!(rewatch(&mut watcher, &mut watched, dirs(&["/etc/rg"])));
        assert_eq!(watched, dirs(&["/etc/rg"]));
        assert_eq!(watcher.watching, dirs(&["/etc/rg"]));
    }

    #[test]
    fn file_saves_and_configmap_swaps_wake_reads_and_neighbours_do_not() {
        let relevant = Relevant {
            files: vec![Watched {
                file: PathBuf::from("/etc/rg/replay-guard.toml"),
                target: Some(PathBuf::from("/etc/rg/..2026_01_01/replay-guard.toml")),
            }],
        };
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(relevant.wakes(&event(modify, "/etc/rg/replay-guard.toml")));
        assert!(relevant.wakes(&event(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            "/etc/rg/..data"
        )));
        assert!(relevant.wakes(&event(
            EventKind::Create(CreateKind::Folder),
            "/etc/rg/..2026_01_02"
        )));
        assert!(!relevant.wakes(&event(modify, "/etc/rg/other.toml")));
        assert!(!relevant.wakes(&event(
            EventKind::Access(AccessKind::Any),
            "/etc/rg/replay-guard.toml"
        )));
    }
}

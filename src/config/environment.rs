//! The one source validation reads the outside world from: environment
//! variables (`secret_env`, `previous_secret_env`, `AWS_REGION`) and files
//! (`secret_file`, `previous_secret_file`, `public_key_file`, the TLS
//! `cert_file` and `key_file`).
//!
//! [`Config::parse`](super::Config::parse) uses the real process
//! ([`ProcessEnvironment`]); [`Config::parse_with`](super::Config::parse_with)
//! takes any other, e.g. a fake in tests. An implementation must never log,
//! print or keep what it reads (the values are secrets), and validation must
//! never read a variable or a file any other way.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};

/// Environment variables and files, as validation sees them.
pub trait Environment {
    /// The value of a variable; `None` when it is unset (or not UTF-8).
    fn var(&self, name: &str) -> Option<String>;

    /// The whole contents of a file.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// The environment and file system of this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

/// An environment that remembers which files were read through it (their
/// paths, never their contents): what a config depends on besides its own
/// file, for the file watcher.
pub(super) struct Recording<'a> {
    inner: &'a dyn Environment,
    read: RefCell<Vec<PathBuf>>,
}

impl<'a> Recording<'a> {
    pub(super) fn new(inner: &'a dyn Environment) -> Self {
        Recording {
            inner,
            read: RefCell::new(Vec::new()),
        }
    }

    /// The files read, each once, in the order first read.
    pub(super) fn into_files(self) -> Vec<PathBuf> {
        self.read.into_inner()
    }
}

impl Environment for Recording<'_> {
    fn var(&self, name: &str) -> Option<String> {
        self.inner.var(name)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut read = self.read.borrow_mut();
        if !read.iter().any(|p| p == path) {
            read.push(path.to_path_buf());
        }
        drop(read);
        self.inner.read_file(path)
    }
}

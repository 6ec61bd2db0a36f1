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

use std::io;
use std::path::Path;

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

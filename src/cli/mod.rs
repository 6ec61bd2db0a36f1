//! The subcommands of the `replay-guard` binary: each module holds one
//! command's arguments and behaviour, so `main.rs` stays a thin
//! dispatcher. They belong to the binary crate, not to the library: the
//! library's API is the proxy, and these are tools built on it.
//! These modules print to stdout for humans and scripts; they must never
//! be on the proxy's request path.

pub mod check;
pub mod demo;
pub mod demo_upstream;
pub mod healthcheck;
pub mod init_table;
pub mod loadgen;
pub mod probe;
pub mod run;
pub mod sign;

//! The subcommands other than `run`: each module holds one command's
//! arguments and behaviour, so `main.rs` stays a thin dispatcher.
//! These modules print to stdout for humans and scripts; they must never
//! be on the proxy's request path.

pub mod check;
pub mod demo;
pub mod demo_upstream;
pub mod healthcheck;
pub mod init_table;
pub mod loadgen;
pub mod sign;

//! Test support: a real upstream that records what it receives, the real
//! proxy started from a TOML string on ephemeral loopback ports, TOML
//! fragments for routes and stores, an HTTP client, and a real
//! DynamoDB-compatible servers (moto, and the stricter dynalite), plus `store_matrix!`, which runs one
//! case against every store. Every address is 127.0.0.1.
#![allow(dead_code)]

pub mod binary;
pub mod ca;
pub mod client;
pub mod config;
pub mod dynalite;
pub mod httpsig;
pub mod jwt;
pub mod matrix;
pub mod metrics;
pub mod moto;
pub mod proxy;
pub mod python;
pub mod raw;
pub mod store_link;
pub mod upstream;

//! Shared helpers for integration tests. Include with `mod support;`.
//!
//! Each test file compiles this module on its own and uses only part of
//! it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod moto;

//! replay-guard (skeleton; see README).
pub mod clock;
pub mod store;

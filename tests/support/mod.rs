//! Shared helpers for integration tests: a moto server, a fault-injecting proxy, and what
//! tests check with them.
// Test helpers: a panic with its message is the failure report, and not every test
// binary uses every helper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod bucket;
pub mod fault_proxy;
pub mod listing;
pub mod log_buffer;
pub mod moto;
pub mod tmpfs;

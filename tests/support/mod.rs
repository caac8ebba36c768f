//! Shared helpers for integration tests: a moto server and a fault-injecting proxy.
// Test helpers: a panic with its message is the failure report, and not every test
// binary uses every helper.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fault_proxy;
pub mod moto;

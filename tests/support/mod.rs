//! Shared helpers for integration tests: a moto server and a fault-injecting proxy.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod moto;

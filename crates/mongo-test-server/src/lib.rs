//! An in-memory MongoDB wire-protocol server for tests. It behaves like mongod 7.0 for the
//! commands the official drivers and the MongoDB Database Tools send, so nightdump's tests
//! (and anyone trying nightdump) need no real MongoDB.

pub mod engine;
pub mod error;
pub mod seed;

pub use error::CommandError;
pub use seed::Seed;

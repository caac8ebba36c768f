//! End-to-end tests of nightdump against the in-memory MongoDB test server (or a real server
//! when `NIGHTDUMP_TEST_MONGODB_URI` is set), with directory and S3 destinations.

// Test code: a panic with its message is the failure report, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alert_topic;
mod backup;
mod bad_input;
mod cli;
mod concurrency;
mod defects;
mod encryption;
mod faults;
mod harness;
mod lambda;
mod object_lock;
mod oplog;
mod prune;
mod restore;
mod s3;
mod secrets;
#[path = "../support/mod.rs"]
mod support;

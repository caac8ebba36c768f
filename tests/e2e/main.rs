//! End-to-end tests of nightdump against the in-memory MongoDB test server (or a real server
//! when `NIGHTDUMP_TEST_MONGODB_URI` is set), with directory and S3 destinations.

// Test code: a panic with its message is the failure report, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The SNS alert topic with an SQS subscriber, to read what the failure alert delivers.
mod alert_topic;
/// MONGODB-AWS: the role is the database identity; no password anywhere.
mod aws_auth;
/// Backups: the archive equals the source byte for byte, selection, ids, latest.json.
mod backup;
/// Every option and setting given a wrong value: its own one-line message and exit code.
mod bad_input;
/// The command line's own surface: help, usage errors, exit codes.
mod cli;
/// Overlapping runs: duplicate triggers, latest.json under races, prune during a backup,
/// killed runs, many collections (standalone and replica-set sources).
mod concurrency;
/// One regression test per defect found by the adversarial probes.
mod defects;
/// Restore drills: pass, content that differs, scratch deployments that refuse.
mod drill;
/// mongodump directory dumps (the real ones in shared/fixtures): restore, verify, S3 prefix.
mod dump_dir;
/// age and KMS envelope encryption end to end, with the real `age` tool where present.
mod encryption;
/// The fault suite: each fault keeps the whole promise (standalone and replica set).
mod faults;
/// Sources: the demo data set, stores, and readers of what a backup wrote.
mod harness;
/// The Lambda handler in-process against moto: secrets, KMS, metrics, prune, deadlines.
mod lambda;
/// S3 Object Lock on moto: locked backups, default retention, legal holds, prune.
mod object_lock;
/// Point-in-time backups and oplog replay under a concurrent writer.
mod oplog;
/// Continuous point-in-time recovery: oplog captures, restores and archives to any instant,
/// and the captures' faults.
mod pitr;
/// The oplog capture's faults: a roll-over gap, duplicates, SIGTERM, S3 down, no MongoDB.
mod pitr_faults;
/// Retention end to end on a directory and on S3.
mod prune;
/// Restores: round trips, filters, renames, users and roles, damaged archives, faults.
mod restore;
/// S3 destinations on moto: SSE-KMS, multipart uploads, outages.
mod s3;
/// No secret in any output, log, metric, alert or stored object.
mod secrets;
/// The CLI and the Lambda give every shared setting the same verdict.
mod settings_parity;
#[path = "../support/mod.rs"]
mod support;
/// The container task engine as a process: success, failure and SIGTERM, metrics on moto.
mod task;

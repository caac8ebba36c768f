//! Continuous point-in-time recovery: `nightdump oplog` stores the oplog written since the
//! last capture as a slice of the chain (see [`crate::chain`]), and a restore to any instant
//! the chain covers replays the newest backup before it plus the slices up to it.

pub mod capture;
mod entries;
pub mod to_time;

pub use capture::{CaptureOptions, CaptureOutcome, CaptureStatus, CaptureSummary};
pub use entries::Counted;
pub use to_time::{prepare, verify_slice, ToTime};

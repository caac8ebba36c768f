//! Counters a long operation updates and a front end (progress bar, logs, metrics) reads.
//! The library never draws anything itself.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Progress {
    pub namespaces_total: AtomicU64,
    pub namespaces_done: AtomicU64,
    pub documents: AtomicU64,
    /// Uncompressed BSON bytes.
    pub bytes: AtomicU64,
    /// Bytes as stored (compressed, encrypted).
    pub stored_bytes: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub namespaces_total: u64,
    pub namespaces_done: u64,
    pub documents: u64,
    pub bytes: u64,
    pub stored_bytes: u64,
}

impl Progress {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            namespaces_total: self.namespaces_total.load(Ordering::Relaxed),
            namespaces_done: self.namespaces_done.load(Ordering::Relaxed),
            documents: self.documents.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            stored_bytes: self.stored_bytes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

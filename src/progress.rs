//! Counters a long operation updates and a front end (progress bar, logs, metrics) reads.
//! The library never draws anything itself.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Progress {
    pub namespaces_total: AtomicU64,
    pub namespaces_done: AtomicU64,
    pub documents: AtomicU64,
    /// Uncompressed BSON bytes.
    pub bytes: AtomicU64,
    /// Bytes as stored (compressed, encrypted).
    pub stored_bytes: AtomicU64,
    /// How many namespaces are worked on at once; a front end shows at most that many
    /// per-namespace lines. 0 when the operation tracks no namespaces.
    pub parallel: AtomicU64,
    namespaces: Mutex<Vec<Arc<NamespaceProgress>>>,
}

/// Where one namespace of a restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum NamespaceState {
    /// Not started, or created and waiting for its documents.
    Queued = 0,
    Creating = 1,
    Inserting = 2,
    /// All documents inserted; its indexes are built at the end.
    Loaded = 3,
    Indexes = 4,
    Done = 5,
    Failed = 6,
}

impl NamespaceState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Creating,
            2 => Self::Inserting,
            3 => Self::Loaded,
            4 => Self::Indexes,
            5 => Self::Done,
            6 => Self::Failed,
            _ => Self::Queued,
        }
    }

    /// Being worked on right now (what deserves a line of its own).
    pub fn active(self) -> bool {
        matches!(self, Self::Creating | Self::Inserting | Self::Indexes)
    }
}

/// One namespace's counters, with its expected size when the manifest or the archive says.
#[derive(Debug)]
pub struct NamespaceProgress {
    pub name: String,
    pub documents_total: Option<u64>,
    pub bytes_total: Option<u64>,
    pub documents: AtomicU64,
    pub bytes: AtomicU64,
    state: AtomicU8,
}

impl NamespaceProgress {
    pub fn state(&self) -> NamespaceState {
        NamespaceState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, state: NamespaceState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// A terminal state is kept: a late step of a failed namespace does not revive it.
    pub fn finish(&self, state: NamespaceState) {
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                (now != NamespaceState::Failed as u8).then_some(state as u8)
            });
    }

    pub fn add(&self, documents: u64, bytes: u64) {
        self.documents.fetch_add(documents, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
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

    /// Starts following one namespace (queued), in the order they are registered.
    pub fn track(
        &self,
        name: impl Into<String>,
        documents_total: Option<u64>,
        bytes_total: Option<u64>,
    ) -> Arc<NamespaceProgress> {
        let ns = Arc::new(NamespaceProgress {
            name: name.into(),
            documents_total,
            bytes_total,
            documents: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            state: AtomicU8::new(NamespaceState::Queued as u8),
        });
        self.namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&ns));
        ns
    }

    /// The namespaces followed so far.
    pub fn namespaces(&self) -> Vec<Arc<NamespaceProgress>> {
        self.namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

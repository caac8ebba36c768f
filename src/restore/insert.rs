//! An insert worker: unordered `insert` batches into one collection, with duplicate keys
//! counted as already present and other write errors counted as failed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bson::RawDocumentBuf;
use mongodb::error::ErrorKind;
use mongodb::Collection;
use tokio::sync::{mpsc, Semaphore};

use super::report::Counters;
use super::stream::Chunk;
use crate::error::{one_line, Result};
use crate::progress::{NamespaceProgress, NamespaceState, Progress};
use crate::source::Source;

const DUPLICATE_KEY: i32 = 11000;

pub struct Worker {
    pub collection: Collection<RawDocumentBuf>,
    pub counters: Arc<Counters>,
    /// Bounds the insert commands in flight across all workers (`--parallel`).
    pub permits: Arc<Semaphore>,
    pub progress: Arc<Progress>,
    pub target: Arc<Source>,
    /// This namespace on the progress display.
    pub namespace: Option<Arc<NamespaceProgress>>,
    /// Its state once all its documents are in.
    pub then: NamespaceState,
}

impl Worker {
    /// Runs until the namespace ends or its channel closes. A returned error (the target is
    /// gone, permission denied…) means the whole restore must stop.
    pub async fn run(self, mut rx: mpsc::Receiver<Chunk>) -> Result<()> {
        let result = self.receive(&mut rx).await;
        if let (Err(_), Some(ns)) = (&result, &self.namespace) {
            ns.set_state(NamespaceState::Failed);
        }
        result
    }

    async fn receive(&self, rx: &mut mpsc::Receiver<Chunk>) -> Result<()> {
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::End(summary) => {
                    self.counters
                        .archive_documents
                        .store(summary.documents, Ordering::Relaxed);
                    self.counters.ended.store(true, Ordering::Relaxed);
                    Progress::add(&self.progress.namespaces_done, 1);
                    if let Some(ns) = &self.namespace {
                        ns.finish(self.then);
                    }
                }
                Chunk::Documents { docs, bytes } => {
                    if let Some(ns) = &self.namespace {
                        ns.set_state(NamespaceState::Inserting);
                    }
                    let n = docs.len() as u64;
                    self.insert(docs, bytes).await?;
                    if let Some(ns) = &self.namespace {
                        ns.add(n, bytes);
                    }
                }
            }
        }
        Ok(())
    }

    async fn insert(&self, docs: Vec<RawDocumentBuf>, bytes: u64) -> Result<()> {
        let _permit = self.permits.acquire().await.ok();
        let n = docs.len() as u64;
        let result = self.collection.insert_many(&docs).ordered(false).await;
        let (inserted, skipped, failed) = match result {
            Ok(_) => (n, 0, 0),
            Err(e) => match e.kind.as_ref() {
                ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                    let errors = failure.write_errors.as_deref().unwrap_or_default();
                    let duplicates =
                        errors.iter().filter(|w| w.code == DUPLICATE_KEY).count() as u64;
                    if let Some(other) = errors.iter().find(|w| w.code != DUPLICATE_KEY) {
                        self.counters.note_error(format!(
                            "error {}: {}",
                            other.code,
                            one_line(&other.message, 200)
                        ));
                    }
                    let refused = errors.len() as u64;
                    (n.saturating_sub(refused), duplicates, refused - duplicates)
                }
                _ => {
                    let err = self.target.error("insert", &e).in_restore();
                    if matches!(err, crate::Error::MongoPermission { .. }) {
                        // Refused before it ran: nothing of the batch was written.
                        self.counters.note_error(err.to_string());
                    } else {
                        self.counters.note_error(format!(
                            "{err} (whether the {n} documents of the batch in flight were written is unknown)"
                        ));
                    }
                    return Err(err);
                }
            },
        };
        self.counters
            .inserted
            .fetch_add(inserted, Ordering::Relaxed);
        self.counters.skipped.fetch_add(skipped, Ordering::Relaxed);
        self.counters.failed.fetch_add(failed, Ordering::Relaxed);
        Progress::add(&self.progress.documents, n);
        Progress::add(&self.progress.bytes, bytes);
        Ok(())
    }
}

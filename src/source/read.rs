//! Reading one collection's documents as raw BSON, in natural order, handed on in batches of
//! bounded size so memory stays flat whatever the collection's size.

use bson::{doc, RawDocumentBuf};
use mongodb::options::Hint;
use tokio::sync::mpsc;

use super::Source;
use crate::error::{Error, Result};

/// A run of whole documents, concatenated, for the namespace at `index` in the plan.
#[derive(Debug)]
pub struct Batch {
    pub index: usize,
    pub bytes: Vec<u8>,
    pub documents: u64,
}

/// Target size of a batch: big enough to amortise channel hand-offs, small enough that
/// `parallel × queue depth` batches stay well inside the memory budget. A single larger
/// document travels alone.
pub const BATCH_BYTES: usize = 1 << 20;

/// Bytes a server reply should carry at most. The server's own limit is 16 MiB per batch; with
/// several cursors open and the driver holding a reply while it is consumed, that would
/// dominate memory. A few MiB per round trip keeps the network busy all the same.
pub const CURSOR_BATCH_BYTES: u64 = 2 << 20;

/// The `batchSize` that makes a reply about [`CURSOR_BATCH_BYTES`] for documents of this
/// average size (unknown: the server's default).
pub fn cursor_batch_size(average_document_size: Option<u64>) -> Option<u32> {
    let average = average_document_size?.max(1);
    Some(u32::try_from((CURSOR_BATCH_BYTES / average).clamp(1, 100_000)).unwrap_or(100_000))
}

/// Streams `db.collection` into `tx`. Returns the number of documents read. Fails if the
/// receiving side has gone (the backup is being torn down).
pub async fn read_collection(
    source: &Source,
    db: &str,
    collection: &str,
    average_document_size: Option<u64>,
    index: usize,
    tx: &mpsc::Sender<Batch>,
) -> Result<u64> {
    let coll = source
        .client
        .database(db)
        .collection::<RawDocumentBuf>(collection);
    let ns = format!("{db}.{collection}");
    let mut find = coll.find(doc! {}).hint(Hint::Keys(doc! { "$natural": 1 }));
    if let Some(n) = cursor_batch_size(average_document_size) {
        find = find.batch_size(n);
    }
    let mut cursor = find
        .await
        .map_err(|e| source.error(&format!("find on {ns}"), &e))?;
    let mut total = 0u64;
    let mut batch = Batch {
        index,
        bytes: Vec::with_capacity(BATCH_BYTES),
        documents: 0,
    };
    loop {
        let more = cursor
            .advance()
            .await
            .map_err(|e| source.error(&format!("getMore on {ns} after {total} documents"), &e))?;
        if !more {
            break;
        }
        let raw = cursor.current().as_bytes();
        if !batch.bytes.is_empty() && batch.bytes.len() + raw.len() > BATCH_BYTES {
            let full = std::mem::replace(
                &mut batch,
                Batch {
                    index,
                    bytes: Vec::with_capacity(BATCH_BYTES),
                    documents: 0,
                },
            );
            send(tx, full).await?;
        }
        batch.bytes.extend_from_slice(raw);
        batch.documents += 1;
        total += 1;
    }
    if batch.documents > 0 {
        send(tx, batch).await?;
    }
    if total == 0 && vanished(source, db, collection).await {
        // As mongodump: its metadata is already in the prelude, so it stays in the archive,
        // empty. Said out loud, because an empty collection is otherwise unremarkable.
        tracing::warn!(
            ns = %ns,
            "collection dropped during the backup: kept with its metadata and no documents"
        );
    }
    Ok(total)
}

/// Whether a collection listed at the start is gone now (a `find` on a missing collection
/// is not an error, just empty). Unknown counts as present: this only decides a warning.
async fn vanished(source: &Source, db: &str, collection: &str) -> bool {
    source
        .client
        .database(db)
        .list_collection_names()
        .filter(doc! { "name": collection })
        .await
        .is_ok_and(|names| names.is_empty())
}

async fn send(tx: &mpsc::Sender<Batch>, batch: Batch) -> Result<()> {
    tx.send(batch)
        .await
        .map_err(|_| Error::Interrupted("the archive writer stopped".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_sized_by_bytes() {
        assert_eq!(cursor_batch_size(None), None);
        assert_eq!(cursor_batch_size(Some(1024)), Some(2048));
        assert_eq!(cursor_batch_size(Some(16 << 20)), Some(1));
        assert_eq!(cursor_batch_size(Some(0)), Some(100_000));
        assert_eq!(cursor_batch_size(Some(1)), Some(100_000));
    }
}

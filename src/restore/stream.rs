//! The archive side of a restore: a blocking thread parses the (possibly gzipped) archive and
//! hands batches of documents to the async insert workers through bounded channels.
//!
//! Neither side can strand the other: the thread checks a shared stop flag between documents
//! and gives up as soon as a worker's channel is gone, and when the thread ends, for any
//! reason, every sender it holds is dropped, so every worker sees its channel close.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bson::RawDocumentBuf;
use flate2::read::MultiGzDecoder;
use nightdump_archive::{
    sniff, ArchiveError, ArchiveReader, CollectionMetadata, Compression, Event, Header, Namespace,
    NamespaceSummary, PreludeEntry,
};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Documents per insert batch, as mongorestore's default `--batchSize`.
pub const BATCH_DOCUMENTS: usize = 1000;
/// Bytes per insert batch; the driver splits further by the server's message limits.
pub const BATCH_BYTES: usize = 16 * 1024 * 1024;

const READ_BUFFER: usize = 256 * 1024;

/// Everything the archive says before its first document.
#[derive(Debug, Clone)]
pub struct Prelude {
    pub header: Header,
    pub entries: Vec<PreludeEntry>,
    pub metadata: Vec<Option<CollectionMetadata>>,
}

/// What travels to an insert worker.
#[derive(Debug)]
pub enum Chunk {
    Documents {
        docs: Vec<RawDocumentBuf>,
        bytes: u64,
    },
    /// The namespace reached its EOF block with this CRC-checked summary.
    End(NamespaceSummary),
}

/// Where each data namespace's documents go. Namespaces without a route are parsed and
/// dropped; muted ones also skip the CRC check.
#[derive(Debug, Default)]
pub struct Routing {
    pub mute: Vec<Namespace>,
    pub routes: HashMap<Namespace, mpsc::Sender<Chunk>>,
}

/// A request to read some namespaces whole into memory before streaming the rest: users and
/// roles, which must be merged before anything else, and the auth-schema document.
#[derive(Debug)]
pub struct ReadAhead {
    pub namespaces: Vec<Namespace>,
    /// Namespaces whose documents may come first and are discarded.
    pub mute: Vec<Namespace>,
    pub reply: oneshot::Sender<HashMap<Namespace, Vec<RawDocumentBuf>>>,
}

/// Namespaces that reached their EOF block while reading ahead.
type Ended = Vec<(Namespace, NamespaceSummary)>;

/// What the whole pass over the archive saw, per data namespace.
#[derive(Debug, Default)]
pub struct StreamSummary {
    pub namespaces: HashMap<Namespace, NamespaceSummary>,
    pub offset: u64,
}

/// Opens gzip or plain input by its first bytes.
pub fn decode(input: Box<dyn Read + Send>) -> std::io::Result<Box<dyn Read + Send>> {
    let mut buffered = BufReader::with_capacity(READ_BUFFER, input);
    let first = buffered.fill_buf()?;
    Ok(match sniff(first) {
        Some(Compression::Gzip) => Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(buffered),
        )),
        _ => Box::new(buffered),
    })
}

/// The handle the async side keeps on the reading thread.
pub struct Stream {
    pub prelude: oneshot::Receiver<Prelude>,
    /// Send a request, or drop this, before sending the routing.
    pub read_ahead: oneshot::Sender<ReadAhead>,
    pub routing: oneshot::Sender<Option<Routing>>,
    pub done: tokio::task::JoinHandle<Result<StreamSummary>>,
}

/// Starts reading `open()`'s bytes on a blocking thread. The thread sends the prelude, reads
/// ahead if asked to, waits for the routing (`None` ends it before any further document),
/// then streams.
pub fn spawn(
    open: impl FnOnce() -> Result<Box<dyn Read + Send>> + Send + 'static,
    stop: Arc<AtomicBool>,
) -> Stream {
    let (prelude_tx, prelude_rx) = oneshot::channel();
    let (ahead_tx, ahead_rx) = oneshot::channel::<ReadAhead>();
    let (routing_tx, routing_rx) = oneshot::channel();
    let done = tokio::task::spawn_blocking(move || {
        let input = open()?;
        let input = decode(input).map_err(|e| {
            Error::Archive(ArchiveError::Io {
                offset: 0,
                source: e,
            })
        })?;
        let mut reader = ArchiveReader::new(input)?;
        let prelude = Prelude {
            header: reader.header().clone(),
            entries: reader.prelude().to_vec(),
            metadata: reader.metadata().to_vec(),
        };
        if prelude_tx.send(prelude).is_err() {
            return Ok(StreamSummary::default());
        }
        let ended = match ahead_rx.blocking_recv() {
            Ok(request) => {
                let (docs, ended) = read_ahead(&mut reader, &request, &stop)?;
                if request.reply.send(docs).is_err() {
                    return Ok(StreamSummary::default());
                }
                ended
            }
            Err(_) => Vec::new(),
        };
        match routing_rx.blocking_recv() {
            Ok(Some(routing)) => pump(&mut reader, routing, ended, &stop),
            _ => Ok(StreamSummary::default()),
        }
    });
    Stream {
        prelude: prelude_rx,
        read_ahead: ahead_tx,
        routing: routing_tx,
        done,
    }
}

fn check_stop<R: Read>(reader: &ArchiveReader<R>, stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::Relaxed) {
        return Err(Error::Interrupted(format!(
            "reading the archive stopped at byte {} because the restore failed",
            reader.offset()
        )));
    }
    Ok(())
}

/// The damage, placed by namespace and by offset of the decompressed stream.
fn damaged<R: Read>(reader: &ArchiveReader<R>, source: ArchiveError) -> Error {
    // A checksum fails at the namespace's end, when no namespace is current any more.
    let failed_check = match &source {
        ArchiveError::CrcMismatch { ns, .. } => Some(ns.to_string()),
        _ => None,
    };
    Error::ArchiveAt {
        ns: failed_check
            .or_else(|| reader.current_namespace().map(|n| n.to_string()))
            .unwrap_or_else(|| "-".into()),
        offset: reader.offset(),
        source,
    }
}

fn owned(ns: &Namespace, raw: &[u8]) -> Result<RawDocumentBuf> {
    RawDocumentBuf::from_bytes(raw.to_vec()).map_err(|e| {
        Error::Archive(ArchiveError::InvalidMetadata {
            detail: format!("a document of {ns} is not valid BSON: {e}"),
        })
    })
}

/// Reads until every requested namespace has ended, keeping their documents. mongodump writes
/// them before any other collection; an archive that does not is refused rather than
/// buffered without bound.
fn read_ahead<R: Read>(
    reader: &mut ArchiveReader<R>,
    request: &ReadAhead,
    stop: &AtomicBool,
) -> Result<(HashMap<Namespace, Vec<RawDocumentBuf>>, Ended)> {
    for ns in &request.mute {
        reader.mute(ns);
    }
    let mut docs: HashMap<Namespace, Vec<RawDocumentBuf>> = request
        .namespaces
        .iter()
        .map(|ns| (ns.clone(), Vec::new()))
        .collect();
    let mut open: Vec<&Namespace> = request.namespaces.iter().collect();
    let mut ended = Vec::new();
    while !open.is_empty() {
        check_stop(reader, stop)?;
        let offset = reader.offset();
        let event = match reader.next_event() {
            Ok(event) => event,
            Err(e) => return Err(damaged(reader, e)),
        };
        match event {
            None => break,
            Some(Event::Document { ns, raw }) => {
                if let Some(kept) = docs.get_mut(ns) {
                    kept.push(owned(ns, raw)?);
                } else if !request.mute.contains(ns) {
                    return Err(Error::invalid(format!(
                        "the archive has documents of {ns} (after byte {offset}) before its users and roles ended, unlike mongodump's archives: restore without --with-users"
                    )));
                }
            }
            Some(Event::NamespaceEnd { ns, summary }) => {
                open.retain(|n| **n != ns);
                ended.push((ns, summary));
            }
        }
    }
    Ok((docs, ended))
}

fn pump<R: Read>(
    reader: &mut ArchiveReader<R>,
    mut routing: Routing,
    ended: Ended,
    stop: &AtomicBool,
) -> Result<StreamSummary> {
    for ns in &routing.mute {
        reader.mute(ns);
    }
    let mut pending: HashMap<Namespace, (Vec<RawDocumentBuf>, u64)> = HashMap::new();
    let mut summary = StreamSummary::default();
    for (ns, end) in ended {
        if let Some(tx) = routing.routes.remove(&ns) {
            send(&tx, Chunk::End(end), &ns)?;
        }
        summary.namespaces.insert(ns, end);
    }
    loop {
        check_stop(reader, stop)?;
        let event = match reader.next_event() {
            Ok(event) => event,
            Err(e) => return Err(damaged(reader, e)),
        };
        match event {
            None => break,
            Some(Event::Document { ns, raw }) => {
                let Some(tx) = routing.routes.get(ns) else {
                    continue;
                };
                // The oplog is replayed only once every collection is in: oplog documents
                // while a collection is still open would wait forever for it.
                if ns.is_oplog() && routing.routes.keys().any(|k| !k.is_oplog()) {
                    return Err(Error::invalid(
                        "the archive's oplog starts before all of its collections ended, unlike mongodump's archives: restore with --no-oplog-replay",
                    ));
                }
                let doc = owned(ns, raw)?;
                let batch = pending.entry(ns.clone()).or_default();
                batch.1 += raw.len() as u64;
                batch.0.push(doc);
                if batch.0.len() >= BATCH_DOCUMENTS || batch.1 >= BATCH_BYTES as u64 {
                    let (docs, bytes) = std::mem::take(batch);
                    send(tx, Chunk::Documents { docs, bytes }, ns)?;
                }
            }
            Some(Event::NamespaceEnd { ns, summary: end }) => {
                if let Some(tx) = routing.routes.remove(&ns) {
                    if let Some((docs, bytes)) = pending.remove(&ns).filter(|b| !b.0.is_empty()) {
                        send(&tx, Chunk::Documents { docs, bytes }, &ns)?;
                    }
                    send(&tx, Chunk::End(end), &ns)?;
                }
                summary.namespaces.insert(ns, end);
            }
        }
    }
    summary.offset = reader.offset();
    Ok(summary)
}

fn send(tx: &mpsc::Sender<Chunk>, chunk: Chunk, ns: &Namespace) -> Result<()> {
    tx.blocking_send(chunk).map_err(|_| {
        Error::Interrupted(format!(
            "the insert worker for {ns} stopped, so reading the archive stopped"
        ))
    })
}

//! Restoring to an instant: one mongodump archive made of the newest backup before it, with
//! every oplog entry up to the instant (the backup's own, then the slices') in its oplog
//! namespace. `restore --to-time` restores it with the usual replay; `cat --to-time` writes it,
//! gzip-compressed, for `mongorestore --gzip --archive --oplogReplay`.
//!
//! The instant is inclusive: every entry with `ts <= T` is in the archive, and none after.
//! An RFC 3339 instant stands for its whole second (`T:4294967295`).

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::mpsc as std_mpsc;

use bson::Timestamp;
use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use nightdump_archive::{ArchiveReader, ArchiveWriter, Event, Namespace};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::catalog::Selector;
use crate::chain::{self, key, Link};
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::layout::BackupId;
use crate::manifest::Manifest;
use crate::namespace::NamespaceFilter;
use crate::store::Store;

/// A restore to an instant, checked and ready to stream.
pub struct ToTime {
    pub base_id: BackupId,
    pub base: Manifest,
    base_keys: Option<Keys>,
    pub slices: Vec<(Link, Option<Keys>)>,
    /// Inclusive.
    pub to: Timestamp,
}

impl ToTime {
    /// What the combined archive is called in reports.
    pub fn name(&self) -> String {
        format!(
            "backup {} with the oplog to {}",
            self.base_id,
            chain::describe(self.to)
        )
    }

    /// Entries the slices add (an upper bound: the last slice may reach past the instant).
    pub fn slice_entries(&self) -> u64 {
        self.slices.iter().map(|(l, _)| l.manifest.entries).sum()
    }
}

/// Picks the backup and slices for `to` and checks, before anything is written, that they
/// cover it with no gap; with `verify_first`, also that every stored object is intact.
pub async fn prepare(
    store: &Store,
    to: Timestamp,
    keys: Option<&Keys>,
    verify_first: bool,
) -> Result<ToTime> {
    let listings = crate::catalog::list(store).await?;
    let bases = crate::catalog::chain_bases(&listings);
    let chain = chain::read(store).await?;
    let plan = chain.plan_to(&bases, to, &store.destination().to_string())?;
    let base_id = plan.base.id;
    let base = listings
        .iter()
        .find(|l| l.backup_id == base_id)
        .and_then(|l| l.manifest.clone())
        .ok_or_else(|| Error::Internal(format!("backup {base_id} vanished from its listing")))?;
    let base_keys =
        crate::crypto::ready_keys(&base_id.to_string(), &base.archive.encryption, keys).await?;
    let mut slices = Vec::with_capacity(plan.slices.len());
    for link in plan.slices {
        let encryption = link
            .manifest
            .object
            .as_ref()
            .map(|o| o.encryption.clone())
            .unwrap_or_else(crate::manifest::Encryption::none);
        let slice_keys = crate::crypto::ready_keys(&link.dir, &encryption, keys).await?;
        slices.push((link.clone(), slice_keys));
    }
    if verify_first {
        crate::verify::verify(store, &Selector::Id(base_id), base_keys.as_ref()).await?;
        for (link, slice_keys) in &slices {
            verify_slice(store, link, slice_keys.as_ref()).await?;
        }
    }
    tracing::info!(backup = %base_id, slices = slices.len(), to = %chain::describe(to), "restoring to an instant");
    Ok(ToTime {
        base_id,
        base,
        base_keys,
        slices,
        to,
    })
}

/// Reads a slice's stored object whole and checks it against its manifest.
pub async fn verify_slice(
    store: &Store,
    link: &Link,
    keys: Option<&Keys>,
) -> Result<super::entries::Counted> {
    let Some(object) = &link.manifest.object else {
        return Ok(super::entries::Counted {
            entries: 0,
            bytes: 0,
        });
    };
    let reader = store
        .open_read(&object.key)
        .await?
        .ok_or_else(|| Error::SliceIntegrity {
            slice: link.dir.clone(),
            detail: format!("its entries object {} is missing", object.key),
        })?;
    let handle = tokio::runtime::Handle::current();
    let link = link.clone();
    let keys = keys.cloned();
    tokio::task::spawn_blocking(move || {
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle);
        super::entries::read(&link, keys.as_ref(), bridge, |_| Ok(()))
    })
    .await
    .map_err(|e| Error::Internal(format!("the slice check crashed: {e}")))?
}

/// The combined archive (not compressed) as a reader, for the restore. It is written by a
/// thread of its own; a failure there reaches the reader as an error, never as a clean end.
pub fn open(to_time: ToTime, store: Store) -> Box<dyn Read + Send> {
    let (tx, rx) = std_mpsc::sync_channel::<Piece>(8);
    let handle = tokio::runtime::Handle::current();
    let failed = tx.clone();
    std::thread::spawn(move || {
        let out = PipeWriter {
            tx,
            buf: Vec::with_capacity(PIPE_CHUNK),
        };
        let result = combine(&to_time, &store, &handle, out).and_then(|mut out| {
            out.end()
                .map_err(|e| Error::Internal(format!("cannot pass the archive on: {e}")))
        });
        if let Err(e) = result {
            let _ = failed.send(Piece::Failed(e.to_string()));
        }
    });
    Box::new(PipeReader {
        rx,
        current: Vec::new(),
        pos: 0,
        ended: false,
    })
}

/// Writes the combined archive, gzip-compressed, to `out`.
pub async fn cat(to_time: ToTime, store: Store, mut out: impl AsyncWrite + Unpin) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let handle = tokio::runtime::Handle::current();
    let name = to_time.name();
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        let closed = |_| Error::Interrupted("the output was closed".into());
        let gz = GzEncoder::new(
            BufWriter::with_capacity(PIPE_CHUNK, ToAsync(tx)),
            Compression::new(6),
        );
        let gz = combine(&to_time, &store, &handle, gz)?;
        gz.finish().map_err(closed)?.flush().map_err(closed)
    });
    let (written, write_error) = crate::cat::pump(rx, &mut out).await;
    let combined = writer
        .await
        .map_err(|e| Error::Internal(format!("the archive writer crashed: {e}")))?;
    if let Some(e) = write_error {
        return Err(Error::Interrupted(format!(
            "writing {name} stopped after {written} bytes: {e}"
        )));
    }
    combined?;
    out.flush()
        .await
        .map_err(|e| Error::Interrupted(format!("writing {name} failed: {e}")))
}

/// Copies the base archive through, appending the slices' entries up to the instant to its
/// oplog namespace before that namespace ends.
fn combine<W: Write>(
    to_time: &ToTime,
    store: &Store,
    handle: &tokio::runtime::Handle,
    out: W,
) -> Result<W> {
    let base = &to_time.base;
    let id = to_time.base_id.to_string();
    let stored = handle
        .block_on(store.open_read(&base.archive.key))?
        .ok_or_else(|| Error::Integrity {
            id: id.clone(),
            detail: format!(
                "the manifest names {} but that object is missing",
                base.archive.key
            ),
        })?;
    let bridge = tokio_util::io::SyncIoBridge::new_with_handle(stored, handle.clone());
    let plain = crate::crypto::decrypting(
        &format!("backup {id}"),
        &base.archive.encryption,
        to_time.base_keys.as_ref(),
        BufReader::with_capacity(256 * 1024, bridge),
    )?;
    let damaged = |e: nightdump_archive::ArchiveError| Error::Integrity {
        id: id.clone(),
        detail: e.to_string(),
    };
    let mut reader = ArchiveReader::new(BufReader::with_capacity(
        256 * 1024,
        MultiGzDecoder::new(plain),
    ))
    .map_err(damaged)?;
    let header = reader.header().clone();
    let prelude = reader.prelude().to_vec();
    if !prelude.iter().any(|p| p.namespace().is_oplog()) {
        return Err(Error::Integrity {
            id,
            detail:
                "its archive has no oplog namespace although its manifest records a point in time"
                    .into(),
        });
    }
    let filter = selection_filter(base)?;
    let mut writer =
        ArchiveWriter::new(BufWriter::with_capacity(256 * 1024, out), &header, &prelude)
            .map_err(Error::Archive)?;
    let from = base
        .point_in_time
        .as_ref()
        .map(|p| p.ts.to_bson())
        .ok_or_else(|| Error::Internal(format!("backup {id} has no point in time")))?;
    loop {
        match reader.next_event().map_err(damaged)? {
            None => break,
            Some(Event::Document { ns, raw }) => {
                writer.write_documents(ns, raw).map_err(Error::Archive)?
            }
            Some(Event::NamespaceEnd { ns, .. }) => {
                if ns.is_oplog() {
                    append_slices(to_time, store, handle, from, filter.as_ref(), &mut writer)?;
                }
                writer.finish_namespace(&ns).map_err(Error::Archive)?;
            }
        }
    }
    let buffered = writer.finish().map_err(Error::Archive)?;
    buffered
        .into_inner()
        .map_err(|e| Error::Interrupted(format!("the output was closed: {}", e.error())))
}

fn append_slices<W: Write>(
    to_time: &ToTime,
    store: &Store,
    handle: &tokio::runtime::Handle,
    from: Timestamp,
    filter: Option<&NamespaceFilter>,
    writer: &mut ArchiveWriter<W>,
) -> Result<()> {
    let oplog = Namespace::oplog();
    let mut position = from;
    for (link, keys) in &to_time.slices {
        let Some(object) = &link.manifest.object else {
            continue;
        };
        let stored = handle
            .block_on(store.open_read(&object.key))?
            .ok_or_else(|| Error::SliceIntegrity {
                slice: link.dir.clone(),
                detail: format!("its entries object {} is missing", object.key),
            })?;
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(stored, handle.clone());
        let start = position;
        super::entries::read(link, keys.as_ref(), bridge, |entry| {
            let raw = bson::RawDocument::from_bytes(entry).map_err(|e| Error::SliceIntegrity {
                slice: link.dir.clone(),
                detail: e.to_string(),
            })?;
            let ts = raw.get_timestamp("ts").map_err(|_| Error::SliceIntegrity {
                slice: link.dir.clone(),
                detail: "an entry has no ts".into(),
            })?;
            if key(ts) <= key(start) || key(ts) > key(to_time.to) {
                return Ok(());
            }
            let kept = match filter {
                None => Some(std::borrow::Cow::Borrowed(entry)),
                Some(f) => crate::backup::select_oplog_entry(raw, f)?,
            };
            if let Some(bytes) = kept {
                writer
                    .write_documents(&oplog, &bytes)
                    .map_err(Error::Archive)?;
            }
            Ok(())
        })?;
        if key(link.manifest.last()) > key(position) {
            position = link.manifest.last();
        }
    }
    Ok(())
}

/// A filtered backup's selection, which the slices' entries (of the whole deployment) are cut
/// to, as its own oplog was.
fn selection_filter(base: &Manifest) -> Result<Option<NamespaceFilter>> {
    if base.selection.is_full() {
        return Ok(None);
    }
    let parse = |ps: &[String]| -> Result<Vec<_>> {
        ps.iter()
            .map(|p| {
                p.parse().map_err(|e: String| Error::Integrity {
                    id: base.backup_id.clone(),
                    detail: format!("its manifest's selection pattern '{p}' is not valid: {e}"),
                })
            })
            .collect()
    };
    Ok(Some(NamespaceFilter {
        include: parse(&base.selection.include)?,
        exclude: parse(&base.selection.exclude)?,
    }))
}

const PIPE_CHUNK: usize = 256 * 1024;

enum Piece {
    Data(Vec<u8>),
    End,
    Failed(String),
}

struct PipeWriter {
    tx: std_mpsc::SyncSender<Piece>,
    buf: Vec<u8>,
}

impl PipeWriter {
    fn ship(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_CHUNK));
        self.tx
            .send(Piece::Data(full))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the restore stopped reading"))
    }

    fn end(&mut self) -> io::Result<()> {
        self.ship()?;
        self.tx
            .send(Piece::End)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the restore stopped reading"))
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIPE_CHUNK {
            self.ship()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct PipeReader {
    rx: std_mpsc::Receiver<Piece>,
    current: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Piece::Data(d)) => {
                    self.current = d;
                    self.pos = 0;
                }
                Ok(Piece::End) => self.ended = true,
                Ok(Piece::Failed(why)) => return Err(io::Error::other(why)),
                Err(_) => {
                    return Err(io::Error::other(
                        "the archive's writer stopped before the end",
                    ))
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A blocking writer handing chunks to an asynchronous one.
struct ToAsync(mpsc::Sender<Bytes>);

impl Write for ToAsync {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(data))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the output was closed"))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

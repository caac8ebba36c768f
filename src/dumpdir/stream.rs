//! A dump directory as an archive byte stream: a thread writes the archive the directory is
//! equivalent to into a bounded channel, and the restore reads that as it reads any archive.
//! Memory stays bounded (a few chunks in the channel, one chunk of documents being built)
//! whatever the dump's size, and nothing is written to disk.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use nightdump_archive::{ArchiveWriter, Namespace, PreludeEntry};

use super::{open_file, DumpFile, DumpLayout};
use crate::store::Store;

/// Bytes handed over at a time, and documents gathered before each archive block.
const CHUNK: usize = 1 << 20;
/// The largest document mongod stores (16 MiB) plus the room it allows oplog entries.
pub(super) const MAX_DOCUMENT: usize = 16 * 1024 * 1024 + 16 * 1024;

/// The archive equivalent to `layout`, read from `store`. Must be called inside the runtime;
/// the archive is produced on a thread of its own. An unreadable or malformed file ends
/// the stream with an error naming the file.
pub fn archive_reader(store: Store, layout: DumpLayout) -> Box<dyn Read + Send> {
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(4);
    std::thread::spawn(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let written = write_archive(&store, &handle, &layout, &mut out).and_then(|()| out.flush());
        if let Err(e) = written {
            // The reader may be gone already (a restore that stopped): nothing to tell.
            let _ = tx.send(Err(e));
        }
    });
    Box::new(ChannelReader {
        rx,
        chunk: Vec::new(),
        pos: 0,
    })
}

fn write_archive(
    store: &Store,
    handle: &tokio::runtime::Handle,
    layout: &DumpLayout,
    out: &mut ChannelWriter,
) -> io::Result<()> {
    let mut entries: Vec<PreludeEntry> =
        layout.collections.iter().map(|c| c.entry.clone()).collect();
    if layout.oplog.is_some() {
        entries.push(PreludeEntry {
            db: String::new(),
            collection: "oplog".into(),
            ..PreludeEntry::default()
        });
    }
    let archive_error = |what: &str, e: nightdump_archive::ArchiveError| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    let mut writer = ArchiveWriter::new(out, &layout.header, &entries)
        .map_err(|e| archive_error(&layout.name, e))?;
    for collection in &layout.collections {
        let ns = collection.entry.data_namespace(&layout.header);
        if let Some(file) = &collection.data {
            copy_documents(store, handle, file, &mut writer, &ns)?;
        }
        writer
            .finish_namespace(&ns)
            .map_err(|e| archive_error(&ns.to_string(), e))?;
    }
    if let Some(file) = &layout.oplog {
        let ns = Namespace::oplog();
        copy_documents(store, handle, file, &mut writer, &ns)?;
        writer
            .finish_namespace(&ns)
            .map_err(|e| archive_error(&file.key, e))?;
    }
    writer
        .finish()
        .map_err(|e| archive_error(&layout.name, e))?;
    Ok(())
}

/// Streams `file`'s documents into `ns`, a chunk of whole documents at a time.
fn copy_documents<W: Write>(
    store: &Store,
    handle: &tokio::runtime::Handle,
    file: &DumpFile,
    writer: &mut ArchiveWriter<W>,
    ns: &Namespace,
) -> io::Result<()> {
    let mut input = open_file(store, handle, file)?;
    let mut buf = Vec::with_capacity(CHUNK + 64 * 1024);
    let mut documents = DocumentFrames::new(&file.key);
    while documents.next_into(&mut input, &mut buf)? {
        if buf.len() >= CHUNK {
            writer.write_documents(ns, &buf).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", file.key))
            })?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        writer.write_documents(ns, &buf).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", file.key))
        })?;
    }
    Ok(())
}

/// Splits a `.bson` file (documents back to back, no other framing) into documents.
pub(super) struct DocumentFrames<'a> {
    key: &'a str,
    pub(super) index: u64,
}

impl<'a> DocumentFrames<'a> {
    pub(super) fn new(key: &'a str) -> Self {
        Self { key, index: 0 }
    }

    /// Appends the next document to `buf`; `false` at a clean end of file.
    pub(super) fn next_into(
        &mut self,
        input: &mut dyn Read,
        buf: &mut Vec<u8>,
    ) -> io::Result<bool> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match input.read(&mut len[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(self.bad("ends inside a document's length")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.bad(&format!("cannot be read: {e}"))),
            }
        }
        let size = i32::from_le_bytes(len);
        let size = usize::try_from(size)
            .ok()
            .filter(|s| (5..=MAX_DOCUMENT).contains(s))
            .ok_or_else(|| self.bad(&format!("claims a document of {size} bytes")))?;
        let start = buf.len();
        buf.extend_from_slice(&len);
        buf.resize(start + size, 0);
        input.read_exact(&mut buf[start + 4..]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.bad("ends inside a document (truncated)")
            } else {
                self.bad(&format!("cannot be read: {e}"))
            }
        })?;
        if buf[start + size - 1] != 0 {
            return Err(self.bad("has a document that does not end in NUL"));
        }
        self.index += 1;
        Ok(true)
    }

    fn bad(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} {what} at document {}", self.key, self.index),
        )
    }
}

struct ChannelWriter {
    tx: SyncSender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the restore stopped reading"))
    }
}

struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The writer finished and hung up: the end of the archive.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(bytes: &[u8]) -> Vec<u8> {
        let mut d = ((bytes.len() + 5) as i32).to_le_bytes().to_vec();
        d.extend_from_slice(bytes);
        d.push(0);
        d
    }

    #[test]
    fn frames_split_documents_and_name_the_damage() {
        let mut file = doc(&[]);
        file.extend(doc(&[0x08, b'a', 0, 1]));
        let mut buf = Vec::new();
        let mut frames = DocumentFrames::new("db/c.bson");
        let mut input = &file[..];
        assert!(frames.next_into(&mut input, &mut buf).unwrap());
        assert!(frames.next_into(&mut input, &mut buf).unwrap());
        assert!(!frames.next_into(&mut input, &mut buf).unwrap());
        assert_eq!(buf, file);

        let cut = &file[..file.len() - 2];
        let mut frames = DocumentFrames::new("db/c.bson");
        let mut input = cut;
        let mut buf = Vec::new();
        assert!(frames.next_into(&mut input, &mut buf).unwrap());
        let err = frames.next_into(&mut input, &mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "db/c.bson ends inside a document (truncated) at document 1"
        );
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0x7f];
        let err = DocumentFrames::new("x.bson")
            .next_into(&mut input, &mut Vec::new())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("claims a document of 2147483647 bytes"),
            "{err}"
        );
    }
}

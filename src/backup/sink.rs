//! The end of the synchronous half of the pipeline: counts and hashes the stored bytes and
//! hands them, in fixed-size chunks, to the asynchronous uploader. A full channel blocks the
//! writer thread: that is the back-pressure that bounds memory.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::progress::Progress;
use crate::sink::{FinishWrite, Stored};

pub const CHUNK_BYTES: usize = 1 << 20;

pub struct ChunkSink {
    buf: Vec<u8>,
    tx: mpsc::Sender<Bytes>,
    hasher: Sha256,
    size: u64,
    progress: Arc<Progress>,
}

impl ChunkSink {
    pub fn new(tx: mpsc::Sender<Bytes>, progress: Arc<Progress>) -> Self {
        Self {
            buf: Vec::with_capacity(CHUNK_BYTES),
            tx,
            hasher: Sha256::new(),
            size: 0,
            progress,
        }
    }

    fn ship(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(Bytes::from(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    pub fn finish(mut self) -> io::Result<Stored> {
        self.ship()?;
        Ok(Stored {
            size: self.size,
            sha256: self.hasher.finalize().into(),
        })
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        Progress::add(&self.progress.stored_bytes, data.len() as u64);
        let mut rest = data;
        while !rest.is_empty() {
            let room = CHUNK_BYTES - self.buf.len();
            let take = room.min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == CHUNK_BYTES {
                self.ship()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl FinishWrite for ChunkSink {
    fn finish_stream(self: Box<Self>) -> io::Result<Stored> {
        (*self).finish()
    }
}

//! An append-only buffer of BSON documents that keeps the first `memory_cap` bytes in memory
//! and the rest in an anonymous temporary file, read back in the order they were pushed.
//!
//! The oplog of a busy replica set during a long dump can be far larger than a Lambda's
//! memory, while the dump itself runs in bounded memory; the entries wait here until every
//! collection is written, since the oplog must be the archive's last namespace. Lambda has a
//! writable /tmp, and the file is unlinked from the start, so nothing outlives the process.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Memory held before spilling: a few busy minutes of oplog, far below any Lambda's memory.
pub const DEFAULT_MEMORY_CAP: usize = 64 * 1024 * 1024;

pub struct SpillBuffer {
    memory: VecDeque<Vec<u8>>,
    memory_bytes: usize,
    memory_cap: usize,
    file: Option<BufWriter<File>>,
    dir: Option<PathBuf>,
    documents: u64,
    bytes: u64,
}

impl SpillBuffer {
    /// Spills into the system's temporary directory.
    pub fn new(memory_cap: usize) -> Self {
        Self {
            memory: VecDeque::new(),
            memory_bytes: 0,
            memory_cap,
            file: None,
            dir: None,
            documents: 0,
            bytes: 0,
        }
    }

    /// Spills into `dir` instead.
    pub fn in_dir(memory_cap: usize, dir: PathBuf) -> Self {
        Self {
            dir: Some(dir),
            ..Self::new(memory_cap)
        }
    }

    /// Appends one whole BSON document (its bytes start with their own length).
    pub fn push(&mut self, doc: &[u8]) -> io::Result<()> {
        // Once anything went to the file, everything after it must too, or order is lost.
        if self.file.is_none() && self.memory_bytes + doc.len() <= self.memory_cap {
            self.memory.push_back(doc.to_vec());
            self.memory_bytes += doc.len();
        } else {
            if self.file.is_none() {
                let file = match &self.dir {
                    Some(dir) => tempfile::tempfile_in(dir)?,
                    None => tempfile::tempfile()?,
                };
                self.file = Some(BufWriter::with_capacity(256 * 1024, file));
            }
            if let Some(f) = self.file.as_mut() {
                f.write_all(doc)?;
            }
        }
        self.documents += 1;
        self.bytes += doc.len() as u64;
        Ok(())
    }

    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// Bytes of every document pushed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes held in memory now; never above the cap.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    pub fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// The documents in push order: the in-memory ones, then the file's.
    pub fn into_reader(self) -> io::Result<SpillReader> {
        let file = match self.file {
            Some(w) => {
                let mut f = w.into_inner().map_err(|e| e.into_error())?;
                f.seek(SeekFrom::Start(0))?;
                Some(BufReader::with_capacity(256 * 1024, f))
            }
            None => None,
        };
        Ok(SpillReader {
            memory: self.memory,
            file,
        })
    }
}

pub struct SpillReader {
    memory: VecDeque<Vec<u8>>,
    file: Option<BufReader<File>>,
}

impl SpillReader {
    /// The next document, `None` after the last.
    pub fn next_document(&mut self) -> io::Result<Option<Vec<u8>>> {
        if let Some(doc) = self.memory.pop_front() {
            return Ok(Some(doc));
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(None);
        };
        let mut len = [0u8; 4];
        match file.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let size = i32::from_le_bytes(len);
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s >= 5)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the oplog spill file holds a document length of {size}"),
                )
            })?;
        let mut doc = vec![0u8; size];
        doc[..4].copy_from_slice(&len);
        file.read_exact(&mut doc[4..])?;
        Ok(Some(doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, RawDocumentBuf};

    fn entry(i: i64, pad: usize) -> Vec<u8> {
        RawDocumentBuf::from_document(&doc! { "i": i, "pad": "x".repeat(pad) })
            .unwrap()
            .into_bytes()
    }

    fn read_all(buffer: SpillBuffer) -> Vec<Vec<u8>> {
        let mut reader = buffer.into_reader().unwrap();
        let mut out = Vec::new();
        while let Some(d) = reader.next_document().unwrap() {
            out.push(d);
        }
        out
    }

    #[test]
    fn small_inputs_stay_in_memory() {
        let mut b = SpillBuffer::new(1 << 20);
        let docs: Vec<Vec<u8>> = (0..10).map(|i| entry(i, 10)).collect();
        for d in &docs {
            b.push(d).unwrap();
        }
        assert!(!b.spilled());
        assert_eq!(b.documents(), 10);
        assert_eq!(b.bytes(), docs.iter().map(|d| d.len() as u64).sum::<u64>());
        assert_eq!(read_all(b), docs);
    }

    #[test]
    fn memory_stays_under_the_cap_and_the_rest_goes_to_disk_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 4096;
        let mut b = SpillBuffer::in_dir(cap, dir.path().to_path_buf());
        let docs: Vec<Vec<u8>> = (0..500).map(|i| entry(i, (i as usize * 7) % 300)).collect();
        let mut peak = 0;
        for d in &docs {
            b.push(d).unwrap();
            peak = peak.max(b.memory_bytes());
        }
        assert!(b.spilled());
        assert!(peak <= cap, "{peak} bytes in memory, cap {cap}");
        assert!(peak > cap / 2, "memory was used before spilling: {peak}");
        assert_eq!(b.documents(), 500);
        let back = read_all(b);
        assert_eq!(back.len(), docs.len());
        assert_eq!(back, docs);
    }

    #[test]
    fn a_document_larger_than_the_cap_goes_to_disk_and_later_ones_follow_it() {
        let mut b = SpillBuffer::new(100);
        let docs = vec![entry(1, 10), entry(2, 500), entry(3, 1)];
        for d in &docs {
            b.push(d).unwrap();
        }
        assert!(b.spilled());
        assert_eq!(b.memory_bytes(), docs[0].len());
        assert_eq!(read_all(b), docs);
    }

    #[test]
    fn an_empty_buffer_reads_nothing() {
        assert!(read_all(SpillBuffer::new(0)).is_empty());
    }
}

//! The archive's gzip stream, on one core or on several.
//!
//! With more than one thread the stream is compressed the way pigz does it, by `gzp`: the
//! input is cut into 128 KiB blocks, each compressed on a worker thread with the 32 KiB
//! before it as its dictionary, and the results are written in order as **one** gzip member
//! with one CRC-32 over everything. That is the format `gzip`, `gunzip -t` and mongorestore's
//! reader expect of any `.gz` (a multi-member stream would do as well, but one member keeps
//! the archive byte-for-byte the shape a single-threaded run writes, and its ratio within a
//! fraction of a percent). Memory: each thread holds at most two blocks in and two out of
//! the queue, about 1 MiB per thread, on top of the one-threaded stream's own.

use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use gzp::ZWriter;

use crate::sink::FinishWrite;

/// The most compression threads an option may ask for.
pub const MAX_COMPRESS_THREADS: usize = 64;

/// The threads this process may run at once (its CPU affinity and cgroup quota included).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A gzip stream into a sink that is closed by [`Compressor::finish`].
pub enum Compressor {
    Single(GzEncoder<Box<dyn FinishWrite>>),
    Parallel(Parallel),
}

/// `gzp`'s writer, finished (its error ignored) when dropped unfinished: `gzp` itself would
/// panic on a failure found while dropping, which an aborted backup always has. After a
/// failed write it is gone (`gzp` has shut its threads down and must not be used again).
pub struct Parallel(Option<ParCompress<'static, Gzip, Box<dyn FinishWrite>>>);

impl Drop for Parallel {
    fn drop(&mut self) {
        if let Some(mut writer) = self.0.take() {
            let _ = writer.finish();
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the compressor stopped after an earlier failure",
    )
}

impl Compressor {
    pub fn new(sink: Box<dyn FinishWrite>, level: u32, threads: usize) -> io::Result<Self> {
        if threads <= 1 {
            return Ok(Compressor::Single(GzEncoder::new(
                sink,
                Compression::new(level),
            )));
        }
        let writer = ParCompressBuilder::<Gzip>::new()
            .num_threads(threads)
            .map_err(io::Error::other)?
            .compression_level(Compression::new(level))
            .from_writer(sink);
        Ok(Compressor::Parallel(Parallel(Some(writer))))
    }

    /// Writes the gzip trailer and hands back the sink.
    pub fn finish(self) -> io::Result<Box<dyn FinishWrite>> {
        match self {
            Compressor::Single(gz) => gz.finish(),
            Compressor::Parallel(mut p) => match p.0.take() {
                Some(mut writer) => writer.finish().map_err(|e| match e {
                    gzp::GzpError::Io(e) => e,
                    other => io::Error::other(other),
                }),
                None => Err(gone()),
            },
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Single(gz) => gz.write(buf),
            Compressor::Parallel(p) => {
                let written = p.0.as_mut().ok_or_else(gone)?.write(buf);
                if written.is_err() {
                    // gzp has shut down; dropping it now does nothing more.
                    p.0 = None;
                }
                written
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Single(gz) => gz.flush(),
            Compressor::Parallel(p) => {
                let flushed = p.0.as_mut().ok_or_else(gone)?.flush();
                if flushed.is_err() {
                    p.0 = None;
                }
                flushed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Stored;
    use std::io::Read;
    use std::sync::{Arc, Mutex};

    /// Collects what it is given.
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl FinishWrite for Collect {
        fn finish_stream(self: Box<Self>) -> io::Result<Stored> {
            Ok(Stored {
                size: self.0.lock().unwrap().len() as u64,
                sha256: [0; 32],
            })
        }
    }

    fn compress(data: &[u8], threads: usize) -> Vec<u8> {
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut c = Compressor::new(Box::new(Collect(Arc::clone(&out))), 6, threads).unwrap();
        for piece in data.chunks(70_001) {
            c.write_all(piece).unwrap();
        }
        let sink = c.finish().unwrap();
        assert_eq!(
            sink.finish_stream().unwrap().size,
            out.lock().unwrap().len() as u64
        );
        let bytes = out.lock().unwrap().clone();
        bytes
    }

    #[test]
    fn every_thread_count_writes_one_gzip_member_of_the_same_bytes() {
        let data: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for threads in [1, 2, 4] {
            let gz = compress(&data, threads);
            // One member: a single-member decoder reads it all.
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain, data, "{threads} threads");
        }
    }

    #[test]
    fn a_broken_sink_fails_the_stream_and_dropping_it_does_not_panic() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl FinishWrite for Broken {
            fn finish_stream(self: Box<Self>) -> io::Result<Stored> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
            }
        }
        let mut c = Compressor::new(Box::new(Broken), 6, 2).unwrap();
        let _ = c.write_all(&vec![7u8; 1 << 20]);
        assert!(c.finish().is_err());
        let mut dropped = Compressor::new(Box::new(Broken), 6, 2).unwrap();
        let _ = dropped.write_all(&vec![7u8; 1 << 20]);
        drop(dropped);
    }
}

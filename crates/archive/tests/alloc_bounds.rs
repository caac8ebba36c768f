//! A length field is a claim, not a fact: the reader must refuse or bound it before it
//! allocates. This binary counts every allocation, so it holds only these checks, run one
//! after another in a single test (the counter is process-wide).

#![allow(clippy::unwrap_used)]

mod common;

use common::{fixture, fixtures_present};
use std::alloc::System;
use std::io::Read;

use nightdump_archive::{ArchiveError, ArchiveReader, Event, MAX_DOCUMENT_SIZE};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes newly reserved in `region`: fresh allocations plus growth by reallocation (a buffer
/// that grows in place or moves is counted by how much it grew).
fn grown(region: &Region<'_, System>) -> usize {
    let change = region.change();
    change.bytes_allocated + usize::try_from(change.bytes_reallocated).unwrap_or(0)
}

const MAGIC: [u8; 4] = [0x6D, 0xE2, 0x99, 0x81];
const TWO_GIB: u32 = 0x8000_0000;

/// Offset of the first document of the first data segment in a real archive.
fn first_document_offset(archive: &[u8]) -> usize {
    let mut reader = ArchiveReader::new(archive).unwrap();
    loop {
        match reader.next_event().unwrap() {
            Some(Event::Document { raw, .. }) => {
                let len = raw.len();
                return reader.offset() as usize - len;
            }
            Some(_) => {}
            None => panic!("fixture has no document"),
        }
    }
}

/// Drains the reader and returns the error it stops with, and the bytes allocated meanwhile.
fn read_to_error(input: &[u8]) -> (ArchiveError, usize) {
    let region = Region::new(GLOBAL);
    let err = match ArchiveReader::new(input) {
        Err(e) => e,
        Ok(mut reader) => loop {
            match reader.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("input was accepted whole"),
                Err(e) => break e,
            }
        },
    };
    (err, grown(&region))
}

fn with_length_at(archive: &[u8], at: usize, len: u32, tail: usize) -> Vec<u8> {
    let mut bytes = archive[..at + 4 + tail].to_vec();
    bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
    bytes
}

#[test]
fn lengths_are_checked_before_anything_is_allocated() {
    if !fixtures_present("lengths_are_checked_before_anything_is_allocated") {
        return;
    }
    // 2 GiB where the archive header's length belongs.
    let mut input = MAGIC.to_vec();
    input.extend_from_slice(&TWO_GIB.to_le_bytes());
    input.extend_from_slice(b"abcdefgh");
    let (err, allocated) = read_to_error(&input);
    assert!(
        matches!(
            err,
            ArchiveError::InvalidLength {
                length: TWO_GIB,
                offset: 4
            }
        ),
        "{err}"
    );
    assert!(allocated < 64 * 1024, "{allocated} bytes allocated");

    // 2 GiB as the length of a document inside a real archive's first data segment.
    let archive = fixture("test.bar.archive");
    let at = first_document_offset(&archive);
    let input = with_length_at(&archive, at, TWO_GIB, 8);
    let (err, allocated) = read_to_error(&input);
    assert!(
        matches!(
            err,
            ArchiveError::InvalidLength {
                length: TWO_GIB,
                ..
            }
        ),
        "{err}"
    );
    assert!(allocated < 1024 * 1024, "{allocated} bytes allocated");

    // u32::MAX - 1 (just below the terminator) in the same place.
    let input = with_length_at(&archive, at, u32::MAX - 1, 8);
    let (err, allocated) = read_to_error(&input);
    assert!(matches!(err, ArchiveError::InvalidLength { .. }), "{err}");
    assert!(allocated < 1024 * 1024, "{allocated} bytes allocated");

    // The largest legal document length over a few bytes: truncated, and the buffer grows
    // with what arrived, not with what was claimed.
    let input = with_length_at(&archive, at, MAX_DOCUMENT_SIZE as u32, 8);
    let (err, allocated) = read_to_error(&input);
    assert!(matches!(err, ArchiveError::Truncated { .. }), "{err}");
    assert!(allocated < 1024 * 1024, "{allocated} bytes allocated");

    // Found by the archive_reader fuzz target: 477 bytes whose lengths claim up to 16 MiB
    // made the reader reserve each claim in full (out of memory under libFuzzer's limit).
    let input = include_bytes!("fuzz_regressions/reader-oom-16mib-length.archive");
    let region = Region::new(GLOBAL);
    if let Ok(mut reader) = ArchiveReader::new(&input[..]) {
        while let Ok(Some(_)) = reader.next_event() {}
    }
    let allocated = grown(&region);
    assert!(allocated < 1024 * 1024, "{allocated} bytes allocated");

    // A real archive still reads whole, documents of every size included.
    let archive = fixture("test.bar.archive");
    let mut reader = ArchiveReader::new(&archive[..]).unwrap();
    let mut documents = 0;
    while let Some(event) = reader.next_event().unwrap() {
        if let Event::Document { .. } = event {
            documents += 1;
        }
    }
    assert!(documents > 0);

    // Endless input of a repeated prelude-sized length never ends in an allocation spree: the
    // reader fails at the first bad length.
    let endless = std::io::repeat(0x7f).take(64 * 1024 * 1024);
    let region = Region::new(GLOBAL);
    assert!(ArchiveReader::new(endless).is_err());
    let allocated = grown(&region);
    assert!(allocated < 1024 * 1024, "{allocated} bytes allocated");
}

//! Reads an archive with every check mongorestore's parser and demultiplexer make.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};

use crate::checksum::Crc;
use crate::error::ArchiveError;
use crate::metadata::CollectionMetadata;
use crate::namespace::Namespace;
use crate::prelude::{Header, NamespaceHeader, PreludeEntry};
use crate::writer::NamespaceSummary;
use crate::{MAGIC, MAX_DOCUMENT_SIZE, MIN_DOCUMENT_SIZE};

const TERMINATOR_VALUE: u32 = u32::MAX;

/// One step through an archive's data.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A document of `ns`: its raw bytes, length prefix and final NUL included. Valid until
    /// the next call to [`ArchiveReader::next_event`].
    Document { ns: &'a Namespace, raw: &'a [u8] },
    /// `ns` reached its EOF block; its CRC matched unless it was muted.
    NamespaceEnd {
        ns: Namespace,
        summary: NamespaceSummary,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Pending,
    Open,
    Finished,
}

#[derive(Debug)]
struct Slot {
    data_ns: Namespace,
    phase: Phase,
    muted: bool,
    crc: Crc,
    documents: u64,
    bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between blocks: a namespace header or a clean end comes next.
    Boundary,
    /// Inside a data segment of this slot.
    Segment(usize),
    /// After an EOF header, before its terminator.
    EofBlock,
    Done,
    Failed,
}

/// What a step produced, without borrowing the reader.
enum Step {
    Document {
        slot: usize,
        len: usize,
    },
    End {
        ns: Namespace,
        summary: NamespaceSummary,
    },
    Finished,
}

/// The first size a document buffer grows to; larger documents double it as they arrive.
const FIRST_READ_STEP: usize = 64 * 1024;

/// Streams events out of an archive. Memory stays at one document (at most 16 MiB) whatever
/// the input claims; the buffer is reused from document to document.
pub struct ArchiveReader<R: Read> {
    input: R,
    header: Header,
    prelude: Vec<PreludeEntry>,
    metadata: Vec<Option<CollectionMetadata>>,
    slots: Vec<Slot>,
    by_data_name: HashMap<Namespace, usize>,
    state: State,
    buf: Vec<u8>,
    offset: u64,
    /// The segment being read when the reader failed, so the error can be placed.
    failed_in: Option<usize>,
}

impl<R: Read> std::fmt::Debug for ArchiveReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("header", &self.header)
            .field("offset", &self.offset)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<R: Read> ArchiveReader<R> {
    /// Reads the magic and the prelude, and parses every entry's metadata JSON, so an archive
    /// whose metadata mongorestore could not use fails here, before any document is read.
    pub fn new(input: R) -> Result<Self, ArchiveError> {
        let mut reader = Self {
            input,
            header: Header::new("", ""),
            prelude: Vec::new(),
            metadata: Vec::new(),
            slots: Vec::new(),
            by_data_name: HashMap::new(),
            state: State::Boundary,
            buf: Vec::new(),
            offset: 0,
            failed_in: None,
        };
        reader.read_magic()?;
        reader.read_prelude()?;
        reader.register()?;
        reader.parse_metadata()?;
        Ok(reader)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn prelude(&self) -> &[PreludeEntry] {
        &self.prelude
    }

    /// Parsed metadata, parallel to [`prelude`](Self::prelude); `None` where the entry's
    /// metadata string is empty (the oplog, users and roles from some tools).
    pub fn metadata(&self) -> &[Option<CollectionMetadata>] {
        &self.metadata
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The namespace whose data segment is being read (or was, when the reader failed inside
    /// one): the namespace a damaged document belongs to.
    pub fn current_namespace(&self) -> Option<&Namespace> {
        let slot = match self.state {
            State::Segment(slot) => Some(slot),
            State::Failed => self.failed_in,
            _ => None,
        };
        slot.and_then(|s| self.slots.get(s)).map(|s| &s.data_ns)
    }

    /// Parse `ns` but skip its CRC check, as mongorestore does for namespaces it does not
    /// restore. Accepts the logical name of a time-series collection too. Unknown names are
    /// ignored.
    pub fn mute(&mut self, ns: &Namespace) {
        let found = self.by_data_name.get(ns).copied().or_else(|| {
            self.prelude
                .iter()
                .position(|entry| entry.db == ns.db && entry.collection == ns.collection)
        });
        if let Some(index) = found {
            self.slots[index].muted = true;
        }
    }

    pub fn into_inner(self) -> R {
        self.input
    }

    /// The next document or namespace end; `None` once the archive ended cleanly after every
    /// prelude namespace reached its EOF block. After an error every call fails.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, ArchiveError> {
        let step = match self.step() {
            Ok(step) => step,
            Err(e) => {
                if let State::Segment(slot) = self.state {
                    self.failed_in = Some(slot);
                }
                self.state = State::Failed;
                return Err(e);
            }
        };
        Ok(match step {
            Step::Finished => None,
            Step::End { ns, summary } => Some(Event::NamespaceEnd { ns, summary }),
            Step::Document { slot, len } => Some(Event::Document {
                ns: &self.slots[slot].data_ns,
                raw: &self.buf[..len],
            }),
        })
    }

    fn step(&mut self) -> Result<Step, ArchiveError> {
        loop {
            match self.state {
                State::Done => return Ok(Step::Finished),
                State::Failed => return Err(ArchiveError::Poisoned { what: "reader" }),
                State::Boundary => {
                    let start = self.offset;
                    let Some(len) = self.read_length(true, "")? else {
                        self.check_complete()?;
                        self.state = State::Done;
                        return Ok(Step::Finished);
                    };
                    if len == TERMINATOR_VALUE {
                        return Err(ArchiveError::ConsecutiveTerminators { offset: start });
                    }
                    let len = self.read_document(len, start, "inside a namespace header")?;
                    let header = NamespaceHeader::decode(&self.buf[..len]).map_err(|detail| {
                        ArchiveError::BadNamespaceHeader {
                            detail,
                            offset: start,
                        }
                    })?;
                    if let Some(end) = self.apply_header(header, start)? {
                        return Ok(end);
                    }
                }
                State::Segment(slot) => {
                    let start = self.offset;
                    let len = self
                        .read_length(false, "inside a data segment")?
                        .unwrap_or(TERMINATOR_VALUE);
                    if len == TERMINATOR_VALUE {
                        self.state = State::Boundary;
                        continue;
                    }
                    let len = self.read_document(len, start, "inside a document")?;
                    let slot_state = &mut self.slots[slot];
                    slot_state.crc.update(&self.buf[..len]);
                    slot_state.documents += 1;
                    slot_state.bytes += len as u64;
                    return Ok(Step::Document { slot, len });
                }
                State::EofBlock => {
                    let start = self.offset;
                    let len = self
                        .read_length(false, "after an EOF header")?
                        .unwrap_or(TERMINATOR_VALUE);
                    if len != TERMINATOR_VALUE {
                        self.read_document(len, start, "inside a document")?;
                        return Err(ArchiveError::DataWithoutHeader { offset: start });
                    }
                    self.state = State::Boundary;
                }
            }
        }
    }

    fn apply_header(
        &mut self,
        header: NamespaceHeader,
        start: u64,
    ) -> Result<Option<Step>, ArchiveError> {
        let Some(&index) = self.by_data_name.get(&header.ns) else {
            return Err(ArchiveError::UnknownNamespace {
                ns: header.ns.to_string(),
                offset: start,
            });
        };
        let slot = &mut self.slots[index];
        if slot.phase == Phase::Finished {
            return Err(ArchiveError::NamespaceReopened {
                ns: header.ns.to_string(),
                offset: start,
            });
        }
        if !header.eof {
            slot.phase = Phase::Open;
            self.state = State::Segment(index);
            return Ok(None);
        }
        let computed = slot.crc.value();
        if !slot.muted && computed as i64 != header.crc {
            return Err(ArchiveError::CrcMismatch {
                ns: header.ns.to_string(),
                computed: computed as i64,
                expected: header.crc,
            });
        }
        slot.phase = Phase::Finished;
        self.state = State::EofBlock;
        Ok(Some(Step::End {
            ns: header.ns,
            summary: NamespaceSummary {
                crc: computed,
                documents: slot.documents,
                bytes: slot.bytes,
            },
        }))
    }

    fn check_complete(&self) -> Result<(), ArchiveError> {
        let names = |phase: Phase| -> Vec<String> {
            self.slots
                .iter()
                .filter(|s| s.phase == phase)
                .map(|s| s.data_ns.to_string())
                .collect()
        };
        let open = names(Phase::Open);
        if !open.is_empty() {
            return Err(ArchiveError::UnfinishedNamespaces {
                namespaces: open.join(", "),
            });
        }
        let missing = names(Phase::Pending);
        if !missing.is_empty() {
            return Err(ArchiveError::MissingNamespaces {
                namespaces: missing.join(", "),
            });
        }
        Ok(())
    }

    fn read_magic(&mut self) -> Result<(), ArchiveError> {
        let mut magic = [0u8; 4];
        let got = self.read_full(&mut magic)?;
        if got < magic.len() {
            return Err(ArchiveError::TruncatedMagic { got });
        }
        if magic != MAGIC {
            let hint = if magic[..2] == [0x1F, 0x8B] {
                " (it starts like gzip: decompress it first)"
            } else {
                ""
            };
            return Err(ArchiveError::NotAnArchive { hint });
        }
        Ok(())
    }

    fn read_prelude(&mut self) -> Result<(), ArchiveError> {
        let start = self.offset;
        let len = self
            .read_length(false, "before the archive header")?
            .unwrap_or(TERMINATOR_VALUE);
        if len == TERMINATOR_VALUE {
            return Err(ArchiveError::ConsecutiveTerminators { offset: start });
        }
        let len = self.read_document(len, start, "inside the archive header")?;
        self.header =
            Header::decode(&self.buf[..len]).map_err(|detail| ArchiveError::BadHeader {
                detail,
                offset: start,
            })?;
        loop {
            let start = self.offset;
            let len = self
                .read_length(false, "inside the prelude")?
                .unwrap_or(TERMINATOR_VALUE);
            if len == TERMINATOR_VALUE {
                return Ok(());
            }
            let len = self.read_document(len, start, "inside a prelude entry")?;
            let entry = PreludeEntry::decode(&self.buf[..len]).map_err(|detail| {
                ArchiveError::BadPreludeEntry {
                    detail,
                    offset: start,
                }
            })?;
            self.prelude.push(entry);
        }
    }

    fn register(&mut self) -> Result<(), ArchiveError> {
        for entry in &self.prelude {
            let data_ns = entry.data_namespace(&self.header);
            if self
                .by_data_name
                .insert(data_ns.clone(), self.slots.len())
                .is_some()
            {
                return Err(ArchiveError::DuplicatePreludeEntry {
                    ns: data_ns.to_string(),
                });
            }
            self.slots.push(Slot {
                data_ns,
                phase: Phase::Pending,
                muted: false,
                crc: Crc::new(),
                documents: 0,
                bytes: 0,
            });
        }
        Ok(())
    }

    fn parse_metadata(&mut self) -> Result<(), ArchiveError> {
        let mut parsed = Vec::with_capacity(self.prelude.len());
        for entry in &self.prelude {
            if entry.metadata.is_empty() {
                parsed.push(None);
                continue;
            }
            let meta = CollectionMetadata::parse(&entry.metadata).map_err(|e| {
                let detail = match e {
                    ArchiveError::InvalidMetadata { detail } => detail,
                    other => other.to_string(),
                };
                ArchiveError::MalformedMetadata {
                    ns: entry.namespace().to_string(),
                    detail,
                }
            })?;
            parsed.push(Some(meta));
        }
        self.metadata = parsed;
        Ok(())
    }

    /// Reads a length or terminator. `Ok(None)` means the input ended before the first byte,
    /// which is a clean end only where `clean_end_allowed`; anywhere else it is truncation.
    fn read_length(
        &mut self,
        clean_end_allowed: bool,
        context: &'static str,
    ) -> Result<Option<u32>, ArchiveError> {
        let start = self.offset;
        let mut bytes = [0u8; 4];
        let got = self.read_full(&mut bytes)?;
        if got == 0 && clean_end_allowed {
            return Ok(None);
        }
        if got < bytes.len() {
            return Err(ArchiveError::Truncated {
                offset: self.offset,
                context: if context.is_empty() {
                    "inside a length"
                } else {
                    context
                },
            });
        }
        let value = u32::from_le_bytes(bytes);
        if value != TERMINATOR_VALUE
            && !(MIN_DOCUMENT_SIZE..=MAX_DOCUMENT_SIZE).contains(&(value as usize))
        {
            return Err(ArchiveError::InvalidLength {
                length: value,
                offset: start,
            });
        }
        Ok(Some(value))
    }

    /// Reads the rest of a document whose length (already range-checked) was just consumed.
    /// Returns the length as usize; the document sits in `buf[..len]`.
    fn read_document(
        &mut self,
        len: u32,
        start: u64,
        context: &'static str,
    ) -> Result<usize, ArchiveError> {
        let size = len as usize;
        if self.buf.len() < 4 {
            self.buf.resize(4, 0);
        }
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        let mut filled = 4;
        while filled < size {
            // The buffer keeps the largest size reached (the range check caps it) and grows
            // only while the input keeps delivering, doubling from a small step: a length the
            // input does not back costs about what was read, not the length.
            if self.buf.len() <= filled {
                let grown = (self.buf.len() * 2).max(FIRST_READ_STEP).min(size);
                self.buf.resize(grown, 0);
            }
            let end = self.buf.len().min(size);
            let mut body = std::mem::take(&mut self.buf);
            let got = self.read_full(&mut body[filled..end]);
            self.buf = body;
            let got = got?;
            filled += got;
            if filled < end {
                return Err(ArchiveError::Truncated {
                    offset: self.offset,
                    context,
                });
            }
        }
        let last = self.buf[size - 1];
        if last != 0 {
            return Err(ArchiveError::MissingNul {
                size: len,
                byte: last,
                offset: start,
            });
        }
        Ok(size)
    }

    /// Fills `dest` unless the input ends first; returns how many bytes arrived.
    fn read_full(&mut self, dest: &mut [u8]) -> Result<usize, ArchiveError> {
        let mut filled = 0;
        while filled < dest.len() {
            match self.input.read(&mut dest[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ArchiveError::Io {
                        offset: self.offset,
                        source,
                    })
                }
            }
        }
        Ok(filled)
    }
}

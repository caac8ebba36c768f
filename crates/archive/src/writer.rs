//! Writes an archive the way mongodump's multiplexer lays it out.

use std::collections::HashMap;
use std::io::Write;

use crate::checksum::Crc;
use crate::error::ArchiveError;
use crate::extjson::parse_extjson;
use crate::namespace::{self, Namespace};
use crate::prelude::{encode_namespace_header, parse_version, Header, PreludeEntry};
use crate::{MAGIC, MAX_DOCUMENT_SIZE, MIN_DOCUMENT_SIZE, TERMINATOR};

/// Totals for one namespace's data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NamespaceSummary {
    /// CRC-64/XZ over every document's bytes, in stream order.
    pub crc: u64,
    pub documents: u64,
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Pending,
    Open,
    Finished,
}

#[derive(Debug)]
struct Slot {
    /// The name on the data blocks (`system.buckets.X` for old time-series).
    data_ns: Namespace,
    phase: Phase,
    crc: Crc,
    documents: u64,
    bytes: u64,
}

/// Streams a mongodump-compatible archive into `W`.
///
/// Documents go straight through to `W` with no copying or per-document allocation; wrap a
/// file or socket in a `BufWriter` to batch the small header writes.
pub struct ArchiveWriter<W: Write> {
    out: W,
    slots: Vec<Slot>,
    /// Both the data name and, for time-series, the logical name map to the slot.
    by_name: HashMap<Namespace, usize>,
    /// The namespace whose data segment is open, as the multiplexer's "current namespace".
    current: Option<usize>,
    open: usize,
    limit: i32,
    scratch: Vec<u8>,
    offset: u64,
    poisoned: bool,
}

impl<W: Write> std::fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("offset", &self.offset)
            .field("open", &self.open)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ArchiveWriter<W> {
    /// Validates the header and prelude the way mongorestore will, then writes the magic and
    /// the prelude.
    ///
    /// Entries keep the given order. A header whose `tool_version` is a pre-100 `rX.Y.Z` gets
    /// prelude entries without `type`, as those tools wrote them.
    pub fn new(
        mut out: W,
        header: &Header,
        prelude: &[PreludeEntry],
    ) -> Result<Self, ArchiveError> {
        validate_header(header)?;
        let mut slots = Vec::with_capacity(prelude.len());
        let mut by_name = HashMap::with_capacity(prelude.len() * 2);
        for entry in prelude {
            let logical = entry.namespace();
            namespace::validate(&logical).map_err(|detail| ArchiveError::InvalidNamespace {
                ns: logical.to_string(),
                detail,
            })?;
            if !entry.metadata.is_empty() {
                parse_extjson(&entry.metadata).map_err(|e| ArchiveError::MalformedMetadata {
                    ns: logical.to_string(),
                    detail: e.to_string(),
                })?;
            }
            let data_ns = entry.data_namespace(header);
            let index = slots.len();
            for name in [&data_ns, &logical] {
                if let Some(&other) = by_name.get(name) {
                    if other != index {
                        return Err(ArchiveError::DuplicatePreludeEntry {
                            ns: name.to_string(),
                        });
                    }
                }
                by_name.insert(name.clone(), index);
            }
            slots.push(Slot {
                data_ns,
                phase: Phase::Pending,
                crc: Crc::new(),
                documents: 0,
                bytes: 0,
            });
        }

        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&MAGIC);
        header
            .encode(&mut buf)
            .map_err(|size| ArchiveError::InvalidHeader {
                detail: format!("header document is {size} bytes, over the 16 MiB limit"),
            })?;
        let with_type = !header.legacy_tools();
        for entry in prelude {
            entry
                .encode(&mut buf, with_type)
                .map_err(|size| ArchiveError::MalformedMetadata {
                    ns: entry.namespace().to_string(),
                    detail: format!("prelude entry is {size} bytes, over the 16 MiB limit"),
                })?;
        }
        buf.extend_from_slice(&TERMINATOR);
        out.write_all(&buf)
            .map_err(|source| ArchiveError::Io { offset: 0, source })?;
        let offset = buf.len() as u64;
        buf.clear();
        Ok(Self {
            out,
            slots,
            by_name,
            current: None,
            open: 0,
            limit: header.concurrent_collections,
            offset,
            scratch: buf,
            poisoned: false,
        })
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends concatenated raw BSON documents to `ns`. A namespace different from the last
    /// one written closes that segment and opens a new one, exactly as mongodump's
    /// multiplexer does; an empty `raw_docs` still does that switch, as mongodump's final
    /// flush of an empty buffer does.
    ///
    /// Every document is checked (length 5 to 16 MiB, exact framing, final NUL) before any
    /// byte is written, so a refused call leaves the archive untouched.
    pub fn write_documents(&mut self, ns: &Namespace, raw_docs: &[u8]) -> Result<(), ArchiveError> {
        self.check_poisoned()?;
        let index = self.lookup(ns)?;
        if self.slots[index].phase == Phase::Finished {
            return Err(ArchiveError::NamespaceFinished { ns: ns.to_string() });
        }
        let documents =
            count_documents(raw_docs).map_err(|(index, detail)| ArchiveError::BadDocument {
                ns: ns.to_string(),
                index,
                detail,
            })?;
        self.start(index)?;
        self.guarded(|w| {
            w.switch_to(index)?;
            w.emit_raw(raw_docs)
        })?;
        let slot = &mut self.slots[index];
        slot.crc.update(raw_docs);
        slot.documents += documents;
        slot.bytes += raw_docs.len() as u64;
        Ok(())
    }

    /// Ends `ns`: closes whichever segment is open, writes the EOF block with the CRC and its
    /// terminator. A namespace that never received documents first gets the empty segment
    /// mongodump writes for views and empty collections.
    pub fn finish_namespace(&mut self, ns: &Namespace) -> Result<NamespaceSummary, ArchiveError> {
        self.check_poisoned()?;
        let index = self.lookup(ns)?;
        if self.slots[index].phase == Phase::Finished {
            return Err(ArchiveError::NamespaceFinished { ns: ns.to_string() });
        }
        if self.slots[index].phase == Phase::Pending {
            self.start(index)?;
            self.guarded(|w| w.switch_to(index))?;
        }
        let summary = {
            let slot = &self.slots[index];
            NamespaceSummary {
                crc: slot.crc.value(),
                documents: slot.documents,
                bytes: slot.bytes,
            }
        };
        self.guarded(|w| {
            if w.current.is_some() {
                w.emit_raw(&TERMINATOR)?;
            }
            w.current = None;
            w.emit_header(index, true, summary.crc as i64)?;
            w.emit_raw(&TERMINATOR)
        })?;
        self.slots[index].phase = Phase::Finished;
        self.open -= 1;
        Ok(summary)
    }

    /// Checks every prelude namespace was finished, flushes, and hands back the output.
    pub fn finish(mut self) -> Result<W, ArchiveError> {
        self.check_poisoned()?;
        let pending: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.phase != Phase::Finished)
            .map(|s| s.data_ns.to_string())
            .collect();
        if !pending.is_empty() {
            return Err(ArchiveError::UnfinishedAtClose {
                namespaces: pending.join(", "),
            });
        }
        let offset = self.offset;
        self.out
            .flush()
            .map_err(|source| ArchiveError::Io { offset, source })?;
        Ok(self.out)
    }

    fn check_poisoned(&self) -> Result<(), ArchiveError> {
        if self.poisoned {
            return Err(ArchiveError::Poisoned { what: "writer" });
        }
        Ok(())
    }

    fn lookup(&self, ns: &Namespace) -> Result<usize, ArchiveError> {
        self.by_name
            .get(ns)
            .copied()
            .ok_or_else(|| ArchiveError::UnknownNamespace {
                ns: ns.to_string(),
                offset: self.offset,
            })
    }

    /// Moves a pending namespace to open, enforcing the deadlock bound and oplog-last.
    fn start(&mut self, index: usize) -> Result<(), ArchiveError> {
        if self.slots[index].phase != Phase::Pending {
            return Ok(());
        }
        let ns = &self.slots[index].data_ns;
        if ns.is_oplog() {
            let pending: Vec<String> = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, s)| *i != index && s.phase != Phase::Finished)
                .map(|(_, s)| s.data_ns.to_string())
                .collect();
            if !pending.is_empty() {
                return Err(ArchiveError::OplogNotLast {
                    pending: pending.join(", "),
                });
            }
        }
        if i64::try_from(self.open).unwrap_or(i64::MAX) >= i64::from(self.limit) {
            return Err(ArchiveError::TooManyOpenNamespaces {
                ns: ns.to_string(),
                open: self.open,
                limit: self.limit,
            });
        }
        self.slots[index].phase = Phase::Open;
        self.open += 1;
        Ok(())
    }

    /// Runs an output step; any failure poisons the writer since the stream is now torn.
    fn guarded(
        &mut self,
        step: impl FnOnce(&mut Self) -> Result<(), ArchiveError>,
    ) -> Result<(), ArchiveError> {
        let result = step(self);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn switch_to(&mut self, index: usize) -> Result<(), ArchiveError> {
        if self.current == Some(index) {
            return Ok(());
        }
        if self.current.is_some() {
            self.emit_raw(&TERMINATOR)?;
        }
        self.emit_header(index, false, 0)?;
        self.current = Some(index);
        Ok(())
    }

    fn emit_header(&mut self, index: usize, eof: bool, crc: i64) -> Result<(), ArchiveError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let ns = &self.slots[index].data_ns;
        let encoded = encode_namespace_header(&mut scratch, ns, eof, crc);
        let result = match encoded {
            Ok(_) => self.emit_raw(&scratch),
            Err(size) => Err(ArchiveError::InvalidNamespace {
                ns: ns.to_string(),
                detail: format!("namespace header would be {size} bytes"),
            }),
        };
        self.scratch = scratch;
        result
    }

    fn emit_raw(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        let offset = self.offset;
        self.out
            .write_all(bytes)
            .map_err(|source| ArchiveError::Io { offset, source })?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

fn validate_header(header: &Header) -> Result<(), ArchiveError> {
    if header.concurrent_collections < 1 {
        return Err(ArchiveError::InvalidHeader {
            detail: format!(
                "concurrent_collections is {}; it must be at least 1",
                header.concurrent_collections
            ),
        });
    }
    if parse_version(&header.server_version).is_none() {
        return Err(ArchiveError::InvalidHeader {
            detail: format!(
                "server_version {:?} is not major.minor.patch, which mongorestore 100.16+ requires",
                header.server_version
            ),
        });
    }
    Ok(())
}

/// Walks concatenated documents, checking each one's framing; returns how many there are or
/// the index of the first bad one with the reason.
fn count_documents(raw: &[u8]) -> Result<u64, (usize, String)> {
    let mut pos = 0usize;
    let mut count = 0usize;
    while pos < raw.len() {
        let rest = &raw[pos..];
        let Some(len_bytes) = rest.get(..4) else {
            return Err((
                count,
                format!("{} trailing bytes are not a document", rest.len()),
            ));
        };
        let len =
            u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        if !(MIN_DOCUMENT_SIZE..=MAX_DOCUMENT_SIZE).contains(&len) {
            return Err((count, format!("length {len} is out of range")));
        }
        if len > rest.len() {
            return Err((
                count,
                format!("length {len} runs past the {} bytes given", rest.len()),
            ));
        }
        if rest[len - 1] != 0 {
            return Err((count, "last byte is not NUL".into()));
        }
        pos += len;
        count += 1;
    }
    Ok(count as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_framing_checks() {
        let doc = [5u8, 0, 0, 0, 0];
        assert_eq!(count_documents(&[]), Ok(0));
        assert_eq!(count_documents(&doc), Ok(1));
        assert_eq!(count_documents(&[doc, doc].concat()), Ok(2));
        assert_eq!(count_documents(&[4, 0, 0, 0]).unwrap_err().0, 0);
        assert_eq!(
            count_documents(&[5, 0, 0, 0, 1]).unwrap_err().1,
            "last byte is not NUL"
        );
        assert!(count_documents(&[&doc[..], &[6, 0, 0, 0, 0]].concat())
            .unwrap_err()
            .1
            .contains("runs past"));
        assert!(count_documents(&[&doc[..], &[1, 2]].concat())
            .unwrap_err()
            .1
            .contains("trailing"));
        let too_big = ((MAX_DOCUMENT_SIZE + 1) as u32).to_le_bytes();
        assert!(count_documents(&too_big)
            .unwrap_err()
            .1
            .contains("out of range"));
    }
}

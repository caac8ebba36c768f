//! Hand-built BSON for the archive's own framing documents. Building the bytes directly pins
//! field order and element types exactly as mongodump writes them, and needs no allocation
//! beyond the caller's scratch buffer.

use bson::raw::{RawBsonRef, RawDocument};

use crate::MAX_DOCUMENT_SIZE;

/// Appends one document to a buffer; `finish` patches in the length.
pub(crate) struct DocBuilder<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> DocBuilder<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&[0, 0, 0, 0]);
        Self { buf, start }
    }

    fn key(&mut self, tag: u8, key: &str) {
        self.buf.push(tag);
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.push(0);
    }

    pub(crate) fn string(&mut self, key: &str, value: &str) {
        self.key(0x02, key);
        // Strings longer than i32 cannot occur: finish() rejects any document over 16 MiB.
        let len = (value.len() as u64 + 1).min(u32::MAX as u64) as u32;
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    pub(crate) fn int32(&mut self, key: &str, value: i32) {
        self.key(0x10, key);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn int64(&mut self, key: &str, value: i64) {
        self.key(0x12, key);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn boolean(&mut self, key: &str, value: bool) {
        self.key(0x08, key);
        self.buf.push(u8::from(value));
    }

    /// Closes the document. Fails with its size when it would not fit in an archive.
    pub(crate) fn finish(self) -> Result<usize, usize> {
        self.buf.push(0);
        let len = self.buf.len() - self.start;
        if len > MAX_DOCUMENT_SIZE {
            self.buf.truncate(self.start);
            return Err(len);
        }
        let bytes = (len as u32).to_le_bytes();
        self.buf[self.start..self.start + 4].copy_from_slice(&bytes);
        Ok(len)
    }
}

/// Iterates a document's elements, turning every decoding failure into a message.
pub(crate) fn elements(
    raw: &[u8],
) -> Result<impl Iterator<Item = Result<(&str, RawBsonRef<'_>), String>>, String> {
    let doc = RawDocument::from_bytes(raw).map_err(|e| e.to_string())?;
    Ok(doc.into_iter().map(|item| item.map_err(|e| e.to_string())))
}

pub(crate) fn type_name(value: &RawBsonRef<'_>) -> &'static str {
    match value {
        RawBsonRef::Double(_) => "double",
        RawBsonRef::String(_) => "string",
        RawBsonRef::Array(_) => "array",
        RawBsonRef::Document(_) => "document",
        RawBsonRef::Boolean(_) => "bool",
        RawBsonRef::Null => "null",
        RawBsonRef::Int32(_) => "int32",
        RawBsonRef::Int64(_) => "int64",
        RawBsonRef::DateTime(_) => "date",
        RawBsonRef::Timestamp(_) => "timestamp",
        RawBsonRef::Binary(_) => "binary",
        RawBsonRef::ObjectId(_) => "objectId",
        _ => "another BSON type",
    }
}

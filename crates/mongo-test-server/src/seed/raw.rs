//! A minimal BSON writer that appends straight into one byte buffer.
//!
//! The seed generators write hundreds of megabytes per second, and several BSON types the demo
//! data needs (DBPointer, undefined, exact Decimal128 bit patterns, malformed-looking but legal
//! binary subtypes) cannot be built through `bson::Bson` at all, so documents are written byte by
//! byte here and only wrapped as `RawDocumentBuf` at the end.

use bson::RawDocumentBuf;

/// One open document or array: where its length prefix sits, and the next index for arrays.
#[derive(Debug, Clone, Copy)]
struct Open {
    start: usize,
    next_index: Option<u32>,
}

/// Writes one top-level document. Element methods take a key; inside an array the key is
/// ignored and replaced by the element's index, so callers pass `""` there.
#[derive(Debug)]
pub(crate) struct RawWriter {
    buf: Vec<u8>,
    open: Vec<Open>,
}

impl RawWriter {
    pub(crate) fn new() -> Self {
        Self::with_capacity(256)
    }

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut w = Self {
            buf: Vec::with_capacity(capacity.max(5)),
            open: Vec::with_capacity(8),
        };
        w.open_container(None);
        w
    }

    /// Bytes written so far, including the still-open length prefixes.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Closes the top-level document and returns it. Containers left open are closed too, so
    /// the result is always well formed.
    pub(crate) fn finish(mut self) -> RawDocumentBuf {
        while !self.open.is_empty() {
            self.end();
        }
        RawDocumentBuf::from_bytes(self.buf).unwrap_or_else(|_| {
            // Unreachable: every length prefix and terminator is written above. An empty
            // document keeps the seed total rather than aborting the server.
            RawDocumentBuf::new()
        })
    }

    fn open_container(&mut self, next_index: Option<u32>) {
        self.open.push(Open {
            start: self.buf.len(),
            next_index,
        });
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
    }

    /// Closes the innermost open document or array.
    pub(crate) fn end(&mut self) {
        if let Some(open) = self.open.pop() {
            self.buf.push(0);
            let len = (self.buf.len() - open.start) as i32;
            self.buf[open.start..open.start + 4].copy_from_slice(&len.to_le_bytes());
        }
    }

    fn element(&mut self, element_type: u8, key: &str) {
        self.buf.push(element_type);
        match self.open.last_mut().and_then(|o| o.next_index.as_mut()) {
            Some(index) => {
                let i = *index;
                *index += 1;
                push_decimal(&mut self.buf, i);
            }
            None => self.buf.extend_from_slice(key.as_bytes()),
        }
        self.buf.push(0);
    }

    fn string_body(&mut self, s: &str) {
        self.buf
            .extend_from_slice(&((s.len() + 1) as i32).to_le_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn cstring(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    pub(crate) fn f64(&mut self, key: &str, v: f64) {
        self.element(0x01, key);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn str(&mut self, key: &str, v: &str) {
        self.element(0x02, key);
        self.string_body(v);
    }

    /// A string whose body the caller writes through `fill`; saves building a `String` first.
    pub(crate) fn str_with(&mut self, key: &str, fill: impl FnOnce(&mut Vec<u8>)) {
        self.element(0x02, key);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        fill(&mut self.buf);
        self.buf.push(0);
        let len = (self.buf.len() - at - 4) as i32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    pub(crate) fn start_doc(&mut self, key: &str) {
        self.element(0x03, key);
        self.open_container(None);
    }

    pub(crate) fn start_array(&mut self, key: &str) {
        self.element(0x04, key);
        self.open_container(Some(0));
    }

    /// Embeds an already-encoded document as a field.
    pub(crate) fn raw_doc(&mut self, key: &str, doc: &[u8]) {
        self.element(0x03, key);
        self.buf.extend_from_slice(doc);
    }

    pub(crate) fn binary(&mut self, key: &str, subtype: u8, bytes: &[u8]) {
        self.element(0x05, key);
        self.buf
            .extend_from_slice(&(bytes.len() as i32).to_le_bytes());
        self.buf.push(subtype);
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn undefined(&mut self, key: &str) {
        self.element(0x06, key);
    }

    pub(crate) fn oid(&mut self, key: &str, oid: [u8; 12]) {
        self.element(0x07, key);
        self.buf.extend_from_slice(&oid);
    }

    pub(crate) fn bool(&mut self, key: &str, v: bool) {
        self.element(0x08, key);
        self.buf.push(u8::from(v));
    }

    /// Milliseconds since the Unix epoch.
    pub(crate) fn datetime(&mut self, key: &str, millis: i64) {
        self.element(0x09, key);
        self.buf.extend_from_slice(&millis.to_le_bytes());
    }

    pub(crate) fn null(&mut self, key: &str) {
        self.element(0x0A, key);
    }

    /// `options` must be in alphabetical order to be valid BSON.
    pub(crate) fn regex(&mut self, key: &str, pattern: &str, options: &str) {
        self.element(0x0B, key);
        self.cstring(pattern);
        self.cstring(options);
    }

    pub(crate) fn db_pointer(&mut self, key: &str, namespace: &str, oid: [u8; 12]) {
        self.element(0x0C, key);
        self.string_body(namespace);
        self.buf.extend_from_slice(&oid);
    }

    pub(crate) fn code(&mut self, key: &str, code: &str) {
        self.element(0x0D, key);
        self.string_body(code);
    }

    pub(crate) fn symbol(&mut self, key: &str, symbol: &str) {
        self.element(0x0E, key);
        self.string_body(symbol);
    }

    pub(crate) fn code_with_scope(&mut self, key: &str, code: &str, scope: &[u8]) {
        self.element(0x0F, key);
        let total = 4 + 4 + code.len() + 1 + scope.len();
        self.buf.extend_from_slice(&(total as i32).to_le_bytes());
        self.string_body(code);
        self.buf.extend_from_slice(scope);
    }

    pub(crate) fn i32(&mut self, key: &str, v: i32) {
        self.element(0x10, key);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// `time` is seconds, `increment` the ordinal within that second.
    pub(crate) fn timestamp(&mut self, key: &str, time: u32, increment: u32) {
        self.element(0x11, key);
        self.buf.extend_from_slice(&increment.to_le_bytes());
        self.buf.extend_from_slice(&time.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, key: &str, v: i64) {
        self.element(0x12, key);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// IEEE 754-2008 decimal128 (BID) given as its high and low 64-bit halves.
    pub(crate) fn decimal128(&mut self, key: &str, high: u64, low: u64) {
        self.element(0x13, key);
        self.buf.extend_from_slice(&low.to_le_bytes());
        self.buf.extend_from_slice(&high.to_le_bytes());
    }

    pub(crate) fn min_key(&mut self, key: &str) {
        self.element(0xFF, key);
    }

    pub(crate) fn max_key(&mut self, key: &str) {
        self.element(0x7F, key);
    }
}

/// Appends `n` in decimal without going through `fmt`.
pub(crate) fn push_decimal(buf: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, Bson};

    #[test]
    fn matches_the_bson_crate_encoding() {
        let mut w = RawWriter::new();
        w.i32("_id", 7);
        w.str("s", "héllo");
        w.start_array("a");
        w.i64("ignored", 1);
        w.start_doc("");
        w.bool("b", true);
        w.end();
        w.null("x");
        w.end();
        w.f64("d", -0.0);
        w.datetime("t", -1);
        w.timestamp("ts", 5, 6);
        let ours = w.finish();
        let expected = bson::to_vec(&doc! {
            "_id": 7,
            "s": "héllo",
            "a": [1_i64, {"b": true}, Bson::Null],
            "d": -0.0,
            "t": bson::DateTime::from_millis(-1),
            "ts": bson::Timestamp { time: 5, increment: 6 },
        })
        .unwrap();
        assert_eq!(ours.as_bytes(), expected.as_slice());
    }

    #[test]
    fn decimal_keys_count_up() {
        let mut buf = Vec::new();
        for n in [0, 9, 10, 4_294_967_295] {
            push_decimal(&mut buf, n);
            buf.push(b',');
        }
        assert_eq!(buf, b"0,9,10,4294967295,");
    }
}

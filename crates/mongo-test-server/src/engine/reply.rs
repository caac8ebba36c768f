//! Reply documents built straight from stored bytes: a cursor batch copies each document
//! once into the reply and never decodes it.

use bson::{RawDocument, RawDocumentBuf};

/// An array of raw documents under construction (`firstBatch`/`nextBatch`).
pub struct Batch {
    buf: Vec<u8>,
    count: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Self {
            buf: vec![0, 0, 0, 0],
            count: 0,
        }
    }

    pub fn push(&mut self, doc: &RawDocument) {
        self.buf.push(0x03);
        self.buf
            .extend_from_slice(self.count.to_string().as_bytes());
        self.buf.push(0);
        self.buf.extend_from_slice(doc.as_bytes());
        self.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.push(0);
        let len = self.buf.len() as i32;
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf
    }
}

fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn close_doc(mut out: Vec<u8>) -> Vec<u8> {
    out.push(0);
    let len = out.len() as i32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// `{cursor: {firstBatch|nextBatch: [...], id, ns}, ok: 1.0}` as mongod orders it.
pub fn cursor_reply(batch: Batch, first: bool, id: i64, ns: &str) -> RawDocumentBuf {
    let arr = batch.finish();
    let mut cur = Vec::with_capacity(arr.len() + ns.len() + 48);
    cur.extend_from_slice(&[0, 0, 0, 0]);
    cur.push(0x04);
    put_cstr(&mut cur, if first { "firstBatch" } else { "nextBatch" });
    cur.extend_from_slice(&arr);
    drop(arr);
    cur.push(0x12);
    put_cstr(&mut cur, "id");
    cur.extend_from_slice(&id.to_le_bytes());
    cur.push(0x02);
    put_cstr(&mut cur, "ns");
    cur.extend_from_slice(&((ns.len() + 1) as i32).to_le_bytes());
    put_cstr(&mut cur, ns);
    let cur = close_doc(cur);

    let mut out = Vec::with_capacity(cur.len() + 24);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.push(0x03);
    put_cstr(&mut out, "cursor");
    out.extend_from_slice(&cur);
    out.push(0x01);
    put_cstr(&mut out, "ok");
    out.extend_from_slice(&1.0f64.to_le_bytes());
    let out = close_doc(out);
    RawDocumentBuf::from_bytes(out).unwrap_or_default()
}

/// Appends `ok: 1.0` to a reply built by a command.
pub fn ok(mut doc: RawDocumentBuf) -> RawDocumentBuf {
    doc.append("ok", 1.0);
    doc
}

pub fn ok_empty() -> RawDocumentBuf {
    ok(RawDocumentBuf::new())
}

pub fn raw(doc: &bson::Document) -> RawDocumentBuf {
    RawDocumentBuf::from_document(doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn cursor_reply_is_valid_bson_in_mongod_order() {
        let mut b = Batch::new();
        b.push(&rawdoc! {"_id": 1});
        b.push(&rawdoc! {"_id": 2, "x": "y"});
        let r = cursor_reply(b, true, 42, "db.c");
        let d = r.to_document().unwrap();
        let c = d.get_document("cursor").unwrap();
        let keys: Vec<_> = c.keys().cloned().collect();
        assert_eq!(keys, ["firstBatch", "id", "ns"]);
        assert_eq!(c.get_array("firstBatch").unwrap().len(), 2);
        assert_eq!(c.get_i64("id").unwrap(), 42);
        assert_eq!(c.get_str("ns").unwrap(), "db.c");
        assert_eq!(d.get_f64("ok").unwrap(), 1.0);
    }
}

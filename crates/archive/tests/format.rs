//! The archive format end to end: the worked example byte for byte, every reader check, every
//! writer refusal, and randomised write → read round trips.

#![allow(clippy::unwrap_used)]

use bson::{doc, Document};
use nightdump_archive::{
    crc64, ArchiveError, ArchiveReader, ArchiveWriter, CollectionMetadata, Event, Header,
    Namespace, NamespaceSummary, PreludeEntry, MAX_DOCUMENT_SIZE,
};

// ---------------------------------------------------------------------------------------
// Helpers that build bytes independently of the crate's own encoder.

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn bson_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&((s.len() + 1) as u32).to_le_bytes());
    cstr(out, s);
}

fn bson(doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    doc.to_writer(&mut out).unwrap();
    out
}

fn ns_header(db: &str, coll: &str, eof: bool, crc: i64) -> Vec<u8> {
    bson(&doc! { "db": db, "collection": coll, "EOF": eof, "CRC": crc })
}

const TERM: [u8; 4] = [0xFF; 4];
const MAGIC: [u8; 4] = [0x6D, 0xE2, 0x99, 0x81];

fn prelude_bytes(server: &str, entries: &[(&str, &str)]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend(bson(&doc! {
        "concurrent_collections": 4i32, "version": "0.1",
        "server_version": server, "tool_version": "100.8.0",
    }));
    for (db, coll) in entries {
        out.extend(bson(&doc! {
            "db": *db, "collection": *coll, "metadata": "", "size": 0i32, "type": "collection",
        }));
    }
    out.extend(TERM);
    out
}

fn drain<R: std::io::Read>(reader: &mut ArchiveReader<R>) -> Result<Vec<Owned>, ArchiveError> {
    let mut events = Vec::new();
    while let Some(event) = reader.next_event()? {
        events.push(Owned::from(event));
    }
    Ok(events)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Doc(Namespace, Vec<u8>),
    End(Namespace, NamespaceSummary),
}

impl From<Event<'_>> for Owned {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Document { ns, raw } => Owned::Doc(ns.clone(), raw.to_vec()),
            Event::NamespaceEnd { ns, summary } => Owned::End(ns, summary),
        }
    }
}

fn read_all(bytes: &[u8]) -> Result<Vec<Owned>, ArchiveError> {
    let mut reader = ArchiveReader::new(bytes)?;
    drain(&mut reader)
}

fn entry(db: &str, coll: &str, kind: &str) -> PreludeEntry {
    PreludeEntry {
        db: db.into(),
        collection: coll.into(),
        metadata: String::new(),
        size: 0,
        kind: kind.into(),
    }
}

fn small_doc(i: i32) -> Vec<u8> {
    bson(&doc! { "_id": i })
}

// ---------------------------------------------------------------------------------------
// Section 1.7's worked example, assembled by hand from the listing.

const WORKED_METADATA: &str = r#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"collectionName":"c","type":"collection"}"#;

fn worked_example_bytes() -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend([0x67, 0, 0, 0, 0x10]);
    cstr(&mut b, "concurrent_collections");
    b.extend([4, 0, 0, 0, 0x02]);
    cstr(&mut b, "version");
    bson_string(&mut b, "0.1");
    b.push(0x02);
    cstr(&mut b, "server_version");
    bson_string(&mut b, "7.0.14");
    b.push(0x02);
    cstr(&mut b, "tool_version");
    bson_string(&mut b, "100.8.0");
    b.push(0);
    b.extend([0xD0, 0, 0, 0, 0x02]);
    cstr(&mut b, "db");
    bson_string(&mut b, "test");
    b.push(0x02);
    cstr(&mut b, "collection");
    bson_string(&mut b, "c");
    b.push(0x02);
    cstr(&mut b, "metadata");
    bson_string(&mut b, WORKED_METADATA);
    b.push(0x10);
    cstr(&mut b, "size");
    b.extend([0, 0, 0, 0, 0x02]);
    cstr(&mut b, "type");
    bson_string(&mut b, "collection");
    b.push(0);
    b.extend(TERM);
    let header = |b: &mut Vec<u8>, eof: u8, crc: [u8; 8]| {
        b.extend([0x37, 0, 0, 0, 0x02]);
        cstr(b, "db");
        bson_string(b, "test");
        b.push(0x02);
        cstr(b, "collection");
        bson_string(b, "c");
        b.push(0x08);
        cstr(b, "EOF");
        b.push(eof);
        b.push(0x12);
        cstr(b, "CRC");
        b.extend(crc);
        b.push(0);
    };
    header(&mut b, 0, [0; 8]);
    b.extend([0x0E, 0, 0, 0, 0x10, b'_', b'i', b'd', 0, 1, 0, 0, 0, 0]);
    b.extend(TERM);
    header(&mut b, 1, [0xFE, 0x59, 0x44, 0x6A, 0x43, 0x61, 0xEA, 0xF3]);
    b.extend(TERM);
    b
}

#[test]
fn writer_reproduces_the_worked_example_byte_for_byte() {
    let expected = worked_example_bytes();
    assert_eq!(expected.len(), 451);

    let metadata = CollectionMetadata {
        indexes: vec![doc! { "v": 2i32, "key": { "_id": 1i32 }, "name": "_id_" }],
        collection_name: "c".into(),
        kind: Some("collection".into()),
        ..Default::default()
    };
    let header = Header::new("7.0.14", "100.8.0");
    let prelude = [PreludeEntry {
        metadata: metadata.to_extjson(),
        ..entry("test", "c", "collection")
    }];
    let mut writer = ArchiveWriter::new(Vec::new(), &header, &prelude).unwrap();
    let ns = Namespace::new("test", "c");
    writer
        .write_documents(&ns, &bson(&doc! { "_id": 1i32 }))
        .unwrap();
    let summary = writer.finish_namespace(&ns).unwrap();
    assert_eq!(summary.crc, 0xF3EA_6143_6A44_59FE);
    assert_eq!(summary.crc as i64, -870_776_635_769_202_178);
    assert_eq!((summary.documents, summary.bytes), (1, 14));
    assert_eq!(writer.offset(), 451);
    let bytes = writer.finish().unwrap();
    assert_eq!(bytes, expected);
}

#[test]
fn reader_decodes_the_worked_example() {
    let bytes = worked_example_bytes();
    let mut reader = ArchiveReader::new(&bytes[..]).unwrap();
    assert_eq!(reader.header(), &Header::new("7.0.14", "100.8.0"));
    assert_eq!(reader.prelude().len(), 1);
    assert_eq!(reader.prelude()[0].kind, "collection");
    assert_eq!(reader.prelude()[0].metadata, WORKED_METADATA);
    let meta = reader.metadata()[0].as_ref().unwrap();
    assert_eq!(meta.collection_name, "c");
    let events = drain(&mut reader).unwrap();
    let ns = Namespace::new("test", "c");
    assert_eq!(
        events,
        vec![
            Owned::Doc(ns.clone(), bytes[374..388].to_vec()),
            Owned::End(
                ns,
                NamespaceSummary {
                    crc: 0xF3EA_6143_6A44_59FE,
                    documents: 1,
                    bytes: 14
                }
            ),
        ]
    );
    assert_eq!(reader.offset(), 451);
    assert!(reader.next_event().unwrap().is_none(), "end is sticky");
}

// ---------------------------------------------------------------------------------------
// Reader checks (section 1.10).

fn err(bytes: &[u8]) -> ArchiveError {
    match read_all(bytes) {
        Ok(events) => panic!("expected an error, read {events:?}"),
        Err(e) => e,
    }
}

#[test]
fn every_truncation_of_an_archive_is_an_error() {
    let bytes = worked_example_bytes();
    for cut in 0..bytes.len() {
        let e = err(&bytes[..cut]);
        let text = e.to_string();
        assert!(!text.contains('\n'), "one-line message: {text}");
    }
    assert!(read_all(&bytes).is_ok());
}

#[test]
fn truncation_messages_say_what_is_missing() {
    let bytes = worked_example_bytes();
    assert!(matches!(
        err(&bytes[..2]),
        ArchiveError::TruncatedMagic { got: 2 }
    ));
    // Right after the first segment's terminator: test.c is open but never closed.
    let e = err(&bytes[..392]);
    assert_eq!(
        e.to_string(),
        "archive finished but contained files were unfinished (test.c)"
    );
    // Right after the prelude: test.c never appeared.
    let e = err(&bytes[..319]);
    assert_eq!(
        e.to_string(),
        "archive finished before all collections were seen (test.c)"
    );
    // Mid-document; and a segment cut before its terminator is truncation too.
    let e = err(&bytes[..380]);
    assert!(
        matches!(e, ArchiveError::Truncated { offset: 380, .. }),
        "{e}"
    );
    assert!(e
        .to_string()
        .contains("unexpected end of input at offset 380"));
    let e = err(&bytes[..388]);
    assert!(
        e.to_string().ends_with("offset 388 inside a data segment"),
        "{e}"
    );
}

#[test]
fn magic_mismatches_are_recognised() {
    let mut bytes = worked_example_bytes();
    bytes[0] = 0;
    assert_eq!(
        err(&bytes).to_string(),
        "stream or file does not appear to be a mongodump archive"
    );
    let gz = [0x1F, 0x8B, 8, 0, 0, 0];
    assert!(err(&gz).to_string().contains("gzip"));
}

#[test]
fn crc_mismatch_is_reported_unless_muted() {
    let mut bytes = worked_example_bytes();
    bytes[374 + 9] = 2; // {_id: 2} instead of {_id: 1}
    let e = err(&bytes);
    let computed = crc64(&bytes[374..388]) as i64;
    assert_eq!(
        e.to_string(),
        format!("CRC mismatch for namespace test.c, {computed}!=-870776635769202178")
    );
    let mut reader = ArchiveReader::new(&bytes[..]).unwrap();
    reader.mute(&Namespace::new("test", "c"));
    let events = drain(&mut reader).unwrap();
    assert_eq!(events.len(), 2);
}

#[test]
fn lengths_out_of_range_and_missing_nul() {
    let base = prelude_bytes("7.0.14", &[("test", "c")]);
    for bad in [0u32, 4, (MAX_DOCUMENT_SIZE + 1) as u32, 0x8000_0000] {
        let mut bytes = base.clone();
        bytes.extend(ns_header("test", "c", false, 0));
        bytes.extend(bad.to_le_bytes());
        let e = err(&bytes);
        assert_eq!(
            e.to_string(),
            format!(
                "corruption found in archive; {bad} is neither a valid bson length nor a archive terminator (offset {})",
                base.len() + 55
            )
        );
    }
    let mut bytes = base.clone();
    bytes.extend(ns_header("test", "c", false, 0));
    bytes.extend([5, 0, 0, 0, 7]);
    assert!(matches!(
        err(&bytes),
        ArchiveError::MissingNul {
            size: 5,
            byte: 7,
            ..
        }
    ));
}

#[test]
fn a_failure_inside_a_segment_names_that_segment_namespace() {
    let base = prelude_bytes("7.0.14", &[("test", "a"), ("test", "b")]);
    let mut bytes = base.clone();
    bytes.extend(ns_header("test", "a", false, 0));
    bytes.extend(small_doc(1));
    bytes.extend(TERM);
    bytes.extend(ns_header("test", "b", false, 0));
    bytes.extend(((MAX_DOCUMENT_SIZE + 1) as u32).to_le_bytes());
    let mut reader = ArchiveReader::new(bytes.as_slice()).unwrap();
    assert_eq!(reader.current_namespace(), None);
    assert!(matches!(
        reader.next_event(),
        Ok(Some(Event::Document { .. }))
    ));
    assert_eq!(
        reader.current_namespace(),
        Some(&Namespace::new("test", "a"))
    );
    assert!(matches!(
        reader.next_event(),
        Err(ArchiveError::InvalidLength { .. })
    ));
    // The last document read was of test.a; the bad length sits in test.b's segment.
    assert_eq!(
        reader.current_namespace(),
        Some(&Namespace::new("test", "b"))
    );

    let mut at_boundary = base;
    at_boundary.extend([1, 2, 3]);
    let mut reader = ArchiveReader::new(at_boundary.as_slice()).unwrap();
    assert!(reader.next_event().is_err());
    assert_eq!(reader.current_namespace(), None);
}

#[test]
fn a_document_of_exactly_16_mib_is_accepted_and_one_byte_more_is_not() {
    let mut big = vec![0u8; MAX_DOCUMENT_SIZE];
    big[..4].copy_from_slice(&(MAX_DOCUMENT_SIZE as u32).to_le_bytes());
    // A single binary element filling the document keeps it valid BSON as well.
    big[4] = 0x05;
    big[5] = b'b';
    big[6] = 0;
    let payload = (MAX_DOCUMENT_SIZE - 4 - 3 - 4 - 1 - 1) as u32;
    big[7..11].copy_from_slice(&payload.to_le_bytes());
    let header = Header::new("7.0.14", "100.8.0");
    let ns = Namespace::new("test", "big");
    let mut writer =
        ArchiveWriter::new(Vec::new(), &header, &[entry("test", "big", "collection")]).unwrap();
    writer.write_documents(&ns, &big).unwrap();
    writer.finish_namespace(&ns).unwrap();
    let bytes = writer.finish().unwrap();
    let events = read_all(&bytes).unwrap();
    assert!(matches!(&events[0], Owned::Doc(_, raw) if raw.len() == MAX_DOCUMENT_SIZE));

    let mut too_big = big.clone();
    too_big.push(0);
    too_big[..4].copy_from_slice(&((MAX_DOCUMENT_SIZE + 1) as u32).to_le_bytes());
    let mut writer =
        ArchiveWriter::new(Vec::new(), &header, &[entry("test", "big", "collection")]).unwrap();
    let e = writer.write_documents(&ns, &too_big).unwrap_err();
    assert!(
        matches!(e, ArchiveError::BadDocument { index: 0, .. }),
        "{e}"
    );
}

#[test]
fn consecutive_terminators_are_refused() {
    let mut bytes = prelude_bytes("7.0.14", &[("test", "c")]);
    bytes.extend(TERM);
    assert!(matches!(
        err(&bytes),
        ArchiveError::ConsecutiveTerminators { .. }
    ));
    let mut bytes = prelude_bytes("7.0.14", &[("test", "c")]);
    bytes.extend(ns_header("test", "c", false, 0));
    bytes.extend(TERM);
    bytes.extend(TERM);
    assert!(matches!(
        err(&bytes),
        ArchiveError::ConsecutiveTerminators { .. }
    ));
}

#[test]
fn unknown_namespace_is_refused() {
    let mut bytes = prelude_bytes("7.0.14", &[("test", "c")]);
    let at = bytes.len() as u64;
    bytes.extend(ns_header("test", "d", false, 0));
    let e = err(&bytes);
    assert!(
        matches!(&e, ArchiveError::UnknownNamespace { ns, offset } if ns == "test.d" && *offset == at),
        "{e}"
    );
}

#[test]
fn namespace_after_its_eof_is_refused() {
    let mut bytes = prelude_bytes("7.0.14", &[("test", "c")]);
    bytes.extend(ns_header("test", "c", true, 0));
    bytes.extend(TERM);
    bytes.extend(ns_header("test", "c", false, 0));
    let e = err(&bytes);
    assert!(
        e.to_string()
            .contains("namespace header for already opened namespace test.c"),
        "{e}"
    );
}

#[test]
fn eof_only_namespace_is_accepted() {
    let mut bytes = prelude_bytes("7.0.14", &[("test", "c")]);
    bytes.extend(ns_header("test", "c", true, 0));
    bytes.extend(TERM);
    let events = read_all(&bytes).unwrap();
    assert_eq!(
        events,
        vec![Owned::End(
            Namespace::new("test", "c"),
            NamespaceSummary::default()
        )]
    );
}

#[test]
fn data_after_an_eof_header_is_refused() {
    let mut bytes = prelude_bytes("7.0.14", &[("test", "c")]);
    bytes.extend(ns_header("test", "c", true, 0));
    bytes.extend(small_doc(1));
    let mut reader = ArchiveReader::new(&bytes[..]).unwrap();
    assert!(matches!(
        reader.next_event().unwrap(),
        Some(Event::NamespaceEnd { .. })
    ));
    let e = reader.next_event().unwrap_err();
    assert!(
        e.to_string()
            .contains("collection data without a collection header"),
        "{e}"
    );
    let again = reader.next_event().unwrap_err();
    assert!(
        matches!(again, ArchiveError::Poisoned { .. }),
        "errors are sticky"
    );
}

#[test]
fn namespace_headers_are_decoded_strictly() {
    let variants = [
        bson(&doc! { "db": "test", "collection": "c", "EOF": false, "CRC": 0i32 }),
        bson(&doc! { "db": "test", "collection": "c", "EOF": false, "CRC": 0i64, "extra": 1i32 }),
        bson(&doc! { "db": "test", "collection": "", "EOF": false, "CRC": 0i64 }),
        bson(&doc! { "db": 1i32, "collection": "c", "EOF": false, "CRC": 0i64 }),
        bson(&doc! { "db": "test", "collection": "c", "EOF": 0i32, "CRC": 0i64 }),
        // Valid framing, broken element inside: a string length running past the document.
        vec![14, 0, 0, 0, 0x02, b'd', b'b', 0, 0x7F, 0, 0, 0, b'x', 0],
    ];
    for header in variants {
        let mut bytes = prelude_bytes("7.0.14", &[("test", "c")]);
        bytes.extend(header);
        let e = err(&bytes);
        assert!(matches!(e, ArchiveError::BadNamespaceHeader { .. }), "{e}");
    }
}

#[test]
fn prelude_without_terminator_or_header_fails() {
    let mut bytes = MAGIC.to_vec();
    bytes.extend(TERM);
    assert!(matches!(
        err(&bytes),
        ArchiveError::ConsecutiveTerminators { offset: 4 }
    ));
    let bytes = prelude_bytes("7.0.14", &[("test", "c")]);
    let cut = &bytes[..bytes.len() - 4];
    assert!(matches!(err(cut), ArchiveError::Truncated { .. }));
}

#[test]
fn duplicate_prelude_entries_are_refused() {
    let bytes = prelude_bytes("7.0.14", &[("test", "c"), ("test", "c")]);
    assert!(matches!(
        err(&bytes),
        ArchiveError::DuplicatePreludeEntry { .. }
    ));
}

#[test]
fn a_huge_claimed_length_on_short_input_fails_fast() {
    let mut bytes = prelude_bytes("7.0.14", &[("test", "c")]);
    bytes.extend(ns_header("test", "c", false, 0));
    bytes.extend((MAX_DOCUMENT_SIZE as u32).to_le_bytes());
    bytes.extend([1, 2, 3]);
    assert!(matches!(err(&bytes), ArchiveError::Truncated { .. }));
}

#[test]
fn io_errors_carry_the_offset() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let bytes = worked_example_bytes();
            let start = 451 - self.0;
            let n = buf.len().min(self.0).min(3);
            buf[..n].copy_from_slice(&bytes[start..start + n]);
            self.0 -= n;
            Ok(n)
        }
    }
    // Serve the first 200 bytes, then fail.
    let e = ArchiveReader::new(Failing(451)).map(|_| ()).err();
    assert!(e.is_none(), "full input reads fine");
    struct Cut(Failing, usize);
    impl std::io::Read for Cut {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.1);
            let n = self.0.read(&mut buf[..n])?;
            self.1 -= n;
            Ok(n)
        }
    }
    let e = ArchiveReader::new(Cut(Failing(451), 200)).unwrap_err();
    assert!(matches!(e, ArchiveError::Io { offset: 200, .. }), "{e}");
}

// ---------------------------------------------------------------------------------------
// Writer rules.

/// Splits an archive after its prelude into frames: `H(ns, eof)`, `D(len)` or `T`.
fn frames(bytes: &[u8]) -> Vec<String> {
    let reader = ArchiveReader::new(bytes).unwrap();
    let prelude_end = {
        let mut pos = 4;
        loop {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
            pos += 4;
            if len == u32::MAX {
                break pos;
            }
            pos += len as usize - 4;
        }
    };
    drop(reader);
    let mut out = Vec::new();
    let mut pos = prelude_end;
    let mut in_block = false;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        if len == u32::MAX {
            out.push("T".to_string());
            pos += 4;
            in_block = false;
            continue;
        }
        let raw = &bytes[pos..pos + len as usize];
        if in_block {
            out.push(format!("D{len}"));
        } else {
            let header = bson::Document::from_reader(raw).unwrap();
            let eof = header.get_bool("EOF").unwrap();
            out.push(format!(
                "{}({}.{})",
                if eof { "E" } else { "H" },
                header.get_str("db").unwrap(),
                header.get_str("collection").unwrap()
            ));
            in_block = true;
        }
        pos += len as usize;
    }
    out
}

#[test]
fn interleaving_follows_the_multiplexer() {
    let header = Header::new("7.0.14", "100.8.0");
    let prelude = [
        entry("test", "a", "collection"),
        entry("test", "b", "collection"),
    ];
    let (a, b) = (Namespace::new("test", "a"), Namespace::new("test", "b"));
    let mut w = ArchiveWriter::new(Vec::new(), &header, &prelude).unwrap();
    w.write_documents(&a, &small_doc(1)).unwrap();
    w.write_documents(&a, &small_doc(2)).unwrap();
    w.write_documents(&b, &small_doc(3)).unwrap();
    w.write_documents(&a, &small_doc(4)).unwrap();
    w.finish_namespace(&b).unwrap();
    w.write_documents(&a, &[]).unwrap();
    let sa = w.finish_namespace(&a).unwrap();
    let bytes = w.finish().unwrap();
    assert_eq!(
        frames(&bytes).join(" "),
        "H(test.a) D14 D14 T H(test.b) D14 T H(test.a) D14 T E(test.b) T H(test.a) T E(test.a) T"
    );
    let docs: Vec<u8> = [1, 2, 4].iter().flat_map(|i| small_doc(*i)).collect();
    assert_eq!(sa.crc, crc64(&docs));
    assert_eq!((sa.documents, sa.bytes), (3, 42));
    let events = read_all(&bytes).unwrap();
    assert_eq!(events.len(), 6);
}

#[test]
fn empty_namespaces_get_the_empty_segment() {
    let header = Header::new("7.0.14", "100.8.0");
    let prelude = [entry("test", "v", "view")];
    let v = Namespace::new("test", "v");
    let mut w = ArchiveWriter::new(Vec::new(), &header, &prelude).unwrap();
    let summary = w.finish_namespace(&v).unwrap();
    assert_eq!(summary, NamespaceSummary::default());
    let bytes = w.finish().unwrap();
    assert_eq!(frames(&bytes).join(" "), "H(test.v) T E(test.v) T");
}

#[test]
fn concurrency_bound_is_enforced() {
    let mut header = Header::new("7.0.14", "100.8.0");
    header.concurrent_collections = 2;
    let prelude = [
        entry("test", "a", "collection"),
        entry("test", "b", "collection"),
        entry("test", "c", "collection"),
    ];
    let ns = |c: &str| Namespace::new("test", c);
    let mut w = ArchiveWriter::new(Vec::new(), &header, &prelude).unwrap();
    w.write_documents(&ns("a"), &small_doc(1)).unwrap();
    w.write_documents(&ns("b"), &small_doc(1)).unwrap();
    let e = w.write_documents(&ns("c"), &small_doc(1)).unwrap_err();
    assert!(
        matches!(
            e,
            ArchiveError::TooManyOpenNamespaces {
                open: 2,
                limit: 2,
                ..
            }
        ),
        "{e}"
    );
    // Even an empty namespace occupies a restore worker while it opens.
    let e = w.finish_namespace(&ns("c")).unwrap_err();
    assert!(
        matches!(e, ArchiveError::TooManyOpenNamespaces { .. }),
        "{e}"
    );
    w.finish_namespace(&ns("a")).unwrap();
    w.write_documents(&ns("c"), &small_doc(1)).unwrap();
    w.finish_namespace(&ns("b")).unwrap();
    w.finish_namespace(&ns("c")).unwrap();
    let bytes = w.finish().unwrap();
    assert_eq!(read_all(&bytes).unwrap().len(), 6);
}

#[test]
fn writer_refusals() {
    let header = Header::new("7.0.14", "100.8.0");
    let prelude = [entry("test", "a", "collection"), entry("", "oplog", "")];
    let a = Namespace::new("test", "a");
    let mut w = ArchiveWriter::new(Vec::new(), &header, &prelude).unwrap();

    let e = w
        .write_documents(&Namespace::new("test", "zz"), &small_doc(1))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("test.zz is not in the archive prelude"),
        "{e}"
    );

    let e = w
        .write_documents(&Namespace::oplog(), &small_doc(1))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the oplog must come last: finish test.a before writing the oplog"
    );

    let mut bad = small_doc(1);
    *bad.last_mut().unwrap() = 1;
    let e = w
        .write_documents(&a, &[small_doc(1), bad].concat())
        .unwrap_err();
    assert!(
        matches!(e, ArchiveError::BadDocument { index: 1, .. }),
        "{e}"
    );
    let e = w.write_documents(&a, &[4, 0, 0, 0]).unwrap_err();
    assert!(
        matches!(e, ArchiveError::BadDocument { index: 0, .. }),
        "{e}"
    );
    assert_eq!(
        w.offset(),
        ArchiveWriter::new(Vec::new(), &header, &prelude)
            .unwrap()
            .offset(),
        "refused calls write nothing"
    );

    w.write_documents(&a, &small_doc(1)).unwrap();
    w.finish_namespace(&a).unwrap();
    let e = w.write_documents(&a, &small_doc(2)).unwrap_err();
    assert!(matches!(e, ArchiveError::NamespaceFinished { .. }), "{e}");
    let e = w.finish_namespace(&a).unwrap_err();
    assert!(matches!(e, ArchiveError::NamespaceFinished { .. }), "{e}");

    let e = ArchiveWriter::new(Vec::new(), &header, &prelude)
        .unwrap()
        .finish()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "archive finished before all collections were seen (test.a, .oplog); call finish_namespace for each"
    );

    w.write_documents(&Namespace::oplog(), &small_doc(1))
        .unwrap();
    w.finish_namespace(&Namespace::oplog()).unwrap();
    let bytes = w.finish().unwrap();
    assert_eq!(read_all(&bytes).unwrap().len(), 4);
}

#[test]
fn header_and_prelude_validation() {
    let ok = Header::new("7.0.14", "100.8.0");
    let bad_version = Header::new("unknown", "100.8.0");
    assert!(matches!(
        ArchiveWriter::new(Vec::new(), &bad_version, &[]).unwrap_err(),
        ArchiveError::InvalidHeader { .. }
    ));
    let zero = Header {
        concurrent_collections: 0,
        ..ok.clone()
    };
    assert!(ArchiveWriter::new(Vec::new(), &zero, &[]).is_err());
    for bad in [
        entry("a.b", "c", "collection"),
        entry("", "c", "collection"),
        entry("db", "", "collection"),
    ] {
        let e = ArchiveWriter::new(Vec::new(), &ok, &[bad]).unwrap_err();
        assert!(matches!(e, ArchiveError::InvalidNamespace { .. }), "{e}");
    }
    let dup = [
        entry("test", "c", "collection"),
        entry("test", "c", "collection"),
    ];
    assert!(matches!(
        ArchiveWriter::new(Vec::new(), &ok, &dup).unwrap_err(),
        ArchiveError::DuplicatePreludeEntry { .. }
    ));
    let bad_meta = PreludeEntry {
        metadata: "{\"a\":".into(),
        ..entry("test", "ixtest", "collection")
    };
    let e = ArchiveWriter::new(Vec::new(), &ok, &[bad_meta]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("malformed metadata JSON for test.ixtest"),
        "{e}"
    );
}

#[test]
fn io_failure_poisons_the_writer() {
    struct Limited(usize);
    impl std::io::Write for Limited {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 < buf.len() {
                return Err(std::io::Error::other("disk full"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let header = Header::new("7.0.14", "100.8.0");
    let prelude = [entry("test", "a", "collection")];
    let mut w = ArchiveWriter::new(Limited(250), &header, &prelude).unwrap();
    let a = Namespace::new("test", "a");
    let e = w.write_documents(&a, &small_doc(1)).unwrap_err();
    assert!(matches!(e, ArchiveError::Io { .. }), "{e}");
    assert!(matches!(
        w.write_documents(&a, &small_doc(1)),
        Err(ArchiveError::Poisoned { .. })
    ));
    assert!(matches!(w.finish(), Err(ArchiveError::Poisoned { .. })));
}

#[test]
fn timeseries_data_travels_under_buckets_below_8_3() {
    let prelude = [entry("m", "weather", "timeseries")];
    let logical = Namespace::new("m", "weather");
    let buckets = Namespace::new("m", "system.buckets.weather");
    for (server, data_name) in [("7.0.14", &buckets), ("8.3.0", &logical)] {
        let header = Header::new(server, "100.16.0");
        let mut w = ArchiveWriter::new(Vec::new(), &header, &prelude).unwrap();
        w.write_documents(&logical, &small_doc(1)).unwrap();
        if server == "7.0.14" {
            // The bucket name is accepted as well and is the same namespace.
            w.write_documents(&buckets, &small_doc(2)).unwrap();
        }
        w.finish_namespace(&logical).unwrap();
        let bytes = w.finish().unwrap();
        let f = frames(&bytes);
        assert_eq!(f[0], format!("H({data_name})"));
        let mut reader = ArchiveReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.prelude()[0].collection, "weather");
        assert_eq!(
            reader.prelude()[0].data_namespace(reader.header()),
            *data_name
        );
        let events = drain(&mut reader).unwrap();
        assert!(matches!(&events[0], Owned::Doc(ns, _) if ns == data_name));
    }
}

#[test]
fn legacy_tool_versions_omit_the_prelude_type() {
    let header = Header::new("3.4.3", "r3.4.3");
    let mut w = ArchiveWriter::new(Vec::new(), &header, &[entry("test", "c", "")]).unwrap();
    w.finish_namespace(&Namespace::new("test", "c")).unwrap();
    let bytes = w.finish().unwrap();
    let reader = ArchiveReader::new(&bytes[..]).unwrap();
    assert_eq!(reader.prelude()[0].kind, "");
    let raw = String::from_utf8_lossy(&bytes);
    assert!(!raw.contains("type"));
}

// ---------------------------------------------------------------------------------------
// Randomised round trips: a deterministic generator drives the writer through legal
// interleavings; reading back must give exactly the events written.

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn random_doc(rng: &mut XorShift, id: i64) -> Vec<u8> {
    let text: String = (0..rng.below(40))
        .map(|_| char::from(b'a' + rng.below(26) as u8))
        .collect();
    let mut doc = doc! { "_id": id, "s": text };
    if rng.below(3) == 0 {
        doc.insert(
            "nested",
            doc! { "f": rng.next() as f64 / 7.0, "arr": [1i32, "x"] },
        );
    }
    bson(&doc)
}

#[test]
fn random_interleavings_round_trip() {
    for seed in 1..=300u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let count = 1 + rng.below(6);
        let mut prelude: Vec<PreludeEntry> = (0..count)
            .map(|i| {
                let kind = ["collection", "view", "timeseries"][rng.below(3)];
                entry(&format!("db{}", rng.below(3)), &format!("c{i}"), kind)
            })
            .collect();
        let with_oplog = rng.below(2) == 0;
        if with_oplog {
            prelude.push(entry("", "oplog", ""));
        }
        let mut header = Header::new(["7.0.14", "8.3.1"][rng.below(2)], "100.8.0");
        header.concurrent_collections = 1 + rng.below(4) as i32;
        let names: Vec<Namespace> = prelude.iter().map(|e| e.data_namespace(&header)).collect();

        let mut w = ArchiveWriter::new(Vec::new(), &header, &prelude).unwrap();
        let mut expected = Vec::new();
        let mut finished = vec![false; names.len()];
        let mut started = vec![false; names.len()];
        let mut next_id = 0i64;
        let regular = if with_oplog {
            names.len() - 1
        } else {
            names.len()
        };
        loop {
            let open = (0..regular).filter(|&i| started[i] && !finished[i]).count();
            let candidates: Vec<usize> = (0..regular)
                .filter(|&i| {
                    !finished[i] && (started[i] || open < header.concurrent_collections as usize)
                })
                .collect();
            if candidates.is_empty() {
                break;
            }
            let i = candidates[rng.below(candidates.len())];
            let ns = &names[i];
            if rng.below(4) == 0 {
                let summary = w.finish_namespace(ns).unwrap();
                finished[i] = true;
                expected.push(Owned::End(ns.clone(), summary));
            } else {
                let mut batch = Vec::new();
                for _ in 0..rng.below(4) {
                    let doc = random_doc(&mut rng, next_id);
                    next_id += 1;
                    expected.push(Owned::Doc(ns.clone(), doc.clone()));
                    batch.extend(doc);
                }
                w.write_documents(ns, &batch).unwrap();
                started[i] = true;
            }
        }
        if with_oplog {
            let ns = names.last().unwrap();
            let mut batch = Vec::new();
            for _ in 0..rng.below(5) {
                let doc = random_doc(&mut rng, next_id);
                next_id += 1;
                expected.push(Owned::Doc(ns.clone(), doc.clone()));
                batch.extend(doc);
            }
            w.write_documents(ns, &batch).unwrap();
            let summary = w.finish_namespace(ns).unwrap();
            expected.push(Owned::End(ns.clone(), summary));
        }
        let bytes = w.finish().unwrap();
        let got = read_all(&bytes).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(got, expected, "seed {seed}");
        // The summaries are the CRC of exactly the documents read for each namespace.
        for (k, ns) in names.iter().enumerate() {
            let docs: Vec<u8> = got
                .iter()
                .filter_map(|e| match e {
                    Owned::Doc(n, raw) if n == ns => Some(raw.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            let end = got.iter().find_map(|e| match e {
                Owned::End(n, s) if n == ns => Some(*s),
                _ => None,
            });
            assert_eq!(end.map(|s| s.crc), Some(crc64(&docs)), "seed {seed} ns {k}");
        }
    }
}

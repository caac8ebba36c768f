//! Archives written by real mongodump releases: read, checked, and re-written byte for byte.

#![allow(clippy::unwrap_used)]

use std::io::Read;

mod common;

use common::{fixture, fixtures_present};
use nightdump_archive::{
    crc64, parse_extjson, to_canonical_extjson, ArchiveError, ArchiveReader, ArchiveWriter,
    CollectionMetadata, Event, Header, Namespace, NamespaceSummary, PreludeEntry,
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Doc(Namespace, Vec<u8>),
    End(Namespace, NamespaceSummary),
}

fn read_events(bytes: &[u8]) -> (Header, Vec<PreludeEntry>, Vec<Owned>) {
    let mut reader = ArchiveReader::new(bytes).unwrap();
    let mut events = Vec::new();
    while let Some(event) = reader.next_event().unwrap() {
        events.push(match event {
            Event::Document { ns, raw } => Owned::Doc(ns.clone(), raw.to_vec()),
            Event::NamespaceEnd { ns, summary } => Owned::End(ns, summary),
        });
    }
    assert_eq!(reader.offset(), bytes.len() as u64);
    (reader.header().clone(), reader.prelude().to_vec(), events)
}

/// Re-writes an archive from its prelude and events, one `write_documents` call per document,
/// and returns the bytes with the summaries the writer reported.
fn rewrite(header: &Header, prelude: &[PreludeEntry], events: &[Owned]) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Vec::new(), header, prelude).unwrap();
    for event in events {
        match event {
            Owned::Doc(ns, raw) => writer.write_documents(ns, raw).unwrap(),
            Owned::End(ns, read_summary) => {
                let written = writer.finish_namespace(ns).unwrap();
                assert_eq!(&written, read_summary, "{ns}");
            }
        }
    }
    writer.finish().unwrap()
}

fn docs_of<'a>(events: &'a [Owned], ns: &'a Namespace) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
    events.iter().filter_map(move |e| match e {
        Owned::Doc(n, raw) if n == ns => Some(raw),
        _ => None,
    })
}

fn end_of(events: &[Owned], ns: &Namespace) -> NamespaceSummary {
    events
        .iter()
        .find_map(|e| match e {
            Owned::End(n, s) if n == ns => Some(*s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no EOF for {ns}"))
}

#[test]
fn test_bar_archive_from_tools_r3_4_3() {
    if !fixtures_present("test_bar_archive_from_tools_r3_4_3") {
        return;
    }
    let bytes = fixture("test.bar.archive");
    let (header, prelude, events) = read_events(&bytes);
    assert_eq!(header.tool_version, "r3.4.3");
    assert_eq!(header.server_version, "3.4.3");
    assert_eq!(header.concurrent_collections, 4);
    assert_eq!(prelude.len(), 2);
    assert!(
        prelude.iter().all(|e| e.kind.is_empty()),
        "r3.4.3 wrote no type"
    );

    let bar = Namespace::new("test", "bar");
    let version = Namespace::new("admin", "system.version");
    let bar_end = end_of(&events, &bar);
    let version_end = end_of(&events, &version);
    assert_eq!(bar_end.crc as i64, -7_824_457_949_569_593_127);
    assert_eq!(version_end.crc as i64, -682_997_726_120_892_866);
    // Recomputed from the document bytes, independently of the reader's running CRC.
    let bar_docs: Vec<u8> = docs_of(&events, &bar).flatten().copied().collect();
    assert_eq!(bar_docs.len(), 35);
    assert_eq!(crc64(&bar_docs), bar_end.crc);
    let version_docs: Vec<u8> = docs_of(&events, &version).flatten().copied().collect();
    assert_eq!(crc64(&version_docs), version_end.crc);

    // Legacy relaxed metadata with index `ns` and a $numberDecimal index version.
    let meta = CollectionMetadata::parse(&prelude[1].metadata).unwrap();
    assert_eq!(
        meta.indexes[1].get_str("name").unwrap(),
        "incompatible_with_version_32"
    );
    assert_eq!(
        meta.indexes[0].get_str("ns").unwrap(),
        "admin.system.version"
    );

    assert_eq!(rewrite(&header, &prelude, &events), bytes);
}

#[test]
fn dump_with_oplog_from_tools_r4_1_3() {
    if !fixtures_present("dump_with_oplog_from_tools_r4_1_3") {
        return;
    }
    let bytes = fixture("dump-w-oplog.archive");
    let (header, prelude, events) = read_events(&bytes);
    assert_eq!(header.server_version, "4.0.2");
    let foo = Namespace::new("test", "foo");
    assert_eq!(docs_of(&events, &foo).count(), 25);
    assert_eq!(end_of(&events, &foo).documents, 25);
    assert_eq!(docs_of(&events, &Namespace::oplog()).count(), 18);
    assert_eq!(end_of(&events, &Namespace::oplog()).documents, 18);
    assert_eq!(
        docs_of(&events, &Namespace::new("admin", "system.version")).count(),
        1
    );

    let entry = prelude.iter().find(|e| e.collection == "foo").unwrap();
    let meta = CollectionMetadata::parse(&entry.metadata).unwrap();
    let uuid = meta.uuid.as_deref().unwrap();
    assert_eq!(uuid.len(), 32);
    assert!(uuid
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let oplog_entry = prelude.iter().find(|e| e.db.is_empty()).unwrap();
    assert_eq!(
        (
            oplog_entry.collection.as_str(),
            oplog_entry.metadata.as_str()
        ),
        ("oplog", "")
    );

    // The oplog is the last namespace in the stream.
    assert!(matches!(events.last(), Some(Owned::End(ns, _)) if ns.is_oplog()));
    // Every oplog entry is a real op on a known namespace.
    for raw in docs_of(&events, &Namespace::oplog()) {
        let op = bson::Document::from_reader(&raw[..]).unwrap();
        assert!(op.get_timestamp("ts").is_ok());
        assert_eq!(op.get_str("op").unwrap(), "i");
    }

    assert_eq!(rewrite(&header, &prelude, &events), bytes);
}

/// The reader parses every prelude entry's metadata in `ArchiveReader::new`, so a corrupt
/// entry stops the archive before a single document is handed out; mongorestore likewise
/// restores nothing from this archive.
#[test]
fn bad_format_archive_fails_before_any_document() {
    if !fixtures_present("bad_format_archive_fails_before_any_document") {
        return;
    }
    let bytes = fixture("bad-format.archive");
    let e = ArchiveReader::new(&bytes[..]).unwrap_err();
    assert!(
        matches!(&e, ArchiveError::MalformedMetadata { ns, .. } if ns == "test.ixtest"),
        "{e}"
    );
    let text = e.to_string();
    assert_eq!(
        text,
        "malformed metadata JSON for test.ixtest: expected `:` at line 1 column 151"
    );
    assert!(!text.contains('\n'));
}

#[test]
fn bad_format_archive_framing_is_otherwise_sound() {
    if !fixtures_present("bad_format_archive_framing_is_otherwise_sound") {
        return;
    }
    // With the metadata set aside the framing reads cleanly: the failure above is the
    // metadata alone. Rebuild the archive with that entry's metadata emptied.
    let bytes = fixture("bad-format.archive");
    let start = bytes
        .windows(10)
        .position(|w| w == b"{\"options\"")
        .unwrap();
    let len_at = start - 4;
    let old_len = u32::from_le_bytes(bytes[len_at..start].try_into().unwrap()) as usize;
    let doc_start = 106;
    let doc_len = u32::from_le_bytes(bytes[doc_start..doc_start + 4].try_into().unwrap()) as usize;
    let mut patched = bytes[..len_at].to_vec();
    patched.extend(1u32.to_le_bytes());
    patched.push(0);
    patched.extend(&bytes[start + old_len - 1 + 1..]);
    let new_len = (doc_len - (old_len - 1)) as u32;
    patched[doc_start..doc_start + 4].copy_from_slice(&new_len.to_le_bytes());
    let (_, prelude, events) = read_events(&patched);
    assert_eq!(prelude[0].metadata, "");
    assert_eq!(
        events,
        vec![Owned::End(
            Namespace::new("test", "ixtest"),
            NamespaceSummary::default()
        )]
    );
}

fn gunzip(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&fixture(name)[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn prelude_gzip_metadata_round_trips_byte_for_byte() {
    if !fixtures_present("prelude_gzip_metadata_round_trips_byte_for_byte") {
        return;
    }
    let text = String::from_utf8(gunzip("prelude_gzip/test/foo.metadata.json.gz")).unwrap();
    let doc = parse_extjson(&text).unwrap();
    assert_eq!(to_canonical_extjson(&doc), text);

    let meta = CollectionMetadata::parse(&text).unwrap();
    assert_eq!(
        meta.uuid.as_deref(),
        Some("47e9795dfa3049f6961a04aca38c4e8e")
    );
    assert_eq!(meta.indexes.len(), 1);
    assert_eq!(meta.indexes[0].get_str("ns").unwrap(), "test.foo");
    // The typed form writes what current mongodump writes: no empty options, and no
    // collectionName because this file never had one.
    assert_eq!(
        meta.to_extjson(),
        r#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_","ns":"test.foo"}],"uuid":"47e9795dfa3049f6961a04aca38c4e8e"}"#
    );
}

#[test]
fn prelude_gzip_directory_dump_converts_to_an_archive() {
    if !fixtures_present("prelude_gzip_directory_dump_converts_to_an_archive") {
        return;
    }
    let metadata = String::from_utf8(gunzip("prelude_gzip/test/foo.metadata.json.gz")).unwrap();
    let data = gunzip("prelude_gzip/test/foo.bson.gz");
    let prelude_json: serde_json::Value =
        serde_json::from_slice(&gunzip("prelude_gzip/prelude.json.gz")).unwrap();
    let server = prelude_json["ServerVersion"].as_str().unwrap();
    assert_eq!(server, "7.0.16");

    let header = Header::new(server, "100.8.0");
    let prelude = [PreludeEntry {
        db: "test".into(),
        collection: "foo".into(),
        metadata,
        size: 0,
        kind: "collection".into(),
    }];
    let foo = Namespace::new("test", "foo");
    let mut writer = ArchiveWriter::new(Vec::new(), &header, &prelude).unwrap();
    writer.write_documents(&foo, &data).unwrap();
    let summary = writer.finish_namespace(&foo).unwrap();
    assert_eq!(summary.documents, 1);
    assert_eq!(summary.crc, crc64(&data));
    let bytes = writer.finish().unwrap();
    let (_, read_prelude, events) = read_events(&bytes);
    assert_eq!(read_prelude, prelude);
    assert_eq!(
        events,
        vec![Owned::Doc(foo.clone(), data), Owned::End(foo, summary)]
    );
}

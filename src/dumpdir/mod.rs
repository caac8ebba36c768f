//! mongodump directory dumps (`mongodump --out DIR`, plain or `--gzip`), in a directory or
//! under an S3 prefix: what they hold, read as the archive they are equivalent to, so that
//! a restore of one takes exactly the path of an archive restore (filters, renames, drop,
//! dry run, users, oplog replay, report and exit codes); and their verification.
//!
//! The layout (see mongodump's own): `<db>/<coll>.bson[.gz]` with
//! `<db>/<coll>.metadata.json[.gz]`, collection names percent-encoded as Go's
//! `url.QueryEscape` writes them, views with metadata only, time-series data in
//! `system.buckets.<name>` beside the logical name's metadata, `oplog.bson` at the root
//! (gzip inside when dumped with `--gzip`, whatever its name) and `prelude.json[.gz]`.

mod stream;
mod verify;

use std::collections::BTreeMap;
use std::io::Read;

use nightdump_archive::{CollectionMetadata, Header, Namespace, PreludeEntry};

use crate::error::{Error, Result};
use crate::store::Store;

pub use stream::archive_reader;
pub use verify::{damage, verify, DirVerifyReport, FileCheck};

/// What a dump directory holds, from its file names and metadata files (no data read).
#[derive(Debug, Clone)]
pub struct DumpLayout {
    /// Where it is, for messages.
    pub name: String,
    pub header: Header,
    pub collections: Vec<DumpCollection>,
    /// `oplog.bson`, when dumped with `--oplog`.
    pub oplog: Option<DumpFile>,
    /// Files that are not part of a dump, left alone.
    pub ignored: Vec<String>,
}

/// One collection, view or time-series collection of the dump.
#[derive(Debug, Clone)]
pub struct DumpCollection {
    pub entry: PreludeEntry,
    pub metadata: Option<CollectionMetadata>,
    /// The metadata file, when there is one.
    pub metadata_file: Option<DumpFile>,
    /// The data file (`system.buckets.<name>` for time-series); none for views.
    pub data: Option<DumpFile>,
}

/// A file of the dump: its key relative to the dump's root, and whether it is gzipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpFile {
    pub key: String,
    pub size: u64,
    pub gzip: bool,
}

impl DumpCollection {
    pub fn namespace(&self) -> Namespace {
        self.entry.namespace()
    }
}

/// Files of one database directory, by unescaped collection name.
#[derive(Default)]
struct DbFiles {
    metadata: BTreeMap<String, DumpFile>,
    data: BTreeMap<String, DumpFile>,
}

/// Reads the layout of the dump at `store`'s root: lists it, reads `prelude.json` and every
/// metadata file. A dump with no collection at all is refused with the fix.
pub async fn scan(store: &Store) -> Result<DumpLayout> {
    let name = store.destination().to_string();
    let objects = store.list("").await?;
    let mut dbs: BTreeMap<String, DbFiles> = BTreeMap::new();
    let mut prelude = None;
    let mut oplog = None;
    let mut ignored = Vec::new();
    for object in objects {
        let key = object.key;
        let parts: Vec<&str> = key.split('/').collect();
        let file = |gzip| DumpFile {
            key: key.clone(),
            size: object.size,
            gzip,
        };
        match parts[..] {
            ["prelude.json"] => prelude = Some(file(false)),
            ["prelude.json.gz"] => prelude = Some(file(true)),
            // Gzipped inside with --gzip, under the same name: sniffed when read.
            ["oplog.bson"] => oplog = Some(file(false)),
            [db, base] => match classify(base) {
                Some((coll, kind, gzip)) => {
                    let slot = dbs.entry(db.to_owned()).or_default();
                    let map = match kind {
                        Kind::Metadata => &mut slot.metadata,
                        Kind::Data => &mut slot.data,
                    };
                    map.insert(unescape(coll)?, file(gzip));
                }
                None if base == "prelude.json" || base == "prelude.json.gz" => {
                    prelude = Some(file(base.ends_with(".gz")));
                }
                None => ignored.push(key.clone()),
            },
            _ => ignored.push(key.clone()),
        }
    }
    let header = match &prelude {
        Some(file) => read_prelude(store, file).await?,
        // Before mongodump 100.12 there is no prelude.json: the version is unknown, which
        // also means time-series data sits in system.buckets, as it did then.
        None => Header::new("0.0.0", ""),
    };
    let mut collections = Vec::new();
    for (db, files) in dbs {
        collections.extend(collections_of(store, &header, &db, files).await?);
    }
    if collections.is_empty() {
        return Err(Error::invalid(format!(
            "{name} holds no mongodump collection files (<db>/<collection>.bson[.gz] with .metadata.json[.gz]): point --dir at the folder mongodump --out wrote"
        )));
    }
    Ok(DumpLayout {
        name,
        header,
        collections,
        oplog,
        ignored,
    })
}

async fn collections_of(
    store: &Store,
    header: &Header,
    db: &str,
    mut files: DbFiles,
) -> Result<Vec<DumpCollection>> {
    let mut out = Vec::new();
    let metadata_files = std::mem::take(&mut files.metadata);
    for (file_name, file) in metadata_files {
        let text = read_text(store, &file).await?;
        let metadata = if text.trim().is_empty() {
            None
        } else {
            Some(
                CollectionMetadata::parse(&text).map_err(|e| Error::Damaged {
                    what: file.key.clone(),
                    detail: e.to_string(),
                })?,
            )
        };
        // Names too long for a file are cut and end in a hash; the metadata has the real one.
        let collection = match &metadata {
            Some(m) if !m.collection_name.is_empty() && file_name.len() >= 200 => {
                m.collection_name.clone()
            }
            _ => file_name.clone(),
        };
        let kind = match &metadata {
            Some(m) if m.is_timeseries() => "timeseries",
            Some(m) if m.is_view() => "view",
            _ => "collection",
        };
        let entry = PreludeEntry {
            db: db.to_owned(),
            collection: collection.clone(),
            // The file's own text, as mongodump puts it in an archive's prelude.
            metadata: if metadata.is_some() {
                text.trim().to_owned()
            } else {
                String::new()
            },
            size: 0,
            kind: kind.to_owned(),
        };
        let data_name = if kind == "timeseries" && header.timeseries_in_buckets() {
            format!("system.buckets.{file_name}")
        } else {
            file_name
        };
        let data = files.data.remove(&data_name);
        out.push(DumpCollection {
            entry,
            metadata,
            metadata_file: Some(file),
            data,
        });
    }
    // Data without metadata (a dump whose metadata files were lost, or `$admin.system.*`
    // of --dumpDbUsersAndRoles): restored as plain collections, as mongorestore does.
    for (collection, file) in files.data {
        out.push(DumpCollection {
            entry: PreludeEntry {
                db: db.to_owned(),
                collection,
                metadata: String::new(),
                size: 0,
                kind: "collection".into(),
            },
            metadata: None,
            metadata_file: None,
            data: Some(file),
        });
    }
    Ok(out)
}

enum Kind {
    Metadata,
    Data,
}

/// `(escaped collection name, kind, gzipped)` of a file in a database directory.
fn classify(base: &str) -> Option<(&str, Kind, bool)> {
    let (stem, gzip) = match base.strip_suffix(".gz") {
        Some(stem) => (stem, true),
        None => (base, false),
    };
    if let Some(coll) = stem.strip_suffix(".metadata.json") {
        return Some((coll, Kind::Metadata, gzip));
    }
    // `.bin` is the legacy data suffix mongorestore still accepts.
    let coll = stem
        .strip_suffix(".bson")
        .or_else(|| stem.strip_suffix(".bin"))?;
    Some((coll, Kind::Data, gzip))
}

/// Go's `url.QueryUnescape`: `%XX` is a byte, `+` a space.
fn unescape(escaped: &str) -> Result<String> {
    let bad = || {
        Error::invalid(format!(
            "'{escaped}' is not a percent-encoded collection file name as mongodump writes them: rename the file"
        ))
    };
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = escaped.get(i + 1..i + 3).ok_or_else(bad)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Opens a dump file for reading, gunzipped when it is gzip (by suffix or, for
/// `oplog.bson`, by its first bytes). Blocks: call it from a thread outside the runtime.
pub(crate) fn open_file(
    store: &Store,
    handle: &tokio::runtime::Handle,
    file: &DumpFile,
) -> std::io::Result<Box<dyn Read + Send>> {
    use std::io::BufRead;
    let reader = handle
        .block_on(store.open_read(&file.key))
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::other(format!("{} vanished while it was read", file.key)))?;
    let bridge = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle.clone());
    let mut buffered = std::io::BufReader::with_capacity(256 * 1024, bridge);
    let gzip = file.gzip || buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    })
}

async fn read_text(store: &Store, file: &DumpFile) -> Result<String> {
    let bytes = store
        .get(&file.key)
        .await?
        .ok_or_else(|| Error::invalid(format!("{} vanished while it was read", file.key)))?;
    let mut text = String::new();
    let read = if file.gzip {
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut text)
    } else {
        (&bytes[..]).read_to_string(&mut text)
    };
    read.map_err(|e| Error::Damaged {
        what: file.key.clone(),
        detail: format!("not readable text: {e}"),
    })?;
    Ok(text)
}

async fn read_prelude(store: &Store, file: &DumpFile) -> Result<Header> {
    let text = read_text(store, file).await?;
    let damaged = |detail: String| Error::Damaged {
        what: file.key.clone(),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| damaged(format!("not JSON: {e}")))?;
    let server = value
        .get("ServerVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let tool = value
        .get("ToolVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    // "unknown" is tolerated, as mongorestore does; any other value must be a version.
    let server = if server.is_empty() || server == "unknown" {
        "0.0.0"
    } else {
        server
    };
    let header = Header::new(server, tool);
    if header.server_version_triple().is_none() {
        return Err(damaged(format!(
            "ServerVersion {server:?} is not a version"
        )));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_unescape_as_go_query_unescape() {
        assert_eq!(unescape("caf%C3%A9").unwrap(), "café");
        assert_eq!(unescape("customer+notes").unwrap(), "customer notes");
        assert_eq!(unescape("a%2Bb%24c").unwrap(), "a+b$c");
        assert_eq!(
            unescape("orders.archive.2024").unwrap(),
            "orders.archive.2024"
        );
        assert!(unescape("bad%G1").is_err());
        assert!(unescape("cut%C").is_err());
        assert!(unescape("%FF").is_err());
    }

    #[test]
    fn files_are_classified_by_suffix() {
        assert!(matches!(
            classify("a.b.metadata.json.gz"),
            Some(("a.b", Kind::Metadata, true))
        ));
        assert!(matches!(classify("c.bson"), Some(("c", Kind::Data, false))));
        assert!(matches!(classify("c.bin"), Some(("c", Kind::Data, false))));
        assert!(classify("notes.txt").is_none());
    }
}

//! The prelude: the archive header document and one collection-metadata document per
//! namespace the archive carries.

use bson::raw::RawBsonRef;

use crate::bsonbuf::{elements, type_name, DocBuilder};
use crate::namespace::Namespace;

/// The archive header, the first document after the magic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// How many namespaces may be open at once; mongorestore uses at least this many workers.
    pub concurrent_collections: i32,
    /// Archive format version; always `"0.1"`.
    pub version: String,
    /// The source server's `x.y.z` version; current mongorestore refuses anything else.
    pub server_version: String,
    pub tool_version: String,
}

/// The archive format version every mongodump writes.
pub const FORMAT_VERSION: &str = "0.1";

impl Header {
    /// A header with mongodump's defaults: four concurrent collections, format `0.1`.
    pub fn new(server_version: impl Into<String>, tool_version: impl Into<String>) -> Self {
        Self {
            concurrent_collections: 4,
            version: FORMAT_VERSION.into(),
            server_version: server_version.into(),
            tool_version: tool_version.into(),
        }
    }

    /// `major.minor.patch` of `server_version`, after dropping a `-…` or `+…` suffix, as
    /// mongorestore parses it.
    pub fn server_version_triple(&self) -> Option<(u32, u32, u32)> {
        parse_version(&self.server_version)
    }

    /// Whether time-series data travels under `system.buckets.<name>` (sources below 8.3).
    /// An unparseable version is treated as old, which is what archives of that age are.
    pub fn timeseries_in_buckets(&self) -> bool {
        match self.server_version_triple() {
            Some((major, minor, _)) => (major, minor) < (8, 3),
            None => true,
        }
    }

    /// Tools before 100.4.0 (versioned `r3.x`, `r4.x`) wrote prelude entries without `type`.
    pub(crate) fn legacy_tools(&self) -> bool {
        let mut chars = self.tool_version.chars();
        chars.next() == Some('r') && chars.next().is_some_and(|c| c.is_ascii_digit())
    }

    pub(crate) fn encode(&self, buf: &mut Vec<u8>) -> Result<usize, usize> {
        let mut doc = DocBuilder::new(buf);
        doc.int32("concurrent_collections", self.concurrent_collections);
        doc.string("version", &self.version);
        doc.string("server_version", &self.server_version);
        doc.string("tool_version", &self.tool_version);
        doc.finish()
    }

    /// Decodes leniently, as Go's struct decoding does: unknown fields are ignored and missing
    /// ones take their zero value; a field of the wrong type is an error.
    pub(crate) fn decode(raw: &[u8]) -> Result<Self, String> {
        let mut header = Header {
            concurrent_collections: 0,
            version: String::new(),
            server_version: String::new(),
            tool_version: String::new(),
        };
        for item in elements(raw)? {
            let (key, value) = item?;
            match key {
                "concurrent_collections" => header.concurrent_collections = int(key, &value)?,
                "version" => header.version = string(key, &value)?,
                "server_version" => header.server_version = string(key, &value)?,
                "tool_version" => header.tool_version = string(key, &value)?,
                _ => {}
            }
        }
        Ok(header)
    }
}

pub(crate) fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.');
    let mut next = || -> Option<u32> {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let triple = (next()?, next()?, next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(triple)
}

/// One collection-metadata document of the prelude.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreludeEntry {
    /// Database name; `""` for the oplog.
    pub db: String,
    /// Collection name; the logical name for time-series, `"oplog"` for the oplog.
    pub collection: String,
    /// The collection's metadata.json text (canonical Extended JSON); `""` when there is none.
    pub metadata: String,
    /// Always 0 from mongodump; read as int32 or int64.
    pub size: i64,
    /// `"collection"`, `"view"`, `"timeseries"`, or `""` (the oplog, and archives whose tools
    /// predate the field).
    pub kind: String,
}

impl PreludeEntry {
    pub fn namespace(&self) -> Namespace {
        Namespace::new(self.db.clone(), self.collection.clone())
    }

    pub fn is_timeseries(&self) -> bool {
        self.kind == "timeseries"
    }

    /// The namespace the entry's data blocks carry: `system.buckets.<name>` for time-series
    /// from servers below 8.3, the entry's own namespace otherwise.
    pub fn data_namespace(&self, header: &Header) -> Namespace {
        let ns = self.namespace();
        if self.is_timeseries() && header.timeseries_in_buckets() {
            ns.buckets()
        } else {
            ns
        }
    }

    pub(crate) fn encode(&self, buf: &mut Vec<u8>, with_type: bool) -> Result<usize, usize> {
        let mut doc = DocBuilder::new(buf);
        doc.string("db", &self.db);
        doc.string("collection", &self.collection);
        doc.string("metadata", &self.metadata);
        // Go encodes its `int` as int32 whenever the value fits.
        match i32::try_from(self.size) {
            Ok(size) => doc.int32("size", size),
            Err(_) => doc.int64("size", self.size),
        }
        if with_type {
            doc.string("type", &self.kind);
        }
        doc.finish()
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Self, String> {
        let mut entry = PreludeEntry::default();
        for item in elements(raw)? {
            let (key, value) = item?;
            match key {
                "db" => entry.db = string(key, &value)?,
                "collection" => entry.collection = string(key, &value)?,
                "metadata" => entry.metadata = string(key, &value)?,
                "size" => {
                    entry.size = match value {
                        RawBsonRef::Int32(v) => i64::from(v),
                        RawBsonRef::Int64(v) => v,
                        other => return Err(wrong_type(key, "int32 or int64", &other)),
                    }
                }
                "type" => entry.kind = string(key, &value)?,
                _ => {}
            }
        }
        Ok(entry)
    }
}

fn wrong_type(key: &str, wanted: &str, value: &RawBsonRef<'_>) -> String {
    format!("field {key} is {} instead of {wanted}", type_name(value))
}

fn string(key: &str, value: &RawBsonRef<'_>) -> Result<String, String> {
    match value {
        RawBsonRef::String(s) => Ok((*s).to_owned()),
        other => Err(wrong_type(key, "string", other)),
    }
}

fn int(key: &str, value: &RawBsonRef<'_>) -> Result<i32, String> {
    match *value {
        RawBsonRef::Int32(v) => Ok(v),
        RawBsonRef::Int64(v) => {
            i32::try_from(v).map_err(|_| format!("field {key} is out of range: {v}"))
        }
        ref other => Err(wrong_type(key, "int32", other)),
    }
}

/// A decoded namespace header (data segment or EOF).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NamespaceHeader {
    pub(crate) ns: Namespace,
    pub(crate) eof: bool,
    pub(crate) crc: i64,
}

pub(crate) fn encode_namespace_header(
    buf: &mut Vec<u8>,
    ns: &Namespace,
    eof: bool,
    crc: i64,
) -> Result<usize, usize> {
    let mut doc = DocBuilder::new(buf);
    doc.string("db", &ns.db);
    doc.string("collection", &ns.collection);
    doc.boolean("EOF", eof);
    doc.int64("CRC", crc);
    doc.finish()
}

impl NamespaceHeader {
    /// Decodes as strictly as current mongorestore: only the four known keys, each at most
    /// once and of its exact type, and a non-empty collection.
    pub(crate) fn decode(raw: &[u8]) -> Result<Self, String> {
        let mut db = None;
        let mut collection = None;
        let mut eof = None;
        let mut crc = None;
        for item in elements(raw)? {
            let (key, value) = item?;
            let duplicate = match (key, value) {
                ("db", RawBsonRef::String(s)) => db.replace(s.to_owned()).is_some(),
                ("collection", RawBsonRef::String(s)) => collection.replace(s.to_owned()).is_some(),
                ("EOF", RawBsonRef::Boolean(b)) => eof.replace(b).is_some(),
                ("CRC", RawBsonRef::Int64(v)) => crc.replace(v).is_some(),
                ("db" | "collection", other) => return Err(wrong_type(key, "string", &other)),
                ("EOF", other) => return Err(wrong_type(key, "bool", &other)),
                ("CRC", other) => return Err(wrong_type(key, "int64", &other)),
                (unknown, _) => return Err(format!("unknown key {unknown:?}")),
            };
            if duplicate {
                return Err(format!("key {key:?} appears twice"));
            }
        }
        let collection = collection.unwrap_or_default();
        if collection.is_empty() {
            return Err("collection header is missing a Collection".into());
        }
        Ok(Self {
            ns: Namespace::new(db.unwrap_or_default(), collection),
            eof: eof.unwrap_or(false),
            crc: crc.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing_matches_restore() {
        assert_eq!(parse_version("7.0.14"), Some((7, 0, 14)));
        assert_eq!(parse_version("4.4.0-rc0"), Some((4, 4, 0)));
        assert_eq!(parse_version("8.3.1+abc"), Some((8, 3, 1)));
        assert_eq!(parse_version("unknown"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("7.0"), None);
        assert_eq!(parse_version("7.0.1.2"), None);
        assert_eq!(parse_version("7.x.1"), None);
    }

    #[test]
    fn buckets_depend_on_server_version() {
        assert!(Header::new("8.2.9", "t").timeseries_in_buckets());
        assert!(!Header::new("8.3.0", "t").timeseries_in_buckets());
        assert!(!Header::new("9.0.0", "t").timeseries_in_buckets());
        assert!(Header::new("unknown", "t").timeseries_in_buckets());
    }

    #[test]
    fn legacy_tools_are_recognised() {
        assert!(Header::new("3.4.3", "r3.4.3").legacy_tools());
        assert!(Header::new("4.0.2", "r4.1.3-4-gd9eefb54").legacy_tools());
        assert!(!Header::new("7.0.1", "100.8.0").legacy_tools());
        assert!(!Header::new("7.0.1", "release").legacy_tools());
    }

    #[test]
    fn namespace_header_is_55_bytes_for_test_c() {
        let mut buf = Vec::new();
        let len = encode_namespace_header(&mut buf, &Namespace::new("test", "c"), false, 0);
        assert_eq!(len, Ok(55));
        assert_eq!(buf.len(), 55);
        let decoded = NamespaceHeader::decode(&buf).unwrap();
        assert_eq!(decoded.ns, Namespace::new("test", "c"));
        assert!(!decoded.eof);
    }

    fn header_doc(build: impl FnOnce(&mut DocBuilder<'_>)) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut doc = DocBuilder::new(&mut buf);
        build(&mut doc);
        doc.finish().unwrap();
        buf
    }

    #[test]
    fn namespace_header_decoding_is_strict() {
        let extra = header_doc(|d| {
            d.string("db", "a");
            d.string("collection", "b");
            d.boolean("EOF", false);
            d.int64("CRC", 0);
            d.int32("x", 1);
        });
        assert!(NamespaceHeader::decode(&extra)
            .unwrap_err()
            .contains("unknown key"));
        let int32_crc = header_doc(|d| {
            d.string("db", "a");
            d.string("collection", "b");
            d.boolean("EOF", true);
            d.int32("CRC", 0);
        });
        assert!(NamespaceHeader::decode(&int32_crc)
            .unwrap_err()
            .contains("CRC"));
        let empty_coll = header_doc(|d| {
            d.string("db", "a");
            d.string("collection", "");
            d.boolean("EOF", true);
            d.int64("CRC", 0);
        });
        assert!(NamespaceHeader::decode(&empty_coll)
            .unwrap_err()
            .contains("missing a Collection"));
        let twice = header_doc(|d| {
            d.string("db", "a");
            d.string("collection", "b");
            d.string("collection", "c");
        });
        assert!(NamespaceHeader::decode(&twice)
            .unwrap_err()
            .contains("twice"));
        let eof_as_int = header_doc(|d| {
            d.string("db", "a");
            d.string("collection", "b");
            d.int32("EOF", 1);
        });
        assert!(NamespaceHeader::decode(&eof_as_int)
            .unwrap_err()
            .contains("EOF"));
    }

    #[test]
    fn prelude_entry_accepts_int64_size_and_missing_type() {
        let raw = header_doc(|d| {
            d.string("db", "test");
            d.string("collection", "c");
            d.string("metadata", "");
            d.int64("size", 1 << 40);
            d.string("ignored", "x");
        });
        let entry = PreludeEntry::decode(&raw).unwrap();
        assert_eq!(entry.size, 1 << 40);
        assert_eq!(entry.kind, "");
        let mut again = Vec::new();
        entry.encode(&mut again, false).unwrap();
        assert_eq!(PreludeEntry::decode(&again).unwrap(), entry);
    }

    #[test]
    fn header_decoding_rejects_wrong_types() {
        let raw = header_doc(|d| d.string("concurrent_collections", "4"));
        assert!(Header::decode(&raw)
            .unwrap_err()
            .contains("concurrent_collections"));
    }
}

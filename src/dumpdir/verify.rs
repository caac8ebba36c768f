//! `verify --dir`: every file of a dump directory read through, every document parsed, and
//! each collection checked against its metadata, without a database.

use bson::{RawBsonRef, RawDocument};
use serde::Serialize;

use super::stream::DocumentFrames;
use super::{open_file, DumpCollection, DumpFile, DumpLayout};
use crate::error::{Error, Result};
use crate::store::Store;

#[derive(Debug, Clone, Serialize)]
pub struct DirVerifyReport {
    pub dump: String,
    pub server_version: String,
    pub namespaces: Vec<FileCheck>,
    /// Files present that are no part of a dump.
    pub ignored: Vec<String>,
    /// Whether every namespace checked out.
    pub ok: bool,
}

/// What one namespace (or the oplog) of the dump holds, and what is wrong with it.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub namespace: String,
    pub kind: String,
    pub files: Vec<String>,
    pub documents: u64,
    pub bytes: u64,
    pub indexes: usize,
    /// `None` when it checked out.
    pub problem: Option<String>,
}

/// Checks the dump at `store`'s root. Damage is reported per namespace, in the report and
/// as an [`Error::Damaged`] naming them all; a dump that cannot be listed fails as usual.
pub async fn verify(store: &Store) -> Result<DirVerifyReport> {
    let layout = super::scan(store).await?;
    let handle = tokio::runtime::Handle::current();
    let store = store.clone();
    let report = tokio::task::spawn_blocking(move || check_all(&store, &handle, &layout))
        .await
        .map_err(|e| Error::Internal(format!("the verify thread failed: {e}")))?;
    Ok(report)
}

/// The error `verify --dir` exits with when `report` found damage.
pub fn damage(report: &DirVerifyReport) -> Option<Error> {
    let bad: Vec<String> = report
        .namespaces
        .iter()
        .filter_map(|n| Some(format!("{}: {}", n.namespace, n.problem.as_ref()?)))
        .collect();
    (!bad.is_empty()).then(|| Error::Damaged {
        what: report.dump.clone(),
        detail: bad.join("; "),
    })
}

fn check_all(
    store: &Store,
    handle: &tokio::runtime::Handle,
    layout: &DumpLayout,
) -> DirVerifyReport {
    let mut namespaces: Vec<FileCheck> = layout
        .collections
        .iter()
        .map(|c| check_collection(store, handle, c))
        .collect();
    if let Some(file) = &layout.oplog {
        let mut check = FileCheck {
            namespace: "oplog".into(),
            kind: "oplog".into(),
            files: vec![file.key.clone()],
            documents: 0,
            bytes: 0,
            indexes: 0,
            problem: None,
        };
        check.problem = read_documents(store, handle, file, &mut check, oplog_entry).err();
        namespaces.push(check);
    }
    DirVerifyReport {
        dump: layout.name.clone(),
        server_version: layout.header.server_version.clone(),
        ok: namespaces.iter().all(|n| n.problem.is_none()),
        namespaces,
        ignored: layout.ignored.clone(),
    }
}

fn check_collection(
    store: &Store,
    handle: &tokio::runtime::Handle,
    c: &DumpCollection,
) -> FileCheck {
    let mut check = FileCheck {
        namespace: c.namespace().to_string(),
        kind: c.entry.kind.clone(),
        files: c
            .metadata_file
            .iter()
            .chain(c.data.iter())
            .map(|f| f.key.clone())
            .collect(),
        documents: 0,
        bytes: 0,
        indexes: c.metadata.as_ref().map_or(0, |m| m.indexes.len()),
        problem: None,
    };
    check.problem = metadata_problem(c).or_else(|| match &c.data {
        Some(file) => read_documents(store, handle, file, &mut check, |_| Ok(())).err(),
        None => None,
    });
    check
}

/// Whether the files agree with the metadata: the name it records, data where there must
/// be data and none for a view, and indexes mongorestore can build.
fn metadata_problem(c: &DumpCollection) -> Option<String> {
    let Some(meta) = &c.metadata else {
        return c
            .metadata_file
            .as_ref()
            .map(|f| format!("{} is empty", f.key));
    };
    if !meta.collection_name.is_empty() && meta.collection_name != c.entry.collection {
        return Some(format!(
            "the metadata names the collection {:?}",
            meta.collection_name
        ));
    }
    match (c.entry.kind.as_str(), &c.data) {
        ("view", Some(file)) => return Some(format!("a view with a data file ({})", file.key)),
        ("view", None) => {}
        (_, None) => {
            return Some("no data file (mongodump writes one even for an empty collection)".into())
        }
        _ => {}
    }
    meta.indexes.iter().enumerate().find_map(|(i, index)| {
        let named = index.get_str("name").is_ok();
        let keyed = index.get_document("key").is_ok_and(|k| !k.is_empty());
        (!named || !keyed).then(|| format!("index {i} of the metadata has no name or no key"))
    })
}

fn read_documents(
    store: &Store,
    handle: &tokio::runtime::Handle,
    file: &DumpFile,
    check: &mut FileCheck,
    each: fn(&RawDocument) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let mut input = open_file(store, handle, file).map_err(|e| format!("{}: {e}", file.key))?;
    let mut frames = DocumentFrames::new(&file.key);
    let mut buf = Vec::new();
    while frames
        .next_into(&mut input, &mut buf)
        .map_err(|e| e.to_string())?
    {
        let at = |detail: String| format!("{} document {}: {detail}", file.key, frames.index - 1);
        let doc = RawDocument::from_bytes(&buf).map_err(|e| at(e.to_string()))?;
        walk(doc).map_err(at)?;
        each(doc).map_err(at)?;
        check.documents += 1;
        check.bytes += buf.len() as u64;
        buf.clear();
    }
    Ok(())
}

/// Parses every element, nested documents and arrays included.
fn walk(doc: &RawDocument) -> std::result::Result<(), String> {
    for element in doc {
        let (_, value) = element.map_err(|e| e.to_string())?;
        nested(value)?;
    }
    Ok(())
}

fn nested(value: RawBsonRef<'_>) -> std::result::Result<(), String> {
    match value {
        RawBsonRef::Document(d) => walk(d),
        RawBsonRef::Array(a) => {
            for item in a {
                nested(item.map_err(|e| e.to_string())?)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn oplog_entry(doc: &RawDocument) -> std::result::Result<(), String> {
    match (doc.get_timestamp("ts"), doc.get_str("op")) {
        (Ok(_), Ok(_)) => Ok(()),
        _ => Err("not an oplog entry (no ts timestamp or op)".into()),
    }
}

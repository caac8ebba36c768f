//! Shared setup: a seeded source, a destination, and readers for what a backup wrote.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Document, RawDocumentBuf};
use flate2::read::MultiGzDecoder;
use futures_util::TryStreamExt;
use mongo_test_server::{ServerConfig, ServerHandle};
use nightdump::backup::BackupOptions;
use nightdump::namespace::NamespaceFilter;
use nightdump::progress::Progress;
use nightdump::secret::ConnectionString;
use nightdump::source::{ReadPreferenceChoice, SourceOptions};
use nightdump::store::{Destination, S3Options, Store};
use nightdump_archive::{ArchiveReader, Event};

/// A source to back up: the demo data set, on the test server, or on the real server named
/// by `NIGHTDUMP_TEST_MONGODB_URI` (seeded here with the same commands; admin's system
/// collections are left to the server).
pub struct Source {
    pub uri: String,
    /// Held so the test server lives as long as the source; dropping it stops the server.
    _server: Option<ServerHandle>,
}

pub async fn demo_source() -> Source {
    match std::env::var("NIGHTDUMP_TEST_MONGODB_URI") {
        Ok(uri) => {
            seed_real_server(&uri).await;
            Source { uri, _server: None }
        }
        Err(_) => demo_test_server().await,
    }
}

/// Always the test server: for tests that inject faults, which a real server cannot do.
pub async fn demo_test_server() -> Source {
    let server = mongo_test_server::start(ServerConfig {
        seed: mongo_test_server::Seed::Demo,
        ..ServerConfig::default()
    })
    .await
    .expect("test server starts");
    Source {
        uri: server.uri(),
        _server: Some(server),
    }
}

async fn seed_real_server(uri: &str) {
    let client = mongodb::Client::with_uri_str(uri).await.expect("client");
    let commands: Vec<(String, RawDocumentBuf)> =
        mongo_test_server::seed::commands(&mongo_test_server::Seed::Demo).collect();
    let mut dbs: Vec<&str> = commands.iter().map(|(db, _)| db.as_str()).collect();
    dbs.sort();
    dbs.dedup();
    for db in dbs.iter().filter(|d| **d != "admin") {
        client
            .database(db)
            .drop()
            .await
            .expect("drop before seeding");
    }
    for (db, command) in &commands {
        if db != "admin" {
            client
                .database(db)
                .run_raw_command(command.clone())
                .await
                .expect("seed command");
        }
    }
}

pub fn options(uri: &str) -> BackupOptions {
    BackupOptions {
        source: SourceOptions {
            uri: ConnectionString::parse(uri).expect("valid uri"),
            read_preference: ReadPreferenceChoice::default(),
            server_selection_timeout: Duration::from_secs(5),
        },
        filter: NamespaceFilter::default(),
        parallel: 4,
        scheduled_at: None,
        compression_level: 6,
        deadline: None,
        s3: S3Options::default(),
        encrypt: None,
    }
}

pub async fn local_store(dir: &Path) -> Store {
    Store::open(
        &Destination::Local {
            root: dir.to_path_buf(),
        },
        &S3Options::default(),
    )
    .await
    .expect("store opens")
}

pub fn progress() -> Arc<Progress> {
    Arc::new(Progress::default())
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .expect("under dir")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// The documents of each namespace in an archive, in archive order, and its prelude.
pub struct ArchiveContents {
    pub prelude: Vec<nightdump_archive::PreludeEntry>,
    pub header: nightdump_archive::Header,
    pub docs: std::collections::BTreeMap<String, Vec<RawDocumentBuf>>,
}

pub fn read_archive(gz: &[u8]) -> ArchiveContents {
    let mut plain = Vec::new();
    MultiGzDecoder::new(gz)
        .read_to_end(&mut plain)
        .expect("valid gzip");
    let mut reader = ArchiveReader::new(plain.as_slice()).expect("valid archive");
    let prelude = reader.prelude().to_vec();
    let header = reader.header().clone();
    let mut docs: std::collections::BTreeMap<String, Vec<RawDocumentBuf>> = Default::default();
    for entry in &prelude {
        docs.entry(format!("{}.{}", entry.db, entry.collection))
            .or_default();
    }
    while let Some(event) = reader.next_event().expect("well-formed archive") {
        if let Event::Document { ns, raw } = event {
            docs.entry(ns.to_string())
                .or_default()
                .push(RawDocumentBuf::from_bytes(raw.to_vec()).expect("valid bson"));
        }
    }
    ArchiveContents {
        prelude,
        header,
        docs,
    }
}

/// All documents of a collection in natural order, raw, straight from the source.
pub async fn source_documents(uri: &str, db: &str, coll: &str) -> Vec<RawDocumentBuf> {
    let client = mongodb::Client::with_uri_str(uri).await.expect("client");
    client
        .database(db)
        .collection::<RawDocumentBuf>(coll)
        .find(doc! {})
        .hint(mongodb::options::Hint::Keys(doc! { "$natural": 1 }))
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("cursor")
}

pub async fn list_indexes(uri: &str, db: &str, coll: &str) -> Vec<Document> {
    let client = mongodb::Client::with_uri_str(uri).await.expect("client");
    client
        .database(db)
        .run_cursor_command(doc! { "listIndexes": coll, "cursor": {} })
        .await
        .expect("listIndexes")
        .try_collect()
        .await
        .expect("cursor")
}

pub async fn list_collections(uri: &str, db: &str) -> Vec<Document> {
    let client = mongodb::Client::with_uri_str(uri).await.expect("client");
    client
        .database(db)
        .run_cursor_command(doc! { "listCollections": 1, "cursor": {} })
        .await
        .expect("listCollections")
        .try_collect()
        .await
        .expect("cursor")
}

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

/// The demo data set on the test server run as a one-member replica set: its backups carry
/// an oplog.
pub async fn demo_replica_set() -> Source {
    let server = mongo_test_server::start(ServerConfig {
        seed: mongo_test_server::Seed::Demo,
        replica_set: Some("rs0".into()),
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

/// Where the reference archives written by real mongodump releases are: `NIGHTDUMP_FIXTURES`,
/// or `shared/fixtures/mongodump` beside the repository.
pub fn fixtures_dir() -> std::path::PathBuf {
    std::env::var_os("NIGHTDUMP_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mongodump")
        })
}

/// Whether the reference fixtures are there. When they are not, a test that needs them says
/// so in one line and passes without running, unless `NIGHTDUMP_REQUIRE_FIXTURES=1` (CI),
/// which makes their absence a failure.
pub fn fixtures_present(test: &str) -> bool {
    let dir = fixtures_dir();
    if dir.is_dir() {
        return true;
    }
    if std::env::var_os("NIGHTDUMP_REQUIRE_FIXTURES").is_some_and(|v| v == "1") {
        panic!(
            "{test}: the reference mongodump fixtures are required (NIGHTDUMP_REQUIRE_FIXTURES=1) but {} does not exist: set NIGHTDUMP_FIXTURES",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: no reference mongodump fixtures at {} (set NIGHTDUMP_FIXTURES)",
        dir.display()
    );
    false
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
        // Two threads: every test's archive goes through the parallel compressor.
        compress_threads: 2,
        deadline: None,
        s3: S3Options::default(),
        encrypt: None,
        oplog: true,
        // The demo source is a standalone server: no point in time to capture.
        allow_inconsistent: true,
        stale_upload_age: nightdump::backup::STALE_UPLOAD_AGE,
        allow_empty: false,
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

/// What one run of the `nightdump` binary printed and how it ended.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The stderr lines that are not JSON log records (with `--log-format json`, only the
    /// final `error: …` line should be left).
    pub fn plain_stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim_start().starts_with('{') && !l.trim().is_empty())
            .collect()
    }

    /// The JSON log records on stderr.
    pub fn log_records(&self) -> Vec<serde_json::Value> {
        self.stderr
            .lines()
            .filter(|l| l.trim_start().starts_with('{'))
            .map(|l| serde_json::from_str(l).expect("a log line is one JSON object"))
            .collect()
    }

    /// Everything the run printed, for leak checks.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A `nightdump` process under way, its stderr collected line by line as it comes.
pub struct Running {
    child: tokio::process::Child,
    started: std::time::Instant,
    stderr: tokio::sync::watch::Receiver<Vec<String>>,
    stderr_done: tokio::task::JoinHandle<()>,
    stdout_done: tokio::task::JoinHandle<String>,
}

/// The binary under test: this build's, or `NIGHTDUMP_BIN_UNDER_TEST` (e.g. an older build,
/// to see a regression test fail against the code before its fix).
pub fn nightdump_bin() -> String {
    std::env::var("NIGHTDUMP_BIN_UNDER_TEST")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_nightdump").to_string())
}

/// Starts the binary with exactly `env` as its environment (nothing inherited, so no AWS
/// profile or MongoDB setting of the machine running the tests leaks in).
pub fn spawn_nightdump(args: &[&str], env: &[(&str, String)]) -> Running {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut child = tokio::process::Command::new(nightdump_bin())
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("nightdump starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    let stderr_done = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tx.send_modify(|all| all.push(line));
        }
    });
    let stdout_done = tokio::spawn(async move {
        let mut out = String::new();
        let mut stdout = stdout;
        let _ = stdout.read_to_string(&mut out).await;
        out
    });
    Running {
        child,
        started: std::time::Instant::now(),
        stderr: rx,
        stderr_done,
        stdout_done,
    }
}

impl Running {
    /// Sends the process a signal by name (`TERM`, `INT`), as systemd, `timeout` or ECS do.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("the process is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Waits until a stderr line contains every one of `needles`; panics if the process ends
    /// first.
    pub async fn wait_for_log(&mut self, needles: &[&str]) {
        let found = self
            .stderr
            .wait_for(|lines| lines.iter().any(|l| needles.iter().all(|n| l.contains(n))))
            .await
            .is_ok();
        assert!(
            found,
            "nightdump ended before logging {needles:?}:\n{}",
            self.stderr.borrow().join("\n")
        );
    }

    /// Waits for the process to end (at most `limit`) and collects what it printed.
    pub async fn finish(mut self, limit: Duration) -> Run {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait for nightdump"),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "nightdump still running after {limit:?}:\n{}",
                    self.stderr.borrow().join("\n")
                );
            }
        };
        let elapsed = self.started.elapsed();
        let _ = (&mut self.stderr_done).await;
        let stdout = (&mut self.stdout_done).await.unwrap_or_default();
        let stderr = self.stderr.borrow().join("\n");
        Run {
            code: status.code(),
            stdout,
            stderr,
            elapsed,
        }
    }
}

/// Runs the binary to the end (at most two minutes).
pub async fn run_nightdump(args: &[&str], env: &[(&str, String)]) -> Run {
    spawn_nightdump(args, env)
        .finish(Duration::from_secs(120))
        .await
}

/// The environment a run against moto (or a proxy in front of it) needs, and nothing else.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("NIGHTDUMP_S3_PATH_STYLE", "true".to_string()),
    ]
}

/// A loopback port that was free a moment ago: connections to it are refused.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

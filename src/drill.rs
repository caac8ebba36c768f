//! Restore drills: proof that a backup restores to the content it recorded. A drill checks
//! the stored backup (size, SHA-256, every namespace's content digest), restores it into a
//! scratch deployment, reads every namespace back and compares its count, content digest,
//! index specifications and options with the manifest, then drops what it restored.
//!
//! Where it writes: the scratch deployment is used as a whole, not under renamed databases
//! (a rename cannot rule out a collision, and would change what is compared). A drill
//! refuses a scratch deployment that already holds any database of the backup, so every
//! database it writes is one it created; it drops exactly those afterwards, whatever the
//! outcome. `admin`, `config` and `local` are never restored (users and roles stay out of
//! a drill), and the backup's oplog is not replayed: the manifest's digests are of the
//! documents as the dump read them.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{doc, Document, RawDocumentBuf};
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::catalog::{self, Selector};
use crate::digest::{indexes_digest, options_digest, ContentDigest};
use crate::error::{Error, Result};
use crate::layout::{format_time, BackupId, LATEST_KEY};
use crate::manifest::{Latest, LatestDrill, NamespaceEntry};
use crate::namespace::{NamespaceFilter, NamespaceKind};
use crate::progress::Progress;
use crate::secret::ConnectionString;
use crate::source::{ReadPreferenceChoice, Source, SourceOptions};
use crate::store::{PutOptions, Store};

/// Where drill results are stored, under the destination.
pub const DRILLS_PREFIX: &str = "drills/";
const SYSTEM_DATABASES: [&str; 3] = ["admin", "config", "local"];

#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub scratch: ConnectionString,
    pub selector: Selector,
    pub keys: Option<crate::crypto::Keys>,
    pub server_selection_timeout: Duration,
    pub parallel: usize,
    /// Cancelled on SIGTERM: the restore stops, what was restored is dropped.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Time the restore and the read-back may take (a Lambda's remaining time less the
    /// clean-up's share); past it the drill stops and says it could not finish.
    pub budget: Option<Duration>,
}

impl DrillOptions {
    pub fn new(scratch: ConnectionString) -> Self {
        Self {
            scratch,
            selector: Selector::Latest,
            keys: None,
            server_selection_timeout: Duration::from_secs(30),
            parallel: 4,
            cancel: tokio_util::sync::CancellationToken::new(),
            budget: None,
        }
    }
}

/// What a drill found, as stored at `drills/<drill_id>.json` and printed by `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub schema_version: u32,
    pub drill_id: String,
    pub backup_id: String,
    /// The scratch deployment, without credentials.
    pub scratch: String,
    pub started_at: String,
    pub finished_at: String,
    pub passed: bool,
    /// The restore alone: the recovery time a user can expect for this backup.
    pub restore_seconds: f64,
    /// Reading every namespace back.
    pub check_seconds: f64,
    pub archive_size: u64,
    pub bson_bytes: u64,
    pub documents: u64,
    pub namespaces: Vec<DrillNamespace>,
    /// The databases the drill created and dropped again.
    pub dropped: Vec<String>,
    /// Set when dropping them failed: they are left on the scratch deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillNamespace {
    pub namespace: String,
    #[serde(rename = "type")]
    pub kind: NamespaceKind,
    pub documents_expected: u64,
    pub documents_found: u64,
    /// `None` where the manifest recorded no digest (older backups).
    pub content_matches: Option<bool>,
    pub indexes_match: Option<bool>,
    pub options_match: Option<bool>,
    /// What differs, when anything does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

impl DrillReport {
    /// The error a failed drill exits with: every namespace that differs, named.
    pub fn error(&self) -> Option<Error> {
        let bad: Vec<String> = self
            .namespaces
            .iter()
            .filter_map(|n| Some(format!("{} ({})", n.namespace, n.mismatch.as_ref()?)))
            .collect();
        (!bad.is_empty()).then(|| {
            Error::DrillMismatch(format!(
                "drill {} of backup {}: restored content differs from the manifest in {}: {}",
                self.drill_id,
                self.backup_id,
                bad.len(),
                bad.join("; ")
            ))
        })
    }

    pub fn key(&self) -> String {
        format!("{DRILLS_PREFIX}{}.json", self.drill_id)
    }
}

/// Runs a drill of the backup `options.selector` names at `store`, stores its result and
/// records it in `latest.json`. A drill that ran returns its report whether or not the
/// content matched ([`DrillReport::error`] says); a refusal, an unreachable scratch
/// deployment or a restore that failed returns that error, after dropping what it wrote.
pub async fn run(store: &Store, options: &DrillOptions) -> Result<DrillReport> {
    let started_at = OffsetDateTime::now_utc();
    let (id, manifest) = catalog::resolve(store, &options.selector).await?;
    let scratch = connect(&options.scratch, options.server_selection_timeout).await?;
    let databases: BTreeSet<String> = manifest
        .namespaces
        .iter()
        .filter(|n| n.kind != NamespaceKind::Oplog && !SYSTEM_DATABASES.contains(&n.db.as_str()))
        .map(|n| n.db.clone())
        .collect();
    refuse_collisions(&scratch, &databases).await?;

    let timed_out = Arc::new(AtomicBool::new(false));
    let cancel = options.cancel.child_token();
    let _timer = options.budget.map(|budget| {
        let (cancel, timed_out) = (cancel.clone(), Arc::clone(&timed_out));
        AbortOnDrop(tokio::spawn(async move {
            tokio::time::sleep(budget).await;
            timed_out.store(true, Ordering::Relaxed);
            cancel.cancel();
        }))
    });
    let restore_started = Instant::now();
    let restored = restore(store, options, &id, cancel.clone()).await;
    let restore_seconds = restore_started.elapsed().as_secs_f64();
    let checked = match restored {
        // Finished, but past its time: the rest of the invocation belongs to the clean-up.
        Ok(()) if timed_out.load(Ordering::Relaxed) => {
            Err(Error::Interrupted("past the budget".into()))
        }
        Ok(()) => {
            let check_started = Instant::now();
            let result = check_all(&scratch, &manifest.namespaces, &cancel).await;
            result.map(|namespaces| (namespaces, check_started.elapsed().as_secs_f64()))
        }
        Err(e) => Err(e),
    };
    let cleanup_error = drop_databases(&scratch, &databases).await.err();
    let (namespaces, check_seconds) = match checked {
        Ok(found) => found,
        Err(_) if timed_out.load(Ordering::Relaxed) => {
            return Err(Error::Deadline(format!(
                "the drill of backup {id} could not finish within its time ({:.0} s): the restore alone took {restore_seconds:.0} s; run it where there is more time (the CLI, or the Fargate engine)",
                options.budget.unwrap_or_default().as_secs_f64()
            )))
        }
        Err(e) => return Err(e),
    };
    let report = DrillReport {
        schema_version: 1,
        drill_id: BackupId::unscheduled(started_at).to_string(),
        backup_id: id.to_string(),
        scratch: options.scratch.redacted().to_string(),
        started_at: format_time(started_at),
        finished_at: format_time(OffsetDateTime::now_utc()),
        passed: namespaces.iter().all(|n| n.mismatch.is_none()),
        restore_seconds: round_ms(restore_seconds),
        check_seconds: round_ms(check_seconds),
        archive_size: manifest.archive.size,
        bson_bytes: manifest.totals.bytes,
        documents: manifest.totals.documents,
        namespaces,
        dropped: databases.into_iter().collect(),
        cleanup_error: cleanup_error.map(|e| e.to_string()),
    };
    record(store, &report).await?;
    Ok(report)
}

async fn connect(uri: &ConnectionString, timeout: Duration) -> Result<Source> {
    Source::connect(&SourceOptions {
        uri: uri.clone(),
        read_preference: ReadPreferenceChoice::Primary,
        server_selection_timeout: timeout,
    })
    .await
}

/// Reads every namespace of `manifest` back from a deployment it was restored into (under
/// its own names, without its oplog replayed) and compares each with its manifest entry.
pub async fn check_restored(
    scratch: &ConnectionString,
    manifest: &crate::manifest::Manifest,
    timeout: Duration,
) -> Result<Vec<DrillNamespace>> {
    let source = connect(scratch, timeout).await?;
    check_all(
        &source,
        &manifest.namespaces,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
}

async fn refuse_collisions(scratch: &Source, databases: &BTreeSet<String>) -> Result<()> {
    let listed = scratch
        .client()
        .list_database_names()
        .await
        .map_err(|e| scratch.error("listDatabases", &e))?;
    let taken: Vec<&String> = listed.iter().filter(|d| databases.contains(*d)).collect();
    if taken.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the scratch deployment {} already holds {}: a drill writes only databases it creates (and drops them afterwards); point --uri at a scratch deployment without them",
        scratch.target(),
        taken.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
    )))
}

async fn restore(
    store: &Store,
    options: &DrillOptions,
    id: &BackupId,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<()> {
    let mut restore = crate::restore::RestoreOptions::new(Some(options.scratch.clone()));
    restore.server_selection_timeout = options.server_selection_timeout;
    restore.filter = NamespaceFilter {
        include: Vec::new(),
        exclude: SYSTEM_DATABASES
            .iter()
            .filter_map(|db| format!("{db}.*").parse().ok())
            .collect(),
    };
    restore.oplog_replay = false;
    restore.parallel = options.parallel;
    restore.keys = options.keys.clone();
    restore.cancel = cancel;
    let input = crate::restore::Input::Backup {
        store,
        selector: Selector::Id(*id),
        verify_first: true,
    };
    crate::restore::run(&restore, input, &Arc::new(Progress::default()))
        .await
        .map(|_| ())
}

async fn check_all(
    scratch: &Source,
    entries: &[NamespaceEntry],
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Vec<DrillNamespace>> {
    let mut out = Vec::new();
    for entry in entries {
        if entry.kind == NamespaceKind::Oplog || SYSTEM_DATABASES.contains(&entry.db.as_str()) {
            continue;
        }
        if cancel.is_cancelled() {
            return Err(Error::Interrupted(
                "the drill was stopped while reading back".into(),
            ));
        }
        out.push(check_namespace(scratch, entry).await?);
    }
    Ok(out)
}

/// Reads one namespace back and compares it with its manifest entry.
async fn check_namespace(scratch: &Source, entry: &NamespaceEntry) -> Result<DrillNamespace> {
    let db = scratch.client().database(&entry.db);
    let namespace = format!("{}.{}", entry.db, entry.collection);
    let (mut documents_found, mut digest) = (0u64, ContentDigest::default());
    if entry.kind != NamespaceKind::View {
        // A time-series collection's digest is over its buckets, as archived.
        let data = match entry.kind {
            NamespaceKind::Timeseries => format!("system.buckets.{}", entry.collection),
            _ => entry.collection.clone(),
        };
        let mut cursor = db
            .collection::<RawDocumentBuf>(&data)
            .find(doc! {})
            .await
            .map_err(|e| scratch.error(&format!("find on {namespace}"), &e))?;
        while let Some(d) = cursor
            .try_next()
            .await
            .map_err(|e| scratch.error(&format!("find on {namespace}"), &e))?
        {
            digest.add(d.as_bytes());
            documents_found += 1;
        }
    }
    let specs: Vec<Document> = if entry.kind == NamespaceKind::View {
        Vec::new()
    } else {
        db.run_cursor_command(doc! {"listIndexes": entry.collection.as_str(), "cursor": {}})
            .await
            .map_err(|e| scratch.error(&format!("listIndexes on {namespace}"), &e))?
            .try_collect()
            .await
            .map_err(|e| scratch.error(&format!("listIndexes on {namespace}"), &e))?
    };
    let listed: Vec<Document> = db
        .run_cursor_command(doc! {"listCollections": 1, "filter": {"name": entry.collection.as_str()}, "cursor": {}})
        .await
        .map_err(|e| scratch.error(&format!("listCollections on {}", entry.db), &e))?
        .try_collect()
        .await
        .map_err(|e| scratch.error(&format!("listCollections on {}", entry.db), &e))?;
    let options = listed
        .first()
        .and_then(|c| c.get_document("options").ok().cloned())
        .unwrap_or_default();
    let compare = |recorded: &Option<String>, found: String| recorded.as_ref().map(|r| *r == found);
    let content_matches = compare(&entry.digest, digest.hex());
    let indexes_match = compare(&entry.indexes_digest, indexes_digest(&specs));
    let options_match = compare(&entry.options_digest, options_digest(&options));
    let mut differs = Vec::new();
    if listed.is_empty() {
        differs.push("missing after the restore".to_string());
    }
    if documents_found != entry.documents {
        differs.push(format!(
            "{documents_found} documents, the backup has {}",
            entry.documents
        ));
    } else if content_matches == Some(false) {
        differs.push("document content differs".to_string());
    }
    if indexes_match == Some(false) {
        differs.push("index specifications differ".to_string());
    }
    if options_match == Some(false) {
        differs.push("collection options differ".to_string());
    }
    Ok(DrillNamespace {
        namespace,
        kind: entry.kind,
        documents_expected: entry.documents,
        documents_found,
        content_matches,
        indexes_match,
        options_match,
        mismatch: (!differs.is_empty()).then(|| differs.join(", ")),
    })
}

async fn drop_databases(scratch: &Source, databases: &BTreeSet<String>) -> Result<()> {
    for name in databases {
        scratch
            .client()
            .database(name)
            .drop()
            .await
            .map_err(|e| scratch.error(&format!("dropDatabase {name}"), &e))?;
    }
    Ok(())
}

/// Stores the report (create-only, as every object under the prefix) and records it as the
/// last drill in `latest.json`, never replacing a later one.
async fn record(store: &Store, report: &DrillReport) -> Result<()> {
    let body = serde_json::to_vec_pretty(report)
        .map_err(|e| Error::Internal(format!("the drill report does not serialise: {e}")))?;
    store
        .put(&report.key(), Bytes::from(body), PutOptions::create())
        .await?;
    let last = LatestDrill::of(report);
    let written = store
        .update(LATEST_KEY, move |current| {
            let mut latest: Latest = serde_json::from_slice(current?).ok()?;
            if latest
                .drill
                .as_ref()
                .is_some_and(|d| d.finished_at >= last.finished_at)
            {
                return None;
            }
            latest.drill = Some(last.clone());
            serde_json::to_vec_pretty(&latest).ok().map(Bytes::from)
        })
        .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, "the drill's result is stored but latest.json could not record it");
    }
    Ok(())
}

impl LatestDrill {
    pub fn of(report: &DrillReport) -> Self {
        Self {
            drill_id: report.drill_id.clone(),
            backup_id: report.backup_id.clone(),
            finished_at: report.finished_at.clone(),
            passed: report.passed,
            restore_seconds: report.restore_seconds,
            report: report.key(),
        }
    }
}

/// Stops the drill's timer when the drill ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

//! What a restore did, per namespace, for people (a table) and scripts (`--json`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::plan::{Kind, SkipReason};

/// What happened, or would happen, to a namespace's collection before its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Created with the archived options.
    Create,
    /// Dropped (`--drop`), then created.
    DropAndCreate,
    /// Already present: kept as it is, documents added to it.
    UseExisting,
    /// Users or roles, merged into the target's through temporary collections and
    /// `_mergeAuthzCollections` (`--with-users`).
    Merge,
    /// The archive's oplog, applied through `applyOps` after every collection's documents.
    Replay,
    /// Not restored.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every document of the archive was handled and the indexes were built.
    Complete,
    /// Some documents were handled, not all (or its indexes were not built).
    Partial,
    /// Nothing of it was written.
    NotStarted,
    /// The archive failed its checks (CRC, structure) inside this namespace: what was
    /// restored of it may hold damaged documents.
    Damaged,
    Skipped,
    /// `--dry-run`: nothing was written.
    Planned,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceReport {
    pub source: String,
    pub target: String,
    pub kind: Kind,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<SkipReason>,
    pub status: Status,
    /// Documents the archive holds for it, when the whole namespace was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_documents: Option<u64>,
    pub inserted: u64,
    /// Documents whose `_id` was already present (duplicate key; for users and roles, the
    /// same user or role already existed and `--drop` was not given): left untouched.
    pub skipped: u64,
    /// Documents the server refused (validation and other write errors).
    pub failed: u64,
    pub indexes_created: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub namespaces: u64,
    pub inserted: u64,
    pub skipped: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup id, or the archive path (`-` for stdin).
    pub source: String,
    /// The target with any password removed; `None` for a dry run without `--uri`.
    pub target: Option<String>,
    pub dry_run: bool,
    pub namespaces: Vec<NamespaceReport>,
    pub totals: Totals,
    /// The oplog replay, when the archive has an oplog and it was replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oplog: Option<super::oplog::OplogReport>,
    /// With `--with-users`: each user and role added, replaced, kept or removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<super::users::AuthChange>,
    /// Why the restore stopped early, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_seconds: f64,
}

impl RestoreReport {
    pub fn compute_totals(&mut self) {
        let mut t = Totals::default();
        for n in &self.namespaces {
            if n.action != Action::Skip {
                t.namespaces += 1;
            }
            t.inserted += n.inserted;
            t.skipped += n.skipped;
            t.failed += n.failed;
        }
        self.totals = t;
    }

    /// A one-line summary.
    pub fn headline(&self) -> String {
        let t = &self.totals;
        let incomplete = self
            .namespaces
            .iter()
            .filter(|n| {
                matches!(
                    n.status,
                    Status::Partial | Status::NotStarted | Status::Damaged
                )
            })
            .count();
        let mut s = format!(
            "{} namespaces: {} documents inserted, {} skipped (already present), {} failed",
            t.namespaces, t.inserted, t.skipped, t.failed
        );
        if incomplete > 0 {
            let _ = write!(s, "; {incomplete} namespaces not fully restored");
        }
        if let (Some(o), true) = (&self.oplog, self.dry_run) {
            let _ = write!(
                s,
                "; {} oplog entries to replay, {}",
                o.applied,
                o.touches()
            );
        } else if let Some(o) = &self.oplog {
            let _ = write!(s, "; {} oplog entries replayed", o.applied);
            if let Some(last) = o.last_applied {
                let _ = write!(s, " (to {}:{})", last.t, last.i);
            }
            if o.after_limit > 0 {
                let _ = write!(s, ", {} at or after --oplog-limit left out", o.after_limit);
            }
        }
        s
    }

    /// A table, one line per namespace.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<40} {:<12} {:<15} {:>10} {:>10} {:>8} {:>7}  NOTE",
            "NAMESPACE", "STATUS", "ACTION", "ARCHIVE", "INSERTED", "SKIPPED", "FAILED"
        );
        for n in &self.namespaces {
            let name = if n.source == n.target {
                n.target.clone()
            } else {
                format!("{} -> {}", n.source, n.target)
            };
            let note = match (n.skip_reason, &n.first_error) {
                (Some(r), _) => r.describe().to_string(),
                (None, Some(e)) => e.clone(),
                (None, None) if n.action == Action::Replay => self
                    .oplog
                    .as_ref()
                    .map(super::oplog::OplogReport::touches)
                    .unwrap_or_default(),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<40} {:<12} {:<15} {:>10} {:>10} {:>8} {:>7}  {}",
                name,
                json_name(&n.status),
                json_name(&n.action),
                n.archive_documents
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                n.inserted,
                n.skipped,
                n.failed,
                note
            );
        }
        for change in &self.users {
            let _ = writeln!(out, "{}", change.describe());
        }
        out
    }
}

fn json_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Counters one insert worker updates while the orchestration reads them.
#[derive(Debug, Default)]
pub struct Counters {
    pub inserted: AtomicU64,
    pub skipped: AtomicU64,
    pub failed: AtomicU64,
    /// Set when the namespace's EOF block arrived and everything before it was sent.
    pub ended: AtomicBool,
    pub archive_documents: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Counters {
    pub fn note_error(&self, message: String) {
        if let Ok(mut slot) = self.first_error.lock() {
            slot.get_or_insert(message);
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|s| s.clone())
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

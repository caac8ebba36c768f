//! `nightdump restore`: puts a backup (nightdump's own, or any mongodump archive, gzipped or
//! not) back into MongoDB, in mongorestore's order: collections created with their archived
//! options, documents inserted in unordered batches, several collections at once, then the
//! secondary indexes. Memory stays bounded: a few batches per open namespace.

mod commands;
mod insert;
mod oplog;
mod plan;
mod rename;
mod report;
mod stream;
mod target;
mod users;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Document, RawDocumentBuf};
use nightdump_archive::Namespace;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

pub use oplog::{parse_limit as parse_oplog_limit, OplogReport};
pub use plan::{AuthCollection, Kind, SkipReason};
pub use rename::Rename;
pub use report::{Action, NamespaceReport, RestoreReport, Status, Totals};
pub use users::AuthChange;

use crate::catalog::{self, Selector};
use crate::error::{Error, Result};
use crate::namespace::NamespaceFilter;
use crate::progress::{NamespaceProgress, NamespaceState, Progress};
use crate::secret::ConnectionString;
use crate::store::Store;
use plan::NamespacePlan;
use report::Counters;
use stream::{ReadAhead, Routing, StreamSummary};
use target::Target;

/// The most insert commands in flight at once.
pub const MAX_PARALLEL: usize = 64;

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Where to restore; only a dry run may go without.
    pub target: Option<ConnectionString>,
    pub server_selection_timeout: Duration,
    pub filter: NamespaceFilter,
    pub renames: Vec<Rename>,
    /// Drop each target collection (never `system.*`) before restoring it.
    pub drop: bool,
    pub no_indexes: bool,
    /// Read and check the whole archive, print the plan, write nothing.
    pub dry_run: bool,
    /// Create collections with their archived UUIDs (needs `drop`).
    pub preserve_uuid: bool,
    pub with_users: bool,
    /// Insert commands in flight at once.
    pub parallel: usize,
    /// age identities for an encrypted backup or archive file.
    pub keys: Option<crate::crypto::Keys>,
    /// Replay the archive's oplog after the data (when it has one).
    pub oplog_replay: bool,
    /// Fail when the archive has no oplog to replay (`--oplog-replay` given explicitly).
    pub require_oplog: bool,
    /// Replay only entries before this timestamp.
    pub oplog_limit: Option<bson::Timestamp>,
    /// Cancelled on SIGTERM/SIGINT: the restore stops at a batch boundary and reports.
    pub cancel: tokio_util::sync::CancellationToken,
    /// With `with_users` and `drop`, remove the user the restore is connected as when the
    /// archive does not have it (refused otherwise: the restore would lock itself out).
    pub allow_dropping_connected_user: bool,
    /// Replay the oplog entries of namespaces the archive does not hold (collections created
    /// after the backup), when the filter selects them: for a restore to an instant.
    pub replay_new_namespaces: bool,
}

impl RestoreOptions {
    pub fn new(target: Option<ConnectionString>) -> Self {
        Self {
            target,
            server_selection_timeout: Duration::from_secs(30),
            filter: NamespaceFilter::default(),
            renames: Vec::new(),
            drop: false,
            no_indexes: false,
            dry_run: false,
            preserve_uuid: false,
            with_users: false,
            parallel: 4,
            keys: None,
            oplog_replay: true,
            require_oplog: false,
            oplog_limit: None,
            cancel: tokio_util::sync::CancellationToken::new(),
            allow_dropping_connected_user: false,
            replay_new_namespaces: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.parallel == 0 || self.parallel > MAX_PARALLEL {
            return Err(Error::invalid(format!(
                "--parallel must be between 1 and {MAX_PARALLEL}, got {}",
                self.parallel
            )));
        }
        if self.preserve_uuid && !self.drop {
            return Err(Error::invalid(
                "--preserve-uuid needs --drop: a collection can only get its old UUID when it is created anew",
            ));
        }
        if !self.oplog_replay && (self.oplog_limit.is_some() || self.require_oplog) {
            return Err(Error::invalid(
                "--oplog-limit and --oplog-replay need the oplog replayed: leave out --no-oplog-replay",
            ));
        }
        if self.allow_dropping_connected_user && !(self.with_users && self.drop) {
            return Err(Error::invalid(
                "--allow-dropping-connected-user only applies to --with-users --drop: add both, or leave it out",
            ));
        }
        if self.target.is_none() && !self.dry_run {
            return Err(Error::invalid(
                "no MongoDB target: pass --uri mongodb://HOST:PORT/ or set MONGODB_URI (or use --dry-run)",
            ));
        }
        Ok(())
    }
}

/// Where the archive comes from.
pub enum Input<'a> {
    /// A backup at a destination, checked against its manifest.
    Backup {
        store: &'a Store,
        selector: Selector,
        /// Check the stored object's size and SHA-256 before the first write.
        verify_first: bool,
    },
    /// A mongodump archive file, gzipped or not.
    File(PathBuf),
    /// A mongodump archive on standard input.
    Stdin,
    /// Any byte stream holding an archive, gzipped or not.
    Reader {
        name: String,
        reader: Box<dyn Read + Send>,
    },
}

type Opener = Box<dyn FnOnce() -> Result<Box<dyn Read + Send>> + Send>;

async fn open_input(
    input: Input<'_>,
    dry_run: bool,
    keys: Option<&crate::crypto::Keys>,
) -> Result<(String, Opener, Sizes)> {
    let mut sizes = Sizes::new();
    let (name, open) = match input {
        Input::Backup {
            store,
            selector,
            verify_first,
        } => {
            let (id, manifest) = catalog::resolve(store, &selector).await?;
            for n in &manifest.namespaces {
                sizes.insert(
                    Namespace::new(n.db.clone(), n.collection.clone()),
                    (n.documents, n.bytes),
                );
            }
            let name = format!("backup {id}");
            let encryption = manifest.archive.encryption.clone();
            let keys = crate::crypto::ready_keys(&id.to_string(), &encryption, keys).await?;
            // A dry run is a check before the real thing: it always proves the stored bytes
            // are the manifest's (size and SHA-256), whatever --no-verify-first says.
            if verify_first || dry_run {
                crate::verify::verify(store, &Selector::Id(id), keys.as_ref()).await?;
            }
            let reader = store
                .open_read(&manifest.archive.key)
                .await?
                .ok_or_else(|| Error::BackupNotFound {
                    id: id.to_string(),
                    destination: store.destination().to_string(),
                })?;
            let bridge = tokio_util::io::SyncIoBridge::new(reader);
            let open: Opener = Box::new(move || {
                let buffered = std::io::BufReader::with_capacity(256 * 1024, bridge);
                let plain = crate::crypto::decrypting(&name, &encryption, keys.as_ref(), buffered)?;
                Ok(Box::new(plain) as Box<dyn Read + Send>)
            });
            (id.to_string(), open)
        }
        Input::File(path) => {
            let name = path.display().to_string();
            let name_in = name.clone();
            let keys = keys.cloned();
            let open: Opener = Box::new(move || {
                let file = std::fs::File::open(&path).map_err(|e| {
                    Error::invalid(format!("cannot open archive {}: {e}", path.display()))
                })?;
                decrypt_sniffed(&name_in, Box::new(file), keys.as_ref())
            });
            (name, open)
        }
        Input::Stdin => {
            let keys = keys.cloned();
            let open: Opener = Box::new(move || {
                decrypt_sniffed("standard input", Box::new(std::io::stdin()), keys.as_ref())
            });
            ("-".to_string(), open)
        }
        Input::Reader { name, reader } => {
            let open: Opener = Box::new(move || Ok(reader));
            (name, open)
        }
    };
    Ok((name, open, sizes))
}

/// Documents and bytes per namespace, as the backup's manifest counted them.
type Sizes = HashMap<Namespace, (u64, u64)>;

/// Follows each namespace to restore on the progress display, with its expected size: the
/// manifest's counts, or else the byte estimate mongodump leaves in the prelude.
fn track(
    progress: &Progress,
    plans: &[NamespacePlan],
    entries: &[nightdump_archive::PreludeEntry],
    sizes: &Sizes,
) -> Vec<Option<Arc<NamespaceProgress>>> {
    plans
        .iter()
        .map(|p| {
            if !p.restored() {
                return None;
            }
            let (documents, bytes) = match sizes.get(&p.source) {
                Some((d, b)) => (Some(*d), Some(*b)),
                None => {
                    let estimate = entries
                        .iter()
                        .find(|e| e.db == p.source.db && e.collection == p.source.collection)
                        .and_then(|e| u64::try_from(e.size).ok())
                        .filter(|b| *b > 0);
                    (None, estimate)
                }
            };
            Some(progress.track(p.target.to_string(), documents, bytes))
        })
        .collect()
}

/// An archive file or stream that is an age file is decrypted (it carries no manifest, so its
/// first bytes say so). Each 64 KiB chunk is authenticated before any of its bytes reach the
/// archive reader, so damage stops the restore at that chunk.
fn decrypt_sniffed(
    name: &str,
    input: Box<dyn Read + Send>,
    keys: Option<&crate::crypto::Keys>,
) -> Result<Box<dyn Read + Send>> {
    use std::io::BufRead;
    let mut buffered = std::io::BufReader::with_capacity(256 * 1024, input);
    let first = buffered
        .fill_buf()
        .map_err(|e| Error::invalid(format!("cannot read archive {name}: {e}")))?;
    if crate::crypto::is_envelope(first) {
        return Err(Error::invalid(format!(
            "{name} is encrypted with a KMS data key, which is kept in its backup's manifest: restore it with --from DESTINATION [BACKUP_ID] instead of --archive"
        )));
    }
    if !crate::crypto::is_age(first) {
        return Ok(Box::new(buffered));
    }
    let encryption = crate::manifest::Encryption {
        scheme: "age".into(),
        ..crate::manifest::Encryption::none()
    };
    let plain = crate::crypto::decrypting(name, &encryption, keys, buffered)?;
    Ok(Box::new(plain))
}

async fn join_stream(
    done: tokio::task::JoinHandle<Result<StreamSummary>>,
) -> Result<StreamSummary> {
    match done.await {
        Ok(result) => result,
        Err(e) => Err(Error::Internal(format!("the archive reader crashed: {e}"))),
    }
}

impl crate::error::PartialReport for RestoreReport {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Error {
    /// The report of a restore that wrote some data and then stopped ([`Error::RestoreFailed`]).
    pub fn restore_report(&self) -> Option<&RestoreReport> {
        match self {
            Error::RestoreFailed { report, .. } => report.as_any().downcast_ref(),
            _ => None,
        }
    }
}

/// Aborts a helper task when the restore that spawned it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The namespaces an oplog replay may write to: those restored, by the names the archive's
/// oplog uses for them (a time-series collection's buckets included).
fn restored_namespaces(plans: &[NamespacePlan]) -> std::collections::HashSet<String> {
    plans
        .iter()
        .filter(|p| p.restored() && p.kind != Kind::Oplog && p.auth.is_none())
        .flat_map(oplog_names)
        .collect()
}

/// The names an oplog uses for a namespace: its own, its data collection's and, for a
/// time-series collection, its buckets'.
fn oplog_names(p: &NamespacePlan) -> [String; 3] {
    let buckets = Namespace::new(
        p.source.db.clone(),
        format!("system.buckets.{}", p.source.collection),
    );
    [
        p.source.to_string(),
        p.data.to_string(),
        buckets.to_string(),
    ]
}

/// Every namespace of the archive, by the names its oplog would use.
fn archived_namespaces(plans: &[NamespacePlan]) -> std::collections::HashSet<String> {
    plans.iter().flat_map(oplog_names).collect()
}

fn replay_rules(options: &RestoreOptions, plans: &[NamespacePlan]) -> oplog::Rules {
    oplog::Rules {
        limit: options.oplog_limit,
        preserve_uuid: options.preserve_uuid,
        filter: options.filter.clone(),
        renames: options.renames.clone(),
        restored: Some(restored_namespaces(plans)),
        archived: archived_namespaces(plans),
        replay_new: options.replay_new_namespaces,
    }
}

/// Restores `input` as `options` say. A failure before anything was written comes back as
/// that error; once data was written, as [`Error::RestoreFailed`] carrying the full report.
pub async fn run(
    options: &RestoreOptions,
    input: Input<'_>,
    progress: &Arc<Progress>,
) -> Result<RestoreReport> {
    restore(options, input, progress)
        .await
        .map_err(Error::in_restore)
}

async fn restore(
    options: &RestoreOptions,
    input: Input<'_>,
    progress: &Arc<Progress>,
) -> Result<RestoreReport> {
    options.validate()?;
    let started = Instant::now();
    let (source_name, open, sizes) =
        open_input(input, options.dry_run, options.keys.as_ref()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    // A signal sets the same flag a failure does: the reader stops between documents, the
    // workers finish the batch in hand, and the report says what was written.
    let _watcher = {
        let (stop, cancel) = (Arc::clone(&stop), options.cancel.clone());
        AbortOnDrop(tokio::spawn(async move {
            cancel.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        }))
    };
    let mut stream = stream::spawn(open, Arc::clone(&stop));
    let prelude = match (&mut stream.prelude).await {
        Ok(prelude) => prelude,
        Err(_) => {
            return Err(join_stream(stream.done).await.err().unwrap_or_else(|| {
                Error::Internal("the archive reader ended without a prelude".into())
            }))
        }
    };
    let target = match &options.target {
        Some(uri) => Some(Target::connect(uri, options.server_selection_timeout).await?),
        None => None,
    };
    let planned = plan_phase(options, &prelude, &source_name, target.as_ref()).await?;
    Progress::add(
        &progress.namespaces_total,
        planned.plans.iter().filter(|p| p.restored()).count() as u64,
    );
    let mut run = Run::new(
        options,
        source_name,
        planned.plans,
        planned.actions,
        started,
    );
    let target = match target {
        Some(target) if !options.dry_run => target,
        planning => {
            let reading = Reading {
                stream,
                read_ahead: planned.read_ahead,
                mute: planned.mute,
            };
            return dry_run(options, reading, planning.as_ref(), run, progress, &stop).await;
        }
    };
    progress
        .parallel
        .store(options.parallel as u64, Ordering::Relaxed);
    for (ns, tracked) in
        run.namespaces
            .iter_mut()
            .zip(track(progress, &run.plans, &prelude.entries, &sizes))
    {
        ns.tracked = tracked;
    }

    let routing = match users_phase(
        options,
        &target,
        &prelude.header,
        &mut stream,
        planned.read_ahead,
        &planned.mute,
        &mut run,
        progress,
    )
    .await
    {
        Ok(()) => create_phase(options, &target, &mut run).await,
        Err(e) => Err(e),
    };
    if let Err(e) = routing {
        // Dropping the routing sender ends the reader before any document.
        drop(stream.routing);
        let _ = join_stream(stream.done).await;
        return Err(run.fail(None, e));
    }
    let target = Arc::new(target);
    let (summary, failure) = load_phase(
        options,
        &target,
        stream,
        planned.mute,
        &mut run,
        progress,
        &stop,
    )
    .await;
    if let Some(e) = failure {
        return Err(run.fail(summary.as_ref(), e));
    }
    if let Err(e) = index_phase(options, &target, &mut run).await {
        return Err(run.fail(summary.as_ref(), e));
    }
    run.finish(summary.as_ref());
    report_phase(run)
}

/// What the plan phase decides before anything is written: each namespace's plan and action,
/// and which namespaces the reader reads ahead (users and roles) or skips.
struct Planned {
    plans: Vec<NamespacePlan>,
    actions: Vec<Action>,
    read_ahead: Vec<Namespace>,
    mute: Vec<Namespace>,
}

/// The archive reader, with what it is to read ahead and to skip.
struct Reading {
    stream: stream::Stream,
    read_ahead: Vec<Namespace>,
    mute: Vec<Namespace>,
}

/// Plan: which of the archive's namespaces are restored, and how (created, dropped and
/// created, added to the target's existing collection, merged, replayed).
async fn plan_phase(
    options: &RestoreOptions,
    prelude: &stream::Prelude,
    source_name: &str,
    target: Option<&Target>,
) -> Result<Planned> {
    let mut plans = plan::build(
        &prelude.header,
        &prelude.entries,
        &prelude.metadata,
        &options.filter,
        &options.renames,
        options.with_users,
    )?;
    let has_oplog = plans.iter().any(|p| p.kind == Kind::Oplog);
    if options.require_oplog && !has_oplog {
        return Err(Error::invalid(format!(
            "--oplog-replay: {source_name} has no oplog (it was not taken from a replica set with its oplog): leave out --oplog-replay"
        )));
    }
    if options.oplog_replay {
        for p in plans.iter_mut().filter(|p| p.kind == Kind::Oplog) {
            p.skip = None;
        }
    }
    // Inspect the target: which collections already exist.
    let mut existing: HashMap<String, HashMap<String, Document>> = HashMap::new();
    if let Some(target) = target {
        for p in plans
            .iter()
            .filter(|p| p.restored() && p.auth.is_none() && p.kind != Kind::Oplog)
        {
            if !existing.contains_key(&p.target.db) {
                let found = target.collections(&p.target.db).await?;
                existing.insert(p.target.db.clone(), found);
            }
        }
    }
    let actions: Vec<Action> = plans
        .iter()
        .map(|p| decide(p, &existing, options.drop))
        .collect();
    // Users and roles are merged before anything else is written, which needs them (and the
    // auth-schema version) read first; the archive has them first.
    let merging = plans.iter().any(|p| p.restored() && p.auth.is_some());
    let read_ahead: Vec<Namespace> = plans
        .iter()
        .filter(|p| {
            merging && p.auth.is_some() && (p.restored() || p.skip == Some(SkipReason::AuthSchema))
        })
        .map(|p| p.data.clone())
        .collect();
    let mute: Vec<Namespace> = plans
        .iter()
        .filter(|p| !p.restored() && !read_ahead.contains(&p.data))
        .map(|p| p.data.clone())
        .collect();
    Ok(Planned {
        plans,
        actions,
        read_ahead,
        mute,
    })
}

/// Reads the users, roles and auth-schema version ahead of everything else (`None` when none
/// are asked for).
async fn read_ahead(
    stream: &mut stream::Stream,
    namespaces: Vec<Namespace>,
    mute: &[Namespace],
) -> Result<Option<HashMap<Namespace, Vec<RawDocumentBuf>>>> {
    // The reader waits for a request or for the sender to go, before anything else.
    let (placeholder, _) = tokio::sync::oneshot::channel();
    let sender = std::mem::replace(&mut stream.read_ahead, placeholder);
    if namespaces.is_empty() {
        drop(sender);
        return Ok(None);
    }
    let (reply, read) = tokio::sync::oneshot::channel();
    let request = ReadAhead {
        namespaces,
        mute: mute.to_vec(),
        reply,
    };
    match sender.send(request) {
        Ok(()) => match read.await {
            Ok(docs) => Ok(Some(docs)),
            Err(_) => Err(Error::Internal(
                "the archive reader stopped before the users and roles".into(),
            )),
        },
        Err(_) => Err(Error::Internal(
            "the archive reader stopped before the users and roles".into(),
        )),
    }
}

/// Users: with `--with-users`, the archive's users and roles merged before anything else.
#[allow(clippy::too_many_arguments)]
async fn users_phase(
    options: &RestoreOptions,
    target: &Target,
    header: &nightdump_archive::Header,
    stream: &mut stream::Stream,
    namespaces: Vec<Namespace>,
    mute: &[Namespace],
    run: &mut Run,
    progress: &Arc<Progress>,
) -> Result<()> {
    let Some(docs) = read_ahead(stream, namespaces, mute).await? else {
        return Ok(());
    };
    restore_users(target, header, &docs, options, run, progress).await
}

/// Create collections: first, in prelude order, so that nothing is inserted into a
/// collection the server would create implicitly without its options.
async fn create_phase(options: &RestoreOptions, target: &Target, run: &mut Run) -> Result<()> {
    for i in 0..run.plans.len() {
        let (p, action) = (&run.plans[i], run.actions[i]);
        let tracked = run.namespaces[i].tracked.clone();
        let creating = matches!(action, Action::Create | Action::DropAndCreate);
        if let Some(t) = tracked.as_ref().filter(|_| creating) {
            t.set_state(NamespaceState::Creating);
        }
        if let Err(e) = prepare(target, p, action, options, &mut run.wrote).await {
            if let Some(t) = &tracked {
                t.set_state(NamespaceState::Failed);
            }
            return Err(e);
        }
        if let Some(t) = tracked.filter(|_| creating) {
            let next = if p.kind == Kind::View {
                NamespaceState::Done
            } else {
                NamespaceState::Queued
            };
            t.finish(next);
        }
        run.namespaces[i].prepared = true;
    }
    Ok(())
}

/// Whether the plan's documents go to an insert worker (not a view, the oplog, users or
/// roles, or a namespace left out).
fn inserted(p: &NamespacePlan) -> bool {
    p.restored() && p.kind != Kind::View && p.kind != Kind::Oplog && p.auth.is_none()
}

/// Load, then replay the oplog: an insert worker per namespace, the oplog's entries held in
/// their channel until every collection's documents are in. Returns the reader's summary
/// and the first failure.
async fn load_phase(
    options: &RestoreOptions,
    target: &Arc<Target>,
    stream: stream::Stream,
    mute: Vec<Namespace>,
    run: &mut Run,
    progress: &Arc<Progress>,
    stop: &Arc<AtomicBool>,
) -> (Option<StreamSummary>, Option<Error>) {
    let conn = Arc::new(target.conn.clone());
    let permits = Arc::new(Semaphore::new(options.parallel));
    // Enough workers for every namespace the archive may interleave, however small
    // --parallel is: a namespace without a reader would stall the whole stream.
    let mut workers = JoinSet::new();
    let mut routes = HashMap::new();
    for (p, ns) in run.plans.iter().zip(run.namespaces.iter_mut()) {
        if !inserted(p) {
            continue;
        }
        let (tx, rx) = mpsc::channel(2);
        routes.insert(p.data.clone(), tx);
        let counters = Arc::new(Counters::default());
        ns.counters = Some(Arc::clone(&counters));
        let indexes_follow = !options.no_indexes
            && p.metadata
                .as_ref()
                .is_some_and(|m| !commands::index_specs(&p.target, m).is_empty());
        let worker = insert::Worker {
            namespace: ns.tracked.clone(),
            then: if indexes_follow {
                NamespaceState::Loaded
            } else {
                NamespaceState::Done
            },
            collection: conn
                .client()
                .database(&p.insert_into.db)
                .collection::<RawDocumentBuf>(&p.insert_into.collection),
            counters,
            permits: Arc::clone(&permits),
            progress: Arc::clone(progress),
            target: Arc::clone(&conn),
        };
        workers.spawn(worker.run(rx));
    }
    let replay = spawn_replayer(
        options,
        run,
        Some(Arc::clone(&conn)),
        &mut routes,
        progress,
        stop,
    );
    run.wrote = true;
    if stream.routing.send(Some(Routing { mute, routes })).is_err() {
        // The reader already ended; its error is collected below.
    }
    let mut failure: Option<Error> = None;
    let fail = |e: Error, failure: &mut Option<Error>| {
        if failure.is_none() {
            *failure = Some(e);
            stop.store(true, Ordering::Relaxed);
        }
    };
    while let Some(joined) = workers.join_next().await {
        let outcome = match joined {
            Ok(outcome) => outcome,
            Err(e) if e.is_cancelled() => Ok(()),
            Err(e) => Err(Error::Internal(format!("an insert worker crashed: {e}"))),
        };
        if let Err(e) = outcome {
            if failure.is_none() {
                workers.abort_all();
            }
            fail(e, &mut failure);
        }
    }
    if let Some((i, go, replaying)) = replay {
        if failure.is_none() && !options.cancel.is_cancelled() {
            let _ = go.send(());
        } else {
            // Without the signal the replayer gives up at once; kept alive, it would wait
            // for it forever.
            drop(go);
        }
        match replaying.await {
            Ok(Ok(report)) => {
                run.report.oplog = Some(report);
                run.namespaces[i].indexed = true;
                if let Some(t) = &run.namespaces[i].tracked {
                    t.finish(NamespaceState::Done);
                }
            }
            Ok(Err(e)) => fail(e, &mut failure),
            Err(e) => fail(
                Error::Internal(format!("the oplog replay crashed: {e}")),
                &mut failure,
            ),
        }
    }
    let summary = match join_stream(stream.done).await {
        Ok(summary) => Some(summary),
        Err(e) => {
            failure.get_or_insert(e);
            None
        }
    };
    if options.cancel.is_cancelled() {
        failure = Some(interrupted());
    }
    (summary, failure)
}

/// Routes the archive's oplog (when it has one to replay) to a replayer applying it through
/// `target`, or only planning it when there is none (a dry run). The replayer waits for the
/// returned signal: the plan's index, the signal and the task.
fn spawn_replayer(
    options: &RestoreOptions,
    run: &mut Run,
    target: Option<Arc<crate::source::Source>>,
    routes: &mut HashMap<Namespace, mpsc::Sender<stream::Chunk>>,
    progress: &Arc<Progress>,
    stop: &Arc<AtomicBool>,
) -> Option<(
    usize,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<OplogReport>>,
)> {
    let i = run
        .plans
        .iter()
        .position(|p| p.kind == Kind::Oplog && p.restored())?;
    let (tx, rx) = mpsc::channel(2);
    routes.insert(run.plans[i].data.clone(), tx);
    let counters = Arc::new(Counters::default());
    let tracked = if target.is_some() {
        run.namespaces[i].counters = Some(Arc::clone(&counters));
        run.namespaces[i].tracked.clone()
    } else {
        None
    };
    let (go, wait) = tokio::sync::oneshot::channel();
    let replayer = oplog::Replayer {
        target,
        stop: Arc::clone(stop),
        rules: replay_rules(options, &run.plans),
        counters,
        progress: Arc::clone(progress),
        tracked,
    };
    Some((i, go, tokio::spawn(replayer.run(rx, wait))))
}

/// Build indexes: after the data and the replay, as mongorestore does, so a unique index
/// never sees the in-between states of a fuzzy read.
async fn index_phase(options: &RestoreOptions, target: &Target, run: &mut Run) -> Result<()> {
    if options.no_indexes {
        return Ok(());
    }
    for (p, ns) in run.plans.iter().zip(run.namespaces.iter_mut()) {
        if !inserted(p) {
            continue;
        }
        let specs = p
            .metadata
            .as_ref()
            .map(|m| commands::index_specs(&p.target, m))
            .unwrap_or_default();
        if !specs.is_empty() {
            if let Some(t) = &ns.tracked {
                t.set_state(NamespaceState::Indexes);
            }
            let count = specs.len() as u64;
            let cmd = commands::create_indexes_command(&p.target, specs, target.version);
            let what = format!("createIndexes on {}", p.target);
            if let Err(e) = target.run(&p.target.db, &what, cmd).await {
                if let Some(t) = &ns.tracked {
                    t.set_state(NamespaceState::Failed);
                }
                return Err(e);
            }
            if let Some(t) = &ns.tracked {
                t.finish(NamespaceState::Done);
            }
            ns.indexes = count;
        }
        ns.indexed = true;
    }
    Ok(())
}

/// Report: the run's report, or, when the server refused documents, the error carrying it.
fn report_phase(run: Run) -> Result<RestoreReport> {
    if run.report.totals.failed == 0 {
        return Ok(run.report);
    }
    let first = run
        .report
        .namespaces
        .iter()
        .find_map(|n| n.first_error.as_ref().map(|e| format!("{}: {e}", n.target)))
        .unwrap_or_default();
    let summary = format!(
        "the server refused {} documents (first: {first}); {}",
        run.report.totals.failed,
        run.report.headline()
    );
    Err(Error::RestoreFailed {
        summary,
        report: Box::new(run.report),
    })
}

/// `--dry-run` (or no target): reads and checks the whole archive, plans the users and the
/// oplog replay as they would run, writes nothing.
async fn dry_run(
    options: &RestoreOptions,
    mut reading: Reading,
    target: Option<&Target>,
    mut run: Run,
    progress: &Arc<Progress>,
    stop: &Arc<AtomicBool>,
) -> Result<RestoreReport> {
    let ahead = match read_ahead(&mut reading.stream, reading.read_ahead, &reading.mute).await {
        Ok(docs) => docs,
        Err(e) => {
            drop(reading.stream.routing);
            return Err(join_stream(reading.stream.done).await.err().unwrap_or(e));
        }
    };
    if let Some(docs) = ahead {
        let of = |kind: AuthCollection| {
            run.plans
                .iter()
                .find(|p| p.auth == Some(kind) && p.restored())
                .and_then(|p| docs.get(&p.data))
                .map(Vec::as_slice)
        };
        run.report.users = users::plan(
            target,
            of(AuthCollection::Users),
            of(AuthCollection::Roles),
            options.drop,
        )
        .await?;
    }
    // The replay is planned as it would run, so the dry run lists what it would touch.
    let mut routes = HashMap::new();
    let planned = spawn_replayer(options, &mut run, None, &mut routes, progress, stop).map(
        |(_, go, task)| {
            let _ = go.send(());
            task
        },
    );
    let stream = reading.stream;
    let routing = Routing {
        mute: reading.mute,
        routes,
    };
    if stream.routing.send(Some(routing)).is_err() {
        return Err(join_stream(stream.done).await.err().unwrap_or_else(|| {
            Error::Internal("the archive reader stopped before reading documents".into())
        }));
    }
    let summary = join_stream(stream.done).await;
    if let Some(planned) = planned {
        run.report.oplog = Some(
            planned
                .await
                .map_err(|e| Error::Internal(format!("the oplog replay plan crashed: {e}")))??,
        );
    }
    let summary = summary?;
    run.finish(Some(&summary));
    Ok(run.report)
}

fn interrupted() -> Error {
    Error::Interrupted("stopped by a signal (SIGTERM or SIGINT) at a batch boundary".into())
}

fn decide(
    p: &NamespacePlan,
    existing: &HashMap<String, HashMap<String, Document>>,
    drop: bool,
) -> Action {
    if !p.restored() {
        return Action::Skip;
    }
    if p.auth.is_some() {
        return Action::Merge;
    }
    if p.kind == Kind::Oplog {
        return Action::Replay;
    }
    let names = existing.get(&p.target.db);
    let present = names.is_some_and(|n| {
        n.contains_key(&p.target.collection)
            || (p.kind == Kind::Timeseries && n.contains_key(&p.insert_into.collection))
    });
    match (present, drop) {
        (false, _) => Action::Create,
        (true, true) if !p.target.collection.starts_with("system.") => Action::DropAndCreate,
        (true, _) => Action::UseExisting,
    }
}

async fn prepare(
    target: &Target,
    p: &NamespacePlan,
    action: Action,
    options: &RestoreOptions,
    wrote: &mut bool,
) -> Result<()> {
    if matches!(
        action,
        Action::Skip | Action::UseExisting | Action::Merge | Action::Replay
    ) {
        return Ok(());
    }
    // A command refused for lack of privilege changed nothing, so it does not count as a
    // write: a user who may not create collections leaves the target untouched.
    if action == Action::DropAndCreate {
        let dropped = target.drop(&p.target).await;
        *wrote |= may_have_written(&dropped);
        dropped?;
    }
    let create = commands::create_command(
        &p.target,
        p.metadata.as_ref(),
        target.version,
        options.preserve_uuid,
    );
    let uuid = p
        .metadata
        .as_ref()
        .and_then(|m| m.uuid.as_deref())
        .and_then(commands::uuid_from_hex);
    let created = match uuid.filter(|_| options.preserve_uuid) {
        Some(uuid) => {
            let cmd = commands::apply_ops_create(&p.target, create, uuid);
            target
                .run("admin", &format!("applyOps create {}", p.target), cmd)
                .await
        }
        None => {
            if options.preserve_uuid {
                tracing::warn!(ns = %p.target, "no UUID in the archive; created with a new one");
            }
            target
                .run(&p.target.db, &format!("create {}", p.target), create)
                .await
        }
    };
    *wrote |= may_have_written(&created);
    created.map(drop)
}

fn may_have_written<T>(result: &Result<T>) -> bool {
    !matches!(result, Err(Error::MongoPermission { .. }))
}

/// Checks the archive's auth-schema version against the target's (before any write), then
/// merges the archive's users and roles, recording them in the report like any namespace.
async fn restore_users(
    target: &Target,
    header: &nightdump_archive::Header,
    docs: &HashMap<Namespace, Vec<RawDocumentBuf>>,
    options: &RestoreOptions,
    run: &mut Run,
    progress: &Arc<Progress>,
) -> Result<()> {
    let plans = &run.plans;
    let find = |kind: AuthCollection| {
        plans
            .iter()
            .position(|p| p.auth == Some(kind) && (p.restored() || kind == AuthCollection::Version))
    };
    let of = |i: Option<usize>| i.and_then(|i| docs.get(&plans[i].data)).map(Vec::as_slice);
    let (users, roles) = (find(AuthCollection::Users), find(AuthCollection::Roles));
    let archive = users::archive_version(header, of(find(AuthCollection::Version)))?;
    let server = users::server_version(target).await?;
    users::check_versions(archive, server)?;
    let changes = users::plan(Some(target), of(users), of(roles), options.drop).await?;
    if options.drop {
        let connected = users::connected_users(target).await?;
        users::check_connected(&changes, &connected, options.allow_dropping_connected_user)?;
    }
    let (users_docs, roles_docs) = (of(users), of(roles));
    run.report.users = changes;
    run.wrote = true;
    let merged = users::merge(target, users_docs, roles_docs, options.drop).await?;
    for (i, m) in [(users, merged.0), (roles, merged.1)] {
        let Some(i) = i else { continue };
        let counters = Counters::default();
        counters.inserted.store(m.restored, Ordering::Relaxed);
        counters.skipped.store(m.kept, Ordering::Relaxed);
        counters.ended.store(true, Ordering::Relaxed);
        let ns = &mut run.namespaces[i];
        ns.counters = Some(Arc::new(counters));
        ns.prepared = true;
        ns.indexed = true;
        if let Some(t) = &ns.tracked {
            t.add(m.restored + m.kept, 0);
            t.finish(NamespaceState::Done);
        }
        Progress::add(&progress.namespaces_done, 1);
        Progress::add(&progress.documents, m.restored + m.kept);
    }
    Ok(())
}

/// Where one namespace of the plan got to.
#[derive(Default)]
struct NamespaceRun {
    /// Its collection was created (or kept, or dropped and created).
    prepared: bool,
    /// Its indexes were built (or it needs none).
    indexed: bool,
    indexes: u64,
    /// Its insert worker's (or the replay's, or the user merge's) counts.
    counters: Option<Arc<Counters>>,
    /// What the progress display follows.
    tracked: Option<Arc<NamespaceProgress>>,
}

/// What one restore accumulates for its report.
struct Run {
    report: RestoreReport,
    plans: Vec<NamespacePlan>,
    actions: Vec<Action>,
    /// One per plan, in plan order.
    namespaces: Vec<NamespaceRun>,
    wrote: bool,
    started: Instant,
}

impl Run {
    fn new(
        options: &RestoreOptions,
        source: String,
        plans: Vec<NamespacePlan>,
        actions: Vec<Action>,
        started: Instant,
    ) -> Self {
        let namespaces = plans.iter().map(|_| NamespaceRun::default()).collect();
        Run {
            report: RestoreReport {
                source,
                target: options.target.as_ref().map(|u| u.redacted().to_string()),
                dry_run: options.dry_run,
                namespaces: Vec::new(),
                totals: Totals::default(),
                oplog: None,
                users: Vec::new(),
                error: None,
                duration_seconds: 0.0,
            },
            plans,
            actions,
            namespaces,
            wrote: false,
            started,
        }
    }

    fn finish(&mut self, summary: Option<&StreamSummary>) {
        let dry_run = self.report.dry_run;
        self.report.namespaces = self
            .plans
            .iter()
            .zip(&self.actions)
            .zip(&self.namespaces)
            .map(|((p, &action), ns)| {
                let counters = ns.counters.as_deref();
                let get = |f: fn(&Counters) -> u64| counters.map(f).unwrap_or(0);
                let inserted = get(|c| Counters::get(&c.inserted));
                let skipped = get(|c| Counters::get(&c.skipped));
                let failed = get(|c| Counters::get(&c.failed));
                let seen = summary.and_then(|s| s.namespaces.get(&p.data));
                let ended = match counters {
                    Some(c) => c.ended.load(Ordering::Relaxed),
                    None => seen.is_some(),
                };
                let status = if action == Action::Skip {
                    Status::Skipped
                } else if dry_run {
                    Status::Planned
                } else if ns.prepared && ended && (ns.indexed || p.kind == Kind::View) {
                    Status::Complete
                } else if (ns.prepared && action != Action::UseExisting)
                    || inserted + skipped + failed > 0
                {
                    Status::Partial
                } else {
                    Status::NotStarted
                };
                NamespaceReport {
                    source: p.source.to_string(),
                    target: p.target.to_string(),
                    kind: p.kind,
                    action,
                    skip_reason: p.skip,
                    status,
                    archive_documents: seen.map(|s| s.documents),
                    inserted,
                    skipped,
                    failed,
                    indexes_created: ns.indexes,
                    first_error: counters.and_then(Counters::first_error),
                }
            })
            .collect();
        self.report.compute_totals();
        self.report.duration_seconds = self.started.elapsed().as_secs_f64();
    }

    /// The error to return: as it is when nothing was written, otherwise wrapped with the
    /// report of what was and was not restored.
    fn fail(mut self, summary: Option<&StreamSummary>, cause: Error) -> Error {
        let cause = cause.in_restore();
        if !self.wrote {
            return cause;
        }
        self.finish(summary);
        self.report.error = Some(cause.to_string());
        // Damage found in the archive: what was restored from the namespace it was found in
        // may be the damaged bytes, so no advice may keep it ("already present" on a rerun).
        let damaged = match &cause {
            Error::ArchiveAt { ns, .. } => self
                .plans
                .iter()
                .position(|p| p.data.to_string() == *ns || p.source.to_string() == *ns),
            _ => None,
        };
        let summary = match damaged {
            Some(i) => {
                let row = &mut self.report.namespaces[i];
                row.status = Status::Damaged;
                let target = row.target.clone();
                format!(
                    "restore stopped: {cause}; so far {}. The archive is damaged: documents restored into {target} may hold the damaged bytes: drop {target} on the target and restore from an intact backup (`nightdump verify` checks one); do not run this archive again, it would keep them as already present",
                    self.report.headline()
                )
            }
            None => format!(
                "restore stopped: {cause}; so far {}. Fix the cause and run it again: documents already restored are skipped",
                self.report.headline()
            ),
        };
        Error::RestoreFailed {
            summary,
            report: Box::new(self.report),
        }
    }
}

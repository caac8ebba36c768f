//! The command line: argument parsing and validation (before any I/O), then one call into
//! the library per command, with results on stdout and logs on stderr.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod drill;
mod pitr;
mod progress_bar;
mod prune;
pub mod task;

use nightdump::backup::{self, BackupOptions};
use nightdump::catalog::{self, Selector};
use nightdump::error::{Error, Result};
use nightdump::namespace::{NamespaceFilter, NamespacePattern};
use nightdump::progress::Progress;
use nightdump::secret::ConnectionString;
use nightdump::settings;
use nightdump::source::SourceOptions;
use nightdump::store::{Destination, S3Options, Sse, Store};

#[derive(Debug, Parser)]
#[command(
    name = "nightdump",
    version,
    about = "Backs up MongoDB as mongodump-compatible gzip archives, to a directory or S3."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log verbosity (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, global = true, env = "NIGHTDUMP_LOG", default_value = "warn")]
    pub log: String,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up a whole deployment into one archive.
    Backup(BackupArgs),
    /// Store the oplog written since the last capture as one slice, for restores to any
    /// instant between backups (run it every few minutes).
    Oplog(OplogArgs),
    /// List the backups at a destination, newest first.
    List(ListArgs),
    /// Show the last successful backup and its age.
    Status(StatusArgs),
    /// Re-read a stored backup and check it against its manifest (no MongoDB needed).
    Verify(VerifyArgs),
    /// Write a backup's archive to stdout, e.g. for `mongorestore --gzip --archive`.
    Cat(CatArgs),
    /// Restore a backup, or any mongodump archive, into MongoDB.
    Restore(RestoreArgs),
    /// Prove a backup restores: restore it into a scratch deployment, read every namespace
    /// back, compare counts, content digests, indexes and options with its manifest, drop
    /// what was restored, and store the result under drills/.
    Drill(drill::DrillArgs),
    /// Remove backups a retention policy no longer keeps (a dry run without --yes).
    Prune(PruneArgs),
    /// Estimate a nightly run from the deployment's sizes: duration, memory, stored size and
    /// cost at several Lambda memory sizes, and whether one Lambda run holds it.
    Estimate(EstimateArgs),
    /// Run one scheduled backup or oplog capture as a container task (the Fargate engine):
    /// the Lambda function's NIGHTDUMP_* settings, the event in NIGHTDUMP_EVENT, the deadline
    /// in NIGHTDUMP_TASK_TIMEOUT; exits with the run's code.
    Task,
}

#[derive(Debug, Args)]
pub struct EstimateArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Only these namespaces, as the backup would take them. Repeatable.
    #[arg(long = "include", value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Leave out these namespaces. Repeatable.
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Print the estimate as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Use path-style S3 addressing (for S3-compatible endpoints such as MinIO or moto).
    #[arg(long, env = "NIGHTDUMP_S3_PATH_STYLE", value_parser = switch)]
    pub s3_path_style: bool,
    /// AWS region of the bucket (default: from the AWS configuration).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
}

/// Where a backup or a capture reads from.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// MongoDB connection string (mongodb:// or mongodb+srv://).
    #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
    pub uri: Option<String>,
    /// Read preference for the source.
    #[arg(long, default_value = "secondaryPreferred")]
    pub read_preference: String,
    /// How long to wait for a reachable server before giving up.
    #[arg(long, default_value = "30s", allow_hyphen_values = true)]
    pub connect_timeout: String,
}

impl SourceArgs {
    fn options(&self) -> Result<SourceOptions> {
        let uri = self.uri.as_deref().ok_or_else(|| {
            Error::invalid("no MongoDB source: pass --uri mongodb://HOST:PORT/ or set MONGODB_URI")
        })?;
        Ok(SourceOptions {
            uri: ConnectionString::parse(uri).map_err(Error::Invalid)?,
            read_preference: self
                .read_preference
                .parse()
                .map_err(|e: String| Error::invalid(format!("--read-preference: {e}")))?,
            server_selection_timeout: parse_connect_timeout(&self.connect_timeout)?,
        })
    }
}

/// Where and how a backup or a capture stores what it writes.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Where to write: a directory, file:///path, or s3://bucket/prefix.
    #[arg(long, env = "NIGHTDUMP_TO", default_value = "./backups")]
    pub to: String,
    /// gzip level, 1 (fastest) to 9 (smallest).
    #[arg(long, default_value_t = 6, allow_negative_numbers = true, value_parser = whole_number::<u32>)]
    pub compression_level: u32,
    /// Server-side encryption for S3: none, s3 (AES256) or kms.
    #[arg(long, env = "NIGHTDUMP_SSE")]
    pub sse: Option<String>,
    /// KMS key for SSE-KMS (implies --sse kms).
    #[arg(long, env = "NIGHTDUMP_KMS_KEY_ID")]
    pub kms_key_id: Option<String>,
    /// S3 storage class (e.g. STANDARD_IA).
    #[arg(long, env = "NIGHTDUMP_STORAGE_CLASS")]
    pub storage_class: Option<String>,
    /// Size of the first multipart parts on S3 (5MiB to 5GiB; default 8MiB). Larger parts
    /// follow on their own: sized for the database before the dump, doubled every 1,000
    /// parts, so any archive up to S3's 5 TiB limit stores.
    #[arg(long, env = "NIGHTDUMP_PART_SIZE", value_name = "SIZE")]
    pub part_size: Option<String>,
    /// Encrypt what is stored: age:<recipient> (an age1… public key, repeatable: any one of
    /// the recipients' identities decrypts), or kms:<key-id> (envelope encryption with a data
    /// key from AWS KMS; key id, ARN or alias/NAME).
    #[arg(long = "encrypt", value_name = "age:RECIPIENT|kms:KEY")]
    pub encrypt: Vec<String>,
    /// S3 Object Lock on every object written: governance or compliance (the bucket must
    /// have Object Lock enabled). Needs --retain-for.
    #[arg(long, env = "NIGHTDUMP_OBJECT_LOCK", value_name = "MODE")]
    pub object_lock: Option<String>,
    /// How long each object is locked, from the run's start (e.g. 35d).
    #[arg(
        long,
        env = "NIGHTDUMP_RETAIN_FOR",
        value_name = "SPAN",
        allow_hyphen_values = true
    )]
    pub retain_for: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl TargetArgs {
    /// The destination and its S3 settings, checked together.
    fn settings(&self) -> Result<(Destination, S3Options)> {
        let destination = parse_destination("--to", &self.to)?;
        let sse = settings::sse(
            ("--sse", self.sse.as_deref()),
            ("--kms-key-id", self.kms_key_id.as_deref()),
        )?;
        let storage_class = self
            .storage_class
            .as_deref()
            .map(|c| settings::storage_class("--storage-class", c))
            .transpose()?;
        let object_lock = nightdump::store::ObjectLock::parse(
            "--object-lock",
            self.object_lock.as_deref(),
            "--retain-for",
            self.retain_for.as_deref(),
        )
        .map_err(Error::Invalid)?;
        if object_lock.is_some() && matches!(destination, Destination::Local { .. }) {
            return Err(Error::invalid(format!(
                "--object-lock needs an S3 destination; {destination} is a directory: write to s3://BUCKET/PREFIX or leave out --object-lock"
            )));
        }
        let mut s3 = s3_options(&self.store, sse, storage_class);
        s3.object_lock = object_lock;
        if let Some(size) = &self.part_size {
            s3.part_size = settings::part_size("--part-size", size)?;
        }
        s3.validate().map_err(|e| Error::invalid(e.to_string()))?;
        Ok((destination, s3))
    }

    fn encrypt(&self) -> Result<Option<nightdump::crypto::Encrypt>> {
        nightdump::crypto::Encrypt::parse_all("--encrypt", &self.encrypt)
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Only these namespaces (mongorestore patterns: db.*, db.coll, *.coll). Repeatable.
    #[arg(long = "include", value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Skip these namespaces. Repeatable.
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Collections read at once.
    #[arg(long, default_value_t = 4, allow_negative_numbers = true, value_parser = whole_number::<usize>)]
    pub parallel: usize,
    /// Threads compressing the archive (default: every core this process may use).
    #[arg(
        long,
        env = "NIGHTDUMP_COMPRESS_THREADS",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub compress_threads: Option<String>,
    /// The schedule time this backup stands for (RFC 3339); names the backup deterministically.
    #[arg(long)]
    pub scheduled_at: Option<String>,
    /// Unfinished uploads under the destination older than this are a killed run's and are
    /// aborted before the backup starts.
    #[arg(
        long,
        env = "NIGHTDUMP_STALE_UPLOAD_AGE",
        default_value = "12h",
        allow_hyphen_values = true
    )]
    pub stale_upload_age: String,
    /// Back up a source that cannot be made consistent to one point in time (a standalone
    /// server, a mongos, or --no-oplog) instead of refusing; each collection is then as of
    /// its own read.
    #[arg(long, env = "NIGHTDUMP_ALLOW_INCONSISTENT", value_parser = switch)]
    pub allow_inconsistent: bool,
    /// Do not capture the oplog on a replica set (needs --allow-inconsistent).
    #[arg(long)]
    pub no_oplog: bool,
    /// Make the backup even when --include/--exclude select no collection (only admin's
    /// users, roles and auth version would be in it); refused otherwise.
    #[arg(long, env = "NIGHTDUMP_ALLOW_EMPTY", value_parser = switch)]
    pub allow_empty: bool,
    /// No progress bar and no summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OplogArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// No summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl OplogArgs {
    /// Every check that needs no network.
    pub fn to_options(&self) -> Result<(nightdump::pitr::CaptureOptions, Destination)> {
        let source = self.source.options()?;
        let (destination, s3) = self.target.settings()?;
        let options = nightdump::pitr::CaptureOptions {
            source,
            s3,
            encrypt: self.target.encrypt()?,
            compression_level: self.target.compression_level,
            deadline: None,
            cancel: Default::default(),
        };
        options.validate()?;
        Ok((options, destination))
    }
}

#[derive(Debug, Args)]
pub struct FromArgs {
    /// The destination to read: a directory, file:///path, or s3://bucket/prefix.
    #[arg(long, env = "NIGHTDUMP_FROM", default_value = "./backups")]
    pub from: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub from: FromArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub from: FromArgs,
    /// Exit with code 7 when the last success is older than this (e.g. 26h).
    #[arg(long, allow_hyphen_values = true)]
    pub max_age: Option<String>,
    /// Exit with code 7 when the newest stored oplog entry is older than this (e.g. 30m), or
    /// the point-in-time window is broken by a gap.
    #[arg(long, allow_hyphen_values = true)]
    pub max_lag: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// The age identity file for encrypted backups.
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// An age identity file (as age-keygen writes) to decrypt an encrypted backup with.
    #[arg(long, env = "NIGHTDUMP_AGE_IDENTITY", value_name = "FILE")]
    pub identity: Option<std::path::PathBuf>,
}

impl IdentityArgs {
    pub fn load(&self) -> Result<Option<nightdump::crypto::Keys>> {
        self.identity
            .as_deref()
            .map(nightdump::crypto::Keys::from_file)
            .transpose()
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A backup id or `latest`.
    #[arg(default_value = "latest")]
    pub backup: String,
    /// Verify the oplog chain instead: every slice's SHA-256 and entry count, and that each
    /// slice starts where the one before it ends.
    #[arg(long)]
    pub oplog: bool,
    /// Verify a mongodump directory dump instead (`mongodump --out DIR`, plain or `--gzip`),
    /// in a directory or at s3://bucket/prefix: every file read, every document parsed, each
    /// collection checked against its metadata.
    #[arg(long, value_name = "PATH", conflicts_with = "oplog")]
    pub dir: Option<String>,
    #[command(flatten)]
    pub from: FromArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// A backup id or `latest`.
    #[arg(default_value = "latest")]
    pub backup: String,
    #[command(flatten)]
    pub from: FromArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Write the stored bytes as they are (still encrypted, if the backup is).
    #[arg(long, conflicts_with = "to_time")]
    pub raw: bool,
    /// Write one archive that restores to this instant (inclusive; RFC 3339, or T:I as in
    /// the oplog): the newest backup before it, with every oplog entry up to it from the
    /// slices, for `mongorestore --gzip --archive --oplogReplay`.
    #[arg(long, value_name = "INSTANT")]
    pub to_time: Option<String>,
}

pub use prune::PruneArgs;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup id or `latest` (ignored with --archive).
    #[arg(default_value = "latest")]
    pub backup: String,
    /// The destination holding the backup: a directory, file:///path, or s3://bucket/prefix
    /// (default ./backups).
    #[arg(long, env = "NIGHTDUMP_FROM")]
    pub from: Option<String>,
    /// The newest successful backup finished at or before this time (RFC 3339).
    #[arg(long, conflicts_with = "archive")]
    pub at: Option<String>,
    /// Restore the state at this instant (inclusive; RFC 3339, or T:I as in the oplog): the
    /// newest backup before it, then its oplog and the slices replayed up to it.
    #[arg(long, value_name = "INSTANT", conflicts_with_all = ["archive", "at", "oplog_limit", "no_oplog_replay"])]
    pub to_time: Option<String>,
    /// Restore a mongodump archive file instead (gzipped or not); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub archive: Option<String>,
    /// Restore a mongodump directory dump instead (`mongodump --out DIR`, plain or `--gzip`,
    /// its oplog.bson replayed), from a directory or s3://bucket/prefix.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["archive", "at", "to_time"])]
    pub dir: Option<String>,
    /// MongoDB connection string of the target.
    #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
    pub uri: Option<String>,
    /// Only these namespaces of the archive (DB.COLL, DB.*, *.COLL). Repeatable.
    #[arg(long = "include", value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Leave out these namespaces. Repeatable.
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Restore under another name: 'FROM=TO' with matching `*`s, e.g. 'shop.*=shop_copy.*'.
    #[arg(long = "rename", value_name = "FROM=TO")]
    pub rename: Vec<String>,
    /// Drop each target collection before restoring it (never system.*).
    #[arg(long)]
    pub drop: bool,
    /// Do not build secondary indexes.
    #[arg(long)]
    pub no_indexes: bool,
    /// Read and check the archive and print the plan; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Create collections with their archived UUIDs (needs --drop).
    #[arg(long)]
    pub preserve_uuid: bool,
    /// Restore users and roles too, merged into the target's as mongorestore does (--drop
    /// replaces the target's users and roles with the archive's).
    #[arg(long)]
    pub with_users: bool,
    /// With --with-users --drop, remove the user this restore is connected as when the
    /// archive does not have it (refused otherwise: the restore would lock itself out).
    #[arg(long)]
    pub allow_dropping_connected_user: bool,
    /// Insert commands in flight at once.
    #[arg(long, default_value_t = 4, allow_negative_numbers = true, value_parser = whole_number::<usize>)]
    pub parallel: usize,
    /// Do not replay the archive's oplog (replayed by default when the archive has one).
    #[arg(long, conflicts_with_all = ["oplog_replay", "oplog_limit", "replay_new_collections"])]
    pub no_oplog_replay: bool,
    /// Require the oplog to be replayed: fail when the archive has none.
    #[arg(long)]
    pub oplog_replay: bool,
    /// Also replay the oplog entries of collections the archive does not hold (created after
    /// the backup started), as mongorestore --oplogReplay does: for an archive written by
    /// `nightdump cat --to-time`. Implied by --to-time.
    #[arg(long)]
    pub replay_new_collections: bool,
    /// Replay only oplog entries before this time: SECONDS[:INCREMENT] (as mongorestore's
    /// --oplogLimit) or an RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    pub oplog_limit: Option<String>,
    /// Skip checking the stored archive's size and SHA-256 before the first write.
    #[arg(long)]
    pub no_verify_first: bool,
    /// How long to wait for a reachable server before giving up.
    #[arg(long, default_value = "30s", allow_hyphen_values = true)]
    pub connect_timeout: String,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// No progress bar and no table.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl RestoreArgs {
    /// Every check that needs no network.
    pub fn to_options(&self) -> Result<nightdump::restore::RestoreOptions> {
        let target = self
            .uri
            .as_deref()
            .map(|u| ConnectionString::parse(u).map_err(Error::Invalid))
            .transpose()?;
        // Two ways of naming what to restore are refused rather than one silently winning.
        if self.archive.is_some() && self.from.is_some() {
            return Err(Error::invalid(
                "--archive and --from (or NIGHTDUMP_FROM) both name what to restore: give only one",
            ));
        }
        if self.dir.is_some() && self.from.is_some() {
            return Err(Error::invalid(
                "--dir and --from (or NIGHTDUMP_FROM) both name what to restore: give only one",
            ));
        }
        if self.backup != "latest"
            && (self.archive.is_some()
                || self.dir.is_some()
                || self.at.is_some()
                || self.to_time.is_some())
        {
            let other = if self.archive.is_some() {
                "--archive"
            } else if self.dir.is_some() {
                "--dir"
            } else if self.at.is_some() {
                "--at"
            } else {
                "--to-time"
            };
            return Err(Error::invalid(format!(
                "a backup id ({}) and {other} both name what to restore: give only one",
                self.backup.chars().take(40).collect::<String>()
            )));
        }
        let mut options = nightdump::restore::RestoreOptions::new(target);
        options.server_selection_timeout = parse_connect_timeout(&self.connect_timeout)?;
        options.filter = NamespaceFilter {
            include: parse_patterns("--include", &self.include)?,
            exclude: parse_patterns("--exclude", &self.exclude)?,
        };
        options.renames = settings::renames("--rename", self.rename.iter().map(String::as_str))?;
        options.drop = self.drop;
        options.no_indexes = self.no_indexes;
        options.dry_run = self.dry_run;
        options.preserve_uuid = self.preserve_uuid;
        options.allow_dropping_connected_user = self.allow_dropping_connected_user;
        options.with_users = self.with_users;
        options.parallel = self.parallel;
        options.keys = self.identity.load()?;
        options.oplog_replay = !self.no_oplog_replay;
        options.require_oplog = self.oplog_replay;
        options.oplog_limit = self
            .oplog_limit
            .as_deref()
            .map(|l| settings::oplog_time("--oplog-limit", l))
            .transpose()?;
        options.replay_new_namespaces = self.replay_new_collections || self.to_time.is_some();
        if self.to_time.is_some() {
            options.require_oplog = true;
        }
        options.validate()?;
        Ok(options)
    }
}

/// A switch read from its variable takes what the Lambda's do (1, 0, true, false): one rule
/// for both front ends, from the settings layer.
fn switch(value: &str) -> std::result::Result<bool, String> {
    settings::switch("the value", Some(value)).map_err(|e| e.to_string())
}

/// A count option: a negative or non-numeric value is named as such, rather than being
/// taken for an unknown option.
fn whole_number<T: std::str::FromStr>(s: &str) -> std::result::Result<T, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number: give a positive count, e.g. 4"))
}

// Every value is checked by the settings layer, as the Lambda's are: the same verdict for
// the same value, the error naming the flag.
fn parse_duration(flag: &str, value: &str) -> Result<Duration> {
    settings::duration(flag, value)
}

fn parse_connect_timeout(value: &str) -> Result<Duration> {
    settings::connect_timeout("--connect-timeout", value)
}

fn parse_patterns(flag: &str, values: &[String]) -> Result<Vec<NamespacePattern>> {
    settings::patterns(flag, values.iter().map(String::as_str))
}

fn parse_destination(flag: &str, value: &str) -> Result<Destination> {
    settings::destination(flag, value)
}

/// A dump directory to read: like a destination, but a local one must already be a
/// directory (the store's own message is a writer's: "create the directory").
async fn open_dump_dir(value: &str, args: &StoreArgs) -> Result<Store> {
    if let Destination::Local { root } = parse_destination("--dir", value)? {
        if !root.is_dir() {
            return Err(Error::invalid(format!(
                "--dir {}: no such directory: give the folder mongodump --out wrote (or s3://bucket/prefix)",
                root.display()
            )));
        }
    }
    open_store("--dir", value, args).await
}

fn s3_options(args: &StoreArgs, sse: Sse, storage_class: Option<String>) -> S3Options {
    S3Options {
        force_path_style: args.s3_path_style,
        region: args.region.clone(),
        sse,
        storage_class,
        ..S3Options::default()
    }
}

impl BackupArgs {
    /// Every check that needs no network, so a typo fails in milliseconds.
    pub fn to_options(&self) -> Result<(BackupOptions, Destination, S3Options)> {
        let source = self.source.options()?;
        let (destination, s3) = self.target.settings()?;
        let options = BackupOptions {
            source,
            filter: NamespaceFilter {
                include: parse_patterns("--include", &self.include)?,
                exclude: parse_patterns("--exclude", &self.exclude)?,
            },
            parallel: self.parallel,
            scheduled_at: self
                .scheduled_at
                .as_deref()
                .map(|s| settings::schedule_time("--scheduled-at", s))
                .transpose()?,
            compression_level: self.target.compression_level,
            compress_threads: match &self.compress_threads {
                Some(n) => settings::compress_threads("--compress-threads", n)?,
                None => nightdump::backup::compress::available_threads(),
            },
            deadline: None,
            s3,
            encrypt: self.target.encrypt()?,
            stale_upload_age: parse_duration("--stale-upload-age", &self.stale_upload_age)?,
            oplog: !self.no_oplog,
            allow_inconsistent: self.allow_inconsistent,
            allow_empty: self.allow_empty,
        };
        options.validate()?;
        let s3 = options.s3.clone();
        Ok((options, destination, s3))
    }
}

/// Where `--from` and `--to` point when not given.
const DEFAULT_DESTINATION: &str = "./backups";

pub async fn open_store(dest_flag: &str, dest: &str, args: &StoreArgs) -> Result<Store> {
    let destination = parse_destination(dest_flag, dest)?;
    let s3 = s3_options(args, Sse::None, None);
    Ok(Store::open(&destination, &s3).await?)
}

fn parse_selector(s: &str) -> Result<Selector> {
    settings::backup_selector(s)
}

/// Runs one parsed command. Returns the process exit code.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Backup(args) => run_backup(args).await,
        Command::Oplog(args) => pitr::run_oplog(args).await,
        Command::List(args) => run_list(args).await,
        Command::Status(args) => run_status(args).await,
        Command::Verify(args) => run_verify(args).await,
        Command::Cat(args) => run_cat(args).await,
        Command::Restore(args) => run_restore(args).await,
        Command::Drill(args) => drill::run(args).await,
        Command::Prune(args) => prune::run(args).await,
        Command::Estimate(args) => run_estimate(args).await,
        // main() runs it through task::run for its exit code; nothing reaches here.
        Command::Task => Ok(()),
    }
}

async fn run_list(args: ListArgs) -> Result<()> {
    let store = open_store("--from", &args.from.from, &args.from.store).await?;
    let backups = catalog::list_with_windows(&store).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(&mut out, &backups);
    } else if backups.is_empty() {
        writeln!(out, "no backups at {}", store.destination()).ok();
    } else {
        writeln!(
            out,
            "{:<23} {:<10} {:>12} {:>10} {:>12}  SELECTION",
            "ID", "STATUS", "SIZE", "NS", "DOCUMENTS"
        )
        .ok();
        for b in &backups {
            let mut note = match (&b.selection, &b.problem) {
                (Some(s), _) => s.clone(),
                (None, Some(p)) => p.clone(),
                (None, None) => String::new(),
            };
            if let Some(w) = b.window.as_ref().filter(|w| w.from_ts != w.to_ts) {
                note.push_str(&format!("; restorable to any instant up to {}", w.to));
            }
            writeln!(
                out,
                "{:<23} {:<10} {:>12} {:>10} {:>12}  {note}",
                b.id,
                b.status,
                b.size.map(human_bytes).unwrap_or_else(|| "-".into()),
                b.namespaces
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                b.documents
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
            )
            .ok();
        }
    }
    Ok(())
}

async fn run_status(args: StatusArgs) -> Result<()> {
    let max_age = args
        .max_age
        .as_deref()
        .map(|s| parse_duration("--max-age", s))
        .transpose()?;
    let max_lag = args
        .max_lag
        .as_deref()
        .map(|s| parse_duration("--max-lag", s))
        .transpose()?;
    let store = open_store("--from", &args.from.from, &args.from.store).await?;
    let mut status = catalog::status(&store, max_age).await?;
    if let Some(w) = status.pitr.as_mut() {
        w.max_lag_seconds = max_lag.map(|d| d.as_secs());
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(&mut out, &status);
    } else {
        match (&status.last_success, status.age_seconds) {
            (Some(last), Some(age)) => {
                writeln!(
                    out,
                    "last successful backup: {} (finished {}, {} ago)",
                    last.backup_id,
                    last.finished_at,
                    human_age(age)
                )
                .ok();
                writeln!(
                    out,
                    "size {}, {} namespaces, {} documents",
                    human_bytes(last.size),
                    last.namespaces,
                    last.documents
                )
                .ok();
            }
            _ => {
                writeln!(out, "no successful backup at {}", status.destination).ok();
            }
        }
        if let Some(p) = &status.newer_partial {
            writeln!(
                out,
                "newer partial backup: {} (finished {}, {}): not a backup of the whole deployment",
                p.backup_id, p.finished_at, p.selection
            )
            .ok();
        }
        if let Some(w) = &status.warning {
            writeln!(out, "warning: {w}").ok();
        }
        if let Some(w) = &status.pitr {
            pitr::print_window(&mut out, w);
        }
        if let Some(d) = &status.last_drill {
            writeln!(
                out,
                "last restore drill: {} of backup {} (finished {}): {}, the restore took {:.1} s",
                d.drill_id,
                d.backup_id,
                d.finished_at,
                if d.passed { "passed" } else { "FAILED" },
                d.restore_seconds
            )
            .ok();
        }
    }
    drop(out);
    match (&status.last_success, status.age_seconds, max_age) {
        (None, _, _) => Err(Error::NoBackups {
            destination: status.destination.clone(),
        }),
        (Some(last), Some(age), Some(max)) if !status.healthy => Err(Error::Stale {
            id: last.backup_id.clone(),
            age: human_age(age),
            max_age: humantime::format_duration(max).to_string(),
        }),
        _ => pitr::check_lag(status.pitr.as_ref(), max_lag, &status.destination),
    }
}

async fn run_verify(args: VerifyArgs) -> Result<()> {
    if args.oplog && args.backup != "latest" {
        return Err(Error::invalid(
            "--oplog verifies the whole oplog chain, not one backup: leave out the backup id, or --oplog",
        ));
    }
    if let Some(dir) = &args.dir {
        return verify_dump_dir(&args, dir).await;
    }
    let selector = parse_selector(&args.backup)?;
    let keys = args.identity.load()?;
    let store = open_store("--from", &args.from.from, &args.from.store).await?;
    if args.oplog {
        let report = pitr::verify_chain(&store, keys.as_ref()).await?;
        let mut out = std::io::stdout().lock();
        if args.json {
            write_json(&mut out, &report);
        } else {
            pitr::print_chain_report(&mut out, &store, &report);
        }
        return Ok(());
    }
    let report = nightdump::verify::verify(&store, &selector, keys.as_ref()).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(&mut out, &report);
    } else {
        writeln!(
            out,
            "backup {} is intact: {} namespaces, {} documents, {} stored, sha256 {}",
            report.backup_id,
            report.namespaces,
            report.documents,
            human_bytes(report.size),
            report.sha256
        )
        .ok();
    }
    Ok(())
}

async fn verify_dump_dir(args: &VerifyArgs, dir: &str) -> Result<()> {
    if args.backup != "latest" {
        return Err(Error::invalid(
            "a backup id and --dir both name what to verify: give only one",
        ));
    }
    let store = open_dump_dir(dir, &args.from.store).await?;
    let report = nightdump::dumpdir::verify(&store).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(&mut out, &report);
    } else {
        for n in &report.namespaces {
            let state = n.problem.as_deref().unwrap_or("ok");
            writeln!(
                out,
                "{:<40} {:<10} {:>9} docs {:>10} {:>2} indexes  {state}",
                n.namespace,
                n.kind,
                n.documents,
                human_bytes(n.bytes),
                n.indexes
            )
            .ok();
        }
        for key in &report.ignored {
            writeln!(out, "not part of a dump, left alone: {key}").ok();
        }
    }
    drop(out);
    match nightdump::dumpdir::damage(&report) {
        Some(e) => Err(e),
        None => {
            if !args.json {
                println!(
                    "dump directory {} is intact: {} namespaces, {} documents",
                    report.dump,
                    report.namespaces.len(),
                    report.namespaces.iter().map(|n| n.documents).sum::<u64>()
                );
            }
            Ok(())
        }
    }
}

async fn run_cat(args: CatArgs) -> Result<()> {
    let to_time = args
        .to_time
        .as_deref()
        .map(|t| settings::to_time("--to-time", t))
        .transpose()?;
    if to_time.is_some() && args.backup != "latest" {
        return Err(Error::invalid(
            "a backup id and --to-time both name what to write: --to-time picks the newest backup before the instant; give only one",
        ));
    }
    let selector = parse_selector(&args.backup)?;
    if std::io::stdout().is_terminal() {
        return Err(Error::invalid(
            "refusing to write a binary archive to a terminal: pipe it, e.g. `nightdump cat latest | mongorestore --gzip --archive`",
        ));
    }
    let keys = args.identity.load()?;
    let store = open_store("--from", &args.from.from, &args.from.store).await?;
    if let Some(to) = to_time {
        return pitr::cat_to_time(store, to, keys.as_ref(), tokio::io::stdout()).await;
    }
    nightdump::cat::cat(
        &store,
        &selector,
        keys.as_ref(),
        args.raw,
        tokio::io::stdout(),
    )
    .await
}

async fn run_estimate(args: EstimateArgs) -> Result<()> {
    let source = args.source.options()?;
    let filter = NamespaceFilter {
        include: parse_patterns("--include", &args.include)?,
        exclude: parse_patterns("--exclude", &args.exclude)?,
    };
    let e =
        nightdump::estimate::estimate(&source, &filter, nightdump::estimate::DRAIN_MIB_PER_SECOND)
            .await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(&mut out, &e);
        return Ok(());
    }
    writeln!(
        out,
        "{}: {} collections, {} documents, {} of BSON; a sample compresses to {:.0}% (gzip 6), so about {} stored",
        e.target,
        e.collections,
        e.documents,
        human_bytes(e.bson_bytes),
        e.compression_ratio * 100.0,
        human_bytes(e.stored_bytes)
    )
    .ok();
    writeln!(
        out,
        "{:>10} {:>6} {:>9} {:>10} {:>5} {:>12} {:>12}",
        "MEMORY MB", "VCPUS", "SECONDS", "PEAK MIB", "FITS", "$/RUN", "$/MONTH"
    )
    .ok();
    for r in &e.runs {
        writeln!(
            out,
            "{:>10} {:>6.2} {:>9.0} {:>10.0} {:>5} {:>12.4} {:>12.2}",
            r.memory_mb,
            r.vcpus,
            r.seconds,
            r.peak_memory_mib,
            if r.fits { "yes" } else { "no" },
            r.cost_per_run_usd,
            r.cost_per_month_usd
        )
        .ok();
    }
    writeln!(out, "{}", e.advice).ok();
    Ok(())
}

async fn run_restore(args: RestoreArgs) -> Result<()> {
    use nightdump::restore::{self, Input};
    let options = args.to_options()?;
    let to_time = args
        .to_time
        .as_deref()
        .map(|t| settings::to_time("--to-time", t))
        .transpose()?;
    let store;
    let input = match (args.archive.as_deref(), to_time) {
        (None, None) if args.dir.is_some() => {
            let dir = args.dir.as_deref().unwrap_or_default();
            store = open_dump_dir(dir, &args.store).await?;
            let layout = nightdump::dumpdir::scan(&store).await?;
            Input::Reader {
                name: format!("dump directory {}", layout.name),
                reader: nightdump::dumpdir::archive_reader(store.clone(), layout),
            }
        }
        (Some("-"), _) => Input::Stdin,
        (Some(path), _) => Input::File(path.into()),
        (None, Some(to)) => {
            let from = args.from.as_deref().unwrap_or(DEFAULT_DESTINATION);
            store = open_store("--from", from, &args.store).await?;
            let verify_first = !args.no_verify_first || options.dry_run;
            let to_time =
                nightdump::pitr::prepare(&store, to, options.keys.as_ref(), verify_first).await?;
            Input::Reader {
                name: to_time.name(),
                reader: nightdump::pitr::to_time::open(to_time, store.clone()),
            }
        }
        (None, None) => {
            let selector = match args.at.as_deref() {
                Some(at) => settings::backup_at("--at", at)?,
                None => parse_selector(&args.backup)?,
            };
            let from = args.from.as_deref().unwrap_or(DEFAULT_DESTINATION);
            store = open_store("--from", from, &args.store).await?;
            Input::Backup {
                store: &store,
                selector,
                verify_first: !args.no_verify_first,
            }
        }
    };
    let progress = Arc::new(Progress::default());
    let show_bar = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| progress_bar::spawn(Arc::clone(&progress)));
    let cancel = options.cancel.clone();
    let signals = tokio::spawn(async move {
        let name = nightdump::signal::stop_requested().await;
        tracing::warn!(
            signal = name,
            "stopping the restore at the next batch boundary"
        );
        cancel.cancel();
    });
    let result = restore::run(&options, input, &progress).await;
    signals.abort();
    if let Some(bar) = bar {
        bar.finish().await;
    }
    let report = match &result {
        Ok(report) => Some(report),
        Err(e) => e.restore_report(),
    };
    if let Some(report) = report {
        let mut out = std::io::stdout().lock();
        if args.json {
            write_json(&mut out, report);
        } else if !args.quiet {
            write!(out, "{}", report.table()).ok();
            let verb = if report.dry_run { "dry run" } else { "restore" };
            writeln!(out, "{verb} of {}: {}", report.source, report.headline()).ok();
        }
    }
    result.map(|_| ())
}

async fn run_backup(args: BackupArgs) -> Result<()> {
    let (options, destination, s3) = args.to_options()?;
    let store = Store::open(&destination, &s3).await?;
    let progress = Arc::new(Progress::default());
    let show_bar = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| progress_bar::spawn(Arc::clone(&progress)));
    // A signal drops the backup where it stands: its upload is aborted (and waited for), its
    // temporary files go, nothing is marked successful.
    let result = tokio::select! {
        result = backup::run(&options, &store, &progress) => result,
        name = nightdump::signal::stop_requested() => {
            store.settle().await;
            Err(Error::Interrupted(format!(
                "stopped by {name}: the backup's upload was aborted and nothing was marked successful; run it again"
            )))
        }
    };
    if let Some(bar) = bar {
        bar.finish().await;
    }
    let outcome = result?;
    let m = &outcome.manifest;
    let mut out = std::io::stdout().lock();
    if args.json {
        let summary = serde_json::to_string(&outcome.summary(&destination)).unwrap_or_default();
        writeln!(out, "{summary}").ok();
    } else if !args.quiet {
        if outcome.already_existed {
            writeln!(
                out,
                "backup {} already exists at {}; nothing to do",
                m.backup_id, destination
            )
            .ok();
        } else {
            writeln!(
                out,
                "backup {} complete: {} namespaces, {} documents, {} of BSON stored as {} in {:.1}s",
                m.backup_id,
                m.totals.namespaces,
                m.totals.documents,
                human_bytes(m.totals.bytes),
                human_bytes(m.archive.size),
                m.duration_seconds
            )
            .ok();
            writeln!(out, "archive: {}/{}", destination, m.archive.key).ok();
            if let Some(pit) = &m.point_in_time {
                writeln!(
                    out,
                    "consistent as of {} (oplog {}:{}, {} captured during the backup)",
                    pit.wall.as_deref().unwrap_or("the recorded oplog time"),
                    pit.ts.t,
                    pit.ts.i,
                    match pit.oplog_entries {
                        1 => "1 entry".to_string(),
                        n => format!("{n} entries"),
                    }
                )
                .ok();
            }
        }
        if let Some(w) = &outcome.latest_warning {
            writeln!(out, "warning: latest.json not updated: {w}").ok();
        }
    }
    Ok(())
}

/// A command's result as pretty JSON on stdout (logs never go there).
pub fn write_json(out: &mut impl Write, value: &impl serde::Serialize) {
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
    .ok();
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else if s < 172_800 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{}h", s / 86400, (s % 86400) / 3600)
    }
}

//! Every option of every subcommand, and every setting of the Lambda, given a wrong value:
//! each gives its own one-line message naming the problem and the fix, the documented exit
//! code, fast, and never a panic. One table; a new option is one more row.

use std::collections::HashMap;
use std::time::Duration;

use nightdump::lambda::config::LambdaConfig;

use crate::harness::*;

use crate::secrets::{assert_no_secret, PASSWORD_IN_URI};

/// A syntactically valid source holding the known password; nothing listens there, and no
/// row gets as far as connecting.
pub fn uri() -> String {
    format!("mongodb://backup:{PASSWORD_IN_URI}@127.0.0.1:9/?authSource=admin")
}

/// A bad-input case: the binary's arguments, or the Lambda's environment.
#[derive(Debug, Clone)]
pub enum Input {
    Cli(Vec<String>),
    /// The binary with a setting given through its environment variable.
    CliEnv(Vec<String>, Vec<(&'static str, String)>),
    /// Changes to a valid template environment: `None` removes the variable.
    Env(Vec<(&'static str, Option<String>)>),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub input: Input,
    pub exit_code: i32,
    /// Must appear in the message (case-sensitive).
    pub message: String,
}

/// Files the rows point at: an empty destination, a regular file, an identity file that is
/// not one.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dest")).unwrap();
        std::fs::write(dir.path().join("plain-file"), b"not a directory").unwrap();
        std::fs::write(
            dir.path().join("wrong-key.txt"),
            "# a file of notes, not an age identity\nhello\n",
        )
        .unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

fn cli(args: &[&str], exit_code: i32, message: &str) -> Row {
    Row {
        input: Input::Cli(args.iter().map(|s| s.to_string()).collect()),
        exit_code,
        message: message.to_string(),
    }
}

fn env(changes: &[(&'static str, Option<&str>)], message: &str) -> Row {
    Row {
        input: Input::Env(
            changes
                .iter()
                .map(|(k, v)| (*k, v.map(str::to_string)))
                .collect(),
        ),
        exit_code: 2,
        message: message.to_string(),
    }
}

/// `nightdump backup` with a valid source and destination, then `extra`.
fn backup(f: &Fixture, extra: &[&str], exit_code: i32, message: &str) -> Row {
    let uri = uri();
    let dest = f.path("dest");
    let mut args = vec!["backup", "--uri", &uri, "--to", &dest];
    args.extend_from_slice(extra);
    cli(&args, exit_code, message)
}

pub fn cli_rows(f: &Fixture) -> Vec<Row> {
    let dest = f.path("dest");
    let d = dest.as_str();
    let under_file = format!("{}/sub", f.path("plain-file"));
    let wrong_key = f.path("wrong-key.txt");
    let missing_key = f.path("no-such-key.txt");
    let pw_uri = |scheme: &str| format!("{scheme}backup:{PASSWORD_IN_URI}@db.example:27017/");
    vec![
        // backup: the source
        cli(&["backup", "--to", d], 2, "no MongoDB source: pass --uri"),
        cli(
            &["backup", "--uri", "", "--to", d],
            2,
            "the MongoDB connection string is empty",
        ),
        cli(
            &[
                "backup",
                "--uri",
                &format!("backup:{PASSWORD_IN_URI}@db:27017"),
                "--to",
                d,
            ],
            2,
            "the MongoDB connection string is malformed",
        ),
        cli(
            &["backup", "--uri", &pw_uri("http://"), "--to", d],
            2,
            "unsupported scheme 'http'",
        ),
        cli(
            &[
                "backup",
                "--uri",
                &format!("mongodb://backup:{PASSWORD_IN_URI}@/x"),
                "--to",
                d,
            ],
            2,
            "names no host",
        ),
        // backup: the destination
        cli(
            &["backup", "--uri", &uri(), "--to", ""],
            2,
            "--to: empty destination",
        ),
        cli(
            &["backup", "--uri", &uri(), "--to", "gs://bucket/x"],
            2,
            "gs",
        ),
        cli(
            &["backup", "--uri", &uri(), "--to", "s3://"],
            2,
            "names no bucket",
        ),
        cli(
            &["backup", "--uri", &uri(), "--to", &f.path("missing/dir")],
            4,
            "does not exist",
        ),
        cli(
            &["backup", "--uri", &uri(), "--to", &under_file],
            4,
            "plain-file",
        ),
        // backup: everything else
        backup(f, &["--include", "nodot"], 2, "--include"),
        backup(f, &["--exclude", "a.b", "--exclude", ""], 2, "--exclude"),
        backup(
            f,
            &["--parallel", "0"],
            2,
            "--parallel must be between 1 and 64, got 0",
        ),
        backup(
            f,
            &["--parallel", "65"],
            2,
            "--parallel must be between 1 and 64, got 65",
        ),
        backup(f, &["--parallel", "-1"], 2, "'-1' is not a whole number"),
        backup(
            f,
            &["--parallel", "four"],
            2,
            "'four' is not a whole number",
        ),
        backup(
            f,
            &["--compression-level", "12"],
            2,
            "--compression-level must be between 1 and 9",
        ),
        backup(
            f,
            &["--compression-level", "-3"],
            2,
            "invalid value '-3' for '--compression-level",
        ),
        backup(f, &["--scheduled-at", "yesterday"], 2, "RFC 3339"),
        backup(
            f,
            &["--scheduled-at", "2099-01-01T00:00:00Z"],
            2,
            "--scheduled-at 2099-01-01T00:00:00Z is in the future",
        ),
        backup(f, &["--include", "."], 2, "has an empty database name"),
        backup(
            f,
            &["--include", "shop."],
            2,
            "has an empty collection name",
        ),
        backup(
            f,
            &["--connect-timeout", "0s"],
            2,
            "--connect-timeout must be longer than 0s",
        ),
        cli(
            &[
                "backup",
                "--uri",
                &format!("mongodb://sl:{PASSWORD_IN_URI}/pw@127.0.0.1:9/"),
                "--to",
                d,
            ],
            2,
            "that is not percent-encoded",
        ),
        backup(
            f,
            &["--read-preference", "nearest2"],
            2,
            "unknown read preference 'nearest2'",
        ),
        backup(
            f,
            &["--connect-timeout", "soon"],
            2,
            "--connect-timeout 'soon' is not a duration",
        ),
        backup(
            f,
            &["--stale-upload-age", "-1h"],
            2,
            "--stale-upload-age '-1h' is not a duration",
        ),
        backup(f, &["--sse", "rot13"], 2, "unknown --sse 'rot13'"),
        backup(
            f,
            &["--sse", "s3", "--kms-key-id", "alias/backups"],
            2,
            "--kms-key-id needs --sse kms",
        ),
        backup(f, &["--encrypt", "age:age1short"], 2, "--encrypt"),
        backup(f, &["--encrypt", "rot13:x"], 2, "--encrypt"),
        backup(
            f,
            &["--log-format", "xml"],
            2,
            "invalid value 'xml' for '--log-format",
        ),
        backup(f, &["--log", "loud[["], 2, "--log"),
        backup(
            f,
            &["--frobnicate"],
            2,
            "unexpected argument '--frobnicate'",
        ),
        cli(&["frobnicate"], 2, "unrecognized subcommand 'frobnicate'"),
        // list and status
        cli(&["list", "--from", "ftp://host/x"], 2, "ftp"),
        cli(
            &["list", "--from", &f.path("missing/dir")],
            4,
            "does not exist",
        ),
        cli(
            &["status", "--from", d, "--max-age", "old"],
            2,
            "--max-age 'old' is not a duration",
        ),
        cli(&["status", "--from", d], 5, "no successful backup"),
        // verify and cat
        cli(
            &["verify", "not-an-id", "--from", d],
            2,
            "'not-an-id' is not a backup id",
        ),
        cli(
            &["verify", "20200101T000000Z", "--from", d],
            5,
            "backup 20200101T000000Z not found",
        ),
        cli(
            &["verify", "--from", d, "--identity", &missing_key],
            2,
            "cannot read the age identity file",
        ),
        cli(
            &["verify", "--from", d, "--identity", &wrong_key],
            2,
            "--identity",
        ),
        cli(
            &["cat", "latest!", "--from", d],
            2,
            "'latest!' is not a backup id",
        ),
        // restore
        cli(
            &["restore", "--from", d, "--uri", &pw_uri("mongodb+srv2://")],
            2,
            "unsupported scheme 'mongodb+srv2'",
        ),
        cli(
            &["restore", "--from", d, "--uri", &uri(), "--rename", "foo"],
            2,
            "rename 'foo' has no '='",
        ),
        cli(
            &["restore", "--from", d, "--uri", &uri(), "--at", "yesterday"],
            2,
            "--at",
        ),
        cli(
            &[
                "restore",
                "20261125T030000Z",
                "--at",
                "2026-11-25T04:00:00Z",
                "--from",
                d,
                "--uri",
                &uri(),
            ],
            2,
            "a backup id (20261125T030000Z) and --at both name what to restore",
        ),
        cli(
            &[
                "restore",
                "--archive",
                &f.path("plain-file"),
                "--from",
                d,
                "--uri",
                &uri(),
            ],
            2,
            "--archive and --from (or NIGHTDUMP_FROM) both name what to restore",
        ),
        cli(
            &[
                "restore",
                "--from",
                d,
                "--uri",
                &uri(),
                "--connect-timeout",
                "0s",
            ],
            2,
            "--connect-timeout must be longer than 0s",
        ),
        cli(
            &[
                "restore",
                "--from",
                d,
                "--uri",
                &uri(),
                "--allow-dropping-connected-user",
            ],
            2,
            "--allow-dropping-connected-user only applies to --with-users --drop",
        ),
        cli(
            &["restore", "--from", d, "--uri", &uri(), "--parallel", "-2"],
            2,
            "'-2' is not a whole number",
        ),
        cli(
            &[
                "restore",
                "--from",
                d,
                "--uri",
                &uri(),
                "--include",
                "nodot",
            ],
            2,
            "--include",
        ),
        cli(
            &[
                "restore",
                "--from",
                d,
                "--uri",
                &uri(),
                "--connect-timeout",
                "x",
            ],
            2,
            "--connect-timeout 'x' is not a duration",
        ),
        cli(
            &[
                "restore",
                "--archive",
                &f.path("no-such.archive"),
                "--uri",
                &uri(),
            ],
            2,
            "cannot open archive",
        ),
        cli(
            &["restore", "--from", d, "--uri", &uri()],
            5,
            "no successful backup",
        ),
        // drill
        cli(
            &["drill", "--from", d],
            2,
            "no scratch deployment: pass --uri",
        ),
        cli(
            &["drill", "--from", d, "--uri", "scratch:27017"],
            2,
            "mongodb://",
        ),
        cli(
            &["drill", "not-an-id", "--from", d, "--uri", &uri()],
            2,
            "not-an-id",
        ),
        cli(
            &["drill", "--from", d, "--uri", &uri(), "--parallel", "0"],
            2,
            "--parallel must be between 1 and 64",
        ),
        cli(
            &[
                "drill",
                "--from",
                d,
                "--uri",
                &uri(),
                "--connect-timeout",
                "x",
            ],
            2,
            "--connect-timeout 'x' is not a duration",
        ),
        cli(
            &["drill", "--from", d, "--uri", &uri()],
            5,
            "no successful backup",
        ),
        // restore --dir / verify --dir: mongodump directory dumps
        cli(
            &["restore", "--dir", d, "--uri", &uri()],
            2,
            "holds no mongodump collection files",
        ),
        cli(
            &["restore", "--dir", &f.path("no-such-dir"), "--uri", &uri()],
            2,
            "no-such-dir: no such directory: give the folder mongodump --out wrote",
        ),
        cli(
            &["verify", "--dir", &f.path("plain-file")],
            2,
            "plain-file: no such directory",
        ),
        cli(
            &["restore", "--dir", d, "--from", d, "--uri", &uri()],
            2,
            "--dir and --from (or NIGHTDUMP_FROM) both name what to restore",
        ),
        cli(
            &["restore", "20261125T030000Z", "--dir", d, "--uri", &uri()],
            2,
            "a backup id (20261125T030000Z) and --dir both name what to restore",
        ),
        cli(
            &[
                "restore",
                "--dir",
                d,
                "--archive",
                &f.path("plain-file"),
                "--uri",
                &uri(),
            ],
            2,
            "cannot be used with",
        ),
        cli(
            &["verify", "--dir", d],
            2,
            "holds no mongodump collection files",
        ),
        cli(
            &["verify", "20261125T030000Z", "--dir", d],
            2,
            "a backup id and --dir both name what to verify",
        ),
        cli(&["verify", "--dir", d, "--oplog"], 2, "cannot be used with"),
        // prune
        cli(
            &["prune", "--from", d, "--keep-last", "-1"],
            2,
            "-1 keeps nothing",
        ),
        cli(
            &["prune", "--from", d, "--keep-within", "xx"],
            2,
            "'xx' is not a retention span",
        ),
        cli(
            &["prune", "--from", d, "--keep-daily", "7", "--grace", "soon"],
            2,
            "--grace",
        ),
    ]
    .into_iter()
    .chain(encryption_lock_and_oplog_rows(f))
    .chain(environment_rows(f))
    .chain(point_in_time_rows(f))
    .collect()
}

/// `nightdump oplog`, the instants of `restore`/`cat --to-time`, `status --max-lag`,
/// `verify --oplog`.
fn point_in_time_rows(f: &Fixture) -> Vec<Row> {
    let d = f.path("dest");
    let d = d.as_str();
    let u = uri();
    let u = u.as_str();
    vec![
        cli(&["oplog", "--to", d], 2, "no MongoDB source: pass --uri"),
        cli(&["estimate"], 2, "no MongoDB source: pass --uri"),
        cli(
            &["estimate", "--uri", u, "--include", "nodot"],
            2,
            "--include",
        ),
        cli(
            &["backup", "--uri", u, "--to", d, "--part-size", "4MiB"],
            2,
            "--part-size '4MiB' is not a part size",
        ),
        cli(
            &["oplog", "--uri", u, "--to", d, "--part-size", "huge"],
            2,
            "--part-size 'huge' is not a part size",
        ),
        cli(
            &["oplog", "--uri", u, "--to", d, "--compression-level", "0"],
            2,
            "--compression-level must be between 1 and 9",
        ),
        cli(
            &[
                "oplog",
                "--uri",
                u,
                "--to",
                d,
                "--object-lock",
                "governance",
                "--retain-for",
                "7d",
            ],
            2,
            "--object-lock needs an S3 destination",
        ),
        cli(
            &["oplog", "--uri", u, "--to", d, "--encrypt", "rsa:key"],
            2,
            "--encrypt",
        ),
        cli(&["oplog", "--uri", u, "--to", "ftp://host/x"], 2, "--to"),
        cli(
            &[
                "oplog",
                "--uri",
                u,
                "--to",
                d,
                "--read-preference",
                "nearest-ish",
            ],
            2,
            "--read-preference",
        ),
        cli(
            &["oplog", "--uri", u, "--to", d],
            2,
            "no backup with a point in time at",
        ),
        cli(
            &["restore", "--from", d, "--uri", u, "--to-time", "yesterday"],
            2,
            "--to-time: 'yesterday' is not an instant",
        ),
        cli(
            &["restore", "--from", d, "--uri", u, "--to-time", "12:x"],
            2,
            "--to-time: '12:x' is not an instant",
        ),
        cli(
            &[
                "restore",
                "--from",
                d,
                "--uri",
                u,
                "--to-time",
                "2026-12-03T14:05:00Z",
                "--oplog-limit",
                "1796306700",
            ],
            2,
            "cannot be used with",
        ),
        cli(
            &[
                "restore",
                "20261203T140500Z",
                "--from",
                d,
                "--uri",
                u,
                "--to-time",
                "2026-12-03T14:05:00Z",
            ],
            2,
            "and --to-time both name what to restore",
        ),
        cli(
            &[
                "restore",
                "--from",
                d,
                "--uri",
                u,
                "--to-time",
                "2026-12-03T14:05:00Z",
            ],
            5,
            "has a point in time at or before 2026-12-03T14:05:00Z",
        ),
        cli(
            &[
                "restore",
                "--from",
                d,
                "--uri",
                u,
                "--replay-new-collections",
                "--no-oplog-replay",
            ],
            2,
            "cannot be used with",
        ),
        cli(
            &["cat", "--from", d, "--to-time", "noon"],
            2,
            "--to-time: 'noon' is not an instant",
        ),
        cli(
            &[
                "cat",
                "20261203T140500Z",
                "--from",
                d,
                "--to-time",
                "2026-12-03T14:05:00Z",
            ],
            2,
            "a backup id and --to-time both name what to write",
        ),
        cli(
            &[
                "cat",
                "--from",
                d,
                "--to-time",
                "2026-12-03T14:05:00Z",
                "--raw",
            ],
            2,
            "cannot be used with",
        ),
        cli(
            &["status", "--from", d, "--max-lag", "soon"],
            2,
            "--max-lag",
        ),
        cli(
            &["verify", "20261203T140500Z", "--oplog", "--from", d],
            2,
            "--oplog verifies the whole oplog chain",
        ),
        cli(&["verify", "--oplog", "--from", d], 5, "(no oplog slices)"),
    ]
}

/// Options given through their environment variables: the message says where the value
/// came from.
fn environment_rows(f: &Fixture) -> Vec<Row> {
    let d = f.path("dest");
    let row = |args: &[&str], env: &[(&'static str, &str)], exit_code: i32, message: &str| Row {
        input: Input::CliEnv(
            args.iter().map(|s| s.to_string()).collect(),
            env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ),
        exit_code,
        message: message.to_string(),
    };
    vec![
        row(
            &["backup", "--to", &d],
            &[(
                "MONGODB_URI",
                &format!("http://backup:{PASSWORD_IN_URI}@db/"),
            )],
            2,
            "unsupported scheme 'http'",
        ),
        row(
            &["backup", "--uri", &uri()],
            &[("NIGHTDUMP_TO", "gs://b/x")],
            2,
            "--to: ",
        ),
        row(
            &["list"],
            &[("NIGHTDUMP_FROM", "ftp://host/x")],
            2,
            "--from: ",
        ),
        row(
            &["backup", "--uri", &uri(), "--to", &d],
            &[("NIGHTDUMP_SSE", "rot13")],
            2,
            "unknown --sse 'rot13'",
        ),
        row(
            &["list", "--from", &d],
            &[("NIGHTDUMP_S3_PATH_STYLE", "maybe")],
            2,
            "(the value comes from NIGHTDUMP_S3_PATH_STYLE)",
        ),
        row(
            &["backup", "--uri", &uri(), "--to", &d],
            &[("NIGHTDUMP_ALLOW_INCONSISTENT", "maybe")],
            2,
            "(the value comes from NIGHTDUMP_ALLOW_INCONSISTENT)",
        ),
        row(
            &["backup", "--uri", &uri(), "--to", &d],
            &[("NIGHTDUMP_ALLOW_EMPTY", "maybe")],
            2,
            "(the value comes from NIGHTDUMP_ALLOW_EMPTY)",
        ),
        row(
            &["list", "--from", &d],
            &[("NIGHTDUMP_LOG", "loud[[")],
            2,
            "--log (or NIGHTDUMP_LOG) 'loud[[' is not a log level",
        ),
        row(
            &["verify", "--from", &d],
            &[("NIGHTDUMP_AGE_IDENTITY", &f.path("no-such-key.txt"))],
            2,
            "cannot read the age identity file",
        ),
    ]
}

/// Client-side encryption, Object Lock and the oplog: options added after the first table.
fn encryption_lock_and_oplog_rows(f: &Fixture) -> Vec<Row> {
    let d = f.path("dest");
    let s3 = |extra: &[&str]| {
        let uri = uri();
        let mut args = vec!["backup", "--uri", &uri, "--to", "s3://bkt/p"];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let row = |args: Vec<String>, exit_code: i32, message: &str| Row {
        input: Input::Cli(args),
        exit_code,
        message: message.to_string(),
    };
    vec![
        backup(
            f,
            &["--connect-timeout", "-5s"],
            2,
            "--connect-timeout '-5s' is not a duration",
        ),
        backup(
            f,
            &["--no-oplog"],
            2,
            "--no-oplog leaves the backup inconsistent",
        ),
        backup(
            f,
            &["--encrypt", "kms:"],
            2,
            "--encrypt: '' is not a KMS key",
        ),
        backup(
            f,
            &["--encrypt", "kms:not a key"],
            2,
            "--encrypt: 'not a key' is not a KMS key",
        ),
        backup(
            f,
            &["--object-lock", "compliance", "--retain-for", "30d"],
            2,
            "--object-lock needs an S3 destination",
        ),
        cli(
            &["backup", "--uri", &uri(), "--to", "s3://b/p"],
            2,
            "invalid S3 bucket name \"b\"",
        ),
        row(
            s3(&["--object-lock", "sometimes", "--retain-for", "30d"]),
            2,
            "'sometimes' is not an Object Lock mode",
        ),
        row(
            s3(&["--object-lock", "governance"]),
            2,
            "--object-lock needs --retain-for",
        ),
        row(
            s3(&["--object-lock", "always"]),
            2,
            "'always' is not an Object Lock mode",
        ),
        row(
            s3(&["--object-lock", "governance", "--retain-for", "-3d"]),
            2,
            "--retain-for '-3d' is not a duration",
        ),
        row(
            s3(&["--object-lock", "governance", "--retain-for", "xx"]),
            2,
            "--retain-for 'xx' is not a duration",
        ),
        row(
            s3(&["--retain-for", "30d"]),
            2,
            "--retain-for needs --object-lock",
        ),
        cli(
            &["status", "--from", &d, "--max-age", "-1h"],
            2,
            "--max-age '-1h' is not a duration",
        ),
        cli(
            &[
                "restore",
                "--archive",
                &f.path("wrong-key.txt"),
                "--uri",
                &uri(),
            ],
            6,
            "does not appear to be a mongodump archive",
        ),
        cli(
            &["restore", "--from", &d, "--uri", &uri(), "--preserve-uuid"],
            2,
            "--preserve-uuid needs --drop",
        ),
        cli(
            &[
                "restore",
                "--from",
                &d,
                "--uri",
                &uri(),
                "--oplog-limit",
                "yesterday",
            ],
            2,
            "'yesterday' is not an oplog time",
        ),
        cli(
            &[
                "restore",
                "--from",
                &d,
                "--uri",
                &uri(),
                "--oplog-limit",
                "1764039600",
                "--no-oplog-replay",
            ],
            2,
            "'--oplog-limit <TIME>' cannot be used with '--no-oplog-replay'",
        ),
        cli(
            &["prune", "--from", &d],
            2,
            "prune needs at least one keep rule",
        ),
    ]
}

/// The template's environment, valid: each env row changes one thing.
pub fn template_env() -> HashMap<String, String> {
    [
        ("NIGHTDUMP_TO", "s3://backups/nightdump"),
        (
            "NIGHTDUMP_MONGODB_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/mongo-AbCdEf",
        ),
        ("NIGHTDUMP_SSE", "kms"),
        (
            "NIGHTDUMP_KMS_KEY_ID",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ),
        ("NIGHTDUMP_PARALLEL", "4"),
        ("NIGHTDUMP_INCLUDE", ""),
        ("NIGHTDUMP_EXCLUDE", ""),
        ("NIGHTDUMP_MAX_AGE", "26h"),
        ("NIGHTDUMP_STORAGE_CLASS", "STANDARD"),
        ("NIGHTDUMP_CONNECT_TIMEOUT", "10s"),
        ("AWS_LAMBDA_FUNCTION_NAME", "nightdump"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn env_rows() -> Vec<Row> {
    let plain = uri();
    vec![
        env(&[("NIGHTDUMP_TO", None)], "NIGHTDUMP_TO is not set"),
        env(
            &[("NIGHTDUMP_PART_SIZE", Some("1KiB"))],
            "NIGHTDUMP_PART_SIZE '1KiB' is not a part size",
        ),
        env(&[("NIGHTDUMP_TO", Some("ftp://x/y"))], "NIGHTDUMP_TO: "),
        env(&[("NIGHTDUMP_TO", Some("s3://"))], "names no bucket"),
        env(
            &[("NIGHTDUMP_MONGODB_SECRET_ARN", None)],
            "NIGHTDUMP_MONGODB_SECRET_ARN is not set",
        ),
        env(
            &[("NIGHTDUMP_MONGODB_SECRET_ARN", Some("prod/mongo"))],
            "is not a Secrets Manager secret ARN",
        ),
        env(
            &[("MONGODB_URI", Some(&plain))],
            "a plain connection string is only accepted for local testing",
        ),
        env(
            &[
                ("MONGODB_URI", Some(&plain)),
                ("NIGHTDUMP_ALLOW_PLAIN_URI", Some("1")),
            ],
            "both MONGODB_URI and NIGHTDUMP_MONGODB_SECRET_ARN are set",
        ),
        env(
            &[
                ("NIGHTDUMP_MONGODB_SECRET_ARN", None),
                (
                    "MONGODB_URI",
                    Some(&format!("http://backup:{PASSWORD_IN_URI}@db/")),
                ),
                ("NIGHTDUMP_ALLOW_PLAIN_URI", Some("1")),
            ],
            "MONGODB_URI: unsupported scheme 'http'",
        ),
        env(
            &[
                ("NIGHTDUMP_MONGODB_SECRET_ARN", None),
                ("MONGODB_URI", Some(&plain)),
                ("NIGHTDUMP_ALLOW_PLAIN_URI", Some("yes")),
            ],
            "NIGHTDUMP_ALLOW_PLAIN_URI='yes' is not a switch",
        ),
        env(
            &[("NIGHTDUMP_ALLOW_EMPTY", Some("maybe"))],
            "NIGHTDUMP_ALLOW_EMPTY='maybe' is not a switch",
        ),
        env(
            &[("NIGHTDUMP_SSE", Some("aes"))],
            "unknown NIGHTDUMP_SSE 'aes': use none, s3 or kms",
        ),
        env(
            &[("NIGHTDUMP_SSE", Some("s3"))],
            "NIGHTDUMP_KMS_KEY_ID needs NIGHTDUMP_SSE=kms, not NIGHTDUMP_SSE=s3",
        ),
        env(
            &[("NIGHTDUMP_PARALLEL", Some("0"))],
            "NIGHTDUMP_PARALLEL must be between 1 and 64, got 0",
        ),
        env(
            &[("NIGHTDUMP_PARALLEL", Some("-4"))],
            "NIGHTDUMP_PARALLEL must be between 1 and 64, got -4",
        ),
        env(
            &[("NIGHTDUMP_PARALLEL", Some("four"))],
            "NIGHTDUMP_PARALLEL 'four' is not a whole number",
        ),
        env(
            &[("NIGHTDUMP_INCLUDE", Some("nodot"))],
            "NIGHTDUMP_INCLUDE: ",
        ),
        env(
            &[("NIGHTDUMP_EXCLUDE", Some("a.b,nodot"))],
            "NIGHTDUMP_EXCLUDE: ",
        ),
        env(
            &[("NIGHTDUMP_MAX_AGE", Some("soon"))],
            "NIGHTDUMP_MAX_AGE 'soon' is not a duration",
        ),
        env(
            &[("NIGHTDUMP_STORAGE_CLASS", Some("standard-ia"))],
            "NIGHTDUMP_STORAGE_CLASS 'standard-ia' is not an S3 storage class",
        ),
        env(
            &[("NIGHTDUMP_CONNECT_TIMEOUT", Some("0s"))],
            "NIGHTDUMP_CONNECT_TIMEOUT must be longer than 0s",
        ),
        env(
            &[("NIGHTDUMP_CONNECT_TIMEOUT", Some("-5s"))],
            "NIGHTDUMP_CONNECT_TIMEOUT '-5s' is not a duration",
        ),
        env(
            &[("NIGHTDUMP_STALE_UPLOAD_AGE", Some("half a day"))],
            "NIGHTDUMP_STALE_UPLOAD_AGE 'half a day' is not a duration",
        ),
        env(
            &[("NIGHTDUMP_S3_PATH_STYLE", Some("yes"))],
            "NIGHTDUMP_S3_PATH_STYLE='yes' is not a switch",
        ),
        env(
            &[("NIGHTDUMP_ENCRYPT", Some("age:age1short"))],
            "NIGHTDUMP_ENCRYPT",
        ),
        env(
            &[("NIGHTDUMP_ENCRYPT", Some("rot13:x"))],
            "NIGHTDUMP_ENCRYPT",
        ),
        env(&[("NIGHTDUMP_ENCRYPT", Some("kms:"))], "NIGHTDUMP_ENCRYPT"),
        env(
            &[("NIGHTDUMP_ALLOW_INCONSISTENT", Some("maybe"))],
            "NIGHTDUMP_ALLOW_INCONSISTENT='maybe' is not a switch",
        ),
        env(
            &[("NIGHTDUMP_DRILL_SECRET_ARN", Some("prod/scratch"))],
            "NIGHTDUMP_DRILL_SECRET_ARN 'prod/scratch' is not a Secrets Manager secret ARN",
        ),
        env(
            &[("NIGHTDUMP_DRILL_URI", Some("mongodb://scratch/"))],
            "NIGHTDUMP_DRILL_URI is set but a plain connection string is only accepted for local testing",
        ),
        env(&[("NIGHTDUMP_PRUNE", Some("daily"))], "NIGHTDUMP_PRUNE"),
        env(
            &[("NIGHTDUMP_PRUNE", Some("keep-daily=0"))],
            "NIGHTDUMP_PRUNE",
        ),
        env(
            &[("NIGHTDUMP_OBJECT_LOCK", Some("governance"))],
            "NIGHTDUMP_RETAIN_FOR",
        ),
        env(
            &[
                ("NIGHTDUMP_OBJECT_LOCK", Some("sometimes")),
                ("NIGHTDUMP_RETAIN_FOR", Some("30d")),
            ],
            "NIGHTDUMP_OBJECT_LOCK",
        ),
        env(
            &[
                ("NIGHTDUMP_OBJECT_LOCK", Some("governance")),
                ("NIGHTDUMP_RETAIN_FOR", Some("xx")),
            ],
            "NIGHTDUMP_RETAIN_FOR",
        ),
        env(
            &[("NIGHTDUMP_RETAIN_FOR", Some("30d"))],
            "NIGHTDUMP_OBJECT_LOCK",
        ),
    ]
}

/// Runs one row: the binary for a CLI row, the Lambda's configuration parser for an env row.
/// The result looks the same either way: an exit code and what was printed.
pub async fn run_row(row: &Row) -> Run {
    match &row.input {
        Input::Cli(args) => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_nightdump(&args, &[]).await
        }
        Input::CliEnv(args, env) => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_nightdump(&args, env).await
        }
        Input::Env(changes) => {
            let mut e = template_env();
            for (k, v) in changes {
                match v {
                    Some(v) => e.insert(k.to_string(), v.clone()),
                    None => e.remove(*k),
                };
            }
            let started = std::time::Instant::now();
            let result = LambdaConfig::from_env(&e);
            let elapsed = started.elapsed();
            match result {
                Ok(_) => Run {
                    code: Some(0),
                    stdout: String::new(),
                    stderr: String::new(),
                    elapsed,
                },
                Err(err) => {
                    assert_eq!(err.error_type(), "InvalidConfiguration", "{err}");
                    Run {
                        code: Some(err.exit_code()),
                        stdout: String::new(),
                        stderr: format!("error: {err}"),
                        elapsed,
                    }
                }
            }
        }
    }
}

/// The table's own checks on one row's run: the message, or what is wrong with the run.
fn check(row: &Row, run: &Run) -> Result<String, String> {
    let what = format!("{:?}", row.input);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let problem = if run.stderr.contains("panicked") {
        "panicked"
    } else if run.elapsed >= Duration::from_secs(10) {
        "took 10 s or more"
    } else if run.code != Some(row.exit_code) {
        "wrong exit code"
    } else if lines.len() != 1 || !lines[0].starts_with("error: ") {
        "not one `error: ` line"
    } else if !lines[0].contains(&row.message) {
        "message fragment missing"
    } else if row.exit_code == 2 && !run.stdout.is_empty() {
        "wrote to stdout for a bad input"
    } else {
        return Ok(lines[0].to_string());
    };
    Err(format!(
        "{what}: {problem} (exit {:?}, expected {}, fragment {:?}):\n{}",
        run.code, row.exit_code, row.message, run.stderr
    ))
}

#[tokio::test]
async fn every_bad_input_gets_its_own_clear_message_and_exit_code_fast() {
    let f = Fixture::new();
    let rows: Vec<Row> = cli_rows(&f).into_iter().chain(env_rows()).collect();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut failures = Vec::new();
    for row in &rows {
        let run = run_row(row).await;
        let message = match check(row, &run) {
            Ok(m) => m,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        assert_no_secret(&format!("{:?}", row.input), run.all_output().as_bytes());
        // Two different mistakes must not read the same: each names its own problem (the
        // same mistake made with two commands may).
        let command = match &row.input {
            Input::Cli(args) => args[0].clone(),
            Input::CliEnv(args, env) => format!("{} with {:?}", args[0], env),
            Input::Env(_) => "lambda".to_string(),
        };
        if let Some(other) =
            seen.insert(format!("{command}: {message}"), format!("{:?}", row.input))
        {
            failures.push(format!(
                "{:?} and {other} give the same message: {message}",
                row.input
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Nothing was written to the destination the rows point at.
    assert!(files(&f.dir.path().join("dest")).is_empty());
}

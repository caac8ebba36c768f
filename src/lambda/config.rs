//! The function's configuration: the environment variables the template sets, parsed from a
//! map (so tests pass their own) and checked completely before anything is contacted.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::namespace::NamespacePattern;
use crate::secret::ConnectionString;
use crate::settings;
use crate::store::{Destination, S3Options};

pub const TO: &str = "NIGHTDUMP_TO";
pub const SECRET_ARN: &str = "NIGHTDUMP_MONGODB_SECRET_ARN";
pub const SSE: &str = "NIGHTDUMP_SSE";
pub const KMS_KEY_ID: &str = "NIGHTDUMP_KMS_KEY_ID";
pub const PARALLEL: &str = "NIGHTDUMP_PARALLEL";
pub const INCLUDE: &str = "NIGHTDUMP_INCLUDE";
pub const EXCLUDE: &str = "NIGHTDUMP_EXCLUDE";
pub const MAX_AGE: &str = "NIGHTDUMP_MAX_AGE";
pub const STORAGE_CLASS: &str = "NIGHTDUMP_STORAGE_CLASS";
/// The first multipart parts' size (default 8 MiB; larger ones follow on their own).
pub const PART_SIZE: &str = "NIGHTDUMP_PART_SIZE";
pub const CONNECT_TIMEOUT: &str = "NIGHTDUMP_CONNECT_TIMEOUT";
pub const S3_PATH_STYLE: &str = "NIGHTDUMP_S3_PATH_STYLE";
pub const PLAIN_URI: &str = "MONGODB_URI";
pub const ALLOW_PLAIN_URI: &str = "NIGHTDUMP_ALLOW_PLAIN_URI";
pub const FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
/// The metrics' `FunctionName` dimension outside Lambda: the container task sets it to the
/// function's name, so one set of alarms watches both engines.
pub const METRICS_NAME: &str = "NIGHTDUMP_METRICS_NAME";
/// `age:<recipient>`, comma-separated for several recipients, or `kms:<key-id>`.
pub const ENCRYPT: &str = "NIGHTDUMP_ENCRYPT";
/// `true` backs up a standalone server or a mongos, which cannot be made consistent to one
/// point in time; off by default, so a replica set's backups stay point-in-time.
pub const ALLOW_INCONSISTENT: &str = "NIGHTDUMP_ALLOW_INCONSISTENT";
/// `true` makes a backup whose include/exclude patterns select no collection.
pub const ALLOW_EMPTY: &str = "NIGHTDUMP_ALLOW_EMPTY";

/// A retention policy applied after each successful backup, as `nightdump prune` options
/// without dashes: `keep-daily=7,keep-weekly=4,keep-monthly=12`. Empty: no pruning.
pub const PRUNE: &str = "NIGHTDUMP_PRUNE";
/// `governance` or `compliance`: S3 Object Lock on every object of each backup.
pub const OBJECT_LOCK: &str = "NIGHTDUMP_OBJECT_LOCK";
/// How long each object is locked, e.g. `35d`.
pub const RETAIN_FOR: &str = "NIGHTDUMP_RETAIN_FOR";
/// Unfinished uploads older than this (default 12h) are a killed run's, aborted before a run.
pub const STALE_UPLOAD_AGE: &str = "NIGHTDUMP_STALE_UPLOAD_AGE";
/// Threads compressing the archive (default: the function's vCPUs).
pub const COMPRESS_THREADS: &str = "NIGHTDUMP_COMPRESS_THREADS";
/// The secret holding the connection string of the scratch deployment restore drills write
/// to (`{"action": "drill"}`); unset, the function runs no drill.
pub const DRILL_SECRET_ARN: &str = "NIGHTDUMP_DRILL_SECRET_ARN";
/// The scratch deployment as a plain connection string: local testing only
/// (`NIGHTDUMP_ALLOW_PLAIN_URI=1`).
pub const DRILL_PLAIN_URI: &str = "NIGHTDUMP_DRILL_URI";

const DEFAULT_PARALLEL: usize = 4;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
pub const COMPRESSION_LEVEL: u32 = 6;

/// Where the connection string comes from.
#[derive(Debug, Clone)]
pub enum UriSource {
    /// Production: `GetSecretValue` of this ARN on every run, so a rotated password is used
    /// by the next run without a redeploy.
    Secret { arn: String },
    /// Local testing only (`NIGHTDUMP_ALLOW_PLAIN_URI=1`).
    Plain(ConnectionString),
}

#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub destination: Destination,
    pub uri: UriSource,
    pub s3: S3Options,
    pub parallel: usize,
    pub include: Vec<NamespacePattern>,
    pub exclude: Vec<NamespacePattern>,
    /// Read for parity with `nightdump status --max-age`; the staleness alarm itself lives
    /// in CloudWatch.
    pub max_age: Option<Duration>,
    pub connect_timeout: Duration,
    pub stale_upload_age: Duration,
    pub compress_threads: usize,
    /// The metrics dimension; empty outside Lambda.
    pub function_name: String,
    /// Client-side encryption of each backup.
    pub encrypt: Option<crate::crypto::Encrypt>,
    /// Back up sources that cannot be made consistent to one point in time.
    pub allow_inconsistent: bool,
    /// Make a backup whose selection matches no collection.
    pub allow_empty: bool,
    /// The retention policy applied after a successful backup.
    pub prune: Option<crate::prune::Policy>,
    /// The scratch deployment of restore drills, when drills are configured.
    pub drill: Option<UriSource>,
}

fn get<'a>(env: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The metrics' `FunctionName` dimension: Lambda's own name, or the task's
/// `NIGHTDUMP_METRICS_NAME`; empty when neither is set.
pub fn metrics_name(env: &HashMap<String, String>) -> &str {
    get(env, FUNCTION_NAME)
        .or_else(|| get(env, METRICS_NAME))
        .unwrap_or_default()
}

fn flag(env: &HashMap<String, String>, name: &str) -> Result<bool> {
    settings::switch(name, get(env, name))
}

impl LambdaConfig {
    /// Parses and validates every setting; the first bad one is reported, naming its
    /// variable and the fix.
    pub fn from_env(env: &HashMap<String, String>) -> Result<LambdaConfig> {
        let destination = parse_destination(env)?;
        let uri = parse_uri_source(env)?;
        let s3 = parse_s3(env)?;
        let parallel = match get(env, PARALLEL) {
            None => DEFAULT_PARALLEL,
            Some(v) => settings::parallel(PARALLEL, v)?,
        };
        let include = patterns(env, INCLUDE)?;
        let exclude = patterns(env, EXCLUDE)?;
        let max_age = get(env, MAX_AGE)
            .map(|v| settings::duration(MAX_AGE, v))
            .transpose()?;
        let connect_timeout = match get(env, CONNECT_TIMEOUT) {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(v) => settings::connect_timeout(CONNECT_TIMEOUT, v)?,
        };
        let stale_upload_age = match get(env, STALE_UPLOAD_AGE) {
            None => crate::backup::STALE_UPLOAD_AGE,
            Some(v) => settings::duration(STALE_UPLOAD_AGE, v)?,
        };
        let compress_threads = match get(env, COMPRESS_THREADS) {
            None => crate::backup::compress::available_threads(),
            Some(v) => settings::compress_threads(COMPRESS_THREADS, v)?,
        };
        let encrypt = match get(env, ENCRYPT) {
            None => None,
            Some(v) => {
                crate::crypto::Encrypt::parse_all(ENCRYPT, &v.split(',').collect::<Vec<_>>())?
            }
        };
        let allow_inconsistent = flag(env, ALLOW_INCONSISTENT)?;
        let allow_empty = flag(env, ALLOW_EMPTY)?;
        let prune = get(env, PRUNE)
            .map(|spec| settings::policy(PRUNE, spec))
            .transpose()?;
        let drill = parse_drill_source(env)?;
        Ok(LambdaConfig {
            prune,
            drill,
            encrypt,
            allow_inconsistent,
            allow_empty,
            destination,
            uri,
            s3,
            parallel,
            include,
            exclude,
            max_age,
            connect_timeout,
            stale_upload_age,
            compress_threads,
            function_name: metrics_name(env).to_string(),
        })
    }
}

fn parse_destination(env: &HashMap<String, String>) -> Result<Destination> {
    let to = get(env, TO).ok_or_else(|| {
        Error::invalid(format!(
            "{TO} is not set: set it to the backup location, s3://BUCKET/PREFIX"
        ))
    })?;
    settings::destination(TO, to)
}

fn parse_uri_source(env: &HashMap<String, String>) -> Result<UriSource> {
    let allow_plain = flag(env, ALLOW_PLAIN_URI)?;
    let plain = get(env, PLAIN_URI);
    let arn = get(env, SECRET_ARN);
    match (plain, arn, allow_plain) {
        (Some(_), _, false) => Err(Error::invalid(format!(
            "{PLAIN_URI} is set but a plain connection string is only accepted for local testing: store it in Secrets Manager and set {SECRET_ARN}, or set {ALLOW_PLAIN_URI}=1"
        ))),
        (Some(_), Some(_), true) => Err(Error::invalid(format!(
            "both {PLAIN_URI} and {SECRET_ARN} are set: unset one of them"
        ))),
        (Some(uri), None, true) => ConnectionString::parse(uri)
            .map(UriSource::Plain)
            .map_err(|e| Error::invalid(format!("{PLAIN_URI}: {e}"))),
        (None, Some(arn), _) => {
            if is_secret_arn(arn) {
                Ok(UriSource::Secret {
                    arn: arn.to_string(),
                })
            } else {
                Err(Error::invalid(format!(
                    "{SECRET_ARN} '{arn}' is not a Secrets Manager secret ARN: use the full ARN, arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX"
                )))
            }
        }
        (None, None, _) => Err(Error::invalid(format!(
            "{SECRET_ARN} is not set: set it to the ARN of the secret holding the MongoDB connection string"
        ))),
    }
}

fn parse_drill_source(env: &HashMap<String, String>) -> Result<Option<UriSource>> {
    match (get(env, DRILL_PLAIN_URI), get(env, DRILL_SECRET_ARN)) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(Error::invalid(format!(
            "both {DRILL_PLAIN_URI} and {DRILL_SECRET_ARN} are set: unset one of them"
        ))),
        (Some(uri), None) => {
            if !flag(env, ALLOW_PLAIN_URI)? {
                return Err(Error::invalid(format!(
                    "{DRILL_PLAIN_URI} is set but a plain connection string is only accepted for local testing: store it in Secrets Manager and set {DRILL_SECRET_ARN}, or set {ALLOW_PLAIN_URI}=1"
                )));
            }
            ConnectionString::parse(uri)
                .map(|u| Some(UriSource::Plain(u)))
                .map_err(|e| Error::invalid(format!("{DRILL_PLAIN_URI}: {e}")))
        }
        (None, Some(arn)) if is_secret_arn(arn) => Ok(Some(UriSource::Secret {
            arn: arn.to_string(),
        })),
        (None, Some(arn)) => Err(Error::invalid(format!(
            "{DRILL_SECRET_ARN} '{arn}' is not a Secrets Manager secret ARN: use the full ARN, arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-SUFFIX"
        ))),
    }
}

fn is_secret_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    parts.len() == 7
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "secretsmanager"
        && !parts[3].is_empty()
        && !parts[4].is_empty()
        && parts[5] == "secret"
        && !parts[6].is_empty()
}

fn parse_s3(env: &HashMap<String, String>) -> Result<S3Options> {
    let sse = settings::sse((SSE, get(env, SSE)), (KMS_KEY_ID, get(env, KMS_KEY_ID)))?;
    let object_lock = crate::store::ObjectLock::parse(
        OBJECT_LOCK,
        get(env, OBJECT_LOCK),
        RETAIN_FOR,
        get(env, RETAIN_FOR),
    )
    .map_err(Error::Invalid)?;
    let s3 = S3Options {
        object_lock,
        force_path_style: flag(env, S3_PATH_STYLE)?,
        sse,
        storage_class: get(env, STORAGE_CLASS)
            .map(|v| settings::storage_class(STORAGE_CLASS, v))
            .transpose()?,
        part_size: get(env, PART_SIZE)
            .map(|v| settings::part_size(PART_SIZE, v))
            .transpose()?
            .unwrap_or(crate::store::DEFAULT_PART_SIZE),
        ..S3Options::default()
    };
    s3.validate()
        .map_err(|e| Error::invalid(format!("{SSE}/{KMS_KEY_ID}/{STORAGE_CLASS}: {e}")))?;
    Ok(s3)
}

fn patterns(env: &HashMap<String, String>, name: &str) -> Result<Vec<NamespacePattern>> {
    get(env, name)
        .map(|v| settings::pattern_list(name, v))
        .transpose()
        .map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Sse;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/mongo-AbCdEf";

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base() -> HashMap<String, String> {
        env(&[
            (TO, "s3://backups/nightdump"),
            (SECRET_ARN, ARN),
            (SSE, "kms"),
            (KMS_KEY_ID, "arn:aws:kms:eu-west-1:123456789012:key/k-1"),
            (PARALLEL, "8"),
            (INCLUDE, "app.*, billing.invoices"),
            (EXCLUDE, ""),
            (MAX_AGE, "26h"),
            (STORAGE_CLASS, "STANDARD_IA"),
            ("NIGHTDUMP_ENCRYPT", ""),
            ("NIGHTDUMP_PRUNE", ""),
            ("NIGHTDUMP_OBJECT_LOCK", ""),
            ("NIGHTDUMP_RETAIN_FOR", ""),
            (FUNCTION_NAME, "nightdump-prod"),
        ])
    }

    fn err(mut e: HashMap<String, String>, changes: &[(&str, Option<&str>)]) -> String {
        for (k, v) in changes {
            match v {
                Some(v) => e.insert(k.to_string(), v.to_string()),
                None => e.remove(*k),
            };
        }
        let error = LambdaConfig::from_env(&e).unwrap_err();
        assert_eq!(error.error_type(), "InvalidConfiguration");
        let msg = error.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        msg
    }

    #[test]
    fn template_environment_parses() {
        let c = LambdaConfig::from_env(&base()).unwrap();
        assert_eq!(c.destination.to_string(), "s3://backups/nightdump");
        assert!(matches!(&c.uri, UriSource::Secret { arn } if arn == ARN));
        assert_eq!(
            c.s3.sse,
            Sse::Kms {
                key_id: Some("arn:aws:kms:eu-west-1:123456789012:key/k-1".into())
            }
        );
        assert_eq!(c.s3.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(c.parallel, 8);
        assert_eq!(c.include.len(), 2);
        assert!(c.include[0].matches("app.users"));
        assert!(c.include[1].matches("billing.invoices"));
        assert!(c.exclude.is_empty());
        assert_eq!(c.max_age, Some(Duration::from_secs(26 * 3600)));
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(c.stale_upload_age, crate::backup::STALE_UPLOAD_AGE);
        assert_eq!(c.function_name, "nightdump-prod");
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        type Change<'a> = (&'a str, Option<&'a str>);
        let cases: &[(&[Change], &str)] = &[
            (&[(TO, None)], TO),
            (&[(TO, Some("ftp://x"))], TO),
            (&[(SECRET_ARN, None)], SECRET_ARN),
            (&[(SECRET_ARN, Some("prod/mongo"))], SECRET_ARN),
            (&[(SSE, Some("aes"))], SSE),
            (&[(SSE, Some("s3"))], KMS_KEY_ID),
            (&[(PARALLEL, Some("0"))], PARALLEL),
            (&[(PARALLEL, Some("65"))], PARALLEL),
            (&[(PARALLEL, Some("four"))], PARALLEL),
            (&[(INCLUDE, Some("nodot"))], INCLUDE),
            (&[(EXCLUDE, Some("a.b,nodot"))], EXCLUDE),
            (&[(MAX_AGE, Some("soon"))], MAX_AGE),
            (&[(STORAGE_CLASS, Some("standard-ia"))], STORAGE_CLASS),
            (&[(CONNECT_TIMEOUT, Some("0s"))], CONNECT_TIMEOUT),
            (&[(S3_PATH_STYLE, Some("yes"))], S3_PATH_STYLE),
            (&[(PLAIN_URI, Some("mongodb://h/"))], ALLOW_PLAIN_URI),
            (&[(ENCRYPT, Some("age:age1short"))], ENCRYPT),
            (&[(ENCRYPT, Some("kms:alias/"))], ENCRYPT),
        ];
        for (changes, variable) in cases {
            let msg = err(base(), changes);
            assert!(msg.contains(variable), "{changes:?}: {msg}");
        }
    }

    #[test]
    fn prune_and_object_lock_are_parsed_and_checked() {
        let mut e = base();
        e.insert(
            PRUNE.into(),
            "keep-daily=7,keep-weekly=4,keep-within=30d".into(),
        );
        e.insert(OBJECT_LOCK.into(), "compliance".into());
        e.insert(RETAIN_FOR.into(), "35d".into());
        let c = LambdaConfig::from_env(&e).unwrap();
        let policy = c.prune.expect("prune set");
        assert_eq!((policy.daily, policy.weekly), (7, 4));
        let lock = c.s3.object_lock.expect("lock set");
        assert_eq!(lock.mode, crate::store::LockMode::Compliance);
        assert_eq!(lock.retain_for.as_secs(), 35 * 86_400);
        let c = LambdaConfig::from_env(&base()).unwrap();
        assert!(c.prune.is_none() && c.s3.object_lock.is_none());
        for (changes, variable) in [
            (&[(PRUNE, Some("keep-daily=0"))][..], PRUNE),
            (&[(PRUNE, Some("daily"))][..], PRUNE),
            (&[(OBJECT_LOCK, Some("governance"))][..], RETAIN_FOR),
            (&[(RETAIN_FOR, Some("35d"))][..], OBJECT_LOCK),
            (
                &[(OBJECT_LOCK, Some("legal")), (RETAIN_FOR, Some("35d"))][..],
                OBJECT_LOCK,
            ),
        ] {
            let msg = err(base(), changes);
            assert!(msg.contains(variable), "{changes:?}: {msg}");
        }
    }

    #[test]
    fn age_recipients_are_wired_through() {
        let a = age::x25519::Identity::generate().to_public().to_string();
        let b = age::x25519::Identity::generate().to_public().to_string();
        let mut e = base();
        e.insert(ENCRYPT.into(), format!("age:{a}, age:{b}"));
        let c = LambdaConfig::from_env(&e).unwrap();
        let entry = c.encrypt.expect("encryption set").manifest_entry();
        assert_eq!(entry.scheme, "age");
        assert_eq!(entry.recipients, vec![a, b]);
        assert!(LambdaConfig::from_env(&base()).unwrap().encrypt.is_none());
    }

    #[test]
    fn plain_uri_only_when_allowed_and_never_echoed() {
        let uri = "mongodb://u:hunter2@db:27017/";
        let mut e = base();
        e.remove(SECRET_ARN);
        e.insert(PLAIN_URI.into(), uri.into());
        let msg = err(e.clone(), &[]);
        assert!(!msg.contains("hunter2"), "{msg}");
        e.insert(ALLOW_PLAIN_URI.into(), "1".into());
        let c = LambdaConfig::from_env(&e).unwrap();
        assert!(matches!(&c.uri, UriSource::Plain(cs) if cs.expose() == uri));
        assert!(!format!("{c:?}").contains("hunter2"));
        let msg = err(e, &[(SECRET_ARN, Some(ARN))]);
        assert!(msg.contains("both"), "{msg}");
    }

    #[test]
    fn defaults_when_optional_values_are_empty() {
        let e = env(&[
            (TO, "s3://bkt/p"),
            (SECRET_ARN, ARN),
            (SSE, ""),
            (PARALLEL, ""),
        ]);
        let c = LambdaConfig::from_env(&e).unwrap();
        assert_eq!(c.s3.sse, Sse::None);
        assert_eq!(c.parallel, DEFAULT_PARALLEL);
        assert_eq!(c.s3.storage_class, None);
        assert_eq!(c.max_age, None);
        assert!(!c.s3.force_path_style);
    }
}

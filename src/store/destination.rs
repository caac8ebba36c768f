//! Where backups go, parsed from the URL-ish string the user gives.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use crate::error::store::DestinationError;

/// A backup destination: a local directory or an S3 bucket and key prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A directory on a local (or mounted) file system.
    Local { root: PathBuf },
    /// An S3 bucket; `prefix` has no leading or trailing `/` and is empty for the bucket root.
    S3 { bucket: String, prefix: String },
}

impl FromStr for Destination {
    type Err = DestinationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(DestinationError::Empty);
        }
        match s.split_once("://") {
            None => Ok(Destination::Local {
                root: PathBuf::from(s),
            }),
            Some((scheme, rest)) => {
                // A scheme is a short run of letters; anything else (e.g. "./a://b") is a path.
                let looks_like_scheme = !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                    && scheme.starts_with(|c: char| c.is_ascii_alphabetic());
                if !looks_like_scheme {
                    return Ok(Destination::Local {
                        root: PathBuf::from(s),
                    });
                }
                match scheme.to_ascii_lowercase().as_str() {
                    "s3" => parse_s3(s, rest),
                    "file" => parse_file(s),
                    other => Err(DestinationError::UnsupportedScheme {
                        scheme: other.to_string(),
                    }),
                }
            }
        }
    }
}

fn parse_s3(url: &str, rest: &str) -> Result<Destination, DestinationError> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(DestinationError::CredentialsInUrl);
    }
    if authority.is_empty() {
        return Err(DestinationError::MissingBucket {
            url: url.to_string(),
        });
    }
    validate_bucket(authority)?;
    if path.contains(['?', '#']) {
        return Err(DestinationError::InvalidPrefix {
            url: url.to_string(),
            reason: "query strings and fragments are not supported",
        });
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if !trimmed.is_empty() {
        for segment in trimmed.split('/') {
            let reason = match segment {
                "" => Some("empty path segment (\"//\")"),
                "." | ".." => Some("\".\" and \"..\" segments are not allowed"),
                _ if segment.contains('\\') => Some("backslashes are not allowed"),
                _ if segment.chars().any(char::is_control) => {
                    Some("control characters are not allowed")
                }
                _ => None,
            };
            if let Some(reason) = reason {
                return Err(DestinationError::InvalidPrefix {
                    url: url.to_string(),
                    reason,
                });
            }
        }
    }
    Ok(Destination::S3 {
        bucket: authority.to_string(),
        prefix: trimmed.to_string(),
    })
}

/// The general-purpose bucket naming rules of S3.
fn validate_bucket(bucket: &str) -> Result<(), DestinationError> {
    let fail = |reason| {
        Err(DestinationError::InvalidBucket {
            bucket: bucket.to_string(),
            reason,
        })
    };
    if !(3..=63).contains(&bucket.len()) {
        return fail("must be 3 to 63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return fail("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !edge_ok(bucket.bytes().next()) || !edge_ok(bucket.bytes().last()) {
        return fail("must begin and end with a letter or digit");
    }
    if bucket.contains("..") || bucket.contains(".-") || bucket.contains("-.") {
        return fail("dots may not be adjacent to dots or hyphens");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return fail("must not be formatted as an IP address");
    }
    if bucket.starts_with("xn--") || bucket.starts_with("sthree-") {
        return fail("prefixes \"xn--\" and \"sthree-\" are reserved");
    }
    if bucket.ends_with("-s3alias") || bucket.ends_with("--ol-s3") {
        return fail("suffixes \"-s3alias\" and \"--ol-s3\" are reserved");
    }
    Ok(())
}

fn parse_file(url: &str) -> Result<Destination, DestinationError> {
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    if authority.contains('@') {
        return Err(DestinationError::CredentialsInUrl);
    }
    let parsed = url::Url::parse(url).map_err(|_| DestinationError::InvalidFileUrl {
        url: url.to_string(),
        reason: "not a valid URL; use file:///absolute/path",
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(DestinationError::CredentialsInUrl);
    }
    if parsed
        .host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return Err(DestinationError::InvalidFileUrl {
            url: url.to_string(),
            reason: "remote hosts are not supported; use file:///absolute/path",
        });
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(DestinationError::InvalidFileUrl {
            url: url.to_string(),
            reason: "query strings and fragments are not supported",
        });
    }
    let root = parsed
        .to_file_path()
        .map_err(|()| DestinationError::InvalidFileUrl {
            url: url.to_string(),
            reason: "not an absolute local path; use file:///absolute/path",
        })?;
    Ok(Destination::Local { root })
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Local { root } => {
                let shown = root.display().to_string();
                // A path that would parse as a URL is shown as one so the round trip holds.
                if shown.contains("://") && root.is_absolute() {
                    match url::Url::from_file_path(root) {
                        Ok(u) => write!(f, "{u}"),
                        Err(()) => write!(f, "{shown}"),
                    }
                } else if shown.contains("://") {
                    write!(f, "./{shown}")
                } else {
                    write!(f, "{shown}")
                }
            }
            Destination::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Destination::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(p: &str) -> Destination {
        Destination::Local { root: p.into() }
    }

    fn s3(bucket: &str, prefix: &str) -> Destination {
        Destination::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn parses_good_destinations() {
        let cases = [
            ("./backups", local("./backups")),
            ("backups", local("backups")),
            ("/abs/path", local("/abs/path")),
            ("/abs/path/", local("/abs/path/")),
            ("file:///abs/path", local("/abs/path")),
            ("file://localhost/abs/path", local("/abs/path")),
            ("file:///with%20space", local("/with space")),
            ("s3://bucket", s3("bucket", "")),
            ("s3://bucket/", s3("bucket", "")),
            ("S3://bucket/a", s3("bucket", "a")),
            (
                "s3://my.bucket-1/nightly/prod/",
                s3("my.bucket-1", "nightly/prod"),
            ),
            ("s3://bucket/a/b c", s3("bucket", "a/b c")),
            ("  s3://bucket/x  ", s3("bucket", "x")),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Destination>(), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn rejects_bad_destinations_with_clear_errors() {
        use DestinationError as E;
        type Case = (&'static str, fn(&E) -> bool, &'static str);
        let cases: &[Case] = &[
            ("", |e| matches!(e, E::Empty), "empty destination"),
            ("   ", |e| matches!(e, E::Empty), "empty destination"),
            (
                "s3://",
                |e| matches!(e, E::MissingBucket { .. }),
                "names no bucket",
            ),
            (
                "s3:///prefix",
                |e| matches!(e, E::MissingBucket { .. }),
                "names no bucket",
            ),
            (
                "gs://x",
                |e| matches!(e, E::UnsupportedScheme { scheme } if scheme == "gs"),
                "unsupported destination scheme \"gs\"",
            ),
            (
                "https://example.com/x",
                |e| matches!(e, E::UnsupportedScheme { .. }),
                "unsupported",
            ),
            (
                "s3://Bad_Bucket",
                |e| matches!(e, E::InvalidBucket { .. }),
                "only lowercase letters",
            ),
            (
                "s3://ab",
                |e| matches!(e, E::InvalidBucket { .. }),
                "3 to 63",
            ),
            (
                "s3://-bucket",
                |e| matches!(e, E::InvalidBucket { .. }),
                "begin and end",
            ),
            (
                "s3://my..bucket",
                |e| matches!(e, E::InvalidBucket { .. }),
                "adjacent",
            ),
            (
                "s3://192.168.1.1",
                |e| matches!(e, E::InvalidBucket { .. }),
                "IP address",
            ),
            (
                "s3://xn--bucket",
                |e| matches!(e, E::InvalidBucket { .. }),
                "reserved",
            ),
            (
                "s3://AKIA:secret@bucket/x",
                |e| matches!(e, E::CredentialsInUrl),
                "credentials are not accepted",
            ),
            (
                "s3://bucket//x",
                |e| matches!(e, E::InvalidPrefix { .. }),
                "empty path segment",
            ),
            (
                "s3://bucket/a/../b",
                |e| matches!(e, E::InvalidPrefix { .. }),
                "\"..\"",
            ),
            (
                "s3://bucket/a?versionId=1",
                |e| matches!(e, E::InvalidPrefix { .. }),
                "query strings",
            ),
            (
                "file://host/abs",
                |e| matches!(e, E::InvalidFileUrl { .. }),
                "remote hosts",
            ),
            (
                "file://user:pw@localhost/abs",
                |e| matches!(e, E::CredentialsInUrl),
                "credentials",
            ),
        ];
        for (input, is_expected, fragment) in cases {
            let err = input
                .parse::<Destination>()
                .expect_err(&format!("{input:?} must be rejected"));
            assert!(is_expected(&err), "{input:?} gave {err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains(fragment),
                "{input:?}: {msg:?} lacks {fragment:?}"
            );
            assert!(!msg.contains('\n'), "{input:?}: multi-line message");
            assert!(
                !msg.contains("secret") && !msg.contains("pw@"),
                "{input:?} leaks: {msg}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        let inputs = [
            "./backups",
            "/abs/path",
            "file:///abs/path",
            "s3://bucket",
            "s3://bucket/a/b/",
            "s3://bucket/a b",
            "./odd://dir",
            "/odd://dir",
        ];
        for input in inputs {
            let d: Destination = input.parse().unwrap();
            let shown = d.to_string();
            assert_eq!(
                shown.parse::<Destination>().unwrap(),
                d,
                "{input:?} shown as {shown:?}"
            );
        }
        assert_eq!(s3("b", "x/y").to_string(), "s3://b/x/y");
        assert_eq!(s3("b", "").to_string(), "s3://b");
        assert_eq!(local("/abs").to_string(), "/abs");
    }
}

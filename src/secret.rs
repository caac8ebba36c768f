//! Values that must never reach a log, an error, a manifest or a notification.
//!
//! `Secret` has no `Display`, a `Debug` that prints a placeholder and no `Serialize`, so the
//! compiler refuses the usual ways of leaking it. `ConnectionString` keeps the full URI secret
//! and offers only a redacted form for humans.

use std::fmt;

/// A value readable only through [`Secret::expose`], which makes every use greppable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Query options whose values are credentials in a MongoDB connection string.
const SECRET_QUERY_KEYS: &[&str] = &[
    "password",
    "authmechanismproperties",
    "tlscertificatekeyfilepassword",
    "sslpemkeypassword",
];

/// A MongoDB connection string. Its password (and any credential-bearing query option) is
/// only reachable through [`ConnectionString::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    uri: Secret<String>,
    redacted: String,
    password: Option<Secret<String>>,
    /// The password as written, percent-encoding and all.
    raw_password: Option<Secret<String>>,
    seeds: Vec<String>,
}

impl ConnectionString {
    /// Accepts `mongodb://` and `mongodb+srv://`; anything else is rejected with a message that
    /// names the expected form (without echoing the input, which may hold a password).
    pub fn parse(uri: &str) -> Result<Self, String> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Err("the MongoDB connection string is empty: pass --uri mongodb://HOST:PORT/ or set MONGODB_URI".into());
        }
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err("the MongoDB connection string is malformed: expected mongodb://HOST[:PORT]/ or mongodb+srv://HOST/".into());
        };
        if scheme != "mongodb" && scheme != "mongodb+srv" {
            return Err(format!(
                "unsupported scheme '{}' in the MongoDB connection string: use mongodb:// or mongodb+srv://",
                scheme.chars().take(20).collect::<String>()
            ));
        }
        // The user information ends at the last '@', wherever it is: a password holding an
        // unencoded '/', '?' or '@' must never be taken for the host, path or options and
        // printed. Text after the scheme and before the last '@' is never shown.
        let (userinfo, after) = match rest.rfind('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (hosts, tail) = match after.find(['/', '?']) {
            Some(i) => after.split_at(i),
            None => (after, ""),
        };
        if hosts.is_empty() {
            return Err(
                "the MongoDB connection string names no host: expected mongodb://HOST[:PORT]/"
                    .into(),
            );
        }
        let mut password = None;
        let mut raw_password = None;
        let user_part = match userinfo {
            Some(info) => {
                let (user, pass) = match info.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (info, None),
                };
                const RESERVED: [char; 7] = [':', '/', '?', '#', '[', ']', '@'];
                if user.contains(RESERVED) || pass.is_some_and(|p| p.contains(RESERVED)) {
                    return Err("the user name or password in the MongoDB connection string holds a reserved character (: / ? # [ ] @) that is not percent-encoded: encode each one (e.g. / as %2F, @ as %40, : as %3A); an '@' in the options must be written %40 too".into());
                }
                match pass {
                    Some(pass) => {
                        password = Some(Secret::new(percent_decode(pass)));
                        raw_password = Some(Secret::new(pass.to_string()));
                        format!("{user}:***@")
                    }
                    None => format!("{user}@"),
                }
            }
            None => String::new(),
        };
        let mut seeds: Vec<String> = hosts
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        seeds.sort();
        seeds.dedup();
        let redacted = format!("{scheme}://{user_part}{hosts}{}", redact_query(tail));
        Ok(Self {
            uri: Secret::new(uri.to_string()),
            redacted,
            password,
            raw_password,
            seeds,
        })
    }

    pub fn expose(&self) -> &str {
        self.uri.expose()
    }

    /// The URI with the password and credential options replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The hosts the string names (before any SRV lookup), lower-cased and sorted.
    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    /// The raw and percent-decoded password, so it can be scrubbed from third-party messages.
    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().map(|p| p.expose().as_str())
    }

    /// Removes every trace of this URI's secrets from `text` (driver messages may quote options).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(self.uri.expose(), &self.redacted);
        if let Some(pass) = self.password() {
            if !pass.is_empty() {
                out = out.replace(pass, "***");
                if let Some(raw) = self.raw_password.as_ref().map(Secret::expose) {
                    if !raw.is_empty() {
                        out = out.replace(raw.as_str(), "***");
                    }
                }
            }
        }
        out
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionString({})", self.redacted)
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str()) => {
                format!("{k}=***")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_redacted_everywhere() {
        let cs = ConnectionString::parse("mongodb://alice:s3cr%21t@db1:27017,db2/admin?tls=true&authMechanismProperties=AWS_SESSION_TOKEN:tok").unwrap();
        assert_eq!(
            cs.redacted(),
            "mongodb://alice:***@db1:27017,db2/admin?tls=true&authMechanismProperties=***"
        );
        assert_eq!(cs.password(), Some("s3cr!t"));
        assert!(!format!("{cs:?}").contains("s3cr"));
        assert!(!format!("{cs}").contains("s3cr"));
        assert_eq!(
            cs.scrub("failed: s3cr!t and s3cr%21t"),
            "failed: *** and ***"
        );
    }

    #[test]
    fn rejects_bad_uris_without_echoing_them() {
        for bad in [
            "",
            "localhost:27017",
            "http://u:pw@h/",
            "mongodb://",
            "mongodb://u:pw@/x",
        ] {
            let err = ConnectionString::parse(bad).unwrap_err();
            assert!(!err.contains("pw"), "{err}");
        }
    }

    /// Every character a password may hold, reserved ones included, in random passwords:
    /// whether the string parses or is refused, no message shows any of it.
    #[test]
    fn no_password_of_reserved_characters_is_ever_shown() {
        const ALPHABET: &[u8] = b":/?#[]@%!$&'()*+,;=-._~ aZ09";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..5_000 {
            let len = 4 + (next() % 12) as usize;
            let mut pass: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize] as char)
                .collect();
            // A marker no host or option holds, so any leak of the password shows.
            pass.insert_str(0, "Zq7");
            let tail = [
                "/",
                "/admin?tls=true",
                "",
                "/?authSource=admin",
                "/db?x=y#z",
            ][round % 5];
            let uri = format!("mongodb://bk:{pass}@db1.example:27017,db2{tail}");
            let shown = match ConnectionString::parse(&uri) {
                Ok(cs) => {
                    let scrubbed = cs.scrub(&format!("driver said: {uri} / {pass}"));
                    format!("{} {cs:?} {cs} {scrubbed}", cs.redacted())
                }
                Err(e) => e,
            };
            assert!(!shown.contains("Zq7"), "{uri} shown as: {shown}");
        }
    }

    #[test]
    fn the_reported_passwords_are_refused_without_being_echoed() {
        for uri in [
            "mongodb://sl:Zq7slash/pw@host/",
            "mongodb://bk:Zq7@x:y/w%v?é#t@host/",
            "mongodb://bk:Zq7?q@host/",
        ] {
            let err = ConnectionString::parse(uri).unwrap_err();
            assert!(err.contains("percent-encoded"), "{err}");
            assert!(!err.contains("Zq7") && !err.contains("host"), "{err}");
        }
        let ok = ConnectionString::parse("mongodb://sl:Zq7slash%2Fpw@host/").unwrap();
        assert_eq!(ok.redacted(), "mongodb://sl:***@host/");
        assert_eq!(ok.password(), Some("Zq7slash/pw"));
        assert_eq!(ok.seeds(), ["host"]);
    }

    #[test]
    fn secret_debug_hides_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}

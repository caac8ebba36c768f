//! Connecting to the source deployment and classifying the driver's failures.

use std::str::FromStr;
use std::time::Duration;

use bson::{doc, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, ReadPreference, ReadPreferenceOptions, SelectionCriteria};
use mongodb::Client;

use crate::error::{one_line, Error, Result};
use crate::secret::ConnectionString;

/// Which member reads go to. Defaults to `secondaryPreferred`, sparing a replica set's primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadPreferenceChoice {
    Primary,
    PrimaryPreferred,
    Secondary,
    #[default]
    SecondaryPreferred,
    Nearest,
}

impl FromStr for ReadPreferenceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "primary" => Self::Primary,
            "primaryPreferred" => Self::PrimaryPreferred,
            "secondary" => Self::Secondary,
            "secondaryPreferred" => Self::SecondaryPreferred,
            "nearest" => Self::Nearest,
            _ => return Err(format!("unknown read preference '{s}': use primary, primaryPreferred, secondary, secondaryPreferred or nearest")),
        })
    }
}

impl ReadPreferenceChoice {
    fn to_driver(self) -> ReadPreference {
        let options = Some(ReadPreferenceOptions::default());
        match self {
            Self::Primary => ReadPreference::Primary,
            Self::PrimaryPreferred => ReadPreference::PrimaryPreferred { options },
            Self::Secondary => ReadPreference::Secondary { options },
            Self::SecondaryPreferred => ReadPreference::SecondaryPreferred { options },
            Self::Nearest => ReadPreference::Nearest { options },
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub uri: ConnectionString,
    pub read_preference: ReadPreferenceChoice,
    /// Bounds how long an unreachable or misconfigured server can stall the start.
    pub server_selection_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Standalone,
    ReplicaSet(String),
    Sharded,
}

impl Topology {
    pub fn name(&self) -> &'static str {
        match self {
            Topology::Standalone => "standalone",
            Topology::ReplicaSet(_) => "replica_set",
            Topology::Sharded => "sharded",
        }
    }
}

/// A connected source deployment.
#[derive(Debug, Clone)]
pub struct Source {
    pub(crate) client: Client,
    pub(crate) uri: ConnectionString,
    pub server_version: String,
    pub topology: Topology,
    pub hosts: Vec<String>,
}

impl Source {
    /// Connects and asks the server who it is (`hello`, `buildInfo`), failing within the
    /// server-selection timeout when it cannot.
    pub async fn connect(options: &SourceOptions) -> Result<Self> {
        let uri = &options.uri;
        let mut client_options = ClientOptions::parse(uri.expose())
            .await
            .map_err(|e| classify(uri, "connect", &e))?;
        client_options.app_name = Some(format!("nightdump {}", env!("CARGO_PKG_VERSION")));
        client_options.server_selection_timeout = Some(options.server_selection_timeout);
        if client_options.connect_timeout.is_none() {
            client_options.connect_timeout = Some(options.server_selection_timeout);
        }
        if client_options.selection_criteria.is_none() {
            client_options.selection_criteria = Some(SelectionCriteria::ReadPreference(
                options.read_preference.to_driver(),
            ));
        }
        let hosts = client_options.hosts.iter().map(|h| h.to_string()).collect();
        let client =
            Client::with_options(client_options).map_err(|e| classify(uri, "connect", &e))?;
        let admin = client.database("admin");
        let hello = admin
            .run_command(doc! { "hello": 1 })
            .await
            .map_err(|e| classify(uri, "hello", &e))?;
        let build_info = admin
            .run_command(doc! { "buildInfo": 1 })
            .await
            .map_err(|e| classify(uri, "buildInfo", &e))?;
        let server_version = build_info
            .get_str("version")
            .map(str::to_string)
            .map_err(|_| Error::Mongo {
                target: uri.redacted().to_string(),
                command: "buildInfo".into(),
                detail: "the reply has no version string".into(),
            })?;
        Ok(Self {
            client,
            uri: uri.clone(),
            server_version,
            topology: topology_of(&hello),
            hosts,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn target(&self) -> &str {
        self.uri.redacted()
    }

    pub(crate) fn error(&self, command: &str, err: &mongodb::error::Error) -> Error {
        classify(&self.uri, command, err)
    }
}

fn topology_of(hello: &Document) -> Topology {
    if let Ok(set) = hello.get_str("setName") {
        Topology::ReplicaSet(set.to_string())
    } else if hello.get_str("msg") == Ok("isdbgrid") {
        Topology::Sharded
    } else {
        Topology::Standalone
    }
}

/// Turns a driver error into one of ours, with the URI's secrets scrubbed from its text and
/// the driver's debug decorations (labels, source, server response) left out.
pub(crate) fn classify(
    uri: &ConnectionString,
    command: &str,
    err: &mongodb::error::Error,
) -> Error {
    let target = uri.redacted().to_string();
    let clean = |text: &str| one_line(&uri.scrub(text), 300);
    match err.kind.as_ref() {
        ErrorKind::Authentication { message, .. } => Error::MongoAuth {
            target,
            detail: clean(message),
        },
        ErrorKind::Command(c) if c.code == 18 => Error::MongoAuth {
            target,
            detail: clean(&c.message),
        },
        ErrorKind::Command(c) if c.code == 13 => {
            Error::permission(target, command, &clean(&c.message))
        }
        ErrorKind::Command(c) => Error::Mongo {
            target,
            command: command.to_string(),
            detail: format!("{} ({}): {}", c.code_name, c.code, clean(&c.message)),
        },
        ErrorKind::InvalidArgument { message, .. }
        | ErrorKind::InvalidTlsConfig { message, .. } => Error::Invalid(format!(
            "invalid MongoDB connection settings for {target}: {}",
            clean(message)
        )),
        ErrorKind::Io(io) => Error::MongoConnectionLost {
            target,
            detail: format!("{command} ({})", clean(&io.to_string())),
        },
        ErrorKind::ConnectionPoolCleared { message, .. } => Error::MongoConnectionLost {
            target,
            detail: format!("{command} ({})", clean(message)),
        },
        ErrorKind::ServerSelection { message, .. } => Error::MongoUnreachable {
            target,
            detail: format!("{command}: {}", clean(&selection_cause(message))),
        },
        ErrorKind::DnsResolve { message, .. } => Error::MongoUnreachable {
            target,
            detail: format!("{command}: {}", clean(message)),
        },
        ErrorKind::Shutdown => Error::MongoConnectionLost {
            target,
            detail: format!("{command} (the client was shut down)"),
        },
        _ => Error::Mongo {
            target,
            command: command.to_string(),
            detail: clean(&err.to_string()),
        },
    }
}

/// The driver's server-selection message carries a whole topology description; the cause a
/// reader needs is the last server's error (`Connection refused`, a TLS failure…).
fn selection_cause(message: &str) -> String {
    match message.rfind("Error: ") {
        Some(i) => {
            let cause = message[i + "Error: ".len()..].trim_start_matches("Kind: ");
            let end = [", labels", " }"]
                .iter()
                .filter_map(|m| cause.find(m))
                .min()
                .unwrap_or(cause.len());
            format!("no reachable server ({})", cause[..end].trim())
        }
        None => message
            .split(" Topology:")
            .next()
            .unwrap_or(message)
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_errors_keep_only_the_cause() {
        let m = "Server selection timeout: No available servers. Topology: { Type: Single, Servers: [ { Address: 127.0.0.1:1, Type: Unknown, Error: Kind: I/O error: Connection refused (os error 111), labels: {} } ] }";
        assert_eq!(
            selection_cause(m),
            "no reachable server (I/O error: Connection refused (os error 111))"
        );
        assert_eq!(
            selection_cause("Server selection timeout: None. Topology: { }"),
            "Server selection timeout: None."
        );
    }
}

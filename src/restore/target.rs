//! The MongoDB deployment a restore writes into.

use std::collections::HashMap;
use std::time::Duration;

use bson::{doc, Document};
use futures_util::TryStreamExt;
use mongodb::error::ErrorKind;
use nightdump_archive::Namespace;

use super::commands::Version;
use crate::error::Result;
use crate::secret::ConnectionString;
use crate::source::{ReadPreferenceChoice, Source, SourceOptions};

const NAMESPACE_NOT_FOUND: i32 = 26;

pub struct Target {
    pub conn: Source,
    pub version: Version,
}

fn parse_version(text: &str) -> Version {
    let mut parts = text
        .split(['-', '+'])
        .next()
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

impl Target {
    pub async fn connect(uri: &ConnectionString, timeout: Duration) -> Result<Self> {
        let conn = Source::connect(&SourceOptions {
            uri: uri.clone(),
            read_preference: ReadPreferenceChoice::Primary,
            server_selection_timeout: timeout,
        })
        .await?;
        let version = parse_version(&conn.server_version);
        Ok(Target { conn, version })
    }

    /// Collections and views of `db`, by name, as listCollections reports them.
    pub async fn collections(&self, db: &str) -> Result<HashMap<String, Document>> {
        let docs: Vec<Document> = self
            .conn
            .client()
            .database(db)
            .run_cursor_command(doc! { "listCollections": 1, "filter": {}, "cursor": {} })
            .await
            .map_err(|e| self.conn.error("listCollections", &e))?
            .try_collect()
            .await
            .map_err(|e| self.conn.error("listCollections", &e))?;
        Ok(docs
            .into_iter()
            .filter_map(|d| Some((d.get_str("name").ok()?.to_string(), d)))
            .collect())
    }

    /// Drops a collection; one that does not exist is fine.
    pub async fn drop(&self, ns: &Namespace) -> Result<()> {
        let result = self
            .conn
            .client()
            .database(&ns.db)
            .run_command(doc! { "drop": ns.collection.as_str() })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind.as_ref(), ErrorKind::Command(c) if c.code == NAMESPACE_NOT_FOUND) => {
                Ok(())
            }
            Err(e) => Err(self.conn.error(&format!("drop {ns}"), &e)),
        }
    }

    pub async fn run(&self, db: &str, what: &str, command: Document) -> Result<Document> {
        self.conn
            .client()
            .database(db)
            .run_command(command)
            .await
            .map_err(|e| self.conn.error(what, &e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_parse_like_mongorestore() {
        assert_eq!(super::parse_version("7.0.14"), (7, 0, 14));
        assert_eq!(super::parse_version("8.2.0-rc1"), (8, 2, 0));
        assert_eq!(super::parse_version("weird"), (0, 0, 0));
    }
}

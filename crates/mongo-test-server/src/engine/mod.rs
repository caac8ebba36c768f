//! The data side of the server: catalog, documents, cursors, oplog. It knows nothing of
//! sockets; the connection layer hands it one merged command at a time.

use std::sync::Arc;

use bson::{RawDocument, RawDocumentBuf};

use crate::error::CommandError;

/// How the engine is set up at start.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// `Some(name)` records every write in `local.oplog.rs` (replica-set mode).
    pub replica_set: Option<String>,
}

/// All databases of one server instance. Shared by every connection of that instance.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Arc<Self> {
        Arc::new(Self { config })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Runs one data command against database `db`. `cmd` is the OP_MSG body with any
    /// document sequences already merged in (`$db` and the generic fields such as `lsid`
    /// may still be present and are ignored). `Ok` is the whole reply, `ok: 1.0` included.
    pub async fn execute(
        &self,
        db: &str,
        cmd: &RawDocument,
    ) -> Result<RawDocumentBuf, CommandError> {
        let _ = db;
        let name = cmd
            .into_iter()
            .next()
            .and_then(|e| e.ok())
            .map(|(k, _)| k.to_string())
            .unwrap_or_default();
        Err(CommandError::command_not_found(&name))
    }
}

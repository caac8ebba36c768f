//! One client connection: read a message, run its command, write the reply, until the
//! client leaves, a fault or a malformed message closes it, or the server stops.

use std::sync::Arc;

use bson::{rawdoc, RawBsonRef, RawDocument, RawDocumentBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::admin;
use crate::auth::{self, Decision, RoleRef};
use crate::error::CommandError;
use crate::faults::{BatchFault, CommandFault};
use crate::state::{stopping, Client, Shared};
use crate::wire::{self, Message, WireError, MAX_REPLY_DOCUMENT_SIZE};

enum Step {
    Continue,
    Close,
}

pub(crate) async fn serve<S>(
    mut stream: S,
    mut client: Client,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let step = tokio::select! {
            () = stopping(&mut stopped) => Ok(Step::Close),
            step = next(&mut stream, &mut client, &shared) => step,
        };
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::Close) => break,
            Err(e) => {
                match e.kind() {
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {}
                    _ => tracing::info!(id = client.id, error = %e, "connection closed"),
                }
                break;
            }
        }
    }
    let _ = stream.shutdown().await;
    tracing::debug!(id = client.id, "connection ended");
}

/// What a message buffer starts at; most commands fit.
const FIRST_READ_CAPACITY: usize = 64 * 1024;

/// Reads one message, bounding the allocation by the validated declared length.
/// `Ok(None)` is a clean end of stream between messages.
pub(crate) async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<Option<Result<Vec<u8>, WireError>>> {
    let mut prefix = [0u8; 4];
    match stream.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = match wire::message_length(prefix) {
        Ok(len) => len,
        Err(e) => return Ok(Some(Err(e))),
    };
    // The buffer grows with the bytes that arrive, never past the declared length: a header
    // that claims 48 MB and then stalls or hangs up costs what was sent, not 48 MB.
    let mut bytes = Vec::with_capacity(len.min(FIRST_READ_CAPACITY));
    bytes.extend_from_slice(&prefix);
    let rest = u64::try_from(len - prefix.len()).unwrap_or(u64::MAX);
    (&mut *stream).take(rest).read_to_end(&mut bytes).await?;
    if bytes.len() < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "the client hung up after {} of {len} message bytes",
                bytes.len()
            ),
        ));
    }
    Ok(Some(Ok(bytes)))
}

async fn next<S>(stream: &mut S, client: &mut Client, shared: &Shared) -> std::io::Result<Step>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bytes = match read_message(stream).await? {
        None => return Ok(Step::Close),
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => {
            tracing::warn!(id = client.id, error = %e, "bad message");
            return Ok(Step::Close);
        }
    };
    let message = match wire::parse_message(&bytes) {
        Ok(m) => m,
        Err(WireError::Refused { request_id, error }) => {
            tracing::info!(id = client.id, %error, "message refused");
            let reply =
                wire::encode_op_msg(shared.next_request_id(), request_id, &error.to_reply());
            stream.write_all(&reply).await?;
            return Ok(Step::Continue);
        }
        Err(e) => {
            tracing::warn!(id = client.id, error = %e, "bad message");
            return Ok(Step::Close);
        }
    };
    drop(bytes);
    let request_id = message.header().request_id;
    let (reply, legacy, silent) = match message {
        Message::Query(query) => {
            let reply = match query.command_db() {
                Some(db) => {
                    let cmd = query.command();
                    let name = command_name(&cmd);
                    if matches!(name.as_str(), "hello" | "isMaster" | "ismaster") {
                        handle(shared, client, db, &cmd).await
                    } else {
                        Outcome::Reply(decorate(shared, Err(unsupported_op_query(&name))))
                    }
                }
                None => Outcome::Reply(decorate(
                    shared,
                    Err(CommandError::new(
                        5739101,
                        "Location5739101",
                        "OP_QUERY is no longer supported. The client driver may require an upgrade. For more details see https://dochub.mongodb.org/core/legacy-opcode-removal",
                    )),
                )),
            };
            (reply, true, false)
        }
        Message::Msg(msg) => {
            let silent = msg.more_to_come();
            let cmd = msg.command();
            let reply = match cmd.get_str("$db") {
                Ok(db) => {
                    let db = db.to_owned();
                    handle(shared, client, &db, &cmd).await
                }
                Err(_) => Outcome::Reply(decorate(
                    shared,
                    Err(CommandError::new(
                        40571,
                        "Location40571",
                        "OP_MSG requests require a $db argument",
                    )),
                )),
            };
            (reply, false, silent)
        }
    };
    let mut reply = match reply {
        Outcome::Close => {
            tracing::info!(id = client.id, "closing the connection (fault)");
            return Ok(Step::Close);
        }
        Outcome::Reply(reply) => reply,
    };
    if shared.faults.watches_batches() {
        if let Some(docs) = batch_len(&reply) {
            match shared.faults.on_batch(docs) {
                BatchFault::Close => {
                    tracing::info!(
                        id = client.id,
                        docs,
                        "closing the connection instead of sending a batch (fault)"
                    );
                    return Ok(Step::Close);
                }
                BatchFault::Send { delay: Some(d) } => tokio::time::sleep(d).await,
                BatchFault::Send { delay: None } => {}
            }
        }
    }
    if reply.as_bytes().len() > MAX_REPLY_DOCUMENT_SIZE {
        reply = decorate(shared, Err(too_large(reply.as_bytes().len())));
    }
    if silent {
        return Ok(Step::Continue);
    }
    let out_id = shared.next_request_id();
    let bytes = if legacy {
        wire::encode_op_reply(out_id, request_id, &reply)
    } else {
        wire::encode_op_msg(out_id, request_id, &reply)
    };
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    Ok(Step::Continue)
}

enum Outcome {
    Reply(RawDocumentBuf),
    Close,
}

async fn handle(shared: &Shared, client: &mut Client, db: &str, cmd: &RawDocument) -> Outcome {
    let name = command_name(cmd);
    let fault = shared.faults.on_command(&name);
    if fault == CommandFault::Close {
        return Outcome::Close;
    }
    if let CommandFault::Delay(d) = fault {
        tokio::time::sleep(d).await;
    }
    let result = match check_auth(shared, client, db, &name, cmd) {
        Err(e) => Err(e),
        Ok(narrow) => match fault {
            CommandFault::Fail(e) => Err(e),
            _ => match (narrow, dispatch(shared, client, db, &name, cmd).await) {
                (Some(roles), Ok(reply)) => Ok(only_authorized_databases(reply, &roles)),
                (_, result) => result,
            },
        },
    };
    Outcome::Reply(decorate(shared, result))
}

/// Runs one command for an in-process caller; see `ServerHandle::run_command`.
pub(crate) async fn run(
    shared: &Shared,
    client: &mut Client,
    db: &str,
    cmd: &RawDocument,
) -> Result<RawDocumentBuf, CommandError> {
    let name = command_name(cmd);
    let reply = dispatch(shared, client, db, &name, cmd).await?;
    Ok(decorate(shared, Ok(reply)))
}

async fn dispatch(
    shared: &Shared,
    client: &mut Client,
    db: &str,
    name: &str,
    cmd: &RawDocument,
) -> Result<RawDocumentBuf, CommandError> {
    if let Some(result) = admin::handle(shared, client, db, name, cmd) {
        return result;
    }
    shared.engine.execute(db, cmd).await
}

/// Authentication, then authorization against the user's roles. `Ok(Some(roles))`: run it,
/// but show only the databases those roles reach (listDatabases without the action).
fn check_auth(
    shared: &Shared,
    client: &mut Client,
    db: &str,
    name: &str,
    cmd: &RawDocument,
) -> Result<Option<Vec<RoleRef>>, CommandError> {
    if client.internal || !shared.users.enforced() || admin::allowed_without_auth(name) {
        return Ok(None);
    }
    // mongod looks the command up before checking authorization.
    if !admin::is_known_command(name) {
        return Err(CommandError::command_not_found(name));
    }
    let Some(id) = client.session.identity(&shared.users) else {
        return Err(CommandError::unauthorized(format!(
            "command {name} requires authentication"
        )));
    };
    let roles = shared.users.roles(&id.db, &id.user).unwrap_or_default();
    match auth::authorize(&roles, db, name, cmd) {
        Decision::Allowed => Ok(None),
        Decision::OnlyAuthorizedDatabases => Ok(Some(roles)),
        Decision::Denied(e) => {
            tracing::info!(user = %id.user, db = %id.db, command = name, "not authorized");
            Err(e)
        }
    }
}

/// A listDatabases reply cut down to the databases `roles` have privileges on.
fn only_authorized_databases(reply: RawDocumentBuf, roles: &[RoleRef]) -> RawDocumentBuf {
    let mut out = RawDocumentBuf::new();
    for (key, value) in reply.iter().flatten() {
        match (key, value) {
            ("databases", RawBsonRef::Array(dbs)) => {
                let mut kept = bson::RawArrayBuf::new();
                for entry in dbs.into_iter().flatten() {
                    let visible = match entry {
                        RawBsonRef::Document(d) => d
                            .get_str("name")
                            .is_ok_and(|n| auth::authz::has_any_on_db(roles, n)),
                        _ => false,
                    };
                    if visible {
                        kept.push(entry.to_raw_bson());
                    }
                }
                out.append(key, kept);
            }
            _ => out.append(key, value.to_raw_bson()),
        }
    }
    out
}

/// The reply as sent: an error becomes mongod's error document, and in replica-set mode
/// every reply gossips `$clusterTime` and `operationTime`.
fn decorate(shared: &Shared, result: Result<RawDocumentBuf, CommandError>) -> RawDocumentBuf {
    let mut reply = match result {
        Ok(reply) => reply,
        Err(e) => e.to_reply(),
    };
    if shared.replica_set.is_some() {
        let ts = shared.cluster_time();
        reply.append(
            "$clusterTime",
            rawdoc! {
                "clusterTime": ts,
                "signature": {
                    "hash": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0u8; 20] },
                    "keyId": 0i64,
                },
            },
        );
        reply.append("operationTime", ts);
    }
    reply
}

fn command_name(cmd: &RawDocument) -> String {
    match cmd.into_iter().next() {
        Some(Ok((k, _))) => k.to_owned(),
        _ => String::new(),
    }
}

fn unsupported_op_query(name: &str) -> CommandError {
    CommandError::new(
        352,
        "UnsupportedOpQueryCommand",
        format!("Unsupported OP_QUERY command: {name}. The client driver may require an upgrade. For more details see https://dochub.mongodb.org/core/legacy-opcode-removal"),
    )
}

fn too_large(size: usize) -> CommandError {
    CommandError::new(
        10334,
        "BSONObjectTooLarge",
        format!("BSONObj size: {size} (0x{size:X}) is invalid. Size must be between 0 and 16793600(16MB)"),
    )
}

/// The number of documents in a cursor reply's batch, if this is one.
fn batch_len(reply: &RawDocument) -> Option<u64> {
    let cursor = reply.get_document("cursor").ok()?;
    for key in ["firstBatch", "nextBatch"] {
        if let Ok(Some(RawBsonRef::Array(batch))) = cursor.get(key) {
            return Some(batch.into_iter().count() as u64);
        }
    }
    None
}

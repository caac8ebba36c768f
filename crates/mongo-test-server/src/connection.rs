//! One client connection: read a message, run its command, write the reply, until the
//! client leaves, a fault or a malformed message closes it, or the server stops.

use std::net::SocketAddr;
use std::sync::Arc;

use bson::{rawdoc, RawBsonRef, RawDocument, RawDocumentBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::admin;
use crate::auth::Session;
use crate::error::CommandError;
use crate::faults::{BatchFault, CommandFault};
use crate::server::{stopping, Shared};
use crate::wire::{self, Message, WireError, MAX_REPLY_DOCUMENT_SIZE};

/// What the server knows about the client behind one connection.
#[derive(Debug)]
pub(crate) struct Client {
    pub id: i32,
    pub peer: Option<SocketAddr>,
    pub session: Session,
    /// In-process commands from the handle: no authentication, no faults.
    pub internal: bool,
}

impl Client {
    pub fn new(id: i32, peer: Option<SocketAddr>) -> Self {
        Self {
            id,
            peer,
            session: Session::default(),
            internal: false,
        }
    }

    pub fn internal() -> Self {
        Self {
            internal: true,
            ..Self::new(0, None)
        }
    }
}

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
    let mut bytes = vec![0u8; len];
    bytes[..4].copy_from_slice(&prefix);
    stream.read_exact(&mut bytes[4..]).await?;
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
    let result = match check_auth(shared, client, &name) {
        Err(e) => Err(e),
        Ok(()) => match fault {
            CommandFault::Fail(e) => Err(e),
            _ => dispatch(shared, client, db, &name, cmd).await,
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
    let reply = shared.engine.execute(db, cmd).await?;
    sync_accounts(shared, db, name, cmd);
    Ok(reply)
}

/// Keeps the login accounts in step with the user commands the engine has just applied, so
/// a user created through the wire can log in and a dropped one is locked out, as on mongod.
fn sync_accounts(shared: &Shared, db: &str, name: &str, cmd: &RawDocument) {
    match name {
        "createUser" => {
            if let (Ok(user), Ok(password)) = (cmd.get_str("createUser"), cmd.get_str("pwd")) {
                let account = crate::auth::User {
                    name: user.to_owned(),
                    password: password.to_owned(),
                    db: db.to_owned(),
                };
                if let Err(e) = shared.users.add(&account) {
                    tracing::warn!(error = %e, "created user cannot log in");
                }
            }
        }
        "dropUser" => {
            if let Ok(user) = cmd.get_str("dropUser") {
                shared.users.remove(db, user);
            }
        }
        _ => {}
    }
}

fn check_auth(shared: &Shared, client: &mut Client, name: &str) -> Result<(), CommandError> {
    if client.internal || !shared.users.enforced() || admin::allowed_without_auth(name) {
        return Ok(());
    }
    // mongod looks the command up before checking authorization.
    if !admin::is_known_command(name) {
        return Err(CommandError::command_not_found(name));
    }
    if client.session.identity(&shared.users).is_some() {
        return Ok(());
    }
    Err(CommandError::unauthorized(format!(
        "command {name} requires authentication"
    )))
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

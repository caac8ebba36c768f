//! Starting and stopping one server instance: the listener, the accept loop and the state
//! its connections share. Instances are independent; nothing here is global.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bson::Document;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::auth::{AwsIdentity, User, UserError, UserStore};
use crate::connection;
use crate::engine::{Engine, EngineConfig};
use crate::error::CommandError;
use crate::faults::Faults;
use crate::seed::{self, Seed};
use crate::state::{stopping, Client, Counters, Shared};
use crate::tls::{self, TlsConfig, TlsError};

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; 127.0.0.1 by default.
    pub bind: IpAddr,
    /// Port to listen on; 0 picks a free one (see [`ServerHandle::addr`]).
    pub port: u16,
    /// Accounts; authentication is required as soon as there is one.
    pub users: Vec<User>,
    /// AWS credentials whose MONGODB-AWS logins are accepted, standing in for STS; each
    /// logs in as the `$external` user of its ARN, which must be among `users`.
    pub aws_identities: Vec<AwsIdentity>,
    /// Serve TLS only (like `--tlsMode requireTLS`).
    pub tls: Option<TlsConfig>,
    /// Run as the primary of a one-member replica set of this name, with an oplog.
    pub replica_set: Option<String>,
    /// Data loaded at start.
    pub seed: Seed,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            users: Vec::new(),
            aws_identities: Vec::new(),
            tls: None,
            replica_set: None,
            seed: Seed::None,
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot listen on {addr}: {source}; choose another address or port (0 picks a free one)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(
        "seeding failed on database {db}: {source}; the seed data is inconsistent with the engine"
    )]
    Seed { db: String, source: CommandError },
}

/// A running server. Dropping it stops the server in the background; [`shutdown`]
/// stops it and waits.
///
/// [`shutdown`]: ServerHandle::shutdown
#[derive(Debug)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// Binds, seeds and starts serving. Returns once the listener is bound, so
/// [`ServerHandle::uri`] can be used at once.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, StartError> {
    let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let users = UserStore::new(&config.users)?.with_aws(config.aws_identities.clone());
    let wanted = SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(wanted)
        .await
        .map_err(|source| StartError::Bind {
            addr: wanted,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: wanted,
        source,
    })?;
    let dial_ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    let engine = Engine::new(EngineConfig {
        replica_set: config.replica_set.clone(),
    });
    apply_seed(&engine, &config.seed).await?;
    let users = users.with_catalog(engine.clone());
    let shared = Arc::new(Shared::new(
        engine,
        users,
        SocketAddr::new(dial_ip, addr.port()).to_string(),
        config.replica_set.clone(),
        acceptor.is_some(),
    ));
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, acceptor, shared.clone(), stopped));
    tracing::info!(%addr, replica_set = ?config.replica_set, tls = shared.tls, auth = shared.users.enforced(), "listening");
    Ok(ServerHandle {
        shared,
        addr,
        stop,
        task: Some(task),
    })
}

async fn apply_seed(engine: &Engine, seed: &Seed) -> Result<(), StartError> {
    let mut applied = 0u64;
    for (db, command) in seed::commands(seed) {
        engine
            .execute(&db, &command)
            .await
            .map_err(|source| StartError::Seed {
                db: db.clone(),
                source,
            })?;
        applied += 1;
    }
    if applied > 0 {
        tracing::info!(?seed, commands = applied, "seeded");
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut stop_signal = stopped.clone();
    loop {
        tokio::select! {
            () = stopping(&mut stop_signal) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(connection_task(
                        tcp,
                        peer,
                        acceptor.clone(),
                        shared.clone(),
                        stopped.clone(),
                    ));
                }
                Err(e) => {
                    // Usually out of file descriptors; the listener itself is still fine.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::task::yield_now().await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Connections watch the same signal and close themselves.
    while connections.join_next().await.is_some() {}
    tracing::info!("stopped");
}

async fn connection_task(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let client = Client::new(shared.next_connection_id(), Some(peer));
    let _open = OpenConnection::new(&shared);
    tracing::debug!(%peer, id = client.id, "connection accepted");
    match acceptor {
        None => connection::serve(tcp, client, shared.clone(), stopped).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                () = stopping(&mut stopped) => return,
                h = acceptor.accept(tcp) => h,
            };
            match handshake {
                Ok(stream) => connection::serve(stream, client, shared.clone(), stopped).await,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed; connection closed")
                }
            }
        }
    }
}

/// Keeps serverStatus's connection counts.
struct OpenConnection<'a>(&'a Counters);

impl<'a> OpenConnection<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.counters.current.fetch_add(1, Ordering::Relaxed);
        shared
            .counters
            .total_created
            .fetch_add(1, Ordering::Relaxed);
        Self(&shared.counters)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ServerHandle {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A connection string a driver can use as is (no credentials).
    pub fn uri(&self) -> String {
        let mut options = match &self.shared.replica_set {
            Some(name) => format!("replicaSet={name}"),
            None => "directConnection=true".to_owned(),
        };
        if self.shared.tls {
            options.push_str("&tls=true");
        }
        format!("mongodb://{}/?{options}", self.shared.host)
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    /// Runs a command in process, as a client would but without authentication or
    /// faults: for test setup and assertions.
    pub async fn run_command(&self, db: &str, command: Document) -> Result<Document, CommandError> {
        let raw = bson::RawDocumentBuf::from_document(&command)
            .map_err(|e| CommandError::bad_value(format!("command is not valid BSON: {e}")))?;
        let mut client = Client::internal();
        let reply = connection::run(&self.shared, &mut client, db, &raw).await?;
        Document::try_from(reply.as_ref()).map_err(|e| {
            CommandError::new(1, "InternalError", format!("reply is not valid BSON: {e}"))
        })
    }

    /// Removes every user called `name`: connections authenticated as that user get
    /// Unauthorized (13) on their next command, and new logins fail.
    pub fn revoke_user(&self, name: &str) -> bool {
        self.shared.users.revoke(name)
    }

    /// Adds (or replaces) an account.
    pub fn add_user(&self, user: &User) -> Result<(), UserError> {
        self.shared.users.add(user)
    }

    /// Stops accepting, closes every connection and returns once all are closed.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "server task ended abnormally");
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

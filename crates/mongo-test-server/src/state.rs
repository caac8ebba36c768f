//! The state of one server instance that every connection shares, and what the server knows
//! about the client behind one connection: what the command handlers (`admin`,
//! `connection`) and the accept loop (`server`) all use, so none of them depends on another
//! for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bson::{oid::ObjectId, Timestamp};
use tokio::sync::watch;

use crate::auth::{Session, UserStore};
use crate::engine::Engine;
use crate::faults::Faults;

/// Connection counts for serverStatus.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub current: AtomicU64,
    pub total_created: AtomicU64,
}

/// State shared by every connection of one instance.
#[derive(Debug)]
pub(crate) struct Shared {
    pub engine: Arc<Engine>,
    pub users: UserStore,
    pub faults: Faults,
    /// The address clients dial, as hello reports it in `me`/`hosts`.
    pub host: String,
    pub replica_set: Option<String>,
    pub tls: bool,
    pub election_id: ObjectId,
    pub started: Instant,
    pub counters: Counters,
    next_connection_id: AtomicI32,
    next_request_id: AtomicI32,
    /// Last `$clusterTime` handed out, so replies never go back in time.
    clock: Mutex<Timestamp>,
}

impl Shared {
    pub fn new(
        engine: Arc<Engine>,
        users: UserStore,
        host: String,
        replica_set: Option<String>,
        tls: bool,
    ) -> Self {
        Self {
            engine,
            users,
            faults: Faults::default(),
            host,
            replica_set,
            tls,
            election_id: ObjectId::new(),
            started: Instant::now(),
            counters: Counters::default(),
            next_connection_id: AtomicI32::new(0),
            next_request_id: AtomicI32::new(0),
            clock: Mutex::new(Timestamp {
                time: 0,
                increment: 0,
            }),
        }
    }

    pub fn next_connection_id(&self) -> i32 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn next_request_id(&self) -> i32 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The cluster time: the newest oplog entry, or a logical clock advanced from the wall
    /// clock when nothing has been written since. Never decreases.
    pub fn cluster_time(&self) -> Timestamp {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let mut clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = *clock;
        if let Some(op) = self.engine.last_optime() {
            if (op.time, op.increment) > (next.time, next.increment) {
                next = op;
            }
        }
        // Increment 0: the oplog's first entry of a new second is (now, 1), so a write is
        // always after every cluster time handed out before it, as on mongod.
        if now > next.time {
            next = Timestamp {
                time: now,
                increment: 0,
            };
        }
        *clock = next;
        next
    }
}

/// Resolves once the server is asked to stop (or its handle is gone).
pub(crate) async fn stopping(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

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

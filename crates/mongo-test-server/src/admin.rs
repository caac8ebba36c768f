//! Server-level commands (handshake, diagnostics, replication status, authentication),
//! answered with mongod 7.0's field names and BSON types. Data commands go to the engine.

use std::sync::atomic::Ordering;

use bson::{rawdoc, DateTime, RawArrayBuf, RawBsonRef, RawDocument, RawDocumentBuf, Timestamp};

use crate::auth;
use crate::error::CommandError;
use crate::state::Client;
use crate::state::Shared;

pub const VERSION: &str = "7.0.14";
const VERSION_ARRAY: [i32; 4] = [7, 0, 14, 0];
const GIT_VERSION: &str = "ce59cfc6a3c5e5c067dca0d30697edd68d4f5188";
const MAX_BSON_OBJECT_SIZE: i32 = 16 * 1024 * 1024;
const MAX_MESSAGE_SIZE_BYTES: i32 = 48_000_000;
const MAX_WRITE_BATCH_SIZE: i32 = 100_000;
const MAX_WIRE_VERSION: i32 = 21;
const TERM: i64 = 1;

/// Commands mongod runs for clients that have not authenticated (`requiresAuth() == false`).
const NO_AUTH_COMMANDS: &[&str] = &[
    "hello",
    "isMaster",
    "ismaster",
    "ping",
    "buildInfo",
    "buildinfo",
    "saslStart",
    "saslContinue",
    "authenticate",
    "logout",
    "endSessions",
    "connectionStatus",
    "whatsmyuri",
];

/// mongod 7.0's command names, so an unauthenticated client asking for a command that does
/// not exist gets CommandNotFound (59) rather than Unauthorized (13), as on mongod.
const KNOWN_COMMANDS: &[&str] = &[
    "_mergeAuthzCollections",
    "abortTransaction",
    "aggregate",
    "analyze",
    "appendOplogNote",
    "applyOps",
    "authenticate",
    "autoSplitVector",
    "buildInfo",
    "buildinfo",
    "checkShardingIndex",
    "cleanupOrphaned",
    "clearLog",
    "cloneCollectionAsCapped",
    "collMod",
    "collStats",
    "commitTransaction",
    "compact",
    "connPoolStats",
    "connPoolSync",
    "connectionStatus",
    "convertToCapped",
    "count",
    "create",
    "createIndexes",
    "createRole",
    "createUser",
    "currentOp",
    "dataSize",
    "dbHash",
    "dbStats",
    "delete",
    "deleteIndexes",
    "distinct",
    "drop",
    "dropAllRolesFromDatabase",
    "dropAllUsersFromDatabase",
    "dropConnections",
    "dropDatabase",
    "dropIndexes",
    "dropRole",
    "dropUser",
    "endSessions",
    "explain",
    "features",
    "filemd5",
    "find",
    "findAndModify",
    "findandmodify",
    "fsync",
    "fsyncUnlock",
    "getClusterParameter",
    "getCmdLineOpts",
    "getDefaultRWConcern",
    "getLog",
    "getMore",
    "getParameter",
    "grantPrivilegesToRole",
    "grantRolesToRole",
    "grantRolesToUser",
    "hello",
    "hostInfo",
    "insert",
    "invalidateUserCache",
    "isMaster",
    "ismaster",
    "killAllSessions",
    "killAllSessionsByPattern",
    "killCursors",
    "killOp",
    "killSessions",
    "listCollections",
    "listCommands",
    "listDatabases",
    "listIndexes",
    "lockInfo",
    "logRotate",
    "logout",
    "mapReduce",
    "ping",
    "planCacheClear",
    "profile",
    "reIndex",
    "refreshSessions",
    "renameCollection",
    "replSetGetConfig",
    "replSetGetStatus",
    "replSetInitiate",
    "replSetReconfig",
    "replSetResizeOplog",
    "replSetStepDown",
    "revokePrivilegesFromRole",
    "revokeRolesFromRole",
    "revokeRolesFromUser",
    "rolesInfo",
    "rotateCertificates",
    "saslContinue",
    "saslStart",
    "serverStatus",
    "setClusterParameter",
    "setDefaultRWConcern",
    "setFeatureCompatibilityVersion",
    "setParameter",
    "shutdown",
    "startSession",
    "top",
    "update",
    "updateRole",
    "updateUser",
    "usersInfo",
    "validate",
    "whatsmyuri",
];

pub fn allowed_without_auth(name: &str) -> bool {
    NO_AUTH_COMMANDS.contains(&name)
}

pub fn is_known_command(name: &str) -> bool {
    KNOWN_COMMANDS.contains(&name)
}

/// Answers `name` if it is a server-level command; `None` hands it to the engine.
pub fn handle(
    shared: &Shared,
    client: &mut Client,
    db: &str,
    name: &str,
    cmd: &RawDocument,
) -> Option<Result<RawDocumentBuf, CommandError>> {
    let result = match name {
        "hello" => Ok(hello(shared, client, db, cmd, true)),
        "isMaster" | "ismaster" => Ok(hello(shared, client, db, cmd, false)),
        "ping" => Ok(ok()),
        "buildInfo" | "buildinfo" => Ok(build_info()),
        "getParameter" => get_parameter(shared, cmd),
        "serverStatus" => Ok(server_status(shared)),
        "endSessions" => Ok(ok()),
        "getLog" => get_log(cmd),
        "hostInfo" => Ok(host_info()),
        "whatsmyuri" => Ok(whatsmyuri(client)),
        "connectionStatus" => Ok(connection_status(shared, client)),
        "replSetGetStatus" => repl_set_get_status(shared),
        "replSetGetConfig" => repl_set_get_config(shared),
        "saslStart" => client
            .session
            .sasl_start(&shared.users, db, cmd)
            .map(with_ok),
        "saslContinue" => client
            .session
            .sasl_continue(&shared.users, cmd)
            .map(with_ok),
        "authenticate" => Err(authenticate_unavailable(cmd)),
        "logout" => {
            client.session = auth::Session::default();
            Ok(ok())
        }
        _ => return None,
    };
    Some(result)
}

/// `authenticate` only ever served MONGODB-X509, which needs client certificates this
/// server does not request.
fn authenticate_unavailable(cmd: &RawDocument) -> CommandError {
    let mechanism = cmd.get_str("mechanism").unwrap_or("");
    CommandError::new(
        334,
        "MechanismUnavailable",
        format!(
            "Received authentication for mechanism {mechanism} which is unknown or not enabled"
        ),
    )
}

fn ok() -> RawDocumentBuf {
    rawdoc! { "ok": 1.0 }
}

fn with_ok(mut doc: RawDocumentBuf) -> RawDocumentBuf {
    doc.append("ok", 1.0);
    doc
}

fn int_array(values: &[i32]) -> RawArrayBuf {
    let mut a = RawArrayBuf::new();
    for v in values {
        a.push(*v);
    }
    a
}

fn str_array(values: &[&str]) -> RawArrayBuf {
    let mut a = RawArrayBuf::new();
    for v in values {
        a.push(*v);
    }
    a
}

fn op_time(ts: Timestamp) -> RawDocumentBuf {
    rawdoc! { "ts": ts, "t": TERM }
}

fn wall(ts: Timestamp) -> DateTime {
    DateTime::from_millis(i64::from(ts.time) * 1000)
}

fn hello(
    shared: &Shared,
    client: &mut Client,
    db: &str,
    cmd: &RawDocument,
    modern: bool,
) -> RawDocumentBuf {
    let primary_field = if modern {
        "isWritablePrimary"
    } else {
        "ismaster"
    };
    let mut r = RawDocumentBuf::new();
    if truthy(cmd.get("helloOk").ok().flatten()) {
        r.append("helloOk", true);
    }
    match &shared.replica_set {
        None => r.append(primary_field, true),
        Some(set) => {
            let ts = shared.cluster_time();
            r.append("hosts", str_array(&[shared.host.as_str()]));
            r.append("setName", set.as_str());
            r.append("setVersion", 1);
            r.append(primary_field, true);
            r.append("secondary", false);
            r.append("primary", shared.host.as_str());
            r.append("me", shared.host.as_str());
            r.append("electionId", shared.election_id);
            r.append(
                "lastWrite",
                rawdoc! {
                    "opTime": op_time(ts),
                    "lastWriteDate": wall(ts),
                    "majorityOpTime": op_time(ts),
                    "majorityWriteDate": wall(ts),
                },
            );
        }
    }
    r.append("maxBsonObjectSize", MAX_BSON_OBJECT_SIZE);
    r.append("maxMessageSizeBytes", MAX_MESSAGE_SIZE_BYTES);
    r.append("maxWriteBatchSize", MAX_WRITE_BATCH_SIZE);
    r.append("localTime", DateTime::now());
    r.append("logicalSessionTimeoutMinutes", 30);
    r.append("connectionId", client.id);
    r.append("minWireVersion", 0);
    r.append("maxWireVersion", MAX_WIRE_VERSION);
    r.append("readOnly", false);
    if let Ok(target) = cmd.get_str("saslSupportedMechs") {
        if let Some((user_db, user)) = target.split_once('.') {
            let mechanisms = shared.users.mechanisms(user_db, user);
            if !mechanisms.is_empty() {
                r.append("saslSupportedMechs", str_array(&mechanisms));
            }
        }
    }
    if let Ok(spec) = cmd.get_document("speculativeAuthenticate") {
        let auth_db = spec.get_str("db").unwrap_or(db);
        // A failed speculative attempt is simply left out; the client then authenticates
        // the usual way and sees the real error there.
        match client.session.sasl_start(&shared.users, auth_db, spec) {
            Ok(reply) => r.append("speculativeAuthenticate", reply),
            Err(e) => tracing::debug!(error = %e, "speculative authentication not accepted"),
        }
    }
    r.append("ok", 1.0);
    r
}

fn truthy(v: Option<RawBsonRef<'_>>) -> bool {
    match v {
        Some(RawBsonRef::Boolean(b)) => b,
        Some(RawBsonRef::Int32(i)) => i != 0,
        Some(RawBsonRef::Int64(i)) => i != 0,
        Some(RawBsonRef::Double(d)) => d != 0.0,
        Some(RawBsonRef::Null) | Some(RawBsonRef::Undefined) | None => false,
        Some(_) => true,
    }
}

fn build_info() -> RawDocumentBuf {
    rawdoc! {
        "version": VERSION,
        "gitVersion": GIT_VERSION,
        "modules": RawArrayBuf::new(),
        "allocator": "tcmalloc",
        "javascriptEngine": "mozjs",
        "sysInfo": "deprecated",
        "versionArray": int_array(&VERSION_ARRAY),
        "openssl": {
            "running": "OpenSSL 3.0.2 15 Mar 2022",
            "compiled": "OpenSSL 3.0.2 15 Mar 2022",
        },
        "buildEnvironment": {
            "distmod": "ubuntu2204",
            "distarch": std::env::consts::ARCH,
            "cc": "/opt/mongodbtoolchain/v4/bin/gcc: gcc (GCC) 11.3.0",
            "ccflags": "-Werror -include mongo/platform/basic.h -ffp-contract=off -fasynchronous-unwind-tables -g2 -Wall -fno-omit-frame-pointer",
            "cxx": "/opt/mongodbtoolchain/v4/bin/g++: g++ (GCC) 11.3.0",
            "cxxflags": "-Woverloaded-virtual -Wpessimizing-move -Wno-maybe-uninitialized -fsized-deallocation -std=c++20",
            "linkflags": "-Wl,--fatal-warnings -pthread -Wl,-z,now -fuse-ld=lld -fstack-protector-strong -Wl,--no-threads",
            "target_arch": std::env::consts::ARCH,
            "target_os": "linux",
            "cppdefines": "SAFEINT_USE_INTRINSICS 0 PCRE2_STATIC NDEBUG _XOPEN_SOURCE 700 _GNU_SOURCE",
        },
        "bits": 64,
        "debug": false,
        "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
        "storageEngines": str_array(&["devnull", "wiredTiger"]),
        "ok": 1.0,
    }
}

/// The parameters getParameter knows, in the order `getParameter: "*"` lists them.
fn parameters(shared: &Shared) -> Vec<(&'static str, bson::RawBson)> {
    use bson::RawBson;
    vec![
        (
            "authenticationMechanisms",
            RawBson::Array(str_array(&["SCRAM-SHA-1", "SCRAM-SHA-256"])),
        ),
        ("authSchemaVersion", RawBson::Int32(5)),
        (
            "featureCompatibilityVersion",
            RawBson::Document(rawdoc! { "version": "7.0" }),
        ),
        ("logLevel", RawBson::Int32(0)),
        ("maxBSONDepth", RawBson::Int32(200)),
        ("quiet", RawBson::Boolean(false)),
        ("scramIterationCount", RawBson::Int32(10_000)),
        ("scramSHA256IterationCount", RawBson::Int32(15_000)),
        (
            "tlsMode",
            RawBson::String(if shared.tls { "requireTLS" } else { "disabled" }.into()),
        ),
    ]
}

fn get_parameter(shared: &Shared, cmd: &RawDocument) -> Result<RawDocumentBuf, CommandError> {
    let all = match cmd.get("getParameter").ok().flatten() {
        Some(RawBsonRef::String("*")) => true,
        Some(RawBsonRef::Document(d)) => truthy(d.get("allParameters").ok().flatten()),
        _ => false,
    };
    let mut r = RawDocumentBuf::new();
    let mut found = false;
    for (name, value) in parameters(shared) {
        if all || matches!(cmd.get(name), Ok(Some(_))) {
            r.append(name, value);
            found = true;
        }
    }
    if !found {
        return Err(CommandError::new(
            72,
            "InvalidOptions",
            "no option found to get",
        ));
    }
    r.append("ok", 1.0);
    Ok(r)
}

fn resident_mb() -> i32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map(|kb| i32::try_from(kb / 1024).unwrap_or(i32::MAX))
        .unwrap_or(0)
}

fn server_status(shared: &Shared) -> RawDocumentBuf {
    let uptime = shared.started.elapsed();
    let current = shared.counters.current.load(Ordering::Relaxed);
    let total = shared.counters.total_created.load(Ordering::Relaxed);
    let as_i32 = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    let mut r = rawdoc! {
        "host": shared.host.as_str(),
        "version": VERSION,
        "process": "mongod",
        "pid": i64::from(std::process::id()),
        "uptime": uptime.as_secs_f64().floor(),
        "uptimeMillis": i64::try_from(uptime.as_millis()).unwrap_or(i64::MAX),
        "uptimeEstimate": i64::try_from(uptime.as_secs()).unwrap_or(i64::MAX),
        "localTime": DateTime::now(),
        "connections": {
            "current": as_i32(current),
            "available": 838_860_i32.saturating_sub(as_i32(current)),
            "totalCreated": as_i32(total),
            "rejected": 0,
            "active": as_i32(current),
            "threaded": as_i32(current),
            "exhaustIsMaster": 0i64,
            "exhaustHello": 0i64,
            "awaitingTopologyChanges": 0i64,
        },
        "mem": {
            "bits": 64,
            "resident": resident_mb(),
            "virtual": resident_mb(),
            "supported": true,
        },
        "storageEngine": {
            "name": "wiredTiger",
            "supportsCommittedReads": true,
            "oldestRequiredTimestampForCrashRecovery": Timestamp { time: 0, increment: 0 },
            "supportsPendingDrops": true,
            "dropPendingIdents": 0i64,
            "supportsSnapshotReadConcern": true,
            "readOnly": false,
            "persistent": true,
            "backupCursorOpen": false,
        },
    };
    if let Some(set) = &shared.replica_set {
        r.append(
            "repl",
            rawdoc! {
                "hosts": str_array(&[shared.host.as_str()]),
                "setName": set.as_str(),
                "setVersion": 1,
                "isWritablePrimary": true,
                "secondary": false,
                "primary": shared.host.as_str(),
                "me": shared.host.as_str(),
                "electionId": shared.election_id,
                "rbid": 1,
            },
        );
    }
    r.append("ok", 1.0);
    r
}

fn get_log(cmd: &RawDocument) -> Result<RawDocumentBuf, CommandError> {
    match cmd.get("getLog").ok().flatten() {
        Some(RawBsonRef::String("*")) => Ok(rawdoc! {
            "names": str_array(&["global", "startupWarnings"]),
            "ok": 1.0,
        }),
        Some(RawBsonRef::String("global" | "startupWarnings")) => Ok(rawdoc! {
            "totalLinesWritten": 0,
            "log": RawArrayBuf::new(),
            "ok": 1.0,
        }),
        Some(RawBsonRef::String(other)) => Err(CommandError::new(
            96,
            "OperationFailed",
            format!("No log named '{other}'"),
        )),
        _ => Err(CommandError::type_mismatch(
            "Argument to getLog must be of type String",
        )),
    }
}

fn host_info() -> RawDocumentBuf {
    let cores = std::thread::available_parallelism()
        .map(|n| i32::try_from(n.get()).unwrap_or(1))
        .unwrap_or(1);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    rawdoc! {
        "system": {
            "currentTime": DateTime::now(),
            "hostname": hostname,
            "cpuAddrSize": 64,
            "numCores": cores,
            "numCoresAvailableToProcess": cores,
            "cpuArch": std::env::consts::ARCH,
            "numaEnabled": false,
            "numNumaNodes": 1,
        },
        "os": {
            "type": "Linux",
            "name": "Linux",
            "version": kernel.as_str(),
        },
        "extra": {
            "versionString": format!("Linux version {kernel}"),
            "kernelVersion": kernel.as_str(),
            "pageSize": 4096i64,
        },
        "ok": 1.0,
    }
}

fn whatsmyuri(client: &Client) -> RawDocumentBuf {
    let you = client
        .peer
        .map(|p| p.to_string())
        .unwrap_or_else(|| "127.0.0.1:0".into());
    rawdoc! { "you": you, "ok": 1.0 }
}

fn connection_status(shared: &Shared, client: &mut Client) -> RawDocumentBuf {
    let mut users = RawArrayBuf::new();
    let mut roles = RawArrayBuf::new();
    if let Some(id) = client.session.identity(&shared.users) {
        users.push(rawdoc! { "user": id.user.as_str(), "db": id.db.as_str() });
        for role in shared.users.roles(&id.db, &id.user).unwrap_or_default() {
            roles.push(rawdoc! { "role": role.role, "db": role.db });
        }
    }
    rawdoc! {
        "authInfo": {
            "authenticatedUsers": users,
            "authenticatedUserRoles": roles,
        },
        "ok": 1.0,
    }
}

fn no_replication() -> CommandError {
    CommandError::new(76, "NoReplicationEnabled", "not running with --replSet")
}

fn repl_set_get_status(shared: &Shared) -> Result<RawDocumentBuf, CommandError> {
    let set = shared.replica_set.as_deref().ok_or_else(no_replication)?;
    let last = shared.cluster_time();
    let newest = shared.engine.last_optime().unwrap_or(last);
    let uptime = i32::try_from(shared.started.elapsed().as_secs()).unwrap_or(i32::MAX);
    let election = Timestamp {
        time: u32::try_from(
            (DateTime::now().timestamp_millis()
                - i64::try_from(shared.started.elapsed().as_millis()).unwrap_or(0))
                / 1000,
        )
        .unwrap_or(0),
        increment: 1,
    };
    Ok(rawdoc! {
        "set": set,
        "date": DateTime::now(),
        "myState": 1,
        "term": TERM,
        "syncSourceHost": "",
        "syncSourceId": -1,
        "heartbeatIntervalMillis": 2000i64,
        "majorityVoteCount": 1,
        "writeMajorityCount": 1,
        "votingMembersCount": 1,
        "writableVotingMembersCount": 1,
        "optimes": {
            "lastCommittedOpTime": op_time(newest),
            "lastCommittedWallTime": wall(newest),
            "readConcernMajorityOpTime": op_time(newest),
            "appliedOpTime": op_time(newest),
            "durableOpTime": op_time(newest),
            "lastAppliedWallTime": wall(newest),
            "lastDurableWallTime": wall(newest),
        },
        "members": [
            {
                "_id": 0,
                "name": shared.host.as_str(),
                "health": 1.0,
                "state": 1,
                "stateStr": "PRIMARY",
                "uptime": uptime,
                "optime": op_time(newest),
                "optimeDate": wall(newest),
                "lastAppliedWallTime": wall(newest),
                "lastDurableWallTime": wall(newest),
                "syncSourceHost": "",
                "syncSourceId": -1,
                "infoMessage": "",
                "electionTime": election,
                "electionDate": wall(election),
                "configVersion": 1,
                "configTerm": 1,
                "self": true,
                "lastHeartbeatMessage": "",
            }
        ],
        "ok": 1.0,
    })
}

fn repl_set_get_config(shared: &Shared) -> Result<RawDocumentBuf, CommandError> {
    let set = shared.replica_set.as_deref().ok_or_else(no_replication)?;
    Ok(rawdoc! {
        "config": {
            "_id": set,
            "version": 1,
            "term": 1,
            "members": [
                {
                    "_id": 0,
                    "host": shared.host.as_str(),
                    "arbiterOnly": false,
                    "buildIndexes": true,
                    "hidden": false,
                    "priority": 1.0,
                    "tags": {},
                    "secondaryDelaySecs": 0i64,
                    "votes": 1,
                }
            ],
            "protocolVersion": 1i64,
            "writeConcernMajorityJournalDefault": true,
            "settings": {
                "chainingAllowed": true,
                "heartbeatIntervalMillis": 2000,
                "heartbeatTimeoutSecs": 10,
                "electionTimeoutMillis": 10000,
                "catchUpTimeoutMillis": -1,
                "catchUpTakeoverDelayMillis": 30000,
                "getLastErrorModes": {},
                "getLastErrorDefaults": { "w": 1, "wtimeout": 0 },
                "replicaSetId": shared.election_id,
            },
        },
        "ok": 1.0,
    })
}

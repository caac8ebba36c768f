//! Handshake, server-level commands and the wire protocol as drivers use them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::{doc, rawdoc, Bson};
use mongo_test_server::wire::{self, DocumentSequence, FLAG_CHECKSUM_PRESENT, FLAG_MORE_TO_COME};
use mongo_test_server::ServerConfig;

use crate::{client, command_error, server, Raw};

#[tokio::test]
async fn hello_through_the_driver_has_mongod_types() {
    let server = server().await;
    let uri = server.uri();
    assert_eq!(
        uri,
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            server.addr().port()
        )
    );
    let db = client(&uri).await.database("admin");
    let hello = db.run_command(doc! {"hello": 1}).await.unwrap();
    assert_eq!(hello.get("isWritablePrimary"), Some(&Bson::Boolean(true)));
    assert_eq!(
        hello.get("maxBsonObjectSize"),
        Some(&Bson::Int32(16_777_216))
    );
    assert_eq!(
        hello.get("maxMessageSizeBytes"),
        Some(&Bson::Int32(48_000_000))
    );
    assert_eq!(hello.get("maxWriteBatchSize"), Some(&Bson::Int32(100_000)));
    assert_eq!(hello.get("minWireVersion"), Some(&Bson::Int32(0)));
    assert_eq!(hello.get("maxWireVersion"), Some(&Bson::Int32(21)));
    assert_eq!(
        hello.get("logicalSessionTimeoutMinutes"),
        Some(&Bson::Int32(30))
    );
    assert_eq!(hello.get("readOnly"), Some(&Bson::Boolean(false)));
    assert!(matches!(hello.get("localTime"), Some(Bson::DateTime(_))));
    assert!(matches!(hello.get("connectionId"), Some(Bson::Int32(id)) if *id > 0));
    assert_eq!(hello.get("ok"), Some(&Bson::Double(1.0)));
    for absent in [
        "topologyVersion",
        "compression",
        "setName",
        "msg",
        "ismaster",
        "helloOk",
    ] {
        assert!(hello.get(absent).is_none(), "{absent} must not be reported");
    }

    let legacy = db
        .run_command(doc! {"isMaster": 1, "helloOk": true})
        .await
        .unwrap();
    assert_eq!(legacy.get("ismaster"), Some(&Bson::Boolean(true)));
    assert_eq!(legacy.get("helloOk"), Some(&Bson::Boolean(true)));
    assert!(legacy.get("isWritablePrimary").is_none());
}

#[tokio::test]
async fn build_info_ping_and_parameters() {
    let server = server().await;
    let db = client(&server.uri()).await.database("admin");
    let ping = db.run_command(doc! {"ping": 1}).await.unwrap();
    assert_eq!(ping, doc! {"ok": 1.0});

    let info = db.run_command(doc! {"buildInfo": 1}).await.unwrap();
    assert_eq!(info.get_str("version").unwrap(), "7.0.14");
    assert_eq!(
        info.get_array("versionArray").unwrap(),
        &vec![
            Bson::Int32(7),
            Bson::Int32(0),
            Bson::Int32(14),
            Bson::Int32(0)
        ]
    );
    assert_eq!(info.get("bits"), Some(&Bson::Int32(64)));
    assert_eq!(info.get("debug"), Some(&Bson::Boolean(false)));
    assert_eq!(
        info.get("maxBsonObjectSize"),
        Some(&Bson::Int32(16_777_216))
    );
    assert_eq!(info.get_str("gitVersion").unwrap().len(), 40);
    for key in ["modules", "storageEngines"] {
        assert!(info.get_array(key).is_ok(), "{key}");
    }
    for key in ["allocator", "javascriptEngine", "sysInfo"] {
        assert!(info.get_str(key).is_ok(), "{key}");
    }

    let p = db
        .run_command(doc! {"getParameter": 1, "authSchemaVersion": 1})
        .await
        .unwrap();
    assert_eq!(p, doc! {"authSchemaVersion": 5, "ok": 1.0});
    let p = db
        .run_command(doc! {"getParameter": 1, "featureCompatibilityVersion": 1})
        .await
        .unwrap();
    assert_eq!(
        p.get_document("featureCompatibilityVersion").unwrap(),
        &doc! {"version": "7.0"}
    );
    let all = db.run_command(doc! {"getParameter": "*"}).await.unwrap();
    assert!(
        all.contains_key("authSchemaVersion") && all.contains_key("featureCompatibilityVersion")
    );
    let e = db
        .run_command(doc! {"getParameter": 1, "noSuchParameter": 1})
        .await
        .unwrap_err();
    assert_eq!(command_error(&e).code, 72);

    let status = db.run_command(doc! {"serverStatus": 1}).await.unwrap();
    assert_eq!(status.get_str("process").unwrap(), "mongod");
    assert_eq!(status.get_str("version").unwrap(), "7.0.14");
    assert!(matches!(status.get("pid"), Some(Bson::Int64(_))));
    assert!(matches!(status.get("uptimeMillis"), Some(Bson::Int64(_))));
    let connections = status.get_document("connections").unwrap();
    assert!(connections.get_i32("current").unwrap() >= 1);

    let me = db.run_command(doc! {"whatsmyuri": 1}).await.unwrap();
    assert!(me.get_str("you").unwrap().starts_with("127.0.0.1:"));
    db.run_command(doc! {"endSessions": []}).await.unwrap();
}

#[tokio::test]
async fn unknown_commands_fail_as_on_mongod() {
    let server = server().await;
    let db = client(&server.uri()).await.database("admin");
    let e = db.run_command(doc! {"atlasVersion": 1}).await.unwrap_err();
    let c = command_error(&e);
    assert_eq!(c.code, 59);
    assert_eq!(c.code_name, "CommandNotFound");
    assert_eq!(c.message, "no such command: 'atlasVersion'");

    let e = db
        .run_command(doc! {"replSetGetStatus": 1})
        .await
        .unwrap_err();
    let c = command_error(&e);
    assert_eq!((c.code, c.code_name.as_str()), (76, "NoReplicationEnabled"));
    assert_eq!(c.message, "not running with --replSet");
}

#[tokio::test]
async fn legacy_op_query_handshake_gets_an_op_reply() {
    let server = server().await;
    let mut raw = Raw::connect(server.addr()).await;
    let hello = rawdoc! {
        "$query": {"isMaster": 1, "helloOk": true, "compression": [], "client": {"application": {"name": "mongodump"}}},
        "$readPreference": {"mode": "primaryPreferred"},
    };
    raw.send(&wire::encode_op_query(41, "admin.$cmd", &hello))
        .await;
    let (header, reply) = raw.recv().await.unwrap();
    assert_eq!(header.op_code, wire::OP_REPLY);
    assert_eq!(header.response_to, 41);
    assert!(reply.get_bool("ismaster").unwrap());
    assert!(reply.get_bool("helloOk").unwrap());

    // Commands other than the handshake are refused over OP_QUERY, as mongod 7.0 does.
    raw.send(&wire::encode_op_query(
        42,
        "admin.$cmd",
        &rawdoc! {"ping": 1},
    ))
    .await;
    let (header, reply) = raw.recv().await.unwrap();
    assert_eq!(header.op_code, wire::OP_REPLY);
    assert_eq!(reply.get_i32("code").unwrap(), 352);

    // The connection goes on with OP_MSG.
    let reply = raw.command(43, &rawdoc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
}

#[tokio::test]
async fn op_msg_details() {
    let server = server().await;
    let mut raw = Raw::connect(server.addr()).await;

    // moreToCome: no reply; the next reply answers the next request.
    raw.send(&wire::encode_op_msg_request(
        1,
        FLAG_MORE_TO_COME,
        &rawdoc! {"ping": 1, "$db": "admin"},
        &[],
    ))
    .await;
    let reply = raw.command(2, &rawdoc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);

    // A checksummed request is accepted; a corrupted one is refused with an error reply.
    let mut bytes = wire::encode_op_msg_request(
        3,
        FLAG_CHECKSUM_PRESENT,
        &rawdoc! {"ping": 1, "$db": "admin"},
        &[],
    );
    raw.send(&bytes).await;
    let (h, reply) = raw.recv().await.unwrap();
    assert_eq!((h.response_to, reply.get_f64("ok").unwrap()), (3, 1.0));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    raw.send(&bytes).await;
    let (_, reply) = raw.recv().await.unwrap();
    assert_eq!(reply.get_i32("code").unwrap(), 282);

    // A document sequence next to a body field of the same name is refused.
    raw.send(&wire::encode_op_msg_request(
        4,
        0,
        &rawdoc! {"insert": "c", "documents": [], "$db": "test"},
        &[DocumentSequence {
            identifier: "documents".into(),
            documents: vec![rawdoc! {"_id": 1}],
        }],
    ))
    .await;
    let (_, reply) = raw.recv().await.unwrap();
    assert_eq!(reply.get_i32("code").unwrap(), 40433);

    // $db is required.
    let reply = raw.command(5, &rawdoc! {"ping": 1}).await;
    assert_eq!(reply.get_i32("code").unwrap(), 40571);

    // An unknown opcode closes the connection.
    let mut bytes = wire::encode_op_msg_request(6, 0, &rawdoc! {"ping": 1, "$db": "admin"}, &[]);
    bytes[12..16].copy_from_slice(&2002i32.to_le_bytes());
    raw.send(&bytes).await;
    assert!(raw.recv().await.is_none());
}

#[tokio::test]
async fn a_huge_declared_length_closes_the_connection() {
    let server = server().await;
    let mut raw = Raw::connect(server.addr()).await;
    raw.send(&i32::MAX.to_le_bytes()).await;
    assert!(raw.recv().await.is_none());
    // The server is still fine.
    let mut raw = Raw::connect(server.addr()).await;
    let reply = raw.command(1, &rawdoc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
}

#[tokio::test]
async fn replica_set_mode_reports_a_primary() {
    let server = mongo_test_server::start(ServerConfig {
        replica_set: Some("rs0".into()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let host = format!("127.0.0.1:{}", server.addr().port());
    assert_eq!(server.uri(), format!("mongodb://{host}/?replicaSet=rs0"));
    let db = client(&server.uri()).await.database("admin");
    let hello = db.run_command(doc! {"hello": 1}).await.unwrap();
    assert_eq!(hello.get_str("setName").unwrap(), "rs0");
    assert_eq!(
        hello.get_array("hosts").unwrap(),
        &vec![Bson::String(host.clone())]
    );
    assert_eq!(hello.get_str("primary").unwrap(), host);
    assert_eq!(hello.get_str("me").unwrap(), host);
    assert_eq!(hello.get("secondary"), Some(&Bson::Boolean(false)));
    assert_eq!(hello.get("isWritablePrimary"), Some(&Bson::Boolean(true)));
    assert_eq!(hello.get("setVersion"), Some(&Bson::Int32(1)));
    assert!(matches!(hello.get("electionId"), Some(Bson::ObjectId(_))));
    let last_write = hello.get_document("lastWrite").unwrap();
    assert!(matches!(
        last_write.get_document("opTime").unwrap().get("ts"),
        Some(Bson::Timestamp(_))
    ));
    let cluster_time = hello.get_document("$clusterTime").unwrap();
    assert!(matches!(
        cluster_time.get("clusterTime"),
        Some(Bson::Timestamp(_))
    ));
    let signature = cluster_time.get_document("signature").unwrap();
    assert_eq!(signature.get("keyId"), Some(&Bson::Int64(0)));
    assert_eq!(
        signature.get_binary_generic("hash").unwrap(),
        &vec![0u8; 20]
    );
    assert!(matches!(
        hello.get("operationTime"),
        Some(Bson::Timestamp(_))
    ));

    let status = db.run_command(doc! {"replSetGetStatus": 1}).await.unwrap();
    assert_eq!(status.get_str("set").unwrap(), "rs0");
    assert_eq!(status.get("myState"), Some(&Bson::Int32(1)));
    let members = status.get_array("members").unwrap();
    assert_eq!(members.len(), 1);
    let me = members[0].as_document().unwrap();
    assert_eq!(me.get_str("name").unwrap(), host);
    assert_eq!(me.get_str("stateStr").unwrap(), "PRIMARY");
    assert_eq!(me.get("health"), Some(&Bson::Double(1.0)));
    assert_eq!(me.get("self"), Some(&Bson::Boolean(true)));
    assert!(me.get_document("optime").is_ok());

    // Errors carry cluster time too.
    let e = db.run_command(doc! {"atlasVersion": 1}).await.unwrap_err();
    assert_eq!(command_error(&e).code, 59);
}

#[tokio::test]
async fn in_process_commands_and_two_instances() {
    let a = server().await;
    let b = server().await;
    assert_ne!(a.addr(), b.addr());
    let hello = a.run_command("admin", doc! {"hello": 1}).await.unwrap();
    assert!(hello.get_bool("isWritablePrimary").unwrap());
    let e = b
        .run_command("admin", doc! {"atlasVersion": 1})
        .await
        .unwrap_err();
    assert_eq!(e.code, 59);
    // Faults are per instance.
    a.faults().fail_command(
        "ping",
        mongo_test_server::CommandError::new(
            11600,
            "InterruptedAtShutdown",
            "interrupted at shutdown",
        ),
        None,
    );
    let ca = client(&a.uri()).await.database("admin");
    let cb = client(&b.uri()).await.database("admin");
    assert_eq!(
        command_error(&ca.run_command(doc! {"ping": 1}).await.unwrap_err()).code,
        11600
    );
    cb.run_command(doc! {"ping": 1}).await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_connections_and_the_listener() {
    let server = server().await;
    let addr = server.addr();
    let mut raw = Raw::connect(addr).await;
    let reply = raw.command(1, &rawdoc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
    server.shutdown().await;
    assert!(raw.recv().await.is_none(), "open connection is closed");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener is closed"
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let server = server().await;
    let mut raw = Raw::connect(server.addr()).await;
    let reply = raw.command(1, &rawdoc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
    drop(server);
    assert!(raw.recv().await.is_none());
}

//! SCRAM authentication through the driver, and mongod's refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::{doc, rawdoc, Bson};
use mongo_test_server::{ServerConfig, ServerHandle, User};
use mongodb::error::ErrorKind;

use crate::{client, command_error, Raw};

async fn secured() -> ServerHandle {
    mongo_test_server::start(ServerConfig {
        users: vec![
            User::new("backup", "s3cret:with,odd=chars"),
            User {
                name: "app".into(),
                password: "pw".into(),
                db: "appdb".into(),
            },
        ],
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

fn with_credentials(server: &ServerHandle, user: &str, password: &str, extra: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!(
        "mongodb://{}:{}@{}/?directConnection=true{extra}",
        enc(user),
        enc(password),
        server.addr()
    )
}

fn assert_auth_failed(e: &mongodb::error::Error) {
    match &*e.kind {
        ErrorKind::Authentication { message, .. } => {
            assert!(message.contains("Authentication failed."), "{message}")
        }
        other => panic!("expected an authentication error, got {other:?}"),
    }
}

#[tokio::test]
async fn scram_sha_256_sha_1_and_the_default_mechanism_succeed() {
    let server = secured().await;
    for mechanism in [
        "&authMechanism=SCRAM-SHA-256",
        "&authMechanism=SCRAM-SHA-1",
        "",
    ] {
        let uri = with_credentials(&server, "backup", "s3cret:with,odd=chars", mechanism);
        let db = client(&uri).await.database("admin");
        let status = db
            .run_command(doc! {"connectionStatus": 1})
            .await
            .unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        let users = status
            .get_document("authInfo")
            .unwrap()
            .get_array("authenticatedUsers")
            .unwrap();
        assert_eq!(
            users,
            &vec![Bson::Document(doc! {"user": "backup", "db": "admin"})]
        );
        db.run_command(doc! {"serverStatus": 1}).await.unwrap();
    }
    // A user of another authentication database.
    let uri = with_credentials(&server, "app", "pw", "&authSource=appdb");
    client(&uri)
        .await
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_password_or_unknown_user_fails_with_authentication_failed() {
    let server = secured().await;
    for (user, password, mechanism) in [
        ("backup", "wrong", "&authMechanism=SCRAM-SHA-256"),
        ("backup", "wrong", "&authMechanism=SCRAM-SHA-1"),
        ("nobody", "pw", "&authMechanism=SCRAM-SHA-256"),
        ("app", "pw", ""),
    ] {
        let uri = with_credentials(&server, user, password, mechanism);
        let e = client(&uri)
            .await
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .unwrap_err();
        assert_auth_failed(&e);
    }
}

#[tokio::test]
async fn unauthenticated_clients_get_only_what_mongod_allows() {
    let server = secured().await;
    let db = client(&server.uri()).await.database("test");
    // Allowed without authentication.
    db.run_command(doc! {"ping": 1}).await.unwrap();
    db.run_command(doc! {"hello": 1}).await.unwrap();
    db.run_command(doc! {"buildInfo": 1}).await.unwrap();
    // Refused.
    let e = db.run_command(doc! {"find": "c"}).await.unwrap_err();
    let c = command_error(&e);
    assert_eq!((c.code, c.code_name.as_str()), (13, "Unauthorized"));
    assert_eq!(c.message, "command find requires authentication");
    let e = db.run_command(doc! {"listDatabases": 1}).await.unwrap_err();
    assert_eq!(command_error(&e).code, 13);
    // Unknown commands are unknown before they are unauthorized.
    let e = db.run_command(doc! {"atlasVersion": 1}).await.unwrap_err();
    assert_eq!(command_error(&e).code, 59);
}

#[tokio::test]
async fn hello_reports_mechanisms_for_existing_users_only() {
    let server = secured().await;
    let mut raw = Raw::connect(server.addr()).await;
    let reply = raw
        .command(
            1,
            &rawdoc! {"hello": 1, "saslSupportedMechs": "admin.backup", "$db": "admin"},
        )
        .await;
    let mechs: Vec<&str> = reply
        .get_array("saslSupportedMechs")
        .unwrap()
        .into_iter()
        .map(|m| m.unwrap().as_str().unwrap())
        .collect();
    assert_eq!(mechs, ["SCRAM-SHA-1", "SCRAM-SHA-256"]);
    let reply = raw
        .command(
            2,
            &rawdoc! {"hello": 1, "saslSupportedMechs": "admin.nobody", "$db": "admin"},
        )
        .await;
    assert!(reply.get("saslSupportedMechs").unwrap().is_none());
}

#[tokio::test]
async fn a_revoked_user_loses_access_on_the_next_command() {
    let server = secured().await;
    let uri = with_credentials(&server, "backup", "s3cret:with,odd=chars", "&maxPoolSize=1");
    let db = client(&uri).await.database("admin");
    db.run_command(doc! {"serverStatus": 1}).await.unwrap();
    assert!(server.revoke_user("backup"));
    assert!(!server.revoke_user("backup"));
    let e = db.run_command(doc! {"serverStatus": 1}).await.unwrap_err();
    let c = command_error(&e);
    assert_eq!(c.code, 13);
    assert_eq!(c.message, "command serverStatus requires authentication");
    // New logins fail too.
    let e = client(&uri)
        .await
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .unwrap_err();
    assert_auth_failed(&e);
    // The other user is untouched.
    let uri = with_credentials(&server, "app", "pw", "&authSource=appdb");
    client(&uri)
        .await
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await
        .unwrap();
}

#[tokio::test]
async fn in_process_commands_skip_authentication() {
    let server = secured().await;
    let status = server
        .run_command("admin", doc! {"serverStatus": 1})
        .await
        .unwrap();
    assert_eq!(status.get_str("process").unwrap(), "mongod");
}

#[tokio::test]
async fn hello_answers_speculative_authentication() {
    let server = secured().await;
    let mut raw = Raw::connect(server.addr()).await;
    let payload = |text: &str| bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: text.as_bytes().to_vec(),
    };
    let reply = raw
        .command(
            1,
            &rawdoc! {
                "hello": 1,
                "speculativeAuthenticate": {
                    "saslStart": 1,
                    "mechanism": "SCRAM-SHA-256",
                    "payload": payload("n,,n=backup,r=clientnonce"),
                    "options": {"skipEmptyExchange": true},
                    "db": "admin",
                },
                "$db": "admin",
            },
        )
        .await;
    let spec = reply.get_document("speculativeAuthenticate").unwrap();
    assert_eq!(spec.get_i32("conversationId").unwrap(), 1);
    assert!(!spec.get_bool("done").unwrap());
    let server_first = std::str::from_utf8(spec.get_binary("payload").unwrap().bytes).unwrap();
    assert!(server_first.starts_with("r=clientnonce"), "{server_first}");
    assert!(server_first.contains(",s=") && server_first.ends_with(",i=15000"));
    // Unknown users get no speculative answer, and no hint of why.
    let reply = raw
        .command(
            2,
            &rawdoc! {
                "hello": 1,
                "speculativeAuthenticate": {
                    "saslStart": 1,
                    "mechanism": "SCRAM-SHA-256",
                    "payload": payload("n,,n=nobody,r=clientnonce"),
                    "db": "admin",
                },
                "$db": "admin",
            },
        )
        .await;
    assert!(reply.get("speculativeAuthenticate").unwrap().is_none());
    assert_eq!(reply.get_f64("ok").unwrap(), 1.0);
}

#[tokio::test]
async fn users_created_and_dropped_over_the_wire_follow_suit() {
    let server = secured().await;
    let admin_uri = with_credentials(&server, "backup", "s3cret:with,odd=chars", "");
    let admin = client(&admin_uri).await;
    admin
        .database("reports")
        .run_command(doc! {"createUser": "reader", "pwd": "r3ad", "roles": ["read"]})
        .await
        .unwrap();
    let uri = with_credentials(&server, "reader", "r3ad", "&authSource=reports");
    client(&uri)
        .await
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await
        .unwrap();
    admin
        .database("reports")
        .run_command(doc! {"dropUser": "reader"})
        .await
        .unwrap();
    let e = client(&uri)
        .await
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .unwrap_err();
    assert_auth_failed(&e);
}

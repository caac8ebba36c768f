//! SCRAM authentication through the driver, and mongod's refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::{doc, rawdoc, Bson};
use mongo_test_server::{RoleRef, ServerConfig, ServerHandle, User};
use mongodb::error::ErrorKind;

use crate::{client, command_error, Raw};

const ROOT_PASSWORD: &str = "s3cret:with,odd=chars";

async fn secured() -> ServerHandle {
    mongo_test_server::start(ServerConfig {
        users: vec![
            User::new("backup", ROOT_PASSWORD),
            User {
                name: "app".into(),
                password: "pw".into(),
                db: "appdb".into(),
                roles: vec![
                    RoleRef::new("readWrite", "appdb"),
                    RoleRef::new("clusterMonitor", "admin"),
                ],
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

/// A login with `uri` is refused as mongod refuses it.
async fn assert_login_fails(uri: &str) {
    let e = client(uri)
        .await
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .unwrap_err();
    assert_auth_failed(&e);
}

/// A client of `uri` logs in and may run `serverStatus`.
async fn assert_server_status_allowed(uri: &str) {
    client(uri)
        .await
        .database("admin")
        .run_command(doc! {"serverStatus": 1})
        .await
        .unwrap();
}

fn first_batch(reply: &bson::Document) -> &bson::Array {
    reply
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
}

/// The user document `id` as `admin.system.users` stores it.
async fn stored_user(server: &ServerHandle, id: &str) -> bson::Document {
    let found = server
        .run_command(
            "admin",
            doc! {"find": "system.users", "filter": {"_id": id}},
        )
        .await
        .unwrap();
    first_batch(&found)[0].as_document().unwrap().clone()
}

#[tokio::test]
async fn scram_sha_256_sha_1_and_the_default_mechanism_succeed() {
    let server = secured().await;
    for mechanism in [
        "&authMechanism=SCRAM-SHA-256",
        "&authMechanism=SCRAM-SHA-1",
        "",
    ] {
        let uri = with_credentials(&server, "backup", ROOT_PASSWORD, mechanism);
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
    assert_server_status_allowed(&with_credentials(&server, "app", "pw", "&authSource=appdb"))
        .await;
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
        assert_login_fails(&with_credentials(&server, user, password, mechanism)).await;
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
    let uri = with_credentials(&server, "backup", ROOT_PASSWORD, "&maxPoolSize=1");
    let db = client(&uri).await.database("admin");
    db.run_command(doc! {"serverStatus": 1}).await.unwrap();
    assert!(server.revoke_user("backup"));
    assert!(!server.revoke_user("backup"));
    let e = db.run_command(doc! {"serverStatus": 1}).await.unwrap_err();
    let c = command_error(&e);
    assert_eq!(c.code, 13);
    assert_eq!(c.message, "command serverStatus requires authentication");
    // New logins fail too.
    assert_login_fails(&uri).await;
    // The other user is untouched.
    assert_server_status_allowed(&with_credentials(&server, "app", "pw", "&authSource=appdb"))
        .await;
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
    let admin_uri = with_credentials(&server, "backup", ROOT_PASSWORD, "");
    let admin = client(&admin_uri).await;
    admin
        .database("reports")
        .run_command(doc! {"createUser": "reader", "pwd": "r3ad", "roles": ["read"]})
        .await
        .unwrap();
    let uri = with_credentials(&server, "reader", "r3ad", "&authSource=reports");
    client(&uri)
        .await
        .database("reports")
        .run_command(doc! {"find": "c"})
        .await
        .unwrap();
    admin
        .database("reports")
        .run_command(doc! {"dropUser": "reader"})
        .await
        .unwrap();
    assert_login_fails(&uri).await;
}

/// A user made by root over the wire, and a client logged in as it.
async fn as_new_user(
    server: &ServerHandle,
    db: &str,
    name: &str,
    roles: Vec<Bson>,
) -> mongodb::Client {
    let root = client(&with_credentials(server, "backup", ROOT_PASSWORD, "")).await;
    root.database(db)
        .run_command(doc! {"createUser": name, "pwd": "pw", "roles": roles})
        .await
        .unwrap();
    let extra = format!("&authSource={db}");
    client(&with_credentials(server, name, "pw", &extra)).await
}

fn assert_unauthorized(e: &mongodb::error::Error, db: &str, command: &str) {
    let c = command_error(e);
    assert_eq!((c.code, c.code_name.as_str()), (13, "Unauthorized"));
    let start = format!("not authorized on {db} to execute command {{ {command}: ");
    assert!(c.message.starts_with(&start), "{}", c.message);
    assert!(
        c.message.contains(&format!(", $db: \"{db}\"")),
        "{}",
        c.message
    );
}

#[tokio::test]
async fn a_read_only_user_can_find_but_not_write() {
    let server = secured().await;
    server
        .run_command("app", doc! {"insert": "c", "documents": [{"_id": 1}]})
        .await
        .unwrap();
    let reader = as_new_user(&server, "app", "reader", vec!["read".into()]).await;
    let db = reader.database("app");
    let found = db.run_command(doc! {"find": "c"}).await.unwrap();
    assert_eq!(first_batch(&found).len(), 1);
    for (name, cmd) in [
        ("insert", doc! {"insert": "c", "documents": [{"_id": 2}]}),
        ("create", doc! {"create": "d"}),
        (
            "createIndexes",
            doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1"}]},
        ),
    ] {
        let e = db.run_command(cmd).await.unwrap_err();
        assert_unauthorized(&e, "app", name);
    }
    // Nothing was written.
    let count = server
        .run_command("app", doc! {"count": "c"})
        .await
        .unwrap();
    assert_eq!(count.get_i32("n").unwrap(), 1);
    // Other databases are out of reach.
    let e = reader
        .database("other")
        .run_command(doc! {"find": "c"})
        .await
        .unwrap_err();
    assert_unauthorized(&e, "other", "find");
}

#[tokio::test]
async fn read_write_can_insert_but_not_create_users() {
    let server = secured().await;
    let writer = as_new_user(&server, "app", "writer", vec!["readWrite".into()]).await;
    let db = writer.database("app");
    db.run_command(doc! {"insert": "c", "documents": [{"_id": 1}]})
        .await
        .unwrap();
    db.run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1"}]})
        .await
        .unwrap();
    let e = db
        .run_command(doc! {"createUser": "x", "pwd": "y", "roles": []})
        .await
        .unwrap_err();
    assert_unauthorized(&e, "app", "createUser");
    assert!(command_error(&e).message.contains("pwd: \"xxx\""));
}

#[tokio::test]
async fn list_databases_shows_only_what_the_user_may_touch() {
    let server = secured().await;
    for db in ["app", "other"] {
        server
            .run_command(db, doc! {"insert": "c", "documents": [{"_id": 1}]})
            .await
            .unwrap();
    }
    let reader = as_new_user(&server, "app", "reader", vec!["read".into()]).await;
    let names = reader.list_database_names().await.unwrap();
    assert_eq!(names, vec!["app".to_string()]);
    let e = reader
        .database("admin")
        .run_command(doc! {"listDatabases": 1, "authorizedDatabases": false})
        .await
        .unwrap_err();
    assert_unauthorized(&e, "admin", "listDatabases");
}

#[tokio::test]
async fn backup_reads_every_database_and_the_users_but_writes_nothing() {
    let server = secured().await;
    server
        .run_command("app", doc! {"insert": "c", "documents": [{"_id": 1}]})
        .await
        .unwrap();
    let backup = as_new_user(&server, "admin", "dumper", vec!["backup".into()]).await;
    let names = backup.list_database_names().await.unwrap();
    assert!(names.contains(&"app".to_string()) && names.contains(&"admin".to_string()));
    backup
        .database("app")
        .run_command(doc! {"find": "c"})
        .await
        .unwrap();
    let users = backup
        .database("admin")
        .run_command(doc! {"find": "system.users"})
        .await
        .unwrap();
    assert!(first_batch(&users)
        .iter()
        .any(|u| u.as_document().unwrap().get_str("user") == Ok("dumper")));
    backup
        .database("admin")
        .run_command(doc! {"getParameter": 1, "authSchemaVersion": 1})
        .await
        .unwrap();
    let e = backup
        .database("app")
        .run_command(doc! {"insert": "c", "documents": [{"_id": 2}]})
        .await
        .unwrap_err();
    assert_unauthorized(&e, "app", "insert");
}

#[tokio::test]
async fn restore_writes_collections_and_users_but_cannot_read_data() {
    let server = secured().await;
    let restore = as_new_user(&server, "admin", "loader", vec!["restore".into()]).await;
    let app = restore.database("app");
    app.run_command(doc! {"create": "c"}).await.unwrap();
    app.run_command(doc! {"insert": "c", "documents": [{"_id": 1}]})
        .await
        .unwrap();
    app.run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1"}]})
        .await
        .unwrap();
    let admin = restore.database("admin");
    let user = doc! {
        "_id": "app.restored", "user": "restored", "db": "app",
        "credentials": {}, "roles": [{"role": "read", "db": "app"}],
    };
    admin
        .run_command(doc! {"insert": "tempusers", "documents": [user]})
        .await
        .unwrap();
    admin
        .run_command(doc! {"_mergeAuthzCollections": 1, "tempUsersCollection": "admin.tempusers", "drop": false, "db": ""})
        .await
        .unwrap();
    admin
        .run_command(doc! {"insert": "system.users", "documents": [{"_id": "app.direct", "user": "direct", "db": "app", "credentials": {}, "roles": []}]})
        .await
        .unwrap();
    let stored = server
        .run_command(
            "admin",
            doc! {"count": "system.users", "query": {"db": "app"}},
        )
        .await
        .unwrap();
    assert_eq!(stored.get_i32("n").unwrap(), 2);
    let e = app.run_command(doc! {"find": "c"}).await.unwrap_err();
    assert_unauthorized(&e, "app", "find");
}

#[tokio::test]
async fn create_user_stores_credentials_in_mongods_shape() {
    let server = secured().await;
    as_new_user(&server, "app", "ann", vec!["read".into()]).await;
    let user = stored_user(&server, "app.ann").await;
    let keys: Vec<&str> = user.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["_id", "userId", "user", "db", "credentials", "roles"]
    );
    let creds = user.get_document("credentials").unwrap();
    let mechs: Vec<&str> = creds.keys().map(String::as_str).collect();
    assert_eq!(mechs, ["SCRAM-SHA-1", "SCRAM-SHA-256"]);
    for (mech, iterations, salt_len) in [("SCRAM-SHA-1", 10_000, 16), ("SCRAM-SHA-256", 15_000, 28)]
    {
        let c = creds.get_document(mech).unwrap();
        let fields: Vec<&str> = c.keys().map(String::as_str).collect();
        assert_eq!(fields, ["iterationCount", "salt", "storedKey", "serverKey"]);
        assert_eq!(c.get_i32("iterationCount").unwrap(), iterations);
        use base64::Engine as _;
        let salt = base64::engine::general_purpose::STANDARD
            .decode(c.get_str("salt").unwrap())
            .unwrap();
        assert_eq!(salt.len(), salt_len);
    }
}

#[tokio::test]
async fn a_user_document_copied_to_another_server_logs_in_with_its_password() {
    let a = secured().await;
    as_new_user(&a, "app", "ann", vec!["read".into()]).await;
    let user = stored_user(&a, "app.ann").await;
    let b = secured().await;
    b.run_command(
        "admin",
        doc! {"insert": "system.users", "documents": [user]},
    )
    .await
    .unwrap();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-1"] {
        let extra = format!("&authSource=app&authMechanism={mechanism}");
        client(&with_credentials(&b, "ann", "pw", &extra))
            .await
            .database("app")
            .run_command(doc! {"find": "c"})
            .await
            .unwrap();
        let e = client(&with_credentials(&b, "ann", "wrong", &extra))
            .await
            .database("app")
            .run_command(doc! {"find": "c"})
            .await
            .unwrap_err();
        assert_auth_failed(&e);
    }
}

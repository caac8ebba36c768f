//! MONGODB-AWS: the function's (or task's) role is the database identity, so the secret
//! holds a connection string with no password at all. The test server checks the driver's
//! signed STS request as STS would, for the AWS credentials the runs are given (moto's),
//! and maps the role session to its `$external` user as mongod does.

use std::time::Duration;

use mongo_test_server::{AwsIdentity, RoleRef, ServerConfig, ServerHandle, User};

use crate::faults::*;
use crate::harness::*;
use crate::support::moto::Moto;

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/nightdump-backup";
const SESSION_ARN: &str = "arn:aws:sts::123456789012:assumed-role/nightdump-backup/nightdump";
/// The session token Lambda and ECS give a role's credentials: signed, never printed.
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE-session-token-0d9f";
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// A source that knows moto's test credentials as the session keys of `SESSION_ARN`
/// (signed with `secret`), and has `users` on `$external`.
async fn aws_source(topology: Topology, secret: &str, users: Vec<User>) -> ServerHandle {
    mongo_test_server::start(ServerConfig {
        seed: mongo_test_server::Seed::Demo,
        users,
        aws_identities: vec![AwsIdentity {
            access_key_id: "testing".into(),
            secret_access_key: secret.into(),
            arn: SESSION_ARN.into(),
        }],
        replica_set: (topology == Topology::ReplicaSet).then(|| "rs0".to_string()),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The connection string an Atlas user of IAM authentication writes: no user, no password.
fn iam_uri(server: &ServerHandle) -> String {
    let uri = server.uri();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}authMechanism=MONGODB-AWS&authSource=%24external")
}

/// The task's environment with the role's session credentials, the connection string in a
/// new secret.
async fn task_env(
    dest: &Dest,
    uri: &str,
    name: &str,
    topology: Topology,
) -> Vec<(&'static str, String)> {
    let secret = Moto::shared()
        .create_secret(&format!("aws-auth-{name}"), uri)
        .await;
    let mut env = dest.env();
    env.extend([
        ("AWS_SESSION_TOKEN", SESSION_TOKEN.to_string()),
        ("NIGHTDUMP_TO", dest.location()),
        ("NIGHTDUMP_MONGODB_SECRET_ARN", secret),
        ("NIGHTDUMP_METRICS_NAME", name.to_string()),
        ("NIGHTDUMP_TASK_TIMEOUT", "10m".to_string()),
        ("NIGHTDUMP_EVENT", r#"{"action":"backup"}"#.to_string()),
        ("NIGHTDUMP_CONNECT_TIMEOUT", "3s".to_string()),
        ("NIGHTDUMP_PARALLEL", "1".to_string()),
        (
            "NIGHTDUMP_ALLOW_INCONSISTENT",
            (topology == Topology::Standalone).to_string(),
        ),
    ]);
    env
}

fn assert_no_credential(run: &Run) {
    let out = run.all_output();
    assert!(!out.contains(SESSION_TOKEN), "{out}");
    assert!(!out.contains("wrong-secret"), "{out}");
}

async fn the_role_is_the_identity_with(topology: Topology) {
    let backup_role = User::external(ROLE_ARN).with_roles([RoleRef::new("backup", "admin")]);
    let server = aws_source(topology, "testing", vec![backup_role]).await;
    let name = format!("aws-auth-ok-{topology:?}").to_lowercase();
    let dest = Dest::s3(&name).await;
    let env = task_env(&dest, &iam_uri(&server), &name, topology).await;
    let run = spawn_nightdump(&["task", "--log", "info", "--log-format", "json"], &env)
        .finish(RUN_LIMIT)
        .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_no_credential(&run);
    let list = run_nightdump(&["list", "--from", &dest.location(), "--json"], &dest.env()).await;
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    let listed: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let verify = run_nightdump(&["verify", &id, "--from", &dest.location()], &dest.env()).await;
    assert_eq!(verify.code, Some(0), "{}", verify.stderr);
    // The backup holds the source's data, read as the role.
    let contents = dest.contents().await;
    let (_, bytes) = contents
        .iter()
        .find(|(key, _)| key.ends_with(&format!("{id}/manifest.json")))
        .expect("the manifest is stored");
    let manifest = nightdump::manifest::Manifest::parse(bytes).unwrap();
    assert!(manifest.totals.documents > 0);
    assert_eq!(
        manifest.point_in_time.is_some(),
        topology == Topology::ReplicaSet
    );
}

#[tokio::test]
async fn a_task_logs_in_as_its_role_with_no_password() {
    the_role_is_the_identity_with(Topology::Standalone).await;
}

#[tokio::test]
async fn a_task_logs_in_as_its_role_with_no_password_on_a_replica_set() {
    the_role_is_the_identity_with(Topology::ReplicaSet).await;
}

/// A signature made with another secret, and a role with no database user, are both
/// authentication failures: exit 3, the credential never printed, nothing stored.
async fn a_role_the_database_does_not_accept_with(topology: Topology) {
    let backup_role = User::external(ROLE_ARN).with_roles([RoleRef::new("backup", "admin")]);
    let other_role = User::external("arn:aws:iam::123456789012:role/someone-else");
    for (case, secret, users) in [
        ("wrong-key", "wrong-secret", vec![backup_role]),
        ("no-user", "testing", vec![other_role]),
    ] {
        let server = aws_source(topology, secret, users).await;
        let dir = tempfile::tempdir().unwrap();
        let mut env = aws_env(&Moto::shared().endpoint());
        env.push(("AWS_SESSION_TOKEN", SESSION_TOKEN.to_string()));
        let to = dir.path().to_str().unwrap();
        let run = run_nightdump(
            &[
                "backup",
                "--uri",
                &iam_uri(&server),
                "--to",
                to,
                "--connect-timeout",
                "3s",
            ],
            &env,
        )
        .await;
        assert_eq!(run.code, Some(3), "{case}: {}", run.stderr);
        assert!(
            run.stderr.contains("Authentication failed") || run.stderr.contains("authentication"),
            "{case}: {}",
            run.stderr
        );
        assert_no_credential(&run);
        assert!(files(dir.path()).is_empty(), "{case}");
    }
}

#[tokio::test]
async fn a_role_the_database_does_not_accept_is_an_authentication_failure() {
    a_role_the_database_does_not_accept_with(Topology::Standalone).await;
}

#[tokio::test]
async fn a_role_the_database_does_not_accept_is_an_authentication_failure_on_a_replica_set() {
    a_role_the_database_does_not_accept_with(Topology::ReplicaSet).await;
}

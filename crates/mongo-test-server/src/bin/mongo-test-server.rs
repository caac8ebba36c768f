//! `mongo-test-server`: run the in-memory server from a shell, e.g. to try nightdump or the
//! Database Tools against it. Prints `listening on HOST:PORT` on stdout once ready.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mongo_test_server::{AwsIdentity, RoleRef, ServerConfig, TlsConfig, User};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "An in-memory MongoDB 7.0 look-alike for tests and demos"
)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 27017)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Data to load at start: none, demo, bench:<size> (e.g. bench:512MiB).
    #[arg(long, default_value = "none")]
    seed: mongo_test_server::Seed,
    /// Run as the primary of a one-member replica set of this name (with an oplog).
    #[arg(long, value_name = "NAME")]
    replica_set: Option<String>,
    /// Cap the oplog at this many MiB (as `replSetResizeOplog`), so that it rolls over
    /// quickly; needs --replica-set.
    #[arg(long, value_name = "MB", requires = "replica_set")]
    oplog_size_mb: Option<u64>,
    /// Require authentication and accept this user (authentication database admin), with
    /// the root role, or with the built-in roles listed after a last colon
    /// (`reader:pw:read@app,clusterMonitor`). Repeat for more users.
    #[arg(long = "user", value_name = "NAME:PASSWORD[:ROLE@DB,...]", value_parser = parse_user)]
    users: Vec<User>,
    /// Accept MONGODB-AWS logins signed with this access key and secret, as STS would for
    /// the caller ARN given (an assumed role's session ARN logs in as its role), and create
    /// that `$external` user with the root role. Repeat for more.
    #[arg(long = "aws-identity", value_name = "KEY_ID:SECRET:ARN", value_parser = parse_aws_identity)]
    aws_identities: Vec<AwsIdentity>,
    /// PEM certificate chain; serve TLS only.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn parse_user(s: &str) -> Result<User, String> {
    let Some((name, rest)) = s.split_once(':').filter(|(n, _)| !n.is_empty()) else {
        return Err(format!("'{s}' is not NAME:PASSWORD"));
    };
    // A password may hold colons: the tail is roles only when every item names a
    // built-in role.
    if let Some((password, tail)) = rest.rsplit_once(':') {
        let roles: Option<Vec<RoleRef>> = tail
            .split(',')
            .map(|r| {
                RoleRef::parse(r).filter(|r| mongo_test_server::auth::authz::is_builtin(&r.role))
            })
            .collect();
        if let Some(roles) = roles {
            return Ok(User::new(name, password).with_roles(roles));
        }
    }
    Ok(User::new(name, rest))
}

fn parse_aws_identity(s: &str) -> Result<AwsIdentity, String> {
    let mut parts = s.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(key), Some(secret), Some(arn))
            if !key.is_empty() && !secret.is_empty() && arn.starts_with("arn:") =>
        {
            Ok(AwsIdentity {
                access_key_id: key.to_owned(),
                secret_access_key: secret.to_owned(),
                arn: arn.to_owned(),
            })
        }
        _ => Err("expected KEY_ID:SECRET:ARN, the ARN starting with arn:".to_owned()),
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mongo-test-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsConfig {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        }),
        _ => None,
    };
    let mut users = args.users;
    users.extend(
        args.aws_identities
            .iter()
            .map(|i| User::external(mongo_test_server::auth::aws::user_name(&i.arn))),
    );
    let config = ServerConfig {
        bind: args.bind,
        port: args.port,
        users,
        aws_identities: args.aws_identities,
        tls,
        replica_set: args.replica_set,
        seed: args.seed,
    };
    let server = mongo_test_server::start(config)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(mb) = args.oplog_size_mb {
        server
            .engine()
            .set_oplog_limits(mongo_test_server::engine::OplogLimits {
                max_entries: None,
                max_bytes: Some(mb.saturating_mul(1024 * 1024).max(1)),
            });
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.addr())
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
    }
    wait_for_signal().await?;
    tracing::info!("signal received; shutting down");
    server.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|e| format!("cannot watch SIGINT: {e}")),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), String> {
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot watch Ctrl-C: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn users_are_root_unless_roles_follow_a_last_colon() {
        let u = parse_user("ann:pw").unwrap();
        assert_eq!(
            (u.password.as_str(), u.roles.clone()),
            ("pw", vec![RoleRef::new("root", "admin")])
        );
        let u = parse_user("ann:p:w:read@app,clusterMonitor").unwrap();
        assert_eq!(u.password, "p:w");
        assert_eq!(
            u.roles,
            vec![
                RoleRef::new("read", "app"),
                RoleRef::new("clusterMonitor", "admin")
            ]
        );
        // A tail that is not all roles belongs to the password.
        let u = parse_user("ann:s3cret:with").unwrap();
        assert_eq!(u.password, "s3cret:with");
        assert!(parse_user(":pw").is_err());
    }

    #[test]
    fn aws_identities_are_key_secret_and_an_arn_that_may_hold_colons() {
        let i =
            parse_aws_identity("AKIA1:s3cr/t:arn:aws:sts::123456789012:assumed-role/r/s").unwrap();
        assert_eq!(i.access_key_id, "AKIA1");
        assert_eq!(i.secret_access_key, "s3cr/t");
        assert_eq!(i.arn, "arn:aws:sts::123456789012:assumed-role/r/s");
        assert!(parse_aws_identity("AKIA1:secret").is_err());
        assert!(parse_aws_identity("AKIA1::arn:aws:iam::1:role/r").is_err());
        assert!(parse_aws_identity("AKIA1:secret:role/r").is_err());
    }
}

//! TLS with a self-signed certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::doc;
use mongo_test_server::{ServerConfig, ServerHandle, TlsConfig};

use crate::client;

async fn tls_server() -> (ServerHandle, tempfile::TempDir) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert_pem = certified.cert.pem();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &cert_pem).unwrap();
    let server = mongo_test_server::start(ServerConfig {
        tls: Some(TlsConfig {
            cert_pem: cert_pem.into_bytes(),
            key_pem: certified.signing_key.serialize_pem().into_bytes(),
        }),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    (server, dir)
}

#[tokio::test]
async fn a_driver_connects_over_tls_with_the_ca_file() {
    let (server, dir) = tls_server().await;
    let uri = server.uri();
    assert!(uri.ends_with("directConnection=true&tls=true"), "{uri}");
    let ca = dir.path().join("ca.pem");
    let uri = format!("{uri}&tlsCAFile={}", ca.display());
    let db = client(&uri).await.database("admin");
    let hello = db.run_command(doc! {"hello": 1}).await.unwrap();
    assert!(hello.get_bool("isWritablePrimary").unwrap());
    let p = db
        .run_command(doc! {"getParameter": 1, "tlsMode": 1})
        .await
        .unwrap();
    assert_eq!(p.get_str("tlsMode").unwrap(), "requireTLS");
}

#[tokio::test]
async fn invalid_certificates_can_be_allowed() {
    let (server, _dir) = tls_server().await;
    let uri = format!("{}&tlsAllowInvalidCertificates=true", server.uri());
    client(&uri)
        .await
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .unwrap();
}

#[tokio::test]
async fn plain_clients_and_untrusting_clients_are_refused() {
    let (server, _dir) = tls_server().await;
    let plain = format!("mongodb://{}/?directConnection=true", server.addr());
    let e = client(&plain)
        .await
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .unwrap_err();
    assert!(
        matches!(*e.kind, mongodb::error::ErrorKind::ServerSelection { .. }),
        "{e}"
    );
    // Without the CA the self-signed certificate is not trusted.
    let e = client(&server.uri())
        .await
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .unwrap_err();
    assert!(
        matches!(*e.kind, mongodb::error::ErrorKind::ServerSelection { .. }),
        "{e}"
    );
    // The server keeps serving trusting clients.
    let uri = format!("{}&tlsAllowInvalidCertificates=true", server.uri());
    client(&uri)
        .await
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_pem_is_refused_at_start() {
    let e = mongo_test_server::start(ServerConfig {
        tls: Some(TlsConfig {
            cert_pem: b"not a certificate".to_vec(),
            key_pem: b"not a key".to_vec(),
        }),
        ..ServerConfig::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(e, mongo_test_server::StartError::Tls(_)), "{e}");
}

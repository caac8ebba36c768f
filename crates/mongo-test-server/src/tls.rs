//! TLS for client connections, with the certificate and key given at start (as mongod's
//! `--tlsMode requireTLS --tlsCertificateKeyFile`). Client certificates are not requested.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM certificate chain (leaf first) and its PEM private key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate PEM is unreadable ({0}); give a PEM file with at least one CERTIFICATE block")]
    Certificate(String),
    #[error("TLS private key PEM is unreadable ({0}); give a PEM file with one PKCS#8, PKCS#1 or SEC1 private key")]
    Key(String),
    #[error("TLS certificate and key are not usable together: {0}")]
    Config(#[from] rustls::Error),
}

pub(crate) fn acceptor(config: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let certs = CertificateDer::pem_slice_iter(&config.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate("no certificate found".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(&config.key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    // The ring provider is named explicitly so nothing depends on a process-wide default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

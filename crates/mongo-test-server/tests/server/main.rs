//! Integration tests: the server driven through the official Rust driver and raw sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod bson_types;
mod catalog;
mod crud;
mod faults;
mod handshake;
mod oplog;
mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use bson::RawDocumentBuf;
use mongo_test_server::wire::{self, Header};
use mongo_test_server::{ServerConfig, ServerHandle};
use mongodb::options::ClientOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A standalone server with default settings.
pub async fn server() -> ServerHandle {
    mongo_test_server::start(ServerConfig::default())
        .await
        .expect("server starts")
}

/// A driver client for `uri`, failing fast when the server is unusable.
pub async fn client(uri: &str) -> mongodb::Client {
    let mut options = ClientOptions::parse(uri).await.expect("valid uri");
    options.server_selection_timeout = Some(Duration::from_secs(3));
    options.connect_timeout = Some(Duration::from_secs(3));
    mongodb::Client::with_options(options).expect("client")
}

/// The server-side error of a failed command.
pub fn command_error(e: &mongodb::error::Error) -> &mongodb::error::CommandError {
    match &*e.kind {
        mongodb::error::ErrorKind::Command(c) => c,
        other => panic!("expected a command error, got {other:?}"),
    }
}

/// A client speaking the wire protocol by hand.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connect"),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// The next reply, or `None` once the server has closed the connection.
    pub async fn recv(&mut self) -> Option<(Header, RawDocumentBuf)> {
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).await.ok()?;
        let len = wire::message_length(prefix).expect("sane reply length");
        let mut bytes = vec![0u8; len];
        bytes[..4].copy_from_slice(&prefix);
        self.stream.read_exact(&mut bytes[4..]).await.ok()?;
        Some(wire::parse_reply(&bytes).expect("well-formed reply"))
    }

    /// Sends an OP_MSG command and returns its reply.
    pub async fn command(&mut self, request_id: i32, body: &bson::RawDocument) -> RawDocumentBuf {
        self.send(&wire::encode_op_msg_request(request_id, 0, body, &[]))
            .await;
        let (header, doc) = self.recv().await.expect("a reply");
        assert_eq!(header.response_to, request_id);
        doc
    }
}

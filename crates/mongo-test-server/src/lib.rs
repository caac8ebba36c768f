//! An in-memory MongoDB wire-protocol server for tests. It behaves like mongod 7.0 for the
//! commands the official drivers and the MongoDB Database Tools send, so nightdump's tests
//! (and anyone trying nightdump) need no real MongoDB.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = mongo_test_server::start(mongo_test_server::ServerConfig::default()).await?;
//! let uri = server.uri(); // mongodb://127.0.0.1:PORT/?directConnection=true
//! # let _ = uri;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
pub mod auth;
mod connection;
pub mod engine;
pub mod error;
pub mod faults;
pub mod seed;
mod server;
mod state;
pub mod tls;
pub mod wire;

pub use auth::{AwsIdentity, RoleRef, User, UserError};
pub use error::CommandError;
pub use faults::Faults;
pub use seed::Seed;
pub use server::{start, ServerConfig, ServerHandle, StartError};
pub use tls::{TlsConfig, TlsError};

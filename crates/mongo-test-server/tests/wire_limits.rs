//! A message's length field is a claim: the server refuses one outside mongod's limits before
//! allocating, and grows a buffer only with the bytes that really arrive. This binary counts
//! every allocation, so it holds only these checks, in one test (the counter is process-wide).

#![allow(clippy::unwrap_used)]

use std::alloc::System;

use mongo_test_server::wire::{self, WireError, MAX_MESSAGE_SIZE};
use mongo_test_server::ServerConfig;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes newly reserved in `region`: fresh allocations plus growth by reallocation (a buffer
/// that grows in place or moves is counted by how much it grew).
fn grown(region: &Region<'_, System>) -> usize {
    let change = region.change();
    change.bytes_allocated + usize::try_from(change.bytes_reallocated).unwrap_or(0)
}

const TWO_GIB: u32 = 0x8000_0000;

/// Sends `bytes`, hangs up the writing half and waits until the server closes the connection;
/// returns the reply bytes the server sent first.
async fn send_and_wait_close(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut reply = Vec::new();
    // A reset instead of a clean close is also a close.
    let _ = stream.read_to_end(&mut reply).await;
    reply
}

fn header(len: u32, op_code: i32) -> Vec<u8> {
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(&1i32.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&op_code.to_le_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_lengths_cost_nothing_until_the_bytes_arrive() {
    // Parsing: a 2 GiB (negative as i32) and a 2 GiB - 1 claim are refused from the header.
    let mut msg = header(TWO_GIB, wire::OP_MSG);
    msg.extend_from_slice(&[0; 8]);
    let region = Region::new(GLOBAL);
    assert!(matches!(
        wire::parse_message(&msg),
        Err(WireError::BadLength(_))
    ));
    assert!(wire::message_length((TWO_GIB - 1).to_le_bytes()).is_err());
    assert!(wire::message_length(TWO_GIB.to_le_bytes()).is_err());
    let allocated = grown(&region);
    assert!(allocated < 4096, "{allocated} bytes allocated");

    let server = mongo_test_server::start(ServerConfig::default())
        .await
        .unwrap();
    let addr = server.addr();

    // A 2 GiB claim over the socket: the connection is closed with nothing allocated for it.
    let region = Region::new(GLOBAL);
    let reply = send_and_wait_close(addr, &msg).await;
    assert!(reply.is_empty(), "{} reply bytes", reply.len());
    let allocated = grown(&region);
    assert!(allocated < 1024 * 1024, "{allocated} bytes allocated");

    // The largest legal claim followed by a few bytes and a hang-up: the server reads what was
    // sent and gives up, without reserving the 48 MB the header announced.
    let mut msg = header(MAX_MESSAGE_SIZE as u32, wire::OP_MSG);
    msg.extend_from_slice(&[0; 16]);
    let region = Region::new(GLOBAL);
    let reply = send_and_wait_close(addr, &msg).await;
    assert!(reply.is_empty(), "{} reply bytes", reply.len());
    let allocated = grown(&region);
    assert!(allocated < 1024 * 1024, "{allocated} bytes allocated");

    // The server still answers a well-formed command afterwards.
    let body = bson::rawdoc! { "ping": 1, "$db": "admin" };
    let request = wire::encode_op_msg_request(7, 0, &body, &[]);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.unwrap();
    let len = wire::message_length(prefix).unwrap();
    let mut reply = prefix.to_vec();
    reply.resize(len, 0);
    stream.read_exact(&mut reply[4..]).await.unwrap();
    let (head, doc) = wire::parse_reply(&reply).unwrap();
    assert_eq!(head.response_to, 7);
    assert_eq!(doc.get_f64("ok").unwrap(), 1.0);

    server.shutdown().await;
}

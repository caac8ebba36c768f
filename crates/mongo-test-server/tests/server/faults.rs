//! Fault injection as a client sees it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bson::{doc, rawdoc, Document};
use futures_util::TryStreamExt;
use mongo_test_server::CommandError;
use mongodb::options::FindOptions;

use crate::{client, command_error, server, Raw};

#[tokio::test]
async fn a_named_command_fails_the_given_number_of_times() {
    let server = server().await;
    let db = client(&server.uri()).await.database("admin");
    server.faults().fail_command(
        "buildInfo",
        CommandError::new(189, "PrimarySteppedDown", "the primary stepped down"),
        Some(2),
    );
    for _ in 0..2 {
        let e = db.run_command(doc! {"buildInfo": 1}).await.unwrap_err();
        let c = command_error(&e);
        assert_eq!((c.code, c.code_name.as_str()), (189, "PrimarySteppedDown"));
        assert_eq!(c.message, "the primary stepped down");
    }
    db.run_command(doc! {"buildInfo": 1}).await.unwrap();
    // Until cleared.
    server
        .faults()
        .fail_command("ping", CommandError::command_not_found("ping"), None);
    for _ in 0..3 {
        assert_eq!(
            command_error(&db.run_command(doc! {"ping": 1}).await.unwrap_err()).code,
            59
        );
    }
    server.faults().clear();
    db.run_command(doc! {"ping": 1}).await.unwrap();
}

#[tokio::test]
async fn the_connection_closes_after_n_commands() {
    let server = server().await;
    let mut raw = Raw::connect(server.addr()).await;
    // Handshakes are not counted.
    server.faults().close_after_commands(2);
    let hello = raw.command(1, &rawdoc! {"hello": 1, "$db": "admin"}).await;
    assert_eq!(hello.get_f64("ok").unwrap(), 1.0);
    raw.command(2, &rawdoc! {"ping": 1, "$db": "admin"}).await;
    raw.command(3, &rawdoc! {"buildInfo": 1, "$db": "admin"})
        .await;
    raw.send(&mongo_test_server::wire::encode_op_msg_request(
        4,
        0,
        &rawdoc! {"ping": 1, "$db": "admin"},
        &[],
    ))
    .await;
    assert!(raw.recv().await.is_none(), "closed instead of answering");
    // It fires once: the driver carries on on a new connection.
    let db = client(&server.uri()).await.database("admin");
    db.run_command(doc! {"ping": 1}).await.unwrap();

    server.faults().close_after_commands(0);
    let e = db.run_command(doc! {"buildInfo": 1}).await.unwrap_err();
    assert!(
        matches!(*e.kind, mongodb::error::ErrorKind::Io(_)),
        "a network error, got {e}"
    );
    db.run_command(doc! {"buildInfo": 1}).await.unwrap();
}

async fn seeded(
    n: i32,
) -> (
    mongo_test_server::ServerHandle,
    mongodb::Collection<Document>,
) {
    let server = server().await;
    let docs: Vec<Document> = (0..n)
        .map(|i| doc! {"_id": i, "pad": "x".repeat(100)})
        .collect();
    server
        .run_command("test", doc! {"insert": "c", "documents": docs})
        .await
        .unwrap();
    let coll = client(&server.uri())
        .await
        .database("test")
        .collection::<Document>("c");
    (server, coll)
}

#[tokio::test]
async fn a_cursor_fails_midway_when_the_document_budget_is_spent() {
    let (server, coll) = seeded(10).await;
    server.faults().close_after_documents(5);
    let options = FindOptions::builder().batch_size(2).build();
    let mut cursor = coll.find(doc! {}).with_options(options).await.unwrap();
    let mut seen = Vec::new();
    let err = loop {
        match cursor.try_next().await {
            Ok(Some(d)) => seen.push(d.get_i32("_id").unwrap()),
            Ok(None) => panic!("the cursor should have failed, saw {seen:?}"),
            Err(e) => break e,
        }
    };
    // Batches of 2: 2 + 2 fit in 5, the third batch would make 6.
    assert_eq!(seen, [0, 1, 2, 3]);
    assert!(
        matches!(*err.kind, mongodb::error::ErrorKind::Io(_)),
        "{err}"
    );
    // One-shot: reading everything works again.
    let all: Vec<Document> = coll
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 10);
}

#[tokio::test]
async fn cursor_batches_are_delayed() {
    let (server, coll) = seeded(6).await;
    let options = FindOptions::builder().batch_size(2).build();
    let started = Instant::now();
    let fast: Vec<Document> = coll
        .find(doc! {})
        .with_options(options.clone())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let baseline = started.elapsed();
    assert_eq!(fast.len(), 6);
    server.faults().delay_batches(Duration::from_millis(100));
    let started = Instant::now();
    let slow: Vec<Document> = coll
        .find(doc! {})
        .with_options(options)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(slow, fast);
    // Counted only while a batch fault is set: the three replies of the slow read.
    assert!(
        server.faults().batches_sent() >= 3,
        "{}",
        server.faults().batches_sent()
    );
    server.faults().wait_batches_sent(3).await;
    // firstBatch + 2 nextBatch replies (the last one may be empty), each held back.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?} (undelayed {baseline:?})",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_connection_closes_on_a_named_command_until_its_count_is_spent() {
    let server = server().await;
    let db = client(&server.uri()).await.database("admin");
    // The driver retries a read once on a network error: two closes fail one listCollections.
    server.faults().close_on_command("listCollections", Some(2));
    let e = db.list_collection_names().await.unwrap_err();
    assert!(
        matches!(*e.kind, mongodb::error::ErrorKind::Io(_)),
        "a network error, got {e}"
    );
    // Other commands were never affected, and the count is spent.
    db.run_command(doc! {"ping": 1}).await.unwrap();
    db.list_collection_names().await.unwrap();
}

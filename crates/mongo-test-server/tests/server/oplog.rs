//! A one-member replica set through the official driver: hello, `local.oplog.rs` entry
//! shapes, tailable awaitData cursors, cluster time, and the oplog rolling over.

use std::time::{Duration, Instant};

use bson::{doc, spec::BinarySubtype, Bson, Document, Timestamp};
use futures_util::{StreamExt, TryStreamExt};
use mongo_test_server::engine::OplogLimits;
use mongo_test_server::{ServerConfig, ServerHandle};
use mongodb::options::CursorType;
use mongodb::{Collection, Database};

use crate::{client, command_error};

async fn replica_set() -> ServerHandle {
    mongo_test_server::start(ServerConfig {
        replica_set: Some("rs0".into()),
        ..ServerConfig::default()
    })
    .await
    .expect("server starts")
}

fn oplog(c: &mongodb::Client) -> Collection<Document> {
    c.database("local").collection("oplog.rs")
}

/// The newest entry's `ts`.
async fn last_ts(c: &mongodb::Client) -> Timestamp {
    let last = oplog(c)
        .find_one(doc! {})
        .sort(doc! {"$natural": -1})
        .await
        .unwrap()
        .unwrap();
    last.get_timestamp("ts").unwrap()
}

/// Entries after `after` for namespaces of `db`, in oplog order.
async fn entries_since(c: &mongodb::Client, after: Timestamp, db: &str) -> Vec<Document> {
    oplog(c)
        .find(doc! {"ts": {"$gt": after}, "ns": {"$regex": format!("^{db}\\.")}})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn keys(d: &Document) -> Vec<&str> {
    d.keys().map(String::as_str).collect()
}

fn ui(d: &Document) -> Vec<u8> {
    match d.get("ui") {
        Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Uuid => b.bytes.clone(),
        other => panic!("ui should be a UUID, got {other:?} in {d}"),
    }
}

fn ts_key(t: Timestamp) -> (u32, u32) {
    (t.time, t.increment)
}

fn operation_time(reply: &Document) -> Timestamp {
    reply.get_timestamp("operationTime").unwrap()
}

#[tokio::test]
async fn hello_through_the_driver_describes_the_set() {
    let srv = replica_set().await;
    let host = format!("127.0.0.1:{}", srv.addr().port());
    let c = client(&srv.uri()).await;
    let admin = c.database("admin");
    let hello = admin.run_command(doc! {"hello": 1}).await.unwrap();
    assert_eq!(hello.get_str("setName").unwrap(), "rs0");
    assert_eq!(
        hello.get_array("hosts").unwrap(),
        &vec![Bson::String(host.clone())]
    );
    assert_eq!(hello.get_str("primary").unwrap(), host);
    assert_eq!(hello.get("isWritablePrimary"), Some(&Bson::Boolean(true)));

    let status = admin
        .run_command(doc! {"replSetGetStatus": 1})
        .await
        .unwrap();
    assert_eq!(status.get_str("set").unwrap(), "rs0");
    let member = status.get_array("members").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(member.get_str("name").unwrap(), host);
    assert_eq!(member.get_str("stateStr").unwrap(), "PRIMARY");
    // The applied optime is the newest oplog entry.
    let applied = status
        .get_document("optimes")
        .unwrap()
        .get_document("appliedOpTime")
        .unwrap()
        .get_timestamp("ts")
        .unwrap();
    assert_eq!(applied, last_ts(&c).await);

    // A standalone has no replica set to describe.
    let plain = mongo_test_server::start(ServerConfig::default())
        .await
        .unwrap();
    let err = client(&plain.uri())
        .await
        .database("admin")
        .run_command(doc! {"replSetGetStatus": 1})
        .await
        .unwrap_err();
    assert_eq!(command_error(&err).code, 76);
    plain.shutdown().await;
    srv.shutdown().await;
}

#[tokio::test]
async fn writes_appear_in_the_oplog_with_mongods_entry_shape() {
    let srv = replica_set().await;
    let c = client(&srv.uri()).await;
    let start = last_ts(&c).await;
    let db = c.database("shop");
    db.run_command(doc! {"create": "items"}).await.unwrap();
    let items = db.collection::<Document>("items");
    items
        .insert_one(doc! {"_id": 1, "name": "pen", "tags": {"colour": "blue"}, "old": true})
        .await
        .unwrap();
    items
        .update_one(
            doc! {"_id": 1},
            doc! {"$set": {"name": "ink pen", "tags.colour": "red", "price": 3}, "$unset": {"old": ""}},
        )
        .await
        .unwrap();
    items
        .replace_one(doc! {"_id": 1}, doc! {"name": "pencil"})
        .await
        .unwrap();
    items.delete_one(doc! {"_id": 1}).await.unwrap();
    items.drop().await.unwrap();

    let got = entries_since(&c, start, "shop").await;
    let ops: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e.get_str("op").unwrap(), e.get_str("ns").unwrap()))
        .collect();
    assert_eq!(
        ops,
        [
            ("c", "shop.$cmd"),
            ("i", "shop.items"),
            ("u", "shop.items"),
            ("u", "shop.items"),
            ("d", "shop.items"),
            ("c", "shop.$cmd"),
        ]
    );
    let [create, insert, update, replace, delete, drop] = &got[..] else {
        unreachable!()
    };
    let uuid = ui(create);
    for e in &got {
        assert_eq!(ui(e), uuid, "every entry names the collection's UUID: {e}");
        assert_eq!(e.get_i64("t").unwrap(), 1);
        assert_eq!(e.get_i64("v").unwrap(), 2);
        assert!(matches!(e.get("wall"), Some(Bson::DateTime(_))));
    }
    let stamps: Vec<(u32, u32)> = got
        .iter()
        .map(|e| ts_key(e.get_timestamp("ts").unwrap()))
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "ts strictly increase: {stamps:?}"
    );
    assert!(stamps[0] > ts_key(start));

    assert_eq!(
        keys(create),
        ["op", "ns", "ui", "o", "ts", "t", "v", "wall"]
    );
    assert_eq!(
        create.get_document("o").unwrap(),
        &doc! {"create": "items", "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}
    );
    assert_eq!(
        keys(insert),
        ["op", "ns", "ui", "o", "o2", "ts", "t", "v", "wall"]
    );
    assert_eq!(
        insert.get_document("o").unwrap(),
        &doc! {"_id": 1, "name": "pen", "tags": {"colour": "blue"}, "old": true}
    );
    assert_eq!(insert.get_document("o2").unwrap(), &doc! {"_id": 1});
    // $set/$unset become a `$v: 2` diff of the document.
    assert_eq!(
        keys(update),
        ["op", "ns", "ui", "o", "o2", "ts", "t", "v", "wall"]
    );
    assert_eq!(
        update.get_document("o").unwrap(),
        &doc! {"$v": 2, "diff": {"d": {"old": false}, "u": {"name": "ink pen"}, "i": {"price": 3}, "stags": {"u": {"colour": "red"}}}}
    );
    assert_eq!(update.get_document("o2").unwrap(), &doc! {"_id": 1});
    assert_eq!(
        replace.get_document("o").unwrap(),
        &doc! {"_id": 1, "name": "pencil"}
    );
    assert_eq!(replace.get_document("o2").unwrap(), &doc! {"_id": 1});
    assert_eq!(
        keys(delete),
        ["op", "ns", "ui", "o", "ts", "t", "v", "wall"]
    );
    assert_eq!(delete.get_document("o").unwrap(), &doc! {"_id": 1});
    assert_eq!(drop.get_document("o").unwrap(), &doc! {"drop": "items"});
    assert_eq!(
        drop.get_document("o2").unwrap(),
        &doc! {"numRecords": 0_i64}
    );

    // A ts filter picks up exactly the entries after a point.
    let after_update = update.get_timestamp("ts").unwrap();
    let tail = entries_since(&c, after_update, "shop").await;
    assert_eq!(tail.len(), 3);
    assert_eq!(tail[0].get_str("op").unwrap(), "u");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_tailable_await_cursor_sees_concurrent_writes_as_they_happen() {
    let srv = replica_set().await;
    let c = client(&srv.uri()).await;
    let start = last_ts(&c).await;
    let mut cursor = oplog(&c)
        .find(doc! {"ts": {"$gt": start}})
        .cursor_type(CursorType::TailableAwait)
        .max_await_time(Duration::from_millis(200))
        .await
        .unwrap();

    let (go, mut wait) = tokio::sync::mpsc::unbounded_channel::<i32>();
    let writer_client = c.clone();
    let writer = tokio::spawn(async move {
        let coll = writer_client
            .database("live")
            .collection::<Document>("feed");
        // Each insert waits for the reader to have seen the one before.
        while let Some(i) = wait.recv().await {
            coll.insert_one(doc! {"_id": i}).await.unwrap();
        }
    });
    for i in 0..3 {
        go.send(i).unwrap();
        // The first insert also creates the collection: skip that entry.
        let entry = loop {
            let e = tokio::time::timeout(Duration::from_secs(10), cursor.next())
                .await
                .expect("the entry arrives while the cursor waits")
                .expect("the tailable cursor stays open")
                .unwrap();
            if e.get_str("op").unwrap() == "i" {
                break e;
            }
        };
        assert_eq!(entry.get_str("ns").unwrap(), "live.feed");
        assert_eq!(entry.get_document("o").unwrap(), &doc! {"_id": i});
    }
    drop(go);
    writer.await.unwrap();
    srv.shutdown().await;
}

/// `find` on the oplog as a tailable awaitData cursor, run as a plain command so each
/// getMore can be timed on its own.
async fn open_tail(local: &Database, after: Timestamp) -> i64 {
    let reply = local
        .run_command(doc! {
            "find": "oplog.rs",
            "filter": {"ts": {"$gt": after}},
            "tailable": true,
            "awaitData": true,
        })
        .await
        .unwrap();
    let cursor = reply.get_document("cursor").unwrap();
    assert!(cursor.get_array("firstBatch").unwrap().is_empty());
    let id = cursor.get_i64("id").unwrap();
    assert_ne!(id, 0, "a tailable cursor at the end stays open");
    id
}

#[tokio::test]
async fn an_await_data_get_more_waits_for_max_await_time_when_nothing_arrives() {
    let srv = replica_set().await;
    let c = client(&srv.uri()).await;
    let local = c.database("local");
    let id = open_tail(&local, last_ts(&c).await).await;
    let began = Instant::now();
    let reply = local
        .run_command(doc! {"getMore": id, "collection": "oplog.rs", "maxTimeMS": 400})
        .await
        .unwrap();
    let waited = began.elapsed();
    let cursor = reply.get_document("cursor").unwrap();
    assert!(cursor.get_array("nextBatch").unwrap().is_empty());
    assert_eq!(
        cursor.get_i64("id").unwrap(),
        id,
        "the cursor survives an empty wait"
    );
    assert!(
        waited >= Duration::from_millis(350),
        "returned after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "returned after {waited:?}");

    // A write during the wait ends it early with that entry.
    let wait =
        local.run_command(doc! {"getMore": id, "collection": "oplog.rs", "maxTimeMS": 30_000});
    let write = async {
        c.database("w")
            .collection::<Document>("c")
            .insert_one(doc! {"_id": "x"})
            .await
            .unwrap();
    };
    let began = Instant::now();
    let (reply, ()) = tokio::join!(wait, write);
    assert!(began.elapsed() < Duration::from_secs(20));
    let batch = reply
        .unwrap()
        .get_document("cursor")
        .unwrap()
        .get_array("nextBatch")
        .unwrap()
        .clone();
    assert!(!batch.is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn cluster_time_and_operation_time_advance_with_writes() {
    let srv = replica_set().await;
    let c = client(&srv.uri()).await;
    let db = c.database("clock");
    let first = db
        .run_command(doc! {"insert": "c", "documents": [{"_id": 1}]})
        .await
        .unwrap();
    let t1 = operation_time(&first);
    assert_eq!(
        t1,
        last_ts(&c).await,
        "a write's operationTime is its optime"
    );
    let cluster = first
        .get_document("$clusterTime")
        .unwrap()
        .get_timestamp("clusterTime")
        .unwrap();
    assert!(ts_key(cluster) >= ts_key(t1));

    // Let the wall clock pass a second boundary with no writes, so the cluster time moves
    // on by itself; a later write must still be after everything handed out.
    let deadline = Instant::now() + Duration::from_secs(5);
    let idle = loop {
        let ping = db.run_command(doc! {"ping": 1}).await.unwrap();
        let t = operation_time(&ping);
        if t.time > t1.time {
            break t;
        }
        assert!(Instant::now() < deadline, "the cluster time never moved on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let second = db
        .run_command(doc! {"insert": "c", "documents": [{"_id": 2}]})
        .await
        .unwrap();
    let t2 = operation_time(&second);
    assert!(ts_key(t2) > ts_key(idle), "{t2:?} after {idle:?}");
    assert_eq!(t2, last_ts(&c).await);
    // Reading from the last gossiped time finds the write.
    let found = entries_since(&c, idle, "clock").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_document("o").unwrap(), &doc! {"_id": 2});

    // The driver's session tracks the advancing times too.
    let mut session = c.start_session().await.unwrap();
    db.collection::<Document>("c")
        .insert_one(doc! {"_id": 3})
        .session(&mut session)
        .await
        .unwrap();
    let op = session.operation_time().unwrap();
    assert!(ts_key(op) > ts_key(t2));
    assert!(session.cluster_time().is_some());
    srv.shutdown().await;
}

#[tokio::test]
async fn the_oplog_rolling_past_a_tailable_cursor_loses_its_position() {
    let srv = replica_set().await;
    let c = client(&srv.uri()).await;
    let start = last_ts(&c).await;
    let mut cursor = oplog(&c)
        .find(doc! {"ts": {"$gt": start}})
        .cursor_type(CursorType::TailableAwait)
        .max_await_time(Duration::from_millis(100))
        .await
        .unwrap();
    srv.engine().set_oplog_limits(OplogLimits {
        max_entries: Some(5),
        max_bytes: None,
    });
    let coll = c.database("roll").collection::<Document>("c");
    for i in 0..20 {
        coll.insert_one(doc! {"_id": i}).await.unwrap();
    }
    assert_eq!(oplog(&c).count_documents(doc! {}).await.unwrap(), 5);
    let err = tokio::time::timeout(Duration::from_secs(10), cursor.next())
        .await
        .expect("the getMore answers")
        .expect("an error, not the end of the stream")
        .unwrap_err();
    assert_eq!(command_error(&err).code, 136);
    assert_eq!(command_error(&err).code_name, "CappedPositionLost");

    // A new cursor from the oldest surviving entry works.
    let oldest = oplog(&c).find_one(doc! {}).await.unwrap().unwrap();
    let mut fresh = oplog(&c)
        .find(doc! {"ts": {"$gte": oldest.get_timestamp("ts").unwrap()}})
        .cursor_type(CursorType::TailableAwait)
        .await
        .unwrap();
    let first = fresh.next().await.unwrap().unwrap();
    assert_eq!(first, oldest);
    srv.shutdown().await;
}

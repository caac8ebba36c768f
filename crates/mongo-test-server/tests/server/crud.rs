//! Inserts, updates, deletes and finds through the official driver.

use bson::{doc, Document};
use futures_util::TryStreamExt;

use crate::{client, server};

#[tokio::test]
async fn driver_crud_round_trip() {
    let srv = server().await;
    let c = client(&srv.uri()).await;
    let coll = c.database("app").collection::<Document>("people");
    let r = coll
        .insert_many(vec![
            doc! {"name": "ann", "age": 31},
            doc! {"name": "bob", "age": 45},
        ])
        .await
        .unwrap();
    assert_eq!(r.inserted_ids.len(), 2);
    coll.update_one(doc! {"name": "ann"}, doc! {"$inc": {"age": 1}})
        .await
        .unwrap();
    let up = coll
        .update_one(doc! {"name": "cy"}, doc! {"$set": {"age": 20}})
        .upsert(true)
        .await
        .unwrap();
    assert!(up.upserted_id.is_some());
    let older: Vec<Document> = coll
        .find(doc! {"age": {"$gt": 25}})
        .sort(doc! {"age": -1})
        .projection(doc! {"_id": 0, "name": 1})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(older, vec![doc! {"name": "bob"}, doc! {"name": "ann"}]);
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 3);
    let del = coll.delete_many(doc! {"age": {"$lt": 40}}).await.unwrap();
    assert_eq!(del.deleted_count, 2);

    let dup = coll
        .insert_one(doc! {"_id": 1})
        .await
        .and(coll.insert_one(doc! {"_id": 1}).await);
    let err = dup.unwrap_err();
    match &*err.kind {
        mongodb::error::ErrorKind::InsertMany(_) | mongodb::error::ErrorKind::Write(_) => {}
        other => panic!("expected a write error, got {other:?}"),
    }
    assert!(err
        .to_string()
        .contains("E11000 duplicate key error collection: app.people index: _id_"));
    srv.shutdown().await;
}

#[tokio::test]
async fn driver_pages_ten_thousand_documents_in_batches_of_seven() {
    let srv = server().await;
    let c = client(&srv.uri()).await;
    let coll = c.database("app").collection::<Document>("many");
    let docs: Vec<Document> = (0..10_000)
        .map(|i| doc! {"_id": i, "pad": "x".repeat(20)})
        .collect();
    coll.insert_many(docs).await.unwrap();
    let got: Vec<Document> = coll
        .find(doc! {})
        .batch_size(7)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(got.len(), 10_000);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, d)| d.get_i32("_id").unwrap() == i as i32));
    srv.shutdown().await;
}

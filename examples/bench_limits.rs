//! The two lower bounds a backup is measured against, in one run on the same data:
//! draining every cursor with the driver (and discarding), and gzip-compressing the same BSON
//! bytes at the same level, on one thread and on two (the backup's own compressor). Prints
//! one JSON line.
//!
//! Usage: bench_limits MONGODB_URI [PARALLEL] [LEVEL]

use std::io::Write;
use std::time::Instant;

use bson::{doc, RawDocumentBuf};
use futures_util::TryStreamExt;
use nightdump::backup::compress::Compressor;
use nightdump::backup::{FinishWrite, Stored};

/// Counts nothing, keeps nothing: compression alone is timed.
struct Discard;

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FinishWrite for Discard {
    fn finish_stream(self: Box<Self>) -> std::io::Result<Stored> {
        Ok(Stored {
            size: 0,
            sha256: [0; 32],
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let uri = args
        .next()
        .ok_or("usage: bench_limits MONGODB_URI [PARALLEL] [LEVEL]")?;
    let parallel: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4);
    let level: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(6);
    let client = mongodb::Client::with_uri_str(&uri).await?;

    let mut namespaces = Vec::new();
    for db in client.list_database_names().await? {
        if ["admin", "local", "config"].contains(&db.as_str()) {
            continue;
        }
        let specs: Vec<bson::Document> = client
            .database(&db)
            .run_cursor_command(doc! { "listCollections": 1, "filter": { "type": "collection" } })
            .await?
            .try_collect()
            .await?;
        for s in specs {
            let name = s.get_str("name")?.to_string();
            if !name.starts_with("system.") {
                namespaces.push((db.clone(), name));
            }
        }
    }

    // Drain: the same find the backup sends, `parallel` collections at once, bytes discarded.
    let started = Instant::now();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(namespaces.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let (client, queue) = (client.clone(), queue.clone());
        tasks.spawn(async move {
            let mut bytes = 0u64;
            loop {
                let next = queue.lock().map_err(|_| "poisoned")?.pop();
                let Some((db, coll)) = next else { break };
                let mut cursor = client
                    .database(&db)
                    .collection::<RawDocumentBuf>(&coll)
                    .find(doc! {})
                    .hint(mongodb::options::Hint::Keys(doc! { "$natural": 1 }))
                    .await?;
                while cursor.advance().await? {
                    bytes += cursor.current().as_bytes().len() as u64;
                }
            }
            Ok::<u64, Box<dyn std::error::Error + Send + Sync>>(bytes)
        });
    }
    let mut total = 0u64;
    while let Some(r) = tasks.join_next().await {
        total += r?.map_err(|e| e.to_string())?;
    }
    let drain_seconds = started.elapsed().as_secs_f64();

    // The same bytes, gathered once (not timed), then compressed on one core.
    let mut corpus = Vec::with_capacity(total as usize);
    for (db, coll) in &namespaces {
        let mut cursor = client
            .database(db)
            .collection::<RawDocumentBuf>(coll)
            .find(doc! {})
            .await?;
        while cursor.advance().await? {
            corpus.extend_from_slice(cursor.current().as_bytes());
        }
    }
    // The same bytes through the backup's compressor on one thread, then on two.
    let compress = |threads: usize| -> Result<f64, Box<dyn std::error::Error>> {
        let started = Instant::now();
        let mut gz = Compressor::new(Box::new(Discard), level, threads)?;
        for chunk in corpus.chunks(256 * 1024) {
            gz.write_all(chunk)?;
        }
        gz.finish()?.finish_stream()?;
        Ok(started.elapsed().as_secs_f64())
    };
    let gzip_seconds = compress(1)?;
    let gzip2_seconds = compress(2)?;
    // The manifest's content digest over the same documents, on one core.
    let started = Instant::now();
    let mut digest = nightdump::digest::ContentDigest::default();
    digest.add_documents(&corpus);
    std::hint::black_box(digest.hex());
    let digest_seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"bytes\":{total},\"namespaces\":{},\"drain_seconds\":{drain_seconds:.3},\"gzip_seconds\":{gzip_seconds:.3},\"gzip2_seconds\":{gzip2_seconds:.3},\"digest_seconds\":{digest_seconds:.3}}}",
        namespaces.len()
    );
    Ok(())
}

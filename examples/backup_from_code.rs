//! Backing up from code: the library is the product, the `nightdump` binary one client of it.
//! Backs up a deployment into a directory (or `s3://bucket/prefix`) and checks the result.
//!
//! Usage: cargo run --example backup_from_code -- MONGODB_URI DESTINATION

use std::sync::Arc;
use std::time::Duration;

use nightdump::backup::{self, BackupOptions};
use nightdump::catalog::Selector;
use nightdump::namespace::NamespaceFilter;
use nightdump::progress::Progress;
use nightdump::secret::ConnectionString;
use nightdump::source::{ReadPreferenceChoice, SourceOptions};
use nightdump::store::{S3Options, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(uri), Some(to)) = (args.next(), args.next()) else {
        return Err("usage: backup_from_code MONGODB_URI DESTINATION".into());
    };
    // The same checks the CLI and the Lambda apply, from the settings layer.
    let destination = nightdump::settings::destination("DESTINATION", &to)?;
    let options = BackupOptions {
        source: SourceOptions {
            uri: ConnectionString::parse(&uri)?,
            read_preference: ReadPreferenceChoice::default(),
            server_selection_timeout: Duration::from_secs(10),
        },
        filter: NamespaceFilter::default(),
        parallel: 4,
        scheduled_at: None,
        compression_level: 6,
        compress_threads: backup::compress::available_threads(),
        deadline: None,
        s3: S3Options::default(),
        encrypt: None,
        oplog: true,
        // A standalone server cannot be backed up to one point in time; accept that here.
        allow_inconsistent: true,
        stale_upload_age: backup::STALE_UPLOAD_AGE,
        allow_empty: false,
    };
    let store = Store::open(&destination, &options.s3).await?;
    let outcome = backup::run(&options, &store, &Arc::new(Progress::default())).await?;
    let m = &outcome.manifest;
    println!(
        "backup {}: {} namespaces, {} documents, {} bytes stored",
        m.backup_id, m.totals.namespaces, m.totals.documents, m.archive.size
    );
    let report =
        nightdump::verify::verify(&store, &Selector::Id(m.backup_id.parse()?), None).await?;
    println!("verified: sha256 {}", report.sha256);
    Ok(())
}

//! Restore drills through the binary and the Lambda handler: a drill that passes (standalone
//! and replica-set sources) and leaves the scratch deployment as it found it; content that
//! differs, caught by the digests with the namespace named; a scratch deployment that refuses
//! writes, is unreachable or already holds the backup's databases; the drill event with its
//! metric and its failure alert.

use std::time::Duration;

use mongo_test_server::{RoleRef, ServerConfig, ServerHandle, User};
use serde_json::Value;

use crate::faults::Topology;
use crate::harness::*;
use crate::restore::{fresh_target, from_backup, restore_options};

/// A backup of the demo data set in a new directory.
struct Backed {
    _source: Source,
    dir: tempfile::TempDir,
}

impl Backed {
    async fn new(topology: Topology) -> Backed {
        let source = match topology {
            Topology::Standalone => demo_test_server().await,
            Topology::ReplicaSet => demo_replica_set().await,
        };
        let dir = tempfile::tempdir().unwrap();
        let store = local_store(dir.path()).await;
        nightdump::backup::run(&options(&source.uri), &store, &progress())
            .await
            .unwrap();
        Backed {
            _source: source,
            dir,
        }
    }

    fn from(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn latest_json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("latest.json")).unwrap())
            .unwrap()
    }

    fn drills(&self) -> Vec<String> {
        files(self.dir.path())
            .into_iter()
            .filter(|f| f.starts_with("drills/"))
            .collect()
    }
}

async fn drill(backed: &Backed, scratch: &str, extra: &[&str]) -> Run {
    let mut args = vec!["drill", "--from", backed.from(), "--uri", scratch];
    args.extend_from_slice(extra);
    run_nightdump(&args, &[]).await
}

async fn user_databases(uri: &str) -> Vec<String> {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let mut names = client.list_database_names().await.unwrap();
    names.retain(|d| !["admin", "config", "local"].contains(&d.as_str()));
    names
}

async fn a_drill_passes_and_drops_what_it_restored_with(topology: Topology) {
    let backed = Backed::new(topology).await;
    let scratch = fresh_target().await;
    let run = drill(&backed, &scratch.uri(), &["--json"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    let namespaces = report["namespaces"].as_array().unwrap();
    assert!(namespaces.len() >= 10, "{report}");
    for n in namespaces {
        assert_eq!(n["documents_found"], n["documents_expected"], "{n}");
        for field in ["content_matches", "indexes_match", "options_match"] {
            assert_eq!(n[field], true, "{field}: {n}");
        }
    }
    assert!(report["restore_seconds"].as_f64().unwrap() > 0.0);
    assert!(report["archive_size"].as_u64().unwrap() > 0);
    // Nothing of the drill is left on the scratch deployment.
    assert!(user_databases(&scratch.uri()).await.is_empty());
    assert!(report["dropped"].as_array().unwrap().len() >= 3, "{report}");
    // Stored, and recorded as the last drill.
    let id = report["drill_id"].as_str().unwrap();
    assert_eq!(backed.drills(), [format!("drills/{id}.json")]);
    let latest = backed.latest_json();
    assert_eq!(latest["drill"]["drill_id"], id);
    assert_eq!(latest["drill"]["passed"], true);
    let status = run_nightdump(&["status", "--from", backed.from()], &[]).await;
    assert!(
        status
            .stdout
            .contains(&format!("last restore drill: {id} of backup")),
        "{}",
        status.stdout
    );
    // The next backup keeps the drill's record in latest.json.
    let again = run_nightdump(
        &[
            "backup",
            "--uri",
            &backed._source.uri,
            "--to",
            backed.from(),
            "--allow-inconsistent",
            "--quiet",
        ],
        &[],
    )
    .await;
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    let latest = backed.latest_json();
    assert_ne!(latest["backup_id"], report["backup_id"]);
    assert_eq!(latest["drill"]["drill_id"], id);
}

#[tokio::test]
async fn a_drill_passes_and_drops_what_it_restored() {
    a_drill_passes_and_drops_what_it_restored_with(Topology::Standalone).await;
}

#[tokio::test]
async fn a_drill_passes_and_drops_what_it_restored_on_a_replica_set() {
    a_drill_passes_and_drops_what_it_restored_with(Topology::ReplicaSet).await;
}

/// A document altered after the backup (in its stored record, or in what was restored) is
/// caught by the digests, the namespace named.
#[tokio::test]
async fn a_document_altered_between_backup_and_drill_is_caught_by_the_digest() {
    let backed = Backed::new(Topology::Standalone).await;
    let store = local_store(backed.dir.path()).await;
    let (_, manifest) = nightdump::catalog::resolve(&store, &nightdump::catalog::Selector::Latest)
        .await
        .unwrap();

    // What was restored, read back: one document changed, one index dropped.
    let scratch = fresh_target().await;
    nightdump::restore::run(
        &restore_options(&scratch.uri()),
        from_backup(&store),
        &progress(),
    )
    .await
    .unwrap();
    scratch
        .run_command(
            "shop",
            bson::doc! {"update": "orders", "updates": [{"q": {}, "u": {"$set": {"status": "altered"}}}]},
        )
        .await
        .unwrap();
    scratch
        .run_command(
            "shop",
            bson::doc! {"dropIndexes": "products", "index": "product_text"},
        )
        .await
        .unwrap();
    let uri = nightdump::secret::ConnectionString::parse(&scratch.uri()).unwrap();
    let found = nightdump::drill::check_restored(&uri, &manifest, Duration::from_secs(5))
        .await
        .unwrap();
    let orders = found.iter().find(|n| n.namespace == "shop.orders").unwrap();
    assert_eq!(orders.content_matches, Some(false));
    assert_eq!(orders.mismatch.as_deref(), Some("document content differs"));
    let products = found
        .iter()
        .find(|n| n.namespace == "shop.products")
        .unwrap();
    assert_eq!(
        (products.content_matches, products.indexes_match),
        (Some(true), Some(false))
    );
    assert_eq!(
        products.mismatch.as_deref(),
        Some("index specifications differ")
    );
    assert!(
        found
            .iter()
            .filter(|n| n.namespace != "shop.orders" && n.namespace != "shop.products")
            .all(|n| n.mismatch.is_none()),
        "{found:?}"
    );

    // The stored manifest says other content than the archive holds: the drill fails before
    // writing anything, naming the namespace.
    let manifest_path = backed
        .dir
        .path()
        .join(manifest.backup_id.as_str())
        .join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let orders = m["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .position(|n| n["collection"] == "orders")
        .unwrap();
    m["namespaces"][orders]["digest"] = Value::String("1".repeat(32));
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let clean = fresh_target().await;
    let run = drill(&backed, &clean.uri(), &[]).await;
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    let error = run.plain_stderr_lines().join("\n");
    assert!(
        error.contains("shop.orders") && error.contains("content digest"),
        "{error}"
    );
    assert!(user_databases(&clean.uri()).await.is_empty());
    assert!(backed.drills().is_empty());
}

#[tokio::test]
async fn a_scratch_deployment_that_refuses_writes_fails_as_a_restore_does() {
    let backed = Backed::new(Topology::Standalone).await;
    // Read-only: the restore is refused before any write, with the privilege named.
    let reader = mongo_test_server::start(ServerConfig {
        users: vec![
            User::new("reader", "pw").with_roles([RoleRef::new("readAnyDatabase", "admin")])
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let uri = reader
        .uri()
        .replacen("mongodb://", "mongodb://reader:pw@", 1);
    let run = drill(&backed, &uri, &["--connect-timeout", "3s"]).await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("privilege"), "{}", run.stderr);
    assert!(!run.all_output().contains(":pw@"), "{}", run.all_output());
    assert!(backed.drills().is_empty());
    assert!(backed.latest_json().get("drill").is_none());

    // Unreachable.
    let closed = format!("mongodb://127.0.0.1:{}/", closed_port());
    let run = drill(&backed, &closed, &["--connect-timeout", "2s"]).await;
    assert_eq!(run.code, Some(3), "{}", run.stderr);

    // Already holding a database of the backup: refused, and that database left alone.
    let busy = fresh_target().await;
    busy.run_command(
        "shop",
        bson::doc! {"insert": "mine", "documents": [{"_id": 1}]},
    )
    .await
    .unwrap();
    let run = drill(&backed, &busy.uri(), &[]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("already holds shop"), "{}", run.stderr);
    assert_eq!(user_databases(&busy.uri()).await, ["shop"]);
    assert_eq!(source_documents(&busy.uri(), "shop", "mine").await.len(), 1);
    assert!(backed.drills().is_empty());
}

/// Used by the Lambda drill test: a scratch deployment.
pub async fn scratch() -> ServerHandle {
    fresh_target().await
}

/// Whether `scratch` holds no database but the server's own.
pub async fn scratch_is_empty(scratch: &ServerHandle) -> bool {
    user_databases(&scratch.uri()).await.is_empty()
}

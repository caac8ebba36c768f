//! The `nightdump` binary: exit codes, one-line errors, results on stdout.

use std::process::{Command, Output, Stdio};

use crate::harness::*;

fn nightdump(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nightdump"))
        .args(args)
        .env_remove("MONGODB_URI")
        .env_remove("NIGHTDUMP_TO")
        .env_remove("NIGHTDUMP_FROM")
        .stdin(Stdio::null())
        .output()
        .expect("nightdump runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn backup_without_a_source_fails_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let o = nightdump(&["backup", "--to", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--uri"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1);
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn bad_inputs_get_their_own_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["backup", "--uri", "http://u:pw@h/", "--to", d],
            2,
            "mongodb://",
        ),
        (
            &["backup", "--uri", "mongodb://h/", "--to", "gs://bucket"],
            2,
            "gs",
        ),
        (
            &[
                "backup",
                "--uri",
                "mongodb://h/",
                "--to",
                d,
                "--parallel",
                "0",
            ],
            2,
            "--parallel",
        ),
        (
            &[
                "backup",
                "--uri",
                "mongodb://h/",
                "--to",
                d,
                "--include",
                "nodot",
            ],
            2,
            "--include",
        ),
        (
            &[
                "backup",
                "--uri",
                "mongodb://h/",
                "--to",
                d,
                "--scheduled-at",
                "yesterday",
            ],
            2,
            "RFC 3339",
        ),
        (
            &[
                "backup",
                "--uri",
                "mongodb://h/",
                "--to",
                d,
                "--compression-level",
                "12",
            ],
            2,
            "compression",
        ),
        (
            &[
                "backup",
                "--uri",
                "mongodb://h/",
                "--to",
                d,
                "--sse",
                "rot13",
            ],
            2,
            "--sse",
        ),
        (
            &[
                "backup",
                "--uri",
                "mongodb://h/",
                "--to",
                d,
                "--connect-timeout",
                "soon",
            ],
            2,
            "duration",
        ),
        (&["status", "--from", d, "--max-age", "old"], 2, "duration"),
        (&["verify", "not-an-id", "--from", d], 2, "backup id"),
        (&["verify", "20200101T000000Z", "--from", d], 5, "not found"),
        (&["status", "--from", d], 5, "no successful backup"),
    ];
    for (args, code, needle) in cases {
        let o = nightdump(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {err}");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{args:?}: {err}"
        );
        assert!(!err.contains("pw@"), "{args:?} leaked a password: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn backup_list_status_verify_and_cat_through_the_cli() {
    let source = demo_source().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let uri = source.uri.clone();
    let d2 = d.clone();
    let o = tokio::task::spawn_blocking(move || {
        nightdump(&[
            "backup",
            "--uri",
            &uri,
            "--to",
            &d2,
            "--json",
            "--scheduled-at",
            "2026-11-25T03:00:00Z",
            // The demo source is a standalone server: no oplog, no point in time.
            "--allow-inconsistent",
        ])
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["backup_id"], "20261125T030000Z");

    let d2 = d.clone();
    let (list, status, verify, cat) = tokio::task::spawn_blocking(move || {
        (
            nightdump(&["list", "--from", &d2]),
            nightdump(&["status", "--from", &d2, "--json"]),
            nightdump(&["verify", "latest", "--from", &d2]),
            nightdump(&["cat", "20261125T030000Z", "--from", &d2]),
        )
    })
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("20261125T030000Z"));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["last_success"]["backup_id"], "20261125T030000Z");
    let fresh = nightdump(&["status", "--from", &d, "--max-age", "1h"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    // Age counts from when the backup finished; once more than a second has passed, a
    // one-second limit must report it stale.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let stale = nightdump(&["status", "--from", &d, "--max-age", "1s"]);
    assert_eq!(stale.status.code(), Some(7), "{}", stderr(&stale));
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("intact"));
    let stored = std::fs::read(dir.path().join("20261125T030000Z/dump.archive.gz")).unwrap();
    assert!(cat.status.success(), "{}", stderr(&cat));
    assert_eq!(cat.stdout, stored);
}

/// `nightdump estimate` reads the sizes the server reports and a compressed sample: its
/// stored size is close to what a backup then stores, and a small database fits one Lambda
/// run at the template's default memory.
#[tokio::test]
async fn estimate_predicts_the_stored_size_and_that_a_small_database_fits_one_lambda_run() {
    let source = demo_test_server().await;
    let run = run_nightdump(&["estimate", "--uri", &source.uri, "--json"], &[]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let e: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path()).await;
    let outcome = nightdump::backup::run(&options(&source.uri), &store, &progress())
        .await
        .unwrap();
    let m = &outcome.manifest;
    let bson = e["bson_bytes"].as_f64().unwrap();
    let documents_bytes = m.totals.bytes as f64;
    assert!(
        (bson / documents_bytes - 1.0).abs() < 0.25,
        "reported {bson} vs {documents_bytes} backed up"
    );
    let stored = e["stored_bytes"].as_f64().unwrap();
    let actual = m.archive.size as f64;
    assert!(
        stored / actual > 0.5 && stored / actual < 2.0,
        "estimated {stored} stored, {actual} actually"
    );
    assert_eq!(e["fits_at_mb"], 1024);
    assert_eq!(e["runs"].as_array().unwrap().len(), 5);
    assert!(e["advice"]
        .as_str()
        .unwrap()
        .starts_with("fits one Lambda run"));
}

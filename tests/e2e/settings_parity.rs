//! The command line and the Lambda share one settings layer (`nightdump::settings`): for
//! every setting both take, each value below gets the same verdict from both, a refusal is
//! exit code 2 on the command line and `InvalidConfiguration` in the Lambda, and each error
//! names the setting as that front end's user gave it. One list; a shared setting is one row.

use std::collections::HashMap;
use std::time::Duration;

use nightdump::lambda::config::LambdaConfig;

use crate::bad_input::template_env;
use crate::harness::*;

/// A setting both front ends take: its flag (or, for a switch, the variable the CLI reads it
/// from), its Lambda variable, and values to try with whether they are accepted.
struct Shared {
    flag: &'static str,
    env: &'static str,
    /// The CLI reads a switch from its variable (a bare flag cannot be given a bad value).
    cli_by_env: bool,
    /// Settings that only mean something together with this one, given to both.
    with: &'static [(&'static str, &'static str, &'static str)],
    /// Lambda variables of the template that this row leaves out (the CLI has none of them).
    without: &'static [&'static str],
    values: &'static [(&'static str, bool)],
}

const SHARED: &[Shared] = &[
    Shared {
        flag: "--connect-timeout",
        env: "NIGHTDUMP_CONNECT_TIMEOUT",
        cli_by_env: false,
        with: &[],
        without: &[],
        values: &[("0s", false), ("soon", false), ("-5s", false), ("1s", true)],
    },
    Shared {
        flag: "--parallel",
        env: "NIGHTDUMP_PARALLEL",
        cli_by_env: false,
        with: &[],
        without: &[],
        values: &[
            ("0", false),
            ("65", false),
            ("four", false),
            ("-1", false),
            ("8", true),
        ],
    },
    Shared {
        flag: "--include",
        env: "NIGHTDUMP_INCLUDE",
        cli_by_env: false,
        with: &[],
        without: &[],
        values: &[
            ("nodot", false),
            (".", false),
            ("shop.", false),
            ("shop.*", true),
        ],
    },
    Shared {
        flag: "--exclude",
        env: "NIGHTDUMP_EXCLUDE",
        cli_by_env: false,
        with: &[],
        without: &[],
        values: &[("nodot", false), ("*.", false), ("shop.tmp", true)],
    },
    Shared {
        flag: "--sse",
        env: "NIGHTDUMP_SSE",
        cli_by_env: false,
        with: &[],
        without: &["NIGHTDUMP_KMS_KEY_ID"],
        values: &[
            ("rot13", false),
            ("aes", false),
            ("s3", true),
            ("kms", true),
        ],
    },
    Shared {
        flag: "--kms-key-id",
        env: "NIGHTDUMP_KMS_KEY_ID",
        cli_by_env: false,
        with: &[("--sse", "NIGHTDUMP_SSE", "s3")],
        without: &[],
        values: &[("alias/backups", false)],
    },
    Shared {
        flag: "--storage-class",
        env: "NIGHTDUMP_STORAGE_CLASS",
        cli_by_env: false,
        with: &[],
        without: &[],
        values: &[
            ("standard_ia", false),
            ("GLACIER IR", false),
            ("STANDARD_IA", true),
        ],
    },
    Shared {
        flag: "--part-size",
        env: "NIGHTDUMP_PART_SIZE",
        cli_by_env: false,
        with: &[],
        without: &[],
        values: &[
            ("4MiB", false),
            ("6GiB", false),
            ("16MB", false),
            ("lots", false),
            ("64MiB", true),
        ],
    },
    Shared {
        flag: "--stale-upload-age",
        env: "NIGHTDUMP_STALE_UPLOAD_AGE",
        cli_by_env: false,
        with: &[],
        without: &[],
        values: &[("-1h", false), ("soon", false), ("6h", true)],
    },
    Shared {
        flag: "--encrypt",
        env: "NIGHTDUMP_ENCRYPT",
        cli_by_env: false,
        with: &[],
        without: &[],
        values: &[("age:age1short", false), ("rot13:x", false)],
    },
    Shared {
        flag: "--object-lock",
        env: "NIGHTDUMP_OBJECT_LOCK",
        cli_by_env: false,
        with: &[("--retain-for", "NIGHTDUMP_RETAIN_FOR", "35d")],
        without: &[],
        values: &[("fast", false)],
    },
    Shared {
        flag: "--retain-for",
        env: "NIGHTDUMP_RETAIN_FOR",
        cli_by_env: false,
        with: &[("--object-lock", "NIGHTDUMP_OBJECT_LOCK", "governance")],
        without: &[],
        values: &[("-1d", false), ("forever", false)],
    },
    Shared {
        flag: "--to",
        env: "NIGHTDUMP_TO",
        cli_by_env: false,
        with: &[],
        without: &[],
        values: &[("gs://bucket/x", false), ("s3://", false)],
    },
    Shared {
        flag: "NIGHTDUMP_ALLOW_INCONSISTENT",
        env: "NIGHTDUMP_ALLOW_INCONSISTENT",
        cli_by_env: true,
        with: &[],
        without: &[],
        values: &[("maybe", false), ("true", true)],
    },
    Shared {
        flag: "NIGHTDUMP_ALLOW_EMPTY",
        env: "NIGHTDUMP_ALLOW_EMPTY",
        cli_by_env: true,
        with: &[],
        without: &[],
        values: &[("yes please", false), ("1", true)],
    },
];

/// The Lambda's verdict: `None` when the environment is accepted, else its error type and
/// message.
fn lambda(env: &HashMap<String, String>) -> Option<(String, String)> {
    LambdaConfig::from_env(env)
        .err()
        .map(|e| (e.error_type().to_string(), e.to_string()))
}

#[tokio::test]
async fn the_cli_and_the_lambda_give_every_shared_setting_the_same_verdict() {
    let dest = tempfile::tempdir().unwrap();
    let to = dest.path().to_str().unwrap().to_string();
    // Nothing listens there: an accepted run fails connecting (exit 3), never with exit 2.
    let uri = format!("mongodb://127.0.0.1:{}/", closed_port());
    let mut failures = Vec::new();
    for setting in SHARED {
        for (value, accepted) in setting.values {
            let mut args: Vec<String> = ["backup", "--uri", &uri]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if setting.env != "NIGHTDUMP_ALLOW_INCONSISTENT" {
                args.push("--allow-inconsistent".to_string());
            }
            if setting.flag != "--to" {
                args.extend(["--to".to_string(), to.clone()]);
            }
            if setting.flag != "--connect-timeout" {
                args.extend(["--connect-timeout".to_string(), "1s".to_string()]);
            }
            let mut cli_env: Vec<(&str, String)> = Vec::new();
            let mut env = template_env();
            for var in setting.without {
                env.remove(*var);
            }
            for (flag, var, with) in setting.with {
                args.extend([flag.to_string(), with.to_string()]);
                env.insert(var.to_string(), with.to_string());
            }
            if setting.cli_by_env {
                cli_env.push((setting.env, value.to_string()));
            } else {
                // `--flag=value`, so a value starting with '-' is a value, not a flag.
                args.push(format!("{}={value}", setting.flag));
            }
            env.insert(setting.env.to_string(), value.to_string());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = spawn_nightdump(&args, &cli_env)
                .finish(Duration::from_secs(30))
                .await;
            let cli_refused = run.code == Some(2);
            let lambda = lambda(&env);
            let what = format!("{} / {} = {value:?}", setting.flag, setting.env);
            if cli_refused == *accepted || lambda.is_some() == *accepted {
                failures.push(format!(
                    "{what}: expected {}, CLI exit {:?} ({}), Lambda {lambda:?}",
                    if *accepted { "accepted" } else { "refused" },
                    run.code,
                    run.stderr.trim()
                ));
                continue;
            }
            if let Some((error_type, message)) = lambda {
                if error_type != "InvalidConfiguration" {
                    failures.push(format!("{what}: Lambda error type {error_type}"));
                }
                if !message.contains(setting.env) {
                    failures.push(format!(
                        "{what}: the Lambda's message does not name {}: {message}",
                        setting.env
                    ));
                }
                if !run.stderr.contains(setting.flag) {
                    failures.push(format!(
                        "{what}: the CLI's message does not name {}: {}",
                        setting.flag,
                        run.stderr.trim()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

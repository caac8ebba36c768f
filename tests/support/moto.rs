//! A moto server (local AWS emulator) on a free loopback port, for tests.
//!
//! The binary comes from `$MOTO_SERVER` or `<repo>/.venv/bin/moto_server`; create it with
//! `python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements-aws.txt`.
//!
//! moto runs under a tiny `sh` wrapper that kills it when its stdin closes. Dropping a
//! [`Moto`] closes that pipe; so does the end of the test process, which is what cleans up
//! the process-wide [`Moto::shared`] instance even when a test panics or aborts.

// Test helper: a panic with its message is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// How long moto may take to print its address (its imports are slow on a busy machine).
const STARTUP_LIMIT: Duration = Duration::from_secs(90);

pub struct Moto {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

fn moto_binary() -> PathBuf {
    match std::env::var_os("MOTO_SERVER") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.venv/bin/moto_server"
        )),
    }
}

impl Moto {
    /// Starts a private moto server; it is killed when the value is dropped.
    pub fn start() -> Moto {
        let bin = moto_binary();
        assert!(
            bin.exists(),
            "moto_server not found at {}: run `python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements-aws.txt` or set MOTO_SERVER",
            bin.display()
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p 0 </dev/null & pid=$!; cat >/dev/null; kill $pid; wait $pid"#)
            .arg(&bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn moto_server");
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().expect("moto stderr");
        let (tx, rx) = mpsc::channel::<Result<u16, String>>();
        // moto logs every request to stderr: keep draining it so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut early = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(sender) = &tx {
                    if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        let _ = sender.send(digits.parse().map_err(|e| format!("{e}: {line}")));
                        tx = None;
                    } else if early.len() < 50 {
                        early.push(line);
                    }
                }
            }
            if let Some(sender) = tx {
                let _ = sender.send(Err(format!(
                    "moto exited before listening: {}",
                    early.join(" | ")
                )));
            }
        });
        let port = match rx.recv_timeout(STARTUP_LIMIT) {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => panic!("moto_server did not start: {e}"),
            Err(e) => panic!("moto_server did not report its address: {e}"),
        };
        Moto { child, stdin, port }
    }

    /// One server for the whole test binary; each test isolates itself with its own bucket.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(Moto::start)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// AWS configuration for this server (or for `endpoint`, e.g. a proxy in front of it),
    /// with fixed test credentials and no dependence on the environment's AWS settings.
    pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(nightdump::store::https_client())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await
    }

    pub async fn sdk_config(&self) -> SdkConfig {
        Self::sdk_config_for(&self.endpoint()).await
    }

    /// An S3 client for test set-up and inspection behind the store's back.
    pub async fn s3_client(&self) -> aws_sdk_s3::Client {
        let sdk = self.sdk_config().await;
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Creates a KMS key; its id and ARN are in the metadata.
    pub async fn create_kms_key(&self) -> aws_sdk_kms::types::KeyMetadata {
        aws_sdk_kms::Client::new(&self.sdk_config().await)
            .create_key()
            .description("backups")
            .send()
            .await
            .expect("create key on moto")
            .key_metadata
            .expect("a created key has metadata")
    }

    /// Creates a Secrets Manager secret; its ARN.
    pub async fn create_secret(&self, name: &str, value: &str) -> String {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config().await)
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("create secret on moto")
            .arn
            .expect("a created secret has an ARN")
    }

    /// Creates a bucket with a name unique to this process and `label`.
    pub async fn create_bucket(&self, label: &str) -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let bucket = format!(
            "t{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            clean
        );
        let bucket = bucket.trim_end_matches('-').to_string();
        self.s3_client()
            .await
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket on moto");
        bucket
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // EOF on the wrapper's stdin makes it kill moto and exit.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

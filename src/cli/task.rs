//! `nightdump task`: one scheduled run in a container (the Fargate engine). Its settings are
//! the Lambda function's environment, so it takes no options of its own.

use std::io::Write;

use tokio_util::sync::CancellationToken;

/// Runs once and returns the run's exit code; SIGTERM or SIGINT stops the run cleanly.
pub async fn run() -> i32 {
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let stop = CancellationToken::new();
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let name = nightdump::signal::stop_requested().await;
            tracing::warn!(signal = name, "stopping the run: its upload is aborted");
            stop.cancel();
        })
    };
    let run = nightdump::task::run(env, stop).await;
    signals.abort();
    let mut out = std::io::stdout().lock();
    match &run.result {
        Ok(response) => {
            let summary = serde_json::to_string(response).unwrap_or_default();
            writeln!(out, "{summary}").ok();
        }
        Err(e) => {
            // The state machine's failure alert carries the container's exit code and this
            // line's type; the message is already scrubbed of the connection string.
            eprintln!("error: {} ({})", e, e.error_type());
        }
    }
    run.exit_code()
}

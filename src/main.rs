//! The `nightdump` binary: the CLI, or the AWS Lambda function when Lambda's Runtime API is
//! announced by `AWS_LAMBDA_RUNTIME_API`.

use std::process::ExitCode;

use clap::Parser;
use nightdump::cli::{Cli, LogFormat};

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}

/// Lambda's log settings: `AWS_LAMBDA_LOG_FORMAT=JSON` (the template's LoggingConfig) gives
/// one JSON object per line; `AWS_LAMBDA_LOG_LEVEL` or `NIGHTDUMP_LOG` the verbosity.
fn init_lambda_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("NIGHTDUMP_LOG"))
        .map(|l| l.to_ascii_lowercase())
        .unwrap_or_else(|_| "info".into());
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Lambda stamps each line itself; ANSI colours would show as escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_target(false).init();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

fn main() -> ExitCode {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        init_lambda_logging();
        let runtime = match runtime() {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        return match runtime.block_on(nightdump::lambda::serve()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: the Lambda runtime stopped: {e}");
                ExitCode::from(1)
            }
        };
    }
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format);
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(nightdump::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

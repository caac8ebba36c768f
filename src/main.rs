//! The `nightdump` binary: the CLI, or the AWS Lambda function when Lambda's Runtime API is
//! announced by `AWS_LAMBDA_RUNTIME_API`.

use std::process::ExitCode;

mod cli;

use clap::Parser;
use cli::{Cli, LogFormat};

fn init_logging(filter: tracing_subscriber::EnvFilter, format: LogFormat) {
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

/// clap's errors in the house style: one line on stderr, exit code 2 like every other bad
/// input. Help and version output (and help shown for a missing subcommand) pass through.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .collect();
    eprintln!(
        "{}{}; see --help for the options",
        parts.join("; "),
        from_environment(&e)
    );
    ExitCode::from(2)
}

/// When the refused value came from an environment variable, says which: the message names
/// only the option, which the user may never have typed.
fn from_environment(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return String::new();
    };
    let long = arg.split([' ', '=']).next().unwrap_or_default();
    // Given on the command line, the option wins over the variable.
    if std::env::args().any(|a| a == long || a.starts_with(&format!("{long}="))) {
        return String::new();
    }
    let command = <Cli as clap::CommandFactory>::command();
    let env = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .filter(|a| a.get_long().is_some_and(|l| format!("--{l}") == long))
        .find_map(|a| a.get_env().map(|v| v.to_os_string()))
        .filter(|name| std::env::var_os(name).is_some());
    match env {
        Some(name) => format!(" (the value comes from {})", name.to_string_lossy()),
        None => String::new(),
    }
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let Ok(filter) = tracing_subscriber::EnvFilter::try_new(&cli.log) else {
        eprintln!(
            "error: --log (or NIGHTDUMP_LOG) '{}' is not a log level or filter: use error, warn, info, debug or trace",
            cli.log
        );
        return ExitCode::from(2);
    };
    init_logging(filter, cli.log_format);
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if matches!(cli.command, cli::Command::Task) {
        let code = runtime.block_on(cli::task::run());
        exit_now(runtime, code);
    }
    let code = match runtime.block_on(cli::run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    exit_now(runtime, code)
}

/// Ends the process once the run is over and reported, without tearing the runtime down:
/// the MongoDB driver's background tasks can panic when the runtime stops under them,
/// which would print a second message after the one-line error. Nothing is left to clean
/// up by then (uploads are finished or aborted, temporary files removed, output flushed).
fn exit_now(runtime: tokio::runtime::Runtime, code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::mem::forget(runtime);
    std::process::exit(code)
}

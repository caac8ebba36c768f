//! `nightdump drill`'s options and output.

use std::io::Write;

use clap::Args;

use super::{
    human_bytes, open_store, parse_connect_timeout, parse_selector, whole_number, write_json,
    FromArgs, IdentityArgs,
};
use nightdump::drill::{DrillOptions, DrillReport};
use nightdump::error::{Error, Result};
use nightdump::secret::ConnectionString;

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// A backup id or `latest`.
    #[arg(default_value = "latest")]
    pub backup: String,
    #[command(flatten)]
    pub from: FromArgs,
    /// The scratch deployment to restore into: never production. It must hold none of the
    /// backup's databases; the drill drops every database it creates.
    #[arg(long, env = "NIGHTDUMP_DRILL_URI", hide_env_values = true)]
    pub uri: Option<String>,
    /// How long to wait for a reachable scratch server before giving up.
    #[arg(long, default_value = "30s", allow_hyphen_values = true)]
    pub connect_timeout: String,
    /// Insert commands in flight at once.
    #[arg(long, default_value_t = 4, allow_negative_numbers = true, value_parser = whole_number::<usize>)]
    pub parallel: usize,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: DrillArgs) -> Result<()> {
    let uri = args.uri.as_deref().ok_or_else(|| {
        Error::invalid(
            "no scratch deployment: pass --uri mongodb://SCRATCH/ or set NIGHTDUMP_DRILL_URI (a deployment the drill may write to, never production)",
        )
    })?;
    let scratch = ConnectionString::parse(uri).map_err(Error::Invalid)?;
    let mut options = DrillOptions::new(scratch);
    options.selector = parse_selector(&args.backup)?;
    options.server_selection_timeout = parse_connect_timeout(&args.connect_timeout)?;
    if args.parallel == 0 || args.parallel > nightdump::restore::MAX_PARALLEL {
        return Err(Error::invalid(format!(
            "--parallel must be between 1 and {}, got {}",
            nightdump::restore::MAX_PARALLEL,
            args.parallel
        )));
    }
    options.parallel = args.parallel;
    options.keys = args.identity.load()?;
    let store = open_store("--from", &args.from.from, &args.from.store).await?;
    let cancel = options.cancel.clone();
    let signals = tokio::spawn(async move {
        let name = nightdump::signal::stop_requested().await;
        tracing::warn!(
            signal = name,
            "stopping the drill; what it restored is dropped"
        );
        cancel.cancel();
    });
    let result = nightdump::drill::run(&store, &options).await;
    signals.abort();
    let report = match result {
        Ok(report) => report,
        Err(_) if options.cancel.is_cancelled() => {
            return Err(Error::Interrupted(
                "the drill was stopped; what it had restored was dropped".into(),
            ))
        }
        Err(e) => return Err(e),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        write_json(&mut out, &report);
    } else {
        print(&mut out, &report);
    }
    drop(out);
    match report.error() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn print(out: &mut impl Write, r: &DrillReport) {
    let yes_no = |m: Option<bool>| match m {
        Some(true) => "match",
        Some(false) => "DIFFER",
        None => "-",
    };
    writeln!(
        out,
        "{:<40} {:<10} {:>9} {:>7} {:>7} {:>7}",
        "NAMESPACE", "TYPE", "DOCUMENTS", "CONTENT", "INDEXES", "OPTIONS"
    )
    .ok();
    for n in &r.namespaces {
        writeln!(
            out,
            "{:<40} {:<10} {:>9} {:>7} {:>7} {:>7}{}",
            n.namespace,
            n.kind.to_string(),
            n.documents_found,
            yes_no(n.content_matches),
            yes_no(n.indexes_match),
            yes_no(n.options_match),
            n.mismatch
                .as_ref()
                .map(|m| format!("  {m}"))
                .unwrap_or_default()
        )
        .ok();
    }
    writeln!(
        out,
        "drill {} of backup {}: {}; the restore took {:.1} s ({} documents, {} stored), the check {:.1} s; result stored at {}",
        r.drill_id,
        r.backup_id,
        if r.passed { "passed" } else { "FAILED" },
        r.restore_seconds,
        r.documents,
        human_bytes(r.archive_size),
        r.check_seconds,
        r.key()
    )
    .ok();
    if let Some(e) = &r.cleanup_error {
        writeln!(
            out,
            "warning: dropping the restored databases ({}) failed: {e}",
            r.dropped.join(", ")
        )
        .ok();
    }
}

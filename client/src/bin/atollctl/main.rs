//! atollctl: the command-line client of Atoll.
//!
//! `main.rs` parses the command line (clap) and maps errors to exit codes;
//! `cmd/kv.rs` runs the key-value commands, `cmd/txn.rs` transactions,
//! `cmd/admin.rs` the operator commands, `cmd/shard.rs` the commands on one
//! shard (transfer-leader, split), `cmd/node.rs` those on one node (add, drain,
//! up, remove), `cmd/cluster.rs` the placement driver's view (`cluster status`,
//! `shards`); `output.rs` renders results as text, tables or JSON
//! (`output/cluster.rs` that view).

mod cmd;
mod output;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cmd::{Command, Context, Usage};
use crate::output::Printer;

const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";

const EXIT_STATUS: &str = "\
Exit status:
  0  success; also a `txn` whose compares did not hold (it ran its --else ops)
  1  the operation failed; also `get` of a missing key (\"key not found\" on
     stderr, nothing on stdout) and a `cas` whose comparison did not hold
  2  usage error or invalid argument (empty or oversized key, ...)";

/// Command-line client of the Atoll key-value store.
///
/// Keys and values are taken as UTF-8 strings; values are printed as UTF-8
/// (invalid bytes replaced) or, with --hex, as hex.
#[derive(Debug, Parser)]
#[command(name = "atollctl", version, after_help = EXIT_STATUS)]
struct Cli {
    /// Node endpoints (host:port), comma separated.
    #[arg(long, global = true, env = "ATOLL_ENDPOINTS", value_delimiter = ',', default_value = DEFAULT_ENDPOINTS)]
    endpoints: Vec<String>,

    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,

    /// Print keys and values as hex instead of UTF-8; `shard split --at`
    /// takes its key as hex too.
    #[arg(long, global = true)]
    hex: bool,

    /// Time one operation may take, retries included (e.g. 500ms, 10s, 1m;
    /// a bare number is seconds).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,

    /// Log routing and retries to stderr (or set RUST_LOG).
    #[arg(long, short, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: Command,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let ctx = Context {
        endpoints: cli.endpoints,
        timeout: cli.timeout,
        out: Printer {
            json: cli.json,
            hex: cli.hex,
        },
    };
    match cmd::run(cli.command, &ctx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// 2 for mistakes of the caller, 1 for everything else.
fn exit_code(err: &anyhow::Error) -> u8 {
    let caller = err.chain().any(|cause| {
        cause.is::<Usage>()
            || cause
                .downcast_ref::<atoll_client::Error>()
                .is_some_and(atoll_client::Error::is_invalid_argument)
    });
    if caller {
        2
    } else {
        1
    }
}

fn init_tracing(verbose: bool) {
    let default = if verbose {
        "atoll_client=debug"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Parses `500ms`, `10s`, `2m` or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 500ms, 10s or 1m)"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("{text:?}: the timeout must be positive"));
    }
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn invalid_arguments_exit_with_two() {
        let err = anyhow::Error::new(atoll_client::Error::InvalidArgument(
            "the key is empty".into(),
        ));
        assert_eq!(exit_code(&err), 2);
        let err = anyhow::Error::new(atoll_client::Error::Unavailable("no leader".into()));
        assert_eq!(exit_code(&err), 1);
    }
}

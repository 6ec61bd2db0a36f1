//! The `replay-guard` binary: parses the command line, sets up logging and
//! dispatches to a subcommand in [`cli`] (the tools live in the binary, not
//! in the library, which exposes only the proxy). Exit codes: 0 ok, 1 bad
//! config or usage, 2 runtime failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use replay_guard::config::Config;
use replay_guard::log_output::{FlushGuard, LogOutput};
use tracing_subscriber::EnvFilter;

mod cli;

/// mimalloc instead of glibc malloc: the request path allocates small,
/// short-lived buffers (headers, URIs, store keys) on every tokio worker
/// thread, and glibc's malloc/free took ~15% of the proxy's CPU in the
/// profile recorded in BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "replay-guard",
    version,
    about = "Reverse-proxy sidecar that stops replay attacks"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the proxy.
    Run {
        /// Configuration file.
        #[arg(long, env = "REPLAY_GUARD_CONFIG", default_value = "replay-guard.toml")]
        config: PathBuf,
    },
    /// Validate a configuration and print the compiled route table.
    Check {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Create the DynamoDB table with TTL enabled (safe to run twice); reads
    /// only the config's [store] table.
    InitTable {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the headers a client must send for one signed request.
    Sign(cli::sign::SignArgs),
    /// Self-contained walkthrough on loopback: built-in upstream, proxy on
    /// the memory store, one request per outcome.
    Demo,
    /// Exit 0 when the admin listener's /healthz answers 200 (for container health checks).
    Healthcheck(cli::healthcheck::HealthcheckArgs),
    /// Load generator for fresh, signed, unique traffic.
    Loadgen(cli::loadgen::LoadgenArgs),
    /// Black-box check of a live deployment: does it refuse replays, stale,
    /// forged and bypass spellings? Exit 0 all refused, 1 something got
    /// through, 2 unreachable, undecided or bad usage.
    Probe(cli::probe::ProbeArgs),
}

/// Logs go to stderr through [`LogOutput`]: a closed or stalled stderr
/// drops (and counts) lines, never blocks or fails a request or a signal.
/// The guard flushes what is queued when `main` returns.
fn init_logging(format: LogFormat, default_level: &str) -> Option<FlushGuard> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let (writer, guard) = LogOutput::stderr().ok()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_wanted(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Some(guard)
}

/// ANSI colour only on a terminal, and never when `NO_COLOR` is set to a
/// non-empty value (<https://no-color.org>): `docker logs`, files and log
/// shippers get plain text.
fn colour_wanted(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// `eprintln!` that never panics when stderr is gone.
fn say(text: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|errors| {
        say(errors);
        ExitCode::from(1)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            say(format_args!("cannot start the async runtime: {e}"));
            ExitCode::from(2)
        })
}

/// The subcommand named on the command line (past the global
/// `--log-format` flag), for exit codes of arguments clap refused.
fn subcommand() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--log-format" {
            args.next();
        } else if !arg.starts_with('-') {
            return Some(arg);
        }
    }
    None
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // probe's CI contract keeps 1 for "got through": bad usage is 2.
            let code = match (e.use_stderr(), subcommand() == Some("probe".into())) {
                (false, _) => 0,
                (true, true) => 2,
                (true, false) => 1,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // The demo and loadgen print for humans on stdout: only warnings on
    // stderr unless RUST_LOG asks for more.
    let default_level = match cli.command {
        Command::Demo | Command::Loadgen(_) | Command::Probe(_) => "warn",
        _ => "info",
    };
    let _flush = init_logging(cli.log_format, default_level);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn run(command: Command) -> Result<(), ExitCode> {
    match command {
        Command::Run { config } => {
            let config = load(&config)?;
            runtime()?.block_on(cli::run::serve(config))
        }
        Command::Check { config } => {
            let config = load(&config)?;
            for warning in cli::check::warnings(&config) {
                say(warning);
            }
            print!("{}", cli::check::route_table(&config));
            Ok(())
        }
        Command::InitTable { config: path } => {
            // Only [store] matters: no [server], keys or routes needed.
            let store = replay_guard::config::StoreConfig::load(&path).map_err(|errors| {
                say(errors);
                ExitCode::from(1)
            })?;
            runtime()?.block_on(cli::init_table::run(&store, &path.display().to_string()))
        }
        Command::Sign(args) => cli::sign::run(&args),
        Command::Healthcheck(args) => runtime()?.block_on(cli::healthcheck::run(&args)),
        Command::Demo => runtime()?.block_on(cli::demo::run()),
        Command::Loadgen(args) => runtime()?.block_on(cli::loadgen::run(args)),
        Command::Probe(args) => runtime()?.block_on(cli::probe::run(args)),
    }
}

#[cfg(test)]
mod tests {
    use super::colour_wanted;

    #[test]
    fn colour_only_on_a_terminal_and_never_under_no_color() {
        assert!(colour_wanted(true, None));
        assert!(
            colour_wanted(true, Some("".into())),
            "an empty NO_COLOR is unset"
        );
        assert!(!colour_wanted(true, Some("1".into())));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(false, Some("1".into())));
    }
}

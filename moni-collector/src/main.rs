//! `moni-collector serve | compare | check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use moni_collector::compare::{self, CompareQuery};
use moni_collector::config::CollectorConfig;

#[derive(Parser)]
#[command(
    name = "moni-collector",
    version,
    about = "moni's central collector: ingest of reduced Parquet from many nodes, shadow vs production comparison"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing buys nothing
enum Cmd {
    /// Serve ingest, /metrics, /healthz and /v1/compare until SIGTERM.
    Serve {
        /// Collector configuration (TOML); see samples/config/collector.example.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a collector configuration file.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Compare a shadow VNet with production from collected RTP windows.
    Compare {
        /// The collector's data directory (or a node's output directory).
        #[arg(long)]
        data: PathBuf,
        /// The production VNet (the `vnet` name the nodes map it to).
        #[arg(long)]
        production: String,
        /// The shadow VNet that may replace production.
        #[arg(long)]
        shadow: String,
        /// Only windows from this time (Unix seconds or YYYY-MM-DDTHH:MM:SSZ).
        #[arg(long)]
        from: Option<String>,
        /// Only windows before this time.
        #[arg(long)]
        to: Option<String>,
        /// Only this node's windows.
        #[arg(long)]
        node: Option<String>,
        /// table, json or csv.
        #[arg(long, default_value = "table")]
        format: String,
        /// Windows whose MOS differ by at most this are `equal`.
        #[arg(long, default_value_t = 0.1)]
        tolerance: f64,
        /// Also draw the receiver's (monitor) VNet in the figure.
        #[arg(long)]
        monitor: Option<String>,
        /// Also write the figure (loss and MOS-CQ per window, shaded by verdict) as SVG.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Also write the operator's report (figure, summary, per-window table) as HTML.
        #[arg(long)]
        report: Option<PathBuf>,
        /// A labelled moment in the figure, TIME=LABEL (Unix seconds or YYYY-MM-DDTHH:MM:SSZ; repeatable).
        #[arg(long = "mark", value_name = "TIME=LABEL")]
        marks: Vec<moni_collector::figure::Mark>,
        /// Exit 1 when the answer is `ready: no` (after printing and
        /// writing everything), for a script that gates the switch to
        /// the shadow on it.
        #[arg(long)]
        require_ready: bool,
    },
}

/// Logs to stderr: `MONI_LOG` filters (default `info` for `serve`, so its
/// start line shows, `warn` otherwise), colours only on a terminal, one
/// JSON object per line with `MONI_LOG_FORMAT=json`.
fn init_logging(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MONI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if std::env::var("MONI_LOG_FORMAT").is_ok_and(|f| f == "json") {
        fmt.json().try_init()
    } else {
        fmt.try_init()
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(if matches!(cli.cmd, Cmd::Serve { .. }) {
        "info"
    } else {
        "warn"
    });
    match cli.cmd {
        Cmd::CheckConfig { file } => match CollectorConfig::load(&file).and_then(|c| c.resolve()) {
            Ok(s) => {
                println!(
                    "{}: ok ({}, listen {}, data {})",
                    file.display(),
                    moni_collector::config::count(s.tokens.len(), "node"),
                    s.listen,
                    s.data_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Serve { config } => {
            // A panic in a request's task (a decoder on a corrupt upload)
            // is answered as a refusal; the log gets one line, not a
            // backtrace per upload.
            let default_hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
                    // Asked for: the backtrace, as Rust prints it.
                    return default_hook(info);
                }
                let at = info
                    .location()
                    .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
                let msg = moni_collector::store::panic_message(info.payload());
                tracing::error!("A task panicked{at}: {msg}");
            }));
            let settings = match CollectorConfig::load(&config).and_then(|c| c.resolve()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match rt.block_on(moni_collector::server::serve(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Compare {
            data,
            production,
            shadow,
            from,
            to,
            node,
            format,
            tolerance,
            monitor,
            plot,
            report,
            marks,
            require_ready,
        } => {
            let q = CompareQuery {
                production,
                shadow,
                from,
                to,
                node,
                format: Some(format.clone()),
                tolerance: Some(tolerance),
                monitor,
            };
            let r = match compare::report(&data, &q) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let text = match format.as_str() {
                "table" => r.table(),
                "csv" => r.csv(),
                "json" => serde_json::to_string_pretty(&r).unwrap_or_default(),
                other => {
                    eprintln!("error: --format {other:?}: use table, json or csv");
                    return ExitCode::from(2);
                }
            };
            print!("{text}");
            if let Some(p) = plot {
                if let Err(e) = std::fs::write(&p, moni_collector::figure::svg(&r, &marks)) {
                    eprintln!("error: --plot {}: {e}", p.display());
                    return ExitCode::from(3);
                }
            }
            if let Some(p) = report {
                if let Err(e) = std::fs::write(&p, moni_collector::figure::html(&r, &marks)) {
                    eprintln!("error: --report {}: {e}", p.display());
                    return ExitCode::from(3);
                }
            }
            if require_ready && !r.summary.ready {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
    }
}

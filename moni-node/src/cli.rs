//! Command line: raw arguments parsed by clap, then resolved with the config
//! file into the settings a command runs with. `main` turns errors into one
//! line on stderr and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::NodeConfig;
use crate::replay::{replay, ReplayOptions};

#[derive(Parser, Debug)]
#[command(
    name = "moni-node",
    version,
    about = "moni's probe: analyses mirrored traffic and writes reduced Parquet"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Replay pcap/pcapng files through the analyzers into Parquet datasets.
    Replay(ReplayArgs),
    /// Run the probe: capture the configured sources live, analyse, serve
    /// /metrics, write Parquet; SIGTERM/SIGINT drain and stop, SIGHUP reloads.
    Run(RunArgs),
    /// Validate a node configuration file without starting anything.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Node configuration (TOML) with at least one [[sources]] entry.
    #[arg(long)]
    pub config: PathBuf,
    /// Output directory (overrides output.dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Node configuration (TOML); command-line options override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output directory (default: output.dir of the config, or moni-out).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// VLAN to VNet map, e.g. 100=A:production,200=B:shadow (replaces vnets.map).
    #[arg(long)]
    pub vnet_map: Option<String>,
    /// BPF filter applied while reading (libpcap syntax).
    #[arg(long)]
    pub filter: Option<String>,
    /// Hard cap on live flows (overrides flows.max_flows).
    #[arg(long)]
    pub max_flows: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Capture files (pcap or pcapng), replayed in order as one input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs the command line; the exit code is 0 on success, 1 if any input
/// file failed (its decoded packets are still written), 2 on bad usage or
/// configuration, 3 if output could not be written.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.cmd {
        Command::CheckConfig { file } => {
            match NodeConfig::load(&file).and_then(|c| c.resolve(None).map(|r| (c, r))) {
                Ok((_, r)) => {
                    println!(
                        "{}: ok ({} VNets, {} sources, {} workers, flow cap {}, {} s bins, output {})",
                        file.display(),
                        r.vnets.len(),
                        r.sources.len(),
                        r.node.workers,
                        r.flows.max_flows,
                        r.bins.bin_secs,
                        r.output.dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Replay(args) => run_replay(args),
        Command::Run(args) => run_node(args),
    }
}

fn run_node(args: RunArgs) -> ExitCode {
    use crate::run::{run, RunError};
    match run(&args.config, args.out) {
        Ok(summary) => {
            match serde_json::to_string(&summary) {
                Ok(j) => println!("{j}"),
                Err(e) => eprintln!("error: cannot encode summary: {e}"),
            }
            if let Some(e) = &summary.writer.error {
                eprintln!("error: writing the Parquet output: {e}");
                return ExitCode::from(3);
            }
            if summary.sources.iter().any(|s| s.error.is_some()) {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e @ RunError::Config(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e @ RunError::Source(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(e @ RunError::Output(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(3)
        }
    }
}

fn run_replay(args: ReplayArgs) -> ExitCode {
    let resolved = match &args.config {
        Some(path) => NodeConfig::load(path),
        None => Ok(NodeConfig::default()),
    }
    .and_then(|mut c| {
        if let Some(n) = args.max_flows {
            c.flows.max_flows = n;
        }
        if let Some(out) = &args.out {
            c.output.dir = out.clone();
        }
        c.resolve(args.vnet_map.as_deref())
    });
    let config = match resolved {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = ReplayOptions {
        files: args.files,
        filter: args.filter,
        out_dir: config.output.dir.clone(),
        progress: !args.no_progress && !args.json,
    };
    let summary = match replay(&config, &opts).context("writing the Parquet output") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(3);
        }
    };
    for f in summary.failed_files() {
        eprintln!("error: {}", f.error.as_deref().unwrap_or(&f.path));
    }
    if args.json {
        match serde_json::to_string_pretty(&summary) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("error: cannot encode summary: {e}"),
        }
    } else {
        print!("{}", summary.human());
    }
    if summary.failed_files().next().is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MONI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

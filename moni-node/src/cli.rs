//! Command line: raw arguments parsed by clap, then resolved with the config
//! file into the settings a command runs with. `main` turns errors into one
//! line on stderr and an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::NodeConfig;
use crate::replay::{replay, ReplayOptions};
use crate::summary::plural;

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
    /// Validate a node configuration file without starting anything (every
    /// key, its default and meaning: samples/config/reference.toml).
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Load signature files and report every rule skipped (outside the
    /// supported Suricata subset) with its line and the reason.
    CheckRules(CheckRulesArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckRulesArgs {
    /// Node configuration whose [ids.vars] set the rule variables.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A rule variable, e.g. HOME_NET=[10.0.0.0/8] (repeatable; overrides the config).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Exit 1 if any rule was skipped.
    #[arg(long)]
    pub strict: bool,
    /// Rule files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
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
    /// VNet map, [KIND:]ID=NAME:ROLE entries, e.g. 100=A:production,200=B:shadow or
    /// vxlan:5001=A:production,vxlan:5002=B:shadow (KIND: vlan, vxlan, geneve, nvgre,
    /// gre, erspan, mpls, gtpu, iface; replaces vnets.map).
    #[arg(long)]
    pub vnet_map: Option<String>,
    /// BPF filter applied while reading (libpcap syntax).
    #[arg(long)]
    pub filter: Option<String>,
    /// Hard cap on live flows (overrides flows.max_flows).
    #[arg(long)]
    pub max_flows: Option<usize>,
    /// Analysis workers (threads); results do not depend on it. Default:
    /// the number of cores.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Signature file (Suricata subset), added to ids.rules (repeatable).
    #[arg(long = "rules", value_name = "FILE")]
    pub rules: Vec<PathBuf>,
    /// A rule variable, e.g. HOME_NET=[10.0.0.0/8] (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Add to an output directory that already holds files (a second
    /// file set beside the first).
    #[arg(long, conflicts_with = "overwrite")]
    pub append: bool,
    /// Remove moni's datasets and eve.json from the output directory
    /// first (other files in it are left alone).
    #[arg(long)]
    pub overwrite: bool,
    /// Capture files (pcap or pcapng), replayed as one input in time order
    /// (by first packet; a list with `-` keeps its order); `-` reads one
    /// from standard input (`tcpdump -w - | moni-node replay -`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Where `--overwrite` moves the previous output (`OUT/.moni-replaced-PID`)
/// before removing it.
const REPLACED_PREFIX: &str = ".moni-replaced-";

/// The removal of what `--overwrite` replaced, running beside the replay.
type Removal = std::thread::JoinHandle<Vec<String>>;

/// Refuses a non-empty output directory unless `append` or `overwrite`
/// says what to do with it: a replay into a used directory would silently
/// add a second file set, and every query would count both. `overwrite`
/// replaces only what a replay writes (the dataset directories and
/// `eve.json`), never the user's other files: they are renamed aside at
/// once and removed on a thread while the replay runs ([`Removal`], joined
/// before the replay returns). Removing them first delayed the start by
/// the file system's unlinks: as long as a day's output takes, and on this
/// project's VM (ext4 with `discard`) with the disk busy, 4 ms for each
/// file and folder, 30 ms of a 50 ms replay (under 2 ms on an idle disk).
fn prepare_out_dir(
    dir: &std::path::Path,
    append: bool,
    overwrite: bool,
) -> Result<Option<Removal>, String> {
    // What a replay that failed before writing anything leaves (its empty
    // dataset folders and an empty eve.json) does not count: the
    // corrected retry must not need --overwrite. Nor does what an earlier
    // --overwrite had not finished removing when it was stopped.
    let leftover = |e: &std::fs::DirEntry| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let path = e.path();
        if analyzers::schema::DATASETS.contains(&name.as_ref()) {
            std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none())
        } else {
            (name == crate::export::EVE_FILE
                && std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == 0))
                || name.starts_with(REPLACED_PREFIX)
        }
    };
    let entries: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .filter(|e| !leftover(e))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("output directory {}: {e}", dir.display())),
    };
    if overwrite {
        return replace_output(dir).map(Some);
    }
    if entries.is_empty() || append {
        return Ok(None);
    }
    let mut shown = entries;
    shown.sort();
    let more = shown.len().saturating_sub(3);
    shown.truncate(3);
    let more = if more > 0 {
        format!(", and {more} more")
    } else {
        String::new()
    };
    Err(format!(
        "output directory {} is not empty ({}{more}): pass --append to add to it or --overwrite to replace moni's files in it",
        dir.display(),
        shown.join(", ")
    ))
}

/// Moves moni's datasets and `eve.json` out of `dir` into a fresh
/// `.moni-replaced-PID` folder and removes it, and any such folder an
/// earlier run left, on a thread. What cannot be moved (a rename refused)
/// is removed here, as before.
fn replace_output(dir: &std::path::Path) -> Result<Removal, String> {
    let mut doomed: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(REPLACED_PREFIX))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    let aside = (0..)
        .map(|n| dir.join(format!("{REPLACED_PREFIX}{}-{n}", std::process::id())))
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or_else(|| dir.join(REPLACED_PREFIX));
    let mut moved = false;
    let names = analyzers::schema::DATASETS
        .iter()
        .copied()
        .chain([crate::export::EVE_FILE]);
    for name in names {
        let from = dir.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        };
        if !moved && std::fs::create_dir(&aside).is_ok() {
            doomed.push(aside.clone());
            moved = true;
        }
        if moved && std::fs::rename(&from, aside.join(name)).is_ok() {
            continue;
        }
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(&from)
        } else {
            std::fs::remove_file(&from)
        };
        removed.map_err(|e| format!("removing {}: {e}", from.display()))?;
    }
    Ok(std::thread::spawn(move || {
        doomed
            .iter()
            .filter_map(|p| match std::fs::remove_dir_all(p) {
                Ok(()) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some(format!("removing {}: {e}", p.display())),
            })
            .collect()
    }))
}

/// Runs the command line; the exit code is 0 on success, 1 if any input
/// file failed (its decoded packets are still written), 2 on bad usage or
/// configuration, 3 if output could not be written.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    tracing::debug!(
        glibc_tunables = %std::env::var_os("GLIBC_TUNABLES")
            .unwrap_or_default()
            .to_string_lossy(),
        "Allocator settings (huge pages: docs/cli.md)."
    );
    match cli.cmd {
        Command::CheckConfig { file } => {
            match NodeConfig::load(&file).and_then(|c| c.resolve(None).map(|r| (c, r))) {
                Ok((_, r)) => {
                    // What `run` would refuse only once started: a filter
                    // libpcap cannot compile.
                    for s in &r.sources {
                        if let Some(e) = s.filter.as_deref().and_then(bpf_error) {
                            eprintln!(
                                "error: sources {:?}: bad BPF filter {:?}: {e}",
                                s.name,
                                s.filter.as_deref().unwrap_or("")
                            );
                            return ExitCode::from(2);
                        }
                    }
                    if r.sources.is_empty() {
                        eprintln!(
                            "warning: no [[sources]]: `moni-node run` needs at least one \
                             (this file serves `replay --config` only)"
                        );
                    }
                    crate::config::ids::warn_unknown_vars(&r.rules, &r.ids);
                    println!(
                        "{}: ok ({}, {}, {}, flow cap {}, {} s bins, {} ({} skipped: see check-rules), output {})",
                        file.display(),
                        plural(r.vnets.len() as u64, "VNet"),
                        plural(r.sources.len() as u64, "source"),
                        plural(r.node.workers as u64, "worker"),
                        r.flows.max_flows,
                        r.bins.bin_secs,
                        plural(r.rules.rules.len() as u64, "signature rule"),
                        r.rules.skipped.len(),
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
        Command::CheckRules(args) => check_rules(args),
    }
}

/// Why libpcap cannot compile `filter` (for Ethernet), if it cannot.
///
/// Compiled without the optimiser first: that finds every error of syntax
/// and meaning at once, and the optimiser's time grows much faster than
/// the program (a filter of 1,000 `host` terms: 2.6 s against 52 s), which
/// the capture's own compilation spends anyway. The optimiser runs here
/// too for programs of up to `OPTIMISE_CHECK_MAX` instructions, for the
/// one error only it finds ("expression rejects all packets").
fn bpf_error(filter: &str) -> Option<String> {
    /// Instructions of the unoptimised program up to which the optimiser
    /// also runs here (`host A or host B or ...` is 30 per term; 250
    /// terms, 7,438 instructions, optimise in 0.8 s).
    const OPTIMISE_CHECK_MAX: usize = 8_000;
    let check = || -> Result<(), pcap::Error> {
        let c = pcap::Capture::dead(pcap::Linktype::ETHERNET)?;
        let plain = c.compile(filter, false)?;
        if plain.get_instructions().len() <= OPTIMISE_CHECK_MAX {
            c.compile(filter, true)?;
        }
        Ok(())
    };
    check().err().map(|e| e.to_string())
}

/// Applies `NAME=VALUE` rule variables to a config.
fn set_vars(c: &mut NodeConfig, vars: &[String]) -> Result<(), String> {
    for v in vars {
        let (k, val) = v
            .split_once('=')
            .ok_or_else(|| format!("--var {v:?}: want NAME=VALUE"))?;
        c.ids
            .vars
            .insert(k.trim().to_string(), val.trim().to_string());
    }
    Ok(())
}

/// The first file of `files` that names the same file as one before it
/// (by its canonical path: `a.pcap` and `./a.pcap` are one; `-` is stdin,
/// which cannot be read twice either).
fn given_twice(files: &[PathBuf]) -> Option<&PathBuf> {
    let mut seen = std::collections::HashSet::new();
    files.iter().find(|f| {
        let key = std::fs::canonicalize(f).unwrap_or_else(|_| f.to_path_buf());
        !seen.insert(key)
    })
}

fn check_rules(args: CheckRulesArgs) -> ExitCode {
    use analyzers::ids::rules::{RuleSet, Vars};
    let mut config = match &args.config {
        Some(p) => match NodeConfig::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => NodeConfig::default(),
    };
    if let Err(e) = set_vars(&mut config, &args.vars) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let vars = Vars::with(&config.ids.vars);
    if let Err(e) = vars.check() {
        eprintln!("error: rule variable {e}");
        return ExitCode::from(2);
    }
    let mut set = RuleSet::default();
    for f in &args.files {
        match std::fs::read(f) {
            Ok(bytes) => set.add_bytes(&f.display().to_string(), &bytes, &vars),
            Err(e) => {
                eprintln!("error: cannot read rules {}: {e}", f.display());
                return ExitCode::from(1);
            }
        }
    }
    crate::config::ids::warn_unknown_vars(&set, &config.ids);
    for (file, s) in &set.skipped {
        let sid = s
            .sid
            .map_or_else(|| "sid ?".to_string(), |n| format!("sid {n}"));
        println!("{file}:{}: {sid} skipped: {}", s.line, s.reason);
    }
    // What keeps most rules out, first.
    let mut by_keyword: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, s) in &set.skipped {
        *by_keyword.entry(s.keyword.as_str()).or_default() += 1;
    }
    let mut by_keyword: Vec<(&str, usize)> = by_keyword.into_iter().collect();
    by_keyword.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if !by_keyword.is_empty() {
        println!("skipped by keyword:");
        for (k, n) in &by_keyword {
            println!("  {k}: {n}");
        }
    }
    let total = set.rules.len() + set.skipped.len();
    println!(
        "{} rules loaded, {} skipped, from {} files ({:.1}% loaded)",
        set.rules.len(),
        set.skipped.len(),
        args.files.len(),
        if total == 0 {
            100.0
        } else {
            100.0 * set.rules.len() as f64 / total as f64
        }
    );
    if set.rules.is_empty() && !set.skipped.is_empty() {
        // A file of rules none of which loads (the wrong file, or a rule
        // set outside the subset) is not a rule set a node can use.
        eprintln!(
            "error: no rule loaded ({} skipped: the reasons are above)",
            set.skipped.len()
        );
        return ExitCode::from(1);
    }
    if set.rules.is_empty() {
        // Nor is a file without any rule line (empty, or comments only).
        eprintln!("error: no rule loaded: the files hold no rule line");
        return ExitCode::from(1);
    }
    if args.strict && !set.skipped.is_empty() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn run_node(args: RunArgs) -> ExitCode {
    use crate::run::{run, RunError};
    match run(&args.config, args.out) {
        Ok(summary) => {
            match serde_json::to_string(&summary) {
                Ok(j) => println!("{j}"),
                Err(e) => eprintln!("error: cannot encode summary: {e}"),
            }
            if let Some(e) = &summary.output_error {
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
        let cwd = std::env::current_dir().unwrap_or_default();
        for r in &args.rules {
            c.ids.rules.push(cwd.join(r).display().to_string());
        }
        set_vars(&mut c, &args.vars).map_err(|message| crate::config::ConfigError::Invalid {
            key: "--var",
            message,
        })?;
        c.resolve(args.vnet_map.as_deref())
    });
    let config = match resolved {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::config::ids::warn_unknown_vars(&config.rules, &config.ids);
    if let Some(filter) = &args.filter {
        // A filter libpcap cannot compile is bad usage: refuse it before
        // opening anything (not one failed file and an empty summary).
        if let Some(e) = bpf_error(filter) {
            eprintln!("error: --filter: bad BPF filter {filter:?}: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some(twice) = given_twice(&args.files) {
        // One input read twice counts every packet twice, and its flows and
        // calls as if they had happened twice.
        eprintln!("error: {} is given twice", twice.display());
        return ExitCode::from(2);
    }
    let removal = match prepare_out_dir(&config.output.dir, args.append, args.overwrite) {
        Ok(r) => r,
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
        workers: args
            .workers
            .map_or_else(crate::replay::default_workers, usize::from),
    };
    let summary = replay(&config, &opts).context("writing the Parquet output");
    // The replaced output is gone before the replay reports: nothing of
    // it is left beside the new files. Failing to remove it loses no data.
    if let Some(r) = removal {
        for e in r.join().unwrap_or_default() {
            eprintln!("warning: the replaced output: {e}");
        }
    }
    let summary = match summary {
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
    if let Some(e) = &summary.output_error {
        eprintln!("error: writing the Parquet output: {e}");
        return ExitCode::from(3);
    }
    if summary.failed_files().next().is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Logs to stderr: `MONI_LOG` filters (default `warn`), colours only on a
/// terminal, one JSON object per line with `MONI_LOG_FORMAT=json`.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MONI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
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

//! `moni-node run`: the long-running probe.
//!
//! The same pipeline as `replay` (see `ARCHITECTURE.md`), one thread per
//! box:
//!
//! ```text
//! source 1 ─ capture loop ─┐  per-worker bounded queues   ┌─ worker 1 ─┐
//! source 2 ─ capture loop ─┼─ (symmetric address hash) ───┼─ worker N ─┼─ sinks ─ Parquet, eve.json
//!   (IDS detectors)        └─ full queue: drop + count     └────────────┘
//! HTTP thread: /metrics, /healthz          main thread: signals, reload
//! ```
//!
//! Each capture loop ([`crate::capture::driver`]) runs with the `drop`
//! overload policy; a file source is paced as recorded (`speed`).
//!
//! SIGINT/SIGTERM stop the capture threads; each sends what it holds, the
//! workers drain their queues and flush every open record, the writer
//! completes its files, and the process exits 0. SIGHUP reloads the VNet
//! map, the flow timeouts, the IDS thresholds and the rules from the
//! config file without dropping state: the file is read and the rules
//! compiled on a thread of their own, the workers swap in the result and
//! the capture loops their detectors' new thresholds and the new map; a
//! reload that takes longer than `ids.reload_timeout_secs` is abandoned
//! (the running configuration stays) and a stop never waits for one.
//! When every source is a file and all have ended, the node stops the same
//! way.

pub mod ship;
pub mod ship_tls;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::capture::batch::free_list;
use crate::capture::driver::{
    Dispatcher, DriverIo, DriverSettings, Overload, Pacing, SourceControl,
};
use crate::capture::file::FileSource;
use crate::capture::live::LiveSource;
use crate::config::{NodeConfig, Resolved, SourceKind, SourceSettings};
use crate::export::Datasets;
use crate::metrics::Metrics;
use crate::sink::{ParquetSink, Records, Sinks};
use crate::summary::{SourceSummary, Summary};
use crate::worker::Control;

/// Why `run` could not start (exit 2) or failed (exit 1/3).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Source(String),
    #[error("{0:#}")]
    Output(anyhow::Error),
}

fn load(path: &Path) -> Result<(NodeConfig, Resolved), RunError> {
    let c = NodeConfig::load(path).map_err(|e| RunError::Config(e.to_string()))?;
    let r = c
        .resolve(None)
        .map_err(|e| RunError::Config(e.to_string()))?;
    crate::config::ids::warn_unknown_vars(&r.rules, &r.ids);
    Ok((c, r))
}

/// Runs the probe until a signal (or the end of every file source).
/// Returns the exit summary: the same [`Summary`] as `replay --json`, with
/// `node`, `sources`, `reloads` and `ship` set.
pub fn run(config_path: &Path, out_override: Option<PathBuf>) -> Result<Summary, RunError> {
    let started = std::time::Instant::now();
    let (file, mut config) = load(config_path)?;
    // As the file has them (before `--out`), to compare a reload's with.
    let restart_settings = restart_only(&file, &config);
    drop(file);
    if let Some(o) = out_override {
        if o.as_os_str().is_empty() {
            return Err(RunError::Config("--out: must not be empty".into()));
        }
        config.output.dir = o;
    }
    if config.sources.is_empty() {
        return Err(RunError::Config(
            "config key sources: at least one [[sources]] entry is needed".into(),
        ));
    }
    let node = config.node.clone();
    // Before any thread starts: every thread inherits niceness and cgroup.
    let isolation = crate::isolation::apply(&node);
    let metrics = Arc::new(Metrics::new(&node.name).map_err(|e| RunError::Config(e.to_string()))?);
    let stop = Arc::new(AtomicBool::new(false));
    let health = Arc::new(crate::health::Health::default());
    let listener = match node.metrics_listen {
        Some(a) => Some(crate::http::bind(a).map_err(|e| RunError::Config(format!("{e:#}")))?),
        None => None,
    };
    if config.ship.is_some() {
        let n = ship::discard_incomplete(&config.output.dir);
        if n > 0 {
            tracing::warn!(
                files = n,
                "Discarded temporary files of interrupted writes."
            );
            metrics
                .spool_discarded_temp_files
                .with_label_values(&[] as &[&str])
                .inc_by(n as u64);
        }
    }
    let mut out = Datasets::create(&config.output.dir, &config.output, config.node.workers)
        .context("creating the output datasets")
        .map_err(RunError::Output)?;
    // EVE's `host` and `in_iface`: the node and its capture source(s).
    out.eve_host = config.node.name.clone();
    out.eve_iface = config
        .sources
        .iter()
        .map(|s| match &s.kind {
            crate::config::SourceKind::Interface(i) => i.clone(),
            crate::config::SourceKind::File { .. } => s.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(",");

    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .map_err(|e| RunError::Config(format!("cannot install signal handler: {e}")))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .map_err(|e| RunError::Config(format!("cannot install signal handler: {e}")))?;

    let workers = node.workers;
    let pool = workers * (node.queue_batches + 2) * config.sources.len().max(1);
    // The long rotation, shared by the capture loops (see `adapt_rotation`).
    let (free_tx, free_rx) = free_list(pool.min(4096), crate::capture::rotation::LONG);
    let (writer_tx, writer_rx) = crossbeam_channel::bounded::<Records>(256);
    let capture_drops = Arc::new(std::sync::atomic::AtomicU64::new(0));

    // Every series exists before the HTTP server answers: the first
    // scrape shows them all (at 0), not whatever the threads touched so far.
    metrics.set_rules(&config.rules);
    let source_names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    metrics.init_zero_series(&config.vnets, config.ids.enabled, &source_names, workers);

    let mut reloads = 0u64;
    // The generation of the rules in force (`Signatures::set_generation`):
    // 0 for those the node started with, one more for each reload that
    // changes them.
    let mut rule_generation = 0u32;
    // Set when the writer's sinks exist; a reload stores its tolerance here.
    let mut compare_tolerance = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (sinks, sources, totals, ship_summary) = std::thread::scope(|scope| {
        let http = listener.map(|l| {
            let (m, s, h) = (Arc::clone(&metrics), Arc::clone(&stop), Arc::clone(&health));
            crate::sys::spawn_named(scope, "moni-http".into(), move || {
                crate::http::serve(l, m, s, h)
            })
        });
        let writers_done = Arc::new(AtomicBool::new(false));
        let spool_full = Arc::new(AtomicBool::new(false));
        let alert_gate;
        let writer = {
            let mut sinks = Sinks::new(
                workers,
                config.compare_tolerance,
                config.ids.max_tracked,
                ParquetSink::new(
                    out,
                    Arc::clone(&metrics),
                    Some(Arc::clone(&spool_full)),
                    Some(Arc::clone(&health)),
                ),
                Arc::clone(&metrics),
            );
            let tick = node.tick;
            compare_tolerance = sinks.tolerance();
            alert_gate = (workers > 1).then(|| sinks.gate.full_windows());
            crate::sys::spawn_named(scope, "moni-writer".into(), move || {
                crate::sink::consume(&writer_rx, &mut sinks, tick);
                sinks
            })
        };
        let shipper = config.ship.clone().map(|settings| {
            let ctx = ship::ShipCtx {
                settings,
                out_dir: config.output.dir.clone(),
                writers_done: Arc::clone(&writers_done),
                spool_full: Arc::clone(&spool_full),
                metrics: Arc::clone(&metrics),
            };
            crate::sys::spawn_named(scope, "moni-shipper".into(), move || ship::run_shipper(ctx))
        });
        let pool_workers = crate::worker::spawn(
            scope,
            crate::worker::WorkerSetup {
                config: &config,
                workers,
                queue_batches: node.queue_batches,
                free: free_tx.clone(),
                records: writer_tx.clone(),
                metrics: Arc::clone(&metrics),
                capture_drops: Arc::clone(&capture_drops),
                tick: node.tick,
                wall_clock: true,
                cpus: node.worker_cpus.clone(),
                nice_below_capture: 0,
                gate: alert_gate,
            },
        );
        let crate::worker::Workers {
            inputs: work_tx,
            control: control_tx,
            handles: worker_handles,
        } = pool_workers;
        let vnets = Arc::new(config.vnets.clone());
        let mut captures = Vec::new();
        // Each capture loop's reloads (its IDS detectors and VNet map).
        let mut source_controls = Vec::new();
        for (i, s) in config.sources.iter().enumerate() {
            let (source_control, control) = crossbeam_channel::unbounded();
            source_controls.push(source_control);
            let settings = DriverSettings {
                name: s.name.clone(),
                pacing: match &s.kind {
                    SourceKind::Interface(_) => Pacing::AsFastAsPossible,
                    SourceKind::File { speed, .. } => Pacing::Recorded { speed: *speed },
                },
                overload: Overload::Drop,
                batch_flush: Some(node.batch_flush),
                tick: node.tick.min(Duration::from_millis(250)),
                share_clock: false,
                drain_on_stop: matches!(s.kind, SourceKind::Interface(_))
                    .then_some(Duration::from_millis(300)),
                source_vnet: s.vnet,
                sip_ports: config.rtp.sip_ports.clone(),
                tcp_payload: !config.rules.rules.is_empty(),
                decode: config.decode.clone(),
                ids: config.ids.enabled.then(|| config.ids.clone()),
                vnets: Arc::clone(&vnets),
                adapt_rotation: false,
            };
            let io = DriverIo {
                workers: work_tx.clone(),
                free: free_rx.clone(),
                records: writer_tx.clone(),
                metrics: Arc::clone(&metrics),
                capture_drops: Arc::clone(&capture_drops),
                stop: Arc::clone(&stop),
                control,
            };
            let source = s.clone();
            let cpus = node.capture_cpus.clone();
            let health = Arc::clone(&health);
            let metrics = Arc::clone(&metrics);
            let stop = Arc::clone(&stop);
            captures.push((
                s.name.clone(),
                crate::sys::spawn_named(scope, format!("moni-capture-{i}"), move || {
                    crate::sys::pin_current_thread(&cpus, i, "capture");
                    let name = [source.name.as_str()];
                    let what = format!("source {}", source.name);
                    // Up or down with the reason, as the source opens,
                    // fails and is reopened.
                    let status = |problem: Option<&str>| {
                        metrics
                            .source_up
                            .with_label_values(&name)
                            .set(i64::from(problem.is_none()));
                        if let Some(e) = problem {
                            eprintln!("error: {e}");
                        }
                        health.set(&what, problem.map(str::to_string));
                    };
                    let (err, totals) =
                        run_source(&source, Dispatcher::new(settings, io), &stop, &status);
                    metrics.source_up.with_label_values(&name).set(0);
                    (err, totals)
                }),
            ));
        }
        drop(work_tx);
        drop(writer_tx);
        drop(free_tx);
        tracing::info!(
            node = %node.name,
            version = env!("CARGO_PKG_VERSION"),
            sources = captures.len(),
            workers,
            metrics = %node.metrics_listen.map_or_else(|| "off".to_string(), |a| a.to_string()),
            output = %config.output.dir.display(),
            "moni-node running."
        );

        let mut current_vnets = config.vnets.clone();
        let mut current_rules = Arc::clone(&config.rules);
        for (file, s) in &current_rules.skipped {
            tracing::debug!(file, line = s.line, sid = ?s.sid, reason = %s.reason, "Rule skipped.");
        }
        if !current_rules.rules.is_empty() || !current_rules.skipped.is_empty() {
            tracing::info!(
                loaded = current_rules.rules.len(),
                skipped = current_rules.skipped.len(),
                "Signature rules loaded (moni-node check-rules FILE lists the skipped ones)."
            );
        }
        let mut reload_timeout = Duration::from_secs(config.ids.reload_timeout_secs);
        // A reload in progress: when it started and where its result comes.
        let mut pending: Option<(
            std::time::Instant,
            crossbeam_channel::Receiver<ReloadResult>,
        )> = None;
        loop {
            std::thread::sleep(Duration::from_millis(50));
            if term.load(Ordering::Relaxed) {
                tracing::info!("Stop requested; draining.");
                break;
            }
            if captures.iter().all(|(_, h)| h.is_finished()) {
                break;
            }
            if pending.is_none() && hup.swap(false, Ordering::Relaxed) {
                pending = Some((
                    std::time::Instant::now(),
                    start_reload(config_path, &current_vnets, &current_rules),
                ));
            }
            let Some((started, rx)) = &pending else {
                continue;
            };
            let result = match rx.try_recv() {
                Ok(r) => r,
                Err(crossbeam_channel::TryRecvError::Empty)
                    if started.elapsed() < reload_timeout =>
                {
                    continue;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    // The loading thread is left to finish on its own; its
                    // result goes nowhere.
                    pending = None;
                    metrics.reloads.with_label_values(&["timeout"]).inc();
                    eprintln!(
                        "error: reload abandoned after ids.reload_timeout_secs ({} s); \
                         the running configuration and rules stay",
                        reload_timeout.as_secs()
                    );
                    continue;
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    Err(RunError::Config("the reload thread failed".into()))
                }
            };
            pending = None;
            match result {
                Ok(new) => {
                    reloads += 1;
                    current_vnets = new.vnets.clone();
                    reload_timeout = Duration::from_secs(new.ids.reload_timeout_secs);
                    // Unchanged rules keep their compiled engines (and
                    // threshold state).
                    let sigs = new.rules.map(|(set, mut sigs)| {
                        current_rules = Arc::new(set);
                        metrics.set_rules(&current_rules);
                        // New rules count from empty windows in the alert
                        // gate too, which outlives the reload.
                        rule_generation = rule_generation.wrapping_add(1);
                        if let Some(s) = &mut sigs {
                            s.set_generation(rule_generation);
                        }
                        sigs
                    });
                    compare_tolerance.store(new.compare_tolerance.to_bits(), Ordering::Relaxed);
                    let vnets = Arc::new(new.vnets);
                    for c in &control_tx {
                        let _ = c.send(Control::Reload {
                            vnets: Arc::clone(&vnets),
                            flows: crate::worker::per_worker(&new.flows, workers),
                            rtp: new.rtp.clone(),
                            ids: new.ids.clone(),
                            sigs: sigs.as_ref().map(|s| s.as_ref().map(|s| s.fresh())),
                        });
                    }
                    for c in &source_controls {
                        let _ = c.send(SourceControl::Reload {
                            vnets: Arc::clone(&vnets),
                            ids: new.ids.clone(),
                            tcp_payload: !current_rules.rules.is_empty(),
                        });
                    }
                    metrics.reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(vnets = current_vnets.len(), "Configuration reloaded.");
                    let changed: Vec<&str> = restart_settings
                        .iter()
                        .zip(&new.restart_only)
                        .filter(|(a, b)| a.1 != b.1)
                        .map(|(a, _)| a.0)
                        .collect();
                    if !changed.is_empty() {
                        tracing::warn!(
                            settings = %changed.join(", "),
                            "The reload changed settings that only a restart applies; they keep their running values."
                        );
                    }
                }
                Err(e) => {
                    metrics.reloads.with_label_values(&["error"]).inc();
                    eprintln!("error: reload ignored, the running configuration stays: {e}");
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let sources: Vec<(SourceSummary, Option<analyzers::ids::IdsStats>)> = captures
            .into_iter()
            .map(|(source, h)| {
                let (error, t) = h.join().unwrap_or_else(|_| {
                    (Some("capture thread panicked".into()), Default::default())
                });
                let s = SourceSummary {
                    source,
                    packets: t.packets,
                    bytes: t.bytes,
                    captured_bytes: t.captured_bytes,
                    kernel_drops: t.kernel_drops,
                    interface_drops: t.interface_drops,
                    queue_drops: t.queue_drops,
                    error,
                    capture_cpu_seconds: t.cpu_seconds,
                };
                (s, t.ids)
            })
            .collect();
        let (totals, _) = crate::worker::Workers {
            inputs: Vec::new(),
            control: Vec::new(),
            handles: worker_handles,
        }
        .join();
        let sinks = writer.join().ok();
        writers_done.store(true, Ordering::Relaxed);
        let shipped = shipper.map(|h| h.join().unwrap_or_default());
        if let Some(h) = http {
            let _ = h.join();
        }
        (sinks, sources, totals, shipped)
    });

    let Some(mut sinks) = sinks else {
        return Err(RunError::Output(anyhow::anyhow!(
            "the writer thread panicked"
        )));
    };
    let ids = sources
        .iter()
        .filter_map(|(_, i)| i.clone())
        .reduce(|a, b| analyzers::ids::IdsStats {
            alerts: a.alerts + b.alerts,
            suppressed: a.suppressed + b.suppressed,
        });
    let mut summary = Summary::build(crate::summary::Parts {
        config: &config,
        workers,
        totals: &totals,
        ids,
        sinks: &mut sinks,
        output_dir: config.output.dir.display().to_string(),
        elapsed_secs: started.elapsed().as_secs_f64(),
    });
    summary.node = Some(node.name);
    summary.cpu_seconds.capture = sources.iter().map(|(s, _)| s.capture_cpu_seconds).sum();
    summary.sources = sources.into_iter().map(|(s, _)| s).collect();
    summary.reloads = Some(reloads);
    summary.isolation = Some(isolation.description.clone());
    summary.ship = ship_summary;
    // Shipped files kept (`ship.keep_shipped`) moved to shipped/DATASET/,
    // refused ones to rejected/DATASET/: the summary names them where
    // they are.
    let moved_to = ["shipped", "rejected"].map(|d| config.output.dir.join(d));
    for d in &mut summary.datasets {
        for f in &mut d.files {
            let written = Path::new(f.as_str());
            let (Some(name), false) = (written.file_name(), written.exists()) else {
                continue;
            };
            if let Some(m) = moved_to
                .iter()
                .map(|dir| dir.join(&d.dataset).join(name))
                .find(|m| m.exists())
            {
                *f = m.display().to_string();
            }
        }
    }
    Ok(summary)
}

/// Opens a source and runs the capture loop on it until it ends, fails or
/// the node stops. Returns the error that ended it, if any.
/// Waits between tries to reopen an interface that failed: the first,
/// and the longest.
const REOPEN_FIRST: Duration = Duration::from_secs(1);
const REOPEN_MAX: Duration = Duration::from_secs(30);

/// Captures from one source until its end (a file) or `stop`. An
/// interface that fails once open (deleted, its driver reset) is reopened
/// after 1 s, then after twice as long each time up to 30 s, until it
/// comes back or the node stops; `status` hears each change (`None`: up).
/// An interface that cannot be opened at the start is an error at once
/// (a misspelt name should not wait for ever). The error returned is the
/// one still standing at the end.
fn run_source(
    s: &SourceSettings,
    mut d: Dispatcher,
    stop: &AtomicBool,
    status: &dyn Fn(Option<&str>),
) -> (Option<String>, crate::capture::driver::DriverTotals) {
    let error = match &s.kind {
        SourceKind::Interface(iface) => {
            let mut opened = false;
            let mut wait = REOPEN_FIRST;
            loop {
                let failure = match LiveSource::open(s, iface) {
                    Ok(mut src) => {
                        if opened {
                            tracing::info!(source = %s.name, "Capture source reopened.");
                        }
                        opened = true;
                        wait = REOPEN_FIRST;
                        status(None);
                        d.drive(&mut src, &mut |_| {}).1.map(|e| e.to_string())
                    }
                    Err(e) if !opened => {
                        let e = e.to_string();
                        status(Some(&e));
                        break Some(e);
                    }
                    Err(e) => Some(e.to_string()),
                };
                let Some(e) = failure else { break None };
                if stop.load(Ordering::Relaxed) {
                    break Some(e);
                }
                status(Some(&format!(
                    "{e} (trying to reopen it in {} s)",
                    wait.as_secs()
                )));
                if !sleep_unless(stop, wait) {
                    break Some(e);
                }
                wait = (wait * 2).min(REOPEN_MAX);
            }
        }
        SourceKind::File { path, .. } => match FileSource::open(path, s.filter.as_deref()) {
            Ok(mut src) => {
                status(None);
                d.drive(&mut src, &mut |_| {}).1.map(|e| e.to_string())
            }
            Err(e) => Some(e.to_string()),
        }
        .inspect(|e| status(Some(e))),
    };
    let totals = d.finish();
    (error, totals)
}

/// Sleeps `d` unless `stop` is set meanwhile: whether it slept it all.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let until = std::time::Instant::now() + d;
    while std::time::Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Reads the config file again; the VNet map and the flow, RTP and IDS
/// thresholds are taken (sources, workers, output, shipping and table caps
/// need a restart). Rules that differ from `current_rules` are compiled
/// here, once; each worker gets a fresh copy.
fn reload(
    path: &Path,
    current: &analyzers::vnet::VnetMap,
    current_rules: &analyzers::ids::rules::RuleSet,
) -> ReloadResult {
    let (c, r) = load(path)?;
    let vnets = c
        .remap_vnets(current)
        .map_err(|e| RunError::Config(e.to_string()))?;
    let restart = restart_only(&c, &r);
    let rules = (r.rules.rules != current_rules.rules).then(|| {
        let sigs = crate::pipeline::compile(&r.rules, &r.ids);
        (Arc::unwrap_or_clone(r.rules), sigs)
    });
    Ok(Reloaded {
        restart_only: restart,
        vnets,
        compare_tolerance: r.compare_tolerance,
        flows: r.flows,
        rtp: r.rtp,
        ids: r.ids,
        rules,
    })
}

/// The settings a reload cannot change (they open sources and files,
/// start threads or size tables), each by name with a hash of its value:
/// a reload that changes one says so, where it said "reloaded" alone
/// before and the operator took the new value for applied. The sections
/// are compared as the file gives them (a source's VNet by name: ids
/// shift when the map grows), and hashed, so that no copy of a token or a
/// key stays in memory for this.
fn restart_only(c: &NodeConfig, r: &Resolved) -> Vec<(&'static str, u64)> {
    use std::hash::{Hash, Hasher};
    let h = |text: String| {
        let mut s = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut s);
        s.finish()
    };
    vec![
        ("sources", h(format!("{:?}", c.sources))),
        ("node", h(format!("{:?}", c.node))),
        ("metrics", h(format!("{:?}", c.metrics))),
        ("output", h(format!("{:?}", c.output))),
        ("ship", h(format!("{:?}", c.ship))),
        ("decode", h(format!("{:?}", c.decode))),
        ("bins", h(format!("{:?}", c.bins))),
        ("flows.vlan_tracking", h(r.flows.vlan_tracking.to_string())),
        ("rtp.window_secs", h(r.rtp.window_secs.to_string())),
        ("rtp.max_streams", h(r.rtp.max_streams.to_string())),
        ("rtp.max_calls", h(r.rtp.max_calls.to_string())),
        // The detectors are made (or not) at the start, and their tables
        // sized for `max_tracked` then.
        ("ids.enabled", h(r.ids.enabled.to_string())),
        ("ids.max_tracked", h(r.ids.max_tracked.to_string())),
    ]
}

/// Runs [`reload`] on a thread of its own, outside the scope of the
/// node's threads, so that a reload that takes too long can be abandoned
/// (and never delays a stop): the result arrives on the returned channel.
fn start_reload(
    path: &Path,
    current: &analyzers::vnet::VnetMap,
    current_rules: &Arc<analyzers::ids::rules::RuleSet>,
) -> crossbeam_channel::Receiver<ReloadResult> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (path, current, rules) = (
        path.to_path_buf(),
        current.clone(),
        Arc::clone(current_rules),
    );
    let spawned = std::thread::Builder::new()
        .name("moni-reload".into())
        .spawn(move || {
            let _ = tx.send(reload(&path, &current, &rules));
        });
    if let Err(e) = spawned {
        // The sender is gone with the closure: the caller sees the
        // channel disconnected and reports the reload as failed.
        tracing::error!(error = %e, "Cannot start the reload thread.");
    }
    rx
}

type ReloadResult = Result<Reloaded, RunError>;

/// What a SIGHUP applies.
struct Reloaded {
    /// The reloaded file's [`restart_only`] settings.
    restart_only: Vec<(&'static str, u64)>,
    vnets: analyzers::vnet::VnetMap,
    /// `rtp.compare_tolerance`, for the writer thread's comparer.
    compare_tolerance: f64,
    flows: analyzers::flow::FlowConfig,
    rtp: analyzers::voip::RtpConfig,
    ids: analyzers::ids::IdsConfig,
    /// `Some` when the rules changed: the new set and its compiled
    /// signatures (`None` inside: the new set has no rules).
    rules: Option<(
        analyzers::ids::rules::RuleSet,
        Option<analyzers::ids::rules::Signatures>,
    )>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the restart-only settings that differ between two
    /// config texts.
    fn changed(a: &str, b: &str) -> Vec<&'static str> {
        let side = |t: &str| {
            let c = NodeConfig::parse(t).expect("parse");
            let r = c.resolve(None).expect("resolve");
            restart_only(&c, &r)
        };
        side(a)
            .into_iter()
            .zip(side(b))
            .filter(|(x, y)| x.1 != y.1)
            .map(|(x, _)| x.0)
            .collect()
    }

    /// A reload names what only a restart applies, and stays quiet about
    /// what it applies: a new VNet in the map (which shifts VNet ids)
    /// and a new threshold.
    #[test]
    fn a_reload_names_the_settings_only_a_restart_applies() {
        let base = "[vnets]\nmap = [\"100=A:production\"]\n\
                    [[sources]]\ninterface = \"eth1\"\nvnet = \"A\"\n";
        assert!(changed(base, base).is_empty());
        let more_vnets = base.replace(
            "[\"100=A:production\"]",
            "[\"50=Z:monitor\", \"100=A:production\"]",
        );
        assert!(changed(base, &more_vnets).is_empty());
        assert!(changed(base, &format!("{base}[ids]\nscan_ports = 50\n")).is_empty());
        // The flow cap applies on reload (shared by the workers).
        assert!(changed(base, &format!("{base}[flows]\nmax_flows = 1000\n")).is_empty());
        assert_eq!(
            changed(base, &format!("{base}[flows]\nvlan_tracking = false\n")),
            ["flows.vlan_tracking"]
        );
        assert_eq!(changed(base, &base.replace("eth1", "eth2")), ["sources"]);
        assert_eq!(
            changed(base, &format!("{base}[rtp]\nwindow_secs = 5\n")),
            ["rtp.window_secs"]
        );
        assert_eq!(
            changed(base, &format!("{base}[ids]\nenabled = false\n")),
            ["ids.enabled"]
        );
        assert_eq!(
            changed(base, &format!("{base}[ids]\nmax_tracked = 1000\n")),
            ["ids.max_tracked"]
        );
        // The candidate and announcement caps are read at each insert.
        assert!(changed(base, &format!("{base}[rtp]\nmax_candidates = 10\n")).is_empty());
    }
}

//! `moni-node replay`: capture files in, Parquet datasets and a summary out.
//!
//! The same pipeline as `run` ([`crate::capture::driver`] → [`crate::worker`]
//! → [`crate::sink`]), with file sources read as fast as the workers take
//! them, the `block` overload policy (nothing is ever dropped) and
//! `--workers N` analysis workers (default: the number of cores). The
//! results do not depend on N: the shard hash keeps every flow, stream,
//! call leg and shadow/production twin in one worker, the IDS detectors see
//! every packet in the capture loop, and bins are merged per (VNet, bin)
//! before they are written.
//!
//! Files are read in the order of their first packets, as one continuous
//! input (flows span files). A file that cannot be opened or is cut short is reported in the
//! summary and on stderr; what was decoded before the cut is kept, and the
//! other files are still replayed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::capture::batch::free_list;
use crate::capture::driver::{Dispatcher, DriverIo, DriverSettings, Overload, Pacing};
use crate::capture::file::FileSource;
use crate::capture::PacketSource;
use crate::config::Resolved;
use crate::export::{Datasets, ExportError};
use crate::metrics::Metrics;
use crate::sink::{consume, ParquetSink, Records, Sinks};
use crate::summary::{FileSummary, Summary};

/// What to replay and where to.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub files: Vec<PathBuf>,
    pub filter: Option<String>,
    pub out_dir: PathBuf,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Analysis workers (`--workers`; at least 1).
    pub workers: usize,
}

/// The default of `--workers`: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Batches queued per worker. Batches close at 256 packets or 256 KiB, so
/// this bounds what is in flight to about 4 MiB per worker. With 4 the
/// capture thread slept on a full queue for about 15% of a 2-worker
/// flow-heavy replay (`perf sched`: 0.49 s of 3.5 s, in short waits spread
/// over the whole run) while the other worker's core went idle: a worker
/// woken from idle on this VM takes long enough for its queue to fill.
/// 2026-12-04, interleaved rounds (release, 2 cores, medians): flow-heavy
/// 2 workers 2.73 s at 4, 2.46 s at 16, 2.48 s at 32 (5 rounds; 1 worker
/// on 1 core 4.57 s), 1 worker 2.67 -> 2.53 s; IMIX 1.91 -> 1.90 s; VoIP
/// 1.38 -> 1.19 s. (In session 25, before the free list held spare
/// batches, 8 measured no faster than 4.)
const QUEUE_DEPTH: usize = 16;

/// Nice steps the workers run below the capture thread. The capture
/// thread is replay's serial part (it reads, decodes, shards and runs the
/// cross-flow IDS for every packet: 93% of the wall of a 2-worker IMIX
/// replay): when it and a worker want the same core, the worker, which
/// has [`QUEUE_DEPTH`] batches of slack, should wait. 2026-12-04,
/// interleaved rounds on 2 cores (workers reniced from outside): IMIX 2
/// workers 2.00 s level, 1.81 s at 5, 1.86 s at 19; flow-heavy 2.46 ->
/// 2.38 s; VoIP (worker-bound) 1.09 -> 1.07 s; with the workers started
/// at 5 (4 rounds, medians) IMIX 1.90 -> 1.84 s, flow-heavy 2.65 -> 2.45
/// s. Not with one worker: on one core the capture thread then runs its
/// 16 batches ahead of the worker, which reads them back from memory
/// (IMIX 3.23 -> 3.42 s); on two it has a core to itself anyway. (In
/// session 25, with 4 batches of slack, nice 10 measured no faster.)
const WORKER_NICE: i32 = 5;

/// How often counters are published and files rotated (wall clock; the
/// analysis runs on packet time only).
const TICK: Duration = Duration::from_secs(1);

/// Replays the files. Per-file problems are in the summary; `Err` means the
/// output could not be written.
pub fn replay(config: &Resolved, opts: &ReplayOptions) -> Result<Summary, ExportError> {
    let started = Instant::now();
    let opts = &ReplayOptions {
        files: in_time_order(&opts.files),
        ..opts.clone()
    };
    let workers = opts.workers.max(1);
    let mut out = Datasets::create(&opts.out_dir, &config.output, workers)?;
    // EVE's `in_iface`: the capture file(s), as the packets' source.
    out.eve_iface = opts
        .files
        .iter()
        .map(|f| {
            f.file_name().map_or_else(
                || f.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let metrics = Arc::new(Metrics::new("replay").map_err(|e| ExportError::Settings {
        dataset: "metrics".into(),
        message: e.to_string(),
    })?);
    let show_progress = opts.progress && std::io::stderr().is_terminal();
    let mut sinks = Sinks::new(
        workers,
        config.compare_tolerance,
        config.ids.max_tracked,
        ParquetSink::new(out, Arc::clone(&metrics), None, None),
        Arc::clone(&metrics),
    );
    // Records in flight to the sinks: a few per worker. Each holds up to
    // 4,096 flows, so a deep queue behind a slower Parquet writer (an
    // eviction storm) would hold hundreds of MB; a full queue makes the
    // workers wait, as replay never drops.
    let (records_tx, records_rx) = crossbeam_channel::bounded::<Records>(4 * workers);
    let (free_tx, free_rx) = free_list(
        workers * (QUEUE_DEPTH + 2),
        crate::capture::rotation::SPARES,
    );
    let capture_drops = Arc::new(AtomicU64::new(0));
    let settings = DriverSettings {
        name: "replay".into(),
        pacing: Pacing::AsFastAsPossible,
        overload: Overload::Block,
        batch_flush: None,
        tick: TICK,
        drain_on_stop: None,
        share_clock: true,
        source_vnet: None,
        sip_ports: config.rtp.sip_ports.clone(),
        tcp_payload: true,
        decode: config.decode.clone(),
        ids: config.ids.enabled.then(|| config.ids.clone()),
        vnets: Arc::new(config.vnets.clone()),
        adapt_rotation: true,
    };
    let (files, capture, totals) = std::thread::scope(|scope| {
        let pool = crate::worker::spawn(
            scope,
            crate::worker::WorkerSetup {
                config,
                workers,
                queue_batches: QUEUE_DEPTH,
                free: free_tx,
                records: records_tx.clone(),
                metrics: Arc::clone(&metrics),
                capture_drops: Arc::clone(&capture_drops),
                tick: TICK,
                wall_clock: false,
                cpus: Vec::new(),
                nice_below_capture: if workers > 1 { WORKER_NICE } else { 0 },
                gate: (workers > 1).then(|| sinks.gate.full_windows()),
            },
        );
        let io = DriverIo {
            workers: pool.inputs.clone(),
            free: free_rx,
            records: records_tx,
            metrics: Arc::clone(&metrics),
            capture_drops: Arc::clone(&capture_drops),
            stop: Arc::new(AtomicBool::new(false)),
            control: crossbeam_channel::never(),
        };
        let reader = crate::sys::spawn_named(scope, "moni-capture".into(), move || {
            read_files(opts, show_progress, Dispatcher::new(settings, io))
        });
        let crate::worker::Workers {
            inputs,
            control,
            handles,
        } = pool;
        // The reader holds the only senders left to the workers.
        drop(inputs);
        drop(control);
        consume(&records_rx, &mut sinks, TICK);
        let (files, capture) = reader.join().unwrap_or_else(|_| {
            tracing::error!("The capture thread failed; the output is incomplete.");
            (Vec::new(), Default::default())
        });
        let (totals, ok) = crate::worker::Workers {
            inputs: Vec::new(),
            control: Vec::new(),
            handles,
        }
        .join();
        if !ok {
            tracing::error!("An analysis worker failed; the output is incomplete.");
        }
        (files, capture, totals)
    });
    // A write that failed for good (a full disk at the end) is in the
    // summary's `output_error`, with each dataset's rows lost: the caller
    // prints the summary and fails.
    let mut summary = Summary::build(crate::summary::Parts {
        config,
        workers,
        totals: &totals,
        ids: capture.ids.clone(),
        sinks: &mut sinks,
        output_dir: opts.out_dir.display().to_string(),
        elapsed_secs: started.elapsed().as_secs_f64(),
    });
    summary.files = files;
    summary.cpu_seconds.capture = capture.cpu_seconds;
    summary.reassembly.fragment_pins_evicted = capture.fragment_pins_evicted;
    summary.voip.sip_conversations_evicted = capture.sip_conversations_evicted;
    Ok(summary)
}

fn progress_bar(source: &FileSource) -> ProgressBar {
    let (_, total) = source.progress();
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(source.name().to_string());
    bar
}

/// The capture thread: drives each file in turn through the one capture
/// loop, and reports each file.
/// The files ordered by their first packet's time (a stable sort: files
/// whose first packet cannot be read keep their place among the others).
/// One input's time must run forwards: a file older than the one before
/// it would have its flows and streams judged idle by the newer file's
/// clock in whichever worker held them, so results would depend on
/// `--workers`, and a shell's `capture-10.pcap capture-9.pcap` is not
/// time order. Only regular files can be looked at first (a pipe, `-`
/// or `<(...)`, would lose what was read): a list with another keeps its
/// order.
fn in_time_order(files: &[PathBuf]) -> Vec<PathBuf> {
    let regular =
        |f: &PathBuf| f != Path::new("-") && std::fs::metadata(f).is_ok_and(|m| m.is_file());
    if files.len() < 2 || !files.iter().all(regular) {
        return files.to_vec();
    }
    let first_time = |path: &PathBuf| -> Option<i64> {
        let mut source = FileSource::open(path, None).ok()?;
        let ts = source.next_packet().ok()??.ts;
        Some(ts.0)
    };
    let mut keyed: Vec<(Option<i64>, PathBuf)> =
        files.iter().map(|f| (first_time(f), f.clone())).collect();
    // Unreadable files sort with the time of the file before them.
    let mut last = i64::MIN;
    for (t, _) in &mut keyed {
        last = t.unwrap_or(last);
        *t = Some(last);
    }
    keyed.sort_by_key(|(t, _)| *t);
    let ordered: Vec<PathBuf> = keyed.into_iter().map(|(_, f)| f).collect();
    if ordered != files {
        let names: Vec<String> = ordered.iter().map(|f| f.display().to_string()).collect();
        eprintln!(
            "note: replaying the files in time order (by first packet): {}",
            names.join(", ")
        );
    }
    ordered
}

fn read_files(
    opts: &ReplayOptions,
    show_progress: bool,
    mut dispatcher: Dispatcher,
) -> (Vec<FileSummary>, crate::capture::driver::DriverTotals) {
    let mut files = Vec::new();
    for path in &opts.files {
        let mut source = match FileSource::open(path, opts.filter.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                let f = FileSummary::failed(path, 0, e.to_string());
                tracing::info!(error = %e, file = %f.path, "Capture file failed.");
                files.push(f);
                continue;
            }
        };
        let bar = show_progress.then(|| progress_bar(&source));
        let (packets, error) = dispatcher.drive(&mut source, &mut |s: &dyn PacketSource| {
            if let Some(b) = &bar {
                b.set_position(s.progress().0);
            }
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let mut summary = match error {
            Some(e) => {
                tracing::info!(error = %e, file = %path.display(), "Capture file failed.");
                FileSummary::failed(path, packets, e.to_string())
            }
            None => {
                tracing::info!(file = %path.display(), packets, "Capture file replayed.");
                FileSummary::ok(path, packets)
            }
        };
        summary.unsupported_link_type = source.unsupported_link_name();
        // The first MAX_LISTED (a file can declare a million interfaces
        // in 20 MB, which made a 19 MB summary), then how many more.
        const MAX_LISTED: usize = 64;
        let all = source.interfaces();
        summary.interfaces = all
            .iter()
            .take(MAX_LISTED)
            .enumerate()
            .map(|(i, x)| match &x.name {
                Some(n) => format!("#{i} {n}"),
                None => format!("#{i}"),
            })
            .collect();
        if all.len() > MAX_LISTED {
            summary
                .interfaces
                .push(format!("and {} more", all.len() - MAX_LISTED));
        }
        files.push(summary);
    }
    (files, dispatcher.finish())
}

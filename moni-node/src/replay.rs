//! `moni-node replay`: capture files in, Parquet datasets and a summary out.
//!
//! Files are read in the order given, as one continuous input (flows span
//! files). A file that cannot be opened or is cut short is reported in the
//! summary and on stderr; what was decoded before the cut is kept, and the
//! other files are still replayed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use analyzers::ids::rules::{SignatureStats, Signatures};
use analyzers::record::{AlertRecord, EndReason, RtpWindowRecord};
use analyzers::vnet::Role;
use analyzers::voip::compare;
use analyzers::LinkType;
use indicatif::{ProgressBar, ProgressStyle};

use crate::capture::batch::PacketBatch;
use crate::capture::file::FileSource;
use crate::capture::PacketSource;
use crate::config::Resolved;
use crate::export::{Datasets, ExportError};
use crate::pipeline::{Engine, SigTag};
use crate::summary::{
    DatasetSummary, FileSummary, FlowSummary, SignatureSummary, Summary, VnetSummary,
};
use crate::telemetry;

/// Flow records are written in batches of this many rows.
const FLOW_BATCH: usize = 8192;
const BIN_BATCH: usize = 1024;

/// What to replay and where to.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub files: Vec<PathBuf>,
    pub filter: Option<String>,
    pub out_dir: PathBuf,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// Window records kept in memory for the shadow/production comparison.
const MAX_COMPARE_WINDOWS: usize = 2_000_000;

/// Keeps the windows of production and shadow VNets for the comparison at
/// the end, up to [`MAX_COMPARE_WINDOWS`] (the rest are counted). Nothing
/// is kept unless the map has both a production and a shadow VNet: there
/// is no pair to make otherwise, and 600 k streams' windows would cost
/// hundreds of MB for nothing.
fn keep_for_compare(
    kept: &mut Vec<RtpWindowRecord>,
    dropped: &mut u64,
    windows: Vec<RtpWindowRecord>,
    vnets: &analyzers::vnet::VnetMap,
) {
    let has = |r: Role| vnets.iter().any(|(_, v)| v.role == r);
    if !(has(Role::Production) && has(Role::Shadow)) {
        return;
    }
    for w in windows {
        if !matches!(vnets.get(w.id.vnet).role, Role::Production | Role::Shadow) {
            continue;
        }
        if kept.len() < MAX_COMPARE_WINDOWS {
            kept.push(w);
        } else {
            *dropped += 1;
        }
    }
}

/// Batches in flight between the reader thread and the analysis thread
/// (and again between it and the signature thread). Batches close at 1 MiB,
/// so this bounds what is in flight to a few MiB, which stays out of the
/// flow table's way in the shared cache: 16 measured the same wall time
/// for 20% more CPU (bench/rules.sh).
const QUEUE_DEPTH: usize = 4;

/// A batch the engine is done with, for the signature thread.
struct SigJob {
    link: Option<LinkType>,
    batch: PacketBatch,
    /// Per packet of `batch`, in order.
    tags: Vec<SigTag>,
}

/// The signature thread: decodes each packet again (cheaper than sending
/// the decoded form) and matches it; alerts go back per batch, batches to
/// the reader's free list.
fn match_signatures(
    mut sigs: Signatures,
    decode: &analyzers::DecodeConfig,
    jobs: &crossbeam_channel::Receiver<SigJob>,
    alerts: &crossbeam_channel::Sender<Vec<AlertRecord>>,
    free: &crossbeam_channel::Sender<PacketBatch>,
) -> SignatureStats {
    let mut out = Vec::new();
    for SigJob {
        link,
        mut batch,
        tags,
    } in jobs.iter()
    {
        if let Some(link) = link {
            for (pkt, tag) in batch.iter().zip(&tags) {
                let d = analyzers::decode_with(link, pkt.data, decode);
                sigs.observe(pkt.ts, tag.vnet, &d, tag.flow, &mut out);
            }
        }
        if !out.is_empty() && alerts.send(std::mem::take(&mut out)).is_err() {
            break;
        }
        batch.clear();
        let _ = free.try_send(batch);
    }
    sigs.stats().clone()
}

/// What the reader thread sends.
enum ReaderMsg {
    Batch {
        link: Option<LinkType>,
        /// The pcapng interface (index, name) of every packet of the batch.
        iface: Option<(u32, Option<String>)>,
        batch: PacketBatch,
    },
    FileDone(FileSummary),
}

/// Replays the files. Per-file problems are in the summary; `Err` means the
/// output could not be written.
///
/// A reader thread runs libpcap and copies packets into batches; this thread
/// runs the analyzers and writes Parquet. Replay never drops: a full queue
/// makes the reader wait (a live source drops and counts instead).
pub fn replay(config: &Resolved, opts: &ReplayOptions) -> Result<Summary, ExportError> {
    let started = Instant::now();
    let mut engine = Engine::new(config);
    let mut out = Datasets::create(&opts.out_dir, &config.output)?;
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
    let mut files = Vec::new();
    let mut compare_windows: Vec<RtpWindowRecord> = Vec::new();
    let mut compare_dropped: u64 = 0;
    let show_progress = opts.progress && std::io::stderr().is_terminal();

    let (tx, rx) = crossbeam_channel::bounded::<ReaderMsg>(QUEUE_DEPTH);
    let (free_tx, free_rx) = crossbeam_channel::bounded::<PacketBatch>(2 * QUEUE_DEPTH + 2);
    // With rules loaded, payload matching runs on its own thread, behind
    // this one: it gets each batch after the engine, with every packet's
    // VNet and flow, and hands its alerts back.
    let sigs = engine.detach_signatures();
    let (sig_tx, sig_rx) = crossbeam_channel::bounded::<SigJob>(QUEUE_DEPTH);
    let (alert_tx, alert_rx) = crossbeam_channel::unbounded::<Vec<AlertRecord>>();
    let mut sig_stats = None;
    let result: Result<(), ExportError> = std::thread::scope(|scope| {
        scope.spawn(move || read_files(opts, show_progress, &tx, &free_rx));
        let sig_thread = sigs.map(|sigs| {
            let free_tx = free_tx.clone();
            let decode = engine.decode_config().clone();
            scope.spawn(move || match_signatures(sigs, &decode, &sig_rx, &alert_tx, &free_tx))
        });
        // Owned here so that returning early (an output error) drops them,
        // which makes the reader's next send fail and the reader stop.
        let (rx, sig_tx) = (rx, sig_tx);
        for msg in rx.iter() {
            match msg {
                ReaderMsg::Batch {
                    link,
                    iface,
                    mut batch,
                } => {
                    // `iface:#N` names the interface by index, `iface:NAME`
                    // by name.
                    let source_vnet = iface.and_then(|(i, name)| {
                        let v = engine.vnets();
                        v.iface(&format!("#{i}"))
                            .or_else(|| name.and_then(|n| v.iface(&n)))
                    });
                    for pkt in batch.iter() {
                        engine.process(link, &pkt, source_vnet);
                    }
                    if sig_thread.is_some() {
                        let tags = engine.take_sig_tags();
                        // The signature thread ends only when this sender
                        // is dropped, so a failed send cannot happen.
                        let _ = sig_tx.send(SigJob { link, batch, tags });
                        for alerts in alert_rx.try_iter() {
                            engine.add_alerts(alerts);
                        }
                    } else {
                        batch.clear();
                        let _ = free_tx.try_send(batch);
                    }
                    if engine.pending_flows() >= FLOW_BATCH {
                        out.write_flows(&engine.take_flows(), engine.vnets())?;
                    }
                    if engine.pending_bins() >= BIN_BATCH {
                        out.write_bins(&engine.take_bins(), engine.vnets())?;
                    }
                    let calls = engine.take_calls();
                    out.write_calls(&calls, engine.vnets())?;
                    let alerts = engine.take_alerts();
                    out.write_alerts(&alerts, engine.vnets())?;
                    if engine.pending_rtp() >= BIN_BATCH {
                        let (w, s) = engine.take_rtp();
                        out.write_rtp(&w, &s, engine.vnets())?;
                        keep_for_compare(
                            &mut compare_windows,
                            &mut compare_dropped,
                            w,
                            engine.vnets(),
                        );
                    }
                    out.rotate_if_due()?;
                }
                ReaderMsg::FileDone(f) => {
                    match &f.error {
                        Some(error) => {
                            tracing::info!(%error, file = %f.path, "Capture file failed.")
                        }
                        None => {
                            tracing::info!(file = %f.path, packets = f.packets, "Capture file replayed.")
                        }
                    }
                    files.push(f);
                }
            }
        }
        drop(sig_tx);
        if let Some(t) = sig_thread {
            // Every batch matched: the last alerts are in the channel.
            sig_stats = t.join().ok();
            if sig_stats.is_none() {
                // A bug, not an input problem: say that signature alerts
                // may be missing rather than let the summary look whole.
                tracing::error!("The signature thread failed; signature alerts may be missing.");
            }
            for alerts in alert_rx.try_iter() {
                engine.add_alerts(alerts);
            }
        }
        Ok(())
    });
    result?;

    engine.finish();
    out.write_flows(&engine.take_flows(), engine.vnets())?;
    out.write_bins(&engine.take_bins(), engine.vnets())?;
    let (rtp_windows, rtp_streams) = engine.take_rtp();
    out.write_rtp(&rtp_windows, &rtp_streams, engine.vnets())?;
    out.write_calls(&engine.take_calls(), engine.vnets())?;
    out.write_alerts(&engine.take_alerts(), engine.vnets())?;
    keep_for_compare(
        &mut compare_windows,
        &mut compare_dropped,
        rtp_windows,
        engine.vnets(),
    );
    let tolerance = config.compare_tolerance;
    let pairs = compare::compare_windows(&compare_windows, engine.vnets(), tolerance);
    out.write_compare(&pairs, engine.vnets())?;
    let comparison = crate::summary::comparison_summary(
        &compare::per_window(&pairs, tolerance),
        engine.vnets(),
        tolerance,
        compare_dropped,
    );
    out.close()?;
    let voip = crate::summary::voip_summary(engine.counters(), engine.vnets(), engine.rtp_stats());

    let elapsed = started.elapsed().as_secs_f64();
    let c = engine.counters();
    let stats = engine.flow_stats();
    Ok(Summary {
        files,
        packets: c.packets,
        bytes: c.bytes,
        decode_errors: c
            .decode_errors
            .iter()
            .map(|(e, n)| (e.as_str().to_string(), n))
            .collect(),
        decode_errors_total: c.decode_errors.total(),
        reassembly: crate::summary::ReassemblySummary {
            incomplete_at_end: engine.reassembly_pending(),
            ..(&c.reassembly).into()
        },
        flows: FlowSummary {
            exported: stats.exported_total(),
            by_end_reason: EndReason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), stats.exported[r.index()]))
                .filter(|(_, n)| *n > 0)
                .collect(),
            evicted: stats.evicted(),
            peak_active: stats.peak_active,
            max_flows: config.flows.max_flows as u64,
            fragments_unmatched: stats.fragments_unmatched,
        },
        vnets: engine
            .vnets()
            .iter()
            .map(|(id, v)| {
                let vc = c.vnets.get(usize::from(id.0)).cloned().unwrap_or_default();
                VnetSummary {
                    vnet: v.name.clone(),
                    role: v.role.as_str().to_string(),
                    packets: vc.packets,
                    bytes: vc.bytes,
                    flows: vc.flows,
                }
            })
            .filter(|v| v.packets > 0)
            .collect(),
        late_bin_rows: engine.late_bin_rows(),
        alerts: c
            .alerts
            .iter()
            .map(|(k, n)| ((*k).to_string(), *n))
            .collect(),
        alerts_suppressed: engine.ids().map_or(0, |i| i.stats().suppressed),
        signatures: (!config.rules.rules.is_empty()).then(|| SignatureSummary {
            rules_loaded: config.rules.rules.len() as u64,
            rules_skipped: config.rules.skipped.len() as u64,
            engine: sig_stats.unwrap_or_default(),
        }),
        output_dir: opts.out_dir.display().to_string(),
        voip,
        comparison,
        datasets: out
            .all()
            .iter()
            .map(|w| DatasetSummary {
                dataset: w.dataset().to_string(),
                dir: w.dir().display().to_string(),
                files: w.files.iter().map(|p| p.display().to_string()).collect(),
                rows: w.rows_written,
            })
            .collect(),
        elapsed_secs: elapsed,
        packets_per_sec: if elapsed > 0.0 {
            c.packets as f64 / elapsed
        } else {
            0.0
        },
        peak_rss_bytes: telemetry::peak_rss_bytes(),
    })
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

/// The reader thread: opens each file in turn and sends its packets in
/// batches, then one [`ReaderMsg::FileDone`] per file. Returns early when
/// the analysis side hung up.
fn read_files(
    opts: &ReplayOptions,
    show_progress: bool,
    tx: &crossbeam_channel::Sender<ReaderMsg>,
    free: &crossbeam_channel::Receiver<PacketBatch>,
) {
    let new_batch = || {
        free.try_recv()
            .unwrap_or_else(|_| PacketBatch::with_capacity())
    };
    for path in &opts.files {
        let mut source = match FileSource::open(path, opts.filter.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                if tx
                    .send(ReaderMsg::FileDone(FileSummary::failed(
                        path,
                        0,
                        e.to_string(),
                    )))
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let bar = show_progress.then(|| progress_bar(&source));
        let link = source.link_type();
        let mut batch = new_batch();
        let mut batch_iface: Option<u32> = None;
        let iface_msg = |i: Option<u32>, s: &FileSource| {
            i.map(|i| {
                let name = s.interfaces().get(i as usize).and_then(|x| x.name.clone());
                (i, name)
            })
        };
        let mut packets: u64 = 0;
        let error = loop {
            match source.next_packet() {
                Ok(Some(pkt)) => {
                    batch.push(&pkt);
                    packets += 1;
                    // A batch holds the packets of one pcapng interface.
                    let iface = source.interface().map(|(i, _)| i);
                    if iface != batch_iface {
                        if batch.len() > 1 {
                            let mut next = new_batch();
                            batch.move_last_to(&mut next);
                            let full = std::mem::replace(&mut batch, next);
                            let iface = iface_msg(batch_iface, &source);
                            if tx
                                .send(ReaderMsg::Batch {
                                    link,
                                    iface,
                                    batch: full,
                                })
                                .is_err()
                            {
                                return;
                            }
                        }
                        batch_iface = iface;
                    }
                    if batch.is_full() {
                        let full = std::mem::replace(&mut batch, new_batch());
                        let iface = iface_msg(batch_iface, &source);
                        if tx
                            .send(ReaderMsg::Batch {
                                link,
                                iface,
                                batch: full,
                            })
                            .is_err()
                        {
                            return;
                        }
                        if let Some(b) = &bar {
                            b.set_position(source.progress().0);
                        }
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        let iface = iface_msg(batch_iface, &source);
        if !batch.is_empty() && tx.send(ReaderMsg::Batch { link, iface, batch }).is_err() {
            return;
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let mut summary = match error {
            Some(e) => FileSummary::failed(path, packets, e),
            None => FileSummary::ok(path, packets),
        };
        summary.unsupported_link_type = source.unsupported_link_name();
        summary.interfaces = source
            .interfaces()
            .iter()
            .enumerate()
            .map(|(i, x)| match &x.name {
                Some(n) => format!("#{i} {n}"),
                None => format!("#{i}"),
            })
            .collect();
        if tx.send(ReaderMsg::FileDone(summary)).is_err() {
            return;
        }
    }
}

//! `moni-node replay`: capture files in, Parquet datasets and a summary out.
//!
//! Files are read in the order given, as one continuous input (flows span
//! files). A file that cannot be opened or is cut short is reported in the
//! summary and on stderr; what was decoded before the cut is kept, and the
//! other files are still replayed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use analyzers::record::EndReason;
use indicatif::{ProgressBar, ProgressStyle};

use crate::capture::file::FileSource;
use crate::capture::PacketSource;
use crate::config::Resolved;
use crate::export::{Datasets, ExportError};
use crate::pipeline::Engine;
use crate::summary::{DatasetSummary, FileSummary, FlowSummary, Summary, VnetSummary};
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

/// Replays the files. Per-file problems are in the summary; `Err` means the
/// output could not be written.
pub fn replay(config: &Resolved, opts: &ReplayOptions) -> Result<Summary, ExportError> {
    let started = Instant::now();
    let mut engine = Engine::new(config);
    let mut out = Datasets::create(&opts.out_dir, &config.output)?;
    let mut files = Vec::new();
    let show_progress = opts.progress && std::io::stderr().is_terminal();

    for path in &opts.files {
        let before = engine.counters().packets;
        let mut source = match FileSource::open(path, opts.filter.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                files.push(FileSummary::failed(path, 0, e.to_string()));
                continue;
            }
        };
        let bar = show_progress.then(|| progress_bar(&source));
        let link = source.link_type();
        let mut error = None;
        let mut n: u64 = 0;
        loop {
            match source.next_packet() {
                Ok(Some(pkt)) => {
                    engine.process(link, &pkt, None);
                    n += 1;
                    if n % 65_536 == 0 {
                        if let Some(b) = &bar {
                            b.set_position(source.progress().0);
                        }
                        out.rotate_if_due()?;
                    }
                    if engine.pending_flows() >= FLOW_BATCH {
                        out.write_flows(&engine.take_flows(), engine.vnets())?;
                    }
                    if engine.pending_bins() >= BIN_BATCH {
                        out.write_bins(&engine.take_bins(), engine.vnets())?;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let packets = engine.counters().packets - before;
        files.push(match error {
            Some(e) => FileSummary::failed(path, packets, e),
            None => FileSummary::ok(path, packets),
        });
    }

    engine.finish();
    out.write_flows(&engine.take_flows(), engine.vnets())?;
    out.write_bins(&engine.take_bins(), engine.vnets())?;
    out.close()?;

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
        output_dir: opts.out_dir.display().to_string(),
        datasets: [&out.flows, &out.bins]
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

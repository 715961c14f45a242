//! The replay summary: printed for people, or as JSON (`--json`) for tools.
//! The totals of the analysis workers are added up (see
//! [`crate::worker::WorkerTotals::merge`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub packets: u64,
    /// `ok` or `error`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The file's link type (libpcap's DLT name, e.g. `IEEE802_11_RADIO`)
    /// when moni does not decode it: every frame of the file counts
    /// `unsupported_link_type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsupported_link_type: Option<String>,
    /// A pcapng file's interfaces, `#N` and the name when given (what
    /// `iface:#N` and `iface:NAME` map).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
}

impl FileSummary {
    pub fn ok(path: &Path, packets: u64) -> Self {
        FileSummary {
            path: path.display().to_string(),
            packets,
            status: "ok",
            error: None,
            unsupported_link_type: None,
            interfaces: Vec::new(),
        }
    }

    pub fn failed(path: &Path, packets: u64, error: String) -> Self {
        FileSummary {
            path: path.display().to_string(),
            packets,
            status: "error",
            error: Some(error),
            unsupported_link_type: None,
            interfaces: Vec::new(),
        }
    }
}

/// What the signature engine did (present when rules were loaded).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SignatureSummary {
    pub rules_loaded: u64,
    pub rules_skipped: u64,
    /// Packets, candidate rules checked, matches, thresholded, alerts,
    /// alerts dropped at the per-packet and per-second caps.
    #[serde(flatten)]
    pub engine: analyzers::ids::rules::SignatureStats,
}

#[derive(Clone, Debug, Serialize)]
pub struct FlowSummary {
    pub exported: u64,
    pub by_end_reason: BTreeMap<String, u64>,
    pub evicted: u64,
    pub peak_active: u64,
    pub max_flows: u64,
    pub fragments_unmatched: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct VnetSummary {
    pub vnet: String,
    pub role: String,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
}

/// RTP streams of one VNet.
#[derive(Clone, Debug, Serialize)]
pub struct VoipVnetSummary {
    pub vnet: String,
    pub role: String,
    pub streams: u64,
    pub packets_received: u64,
    pub packets_lost: i64,
    /// Mean of the streams' whole-life MOS-CQ.
    pub mos_cq_mean: Option<f64>,
    pub mos_cq_min: Option<f64>,
    pub mirror_duplicates: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct VoipSummary {
    pub sip_messages: u64,
    pub calls: u64,
    pub rtp_packets: u64,
    pub rtcp_packets: u64,
    pub streams: u64,
    pub streams_evicted: u64,
    pub candidates_evicted: u64,
    /// Mirror copies dropped before detection (SPAN of both directions).
    pub mirror_duplicates: u64,
    /// SIP conversations on ports outside `rtp.sip_ports` forgotten at the
    /// cap of 16,384 (replay; their later datagrams may reach another
    /// worker than their calls).
    pub sip_conversations_evicted: u64,
    pub vnets: Vec<VoipVnetSummary>,
}

/// Summarises the finished RTP streams per VNet.
pub fn voip_summary(
    counters: &crate::pipeline::Counters,
    vnets: &analyzers::vnet::VnetMap,
    stats: &analyzers::voip::RtpStats,
) -> VoipSummary {
    let per_vnet: Vec<VoipVnetSummary> = vnets
        .iter()
        .filter_map(|(id, v)| {
            let c = counters.voip.get(usize::from(id.0))?;
            (c.streams > 0).then(|| VoipVnetSummary {
                vnet: v.name.clone(),
                role: v.role.as_str().to_string(),
                streams: c.streams,
                packets_received: c.packets_received,
                packets_lost: c.packets_lost,
                mos_cq_mean: (c.mos_streams > 0).then(|| c.mos_cq_sum / c.mos_streams as f64),
                mos_cq_min: (c.mos_streams > 0).then_some(c.mos_cq_min),
                mirror_duplicates: c.mirror_duplicates,
            })
        })
        .collect();
    VoipSummary {
        sip_messages: stats.sip_messages,
        calls: stats.calls_started,
        rtp_packets: stats.rtp_packets,
        rtcp_packets: stats.rtcp_packets,
        streams: per_vnet.iter().map(|v| v.streams).sum(),
        streams_evicted: stats.streams_evicted,
        candidates_evicted: stats.candidates_evicted,
        mirror_duplicates: stats.mirror_duplicates,
        sip_conversations_evicted: 0,
        vnets: per_vnet,
    }
}

/// "1 file", "2 files".
pub(crate) fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The most comparison windows the human summary prints (the last ones).
const HUMAN_WINDOWS: usize = 50;

/// One window of the shadow/production comparison (mean over streams).
#[derive(Clone, Debug, Serialize)]
pub struct ComparisonWindow {
    pub production: String,
    pub shadow: String,
    pub window_start_us: i64,
    pub streams: u64,
    pub mos_production: f64,
    pub mos_shadow: f64,
    pub loss_production: f64,
    pub loss_shadow: f64,
    pub verdict: &'static str,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ComparisonSummary {
    pub tolerance: f64,
    pub windows: Vec<ComparisonWindow>,
    pub shadow_better: u64,
    pub production_better: u64,
    pub equal: u64,
    /// Window records beyond the in-memory cap, not compared.
    pub windows_not_compared: u64,
    /// Windows counted by verdict above but not listed in `windows` (the
    /// oldest, past [`crate::sink::SUMMARY_WINDOWS`]: a node that ran for
    /// weeks).
    pub windows_not_listed: u64,
    /// Pairs of a window already settled at that cap when they came (in
    /// `rtp_compare`, not in these counts).
    pub pairs_late: u64,
}

pub fn comparison_summary(
    tally: &analyzers::voip::compare::WindowTally,
    vnets: &analyzers::vnet::VnetMap,
    tolerance: f64,
    dropped: u64,
) -> ComparisonSummary {
    let per_window = tally.windows();
    let [shadow_better, production_better, equal] = tally.counts();
    ComparisonSummary {
        tolerance,
        shadow_better,
        production_better,
        equal,
        windows_not_compared: dropped,
        windows_not_listed: tally.settled(),
        pairs_late: tally.late,
        windows: per_window
            .iter()
            .map(|w| ComparisonWindow {
                production: vnets.get(w.production).name.clone(),
                shadow: vnets.get(w.shadow).name.clone(),
                window_start_us: w.window_start.micros(),
                streams: w.streams,
                mos_production: w.mos_production,
                mos_shadow: w.mos_shadow,
                loss_production: w.loss_production,
                loss_shadow: w.loss_shadow,
                verdict: w.verdict.as_str(),
            })
            .collect(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct DatasetSummary {
    pub dataset: String,
    pub dir: String,
    pub files: Vec<String>,
    /// Rows in the files.
    pub rows: u64,
    /// Rows lost to failed writes (a full disk): the file a failed write
    /// broke, and what waited beyond the writer's backlog or at the end.
    pub rows_lost: u64,
}

/// Reassembly of fragmented tunnel packets (`decode.max_reassembly_bytes`).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReassemblySummary {
    /// Fragments held for reassembly.
    pub fragments: u64,
    /// Datagrams completed (each counts as one packet in flows and bins).
    pub datagrams: u64,
    /// Incomplete datagrams dropped when their time ran out.
    pub timeouts: u64,
    /// Incomplete datagrams dropped to stay within the byte cap.
    pub evictions: u64,
    /// Fragments that overlapped bytes already received (first wins).
    pub overlaps: u64,
    /// Fragments refused as impossible.
    pub invalid: u64,
    /// Datagrams still incomplete at the end of the input.
    pub incomplete_at_end: u64,
    /// With several workers: datagrams whose later fragments could no
    /// longer be sent after their first fragment (the capture loop's
    /// 16,384 pins were full), so their results may depend on `--workers`
    /// (replay; 0 in `run`).
    pub fragment_pins_evicted: u64,
}

impl From<&analyzers::decode::ReassemblyStats> for ReassemblySummary {
    fn from(r: &analyzers::decode::ReassemblyStats) -> Self {
        ReassemblySummary {
            fragments: r.fragments,
            datagrams: r.datagrams,
            timeouts: r.timeouts,
            evictions: r.evictions,
            overlaps: r.overlaps,
            invalid: r.invalid,
            incomplete_at_end: 0,
            fragment_pins_evicted: 0,
        }
    }
}

/// Totals of one `run` source (a live interface or a paced file).
#[derive(Clone, Debug, Serialize)]
pub struct SourceSummary {
    pub source: String,
    pub packets: u64,
    pub bytes: u64,
    /// Bytes as captured, after the kernel's cut (`bytes` are wire bytes).
    pub captured_bytes: u64,
    pub kernel_drops: u64,
    pub interface_drops: u64,
    pub queue_drops: u64,
    pub error: Option<String>,
    /// CPU time of the source's capture thread, in seconds.
    pub capture_cpu_seconds: f64,
}

/// CPU time of the pipeline's threads, in seconds (user and system): the
/// capture thread (summed over sources), the analysis workers (summed),
/// and the thread that writes the output (replay's main thread, run's
/// writer). A thread whose CPU time is close to `elapsed_secs` is the one
/// that limits throughput: with the capture thread there, more workers
/// do not help.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuSummary {
    pub capture: f64,
    pub workers: f64,
    pub output: f64,
}

/// What `moni-node replay --json` prints and what `moni-node run` prints
/// when it stops: one type, so that both modes report the same fields
/// (README, "The summary JSON"). `files` is replay's, `node`, `sources`,
/// `reloads` and `ship` are run's.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The node name (`run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The capture files (`replay`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSummary>,
    /// The capture sources (`run`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceSummary>,
    /// SIGHUP reloads applied (`run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reloads: Option<u64>,
    /// How the probe was kept out of production's way: niceness and
    /// cgroup (`run`; see `isolation.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    /// Present when shipping to a collector is configured (`run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ship: Option<crate::run::ship::ShipSummary>,
    /// Why the Parquet output stopped, if it did.
    pub output_error: Option<String>,
    /// Records not written because the spool was full (`stop_writing`).
    pub rows_dropped_spool_full: u64,
    /// Analysis workers (`--workers`, `node.workers`).
    pub workers: u64,
    /// Packets the workers analysed (with `run`, the packets captured
    /// minus queue drops).
    pub packets: u64,
    /// Wire bytes.
    pub bytes: u64,
    pub decode_errors_total: u64,
    pub decode_errors: BTreeMap<String, u64>,
    /// Reassembly of fragmented outer packets of tunnels.
    pub reassembly: ReassemblySummary,
    pub flows: FlowSummary,
    pub vnets: Vec<VnetSummary>,
    pub late_bin_rows: u64,
    /// Bins written before every worker was done with them (more than
    /// 65,536 bins waiting): such a bin may have a second row.
    pub bins_written_early: u64,
    pub voip: VoipSummary,
    pub comparison: ComparisonSummary,
    /// IDS alerts by kind (also in `alerts` and `eve.json`).
    pub alerts: BTreeMap<String, u64>,
    /// Further crossings of an alerted episode, suppressed.
    pub alerts_suppressed: u64,
    pub signatures: Option<SignatureSummary>,
    pub output_dir: String,
    pub datasets: Vec<DatasetSummary>,
    pub elapsed_secs: f64,
    pub packets_per_sec: f64,
    pub peak_rss_bytes: Option<u64>,
    pub cpu_seconds: CpuSummary,
}

impl Summary {
    /// Files that failed.
    pub fn failed_files(&self) -> impl Iterator<Item = &FileSummary> {
        self.files.iter().filter(|f| f.error.is_some())
    }

    /// The summary for people.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let failed = self.failed_files().count();
        let _ = writeln!(
            s,
            "replayed {}{}: {} packets, {} on the wire, in {:.2} s ({:.0} packets/s)",
            plural(self.files.len() as u64, "file"),
            if failed > 0 {
                format!(" ({failed} failed)")
            } else {
                String::new()
            },
            self.packets,
            bytes(self.bytes),
            self.elapsed_secs,
            self.packets_per_sec
        );
        let reasons = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = if self.decode_errors_total == 0 {
            writeln!(s, "  decode errors: none")
        } else {
            writeln!(
                s,
                "  decode errors: {} ({})",
                self.decode_errors_total,
                reasons(&self.decode_errors)
            )
        };
        let r = &self.reassembly;
        if r.fragments > 0 {
            let _ = writeln!(
                s,
                "  reassembly: {} tunnel fragments into {} datagrams; {} timeouts, {} evictions, {} overlaps, {} invalid, {} incomplete at the end",
                r.fragments, r.datagrams, r.timeouts, r.evictions, r.overlaps, r.invalid, r.incomplete_at_end
            );
            if r.fragment_pins_evicted > 0 {
                let _ = writeln!(
                    s,
                    "  reassembly: {} datagrams' fragments split over workers (fragment pins full)",
                    r.fragment_pins_evicted
                );
            }
        }
        let f = &self.flows;
        let _ = writeln!(
            s,
            "  flows: {} exported ({}); {} evicted at the cap of {}; peak {} live",
            f.exported,
            reasons(&f.by_end_reason),
            f.evicted,
            f.max_flows,
            f.peak_active
        );
        for v in &self.vnets {
            let _ = writeln!(
                s,
                "  vnet {} ({}): {} packets, {}, {} flows",
                v.vnet,
                v.role,
                v.packets,
                bytes(v.bytes),
                v.flows
            );
        }
        let v = &self.voip;
        if v.streams > 0 || v.sip_messages > 0 || v.rtcp_packets > 0 || v.mirror_duplicates > 0 {
            let _ = writeln!(
                s,
                "  voip: {}, {}, {} ({} evicted), {}{}",
                plural(v.sip_messages, "SIP message"),
                plural(v.calls, "call"),
                plural(v.streams, "RTP stream"),
                v.streams_evicted,
                plural(v.rtcp_packets, "RTCP packet"),
                if v.mirror_duplicates > 0 {
                    format!(
                        ", {} (a SPAN copying both directions)",
                        plural(v.mirror_duplicates, "mirror duplicate")
                    )
                } else {
                    String::new()
                }
            );
            for x in &v.vnets {
                let mos = match (x.mos_cq_mean, x.mos_cq_min) {
                    (Some(mean), Some(min)) => {
                        format!("MOS-CQ per stream mean {mean:.2} min {min:.2}")
                    }
                    // Video and codecs without SDP have no MOS.
                    _ => "no MOS (no voice codec known)".to_string(),
                };
                let _ = writeln!(
                    s,
                    "    vnet {} ({}): {}, {} packets, {} lost, {mos}",
                    x.vnet,
                    x.role,
                    plural(x.streams, "stream"),
                    x.packets_received,
                    x.packets_lost,
                );
            }
        }
        let c = &self.comparison;
        if !c.windows.is_empty() {
            let _ = writeln!(
                s,
                "  shadow vs production (MOS-CQ per window, mean over streams; equal within {}):",
                c.tolerance
            );
            let _ = writeln!(
                s,
                "    {:<20} {:>12} {:>8} {:>8} {:>7} {:>7}  verdict",
                "window (UTC)", "vnets", "MOS prod", "MOS shad", "loss P", "loss S"
            );
            // A day-long capture has thousands of windows: the last ones
            // here, all of them in --json and in rtp_compare.
            let hidden = c.windows.len().saturating_sub(HUMAN_WINDOWS);
            if hidden > 0 {
                let _ = writeln!(
                    s,
                    "    ({hidden} earlier windows not shown: see --json or the rtp_compare dataset)"
                );
            }
            for w in &c.windows[hidden..] {
                // As `moni-collector compare` prints it, so the two tables
                // can be read side by side.
                let u = analyzers::Timestamp(w.window_start_us).utc();
                let _ = writeln!(
                    s,
                    "    {:<20} {:>12} {:>8.2} {:>8.2} {:>6.1}% {:>6.1}%  {}",
                    format!(
                        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                        u.year, u.month, u.day, u.hour, u.minute, u.second
                    ),
                    format!("{}/{}", w.production, w.shadow),
                    w.mos_production,
                    w.mos_shadow,
                    w.loss_production * 100.0,
                    w.loss_shadow * 100.0,
                    w.verdict
                );
            }
            let _ = writeln!(
                s,
                "    windows: {} shadow better, {} production better, {} equal",
                c.shadow_better, c.production_better, c.equal
            );
            if c.windows_not_listed > 0 {
                let _ = writeln!(
                    s,
                    "    ({} of them counted but no longer listed: the oldest, past {} windows)",
                    c.windows_not_listed,
                    crate::sink::SUMMARY_WINDOWS
                );
            }
        }
        if self.alerts.is_empty() {
            let _ = writeln!(s, "  IDS alerts: none");
        } else {
            let list: Vec<String> = self
                .alerts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(
                s,
                "  IDS alerts: {} ({} repeats suppressed); details in alerts/ and eve.json",
                list.join(", "),
                self.alerts_suppressed
            );
        }
        if let Some(g) = &self.signatures {
            let _ = writeln!(
                s,
                "  signatures: {} rules loaded, {} skipped; {} packets matched against them, \
                 {} candidate rules checked, {} matches, {} held back by thresholds, {} alerts \
                 ({} dropped at ids.max_alerts_per_packet, {} at ids.max_alerts_per_second)",
                g.rules_loaded,
                g.rules_skipped,
                g.engine.packets,
                g.engine.candidates,
                g.engine.matches,
                g.engine.thresholded,
                g.engine.alerts,
                g.engine.dropped_per_packet,
                g.engine.dropped_per_second
            );
            if g.engine.defrag_datagrams + g.engine.defrag_dropped > 0 {
                let _ = writeln!(
                    s,
                    "  signatures: {} fragmented IP datagrams matched whole, {} dropped incomplete",
                    g.engine.defrag_datagrams, g.engine.defrag_dropped
                );
            }
            if g.engine.passed_packets > 0 {
                let _ = writeln!(
                    s,
                    "  signatures: {} packets passed by pass rules ({} flows passed, {} of them \
                     forgotten at the cap)",
                    g.engine.passed_packets, g.engine.passed_flows, g.engine.passed_flows_evicted
                );
            }
            if g.engine.dropped_flows > 0 {
                let _ = writeln!(
                    s,
                    "  signatures: {} flows dropped by drop or reject rules (as Suricata in IDS \
                     mode, {} later packets not inspected; {} flows forgotten at the cap)",
                    g.engine.dropped_flows,
                    g.engine.dropped_flow_packets,
                    g.engine.dropped_flows_evicted
                );
            }
        }
        for d in &self.datasets {
            let lost = if d.rows_lost > 0 {
                format!(" ({} lost to failed writes)", plural(d.rows_lost, "row"))
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "  {}: {} in {} under {}{lost}",
                d.dataset,
                plural(d.rows, "row"),
                plural(d.files.len() as u64, "file"),
                d.dir
            );
        }
        if let Some(rss) = self.peak_rss_bytes {
            let _ = writeln!(s, "  peak RSS: {}", bytes(rss));
        }
        let cpu = &self.cpu_seconds;
        let _ = writeln!(
            s,
            "  CPU: capture {:.2} s, workers {:.2} s, output {:.2} s",
            cpu.capture, cpu.workers, cpu.output
        );
        for file in &self.files {
            if !file.interfaces.is_empty() {
                let _ = writeln!(
                    s,
                    "  interfaces of {}: {}",
                    file.path,
                    file.interfaces.join(", ")
                );
            }
            if let Some(link) = &file.unsupported_link_type {
                let _ = writeln!(
                    s,
                    "  unsupported link type {link}: {} frames of {} not decoded",
                    file.packets, file.path
                );
            }
        }
        for file in self.failed_files() {
            let _ = writeln!(
                s,
                "  FAILED {}",
                file.error.as_deref().unwrap_or(&file.path)
            );
        }
        s
    }
}

/// Human-readable byte count (powers of 1024).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What both modes add up into a [`Summary`] at the end.
pub struct Parts<'a> {
    pub config: &'a crate::config::Resolved,
    pub workers: usize,
    pub totals: &'a crate::worker::WorkerTotals,
    /// The IDS counters of the capture loop(s).
    pub ids: Option<analyzers::ids::IdsStats>,
    pub sinks: &'a mut crate::sink::Sinks,
    pub output_dir: String,
    pub elapsed_secs: f64,
}

impl Summary {
    /// The summary of a finished pipeline, without the mode's own fields
    /// (`files`, or `node`, `sources`, `reloads` and `ship`).
    pub fn build(p: Parts<'_>) -> Summary {
        use analyzers::record::EndReason;
        let Parts {
            config,
            workers,
            totals,
            ids,
            sinks,
            output_dir,
            elapsed_secs,
        } = p;
        // The newest map: a SIGHUP may have added VNets (the old ones keep
        // their ids), which the start-up map would name as the default.
        let newest = sinks.newest_vnets();
        let vnets = newest.as_deref().unwrap_or(&config.vnets);
        let tolerance = sinks.compare.comparer.tolerance();
        let comparison = comparison_summary(
            &sinks.tally.windows,
            vnets,
            tolerance,
            sinks.compare.comparer.stats().dropped_at_cap,
        );
        let c = &totals.counters;
        let stats = &totals.flows;
        Summary {
            node: None,
            isolation: None,
            files: Vec::new(),
            sources: Vec::new(),
            reloads: None,
            ship: None,
            output_error: sinks.parquet.error.as_ref().map(|e| e.to_string()),
            rows_dropped_spool_full: sinks.parquet.rows_dropped_spool_full,
            workers: workers as u64,
            packets: c.packets,
            bytes: c.bytes,
            decode_errors: c
                .decode_errors
                .iter()
                .map(|(e, n)| (e.as_str().to_string(), n))
                .collect(),
            decode_errors_total: c.decode_errors.total(),
            reassembly: ReassemblySummary {
                incomplete_at_end: totals.reassembly_pending,
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
            vnets: vnets
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
            late_bin_rows: totals.late_bin_rows,
            bins_written_early: sinks.bins.released_at_cap,
            voip: voip_summary(c, vnets, &totals.rtp),
            comparison,
            alerts: sinks
                .tally
                .alerts
                .iter()
                .map(|(k, n)| ((*k).to_string(), *n))
                .collect(),
            alerts_suppressed: ids.map_or(0, |i| i.suppressed),
            signatures: (!config.rules.rules.is_empty()).then(|| SignatureSummary {
                rules_loaded: config.rules.rules.len() as u64,
                rules_skipped: config.rules.skipped.len() as u64,
                engine: with_gate(
                    totals.signatures.clone().unwrap_or_default(),
                    sinks.gate.stats(),
                ),
            }),
            output_dir,
            datasets: sinks
                .parquet
                .out
                .all()
                .iter()
                .map(|w| DatasetSummary {
                    dataset: w.dataset().to_string(),
                    dir: w.dir().display().to_string(),
                    files: w.files.iter().map(|p| p.display().to_string()).collect(),
                    rows: w.rows_in_files,
                    rows_lost: w.rows_lost,
                })
                .collect(),
            elapsed_secs,
            packets_per_sec: if elapsed_secs > 0.0 {
                c.packets as f64 / elapsed_secs
            } else {
                0.0
            },
            peak_rss_bytes: crate::telemetry::peak_rss_bytes(),
            cpu_seconds: CpuSummary {
                capture: 0.0,
                workers: totals.cpu_seconds,
                output: sinks.cpu_seconds,
            },
        }
    }
}

/// The workers' signature counters with what the alert gate decided (with
/// several workers, it passes every signature alert and applies the
/// thresholds they share).
fn with_gate(
    mut s: analyzers::ids::rules::SignatureStats,
    g: &analyzers::ids::rules::gate::GateStats,
) -> analyzers::ids::rules::SignatureStats {
    s.alerts += g.alerts;
    s.thresholded += g.thresholded;
    s.dropped_per_packet += g.dropped_per_packet;
    s.dropped_per_second += g.dropped_per_second;
    s
}

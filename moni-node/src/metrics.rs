//! The node's Prometheus metrics.
//!
//! Naming follows Prometheus conventions: `moni_` prefix, base units
//! (`_bytes`, `_seconds`), `_total` on counters, `_ratio` for 0..1 values.
//! Labels are bounded: `node` (on every series), `source`, `vnet`, `role`,
//! `reason`, `dataset`, `worker`; never addresses, ports or SSRCs.

use std::collections::HashMap;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    pub source_packets: IntCounterVec,
    pub source_bytes: IntCounterVec,
    pub source_captured_bytes: IntCounterVec,
    pub source_kernel_drops: IntCounterVec,
    pub source_interface_drops: IntCounterVec,
    pub source_queue_drops: IntCounterVec,
    pub source_up: IntGaugeVec,
    pub source_capture_busy: GaugeVec,
    pub vnet_packets: IntCounterVec,
    pub vnet_bytes: IntCounterVec,
    pub vnet_active_flows: IntGaugeVec,
    pub vnet_flows: IntCounterVec,
    pub vnet_flow_evictions: IntCounterVec,
    pub decode_errors: IntCounterVec,
    pub reassembly: IntCounterVec,
    pub worker_busy: GaugeVec,
    pub worker_packets: IntCounterVec,
    pub parquet_files: IntCounterVec,
    pub parquet_rows: IntCounterVec,
    pub parquet_rows_lost: IntCounterVec,
    pub parquet_write_failing: IntGaugeVec,
    pub voip_active_streams: IntGaugeVec,
    pub voip_active_calls: IntGaugeVec,
    pub voip_streams: IntCounterVec,
    pub voip_window_mos: HistogramVec,
    pub voip_last_window_mos: GaugeVec,
    pub voip_last_window_loss: GaugeVec,
    pub voip_last_window_jitter: GaugeVec,
    pub voip_evictions: IntCounterVec,
    pub rss: IntGaugeVec,
    pub reloads: IntCounterVec,
    pub voip_compare_windows: IntCounterVec,
    pub voip_compare_dropped: IntCounterVec,
    pub ship_files: IntCounterVec,
    pub ship_bytes: IntCounterVec,
    pub ship_failures: IntCounterVec,
    pub spool_bytes: IntGaugeVec,
    pub spool_files: IntGaugeVec,
    pub spool_dropped_bytes: IntCounterVec,
    pub spool_dropped_rows: IntCounterVec,
    pub spool_discarded_temp_files: IntCounterVec,
    pub ids_alerts: IntCounterVec,
    pub ids_suppressed: IntCounterVec,
    pub ids_state_keys: IntGaugeVec,
    pub ids_evictions: IntCounterVec,
    pub ids_dropped_alerts: IntCounterVec,
    pub ids_rules: IntGaugeVec,
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn fgauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

const SRC: &[&str] = &["source"];
const VNET: &[&str] = &["vnet", "role"];

impl Metrics {
    pub fn new(node: &str) -> prometheus::Result<Metrics> {
        let labels = HashMap::from([("node".to_string(), node.to_string())]);
        let r = Registry::new_custom(None, Some(labels))?;
        let build = gauge(
            &r,
            "moni_build_info",
            "Build of the running moni-node (value 1).",
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        #[cfg(target_os = "linux")]
        r.register(Box::new(crate::telemetry::ProcessMetrics::for_self()))?;
        let h = HistogramOpts::new(
            "moni_voip_window_mos",
            "MOS-CQ (ITU-T G.107) of finished RTP scoring windows.",
        )
        .buckets(vec![
            1.0, 1.5, 2.0, 2.5, 3.0, 3.3, 3.6, 3.8, 4.0, 4.2, 4.3, 4.4, 4.5,
        ]);
        let voip_window_mos = HistogramVec::new(h, VNET)?;
        r.register(Box::new(voip_window_mos.clone()))?;
        Ok(Metrics {
            source_packets: counter(
                &r,
                "moni_source_packets_total",
                "Packets libpcap delivered from the source.",
                SRC,
            )?,
            source_bytes: counter(
                &r,
                "moni_source_bytes_total",
                "Wire bytes of the packets delivered from the source.",
                SRC,
            )?,
            source_captured_bytes: counter(
                &r,
                "moni_source_captured_bytes_total",
                "Bytes of the packets delivered from the source as captured: what the kernel copied after its cut (the snaplen, and TCP payload nothing reads: [[sources]] tcp_payload).",
                SRC,
            )?,
            source_kernel_drops: counter(
                &r,
                "moni_source_kernel_drops_total",
                "Packets the kernel dropped for the source (capture buffer full).",
                SRC,
            )?,
            source_interface_drops: counter(
                &r,
                "moni_source_interface_drops_total",
                "Packets the interface dropped, as libpcap reports.",
                SRC,
            )?,
            source_queue_drops: counter(
                &r,
                "moni_source_queue_drops_total",
                "Packets dropped because a worker queue was full.",
                SRC,
            )?,
            source_up: gauge(
                &r,
                "moni_source_up",
                "1 while the source is capturing, 0 after it ended or failed.",
                SRC,
            )?,
            source_capture_busy: fgauge(
                &r,
                "moni_source_capture_busy_ratio",
                "Share of the last tick the source's capture thread was on a CPU (reading, decoding for the shard, IDS, batching); near 1 it limits the probe, and more workers do not help.",
                SRC,
            )?,
            vnet_packets: counter(
                &r,
                "moni_vnet_packets_total",
                "Packets analysed per VNet.",
                VNET,
            )?,
            vnet_bytes: counter(
                &r,
                "moni_vnet_bytes_total",
                "Wire bytes analysed per VNet.",
                VNET,
            )?,
            vnet_active_flows: gauge(
                &r,
                "moni_vnet_active_flows",
                "Flows open now per VNet.",
                VNET,
            )?,
            vnet_flows: counter(
                &r,
                "moni_vnet_flows_total",
                "Flow records exported per VNet.",
                VNET,
            )?,
            vnet_flow_evictions: counter(
                &r,
                "moni_vnet_flow_evictions_total",
                "Flows exported early because the flow table was full.",
                VNET,
            )?,
            decode_errors: counter(
                &r,
                "moni_decode_errors_total",
                "Frames whose decoding stopped early, by reason.",
                &["reason"],
            )?,
            reassembly: counter(
                &r,
                "moni_decode_reassembly_total",
                "Reassembly of fragmented tunnel packets, by event (fragments, datagrams, timeouts, evictions, overlaps, invalid).",
                &["event"],
            )?,
            worker_busy: fgauge(
                &r,
                "moni_worker_busy_ratio",
                "Share of the last tick the worker spent analysing packets.",
                &["worker"],
            )?,
            worker_packets: counter(
                &r,
                "moni_worker_packets_total",
                "Packets analysed per worker.",
                &["worker"],
            )?,
            parquet_files: counter(
                &r,
                "moni_parquet_files_total",
                "Parquet files completed per dataset.",
                &["dataset"],
            )?,
            parquet_rows: counter(
                &r,
                "moni_parquet_rows_total",
                "Rows written per dataset, counted when their file is complete.",
                &["dataset"],
            )?,
            parquet_rows_lost: counter(
                &r,
                "moni_parquet_rows_lost_total",
                "Rows lost to failed writes per dataset (the file a failed write broke, and what waited beyond the backlog's cap or at exit).",
                &["dataset"],
            )?,
            parquet_write_failing: gauge(
                &r,
                "moni_parquet_write_failing",
                "1 while a dataset's writes fail (a full disk): its records wait in memory, up to 32 MiB, and are written when a retry succeeds.",
                &["dataset"],
            )?,
            voip_active_streams: gauge(
                &r,
                "moni_voip_active_streams",
                "RTP streams tracked now per VNet.",
                VNET,
            )?,
            voip_active_calls: gauge(
                &r,
                "moni_voip_active_calls",
                "SIP calls open now per VNet.",
                VNET,
            )?,
            voip_streams: counter(
                &r,
                "moni_voip_streams_total",
                "RTP streams finished per VNet.",
                VNET,
            )?,
            voip_window_mos,
            voip_last_window_mos: fgauge(
                &r,
                "moni_voip_last_window_mos",
                "MOS-CQ of the latest finished RTP window per VNet and role.",
                VNET,
            )?,
            voip_last_window_loss: fgauge(
                &r,
                "moni_voip_last_window_loss_ratio",
                "Packet loss ratio of the latest finished RTP window.",
                VNET,
            )?,
            voip_last_window_jitter: fgauge(
                &r,
                "moni_voip_last_window_jitter_seconds",
                "RFC 3550 jitter at the end of the latest finished RTP window.",
                VNET,
            )?,
            voip_evictions: counter(
                &r,
                "moni_voip_evictions_total",
                "Calls, streams and candidates evicted at their caps.",
                &["reason"],
            )?,
            rss: gauge(
                &r,
                "moni_process_peak_resident_memory_bytes",
                "Peak resident set size of moni-node.",
                &[],
            )?,
            reloads: counter(
                &r,
                "moni_config_reloads_total",
                "SIGHUP reloads of the configuration, by result (ok, error, timeout: abandoned after ids.reload_timeout_secs).",
                &["result"],
            )?,
            voip_compare_windows: counter(
                &r,
                "moni_voip_compare_windows_total",
                "Shadow vs production window comparisons, by verdict.",
                &["verdict"],
            )?,
            voip_compare_dropped: counter(
                &r,
                "moni_voip_compare_windows_dropped_total",
                "Production or shadow windows never compared, by reason (cap: more than 200,000 windows waited for their twin; unpaired: no twin within three window lengths; capture_drops: pairs not judged because the probe dropped packets during either window).",
                &["reason"],
            )?,
            ship_files: counter(&r, "moni_ship_files_total", "Parquet files the collector acknowledged, by dataset.", &["dataset"])?,
            ship_bytes: counter(&r, "moni_ship_bytes_total", "Bytes of Parquet the collector acknowledged, by dataset.", &["dataset"])?,
            ship_failures: counter(&r, "moni_ship_failures_total", "Failed uploads, by reason (unavailable: retried; rejected: moved to OUT/rejected).", &["reason"])?,
            spool_bytes: gauge(&r, "moni_spool_bytes", "Bytes of completed Parquet waiting to ship.", &[])?,
            spool_files: gauge(&r, "moni_spool_files", "Completed Parquet files waiting to ship.", &[])?,
            spool_dropped_bytes: counter(&r, "moni_spool_dropped_bytes_total", "Bytes of spooled files deleted because the spool was full (drop_oldest).", &[])?,
            spool_dropped_rows: counter(&r, "moni_spool_dropped_rows_total", "Records not written because the spool was full (stop_writing).", &[])?,
            spool_discarded_temp_files: counter(&r, "moni_spool_discarded_temp_files_total", "Incomplete temporary files removed at start (writes a crash interrupted).", &[])?,
            ids_alerts: counter(&r, "moni_ids_alerts_total", "IDS alerts raised, by kind and severity (1 high .. 3 low).", &["kind", "severity"])?,
            ids_suppressed: counter(&r, "moni_ids_suppressed_alerts_total", "Repeated alerts of an episode, suppressed.", &["worker"])?,
            ids_state_keys: gauge(&r, "moni_ids_state_keys", "Keys held by each IDS detector (worker index, capture:SOURCE when IDS runs in the capture thread, or gate for the signature thresholds several workers share).", &["detector", "worker"])?,
            ids_evictions: counter(&r, "moni_ids_state_evictions_total", "Keys an IDS detector evicted at its cap.", &["detector", "worker"])?,
            ids_dropped_alerts: counter(&r, "moni_ids_dropped_alerts_total", "Alerts dropped, by reason (writer_queue_full: a capture thread's IDS could not queue them; per_packet, per_second: signature alerts past ids.max_alerts_per_packet or ids.max_alerts_per_second).", &["reason"])?,
            ids_rules: gauge(&r, "moni_ids_rules", "Signature rules of [ids] rules, by state (loaded, skipped: outside the supported subset, see moni-node check-rules).", &["state"])?,
            registry: r,
        })
    }

    /// Creates, at zero, every labelled series whose labels are known at
    /// start (per source, VNet, worker, reason, verdict and reload result;
    /// a file source's kernel and interface drops too, which stay 0), so
    /// that the first scrape already has every series of the README's
    /// table, a rate over them is 0 rather than no data, and dashboards
    /// and alert rules see them before the first event.
    pub fn init_zero_series(
        &self,
        vnets: &analyzers::vnet::VnetMap,
        ids: bool,
        sources: &[&str],
        workers: usize,
    ) {
        for e in analyzers::DecodeError::ALL {
            self.decode_errors.with_label_values(&[e.as_str()]);
        }
        for e in REASSEMBLY_EVENTS {
            self.reassembly.with_label_values(&[e]);
        }
        for s in sources {
            let l = [*s];
            // 0 until its capture thread has the source open.
            self.source_up.with_label_values(&l);
            self.source_packets.with_label_values(&l);
            self.source_bytes.with_label_values(&l);
            self.source_captured_bytes.with_label_values(&l);
            self.source_kernel_drops.with_label_values(&l);
            self.source_interface_drops.with_label_values(&l);
            self.source_queue_drops.with_label_values(&l);
            self.source_capture_busy.with_label_values(&l);
        }
        for (_, v) in vnets.iter() {
            let l = [v.name.as_str(), v.role.as_str()];
            self.vnet_flow_evictions.with_label_values(&l);
            self.vnet_packets.with_label_values(&l);
            self.vnet_bytes.with_label_values(&l);
            self.vnet_flows.with_label_values(&l);
            self.vnet_active_flows.with_label_values(&l);
            self.voip_streams.with_label_values(&l);
            self.voip_active_streams.with_label_values(&l);
            self.voip_active_calls.with_label_values(&l);
            self.voip_window_mos.with_label_values(&l);
        }
        for w in 0..workers {
            let w = w.to_string();
            self.worker_packets.with_label_values(&[w.as_str()]);
            self.worker_busy.with_label_values(&[w.as_str()]);
            if ids {
                self.ids_suppressed.with_label_values(&[w.as_str()]);
            }
        }
        // Shipping and the spool, also without `[ship]` (all 0 then): a
        // panel or alert on them starts on 0, not on no data, and a
        // collector down from the start shows at once.
        for r in ["rejected", "unavailable"] {
            self.ship_failures.with_label_values(&[r]);
        }
        for m in [&self.spool_bytes, &self.spool_files] {
            m.with_label_values(&[] as &[&str]);
        }
        for m in [
            &self.spool_dropped_bytes,
            &self.spool_dropped_rows,
            &self.spool_discarded_temp_files,
        ] {
            m.with_label_values(&[] as &[&str]);
        }
        for d in analyzers::schema::DATASETS {
            self.ship_files.with_label_values(&[d]);
            self.ship_bytes.with_label_values(&[d]);
            self.parquet_files.with_label_values(&[d]);
            self.parquet_rows.with_label_values(&[d]);
            self.parquet_rows_lost.with_label_values(&[d]);
            self.parquet_write_failing.with_label_values(&[d]);
        }
        for v in ["shadow_better", "production_better", "equal"] {
            self.voip_compare_windows.with_label_values(&[v]);
        }
        for r in ["cap", "unpaired", "capture_drops"] {
            self.voip_compare_dropped.with_label_values(&[r]);
        }
        if ids {
            for s in sources {
                self.ids_suppressed
                    .with_label_values(&[format!("capture:{s}").as_str()]);
            }
        }
        for r in ["stream_cap", "candidate_cap", "announced_cap", "call_cap"] {
            self.voip_evictions.with_label_values(&[r]);
        }
        for r in ["ok", "error", "timeout"] {
            self.reloads.with_label_values(&[r]);
        }
        for reason in ["writer_queue_full", "per_packet", "per_second"] {
            self.ids_dropped_alerts.with_label_values(&[reason]);
        }
        if ids {
            for k in analyzers::ids::ALERT_KINDS {
                self.ids_alerts
                    .with_label_values(&[k.name, &k.severity.to_string()]);
            }
        }
    }

    /// Publishes the rule counts of the running rule set.
    pub fn set_rules(&self, rules: &analyzers::ids::rules::RuleSet) {
        let n = |x: usize| i64::try_from(x).unwrap_or(i64::MAX);
        self.ids_rules
            .with_label_values(&["loaded"])
            .set(n(rules.rules.len()));
        self.ids_rules
            .with_label_values(&["skipped"])
            .set(n(rules.skipped.len()));
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        if let Some(peak) = crate::telemetry::peak_rss_bytes() {
            self.rss
                .with_label_values(&[] as &[&str])
                .set(i64::try_from(peak).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "Encoding metrics failed.");
        }
        out
    }
}

/// The `event` labels of `moni_decode_reassembly_total`, in the order of
/// [`reassembly_counts`].
pub const REASSEMBLY_EVENTS: [&str; 6] = [
    "fragments",
    "datagrams",
    "timeouts",
    "evictions",
    "overlaps",
    "invalid",
];

/// The reassembly counters in the order of [`REASSEMBLY_EVENTS`].
pub fn reassembly_counts(r: &analyzers::decode::ReassemblyStats) -> [u64; 6] {
    [
        r.fragments,
        r.datagrams,
        r.timeouts,
        r.evictions,
        r.overlaps,
        r.invalid,
    ]
}

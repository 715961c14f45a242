//! The collector's Prometheus metrics (`moni_collector_` prefix, bounded
//! labels: node, dataset, reason, vnet, role).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every reason an upload is refused for (`moni_collector_rejected_uploads_total`),
/// exported at 0 from the start: a counter that appears at 1 has no
/// increase to alert on.
pub const REJECT_REASONS: &[&str] = &[
    "bad_name",
    "bad_value",
    "body",
    "busy",
    "client_certificate",
    "hash_mismatch",
    "no_space",
    "not_parquet",
    "null_in_required",
    "schema_mismatch",
    "schema_version",
    "shutting_down",
    "storage",
    "too_large",
    "too_many_decoded_bytes",
    "too_many_partitions",
    "too_many_rows",
    "too_many_vnets",
    "unauthorized",
    "unknown_dataset",
    "wrong_dataset",
];

pub struct CollectorMetrics {
    registry: Registry,
    pub uploads: IntCounterVec,
    pub duplicates: IntCounterVec,
    pub rows: IntCounterVec,
    pub bytes_stored: IntCounterVec,
    pub rejected: IntCounterVec,
    pub last_seen: GaugeVec,
    pub window_mos: GaugeVec,
    pub upload_seconds: HistogramVec,
    pub spills: IntCounterVec,
    pub uploads_in_progress: IntGauge,
}

impl CollectorMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let c = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let m = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        };
        let uploads = c(
            "moni_collector_uploads_total",
            "Uploads stored (acknowledged), by node and dataset.",
            &["node", "dataset"],
        )?;
        let duplicates = c(
            "moni_collector_duplicate_uploads_total",
            "Uploads whose every part was already stored (retries).",
            &["node", "dataset"],
        )?;
        let rows = c(
            "moni_collector_rows_total",
            "Rows received in stored uploads.",
            &["node", "dataset"],
        )?;
        let bytes_stored = c(
            "moni_collector_stored_bytes_total",
            "Bytes of Parquet written into the dataset.",
            &["node", "dataset"],
        )?;
        let rejected = c(
            "moni_collector_rejected_uploads_total",
            "Uploads refused, by reason.",
            &["reason"],
        )?;
        let spills = c(
            "moni_collector_spills_total",
            "Times an upload's rows of a partition went to a spill file: uploads spread over more partitions than the collector keeps Parquet writers for.",
            &["dataset"],
        )?;
        for reason in REJECT_REASONS {
            rejected.with_label_values(&[reason]);
        }
        for d in analyzers::schema::TABLE {
            spills.with_label_values(&[d.name]);
        }
        let uploads_in_progress = IntGauge::new(
            "moni_collector_uploads_in_progress",
            "Uploads being received or stored now (at most server.max_concurrent_uploads).",
        )?;
        r.register(Box::new(uploads_in_progress.clone()))?;
        let last_seen = GaugeVec::new(
            Opts::new(
                "moni_collector_node_last_seen_timestamp_seconds",
                "Unix time of the node's last stored upload.",
            ),
            &["node"],
        )?;
        r.register(Box::new(last_seen.clone()))?;
        let window_mos = GaugeVec::new(
            Opts::new(
                "moni_collector_window_mos",
                "MOS-CQ of the latest RTP window ingested, per node, VNet and role.",
            ),
            &["node", "vnet", "role"],
        )?;
        r.register(Box::new(window_mos.clone()))?;
        let upload_seconds = HistogramVec::new(
            HistogramOpts::new(
                "moni_collector_upload_seconds",
                "Time from the end of an upload's body to its acknowledgement.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["dataset"],
        )?;
        r.register(Box::new(upload_seconds.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(CollectorMetrics {
            registry: r,
            uploads,
            duplicates,
            rows,
            bytes_stored,
            rejected,
            last_seen,
            window_mos,
            upload_seconds,
            spills,
            uploads_in_progress,
        })
    }

    /// The registry, for metrics registered elsewhere (the connection layer).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "Encoding metrics failed.");
        }
        out
    }
}

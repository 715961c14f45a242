//! Where records go: the Parquet datasets (`flows`, `bins`, ...) and
//! `eve.json`.

pub mod parquet;

use std::path::Path;

use analyzers::record::{BinRecord, FlowRecord, RtpStreamRecord, RtpWindowRecord};
use analyzers::schema;
use analyzers::vnet::VnetMap;

use crate::config::OutputConfig;
pub use parquet::{DatasetWriter, ExportError};

/// The EVE-JSON file in the output directory.
pub const EVE_FILE: &str = "eve.json";

/// The node's datasets.
pub struct Datasets {
    pub flows: DatasetWriter,
    pub bins: DatasetWriter,
    pub rtp_streams: DatasetWriter,
    pub rtp_windows: DatasetWriter,
    pub rtp_compare: DatasetWriter,
    pub calls: DatasetWriter,
    pub alerts: DatasetWriter,
    /// `OUT/eve.json`: alerts as Suricata EVE-JSON lines. Created at start
    /// (empty when nothing alerts), so a tool tailing it, like Suricata's
    /// own, finds the file from the first moment.
    eve: Option<std::io::BufWriter<std::fs::File>>,
    eve_path: std::path::PathBuf,
    /// `host` and `in_iface` of EVE lines.
    pub eve_host: String,
    pub eve_iface: String,
}

impl Datasets {
    pub fn create(out_dir: &Path, config: &OutputConfig) -> Result<Datasets, ExportError> {
        let eve_path = out_dir.join(EVE_FILE);
        std::fs::create_dir_all(out_dir).map_err(|source| ExportError::Io {
            path: out_dir.to_path_buf(),
            source,
        })?;
        let eve_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&eve_path)
            .map_err(|source| ExportError::Io {
                path: eve_path.clone(),
                source,
            })?;
        Ok(Datasets {
            flows: DatasetWriter::new(out_dir, "flows", schema::flows_schema(), config)?,
            bins: DatasetWriter::new(out_dir, "bins", schema::bins_schema(), config)?,
            rtp_streams: DatasetWriter::new(
                out_dir,
                "rtp_streams",
                schema::rtp_streams_schema(),
                config,
            )?,
            rtp_windows: DatasetWriter::new(
                out_dir,
                "rtp_windows",
                schema::rtp_windows_schema(),
                config,
            )?,
            rtp_compare: DatasetWriter::new(
                out_dir,
                "rtp_compare",
                schema::rtp_compare_schema(),
                config,
            )?,
            calls: DatasetWriter::new(out_dir, "calls", schema::calls_schema(), config)?,
            alerts: DatasetWriter::new(out_dir, "alerts", schema::alerts_schema(), config)?,
            eve: Some(std::io::BufWriter::new(eve_file)),
            eve_path,
            eve_host: "moni".into(),
            eve_iface: String::new(),
        })
    }

    /// Every dataset, in a stable order.
    pub fn all(&self) -> [&DatasetWriter; 7] {
        [
            &self.flows,
            &self.bins,
            &self.rtp_streams,
            &self.rtp_windows,
            &self.rtp_compare,
            &self.calls,
            &self.alerts,
        ]
    }

    /// Writes alerts to the `alerts` dataset (in batches bounded in rows
    /// and bytes) and as EVE-JSON lines.
    pub fn write_alerts(
        &mut self,
        r: &[analyzers::record::AlertRecord],
        vnets: &VnetMap,
    ) -> Result<(), ExportError> {
        if r.is_empty() {
            return Ok(());
        }
        for chunk in schema::alert_chunks(r) {
            let b = schema::alerts_batch(chunk, vnets).map_err(|e| arrow_error("alerts", e))?;
            self.alerts.write(&b)?;
        }
        use std::io::Write;
        let io = |path: &std::path::Path, source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        };
        if self.eve.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.eve_path)
                .map_err(|e| io(&self.eve_path, e))?;
            self.eve = Some(std::io::BufWriter::new(f));
        }
        if let Some(w) = self.eve.as_mut() {
            for a in r {
                let line = schema::alert_eve_json(a, vnets, &self.eve_host, &self.eve_iface);
                writeln!(w, "{line}").map_err(|e| io(&self.eve_path, e))?;
            }
            w.flush().map_err(|e| io(&self.eve_path, e))?;
        }
        Ok(())
    }

    pub fn write_calls(
        &mut self,
        r: &[analyzers::record::CallRecord],
        vnets: &VnetMap,
    ) -> Result<(), ExportError> {
        if r.is_empty() {
            return Ok(());
        }
        let b = schema::calls_batch(r, vnets).map_err(|e| arrow_error("calls", e))?;
        self.calls.write(&b)
    }

    pub fn write_compare(
        &mut self,
        r: &[analyzers::voip::compare::RtpCompareRecord],
        vnets: &VnetMap,
    ) -> Result<(), ExportError> {
        if r.is_empty() {
            return Ok(());
        }
        let b = schema::rtp_compare_batch(r, vnets).map_err(|e| arrow_error("rtp_compare", e))?;
        self.rtp_compare.write(&b)
    }

    pub fn write_rtp(
        &mut self,
        windows: &[RtpWindowRecord],
        streams: &[RtpStreamRecord],
        vnets: &VnetMap,
    ) -> Result<(), ExportError> {
        if !windows.is_empty() {
            let b = schema::rtp_windows_batch(windows, vnets)
                .map_err(|e| arrow_error("rtp_windows", e))?;
            self.rtp_windows.write(&b)?;
        }
        if !streams.is_empty() {
            let b = schema::rtp_streams_batch(streams, vnets)
                .map_err(|e| arrow_error("rtp_streams", e))?;
            self.rtp_streams.write(&b)?;
        }
        Ok(())
    }

    pub fn write_flows(&mut self, r: &[FlowRecord], vnets: &VnetMap) -> Result<(), ExportError> {
        if r.is_empty() {
            return Ok(());
        }
        let batch = schema::flows_batch(r, vnets).map_err(|e| arrow_error("flows", e))?;
        self.flows.write(&batch)
    }

    pub fn write_bins(&mut self, r: &[BinRecord], vnets: &VnetMap) -> Result<(), ExportError> {
        if r.is_empty() {
            return Ok(());
        }
        let batch = schema::bins_batch(r, vnets).map_err(|e| arrow_error("bins", e))?;
        self.bins.write(&batch)
    }

    pub fn rotate_if_due(&mut self) -> Result<(), ExportError> {
        self.flows.rotate_if_due()?;
        self.bins.rotate_if_due()?;
        self.rtp_streams.rotate_if_due()?;
        self.rtp_windows.rotate_if_due()?;
        self.rtp_compare.rotate_if_due()?;
        self.calls.rotate_if_due()?;
        self.alerts.rotate_if_due()
    }

    /// Completes every open file.
    pub fn close(&mut self) -> Result<(), ExportError> {
        self.flows.close_current()?;
        self.bins.close_current()?;
        self.rtp_streams.close_current()?;
        self.rtp_windows.close_current()?;
        self.rtp_compare.close_current()?;
        self.calls.close_current()?;
        self.alerts.close_current()?;
        if let Some(w) = self.eve.as_mut() {
            use std::io::Write;
            w.flush().map_err(|source| ExportError::Io {
                path: self.eve_path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

fn arrow_error(dataset: &str, e: arrow::error::ArrowError) -> ExportError {
    ExportError::Settings {
        dataset: dataset.to_string(),
        message: e.to_string(),
    }
}

//! Where records go: the Parquet datasets (`flows`, `bins`).

pub mod parquet;

use std::path::Path;

use analyzers::record::{BinRecord, FlowRecord};
use analyzers::schema;
use analyzers::vnet::VnetMap;

use crate::config::OutputConfig;
pub use parquet::{DatasetWriter, ExportError};

/// The node's datasets.
pub struct Datasets {
    pub flows: DatasetWriter,
    pub bins: DatasetWriter,
}

impl Datasets {
    pub fn create(out_dir: &Path, config: &OutputConfig) -> Result<Datasets, ExportError> {
        Ok(Datasets {
            flows: DatasetWriter::new(out_dir, "flows", schema::flows_schema(), config)?,
            bins: DatasetWriter::new(out_dir, "bins", schema::bins_schema(), config)?,
        })
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
        self.bins.rotate_if_due()
    }

    /// Completes every open file.
    pub fn close(&mut self) -> Result<(), ExportError> {
        self.flows.close_current()?;
        self.bins.close_current()
    }
}

fn arrow_error(dataset: &str, e: arrow::error::ArrowError) -> ExportError {
    ExportError::Settings {
        dataset: dataset.to_string(),
        message: e.to_string(),
    }
}

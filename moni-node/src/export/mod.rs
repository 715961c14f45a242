//! Where records go: one Parquet dataset per entry of
//! [`analyzers::schema::TABLE`] (`flows`, `bins`, `rtp_streams`,
//! `rtp_windows`, `rtp_compare`, `calls`, `alerts`), written by
//! [`parquet::DatasetWriter`], and the alerts again as Suricata EVE JSON
//! in `eve.json` ([`eve`]).
//!
//! [`Datasets`] holds one writer per table entry, in the table's order,
//! and writes any record type through its [`DatasetRecord`] impl
//! ([`Datasets::write`]): a new dataset needs no code here.

pub mod eve;
pub mod parquet;

use std::path::Path;

use analyzers::record::{BinRecord, FlowRecord, RtpStreamRecord, RtpWindowRecord};
use analyzers::schema::{self, DatasetRecord};
use analyzers::vnet::VnetMap;
use arrow::array::RecordBatch;

use crate::config::OutputConfig;
pub use parquet::{DatasetWriter, ExportError};

/// The EVE-JSON file in the output directory.
pub const EVE_FILE: &str = "eve.json";

/// The node's datasets.
pub struct Datasets {
    /// One writer per entry of [`schema::TABLE`], in its order.
    writers: Vec<DatasetWriter>,
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
    /// The datasets under `out_dir`; `workers` analysis workers feed them
    /// (the encoding threads when `encode_threads` is 0).
    pub fn create(
        out_dir: &Path,
        config: &OutputConfig,
        workers: usize,
    ) -> Result<Datasets, ExportError> {
        let mut config = config.clone();
        if config.encode_threads == 0 {
            config.encode_threads = workers.max(1);
        }
        let config = &config;
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
        let writers = schema::TABLE
            .iter()
            .map(|d| DatasetWriter::for_dataset(out_dir, d, config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Datasets {
            writers,
            eve: Some(std::io::BufWriter::new(eve_file)),
            eve_path,
            eve_host: "moni".into(),
            eve_iface: String::new(),
        })
    }

    /// Every dataset, in the order of [`schema::TABLE`].
    pub fn all(&self) -> &[DatasetWriter] {
        &self.writers
    }

    /// The writer of dataset `name`.
    pub fn get(&self, name: &str) -> Option<&DatasetWriter> {
        self.writers.iter().find(|w| w.dataset() == name)
    }

    /// Writes records to their dataset (nothing for no records).
    pub fn write<R: DatasetRecord>(
        &mut self,
        records: &[R],
        vnets: &VnetMap,
    ) -> Result<(), ExportError> {
        let name = R::DATASET.name;
        let batches = schema::batches(records, vnets).map_err(|e| arrow_error(name, e))?;
        self.write_batches(name, &batches)
    }

    /// Writes batches of dataset `name` that a worker already converted
    /// (see [`crate::sink::Records::flow_batches`]).
    pub fn write_batches(
        &mut self,
        name: &str,
        batches: &[RecordBatch],
    ) -> Result<(), ExportError> {
        if batches.is_empty() {
            return Ok(());
        }
        let Some(w) = self.writers.iter_mut().find(|w| w.dataset() == name) else {
            return Err(ExportError::Settings {
                dataset: name.to_string(),
                message: "not in analyzers::schema::TABLE".into(),
            });
        };
        // Every batch, also after a failure (the writer then holds them
        // for its retry); the first error is returned.
        let mut first = Ok(());
        for b in batches {
            if let Err(e) = w.write(b) {
                first = first.and(Err(e));
            }
        }
        first
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
        self.write(r, vnets)?;
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
                let line = eve::alert_eve_json(a, vnets, &self.eve_host, &self.eve_iface);
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
        self.write(r, vnets)
    }

    pub fn write_compare(
        &mut self,
        r: &[analyzers::voip::compare::RtpCompareRecord],
        vnets: &VnetMap,
    ) -> Result<(), ExportError> {
        self.write(r, vnets)
    }

    pub fn write_rtp(
        &mut self,
        windows: &[RtpWindowRecord],
        streams: &[RtpStreamRecord],
        vnets: &VnetMap,
    ) -> Result<(), ExportError> {
        self.write(windows, vnets)?;
        self.write(streams, vnets)
    }

    pub fn write_flows(&mut self, r: &[FlowRecord], vnets: &VnetMap) -> Result<(), ExportError> {
        self.write(r, vnets)
    }

    pub fn write_bins(&mut self, r: &[BinRecord], vnets: &VnetMap) -> Result<(), ExportError> {
        self.write(r, vnets)
    }

    /// Rotates every writer whose file is due; the first error.
    pub fn rotate_if_due(&mut self) -> Result<(), ExportError> {
        let mut first = Ok(());
        for w in &mut self.writers {
            if let Err(e) = w.rotate_if_due() {
                first = first.and(Err(e));
            }
        }
        first
    }

    /// Whether any writer's writes are failing.
    pub fn is_failing(&self) -> bool {
        self.writers.iter().any(DatasetWriter::is_failing)
    }

    /// Tries the failing writers' backlogs whose time has come (every one
    /// with `force`); `Ok(true)` when one recovered.
    pub fn retry_if_due(&mut self, force: bool) -> Result<bool, ExportError> {
        let mut first = Ok(false);
        for w in &mut self.writers {
            match w.retry_if_due(force) {
                Ok(true) => first = first.map(|_| true),
                Ok(false) => {}
                Err(e) => first = first.and(Err(e)),
            }
        }
        first
    }

    /// Completes every open file: a failing writer's backlog is tried once
    /// more, and given up (counted lost) if it fails again.
    ///
    /// The datasets close side by side, one thread each: a file's close
    /// ends in an fsync, which waits for the disk. One after another, the
    /// five files of a VoIP replay waited 14 ms on this project's VM with
    /// the disk busy (a build beside it), 4-5 ms with it idle.
    pub fn close(&mut self) -> Result<(), ExportError> {
        let close = |w: &mut DatasetWriter| {
            let done = if w.is_failing() {
                w.retry_if_due(true).map(|_| ())
            } else {
                Ok(())
            }
            .and_then(|()| w.close_current());
            if done.is_err() {
                w.give_up();
            }
            done
        };
        let results: Vec<Result<(), ExportError>> = std::thread::scope(|scope| {
            let open: Vec<_> = self
                .writers
                .iter_mut()
                .filter(|w| w.has_open_file() || w.is_failing())
                .map(|w| scope.spawn(move || close(w)))
                .collect();
            open.into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        // The first failure in the table's order, as before.
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The datasets page (docs/datasets.md) names the folder of every
    /// dataset of the table.
    #[test]
    fn datasets_page_lists_every_dataset_of_the_table() {
        let page = include_str!("../../../docs/datasets.md");
        for d in &schema::TABLE {
            let folder = format!("`OUT/{}/`", d.name);
            assert!(page.contains(&folder), "docs/datasets.md lacks {folder}");
        }
    }

    /// The writer has one dataset per table entry, in the table's order,
    /// and writes a record type to its own dataset.
    #[test]
    fn one_writer_per_table_entry() {
        let t = std::env::temp_dir().join(format!("moni-export-{}", std::process::id()));
        let mut out = Datasets::create(&t, &OutputConfig::default(), 1).expect("create");
        let names: Vec<&str> = out.all().iter().map(DatasetWriter::dataset).collect();
        assert_eq!(names, schema::DATASETS);
        let bins = vec![BinRecord::default(); 3];
        out.write(&bins, &VnetMap::default()).expect("write");
        out.write::<FlowRecord>(&[], &VnetMap::default())
            .expect("nothing");
        out.close().expect("close");
        for w in out.all() {
            let want = if w.dataset() == "bins" { 3 } else { 0 };
            assert_eq!(w.rows_written, want, "{}", w.dataset());
        }
        assert_eq!(out.get("bins").map(|w| w.files.len()), Some(1));
        let _ = std::fs::remove_dir_all(&t);
    }
}

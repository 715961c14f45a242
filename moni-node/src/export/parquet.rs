//! Parquet datasets on disk.
//!
//! Each dataset is a folder under the output directory (`OUT/flows/`,
//! `OUT/bins/`). A file is written under a hidden temporary name
//! (`.NAME.parquet.tmp`, ignored by `*.parquet` globs), fsynced, and renamed
//! to `NAME.parquet` only when complete, so a reader never sees a partial
//! file. Files rotate after `rotate_secs` of wall time or about
//! `rotate_max_bytes`, whichever comes first. Row groups hold at most
//! `row_group_rows` rows or about 64 MiB, which bounds the writer's memory.
//!
//! File names are `DATASET-YYYYmmddTHHMMSSZ-PID-SEQ.parquet`: unique per
//! process and sortable by creation time.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use analyzers::schema::{Dataset, META_DATASET, META_SCHEMA_VERSION, SCHEMA_VERSION};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::config::OutputConfig;

/// Errors writing a dataset, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{dataset}: bad output settings: {message}")]
    Settings { dataset: String, message: String },
}

/// A row group is closed once the writer buffers this many bytes, even
/// before `row_group_rows` rows.
const ROW_GROUP_MAX_BYTES: usize = 64 << 20;

struct OpenFile {
    writer: ArrowWriter<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    opened: Instant,
}

/// A rotating writer for one dataset.
pub struct DatasetWriter {
    dataset: &'static str,
    dir: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    rotate_secs: u64,
    rotate_max_bytes: u64,
    current: Option<OpenFile>,
    seq: u64,
    /// Completed files, in order.
    pub files: Vec<PathBuf>,
    pub rows_written: u64,
}

impl DatasetWriter {
    /// Prepares `OUT/<dataset>/`; no file is created until rows arrive.
    pub fn new(
        out_dir: &Path,
        dataset: &'static str,
        schema: SchemaRef,
        config: &OutputConfig,
    ) -> Result<DatasetWriter, ExportError> {
        let dir = out_dir.join(dataset);
        fs::create_dir_all(&dir).map_err(|source| ExportError::Io {
            path: dir.clone(),
            source,
        })?;
        let level = ZstdLevel::try_new(config.zstd_level).map_err(|e| ExportError::Settings {
            dataset: dataset.to_string(),
            message: e.to_string(),
        })?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_dictionary_enabled(false);
        for f in schema.fields() {
            if repeats(f) {
                props =
                    props.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true);
            }
        }
        let props = props
            .set_max_row_group_row_count(Some(config.row_group_rows))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(META_DATASET.to_string(), dataset.to_string()),
                KeyValue::new(META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
                KeyValue::new(
                    "moni.writer".to_string(),
                    format!("moni-node {}", env!("CARGO_PKG_VERSION")),
                ),
                // Distinguishes this process's files from a rerun's that
                // hold the same rows (a capture replayed twice): a collector
                // stores by content hash, and only a retry may match.
                KeyValue::new("moni.run".to_string(), run_id().to_string()),
            ]))
            .build();
        Ok(DatasetWriter {
            dataset,
            dir,
            schema,
            props,
            rotate_secs: config.rotate_secs,
            rotate_max_bytes: config.rotate_max_bytes,
            current: None,
            seq: 0,
            files: Vec::new(),
            rows_written: 0,
        })
    }

    /// [`DatasetWriter::new`] for an entry of [`analyzers::schema::TABLE`].
    pub fn for_dataset(
        out_dir: &Path,
        dataset: &Dataset,
        config: &OutputConfig,
    ) -> Result<DatasetWriter, ExportError> {
        DatasetWriter::new(out_dir, dataset.name, (dataset.schema)(), config)
    }

    pub fn dataset(&self) -> &'static str {
        self.dataset
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a batch, opening or rotating files as needed.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.current.is_none() {
            self.open()?;
        }
        let Some(f) = self.current.as_mut() else {
            return Ok(());
        };
        f.writer
            .write(batch)
            .map_err(|source| ExportError::Parquet {
                path: f.tmp_path.clone(),
                source,
            })?;
        self.rows_written += batch.num_rows() as u64;
        if f.writer.in_progress_size() >= ROW_GROUP_MAX_BYTES {
            // A row group of long rows (alerts with long messages) ends
            // early: what the writer buffers stays bounded in bytes too.
            f.writer.flush().map_err(|source| ExportError::Parquet {
                path: f.tmp_path.clone(),
                source,
            })?;
        }
        let size = (f.writer.bytes_written() + f.writer.in_progress_size()) as u64;
        if size >= self.rotate_max_bytes || f.opened.elapsed().as_secs() >= self.rotate_secs {
            self.close_current()?;
        }
        Ok(())
    }

    /// Closes the current file if it is older than the rotation interval
    /// (call periodically when rows arrive slowly).
    pub fn rotate_if_due(&mut self) -> Result<(), ExportError> {
        if self
            .current
            .as_ref()
            .is_some_and(|f| f.opened.elapsed().as_secs() >= self.rotate_secs)
        {
            self.close_current()?;
        }
        Ok(())
    }

    /// Completes the open file, if any: footer, fsync, rename.
    pub fn close_current(&mut self) -> Result<(), ExportError> {
        let Some(f) = self.current.take() else {
            return Ok(());
        };
        let tmp = f.tmp_path.clone();
        let file = f
            .writer
            .into_inner()
            .map_err(|source| ExportError::Parquet {
                path: tmp.clone(),
                source,
            })?;
        file.sync_all().map_err(|source| ExportError::Io {
            path: tmp.clone(),
            source,
        })?;
        fs::rename(&tmp, &f.final_path).map_err(|source| ExportError::Io {
            path: f.final_path.clone(),
            source,
        })?;
        tracing::debug!(file = %f.final_path.display(), dataset = self.dataset, "Parquet file complete.");
        self.files.push(f.final_path);
        Ok(())
    }

    fn open(&mut self) -> Result<(), ExportError> {
        self.seq += 1;
        let name = format!(
            "{}-{}-{}-{:06}.parquet",
            self.dataset,
            utc_compact(SystemTime::now()),
            std::process::id(),
            self.seq
        );
        let final_path = self.dir.join(&name);
        let tmp_path = self.dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp_path).map_err(|source| ExportError::Io {
            path: tmp_path.clone(),
            source,
        })?;
        let writer = ArrowWriter::try_new(file, Arc::clone(&self.schema), Some(self.props.clone()))
            .map_err(|source| ExportError::Parquet {
                path: tmp_path.clone(),
                source,
            })?;
        self.current = Some(OpenFile {
            writer,
            tmp_path,
            final_path,
            opened: Instant::now(),
        });
        Ok(())
    }
}

/// Whether a column's values repeat enough to pay for a dictionary: the
/// strings that name one of a few things (`vnet`, `role`, `end_reason`,
/// codecs, alert kinds, tunnel types). Addresses, ids, free text and every
/// number (counters, times, ports, which zstd packs as well without the
/// dictionary's hashing) are written plain: a dictionary over a million
/// distinct addresses costs a hash per value and then falls back anyway.
fn repeats(f: &arrow::datatypes::Field) -> bool {
    let name = f.name();
    matches!(f.data_type(), arrow::datatypes::DataType::Utf8)
        && !name.ends_with("_addr")
        && !matches!(
            name.as_str(),
            "call_id" | "details" | "loss_run_hist" | "caller" | "callee"
        )
}

/// This process's run: pid and start time (ns since the epoch).
fn run_id() -> &'static str {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{}-{ns}", std::process::id())
    })
}

/// `YYYYmmddTHHMMSSZ` for a wall-clock time (UTC, proleptic Gregorian).
pub fn utc_compact(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let u = analyzers::Timestamp::from_secs(secs).utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        u.year, u.month, u.day, u.hour, u.minute, u.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use analyzers::time::civil_from_days;
    use std::time::Duration;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc_compact(t), "20231114T221320Z");
    }
}

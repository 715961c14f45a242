//! Durable storage of uploads in the Hive layout
//! `DATA/<dataset>/node=<id>/vnet=<name>/date=YYYY-MM-DD/hour=HH/<hash>.parquet`.
//!
//! An upload is validated (a Parquet file of a known dataset, with that
//! dataset's schema and schema version), split by VNet and hour, and each
//! part is written under `DATA/.incoming/`, fsynced, then renamed into its
//! partition, whose directory is fsynced too. Only then does the server
//! acknowledge. A part is named by the content hash of the upload, so a
//! retried upload (lost acknowledgement) finds its parts already there and
//! stores nothing twice; a crash mid-way leaves only hidden temporary files
//! and the retry completes the missing parts.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use analyzers::schema::{self, META_DATASET, META_SCHEMA_VERSION, SCHEMA_VERSION};
use analyzers::Timestamp;
use arrow::array::{
    Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::compute::{concat_batches, take};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::config::safe_component;

/// Why an upload was refused; each maps to an HTTP status and a metric
/// reason.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("unknown dataset {0:?}")]
    UnknownDataset(String),
    #[error("not a readable Parquet file: {0}")]
    NotParquet(String),
    #[error("file says dataset {found:?}, uploaded as {expected:?}")]
    WrongDataset { expected: String, found: String },
    #[error("schema version {found:?} not supported (this collector reads {SCHEMA_VERSION})")]
    SchemaVersion { found: String },
    #[error("schema does not match dataset {dataset}: {detail}")]
    SchemaMismatch { dataset: String, detail: String },
    #[error("name {0:?} is not allowed in a path")]
    BadName(String),
    #[error("content hash mismatch: header {header}, body {body}")]
    HashMismatch { header: String, body: String },
    #[error("storage error: {0}")]
    Io(String),
}

impl IngestError {
    pub fn status(&self) -> u16 {
        match self {
            IngestError::UnknownDataset(_)
            | IngestError::BadName(_)
            | IngestError::HashMismatch { .. } => 400,
            IngestError::Io(_) => 500,
            _ => 422,
        }
    }

    /// The `reason` label of the rejection counter.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::UnknownDataset(_) => "unknown_dataset",
            IngestError::NotParquet(_) => "not_parquet",
            IngestError::WrongDataset { .. } => "wrong_dataset",
            IngestError::SchemaVersion { .. } => "schema_version",
            IngestError::SchemaMismatch { .. } => "schema_mismatch",
            IngestError::BadName(_) => "bad_name",
            IngestError::HashMismatch { .. } => "hash_mismatch",
            IngestError::Io(_) => "storage",
        }
    }
}

fn io(e: impl std::fmt::Display) -> IngestError {
    IngestError::Io(e.to_string())
}

/// What one upload stored.
#[derive(Debug, Default, serde::Serialize)]
pub struct Stored {
    pub rows: u64,
    /// Partition files of this upload.
    pub parts: usize,
    /// Of those, how many were already stored (a retried upload).
    pub already_stored: usize,
    pub bytes: u64,
    /// For `rtp_windows`: the MOS-CQ of the latest window per (VNet, role).
    #[serde(skip)]
    pub latest_mos: Vec<(String, String, f64)>,
}

/// The hidden directory for temporary files (never matched by readers
/// globbing `DATA/<dataset>/**`).
pub fn incoming_dir(data: &Path) -> PathBuf {
    data.join(".incoming")
}

/// Removes temporary files left by a crash (called at start).
pub fn clean_incoming(data: &Path) -> std::io::Result<usize> {
    let dir = incoming_dir(data);
    std::fs::create_dir_all(&dir)?;
    let mut n = 0;
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        if p.is_file() {
            std::fs::remove_file(&p)?;
            n += 1;
        }
    }
    Ok(n)
}

fn check_schema(dataset: &str, got: &arrow::datatypes::Schema) -> Result<(), IngestError> {
    let Some(want) = schema::for_dataset(dataset) else {
        return Err(IngestError::UnknownDataset(dataset.to_string()));
    };
    let mismatch = |detail: String| IngestError::SchemaMismatch {
        dataset: dataset.to_string(),
        detail,
    };
    if got.fields().len() != want.fields().len() {
        return Err(mismatch(format!(
            "{} columns, expected {}",
            got.fields().len(),
            want.fields().len()
        )));
    }
    for (g, w) in got.fields().iter().zip(want.fields().iter()) {
        if g.name() != w.name() || g.data_type() != w.data_type() {
            return Err(mismatch(format!(
                "column {} {:?}, expected {} {:?}",
                g.name(),
                g.data_type(),
                w.name(),
                w.data_type()
            )));
        }
    }
    Ok(())
}

/// One partition of an upload, encoded and ready to store under `key`
/// (relative to the dataset root, `/`-separated).
pub struct Part {
    pub key: String,
    pub bytes: Vec<u8>,
}

/// An upload validated and split into partitions.
pub struct Prepared {
    pub parts: Vec<Part>,
    pub rows: u64,
    /// For `rtp_windows`: the MOS-CQ of the latest window per (VNet, role).
    pub latest_mos: Vec<(String, String, f64)>,
}

/// Validates the uploaded file at `tmp` (SHA-256 `hash`) and splits it by
/// VNet and hour into Parquet parts named by the hash.
pub fn prepare(dataset: &str, node: &str, tmp: &Path, hash: &str) -> Result<Prepared, IngestError> {
    let Some((vnet_col, time_col)) = schema::partition_columns(dataset) else {
        return Err(IngestError::UnknownDataset(dataset.to_string()));
    };
    if !safe_component(node) {
        return Err(IngestError::BadName(node.to_string()));
    }
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(IngestError::BadName(hash.to_string()));
    }
    let file = File::open(tmp).map_err(io)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| IngestError::NotParquet(e.to_string()))?;
    let meta = |key: &str| -> Option<String> {
        builder
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .clone()
    };
    let found = meta(META_DATASET).unwrap_or_default();
    if found != dataset {
        return Err(IngestError::WrongDataset {
            expected: dataset.to_string(),
            found,
        });
    }
    let version = meta(META_SCHEMA_VERSION).unwrap_or_default();
    if version != SCHEMA_VERSION {
        return Err(IngestError::SchemaVersion { found: version });
    }
    check_schema(dataset, builder.schema())?;
    let reader = builder
        .with_batch_size(65_536)
        .build()
        .map_err(|e| IngestError::NotParquet(e.to_string()))?;

    // Rows grouped by partition (VNet, date, hour).
    let mut parts: BTreeMap<(String, String, String), Vec<RecordBatch>> = BTreeMap::new();
    let mut rows_total = 0u64;
    let mut latest: BTreeMap<(String, String), (i64, f64)> = BTreeMap::new();
    for batch in reader {
        let batch = batch.map_err(|e| IngestError::NotParquet(e.to_string()))?;
        rows_total += batch.num_rows() as u64;
        let vnets = column::<StringArray>(&batch, vnet_col)?;
        let times = column::<TimestampMicrosecondArray>(&batch, time_col)?;
        let mut rows: BTreeMap<(String, String, String), Vec<u32>> = BTreeMap::new();
        for i in 0..batch.num_rows() {
            let vnet = vnets.value(i);
            if !safe_component(vnet) {
                return Err(IngestError::BadName(vnet.to_string()));
            }
            let (date, hour) = Timestamp(times.value(i)).utc_date_hour();
            rows.entry((vnet.to_string(), date, hour))
                .or_default()
                .push(i as u32);
        }
        if dataset == "rtp_windows" {
            let roles = column::<StringArray>(&batch, "role")?;
            let mos = column::<Float64Array>(&batch, "mos_cq")?;
            for i in 0..batch.num_rows() {
                let k = (vnets.value(i).to_string(), roles.value(i).to_string());
                let e = latest.entry(k).or_insert((i64::MIN, 0.0));
                if times.value(i) >= e.0 {
                    *e = (times.value(i), mos.value(i));
                }
            }
        }
        for (key, idx) in rows {
            let idx = UInt32Array::from(idx);
            let cols = batch
                .columns()
                .iter()
                .map(|c| take(c, &idx, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(io)?;
            let part = RecordBatch::try_new(batch.schema(), cols).map_err(io)?;
            parts.entry(key).or_default().push(part);
        }
    }
    let mut out = Vec::new();
    for ((vnet, date, hour), batches) in parts {
        let Some(first) = batches.first() else {
            continue;
        };
        let all = concat_batches(&first.schema(), &batches).map_err(io)?;
        out.push(Part {
            key: format!(
                "{dataset}/node={node}/vnet={vnet}/date={date}/hour={hour}/{hash}.parquet"
            ),
            bytes: encode(dataset, &all)?,
        });
    }
    Ok(Prepared {
        parts: out,
        rows: rows_total,
        latest_mos: latest
            .into_iter()
            .map(|((v, r), (_, m))| (v, r, m))
            .collect(),
    })
}

fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, IngestError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| IngestError::SchemaMismatch {
            dataset: String::new(),
            detail: format!("column {name} missing or of another type"),
        })
}

fn encode(dataset: &str, batch: &RecordBatch) -> Result<Vec<u8>, IngestError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(io)?))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(META_DATASET.to_string(), dataset.to_string()),
            KeyValue::new(META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
        ]))
        .build();
    let mut out = Vec::new();
    let mut w =
        ArrowWriter::try_new(&mut out, Arc::clone(&batch.schema()), Some(props)).map_err(io)?;
    w.write(batch).map_err(io)?;
    w.close().map_err(io)?;
    Ok(out)
}

/// Stores one part under `data`: temporary file, fsync, rename, fsync of
/// the directory. `None` when it was already there (a retried upload).
pub fn store_local(data: &Path, part: &Part) -> Result<Option<u64>, IngestError> {
    let path = data.join(&part.key);
    if path.exists() {
        return Ok(None);
    }
    let Some(dir) = path.parent() else {
        return Err(IngestError::BadName(part.key.clone()));
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = incoming_dir(data).join(format!("{}-{seq}.part.tmp", std::process::id()));
    let mut file = File::create(&tmp).map_err(io)?;
    std::io::Write::write_all(&mut file, &part.bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(Some(part.bytes.len() as u64))
}

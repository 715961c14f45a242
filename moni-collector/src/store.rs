//! Durable storage of uploads in the Hive layout
//! `DATA/<dataset>/node=<id>/vnet=<name>/date=YYYY-MM-DD/hour=HH/<hash>.parquet`.
//!
//! As in the tables Hive and Spark write, a part file does not repeat its
//! partition columns: the `vnet` column of a node's file is the `vnet=`
//! directory here and is left out of the part ([`stored_schema`]). A reader
//! that merges the file schema with the partition keys (pandas, pyarrow,
//! Polars, Spark, DuckDB with `hive_partitioning`) would otherwise find
//! `vnet` twice with two types and refuse the directory. `rtp_compare` is
//! partitioned by `production_vnet` under the same `vnet=` level and keeps
//! its columns (no name clashes there).
//!
//! Spark and Hive have no unsigned integers (Spark reads a Parquet
//! `uint64` as `decimal(20,0)`, and pandas through Spark gets `Decimal`
//! objects), so the store keeps the node's `uint64` counters as `int64`
//! ([`stored_type`]): every reader takes them as a plain long. A node's
//! counters stay far below 2^63; an upload holding a larger value is
//! refused as a schema mismatch rather than stored wrapped.
//!
//! An upload is validated (a Parquet file of a dataset of
//! `analyzers::schema::TABLE`, with that dataset's schema and schema
//! version, no nulls in NOT NULL columns) and split by VNet and hour (the
//! table entry's partition columns) **as it is read**: batch by batch,
//! each batch's rows go to their partition's Parquet writer under
//! `DATA/.incoming/`, which flushes its row group once it holds a few MiB,
//! or, for a partition without one, are held in memory, then in a spill
//! file, and written at the end ([`Partitions`]). Memory therefore grows
//! with the upload's row groups and a few writers, not with its decoded
//! rows or its partitions. Rows, decoded bytes and partitions per upload
//! are capped ([`Limits`]).
//!
//! Commit ([`commit_local`]) makes the parts visible all or none: every
//! part is already written and fsynced under `.incoming`; the partition
//! directories are created (new ones fsynced in their parents); a manifest
//! (`.incoming/*.commit`) naming every part is written and fsynced; the
//! parts are renamed in one pass and their directories fsynced; the
//! manifest is removed. A failure before the manifest removes every
//! temporary part (nothing visible); a rename failure renames the moved
//! parts back. After a crash, [`recover`] finishes every commit whose
//! manifest exists and removes all other temporary files, so an upload
//! interrupted by kill -9 is either fully stored or not at all once the
//! collector is back. A part named by the upload's hash that already
//! exists is not written again, so a retry stores nothing twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use analyzers::schema::{self, META_DATASET, META_SCHEMA_VERSION, SCHEMA_VERSION};
use analyzers::Timestamp;
use arrow::array::UInt32Array;
use arrow::array::{Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::compute::kernels::cast::{cast_with_options, CastOptions};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::config::safe_component;
use crate::precheck;

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
    #[error("schema version {found:?} not supported (this collector reads 2 and {SCHEMA_VERSION}; upgrade the collector before the nodes)")]
    SchemaVersion { found: String },
    #[error("schema does not match dataset {dataset}: {detail}")]
    SchemaMismatch { dataset: String, detail: String },
    #[error("column {column} is NOT NULL in dataset {dataset} but holds nulls")]
    NullInRequired { dataset: String, column: String },
    /// A value no node writes: a MOS outside 1..5, a ratio outside 0..1,
    /// an infinite or NaN measurement, a time outside the years 1970 to
    /// 9999. Stored, it would skew every comparison and partition.
    #[error("column {column} of dataset {dataset} holds {value}, {why}")]
    BadValue {
        dataset: String,
        column: String,
        value: String,
        why: &'static str,
    },
    #[error("name {0:?} is not allowed in a path (letters, digits, '-', '_' or '.', at most 64; not NULL or __HIVE_DEFAULT_PARTITION__, which readers take for NULL)")]
    BadName(String),
    #[error("content hash mismatch: header {header}, body {body}")]
    HashMismatch { header: String, body: String },
    #[error("upload has more than {limit} rows (server.max_rows_per_upload)")]
    TooManyRows { limit: u64 },
    #[error("upload decodes to more than {limit} bytes (server.max_decoded_bytes)")]
    TooManyDecodedBytes { limit: u64 },
    #[error(
        "upload spans more than {limit} partitions (VNet x hour) (server.max_partitions_per_upload)"
    )]
    TooManyPartitions { limit: usize },
    #[error(
        "node {node} would have more than {limit} VNets (server.max_vnets_per_node); new: {new}"
    )]
    TooManyVnets {
        node: String,
        limit: usize,
        new: String,
    },
    /// The collector's storage is full (ENOSPC, EDQUOT): 507, retry later.
    #[error("storage full: {0}")]
    NoSpace(String),
    /// Any other storage failure: 503, retry later.
    #[error("storage error: {0}")]
    Io(String),
}

impl IngestError {
    /// 4xx judge the upload (the node must not retry it), 5xx the collector
    /// (the node retries).
    pub fn status(&self) -> u16 {
        match self {
            IngestError::UnknownDataset(_)
            | IngestError::BadName(_)
            | IngestError::HashMismatch { .. } => 400,
            IngestError::TooManyRows { .. } | IngestError::TooManyDecodedBytes { .. } => 413,
            IngestError::NoSpace(_) => 507,
            IngestError::Io(_) => 503,
            IngestError::NotParquet(_)
            | IngestError::WrongDataset { .. }
            | IngestError::SchemaVersion { .. }
            | IngestError::SchemaMismatch { .. }
            | IngestError::NullInRequired { .. }
            | IngestError::BadValue { .. }
            | IngestError::TooManyPartitions { .. }
            | IngestError::TooManyVnets { .. } => 422,
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
            IngestError::NullInRequired { .. } => "null_in_required",
            IngestError::BadValue { .. } => "bad_value",
            IngestError::BadName(_) => "bad_name",
            IngestError::HashMismatch { .. } => "hash_mismatch",
            IngestError::TooManyRows { .. } => "too_many_rows",
            IngestError::TooManyDecodedBytes { .. } => "too_many_decoded_bytes",
            IngestError::TooManyPartitions { .. } => "too_many_partitions",
            IngestError::TooManyVnets { .. } => "too_many_vnets",
            IngestError::NoSpace(_) => "no_space",
            IngestError::Io(_) => "storage",
        }
    }

    /// A storage failure from an I/O error: `NoSpace` for ENOSPC / EDQUOT.
    pub fn storage(e: &std::io::Error) -> IngestError {
        if is_no_space(e) {
            IngestError::NoSpace(e.to_string())
        } else {
            IngestError::Io(e.to_string())
        }
    }
}

/// ENOSPC or EDQUOT.
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28 | 122))
}

fn io(e: std::io::Error) -> IngestError {
    IngestError::storage(&e)
}

/// A storage failure from any error (a Parquet or Arrow writer error wraps
/// the I/O error that caused it).
fn storage_err(e: &(dyn std::error::Error + 'static)) -> IngestError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(ioe) = err.downcast_ref::<std::io::Error>() {
            return IngestError::storage(ioe);
        }
        if let Some(parquet::errors::ParquetError::External(inner)) =
            err.downcast_ref::<parquet::errors::ParquetError>()
        {
            if let Some(ioe) = inner.downcast_ref::<std::io::Error>() {
                return IngestError::storage(ioe);
            }
        }
        cur = err.source();
    }
    let msg = e.to_string();
    if msg.contains("No space left on device") || msg.contains("Disk quota exceeded") {
        IngestError::NoSpace(msg)
    } else {
        IngestError::Io(msg)
    }
}

/// Per-upload bounds (`[server]` keys of the same names).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_rows: u64,
    pub max_decoded_bytes: u64,
    pub max_partitions: usize,
    /// Parquet writers one upload keeps open while it is read. An open
    /// writer costs about 0.8 MB whatever it holds (a dictionary and a zstd
    /// context per column): a 19 KB upload of 255 one-row partitions took
    /// 218 MB when each partition had a writer from its first row.
    pub max_open_writers: usize,
    /// Decoded rows one upload holds in memory for partitions without a
    /// writer (bytes of Arrow arrays). Beyond it the largest such
    /// partition gets a writer, or, with `max_open_writers` open, its rows
    /// go to its spill file (Arrow IPC under `.incoming`).
    pub max_held_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 16 * 1024 * 1024,
            max_decoded_bytes: 4 * 1024 * 1024 * 1024,
            max_partitions: 256,
            max_open_writers: 8,
            max_held_bytes: 16 << 20,
        }
    }
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

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh name under `.incoming` ending in `suffix`.
fn incoming_name(suffix: &str) -> String {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{}-{seq}{suffix}", std::process::id())
}

/// The exclusive lock on a data directory, held while the value lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("server.data_dir {dir}: in use by another moni-collector (lock {lock} is held)")]
    Held { dir: PathBuf, lock: PathBuf },
    #[error("server.data_dir {dir}: cannot lock {lock}: {source}")]
    Io {
        dir: PathBuf,
        lock: PathBuf,
        source: std::io::Error,
    },
}

/// Takes an exclusive `flock` on `DATA/.lock` without waiting. A second
/// collector on the same directory gets [`LockError::Held`]; the lock goes
/// with the process (also on kill -9).
pub fn lock_data_dir(data: &Path) -> Result<DataDirLock, LockError> {
    let lock = data.join(".lock");
    let err = |source: std::io::Error| LockError::Io {
        dir: data.to_path_buf(),
        lock: lock.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(err)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(LockError::Held {
            dir: data.to_path_buf(),
            lock,
        }),
        Err(e) => Err(err(e.into())),
    }
}

/// One entry of a commit manifest: a part under `.incoming` and its key.
#[derive(serde::Serialize, serde::Deserialize)]
struct ManifestEntry {
    tmp: String,
    key: String,
}

/// What [`recover`] did at start.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Interrupted commits finished (their parts made visible).
    pub commits_finished: usize,
    /// Temporary files of interrupted uploads removed.
    pub files_removed: usize,
}

/// A key is `dataset/node=…/vnet=…/date=…/hour=…/<hash>.parquet` made of
/// safe components (a manifest is read back from disk: trust nothing).
fn safe_key(key: &str) -> bool {
    let parts: Vec<&str> = key.split('/').collect();
    let [dirs @ .., file] = parts.as_slice() else {
        return false;
    };
    let hash = file.strip_suffix(".parquet").unwrap_or_default();
    dirs.len() == 5
        && hash.len() == 64
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && dirs.iter().all(|p| {
            let v = p.split_once('=').map_or(*p, |(_, v)| v);
            safe_component(v) && !p.starts_with('.')
        })
}

/// At start (with the data directory locked): finishes every commit whose
/// manifest was written, then removes every other temporary file.
pub fn recover(data: &Path) -> std::io::Result<Recovered> {
    let dir = incoming_dir(data);
    std::fs::create_dir_all(&dir)?;
    let mut r = Recovered::default();
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        if !p.to_string_lossy().ends_with(".commit") {
            continue;
        }
        let entries: Vec<ManifestEntry> = std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut dirs = BTreeSet::new();
        for m in entries {
            let tmp = dir.join(&m.tmp);
            if !safe_component(&m.tmp) || !safe_key(&m.key) || !tmp.is_file() {
                continue;
            }
            let path = data.join(&m.key);
            if path.exists() {
                continue;
            }
            let Some(parent) = path.parent() else {
                continue;
            };
            for d in create_dirs(data, parent)? {
                if let Some(pp) = d.parent() {
                    dirs.insert(pp.to_path_buf());
                }
            }
            std::fs::rename(&tmp, &path)?;
            dirs.insert(parent.to_path_buf());
        }
        for d in &dirs {
            fsync_dir(d)?;
        }
        std::fs::remove_file(&p)?;
        r.commits_finished += 1;
    }
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        if p.is_file() {
            std::fs::remove_file(&p)?;
            r.files_removed += 1;
        }
    }
    fsync_dir(&dir)?;
    Ok(r)
}

/// Names of the VNets each node already has in the dataset:
/// `DATA/<dataset>/node=<id>/vnet=<name>` (local storage), for the
/// `max_vnets_per_node` cap.
pub fn known_vnets(data: &Path) -> HashMap<String, BTreeSet<String>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    let list = |d: &Path, prefix: &str| -> Vec<(PathBuf, String)> {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let v = name.strip_prefix(prefix)?.to_string();
                Some((e.path(), v))
            })
            .collect()
    };
    for dataset in &schema::TABLE {
        for (node_dir, node) in list(&data.join(dataset.name), "node=") {
            for (_, vnet) in list(&node_dir, "vnet=") {
                out.entry(node.clone()).or_default().insert(vnet);
            }
        }
    }
    out
}

/// The schema of `dataset`'s part files in the store: the dataset's
/// schema without the columns that are directory levels of the layout
/// (`vnet`, for every dataset partitioned by a column of that name).
pub fn stored_schema(dataset: &str) -> Option<SchemaRef> {
    let want = schema::for_dataset(dataset)?;
    let keep = stored_columns(dataset, &want);
    want.project(&keep).ok().map(|s| stored_types(&s))
}

/// The type a column of the node's schema is stored as: `int64` for
/// `uint64` (see the module doc), every other type as it is.
pub fn stored_type(t: &DataType) -> DataType {
    match t {
        DataType::UInt64 => DataType::Int64,
        other => other.clone(),
    }
}

/// `schema` with every field's type mapped by [`stored_type`] (names,
/// nullability and field metadata such as `ipfix_name` kept).
fn stored_types(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_data_type(stored_type(f.data_type()))
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` cast to the stored `schema`; a `uint64` above `i64::MAX` is an
/// error, never a wrapped value.
fn to_stored(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let checked = CastOptions {
        safe: false,
        ..Default::default()
    };
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                cast_with_options(c, f.data_type(), &checked)
                    .map_err(|e| format!("column {}: {e}", f.name()))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), cols).map_err(|e| e.to_string())
}

/// Indices of the dataset's columns that part files keep.
fn stored_columns(dataset: &str, want: &arrow::datatypes::Schema) -> Vec<usize> {
    let in_path = schema::dataset(dataset)
        .map(|d| d.vnet_column)
        .filter(|&c| c == "vnet");
    (0..want.fields().len())
        .filter(|&i| Some(want.field(i).name().as_str()) != in_path)
        .collect()
}

/// Checks an upload's columns against the dataset's schema, of which the
/// last `missing` columns (added by a later schema version) are absent.
fn check_schema(
    dataset: &str,
    got: &arrow::datatypes::Schema,
    missing: usize,
) -> Result<(), IngestError> {
    let Some(want) = schema::for_dataset(dataset) else {
        return Err(IngestError::UnknownDataset(dataset.to_string()));
    };
    let mismatch = |detail: String| IngestError::SchemaMismatch {
        dataset: dataset.to_string(),
        detail,
    };
    let expected = want.fields().len().saturating_sub(missing);
    if got.fields().len() != expected {
        return Err(mismatch(format!(
            "{} columns, expected {expected}",
            got.fields().len(),
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

/// One partition of an upload, written and fsynced under `.incoming`,
/// waiting to be committed under `key` (relative to the data root,
/// `/`-separated).
#[derive(Debug)]
pub struct StagedPart {
    pub key: String,
    pub tmp: PathBuf,
    pub bytes: u64,
}

/// An upload validated and split into partitions under `.incoming`. Its
/// temporary files are removed when it is dropped (committed or not).
#[derive(Debug)]
pub struct Staged {
    pub parts: Vec<StagedPart>,
    pub rows: u64,
    /// VNet names of the upload's rows.
    pub vnets: BTreeSet<String>,
    /// For `rtp_windows`: the MOS-CQ of the latest window per (VNet, role).
    pub latest_mos: Vec<(String, String, f64)>,
    /// The most Parquet writers open at once (at most `max_open_writers`
    /// while the upload is read, then one at a time).
    pub peak_writers: usize,
    /// Spills of held rows to spill files.
    pub spills: usize,
}

impl Drop for Staged {
    fn drop(&mut self) {
        for p in &self.parts {
            let _ = std::fs::remove_file(&p.tmp);
        }
    }
}

/// The partitions of one upload being written under `.incoming`, one
/// Parquet file each. A partition gets a writer when its rows are the
/// largest of those held and the held rows pass `max_held_bytes`, up to
/// `max_open_writers` writers, and its rows then go straight to it. Once
/// that many are open, the largest held partition's rows go to its spill
/// file instead (Arrow IPC, a stream per spill, appended), and at the end
/// each partition without a writer is written from its spill file and its
/// held rows, one partition at a time. So memory stays within those bounds
/// whatever the upload's shape, and a partition's file holds its rows in
/// the upload's order however they were held: a retried upload makes the
/// same files. Every temporary file is removed on any failure.
struct Partitions<'a> {
    names: PartNames<'a>,
    schema: SchemaRef,
    props: WriterProperties,
    limits: Limits,
    open: BTreeMap<(String, i64), OpenPart>,
    held: BTreeMap<(String, i64), Vec<RecordBatch>>,
    held_bytes: usize,
    /// Spill files of partitions without a writer.
    spilled: BTreeMap<(String, i64), PathBuf>,
    /// Files finished, removed on drop unless taken by `finish`.
    done: Vec<StagedPart>,
    /// The most writers open at once (for tests).
    peak_open: usize,
    /// Spills written (for tests).
    spills: usize,
}

/// What names an upload's files: its dataset, node and hash, and the
/// directory of its temporary files.
#[derive(Clone, Copy)]
struct PartNames<'a> {
    dataset: &'a str,
    node: &'a str,
    hash: &'a str,
    incoming: &'a Path,
}

struct OpenPart {
    key: String,
    tmp: PathBuf,
    writer: Option<ArrowWriter<File>>,
}

impl Drop for Partitions<'_> {
    fn drop(&mut self) {
        for w in self.open.values_mut() {
            drop(w.writer.take());
            let _ = std::fs::remove_file(&w.tmp);
        }
        for p in &self.done {
            let _ = std::fs::remove_file(&p.tmp);
        }
        for p in self.spilled.values() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl<'a> Partitions<'a> {
    fn new(
        names: PartNames<'a>,
        schema: SchemaRef,
        props: WriterProperties,
        limits: Limits,
    ) -> Partitions<'a> {
        Partitions {
            names,
            schema,
            props,
            limits,
            open: BTreeMap::new(),
            held: BTreeMap::new(),
            held_bytes: 0,
            spilled: BTreeMap::new(),
            done: Vec::new(),
            peak_open: 0,
            spills: 0,
        }
    }

    fn known(&self, key: &(String, i64)) -> bool {
        self.open.contains_key(key) || self.held.contains_key(key) || self.spilled.contains_key(key)
    }

    /// Partitions seen so far.
    fn count(&self) -> usize {
        self.open.len()
            + self
                .held
                .keys()
                .filter(|k| !self.spilled.contains_key(*k))
                .count()
            + self.spilled.len()
    }

    /// Adds rows of partition `part`, refusing a partition beyond
    /// `max_partitions` or with an unsafe VNet name.
    fn add(&mut self, part: (&str, i64), rows: RecordBatch) -> Result<(), IngestError> {
        let key = (part.0.to_string(), part.1);
        if let Some(o) = self.open.get_mut(&key) {
            let writer = o
                .writer
                .as_mut()
                .ok_or_else(|| IngestError::Io(format!("partition {} has no writer", o.key)))?;
            writer.write(&rows).map_err(|e| storage_err(&e))?;
            if writer.in_progress_size() > FLUSH_ONE {
                writer.flush().map_err(|e| storage_err(&e))?;
            }
            return Ok(());
        }
        if !self.known(&key) {
            if !safe_component(part.0) {
                return Err(IngestError::BadName(part.0.to_string()));
            }
            if self.count() >= self.limits.max_partitions {
                return Err(IngestError::TooManyPartitions {
                    limit: self.limits.max_partitions,
                });
            }
        }
        self.held_bytes += rows.get_array_memory_size();
        self.held.entry(key).or_default().push(rows);
        Ok(())
    }

    /// After each upload batch: bounds the writers' buffered row groups
    /// and the held rows.
    fn settle(&mut self) -> Result<(), IngestError> {
        let buffered: usize = self
            .open
            .values()
            .filter_map(|p| p.writer.as_ref())
            .map(|x| x.in_progress_size())
            .sum();
        if buffered > FLUSH_ALL {
            for x in self.open.values_mut().filter_map(|p| p.writer.as_mut()) {
                x.flush().map_err(|e| storage_err(&e))?;
            }
        }
        while self.held_bytes > self.limits.max_held_bytes {
            // The largest held partition (the first by key among equals).
            let Some(key) = self
                .held
                .iter()
                .map(|(k, b)| {
                    (
                        b.iter()
                            .map(RecordBatch::get_array_memory_size)
                            .sum::<usize>(),
                        k,
                    )
                })
                .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
                .map(|(_, k)| k.clone())
            else {
                break;
            };
            // A partition that spilled keeps to its spill file: its rows
            // stay in order.
            if self.open.len() < self.limits.max_open_writers && !self.spilled.contains_key(&key) {
                self.begin(&key)?;
            } else {
                self.spill(&key)?;
            }
        }
        Ok(())
    }

    fn take_held(&mut self, key: &(String, i64)) -> Vec<RecordBatch> {
        let rows = self.held.remove(key).unwrap_or_default();
        let bytes: usize = rows.iter().map(RecordBatch::get_array_memory_size).sum();
        self.held_bytes = self.held_bytes.saturating_sub(bytes);
        rows
    }

    /// Appends the held rows of partition `key` to its spill file, as one
    /// IPC stream.
    fn spill(&mut self, key: &(String, i64)) -> Result<(), IngestError> {
        let rows = self.take_held(key);
        let path = match self.spilled.get(key) {
            Some(p) => p.clone(),
            None => {
                let p = self.names.incoming.join(incoming_name(".spill.tmp"));
                // Registered before the file exists, so a failure removes it.
                self.spilled.insert(key.clone(), p.clone());
                p
            }
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        // A full disk is 507 like any other write's (`storage_err` finds
        // the I/O error inside).
        let arrow_err = |e: arrow::error::ArrowError| storage_err(&e);
        // Compressed: a spilled partition's rows are decoded Arrow, many
        // times the upload's Parquet bytes.
        let options = arrow_ipc::writer::IpcWriteOptions::default()
            .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
            .map_err(arrow_err)?;
        let mut w = arrow_ipc::writer::StreamWriter::try_new_with_options(
            std::io::BufWriter::new(f),
            &self.schema,
            options,
        )
        .map_err(arrow_err)?;
        for b in &rows {
            w.write(b).map_err(arrow_err)?;
        }
        w.finish().map_err(arrow_err)?;
        w.into_inner()
            .map_err(arrow_err)?
            .into_inner()
            .map_err(|e| io(e.into_error()))?;
        self.spills += 1;
        Ok(())
    }

    /// Opens the file of partition `key` and writes what it holds: its
    /// spilled rows, then its held ones.
    fn begin(&mut self, key: &(String, i64)) -> Result<(), IngestError> {
        let (date, hh) = Timestamp(key.1.saturating_mul(HOUR_US)).utc_date_hour();
        let PartNames {
            dataset,
            node,
            hash,
            incoming,
        } = self.names;
        let vnet = &key.0;
        let tmp = incoming.join(incoming_name(".part.tmp"));
        // Registered before the file exists, so a failure removes it.
        self.open.insert(
            key.clone(),
            OpenPart {
                key: format!(
                    "{dataset}/node={node}/vnet={vnet}/date={date}/hour={hh}/{hash}.parquet"
                ),
                tmp: tmp.clone(),
                writer: None,
            },
        );
        self.peak_open = self.peak_open.max(self.open.len());
        let f = File::create(&tmp).map_err(io)?;
        let mut writer =
            ArrowWriter::try_new(f, Arc::clone(&self.schema), Some(self.props.clone()))
                .map_err(|e| storage_err(&e))?;
        let write = |w: &mut ArrowWriter<File>, b: &RecordBatch| -> Result<(), IngestError> {
            w.write(b).map_err(|e| storage_err(&e))?;
            if w.in_progress_size() > FLUSH_ONE {
                w.flush().map_err(|e| storage_err(&e))?;
            }
            Ok(())
        };
        if let Some(path) = self.spilled.remove(key) {
            let result = (|| {
                let mut f = File::open(&path).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                let arrow_err = |e: arrow::error::ArrowError| storage_err(&e);
                // One stream per spill, read in turn.
                while std::io::Seek::stream_position(&mut f).map_err(io)? < len {
                    let r = arrow_ipc::reader::StreamReader::try_new(&mut f, None)
                        .map_err(arrow_err)?;
                    for b in r {
                        write(&mut writer, &b.map_err(arrow_err)?)?;
                    }
                }
                Ok(())
            })();
            let _ = std::fs::remove_file(&path);
            result?;
        }
        for b in self.take_held(key) {
            write(&mut writer, &b)?;
        }
        if let Some(o) = self.open.get_mut(key) {
            o.writer = Some(writer);
        }
        Ok(())
    }

    /// Finishes the open file of partition `key`: footer, fsync.
    fn close(&mut self, key: &(String, i64)) -> Result<(), IngestError> {
        let Some(mut o) = self.open.remove(key) else {
            return Ok(());
        };
        // Owned by `done` from here, so a failure below removes it too.
        self.done.push(StagedPart {
            key: o.key.clone(),
            tmp: o.tmp.clone(),
            bytes: 0,
        });
        let writer = o
            .writer
            .take()
            .ok_or_else(|| IngestError::Io(format!("partition {} has no writer", o.key)))?;
        let f = writer.into_inner().map_err(|e| storage_err(&e))?;
        f.sync_all().map_err(io)?;
        let bytes = f.metadata().map_err(io)?.len();
        if let Some(p) = self.done.last_mut() {
            p.bytes = bytes;
        }
        Ok(())
    }

    /// Finishes every file: the open ones, then each other partition's
    /// (one writer at a time). The files in key order, the VNets, the most
    /// writers open at once and the spills.
    fn finish(mut self) -> Result<(Vec<StagedPart>, BTreeSet<String>, usize, usize), IngestError> {
        let mut vnets: BTreeSet<String> = self.open.keys().map(|(v, _)| v.clone()).collect();
        let keys: Vec<(String, i64)> = self.open.keys().cloned().collect();
        for k in keys {
            self.close(&k)?;
        }
        let mut rest: BTreeSet<(String, i64)> = self.held.keys().cloned().collect();
        rest.extend(self.spilled.keys().cloned());
        for k in rest {
            vnets.insert(k.0.clone());
            self.begin(&k)?;
            self.close(&k)?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by(|a, b| a.key.cmp(&b.key));
        Ok((parts, vnets, self.peak_open, self.spills))
    }
}

/// A writer's in-progress row group is flushed beyond this many bytes, and
/// every writer's once they hold this much together.
const FLUSH_ONE: usize = 4 << 20;
const FLUSH_ALL: usize = 64 << 20;
const HOUR_US: i64 = 3_600_000_000;
/// Rows decoded at a time (2 Ki rows of 1 kB strings: 2 MB; a file of one
/// long string repeated through a dictionary expands to this many copies
/// before `max_decoded_bytes` can be checked).
const BATCH_ROWS: usize = 2_048;

/// Columns holding an E-model MOS the node computed (the `mos_lq` and
/// `mos_cq` of each jitter-buffer model too): 1 to 5. Not `mos_diff` (a
/// difference), not `remote_mos_cq` (the receiver's report, from the
/// wire).
const MOS_COLUMNS: [&str; 7] = [
    "mos_lq",
    "mos_cq",
    "mos_min",
    "mos_mean",
    "mos_last",
    "mos_production",
    "mos_shadow",
];

/// Ratio columns the node computes: 0 to 1.
const RATIO_COLUMNS: [&str; 5] = [
    "loss_ratio",
    "loss_production",
    "loss_shadow",
    "burst_density",
    "gap_density",
];

/// Runs a step of decoding the upload, whose panic is the file's fault:
/// the Parquet and Arrow decoders trust some of a file's offsets, and a
/// corrupt file can break them ("offset + len out of bounds"). Answered
/// 503 as a storage error, it made the node retry the file forever ahead
/// of every later one; it is a refusal of the file (422).
fn decoding<T>(step: impl FnOnce() -> T) -> Result<T, IngestError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|p| {
        not_parquet(format_args!(
            "the Parquet decoder failed on it: {}",
            panic_message(p.as_ref())
        ))
    })
}

/// Characters of a decoder's error kept in a refusal: its first line says
/// what is wrong; some run on for a kilobyte (a flatbuffer's error trace of
/// a corrupt `ARROW:schema`).
const MAX_DETAIL: usize = 300;

/// [`IngestError::NotParquet`] with `detail` on one line of at most
/// [`MAX_DETAIL`] characters.
fn not_parquet(detail: impl std::fmt::Display) -> IngestError {
    let detail = detail.to_string();
    let mut line: String = detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL)
        .collect();
    if detail.chars().nth(MAX_DETAIL).is_some() {
        line.push_str(" [...]");
    }
    IngestError::NotParquet(line)
}

/// A file [`precheck`] does not give to the decoder: not Parquet it reads,
/// unless reading our own copy of it failed.
fn unfit(e: precheck::Unfit) -> IngestError {
    match e {
        precheck::Unfit::Io(e) => IngestError::storage(&e),
        e => not_parquet(e),
    }
}

/// The text of a panic's payload (`panic!` with a string or a format).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Refuses values no node writes ([`IngestError::BadValue`]): in a
/// floating-point column, infinities anywhere; in the columns a node
/// computes itself (not those it copies from the wire, as `remote_*` from
/// RTCP XR), a MOS outside 1 to 5 or NaN ([`MOS_COLUMNS`]) and a ratio
/// outside 0 to 1 or NaN ([`RATIO_COLUMNS`]); in a timestamp column, a
/// time outside the years 1970 to 9999 (stored, it would open a partition
/// named after the year -290308).
fn check_values(dataset: &str, want: &Schema, batch: &RecordBatch) -> Result<(), IngestError> {
    /// 1970-01-01 and 10000-01-01 in microseconds since the epoch.
    const TIME_US: std::ops::Range<i64> = 0..253_402_300_800_000_000;
    let bad = |column: &str, value: String, why| IngestError::BadValue {
        dataset: dataset.to_string(),
        column: column.to_string(),
        value,
        why,
    };
    for (f, c) in want.fields().iter().zip(batch.columns()) {
        let name = f.name().as_str();
        match c.data_type() {
            DataType::Float64 => {
                let Some(a) = c.as_any().downcast_ref::<Float64Array>() else {
                    continue;
                };
                // `mos_lq_fixed50` and the like: a model's MOS.
                let base = analyzers::voip::jitter_buffer::Model::ALL
                    .iter()
                    .find_map(|m| name.strip_suffix(m.name())?.strip_suffix('_'))
                    .unwrap_or(name);
                let mos = MOS_COLUMNS.contains(&base);
                let ratio = RATIO_COLUMNS.contains(&name);
                for v in a.iter().flatten() {
                    if v.is_infinite() {
                        return Err(bad(name, v.to_string(), "not a finite number"));
                    }
                    if mos && !(1.0..=5.0).contains(&v) {
                        return Err(bad(name, v.to_string(), "not a MOS (1 to 5)"));
                    }
                    if ratio && !(0.0..=1.0).contains(&v) {
                        return Err(bad(name, v.to_string(), "not a ratio (0 to 1)"));
                    }
                }
            }
            DataType::Timestamp(_, _) => {
                let Some(a) = c.as_any().downcast_ref::<TimestampMicrosecondArray>() else {
                    continue;
                };
                if let Some(v) = a.iter().flatten().find(|v| !TIME_US.contains(v)) {
                    return Err(bad(
                        name,
                        format!("{v} us since 1970"),
                        "not a time between the years 1970 and 9999",
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Validates the uploaded file at `upload` (SHA-256 `hash`) and splits it
/// by VNet and hour into Parquet parts named by the hash, written under
/// `incoming`.
pub fn prepare(
    dataset: &str,
    node: &str,
    upload: &Path,
    hash: &str,
    incoming: &Path,
    limits: &Limits,
) -> Result<Staged, IngestError> {
    let Some(entry) = schema::dataset(dataset) else {
        return Err(IngestError::UnknownDataset(dataset.to_string()));
    };
    let (vnet_col, time_col) = (entry.vnet_column, entry.time_column);
    let want = (entry.schema)();
    if !safe_component(node) {
        return Err(IngestError::BadName(node.to_string()));
    }
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(IngestError::BadName(hash.to_string()));
    }
    let file = File::open(upload).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    // What the decoder trusts is checked first (see `precheck`).
    precheck::footer(&file, len).map_err(unfit)?;
    let pages = file.try_clone().map_err(io)?;
    let builder =
        decoding(|| ParquetRecordBatchReaderBuilder::try_new(file))?.map_err(not_parquet)?;
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
    // Version 2 is version 3 without the tunnel columns at the end of some
    // datasets; they are stored as nulls.
    let missing = match version.as_str() {
        v if v == SCHEMA_VERSION => 0,
        "2" => want
            .fields()
            .iter()
            .filter(|f| schema::TUNNEL_COLUMNS.contains(&f.name().as_str()))
            .count(),
        _ => return Err(IngestError::SchemaVersion { found: version }),
    };
    check_schema(dataset, builder.schema(), missing)?;
    // The footer's row count refuses a huge upload before decoding it.
    let declared = builder.metadata().file_metadata().num_rows();
    if u64::try_from(declared).unwrap_or(u64::MAX) > limits.max_rows {
        return Err(IngestError::TooManyRows {
            limit: limits.max_rows,
        });
    }
    precheck::pages(&pages, len, builder.metadata()).map_err(unfit)?;
    let reader = decoding(|| builder.with_batch_size(BATCH_ROWS).build())?.map_err(not_parquet)?;
    // The stored files carry the collector's schema (its nullability)
    // without the columns that are directory levels.
    let full_schema: SchemaRef = Arc::new(arrow::datatypes::Schema::new(want.fields().clone()));
    let keep = stored_columns(dataset, &want);
    let out_schema: SchemaRef =
        stored_types(
            &full_schema
                .project(&keep)
                .map_err(|e| IngestError::SchemaMismatch {
                    dataset: dataset.to_string(),
                    detail: e.to_string(),
                })?,
        );
    let props = writer_props(dataset)?;

    let names = PartNames {
        dataset,
        node,
        hash,
        incoming,
    };
    let mut w = Partitions::new(names, Arc::clone(&out_schema), props, *limits);
    let mut rows_total = 0u64;
    let mut decoded = 0u64;
    let mut latest: BTreeMap<(String, String), (i64, f64)> = BTreeMap::new();
    let mut reader = reader;
    while let Some(batch) = decoding(|| reader.next())? {
        let batch = batch.map_err(not_parquet)?;
        rows_total += batch.num_rows() as u64;
        if rows_total > limits.max_rows {
            return Err(IngestError::TooManyRows {
                limit: limits.max_rows,
            });
        }
        decoded += batch.get_array_memory_size() as u64;
        if decoded > limits.max_decoded_bytes {
            return Err(IngestError::TooManyDecodedBytes {
                limit: limits.max_decoded_bytes,
            });
        }
        for (f, c) in want.fields().iter().zip(batch.columns()) {
            if !f.is_nullable() && c.null_count() > 0 {
                return Err(IngestError::NullInRequired {
                    dataset: dataset.to_string(),
                    column: f.name().clone(),
                });
            }
        }
        check_values(dataset, &want, &batch)?;
        // A version-2 upload lacks the tunnel columns: null for them.
        let mut columns = batch.columns().to_vec();
        for f in want.fields().iter().skip(columns.len()) {
            columns.push(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            ));
        }
        let full = RecordBatch::try_new(Arc::clone(&full_schema), columns).map_err(|e| {
            IngestError::SchemaMismatch {
                dataset: dataset.to_string(),
                detail: e.to_string(),
            }
        })?;
        let batch = full
            .project(&keep)
            .map_err(|e| e.to_string())
            .and_then(|b| to_stored(&b, &out_schema))
            .map_err(|detail| IngestError::SchemaMismatch {
                dataset: dataset.to_string(),
                detail,
            })?;
        let vnets = column::<StringArray>(&full, vnet_col)?;
        let times = column::<TimestampMicrosecondArray>(&full, time_col)?;
        // Rows by partition (VNet, hour since the epoch).
        let mut groups: BTreeMap<(&str, i64), Vec<u32>> = BTreeMap::new();
        for i in 0..batch.num_rows() {
            let k = (vnets.value(i), times.value(i).div_euclid(HOUR_US));
            groups.entry(k).or_default().push(i as u32);
        }
        if dataset == "rtp_windows" {
            let roles = column::<StringArray>(&full, "role")?;
            let mos = column::<Float64Array>(&full, "mos_cq")?;
            for i in 0..batch.num_rows() {
                // No MOS for a stream of unknown codec (`mos_reason`).
                if mos.is_null(i) {
                    continue;
                }
                let k = (vnets.value(i).to_string(), roles.value(i).to_string());
                let e = latest.entry(k).or_insert((i64::MIN, 0.0));
                if times.value(i) >= e.0 {
                    *e = (times.value(i), mos.value(i));
                }
            }
        }
        let whole = groups.len() == 1;
        for (part, idx) in groups {
            if whole {
                w.add(part, batch.clone())?;
            } else {
                let idx = UInt32Array::from(idx);
                let cols = batch
                    .columns()
                    .iter()
                    .map(|c| take(c, &idx, None))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| storage_err(&e))?;
                let rows = RecordBatch::try_new(Arc::clone(&out_schema), cols)
                    .map_err(|e| storage_err(&e))?;
                w.add(part, rows)?;
            }
        }
        w.settle()?;
    }
    // Every row the footer declares was read: none is lost unnoticed.
    if u64::try_from(declared).ok() != Some(rows_total) {
        return Err(not_parquet(format_args!(
            "the footer declares {declared} rows, {rows_total} were read"
        )));
    }
    // Finish every part: footer, fsync.
    let (parts, vnets, peak_writers, spills) = w.finish()?;
    Ok(Staged {
        parts,
        rows: rows_total,
        vnets,
        peak_writers,
        spills,
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

fn writer_props(dataset: &str) -> Result<WriterProperties, IngestError> {
    let level = ZstdLevel::try_new(3).map_err(|e| IngestError::Io(e.to_string()))?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_key_value_metadata(Some(vec![
            KeyValue::new(META_DATASET.to_string(), dataset.to_string()),
            KeyValue::new(META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
        ]))
        .build())
}

fn fsync_dir(d: &Path) -> std::io::Result<()> {
    File::open(d)?.sync_all()
}

/// Creates `dir` and its missing ancestors below `root` one by one and
/// returns the directories it created (outermost first), so the caller can
/// fsync each in its parent.
pub fn create_dirs(root: &Path, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d == root || d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for d in missing {
        match std::fs::create_dir(&d) {
            Ok(()) => created.push(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// (parts, of which already stored, bytes written)
pub type PutResult = (usize, usize, u64);

/// Makes every staged part visible under `data`, all or none (see the
/// module documentation).
pub fn commit_local(data: &Path, staged: &Staged) -> Result<PutResult, IngestError> {
    let incoming = incoming_dir(data);
    let mut todo = Vec::new();
    let mut already = 0;
    for p in &staged.parts {
        let path = data.join(&p.key);
        if path.exists() {
            already += 1;
        } else {
            todo.push((p, path));
        }
    }
    if todo.is_empty() {
        return Ok((staged.parts.len(), already, 0));
    }
    // Directories first (a new one is fsynced in its parent).
    let mut synced = BTreeSet::new();
    for (p, path) in &todo {
        let Some(dir) = path.parent() else {
            return Err(IngestError::BadName(p.key.clone()));
        };
        for d in create_dirs(data, dir).map_err(io)? {
            if let Some(parent) = d.parent() {
                synced.insert(parent.to_path_buf());
            }
        }
    }
    for d in &synced {
        fsync_dir(d).map_err(io)?;
    }
    // The manifest: from here on a crash finishes the commit at restart.
    let entries: Vec<ManifestEntry> = todo
        .iter()
        .map(|(p, _)| ManifestEntry {
            tmp: p
                .tmp
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            key: p.key.clone(),
        })
        .collect();
    let json = serde_json::to_vec(&entries).map_err(|e| IngestError::Io(e.to_string()))?;
    let name = incoming_name(".commit");
    let manifest = incoming.join(&name);
    let manifest_tmp = incoming.join(format!("{name}.tmp"));
    let written = (|| -> std::io::Result<()> {
        let mut f = File::create(&manifest_tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&manifest_tmp, &manifest)?;
        fsync_dir(&incoming)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&manifest_tmp);
        let _ = std::fs::remove_file(&manifest);
        return Err(io(e));
    }
    // One pass of renames; on failure, move the renamed parts back.
    for (i, (p, path)) in todo.iter().enumerate() {
        if let Err(e) = std::fs::rename(&p.tmp, path) {
            let mut back = true;
            for (q, qpath) in &todo[..i] {
                back &= std::fs::rename(qpath, &q.tmp).is_ok();
            }
            if back {
                let _ = std::fs::remove_file(&manifest);
            } else {
                tracing::error!(manifest = %manifest.display(), "A failed commit could not be rolled back; it is finished at the next start.");
            }
            return Err(io(e));
        }
    }
    let dirs: BTreeSet<&Path> = todo.iter().filter_map(|(_, path)| path.parent()).collect();
    for d in dirs {
        fsync_dir(d).map_err(io)?;
    }
    let _ = std::fs::remove_file(&manifest);
    let bytes = todo.iter().map(|(p, _)| p.bytes).sum();
    Ok((staged.parts.len(), already, bytes))
}

/// The storage tests' tmpfs, for filling a disk in a unit test.
#[cfg(test)]
#[path = "../tests/common/tmpfs.rs"]
mod test_tmpfs;

#[cfg(test)]
mod tests {
    use super::test_tmpfs::{fill, Tmpfs};
    use super::*;

    /// A flows file of schema `version` holding `batch`.
    fn flows_file(dir: &Path, version: &str, batch: &RecordBatch) -> PathBuf {
        let path = dir.join(format!("flows-v{version}.parquet"));
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![
                KeyValue::new(META_DATASET.to_string(), "flows".to_string()),
                KeyValue::new(META_SCHEMA_VERSION.to_string(), version.to_string()),
            ]))
            .build();
        let f = File::create(&path).expect("create");
        let mut w = ArrowWriter::try_new(f, batch.schema(), Some(props)).expect("writer");
        w.write(batch).expect("write");
        w.close().expect("close");
        path
    }

    fn flow_record(tunnel: analyzers::record::TunnelInfo) -> analyzers::record::FlowRecord {
        use analyzers::record::{DirectionStats, EndReason, FlowRecord};
        let t = analyzers::Timestamp::from_secs(1_700_000_000);
        FlowRecord {
            flow_id: 7,
            vnet: analyzers::vnet::VnetId(0),
            vlan_id: None,
            src_addr: "10.0.0.1".parse().expect("ip"),
            dst_addr: "10.0.0.2".parse().expect("ip"),
            src_port: 1,
            dst_port: 2,
            protocol: 6,
            fwd: DirectionStats {
                packets: 1,
                bytes: 60,
                first: t,
                last: t,
                tcp_flags: 2,
            },
            rev: DirectionStats::default(),
            fragments: 0,
            end_reason: EndReason::Idle,
            tunnel,
        }
    }

    #[test]
    fn schema_2_uploads_are_stored_with_null_tunnel_columns() {
        let t = tempfile::tempdir().expect("tempdir");
        let vnets = analyzers::vnet::VnetMap::default();
        let v3 = schema::flows_batch(&[flow_record(Default::default())], &vnets).expect("batch");
        // Version 2: the same columns without the four tunnel columns.
        let n = v3.num_columns() - schema::TUNNEL_COLUMNS.len();
        let v2_schema = Arc::new(arrow::datatypes::Schema::new(
            v3.schema().fields()[..n].to_vec(),
        ));
        let v2 = RecordBatch::try_new(v2_schema, v3.columns()[..n].to_vec()).expect("v2");
        let incoming = t.path().join("incoming");
        std::fs::create_dir_all(&incoming).expect("mkdir");
        let hash = "a".repeat(64);
        for (version, batch) in [("2", &v2), ("3", &v3)] {
            let file = flows_file(t.path(), version, batch);
            let staged = prepare("flows", "n1", &file, &hash, &incoming, &Limits::default())
                .unwrap_or_else(|e| panic!("version {version}: {e}"));
            assert_eq!(staged.rows, 1);
            let part = &staged.parts[0];
            let stored =
                ParquetRecordBatchReaderBuilder::try_new(File::open(&part.tmp).expect("open part"))
                    .expect("parquet")
                    .build()
                    .expect("reader")
                    .next()
                    .expect("a batch")
                    .expect("batch");
            let col = stored.column_by_name("tunnel_type").expect("tunnel_type");
            assert_eq!(col.null_count(), 1, "version {version}");
        }
        // Version 2 with a tunnel column too many, and version 1: refused.
        let file = flows_file(t.path(), "2", &v3);
        assert!(matches!(
            prepare("flows", "n1", &file, &hash, &incoming, &Limits::default()),
            Err(IngestError::SchemaMismatch { .. })
        ));
        let file = flows_file(t.path(), "1", &v2);
        assert!(matches!(
            prepare("flows", "n1", &file, &hash, &incoming, &Limits::default()),
            Err(IngestError::SchemaVersion { .. })
        ));
    }

    /// Rows of 12 hours interleaved (row i in hour i % 12), `n` rows, in
    /// one flows upload whose reader hands them out 2,048 at a time: every
    /// batch holds rows of every partition.
    /// Row `bad`, if given, starts in the year 10000 (a bad value).
    fn interleaved_upload(dir: &Path, n: u32, bad: Option<u32>) -> PathBuf {
        let records: Vec<_> = (0..n)
            .map(|i| {
                let mut r = flow_record(Default::default());
                r.flow_id = u64::from(i);
                let mut t = r.fwd.first.0 + i64::from(i % 12) * HOUR_US;
                if bad == Some(i) {
                    t = 253_402_300_800_000_000 + HOUR_US;
                }
                r.fwd.first = analyzers::Timestamp(t);
                r.fwd.last = analyzers::Timestamp(t);
                r
            })
            .collect();
        let vnets = analyzers::vnet::VnetMap::default();
        let batch = schema::flows_batch(&records, &vnets).expect("batch");
        let path = flows_file(dir, SCHEMA_VERSION, &batch);
        let upload = dir.join(format!("interleaved-{}.parquet", bad.is_some()));
        std::fs::rename(&path, &upload).expect("rename");
        upload
    }

    /// flow_id of every row of the staged files, by partition directory.
    fn staged_rows(staged: &Staged) -> BTreeMap<String, Vec<u64>> {
        let mut by_dir: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for p in &staged.parts {
            let dir = p.key.rsplit_once('/').expect("dir").0.to_string();
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(File::open(&p.tmp).expect("part"))
                    .expect("parquet")
                    .build()
                    .expect("reader");
            for b in reader {
                let b = b.expect("batch");
                let ids = b
                    .column_by_name("flow_id")
                    .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int64Array>())
                    .expect("flow_id");
                by_dir
                    .entry(dir.clone())
                    .or_default()
                    .extend(ids.values().iter().map(|&i| i as u64));
            }
        }
        by_dir
    }

    #[test]
    fn an_upload_of_many_partitions_keeps_few_writers_open_and_loses_no_row() {
        let t = tempfile::tempdir().expect("tempdir");
        let incoming = t.path().join("incoming");
        std::fs::create_dir_all(&incoming).expect("mkdir");
        let hash = "b".repeat(64);
        let file = interleaved_upload(t.path(), 6_000, None);
        let expect: BTreeMap<usize, Vec<u64>> = (0..6_000u64).fold(BTreeMap::new(), |mut m, i| {
            m.entry((i % 12) as usize).or_default().push(i);
            m
        });
        let expect: Vec<Vec<u64>> = expect.into_values().collect();
        let keys = |s: &Staged| s.parts.iter().map(|p| p.key.clone()).collect::<Vec<_>>();
        // Default bounds: the small partitions are held and written at the
        // end, one at a time.
        let one =
            prepare("flows", "n1", &file, &hash, &incoming, &Limits::default()).expect("prepare");
        assert_eq!(one.rows, 6_000);
        assert_eq!((one.peak_writers, one.spills), (1, 0));
        assert_eq!(one.parts.len(), 12);
        assert!(one
            .parts
            .iter()
            .all(|p| p.key.ends_with(&format!("/{hash}.parquet"))));
        assert_eq!(staged_rows(&one).into_values().collect::<Vec<_>>(), expect);
        // Tight bounds: at most 2 writers, nothing held past a batch: the
        // other partitions' rows go through their spill files, and each
        // partition is still one file with its rows in the upload's order.
        let tight = Limits {
            max_open_writers: 2,
            max_held_bytes: 1,
            ..Limits::default()
        };
        let two = prepare("flows", "n1", &file, &hash, &incoming, &tight).expect("prepare");
        assert_eq!(two.peak_writers, 2);
        // 10 partitions spill in each of the 3 batches.
        assert_eq!(two.spills, 30);
        assert_eq!(keys(&two), keys(&one));
        assert_eq!(staged_rows(&two).into_values().collect::<Vec<_>>(), expect);
        // No spill file is left; only the staged parts are.
        assert_eq!(std::fs::read_dir(&incoming).expect("incoming").count(), 24);
        drop((one, two));
        // A bad row in the last batch, after writers and spill files were
        // made: refused, and no temporary file is left.
        let bad = interleaved_upload(t.path(), 6_000, Some(5_999));
        assert!(matches!(
            prepare("flows", "n1", &bad, &hash, &incoming, &tight),
            Err(IngestError::BadValue { .. })
        ));
        assert_eq!(std::fs::read_dir(&incoming).expect("incoming").count(), 0);
        // Beyond max_partitions: refused.
        let few = Limits {
            max_partitions: 11,
            ..tight
        };
        assert!(matches!(
            prepare("flows", "n1", &file, &hash, &incoming, &few),
            Err(IngestError::TooManyPartitions { limit: 11 })
        ));
        assert_eq!(std::fs::read_dir(&incoming).expect("incoming").count(), 0);
    }

    /// Partitions held, spilled, held again and given a writer, step by
    /// step: each file holds its partition's rows in the order added.
    #[test]
    fn held_and_spilled_rows_keep_their_order() {
        let t = tempfile::tempdir().expect("tempdir");
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let rows = |first: i64| {
            let ids: Vec<i64> = (first..first + 10).collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(arrow::array::Int64Array::from(ids))],
            )
            .expect("batch")
        };
        let s = rows(0).get_array_memory_size();
        let partitions = |max_partitions| {
            let names = PartNames {
                dataset: "bins",
                node: "n",
                hash: "d",
                incoming: t.path(),
            };
            let limits = Limits {
                max_open_writers: 1,
                max_held_bytes: 2 * s,
                max_partitions,
                ..Limits::default()
            };
            Partitions::new(
                names,
                Arc::clone(&schema),
                WriterProperties::default(),
                limits,
            )
        };
        let mut p = partitions(4);
        // Batch 1: three partitions, one gets the writer.
        for (h, first) in [(0, 0), (1, 100), (2, 200)] {
            p.add(("A", h), rows(first)).expect("add");
        }
        p.settle().expect("settle");
        assert_eq!((p.open.len(), p.held.len(), p.spills), (1, 2, 0));
        // Batch 2: hour 1 (now the largest) spills, the writer being taken.
        for (h, first) in [(0, 10), (1, 110), (2, 210)] {
            p.add(("A", h), rows(first)).expect("add");
        }
        p.settle().expect("settle");
        assert_eq!((p.spills, p.spilled.len()), (1, 1));
        // Batch 3: hour 1 is held again after its spill, hour 2 spills.
        for (h, first) in [(1, 120), (3, 300)] {
            p.add(("A", h), rows(first)).expect("add");
        }
        p.settle().expect("settle");
        assert_eq!((p.spills, p.spilled.len()), (2, 2));
        assert!(p.held.contains_key(&("A".to_string(), 1)));
        let (parts, vnets, peak, spills) = p.finish().expect("finish");
        assert_eq!((peak, spills), (1, 2));
        assert_eq!(vnets.into_iter().collect::<Vec<_>>(), ["A"]);
        let ids = |i: usize| -> Vec<i64> {
            ParquetRecordBatchReaderBuilder::try_new(File::open(&parts[i].tmp).expect("part"))
                .expect("parquet")
                .build()
                .expect("reader")
                .flat_map(|b| {
                    let b = b.expect("batch");
                    let c = b
                        .column(0)
                        .as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .expect("ids")
                        .clone();
                    c.values().to_vec()
                })
                .collect()
        };
        let want =
            |firsts: &[i64]| -> Vec<i64> { firsts.iter().flat_map(|&f| f..f + 10).collect() };
        assert_eq!(parts.len(), 4);
        assert_eq!(ids(0), want(&[0, 10]));
        assert_eq!(ids(1), want(&[100, 110, 120]));
        assert_eq!(ids(2), want(&[200, 210]));
        assert_eq!(ids(3), want(&[300]));
        for p in &parts {
            let _ = std::fs::remove_file(&p.tmp);
        }
        // No spill file is left.
        assert_eq!(std::fs::read_dir(t.path()).expect("dir").count(), 0);
        // A fifth partition after spills is one too many for 4, counted
        // once whether open, held or spilled.
        let mut p = partitions(4);
        for (h, first) in [
            (0, 0),
            (1, 100),
            (2, 200),
            (0, 10),
            (1, 110),
            (2, 210),
            (1, 120),
            (3, 300),
        ] {
            p.add(("A", h), rows(first)).expect("add");
            p.settle().expect("settle");
        }
        assert!(!p.spilled.is_empty());
        assert_eq!(p.count(), 4);
        assert!(matches!(
            p.add(("A", 4), rows(400)),
            Err(IngestError::TooManyPartitions { limit: 4 })
        ));
        drop(p);
        assert_eq!(std::fs::read_dir(t.path()).expect("dir").count(), 0);
    }

    /// A disk that fills while a partition spills is "storage full" (507,
    /// retried by the node), not a server error or bad data, and the
    /// upload's files (the open writer's and the spill file) are removed.
    /// The writer of the first partition exists before the disk fills and
    /// holds its rows in memory, so the one write that fails is the
    /// spill's.
    #[test]
    fn a_full_disk_while_spilling_is_storage_full_and_leaves_nothing() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("incoming");
        let Some(_fs) = Tmpfs::mount(&dir, "1m") else {
            return;
        };
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let rows = |first: i64| {
            // Values that do not compress to nothing.
            let ids: Vec<i64> = (first..first + 20_000)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_u64 as i64))
                .collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(arrow::array::Int64Array::from(ids))],
            )
            .expect("batch")
        };
        let names = PartNames {
            dataset: "bins",
            node: "n",
            hash: "d",
            incoming: &dir,
        };
        let limits = Limits {
            max_open_writers: 1,
            max_held_bytes: 0,
            ..Limits::default()
        };
        let mut p = Partitions::new(
            names,
            Arc::clone(&schema),
            WriterProperties::default(),
            limits,
        );
        p.add(("A", 0), rows(0)).expect("add");
        p.settle().expect("settle");
        assert_eq!((p.open.len(), p.held.len(), p.spills), (1, 0, 0));
        // The disk fills.
        fill(&dir.join("filler"));
        p.add(("A", 1), rows(1_000_000)).expect("add");
        let err = p.settle().expect_err("the spill cannot be written");
        assert!(matches!(err, IngestError::NoSpace(_)), "{err:?}");
        assert_eq!(err.status(), 507);
        assert_eq!(p.spills, 0);
        drop(p);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .filter(|n| n != "filler")
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn create_dirs_reports_each_directory_it_created() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        std::fs::create_dir_all(root.join("flows/node=a")).expect("mkdir");
        let made = create_dirs(
            root,
            &root.join("flows/node=a/vnet=A/date=2026-01-01/hour=03"),
        )
        .expect("create");
        assert_eq!(
            made,
            vec![
                root.join("flows/node=a/vnet=A"),
                root.join("flows/node=a/vnet=A/date=2026-01-01"),
                root.join("flows/node=a/vnet=A/date=2026-01-01/hour=03"),
            ]
        );
        assert!(create_dirs(root, &root.join("flows/node=a/vnet=A"))
            .expect("again")
            .is_empty());
    }

    #[test]
    fn recover_finishes_a_commit_with_a_manifest_and_removes_the_rest() {
        let t = tempfile::tempdir().expect("tempdir");
        let data = t.path();
        let inc = incoming_dir(data);
        std::fs::create_dir_all(&inc).expect("mkdir");
        let key = format!(
            "bins/node=n/vnet=A/date=2026-01-01/hour=00/{}.parquet",
            "a".repeat(64)
        );
        std::fs::write(inc.join("1-1.part.tmp"), b"part").expect("part");
        std::fs::write(inc.join("1-2.part.tmp"), b"orphan").expect("orphan");
        let m = vec![
            ManifestEntry {
                tmp: "1-1.part.tmp".into(),
                key: key.clone(),
            },
            ManifestEntry {
                tmp: "1-9.part.tmp".into(),
                key: "../../etc/passwd".into(),
            },
        ];
        std::fs::write(
            inc.join("1-3.commit"),
            serde_json::to_vec(&m).expect("json"),
        )
        .expect("manifest");
        let r = recover(data).expect("recover");
        assert_eq!(
            r,
            Recovered {
                commits_finished: 1,
                files_removed: 1
            }
        );
        assert_eq!(std::fs::read(data.join(&key)).expect("stored"), b"part");
        assert_eq!(std::fs::read_dir(&inc).expect("inc").count(), 0);
    }

    #[test]
    fn storage_errors_are_5xx_and_no_space_is_507() {
        let e = std::io::Error::from_raw_os_error(28);
        assert_eq!(IngestError::storage(&e).status(), 507);
        let e = std::io::Error::from_raw_os_error(5);
        assert_eq!(IngestError::storage(&e).status(), 503);
        let pe = parquet::errors::ParquetError::from(std::io::Error::from_raw_os_error(28));
        assert_eq!(storage_err(&pe).status(), 507);
    }
}

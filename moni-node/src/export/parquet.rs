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
//! The columns of a large batch are encoded and compressed on
//! `encode_threads` threads at once (parquet's [`ArrowColumnWriter`], one
//! per leaf column, spread over scoped threads): at the end of a replay the
//! workers flush every flow still open, hundreds of thousands of rows at
//! once, and a one-thread writer would then be the only thread working.
//!
//! File names are `DATASET-YYYYmmddTHHMMSSZ-PID-SEQ.parquet`: unique per
//! process and sortable by creation time.
//!
//! A failed write (a full disk, a directory removed) is a storage failure,
//! not bad data: the file it broke is removed, and its rows are written
//! again with the next file, since the writer keeps the batches of its open
//! file until the file is complete (up to [`KEPT_MAX_BYTES`]; a file
//! with more loses its rows, counted in `rows_lost`). The writer keeps the
//! batches that arrive meanwhile in a backlog of at most
//! [`BACKLOG_MAX_BYTES`] (the oldest beyond it counted lost) and tries
//! them again after 1 s, then after twice as long each time up to 30 s
//! ([`DatasetWriter::retry_if_due`]), until a write succeeds.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use analyzers::schema::{Dataset, META_DATASET, META_SCHEMA_VERSION, SCHEMA_VERSION};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::EnabledStatistics;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::config::{Codec, OutputConfig};

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

/// The most a dataset's writer holds while its writes fail, in Arrow bytes
/// (the oldest batches beyond it are counted lost).
pub const BACKLOG_MAX_BYTES: usize = 32 << 20;

/// The most of an open file's batches a writer keeps to write again if a
/// failure breaks the file, in Arrow bytes. Small, since every writer
/// holds it all the time (a busy flows file is past it within seconds,
/// and its rows are then at risk until it completes, counted if lost):
/// the 1 M-source SYN flood's peak memory stays under 200 MB.
pub const KEPT_MAX_BYTES: usize = 4 << 20;

/// Waits between tries of a failing writer: the first, and the longest.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// A batch is encoded on several threads only from this many rows: below,
/// starting the threads costs more than they save.
const PARALLEL_MIN_ROWS: usize = 2048;

/// A batch (or a slice of one) held in memory, with the Arrow bytes it
/// stands for: a slice shares its parent's buffers, which
/// `get_array_memory_size` would count whole for every slice, so a slice
/// is charged its share of the parent by rows.
#[derive(Clone)]
struct Held {
    batch: RecordBatch,
    bytes: usize,
}

impl Held {
    fn whole(batch: RecordBatch) -> Held {
        let bytes = batch.get_array_memory_size();
        Held { batch, bytes }
    }

    fn slice(&self, offset: usize, len: usize) -> Held {
        let rows = self.batch.num_rows().max(1);
        Held {
            batch: self.batch.slice(offset, len),
            bytes: self.bytes.saturating_mul(len) / rows,
        }
    }
}

struct OpenFile {
    file: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    /// The row group being encoded: one writer per leaf column (empty
    /// between row groups).
    columns: Vec<ArrowColumnWriter>,
    /// Rows in `columns`.
    rows: usize,
    /// Rows in the whole file (lost with it if a write breaks it).
    file_rows: u64,
    /// The file's batches, kept until it is complete so that a failed
    /// write loses none (`None` once they passed [`KEPT_MAX_BYTES`]).
    kept: Option<Vec<Held>>,
    kept_bytes: usize,
    tmp_path: PathBuf,
    final_path: PathBuf,
    opened: Instant,
}

impl OpenFile {
    /// What the open row group holds, encoded or not (bytes).
    fn in_progress_size(&self) -> usize {
        self.columns
            .iter()
            .map(ArrowColumnWriter::get_estimated_total_bytes)
            .sum()
    }

    /// Encodes `batch` into the open row group (opening one if needed).
    fn encode(
        &mut self,
        schema: &SchemaRef,
        batch: &RecordBatch,
        threads: usize,
    ) -> Result<(), parquet::errors::ParquetError> {
        if self.columns.is_empty() {
            self.columns = self
                .factory
                .create_column_writers(self.file.flushed_row_groups().len())?;
        }
        let mut leaves = Vec::with_capacity(self.columns.len());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column)?);
        }
        if leaves.len() != self.columns.len() {
            return Err(parquet::errors::ParquetError::General(format!(
                "{} leaf columns for {} column writers",
                leaves.len(),
                self.columns.len()
            )));
        }
        let threads = if batch.num_rows() >= PARALLEL_MIN_ROWS {
            threads
        } else {
            1
        };
        let work: Vec<(&mut ArrowColumnWriter, ArrowLeafColumn)> =
            self.columns.iter_mut().zip(leaves).collect();
        on_threads(work, threads, |(w, leaf)| w.write(&leaf))?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Closes the open row group (compressing the columns' last pages on
    /// `threads` threads) and appends it to the file.
    fn flush(&mut self, threads: usize) -> Result<(), parquet::errors::ParquetError> {
        if self.columns.is_empty() {
            return Ok(());
        }
        let columns = std::mem::take(&mut self.columns);
        let threads = if self.rows >= PARALLEL_MIN_ROWS {
            threads
        } else {
            1
        };
        self.rows = 0;
        let chunks = on_threads(columns, threads, ArrowColumnWriter::close)?;
        let mut rg = self.file.next_row_group()?;
        for c in chunks {
            c.append_to_row_group(&mut rg)?;
        }
        rg.close()?;
        Ok(())
    }
}

/// Applies `f` to every item, on up to `threads` threads (item `i` on
/// thread `i % threads`, so wide and narrow columns mix), and returns the
/// results in the items' order, or the first error. A thread that cannot
/// start leaves its items to the calling thread: nothing is lost to it.
fn on_threads<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    f: impl Fn(T) -> Result<R, parquet::errors::ParquetError> + Sync,
) -> Result<Vec<R>, parquet::errors::ParquetError> {
    use std::sync::{Mutex, PoisonError};
    let n = items.len();
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let mut shares: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % threads].push((i, item));
    }
    let shares: Vec<Mutex<Vec<(usize, T)>>> = shares.into_iter().map(Mutex::new).collect();
    let done = Mutex::new(Vec::with_capacity(n));
    let work = |share: &Mutex<Vec<(usize, T)>>| {
        let items = std::mem::take(&mut *share.lock().unwrap_or_else(PoisonError::into_inner));
        let results: Vec<_> = items.into_iter().map(|(i, t)| (i, f(t))).collect();
        done.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(results);
    };
    std::thread::scope(|s| {
        let started: Vec<_> = shares[1..]
            .iter()
            .filter_map(|share| {
                std::thread::Builder::new()
                    .name("moni-encode".into())
                    .spawn_scoped(s, || work(share))
                    .ok()
            })
            .collect();
        work(&shares[0]);
        for h in started {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
        // The shares of threads that did not start.
        shares.iter().for_each(&work);
    });
    let mut done = done.into_inner().unwrap_or_else(PoisonError::into_inner);
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// A rotating writer for one dataset.
pub struct DatasetWriter {
    dataset: &'static str,
    dir: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    rotate_secs: u64,
    rotate_max_bytes: u64,
    row_group_rows: usize,
    /// Threads that encode a large batch's columns.
    threads: usize,
    current: Option<OpenFile>,
    seq: u64,
    /// Completed files, in order.
    pub files: Vec<PathBuf>,
    /// Rows encoded into files (a batch written again after a failure
    /// counts again; `rows_in_files` is what the files hold).
    pub rows_written: u64,
    /// Rows in completed files.
    pub rows_in_files: u64,
    /// Rows lost to failed writes: a broken file's, and the backlog's
    /// beyond its cap or left when the writer is closed still failing.
    pub rows_lost: u64,
    /// Set while writes fail: the next try's time and the wait after it.
    failing: Option<(Instant, std::time::Duration)>,
    /// Batches waiting for the writes to work again, oldest first.
    backlog: std::collections::VecDeque<Held>,
    backlog_bytes: usize,
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
        let compression = match config.compression {
            Codec::Zstd => {
                Compression::ZSTD(ZstdLevel::try_new(config.zstd_level).map_err(|e| {
                    ExportError::Settings {
                        dataset: dataset.to_string(),
                        message: e.to_string(),
                    }
                })?)
            }
            Codec::Lz4 => Compression::LZ4_RAW,
            Codec::Snappy => Compression::SNAPPY,
            Codec::None => Compression::UNCOMPRESSED,
        };
        let mut props = WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(false);
        for f in schema.fields() {
            let column = || ColumnPath::from(f.name().as_str());
            if repeats(f) {
                props = props.set_column_dictionary_enabled(column(), true);
            } else if unordered_text(f) {
                props = props
                    .set_column_statistics_enabled(column(), EnabledStatistics::None)
                    .set_column_encoding(column(), Encoding::DELTA_LENGTH_BYTE_ARRAY);
            } else if delta_packs(f) {
                props = props.set_column_encoding(column(), Encoding::DELTA_BINARY_PACKED);
            }
        }
        // Row groups are cut by `write` itself (`row_group_rows`, or 64 MiB):
        // the column writers it drives know no row limit.
        let props = props
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
            row_group_rows: config.row_group_rows.max(1),
            threads: config.encode_threads.max(1),
            current: None,
            seq: 0,
            files: Vec::new(),
            rows_written: 0,
            rows_in_files: 0,
            rows_lost: 0,
            failing: None,
            backlog: std::collections::VecDeque::new(),
            backlog_bytes: 0,
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

    /// Whether a file is open (rows written since the last close).
    pub fn has_open_file(&self) -> bool {
        self.current.is_some()
    }

    /// Whether writes are failing (the backlog waits for a retry).
    pub fn is_failing(&self) -> bool {
        self.failing.is_some()
    }

    /// Appends a batch, opening or rotating files as needed. While writes
    /// fail, the batch joins the backlog; a write that fails now removes
    /// the file it broke, keeps the batch's unwritten rows and returns the
    /// error (once per failure: later batches wait quietly).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        let held = Held::whole(batch.clone());
        if self.failing.is_some() {
            self.hold(held);
            return Ok(());
        }
        self.write_or_hold(held)
    }

    /// Writes `h`; on failure holds what is not on disk (the broken
    /// file's batches, then the rest, in their order), starts or doubles
    /// the retry clock and returns the error.
    fn write_or_hold(&mut self, h: Held) -> Result<(), ExportError> {
        match self.write_now(h) {
            Ok(()) => Ok(()),
            Err((e, rest)) => {
                let mut again = self.abandon_current();
                again.extend(rest);
                self.requeue(again);
                self.start_failing();
                Err(e)
            }
        }
    }

    /// Writes `h`; on an error, the batches not on disk that the open file
    /// (if it broke) does not hold.
    fn write_now(&mut self, h: Held) -> Result<(), (ExportError, Vec<Held>)> {
        let mut rest = h;
        while rest.batch.num_rows() > 0 {
            if self.current.is_none() {
                if let Err(e) = self.open() {
                    return Err((e, vec![rest]));
                }
            }
            let Some(f) = self.current.as_mut() else {
                return Ok(());
            };
            // The rows that fit in the open row group.
            let take = rest.batch.num_rows().min(self.row_group_rows - f.rows);
            let part = rest.slice(0, take);
            let tmp = f.tmp_path.clone();
            let failed = |source| ExportError::Parquet {
                path: tmp.clone(),
                source,
            };
            if let Err(e) = f.encode(&self.schema, &part.batch, self.threads) {
                return Err((failed(e), vec![rest]));
            }
            rest = rest.slice(take, rest.batch.num_rows() - take);
            f.file_rows += take as u64;
            self.rows_written += take as u64;
            f.kept_bytes += part.bytes;
            if f.kept_bytes > KEPT_MAX_BYTES {
                f.kept = None;
            } else if let Some(k) = f.kept.as_mut() {
                k.push(part);
            }
            // A row group of long rows (alerts with long messages) ends
            // early: what the writer buffers stays bounded in bytes too.
            let buffered = f.in_progress_size();
            if f.rows >= self.row_group_rows || buffered >= ROW_GROUP_MAX_BYTES {
                if let Err(e) = f.flush(self.threads) {
                    return Err((failed(e), vec![rest]));
                }
            }
            let size = (f.file.bytes_written() + f.in_progress_size()) as u64;
            if size >= self.rotate_max_bytes || f.opened.elapsed().as_secs() >= self.rotate_secs {
                if let Err((e, mut kept)) = self.close_keeping() {
                    kept.push(rest);
                    return Err((e, kept));
                }
            }
        }
        Ok(())
    }

    /// Puts batches back at the front of the backlog, in their order.
    fn requeue(&mut self, batches: Vec<Held>) {
        for b in batches.into_iter().rev() {
            self.backlog_bytes += b.bytes;
            self.backlog.push_front(b);
        }
        self.trim_backlog();
    }

    /// Keeps a batch for the next try, within [`BACKLOG_MAX_BYTES`].
    fn hold(&mut self, h: Held) {
        self.backlog_bytes += h.bytes;
        self.backlog.push_back(h);
        self.trim_backlog();
    }

    fn trim_backlog(&mut self) {
        while self.backlog_bytes > BACKLOG_MAX_BYTES && self.backlog.len() > 1 {
            if let Some(old) = self.backlog.pop_front() {
                self.backlog_bytes -= old.bytes;
                self.rows_lost += old.batch.num_rows() as u64;
            }
        }
    }

    /// Starts (or doubles) the wait before the next try.
    fn start_failing(&mut self) {
        let wait = self
            .failing
            .map_or(RETRY_FIRST, |(_, w)| (w * 2).min(RETRY_MAX));
        self.failing = Some((Instant::now() + wait, wait));
    }

    /// Removes the open file after a failed write; returns its batches to
    /// write again (its rows are lost if it kept none).
    fn abandon_current(&mut self) -> Vec<Held> {
        let Some(f) = self.current.take() else {
            return Vec::new();
        };
        let _ = fs::remove_file(&f.tmp_path);
        self.forget(f.file_rows, f.kept)
    }

    /// The batches of a broken file, or its rows counted lost.
    fn forget(&mut self, rows: u64, kept: Option<Vec<Held>>) -> Vec<Held> {
        kept.unwrap_or_else(|| {
            self.rows_lost += rows;
            Vec::new()
        })
    }

    /// While writes fail, tries the backlog again once its time has come
    /// (or now, with `force`), and completes a file with it: writes work
    /// again only once a file is on disk (encoding into a new file only
    /// fills memory). `Ok(true)` when everything held is written, `Ok(false)`
    /// when still waiting, `Err` when this try failed too (the wait doubles).
    pub fn retry_if_due(&mut self, force: bool) -> Result<bool, ExportError> {
        let Some((at, _)) = self.failing else {
            return Ok(false);
        };
        if !force && (Instant::now() < at || self.backlog.is_empty()) {
            // Nothing to try yet: writes work again only once one has.
            return Ok(false);
        }
        while let Some(b) = self.backlog.pop_front() {
            self.backlog_bytes -= b.bytes;
            self.write_or_hold(b)?;
        }
        self.close_current()?;
        self.failing = None;
        Ok(true)
    }

    /// Gives up what the backlog holds (counted lost): the end of a run
    /// whose writes still fail.
    pub fn give_up(&mut self) {
        for b in self.backlog.drain(..) {
            self.rows_lost += b.batch.num_rows() as u64;
        }
        self.backlog_bytes = 0;
        for b in self.abandon_current() {
            self.rows_lost += b.batch.num_rows() as u64;
        }
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

    /// Completes the open file, if any: footer, fsync, rename. A failure
    /// removes the file, puts its batches back in the backlog (or counts
    /// its rows lost) and starts the retry clock.
    pub fn close_current(&mut self) -> Result<(), ExportError> {
        self.close_keeping().map_err(|(e, again)| {
            self.requeue(again);
            self.start_failing();
            e
        })
    }

    /// [`DatasetWriter::close_current`] that hands a failed file's
    /// batches back instead of queueing them.
    fn close_keeping(&mut self) -> Result<(), (ExportError, Vec<Held>)> {
        let Some(mut f) = self.current.take() else {
            return Ok(());
        };
        let (rows, tmp) = (f.file_rows, f.tmp_path.clone());
        let kept = f.kept.take();
        self.complete(f).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            (e, self.forget(rows, kept))
        })
    }

    fn complete(&mut self, f: OpenFile) -> Result<(), ExportError> {
        let mut f = f;
        let tmp = f.tmp_path.clone();
        let failed = |source| ExportError::Parquet {
            path: tmp.clone(),
            source,
        };
        f.flush(self.threads).map_err(failed)?;
        let file = f.file.into_inner().map_err(failed)?;
        file.sync_all().map_err(|source| ExportError::Io {
            path: tmp.clone(),
            source,
        })?;
        fs::rename(&tmp, &f.final_path).map_err(|source| ExportError::Io {
            path: f.final_path.clone(),
            source,
        })?;
        tracing::debug!(file = %f.final_path.display(), dataset = self.dataset, "Parquet file complete.");
        self.rows_in_files += f.file_rows;
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
        // The dataset's directory again, if it was removed (by hand, by a
        // cleanup job): a storage failure that mends itself.
        fs::create_dir_all(&self.dir).map_err(|source| ExportError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let file = File::create(&tmp_path).map_err(|source| ExportError::Io {
            path: tmp_path.clone(),
            source,
        })?;
        // The Arrow writer's own setup (the Arrow schema in the footer's
        // metadata), then its parts, to encode columns in parallel.
        let (file, factory) =
            ArrowWriter::try_new(file, Arc::clone(&self.schema), Some(self.props.clone()))
                .and_then(ArrowWriter::into_serialized_writer)
                .map_err(|source| ExportError::Parquet {
                    path: tmp_path.clone(),
                    source,
                })?;
        self.current = Some(OpenFile {
            file,
            factory,
            columns: Vec::new(),
            rows: 0,
            file_rows: 0,
            kept: Some(Vec::new()),
            kept_bytes: 0,
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
            "call_id" | "details" | "loss_run_hist" | "caller" | "callee" | "media"
        )
}

/// Whether a column is text whose minimum and maximum say nothing
/// (addresses, ids, free text): it is written without statistics. A
/// reader prunes row groups by a column's range, and the range of address
/// text in export order spans nearly every value in every row group (a
/// filter on one address reads them all either way), while finding the
/// range compared every value: leaving it out took 1.8% of the
/// instructions of a flow-heavy replay at `--max-flows 1000` (callgrind).
/// The columns that repeat keep theirs (a `vnet` range can prune).
/// These columns are also written `DELTA_LENGTH_BYTE_ARRAY` (the lengths
/// delta-packed apart from the text, which pandas, DuckDB, Polars and
/// Spark read), not plain (a four-byte length before every value): a
/// quarter less of the addresses for zstd to read, the writer 3% less CPU
/// at `--max-flows 1000` and the flows' files 1.2% smaller.
fn unordered_text(f: &arrow::datatypes::Field) -> bool {
    matches!(f.data_type(), arrow::datatypes::DataType::Utf8) && !repeats(f)
}

/// Whether a column is written delta-encoded (`DELTA_BINARY_PACKED`, which
/// pandas, DuckDB, Polars and Spark read): times and packet counts, whose
/// neighbours differ by little, so zstd gets about a quarter of the bytes.
/// On the flows of a flow-heavy capture replayed at `--max-flows 1000`
/// (4 M rows) the writer took 10% less CPU (3.78 s against 4.22 s) and
/// the files were 5% smaller. Also the one-byte columns (IP version,
/// protocol, TCP flags: Parquet stores them in four bytes each when plain)
/// and `fragments` (nearly always 0): a fifth to a hundredth of the bytes
/// before zstd, the flows' files 0.3% larger after it, and with them a
/// quarter less for zstd to read (24 -> 18 MB on 237,000 flows). Byte
/// counts, ports and ids are not: their deltas are as wide as the values
/// and the files grew.
fn delta_packs(f: &arrow::datatypes::Field) -> bool {
    use arrow::datatypes::DataType;
    match f.data_type() {
        DataType::Timestamp(..) => true,
        DataType::UInt8 => true,
        DataType::UInt64 | DataType::UInt32 => {
            f.name().starts_with("packets") || f.name() == "fragments"
        }
        _ => false,
    }
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

    /// Columns encoded on several threads, across row groups, read back
    /// as written, in order.
    #[test]
    fn parallel_encoding_reads_back_as_written() {
        use arrow::array::{ArrayRef, Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("src_addr", DataType::Utf8, true),
            Field::new("role", DataType::Utf8, false),
        ]));
        let batch = |from: i64, rows: i64| {
            let n: Vec<i64> = (from..from + rows).collect();
            let addr: Vec<Option<String>> = n
                .iter()
                .map(|i| {
                    (i % 7 != 0).then(|| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
                })
                .collect();
            let role: Vec<&str> = n
                .iter()
                .map(|i| if i % 3 == 0 { "shadow" } else { "production" })
                .collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(n)) as ArrayRef,
                    Arc::new(StringArray::from(addr)) as ArrayRef,
                    Arc::new(StringArray::from(role)) as ArrayRef,
                ],
            )
            .expect("batch")
        };
        let dir = tempfile::tempdir().expect("tmp");
        let config = OutputConfig {
            row_group_rows: 5_000,
            encode_threads: 3,
            ..OutputConfig::default()
        };
        let mut w =
            DatasetWriter::new(dir.path(), "flows", Arc::clone(&schema), &config).expect("writer");
        // Large batches (parallel), small ones (one thread), and a row
        // group boundary inside a batch.
        let mut at = 0;
        for rows in [12_000, 10, 3_000, 1, 7_777] {
            w.write(&batch(at, rows)).expect("write");
            at += rows;
        }
        w.close_current().expect("close");
        assert_eq!(w.rows_written, at as u64);
        assert_eq!(w.files.len(), 1);
        let file = File::open(&w.files[0]).expect("open");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("reader");
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups, vec![5_000, 5_000, 5_000, 5_000, 2_788]);
        let got: Vec<RecordBatch> = reader
            .build()
            .expect("build")
            .collect::<Result<_, _>>()
            .expect("read");
        let got = arrow::compute::concat_batches(&schema, &got).expect("concat");
        assert_eq!(got, batch(0, at));
    }

    /// A storage failure is retried without losing or reordering a row: the
    /// dataset's directory removed under an open file (its rename fails
    /// at a rotation inside a batch) is made again at the retry, and the
    /// open file's rows are written again before the batch's rest.
    #[test]
    fn a_removed_directory_is_made_again_and_no_row_is_lost_or_reordered() {
        use arrow::array::{ArrayRef, Int64Array};
        use arrow::datatypes::{DataType, Field, Schema};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = |from: i64, rows: i64| {
            let n: Vec<i64> = (from..from + rows).collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(n)) as ArrayRef],
            )
            .expect("batch")
        };
        let dir = tempfile::tempdir().expect("tmp");
        let config = OutputConfig {
            row_group_rows: 50,
            ..OutputConfig::default()
        };
        let mut w =
            DatasetWriter::new(dir.path(), "flows", Arc::clone(&schema), &config).expect("writer");
        w.write(&batch(0, 120)).expect("write");
        fs::remove_dir_all(dir.path().join("flows")).expect("rm");
        // Rotate at every row group from now on: the first rotation (inside
        // the next batch) fails to rename into the missing directory.
        w.rotate_max_bytes = 1;
        assert!(w.write(&batch(120, 200)).is_err());
        assert!(w.is_failing());
        // Held meanwhile, in order.
        w.write(&batch(320, 30)).expect("held");
        assert!(w.retry_if_due(true).expect("the retry writes"));
        assert!(!w.is_failing());
        w.close_current().expect("close");
        assert_eq!((w.rows_lost, w.rows_in_files), (0, 350));
        let mut got = Vec::new();
        for f in &w.files {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f).expect("open"))
                .expect("reader")
                .build()
                .expect("build");
            for b in reader {
                got.push(b.expect("read"));
            }
        }
        let got = arrow::compute::concat_batches(&schema, &got).expect("concat");
        assert_eq!(got, batch(0, 350));
    }

    /// Results come back in the items' order whatever the thread count.
    #[test]
    fn on_threads_keeps_the_order() {
        for threads in [1, 2, 3, 8, 100] {
            let got = on_threads((0..37).collect(), threads, |i: i32| Ok(i * i)).expect("run");
            assert_eq!(got, (0..37).map(|i| i * i).collect::<Vec<_>>(), "{threads}");
        }
        let err = on_threads((0..5).collect(), 2, |i: i32| {
            if i == 3 {
                Err(parquet::errors::ParquetError::General("three".into()))
            } else {
                Ok(i)
            }
        });
        assert!(err.is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc_compact(t), "20231114T221320Z");
    }
}

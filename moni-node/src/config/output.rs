//! `[output]`: the Parquet datasets' directory, rotation and compression.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// `[output]`: the Parquet datasets.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Directory holding one folder per dataset. Default `moni-out`.
    pub dir: PathBuf,
    /// Close a file and start the next after this many seconds of wall
    /// time. Default 60.
    pub rotate_secs: u64,
    /// Close a file once it holds about this many bytes. Default 128 MiB.
    pub rotate_max_bytes: u64,
    /// The files' compression codec: `zstd`, `lz4` (Parquet's LZ4_RAW),
    /// `snappy` or `none`. Default `zstd`, the smallest files; `lz4` and
    /// `snappy` cost the writer less CPU for larger files (docs/datasets.md
    /// has the measured table). Every reader moni documents (pyarrow,
    /// DuckDB, Polars, Spark) and the collector read all four.
    pub compression: Codec,
    /// zstd compression level (1-22), when `compression = "zstd"`.
    /// Default 1: on the benchmark captures its files are within 4% of
    /// level 3's size (smaller on three of four) for 7% less of the
    /// writer's CPU (callgrind), and the probe's CPU is what production
    /// shares.
    pub zstd_level: i32,
    /// Rows per Parquet row group (bounds writer memory). Default 65,536.
    pub row_group_rows: usize,
    /// Threads that encode and compress the columns of a large batch at
    /// once (the flows still open at the end of a replay arrive together).
    /// Default 0: one per analysis worker, so the writer keeps pace with
    /// the workers that feed it.
    pub encode_threads: usize,
}

/// `output.compression`: the Parquet codec of every column.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Zstd,
    Lz4,
    Snappy,
    None,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("moni-out"),
            rotate_secs: 60,
            rotate_max_bytes: 128 * 1024 * 1024,
            compression: Codec::Zstd,
            zstd_level: 1,
            row_group_rows: 65_536,
            encode_threads: 0,
        }
    }
}

impl OutputConfig {
    /// Checks the values (the section is used as it is).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let o = self;
        if o.dir.as_os_str().is_empty() {
            return Err(invalid(
                "output.dir",
                "must not be empty (\".\" names the current directory)",
            ));
        }
        if o.rotate_secs == 0 {
            return Err(invalid("output.rotate_secs", "must be at least 1"));
        }
        if o.rotate_max_bytes < 1024 {
            return Err(invalid("output.rotate_max_bytes", "must be at least 1024"));
        }
        if !(1..=22).contains(&o.zstd_level) {
            return Err(invalid("output.zstd_level", "must be between 1 and 22"));
        }
        if o.encode_threads > 256 {
            return Err(invalid("output.encode_threads", "must be at most 256"));
        }
        if o.row_group_rows == 0 {
            return Err(invalid("output.row_group_rows", "must be at least 1"));
        }
        Ok(())
    }
}

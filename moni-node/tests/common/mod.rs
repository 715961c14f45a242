//! Helpers shared by the integration tests: run a replay in-process, read
//! the Parquet datasets back, locate samples and the shared corpus.

#![allow(dead_code)] // each test binary uses a different subset

pub mod lab;

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt16Array, UInt64Array,
    UInt8Array,
};
use moni_node::config::NodeConfig;
use moni_node::replay::{replay, ReplayOptions};
use moni_node::summary::Summary;
use moni_samples::truth::{TruthBin, TruthFlow};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn sample(name: &str) -> PathBuf {
    root().join("samples/pcap").join(name)
}

/// `../shared/corpus` beside the checkout, or `$MONI_CORPUS`. With
/// `MONI_REQUIRE_CORPUS=1` (set by CI) a missing corpus fails the test.
pub fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("MONI_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/corpus"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("MONI_REQUIRE_CORPUS").is_ok_and(|v| v == "1") {
        panic!("corpus not found at {}", dir.display());
    }
    eprintln!("skipping: corpus not found at {}", dir.display());
    None
}

pub fn replay_files(
    files: &[PathBuf],
    vnet_map: Option<&str>,
    out: &Path,
    config: &str,
) -> Summary {
    replay_files_with(files, vnet_map, out, config, 1)
}

/// [`replay_files`] with `workers` analysis workers.
pub fn replay_files_with(
    files: &[PathBuf],
    vnet_map: Option<&str>,
    out: &Path,
    config: &str,
    workers: usize,
) -> Summary {
    let cfg = NodeConfig::parse(config)
        .expect("config parses")
        .resolve(vnet_map)
        .expect("config resolves");
    replay(
        &cfg,
        &ReplayOptions {
            files: files.to_vec(),
            filter: None,
            out_dir: out.to_path_buf(),
            progress: false,
            workers,
        },
    )
    .expect("replay writes its output")
}

pub fn read_dataset(dir: &Path) -> Vec<RecordBatch> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dataset dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&p).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader");
        for b in reader {
            out.push(b.expect("batch"));
        }
    }
    out
}

pub fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("type of column {name}"))
}

/// moni's `flows` rows in the generator's truth format.
pub fn flows_as_truth(batches: &[RecordBatch]) -> Vec<TruthFlow> {
    let mut out = Vec::new();
    for b in batches {
        let s = |n| col::<StringArray>(b, n);
        let u64c = |n| col::<UInt64Array>(b, n);
        let ts = |n| col::<TimestampMicrosecondArray>(b, n);
        let vlan = col::<UInt16Array>(b, "vlan_id");
        for i in 0..b.num_rows() {
            out.push(TruthFlow {
                vnet: s("vnet").value(i).to_string(),
                role: s("role").value(i).to_string(),
                vlan_id: (!vlan.is_null(i)).then(|| vlan.value(i)),
                src_addr: s("src_addr").value(i).to_string(),
                dst_addr: s("dst_addr").value(i).to_string(),
                src_port: col::<UInt16Array>(b, "src_port").value(i),
                dst_port: col::<UInt16Array>(b, "dst_port").value(i),
                protocol: col::<UInt8Array>(b, "protocol").value(i),
                start_time_us: ts("start_time").value(i),
                end_time_us: ts("end_time").value(i),
                packets_fwd: u64c("packets_fwd").value(i),
                bytes_fwd: u64c("bytes_fwd").value(i),
                packets_rev: u64c("packets_rev").value(i),
                bytes_rev: u64c("bytes_rev").value(i),
                tcp_flags: col::<UInt8Array>(b, "tcp_flags").value(i),
                fragments: u64c("fragments").value(i),
                end_reason: s("end_reason").value(i).to_string(),
            });
        }
    }
    out
}

/// moni's `bins` rows in the generator's truth format.
pub fn bins_as_truth(batches: &[RecordBatch]) -> Vec<TruthBin> {
    let mut out = Vec::new();
    for b in batches {
        let u = |n| col::<UInt64Array>(b, n);
        for i in 0..b.num_rows() {
            out.push(TruthBin {
                vnet: col::<StringArray>(b, "vnet").value(i).to_string(),
                bin_start_us: col::<TimestampMicrosecondArray>(b, "bin_start").value(i),
                packets: u("packets").value(i),
                bytes: u("bytes").value(i),
                tcp_packets: u("tcp_packets").value(i),
                tcp_bytes: u("tcp_bytes").value(i),
                udp_packets: u("udp_packets").value(i),
                udp_bytes: u("udp_bytes").value(i),
                icmp_packets: u("icmp_packets").value(i),
                icmp_bytes: u("icmp_bytes").value(i),
                other_packets: u("other_packets").value(i),
                other_bytes: u("other_bytes").value(i),
                decode_errors: u("decode_errors").value(i),
            });
        }
    }
    out
}

/// Checks a test runs per corpus file (or suricata-verify case), with the
/// files whose check an open issue still has to make hold. A known gap
/// must still fail: once its issue lands and the check holds, the test
/// fails until the entry is removed, so the list only ever shrinks.
/// Every other file must pass; all failures are reported together.
pub struct GapCheck {
    known: &'static [(&'static str, &'static str)],
    failures: Vec<String>,
    gaps_seen: Vec<&'static str>,
}

impl GapCheck {
    /// `known`: (file or case name, the issue that closes the gap and why).
    pub fn new(known: &'static [(&'static str, &'static str)]) -> Self {
        GapCheck {
            known,
            failures: Vec::new(),
            gaps_seen: Vec::new(),
        }
    }

    /// Records the result of the check on `name` (a path is matched by its
    /// file name, or by the end of the path).
    pub fn record(&mut self, name: &str, result: Result<(), String>) {
        let gap = self
            .known
            .iter()
            .find(|(k, _)| name == *k || name.ends_with(&format!("/{k}")));
        match (gap, result) {
            (Some((k, why)), Err(e)) => {
                println!("known gap ({why}): {name}: {e}");
                self.gaps_seen.push(k);
            }
            (Some((k, why)), Ok(())) => {
                self.gaps_seen.push(k);
                self.failures.push(format!(
                    "{name} now passes: remove it from the known gaps ({why})"
                ));
            }
            (None, Err(e)) => self.failures.push(format!("{name}: {e}")),
            (None, Ok(())) => {}
        }
    }

    /// Panics with every failure, and with any known gap that no file
    /// matched (a renamed or removed file must not hide a gap).
    pub fn finish(self) {
        let mut failures = self.failures;
        for (k, why) in self.known {
            if !self.gaps_seen.contains(k) {
                failures.push(format!("known gap {k} ({why}) matched no file"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

/// `return Err(message)` from a check when `cond` does not hold.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

//! The collector's storage path under stress: a full disk is a 5xx that
//! the node retries (never a rejected file), an upload's parts become
//! visible all or none, memory follows upload bytes rather than decoded
//! rows, uploads are capped in rows, decoded bytes, partitions and VNets,
//! NOT NULL columns hold no nulls, counters are stored as int64, and one
//! data directory has one collector.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

mod common;
use common::tmpfs::{fill, Tmpfs};
use common::{free_port, node_bin, root, visible_files};

const TOKEN: &str = "test-token-0123456789abcdef";
const HOUR_US: i64 = 3_600_000_000;
/// 2026-01-01T00:00:00Z in µs.
const T0: i64 = 1_767_225_600_000_000;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

struct Collector {
    child: Child,
    port: u16,
    data: PathBuf,
}

impl Collector {
    /// A collector on `data` with extra `[server]` lines.
    fn start(dir: &Path, data: &Path, extra: &str) -> Collector {
        let port = free_port();
        let config = dir.join(format!("collector-{port}.toml"));
        std::fs::write(&config, config_text(port, data, extra)).expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_moni-collector"))
            .args(["serve", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .expect("start collector");
        let c = Collector {
            child,
            port,
            data: data.to_path_buf(),
        };
        let t0 = Instant::now();
        while c.get("/healthz").is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "collector did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> Option<String> {
        reqwest::blocking::get(self.url(path)).ok()?.text().ok()
    }

    /// POSTs `body` as `dataset`; returns (status, Retry-After, body).
    fn upload(&self, dataset: &str, body: Vec<u8>) -> (u16, Option<String>, String) {
        let resp = client()
            .post(self.url(&format!("/v1/ingest/{dataset}")))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .expect("send");
        let status = resp.status().as_u16();
        let after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, after, resp.text().unwrap_or_default())
    }

    fn stored_files(&self) -> Vec<PathBuf> {
        visible_files(&self.data)
    }

    fn incoming(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.data.join(".incoming"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    fn rejected(&self, reason: &str) -> u64 {
        let needle = format!("moni_collector_rejected_uploads_total{{reason=\"{reason}\"}} ");
        self.get("/metrics")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(&needle)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Peak resident memory (VmHWM) in bytes.
    fn peak_rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        let kb: u64 = s
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb * 1024
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(port: u16, data: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n{extra}\n[[nodes]]\nid = \"node-1\"\ntoken = \"{TOKEN}\"\n",
        data.display()
    )
}

fn rows_in(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| {
            let f = std::fs::File::open(p).expect("open");
            let b = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet");
            u64::try_from(b.metadata().file_metadata().num_rows()).expect("rows")
        })
        .sum()
}

/// Leaves about `free` bytes free on a filesystem filled by [`fill`].
fn leave_free(filler: &Path, full: u64, free: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(filler)
        .expect("filler");
    f.set_len(full.saturating_sub(free)).expect("truncate");
}

/// A `bins` batch: one row per start time, every row in VNet `vnet`.
fn bins_batch(starts: &[i64], vnet: &str) -> RecordBatch {
    let schema = analyzers::schema::bins_schema();
    let n = starts.len();
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.data_type() {
                DataType::Utf8 if f.name() == "vnet" => Arc::new(StringArray::from(vec![vnet; n])),
                DataType::Utf8 => Arc::new(StringArray::from(vec!["production"; n])),
                DataType::Timestamp(..) => {
                    arrow::compute::cast(&Int64Array::from(starts.to_vec()), f.data_type())
                        .expect("cast")
                }
                other => {
                    arrow::compute::cast(&Int64Array::from(vec![1i64; n]), other).expect("cast")
                }
            }
        })
        .collect();
    RecordBatch::try_new(schema, cols).expect("batch")
}

fn props(dataset: &str) -> WriterProperties {
    WriterProperties::builder()
        .set_key_value_metadata(Some(vec![
            KeyValue::new("moni.dataset".into(), dataset.to_string()),
            KeyValue::new(
                "moni.schema_version".into(),
                analyzers::schema::SCHEMA_VERSION.to_string(),
            ),
        ]))
        .build()
}

fn parquet(dataset: &str, batches: impl IntoIterator<Item = RecordBatch>) -> Vec<u8> {
    let mut batches = batches.into_iter().peekable();
    let schema = batches.peek().expect("a batch").schema();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props(dataset))).expect("writer");
    for b in batches {
        w.write(&b).expect("write");
    }
    w.close().expect("close");
    out
}

/// A `bins` upload with rows in several VNets and hours (several parts),
/// large enough that a nearly full disk fails part-way.
fn multi_part_bins() -> Vec<u8> {
    let mut batches = Vec::new();
    for (i, vnet) in ["A", "B", "C"].iter().enumerate() {
        let starts: Vec<i64> = (0..20_000i64)
            .map(|k| T0 + (i as i64) * HOUR_US + k * 7_919_993 % HOUR_US)
            .collect();
        let mut b = bins_batch(&starts, vnet);
        // Varying counters so the parts do not compress to nothing.
        let idx = b.schema().index_of("bytes").expect("bytes");
        let mut cols = b.columns().to_vec();
        cols[idx] = Arc::new(UInt64Array::from(
            (0..20_000u64)
                .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20)
                .collect::<Vec<_>>(),
        ));
        b = RecordBatch::try_new(b.schema(), cols).expect("batch");
        batches.push(b);
    }
    parquet("bins", batches)
}

/// On a disk that is full, or too full for every part of an upload, the
/// answer is 507 with Retry-After, nothing of the upload is visible and
/// nothing is left in `.incoming`; once there is room the same upload is
/// stored whole.
#[test]
fn a_full_disk_is_507_and_an_upload_is_stored_all_or_none() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let Some(_fs) = Tmpfs::mount(&data, "4m") else {
        return;
    };
    let c = Collector::start(tmp.path(), &data, "");
    let body = multi_part_bins();
    let filler = data.join(".filler");
    let full = fill(&filler);
    let (mut saw_507, mut stored, mut max_free_507) = (0, false, 0);
    let step = (body.len() as u64 / 40).max(4096);
    let t0 = Instant::now();
    let mut free = 0;
    while free < 4 * body.len() as u64 + 256 * 1024 {
        assert!(t0.elapsed() < Duration::from_secs(120), "bounded");
        leave_free(&filler, full, free);
        let (status, after, text) = c.upload("bins", body.clone());
        match status {
            507 => {
                saw_507 += 1;
                max_free_507 = free;
                assert!(after.is_some(), "507 without Retry-After: {text}");
                assert!(text.contains("storage full"), "{text}");
                assert!(
                    c.stored_files().is_empty(),
                    "free {free}: partial upload visible: {:?}",
                    c.stored_files()
                );
                assert!(
                    c.incoming().is_empty(),
                    "free {free}: leaked {:?}",
                    c.incoming()
                );
            }
            201 => {
                let v: serde_json::Value = serde_json::from_str(&text).expect("json");
                assert_eq!(v["parts"], 3, "{text}");
                assert_eq!(v["already_stored"], 0, "{text}");
                assert_eq!(c.stored_files().len(), 3);
                assert_eq!(rows_in(&c.stored_files()), 60_000);
                stored = true;
                break;
            }
            other => panic!("free {free}: {other} {text}"),
        }
        free += step;
    }
    assert!(saw_507 > 3, "{saw_507} answers of 507");
    // Some uploads failed after their body was stored: while writing parts.
    assert!(
        max_free_507 > body.len() as u64 + 64 * 1024,
        "last 507 with {max_free_507} bytes free, body {}",
        body.len()
    );
    assert!(stored, "stored once there was room");
    assert_eq!(c.rejected("no_space"), saw_507);
    assert!(c.incoming().is_empty(), "{:?}", c.incoming());
    drop(c);
}

/// Rows of every dataset under `dir/<dataset>/`, by dataset.
fn rows_by_dataset(dir: &Path) -> Vec<(String, u64)> {
    analyzers::schema::DATASETS
        .iter()
        .map(|d| (d.to_string(), rows_in(&visible_files(&dir.join(d)))))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A node shipping to a collector whose disk is full keeps its files and
/// retries (507 is not a verdict on the file); once space frees every row
/// is stored exactly once and nothing is in `rejected/`.
#[test]
fn a_node_retries_a_full_collector_and_every_row_is_stored_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let Some(_fs) = Tmpfs::mount(&data, "8m") else {
        return;
    };
    let c = Collector::start(tmp.path(), &data, "");
    let filler = data.join(".filler");
    fill(&filler);
    let out = tmp.path().join("node-out");
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nworkers = 2\ntick_ms = 100\n[metrics]\nlisten = \"\"\n\
             [[sources]]\nfile = \"{}\"\nspeed = 200.0\n\
             [ship]\ncollectors = [\"{}\"]\ntoken = \"{TOKEN}\"\nretry_max_secs = 1\n\
             drain_secs = 120\nkeep_shipped = true\n[output]\ndir = \"{}\"\n",
            root().join("samples/pcap/voip-impairments.pcap").display(),
            c.url(""),
            out.display()
        ),
    )
    .expect("node config");
    let mut node = Command::new(node_bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moni-node (build it first)");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let node = Kill(&mut node);
    // The node meets a full disk several times.
    let t0 = Instant::now();
    while c.rejected("no_space") < 4 {
        assert!(t0.elapsed() < Duration::from_secs(90), "no 507 seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(visible_files(&out.join("rejected")).is_empty());
    assert!(c.stored_files().is_empty());
    std::fs::remove_file(&filler).expect("free the disk");
    // It ships everything and stops.
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = node.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(150),
            "node did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let mut summary = String::new();
    node.0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut summary)
        .expect("summary");
    let s: serde_json::Value = serde_json::from_str(&summary).expect("JSON summary");
    assert_eq!(s["ship"]["files_rejected"], 0, "{}", s["ship"]);
    assert_eq!(s["ship"]["files_left"], 0, "{}", s["ship"]);
    assert!(s["ship"]["failures"].as_u64().unwrap_or(0) >= 4);
    assert!(visible_files(&out.join("rejected")).is_empty());
    let shipped = rows_by_dataset(&out.join("shipped"));
    assert!(
        shipped.iter().any(|(d, n)| d == "flows" && *n > 0),
        "{shipped:?}"
    );
    assert_eq!(rows_by_dataset(&data), shipped, "every row stored once");
    assert!(c.incoming().is_empty());
    // The summary names each file where it is: under shipped/.
    let named: Vec<&str> = s["datasets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["files"].as_array().into_iter().flatten())
        .filter_map(|f| f.as_str())
        .collect();
    assert!(!named.is_empty(), "{}", s["datasets"]);
    for f in named {
        assert!(
            f.contains("/shipped/") && std::path::Path::new(f).exists(),
            "{f}"
        );
    }
}

/// A 10 M-row upload (1 MB of Parquet) is split in bounded memory; above
/// `max_rows_per_upload` or `max_decoded_bytes` it is 413, storing nothing.
#[test]
fn a_ten_million_row_upload_streams_in_bounded_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let million = bins_batch(&vec![T0; 1_000_000], "A");
    let body = parquet("bins", std::iter::repeat_n(million, 10));
    assert!(body.len() < 4 << 20, "{} bytes", body.len());

    let c = Collector::start(tmp.path(), &tmp.path().join("data"), "");
    let (status, _, text) = c.upload("bins", body.clone());
    assert_eq!(status, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["rows"], 10_000_000);
    assert_eq!(v["parts"], 1);
    assert_eq!(rows_in(&c.stored_files()), 10_000_000);
    let peak = c.peak_rss();
    eprintln!("collector peak RSS after 10 M rows: {} MB", peak >> 20);
    assert!(peak < 300 << 20, "peak RSS {} MB", peak >> 20);
    drop(c);

    let c = Collector::start(
        tmp.path(),
        &tmp.path().join("data-capped"),
        "max_rows_per_upload = 1000000\n",
    );
    let (status, _, text) = c.upload("bins", body.clone());
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_rows_per_upload"), "{text}");
    assert!(c.stored_files().is_empty());
    assert_eq!(c.rejected("too_many_rows"), 1);
    drop(c);

    let c = Collector::start(
        tmp.path(),
        &tmp.path().join("data-decoded"),
        "max_decoded_bytes = 100000000\n",
    );
    let (status, _, text) = c.upload("bins", body);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_decoded_bytes"), "{text}");
    assert!(c.stored_files().is_empty());
    assert!(c.incoming().is_empty(), "{:?}", c.incoming());
    assert_eq!(c.rejected("too_many_decoded_bytes"), 1);
}

/// Rows spread over 20,000 hours are refused (422 naming the cap) before
/// anything is stored.
#[test]
fn an_upload_over_the_partition_cap_is_refused_and_stores_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(tmp.path(), &tmp.path().join("data"), "");
    let starts: Vec<i64> = (0..20_000).map(|h| T0 + h * HOUR_US).collect();
    let (status, _, text) = c.upload("bins", parquet("bins", [bins_batch(&starts, "A")]));
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("more than 256 partitions"), "{text}");
    assert!(text.contains("max_partitions_per_upload"), "{text}");
    assert!(c.stored_files().is_empty(), "{:?}", c.stored_files());
    assert!(c.incoming().is_empty(), "{:?}", c.incoming());
    assert_eq!(c.rejected("too_many_partitions"), 1);
    // 256 partitions are fine.
    let (status, _, text) = c.upload("bins", parquet("bins", [bins_batch(&starts[..256], "A")]));
    assert_eq!(status, 201, "{text}");
    assert_eq!(c.stored_files().len(), 256);
    // Neither upload opened a Parquet writer per partition (about 0.8 MB
    // each: 256 took the collector past 200 MB).
    let peak = c.peak_rss();
    eprintln!(
        "collector peak RSS after 256 one-row partitions: {} MB",
        peak >> 20
    );
    assert!(peak < 80 << 20, "peak RSS {} MB", peak >> 20);
}

/// Rows of 12 hours interleaved, more than an upload holds in memory:
/// 8 partitions are written as they come, the other 4 through their spill
/// files; every row is stored, one file per partition, and nothing is
/// left under `.incoming`.
#[test]
fn an_upload_of_more_partitions_than_writers_spills_and_stores_every_row() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 8 partitions get writers once 16 MiB are held; the other 4 hold a
    // third of the rest, 24 MiB: they spill.
    let starts: Vec<i64> = (0..1_200_000).map(|i| T0 + (i % 12) * HOUR_US).collect();
    let batch = bins_batch(&starts, "A");
    assert!(
        batch.get_array_memory_size() > 64 << 20,
        "{}",
        batch.get_array_memory_size()
    );
    let c = Collector::start(tmp.path(), &tmp.path().join("data"), "");
    let (status, _, text) = c.upload("bins", parquet("bins", [batch]));
    assert_eq!(status, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["rows"], 1_200_000);
    assert_eq!(v["parts"], 12);
    let files = c.stored_files();
    assert_eq!(files.len(), 12);
    assert_eq!(rows_in(&files), 1_200_000);
    let spills = c.get("/metrics").unwrap_or_default().lines().find_map(|l| {
        l.strip_prefix("moni_collector_spills_total{dataset=\"bins\"} ")?
            .trim()
            .parse::<u64>()
            .ok()
    });
    assert!(spills.is_some_and(|n| n > 0), "{spills:?}");
    assert!(c.incoming().is_empty(), "{:?}", c.incoming());
    let peak = c.peak_rss();
    eprintln!(
        "collector peak RSS after 1,200,000 rows in 12 partitions: {} MB",
        peak >> 20
    );
    assert!(peak < 300 << 20, "peak RSS {} MB", peak >> 20);
}

/// `max_vnets_per_node` counts the VNet names a node has stored, also
/// across a restart.
#[test]
fn the_vnet_cap_per_node_holds_across_restarts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let extra = "max_vnets_per_node = 2\n";
    let c = Collector::start(tmp.path(), &data, extra);
    let three = parquet("bins", ["A", "B", "C"].map(|v| bins_batch(&[T0], v)));
    let (status, _, text) = c.upload("bins", three);
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("max_vnets_per_node"), "{text}");
    assert!(c.stored_files().is_empty());
    for v in ["A", "B"] {
        let (status, _, text) = c.upload("bins", parquet("bins", [bins_batch(&[T0], v)]));
        assert_eq!(status, 201, "{v}: {text}");
    }
    let (status, _, text) = c.upload("bins", parquet("bins", [bins_batch(&[T0], "C")]));
    assert_eq!(status, 422, "{text}");
    assert_eq!(c.rejected("too_many_vnets"), 2);
    drop(c);
    let c = Collector::start(tmp.path(), &data, extra);
    let (status, _, text) = c.upload("bins", parquet("bins", [bins_batch(&[T0], "D")]));
    assert_eq!(status, 422, "after restart: {text}");
    let (status, _, text) = c.upload("bins", parquet("bins", [bins_batch(&[T0 + 1], "A")]));
    assert_eq!(status, 201, "a known VNet: {text}");
    assert_eq!(c.stored_files().len(), 3);
}

/// A column the dataset declares NOT NULL that holds a null is refused.
#[test]
fn nulls_in_a_not_null_column_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(tmp.path(), &tmp.path().join("data"), "");
    let b = bins_batch(&[T0, T0 + 1, T0 + 2], "A");
    let idx = b.schema().index_of("packets").expect("packets");
    let fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.as_ref().clone();
            if i == idx {
                f.with_nullable(true)
            } else {
                f
            }
        })
        .collect();
    let mut cols = b.columns().to_vec();
    cols[idx] = Arc::new(UInt64Array::from(vec![Some(1), None, Some(3)]));
    assert_eq!(cols[idx].null_count(), 1);
    let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("batch");
    let (status, _, text) = c.upload("bins", parquet("bins", [b]));
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("column packets is NOT NULL"), "{text}");
    assert!(c.stored_files().is_empty());
    assert_eq!(c.rejected("null_in_required"), 1);
}

/// The store keeps the node's uint64 counters as int64 (Spark and Hive have
/// no unsigned integers); a value above i64::MAX is refused, never stored
/// wrapped.
#[test]
fn counters_are_stored_as_int64_and_a_value_above_i64_max_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = Collector::start(tmp.path(), &tmp.path().join("data"), "");
    let (status, _, text) = c.upload("bins", parquet("bins", [bins_batch(&[T0], "A")]));
    assert_eq!(status, 201, "{text}");
    let stored = c.stored_files();
    assert_eq!(stored.len(), 1);
    let f = std::fs::File::open(&stored[0]).expect("part");
    let reader = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet");
    let schema = reader.schema().clone();
    let packets = schema.field_with_name("packets").expect("packets");
    assert_eq!(packets.data_type(), &DataType::Int64);
    assert!(
        !schema
            .fields()
            .iter()
            .any(|f| f.data_type() == &DataType::UInt64),
        "{schema:?}"
    );
    let batch = reader
        .build()
        .expect("reader")
        .next()
        .expect("a batch")
        .expect("batch");
    let col = batch.column_by_name("packets").expect("packets");
    let values = col.as_any().downcast_ref::<Int64Array>().expect("int64");
    assert_eq!(values.value(0), 1, "the node's value, unchanged");

    let b = bins_batch(&[T0 + 1], "A");
    let idx = b.schema().index_of("bytes").expect("bytes");
    let mut cols = b.columns().to_vec();
    cols[idx] = Arc::new(UInt64Array::from(vec![u64::MAX]));
    let b = RecordBatch::try_new(b.schema(), cols).expect("batch");
    let (status, _, text) = c.upload("bins", parquet("bins", [b]));
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("column bytes"), "{text}");
    assert_eq!(c.stored_files().len(), 1);
    assert_eq!(c.rejected("schema_mismatch"), 1);
}

/// A second `serve` on the same data directory refuses to start with one
/// line, and the running collector's upload in flight is untouched.
#[test]
fn a_second_serve_on_the_same_data_dir_refuses_and_leaves_the_first_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let c = Collector::start(tmp.path(), &data, "");
    let file = parquet("bins", [bins_batch(&[T0, T0 + 1], "A")]);
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "POST /v1/ingest/bins HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        file.len()
    )
    .expect("headers");
    s.write_all(&file[..file.len() / 2]).expect("half body");
    s.flush().expect("flush");
    let t0 = Instant::now();
    while c.incoming().is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(10), "upload in flight");
        std::thread::sleep(Duration::from_millis(20));
    }
    let in_flight = c.incoming();

    let port = free_port();
    let config = tmp.path().join("second.toml");
    std::fs::write(&config, config_text(port, &data, "")).expect("config");
    let mut second = Command::new(env!("CARGO_BIN_EXE_moni-collector"))
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("second collector");
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = second.try_wait().expect("wait") {
            break Some(st);
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = second.kill();
            let _ = second.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = second.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = status.expect("the second collector refused to start");
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(
        err.contains("in use by another moni-collector") && err.contains("server.data_dir"),
        "{err:?}"
    );
    assert_eq!(c.incoming(), in_flight, "in-flight upload untouched");

    s.write_all(&file[file.len() / 2..]).expect("rest of body");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    assert_eq!(c.stored_files().len(), 1);
}

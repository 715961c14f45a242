//! The collector as a running process: every refusal gives a clear answer,
//! stores nothing and leaves it serving; a retried upload is stored once;
//! SIGKILL mid-upload leaves no partial file in the dataset.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

mod common;
use common::{free_port, replay_miniature};

const TOKEN: &str = "test-token-0123456789abcdef";

struct Collector {
    child: Child,
    port: u16,
    data: PathBuf,
}

impl Collector {
    fn start(dir: &Path, port: u16, max_body: u64) -> Collector {
        let data = dir.join("data");
        let config = dir.join(format!("collector-{port}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nmax_body_bytes = {max_body}\n[[nodes]]\nid = \"node-1\"\ntoken = \"{TOKEN}\"\n",
                data.display()
            ),
        )
        .expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_moni-collector"))
            .args(["serve", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .expect("start collector");
        let c = Collector { child, port, data };
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

    /// POSTs `body` as `dataset`; returns (status, body).
    fn upload(&self, dataset: &str, body: Vec<u8>, token: Option<&str>) -> (u16, String) {
        let mut r = reqwest::blocking::Client::new()
            .post(self.url(&format!("/v1/ingest/{dataset}")))
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().expect("send");
        let status = resp.status().as_u16();
        (status, resp.text().unwrap_or_default())
    }

    fn stored_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.data.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                let hidden = e.file_name().to_string_lossy().starts_with('.');
                if p.is_dir() && !hidden {
                    stack.push(p);
                } else if p.is_file() && !hidden {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parquet files of a `moni-node replay` of a sample, by dataset.
fn node_files(dir: &Path) -> PathBuf {
    let out = dir.join("node-out");
    replay_miniature(&out);
    out
}

fn one_file(out: &Path, dataset: &str) -> Vec<u8> {
    let dir = out.join(dataset);
    let f = std::fs::read_dir(&dir)
        .expect("dataset dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .expect("a parquet file");
    std::fs::read(f).expect("read")
}

/// `batches` as one Parquet file written with `props`.
fn parquet_bytes(
    batches: &[RecordBatch],
    props: parquet::file::properties::WriterProperties,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batches[0].schema(), Some(props)).expect("writer");
    for b in batches {
        w.write(b).expect("write");
    }
    w.close().expect("close");
    out
}

/// The same flows file with every VNet renamed to `name`.
fn with_vnet(file: &[u8], name: &str) -> Vec<u8> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file.to_vec()))
        .expect("parquet")
        .build()
        .expect("reader");
    let mut batches = Vec::new();
    for b in reader {
        let b = b.expect("batch");
        let idx = b.schema().index_of("vnet").expect("vnet column");
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        cols[idx] = std::sync::Arc::new(StringArray::from(vec![name; b.num_rows()]));
        batches.push(RecordBatch::try_new(b.schema(), cols).expect("batch"));
    }
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(vec![
            parquet::file::metadata::KeyValue::new("moni.dataset".into(), "flows".to_string()),
            parquet::file::metadata::KeyValue::new(
                "moni.schema_version".into(),
                analyzers::schema::SCHEMA_VERSION.to_string(),
            ),
        ]))
        .build();
    parquet_bytes(&batches, props)
}

/// The same Parquet file written again with `codec` (as pyarrow, DuckDB
/// or Spark would write it when a store is compacted or migrated).
fn recompressed(file: &[u8], codec: parquet::basic::Compression) -> Vec<u8> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file.to_vec()))
        .expect("parquet");
    let meta = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    let reader = builder.build().expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(codec)
        .set_key_value_metadata(meta)
        .build();
    parquet_bytes(&batches, props)
}

/// Files compressed with any of Parquet's codecs are stored (they are
/// valid Parquet; the collector used to read only zstd and uncompressed,
/// and refused a snappy file as "not a readable Parquet file").
#[test]
fn files_in_every_parquet_codec_are_stored() {
    use parquet::basic::{BrotliLevel, Compression, GzipLevel};
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = node_files(tmp.path());
    let c = Collector::start(tmp.path(), free_port(), 64 * 1024 * 1024);
    let flows = one_file(&out, "flows");
    for codec in [
        Compression::SNAPPY,
        Compression::LZ4_RAW,
        Compression::LZ4,
        Compression::GZIP(GzipLevel::default()),
        Compression::BROTLI(BrotliLevel::default()),
    ] {
        let (status, body) = c.upload("flows", recompressed(&flows, codec), Some(TOKEN));
        assert_eq!(status, 201, "{codec:?}: {body}");
    }
}

/// (what, dataset, body, token, expected status, text in the error)
type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, u16, &'a str);

#[test]
fn every_refusal_is_clear_stores_nothing_and_the_collector_keeps_serving() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = node_files(tmp.path());
    let c = Collector::start(tmp.path(), free_port(), 64 * 1024);
    let flows = one_file(&out, "flows");
    let bins = one_file(&out, "bins");
    let big = one_file(&out, "bins").repeat(1 + 70 * 1024 / bins.len().max(1));
    let cases: Vec<Case> = vec![
        ("no token", "flows", flows.clone(), None, 401, "token"),
        (
            "wrong token",
            "flows",
            flows.clone(),
            Some("not-the-token-0123456789"),
            401,
            "token",
        ),
        (
            "unknown dataset",
            "packets",
            flows.clone(),
            Some(TOKEN),
            400,
            "unknown dataset",
        ),
        (
            "traversal in dataset",
            "..%2F..%2Fetc",
            flows.clone(),
            Some(TOKEN),
            400,
            "unknown dataset",
        ),
        (
            "not parquet",
            "flows",
            b"GET / HTTP/1.1\r\n\r\nhello".to_vec(),
            Some(TOKEN),
            422,
            "not a readable Parquet",
        ),
        (
            "truncated",
            "flows",
            flows[..flows.len() / 2].to_vec(),
            Some(TOKEN),
            422,
            "not a readable Parquet",
        ),
        (
            "wrong dataset",
            "flows",
            bins.clone(),
            Some(TOKEN),
            422,
            "dataset",
        ),
        (
            "traversal in a VNet name",
            "flows",
            with_vnet(&flows, "../../../tmp/x"),
            Some(TOKEN),
            400,
            "not allowed in a path",
        ),
        (
            "a VNet name readers take for NULL",
            "flows",
            with_vnet(&flows, "__HIVE_DEFAULT_PARTITION__"),
            Some(TOKEN),
            400,
            "__HIVE_DEFAULT_PARTITION__",
        ),
        ("too large", "bins", big, Some(TOKEN), 413, "bytes"),
        // From a hostile-input tour: a mutated flows file on which the
        // Parquet decoder panics ("offset + len out of bounds") was
        // answered 503, which the node retries forever.
        (
            "a file the decoder panics on",
            "flows",
            test_data("corrupt-flows.parquet"),
            Some(TOKEN),
            422,
            "the Parquet decoder failed on it",
        ),
        (
            "MOS NaN and infinite, loss above 1",
            "rtp_windows",
            test_data("rtp-windows-nan-mos.parquet"),
            Some(TOKEN),
            422,
            "of dataset rtp_windows holds",
        ),
        (
            "times in the year -290308",
            "flows",
            test_data("flows-year-minus-290308.parquet"),
            Some(TOKEN),
            422,
            "not a time between the years 1970 and 9999",
        ),
    ];
    for (what, dataset, body, token, status, needle) in cases {
        let (got, text) = c.upload(dataset, body, token);
        assert_eq!(got, status, "{what}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: JSON error body, got {text:?}"));
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{what}: {msg}");
        assert!(!msg.contains('\n'), "{what}: one line");
        assert!(c.stored_files().is_empty(), "{what}: nothing stored");
        assert_eq!(
            c.get("/healthz").as_deref(),
            Some("ok\n"),
            "{what}: still serving"
        );
    }
    // A mismatching content hash is refused too.
    let resp = reqwest::blocking::Client::new()
        .post(c.url("/v1/ingest/flows"))
        .bearer_auth(TOKEN)
        .header("X-Content-Sha256", "00".repeat(32))
        .body(flows.clone())
        .send()
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(c.stored_files().is_empty());
    let metrics = c.get("/metrics").expect("metrics");
    for reason in [
        "unauthorized",
        "unknown_dataset",
        "not_parquet",
        "wrong_dataset",
        "bad_name",
        "too_large",
        "hash_mismatch",
        "bad_value",
    ] {
        assert!(
            metrics.contains(&format!(
                "moni_collector_rejected_uploads_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted"
        );
    }
    // A good upload, then the same again (a retry after a lost ack).
    let (s1, b1) = c.upload("flows", flows.clone(), Some(TOKEN));
    assert_eq!(s1, 201, "{b1}");
    let stored = c.stored_files();
    assert!(!stored.is_empty());
    assert!(stored
        .iter()
        .all(|p| p.to_string_lossy().contains("/flows/node=node-1/vnet=")));
    let (s2, b2) = c.upload("flows", flows, Some(TOKEN));
    assert_eq!(s2, 201, "{b2}");
    let v: serde_json::Value = serde_json::from_str(&b2).expect("json");
    assert_eq!(v["already_stored"], v["parts"]);
    assert_eq!(c.stored_files(), stored, "stored once");
    // The staging directory removed under the running collector (a
    // clean-up of the data directory) is made again, not a 503 for every
    // upload until a restart.
    std::fs::remove_dir_all(c.data.join(".incoming")).expect("remove .incoming");
    let (s3, b3) = c.upload("bins", bins, Some(TOKEN));
    assert_eq!(s3, 201, "{b3}");
}

/// Every file of every dataset a node writes is stored: the checks of
/// impossible values must not refuse what a node computes (a review found
/// `mos_diff`, a difference, judged as a MOS and every `rtp_compare` file
/// refused).
#[test]
fn every_dataset_a_node_writes_is_stored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = node_files(tmp.path());
    let c = Collector::start(tmp.path(), free_port(), 64 << 20);
    let mut datasets = Vec::new();
    for entry in std::fs::read_dir(&out).expect("node output").flatten() {
        let dataset = entry.file_name().to_string_lossy().into_owned();
        let files: Vec<PathBuf> = std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        if files.is_empty() {
            continue;
        }
        for f in files {
            let (status, body) = c.upload(&dataset, std::fs::read(&f).expect("read"), Some(TOKEN));
            assert_eq!(status, 201, "{}: {body}", f.display());
        }
        datasets.push(dataset);
    }
    datasets.sort();
    for d in [
        "bins",
        "calls",
        "flows",
        "rtp_compare",
        "rtp_streams",
        "rtp_windows",
    ] {
        assert!(
            datasets.iter().any(|x| x == d),
            "{d} not written: {datasets:?}"
        );
    }
}

fn test_data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn sigkill_during_an_upload_leaves_no_partial_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = node_files(tmp.path());
    let port = free_port();
    let mut c = Collector::start(tmp.path(), port, 256 * 1024 * 1024);
    let file = one_file(&out, "bins");
    // Send half of the body by hand, then kill the collector.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST /v1/ingest/bins HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        file.len()
    )
    .expect("headers");
    s.write_all(&file[..file.len() / 2]).expect("half body");
    s.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(300));
    c.child.kill().expect("SIGKILL");
    let _ = c.child.wait();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(c.stored_files().is_empty(), "{:?}", c.stored_files());
    let leftovers: Vec<_> = std::fs::read_dir(c.data.join(".incoming"))
        .expect("incoming")
        .flatten()
        .collect();
    assert!(
        !leftovers.is_empty(),
        "the partial upload was under .incoming"
    );
    drop(c);
    // A restart removes the leftovers and serves again.
    let c = Collector::start(tmp.path(), port, 256 * 1024 * 1024);
    assert_eq!(
        std::fs::read_dir(c.data.join(".incoming"))
            .expect("incoming")
            .count(),
        0
    );
    let (status, _) = c.upload("bins", file, Some(TOKEN));
    assert_eq!(status, 201);
}

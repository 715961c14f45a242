//! Every dataset of `analyzers::schema::TABLE` goes from the node to the
//! collector's store unchanged: a batch written by the node's Parquet
//! writer (`moni_node::export::DatasetWriter`), ingested by the collector's
//! own code path (`store::prepare`, then `store::commit_local`, as the
//! server does for local storage) and read back from the Hive layout has
//! the same rows. The batch is built from the table's schema, so a dataset
//! added to the table is covered without touching this test.

use std::path::{Path, PathBuf};

use analyzers::schema::TABLE;
use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use arrow::util::display::array_value_to_string;
use moni_collector::store;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::Digest;

mod common;
use common::batches::sample_batch;

/// Rows per dataset: two VNets and three hours, so the upload is split
/// into several partitions.
const ROWS: usize = 6;

/// Each row as its columns' values, in `names` order, as text.
fn rows(batch: &RecordBatch, names: &[String], extra: &[(&str, String)]) -> Vec<Vec<String>> {
    (0..batch.num_rows())
        .map(|r| {
            names
                .iter()
                .map(|n| match extra.iter().find(|(e, _)| e == n) {
                    Some((_, v)) => v.clone(),
                    None => {
                        let c = batch
                            .column_by_name(n)
                            .unwrap_or_else(|| panic!("stored part lacks column {n}"));
                        if c.is_null(r) {
                            "<null>".into()
                        } else if let Some(t) =
                            c.as_any().downcast_ref::<TimestampMicrosecondArray>()
                        {
                            // Display would need chrono-tz for "UTC"; the
                            // zone is checked with the column types.
                            format!("{}us", t.value(r))
                        } else {
                            array_value_to_string(c, r).expect("display")
                        }
                    }
                })
                .collect()
        })
        .collect()
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            if p.is_dir() && !hidden {
                stack.push(p);
            } else if !hidden && p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_dataset_round_trips_through_node_writer_and_collector_ingest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("node-out");
    let data = tmp.path().join("data");
    let incoming = store::incoming_dir(&data);
    std::fs::create_dir_all(&incoming).expect("incoming");
    let output = moni_node::config::OutputConfig::default();
    for d in &TABLE {
        let batch = sample_batch(d, ROWS);
        // The node: one complete file in OUT/<dataset>/.
        let mut w =
            moni_node::export::DatasetWriter::for_dataset(&out, d, &output).expect("node writer");
        w.write(&batch).expect("write");
        w.close_current().expect("close");
        assert_eq!(w.files.len(), 1, "{}", d.name);
        let file = &w.files[0];
        assert!(file.starts_with(out.join(d.name)), "{}", file.display());

        // The collector: validate, split by VNet and hour, commit.
        let body = std::fs::read(file).expect("read node file");
        let hash = hex::encode(sha2::Sha256::digest(&body));
        let staged = store::prepare(
            d.name,
            "node-1",
            file,
            &hash,
            &incoming,
            &store::Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{}: ingest refused: {e}", d.name));
        assert_eq!(staged.rows, ROWS as u64, "{}", d.name);
        assert_eq!(
            staged.vnets.iter().map(String::as_str).collect::<Vec<_>>(),
            ["A", "B"],
            "{}",
            d.name
        );
        store::commit_local(&data, &staged).expect("commit");

        // Read back: every stored row, with the VNet from its directory
        // where the part leaves the column out.
        let names: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut want = rows(&batch, &names, &[]);
        let mut got = Vec::new();
        let parts = parquet_files(&data.join(d.name));
        assert!(parts.len() >= 4, "{}: {} parts", d.name, parts.len());
        for part in &parts {
            let rel = part.strip_prefix(&data).expect("under data");
            let vnet = rel
                .components()
                .find_map(|c| c.as_os_str().to_str()?.strip_prefix("vnet="))
                .expect("vnet= directory")
                .to_string();
            let reader = ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(part).expect("open part"),
            )
            .expect("parquet")
            .build()
            .expect("reader");
            for b in reader {
                let b = b.expect("batch");
                // The store's types (uint64 counters kept as int64).
                let stored = store::stored_schema(d.name).expect("stored schema");
                for f in b.schema().fields() {
                    let w = stored
                        .field_with_name(f.name())
                        .expect("a column of the table");
                    assert_eq!(f.data_type(), w.data_type(), "{}.{}", d.name, f.name());
                }
                let extra = [(d.vnet_column, vnet.clone())];
                let from_path = if b.column_by_name(d.vnet_column).is_none() {
                    &extra[..]
                } else {
                    &[]
                };
                got.extend(rows(&b, &names, from_path));
            }
        }
        want.sort();
        got.sort();
        assert_eq!(got, want, "{}: rows differ after the round trip", d.name);
    }
    // Every dataset of the table has its folder on both sides.
    for d in &TABLE {
        assert!(out.join(d.name).is_dir(), "{}", d.name);
        assert!(data.join(d.name).is_dir(), "{}", d.name);
    }
}

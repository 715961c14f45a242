//! Every dataset of `analyzers::schema::TABLE` goes from the node to the
//! collector's store unchanged: a batch written by the node's Parquet
//! writer (`moni_node::export::DatasetWriter`), ingested by the collector's
//! own code path (`store::prepare`, then `store::commit_local`, as the
//! server does for local storage) and read back from the Hive layout has
//! the same rows. The batch is built from the table's schema, so a dataset
//! added to the table is covered without touching this test.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use analyzers::schema::{Dataset, TABLE};
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::{DataType, Field, TimeUnit};
use arrow::util::display::array_value_to_string;
use moni_collector::store;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::Digest;

/// Rows per dataset: two VNets and three hours, so the upload is split
/// into several partitions.
const ROWS: usize = 6;
/// 2023-11-14T22:13:20Z.
const T0_US: i64 = 1_700_000_000_000_000;

/// Row `i`'s value of a column: distinct per column and row, null in every
/// third row of a nullable column, VNets `A`/`B` in the VNet column and
/// times 40 minutes apart in the time column.
fn column(d: &Dataset, f: &Field) -> ArrayRef {
    let name = f.name().as_str();
    let null = |i: usize| f.is_nullable() && i % 3 == 1;
    let rows = 0..ROWS;
    let seed = name.bytes().map(u64::from).sum::<u64>();
    match f.data_type() {
        DataType::Utf8 if name == d.vnet_column => {
            Arc::new(StringArray::from_iter_values(rows.map(|i| {
                if i % 2 == 0 {
                    "A"
                } else {
                    "B"
                }
            })))
        }
        DataType::Utf8 => Arc::new(StringArray::from(
            rows.map(|i| (!null(i)).then(|| format!("{name}-{i}")))
                .collect::<Vec<_>>(),
        )),
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => {
            let step = if name == d.time_column {
                40 * 60 * 1_000_000
            } else {
                1_234_567
            };
            Arc::new(
                TimestampMicrosecondArray::from(
                    rows.map(|i| (!null(i)).then(|| T0_US + i as i64 * step))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            )
        }
        DataType::UInt8 => Arc::new(UInt8Array::from(
            rows.map(|i| (!null(i)).then_some((seed as usize + i) as u8))
                .collect::<Vec<_>>(),
        )),
        DataType::UInt16 => Arc::new(UInt16Array::from(
            rows.map(|i| (!null(i)).then_some((seed as usize + i) as u16))
                .collect::<Vec<_>>(),
        )),
        DataType::UInt32 => Arc::new(UInt32Array::from(
            rows.map(|i| (!null(i)).then_some(seed as u32 * 1000 + i as u32))
                .collect::<Vec<_>>(),
        )),
        DataType::UInt64 => Arc::new(UInt64Array::from(
            rows.map(|i| (!null(i)).then_some(seed * 1_000_000 + i as u64))
                .collect::<Vec<_>>(),
        )),
        DataType::Int64 => Arc::new(Int64Array::from(
            rows.map(|i| (!null(i)).then_some(-(seed as i64) * 1000 + i as i64))
                .collect::<Vec<_>>(),
        )),
        DataType::Float64 => {
            // Values a node writes (the collector refuses a MOS outside 1
            // to 5 and a ratio outside 0 to 1), distinct per column.
            let frac = |i: usize| (seed % 61) as f64 / 64.0 + i as f64 / 1024.0;
            let mos = name.starts_with("mos") || name.starts_with("remote_mos");
            Arc::new(Float64Array::from(
                rows.map(|i| (!null(i)).then(|| if mos { 1.0 + 4.0 * frac(i) } else { frac(i) }))
                    .collect::<Vec<_>>(),
            ))
        }
        DataType::Boolean => Arc::new(BooleanArray::from(
            rows.map(|i| (!null(i)).then_some(i % 2 == 0))
                .collect::<Vec<_>>(),
        )),
        other => panic!(
            "{}.{name}: type {other:?} has no generator here; add one",
            d.name
        ),
    }
}

fn sample_batch(d: &Dataset) -> RecordBatch {
    let schema = (d.schema)();
    let columns = schema.fields().iter().map(|f| column(d, f)).collect();
    RecordBatch::try_new(schema, columns).expect("batch of the dataset's schema")
}

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
        let batch = sample_batch(d);
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

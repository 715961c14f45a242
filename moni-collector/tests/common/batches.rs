//! Batches of a dataset's schema with rows a node could write, built from
//! `analyzers::schema::TABLE`, so a dataset added to the table is covered
//! without touching the tests.

use std::sync::Arc;

use analyzers::schema::Dataset;
use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::{DataType, Field, TimeUnit};

/// 2023-11-14T22:13:20Z.
pub const T0_US: i64 = 1_700_000_000_000_000;

/// Row `i`'s value of a column: distinct per column and row, null in every
/// third row of a nullable column, VNets `A`/`B` in the VNet column and
/// times 40 minutes apart in the time column.
fn column(d: &Dataset, f: &Field, n: usize) -> ArrayRef {
    let name = f.name().as_str();
    let null = |i: usize| f.is_nullable() && i % 3 == 1;
    let rows = 0..n;
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
            let frac = |i: usize| (seed % 61) as f64 / 64.0 + (i % 64) as f64 / 1024.0;
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

/// `n` rows of dataset `d` (see [`column`]).
pub fn sample_batch(d: &Dataset, n: usize) -> RecordBatch {
    let schema = (d.schema)();
    let columns = schema.fields().iter().map(|f| column(d, f, n)).collect();
    RecordBatch::try_new(schema, columns).expect("batch of the dataset's schema")
}

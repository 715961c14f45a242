//! The `bins` dataset: packets and bytes per VNet and time bin, by
//! protocol ([`BinRecord`], produced by [`crate::bins`]).

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use std::sync::Arc;

use super::columns::{field, role_column, schema, ts_col, ts_type, u64_col, vnet_column};
use super::{Dataset, DatasetRecord};
use crate::record::BinRecord;
use crate::vnet::VnetMap;

/// The `bins` entry of [`super::DATASETS`].
pub const BINS: Dataset = Dataset {
    name: "bins",
    schema: bins_schema,
    vnet_column: "vnet",
    time_column: "bin_start",
};

impl DatasetRecord for BinRecord {
    const DATASET: &'static Dataset = &BINS;
    fn batches(records: &[Self], vnets: &VnetMap) -> Result<Vec<RecordBatch>, ArrowError> {
        Ok(vec![bins_batch(records, vnets)?])
    }
}

/// Schema of the `bins` dataset: one row per VNet and time bin.
pub fn bins_schema() -> SchemaRef {
    use DataType::*;
    let mut fields = vec![
        field("vnet", Utf8, false, None),
        field("role", Utf8, false, None),
        field("bin_start", ts_type(), false, None),
        field("bin_secs", UInt32, false, None),
        field("packets", UInt64, false, Some(("packetDeltaCount", "2"))),
        field("bytes", UInt64, false, Some(("octetDeltaCount", "1"))),
    ];
    for proto in ["tcp", "udp", "icmp", "other"] {
        fields.push(field(&format!("{proto}_packets"), UInt64, false, None));
        fields.push(field(&format!("{proto}_bytes"), UInt64, false, None));
    }
    fields.push(field("decode_errors", UInt64, false, None));
    schema("bins", fields)
}

/// Converts bin records into a batch of [`bins_schema`].
pub fn bins_batch(records: &[BinRecord], vnets: &VnetMap) -> Result<RecordBatch, ArrowError> {
    let r = records;
    let mut columns: Vec<ArrayRef> = vec![
        vnet_column(r.iter().map(|x| x.vnet), vnets),
        role_column(r.iter().map(|x| x.vnet), vnets),
        ts_col(r.iter().map(|x| x.bin_start.micros()).collect()),
        Arc::new(UInt32Array::from_iter_values(r.iter().map(|x| x.bin_secs))),
        u64_col(r, |i| r[i].total.packets),
        u64_col(r, |i| r[i].total.bytes),
    ];
    for proto in [
        |b: &BinRecord| b.tcp,
        |b: &BinRecord| b.udp,
        |b: &BinRecord| b.icmp,
        |b: &BinRecord| b.other,
    ] {
        columns.push(u64_col(r, |i| proto(&r[i]).packets));
        columns.push(u64_col(r, |i| proto(&r[i]).bytes));
    }
    columns.push(u64_col(r, |i| r[i].decode_errors));
    RecordBatch::try_new(bins_schema(), columns)
}

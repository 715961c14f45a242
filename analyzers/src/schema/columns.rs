//! The building blocks every dataset's schema and converter share: field
//! constructors (with the IPFIX metadata), the schema's dataset metadata,
//! and the column builders for VNets, timestamps, counters and the tunnel
//! columns. No dataset is defined here; each family's file uses these.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, StringArray, TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::{META_DATASET, META_SCHEMA_VERSION, SCHEMA_VERSION};
use crate::record::TunnelInfo;
use crate::vnet::{VnetId, VnetMap};

pub(super) fn tunnel_fields() -> [Field; 4] {
    use DataType::*;
    [
        field("tunnel_type", Utf8, true, None),
        field("tunnel_id", UInt32, true, None),
        field("outer_src_addr", Utf8, true, None),
        field("outer_dst_addr", Utf8, true, None),
    ]
}

pub(super) fn tunnel_columns<'a>(t: impl Iterator<Item = &'a TunnelInfo> + Clone) -> [ArrayRef; 4] {
    let addr = |a: Option<std::net::IpAddr>| a.map(|a| a.to_string());
    [
        Arc::new(StringArray::from(
            t.clone()
                .map(|x| x.tunnel_type.as_deref())
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt32Array::from(
            t.clone().map(|x| x.tunnel_id).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            t.clone()
                .map(|x| addr(x.outer_src_addr))
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            t.map(|x| addr(x.outer_dst_addr)).collect::<Vec<_>>(),
        )),
    ]
}

/// The Arrow type of every time column: microseconds, UTC.
pub(super) fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A column, with its IPFIX information element (name, id) when one exists.
pub(super) fn field(
    name: &str,
    dt: DataType,
    nullable: bool,
    ipfix: Option<(&str, &str)>,
) -> Field {
    let f = Field::new(name, dt, nullable);
    match ipfix {
        Some((ie, id)) => f.with_metadata(HashMap::from([
            ("ipfix_name".to_string(), ie.to_string()),
            ("ipfix_id".to_string(), id.to_string()),
        ])),
        None => f,
    }
}

/// A dataset's schema: its fields plus the dataset name and schema version
/// in the metadata.
pub(super) fn schema(dataset: &str, fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields).with_metadata(HashMap::from([
        (META_DATASET.to_string(), dataset.to_string()),
        (META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
    ])))
}

/// The `vnet` column: the name of each record's VNet.
pub(super) fn vnet_column(ids: impl Iterator<Item = VnetId>, vnets: &VnetMap) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        ids.map(|v| vnets.get(v).name.as_str()),
    ))
}

/// The `role` column: the role of each record's VNet.
pub(super) fn role_column(ids: impl Iterator<Item = VnetId>, vnets: &VnetMap) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        ids.map(|v| vnets.get(v).role.as_str()),
    ))
}

pub(super) fn ts_col(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

pub(super) fn ts_opt_col(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

pub(super) fn u64_col(records: &[impl Sized], f: impl Fn(usize) -> u64) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values((0..records.len()).map(f)))
}

/// A float column where NaN (no value: no MOS without enough packets) is null.
pub(super) fn nan_to_null(v: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from(
        v.map(|x| (!x.is_nan()).then_some(x)).collect::<Vec<_>>(),
    ))
}

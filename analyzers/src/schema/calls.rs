//! The `calls` dataset: one row per SIP call ([`CallRecord`], produced by
//! [`crate::voip`]'s call tracking).

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;

use super::columns::{
    field, role_column, schema, ts_col, ts_opt_col, ts_type, u64_col, vnet_column,
};
use super::{Dataset, DatasetRecord};
use crate::record::CallRecord;
use crate::vnet::VnetMap;

/// The `calls` entry of [`super::DATASETS`].
pub const CALLS: Dataset = Dataset {
    name: "calls",
    schema: calls_schema,
    vnet_column: "vnet",
    time_column: "invite_time",
};

impl DatasetRecord for CallRecord {
    const DATASET: &'static Dataset = &CALLS;
    fn batches(records: &[Self], vnets: &VnetMap) -> Result<Vec<RecordBatch>, ArrowError> {
        Ok(vec![calls_batch(records, vnets)?])
    }
}

/// Schema of `calls`: one row per SIP call.
pub fn calls_schema() -> SchemaRef {
    use DataType::*;
    schema(
        "calls",
        vec![
            field("vnet", Utf8, false, None),
            field("role", Utf8, false, None),
            field("call_id", Utf8, false, None),
            field("caller", Utf8, false, None),
            field("callee", Utf8, false, None),
            field("invite_time", ts_type(), false, None),
            field("answer_time", ts_type(), true, None),
            field("end_time", ts_type(), true, None),
            field("end_reason", Utf8, false, None),
            field("post_dial_delay_ms", Float64, true, None),
            field("media", Utf8, false, None),
            field("sip_messages", UInt64, false, None),
        ],
    )
}

/// Converts call records into a batch of [`calls_schema`].
pub fn calls_batch(r: &[CallRecord], vnets: &VnetMap) -> Result<RecordBatch, ArrowError> {
    let c: Vec<ArrayRef> = vec![
        vnet_column(r.iter().map(|x| x.vnet), vnets),
        role_column(r.iter().map(|x| x.vnet), vnets),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.call_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.caller.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.callee.as_str()),
        )),
        ts_col(r.iter().map(|x| x.invite_time.micros()).collect()),
        ts_opt_col(
            r.iter()
                .map(|x| x.answer_time.map(|t| t.micros()))
                .collect(),
        ),
        ts_opt_col(r.iter().map(|x| x.end_time.map(|t| t.micros())).collect()),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.end_reason.as_str()),
        )),
        Arc::new(Float64Array::from(
            r.iter().map(|x| x.post_dial_delay_ms).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.media.as_str()),
        )),
        u64_col(r, |i| r[i].sip_messages),
    ];
    RecordBatch::try_new(calls_schema(), c)
}

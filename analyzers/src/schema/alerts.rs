//! The `alerts` dataset: one row per IDS alert, behavioural or signature
//! ([`AlertRecord`], produced by [`crate::ids`]). Alerts carry long strings
//! (messages, details), so their batches are bounded in bytes as well as
//! rows ([`alert_chunks`]). Suricata's EVE JSON of the same alerts is an
//! output format of the node (`moni-node`'s `export::eve`), not a schema.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, UInt16Array, UInt32Array, UInt8Array,
};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;

use super::columns::{
    field, role_column, schema, ts_col, ts_type, tunnel_columns, tunnel_fields, vnet_column,
};
use super::{Dataset, DatasetRecord};
use crate::record::AlertRecord;
use crate::vnet::VnetMap;

/// The `alerts` entry of [`super::DATASETS`].
pub const ALERTS: Dataset = Dataset {
    name: "alerts",
    schema: alerts_schema,
    vnet_column: "vnet",
    time_column: "time",
};

impl DatasetRecord for AlertRecord {
    const DATASET: &'static Dataset = &ALERTS;
    /// One batch per [`alert_chunks`] run.
    fn batches(records: &[Self], vnets: &VnetMap) -> Result<Vec<RecordBatch>, ArrowError> {
        alert_chunks(records)
            .map(|c| alerts_batch(c, vnets))
            .collect()
    }
}

/// Schema of the `alerts` dataset.
pub fn alerts_schema() -> SchemaRef {
    use DataType::*;
    schema(
        "alerts",
        vec![
            field("time", ts_type(), false, None),
            field("end_time", ts_type(), false, None),
            field("vnet", Utf8, false, None),
            field("role", Utf8, false, None),
            field("kind", Utf8, false, None),
            field("signature_id", UInt32, false, None),
            field("signature", Utf8, false, None),
            field("category", Utf8, false, None),
            field("severity", UInt8, false, None),
            field("src_addr", Utf8, true, Some(("sourceIPv4Address", "8"))),
            field("src_port", UInt16, true, Some(("sourceTransportPort", "7"))),
            field(
                "dst_addr",
                Utf8,
                true,
                Some(("destinationIPv4Address", "12")),
            ),
            field(
                "dst_port",
                UInt16,
                true,
                Some(("destinationTransportPort", "11")),
            ),
            field("protocol", UInt8, false, Some(("protocolIdentifier", "4"))),
            field("flow_id", Int64, true, Some(("flowId", "148"))),
            field("signature_rev", UInt32, false, None),
            field("details", Utf8, false, None),
        ]
        .into_iter()
        .chain(tunnel_fields())
        .collect(),
    )
}

/// Most rows of one alerts batch (see [`alert_chunks`]).
pub const ALERT_BATCH_ROWS: usize = 4096;
/// Most string bytes (signature, category, details) of one alerts batch:
/// far below the 2 GiB an Arrow string column can hold.
pub const ALERT_BATCH_BYTES: usize = 16 << 20;

/// Splits alerts into runs of at most [`ALERT_BATCH_ROWS`] rows and about
/// [`ALERT_BATCH_BYTES`] string bytes (a run holds at least one alert), each
/// to go through [`alerts_batch`] on its own, so that no batch, however
/// many or long the alerts, overflows a column's offsets.
pub fn alert_chunks(r: &[AlertRecord]) -> impl Iterator<Item = &[AlertRecord]> {
    let mut rest = r;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0usize;
        let mut n = 0usize;
        for a in rest.iter().take(ALERT_BATCH_ROWS) {
            let len = a.signature.len() + a.category.len() + a.details.len() + 64;
            if n > 0 && bytes + len > ALERT_BATCH_BYTES {
                break;
            }
            bytes += len;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// Converts alerts into a batch of [`alerts_schema`]. The caller bounds
/// the batch ([`alert_chunks`]): a string column holds at most 2 GiB.
pub fn alerts_batch(r: &[AlertRecord], vnets: &VnetMap) -> Result<RecordBatch, ArrowError> {
    let mut c: Vec<ArrayRef> = vec![
        ts_col(r.iter().map(|x| x.time.micros()).collect()),
        ts_col(r.iter().map(|x| x.end.micros()).collect()),
        vnet_column(r.iter().map(|x| x.vnet), vnets),
        role_column(r.iter().map(|x| x.vnet), vnets),
        Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.kind))),
        Arc::new(UInt32Array::from_iter_values(
            r.iter().map(|x| x.signature_id),
        )),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.signature.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.category.as_ref()),
        )),
        Arc::new(UInt8Array::from_iter_values(r.iter().map(|x| x.severity))),
        Arc::new(StringArray::from(
            r.iter()
                .map(|x| x.src_addr.map(|a| a.to_string()))
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt16Array::from(
            r.iter().map(|x| x.src_port).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            r.iter()
                .map(|x| x.dst_addr.map(|a| a.to_string()))
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt16Array::from(
            r.iter().map(|x| x.dst_port).collect::<Vec<_>>(),
        )),
        Arc::new(UInt8Array::from_iter_values(r.iter().map(|x| x.protocol))),
        Arc::new(Int64Array::from(
            r.iter()
                .map(|x| x.flow_id.map(|f| f as i64))
                .collect::<Vec<_>>(),
        )),
        Arc::new(UInt32Array::from_iter_values(r.iter().map(|x| x.rev))),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.details.as_str()),
        )),
    ];
    c.extend(tunnel_columns(r.iter().map(|x| &x.tunnel)));
    RecordBatch::try_new(alerts_schema(), c)
}

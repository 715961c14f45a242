//! The `flows` dataset: one row per exported bidirectional flow
//! ([`FlowRecord`], produced by [`crate::flow`]).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt16Array, UInt8Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;

use super::columns::{
    addr_column, field, role_column, schema, ts_col, ts_opt_col, ts_type, tunnel_columns,
    tunnel_fields, u64_col, vnet_column,
};
use super::{Dataset, DatasetRecord};
use crate::record::FlowRecord;
use crate::vnet::VnetMap;

/// The `flows` entry of [`super::DATASETS`].
pub const FLOWS: Dataset = Dataset {
    name: "flows",
    schema: flows_schema,
    vnet_column: "vnet",
    time_column: "start_time",
};

impl DatasetRecord for FlowRecord {
    const DATASET: &'static Dataset = &FLOWS;
    fn batches(records: &[Self], vnets: &VnetMap) -> Result<Vec<RecordBatch>, ArrowError> {
        Ok(vec![flows_batch(records, vnets)?])
    }
}

/// Schema of the `flows` dataset: one row per exported bidirectional flow.
pub fn flows_schema() -> SchemaRef {
    use DataType::*;
    schema(
        "flows",
        vec![
            field("vnet", Utf8, false, None),
            field("role", Utf8, false, None),
            field("vlan_id", UInt16, true, Some(("vlanId", "58"))),
            field("ip_version", UInt8, false, Some(("ipVersion", "60"))),
            field(
                "src_addr",
                Utf8,
                false,
                Some(("sourceIPv4Address/sourceIPv6Address", "8/27")),
            ),
            field(
                "dst_addr",
                Utf8,
                false,
                Some(("destinationIPv4Address/destinationIPv6Address", "12/28")),
            ),
            field(
                "src_port",
                UInt16,
                false,
                Some(("sourceTransportPort", "7")),
            ),
            field(
                "dst_port",
                UInt16,
                false,
                Some(("destinationTransportPort", "11")),
            ),
            field("protocol", UInt8, false, Some(("protocolIdentifier", "4"))),
            field(
                "start_time",
                ts_type(),
                false,
                Some(("flowStartMicroseconds", "154")),
            ),
            field(
                "end_time",
                ts_type(),
                false,
                Some(("flowEndMicroseconds", "155")),
            ),
            field(
                "packets_fwd",
                UInt64,
                false,
                Some(("packetTotalCount", "86")),
            ),
            field("bytes_fwd", UInt64, false, Some(("octetTotalCount", "85"))),
            field(
                "packets_rev",
                UInt64,
                false,
                Some(("reversePacketTotalCount", "29305/86")),
            ),
            field(
                "bytes_rev",
                UInt64,
                false,
                Some(("reverseOctetTotalCount", "29305/85")),
            ),
            field("start_time_fwd", ts_type(), false, None),
            field("end_time_fwd", ts_type(), false, None),
            field("start_time_rev", ts_type(), true, None),
            field("end_time_rev", ts_type(), true, None),
            field("tcp_flags", UInt8, false, Some(("tcpControlBits", "6"))),
            field("tcp_flags_fwd", UInt8, false, None),
            field(
                "tcp_flags_rev",
                UInt8,
                false,
                Some(("reverseTcpControlBits", "29305/6")),
            ),
            field("fragments", UInt64, false, None),
            field("end_reason", Utf8, false, Some(("flowEndReason", "136"))),
            field("flow_id", Int64, false, Some(("flowId", "148"))),
        ]
        .into_iter()
        .chain(tunnel_fields())
        .collect(),
    )
}

/// Converts flow records into a batch of [`flows_schema`].
pub fn flows_batch(records: &[FlowRecord], vnets: &VnetMap) -> Result<RecordBatch, ArrowError> {
    let r = records;
    let rev_time = |f: fn(&FlowRecord) -> i64| -> ArrayRef {
        ts_opt_col(
            r.iter()
                .map(|x| (x.rev.packets > 0).then(|| f(x)))
                .collect(),
        )
    };
    let mut columns: Vec<ArrayRef> = vec![
        vnet_column(r.iter().map(|x| x.vnet), vnets),
        role_column(r.iter().map(|x| x.vnet), vnets),
        Arc::new(UInt16Array::from(
            r.iter().map(|x| x.vlan_id).collect::<Vec<_>>(),
        )),
        Arc::new(UInt8Array::from_iter_values(r.iter().map(|x| {
            if x.src_addr.is_ipv4() {
                4
            } else {
                6
            }
        }))),
        addr_column(r.iter().map(|x| Some(x.src_addr))),
        addr_column(r.iter().map(|x| Some(x.dst_addr))),
        Arc::new(UInt16Array::from_iter_values(r.iter().map(|x| x.src_port))),
        Arc::new(UInt16Array::from_iter_values(r.iter().map(|x| x.dst_port))),
        Arc::new(UInt8Array::from_iter_values(r.iter().map(|x| x.protocol))),
        ts_col(r.iter().map(|x| x.start_time().micros()).collect()),
        ts_col(r.iter().map(|x| x.end_time().micros()).collect()),
        u64_col(r, |i| r[i].fwd.packets),
        u64_col(r, |i| r[i].fwd.bytes),
        u64_col(r, |i| r[i].rev.packets),
        u64_col(r, |i| r[i].rev.bytes),
        ts_col(r.iter().map(|x| x.fwd.first.micros()).collect()),
        ts_col(r.iter().map(|x| x.fwd.last.micros()).collect()),
        rev_time(|x| x.rev.first.micros()),
        rev_time(|x| x.rev.last.micros()),
        Arc::new(UInt8Array::from_iter_values(
            r.iter().map(|x| x.tcp_flags()),
        )),
        Arc::new(UInt8Array::from_iter_values(
            r.iter().map(|x| x.fwd.tcp_flags),
        )),
        Arc::new(UInt8Array::from_iter_values(
            r.iter().map(|x| x.rev.tcp_flags),
        )),
        u64_col(r, |i| r[i].fragments),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.end_reason.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            r.iter().map(|x| x.flow_id as i64),
        )),
    ];
    columns.extend(tunnel_columns(r.iter().map(|x| &x.tunnel)));
    RecordBatch::try_new(flows_schema(), columns)
}

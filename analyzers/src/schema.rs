//! Arrow schemas of every record moni writes, and the conversion of records
//! into Arrow record batches.
//!
//! Column names are snake_case and stable; changing one is a schema version
//! bump. Each column carries, in its Arrow field metadata, the IPFIX
//! information element it corresponds to where one exists (`ipfix_name`,
//! `ipfix_id`), so IPFIX-minded tooling can map columns. Each schema carries
//! `moni.dataset` and `moni.schema_version` in its metadata.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use crate::record::{
    AlertRecord, BinRecord, CallRecord, FlowRecord, JbQuality, RtpQuality, RtpStreamId,
    RtpStreamRecord, RtpWindowRecord, TunnelInfo,
};
use crate::vnet::VnetMap;
use crate::voip::jitter_buffer::Model;

/// Version of the record schemas, stored in every file's metadata.
/// Version 3 added the tunnel columns ([`TUNNEL_COLUMNS`]) at the end of
/// `flows`, `rtp_streams` and `alerts`; a version-2 file is the same
/// without them.
pub const SCHEMA_VERSION: &str = "3";

/// The columns schema version 3 appended to `flows`, `rtp_streams` and
/// `alerts`: the outer view of a tunnelled record (all null without one).
pub const TUNNEL_COLUMNS: [&str; 4] = [
    "tunnel_type",
    "tunnel_id",
    "outer_src_addr",
    "outer_dst_addr",
];

fn tunnel_fields() -> [Field; 4] {
    use DataType::*;
    [
        field("tunnel_type", Utf8, true, None),
        field("tunnel_id", UInt32, true, None),
        field("outer_src_addr", Utf8, true, None),
        field("outer_dst_addr", Utf8, true, None),
    ]
}

fn tunnel_columns<'a>(t: impl Iterator<Item = &'a TunnelInfo> + Clone) -> [ArrayRef; 4] {
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

/// Metadata key naming the dataset of a file.
pub const META_DATASET: &str = "moni.dataset";
/// Metadata key holding [`SCHEMA_VERSION`].
pub const META_SCHEMA_VERSION: &str = "moni.schema_version";

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn field(name: &str, dt: DataType, nullable: bool, ipfix: Option<(&str, &str)>) -> Field {
    let f = Field::new(name, dt, nullable);
    match ipfix {
        Some((ie, id)) => f.with_metadata(HashMap::from([
            ("ipfix_name".to_string(), ie.to_string()),
            ("ipfix_id".to_string(), id.to_string()),
        ])),
        None => f,
    }
}

fn schema(dataset: &str, fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields).with_metadata(HashMap::from([
        (META_DATASET.to_string(), dataset.to_string()),
        (META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
    ])))
}

/// Every dataset a node writes, in a stable order.
pub const DATASETS: [&str; 7] = [
    "flows",
    "bins",
    "rtp_streams",
    "rtp_windows",
    "rtp_compare",
    "calls",
    "alerts",
];

/// The schema of dataset `name`, if it is one of [`DATASETS`].
pub fn for_dataset(name: &str) -> Option<SchemaRef> {
    Some(match name {
        "flows" => flows_schema(),
        "bins" => bins_schema(),
        "rtp_streams" => rtp_streams_schema(),
        "rtp_windows" => rtp_windows_schema(),
        "rtp_compare" => rtp_compare_schema(),
        "calls" => calls_schema(),
        "alerts" => alerts_schema(),
        _ => return None,
    })
}

/// The columns a collector partitions dataset `name` by: the VNet (string)
/// and the record's time (timestamp, µs UTC).
pub fn partition_columns(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "flows" => ("vnet", "start_time"),
        "bins" => ("vnet", "bin_start"),
        "rtp_streams" => ("vnet", "start_time"),
        "rtp_windows" => ("vnet", "window_start"),
        "rtp_compare" => ("production_vnet", "window_start"),
        "calls" => ("vnet", "invite_time"),
        "alerts" => ("vnet", "time"),
        _ => return None,
    })
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

/// Identity columns shared by the RTP datasets.
fn rtp_id_fields() -> Vec<Field> {
    use DataType::*;
    vec![
        field("vnet", Utf8, false, None),
        field("role", Utf8, false, None),
        field("ssrc", UInt32, false, None),
        field(
            "src_addr",
            Utf8,
            false,
            Some(("sourceIPv4Address/sourceIPv6Address", "8/27")),
        ),
        field(
            "src_port",
            UInt16,
            false,
            Some(("sourceTransportPort", "7")),
        ),
        field(
            "dst_addr",
            Utf8,
            false,
            Some(("destinationIPv4Address/destinationIPv6Address", "12/28")),
        ),
        field(
            "dst_port",
            UInt16,
            false,
            Some(("destinationTransportPort", "11")),
        ),
        field("payload_type", UInt8, false, None),
        field("codec", Utf8, false, None),
        field("call_id", Utf8, true, None),
    ]
}

/// Quality columns shared by the RTP datasets.
fn rtp_quality_fields() -> Vec<Field> {
    use DataType::*;
    let mut f = vec![
        field("packets_received", UInt64, false, None),
        field("packets_expected", Int64, false, None),
        field("packets_lost", Int64, false, None),
        field("duplicates", UInt64, false, None),
        field("reordered", UInt64, false, None),
        field("jb_discards", UInt64, false, None),
        field("jitter_ms", Float64, false, None),
        field("jitter_max_ms", Float64, false, None),
        field("max_delta_ms", Float64, false, None),
        field("loss_ratio", Float64, false, None),
        field("burst_r", Float64, false, None),
        field("r_factor", Float64, true, None),
        field("mos_lq", Float64, true, None),
        field("mos_cq", Float64, true, None),
        field("one_way_delay_ms", Float64, false, None),
    ];
    f.push(field("jitter_buffer", Utf8, false, None));
    f.push(field("mos_reason", Utf8, true, None));
    // Every known model has its columns; a model not configured in
    // `rtp.jitter_buffers` leaves them null, so the schema does not depend
    // on the configuration.
    for m in Model::ALL {
        let n = m.name();
        f.push(field(&format!("jb_discards_{n}"), UInt64, true, None));
        f.push(field(&format!("jb_delay_ms_{n}"), Float64, true, None));
        f.push(field(&format!("mos_lq_{n}"), Float64, true, None));
        f.push(field(&format!("mos_cq_{n}"), Float64, true, None));
    }
    f
}

/// Schema of `rtp_streams`: one row per RTP stream (SSRC and direction).
pub fn rtp_streams_schema() -> SchemaRef {
    use DataType::*;
    let mut f = rtp_id_fields();
    f.push(field("start_time", ts_type(), false, None));
    f.push(field("end_time", ts_type(), false, None));
    f.extend(rtp_quality_fields());
    f.extend([
        field("jitter_mean_ms", Float64, false, None),
        field("seq_resets", UInt64, false, None),
        field("ts_jumps", UInt64, false, None),
        field("payload_type_changes", UInt64, false, None),
        field("clock_mismatch", Boolean, false, None),
        field("mirror_duplicates", UInt64, false, None),
        field("loss_runs", UInt64, false, None),
        field("loss_run_hist", Utf8, false, None),
        field("bursts", UInt64, false, None),
        field("burst_density", Float64, false, None),
        field("gap_density", Float64, false, None),
        field("mos_min", Float64, true, None),
        field("mos_mean", Float64, true, None),
        field("mos_last", Float64, true, None),
        field("end_reason", Utf8, false, None),
        field("rtt_ms", Float64, true, None),
        field("remote_fraction_lost", Float64, true, None),
        field("remote_cumulative_lost", Int64, true, None),
        field("remote_jitter_ms", Float64, true, None),
        field("remote_mos_cq", Float64, true, None),
    ]);
    f.extend(tunnel_fields());
    schema("rtp_streams", f)
}

/// Schema of `rtp_windows`: one row per stream and window of packet time.
pub fn rtp_windows_schema() -> SchemaRef {
    use DataType::*;
    let mut f = rtp_id_fields();
    f.push(field("window_start", ts_type(), false, None));
    f.push(field("window_secs", UInt32, false, None));
    f.extend(rtp_quality_fields());
    f.push(field("capture_drops", UInt64, false, None));
    schema("rtp_windows", f)
}

fn rtp_id_columns<'a>(
    ids: impl Iterator<Item = &'a RtpStreamId> + Clone,
    vnets: &VnetMap,
) -> Vec<ArrayRef> {
    vec![
        vnet_column(ids.clone().map(|x| x.vnet), vnets),
        role_column(ids.clone().map(|x| x.vnet), vnets),
        Arc::new(UInt32Array::from_iter_values(ids.clone().map(|x| x.ssrc))),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|x| x.src_addr.to_string()),
        )),
        Arc::new(UInt16Array::from_iter_values(
            ids.clone().map(|x| x.src_port),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|x| x.dst_addr.to_string()),
        )),
        Arc::new(UInt16Array::from_iter_values(
            ids.clone().map(|x| x.dst_port),
        )),
        Arc::new(UInt8Array::from_iter_values(
            ids.clone().map(|x| x.payload_type),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.clone().map(|x| x.codec.as_str()),
        )),
        Arc::new(StringArray::from(
            ids.map(|x| x.call_id.clone()).collect::<Vec<_>>(),
        )),
    ]
}

fn rtp_quality_columns<'a>(q: impl Iterator<Item = &'a RtpQuality> + Clone) -> Vec<ArrayRef> {
    let f = |g: fn(&RtpQuality) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(q.clone().map(g)))
    };
    let mut c: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            q.clone().map(|x| x.packets_received),
        )),
        Arc::new(Int64Array::from_iter_values(
            q.clone().map(|x| x.packets_expected),
        )),
        Arc::new(Int64Array::from_iter_values(
            q.clone().map(|x| x.packets_lost),
        )),
        Arc::new(UInt64Array::from_iter_values(
            q.clone().map(|x| x.duplicates),
        )),
        Arc::new(UInt64Array::from_iter_values(
            q.clone().map(|x| x.reordered),
        )),
        Arc::new(UInt64Array::from_iter_values(
            q.clone().map(|x| x.jb_discards),
        )),
        f(|x| x.jitter_ms),
        f(|x| x.jitter_max_ms),
        f(|x| x.max_delta_ms),
        f(|x| x.loss_ratio),
        f(|x| x.burst_r),
        nan_to_null(q.clone().map(|x| x.r_factor)),
        nan_to_null(q.clone().map(|x| x.mos_lq)),
        nan_to_null(q.clone().map(|x| x.mos_cq)),
        f(|x| x.one_way_delay_ms),
    ];
    c.push(Arc::new(StringArray::from_iter_values(
        q.clone().map(|x| x.jitter_buffer),
    )));
    c.push(Arc::new(StringArray::from(
        q.clone().map(|x| x.mos_reason).collect::<Vec<_>>(),
    )));
    for m in Model::ALL {
        let i = m.index();
        let jb = |g: fn(&JbQuality) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from(
                q.clone()
                    .map(|x| x.jb[i].as_ref().map(g).filter(|v| !v.is_nan()))
                    .collect::<Vec<_>>(),
            ))
        };
        c.push(Arc::new(UInt64Array::from(
            q.clone()
                .map(|x| x.jb[i].map(|j| j.discards))
                .collect::<Vec<_>>(),
        )));
        c.push(jb(|j| j.delay_ms));
        c.push(jb(|j| j.mos_lq));
        c.push(jb(|j| j.mos_cq));
    }
    c
}

fn nan_to_null(v: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from(
        v.map(|x| (!x.is_nan()).then_some(x)).collect::<Vec<_>>(),
    ))
}

/// Converts stream records into a batch of [`rtp_streams_schema`].
pub fn rtp_streams_batch(
    r: &[RtpStreamRecord],
    vnets: &VnetMap,
) -> Result<RecordBatch, ArrowError> {
    let mut c = rtp_id_columns(r.iter().map(|x| &x.id), vnets);
    c.push(ts_col(r.iter().map(|x| x.start.micros()).collect()));
    c.push(ts_col(r.iter().map(|x| x.end.micros()).collect()));
    c.extend(rtp_quality_columns(r.iter().map(|x| &x.quality)));
    c.push(Arc::new(Float64Array::from_iter_values(
        r.iter().map(|x| x.jitter_mean_ms),
    )));
    c.push(u64_col(r, |i| r[i].seq_resets));
    c.push(u64_col(r, |i| r[i].ts_jumps));
    c.push(u64_col(r, |i| r[i].payload_type_changes));
    c.push(Arc::new(BooleanArray::from(
        r.iter().map(|x| x.clock_mismatch).collect::<Vec<_>>(),
    )));
    c.push(u64_col(r, |i| r[i].mirror_duplicates));
    c.push(u64_col(r, |i| r[i].loss_runs));
    c.push(Arc::new(StringArray::from_iter_values(r.iter().map(|x| {
        x.loss_run_hist
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }))));
    c.push(u64_col(r, |i| r[i].bursts));
    c.push(Arc::new(Float64Array::from_iter_values(
        r.iter().map(|x| x.burst_density),
    )));
    c.push(Arc::new(Float64Array::from_iter_values(
        r.iter().map(|x| x.gap_density),
    )));
    c.push(nan_to_null(r.iter().map(|x| x.mos_min)));
    c.push(nan_to_null(r.iter().map(|x| x.mos_mean)));
    c.push(nan_to_null(r.iter().map(|x| x.mos_last)));
    c.push(Arc::new(StringArray::from_iter_values(
        r.iter().map(|x| x.end_reason.as_str()),
    )));
    let opt = |g: fn(&RtpStreamRecord) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from(r.iter().map(g).collect::<Vec<_>>()))
    };
    c.push(opt(|x| x.rtcp.rtt_ms));
    c.push(opt(|x| x.rtcp.remote_fraction_lost));
    c.push(Arc::new(Int64Array::from(
        r.iter()
            .map(|x| x.rtcp.remote_cumulative_lost)
            .collect::<Vec<_>>(),
    )));
    c.push(opt(|x| x.rtcp.remote_jitter_ms));
    c.push(opt(|x| x.rtcp.remote_mos_cq));
    c.extend(tunnel_columns(r.iter().map(|x| &x.tunnel)));
    RecordBatch::try_new(rtp_streams_schema(), c)
}

/// Converts window records into a batch of [`rtp_windows_schema`].
pub fn rtp_windows_batch(
    r: &[RtpWindowRecord],
    vnets: &VnetMap,
) -> Result<RecordBatch, ArrowError> {
    let mut c = rtp_id_columns(r.iter().map(|x| &x.id), vnets);
    c.push(ts_col(r.iter().map(|x| x.window_start.micros()).collect()));
    c.push(Arc::new(UInt32Array::from_iter_values(
        r.iter().map(|x| x.window_secs),
    )));
    c.extend(rtp_quality_columns(r.iter().map(|x| &x.quality)));
    c.push(u64_col(r, |i| r[i].capture_drops));
    RecordBatch::try_new(rtp_windows_schema(), c)
}

/// Schema of `rtp_compare`: one row per stream and window seen in both a
/// production and a shadow VNet.
pub fn rtp_compare_schema() -> SchemaRef {
    use DataType::*;
    schema(
        "rtp_compare",
        vec![
            field("production_vnet", Utf8, false, None),
            field("shadow_vnet", Utf8, false, None),
            field("ssrc", UInt32, false, None),
            field("src_addr", Utf8, false, None),
            field("src_port", UInt16, false, None),
            field("dst_addr", Utf8, false, None),
            field("dst_port", UInt16, false, None),
            field("call_id", Utf8, true, None),
            field("window_start", ts_type(), false, None),
            field("window_secs", UInt32, false, None),
            field("mos_production", Float64, false, None),
            field("mos_shadow", Float64, false, None),
            field("mos_diff", Float64, false, None),
            field("loss_production", Float64, false, None),
            field("loss_shadow", Float64, false, None),
            field("jitter_production_ms", Float64, false, None),
            field("jitter_shadow_ms", Float64, false, None),
            field("jitter_buffer", Utf8, false, None),
            field("verdict", Utf8, false, None),
        ],
    )
}

/// Converts comparison records into a batch of [`rtp_compare_schema`].
pub fn rtp_compare_batch(
    r: &[crate::voip::compare::RtpCompareRecord],
    vnets: &VnetMap,
) -> Result<RecordBatch, ArrowError> {
    let f = |g: fn(&crate::voip::compare::RtpCompareRecord) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(r.iter().map(g)))
    };
    let c: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| vnets.get(x.production).name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| vnets.get(x.shadow).name.as_str()),
        )),
        Arc::new(UInt32Array::from_iter_values(r.iter().map(|x| x.ssrc))),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.src_addr.to_string()),
        )),
        Arc::new(UInt16Array::from_iter_values(r.iter().map(|x| x.src_port))),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.dst_addr.to_string()),
        )),
        Arc::new(UInt16Array::from_iter_values(r.iter().map(|x| x.dst_port))),
        Arc::new(StringArray::from(
            r.iter().map(|x| x.call_id.clone()).collect::<Vec<_>>(),
        )),
        ts_col(r.iter().map(|x| x.window_start.micros()).collect()),
        Arc::new(UInt32Array::from_iter_values(
            r.iter().map(|x| x.window_secs),
        )),
        f(|x| x.mos_production),
        f(|x| x.mos_shadow),
        f(|x| x.mos_diff),
        f(|x| x.loss_production),
        f(|x| x.loss_shadow),
        f(|x| x.jitter_production_ms),
        f(|x| x.jitter_shadow_ms),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.jitter_buffer),
        )),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.verdict.as_str()),
        )),
    ];
    RecordBatch::try_new(rtp_compare_schema(), c)
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

/// The `vnet` column: the name of each record's VNet.
fn vnet_column(ids: impl Iterator<Item = crate::vnet::VnetId>, vnets: &VnetMap) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        ids.map(|v| vnets.get(v).name.as_str()),
    ))
}

/// The `role` column: the role of each record's VNet.
fn role_column(ids: impl Iterator<Item = crate::vnet::VnetId>, vnets: &VnetMap) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        ids.map(|v| vnets.get(v).role.as_str()),
    ))
}

fn ts_col(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

fn ts_opt_col(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

fn u64_col(records: &[impl Sized], f: impl Fn(usize) -> u64) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values((0..records.len()).map(f)))
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
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.src_addr.to_string()),
        )),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.dst_addr.to_string()),
        )),
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

/// One alert as an EVE-JSON line (Suricata's `eve.json` alert event), valid
/// against Suricata's own EVE schema (no field it does not know): Filebeat's
/// Suricata module, EveBox and Kibana ingest it unchanged.
///
/// - `flow_id` is the Parquet `flows.flow_id` of the alerting packet's flow
///   (below 2^51, as Suricata's, so JavaScript tools and `jq` keep it exact
///   and alerts join their flow).
/// - `src_ip`/`dest_ip` are always there: the alert's own addresses, or for
///   an alert without a single source or target (a flood's spoofed
///   sources, a sweep's many hosts) the alerting packet's; `alert.source`
///   and `alert.target` say who attacks whom, as Suricata 7 does for rules
///   with `target:`.
/// - `alert.metadata` holds the rule's `metadata` as Suricata writes it (an
///   object of string arrays), plus moni's own keys: `moni_vnet`,
///   `moni_kind`, `moni_start` (first packet of the episode) and
///   `moni_details` (the `alerts.details` JSON).
pub fn alert_eve_json(a: &AlertRecord, vnets: &VnetMap, host: &str, iface: &str) -> String {
    use serde_json::{json, Map, Value};
    let ts = |t: crate::time::Timestamp| {
        let u = t.utc();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+0000",
            u.year, u.month, u.day, u.hour, u.minute, u.second, u.micros
        )
    };
    let proto = match a.protocol {
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        1 => "ICMP".to_string(),
        58 => "IPv6-ICMP".to_string(),
        p => p.to_string(),
    };
    let mut details = serde_json::from_str::<Value>(&a.details).unwrap_or(Value::Null);
    // Rule metadata "key value" strings become {"key": ["value", ...]}.
    let mut metadata: Map<String, Value> = Map::new();
    if let Some(list) = details
        .as_object_mut()
        .and_then(|d| d.remove("metadata"))
        .and_then(|m| m.as_array().cloned())
    {
        // One string per `metadata:` keyword, its pairs comma-separated.
        for item in list
            .iter()
            .filter_map(Value::as_str)
            .flat_map(|m| m.split(','))
        {
            let item = item.trim();
            let (k, v) = item.split_once(char::is_whitespace).unwrap_or((item, ""));
            if k.is_empty() {
                continue;
            }
            if let Value::Array(vals) = metadata
                .entry(k.to_string())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                vals.push(v.trim().into());
            }
        }
    }
    metadata.insert("moni_vnet".into(), json!([vnets.get(a.vnet).name]));
    metadata.insert("moni_kind".into(), json!([a.kind]));
    metadata.insert("moni_start".into(), json!([ts(a.time)]));
    metadata.insert("moni_details".into(), json!([details.to_string()]));
    if let Some(kind) = &a.tunnel.tunnel_type {
        metadata.insert("moni_tunnel_type".into(), json!([kind]));
        if let Some(id) = a.tunnel.tunnel_id {
            metadata.insert("moni_tunnel_id".into(), json!([id.to_string()]));
        }
    }
    let src = a.src_addr.or(a.trigger.map(|t| t.0));
    let dst = a.dst_addr.or(a.trigger.map(|t| t.1));
    let mut alert = json!({
        "action": "allowed",
        "gid": 1,
        "signature_id": a.signature_id,
        "rev": a.rev,
        "signature": a.signature,
        "category": a.category,
        "severity": a.severity,
        "metadata": metadata,
    });
    let endpoint = |ip: Option<std::net::IpAddr>, port: Option<u16>| {
        let mut e = Map::new();
        if let Some(ip) = ip {
            e.insert("ip".into(), ip.to_string().into());
        }
        if let Some(p) = port {
            e.insert("port".into(), p.into());
        }
        Value::Object(e)
    };
    if a.kind != "signature" {
        // Behavioural alerts: the attacker (when known) and the target
        // (the victim of a flood, the scanned host).
        if let Some(obj) = alert.as_object_mut() {
            if a.src_addr.is_some() {
                obj.insert("source".into(), endpoint(a.src_addr, a.src_port));
            }
            if a.dst_addr.is_some() {
                obj.insert("target".into(), endpoint(a.dst_addr, a.dst_port));
            }
        }
    }
    let mut v = json!({
        "timestamp": ts(a.end),
        "event_type": "alert",
        "in_iface": iface,
        "pkt_src": "wire/pcap",
        "host": host,
        "proto": proto,
        "alert": alert,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(x) = a.flow_id {
            obj.insert("flow_id".into(), x.into());
        }
        if let Some(f) = a.flow {
            obj.insert(
                "flow".into(),
                json!({
                    "pkts_toserver": f.pkts_toserver,
                    "pkts_toclient": f.pkts_toclient,
                    "bytes_toserver": f.bytes_toserver,
                    "bytes_toclient": f.bytes_toclient,
                    "start": ts(f.start),
                }),
            );
        }
        if let Some(up) = a.to_server {
            obj.insert(
                "direction".into(),
                if up { "to_server" } else { "to_client" }.into(),
            );
        }
        if !a.vlans.is_empty() {
            obj.insert("vlan".into(), a.vlans.clone().into());
        }
        // Suricata puts an ICMP packet's type and code at the top level.
        for key in ["icmp_type", "icmp_code"] {
            if let Some(v) = details.get(key) {
                obj.insert(key.into(), v.clone());
            }
        }
        // The tunnel: EVE's `tunnel` object has the outer addresses and
        // the depth; its type and id are in `alert.metadata`.
        if let Some(kind) = &a.tunnel.tunnel_type {
            if let (Some(src), Some(dst)) = (a.tunnel.outer_src_addr, a.tunnel.outer_dst_addr) {
                obj.insert(
                    "tunnel".into(),
                    json!({
                        "src_ip": src.to_string(),
                        "dest_ip": dst.to_string(),
                        "depth": kind.split('/').count(),
                    }),
                );
            }
        }
        if let Some(x) = src {
            obj.insert("src_ip".into(), x.to_string().into());
        }
        if let Some(x) = a.src_port {
            obj.insert("src_port".into(), x.into());
        }
        if let Some(x) = dst {
            obj.insert("dest_ip".into(), x.to_string().into());
        }
        if let Some(x) = a.dst_port {
            obj.insert("dest_port".into(), x.into());
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Counts, DirectionStats, EndReason};
    use crate::time::Timestamp;
    use crate::vnet::VnetId;

    #[test]
    fn flow_batch_matches_schema_and_nulls_empty_reverse() {
        let rec = FlowRecord {
            tunnel: Default::default(),
            flow_id: 7,
            vnet: VnetId(0),
            vlan_id: None,
            src_addr: "10.0.0.1".parse().expect("addr"),
            dst_addr: "::1".parse().expect("addr"),
            src_port: 1,
            dst_port: 2,
            protocol: 17,
            fwd: DirectionStats {
                packets: 1,
                bytes: 60,
                first: Timestamp(5),
                last: Timestamp(5),
                tcp_flags: 0,
            },
            rev: DirectionStats::default(),
            fragments: 0,
            end_reason: EndReason::Idle,
        };
        let b = flows_batch(&[rec], &VnetMap::default()).expect("batch");
        assert_eq!(b.num_rows(), 1);
        let rev = b.column_by_name("start_time_rev").expect("column");
        assert_eq!(rev.null_count(), 1);
        let meta = b.schema();
        let f = meta.field_with_name("src_port").expect("field");
        assert_eq!(
            f.metadata().get("ipfix_name").map(String::as_str),
            Some("sourceTransportPort")
        );
        assert_eq!(
            meta.metadata().get(META_SCHEMA_VERSION).map(String::as_str),
            Some(SCHEMA_VERSION)
        );
    }

    #[test]
    fn bin_batch_has_protocol_columns() {
        let rec = BinRecord {
            tcp: Counts {
                packets: 3,
                bytes: 300,
            },
            ..BinRecord::default()
        };
        let b = bins_batch(&[rec], &VnetMap::default()).expect("batch");
        let col = b.column_by_name("tcp_bytes").expect("tcp_bytes");
        let col = col
            .as_any()
            .downcast_ref::<UInt64Array>()
            .expect("u64 column");
        assert_eq!(col.value(0), 300);
    }
}

//! The RTP datasets, produced by [`crate::voip`]: `rtp_streams` (one row
//! per stream, SSRC and direction), `rtp_windows` (one row per stream and
//! window of packet time) and `rtp_compare` (a stream's window seen in both
//! a production and a shadow VNet). Streams and windows share their
//! identity and quality columns, in the same order.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt16Array,
    UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::error::ArrowError;

use super::columns::{
    field, nan_to_null, role_column, schema, ts_col, ts_type, tunnel_columns, tunnel_fields,
    u64_col, vnet_column,
};
use super::{Dataset, DatasetRecord};
use crate::record::{JbQuality, RtpQuality, RtpStreamId, RtpStreamRecord, RtpWindowRecord};
use crate::vnet::VnetMap;
use crate::voip::compare::RtpCompareRecord;
use crate::voip::jitter_buffer::Model;

/// The `rtp_streams` entry of [`super::DATASETS`].
pub const RTP_STREAMS: Dataset = Dataset {
    name: "rtp_streams",
    schema: rtp_streams_schema,
    vnet_column: "vnet",
    time_column: "start_time",
};

/// The `rtp_windows` entry of [`super::DATASETS`].
pub const RTP_WINDOWS: Dataset = Dataset {
    name: "rtp_windows",
    schema: rtp_windows_schema,
    vnet_column: "vnet",
    time_column: "window_start",
};

/// The `rtp_compare` entry of [`super::DATASETS`]: partitioned by the
/// production VNet (a row belongs to two VNets).
pub const RTP_COMPARE: Dataset = Dataset {
    name: "rtp_compare",
    schema: rtp_compare_schema,
    vnet_column: "production_vnet",
    time_column: "window_start",
};

impl DatasetRecord for RtpStreamRecord {
    const DATASET: &'static Dataset = &RTP_STREAMS;
    fn batches(records: &[Self], vnets: &VnetMap) -> Result<Vec<RecordBatch>, ArrowError> {
        Ok(vec![rtp_streams_batch(records, vnets)?])
    }
}

impl DatasetRecord for RtpWindowRecord {
    const DATASET: &'static Dataset = &RTP_WINDOWS;
    fn batches(records: &[Self], vnets: &VnetMap) -> Result<Vec<RecordBatch>, ArrowError> {
        Ok(vec![rtp_windows_batch(records, vnets)?])
    }
}

impl DatasetRecord for RtpCompareRecord {
    const DATASET: &'static Dataset = &RTP_COMPARE;
    fn batches(records: &[Self], vnets: &VnetMap) -> Result<Vec<RecordBatch>, ArrowError> {
        Ok(vec![rtp_compare_batch(records, vnets)?])
    }
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
        // Null when not computed (no clock rate, or no regular packet).
        field("jitter_ms", Float64, true, None),
        field("jitter_max_ms", Float64, true, None),
        field("max_delta_ms", Float64, true, None),
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
        field("jitter_mean_ms", Float64, true, None),
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
        nan_to_null(q.clone().map(|x| x.jitter_ms)),
        nan_to_null(q.clone().map(|x| x.jitter_max_ms)),
        nan_to_null(q.clone().map(|x| x.max_delta_ms)),
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

/// Converts stream records into a batch of [`rtp_streams_schema`].
pub fn rtp_streams_batch(
    r: &[RtpStreamRecord],
    vnets: &VnetMap,
) -> Result<RecordBatch, ArrowError> {
    let mut c = rtp_id_columns(r.iter().map(|x| &x.id), vnets);
    c.push(ts_col(r.iter().map(|x| x.start.micros()).collect()));
    c.push(ts_col(r.iter().map(|x| x.end.micros()).collect()));
    c.extend(rtp_quality_columns(r.iter().map(|x| &x.quality)));
    c.push(nan_to_null(r.iter().map(|x| x.jitter_mean_ms)));
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
            field("jitter_production_ms", Float64, true, None),
            field("jitter_shadow_ms", Float64, true, None),
            field("jitter_buffer", Utf8, false, None),
            field("verdict", Utf8, false, None),
        ],
    )
}

/// Converts comparison records into a batch of [`rtp_compare_schema`].
pub fn rtp_compare_batch(
    r: &[RtpCompareRecord],
    vnets: &VnetMap,
) -> Result<RecordBatch, ArrowError> {
    let f = |g: fn(&RtpCompareRecord) -> f64| -> ArrayRef {
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
        nan_to_null(r.iter().map(|x| x.jitter_production_ms)),
        nan_to_null(r.iter().map(|x| x.jitter_shadow_ms)),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.jitter_buffer),
        )),
        Arc::new(StringArray::from_iter_values(
            r.iter().map(|x| x.verdict.as_str()),
        )),
    ];
    RecordBatch::try_new(rtp_compare_schema(), c)
}

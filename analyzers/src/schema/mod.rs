//! The datasets moni writes: one table ([`TABLE`]) of every dataset's
//! name, Arrow schema and partition columns, and the conversion of each
//! record type into Arrow record batches ([`DatasetRecord`]).
//!
//! The node's Parquet writer, the collector's ingest and the docs test all
//! iterate [`TABLE`]; nothing else lists the datasets. Adding a dataset is
//! its record type (in [`crate::record`] or the analyzer's module), a file
//! here with its [`Dataset`] entry, schema and [`DatasetRecord`]
//! converter (plus one line in [`TABLE`]), and the analyzer that produces
//! it.
//!
//! One file per family: [`flows`], [`bins`], [`rtp`] (streams, windows and
//! the production/shadow comparison), [`calls`], [`alerts`]; `columns`
//! holds the field and column builders they share.
//!
//! Column names are snake_case and stable; changing one is a schema version
//! bump. Each column carries, in its Arrow field metadata, the IPFIX
//! information element it corresponds to where one exists (`ipfix_name`,
//! `ipfix_id`), so IPFIX-minded tooling can map columns. Each schema carries
//! `moni.dataset` and `moni.schema_version` in its metadata.

pub mod alerts;
pub mod bins;
pub mod calls;
mod columns;
pub mod flows;
pub mod rtp;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use crate::vnet::VnetMap;

pub use alerts::{
    alert_chunks, alerts_batch, alerts_schema, ALERTS, ALERT_BATCH_BYTES, ALERT_BATCH_ROWS,
};
pub use bins::{bins_batch, bins_schema, BINS};
pub use calls::{calls_batch, calls_schema, CALLS};
pub use flows::{flows_batch, flows_schema, FLOWS};
pub use rtp::{
    rtp_compare_batch, rtp_compare_schema, rtp_streams_batch, rtp_streams_schema,
    rtp_windows_batch, rtp_windows_schema, RTP_COMPARE, RTP_STREAMS, RTP_WINDOWS,
};

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

/// Metadata key naming the dataset of a file.
pub const META_DATASET: &str = "moni.dataset";
/// Metadata key holding [`SCHEMA_VERSION`].
pub const META_SCHEMA_VERSION: &str = "moni.schema_version";

/// One dataset: what a writer needs to create its files and a collector
/// needs to validate and partition them.
#[derive(Clone, Copy, Debug)]
pub struct Dataset {
    /// The folder name under the node's output directory and the
    /// collector's data directory, the `moni.dataset` metadata value and
    /// the `dataset` label of metrics.
    pub name: &'static str,
    /// The Arrow schema of its files (with `moni.dataset` and
    /// `moni.schema_version` in the metadata).
    pub schema: fn() -> SchemaRef,
    /// The column a collector partitions by VNet (`vnet=` directories): a
    /// string column holding a VNet name.
    pub vnet_column: &'static str,
    /// The column a collector partitions by hour: the record's time
    /// (timestamp, µs UTC).
    pub time_column: &'static str,
}

/// A record type that is the row of one dataset: its [`Dataset`] entry and
/// its conversion into record batches of that dataset's schema.
pub trait DatasetRecord: Sized {
    /// The dataset this record is a row of (an entry of [`TABLE`]).
    const DATASET: &'static Dataset;
    /// Converts records into batches of the dataset's schema: none for no
    /// records, several where one batch could overflow a column (alerts).
    fn batches(records: &[Self], vnets: &VnetMap) -> Result<Vec<RecordBatch>, ArrowError>;
}

/// Every dataset a node writes, in a stable order (the order of the
/// node's summary and of its files on shutdown).
pub const TABLE: [Dataset; 7] = [
    FLOWS,
    BINS,
    RTP_STREAMS,
    RTP_WINDOWS,
    RTP_COMPARE,
    CALLS,
    ALERTS,
];

/// The names of [`TABLE`]'s datasets, in its order, for code that only
/// needs names (directories to walk, metric labels). Computed from
/// [`TABLE`], never listed by hand.
pub const DATASETS: [&str; TABLE.len()] = {
    let mut names = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        names[i] = TABLE[i].name;
        i += 1;
    }
    names
};

/// The entry of dataset `name`, if it is in [`TABLE`].
pub fn dataset(name: &str) -> Option<&'static Dataset> {
    TABLE.iter().find(|d| d.name == name)
}

/// The schema of dataset `name`, if it is in [`TABLE`].
pub fn for_dataset(name: &str) -> Option<SchemaRef> {
    dataset(name).map(|d| (d.schema)())
}

/// The columns a collector partitions dataset `name` by: the VNet (string)
/// and the record's time (timestamp, µs UTC).
pub fn partition_columns(name: &str) -> Option<(&'static str, &'static str)> {
    dataset(name).map(|d| (d.vnet_column, d.time_column))
}

/// Records as batches of their dataset's schema ([`DatasetRecord::batches`]);
/// no batch for no records.
pub fn batches<R: DatasetRecord>(
    records: &[R],
    vnets: &VnetMap,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let mut out = Vec::new();
    for chunk in records.chunks(MAX_BATCH_ROWS) {
        out.extend(R::batches(chunk, vnets)?);
    }
    Ok(out)
}

/// Records converted at a time by [`batches`]: the text columns of a
/// batch hold at most `i32::MAX` bytes (Arrow's `Utf8` offsets), and a
/// million rows of addresses (an IPv6 address is at most 39 bytes) stay
/// far below that, also when a replay's end exports every flow of a
/// table of up to 100 million at once (alerts, whose text can be long,
/// are cut by their bytes too).
pub const MAX_BATCH_ROWS: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{
        AlertRecord, BinRecord, CallRecord, Counts, DirectionStats, EndReason, FlowRecord,
        RtcpView, RtpQuality, RtpStreamId, RtpStreamRecord, RtpWindowRecord,
    };
    use crate::time::Timestamp;
    use crate::vnet::VnetId;
    use crate::voip::compare::{RtpCompareRecord, Verdict};
    use arrow::array::UInt64Array;
    use arrow::datatypes::DataType;
    use std::net::IpAddr;

    fn flow_record() -> FlowRecord {
        FlowRecord {
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
        }
    }

    #[test]
    fn table_names_are_unique_and_partition_columns_exist() {
        let mut names: Vec<&str> = TABLE.iter().map(|d| d.name).collect();
        assert_eq!(names, DATASETS);
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len(), "duplicate dataset name");
        for d in &TABLE {
            let s = (d.schema)();
            assert_eq!(
                s.metadata().get(META_DATASET).map(String::as_str),
                Some(d.name)
            );
            let v = s.field_with_name(d.vnet_column).expect("vnet column");
            assert_eq!(v.data_type(), &DataType::Utf8, "{}", d.name);
            assert!(!v.is_nullable(), "{}: VNet column nullable", d.name);
            let t = s.field_with_name(d.time_column).expect("time column");
            assert!(
                matches!(t.data_type(), DataType::Timestamp(_, Some(_))),
                "{}",
                d.name
            );
            assert!(!t.is_nullable(), "{}: time column nullable", d.name);
            assert_eq!(dataset(d.name).map(|e| e.name), Some(d.name));
        }
        assert!(dataset("nope").is_none());
    }

    /// Each record type names the entry whose schema its batches have, and
    /// every entry of the table has its record type here: a dataset added
    /// to the table without a converter fails this test.
    #[test]
    fn record_types_convert_to_their_entry_schema() {
        fn check<R: DatasetRecord>(r: R, seen: &mut Vec<&'static str>) {
            let b = batches(&[r], &VnetMap::default()).expect("batch");
            assert_eq!(b.len(), 1);
            assert_eq!(b[0].num_rows(), 1);
            assert_eq!(b[0].schema(), (R::DATASET.schema)(), "{}", R::DATASET.name);
            assert!(batches::<R>(&[], &VnetMap::default())
                .expect("empty")
                .is_empty());
            seen.push(R::DATASET.name);
        }
        let a: IpAddr = "10.0.0.1".parse().expect("addr");
        let b: IpAddr = "2001:db8::2".parse().expect("addr");
        let id = RtpStreamId {
            vnet: VnetId(0),
            ssrc: 7,
            src_addr: a,
            src_port: 4000,
            dst_addr: b,
            dst_port: 4002,
            payload_type: 0,
            codec: "PCMU".into(),
            call_id: None,
        };
        let mut seen = Vec::new();
        check(flow_record(), &mut seen);
        check(BinRecord::default(), &mut seen);
        check(
            RtpStreamRecord {
                id: id.clone(),
                start: Timestamp(1),
                end: Timestamp(2),
                quality: RtpQuality::default(),
                jitter_mean_ms: 0.5,
                seq_resets: 0,
                ts_jumps: 0,
                payload_type_changes: 0,
                clock_mismatch: false,
                mirror_duplicates: 0,
                loss_runs: 0,
                loss_run_hist: [0; 7],
                bursts: 0,
                burst_density: 0.0,
                gap_density: 0.0,
                mos_min: f64::NAN,
                mos_mean: f64::NAN,
                mos_last: f64::NAN,
                end_reason: EndReason::Idle,
                rtcp: RtcpView::default(),
                tunnel: Default::default(),
            },
            &mut seen,
        );
        check(
            RtpWindowRecord {
                id,
                window_start: Timestamp(1),
                window_secs: 10,
                quality: RtpQuality::default(),
                capture_drops: 0,
            },
            &mut seen,
        );
        check(
            RtpCompareRecord {
                production: VnetId(0),
                shadow: VnetId(0),
                ssrc: 7,
                src_addr: a,
                src_port: 4000,
                dst_addr: b,
                dst_port: 4002,
                call_id: Some("c".into()),
                window_start: Timestamp(1),
                window_secs: 10,
                mos_production: 4.1,
                mos_shadow: 4.2,
                mos_diff: 0.1,
                loss_production: 0.0,
                loss_shadow: 0.0,
                jitter_production_ms: 1.0,
                jitter_shadow_ms: 1.0,
                jitter_buffer: "adaptive",
                verdict: Verdict::Equal,
            },
            &mut seen,
        );
        check(
            CallRecord {
                vnet: VnetId(0),
                call_id: "c".into(),
                caller: "a".into(),
                callee: "b".into(),
                invite_time: Timestamp(1),
                answer_time: None,
                end_time: None,
                end_reason: "bye".into(),
                post_dial_delay_ms: None,
                media: String::new(),
                sip_messages: 2,
            },
            &mut seen,
        );
        check(
            AlertRecord {
                time: Timestamp(1),
                end: Timestamp(2),
                vnet: VnetId(0),
                kind: "port_scan",
                signature_id: 9_000_001,
                rev: 1,
                signature: "scan".into(),
                category: "Attempted Information Leak".into(),
                severity: 2,
                src_addr: Some(a),
                src_port: None,
                dst_addr: None,
                dst_port: None,
                protocol: 6,
                flow_id: None,
                vlans: Vec::new(),
                details: "{}".into(),
                trigger: None,
                to_server: None,
                flow: None,
                tunnel: Default::default(),
                gate: None,
            },
            &mut seen,
        );
        assert_eq!(seen, DATASETS, "a dataset of TABLE has no record type here");
    }

    #[test]
    fn flow_batch_matches_schema_and_nulls_empty_reverse() {
        let rec = flow_record();
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

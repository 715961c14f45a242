//! The records analyzers emit. Each record type is the row of one dataset
//! of [`crate::schema::TABLE`] (its schema and conversion in
//! [`crate::schema`]); the shared parts (identity, quality, tunnel) are
//! their columns in several datasets.

use std::net::IpAddr;

use crate::time::Timestamp;
use crate::vnet::VnetId;

/// Why a flow record was emitted (IPFIX `flowEndReason` in spirit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// No packet for the idle timeout.
    Idle,
    /// The flow lasted longer than the active timeout; its next packet opens
    /// a new record.
    Active,
    /// TCP FIN in both directions or RST, plus a short linger for the last ACK.
    TcpEnd,
    /// The input ended (end of the capture, or the probe stopped).
    EndOfInput,
    /// The flow table was full and this was its least recently seen flow.
    Evicted,
}

impl EndReason {
    pub const ALL: [EndReason; 5] = [
        EndReason::Idle,
        EndReason::Active,
        EndReason::TcpEnd,
        EndReason::EndOfInput,
        EndReason::Evicted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::Active => "active",
            EndReason::TcpEnd => "tcp_end",
            EndReason::EndOfInput => "end_of_input",
            EndReason::Evicted => "evicted",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one flow direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    pub packets: u64,
    /// Frame bytes on the wire (the pcap original length), not as captured.
    pub bytes: u64,
    pub first: Timestamp,
    pub last: Timestamp,
    /// Union of TCP flags seen in this direction.
    pub tcp_flags: u8,
}

/// One bidirectional flow. The forward direction is the initiator's, i.e.
/// the source of the first packet seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// Hash of the key and start time, the same on every run of a capture;
    /// alerts carry it to join their flow.
    pub flow_id: u64,
    pub vnet: VnetId,
    /// Outermost VLAN id of the first packet, if tagged.
    pub vlan_id: Option<u16>,
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    /// For ICMP echo both ports hold the echo identifier; for other ICMP,
    /// `src_port` is 0 and `dst_port` is type * 256 + code; 0 for protocols
    /// without ports.
    pub src_port: u16,
    pub dst_port: u16,
    /// IANA protocol number.
    pub protocol: u8,
    pub fwd: DirectionStats,
    pub rev: DirectionStats,
    /// IP fragments counted in this flow (all directions).
    pub fragments: u64,
    pub end_reason: EndReason,
    /// The tunnel the flow's first packet came in, if any.
    pub tunnel: TunnelInfo,
}

/// The outer view of a tunnelled record: the `tunnel_type`, `tunnel_id`,
/// `outer_src_addr` and `outer_dst_addr` columns (all null without a
/// tunnel). The record's own addresses and ports are the innermost ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelInfo {
    /// The layers' kinds, outermost first, joined by `/` (`vxlan`,
    /// `gre/gre`, `vxlan/mpls`, ...).
    pub tunnel_type: Option<String>,
    /// The innermost layer's id: VNI, GRE key, ERSPAN session, top MPLS
    /// label or GTP TEID.
    pub tunnel_id: Option<u32>,
    /// The outermost IP header's addresses (null when the outermost layer
    /// was not IP, as for MPLS on the link).
    pub outer_src_addr: Option<IpAddr>,
    pub outer_dst_addr: Option<IpAddr>,
}

impl TunnelInfo {
    /// The columns of a decoded packet's tunnel layers.
    pub fn of(t: &crate::decode::Tunnels) -> TunnelInfo {
        TunnelInfo {
            tunnel_type: t.type_name(),
            tunnel_id: t.id(),
            outer_src_addr: t.outer.map(|(s, _)| s),
            outer_dst_addr: t.outer.map(|(_, d)| d),
        }
    }
}

impl FlowRecord {
    pub fn start_time(&self) -> Timestamp {
        if self.rev.packets == 0 {
            self.fwd.first
        } else {
            self.fwd.first.min(self.rev.first)
        }
    }

    pub fn end_time(&self) -> Timestamp {
        if self.rev.packets == 0 {
            self.fwd.last
        } else {
            self.fwd.last.max(self.rev.last)
        }
    }

    pub fn packets(&self) -> u64 {
        self.fwd.packets + self.rev.packets
    }

    pub fn tcp_flags(&self) -> u8 {
        self.fwd.tcp_flags | self.rev.tcp_flags
    }
}

/// Per-protocol counters of a time bin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
}

impl Counts {
    #[inline]
    pub fn add(&mut self, bytes: u32) {
        self.packets += 1;
        self.bytes += u64::from(bytes);
    }
}

/// Traffic of one VNet in one time bin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BinRecord {
    pub vnet: VnetId,
    pub bin_start: Timestamp,
    pub bin_secs: u32,
    pub total: Counts,
    pub tcp: Counts,
    pub udp: Counts,
    /// ICMP and ICMPv6.
    pub icmp: Counts,
    /// Everything else, including non-IP frames.
    pub other: Counts,
    /// Frames whose decoding stopped early (counted by reason elsewhere).
    pub decode_errors: u64,
}

/// Identity of an RTP stream: one SSRC in one direction of one VNet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpStreamId {
    pub vnet: VnetId,
    pub ssrc: u32,
    pub src_addr: IpAddr,
    pub src_port: u16,
    pub dst_addr: IpAddr,
    pub dst_port: u16,
    pub payload_type: u8,
    /// Encoding name (static table or SDP rtpmap), `unknown` otherwise.
    pub codec: String,
    /// Call-ID of the SIP call that announced the stream, if seen.
    pub call_id: Option<String>,
}

/// Loss, jitter and quality over a period (a window or a stream's life).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RtpQuality {
    pub packets_received: u64,
    pub packets_expected: i64,
    /// expected − received; negative with duplicates.
    pub packets_lost: i64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Late discards of the default jitter-buffer model
    /// (`rtp.default_jitter_buffer`).
    pub jb_discards: u64,
    /// RFC 3550 interarrival jitter at the end of the period, ms.
    pub jitter_ms: f64,
    pub jitter_max_ms: f64,
    pub max_delta_ms: f64,
    /// (lost + default model's discards) / expected, 0..1.
    pub loss_ratio: f64,
    pub burst_r: f64,
    /// E-model R and MOS without delay (listening quality) and with the
    /// estimated one-way delay (conversational quality), with the default
    /// jitter-buffer model.
    pub r_factor: f64,
    pub mos_lq: f64,
    pub mos_cq: f64,
    /// One-way delay used for `mos_cq`, ms.
    pub one_way_delay_ms: f64,
    /// Name of the default model the columns above come from.
    pub jitter_buffer: &'static str,
    /// Why `r_factor` and the MOS columns are null (NaN here), if they are.
    pub mos_reason: Option<&'static str>,
    /// Per jitter-buffer model, indexed by
    /// [`crate::voip::jitter_buffer::Model::index`]; `None` for models not
    /// configured.
    pub jb: [Option<JbQuality>; crate::voip::jitter_buffer::MODEL_COUNT],
}

/// What one emulated jitter buffer made of a period.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JbQuality {
    /// Late discards.
    pub discards: u64,
    /// Mean wait of the played packets in the buffer, ms (the model's
    /// nominal delay when nothing was played).
    pub delay_ms: f64,
    pub r_factor: f64,
    pub mos_lq: f64,
    pub mos_cq: f64,
}

/// One RTP stream over its whole life.
#[derive(Clone, Debug, PartialEq)]
pub struct RtpStreamRecord {
    pub id: RtpStreamId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub quality: RtpQuality,
    pub jitter_mean_ms: f64,
    pub seq_resets: u64,
    /// Timestamp jumps with a continuous sequence (re-INVITE, codec or fax
    /// switch): each starts a new jitter segment.
    pub ts_jumps: u64,
    /// Changes of payload type from one packet to the next.
    pub payload_type_changes: u64,
    /// The timestamps run at another clock than the announced one (then the
    /// jitter buffers use the inferred clock).
    pub clock_mismatch: bool,
    /// Mirror copies of this stream's packets (not RTP duplicates).
    pub mirror_duplicates: u64,
    pub loss_runs: u64,
    /// Loss-run length histogram: 1, 2, 3, 4, 5-8, 9-16, 17+.
    pub loss_run_hist: [u64; 7],
    /// RFC 3611 bursts (Gmin 16), and the loss density inside bursts and
    /// gaps.
    pub bursts: u64,
    pub burst_density: f64,
    pub gap_density: f64,
    /// Window MOS (conversational): minimum, mean weighted by window
    /// duration, and last window's.
    pub mos_min: f64,
    pub mos_mean: f64,
    pub mos_last: f64,
    pub end_reason: EndReason,
    /// What RTCP said about this stream, when it was seen.
    pub rtcp: RtcpView,
    /// The tunnel of the stream's first packet, if any.
    pub tunnel: TunnelInfo,
}

/// The far end's view of a stream from RTCP, and the round trip time
/// derived from its report blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RtcpView {
    /// Round trip between the probe and the receiver of the stream:
    /// capture time of the RR − capture time of the SR it echoes − DLSR.
    pub rtt_ms: Option<f64>,
    /// Last fraction lost reported by the receiver, 0..1.
    pub remote_fraction_lost: Option<f64>,
    pub remote_cumulative_lost: Option<i64>,
    pub remote_jitter_ms: Option<f64>,
    /// MOS-CQ the receiver itself reported in an XR VoIP metrics block.
    pub remote_mos_cq: Option<f64>,
}

/// One RTP stream in one window of packet time.
#[derive(Clone, Debug, PartialEq)]
pub struct RtpWindowRecord {
    pub id: RtpStreamId,
    pub window_start: Timestamp,
    pub window_secs: u32,
    pub quality: RtpQuality,
    /// Packets the probe itself failed to capture in this window (kernel,
    /// interface and queue drops of its source; 0 in replay), so loss on
    /// the mirror is never mistaken for loss in the network.
    pub capture_drops: u64,
}

/// One SIP call (dialog established by an INVITE), as the signalling shows.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    pub vnet: VnetId,
    pub call_id: String,
    /// From and To header values of the INVITE.
    pub caller: String,
    pub callee: String,
    pub invite_time: Timestamp,
    /// 200 OK to the INVITE.
    pub answer_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    /// `bye`, `cancel`, `rejected_<code>`, `idle`, `end_of_input`, `evicted`.
    pub end_reason: String,
    /// INVITE to the first 180/183, ms.
    pub post_dial_delay_ms: Option<f64>,
    /// Media endpoints announced in SDP, `addr:port` comma-separated.
    pub media: String,
    pub sip_messages: u64,
}

/// An IDS alert: what was seen, by whom (or to whom, for floods), when.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRecord {
    /// First packet of the episode in the detector's window.
    pub time: Timestamp,
    /// The packet that crossed the threshold.
    pub end: Timestamp,
    pub vnet: VnetId,
    /// `port_scan`, `host_sweep`, `syn_flood`, `udp_flood`, `icmp_flood`,
    /// `dns_nxdomain_storm`, `dns_tunnel`, `udp_sweep`, `syn_ack_reflection`,
    /// `amplification`, `arp_sweep` ([`crate::ids::ALERT_KINDS`]); `signature`.
    pub kind: &'static str,
    pub signature_id: u32,
    /// The signature's revision (1 for the behavioural detectors).
    pub rev: u32,
    pub signature: String,
    /// Suricata's classtype description (the EVE `alert.category`).
    pub category: std::borrow::Cow<'static, str>,
    /// 1 (high) to 3 (low), as Suricata.
    pub severity: u8,
    pub src_addr: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_addr: Option<IpAddr>,
    pub dst_port: Option<u16>,
    pub protocol: u8,
    /// The flow of the packet that raised a signature alert
    /// ([`FlowRecord::flow_id`]); none for behavioural alerts, which span
    /// many flows.
    pub flow_id: Option<u64>,
    /// VLAN ids of the packet that raised a signature alert, outermost
    /// first (EVE's `vlan`); empty for behavioural alerts.
    pub vlans: Vec<u16>,
    /// JSON object: counts, threshold, window.
    pub details: String,
    /// (source, destination) of the packet that raised the alert, for an
    /// alert without a single source or target (a flood's spoofed
    /// sources, a sweep's many hosts): EVE's `src_ip`/`dest_ip`, which
    /// Suricata always writes from the alerting packet. Not in Parquet.
    pub trigger: Option<(IpAddr, IpAddr)>,
    /// A signature alert's packet went from the flow's initiator
    /// (`to_server`) or back; EVE's `direction`. Not in Parquet.
    pub to_server: Option<bool>,
    /// A signature alert's flow as its packet left it: EVE's `flow {}`.
    /// Not in Parquet (the `flows` row, joined on `flow_id`, has the
    /// flow's final counts).
    pub flow: Option<FlowCounters>,
    /// The tunnel of the packet that raised a signature alert; empty for
    /// behavioural alerts.
    pub tunnel: TunnelInfo,
    /// A signature alert raised in one of several workers: what the
    /// node's [`crate::ids::rules::gate::AlertGate`] still decides (its
    /// thresholds that track more than a flow, and the alert caps), so
    /// that alerts do not depend on how packets were sharded. `None`
    /// once decided, and for alerts decided where they were raised. Not
    /// in Parquet.
    pub gate: Option<Box<crate::ids::rules::gate::GateTicket>>,
}

/// A flow's counters so far, the current packet included: from its
/// initiator (Suricata's `toserver`) and back, and its first packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub pkts_toserver: u64,
    pub pkts_toclient: u64,
    pub bytes_toserver: u64,
    pub bytes_toclient: u64,
    pub start: Timestamp,
}

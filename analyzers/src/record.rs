//! The records analyzers emit. Each has an Arrow schema in [`crate::schema`].

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

impl DirectionStats {
    #[inline]
    pub fn add(&mut self, ts: Timestamp, wire_len: u32, tcp_flags: u8) {
        if self.packets == 0 {
            self.first = ts;
            self.last = ts;
        } else {
            self.first = self.first.min(ts);
            self.last = self.last.max(ts);
        }
        self.packets += 1;
        self.bytes += u64::from(wire_len);
        self.tcp_flags |= tcp_flags;
    }
}

/// One bidirectional flow. The forward direction is the initiator's, i.e.
/// the source of the first packet seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
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

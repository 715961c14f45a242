//! Packet sources. Live capture and file replay share one pipeline behind
//! [`PacketSource`]: the engine does not know where packets come from.

pub mod batch;
mod classic;
pub mod file;
pub mod live;
pub mod pcapng;

use analyzers::{LinkType, Timestamp};

/// One captured frame as the source hands it over.
#[derive(Clone, Copy, Debug)]
pub struct RawPacket<'a> {
    pub ts: Timestamp,
    /// Nanoseconds past `ts` (0-999) where the source has them (nanosecond
    /// pcap, pcapng, live nanosecond mode), else 0: the RTP arithmetic
    /// keeps them ([`analyzers::voip::stream::ArrivalNs`]).
    pub nanos: u16,
    /// Length on the wire (the pcap original length).
    pub wire_len: u32,
    /// The captured bytes (at most the snaplen).
    pub data: &'a [u8],
}

/// Errors of a packet source, each naming the source.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{source_name}: cannot open: {message}")]
    Open {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: not a pcap or pcapng capture ({message})")]
    NotACapture {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: bad BPF filter {filter:?}: {message}")]
    Filter {
        source_name: String,
        filter: String,
        message: String,
    },
    #[error("{source_name}: truncated capture after {packets} packets ({message}); the packets before it were kept")]
    Truncated {
        source_name: String,
        packets: u64,
        message: String,
    },
    #[error("{source_name}: read error after {packets} packets: {message}")]
    Read {
        source_name: String,
        packets: u64,
        message: String,
    },
}

/// Where packets come from: a capture file or, later, a live interface.
pub trait PacketSource {
    /// Name for messages and labels (file path or interface).
    fn name(&self) -> &str;
    /// The link type to decode frames with; `None` if moni cannot decode it
    /// (frames are then counted as `unsupported_link_type`).
    fn link_type(&self) -> Option<LinkType>;
    /// The next packet, `Ok(None)` at the end of the input.
    fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError>;
    /// Approximate bytes consumed so far and total, for progress display.
    fn progress(&self) -> (u64, u64) {
        (0, 0)
    }
}

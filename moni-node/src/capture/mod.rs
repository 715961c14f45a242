//! Packet sources and the one capture loop.
//!
//! A [`PacketSource`] (a capture file in [`file`], a live interface in
//! [`live`]) hands over packets one at a time (a classic pcap file also
//! in bursts of those already in its buffer, which the loop decodes
//! before it hands any on), says when it is idle and when it ends. [`driver`] is the only loop that reads a source: it
//! paces, runs what must see every packet, shards packets into
//! [`batch::PacketBatch`]es and hands them to the analysis workers, for
//! `replay` and `run` alike. Nothing here knows about analyzers' state.

pub mod batch;
mod classic;
pub mod cut;
pub mod driver;
pub mod file;
pub mod live;
pub mod pcapng;
pub mod rotation;

pub use classic::SharedChunk;

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
    #[error("{source_name}: truncated capture after {} ({message}); the packets before it were kept", crate::summary::plural(*packets, "packet"))]
    Truncated {
        source_name: String,
        packets: u64,
        message: String,
    },
    #[error("{source_name}: read error after {}: {message}", crate::summary::plural(*packets, "packet"))]
    Read {
        source_name: String,
        packets: u64,
        message: String,
    },
}

/// What reading a source gave.
pub enum Next<'a> {
    /// A packet; `iface` is the pcapng interface it was captured on (see
    /// [`PacketSource::interface_name`]).
    Packet {
        pkt: RawPacket<'a>,
        iface: Option<u32>,
    },
    /// Nothing arrived for a while (a quiet live port): the loop uses the
    /// pause to flush old batches and publish counters.
    Idle,
    /// The input ended (end of file; a live source never ends).
    End,
}

/// Drop counters of a live source (kernel and interface), as 64-bit
/// totals since it opened.
pub use live::DropTotals;

/// Where packets come from: a capture file or a live interface. The one
/// capture loop ([`driver`]) reads every kind the same way.
pub trait PacketSource {
    /// Name for messages and labels (file path or interface).
    fn name(&self) -> &str;
    /// The link type to decode frames with; `None` if moni cannot decode it
    /// (frames are then counted as `unsupported_link_type`).
    fn link_type(&self) -> Option<LinkType>;
    /// The next packet, an idle pause, or the end of the input.
    fn next(&mut self) -> Result<Next<'_>, CaptureError>;
    /// Up to `max` next packets at once, where the source has them read
    /// already (a classic pcap file's buffer), into `out`; the buffer
    /// they lie in. `None` (the default) where the source reads one at a
    /// time; an empty `out` when none is ready (then [`PacketSource::next`]
    /// reads on). Their source is [`DriverSettings::source_vnet`]'s,
    /// as for packets without an interface. The batches hold the buffer
    /// instead of copying the packets out of it.
    ///
    /// [`DriverSettings::source_vnet`]: driver::DriverSettings
    fn burst(&mut self, _max: usize, _out: &mut Vec<classic::Placed>) -> Option<&SharedChunk> {
        None
    }
    /// The name of pcapng interface `index`, if the file gives one.
    fn interface_name(&self, _index: u32) -> Option<String> {
        None
    }
    /// The link type of pcapng interface `index` (the source's, unless the
    /// file gives the interface another).
    fn interface_link(&self, _index: u32) -> Option<LinkType> {
        self.link_type()
    }
    /// Kernel and interface drops so far (`None`: the source cannot drop,
    /// as a file).
    fn drops(&mut self) -> Option<DropTotals> {
        None
    }
    /// Approximate bytes consumed so far and total, for progress display.
    fn progress(&self) -> (u64, u64) {
        (0, 0)
    }
    /// The kernel's cut of TCP payload ([`cut`]): `Some(ports)` copies
    /// TCP segments to the end of their header except on these ports,
    /// `None` copies them up to the snaplen. Nothing where the source has
    /// no kernel to cut (a file) or the cut is off for it.
    fn set_tcp_cut(&mut self, _keep_ports: Option<&[u16]>) {}
}

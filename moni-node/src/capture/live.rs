//! Live capture of a (mirrored) interface through libpcap.
//!
//! The probe only ever reads: the handle is opened for capture, never for
//! injection, so it cannot affect the production path it watches.

use analyzers::{LinkType, Timestamp};

use super::cut::{self, Insn, TcpPayload};
use super::{CaptureError, Next, PacketSource, RawPacket};
use crate::config::{Precision, SourceSettings};

/// Drop counters of a live source, accumulated into 64 bits.
///
/// libpcap's counters are 32-bit and wrap on a busy mirror port; each poll
/// adds the wrapping difference to the previous reading, so the totals stay
/// right as long as they are polled at least once per 2^32 packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropTotals {
    /// Packets the kernel dropped because the capture buffer was full.
    pub kernel: u64,
    /// Packets the interface (driver) dropped.
    pub interface: u64,
}

/// An open live capture.
pub struct LiveSource {
    name: String,
    cap: pcap::Capture<pcap::Active>,
    fd: std::os::fd::RawFd,
    /// The last read found the ring empty.
    drained: bool,
    link: Option<LinkType>,
    nanos: bool,
    last: Option<(u32, u32)>,
    totals: DropTotals,
    /// Packets read so far (a read error says how many came before it).
    packets: u64,
    /// libpcap's program for the filter, for the kernel's cut of TCP
    /// payload to follow; `None` where the cut is off (`tcp_payload =
    /// "always"`, not Ethernet, or it could not be attached).
    filter_program: Option<Vec<Insn>>,
    snaplen: u32,
    /// The ports the attached cut keeps whole (`None`: no cut attached,
    /// libpcap's program as it set it).
    cut: Option<Vec<u16>>,
}

/// What reading a live source gave.
pub enum LiveRead<'a> {
    Packet(RawPacket<'a>),
    /// The read timeout passed without a packet.
    Idle,
}

impl LiveSource {
    pub fn open(s: &SourceSettings, interface: &str) -> Result<LiveSource, CaptureError> {
        let open_err = |e: pcap::Error| CaptureError::Open {
            source_name: s.name.clone(),
            message: format!("interface {interface}: {e}"),
        };
        let snaplen = s
            .snaplen
            .unwrap_or_else(|| auto_snaplen(crate::sys::interface_mtu(interface)));
        let cap = pcap::Capture::from_device(interface)
            .map_err(open_err)?
            .promisc(s.promiscuous)
            .snaplen(snaplen)
            .buffer_size(s.buffer_bytes)
            // Bounds how long a stop request waits for a quiet port.
            .timeout(100)
            .immediate_mode(s.immediate)
            .precision(match s.precision {
                Precision::Micro => pcap::Precision::Micro,
                Precision::Nano => pcap::Precision::Nano,
            });
        // Non-blocking, with our own poll: libpcap's blocking read with
        // immediate mode on TPACKET_V3 never returns on a quiet port, so a
        // stop request or a batch flush would wait for the next packet.
        let mut cap = cap
            .open()
            .map_err(open_err)?
            .setnonblock()
            .map_err(open_err)?;
        // Always a kernel filter, the empty one ("accept all") when none is
        // configured: its return value is the snaplen, and that is what
        // makes the kernel cut each packet before copying it into the
        // ring. Without a filter the kernel copies every packet whole and
        // libpcap cuts it afterwards: a 64 KiB GSO frame on a veth cost
        // production's TCP sender a 64 KiB copy per frame (docs/lab.md).
        let expr = s.filter.as_deref().unwrap_or("");
        cap.filter(expr, true).map_err(|e| CaptureError::Filter {
            source_name: s.name.clone(),
            filter: expr.to_string(),
            message: e.to_string(),
        })?;
        tracing::info!(source = %s.name, interface, snaplen, "Capture opened.");
        let link = LinkType::from_dlt(cap.get_datalink().0);
        // libpcap's program for the filter, which the kernel's cut of TCP
        // payload follows ([`super::cut`]): Ethernet ports only, whose
        // frames the cut knows how to read.
        let filter_program = (s.tcp_payload == TcpPayload::Auto
            && link == Some(LinkType::Ethernet))
        .then(|| cap.compile(expr, true).ok())
        .flatten()
        .and_then(|p| {
            p.get_instructions()
                .iter()
                .map(|i| cut::parse_insn(&i.to_string()))
                .collect::<Option<Vec<_>>>()
        });
        let fd = std::os::fd::AsRawFd::as_raw_fd(&cap);
        Ok(LiveSource {
            name: s.name.clone(),
            cap,
            fd,
            filter_program,
            snaplen: u32::try_from(snaplen).unwrap_or(262_144),
            cut: None,
            drained: false,
            link,
            nanos: s.precision == Precision::Nano,
            last: None,
            totals: DropTotals::default(),
            packets: 0,
        })
    }

    /// The next packet, or `Idle` after about 100 ms without one.
    pub fn read(&mut self) -> Result<LiveRead<'_>, CaptureError> {
        // Only after the ring came up empty do we wait on the descriptor:
        // while packets flow, reading costs no system call per packet.
        if self.drained {
            if !crate::sys::wait_readable(self.fd, 100) {
                return Ok(LiveRead::Idle);
            }
            self.drained = false;
        }
        match self.cap.next_packet() {
            Ok(p) => {
                self.packets += 1;
                let sub = p.header.ts.tv_usec;
                let micros = if self.nanos { sub / 1000 } else { sub };
                Ok(LiveRead::Packet(RawPacket {
                    ts: Timestamp::from_secs_micros(p.header.ts.tv_sec, micros),
                    nanos: if self.nanos { (sub % 1000) as u16 } else { 0 },
                    wire_len: p.header.len.max(p.header.caplen),
                    data: p.data,
                }))
            }
            Err(pcap::Error::TimeoutExpired) => {
                self.drained = true;
                Ok(LiveRead::Idle)
            }
            Err(e) => Err(read_error(&self.name, self.packets, &e)),
        }
    }

    /// Packets read so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Polls libpcap's drop counters and returns the 64-bit totals.
    pub fn drops(&mut self) -> DropTotals {
        if let Ok(s) = self.cap.stats() {
            let (mut k, mut i) = self.last.unwrap_or((0, 0));
            accumulate_u32(&mut self.totals.kernel, &mut k, s.dropped);
            accumulate_u32(&mut self.totals.interface, &mut i, s.if_dropped);
            self.last = Some((k, i));
        }
        self.totals
    }
}

/// The snaplen when none is configured: the interface's MTU plus an
/// Ethernet header and two VLAN tags; the largest where the MTU is
/// unknown (e.g. the `any` device).
pub fn auto_snaplen(mtu: Option<u32>) -> i32 {
    mtu.map_or(262_144, |m| {
        i32::try_from(m.saturating_add(22)).map_or(262_144, |n| n.clamp(64, 262_144))
    })
}

/// A failed read of `name` after `packets` packets.
fn read_error(name: &str, packets: u64, e: &pcap::Error) -> CaptureError {
    CaptureError::Read {
        source_name: name.to_string(),
        packets,
        message: e.to_string(),
    }
}

impl PacketSource for LiveSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> Option<LinkType> {
        self.link
    }

    fn next(&mut self) -> Result<Next<'_>, CaptureError> {
        Ok(match self.read()? {
            LiveRead::Packet(pkt) => Next::Packet { pkt, iface: None },
            LiveRead::Idle => Next::Idle,
        })
    }

    fn drops(&mut self) -> Option<DropTotals> {
        Some(LiveSource::drops(self))
    }

    fn set_tcp_cut(&mut self, keep_ports: Option<&[u16]>) {
        let Some(filter) = &self.filter_program else {
            return;
        };
        if self.cut.as_deref() == keep_ports {
            return;
        }
        let program = match keep_ports {
            Some(ports) => {
                match cut::headers_only_tcp(self.snaplen, ports)
                    .and_then(|c| cut::after_filter(filter, &c))
                {
                    Some(p) => p,
                    None => {
                        tracing::warn!(
                            source = %self.name,
                            "TCP payload is copied whole: more than {} SIP ports, or a filter too long for the cut",
                            cut::MAX_KEPT_PORTS
                        );
                        self.filter_program = None;
                        return;
                    }
                }
            }
            None => filter.clone(),
        };
        match crate::sys::attach_filter(self.fd, &program) {
            Ok(()) => {
                tracing::info!(
                    source = %self.name,
                    tcp_payload = if keep_ports.is_some() { "headers only" } else { "kept" },
                    "Kernel cut of TCP payload set."
                );
                self.cut = keep_ports.map(<[u16]>::to_vec);
            }
            Err(e) => {
                tracing::warn!(source = %self.name, "TCP payload is copied whole: the kernel refused the cut ({e})");
                self.filter_program = None;
            }
        }
    }
}

/// Adds the wrapping difference between two readings of a 32-bit counter.
pub fn accumulate_u32(total: &mut u64, last: &mut u32, now: u32) {
    *total += u64::from(now.wrapping_sub(*last));
    *last = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, defect 9: the message counts the packets read before the
    /// error (it said "after 0 packets" whatever had been captured).
    #[test]
    fn a_read_error_says_how_many_packets_came_before_it() {
        let e = read_error(
            "eth1",
            377,
            &pcap::Error::PcapError("The interface went down".into()),
        );
        assert_eq!(
            e.to_string(),
            "eth1: read error after 377 packets: libpcap error: The interface went down"
        );
    }

    #[test]
    fn the_default_snaplen_is_the_mtu_plus_link_headers() {
        assert_eq!(auto_snaplen(Some(1500)), 1522);
        assert_eq!(auto_snaplen(Some(9000)), 9022);
        assert_eq!(auto_snaplen(Some(65536)), 65558);
        assert_eq!(auto_snaplen(Some(1_000_000)), 262_144);
        assert_eq!(auto_snaplen(Some(u32::MAX)), 262_144);
        assert_eq!(auto_snaplen(Some(10)), 64);
        assert_eq!(auto_snaplen(None), 262_144);
        // The loopback of every network namespace has one.
        assert_eq!(crate::sys::interface_mtu("lo"), Some(65536));
        assert_eq!(crate::sys::interface_mtu("no-such-if0"), None);
        assert_eq!(crate::sys::interface_mtu(""), None);
        assert_eq!(
            crate::sys::interface_mtu("a-name-far-too-long-for-linux"),
            None
        );
    }

    #[test]
    fn wrapping_counters_accumulate_into_64_bits() {
        let (mut total, mut last) = (0u64, 0u32);
        for now in [10u32, u32::MAX - 5, 4, 4, 100] {
            accumulate_u32(&mut total, &mut last, now);
        }
        // 10, then up to MAX-5, then across the wrap to 4 (10 more), then 96.
        assert_eq!(total, u64::from(u32::MAX - 5) + 10 + 96);
    }
}

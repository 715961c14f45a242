//! Lax decoding of one captured frame.
//!
//! Contract: [`decode`] accepts any byte sequence and never panics. It returns
//! every layer it could decode plus at most one [`DecodeError`] naming the
//! layer that stopped it, so callers count malformed traffic by reason
//! instead of dropping it.
//!
//! Link, VLAN and IP layers (IPv4 options, IPv6 extension headers) are sliced
//! by `etherparse`'s lax parser. Transport headers are read here from the IP
//! payload, because that parser skips the transport layer of *every* fragment
//! while a flow meter needs the ports of the *first* fragment, and because a
//! snaplen-truncated TCP header still carries usable ports and flags.
//!
//! A frame cut by the snaplen (captured length below wire length) is not an
//! error as long as the headers moni needs are complete: monitoring ports are
//! often captured with a small snaplen on purpose.
//!
//! Tunnels (VXLAN, Geneve, GRE, ERSPAN, MPLS, GTP-U, IP-in-IP) are
//! decapsulated by [`tunnel`] and [`mpls`] after the outer layers decoded:
//! [`Decoded`] then describes the innermost packet, and
//! [`Decoded::tunnels`] the layers crossed. Fragmented outer packets of
//! tunnels need state to be put back together: [`reassembly::Reassembler`],
//! owned by whoever drives decoding, wraps [`decode_with`] for that.

pub mod mpls;
pub mod reassembly;
pub mod tunnel;

pub use mpls::MplsPayload;
pub use reassembly::{Reassembled, Reassembler, ReassemblyStats};
pub use tunnel::{DecodeConfig, TunnelKind, TunnelLayer, TunnelStack, Tunnels};

use std::net::IpAddr;

use etherparse::err::{packet::SliceError, Layer};
use etherparse::{ether_type, EtherType, LaxNetSlice, LaxSlicedPacket};

/// The link-layer framing of a capture (libpcap's DLT / LINKTYPE values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II, optionally with up to three 802.1Q/802.1ad tags.
    Ethernet,
    /// Linux cooked capture v1 (`any` device), 16-byte header.
    LinuxSll,
    /// Linux cooked capture v2, 20-byte header.
    LinuxSll2,
    /// Raw IP: the frame starts with an IPv4 or IPv6 header.
    RawIp,
    /// BSD loopback: a 4-byte address family in host byte order, then IP.
    Null,
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    Loop,
    /// Linux netfilter log (NFLOG): a 4-byte header, then TLVs, one of
    /// which (type 9) holds the IP packet.
    Nflog,
}

impl LinkType {
    /// Maps a libpcap data-link type to a link type moni decodes, or `None`
    /// for one it does not.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        match dlt {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            // DLT_RAW is 12 on most systems and 14 on OpenBSD; LINKTYPE_RAW
            // is 101; 228/229 are IPv4-only/IPv6-only raw.
            12 | 14 | 101 | 228 | 229 => Some(LinkType::RawIp),
            0 => Some(LinkType::Null),
            108 => Some(LinkType::Loop),
            239 => Some(LinkType::Nflog),
            _ => None,
        }
    }
}

/// Why decoding stopped early, by layer. Counted per reason by the caller.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The capture's link type is not one moni decodes.
    UnsupportedLinkType,
    /// Shorter than an Ethernet II header.
    EthernetTruncated,
    /// Shorter than a Linux cooked (SLL/SLL2) header.
    SllTruncated,
    /// Shorter than the 4-byte loopback header, or an unknown address family.
    LoopbackInvalid,
    /// A VLAN tag was cut off.
    VlanTruncated,
    /// More than three stacked VLAN tags.
    TooManyVlanTags,
    /// The IP header was cut off.
    IpTruncated,
    /// The IP header is malformed (bad version, IHL below 5, ...).
    IpInvalid,
    /// An IPv6 extension header or IP authentication header was cut off.
    IpExtTruncated,
    /// An IPv6 extension header or IP authentication header is malformed.
    IpExtInvalid,
    /// The TCP header was cut off before its end.
    TcpTruncated,
    /// The TCP data offset is below 5 words or beyond the segment.
    TcpInvalid,
    /// The UDP header was cut off.
    UdpTruncated,
    /// The ICMP or ICMPv6 header was cut off.
    IcmpTruncated,
    /// A link-layer error etherparse reported that fits no other reason.
    LinkInvalid,
    /// More nested tunnels than `decode.max_tunnel_depth`.
    TunnelTooDeep,
    /// A GRE header was cut off.
    GreTruncated,
    /// A GRE header moni cannot read (routing present, unknown version).
    GreInvalid,
    /// A VXLAN or VXLAN-GPE header was cut off.
    VxlanTruncated,
    /// A VXLAN header without the valid-VNI flag.
    VxlanInvalid,
    /// A Geneve header or its options were cut off.
    GeneveTruncated,
    /// A Geneve header of an unknown version.
    GeneveInvalid,
    /// A GTP-U header or extension header was cut off.
    GtpuTruncated,
    /// A GTP-U header of another version or protocol type, or a zero-length
    /// extension header.
    GtpuInvalid,
    /// An ERSPAN header was cut off.
    ErspanTruncated,
    /// An ERSPAN header of the wrong version for its GRE protocol type.
    ErspanInvalid,
    /// An MPLS label stack was cut off before its bottom or its payload.
    MplsTruncated,
    /// What follows the bottom MPLS label is not what
    /// `decode.mpls_payload` allows.
    MplsUnknownPayload,
    /// A tunnel carries a protocol moni does not decode (GRE, Geneve or
    /// VXLAN-GPE protocol type, PPP protocol, ERSPAN frame type).
    TunnelUnknownPayload,
}

impl DecodeError {
    /// Every reason, in a stable order (the index of a reason in this list
    /// is what [`DecodeErrorCounts`] uses).
    pub const ALL: [DecodeError; 29] = [
        DecodeError::UnsupportedLinkType,
        DecodeError::EthernetTruncated,
        DecodeError::SllTruncated,
        DecodeError::LoopbackInvalid,
        DecodeError::VlanTruncated,
        DecodeError::TooManyVlanTags,
        DecodeError::IpTruncated,
        DecodeError::IpInvalid,
        DecodeError::IpExtTruncated,
        DecodeError::IpExtInvalid,
        DecodeError::TcpTruncated,
        DecodeError::TcpInvalid,
        DecodeError::UdpTruncated,
        DecodeError::IcmpTruncated,
        DecodeError::LinkInvalid,
        DecodeError::TunnelTooDeep,
        DecodeError::GreTruncated,
        DecodeError::GreInvalid,
        DecodeError::VxlanTruncated,
        DecodeError::VxlanInvalid,
        DecodeError::GeneveTruncated,
        DecodeError::GeneveInvalid,
        DecodeError::GtpuTruncated,
        DecodeError::GtpuInvalid,
        DecodeError::ErspanTruncated,
        DecodeError::ErspanInvalid,
        DecodeError::MplsTruncated,
        DecodeError::MplsUnknownPayload,
        DecodeError::TunnelUnknownPayload,
    ];

    /// Stable snake_case name, used in summaries, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::UnsupportedLinkType => "unsupported_link_type",
            DecodeError::EthernetTruncated => "ethernet_truncated",
            DecodeError::SllTruncated => "sll_truncated",
            DecodeError::LoopbackInvalid => "loopback_invalid",
            DecodeError::VlanTruncated => "vlan_truncated",
            DecodeError::TooManyVlanTags => "too_many_vlan_tags",
            DecodeError::IpTruncated => "ip_truncated",
            DecodeError::IpInvalid => "ip_invalid",
            DecodeError::IpExtTruncated => "ip_ext_truncated",
            DecodeError::IpExtInvalid => "ip_ext_invalid",
            DecodeError::TcpTruncated => "tcp_truncated",
            DecodeError::TcpInvalid => "tcp_invalid",
            DecodeError::UdpTruncated => "udp_truncated",
            DecodeError::IcmpTruncated => "icmp_truncated",
            DecodeError::LinkInvalid => "link_invalid",
            DecodeError::TunnelTooDeep => "tunnel_too_deep",
            DecodeError::GreTruncated => "gre_truncated",
            DecodeError::GreInvalid => "gre_invalid",
            DecodeError::VxlanTruncated => "vxlan_truncated",
            DecodeError::VxlanInvalid => "vxlan_invalid",
            DecodeError::GeneveTruncated => "geneve_truncated",
            DecodeError::GeneveInvalid => "geneve_invalid",
            DecodeError::GtpuTruncated => "gtpu_truncated",
            DecodeError::GtpuInvalid => "gtpu_invalid",
            DecodeError::ErspanTruncated => "erspan_truncated",
            DecodeError::ErspanInvalid => "erspan_invalid",
            DecodeError::MplsTruncated => "mpls_truncated",
            DecodeError::MplsUnknownPayload => "mpls_unknown_payload",
            DecodeError::TunnelUnknownPayload => "tunnel_unknown_payload",
        }
    }

    /// The layer the reason belongs to: `link`, `vlan`, `ip`, `transport`
    /// or `tunnel`.
    pub fn layer(self) -> &'static str {
        match self {
            DecodeError::UnsupportedLinkType
            | DecodeError::EthernetTruncated
            | DecodeError::SllTruncated
            | DecodeError::LoopbackInvalid
            | DecodeError::LinkInvalid => "link",
            DecodeError::VlanTruncated | DecodeError::TooManyVlanTags => "vlan",
            DecodeError::IpTruncated
            | DecodeError::IpInvalid
            | DecodeError::IpExtTruncated
            | DecodeError::IpExtInvalid => "ip",
            DecodeError::TcpTruncated
            | DecodeError::TcpInvalid
            | DecodeError::UdpTruncated
            | DecodeError::IcmpTruncated => "transport",
            DecodeError::TunnelTooDeep
            | DecodeError::GreTruncated
            | DecodeError::GreInvalid
            | DecodeError::VxlanTruncated
            | DecodeError::VxlanInvalid
            | DecodeError::GeneveTruncated
            | DecodeError::GeneveInvalid
            | DecodeError::GtpuTruncated
            | DecodeError::GtpuInvalid
            | DecodeError::ErspanTruncated
            | DecodeError::ErspanInvalid
            | DecodeError::MplsTruncated
            | DecodeError::MplsUnknownPayload
            | DecodeError::TunnelUnknownPayload => "tunnel",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decode errors counted by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeErrorCounts([u64; DecodeError::ALL.len()]);

impl DecodeErrorCounts {
    pub fn add(&mut self, error: DecodeError) {
        self.0[error.index()] += 1;
    }

    pub fn get(&self, error: DecodeError) -> u64 {
        self.0[error.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn merge(&mut self, other: &DecodeErrorCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Non-zero counts with their reason, in [`DecodeError::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DecodeError, u64)> + '_ {
        DecodeError::ALL
            .iter()
            .zip(self.0.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(e, n)| (*e, *n))
    }
}

/// Where an IP packet sits in a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    None,
    /// Offset zero with more fragments: carries the transport header.
    First { id: u32 },
    /// A later fragment: no transport header.
    Later { id: u32 },
}

/// The decoded IP layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpLayer {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IANA protocol number of the payload (after IPv6 extension headers).
    pub protocol: u8,
    pub fragment: Fragment,
}

/// The decoded transport layer (possibly partial, see [`Decoded::error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    None,
    Tcp {
        src_port: u16,
        dst_port: u16,
        /// The eight classic flag bits (CWR ECE URG ACK PSH RST SYN FIN).
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Icmp {
        icmp_type: u8,
        code: u8,
        /// Identifier of an echo request or reply, which pairs the two.
        echo_id: Option<u16>,
    },
}

/// TCP flag bits as they appear in byte 13 of the TCP header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// Everything decoded from one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// VLAN ids, outermost first; `vlan_count` of them are valid.
    pub vlan_ids: [u16; 3],
    pub vlan_count: u8,
    /// EtherType of the network layer, when the link layer carried one.
    pub ether_type: Option<u16>,
    pub ip: Option<IpLayer>,
    pub transport: Transport,
    /// Transport payload as captured (may be cut by the snaplen).
    pub payload: &'a [u8],
    /// The reason decoding stopped early, if it did.
    pub error: Option<DecodeError>,
    /// The tunnel layers crossed to reach this (innermost) packet.
    pub tunnels: TunnelStack,
    /// The payload of a link layer moni reads no IP from (MPLS), for the
    /// tunnel decoder; for an IP fragment, the IP packet as captured, for
    /// the [`reassembly`] of tunnels.
    pub(crate) net_payload: &'a [u8],
}

impl<'a> Decoded<'a> {
    fn empty() -> Self {
        Decoded {
            vlan_ids: [0; 3],
            vlan_count: 0,
            ether_type: None,
            ip: None,
            transport: Transport::None,
            payload: &[],
            error: None,
            tunnels: TunnelStack(None),
            net_payload: &[],
        }
    }

    /// A frame of which nothing decoded, for `error`.
    pub fn failed(error: DecodeError) -> Self {
        let mut d = Decoded::empty();
        d.error = Some(error);
        d
    }

    /// The VLAN ids present, outermost first.
    pub fn vlans(&self) -> &[u16] {
        &self.vlan_ids[..usize::from(self.vlan_count).min(3)]
    }

    /// The outermost VLAN id, if the frame was tagged.
    pub fn outer_vlan(&self) -> Option<u16> {
        self.vlans().first().copied()
    }

    /// Source and destination ports for TCP and UDP; `None` otherwise.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.transport {
            Transport::Tcp {
                src_port, dst_port, ..
            }
            | Transport::Udp { src_port, dst_port } => Some((src_port, dst_port)),
            _ => None,
        }
    }

    /// TCP flags of a TCP segment, 0 otherwise.
    pub fn tcp_flags(&self) -> u8 {
        match self.transport {
            Transport::Tcp { flags, .. } => flags,
            _ => 0,
        }
    }
}

/// Decodes one frame of the given link type with the default settings,
/// tunnels included. Never panics.
#[inline]
pub fn decode(link: LinkType, frame: &[u8]) -> Decoded<'_> {
    decode_with(link, frame, &DecodeConfig::DEFAULT)
}

/// Decodes one frame of the given link type, decapsulating tunnels as
/// `config` says. Never panics.
#[inline]
pub fn decode_with<'a>(link: LinkType, frame: &'a [u8], config: &DecodeConfig) -> Decoded<'a> {
    tunnel::decapsulate(decode_link(link, frame), config)
}

/// The outer layers of one frame (link, VLAN, IP, transport), without
/// looking into tunnels.
#[inline]
pub(crate) fn decode_link(link: LinkType, frame: &[u8]) -> Decoded<'_> {
    match link {
        LinkType::Ethernet => {
            if let Some(d) = fast_ethernet_ipv4(frame) {
                return d;
            }
            decode_ethernet(frame)
        }
        _ => decode_non_ethernet(link, frame),
    }
}

/// The general path through `etherparse`, for every frame the fast path
/// declines. Public so that tests can hold [`decode`]'s fast path to it:
/// both must give the same result for every frame.
pub fn decode_general(link: LinkType, frame: &[u8]) -> Decoded<'_> {
    let d = match link {
        LinkType::Ethernet => decode_ethernet(frame),
        _ => decode_non_ethernet(link, frame),
    };
    tunnel::decapsulate(d, &DecodeConfig::DEFAULT)
}

/// Fast path for the frame a mirror port carries most: Ethernet II with at
/// most two VLAN tags, then an unfragmented IPv4 packet without options
/// (possibly cut by the snaplen). It reads the few fixed offsets
/// directly instead of building `etherparse`'s full slice (whose large
/// structs cost a quarter of the analysis time in profiles). Anything else
/// returns `None` and takes the general path; a differential test holds
/// both paths to the same result on the corpus and on mutated frames.
#[inline]
fn fast_ethernet_ipv4(frame: &[u8]) -> Option<Decoded<'_>> {
    let mut d = Decoded::empty();
    let mut at = 12;
    loop {
        let t = be16(frame.get(at..at + 2)?);
        match t {
            0x0800 => break,
            0x8100 | 0x88a8 | 0x9100 if d.vlan_count < 2 => {
                let tci = be16(frame.get(at + 2..at + 4)?);
                d.vlan_ids[usize::from(d.vlan_count)] = tci & 0x0fff;
                d.vlan_count += 1;
                at += 4;
            }
            _ => return None,
        }
    }
    let ip = frame.get(at + 2..)?;
    let header = ip.get(..20)?;
    if header[0] != 0x45 {
        return None;
    }
    let total_len = usize::from(be16(&header[2..4]));
    // More-fragments flag or a fragment offset: the general path.
    if total_len < 20 || header[6] & 0x3f != 0 || header[7] != 0 {
        return None;
    }
    // Cut by the snaplen (the usual small-snaplen mirror): what was captured.
    let end = total_len.min(ip.len());
    // TCP, UDP and ICMP only: etherparse treats some other numbers (AH)
    // as IPv4 extension headers, which is the general path's business.
    let protocol = header[9];
    if !matches!(protocol, TCP | UDP | ICMP) {
        return None;
    }
    let src = std::net::Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = std::net::Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    d.ether_type = Some(0x0800);
    d.ip = Some(IpLayer {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        protocol,
        fragment: Fragment::None,
    });
    let (transport, payload, error) = decode_transport(protocol, &ip[20..end]);
    d.transport = transport;
    d.payload = payload;
    d.error = error;
    Some(d)
}

fn decode_ethernet(frame: &[u8]) -> Decoded<'_> {
    match LaxSlicedPacket::from_ethernet(frame) {
        Ok(p) => match pppoe_session(&p) {
            // PPPoE: decode the PPP payload, keeping the VLAN tags.
            Some((ether_type, inner)) => {
                let mut d = from_ether_type(ether_type, inner);
                let outer = from_sliced(p);
                d.vlan_ids = outer.vlan_ids;
                d.vlan_count = outer.vlan_count;
                d
            }
            None => from_sliced(p),
        },
        Err(_) => Decoded::failed(DecodeError::EthernetTruncated),
    }
}

fn decode_non_ethernet(link: LinkType, frame: &[u8]) -> Decoded<'_> {
    match link {
        LinkType::Ethernet => decode_ethernet(frame),
        LinkType::LinuxSll => match (frame.get(14..16), frame.get(16..)) {
            (Some(proto), Some(rest)) => from_ether_type(be16(proto), rest),
            _ => Decoded::failed(DecodeError::SllTruncated),
        },
        LinkType::LinuxSll2 => match (frame.get(0..2), frame.get(20..)) {
            (Some(proto), Some(rest)) => from_ether_type(be16(proto), rest),
            _ => Decoded::failed(DecodeError::SllTruncated),
        },
        LinkType::RawIp => match frame.first().map(|b| b >> 4) {
            Some(4) => from_ether_type(ether_type::IPV4.0, frame),
            Some(6) => from_ether_type(ether_type::IPV6.0, frame),
            Some(_) => Decoded::failed(DecodeError::IpInvalid),
            None => Decoded::failed(DecodeError::IpTruncated),
        },
        LinkType::Nflog => match nflog_payload(frame) {
            Some((2, packet)) => from_ether_type(ether_type::IPV4.0, packet),
            Some((10, packet)) => from_ether_type(ether_type::IPV6.0, packet),
            _ => Decoded::failed(DecodeError::LinkInvalid),
        },
        LinkType::Null | LinkType::Loop => {
            let Some(family) = frame.get(0..4) else {
                return Decoded::failed(DecodeError::LoopbackInvalid);
            };
            let bytes = [family[0], family[1], family[2], family[3]];
            let family = if link == LinkType::Null {
                // Host byte order of the capturing machine: accept either.
                let le = u32::from_le_bytes(bytes);
                if le < 256 {
                    le
                } else {
                    u32::from_be_bytes(bytes)
                }
            } else {
                u32::from_be_bytes(bytes)
            };
            let rest = &frame[4..];
            match family {
                2 => from_ether_type(ether_type::IPV4.0, rest),
                // AF_INET6 differs per BSD: 10, 24, 28, 30.
                10 | 24 | 28 | 30 => from_ether_type(ether_type::IPV6.0, rest),
                _ => Decoded::failed(DecodeError::LoopbackInvalid),
            }
        }
    }
}

/// The address family and packet of an NFLOG frame: after the 4-byte
/// header (family, version, resource id) come TLVs of a 2-byte length
/// (header included) and a 2-byte type, each padded to 4 bytes, in the
/// capturing host's byte order (little-endian on every host seen; a length
/// that does not fit is read big-endian). The payload TLV has type 9.
fn nflog_payload(frame: &[u8]) -> Option<(u8, &[u8])> {
    let family = *frame.first()?;
    let mut at = 4;
    while let Some(tlv) = frame.get(at..at + 4) {
        let rest = frame.len() - at;
        let le = usize::from(u16::from_le_bytes([tlv[0], tlv[1]]));
        let (len, kind) = if (4..=rest).contains(&le) {
            (le, u16::from_le_bytes([tlv[2], tlv[3]]))
        } else {
            (usize::from(be16(&tlv[0..2])), be16(&tlv[2..4]))
        };
        if len < 4 || len > rest {
            return None;
        }
        if kind == 9 {
            return Some((family, &frame[at + 4..at + len]));
        }
        at += (len + 3) & !3;
    }
    None
}

/// The IP payload of a PPPoE session frame (EtherType 0x8864): a 6-byte
/// PPPoE header, then the PPP protocol (0x0021 IPv4, 0x0057 IPv6).
fn pppoe_session<'a>(p: &LaxSlicedPacket<'a>) -> Option<(u16, &'a [u8])> {
    if p.net.is_some() {
        return None;
    }
    let e = p.ether_payload()?;
    if e.ether_type.0 != 0x8864 {
        return None;
    }
    let inner = e.payload.get(8..)?;
    match be16(e.payload.get(6..8)?) {
        0x0021 => Some((ether_type::IPV4.0, inner)),
        0x0057 => Some((ether_type::IPV6.0, inner)),
        _ => None,
    }
}

pub(crate) fn from_ether_type(ether_type: u16, rest: &[u8]) -> Decoded<'_> {
    from_sliced(LaxSlicedPacket::from_ether_type(
        EtherType(ether_type),
        rest,
    ))
}

pub(crate) fn be16(b: &[u8]) -> u16 {
    match b {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

fn is_vlan_ether_type(t: EtherType) -> bool {
    matches!(
        t,
        ether_type::VLAN_TAGGED_FRAME
            | ether_type::PROVIDER_BRIDGING
            | ether_type::VLAN_DOUBLE_TAGGED_FRAME
    )
}

fn from_sliced(p: LaxSlicedPacket<'_>) -> Decoded<'_> {
    let mut d = Decoded::empty();

    for ext in p.link_exts.iter() {
        if let etherparse::LaxLinkExtSlice::Vlan(v) = ext {
            if let Some(slot) = d.vlan_ids.get_mut(usize::from(d.vlan_count)) {
                *slot = v.vlan_identifier().value();
                d.vlan_count += 1;
            }
        }
    }
    let inner_type = p.ether_payload().map(|e| e.ether_type);
    d.ether_type = inner_type.map(|t| t.0);
    if p.net.is_none() {
        if let Some(e) = p.ether_payload() {
            if matches!(e.ether_type.0, mpls::UNICAST | mpls::MULTICAST) {
                d.net_payload = e.payload;
            }
        }
    }

    if let Some((err, layer)) = &p.stop_err {
        let error = map_stop_error(err, *layer);
        // Transport errors are re-derived below from the IP payload.
        if error.layer() != "transport" {
            d.error = Some(error);
        }
    } else if p.link_exts.len() == LaxSlicedPacket::LINK_EXTS_CAP
        && p.net.is_none()
        && inner_type.is_some_and(is_vlan_ether_type)
    {
        d.error = Some(DecodeError::TooManyVlanTags);
    }

    let (src, dst, payload, fragment) = match &p.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let fragment = if v4.payload().fragmented {
                let id = u32::from(h.identification());
                if h.fragments_offset().value() == 0 {
                    Fragment::First { id }
                } else {
                    Fragment::Later { id }
                }
            } else {
                Fragment::None
            };
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                v4.payload(),
                fragment,
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let exts = v6.extensions();
            let fragment = if v6.payload().fragmented {
                exts.first_header()
                    .and_then(|first| ipv6_fragment(first.0, exts.slice()))
                    // Marked fragmented but the header was not found:
                    // treat as a later fragment so no ports are invented.
                    .unwrap_or(Fragment::Later { id: 0 })
            } else {
                Fragment::None
            };
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                v6.payload(),
                fragment,
            )
        }
        _ => return d,
    };
    d.ip = Some(IpLayer {
        src,
        dst,
        protocol: payload.ip_number.0,
        fragment,
    });
    if fragment != Fragment::None {
        d.net_payload = p.ether_payload().map_or(&[], |e| e.payload);
    }
    // An error in the IP extension headers leaves the payload's start unknown.
    if d.error.is_some() || matches!(fragment, Fragment::Later { .. }) {
        return d;
    }
    let (transport, l4_payload, error) = decode_transport(payload.ip_number.0, payload.payload);
    d.transport = transport;
    d.payload = l4_payload;
    d.error = error;
    d
}

/// The first fragment header among the IPv6 extension headers `exts`, whose
/// first header has protocol number `first`.
///
/// This walks the bytes itself, bounds-checked, instead of using
/// `etherparse`'s extension iterator: after a lax parse that stopped at a
/// broken header, that iterator goes on past the validated bytes into the
/// broken one (an out-of-bounds `get_unchecked`, found by the fuzz test).
fn ipv6_fragment(first: u8, exts: &[u8]) -> Option<Fragment> {
    const HOP_BY_HOP: u8 = 0;
    const ROUTE: u8 = 43;
    const FRAG: u8 = 44;
    const AUTH: u8 = 51;
    const DEST_OPTIONS: u8 = 60;
    let mut next = first;
    let mut rest = exts;
    loop {
        let len = match next {
            HOP_BY_HOP | ROUTE | DEST_OPTIONS => (usize::from(*rest.get(1)?) + 1) * 8,
            FRAG => 8,
            AUTH => (usize::from(*rest.get(1)?) + 2) * 4,
            _ => return None,
        };
        let header = rest.get(..len)?;
        if next == FRAG {
            let offset_flags = u16::from_be_bytes([header[2], header[3]]);
            let offset = offset_flags >> 3;
            let more = offset_flags & 1 == 1;
            let id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            // An atomic fragment (offset 0, no more fragments) fragments
            // nothing; a later header may.
            if offset != 0 {
                return Some(Fragment::Later { id });
            }
            if more {
                return Some(Fragment::First { id });
            }
        }
        next = header[0];
        rest = &rest[len..];
    }
}

fn map_stop_error(err: &SliceError, layer: Layer) -> DecodeError {
    let truncated = matches!(err, SliceError::Len(_));
    match layer {
        Layer::VlanHeader => DecodeError::VlanTruncated,
        Layer::LinuxSllHeader => DecodeError::SllTruncated,
        Layer::Ethernet2Header | Layer::EtherPayload => DecodeError::EthernetTruncated,
        Layer::IpHeader
        | Layer::Ipv4Header
        | Layer::Ipv4Packet
        | Layer::Ipv6Header
        | Layer::Ipv6Packet => {
            if truncated {
                DecodeError::IpTruncated
            } else {
                DecodeError::IpInvalid
            }
        }
        Layer::IpAuthHeader
        | Layer::Ipv6ExtHeader
        | Layer::Ipv6HopByHopHeader
        | Layer::Ipv6DestOptionsHeader
        | Layer::Ipv6RouteHeader
        | Layer::Ipv6FragHeader => {
            if truncated {
                DecodeError::IpExtTruncated
            } else {
                DecodeError::IpExtInvalid
            }
        }
        Layer::TcpHeader => {
            if truncated {
                DecodeError::TcpTruncated
            } else {
                DecodeError::TcpInvalid
            }
        }
        Layer::UdpHeader | Layer::UdpPayload => DecodeError::UdpTruncated,
        Layer::Icmpv4 | Layer::Icmpv6 => DecodeError::IcmpTruncated,
        _ => DecodeError::LinkInvalid,
    }
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// Reads the transport header from an IP payload, keeping whatever fields
/// were captured when the header is cut short.
fn decode_transport(protocol: u8, b: &[u8]) -> (Transport, &[u8], Option<DecodeError>) {
    let port = |at: usize| b.get(at..at + 2).map(be16);
    match protocol {
        TCP => {
            let (Some(src_port), Some(dst_port)) = (port(0), port(2)) else {
                return (Transport::None, &[], Some(DecodeError::TcpTruncated));
            };
            let flags = b.get(13).copied().unwrap_or(0);
            let t = Transport::Tcp {
                src_port,
                dst_port,
                flags,
            };
            if b.len() < 20 {
                return (t, &[], Some(DecodeError::TcpTruncated));
            }
            let header_len = usize::from(b[12] >> 4) * 4;
            if header_len < 20 {
                return (t, &[], Some(DecodeError::TcpInvalid));
            }
            match b.get(header_len..) {
                Some(payload) => (t, payload, None),
                // Options cut by the snaplen: ports and flags are known.
                None => (t, &[], Some(DecodeError::TcpTruncated)),
            }
        }
        UDP => {
            let (Some(src_port), Some(dst_port)) = (port(0), port(2)) else {
                return (Transport::None, &[], Some(DecodeError::UdpTruncated));
            };
            let t = Transport::Udp { src_port, dst_port };
            if b.len() < 8 {
                return (t, &[], Some(DecodeError::UdpTruncated));
            }
            // Trust the UDP length only when it is consistent.
            let udp_len = usize::from(be16(&b[4..6]));
            let end = if udp_len >= 8 {
                udp_len.min(b.len())
            } else {
                b.len()
            };
            (t, &b[8..end], None)
        }
        ICMP | ICMPV6 => {
            let (Some(&icmp_type), Some(&code)) = (b.first(), b.get(1)) else {
                return (Transport::None, &[], Some(DecodeError::IcmpTruncated));
            };
            let is_echo = if protocol == ICMP {
                icmp_type == 8 || icmp_type == 0
            } else {
                icmp_type == 128 || icmp_type == 129
            };
            let echo_id = if is_echo { port(4) } else { None };
            let t = Transport::Icmp {
                icmp_type,
                code,
                echo_id,
            };
            match b.get(8..) {
                Some(payload) => (t, payload, None),
                None => (t, &[], Some(DecodeError::IcmpTruncated)),
            }
        }
        _ => (Transport::None, b, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Ethernet + IPv4 + TCP SYN from 10.0.0.1:1234 to 10.0.0.2:80 (also
    /// the inner frame of the tunnel and reassembly tests).
    pub(super) fn eth_ipv4_tcp_syn() -> Vec<u8> {
        let mut f = vec![
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00, // ethernet
            0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ipv4
        ];
        f.extend_from_slice(&[
            0x04, 0xd2, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        f
    }

    fn with_vlans(frame: &[u8], vlans: &[u16]) -> Vec<u8> {
        let mut out = frame[..12].to_vec();
        for (i, v) in vlans.iter().enumerate() {
            let tpid: u16 = if i == 0 && vlans.len() > 1 {
                0x88a8
            } else {
                0x8100
            };
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&frame[12..]);
        out
    }

    #[test]
    fn decodes_tcp_syn() {
        let f = eth_ipv4_tcp_syn();
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(d.error, None);
        let ip = d.ip.expect("ip");
        assert_eq!(ip.src.to_string(), "10.0.0.1");
        assert_eq!(ip.protocol, 6);
        assert_eq!(d.ports(), Some((1234, 80)));
        assert_eq!(d.tcp_flags(), tcp_flags::SYN);
    }

    #[test]
    fn decodes_three_stacked_vlans() {
        let f = with_vlans(&eth_ipv4_tcp_syn(), &[100, 200, 300]);
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(d.vlans(), &[100, 200, 300]);
        assert_eq!(d.ports(), Some((1234, 80)));
        assert_eq!(d.error, None);
    }

    #[test]
    fn four_vlans_are_counted() {
        let f = with_vlans(&eth_ipv4_tcp_syn(), &[1, 2, 3, 4]);
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(d.vlans(), &[1, 2, 3]);
        assert_eq!(d.error, Some(DecodeError::TooManyVlanTags));
    }

    #[test]
    fn truncated_tcp_keeps_ports() {
        let f = eth_ipv4_tcp_syn();
        let d = decode(LinkType::Ethernet, &f[..14 + 20 + 8]);
        assert_eq!(d.ports(), Some((1234, 80)));
        assert_eq!(d.error, Some(DecodeError::TcpTruncated));
    }

    #[test]
    fn truncated_ip_is_counted() {
        let f = eth_ipv4_tcp_syn();
        let d = decode(LinkType::Ethernet, &f[..14 + 10]);
        assert_eq!(d.ip, None);
        assert_eq!(d.error, Some(DecodeError::IpTruncated));
        assert_eq!(
            decode(LinkType::Ethernet, &f[..5]).error,
            Some(DecodeError::EthernetTruncated)
        );
    }

    #[test]
    fn first_fragment_has_ports_later_does_not() {
        let mut f = eth_ipv4_tcp_syn();
        f[14 + 6] = 0x20; // more fragments, offset 0
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(d.ip.map(|i| i.fragment), Some(Fragment::First { id: 1 }));
        assert_eq!(d.ports(), Some((1234, 80)));
        f[14 + 7] = 0x10; // offset 16 * 8 bytes
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(d.ip.map(|i| i.fragment), Some(Fragment::Later { id: 1 }));
        assert_eq!(d.ports(), None);
        assert_eq!(d.error, None);
    }

    /// IPv6 with the given extension bytes (first header `next`) and a UDP
    /// header behind them.
    fn eth_ipv6(next: u8, exts: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        let payload_len = (exts.len() + 8) as u16;
        f.extend_from_slice(&payload_len.to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(exts);
        f.extend_from_slice(&[0x13, 0xc4, 0x13, 0xc4, 0, 8, 0, 0]);
        f
    }

    #[test]
    fn ipv6_fragment_header_is_found_behind_other_extensions() {
        // Destination options (8 bytes), then a first fragment (M=1), then UDP.
        let exts = [44, 0, 1, 4, 0, 0, 0, 0, 17, 0, 0x00, 0x01, 0, 0, 0, 7];
        let first = eth_ipv6(60, &exts);
        let d = decode(LinkType::Ethernet, &first);
        assert_eq!(d.ip.map(|i| i.fragment), Some(Fragment::First { id: 7 }));
        assert_eq!(d.ports(), Some((5060, 5060)));
        // The same header at offset 8 bytes is a later fragment, without ports.
        let mut later = exts;
        later[11] = 0x09;
        let later = eth_ipv6(60, &later);
        let d = decode(LinkType::Ethernet, &later);
        assert_eq!(d.ip.map(|i| i.fragment), Some(Fragment::Later { id: 7 }));
        assert_eq!(d.ports(), None);
    }

    /// Regression: a fragment header followed by a cut authentication header
    /// made `etherparse`'s extension iterator index past the validated bytes
    /// (undefined behaviour; a debug build aborts). The fuzz test found it.
    #[test]
    fn ipv6_fragment_then_broken_auth_header_is_an_error_not_a_crash() {
        let frag_then_auth = [51, 0, 0x00, 0x01, 0, 0, 0, 9];
        let mut f = eth_ipv6(44, &frag_then_auth);
        f.truncate(14 + 40 + 8 + 1); // one byte of the auth header
        let d = decode(LinkType::Ethernet, &f);
        assert!(d.error.is_some());
        assert_eq!(d.ip.map(|i| i.fragment), Some(Fragment::First { id: 9 }));
        assert_eq!(d.ports(), None);
    }

    #[test]
    fn linux_sll_carries_ip() {
        let eth = eth_ipv4_tcp_syn();
        let mut f = vec![0u8; 14];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&eth[14..]);
        let d = decode(LinkType::LinuxSll, &f);
        assert_eq!(d.ports(), Some((1234, 80)));
        assert_eq!(
            decode(LinkType::LinuxSll, &f[..10]).error,
            Some(DecodeError::SllTruncated)
        );
    }

    #[test]
    fn pppoe_session_carries_ip() {
        let eth = eth_ipv4_tcp_syn();
        let mut f = eth[..12].to_vec();
        f.extend_from_slice(&[0x88, 0x64, 0x11, 0x00, 0x18, 0xe5, 0x00, 0x2a, 0x00, 0x21]);
        f.extend_from_slice(&eth[14..]);
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(d.ports(), Some((1234, 80)));
        assert_eq!(d.error, None);
    }

    #[test]
    fn icmp_echo_id_is_read() {
        let mut f = eth_ipv4_tcp_syn()[..34].to_vec();
        f[14 + 9] = 1;
        f.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(
            d.transport,
            Transport::Icmp {
                icmp_type: 8,
                code: 0,
                echo_id: Some(0x1234)
            }
        );
    }

    #[test]
    fn nflog_payload_tlv_is_decoded() {
        // Header (AF_INET, version 0, group 40), a prefix TLV of 5 bytes
        // padded to 8, then the payload TLV holding an IPv4 TCP SYN.
        let ip = &eth_ipv4_tcp_syn()[14..];
        let mut f = vec![2, 0, 0, 40, 5, 0, 10, 0, b'a', 0, 0, 0];
        let len = u16::try_from(ip.len() + 4).expect("short frame");
        f.extend_from_slice(&len.to_le_bytes());
        f.extend_from_slice(&9u16.to_le_bytes());
        f.extend_from_slice(ip);
        let d = decode(LinkType::Nflog, &f);
        assert_eq!(d.error, None);
        assert_eq!(d.ports(), Some((1234, 80)));
        // A TLV whose length runs past the frame: a link error, no panic.
        f[4] = 200;
        f[5] = 200;
        assert_eq!(
            decode(LinkType::Nflog, &f).error,
            Some(DecodeError::LinkInvalid)
        );
    }

    #[test]
    fn error_counts_by_reason() {
        let mut c = DecodeErrorCounts::default();
        c.add(DecodeError::TcpTruncated);
        c.add(DecodeError::TcpTruncated);
        c.add(DecodeError::IpInvalid);
        assert_eq!(c.get(DecodeError::TcpTruncated), 2);
        assert_eq!(c.total(), 3);
        assert_eq!(c.iter().count(), 2);
    }

    proptest! {
        // At least 4096 cases; `PROPTEST_CASES` raises it for a deeper hunt.
        #![proptest_config(ProptestConfig {
            cases: ProptestConfig::default().cases.max(4096),
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for link in [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2,
                         LinkType::RawIp, LinkType::Null, LinkType::Loop, LinkType::Nflog] {
                let d = decode(link, &bytes);
                prop_assert!(d.vlan_count <= 3);
            }
        }

        /// Random IPv6 extension chains: random bytes alone rarely build
        /// one, and a broken chain is where the extension iterator read
        /// out of bounds.
        #[test]
        fn any_ipv6_extension_chain_never_panics(
            first in prop::sample::select(vec![0u8, 6, 17, 43, 44, 51, 58, 59, 60]),
            exts in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(17), Just(43), Just(44), Just(51), Just(60), any::<u8>()],
                0..64,
            ),
        ) {
            let f = eth_ipv6(first, &exts);
            for cut in [f.len(), f.len().saturating_sub(9), 14 + 40 + exts.len() / 2] {
                let cut = cut.max(14 + 40);
                let d = decode(LinkType::Ethernet, &f[..cut]);
                // The fixed header is whole, so the addresses are always known.
                prop_assert!(d.ip.is_some());
            }
        }

        #[test]
        fn any_truncation_of_a_valid_frame_never_panics(cut in 0usize..80, vlans in 0usize..5) {
            let ids: Vec<u16> = (1..=vlans as u16).collect();
            let f = with_vlans(&eth_ipv4_tcp_syn(), &ids);
            let cut = cut.min(f.len());
            let d = decode(LinkType::Ethernet, &f[..cut]);
            if cut < f.len() && vlans <= 3 {
                prop_assert!(d.error.is_some());
            }
        }

        #[test]
        fn fast_path_agrees_with_the_general_path(
            vlans in 0usize..4,
            mutations in proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
            cut in 0usize..90,
            udp in any::<bool>(),
        ) {
            let mut f = with_vlans(&eth_ipv4_tcp_syn(), &[7, 300, 4000][..vlans.min(3)]);
            if udp {
                let ip = 14 + 4 * vlans.min(3);
                f[ip + 9] = 17;
                f[ip + 24] = 0;
                f[ip + 25] = 12;
            }
            for (pos, byte) in mutations {
                if let Some(b) = f.get_mut(pos) {
                    *b = byte;
                }
            }
            f.truncate(cut.max(1));
            prop_assert_eq!(decode(LinkType::Ethernet, &f), decode_general(LinkType::Ethernet, &f));
        }

        #[test]
        fn mutated_valid_frames_never_panic(pos in 0usize..54, byte in any::<u8>()) {
            let mut f = eth_ipv4_tcp_syn();
            f[pos] = byte;
            let _ = decode(LinkType::Ethernet, &f);
        }
    }
}

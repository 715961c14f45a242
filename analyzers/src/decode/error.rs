//! Why decoding stopped: [`DecodeError`] (one reason per frame, named by
//! layer), [`DecodeErrorCounts`] to count them, and the mapping of
//! `etherparse`'s stop reasons onto them.

use etherparse::err::{packet::SliceError, Layer};

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

/// The reason for `etherparse`'s stop error at `layer`.
pub(super) fn map_stop_error(err: &SliceError, layer: Layer) -> DecodeError {
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

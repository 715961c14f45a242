//! Link layers: the capture's framing ([`LinkType`], from libpcap's DLT)
//! and the non-Ethernet ones read here (Linux cooked v1/v2, raw IP, BSD
//! and OpenBSD loopback, NFLOG), each handing its network-layer payload to
//! `ip`. Ethernet, with its VLAN tags and PPPoE, is
//! `vlan`.

use etherparse::ether_type;

use super::ip::from_ether_type;
use super::vlan::decode_ethernet;
use super::{be16, DecodeError, Decoded};

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

    /// The LINKTYPE value a capture file of this link type has (raw IP
    /// as LINKTYPE_RAW, 101): EVE's `packet_info.linktype`.
    pub fn linktype(self) -> u16 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::RawIp => 101,
            LinkType::Null => 0,
            LinkType::Loop => 108,
            LinkType::Nflog => 239,
        }
    }
}

/// The layers of a frame whose link type is not Ethernet (Ethernet is
/// passed on to [`decode_ethernet`]).
pub(super) fn decode_non_ethernet(link: LinkType, frame: &[u8]) -> Decoded<'_> {
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

//! The network layer of the general path: `etherparse`'s lax slice turned
//! into [`Decoded`] (VLANs via [`super::vlan`], the stop error, IPv4 and
//! IPv6 addresses, the fragment a packet is, then the transport header via
//! [`super::transport`]). IPv6 fragment headers are found by a
//! bounds-checked walk of the extension headers ([`ipv6_fragment`]).

use std::net::IpAddr;

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket};

use super::error::map_stop_error;
use super::transport::decode_transport;
use super::vlan::{self, is_vlan_ether_type};
use super::{mpls, DecodeError, Decoded, Fragment, IpLayer};

/// The layers of a packet that starts with the payload of EtherType
/// `ether_type` (after a link header that is not Ethernet, PPPoE, or a
/// tunnel).
pub(crate) fn from_ether_type(ether_type: u16, rest: &[u8]) -> Decoded<'_> {
    from_sliced(LaxSlicedPacket::from_ether_type(
        EtherType(ether_type),
        rest,
    ))
}

/// A lax-sliced frame as [`Decoded`].
pub(super) fn from_sliced(p: LaxSlicedPacket<'_>) -> Decoded<'_> {
    let mut d = Decoded::empty();

    vlan::read_tags(&p, &mut d);

    let inner_type = p.ether_payload().map(|e| e.ether_type);
    d.ether_type = inner_type.map(|t| t.0);
    if let Some(e) = p.ether_payload() {
        // MPLS for the tunnel decoder, ARP for the IDS (`Decoded::arp`).
        let mpls = p.net.is_none() && matches!(e.ether_type.0, mpls::UNICAST | mpls::MULTICAST);
        if mpls || e.ether_type.0 == super::arp::ETHER_TYPE {
            d.net_payload = e.payload;
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
    // The IP header's bytes: the start of the network layer, up to the
    // header length (etherparse lends its header view only as long as the
    // sliced packet lives).
    let header_len = match &p.net {
        Some(LaxNetSlice::Ipv4(v4)) => usize::from(v4.header().ihl()) * 4,
        _ => 40,
    };
    d.ip_header = p
        .ether_payload()
        .and_then(|e| e.payload.get(..header_len))
        .unwrap_or(&[]);
    if fragment != Fragment::None {
        d.net_payload = p.ether_payload().map_or(&[], |e| e.payload);
    }
    // An error in the IP extension headers leaves the payload's start unknown.
    if d.error.is_some() || matches!(fragment, Fragment::Later { .. }) {
        return d;
    }
    d.l4 = payload.payload;
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

//! Ethernet II and what rides on it before IP: up to three 802.1Q/802.1ad
//! VLAN tags (read from `etherparse`'s slice, the outermost first) and
//! PPPoE sessions (EtherType 0x8864, PPP carrying IPv4 or IPv6). The fast
//! path ([`super::fast`]) reads the common one- and two-tag case itself.

use etherparse::{ether_type, EtherType, LaxSlicedPacket};

use super::ip::{from_ether_type, from_sliced};
use super::{be16, DecodeError, Decoded};

/// The flow-key discriminator of a VLAN stack (outermost first): the top
/// bit set (a tunnel segment never has it), the outer two ids in bits
/// 0-23 and the low 7 bits of a third in bits 24-30; 0 when every id is 0.
/// An id of 0 (a priority tag, as IP phones send) counts as no tag, as in
/// Suricata, which keys flows on the ids with 0 for none: `[0]` is
/// untagged and `[10, 0]` is `[10]`. Distinct for every stack of one or
/// two ids; two triple-tagged stacks that differ only in the third id's
/// upper 5 bits share it.
pub(crate) fn segment(vlans: &[u16]) -> u32 {
    let id = |i: usize| u32::from(vlans.get(i).copied().unwrap_or(0) & 0x0fff);
    let s = (id(2) & 0x7f) << 24 | id(0) << 12 | id(1);
    if s == 0 {
        0
    } else {
        1 << 31 | s
    }
}

/// An Ethernet frame through `etherparse` (the general path).
pub(super) fn decode_ethernet(frame: &[u8]) -> Decoded<'_> {
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

/// Whether `t` is a VLAN tag's EtherType (802.1Q, 802.1ad, the old
/// double-tag 0x9100).
pub(super) fn is_vlan_ether_type(t: EtherType) -> bool {
    matches!(
        t,
        ether_type::VLAN_TAGGED_FRAME
            | ether_type::PROVIDER_BRIDGING
            | ether_type::VLAN_DOUBLE_TAGGED_FRAME
    )
}

/// The VLAN ids of a sliced frame into `d`, outermost first, as many as
/// [`Decoded`] holds.
pub(super) fn read_tags(p: &LaxSlicedPacket<'_>, d: &mut Decoded<'_>) {
    for ext in p.link_exts.iter() {
        if let etherparse::LaxLinkExtSlice::Vlan(v) = ext {
            if let Some(slot) = d.vlan_ids.get_mut(usize::from(d.vlan_count)) {
                *slot = v.vlan_identifier().value();
                d.vlan_count += 1;
            }
        }
    }
}

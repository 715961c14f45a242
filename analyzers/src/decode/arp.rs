//! ARP (RFC 826) for Ethernet and IPv4, read just far enough for the IDS:
//! who asks (MAC and address) for which address. Any other hardware or
//! protocol type, or a short packet, is `None`; nothing here panics.

use std::net::Ipv4Addr;

/// EtherType of ARP.
pub const ETHER_TYPE: u16 = 0x0806;

/// One Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    /// 1 request, 2 reply.
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

mod field {
    use std::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OP: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Reads an ARP packet (the Ethernet payload).
pub fn parse(b: &[u8]) -> Option<Arp> {
    let be = |r: std::ops::Range<usize>| -> Option<u16> {
        let s = b.get(r)?;
        Some(u16::from_be_bytes([s[0], s[1]]))
    };
    if be(field::HTYPE)? != 1
        || be(field::PTYPE)? != 0x0800
        || *b.get(field::HLEN)? != 6
        || *b.get(field::PLEN)? != 4
    {
        return None;
    }
    let mac = |r| <[u8; 6]>::try_from(b.get(r)?).ok();
    let ip = |r| <[u8; 4]>::try_from(b.get(r)?).ok().map(Ipv4Addr::from);
    Some(Arp {
        op: be(field::OP)?,
        sender_mac: mac(field::SHA)?,
        sender_ip: ip(field::SPA)?,
        target_mac: mac(field::THA)?,
        target_ip: ip(field::TPA)?,
    })
}

impl super::Decoded<'_> {
    /// The ARP packet this frame carries, if it is one.
    pub fn arp(&self) -> Option<Arp> {
        if self.ether_type != Some(ETHER_TYPE) || self.ip.is_some() {
            return None;
        }
        parse(self.net_payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, LinkType};
    use proptest::prelude::*;

    pub(crate) fn request(mac: [u8; 6], from: [u8; 4], to: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&mac);
        f.extend_from_slice(&from);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&to);
        f
    }

    #[test]
    fn reads_a_request_through_decode() {
        let f = request([2, 0, 0, 0, 0, 9], [10, 0, 0, 9], [10, 0, 0, 77]);
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(d.ip, None);
        assert_eq!(d.error, None);
        let a = d.arp().expect("arp");
        assert_eq!(a.op, 1);
        assert_eq!(a.sender_mac, [2, 0, 0, 0, 0, 9]);
        assert_eq!(a.sender_ip, Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(a.target_ip, Ipv4Addr::new(10, 0, 0, 77));
        // Cut short, or another protocol type: nothing.
        assert_eq!(parse(&f[14..40]), None);
        let mut other = f[14..].to_vec();
        other[3] = 0xdd;
        assert_eq!(parse(&other), None);
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&b);
            let mut f = vec![0xff; 12];
            f.extend_from_slice(&[0x08, 0x06]);
            f.extend_from_slice(&b);
            let _ = decode(LinkType::Ethernet, &f).arp();
        }
    }
}

//! The canonical flow key.
//!
//! Invariant: both directions of a conversation map to the same key. The two
//! endpoints are ordered (address, port) ascending; `lo` is the smaller.
//! Addresses are stored as 128-bit values (IPv4 in the IPv4-mapped form,
//! with the IP version in the key) so hashing and comparing a key is a few
//! integer operations on the hot path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::vnet::VnetId;

/// One end of a conversation. The 128-bit address is kept as two `u64`
/// halves (high first, so ordering equals the integer's): a `u128` would
/// force 16-byte alignment and make every key and table slot larger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr_hi: u64,
    pub addr_lo: u64,
    pub port: u16,
}

impl Endpoint {
    pub fn new(addr: IpAddr, port: u16) -> Endpoint {
        let addr = match addr {
            IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
            IpAddr::V6(a) => u128::from(a),
        };
        Endpoint {
            addr_hi: (addr >> 64) as u64,
            addr_lo: addr as u64,
            port,
        }
    }

    /// The address in its original version.
    pub fn ip(&self, v6: bool) -> IpAddr {
        let a = Ipv6Addr::from(u128::from(self.addr_hi) << 64 | u128::from(self.addr_lo));
        if v6 {
            IpAddr::V6(a)
        } else {
            IpAddr::V4(a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED))
        }
    }
}

/// Canonical key of a bidirectional flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo: Endpoint,
    pub hi: Endpoint,
    pub vnet: VnetId,
    pub protocol: u8,
    pub v6: bool,
    /// The innermost virtual-network id the packet was tunnelled in (VXLAN
    /// or Geneve VNI, ERSPAN session; [`crate::decode::Tunnels::segment`]),
    /// 0 when none: flows of different VNIs never merge, mapped or not.
    pub segment: u32,
}

impl FlowKey {
    /// The key of a packet from `src` to `dst`, and whether `src` is the
    /// key's `lo` endpoint (which tells the packet's direction).
    #[inline]
    pub fn new(
        vnet: VnetId,
        protocol: u8,
        v6: bool,
        src: Endpoint,
        dst: Endpoint,
    ) -> (FlowKey, bool) {
        let src_is_lo = src <= dst;
        let (lo, hi) = if src_is_lo { (src, dst) } else { (dst, src) };
        (
            FlowKey {
                lo,
                hi,
                vnet,
                protocol,
                v6,
                segment: 0,
            },
            src_is_lo,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(a: &str, port: u16) -> Endpoint {
        Endpoint::new(a.parse().expect("addr"), port)
    }

    #[test]
    fn both_directions_share_a_key() {
        let (k1, d1) = FlowKey::new(
            VnetId(0),
            6,
            false,
            ep("10.0.0.2", 80),
            ep("10.0.0.1", 5000),
        );
        let (k2, d2) = FlowKey::new(
            VnetId(0),
            6,
            false,
            ep("10.0.0.1", 5000),
            ep("10.0.0.2", 80),
        );
        assert_eq!(k1, k2);
        assert_ne!(d1, d2);
        let (k3, _) = FlowKey::new(
            VnetId(1),
            6,
            false,
            ep("10.0.0.1", 5000),
            ep("10.0.0.2", 80),
        );
        assert_ne!(k1, k3, "the VNet is part of the key");
    }

    #[test]
    fn keys_stay_small() {
        assert!(std::mem::size_of::<FlowKey>() <= 56);
    }

    #[test]
    fn endpoint_order_is_address_order() {
        let a = ep("10.0.0.1", 9);
        let b = ep("2001:db8::1", 1);
        let c = ep("10.0.0.2", 1);
        assert!(a < c && c < b);
    }

    #[test]
    fn addresses_round_trip() {
        for a in ["10.1.2.3", "::ffff:10.1.2.3", "2001:db8::1", "0.0.0.0"] {
            let ip: IpAddr = a.parse().expect("addr");
            assert_eq!(Endpoint::new(ip, 1).ip(ip.is_ipv6()), ip);
        }
    }
}

//! The canonical flow key.
//!
//! Invariant: both directions of a conversation map to the same key. The two
//! endpoints are ordered (address, port) ascending; `lo` is the smaller.

use std::net::IpAddr;

use crate::vnet::VnetId;

/// One end of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

/// Canonical key of a bidirectional flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub vnet: VnetId,
    pub protocol: u8,
    pub lo: Endpoint,
    pub hi: Endpoint,
}

impl FlowKey {
    /// The key of a packet from `src` to `dst`, and whether `src` is the
    /// key's `lo` endpoint (which tells the packet's direction).
    #[inline]
    pub fn new(vnet: VnetId, protocol: u8, src: Endpoint, dst: Endpoint) -> (FlowKey, bool) {
        let src_is_lo = src <= dst;
        let (lo, hi) = if src_is_lo { (src, dst) } else { (dst, src) };
        (
            FlowKey {
                vnet,
                protocol,
                lo,
                hi,
            },
            src_is_lo,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(a: &str, port: u16) -> Endpoint {
        Endpoint {
            addr: a.parse().expect("addr"),
            port,
        }
    }

    #[test]
    fn both_directions_share_a_key() {
        let (k1, d1) = FlowKey::new(VnetId(0), 6, ep("10.0.0.2", 80), ep("10.0.0.1", 5000));
        let (k2, d2) = FlowKey::new(VnetId(0), 6, ep("10.0.0.1", 5000), ep("10.0.0.2", 80));
        assert_eq!(k1, k2);
        assert_ne!(d1, d2);
        let (k3, _) = FlowKey::new(VnetId(1), 6, ep("10.0.0.1", 5000), ep("10.0.0.2", 80));
        assert_ne!(k1, k3, "the VNet is part of the key");
    }
}

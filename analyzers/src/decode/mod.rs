//! Lax decoding of one captured frame.
//!
//! Contract: [`decode`] accepts any byte sequence and never panics. It returns
//! every layer it could decode plus at most one [`DecodeError`] naming the
//! layer that stopped it, so callers count malformed traffic by reason
//! instead of dropping it.
//!
//! One file per job:
//! - [`link`]: the capture's link types and the non-Ethernet ones;
//! - `vlan`: Ethernet, VLAN tags and PPPoE;
//! - `ip`: the general path's network layer (`etherparse`'s lax slice of
//!   IPv4 options and IPv6 extension headers), fragments included;
//! - [`transport`]: TCP, UDP, ICMP, read from the IP payload by both paths;
//! - `fast`: the fast path for the most common frame (Ethernet, up to
//!   two VLAN tags, plain IPv4), which declines everything else;
//! - [`error`]: why decoding stopped, and the counters;
//! - `detached`: a decode handed from the thread that made it to another;
//! - [`arp`]: ARP read on demand ([`Decoded::arp`]) for the IDS;
//! - [`tunnel`], [`mpls`], [`reassembly`]: decapsulation, after the outer
//!   layers decoded.
//!
//! A new outer layer is a file here, called by the general path where its
//! type is found (an EtherType in `ip` or `vlan`, a link type in
//! [`link`]); the fast path declines any frame it does not know, so it
//! never needs to follow. A new encapsulation is a file beside [`tunnel`]
//! and [`mpls`], called from `tunnel::decapsulate`, which runs after
//! either path.
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

pub mod arp;
mod detached;
pub mod error;
mod fast;
mod ip;
pub mod link;
pub mod mpls;
pub mod reassembly;
pub mod transport;
pub mod tunnel;
pub(crate) mod vlan;

pub use detached::Detached;
pub use error::{DecodeError, DecodeErrorCounts};
pub(crate) use ip::from_ether_type;
pub use link::LinkType;
pub use mpls::MplsPayload;
pub use reassembly::{Reassembled, Reassembler, ReassemblyStats};
pub use transport::{tcp_flags, Transport};
pub use tunnel::{recycle_tunnels, DecodeConfig, TunnelKind, TunnelLayer, TunnelStack, Tunnels};

use std::net::IpAddr;

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
    pub tunnels: TunnelStack<'a>,
    /// The payload of a link layer moni reads no IP from (MPLS), for the
    /// tunnel decoder; for an IP fragment, the IP packet as captured, for
    /// the [`reassembly`] of tunnels.
    pub(crate) net_payload: &'a [u8],
    /// The IP header as captured (IPv4 with its options; the fixed IPv6
    /// header), for the signature keywords that read header fields
    /// (`ttl`, `id`, `ipopts`, `fragbits`, ...). Empty without an IP layer.
    pub ip_header: &'a [u8],
    /// The IP payload as captured: the transport header and its payload
    /// (`seq`, `ack`, `window`, `tcp.mss`, `icmp_id`, `icmp_seq`). Empty
    /// for a later fragment.
    pub l4: &'a [u8],
}

/// The decode of nothing: no layer read (a slot for [`decode_into`]).
impl Default for Decoded<'_> {
    fn default() -> Self {
        Decoded::empty()
    }
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
            tunnels: TunnelStack::None,
            net_payload: &[],
            ip_header: &[],
            l4: &[],
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

    /// The discriminator of this packet's flow key
    /// ([`crate::flow::FlowKey::segment`]): the innermost tunnel segment
    /// ([`Tunnels::segment`]); for a packet in none, with `vlans`, its
    /// VLAN stack (`vlan::segment`), so that the same addresses and ports
    /// on two VLANs are two flows, as Suricata (`vlan.use-for-tracking`)
    /// and Zeek key them. 0 when neither.
    #[inline]
    pub fn flow_segment(&self, vlans: bool) -> u32 {
        let s = self.tunnels.segment();
        if s != 0 || !vlans || self.vlan_count == 0 {
            return s;
        }
        vlan::segment(self.vlans())
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
///
/// Inlined into its caller so that the decode is built where the caller
/// keeps it (returned through a call, the ~170-byte `Decoded` was copied
/// once more per packet).
#[inline(always)]
pub fn decode_with<'a>(link: LinkType, frame: &'a [u8], config: &DecodeConfig) -> Decoded<'a> {
    let mut d = decode_link(link, frame);
    tunnel::decapsulate(&mut d, config);
    d
}

/// [`decode_with`] into `out`, where the caller keeps its decodes (a slot
/// of a vector): the decode is built there, not built elsewhere and then
/// copied in (a call to `memcpy` per copy: 3% of a replay's capture
/// thread). Whatever `out` held is replaced.
#[inline]
pub fn decode_into<'a>(
    link: LinkType,
    frame: &'a [u8],
    config: &DecodeConfig,
    out: &mut Decoded<'a>,
) {
    decode_link_into(link, frame, out);
    tunnel::decapsulate(out, config);
}

/// The outer layers of one frame (link, VLAN, IP, transport), without
/// looking into tunnels.
#[inline(always)]
pub(crate) fn decode_link(link: LinkType, frame: &[u8]) -> Decoded<'_> {
    let mut d = Decoded::empty();
    decode_link_into(link, frame, &mut d);
    d
}

/// [`decode_link`] into `out`, replacing whatever it held.
#[inline(always)]
fn decode_link_into<'a>(link: LinkType, frame: &'a [u8], out: &mut Decoded<'a>) {
    match link {
        LinkType::Ethernet => {
            *out = Decoded::empty();
            if !fast::fast_ethernet_ipv4(frame, out) {
                *out = vlan::decode_ethernet(frame);
            }
        }
        _ => *out = link::decode_non_ethernet(link, frame),
    }
}

/// The general path through `etherparse`, for every frame the fast path
/// declines. Public so that tests can hold [`decode`]'s fast path to it:
/// both must give the same result for every frame.
pub fn decode_general(link: LinkType, frame: &[u8]) -> Decoded<'_> {
    let mut d = match link {
        LinkType::Ethernet => vlan::decode_ethernet(frame),
        _ => link::decode_non_ethernet(link, frame),
    };
    tunnel::decapsulate(&mut d, &DecodeConfig::DEFAULT);
    d
}

/// A big-endian u16 from the first two bytes (0 when fewer).
pub(crate) fn be16(b: &[u8]) -> u16 {
    match b {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
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

        /// A slot that held another frame's decode (a tunnelled one, a
        /// VLAN-tagged one, an error) decodes the next frame as
        /// `decode_with` does: nothing of the first is left.
        #[test]
        fn decode_into_a_used_slot_is_decode_with(
            first in proptest::collection::vec(any::<u8>(), 0..120),
            vlans in 0usize..4,
            mutations in proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
            cut in 0usize..90,
            link in prop::sample::select(vec![LinkType::Ethernet, LinkType::RawIp, LinkType::LinuxSll]),
        ) {
            let cfg = DecodeConfig::DEFAULT;
            let mut f = with_vlans(&eth_ipv4_tcp_syn(), &[7, 300, 4000][..vlans.min(3)]);
            for (pos, byte) in mutations {
                if let Some(b) = f.get_mut(pos) {
                    *b = byte;
                }
            }
            f.truncate(cut.max(1));
            let vxlan = tunnel::tests::a_vxlan_frame();
            for before in [&first[..], &vxlan[..], &f[..]] {
                let mut slot = decode_with(LinkType::Ethernet, before, &cfg);
                decode_into(link, &f, &cfg, &mut slot);
                prop_assert_eq!(&slot, &decode_with(link, &f, &cfg));
            }
            let mut slot = Decoded::default();
            decode_into(link, &first, &cfg, &mut slot);
            prop_assert_eq!(slot, decode_with(link, &first, &cfg));
        }

        #[test]
        fn mutated_valid_frames_never_panic(pos in 0usize..54, byte in any::<u8>()) {
            let mut f = eth_ipv4_tcp_syn();
            f[pos] = byte;
            let _ = decode(LinkType::Ethernet, &f);
        }
    }
}

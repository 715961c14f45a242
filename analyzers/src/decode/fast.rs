//! The fast path: Ethernet II with at most two VLAN tags and an
//! unfragmented IPv4 packet without options, read at fixed offsets. Every
//! other frame is declined (`None`) and takes the general path; the
//! transport header is read by the same [`super::transport`] code. The
//! proptest `fast_path_agrees_with_the_general_path` (decode tests) and
//! `fast_decode_path_agrees_with_the_general_path_on_every_frame`
//! (moni-node's corpus test) hold both paths to the same result.

use std::net::IpAddr;

use super::transport::{decode_transport, ICMP, TCP, UDP};
use super::{be16, Decoded, Fragment, IpLayer};

/// Fast path for the frame a mirror port carries most: Ethernet II with at
/// most two VLAN tags, then an unfragmented IPv4 packet without options
/// (possibly cut by the snaplen). It reads the few fixed offsets
/// directly instead of building `etherparse`'s full slice (whose large
/// structs cost a quarter of the analysis time in profiles). Anything else
/// returns `None` and takes the general path; a differential test holds
/// both paths to the same result on the corpus and on mutated frames.
#[inline]
pub(super) fn fast_ethernet_ipv4(frame: &[u8]) -> Option<Decoded<'_>> {
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
    d.ip_header = header;
    d.l4 = &ip[20..end];
    let (transport, payload, error) = decode_transport(protocol, &ip[20..end]);
    d.transport = transport;
    d.payload = payload;
    d.error = error;
    Some(d)
}

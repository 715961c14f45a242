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
/// returns `false` and takes the general path; a differential test holds
/// both paths to the same result on the corpus and on mutated frames.
///
/// It writes into `d` (every field but the tunnel stack, which belongs to
/// the caller) only when it accepts the frame, and leaves `d` as it was
/// otherwise: the tunnel decoder decodes an inner frame in place of its
/// outer packet, which stays intact for the general path to retry.
/// (Returning a fresh `Decoded` cost a copy of it per layer.)
#[inline]
pub(super) fn fast_ethernet_ipv4<'a>(frame: &'a [u8], d: &mut Decoded<'a>) -> bool {
    read(frame, d).is_some()
}

#[inline(always)]
fn read<'a>(frame: &'a [u8], d: &mut Decoded<'a>) -> Option<()> {
    let mut vlan_ids = [0u16; 3];
    let mut vlan_count = 0u8;
    let mut at = 12;
    loop {
        let t = be16(frame.get(at..at + 2)?);
        match t {
            0x0800 => break,
            0x8100 | 0x88a8 | 0x9100 if vlan_count < 2 => {
                let tci = be16(frame.get(at + 2..at + 4)?);
                vlan_ids[usize::from(vlan_count)] = tci & 0x0fff;
                vlan_count += 1;
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
    let (transport, payload, error) = decode_transport(protocol, &ip[20..end]);
    d.vlan_ids = vlan_ids;
    d.vlan_count = vlan_count;
    d.ether_type = Some(0x0800);
    d.ip = Some(IpLayer {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        protocol,
        fragment: Fragment::None,
    });
    d.transport = transport;
    d.payload = payload;
    d.error = error;
    d.net_payload = &[];
    d.ip_header = header;
    d.l4 = &ip[20..end];
    Some(())
}

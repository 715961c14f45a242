//! Frame builders: Ethernet II with optional VLAN tags, IPv4/IPv6, TCP, UDP,
//! ICMP/ICMPv6, and IPv4 fragments. Built by hand (not with the decoder moni
//! uses) so the samples test moni's decoding rather than mirror it.

use std::net::IpAddr;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// What the frame carries above IP.
#[derive(Clone, Copy, Debug)]
pub enum L4<'a> {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        payload: &'a [u8],
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: &'a [u8],
    },
    /// ICMP echo (request if `request`), identifier `id`.
    Echo {
        request: bool,
        id: u16,
        seq: u16,
        payload: &'a [u8],
    },
}

/// The Internet checksum (RFC 1071) of an IPv4 header.
pub(crate) fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in h.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(vlans: &[u16], ether_type: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for (i, v) in vlans.iter().enumerate() {
        // QinQ: outer tag 802.1ad, inner 802.1Q.
        let tpid: u16 = if i == 0 && vlans.len() > 1 {
            0x88a8
        } else {
            0x8100
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

fn l4_bytes(l4: &L4<'_>, v6: bool) -> (u8, Vec<u8>) {
    match *l4 {
        L4::Tcp {
            sport,
            dport,
            flags,
            payload,
        } => {
            let mut b = Vec::with_capacity(20 + payload.len());
            b.extend_from_slice(&sport.to_be_bytes());
            b.extend_from_slice(&dport.to_be_bytes());
            b.extend_from_slice(&[
                0, 0, 0x10, 0, 0, 0, 0x20, 0, 0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0,
            ]);
            b.extend_from_slice(payload);
            (TCP, b)
        }
        L4::Udp {
            sport,
            dport,
            payload,
        } => {
            let mut b = Vec::with_capacity(8 + payload.len());
            b.extend_from_slice(&sport.to_be_bytes());
            b.extend_from_slice(&dport.to_be_bytes());
            b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(payload);
            (UDP, b)
        }
        L4::Echo {
            request,
            id,
            seq,
            payload,
        } => {
            let t = match (v6, request) {
                (false, true) => 8,
                (false, false) => 0,
                (true, true) => 128,
                (true, false) => 129,
            };
            let mut b = vec![t, 0, 0, 0];
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&seq.to_be_bytes());
            b.extend_from_slice(payload);
            (if v6 { ICMPV6 } else { ICMP }, b)
        }
    }
}

fn ipv4_header(src: [u8; 4], dst: [u8; 4], proto: u8, total: usize, id: u16, frag: u16) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&(total as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = ipv4_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// A complete Ethernet frame from `src` to `dst` (same IP version).
pub fn packet(vlans: &[u16], src: IpAddr, dst: IpAddr, ip_id: u16, l4: &L4<'_>) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (proto, body) = l4_bytes(l4, false);
            let mut f = ethernet(vlans, 0x0800);
            f.extend(ipv4_header(
                s.octets(),
                d.octets(),
                proto,
                20 + body.len(),
                ip_id,
                0x4000,
            ));
            f.extend(body);
            f
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let (proto, body) = l4_bytes(l4, true);
            let mut f = ethernet(vlans, 0x86dd);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(body.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            f.extend(body);
            f
        }
        // Mixed versions are a generator bug; emit an ARP-typed stub frame.
        _ => arp(vlans),
    }
}

/// An IPv4 datagram carrying `l4`, split into fragments whose payloads are
/// at most `mtu_payload` bytes (a multiple of 8). Returns one frame each.
pub fn ipv4_fragments(
    vlans: &[u16],
    src: [u8; 4],
    dst: [u8; 4],
    ip_id: u16,
    l4: &L4<'_>,
    mtu_payload: usize,
) -> Vec<Vec<u8>> {
    let (proto, body) = l4_bytes(l4, false);
    let step = (mtu_payload / 8).max(1) * 8;
    let chunks: Vec<&[u8]> = body.chunks(step).collect();
    let n = chunks.len();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let more = if i + 1 < n { 0x2000 } else { 0 };
            let offset = ((i * step) / 8) as u16;
            let mut f = ethernet(vlans, 0x0800);
            f.extend(ipv4_header(
                src,
                dst,
                proto,
                20 + c.len(),
                ip_id,
                more | offset,
            ));
            f.extend_from_slice(c);
            f
        })
        .collect()
}

/// A 42-byte ARP request frame (not IP: counted in bins as `other`).
pub fn arp(vlans: &[u16]) -> Vec<u8> {
    let mut f = ethernet(vlans, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    f
}

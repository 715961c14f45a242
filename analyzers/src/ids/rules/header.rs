//! Header keywords: tests on IP, TCP and ICMP header fields, read from
//! the header bytes the decoder kept ([`Decoded::ip_header`],
//! [`Decoded::l4`]). Each behaves as its Suricata namesake: a packet
//! without the field (an IPv6 packet for `id`, a TCP segment without an
//! MSS option for `tcp.mss`, an ICMP type without an identifier for
//! `icmp_id`) never matches.

use super::{FlagsSpec, NumCmp};
use crate::decode::{Decoded, Transport};

/// One header test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderTest {
    /// IPv4 TTL or IPv6 hop limit.
    Ttl(NumCmp),
    /// IPv4 identification.
    Id(NumCmp),
    /// The transport protocol number (after IPv6 extension headers).
    IpProto(NumCmp),
    /// IPv4 options: every bit of the mask must be among the options seen.
    IpOpts(u16),
    /// IPv4 flags: reserved (`R`), don't fragment (`D`), more fragments
    /// (`M`), with the `flags` modifiers.
    FragBits(FlagsSpec),
    /// IPv4 fragment offset, in 8-byte units as on the wire.
    FragOffset(NumCmp),
    IcmpId(NumCmp),
    IcmpSeq(NumCmp),
    Seq(NumCmp),
    Ack(NumCmp),
    Window(NumCmp),
    TcpMss(NumCmp),
}

/// `ipopts` names and their bits (Suricata's `IPV4_OPT_FLAG_*`), with the
/// option type each stands for.
pub const IP_OPTIONS: &[(&str, u8, u16)] = &[
    ("eol", 0, 1 << 0),
    ("nop", 1, 1 << 1),
    ("rr", 7, 1 << 2),
    ("ts", 68, 1 << 3),
    ("sec", 130, 1 << 4),
    ("lsrr", 131, 1 << 5),
    ("esec", 133, 1 << 6),
    ("satid", 136, 1 << 7),
    ("ssrr", 137, 1 << 8),
    ("any", 0xff, 0),
];

/// `fragbits` letters.
pub const FRAG_RESERVED: u8 = 0x80;
pub const FRAG_DF: u8 = 0x40;
pub const FRAG_MF: u8 = 0x20;

fn be16(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 2)
        .map(|x| u32::from(u16::from_be_bytes([x[0], x[1]])))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

fn v4<'a>(d: &Decoded<'a>) -> Option<&'a [u8]> {
    let h = d.ip_header;
    (h.len() >= 20 && h[0] >> 4 == 4).then_some(h)
}

/// The options an IPv4 header carries, as a mask of [`IP_OPTIONS`] bits,
/// walked as Suricata's decoder does (EOL ends the list; a bad length
/// makes the packet invalid: none).
pub fn ip_options(h: &[u8]) -> u16 {
    let mut set = 0u16;
    let mut opts = h.get(20..).unwrap_or(&[]);
    while let Some(&t) = opts.first() {
        if t == 0 {
            return set | 1;
        }
        if t == 1 {
            set |= 1 << 1;
            opts = &opts[1..];
            continue;
        }
        let Some(&len) = opts.get(1) else { break };
        let len = usize::from(len);
        if len < 2 || len > opts.len() {
            return 0;
        }
        if let Some(&(_, _, bit)) = IP_OPTIONS.iter().find(|(_, ty, _)| *ty == t) {
            set |= bit;
        }
        opts = &opts[len..];
    }
    set
}

/// The MSS option of a TCP header, if it carries a valid one.
fn tcp_mss(l4: &[u8]) -> Option<u32> {
    let hlen = usize::from(*l4.get(12)? >> 4) * 4;
    let mut opts = l4.get(20..hlen)?;
    while let Some(&kind) = opts.first() {
        match kind {
            0 => return None,
            1 => opts = &opts[1..],
            _ => {
                let len = usize::from(*opts.get(1)?);
                if len < 2 || len > opts.len() {
                    return None;
                }
                if kind == 2 && len == 4 {
                    return be16(opts, 2);
                }
                opts = &opts[len..];
            }
        }
    }
    None
}

/// ICMP types whose header carries an identifier and sequence number
/// (echo, timestamp, information, address mask; ICMPv6 echo).
fn icmp_has_id(d: &Decoded<'_>) -> bool {
    let Transport::Icmp { icmp_type, .. } = d.transport else {
        return false;
    };
    match d.ip.map(|i| i.protocol) {
        Some(1) => matches!(icmp_type, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18),
        Some(58) => matches!(icmp_type, 128 | 129),
        _ => false,
    }
}

impl HeaderTest {
    pub fn test(self, d: &Decoded<'_>) -> bool {
        let tcp = matches!(d.transport, Transport::Tcp { .. });
        let field = match self {
            HeaderTest::Ttl(_) => match d.ip_header.first().map(|b| b >> 4) {
                Some(4) => d.ip_header.get(8).map(|&b| u32::from(b)),
                Some(6) => d.ip_header.get(7).map(|&b| u32::from(b)),
                _ => None,
            },
            HeaderTest::Id(_) => v4(d).and_then(|h| be16(h, 4)),
            HeaderTest::IpProto(_) => d.ip.map(|i| u32::from(i.protocol)),
            HeaderTest::IpOpts(mask) => {
                return v4(d).is_some_and(|h| ip_options(h) & mask == mask);
            }
            HeaderTest::FragBits(f) => {
                return v4(d).is_some_and(|h| f.test(h[6] & 0xe0));
            }
            HeaderTest::FragOffset(_) => v4(d).and_then(|h| be16(h, 6)).map(|x| x & 0x1fff),
            HeaderTest::IcmpId(_) => icmp_has_id(d).then(|| be16(d.l4, 4)).flatten(),
            HeaderTest::IcmpSeq(_) => icmp_has_id(d).then(|| be16(d.l4, 6)).flatten(),
            HeaderTest::Seq(_) => tcp.then(|| be32(d.l4, 4)).flatten(),
            HeaderTest::Ack(_) => tcp.then(|| be32(d.l4, 8)).flatten(),
            HeaderTest::Window(_) => tcp.then(|| be16(d.l4, 14)).flatten(),
            HeaderTest::TcpMss(_) => tcp.then(|| tcp_mss(d.l4)).flatten(),
        };
        let cmp = match self {
            HeaderTest::Ttl(c)
            | HeaderTest::Id(c)
            | HeaderTest::IpProto(c)
            | HeaderTest::FragOffset(c)
            | HeaderTest::IcmpId(c)
            | HeaderTest::IcmpSeq(c)
            | HeaderTest::Seq(c)
            | HeaderTest::Ack(c)
            | HeaderTest::Window(c)
            | HeaderTest::TcpMss(c) => c,
            HeaderTest::IpOpts(_) | HeaderTest::FragBits(_) => return false,
        };
        field.is_some_and(|x| cmp.test(x))
    }
}

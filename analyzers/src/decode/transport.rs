//! The transport layer, read from the IP payload by both paths (the fast
//! path and `etherparse`'s): TCP, UDP, ICMP and ICMPv6, keeping whatever
//! fields were captured when a header is cut short. Read here rather than
//! by `etherparse` because that parser skips the transport layer of every
//! fragment, while a flow meter needs the first fragment's ports, and
//! because a snaplen-truncated TCP header still carries usable ports and
//! flags.

use super::{be16, DecodeError};

/// The decoded transport layer (possibly partial, see [`super::Decoded::error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    None,
    Tcp {
        src_port: u16,
        dst_port: u16,
        /// The eight classic flag bits (CWR ECE URG ACK PSH RST SYN FIN).
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Icmp {
        icmp_type: u8,
        code: u8,
        /// Identifier of an echo request or reply, which pairs the two.
        echo_id: Option<u16>,
    },
}

/// TCP flag bits as they appear in byte 13 of the TCP header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;
pub(super) const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// Reads the transport header from an IP payload, keeping whatever fields
/// were captured when the header is cut short.
///
/// Inlined into its two callers: called, it returned its 32-byte result
/// through memory, and the caller's first 16-byte load of it waited for
/// the callee's narrower stores to be written (a load the core cannot
/// forward from them): 28% of the capture thread's decode samples.
#[inline(always)]
pub(super) fn decode_transport(protocol: u8, b: &[u8]) -> (Transport, &[u8], Option<DecodeError>) {
    let port = |at: usize| b.get(at..at + 2).map(be16);
    match protocol {
        TCP => {
            let (Some(src_port), Some(dst_port)) = (port(0), port(2)) else {
                return (Transport::None, &[], Some(DecodeError::TcpTruncated));
            };
            let flags = b.get(13).copied().unwrap_or(0);
            let t = Transport::Tcp {
                src_port,
                dst_port,
                flags,
            };
            if b.len() < 20 {
                return (t, &[], Some(DecodeError::TcpTruncated));
            }
            let header_len = usize::from(b[12] >> 4) * 4;
            if header_len < 20 {
                return (t, &[], Some(DecodeError::TcpInvalid));
            }
            match b.get(header_len..) {
                Some(payload) => (t, payload, None),
                // Options cut by the snaplen: ports and flags are known.
                None => (t, &[], Some(DecodeError::TcpTruncated)),
            }
        }
        UDP => {
            let (Some(src_port), Some(dst_port)) = (port(0), port(2)) else {
                return (Transport::None, &[], Some(DecodeError::UdpTruncated));
            };
            let t = Transport::Udp { src_port, dst_port };
            if b.len() < 8 {
                return (t, &[], Some(DecodeError::UdpTruncated));
            }
            // Trust the UDP length only when it is consistent.
            let udp_len = usize::from(be16(&b[4..6]));
            let end = if udp_len >= 8 {
                udp_len.min(b.len())
            } else {
                b.len()
            };
            (t, &b[8..end], None)
        }
        ICMP | ICMPV6 => {
            let (Some(&icmp_type), Some(&code)) = (b.first(), b.get(1)) else {
                return (Transport::None, &[], Some(DecodeError::IcmpTruncated));
            };
            let is_echo = if protocol == ICMP {
                icmp_type == 8 || icmp_type == 0
            } else {
                icmp_type == 128 || icmp_type == 129
            };
            let echo_id = if is_echo { port(4) } else { None };
            let t = Transport::Icmp {
                icmp_type,
                code,
                echo_id,
            };
            match b.get(8..) {
                Some(payload) => (t, payload, None),
                None => (t, &[], Some(DecodeError::IcmpTruncated)),
            }
        }
        _ => (Transport::None, b, None),
    }
}

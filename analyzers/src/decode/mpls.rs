//! MPLS label stacks (RFC 3032): 4-byte entries (20-bit label, traffic
//! class, bottom-of-stack bit, TTL) until the bottom of the stack, then a
//! payload that carries no type of its own. What follows is configured
//! (`decode.mpls_payload`): IP told by its first nibble, or a pseudowire
//! Ethernet frame (RFC 4448) with or without its 4-byte control word
//! (first nibble 0), or `auto`: 4 or 6 is IP, 0 is a control word and
//! Ethernet, anything else Ethernet.

use serde::{Deserialize, Serialize};

use super::tunnel::{mpls_step, Inner, Step};
use super::DecodeError;

/// EtherType of MPLS unicast.
pub const UNICAST: u16 = 0x8847;
/// EtherType of MPLS multicast.
pub const MULTICAST: u16 = 0x8848;

/// Label entries read at most; a longer stack is counted as truncated
/// rather than walked without end.
const MAX_LABELS: usize = super::tunnel::MAX_MPLS_LABELS;

/// What follows the bottom MPLS label (`decode.mpls_payload`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MplsPayload {
    /// IPv4 or IPv6 by the first nibble, otherwise pseudowire Ethernet.
    #[default]
    Auto,
    /// Always pseudowire Ethernet (a first nibble of 0 is a control word).
    Ethernet,
    /// Always IP; another first nibble is `mpls_unknown_payload`.
    Ip,
}

/// Reads a label stack and finds its payload.
pub(super) fn parse(b: &[u8], payload: MplsPayload) -> Result<Step<'_>, DecodeError> {
    let mut labels = [0u32; MAX_LABELS];
    let mut at = 0;
    let mut n = 0;
    loop {
        let Some(entry) = b.get(at..at + 4) else {
            return Err(DecodeError::MplsTruncated);
        };
        let v = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let Some(slot) = labels.get_mut(n) else {
            return Err(DecodeError::MplsTruncated);
        };
        *slot = v >> 12;
        n += 1;
        at += 4;
        if v & 0x100 != 0 {
            break;
        }
    }
    let rest = &b[at..];
    let Some(&first) = rest.first() else {
        return Err(DecodeError::MplsTruncated);
    };
    let nibble = first >> 4;
    let inner = match (payload, nibble) {
        (MplsPayload::Auto | MplsPayload::Ip, 4) => Inner::EtherType(0x0800, rest),
        (MplsPayload::Auto | MplsPayload::Ip, 6) => Inner::EtherType(0x86dd, rest),
        (MplsPayload::Ip, _) => return Err(DecodeError::MplsUnknownPayload),
        (_, 0) => match rest.get(4..) {
            Some(frame) => Inner::Ethernet(frame),
            None => return Err(DecodeError::MplsTruncated),
        },
        // A pseudowire control word must start with nibble 0; a frame
        // starting with 1 (G-ACh) is not user traffic.
        (_, 1) => return Err(DecodeError::MplsUnknownPayload),
        _ => Inner::Ethernet(rest),
    };
    Ok(mpls_step(&labels[..n], inner))
}

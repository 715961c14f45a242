//! A decoded frame that no longer borrows its bytes, so that the thread
//! that decoded it (the capture loop, which must decode every packet to
//! shard it and to run the cross-flow detectors) can hand the result to the
//! worker that analyses the packet, instead of the worker decoding it a
//! second time. The slices become offsets into the frame; the worker, which
//! holds a copy of the same bytes, attaches them again.

use super::{DecodeError, Decoded, Fragment, IpLayer, Transport, TunnelStack, Tunnels};

/// [`Decoded`] with its slices as (offset, length) into the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detached {
    vlan_ids: [u16; 3],
    vlan_count: u8,
    ether_type: Option<u16>,
    ip: Option<IpLayer>,
    transport: Transport,
    error: Option<DecodeError>,
    tunnels: TunnelStack,
    payload: (u32, u32),
    net_payload: (u32, u32),
    ip_header: (u32, u32),
    l4: (u32, u32),
}

/// Where `part` lies in `frame`: `None` when it is not a slice of it (a
/// reassembled datagram lives in the reassembler's buffer).
fn span(frame: &[u8], part: &[u8]) -> Option<(u32, u32)> {
    if part.is_empty() {
        return Some((0, 0));
    }
    let start = (part.as_ptr() as usize).checked_sub(frame.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    if end > frame.len() {
        return None;
    }
    Some((u32::try_from(start).ok()?, u32::try_from(part.len()).ok()?))
}

fn slice(frame: &[u8], (start, len): (u32, u32)) -> Option<&[u8]> {
    let start = start as usize;
    frame.get(start..start.checked_add(len as usize)?)
}

impl<'a> Decoded<'a> {
    /// The decode of `frame` without its borrow; `None` if a slice of it
    /// is not in `frame` (then the receiver decodes again).
    pub fn detach(self, frame: &[u8]) -> Option<Detached> {
        Some(Detached {
            payload: span(frame, self.payload)?,
            net_payload: span(frame, self.net_payload)?,
            ip_header: span(frame, self.ip_header)?,
            l4: span(frame, self.l4)?,
            vlan_ids: self.vlan_ids,
            vlan_count: self.vlan_count,
            ether_type: self.ether_type,
            ip: self.ip,
            transport: self.transport,
            error: self.error,
            tunnels: self.tunnels,
        })
    }

    /// Whether this packet, or the outermost packet of its tunnels, is an
    /// IP fragment: such a packet may belong to a datagram the
    /// [`super::Reassembler`] puts back together, so a decode made without
    /// it does not stand in for the reassembler's.
    pub fn is_fragment(&self) -> bool {
        self.tunnels.outer_fragment || self.ip.is_some_and(|ip| ip.fragment != Fragment::None)
    }
}

impl Detached {
    /// Takes the tunnel stack out (its box is freed by the caller's
    /// thread): a box allocated by one thread and freed by another costs
    /// the allocator far more than the copy, so a batch carries the stack
    /// by value beside the packet and gives it back with
    /// [`Detached::put_tunnels`] on the receiving thread.
    pub fn take_tunnels(&mut self) -> Option<Tunnels> {
        self.tunnels.0.take().map(|b| *b)
    }

    /// Puts back a stack taken by [`Detached::take_tunnels`].
    pub fn put_tunnels(&mut self, tunnels: Tunnels) {
        self.tunnels = TunnelStack(Some(Box::new(tunnels)));
    }

    /// The decode again, borrowing `frame`, which must hold the bytes it
    /// was decoded from; `None` if the offsets do not fit in `frame`.
    pub fn attach(self, frame: &[u8]) -> Option<Decoded<'_>> {
        Some(Decoded {
            payload: slice(frame, self.payload)?,
            net_payload: slice(frame, self.net_payload)?,
            ip_header: slice(frame, self.ip_header)?,
            l4: slice(frame, self.l4)?,
            vlan_ids: self.vlan_ids,
            vlan_count: self.vlan_count,
            ether_type: self.ether_type,
            ip: self.ip,
            transport: self.transport,
            error: self.error,
            tunnels: self.tunnels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, LinkType};
    use proptest::prelude::*;

    proptest! {
        /// Detaching and attaching to a copy of the frame gives the same
        /// decode, for any bytes (most decode with errors at some layer)
        /// and for tunnelled frames.
        #[test]
        fn detach_then_attach_to_a_copy_is_the_same_decode(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            for frame in [bytes.clone(), super::super::tests::eth_ipv4_tcp_syn()] {
                let d = decode(LinkType::Ethernet, &frame);
                let copy = frame.clone();
                let back = d.clone().detach(&frame).and_then(|x| x.attach(&copy));
                prop_assert_eq!(back, Some(d.clone()));
                // The tunnel stack taken out and put back (as a batch does).
                let back = d.clone().detach(&frame).and_then(|mut x| {
                    if let Some(t) = x.take_tunnels() {
                        x.put_tunnels(t);
                    }
                    x.attach(&copy)
                });
                prop_assert_eq!(back, Some(d));
            }
        }
    }

    #[test]
    fn a_slice_from_elsewhere_is_not_detached() {
        let frame = super::super::tests::eth_ipv4_tcp_syn();
        let other = [1u8, 2, 3];
        let mut d = decode(LinkType::Ethernet, &frame);
        d.payload = &other;
        assert_eq!(d.detach(&frame), None);
    }
}

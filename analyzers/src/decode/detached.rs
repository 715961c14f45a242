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
    tunnels: Option<Box<Tunnels>>,
    payload: (u32, u32),
    net_payload: (u32, u32),
    ip_header: (u32, u32),
    l4: (u32, u32),
}

/// Where `part` lies in `frame`: `None` when it is not a slice of it (a
/// reassembled datagram lives in the reassembler's buffer).
/// (`frame` is at most `u32::MAX` bytes long, which [`Decoded::detach`]
/// checks once: then the offsets fit without a check each.)
#[inline(always)]
fn span(frame: &[u8], part: &[u8]) -> Option<(u32, u32)> {
    if part.is_empty() {
        return Some((0, 0));
    }
    // Before the frame, `start` wraps to more than its length.
    let start = (part.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
    if start > frame.len() || part.len() > frame.len() - start {
        return None;
    }
    Some((start as u32, part.len() as u32))
}

fn slice(frame: &[u8], (start, len): (u32, u32)) -> Option<&[u8]> {
    let start = start as usize;
    frame.get(start..start.checked_add(len as usize)?)
}

impl<'a> Decoded<'a> {
    /// The decode of `frame` without its borrow; `None` if a slice of it
    /// is not in `frame` (then the receiver decodes again).
    #[inline(always)] // one call site per capture loop: no move of `self`
    pub fn detach(self, frame: &[u8]) -> Option<Detached> {
        if u32::try_from(frame.len()).is_err() {
            return None;
        }
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
            tunnels: self.tunnels.into_box(),
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
    /// Takes the tunnel stack out, so that it never crosses threads in its
    /// box (a box allocated by one thread and freed by another costs the
    /// allocator far more than a copy): a batch keeps the stack by value
    /// beside the packet, gives the box back with
    /// [`super::recycle_tunnels`], and lends the stack to the receiving
    /// thread's decode with [`Detached::attach_ref`] (or
    /// [`Detached::attach_with`]).
    pub fn take_tunnels(&mut self) -> Option<Box<Tunnels>> {
        self.tunnels.take()
    }

    /// The decode again, borrowing `frame`, which must hold the bytes it
    /// was decoded from; `None` if the offsets do not fit in `frame`.
    pub fn attach(self, frame: &[u8]) -> Option<Decoded<'_>> {
        self.attach_with(frame, None)
    }

    /// [`Detached::attach`], with the tunnel stack taken out by
    /// [`Detached::take_tunnels`] borrowed from where the caller keeps it.
    pub fn attach_with<'a>(
        mut self,
        frame: &'a [u8],
        tunnels: Option<&'a Tunnels>,
    ) -> Option<Decoded<'a>> {
        let stack = match (tunnels, self.tunnels.take()) {
            (Some(t), _) => TunnelStack::Shared(t),
            (None, Some(b)) => TunnelStack::Owned(b),
            (None, None) => TunnelStack::None,
        };
        self.with_stack(frame, stack)
    }

    /// [`Detached::attach_with`] without giving the decode up: the fields
    /// are copied once, straight into the [`Decoded`], where cloning then
    /// attaching copied them twice (the capture loop attaches a decode
    /// this way for the IDS packets it read ahead for). A stack still in
    /// its box is lent, not copied.
    #[inline]
    pub fn attach_ref<'a>(
        &'a self,
        frame: &'a [u8],
        tunnels: Option<&'a Tunnels>,
    ) -> Option<Decoded<'a>> {
        self.with_stack(frame, self.lent_stack(tunnels))
    }

    /// [`Detached::attach_ref`] written field by field into `out`, where
    /// the caller keeps it (a worker's slot, read a few packets later):
    /// built as a value and moved there, the decode's copy loaded 16 bytes
    /// over the narrower stores that had just built it, a load the core
    /// cannot forward and waits on. `false` (and `out` as it was) if the
    /// offsets do not fit in `frame`.
    #[inline(always)]
    pub fn attach_into<'a>(
        &'a self,
        frame: &'a [u8],
        tunnels: Option<&'a Tunnels>,
        out: &mut Decoded<'a>,
    ) -> bool {
        if !self.write_fields(frame, out) {
            return false;
        }
        out.tunnels = self.lent_stack(tunnels);
        true
    }

    /// The stack a decode attached by reference reads: the caller's, else
    /// the one still in this decode's box.
    #[inline(always)]
    fn lent_stack<'a>(&'a self, tunnels: Option<&'a Tunnels>) -> TunnelStack<'a> {
        match (tunnels, self.tunnels.as_deref()) {
            (Some(t), _) | (None, Some(t)) => TunnelStack::Shared(t),
            (None, None) => TunnelStack::None,
        }
    }

    /// The decode with its slices in `frame` and the tunnel stack given.
    #[inline(always)]
    fn with_stack<'a>(&self, frame: &'a [u8], tunnels: TunnelStack<'a>) -> Option<Decoded<'a>> {
        let mut d = Decoded {
            tunnels,
            ..Decoded::empty()
        };
        self.write_fields(frame, &mut d).then_some(d)
    }

    /// Writes every field but the tunnel stack into `out`, its slices in
    /// `frame`; `false`, writing nothing, if the offsets do not fit in it.
    #[inline(always)]
    fn write_fields<'a>(&self, frame: &'a [u8], out: &mut Decoded<'a>) -> bool {
        let (Some(payload), Some(net_payload), Some(ip_header), Some(l4)) = (
            slice(frame, self.payload),
            slice(frame, self.net_payload),
            slice(frame, self.ip_header),
            slice(frame, self.l4),
        ) else {
            return false;
        };
        out.payload = payload;
        out.net_payload = net_payload;
        out.ip_header = ip_header;
        out.l4 = l4;
        out.vlan_ids = self.vlan_ids;
        out.vlan_count = self.vlan_count;
        out.ether_type = self.ether_type;
        out.ip = self.ip;
        out.transport = self.transport;
        out.error = self.error;
        true
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
            let mut frames = vec![bytes.clone(), super::super::tests::eth_ipv4_tcp_syn()];
            frames.extend(super::super::tunnel::tests::valid_tunnel_frames());
            for frame in frames {
                let d = decode(LinkType::Ethernet, &frame);
                let copy = frame.clone();
                let back = d.clone().detach(&frame).and_then(|x| x.attach(&copy));
                prop_assert_eq!(back, Some(d.clone()));
                // Attached by reference: the same decode, the stack lent
                // from the box or from where the caller keeps it.
                let x = d.clone().detach(&frame);
                let lent = x.as_ref().and_then(|x| x.attach_ref(&copy, None));
                prop_assert_eq!(lent, Some(d.clone()));
                // Written into a slot that held another packet's decode.
                let other = super::super::tests::eth_ipv4_tcp_syn();
                let mut slot = decode(LinkType::Ethernet, &other);
                let written = x.as_ref().is_some_and(|x| x.attach_into(&copy, None, &mut slot));
                prop_assert!(written);
                prop_assert_eq!(&slot, &d);
                let mut y = d.clone().detach(&frame);
                let kept = y.as_mut().and_then(super::Detached::take_tunnels);
                let lent = y.as_ref().and_then(|y| y.attach_ref(&copy, kept.as_deref()));
                prop_assert_eq!(lent, Some(d.clone()));
                // The tunnel stack taken out and lent back (as a batch does).
                let mut x = d.clone().detach(&frame);
                let kept = x.as_mut().and_then(super::Detached::take_tunnels);
                let back = x.and_then(|x| x.attach_with(&copy, kept.as_deref()));
                prop_assert_eq!(back.as_ref().map(|b| *b.tunnels), Some(*d.tunnels));
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

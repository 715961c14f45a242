//! Which worker analyses a packet.
//!
//! The hash is symmetric in the two IP addresses and ignores ports and
//! VLANs: both directions of a flow, the later fragments of a datagram
//! (which carry no ports), RTP with its RTCP, and the copies of one call in
//! a production and a shadow VNet (same inner addresses, other VLAN) all
//! meet in one worker, which is what flows, fragments and the
//! shadow/production comparison need.
//!
//! One exception: the later fragments of a tunnel's *outer* datagram carry
//! only the outer addresses, while its first fragment is decapsulated and
//! goes by the inner ones, with the rest of its inner flow. The capture
//! loop remembers where each such first fragment went ([`FragmentPins`])
//! and sends the later fragments there, so that the worker of the inner
//! flow reassembles the datagram, as the only worker does when N = 1.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use analyzers::decode::Fragment;
use analyzers::{Decoded, Timestamp};

fn fold(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(v) => u64::from(u32::from(v)),
        IpAddr::V6(v) => {
            let x = u128::from(v);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(29)
        }
    }
}

/// splitmix64's finaliser: spreads neighbouring addresses over workers.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The worker (0..workers) for a decoded packet; frames without IP go to 0.
pub fn worker_for(d: &Decoded<'_>, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let Some(ip) = d.ip else { return 0 };
    let h = mix(fold(ip.src)).wrapping_add(mix(fold(ip.dst)));
    ((u128::from(h) * workers as u128) >> 64) as usize
}

/// A tunnel's outer datagram: outer source, destination, IP id, VLAN.
type PinKey = (IpAddr, IpAddr, u32, u16);

/// Where the fragments of tunnels' outer datagrams go: the worker of the
/// first fragment (its inner addresses). Bounded: at most `MAX_PINS`
/// datagrams, the oldest forgotten first (a forgotten or reordered
/// datagram's later fragments go by the outer addresses, as without
/// pins), and a pin is dropped after the reassembly timeout.
#[derive(Debug)]
pub struct FragmentPins {
    pins: HashMap<PinKey, usize>,
    order: VecDeque<(Timestamp, PinKey)>,
    timeout_micros: i64,
    /// Pins forgotten at the cap before their timeout.
    pub evicted: u64,
}

/// The most outer datagrams pinned at once (about 120 bytes each, so
/// about 2 MB): enough for the datagrams in flight between a first
/// fragment and its last.
pub const MAX_PINS: usize = 16_384;

impl FragmentPins {
    pub fn new(timeout_secs: u32) -> FragmentPins {
        FragmentPins {
            pins: HashMap::new(),
            order: VecDeque::new(),
            timeout_micros: i64::from(timeout_secs).saturating_mul(1_000_000),
            evicted: 0,
        }
    }

    /// The worker (0..workers) for `d`, pinning the first fragment of a
    /// tunnel's outer datagram and sending its later fragments after it.
    pub fn worker_for(&mut self, ts: Timestamp, d: &Decoded<'_>, workers: usize) -> usize {
        let w = worker_for(d, workers);
        if workers <= 1 {
            return w;
        }
        while let Some(&(t, k)) = self.order.front() {
            if ts.micros_since(t) <= self.timeout_micros {
                break;
            }
            self.order.pop_front();
            self.pins.remove(&k);
        }
        let vlan = d.outer_vlan().unwrap_or(0);
        match (d.tunnels.outer, d.ip) {
            (Some((src, dst)), Some(_)) if d.tunnels.outer_fragment => {
                let key = (src, dst, d.tunnels.outer_fragment_id, vlan);
                if let Some(&pinned) = self.pins.get(&key) {
                    return pinned;
                }
                self.pin(ts, key, w);
                w
            }
            (_, Some(ip)) => match ip.fragment {
                Fragment::Later { id } => self
                    .pins
                    .get(&(ip.src, ip.dst, id, vlan))
                    .copied()
                    .unwrap_or(w),
                _ => w,
            },
            _ => w,
        }
    }

    /// Sends the later fragments of `d`'s datagram, when `d` is a first
    /// fragment, to `worker` (which took `d` by something other than its
    /// addresses).
    pub fn pin_first_fragment(&mut self, ts: Timestamp, d: &Decoded<'_>, worker: usize) {
        let vlan = d.outer_vlan().unwrap_or(0);
        // A tunnel's outer datagram (its later fragments carry only the
        // outer addresses), else the packet's own.
        let key = match (d.tunnels.outer, d.ip) {
            (Some((src, dst)), _) if d.tunnels.outer_fragment => {
                (src, dst, d.tunnels.outer_fragment_id, vlan)
            }
            (_, Some(ip)) => match ip.fragment {
                Fragment::First { id } => (ip.src, ip.dst, id, vlan),
                _ => return,
            },
            _ => return,
        };
        self.pin(ts, key, worker);
    }

    /// Sends the datagram `key`'s later fragments to `worker`; a full
    /// table forgets its oldest pin first (counted).
    fn pin(&mut self, ts: Timestamp, key: PinKey, worker: usize) {
        if !self.pins.contains_key(&key) {
            if self.pins.len() >= MAX_PINS {
                if let Some((_, old)) = self.order.pop_front() {
                    if self.pins.remove(&old).is_some() {
                        self.evicted += 1;
                    }
                }
            }
            self.order.push_back((ts, key));
        }
        self.pins.insert(key, worker);
    }
}

/// A UDP conversation (both directions alike).
type Conversation = (IpAddr, u16, IpAddr, u16);

/// SIP signalling: UDP or TCP on the `rtp.sip_ports`, and UDP whose
/// payload starts like SIP on any other port; such a UDP conversation is
/// remembered (bounded, the oldest forgotten and counted), so that its
/// other datagrams (CRLF keep-alives) stay with it. TCP on other ports is
/// not guessed: its handshake would have gone elsewhere before the first
/// message.
#[derive(Debug, Default)]
pub struct SipFlows {
    seen: std::collections::HashSet<Conversation, foldhash::fast::RandomState>,
    order: VecDeque<Conversation>,
    /// Conversations forgotten at the cap.
    pub evicted: u64,
}

/// The most SIP conversations on other ports remembered.
pub const MAX_SIP_FLOWS: usize = 16_384;

impl SipFlows {
    fn conversation(d: &Decoded<'_>) -> Option<Conversation> {
        let ip = d.ip?;
        let analyzers::decode::Transport::Udp { src_port, dst_port } = d.transport else {
            return None;
        };
        let (a, b) = ((ip.src, src_port), (ip.dst, dst_port));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        Some((lo.0, lo.1, hi.0, hi.1))
    }

    /// Whether `d` is SIP: on one of `ports`, or UDP starting like SIP
    /// (then its conversation is remembered).
    pub fn is_sip(&mut self, d: &Decoded<'_>, ports: &[u16]) -> bool {
        if !analyzers::voip::tracker::is_sip(d, ports) {
            return false;
        }
        let on_port = d
            .ports()
            .is_some_and(|(sp, dp)| ports.iter().any(|&p| p == sp || p == dp));
        let Some(c) = Self::conversation(d).filter(|_| !on_port) else {
            return true;
        };
        if self.seen.insert(c) {
            if self.seen.len() > MAX_SIP_FLOWS {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                    self.evicted += 1;
                }
            }
            self.order.push_back(c);
        }
        true
    }

    /// Whether `d` belongs to a UDP conversation that carried SIP on other
    /// ports (free while there is none).
    pub fn is_sip_flow(&self, d: &Decoded<'_>) -> bool {
        !self.seen.is_empty() && Self::conversation(d).is_some_and(|c| self.seen.contains(&c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use analyzers::decode::Fragment;
    use analyzers::decode::{IpLayer, Transport};

    fn packet(src: &str, dst: &str, vlan: u16) -> Decoded<'static> {
        let mut d = Decoded::failed(analyzers::DecodeError::IpInvalid);
        d.error = None;
        d.vlan_ids = [vlan, 0, 0];
        d.vlan_count = 1;
        d.ip = Some(IpLayer {
            src: src.parse().expect("addr"),
            dst: dst.parse().expect("addr"),
            protocol: 17,
            fragment: Fragment::None,
        });
        d.transport = Transport::Udp {
            src_port: 4000,
            dst_port: 5000,
        };
        d
    }

    #[test]
    fn both_directions_and_both_vnets_meet() {
        for w in [2, 3, 8] {
            for i in 0..200u32 {
                let a = format!("10.0.{}.{}", i / 250, i % 250);
                let b = format!("2001:db8::{i:x}");
                let c = "192.0.2.7";
                let x = worker_for(&packet(&a, c, 100), w);
                assert_eq!(x, worker_for(&packet(c, &a, 200), w));
                assert!(x < w);
                let y = worker_for(&packet(&b, "2001:db8::1", 100), w);
                assert_eq!(y, worker_for(&packet("2001:db8::1", &b, 300), w));
            }
        }
    }

    /// The first fragment of a tunnel packet is decapsulated (inner
    /// addresses), its later fragments are not (outer addresses): the first
    /// goes with its inner flow and pins the later ones to its worker.
    #[test]
    fn a_tunnel_packets_fragments_follow_the_inner_flow() {
        let outer = (
            "192.0.2.1".parse().expect("addr"),
            "192.0.2.2".parse().expect("addr"),
        );
        let mut pins = FragmentPins::new(15);
        let t0 = Timestamp(1_000_000);
        let mut found_apart = false;
        for i in 0..64u32 {
            let inner = format!("10.1.0.{i}");
            let mut first = packet(&inner, "10.2.0.1", 0);
            let mut t = analyzers::decode::Tunnels::EMPTY;
            t.outer = Some(outer);
            t.outer_fragment = true;
            t.outer_fragment_id = i;
            first.tunnels = analyzers::decode::TunnelStack::owned(t);
            let mut later = packet("192.0.2.1", "192.0.2.2", 0);
            if let Some(ip) = later.ip.as_mut() {
                ip.fragment = Fragment::Later { id: i };
            }
            later.transport = analyzers::decode::Transport::None;
            let unfragmented = packet(&inner, "10.2.0.1", 0);
            let w = pins.worker_for(t0, &first, 8);
            assert_eq!(w, worker_for(&unfragmented, 8), "with its inner flow");
            assert_eq!(pins.worker_for(t0, &later, 8), w, "later fragment pinned");
            found_apart |= w != worker_for(&later, 8);
        }
        assert!(found_apart, "the outer addresses alone would part them");
        // After the reassembly timeout a pin is gone.
        let mut later = packet("192.0.2.1", "192.0.2.2", 0);
        if let Some(ip) = later.ip.as_mut() {
            ip.fragment = Fragment::Later { id: 3 };
        }
        let t1 = Timestamp(t0.0 + 16_000_000);
        assert_eq!(pins.worker_for(t1, &later, 8), worker_for(&later, 8));
        assert!(pins.pins.is_empty());
    }

    #[test]
    fn the_pins_are_capped() {
        let mut pins = FragmentPins::new(15);
        let outer = (
            "192.0.2.1".parse().expect("a"),
            "192.0.2.2".parse().expect("a"),
        );
        for i in 0..(MAX_PINS as u32 + 10) {
            let mut first = packet("10.1.0.1", "10.2.0.1", 0);
            let mut t = analyzers::decode::Tunnels::EMPTY;
            t.outer = Some(outer);
            t.outer_fragment = true;
            t.outer_fragment_id = i;
            first.tunnels = analyzers::decode::TunnelStack::owned(t);
            pins.worker_for(Timestamp(1), &first, 4);
        }
        assert_eq!(pins.pins.len(), MAX_PINS);
        assert_eq!(pins.evicted, 10);
    }

    #[test]
    fn sip_on_other_ports_is_remembered_with_its_conversation() {
        let mut sip = SipFlows::default();
        let mut invite = packet("10.0.0.1", "10.0.0.2", 0);
        invite.payload = b"INVITE sip:b@10.0.0.2:5000 SIP/2.0\r\n";
        assert!(!sip.is_sip_flow(&invite), "nothing seen yet");
        assert!(sip.is_sip(&invite, &[5060]));
        // The same conversation's keep-alive (either direction) follows.
        let mut keepalive = packet("10.0.0.2", "10.0.0.1", 0);
        keepalive.transport = Transport::Udp {
            src_port: 5000,
            dst_port: 4000,
        };
        keepalive.payload = b"\r\n\r\n";
        assert!(!sip.is_sip(&keepalive, &[5060]));
        assert!(sip.is_sip_flow(&keepalive));
        // Another conversation between the same hosts does not.
        let mut rtp = packet("10.0.0.1", "10.0.0.2", 0);
        rtp.transport = Transport::Udp {
            src_port: 40000,
            dst_port: 40002,
        };
        rtp.payload = b"\x80\x00\x00\x01";
        assert!(!sip.is_sip(&rtp, &[5060]) && !sip.is_sip_flow(&rtp));
        // A configured port needs no look at the payload.
        let mut on_port = rtp.clone();
        on_port.transport = Transport::Udp {
            src_port: 5060,
            dst_port: 5060,
        };
        assert!(sip.is_sip(&on_port, &[5060]));
    }

    #[test]
    fn a_pinned_first_fragment_takes_its_later_fragments_along() {
        let mut pins = FragmentPins::new(15);
        let mut first = packet("10.0.0.1", "10.0.0.2", 0);
        let mut later = packet("10.0.0.1", "10.0.0.2", 0);
        if let (Some(f), Some(l)) = (first.ip.as_mut(), later.ip.as_mut()) {
            f.fragment = Fragment::First { id: 7 };
            l.fragment = Fragment::Later { id: 7 };
        }
        later.transport = Transport::None;
        let by_address = pins.worker_for(Timestamp(1), &later, 4);
        let elsewhere = (by_address + 1) % 4;
        pins.pin_first_fragment(Timestamp(1), &first, elsewhere);
        assert_eq!(pins.worker_for(Timestamp(2), &later, 4), elsewhere);
    }

    #[test]
    fn a_pinned_tunnel_datagram_takes_its_outer_fragments_along() {
        // SIP inside VXLAN whose outer datagram is fragmented: the first
        // fragment goes to worker 0, and so must the rest, which carry
        // only the outer addresses.
        let mut pins = FragmentPins::new(15);
        let mut first = packet("10.1.0.1", "10.2.0.1", 0);
        let mut t = analyzers::decode::Tunnels::EMPTY;
        t.outer = Some((
            "192.0.2.1".parse().expect("a"),
            "192.0.2.2".parse().expect("a"),
        ));
        t.outer_fragment = true;
        t.outer_fragment_id = 9;
        first.tunnels = analyzers::decode::TunnelStack::owned(t);
        let mut later = packet("192.0.2.1", "192.0.2.2", 0);
        if let Some(l) = later.ip.as_mut() {
            l.fragment = Fragment::Later { id: 9 };
        }
        later.transport = Transport::None;
        let inner = pins.worker_for(Timestamp(1), &first, 4);
        let elsewhere = (inner + 1) % 4;
        pins.pin_first_fragment(Timestamp(1), &first, elsewhere);
        assert_eq!(pins.worker_for(Timestamp(2), &later, 4), elsewhere);
    }

    #[test]
    fn load_spreads_over_workers() {
        let mut counts = [0usize; 4];
        for i in 0..4000u32 {
            let a = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            counts[worker_for(&packet(&a, "10.255.0.1", 1), 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}

//! Scenarios: traffic built session by session, each packet labelled with the
//! flow it belongs to by construction, so the ground truth does not come
//! from parsing the frames back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::frame::{self, ICMP, ICMPV6, L4, TCP, UDP};
use crate::rng::Rng;

/// The epoch all samples start at (2023-11-14T22:13:20Z).
pub const T0_US: i64 = 1_700_000_000 * 1_000_000;

/// Protocol class of a packet, as moni's bins split it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Tcp,
    Udp,
    Icmp,
    Other,
}

/// One generated frame with its labels.
#[derive(Clone, Debug)]
pub struct GenPacket {
    pub ts_us: i64,
    pub frame: Vec<u8>,
    pub orig_len: u32,
    /// Index into [`Scenario::flows`]; `None` for non-IP frames.
    pub flow: Option<usize>,
    pub forward: bool,
    pub tcp_flags: u8,
    pub class: Class,
    /// Decode error moni must count for this frame (its snake_case reason).
    pub decode_error: Option<&'static str>,
    pub vnet: usize,
}

/// A flow as the generator intends it.
#[derive(Clone, Debug)]
pub struct FlowSpec {
    pub vnet: usize,
    pub vlan_id: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    /// Set when the generator decides the end (TCP close, active split);
    /// otherwise derived from the idle rule in [`crate::truth`].
    pub end_reason: Option<&'static str>,
    pub fragments: u64,
}

/// A VNet and its role.
#[derive(Clone, Debug)]
pub struct VnetSpec {
    pub name: String,
    pub role: String,
    pub vlan: Option<u16>,
}

impl VnetSpec {
    pub fn new(name: &str, role: &str, vlan: Option<u16>) -> Self {
        VnetSpec {
            name: name.into(),
            role: role.into(),
            vlan,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Scenario {
    pub name: String,
    pub vnets: Vec<VnetSpec>,
    pub flows: Vec<FlowSpec>,
    pub packets: Vec<GenPacket>,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Close {
    Fin,
    Rst,
    Open,
}

struct Builder {
    rng: Rng,
    s: Scenario,
    ip_id: u16,
    next_port: u16,
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

impl Builder {
    fn new(name: &str, seed: u64) -> Self {
        Builder {
            rng: Rng::new(seed),
            s: Scenario {
                name: name.to_string(),
                vnets: vec![VnetSpec::new("default", "production", None)],
                ..Scenario::default()
            },
            ip_id: 1,
            next_port: 40_000,
        }
    }

    fn port(&mut self) -> u16 {
        self.next_port += 1;
        self.next_port
    }

    #[allow(clippy::too_many_arguments)] // a flow is named by its 5-tuple
    fn flow(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        sport: u16,
        dport: u16,
        protocol: u8,
        end: Option<&'static str>,
    ) -> usize {
        self.s.flows.push(FlowSpec {
            vnet: 0,
            vlan_id: None,
            src,
            dst,
            sport,
            dport,
            protocol,
            end_reason: end,
            fragments: 0,
        });
        self.s.flows.len() - 1
    }

    /// Emits one IP packet of `flow` at `ts`; `forward` is the initiator's
    /// direction.
    fn emit(&mut self, flow: usize, forward: bool, ts_us: i64, l4: L4<'_>) {
        let f = &self.s.flows[flow];
        let (src, dst) = if forward {
            (f.src, f.dst)
        } else {
            (f.dst, f.src)
        };
        self.ip_id = self.ip_id.wrapping_add(1);
        let bytes = frame::packet(&[], src, dst, self.ip_id, &l4);
        let (class, flags) = match l4 {
            L4::Tcp { flags, .. } => (Class::Tcp, flags),
            L4::Udp { .. } => (Class::Udp, 0),
            L4::Echo { .. } => (Class::Icmp, 0),
        };
        self.s.packets.push(GenPacket {
            ts_us,
            orig_len: bytes.len() as u32,
            frame: bytes,
            flow: Some(flow),
            forward,
            tcp_flags: flags,
            class,
            decode_error: None,
            vnet: 0,
        });
    }

    fn payload(&mut self, lo: u64, hi: u64) -> Vec<u8> {
        let n = self.rng.range(lo, hi) as usize;
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    fn tcp_session(&mut self, t0: i64, client: IpAddr, server: IpAddr, dport: u16, close: Close) {
        let cport = self.port();
        let end = if close == Close::Open {
            None
        } else {
            Some("tcp_end")
        };
        let f = self.flow(client, server, cport, dport, TCP, end);
        let rtt = self.rng.range(500, 20_000) as i64;
        let mut t = t0;
        self.tcp(f, true, t, SYN, &[]);
        if close == Close::Rst {
            t += rtt;
            self.tcp(f, false, t, RST | ACK, &[]);
            return;
        }
        t += rtt;
        self.tcp(f, false, t, SYN | ACK, &[]);
        t += rtt / 2;
        self.tcp(f, true, t, ACK, &[]);
        let rounds = self.rng.range(1, 5);
        for _ in 0..rounds {
            t += self.rng.range(100, 5_000) as i64;
            let req = format!(
                "GET /item/{} HTTP/1.1\r\nHost: example.com\r\nUser-Agent: moni-gen\r\n\r\n",
                self.rng.range(0, 100_000)
            );
            self.tcp(f, true, t, PSH | ACK, req.as_bytes());
            let replies = self.rng.range(1, 4);
            for _ in 0..replies {
                t += self.rng.range(200, rtt as u64 + 1_000) as i64;
                let resp = self.payload(200, 1400);
                self.tcp(f, false, t, ACK, &resp);
            }
            t += 300;
            self.tcp(f, true, t, ACK, &[]);
        }
        if close == Close::Fin {
            t += self.rng.range(1_000, 50_000) as i64;
            self.tcp(f, true, t, FIN | ACK, &[]);
            t += rtt;
            self.tcp(f, false, t, FIN | ACK, &[]);
            t += rtt / 2;
            self.tcp(f, true, t, ACK, &[]);
        }
    }

    /// Source and destination ports of a packet of flow `f` in a direction.
    fn ports(&self, f: usize, forward: bool) -> (u16, u16) {
        let fl = &self.s.flows[f];
        if forward {
            (fl.sport, fl.dport)
        } else {
            (fl.dport, fl.sport)
        }
    }

    fn tcp(&mut self, f: usize, forward: bool, ts: i64, flags: u8, payload: &[u8]) {
        let (sport, dport) = self.ports(f, forward);
        self.emit(
            f,
            forward,
            ts,
            L4::Tcp {
                sport,
                dport,
                flags,
                payload,
            },
        );
    }

    fn udp(&mut self, f: usize, forward: bool, ts: i64, payload: &[u8]) {
        let (sport, dport) = self.ports(f, forward);
        self.emit(
            f,
            forward,
            ts,
            L4::Udp {
                sport,
                dport,
                payload,
            },
        );
    }

    fn dns(&mut self, t0: i64, client: IpAddr, server: IpAddr) {
        let cport = self.port();
        let f = self.flow(client, server, cport, 53, UDP, None);
        let id = self.rng.next_u64() as u16;
        let name = format!("host{}.example.com", self.rng.range(0, 1000));
        let q = dns_message(id, &name, None);
        self.udp(f, true, t0, &q);
        let answer = [192, 0, 2, self.rng.range(1, 255) as u8];
        let r = dns_message(id, &name, Some(answer));
        let dt = self.rng.range(300, 30_000) as i64;
        self.udp(f, false, t0 + dt, &r);
    }

    fn ping(&mut self, t0: i64, a: IpAddr, b: IpAddr, id: u16, count: u16) {
        let proto = if a.is_ipv4() { ICMP } else { ICMPV6 };
        let f = self.flow(a, b, id, id, proto, None);
        let data = self.payload(56, 57);
        for seq in 0..count {
            let t = t0 + i64::from(seq) * 1_000_000;
            let l4 = |request| L4::Echo {
                request,
                id,
                seq,
                payload: &data,
            };
            self.emit(f, true, t, l4(true));
            let dt = self.rng.range(200, 5_000) as i64;
            self.emit(f, false, t + dt, l4(false));
        }
    }
}

/// A DNS query for `name` (type A), or its response carrying `answer`.
fn dns_message(id: u16, name: &str, answer: Option<[u8; 4]>) -> Vec<u8> {
    let flags: u16 = if answer.is_some() { 0x8180 } else { 0x0100 };
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(a) = answer {
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
        m.extend_from_slice(&a);
    }
    m
}

/// Mixed background traffic in one untagged VNet, about 400 s long:
/// TCP sessions over IPv4 and IPv6 (FIN close, RST, one left open), DNS,
/// ICMP and ICMPv6 echo, a long UDP stream split by the active timeout, a
/// UDP conversation split by the idle timeout, a fragmented UDP datagram, a
/// frame cut inside its TCP header, and ARP.
pub fn background(seed: u64) -> Scenario {
    let mut b = Builder::new("background", seed);
    let server4 = v4(192, 0, 2, 80);
    let dns4 = v4(192, 0, 2, 53);
    for i in 0..30u8 {
        let t = T0_US + b.rng.range(0, 350_000_000) as i64;
        let close = if i % 15 == 7 { Close::Rst } else { Close::Fin };
        b.tcp_session(t, v4(10, 0, 0, 10 + i), server4, 80, close);
    }
    for i in 0..6u16 {
        let t = T0_US + b.rng.range(0, 350_000_000) as i64;
        b.tcp_session(t, v6(0x100 + i), v6(0x443), 443, Close::Fin);
    }
    // Opened near the end and never closed: end_of_input.
    b.tcp_session(
        T0_US + 395_000_000,
        v4(10, 0, 0, 99),
        server4,
        8080,
        Close::Open,
    );
    for i in 0..50u8 {
        let t = T0_US + b.rng.range(0, 399_000_000) as i64;
        b.dns(t, v4(10, 0, 0, 10 + (i % 30)), dns4);
    }
    for i in 0..5u16 {
        let t = T0_US + b.rng.range(0, 399_000_000) as i64;
        b.dns(t, v6(0x100 + i), v6(0x53));
    }
    for i in 0..8u16 {
        let t = T0_US + b.rng.range(0, 390_000_000) as i64;
        b.ping(
            t,
            v4(10, 0, 0, 50),
            v4(198, 51, 100, i as u8 + 1),
            0x100 + i,
            4,
        );
    }
    for i in 0..2u16 {
        let t = T0_US + b.rng.range(0, 390_000_000) as i64;
        b.ping(t, v6(0x50), v6(0x900 + i), 0x200 + i, 4);
    }

    // A media-like UDP stream, 2 packets/s for 330 s: split at 300 s by the
    // active timeout.
    let (a, z) = (v4(10, 0, 1, 10), v4(10, 0, 1, 20));
    let start = T0_US + 20_000_000;
    let first = b.flow(a, z, 16384, 16386, UDP, Some("active"));
    let second = b.flow(a, z, 16384, 16386, UDP, None);
    let voice = vec![0xd5u8; 160];
    for i in 0..660i64 {
        let t = start + i * 500_000;
        let f = if t - start >= 300_000_000 {
            second
        } else {
            first
        };
        b.udp(f, true, t, &voice);
    }

    // A conversation that pauses for 86 s: two flows, the first idle.
    let (p, q) = (v4(10, 0, 2, 1), v4(10, 0, 2, 2));
    let before = b.flow(p, q, 5000, 5001, UDP, None);
    let after = b.flow(p, q, 5000, 5001, UDP, None);
    for i in 0..5i64 {
        b.udp(
            before,
            i % 2 == 0,
            T0_US + 10_000_000 + i * 1_000_000,
            &[1; 20],
        );
        b.udp(
            after,
            i % 2 == 0,
            T0_US + 100_000_000 + i * 1_000_000,
            &[2; 20],
        );
    }

    // One UDP datagram in three IPv4 fragments, then an unfragmented reply.
    let (fa, fz) = ([10, 0, 3, 1], [10, 0, 3, 2]);
    let frag_flow = b.flow(IpAddr::from(fa), IpAddr::from(fz), 7000, 7001, UDP, None);
    let big = vec![0x5a; 3000];
    let frags = frame::ipv4_fragments(
        &[],
        fa,
        fz,
        0x4242,
        &L4::Udp {
            sport: 7000,
            dport: 7001,
            payload: &big,
        },
        1480,
    );
    b.s.flows[frag_flow].fragments = frags.len() as u64;
    for (i, fr) in frags.into_iter().enumerate() {
        b.s.packets.push(GenPacket {
            ts_us: T0_US + 200_000_000 + i as i64 * 100,
            orig_len: fr.len() as u32,
            frame: fr,
            flow: Some(frag_flow),
            forward: true,
            tcp_flags: 0,
            class: Class::Udp,
            decode_error: None,
            vnet: 0,
        });
    }
    b.udp(frag_flow, false, T0_US + 200_010_000, &[7; 40]);

    // A TCP session whose one data segment was cut by the capture inside its
    // TCP header (caplen 44 < wire length): still counted in its flow, by
    // the wire length, and counted as a tcp_truncated decode error.
    let tc = v4(10, 0, 4, 1);
    b.tcp_session(T0_US + 250_000_000, tc, server4, 80, Close::Fin);
    if let Some(pkt) =
        b.s.packets
            .iter_mut()
            .rev()
            .find(|p| p.frame.len() > 200 && p.class == Class::Tcp)
    {
        pkt.frame.truncate(14 + 20 + 10);
        pkt.decode_error = Some("tcp_truncated");
    }

    for i in 0..10i64 {
        let fr = frame::arp(&[]);
        b.s.packets.push(GenPacket {
            ts_us: T0_US + 5_000_000 + i * 37_000_000,
            orig_len: fr.len() as u32,
            frame: fr,
            flow: None,
            forward: true,
            tcp_flags: 0,
            class: Class::Other,
            decode_error: None,
            vnet: 0,
        });
    }
    b.s.packets.sort_by_key(|p| p.ts_us);
    b.s
}

/// Inserts an 802.1Q tag after the MAC addresses.
fn tag(frame: &[u8], vlan: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..12.min(frame.len())]);
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&vlan.to_be_bytes());
    out.extend_from_slice(frame.get(12..).unwrap_or(&[]));
    out
}

/// The paper's Shadow VNet duplication: the background traffic appears in
/// VNet A (VLAN 100, production) and again, 100 µs later, in VNet B
/// (VLAN 200, shadow).
pub fn vlan_shadow(seed: u64) -> Scenario {
    let base = background(seed);
    let mut s = Scenario {
        name: "vlan-shadow".into(),
        vnets: vec![
            VnetSpec::new("A", "production", Some(100)),
            VnetSpec::new("B", "shadow", Some(200)),
        ],
        ..Scenario::default()
    };
    let n = base.flows.len();
    for (vnet, vlan) in [(0usize, 100u16), (1, 200)] {
        for f in &base.flows {
            s.flows.push(FlowSpec {
                vnet,
                vlan_id: Some(vlan),
                ..f.clone()
            });
        }
        for p in &base.packets {
            s.packets.push(GenPacket {
                ts_us: p.ts_us + if vnet == 1 { 100 } else { 0 },
                frame: tag(&p.frame, vlan),
                orig_len: p.orig_len + 4,
                flow: p.flow.map(|f| f + vnet * n),
                vnet,
                ..p.clone()
            });
        }
    }
    s.packets.sort_by_key(|p| p.ts_us);
    s
}

//! Vertical port scans and horizontal host sweeps.

use std::net::IpAddr;

use serde_json::json;

use super::state::Bounded;
use super::{details, Detector, IdsConfig, HOST_SWEEP, PORT_SCAN};
use crate::decode::{tcp_flags as f, Decoded, Fragment, Transport};
use crate::record::AlertRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;

/// How a TCP segment probes a port, if it is a probe at all.
fn tcp_probe(flags: u8) -> Option<&'static str> {
    let ack = flags & f::ACK != 0;
    if flags & (f::SYN | f::ACK | f::RST) == f::SYN {
        Some("syn")
    } else if flags == 0 {
        Some("null")
    } else if !ack && flags & (f::FIN | f::PSH | f::URG) == f::FIN | f::PSH | f::URG {
        Some("xmas")
    } else if !ack && flags & (f::FIN | f::SYN | f::RST) == f::FIN {
        Some("fin")
    } else {
        None
    }
}

fn push_capped<T: PartialEq>(v: &mut Vec<T>, x: T, cap: usize) {
    if v.len() < cap && !v.contains(&x) {
        v.push(x);
    }
}

/// The ports (and protocol) an ICMP destination-unreachable quotes: the
/// prober, the probed host and its port. IPv4 and IPv6.
fn quoted_probe(d: &Decoded<'_>) -> Option<(IpAddr, IpAddr, u8, u16)> {
    let Transport::Icmp {
        icmp_type, code, ..
    } = d.transport
    else {
        return None;
    };
    let p = d.payload;
    let v4 = matches!(d.ip.map(|i| i.src), Some(IpAddr::V4(_)));
    if v4 && icmp_type == 3 && code == 3 {
        let ihl = usize::from(*p.first()? & 0x0f) * 4;
        let proto = *p.get(9)?;
        let src = IpAddr::from(<[u8; 4]>::try_from(p.get(12..16)?).ok()?);
        let dst = IpAddr::from(<[u8; 4]>::try_from(p.get(16..20)?).ok()?);
        let port = u16::from_be_bytes([*p.get(ihl + 2)?, *p.get(ihl + 3)?]);
        return Some((src, dst, proto, port));
    }
    if !v4 && icmp_type == 1 && code == 4 {
        let proto = *p.get(6)?;
        let src = IpAddr::from(<[u8; 16]>::try_from(p.get(8..24)?).ok()?);
        let dst = IpAddr::from(<[u8; 16]>::try_from(p.get(24..40)?).ok()?);
        let port = u16::from_be_bytes([*p.get(42)?, *p.get(43)?]);
        return Some((src, dst, proto, port));
    }
    None
}

#[derive(Debug)]
struct ScanState {
    start: Timestamp,
    ports: Vec<u16>,
    stealth: Vec<u16>,
    udp_closed: Vec<u16>,
    probes: u64,
    open: u64,
    closed: u64,
    /// Probe kinds seen, as bits of [`KINDS`].
    kinds: u8,
    alerted: bool,
}

const KINDS: [&str; 5] = ["syn", "fin", "null", "xmas", "udp"];

fn kind_names(bits: u8) -> Vec<&'static str> {
    KINDS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, k)| *k)
        .collect()
}

impl ScanState {
    fn new(ts: Timestamp) -> Self {
        ScanState {
            start: ts,
            ports: Vec::new(),
            stealth: Vec::new(),
            udp_closed: Vec::new(),
            probes: 0,
            open: 0,
            closed: 0,
            kinds: 0,
            alerted: false,
        }
    }
}

/// One source probing many ports of one host.
pub struct PortScan {
    t: Bounded<(VnetId, IpAddr, IpAddr), ScanState>,
    window_us: i64,
    ports: usize,
    stealth: usize,
}

impl PortScan {
    pub fn new(c: &IdsConfig) -> Self {
        PortScan {
            t: Bounded::new(c.max_tracked),
            window_us: i64::from(c.scan_window_secs) * 1_000_000,
            ports: c.scan_ports as usize,
            stealth: c.stealth_ports as usize,
        }
    }

    /// New thresholds, same state (SIGHUP).
    pub fn reconfigure(&mut self, c: &IdsConfig) {
        let t = std::mem::replace(&mut self.t, Bounded::new(1));
        *self = PortScan::new(c);
        self.t = t;
    }

    fn state(&mut self, vnet: VnetId, src: IpAddr, dst: IpAddr, ts: Timestamp) -> &mut ScanState {
        let w = self.window_us;
        let s = self.t.entry(&(vnet, src, dst), || ScanState::new(ts));
        if ts.micros_since(s.start) > w {
            *s = ScanState::new(ts);
        }
        s
    }
}

impl Detector for PortScan {
    fn name(&self) -> &'static str {
        "port_scan"
    }

    fn observe(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        out: &mut Vec<AlertRecord>,
    ) {
        let Some(ip) = d.ip else { return };
        if matches!(ip.fragment, Fragment::Later { .. }) {
            return;
        }
        let (cap, stealth_cap) = (self.ports + 1, self.stealth + 1);
        let (src, dst, proto, port, kind) = match d.transport {
            Transport::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                // Answers to a prober: SYN-ACK (open) or RST (closed).
                if flags & f::RST != 0 || flags & (f::SYN | f::ACK) == f::SYN | f::ACK {
                    if let Some(s) = self.t.get_mut(&(vnet, ip.dst, ip.src)) {
                        if flags & f::RST != 0 {
                            s.closed += 1;
                        } else {
                            s.open += 1;
                        }
                        let _ = src_port;
                    }
                    return;
                }
                let Some(kind) = tcp_probe(flags) else { return };
                (ip.src, ip.dst, 6u8, dst_port, kind)
            }
            Transport::Icmp { .. } => {
                // A closed UDP port answers with ICMP port unreachable,
                // quoting the probe: that is how UDP scans show.
                let Some((prober, host, proto, port)) = quoted_probe(d) else {
                    return;
                };
                if proto != 17 {
                    return;
                }
                (prober, host, 17u8, port, "udp")
            }
            _ => return,
        };
        let (ports_t, stealth_t, window_secs) =
            (self.ports, self.stealth, self.window_us / 1_000_000);
        let s = self.state(vnet, src, dst, ts);
        s.probes += 1;
        if let Some(i) = KINDS.iter().position(|k| *k == kind) {
            s.kinds |= 1 << i;
        }
        match kind {
            "udp" => {
                s.closed += 1;
                push_capped(&mut s.udp_closed, port, cap);
            }
            "syn" => push_capped(&mut s.ports, port, cap),
            _ => {
                push_capped(&mut s.ports, port, cap);
                push_capped(&mut s.stealth, port, stealth_cap);
            }
        }
        if s.alerted {
            return;
        }
        let crossed = if s.ports.len() >= ports_t {
            Some(("ports", s.ports.len(), ports_t))
        } else if s.udp_closed.len() >= ports_t {
            Some(("closed_udp_ports", s.udp_closed.len(), ports_t))
        } else if s.stealth.len() >= stealth_t {
            Some(("stealth_ports", s.stealth.len(), stealth_t))
        } else {
            None
        };
        let Some((what, n, threshold)) = crossed else {
            return;
        };
        s.alerted = true;
        out.push(AlertRecord {
            tunnel: Default::default(),
            time: s.start,
            end: ts,
            vnet,
            kind: PORT_SCAN.name,
            trigger: None,
            to_server: None,
            flow: None,
            signature_id: 9_000_001,
            signature: format!(
                "moni port scan ({}) of {dst} from {src}",
                kind_names(s.kinds).join("/")
            ),
            category: "Attempted Information Leak".into(),
            rev: 1,
            flow_id: None,
            vlans: Vec::new(),
            severity: PORT_SCAN.severity,
            src_addr: Some(src),
            src_port: None,
            dst_addr: Some(dst),
            dst_port: None,
            protocol: proto,
            details: details(&[
                ("probes", json!(s.probes)),
                ("distinct", json!(n)),
                ("counted", json!(what)),
                ("threshold", json!(threshold)),
                ("window_secs", json!(window_secs)),
                ("answered_open", json!(s.open)),
                ("answered_closed", json!(s.closed)),
                ("probe_kinds", json!(kind_names(s.kinds))),
            ]),
        });
    }

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.t.retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (self.t.len(), self.t.evicted)
    }
}

#[derive(Debug)]
struct SweepState {
    start: Timestamp,
    hosts: Vec<IpAddr>,
    probes: u64,
    alerted: bool,
}

/// One source probing one port (or ICMP echo) on many hosts. A TCP host
/// that answers with SYN-ACK leaves the count: only unanswered or refused
/// SYNs make a sweep.
pub struct Sweep {
    t: Bounded<(VnetId, IpAddr, u8, u16), SweepState>,
    window_us: i64,
    hosts: usize,
}

impl Sweep {
    pub fn new(c: &IdsConfig) -> Self {
        Sweep {
            t: Bounded::new(c.max_tracked),
            window_us: i64::from(c.sweep_window_secs) * 1_000_000,
            hosts: c.sweep_hosts as usize,
        }
    }
}

impl Sweep {
    /// New thresholds, same state (SIGHUP).
    pub fn reconfigure(&mut self, c: &IdsConfig) {
        let t = std::mem::replace(&mut self.t, Bounded::new(1));
        *self = Sweep::new(c);
        self.t = t;
    }
}

impl Detector for Sweep {
    fn name(&self) -> &'static str {
        "host_sweep"
    }

    fn observe(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        out: &mut Vec<AlertRecord>,
    ) {
        let Some(ip) = d.ip else { return };
        let (proto, port) = match d.transport {
            Transport::Tcp {
                src_port, flags, ..
            } if flags & (f::SYN | f::ACK | f::RST) == f::SYN | f::ACK => {
                // The host accepted the connection: an answered SYN is a
                // client at work (a browser opening 60 connections to 29
                // CDN hosts), not a probe. Refused (RST) and unanswered
                // SYNs keep counting.
                if let Some(s) = self.t.get_mut(&(vnet, ip.dst, 6, src_port)) {
                    if !s.alerted {
                        s.hosts.retain(|h| *h != ip.src);
                    }
                }
                return;
            }
            Transport::Tcp {
                dst_port, flags, ..
            } if flags & (f::SYN | f::ACK | f::RST) == f::SYN => (6u8, dst_port),
            Transport::Icmp {
                icmp_type: 8 | 128, ..
            } => (ip.protocol, 0),
            _ => return,
        };
        let w = self.window_us;
        let cap = self.hosts + 1;
        let s = self.t.entry(&(vnet, ip.src, proto, port), || SweepState {
            start: ts,
            hosts: Vec::new(),
            probes: 0,
            alerted: false,
        });
        if ts.micros_since(s.start) > w {
            *s = SweepState {
                start: ts,
                hosts: Vec::new(),
                probes: 0,
                alerted: false,
            };
        }
        s.probes += 1;
        push_capped(&mut s.hosts, ip.dst, cap);
        if s.alerted || s.hosts.len() < self.hosts {
            return;
        }
        s.alerted = true;
        let what = if proto == 6 {
            format!("TCP port {port}")
        } else {
            "ICMP echo".to_string()
        };
        out.push(AlertRecord {
            tunnel: Default::default(),
            time: s.start,
            end: ts,
            vnet,
            kind: HOST_SWEEP.name,
            trigger: Some((ip.src, ip.dst)),
            to_server: None,
            flow: None,
            signature_id: 9_000_002,
            signature: format!("moni host sweep ({what}) from {}", ip.src),
            category: "Attempted Information Leak".into(),
            rev: 1,
            flow_id: None,
            vlans: Vec::new(),
            severity: HOST_SWEEP.severity,
            src_addr: Some(ip.src),
            src_port: None,
            dst_addr: None,
            dst_port: (proto == 6).then_some(port),
            protocol: proto,
            details: details(&[
                ("probes", json!(s.probes)),
                ("hosts", json!(s.hosts.len())),
                ("threshold", json!(self.hosts)),
                ("window_secs", json!(w / 1_000_000)),
                ("probe", json!(what)),
                (
                    "first_hosts",
                    json!(s
                        .hosts
                        .iter()
                        .take(5)
                        .map(|h| h.to_string())
                        .collect::<Vec<_>>()),
                ),
            ]),
        });
    }

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.t.retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (self.t.len(), self.t.evicted)
    }
}

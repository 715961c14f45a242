//! Vertical port scans and horizontal host sweeps.
//!
//! A port scan is one source probing many ports of one host: by SYN, FIN,
//! NULL or Xmas segments (counted as sent), by bare ACKs (nmap `-sA` and
//! `-sW` send the same probes; only the host's RSTs without ACK show them,
//! since a bare ACK is also every TCP stream's most common segment), or by
//! UDP datagrams that nobody answers (a closed port's ICMP unreachable
//! counts at once, an unanswered probe once `answer_grace_ms` passed).
//!
//! A sweep is one source probing one port, or ICMP echo, on many hosts:
//! only **unanswered or refused** probes count (`state::ProbeSet`), so a
//! browser whose 60 SYNs to 29 CDN hosts are all answered is no sweep.
//! TCP sweeps are SYN pings and ACK pings (seen through the RSTs live
//! hosts return), ICMP echo sweeps are `host_sweep` too; UDP ones are
//! `udp_sweep`.
//!
//! Sweeps and UDP scans are judged late (a probe is unanswered only after
//! the grace), so candidates wait on a short watch list that [`Sweep::tick`]
//! and [`PortScan::tick`] re-judge as packet time passes: a sweep that
//! stops after its last probe is still reported.

use std::net::IpAddr;

use serde_json::json;

use super::state::{addr_key, key_addr, Answer, FifoTable, InlineVec, ProbeSet};
use super::{details, Detector, IdsConfig, HOST_SWEEP, PORT_SCAN, UDP_SWEEP};
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

/// A bare RST (no ACK flag): by RFC 793 the answer to a segment that
/// carried an ACK for no connection, which is what an ACK (or Window)
/// probe is. A refused SYN, FIN, NULL or Xmas probe gets RST+ACK instead.
fn bare_rst(flags: u8) -> bool {
    flags & (f::RST | f::ACK | f::SYN) == f::RST
}

/// The ports of one (source, host) pair: nearly always one or two, kept
/// inline (no allocation per new pair).
type Ports = InlineVec<u16, 4>;

fn push_capped(v: &mut Ports, x: u16, cap: usize) {
    if v.len() < cap && !v.as_slice().contains(&x) {
        v.push(x);
    }
}

/// The probe an ICMP destination-unreachable quotes: the prober, the
/// probed host, the protocol and the probed port. IPv4 and IPv6, any
/// unreachable code (port, host, administratively prohibited).
pub(crate) fn quoted_probe(d: &Decoded<'_>) -> Option<(IpAddr, IpAddr, u8, u16)> {
    let Transport::Icmp { icmp_type, .. } = d.transport else {
        return None;
    };
    let p = d.payload;
    let v4 = matches!(d.ip.map(|i| i.src), Some(IpAddr::V4(_)));
    if v4 && icmp_type == 3 {
        let ihl = usize::from(*p.first()? & 0x0f) * 4;
        let proto = *p.get(9)?;
        let src = IpAddr::from(<[u8; 4]>::try_from(p.get(12..16)?).ok()?);
        let dst = IpAddr::from(<[u8; 4]>::try_from(p.get(16..20)?).ok()?);
        let port = u16::from_be_bytes([*p.get(ihl + 2)?, *p.get(ihl + 3)?]);
        return Some((src, dst, proto, port));
    }
    if !v4 && icmp_type == 1 {
        let proto = *p.get(6)?;
        let src = IpAddr::from(<[u8; 16]>::try_from(p.get(8..24)?).ok()?);
        let dst = IpAddr::from(<[u8; 16]>::try_from(p.get(24..40)?).ok()?);
        let port = u16::from_be_bytes([*p.get(42)?, *p.get(43)?]);
        return Some((src, dst, proto, port));
    }
    None
}

/// Probe kinds, as bits.
const KINDS: [&str; 6] = ["syn", "fin", "null", "xmas", "udp", "ack"];

fn kind_bit(kind: &str) -> u8 {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .map_or(0, |i| 1u8 << i)
}

fn kind_names(bits: u8) -> Vec<&'static str> {
    KINDS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, k)| *k)
        .collect()
}

/// Keys waiting for their late judgement, at most this many per detector
/// (a candidate past it is judged only at its own next probe).
const MAX_WATCHED: usize = 1024;

/// What one UDP datagram is to the scan and sweep detectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpRole {
    /// The first datagram of an exchange: a possible probe.
    Probe,
    /// The first datagram of the way back: an answer.
    Answer,
}

#[derive(Debug)]
struct ScanState {
    start: Timestamp,
    last: Timestamp,
    ports: Ports,
    stealth: Ports,
    /// Ports that refused a bare ACK with a bare RST.
    ack: Ports,
    /// UDP ports probed, with their answers.
    udp: ProbeSet<u16>,
    probes: u64,
    open: u64,
    closed: u64,
    kinds: u8,
    watched: bool,
    alerted: bool,
}

impl ScanState {
    fn new(ts: Timestamp, cap: usize) -> Self {
        ScanState {
            start: ts,
            last: ts,
            ports: Ports::default(),
            stealth: Ports::default(),
            ack: Ports::default(),
            udp: ProbeSet::new(cap),
            probes: 0,
            open: 0,
            closed: 0,
            kinds: 0,
            watched: false,
            alerted: false,
        }
    }

    /// Whether [`PortScan::judge`] can do anything: alert (a count at its
    /// threshold; unanswered UDP ports are at most the UDP ports probed)
    /// or watch (UDP ports at the threshold). Most keys are one client's
    /// first connection to a server: this spares them a second lookup.
    fn judgeable(&self, ports: usize, stealth: usize) -> bool {
        !self.alerted
            && (self.ports.len() >= ports
                || self.ack.len() >= ports
                || self.udp.len() >= ports
                || self.stealth.len() >= stealth)
    }
}

type ScanKey = (VnetId, IpAddr, IpAddr);

/// One source probing many ports of one host.
pub struct PortScan {
    t: FifoTable<ScanKey, ScanState>,
    watch: Vec<ScanKey>,
    window_us: i64,
    grace_us: i64,
    ports: usize,
    stealth: usize,
}

impl PortScan {
    pub fn new(c: &IdsConfig) -> Self {
        PortScan {
            t: FifoTable::new(c.max_tracked),
            watch: Vec::new(),
            window_us: i64::from(c.scan_window_secs) * 1_000_000,
            grace_us: i64::from(c.answer_grace_ms) * 1_000,
            ports: c.scan_ports as usize,
            stealth: c.stealth_ports as usize,
        }
    }

    /// New thresholds, same state (SIGHUP).
    pub fn reconfigure(&mut self, c: &IdsConfig) {
        let t = std::mem::replace(&mut self.t, FifoTable::new(1));
        let watch = std::mem::take(&mut self.watch);
        *self = PortScan::new(c);
        self.t = t;
        self.watch = watch;
    }

    /// The state of `key` at `ts`, a fresh one once its window ended.
    fn state(&mut self, key: &ScanKey, ts: Timestamp) -> &mut ScanState {
        let w = self.window_us;
        let cap = 2 * self.ports + 32;
        let s = self.t.entry(key, || ScanState::new(ts, cap));
        if ts.micros_since(s.start) > w {
            *s = ScanState::new(ts, cap);
        }
        s.last = ts;
        s
    }

    /// A UDP datagram the caller found to be the first of its exchange.
    pub fn observe_udp(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        role: UdpRole,
        out: &mut Vec<AlertRecord>,
    ) {
        let (Some(ip), Some((sp, dp))) = (d.ip, d.ports()) else {
            return;
        };
        match role {
            UdpRole::Answer => {
                if let Some(s) = self.t.get_mut(&(vnet, ip.dst, ip.src)) {
                    s.udp.answer(sp, Answer::Answered);
                    s.open += 1;
                }
            }
            UdpRole::Probe => {
                let key = (vnet, ip.src, ip.dst);
                let (pt, st) = (self.ports, self.stealth);
                let s = self.state(&key, ts);
                s.probes += 1;
                s.kinds |= kind_bit("udp");
                s.udp.probe(dp, ts.0);
                if s.judgeable(pt, st) {
                    self.judge(&key, ts, out);
                }
            }
        }
    }

    /// Judges `key` at `ts`: alerts once a count crossed its threshold,
    /// and watches a UDP scan still waiting for its grace to pass.
    fn judge(&mut self, key: &ScanKey, ts: Timestamp, out: &mut Vec<AlertRecord>) {
        let (ports_t, stealth_t, grace) = (self.ports, self.stealth, self.grace_us);
        let window_secs = self.window_us / 1_000_000;
        let Some(s) = self.t.get_mut(key) else { return };
        if s.alerted {
            return;
        }
        let udp_unanswered = s.udp.unanswered(ts.0, grace);
        let crossed = if s.ports.len() >= ports_t {
            let tcp = s.kinds & !(kind_bit("udp") | kind_bit("ack"));
            Some(("ports", s.ports.len(), ports_t, tcp))
        } else if s.ack.len() >= ports_t {
            Some(("ack_refused_ports", s.ack.len(), ports_t, kind_bit("ack")))
        } else if udp_unanswered >= ports_t {
            Some((
                "unanswered_udp_ports",
                udp_unanswered,
                ports_t,
                kind_bit("udp"),
            ))
        } else if s.stealth.len() >= stealth_t {
            let stealth = s.kinds & (kind_bit("fin") | kind_bit("null") | kind_bit("xmas"));
            Some(("stealth_ports", s.stealth.len(), stealth_t, stealth))
        } else {
            None
        };
        let Some((what, n, threshold, probe)) = crossed else {
            if !s.watched && s.udp.len() >= ports_t && self.watch.len() < MAX_WATCHED {
                s.watched = true;
                self.watch.push(*key);
            }
            return;
        };
        s.alerted = true;
        let (vnet, src, dst) = *key;
        let proto = if probe == kind_bit("udp") { 17 } else { 6 };
        let (udp_answered, udp_refused) = s.udp.answers();
        let probe = kind_names(probe).join("/");
        out.push(AlertRecord {
            tunnel: Default::default(),
            time: s.start,
            end: ts.max(s.last),
            vnet,
            kind: PORT_SCAN.name,
            trigger: None,
            to_server: None,
            flow: None,
            signature_id: 9_000_001,
            signature: format!("moni port scan ({probe}) of {dst} from {src}"),
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
                ("probe", json!(probe)),
                ("probes", json!(s.probes)),
                ("distinct", json!(n)),
                ("counted", json!(what)),
                ("threshold", json!(threshold)),
                ("window_secs", json!(window_secs)),
                ("answered_open", json!(s.open)),
                ("answered_closed", json!(s.closed)),
                ("udp_answered", json!(udp_answered)),
                ("udp_refused", json!(udp_refused)),
                ("probe_kinds", json!(kind_names(s.kinds))),
            ]),
        });
    }

    /// Re-judges the watched UDP scans at `now` (their grace may have
    /// passed without an answer).
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<AlertRecord>) {
        late_tick(self, now, out);
    }
}

impl Detector for PortScan {
    fn name(&self) -> &'static str {
        "port_scan"
    }

    /// TCP probes and answers, and ICMP unreachables (UDP: see
    /// [`PortScan::observe_udp`]).
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
        let (pt, st) = (self.ports, self.stealth);
        let (key, judgeable) = match d.transport {
            Transport::Tcp {
                src_port, flags, ..
            } => {
                if bare_rst(flags) {
                    // An ACK (or Window) probe refused: the prober is the
                    // RST's destination.
                    let key = (vnet, ip.dst, ip.src);
                    let s = self.state(&key, ts);
                    s.probes += 1;
                    s.closed += 1;
                    s.kinds |= kind_bit("ack");
                    push_capped(&mut s.ack, src_port, cap);
                    (key, s.judgeable(pt, st))
                } else if flags & f::RST != 0 || flags & (f::SYN | f::ACK) == f::SYN | f::ACK {
                    // Answers to a prober: SYN-ACK (open) or RST (closed).
                    if let Some(s) = self.t.get_mut(&(vnet, ip.dst, ip.src)) {
                        if flags & f::RST != 0 {
                            s.closed += 1;
                        } else {
                            s.open += 1;
                        }
                    }
                    return;
                } else {
                    let Transport::Tcp { dst_port, .. } = d.transport else {
                        return;
                    };
                    let Some(kind) = tcp_probe(flags) else { return };
                    let key = (vnet, ip.src, ip.dst);
                    let s = self.state(&key, ts);
                    s.probes += 1;
                    s.kinds |= kind_bit(kind);
                    push_capped(&mut s.ports, dst_port, cap);
                    if kind != "syn" {
                        push_capped(&mut s.stealth, dst_port, stealth_cap);
                    }
                    (key, s.judgeable(pt, st))
                }
            }
            Transport::Icmp { .. } => {
                // A closed UDP port answers with ICMP port unreachable,
                // quoting the probe.
                let Some((prober, host, 17, port)) = quoted_probe(d) else {
                    return;
                };
                let key = (vnet, prober, host);
                let s = self.state(&key, ts);
                s.closed += 1;
                s.kinds |= kind_bit("udp");
                s.udp.refused(port, ts.0);
                (key, s.judgeable(pt, st))
            }
            _ => return,
        };
        if judgeable {
            self.judge(&key, ts, out);
        }
    }

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.t.retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (self.t.len(), self.t.evicted)
    }
}

/// Probe kinds of a sweep, as bits.
const SWEEP_KINDS: [&str; 4] = ["syn", "ack", "echo", "udp"];

fn sweep_bit(kind: &str) -> u8 {
    SWEEP_KINDS
        .iter()
        .position(|k| *k == kind)
        .map_or(0, |i| 1u8 << i)
}

#[derive(Debug)]
struct SweepState {
    start: Timestamp,
    last: Timestamp,
    hosts: ProbeSet,
    probes: u64,
    kinds: u8,
    watched: bool,
    alerted: bool,
}

impl SweepState {
    /// Whether [`Sweep::judge`] can alert or watch: both need at least
    /// `threshold` hosts probed (unanswered ones are among them). A
    /// client's first connections never get that far: no second lookup.
    fn judgeable(&self, threshold: usize) -> bool {
        !self.alerted && self.hosts.len() >= threshold
    }
}

/// (VNet, prober, protocol, port; 0 for ICMP echo).
type SweepKey = (VnetId, IpAddr, u8, u16);

/// One source probing one port (or ICMP echo) on many hosts that do not
/// answer, or refuse.
pub struct Sweep {
    t: FifoTable<SweepKey, SweepState>,
    watch: Vec<SweepKey>,
    window_us: i64,
    grace_us: i64,
    hosts: usize,
}

impl Sweep {
    pub fn new(c: &IdsConfig) -> Self {
        Sweep {
            t: FifoTable::new(c.max_tracked),
            watch: Vec::new(),
            window_us: i64::from(c.sweep_window_secs) * 1_000_000,
            grace_us: i64::from(c.answer_grace_ms) * 1_000,
            hosts: c.sweep_hosts as usize,
        }
    }

    /// New thresholds, same state (SIGHUP).
    pub fn reconfigure(&mut self, c: &IdsConfig) {
        let t = std::mem::replace(&mut self.t, FifoTable::new(1));
        let watch = std::mem::take(&mut self.watch);
        *self = Sweep::new(c);
        self.t = t;
        self.watch = watch;
    }

    fn state(&mut self, key: &SweepKey, ts: Timestamp) -> &mut SweepState {
        let w = self.window_us;
        let cap = 2 * self.hosts + 32;
        let fresh = || SweepState {
            start: ts,
            last: ts,
            hosts: ProbeSet::new(cap),
            probes: 0,
            kinds: 0,
            watched: false,
            alerted: false,
        };
        let s = self.t.entry(key, fresh);
        if ts.micros_since(s.start) > w {
            *s = fresh();
        }
        s.last = ts;
        s
    }

    /// Records a probe; whether [`Sweep::judge`] can do anything for the
    /// key now (see [`SweepState::judgeable`]).
    fn probe(&mut self, key: SweepKey, host: IpAddr, kind: &str, ts: Timestamp) -> bool {
        let threshold = self.hosts;
        let s = self.state(&key, ts);
        s.probes += 1;
        s.kinds |= sweep_bit(kind);
        s.hosts.probe(addr_key(host), ts.0);
        s.judgeable(threshold)
    }

    fn answer(&mut self, key: &SweepKey, host: IpAddr, how: Answer) {
        if let Some(s) = self.t.get_mut(key) {
            s.hosts.answer(addr_key(host), how);
        }
    }

    /// A UDP datagram the caller found to be the first of its exchange.
    pub fn observe_udp(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        role: UdpRole,
        out: &mut Vec<AlertRecord>,
    ) {
        let (Some(ip), Some((sp, dp))) = (d.ip, d.ports()) else {
            return;
        };
        match role {
            UdpRole::Answer => self.answer(&(vnet, ip.dst, 17, sp), ip.src, Answer::Answered),
            UdpRole::Probe => {
                // Multicast and broadcast are announcements (SSDP, mDNS),
                // not probes of hosts.
                let group = match ip.dst {
                    IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.octets()[3] == 255,
                    IpAddr::V6(a) => a.is_multicast(),
                };
                if group {
                    return;
                }
                let key = (vnet, ip.src, 17, dp);
                if self.probe(key, ip.dst, "udp", ts) {
                    self.judge(&key, ts, out);
                }
            }
        }
    }

    fn judge(&mut self, key: &SweepKey, ts: Timestamp, out: &mut Vec<AlertRecord>) {
        let (threshold, grace) = (self.hosts, self.grace_us);
        let w = self.window_us;
        let Some(s) = self.t.get_mut(key) else { return };
        if s.alerted {
            return;
        }
        let n = s.hosts.unanswered(ts.0, grace);
        if n < threshold {
            if !s.watched && s.hosts.len() >= threshold && self.watch.len() < MAX_WATCHED {
                s.watched = true;
                self.watch.push(*key);
            }
            return;
        }
        s.alerted = true;
        let (vnet, src, proto, port) = *key;
        let kinds: Vec<&str> = SWEEP_KINDS
            .iter()
            .enumerate()
            .filter(|(i, _)| s.kinds & (1 << i) != 0)
            .map(|(_, k)| *k)
            .collect();
        let (kind, sid, what) = match proto {
            6 => (
                HOST_SWEEP,
                9_000_002,
                format!("TCP {} port {port}", kinds.join("/").to_uppercase()),
            ),
            17 => (UDP_SWEEP, 9_000_009, format!("UDP port {port}")),
            _ => (HOST_SWEEP, 9_000_002, "ICMP echo".to_string()),
        };
        let (answered, refused) = s.hosts.answers();
        let first: Vec<String> = s.hosts.first(5).map(|k| key_addr(k).to_string()).collect();
        out.push(AlertRecord {
            tunnel: Default::default(),
            time: s.start,
            end: ts.max(s.last),
            vnet,
            kind: kind.name,
            // EVE's dest_ip: the host probed last.
            trigger: s.hosts.last().map(|h| (src, key_addr(h))),
            to_server: None,
            flow: None,
            signature_id: sid,
            signature: format!("moni host sweep ({what}) from {src}"),
            category: "Attempted Information Leak".into(),
            rev: 1,
            flow_id: None,
            vlans: Vec::new(),
            severity: kind.severity,
            src_addr: Some(src),
            src_port: None,
            dst_addr: None,
            dst_port: (proto != 1 && proto != 58).then_some(port),
            protocol: proto,
            details: details(&[
                ("probe", json!(kinds.join("/"))),
                ("probes", json!(s.probes)),
                ("hosts", json!(n)),
                ("answered", json!(answered)),
                ("refused", json!(refused)),
                ("threshold", json!(threshold)),
                ("window_secs", json!(w / 1_000_000)),
                ("answer_grace_ms", json!(grace / 1_000)),
                ("what", json!(what)),
                ("first_hosts", json!(first)),
            ]),
        });
    }

    /// Re-judges the watched sweeps at `now`.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<AlertRecord>) {
        late_tick(self, now, out);
    }
}

impl Detector for Sweep {
    fn name(&self) -> &'static str {
        "host_sweep"
    }

    /// TCP SYN and ACK pings, ICMP echo, and their answers (UDP: see
    /// [`Sweep::observe_udp`]).
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
        let key = match d.transport {
            Transport::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                if flags & (f::SYN | f::ACK | f::RST) == f::SYN | f::ACK {
                    // The host accepted: a client at work, not a probe.
                    self.answer(&(vnet, ip.dst, 6, src_port), ip.src, Answer::Answered);
                    return;
                }
                if bare_rst(flags) {
                    // A live host refusing an ACK ping (nmap -PA): the ping
                    // itself is a bare ACK, like every stream's.
                    let key = (vnet, ip.dst, 6, src_port);
                    let threshold = self.hosts;
                    let s = self.state(&key, ts);
                    s.probes += 1;
                    s.kinds |= sweep_bit("ack");
                    s.hosts.refused(addr_key(ip.src), ts.0);
                    if !s.judgeable(threshold) {
                        return;
                    }
                    key
                } else if flags & f::RST != 0 {
                    self.answer(&(vnet, ip.dst, 6, src_port), ip.src, Answer::Refused);
                    return;
                } else if flags & (f::SYN | f::ACK) == f::SYN {
                    let key = (vnet, ip.src, 6, dst_port);
                    if !self.probe(key, ip.dst, "syn", ts) {
                        return;
                    }
                    key
                } else {
                    return;
                }
            }
            Transport::Icmp {
                icmp_type: 8 | 128, ..
            } => {
                let key = (vnet, ip.src, ip.protocol, 0);
                if !self.probe(key, ip.dst, "echo", ts) {
                    return;
                }
                key
            }
            Transport::Icmp {
                icmp_type: 0 | 129, ..
            } => {
                self.answer(&(vnet, ip.dst, ip.protocol, 0), ip.src, Answer::Answered);
                return;
            }
            Transport::Icmp { .. } => {
                // An unreachable quoting a UDP probe refuses it.
                if let Some((prober, host, 17, port)) = quoted_probe(d) {
                    self.answer(&(vnet, prober, 17, port), host, Answer::Refused);
                }
                return;
            }
            _ => return,
        };
        self.judge(&key, ts, out);
    }

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.t.retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (self.t.len(), self.t.evicted)
    }
}

/// A detector whose keys wait on a watch list for a late judgement: a
/// probe counts once its answer's grace has passed, which a later packet
/// or the clock tick finds out.
trait LateJudged {
    type Key;
    fn watch(&mut self) -> &mut Vec<Self::Key>;
    /// The key's start and whether it alerted, while it is in the table.
    fn status(&mut self, k: &Self::Key) -> Option<(Timestamp, bool)>;
    fn window_us(&self) -> i64;
    fn judge(&mut self, k: &Self::Key, now: Timestamp, out: &mut Vec<AlertRecord>);
}

/// Judges every watched key still inside its window; the ones that have
/// not alerted stay watched.
fn late_tick<D: LateJudged>(d: &mut D, now: Timestamp, out: &mut Vec<AlertRecord>) {
    if d.watch().is_empty() {
        return;
    }
    let keys = std::mem::take(d.watch());
    let w = d.window_us();
    for k in keys {
        let live = d
            .status(&k)
            .is_some_and(|(start, alerted)| !alerted && now.micros_since(start) <= w);
        if !live {
            continue;
        }
        d.judge(&k, now, out);
        if d.status(&k).is_some_and(|(_, alerted)| !alerted) {
            d.watch().push(k);
        }
    }
}

impl LateJudged for PortScan {
    type Key = ScanKey;
    fn watch(&mut self) -> &mut Vec<ScanKey> {
        &mut self.watch
    }
    fn status(&mut self, k: &ScanKey) -> Option<(Timestamp, bool)> {
        self.t.get_mut(k).map(|s| (s.start, s.alerted))
    }
    fn window_us(&self) -> i64 {
        self.window_us
    }
    fn judge(&mut self, k: &ScanKey, now: Timestamp, out: &mut Vec<AlertRecord>) {
        PortScan::judge(self, k, now, out);
    }
}

impl LateJudged for Sweep {
    type Key = SweepKey;
    fn watch(&mut self) -> &mut Vec<SweepKey> {
        &mut self.watch
    }
    fn status(&mut self, k: &SweepKey) -> Option<(Timestamp, bool)> {
        self.t.get_mut(k).map(|s| (s.start, s.alerted))
    }
    fn window_us(&self) -> i64 {
        self.window_us
    }
    fn judge(&mut self, k: &SweepKey, now: Timestamp, out: &mut Vec<AlertRecord>) {
        Sweep::judge(self, k, now, out);
    }
}

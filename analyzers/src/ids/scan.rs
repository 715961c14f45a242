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
//!
//! Cost: a key (a source and host for scans, a source and port for
//! sweeps) enters its table only at its second probe; its first waits in
//! a fixed array of slots ([`super::state::FirstProbes`], in a
//! [`SecondProbeTable`]) with the answers it gets, and
//! seeds the entry, so every count still includes it. Most sources on a
//! busy network probe once (a DNS query, a ping, a client's connection to
//! a server) and make no table entry.

use std::net::IpAddr;

use serde_json::json;

use super::state::{
    addr_key, key_addr, Answer, FirstProbes, InlineVec, ProbeSet, SecondProbeTable,
};
use super::{details, Detector, IdsConfig, HOST_SWEEP, PORT_SCAN, UDP_SWEEP};
use crate::decode::{tcp_flags as f, Decoded, Fragment, IpLayer, Transport};
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

/// A segment whose prober is its destination (an answer: SYN-ACK or
/// RST), so both detectors key it the other way round.
#[inline]
pub(crate) fn answer_like(flags: u8) -> bool {
    flags & f::RST != 0 || flags & (f::SYN | f::ACK) == f::SYN | f::ACK
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

    /// Records one event at `at_us` (`cap`: ports kept per list,
    /// `stealth_cap` for the stealth list).
    fn record(&mut self, ev: ScanEvent, at_us: i64, cap: usize, stealth_cap: usize) {
        match ev {
            ScanEvent::None => {}
            ScanEvent::Tcp(bit, port) => {
                self.probes += 1;
                self.kinds |= bit;
                push_capped(&mut self.ports, port, cap);
                if bit != kind_bit("syn") {
                    push_capped(&mut self.stealth, port, stealth_cap);
                }
            }
            ScanEvent::AckRefused(port) => {
                self.probes += 1;
                self.closed += 1;
                self.kinds |= kind_bit("ack");
                push_capped(&mut self.ack, port, cap);
            }
            ScanEvent::Udp(port) => {
                self.probes += 1;
                self.kinds |= kind_bit("udp");
                self.udp.probe(port, at_us);
            }
            ScanEvent::Unreachable(port) => {
                self.closed += 1;
                self.kinds |= kind_bit("udp");
                self.udp.refused(port, at_us);
            }
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

/// One event that makes or feeds a port-scan key.
#[derive(Clone, Copy, Debug, Default)]
enum ScanEvent {
    #[default]
    None,
    /// A TCP probe (its kind's bit) to a port.
    Tcp(u8, u16),
    /// A bare RST from a port: an ACK probe refused.
    AckRefused(u16),
    /// A UDP probe to a port.
    Udp(u16),
    /// An ICMP unreachable quoting a UDP probe to a port.
    Unreachable(u16),
}

/// A key's first event while it waits for its second
/// ([`SecondProbeTable`]), with the answers seen meanwhile.
#[derive(Clone, Copy, Debug, Default)]
struct ScanFirst {
    ev: ScanEvent,
    open: u8,
    closed: u8,
    udp_answered: bool,
}

type ScanKey = (VnetId, IpAddr, IpAddr);

/// One source probing many ports of one host.
pub struct PortScan {
    /// (source, host) pairs, entering at their second event.
    t: SecondProbeTable<ScanKey, ScanState, ScanFirst>,
    watch: Vec<ScanKey>,
    window_us: i64,
    grace_us: i64,
    ports: usize,
    stealth: usize,
}

impl PortScan {
    pub fn new(c: &IdsConfig) -> Self {
        PortScan {
            t: SecondProbeTable::new(c.max_tracked),
            watch: Vec::new(),
            window_us: i64::from(c.scan_window_secs) * 1_000_000,
            grace_us: i64::from(c.answer_grace_ms) * 1_000,
            ports: c.scan_ports as usize,
            stealth: c.stealth_ports as usize,
        }
    }

    /// New thresholds, same state (SIGHUP).
    pub fn reconfigure(&mut self, c: &IdsConfig) {
        let t = std::mem::replace(&mut self.t, SecondProbeTable::new(1));
        let watch = std::mem::take(&mut self.watch);
        *self = PortScan::new(c);
        self.t = t;
        self.watch = watch;
    }

    /// Records `ev` for `key` at `ts`: in the table when the key is there
    /// or this is its second event (it enters seeded with its first, and a
    /// window that ended starts afresh), else as the key's first event.
    /// Whether [`PortScan::judge`] can do anything for the key now.
    fn event(&mut self, key: &ScanKey, ts: Timestamp, ev: ScanEvent) -> bool {
        let (w, pt, st) = (self.window_us, self.ports, self.stealth);
        let (cap, stealth_cap, udp_cap) = (pt + 1, st + 1, 2 * pt + 32);
        let first = ScanFirst {
            ev,
            ..ScanFirst::default()
        };
        let seed = |at: i64, f: ScanFirst| {
            let mut s = ScanState::new(Timestamp(at), udp_cap);
            s.record(f.ev, at, cap, stealth_cap);
            s.open += u64::from(f.open);
            s.closed += u64::from(f.closed);
            if let (true, ScanEvent::Udp(port)) = (f.udp_answered, f.ev) {
                s.udp.answer(port, Answer::Answered);
            }
            s
        };
        let Some(s) = self.t.probe(key, ts.0, w, first, seed) else {
            return false;
        };
        if ts.micros_since(s.start) > w {
            *s = ScanState::new(ts, udp_cap);
        }
        s.udp.raise_cap(udp_cap);
        s.last = ts;
        s.record(ev, ts.0, cap, stealth_cap);
        s.judgeable(pt, st)
    }

    /// The hash of the key a TCP segment or a UDP exchange's first
    /// datagram is looked up under, and where that lookup reads first
    /// (see [`SecondProbeTable::lines`]), for a caller that prefetches it
    /// a few packets ahead. `answer`: the packet answers a probe (its
    /// destination is the prober).
    #[inline]
    pub fn lines(&self, vnet: VnetId, ip: &IpLayer, answer: bool) -> (u64, [Option<*const u8>; 2]) {
        self.t.lines(&Self::key(vnet, ip, answer))
    }

    #[inline]
    fn key(vnet: VnetId, ip: &IpLayer, answer: bool) -> ScanKey {
        if answer {
            (vnet, ip.dst, ip.src)
        } else {
            (vnet, ip.src, ip.dst)
        }
    }

    /// Where that lookup reads next, once the index line has arrived.
    #[inline]
    pub fn entry_line(&self, h: u64) -> Option<*const u8> {
        self.t.entry_line(h)
    }

    /// An answer to `key`'s prober: to its state, or to its pending first
    /// event.
    fn answer(
        &mut self,
        key: &ScanKey,
        ts: Timestamp,
        tracked: impl FnOnce(&mut ScanState),
        pending: impl FnOnce(&mut ScanFirst),
    ) {
        self.t.answer(key, ts.0, self.window_us, tracked, pending);
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
            UdpRole::Answer => self.answer(
                &(vnet, ip.dst, ip.src),
                ts,
                |s| {
                    s.udp.answer(sp, Answer::Answered);
                    s.open += 1;
                },
                |f| {
                    if let ScanEvent::Udp(port) = f.ev {
                        f.udp_answered |= port == sp;
                    }
                    f.open = f.open.saturating_add(1);
                },
            ),
            UdpRole::Probe => {
                let key = (vnet, ip.src, ip.dst);
                if self.event(&key, ts, ScanEvent::Udp(dp)) {
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
        let Some(s) = self.t.table.get_mut(key) else {
            return;
        };
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
            gate: None,
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
        let (key, ev) = match d.transport {
            Transport::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                if bare_rst(flags) {
                    // An ACK (or Window) probe refused: the prober is the
                    // RST's destination.
                    ((vnet, ip.dst, ip.src), ScanEvent::AckRefused(src_port))
                } else if flags & f::RST != 0 || flags & (f::SYN | f::ACK) == f::SYN | f::ACK {
                    // Answers to a prober: SYN-ACK (open) or RST (closed).
                    let rst = flags & f::RST != 0;
                    self.answer(
                        &(vnet, ip.dst, ip.src),
                        ts,
                        |s| {
                            if rst {
                                s.closed += 1;
                            } else {
                                s.open += 1;
                            }
                        },
                        |f| {
                            if rst {
                                f.closed = f.closed.saturating_add(1);
                            } else {
                                f.open = f.open.saturating_add(1);
                            }
                        },
                    );
                    return;
                } else {
                    let Some(kind) = tcp_probe(flags) else { return };
                    (
                        (vnet, ip.src, ip.dst),
                        ScanEvent::Tcp(kind_bit(kind), dst_port),
                    )
                }
            }
            Transport::Icmp { .. } => {
                // A closed UDP port answers with ICMP port unreachable,
                // quoting the probe.
                let Some((prober, host, 17, port)) = quoted_probe(d) else {
                    return;
                };
                ((vnet, prober, host), ScanEvent::Unreachable(port))
            }
            _ => return,
        };
        if self.event(&key, ts, ev) {
            self.judge(&key, ts, out);
        }
    }

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.t.table.retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (self.t.table.len(), self.t.evicted())
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
    /// No alert can come before `next_aging` plus the answer grace (as
    /// [`ProbeSet::next_aging`] at the last judgement that found too few
    /// unanswered hosts, lowered by every pending probe since; `i64::MIN`
    /// after a refusal, which may be the one missing): a sweep whose set
    /// is full of probes still in their grace is not judged again at each
    /// probe. A one-port sweep of a /16 at full speed was judged (every
    /// probe counted) at each of its packets for a whole grace.
    next_aging: i64,
    /// The unanswered probes that judgement counted: the count can only
    /// have fallen since, which is below the threshold unless a reload
    /// lowered it (then the sweep is judged again at once).
    unanswered: u32,
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

/// A sweep key's first probe while it waits for its second
/// ([`SecondProbeTable`]): the host ([`addr_key`]), the probe kind's bit and
/// what became of it.
#[derive(Clone, Copy, Debug, Default)]
struct SweepFirst {
    /// The host's [`addr_key`] as four words: 4-byte aligned, so a
    /// [`FirstProbes`] slot takes 32 bytes instead of the 48 a `u128`'s
    /// alignment would pad it to (a third less of the array every first
    /// probe writes at random).
    host: [u32; 4],
    kind: u8,
    answer: Answer,
}

impl SweepFirst {
    fn host(&self) -> u128 {
        let [a, b, c, d] = self.host.map(u128::from);
        a << 96 | b << 64 | c << 32 | d
    }
}

const _: () = assert!(FirstProbes::<SweepFirst>::SLOT_BYTES == 32);

/// `host` as [`SweepFirst::host`] keeps it.
fn host_words(host: u128) -> [u32; 4] {
    [
        (host >> 96) as u32,
        (host >> 64) as u32,
        (host >> 32) as u32,
        host as u32,
    ]
}

impl SweepState {
    /// Records a probe of `host` at `at_us` (refused already: the bare RST
    /// of an ACK ping).
    fn record(&mut self, host: u128, kind: u8, refused: bool, at_us: i64) {
        self.probes += 1;
        self.kinds |= kind;
        if refused {
            self.hosts.refused(host, at_us);
            self.next_aging = i64::MIN;
        } else if self.hosts.probe(host, at_us) {
            self.next_aging = self.next_aging.min(at_us);
        }
    }

    /// `host` answered or refused.
    fn answer(&mut self, host: u128, how: Answer) {
        self.hosts.answer(host, how);
        if how == Answer::Refused {
            self.next_aging = i64::MIN;
        }
    }
}

/// One source probing one port (or ICMP echo) on many hosts that do not
/// answer, or refuse.
pub struct Sweep {
    /// (source, protocol, port) keys, entering at their second probe.
    t: SecondProbeTable<SweepKey, SweepState, SweepFirst>,
    watch: Vec<SweepKey>,
    window_us: i64,
    grace_us: i64,
    hosts: usize,
}

impl Sweep {
    pub fn new(c: &IdsConfig) -> Self {
        Sweep {
            t: SecondProbeTable::new(c.max_tracked),
            watch: Vec::new(),
            window_us: i64::from(c.sweep_window_secs) * 1_000_000,
            grace_us: i64::from(c.answer_grace_ms) * 1_000,
            hosts: c.sweep_hosts as usize,
        }
    }

    /// New thresholds, same state (SIGHUP).
    pub fn reconfigure(&mut self, c: &IdsConfig) {
        let t = std::mem::replace(&mut self.t, SecondProbeTable::new(1));
        let watch = std::mem::take(&mut self.watch);
        *self = Sweep::new(c);
        self.t = t;
        self.watch = watch;
    }

    /// Records a probe of `host` by `key` (refused already: the bare RST
    /// of an ACK ping): in the table when the key is there or this is its
    /// second probe (it enters seeded with its first, and a window that
    /// ended starts afresh), else as the key's first probe. Whether
    /// [`Sweep::judge`] can do anything for the key now (see
    /// [`SweepState::judgeable`]).
    fn probe(
        &mut self,
        key: SweepKey,
        host: IpAddr,
        kind: &str,
        refused: bool,
        ts: Timestamp,
    ) -> bool {
        let (w, threshold) = (self.window_us, self.hosts);
        let cap = 2 * threshold + 32;
        let fresh = |at: i64| SweepState {
            start: Timestamp(at),
            last: Timestamp(at),
            hosts: ProbeSet::new(cap),
            probes: 0,
            kinds: 0,
            watched: false,
            alerted: false,
            next_aging: i64::MIN,
            unanswered: 0,
        };
        let (host, kind) = (addr_key(host), sweep_bit(kind));
        let answer = if refused {
            Answer::Refused
        } else {
            Answer::Pending
        };
        let first = SweepFirst {
            host: host_words(host),
            kind,
            answer,
        };
        let seed = |at: i64, f: SweepFirst| {
            let mut s = fresh(at);
            s.record(f.host(), f.kind, false, at);
            s.answer(f.host(), f.answer);
            s
        };
        let Some(s) = self.t.probe(&key, ts.0, w, first, seed) else {
            return false;
        };
        if ts.micros_since(s.start) > w {
            *s = fresh(ts.0);
        }
        s.hosts.raise_cap(cap);
        s.last = ts;
        s.record(host, kind, refused, ts.0);
        s.judgeable(threshold)
    }

    /// As [`PortScan::lines`], for this detector's key.
    #[inline]
    pub fn lines(
        &self,
        vnet: VnetId,
        ip: &IpLayer,
        ports: (u16, u16),
        answer: bool,
    ) -> (u64, [Option<*const u8>; 2]) {
        self.t.lines(&Self::key(vnet, ip, ports, answer))
    }

    #[inline]
    fn key(vnet: VnetId, ip: &IpLayer, ports: (u16, u16), answer: bool) -> SweepKey {
        if answer {
            (vnet, ip.dst, ip.protocol, ports.0)
        } else {
            (vnet, ip.src, ip.protocol, ports.1)
        }
    }

    /// Where that lookup reads next, once the index line has arrived.
    #[inline]
    pub fn entry_line(&self, h: u64) -> Option<*const u8> {
        self.t.entry_line(h)
    }

    /// `host` answered (or refused) `key`'s probe: in its state, or its
    /// pending first probe.
    fn answer(&mut self, key: &SweepKey, host: IpAddr, how: Answer, ts: Timestamp) {
        let host = addr_key(host);
        self.t.answer(
            key,
            ts.0,
            self.window_us,
            |s| s.answer(host, how),
            |f| {
                if f.host() == host && f.answer != Answer::Refused {
                    f.answer = how;
                }
            },
        );
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
            UdpRole::Answer => self.answer(&(vnet, ip.dst, 17, sp), ip.src, Answer::Answered, ts),
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
                if self.probe(key, ip.dst, "udp", false, ts) {
                    self.judge(&key, ts, out);
                }
            }
        }
    }

    fn judge(&mut self, key: &SweepKey, ts: Timestamp, out: &mut Vec<AlertRecord>) {
        let (threshold, grace) = (self.hosts, self.grace_us);
        let w = self.window_us;
        let Some(s) = self.t.table.get_mut(key) else {
            return;
        };
        if s.alerted {
            return;
        }
        let quiet =
            (s.unanswered as usize) < threshold && ts.0.saturating_sub(grace) < s.next_aging;
        let n = if quiet {
            0
        } else {
            s.hosts.unanswered(ts.0, grace)
        };
        if n < threshold {
            if !quiet {
                s.next_aging = s.hosts.next_aging(ts.0, grace);
                s.unanswered = u32::try_from(n).unwrap_or(u32::MAX);
            }
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
            gate: None,
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
                    self.answer(&(vnet, ip.dst, 6, src_port), ip.src, Answer::Answered, ts);
                    return;
                }
                if bare_rst(flags) {
                    // A live host refusing an ACK ping (nmap -PA): the ping
                    // itself is a bare ACK, like every stream's.
                    let key = (vnet, ip.dst, 6, src_port);
                    if !self.probe(key, ip.src, "ack", true, ts) {
                        return;
                    }
                    key
                } else if flags & f::RST != 0 {
                    self.answer(&(vnet, ip.dst, 6, src_port), ip.src, Answer::Refused, ts);
                    return;
                } else if flags & (f::SYN | f::ACK) == f::SYN {
                    let key = (vnet, ip.src, 6, dst_port);
                    if !self.probe(key, ip.dst, "syn", false, ts) {
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
                if !self.probe(key, ip.dst, "echo", false, ts) {
                    return;
                }
                key
            }
            Transport::Icmp {
                icmp_type: 0 | 129, ..
            } => {
                self.answer(
                    &(vnet, ip.dst, ip.protocol, 0),
                    ip.src,
                    Answer::Answered,
                    ts,
                );
                return;
            }
            Transport::Icmp { .. } => {
                // An unreachable quoting a UDP probe refuses it.
                if let Some((prober, host, 17, port)) = quoted_probe(d) {
                    self.answer(&(vnet, prober, 17, port), host, Answer::Refused, ts);
                }
                return;
            }
            _ => return,
        };
        self.judge(&key, ts, out);
    }

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.t.table.retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (self.t.table.len(), self.t.evicted())
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
        self.t.table.get_mut(k).map(|s| (s.start, s.alerted))
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
        self.t.table.get_mut(k).map(|s| (s.start, s.alerted))
    }
    fn window_us(&self) -> i64 {
        self.window_us
    }
    fn judge(&mut self, k: &SweepKey, now: Timestamp, out: &mut Vec<AlertRecord>) {
        Sweep::judge(self, k, now, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first probe's host comes back from its four words as it went in,
    /// IPv4 and IPv6 alike (the seed and the answer match on it).
    #[test]
    fn a_first_probes_host_survives_its_packing() {
        for a in [
            "192.0.2.7",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "::",
            "ffff::ffff",
        ] {
            let host = addr_key(a.parse().expect("address"));
            let f = SweepFirst {
                host: host_words(host),
                ..SweepFirst::default()
            };
            assert_eq!(f.host(), host, "{a}");
            assert_eq!(key_addr(f.host()).to_string(), a);
        }
    }
}

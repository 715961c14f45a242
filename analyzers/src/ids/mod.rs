//! IDS-style behavioural detectors on mirrored traffic, on packet time and
//! in bounded memory.
//!
//! - [`scan`]: vertical port scans (one source, many ports of one host, by
//!   SYN, FIN, NULL, Xmas, bare-ACK or UDP probes; answers by RST or ICMP
//!   unreachable counted) and horizontal sweeps (one source, one port or
//!   ICMP echo, many hosts that do not answer: `host_sweep`, `udp_sweep`).
//! - [`flood`]: SYN floods judged at the victim (half-open ratio and rate,
//!   not by source, since sources are spoofed) and per VNet (random spoofed
//!   sources and destinations), UDP and ICMP floods by rate per
//!   destination, SYN-ACK reflection and UDP amplification at the victim.
//! - [`arp`]: ARP sweeps (one MAC asking for many addresses that do not
//!   answer).
//! - [`dns`]: NXDOMAIN storms per client and tunnelling (long or random
//!   labels below the registered domain, many unique subdomains).
//! - [`state`]: the capped keyed tables and HyperLogLog they keep.
//! - [`rules`]: the signature engine (a Suricata rule subset), run beside
//!   the detectors; its alerts are [`AlertRecord`]s too.
//!
//! Every detector implements [`Detector`]. Alerts name the attacker (or the
//! victim for floods), the target, the time span, the counts and the
//! threshold crossed (`details`, JSON). An episode alerts once: further
//! crossings for the same key within `cooldown_secs` are suppressed and
//! counted. Every keyed table is capped (`max_tracked`), evicting its
//! oldest key with a counter; distinct sources are HyperLogLog-counted.

pub mod arp;
pub mod dns;
pub mod flood;
pub mod rules;
pub mod scan;
pub mod state;

use std::net::IpAddr;

use crate::decode::{Decoded, Fragment, Transport};
use crate::record::AlertRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;

use state::Bounded;

/// Thresholds and windows of the behavioural detectors; also the `[ids]`
/// section of a node's config file (every key optional, unknown keys
/// rejected).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdsConfig {
    /// Whether the behavioural detectors run. Default true.
    pub enabled: bool,
    /// Which of them run, by the name their metrics carry: `port_scan`;
    /// `host_sweep`, which also raises `udp_sweep`; `flood`, which raises
    /// every flood, reflection and amplification alert; `dns`;
    /// `arp_sweep`. Default all: an operator turns off one that a
    /// network's normal traffic keeps setting off, and `bench/ids-cost.sh`
    /// measures each one's cost by turning it off.
    pub detectors: Vec<String>,
    /// Port scan: distinct ports of one host from one source within the
    /// window. Default 20 in 60 s.
    pub scan_window_secs: u32,
    pub scan_ports: u32,
    /// Stealth probes (FIN, NULL, Xmas: never seen in legitimate traffic)
    /// to this many distinct ports already make a scan. Default 3.
    pub stealth_ports: u32,
    /// Sweep: distinct hosts on one port (or ICMP echo) from one source
    /// that did not answer or refused; also UDP sweeps and ARP sweeps (one
    /// MAC asking for this many addresses). Default 20 in 60 s.
    pub sweep_window_secs: u32,
    pub sweep_hosts: u32,
    /// A sweep's or UDP scan's probe counts as unanswered once this long
    /// passed without an answer (SYN-ACK, echo reply, UDP reply, ARP
    /// reply). Default 1,000 ms.
    pub answer_grace_ms: u32,
    /// Floods: window and rates per second. Defaults 1 s; SYN 100/s to one
    /// destination with at least 80% half-open, or 100/s across a VNet to
    /// at least 50 destinations (random spoofed destinations); UDP 20,000/s
    /// and ICMP 2,000/s to one destination.
    pub flood_window_secs: u32,
    pub syn_rate: u32,
    pub syn_half_open: f64,
    pub vnet_syn_rate: u32,
    pub vnet_syn_destinations: u32,
    /// A VNet-wide SYN flood also needs this many distinct sources (one
    /// source to many hosts is a sweep). Default 50.
    pub vnet_syn_sources: u32,
    pub udp_rate: u32,
    pub icmp_rate: u32,
    /// Reflection and amplification rates are also estimated over slices
    /// this long, so short bursts count at their own rate. Default 100 ms.
    pub flood_slice_ms: u32,
    /// SYN-ACK reflection: SYN-ACKs per second to one victim that sent at
    /// most a tenth as many SYNs, from at least `reflectors` sources.
    /// Default 1,000/s.
    pub syn_ack_rate: u32,
    /// Amplification: responses per second of DNS, NTP, SNMP, SSDP, CLDAP
    /// or memcached (by source port) to one victim that sent at most a
    /// tenth as many requests, from at least `reflectors` sources. Default
    /// 5,000/s.
    pub amp_rate: u32,
    /// Distinct reflectors for both. Default 10.
    pub reflectors: u32,
    /// DNS: NXDOMAIN answers to one client within the window; query names
    /// longer than `dns_name_max`; labels below the registered domain at
    /// least `dns_entropy_min_len` long, with more than `dns_entropy`
    /// bits/char and the character mix of an encoding (digits among
    /// letters, no word separators); or one client asking for at least
    /// `dns_unique_subdomains` distinct names of one registered domain
    /// within the window, at least 16 characters below it on average.
    /// Defaults 50 in 60 s, 100, 4.0, 40, 100.
    pub dns_window_secs: u32,
    pub nxdomain_per_client: u32,
    pub dns_name_max: usize,
    pub dns_entropy: f64,
    pub dns_entropy_min_len: usize,
    pub dns_unique_subdomains: u32,
    /// Cap on keys in every detector table. Default 50,000.
    pub max_tracked: usize,
    /// An episode alerts once per this long. Default 60 s.
    pub cooldown_secs: u32,
    /// Signature files (the Suricata subset of [`rules`]); a relative path
    /// is taken from the config file's directory. Default none.
    pub rules: Vec<String>,
    /// Rule variables such as `HOME_NET = "[10.0.0.0/8]"` or
    /// `HTTP_PORTS = "[80,8080]"`; unset ones keep Suricata's defaults.
    pub vars: std::collections::BTreeMap<String, String>,
    /// Signature alerts per packet and per second of packet time, for
    /// the node (several workers' alerts are capped together); past them
    /// alerts are dropped and counted. Defaults 15 and 10,000
    /// ([`rules::AlertLimits`]).
    pub max_alerts_per_packet: u32,
    pub max_alerts_per_second: u32,
    /// Signature alerts carry the packet that raised them: EVE `packet`
    /// (base64) and `packet_info.linktype`, as Suricata's eve-log
    /// `packet: yes`; `details.packet` and `details.linktype` in the
    /// `alerts` dataset. Default false: an alert then weighs as much as
    /// its packet.
    pub alert_packet: bool,
    /// `moni-node run`: a SIGHUP reload whose rules take longer than this
    /// to load and compile is abandoned (the running rules stay).
    /// Default 10.
    pub reload_timeout_secs: u64,
}

/// The behavioural detectors, by the name of [`IdsConfig::detectors`] and
/// of their metrics ([`Ids::state`]).
pub const DETECTORS: [&str; 5] = ["port_scan", "host_sweep", "flood", "dns", "arp_sweep"];

impl IdsConfig {
    /// Whether detector `name` (one of [`DETECTORS`]) runs.
    pub fn runs(&self, name: &str) -> bool {
        self.detectors.iter().any(|d| d == name)
    }

    /// The signature alert caps of this configuration.
    pub fn alert_limits(&self) -> rules::AlertLimits {
        rules::AlertLimits {
            per_packet: self.max_alerts_per_packet,
            per_second: self.max_alerts_per_second,
        }
    }
}

impl Default for IdsConfig {
    fn default() -> Self {
        IdsConfig {
            enabled: true,
            detectors: DETECTORS.iter().map(|d| (*d).to_string()).collect(),
            scan_window_secs: 60,
            scan_ports: 20,
            stealth_ports: 3,
            sweep_window_secs: 60,
            sweep_hosts: 20,
            answer_grace_ms: 1_000,
            flood_window_secs: 1,
            syn_rate: 100,
            syn_half_open: 0.8,
            vnet_syn_rate: 100,
            vnet_syn_destinations: 50,
            vnet_syn_sources: 50,
            udp_rate: 20_000,
            icmp_rate: 2_000,
            flood_slice_ms: 100,
            syn_ack_rate: 1_000,
            amp_rate: 5_000,
            reflectors: 10,
            dns_window_secs: 60,
            nxdomain_per_client: 50,
            dns_name_max: 100,
            dns_entropy: 4.0,
            dns_entropy_min_len: 40,
            dns_unique_subdomains: 100,
            max_tracked: 50_000,
            cooldown_secs: 60,
            rules: Vec::new(),
            vars: Default::default(),
            max_alerts_per_packet: rules::AlertLimits::default().per_packet,
            max_alerts_per_second: rules::AlertLimits::default().per_second,
            alert_packet: false,
            reload_timeout_secs: 10,
        }
    }
}

/// A behavioural alert kind: the `kind` column and its severity (1 high
/// .. 3 low). The detectors raise alerts with these, and a node's
/// `moni_ids_alerts_total` starts at zero for each of [`ALERT_KINDS`], so
/// the two cannot drift apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertKind {
    pub name: &'static str,
    pub severity: u8,
}

impl AlertKind {
    const fn new(name: &'static str, severity: u8) -> Self {
        AlertKind { name, severity }
    }
}

pub const PORT_SCAN: AlertKind = AlertKind::new("port_scan", 2);
pub const HOST_SWEEP: AlertKind = AlertKind::new("host_sweep", 2);
pub const SYN_FLOOD: AlertKind = AlertKind::new("syn_flood", 1);
pub const UDP_FLOOD: AlertKind = AlertKind::new("udp_flood", 2);
pub const ICMP_FLOOD: AlertKind = AlertKind::new("icmp_flood", 2);
pub const DNS_NXDOMAIN_STORM: AlertKind = AlertKind::new("dns_nxdomain_storm", 3);
pub const DNS_TUNNEL: AlertKind = AlertKind::new("dns_tunnel", 2);
pub const UDP_SWEEP: AlertKind = AlertKind::new("udp_sweep", 2);
pub const SYN_ACK_REFLECTION: AlertKind = AlertKind::new("syn_ack_reflection", 1);
pub const AMPLIFICATION: AlertKind = AlertKind::new("amplification", 1);
pub const ARP_SWEEP: AlertKind = AlertKind::new("arp_sweep", 3);

/// Every behavioural alert kind.
pub const ALERT_KINDS: &[AlertKind] = &[
    PORT_SCAN,
    HOST_SWEEP,
    SYN_FLOOD,
    UDP_FLOOD,
    ICMP_FLOOD,
    DNS_NXDOMAIN_STORM,
    DNS_TUNNEL,
    UDP_SWEEP,
    SYN_ACK_REFLECTION,
    AMPLIFICATION,
    ARP_SWEEP,
];

/// How often (packet time) sweeps and UDP scans waiting for their answer
/// grace are judged again.
const TICK_US: i64 = 100_000;

/// UDP datagrams with more payload than this are not counted as probes:
/// scanners send empty or short protocol probes, media and bulk data are
/// larger (their first datagram still counts as an answer).
const MAX_UDP_PROBE: usize = 64;

/// One behavioural detector.
pub trait Detector {
    fn name(&self) -> &'static str;
    /// Looks at one decoded packet; alerts go to `out`.
    fn observe(&mut self, ts: Timestamp, vnet: VnetId, d: &Decoded<'_>, out: &mut Vec<AlertRecord>);
    /// Lets time pass (drops state of finished windows).
    fn advance(&mut self, now: Timestamp);
    /// Keys held now, and keys evicted at the cap so far.
    fn state(&self) -> (usize, u64);
}

/// Counters of the detectors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdsStats {
    pub alerts: u64,
    pub suppressed: u64,
}

/// What identifies an episode: kind, VNet, source, destination, port.
type EpisodeKey = (&'static str, VnetId, Option<IpAddr>, Option<IpAddr>, u16);

/// Alert de-duplication: one alert per (kind, key) episode.
#[derive(Debug)]
pub struct Suppressor {
    last: Bounded<EpisodeKey, Timestamp>,
    cooldown_us: i64,
    pub suppressed: u64,
}

impl Suppressor {
    pub fn new(cooldown_secs: u32, cap: usize) -> Self {
        Suppressor {
            last: Bounded::new(cap),
            cooldown_us: i64::from(cooldown_secs) * 1_000_000,
            suppressed: 0,
        }
    }

    /// Whether an alert for this key may be raised at `ts`.
    pub fn allow(
        &mut self,
        kind: &'static str,
        vnet: VnetId,
        a: Option<IpAddr>,
        b: Option<IpAddr>,
        port: u16,
        ts: Timestamp,
    ) -> bool {
        let cooldown = self.cooldown_us;
        let last = self
            .last
            .entry(&(kind, vnet, a, b, port), || Timestamp(i64::MIN));
        if last.0 != i64::MIN && ts.micros_since(*last) < cooldown {
            self.suppressed += 1;
            *last = ts;
            return false;
        }
        *last = ts;
        true
    }
}

/// Which detectors run, one flag each (read per packet).
#[derive(Clone, Copy, Debug)]
struct Running {
    scan: bool,
    sweep: bool,
    floods: bool,
    dns: bool,
    arp: bool,
}

impl Running {
    fn of(c: &IdsConfig) -> Running {
        Running {
            scan: c.runs("port_scan"),
            sweep: c.runs("host_sweep"),
            floods: c.runs("flood"),
            dns: c.runs("dns"),
            arp: c.runs("arp_sweep"),
        }
    }
}

/// A packet's keys in the scan and sweep detectors' tables, from
/// [`Ids::lookahead`] for [`Ids::entry_lines`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Ahead {
    scan: u64,
    sweep: u64,
    /// The packet reaches those detectors.
    some: bool,
}

impl Ahead {
    /// Whether [`Ids::lookahead`] found lines worth reading ahead: when it
    /// found none, observing the packet at once costs no cache miss the
    /// wait would hide.
    pub fn reads_ahead(&self) -> bool {
        self.some
    }
}

/// All behavioural detectors behind one entry point (held by type, not
/// boxed: the per-packet calls inline).
pub struct Ids {
    scan: scan::PortScan,
    sweep: scan::Sweep,
    floods: flood::Floods,
    dns: dns::DnsAnomalies,
    arp: arp::ArpSweep,
    /// Which detectors run (`[ids] detectors`).
    on: Running,
    /// UDP exchanges seen lately (directional): only the first datagram of
    /// each reaches the scan and sweep detectors.
    udp_recent: state::Recent,
    /// Packet time of the next late judgement of sweeps and UDP scans.
    next_tick: i64,
    suppressor: Suppressor,
    pending: Vec<AlertRecord>,
    stats: IdsStats,
}

impl Ids {
    pub fn new(config: &IdsConfig) -> Ids {
        Ids {
            scan: scan::PortScan::new(config),
            sweep: scan::Sweep::new(config),
            floods: flood::Floods::new(config),
            dns: dns::DnsAnomalies::new(config),
            arp: arp::ArpSweep::new(config),
            on: Running::of(config),
            udp_recent: state::Recent::new(16),
            next_tick: i64::MIN,
            suppressor: Suppressor::new(config.cooldown_secs, config.max_tracked),
            pending: Vec::new(),
            stats: IdsStats::default(),
        }
    }

    pub fn observe(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        out: &mut Vec<AlertRecord>,
    ) {
        if ts.0 >= self.next_tick {
            // Sweeps and UDP scans whose probes went unanswered are
            // judged as packet time passes, not only at their next probe.
            self.next_tick = ts.0.saturating_add(TICK_US);
            if self.on.scan {
                self.scan.tick(ts, &mut self.pending);
            }
            if self.on.sweep {
                self.sweep.tick(ts, &mut self.pending);
            }
        }
        let on = self.on;
        match (d.ip, d.transport) {
            (None, _) => {
                if on.arp && d.ether_type == Some(crate::decode::arp::ETHER_TYPE) {
                    self.arp.observe(ts, vnet, d, &mut self.pending);
                }
            }
            (Some(ip), Transport::Udp { src_port, dst_port }) => {
                // One hash per address per packet, shared by the
                // detectors (the flood sketches index by it, the UDP
                // exchanges below combine it).
                let (hs, hd) = (flood::addr_hash(ip.src), flood::addr_hash(ip.dst));
                if on.floods && !self.floods.fast_path(ts, vnet, d, || hd) {
                    self.floods
                        .observe_hashed(ts, vnet, d, hs, hd, &mut self.pending);
                }
                if on.dns && (src_port == 53 || dst_port == 53) {
                    self.dns.observe(ts, vnet, d, &mut self.pending);
                }
                // The first datagram of an exchange is a probe, or the
                // first answer to one; the rest of a stream costs a few
                // multiplications and a look at one bucket of recent
                // exchanges.
                let x = (on.scan || on.sweep).then(|| Exchange::of(hs, hd, src_port, dst_port));
                if let Some(x) = x.filter(|x| !self.udp_recent.seen(x.at, x.fwd)) {
                    // Seen the other way first: this is the answer.
                    let role = if self.udp_recent.peek(x.at, x.back) {
                        scan::UdpRole::Answer
                    } else {
                        scan::UdpRole::Probe
                    };
                    if role == scan::UdpRole::Answer || d.payload.len() <= MAX_UDP_PROBE {
                        if on.scan {
                            self.scan.observe_udp(ts, vnet, d, role, &mut self.pending);
                        }
                        if on.sweep {
                            self.sweep.observe_udp(ts, vnet, d, role, &mut self.pending);
                        }
                    }
                }
            }
            (Some(ip), transport) => {
                // Of TCP, the scan and sweep detectors read only SYNs,
                // RSTs and segments without ACK (probes and their
                // answers); an ACK-bearing segment without SYN or RST (the
                // bulk of every stream) is neither, and the floods only
                // count it as a completion: it stops here, on the floods'
                // fast path when it can.
                let ack = match transport {
                    Transport::Tcp { flags, .. } => {
                        use crate::decode::tcp_flags as f;
                        flags & (f::SYN | f::RST | f::ACK) == f::ACK
                    }
                    _ => false,
                };
                if on.floods
                    && !self
                        .floods
                        .fast_path(ts, vnet, d, || flood::addr_hash(ip.dst))
                {
                    let (hs, hd) = (flood::addr_hash(ip.src), flood::addr_hash(ip.dst));
                    self.floods
                        .observe_hashed(ts, vnet, d, hs, hd, &mut self.pending);
                }
                if ack {
                    return self.finish(out);
                }
                if on.scan {
                    self.scan.observe(ts, vnet, d, &mut self.pending);
                }
                if on.sweep {
                    self.sweep.observe(ts, vnet, d, &mut self.pending);
                }
            }
        }
        self.finish(out);
    }

    /// The lines [`Ids::observe`] (and [`Ids::lookahead`]) will read first
    /// for this packet, for a caller that fetches them while it does other
    /// work with the packet (copies it into its batch) before it calls
    /// them:
    /// - for a UDP datagram, the line of the recent-exchanges table (both
    ///   directions of its exchange share it): where most datagrams of
    ///   established streams missed the cache (on an IMIX capture of
    ///   13,600 UDP flows, a third of the capture loop's own time in one
    ///   load);
    /// - the flood detector's by-host sketch line ([`flood::Floods::early_line`]).
    #[inline]
    pub fn early_lines(&self, vnet: VnetId, d: &Decoded<'_>) -> [Option<*const u8>; 2] {
        let Some(ip) = d.ip else { return [None; 2] };
        let (hs, hd) = (flood::addr_hash(ip.src), flood::addr_hash(ip.dst));
        let recent = match d.transport {
            Transport::Udp { src_port, dst_port } if self.on.scan || self.on.sweep => self
                .udp_recent
                .line(Exchange::of(hs, hd, src_port, dst_port).at),
            _ => None,
        };
        let flood = if self.on.floods {
            self.floods.early_line(vnet, d, hs, hd)
        } else {
            None
        };
        [recent, flood]
    }

    /// The hashes of the scan and sweep detectors' keys for this packet,
    /// and where their lookups will read first (each detector's index
    /// entry and first-probe slot), for a caller that prefetches those
    /// lines a few packets before it calls [`Ids::observe`] for the
    /// packet, and the entries they name ([`Ids::entry_lines`]) a packet
    /// or two later: on a scan or a spoofed flood, which fills those
    /// tables with keys out of cache, each lookup would otherwise miss
    /// twice (index entry or slot, then entry). The packets that reach
    /// those detectors: TCP segments other than a bare ACK, and for UDP
    /// the first datagram of an exchange that is an answer or a probe, as
    /// far as the packets observed so far tell (a guess: it only chooses
    /// what to prefetch).
    #[inline]
    pub fn lookahead(&self, vnet: VnetId, d: &Decoded<'_>) -> (Ahead, [Option<*const u8>; 4]) {
        let none = (Ahead::default(), [None; 4]);
        let Some(ip) = d.ip else { return none };
        if !(self.on.scan || self.on.sweep) {
            return none;
        }
        let (ports, answer) = match d.transport {
            Transport::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                use crate::decode::tcp_flags as f;
                let ack = flags & (f::SYN | f::RST | f::ACK) == f::ACK;
                if ack || matches!(ip.fragment, Fragment::Later { .. }) {
                    return none;
                }
                ((src_port, dst_port), scan::answer_like(flags))
            }
            Transport::Udp { src_port, dst_port } => {
                let (hs, hd) = (flood::addr_hash(ip.src), flood::addr_hash(ip.dst));
                let x = Exchange::of(hs, hd, src_port, dst_port);
                if self.udp_recent.peek(x.at, x.fwd) {
                    return none;
                }
                let answer = self.udp_recent.peek(x.at, x.back);
                if !answer && d.payload.len() > MAX_UDP_PROBE {
                    return none;
                }
                ((src_port, dst_port), answer)
            }
            _ => return none,
        };
        let mut ahead = Ahead {
            some: true,
            ..Ahead::default()
        };
        let mut lines = [None; 4];
        if self.on.scan {
            let (h, [a, b]) = self.scan.lines(vnet, &ip, answer);
            (ahead.scan, lines[0], lines[1]) = (h, a, b);
        }
        if self.on.sweep {
            let (h, [a, b]) = self.sweep.lines(vnet, &ip, ports, answer);
            (ahead.sweep, lines[2], lines[3]) = (h, a, b);
        }
        (ahead, lines)
    }

    /// The entries of [`Ids::lookahead`]'s keys that the index lines it
    /// gave name, once those have arrived.
    #[inline]
    pub fn entry_lines(&self, ahead: &Ahead) -> [Option<*const u8>; 2] {
        if !ahead.some {
            return [None; 2];
        }
        [
            self.on
                .scan
                .then(|| self.scan.entry_line(ahead.scan))
                .flatten(),
            self.on
                .sweep
                .then(|| self.sweep.entry_line(ahead.sweep))
                .flatten(),
        ]
    }

    #[inline(always)] // once per packet: outlined, it cost 18 instructions each
    fn finish(&mut self, out: &mut Vec<AlertRecord>) {
        if !self.pending.is_empty() {
            self.emit(out);
        }
    }

    /// New thresholds, windows, cooldown and running detectors without
    /// dropping state (SIGHUP). Table caps keep their start-up values.
    pub fn reconfigure(&mut self, config: &IdsConfig) {
        self.on = Running::of(config);
        self.suppressor.cooldown_us = i64::from(config.cooldown_secs) * 1_000_000;
        self.scan.reconfigure(config);
        self.sweep.reconfigure(config);
        self.floods.reconfigure(config);
        self.dns.reconfigure(config);
        self.arp.reconfigure(config);
    }

    pub fn advance(&mut self, now: Timestamp) {
        self.scan.advance(now);
        self.sweep.advance(now);
        self.floods.advance(now);
        self.dns.advance(now);
        self.arp.advance(now);
    }

    fn emit(&mut self, out: &mut Vec<AlertRecord>) {
        for a in self.pending.drain(..) {
            // The RSTs a reflection victim gets back (backscatter) look
            // like answers to ACK pings it never sent: no sweep by it.
            if a.kind == HOST_SWEEP.name && a.details.contains("\"probe\":\"ack\"") {
                let key = (SYN_ACK_REFLECTION.name, a.vnet, None, a.src_addr, 0);
                if self.suppressor.last.get_mut(&key).is_some() {
                    continue;
                }
            }
            // A flood is one episode whatever port the crossing packet had.
            let port = if a.kind.ends_with("_flood") {
                0
            } else {
                a.dst_port.unwrap_or(0)
            };
            if self
                .suppressor
                .allow(a.kind, a.vnet, a.src_addr, a.dst_addr, port, a.time)
            {
                self.stats.alerts += 1;
                out.push(a);
            }
        }
        self.stats.suppressed = self.suppressor.suppressed;
    }

    pub fn stats(&self) -> &IdsStats {
        &self.stats
    }

    /// (detector, keys held, keys evicted) of every detector.
    pub fn state(&self) -> Vec<(&'static str, usize, u64)> {
        let dets: [&dyn Detector; 5] =
            [&self.scan, &self.sweep, &self.floods, &self.dns, &self.arp];
        dets.iter()
            .map(|d| {
                let (n, e) = d.state();
                (d.name(), n, e)
            })
            .collect()
    }
}

/// The key of a directional UDP exchange (source, destination, ports) for
/// [`state::Recent`], from the addresses' per-packet hashes: the two
/// directions differ (the first address is rotated).
#[inline]
fn exchange_hash(a: u64, b: u64, pa: u16, pb: u16) -> u64 {
    let ports = (u64::from(pa) << 16 | u64::from(pb)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let x = a.rotate_left(23) ^ b ^ ports;
    let x = (x ^ (x >> 32)).wrapping_mul(0xd6e8_feb8_6659_fd93);
    x ^ (x >> 29)
}

/// A UDP datagram's exchange in [`state::Recent`]: each direction's key,
/// and the bucket both share (so that whether the exchange is known and
/// whether its answer came first are one line read).
#[derive(Clone, Copy)]
struct Exchange {
    at: u64,
    fwd: u64,
    back: u64,
}

impl Exchange {
    /// From the addresses' per-packet hashes and the ports.
    #[inline]
    fn of(hs: u64, hd: u64, src_port: u16, dst_port: u16) -> Exchange {
        let fwd = exchange_hash(hs, hd, src_port, dst_port);
        let back = exchange_hash(hd, hs, dst_port, src_port);
        Exchange {
            at: fwd ^ back,
            fwd,
            back,
        }
    }
}

/// Builds an alert's JSON `details` from key/value pairs.
pub(crate) fn details(pairs: &[(&str, serde_json::Value)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests;

//! SYN, UDP and ICMP floods.
//!
//! A SYN flood's sources are spoofed, so it is judged where it lands: per
//! destination, by the rate of SYNs and the share that never complete the
//! handshake (half-open); and per VNet, for floods whose destinations are
//! random too. Distinct sources are HyperLogLog-counted (fixed memory under
//! millions of spoofed addresses). UDP and ICMP floods are rates per
//! destination.
//!
//! Cost: ordinary packets (UDP media, TCP data and ACKs) only bump a
//! count-min sketch per VNet and window (two rows of 4,096 counters per
//! kind, keyed by destination): one small-table lookup and one hash per
//! packet, and fixed memory whatever the number of destinations. Counts
//! from the sketch are upper bounds (a destination can only be over-counted,
//! by at most the window's traffic / 4,096 with high probability). Only
//! SYNs, rare in normal traffic, keep exact per-destination state.

use std::net::IpAddr;

use serde_json::json;

use super::state::{Bounded, Hll};
use super::{details, AlertKind, Detector, IdsConfig, ICMP_FLOOD, SYN_FLOOD, UDP_FLOOD};
use crate::decode::{tcp_flags as f, Decoded, Transport};
use crate::record::AlertRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;

use std::hash::BuildHasher;

/// Exact state of SYNs to one destination in the current window.
#[derive(Debug, Default)]
struct SynWindow {
    start: Timestamp,
    syns: u64,
    sources: Hll,
    ports: Hll,
    alerted: bool,
}

const CMS_WIDTH: usize = 4096;
/// VNets with flood state at once (each holds 96 KiB of sketches).
const MAX_VNETS: usize = 64;

/// Count-min sketch: two rows of counters, estimate = the smaller.
#[derive(Debug)]
struct Cms {
    rows: Box<[[u32; CMS_WIDTH]; 2]>,
}

impl Default for Cms {
    fn default() -> Self {
        Cms {
            rows: Box::new([[0; CMS_WIDTH]; 2]),
        }
    }
}

impl Cms {
    fn add(&mut self, h: u64) -> u32 {
        let (a, b) = ((h as usize) % CMS_WIDTH, ((h >> 32) as usize) % CMS_WIDTH);
        self.rows[0][a] = self.rows[0][a].saturating_add(1);
        self.rows[1][b] = self.rows[1][b].saturating_add(1);
        self.rows[0][a].min(self.rows[1][b])
    }

    fn get(&self, h: u64) -> u32 {
        let (a, b) = ((h as usize) % CMS_WIDTH, ((h >> 32) as usize) % CMS_WIDTH);
        self.rows[0][a].min(self.rows[1][b])
    }

    fn clear(&mut self) {
        for r in self.rows.iter_mut() {
            r.fill(0);
        }
    }
}

/// Per VNet and window: sketches of ACKs, UDP and ICMP by destination, and
/// the VNet-wide SYN counts.
#[derive(Debug, Default)]
struct VnetWindow {
    start: Timestamp,
    acks: Cms,
    udp: Cms,
    icmp: Cms,
    syns: u64,
    completions: u64,
    sources: Hll,
    destinations: Hll,
    alerted: bool,
}

pub struct Floods {
    by_dst: Bounded<(VnetId, IpAddr), SynWindow>,
    /// Few VNets: a short list with the last hit first tried.
    by_vnet: Vec<(VnetId, VnetWindow)>,
    last_vnet: usize,
    vnets_evicted: u64,
    hasher: foldhash::fast::FixedState,
    window_us: i64,
    secs: u64,
    syn: u64,
    half_open: f64,
    vnet_syn: u64,
    vnet_dsts: f64,
    udp: u32,
    icmp: u32,
}

impl Floods {
    pub fn new(c: &IdsConfig) -> Self {
        let secs = u64::from(c.flood_window_secs.max(1));
        Floods {
            by_dst: Bounded::new(c.max_tracked),
            by_vnet: Vec::new(),
            last_vnet: 0,
            vnets_evicted: 0,
            hasher: foldhash::fast::FixedState::with_seed(0x666c6f6f64),
            window_us: secs as i64 * 1_000_000,
            secs,
            syn: u64::from(c.syn_rate) * secs,
            half_open: c.syn_half_open,
            vnet_syn: u64::from(c.vnet_syn_rate) * secs,
            vnet_dsts: f64::from(c.vnet_syn_destinations),
            udp: u32::try_from(u64::from(c.udp_rate) * secs).unwrap_or(u32::MAX),
            icmp: u32::try_from(u64::from(c.icmp_rate) * secs).unwrap_or(u32::MAX),
        }
    }
}

impl Floods {
    /// New thresholds, same state (SIGHUP).
    pub fn reconfigure(&mut self, c: &IdsConfig) {
        let by_dst = std::mem::replace(&mut self.by_dst, Bounded::new(1));
        let by_vnet = std::mem::take(&mut self.by_vnet);
        let (last, evicted) = (self.last_vnet, self.vnets_evicted);
        *self = Floods::new(c);
        self.by_dst = by_dst;
        self.by_vnet = by_vnet;
        self.last_vnet = last;
        self.vnets_evicted = evicted;
    }
}

#[allow(clippy::too_many_arguments)] // the alert's fields
fn alert(
    kind: AlertKind,
    sid: u32,
    vnet: VnetId,
    start: Timestamp,
    ts: Timestamp,
    victim: Option<IpAddr>,
    port: Option<u16>,
    protocol: u8,
    what: String,
    d: &[(&str, serde_json::Value)],
    trigger: (IpAddr, IpAddr),
) -> AlertRecord {
    AlertRecord {
        tunnel: Default::default(),
        time: start,
        end: ts,
        vnet,
        kind: kind.name,
        signature_id: sid,
        signature: what,
        category: "Attempted Denial of Service".into(),
        rev: 1,
        flow_id: None,
        vlans: Vec::new(),
        severity: kind.severity,
        src_addr: None,
        src_port: None,
        dst_addr: victim,
        dst_port: port,
        protocol,
        details: details(d),
        trigger: Some(trigger),
        to_server: None,
        flow: None,
    }
}

impl Detector for Floods {
    fn name(&self) -> &'static str {
        "flood"
    }

    fn observe(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        out: &mut Vec<AlertRecord>,
    ) {
        let Some(ip) = d.ip else { return };
        let wu = self.window_us;
        let secs = self.secs;
        let (syn, ack) = match d.transport {
            Transport::Tcp { flags, .. } => (
                flags & (f::SYN | f::ACK | f::RST) == f::SYN,
                // The client's ACK that completes a handshake, or any later
                // segment: the connection is not half-open.
                flags & (f::SYN | f::ACK | f::RST) == f::ACK,
            ),
            _ => (false, false),
        };
        let udp = matches!(d.transport, Transport::Udp { .. });
        let icmp = matches!(d.transport, Transport::Icmp { .. });
        if !(syn || ack || udp || icmp) {
            return;
        }
        // One u128 write hashes faster than the IpAddr enum.
        let key: u128 = match ip.dst {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a) ^ (1 << 127),
        };
        let h = self.hasher.hash_one(key);
        let i = match self.by_vnet.get(self.last_vnet) {
            Some((id, _)) if *id == vnet => self.last_vnet,
            _ => match self.by_vnet.iter().position(|(id, _)| *id == vnet) {
                Some(i) => i,
                None => {
                    if self.by_vnet.len() >= MAX_VNETS {
                        self.by_vnet.remove(0);
                        self.vnets_evicted += 1;
                    }
                    self.by_vnet.push((vnet, VnetWindow::default()));
                    self.by_vnet.len() - 1
                }
            },
        };
        self.last_vnet = i;
        let Some((_, v)) = self.by_vnet.get_mut(i) else {
            return;
        };
        if ts.micros_since(v.start) > wu || v.start.0 == 0 {
            v.start = ts;
            v.acks.clear();
            v.udp.clear();
            v.icmp.clear();
            v.syns = 0;
            v.completions = 0;
            v.sources = Hll::default();
            v.destinations = Hll::default();
            v.alerted = false;
        }
        let start = v.start;
        if ack {
            v.acks.add(h);
            v.completions += 1;
            return;
        }
        if udp {
            if v.udp.add(h) == self.udp {
                out.push(alert(
                    UDP_FLOOD,
                    9_000_004,
                    vnet,
                    start,
                    ts,
                    Some(ip.dst),
                    d.ports().map(|p| p.1),
                    17,
                    format!("moni UDP flood against {}", ip.dst),
                    &[
                        ("udp_packets_est", json!(self.udp)),
                        ("threshold_packets", json!(self.udp)),
                        ("window_secs", json!(secs)),
                    ],
                    (ip.src, ip.dst),
                ));
            }
            return;
        }
        if icmp {
            if v.icmp.add(h) == self.icmp {
                out.push(alert(
                    ICMP_FLOOD,
                    9_000_005,
                    vnet,
                    start,
                    ts,
                    Some(ip.dst),
                    None,
                    ip.protocol,
                    format!("moni ICMP flood against {}", ip.dst),
                    &[
                        ("icmp_packets_est", json!(self.icmp)),
                        ("threshold_packets", json!(self.icmp)),
                        ("window_secs", json!(secs)),
                    ],
                    (ip.src, ip.dst),
                ));
            }
            return;
        }
        // A SYN: VNet-wide counts (spoofed sources *and* destinations) ...
        v.syns += 1;
        v.sources.add(&ip.src);
        v.destinations.add(&ip.dst);
        let acks_to_dst = u64::from(v.acks.get(h));
        if !v.alerted && v.syns >= self.vnet_syn {
            let half_open = 1.0 - (v.completions.min(v.syns) as f64 / v.syns as f64);
            let dsts = v.destinations.estimate();
            if half_open >= self.half_open && dsts >= self.vnet_dsts {
                v.alerted = true;
                out.push(alert(
                    SYN_FLOOD,
                    9_000_006,
                    vnet,
                    start,
                    ts,
                    None,
                    None,
                    6,
                    "moni SYN flood across the VNet (spoofed sources and destinations)".to_string(),
                    &[
                        ("syns", json!(v.syns)),
                        ("completions", json!(v.completions)),
                        ("half_open_ratio", json!(half_open)),
                        ("distinct_sources_est", json!(v.sources.estimate().round())),
                        ("distinct_destinations_est", json!(dsts.round())),
                        ("threshold_syns", json!(self.vnet_syn)),
                        ("window_secs", json!(secs)),
                    ],
                    (ip.src, ip.dst),
                ));
            }
        }
        // ... and exact state at the destination.
        let port = d.ports().map(|p| p.1);
        let w = self.by_dst.entry(&(vnet, ip.dst), SynWindow::default);
        if ts.micros_since(w.start) > wu || w.start.0 == 0 {
            *w = SynWindow {
                start: ts,
                ..SynWindow::default()
            };
        }
        w.syns += 1;
        w.sources.add(&ip.src);
        w.ports.add(&port);
        if w.alerted || w.syns < self.syn {
            return;
        }
        let half_open = 1.0 - (acks_to_dst.min(w.syns) as f64 / w.syns as f64);
        // One source walking many ports is a scan (the port-scan detector's
        // business), not a flood: a flood hits few ports, or comes from
        // many (spoofed) sources.
        let sources = w.sources.estimate();
        let scan_like = sources < 10.0 && w.ports.estimate() > 20.0;
        if half_open >= self.half_open && !scan_like {
            w.alerted = true;
            out.push(alert(
                SYN_FLOOD,
                9_000_003,
                vnet,
                w.start,
                ts,
                Some(ip.dst),
                port,
                6,
                format!("moni SYN flood against {}", ip.dst),
                &[
                    ("syns", json!(w.syns)),
                    ("completions_est", json!(acks_to_dst)),
                    ("half_open_ratio", json!(half_open)),
                    ("distinct_sources_est", json!(sources.round())),
                    ("distinct_ports_est", json!(w.ports.estimate().round())),
                    ("threshold_syns", json!(self.syn)),
                    ("window_secs", json!(secs)),
                ],
                (ip.src, ip.dst),
            ));
        }
    }

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.by_dst.retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (
            self.by_dst.len() + self.by_vnet.len(),
            self.by_dst.evicted + self.vnets_evicted,
        )
    }
}

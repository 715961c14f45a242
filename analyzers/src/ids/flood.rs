//! SYN, UDP and ICMP floods.
//!
//! A SYN flood's sources are spoofed, so it is judged where it lands: per
//! destination, by the rate of SYNs and the share that never complete the
//! handshake (half-open); and per VNet, for floods whose destinations are
//! random too. Distinct sources are HyperLogLog-counted (fixed memory under
//! millions of spoofed addresses). UDP and ICMP floods are rates per
//! destination.

use std::net::IpAddr;

use serde_json::json;

use super::state::{Bounded, Hll};
use super::{details, Detector, IdsConfig};
use crate::decode::{tcp_flags as f, Decoded, Transport};
use crate::record::AlertRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;

#[derive(Debug, Default)]
struct Window {
    start: Timestamp,
    syns: u64,
    completions: u64,
    udp: u64,
    icmp: u64,
    sources: Hll,
    destinations: Hll,
    ports: Hll,
}

impl Window {
    fn at(ts: Timestamp) -> Self {
        Window {
            start: ts,
            ..Window::default()
        }
    }
}

pub struct Floods {
    by_dst: Bounded<(VnetId, IpAddr), Window>,
    by_vnet: Bounded<VnetId, Window>,
    window_us: i64,
    secs: u64,
    syn: u64,
    half_open: f64,
    vnet_syn: u64,
    vnet_dsts: f64,
    udp: u64,
    icmp: u64,
}

impl Floods {
    pub fn new(c: &IdsConfig) -> Self {
        let secs = u64::from(c.flood_window_secs.max(1));
        Floods {
            by_dst: Bounded::new(c.max_tracked),
            by_vnet: Bounded::new(4096),
            window_us: secs as i64 * 1_000_000,
            secs,
            syn: u64::from(c.syn_rate) * secs,
            half_open: c.syn_half_open,
            vnet_syn: u64::from(c.vnet_syn_rate) * secs,
            vnet_dsts: f64::from(c.vnet_syn_destinations),
            udp: u64::from(c.udp_rate) * secs,
            icmp: u64::from(c.icmp_rate) * secs,
        }
    }
}

fn roll(w: &mut Window, ts: Timestamp, window_us: i64) {
    if ts.micros_since(w.start) > window_us {
        *w = Window::at(ts);
    }
}

#[allow(clippy::too_many_arguments)] // the alert's fields
fn alert(
    kind: &'static str,
    sid: u32,
    severity: u8,
    vnet: VnetId,
    w: &Window,
    ts: Timestamp,
    victim: Option<IpAddr>,
    port: Option<u16>,
    protocol: u8,
    what: String,
    extra: &[(&str, serde_json::Value)],
) -> AlertRecord {
    let mut d = vec![
        ("syns", json!(w.syns)),
        ("completions", json!(w.completions)),
        ("udp_packets", json!(w.udp)),
        ("icmp_packets", json!(w.icmp)),
        ("distinct_sources_est", json!(w.sources.estimate().round())),
        ("distinct_ports_est", json!(w.ports.estimate().round())),
    ];
    d.extend_from_slice(extra);
    AlertRecord {
        time: w.start,
        end: ts,
        vnet,
        kind,
        signature_id: sid,
        signature: what,
        category: "Attempted Denial of Service",
        severity,
        src_addr: None,
        src_port: None,
        dst_addr: victim,
        dst_port: port,
        protocol,
        details: details(&d),
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
        let (syn, completion) = match d.transport {
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
        if !(syn || completion || udp || icmp) {
            return;
        }
        let port = d.ports().map(|p| p.1);
        let w = self.by_dst.entry(&(vnet, ip.dst), || Window::at(ts));
        roll(w, ts, wu);
        let before = (w.syns, w.udp, w.icmp);
        if syn {
            w.syns += 1;
            w.sources.add(&ip.src);
            w.ports.add(&port);
        }
        if completion {
            w.completions += 1;
        }
        if udp {
            w.udp += 1;
            w.sources.add(&ip.src);
        }
        if icmp {
            w.icmp += 1;
            w.sources.add(&ip.src);
        }
        let half_open = if w.syns == 0 {
            0.0
        } else {
            1.0 - (w.completions.min(w.syns) as f64 / w.syns as f64)
        };
        let secs = self.secs;
        // One source walking many ports is a scan (the port-scan detector's
        // business), not a flood: a flood hits few ports, or comes from
        // many (spoofed) sources.
        let scan_like = w.sources.estimate() < 10.0 && w.ports.estimate() > 20.0;
        if before.0 < self.syn && w.syns >= self.syn && half_open >= self.half_open && !scan_like {
            out.push(alert(
                "syn_flood",
                9_000_003,
                1,
                vnet,
                w,
                ts,
                Some(ip.dst),
                port,
                6,
                format!("moni SYN flood against {}", ip.dst),
                &[
                    ("half_open_ratio", json!(half_open)),
                    ("threshold_syns", json!(self.syn)),
                    ("window_secs", json!(secs)),
                ],
            ));
        }
        if before.1 < self.udp && w.udp >= self.udp {
            out.push(alert(
                "udp_flood",
                9_000_004,
                2,
                vnet,
                w,
                ts,
                Some(ip.dst),
                port,
                17,
                format!("moni UDP flood against {}", ip.dst),
                &[
                    ("threshold_packets", json!(self.udp)),
                    ("window_secs", json!(secs)),
                ],
            ));
        }
        if before.2 < self.icmp && w.icmp >= self.icmp {
            out.push(alert(
                "icmp_flood",
                9_000_005,
                2,
                vnet,
                w,
                ts,
                Some(ip.dst),
                None,
                ip.protocol,
                format!("moni ICMP flood against {}", ip.dst),
                &[
                    ("threshold_packets", json!(self.icmp)),
                    ("window_secs", json!(secs)),
                ],
            ));
        }
        if !(syn || completion) {
            return;
        }
        // Across the VNet: spoofed sources *and* destinations.
        let v = self.by_vnet.entry(&vnet, || Window::at(ts));
        roll(v, ts, wu);
        let before = v.syns;
        if syn {
            v.syns += 1;
            v.sources.add(&ip.src);
            v.destinations.add(&ip.dst);
        } else {
            v.completions += 1;
        }
        let half_open = if v.syns == 0 {
            0.0
        } else {
            1.0 - (v.completions.min(v.syns) as f64 / v.syns as f64)
        };
        if before < self.vnet_syn
            && v.syns >= self.vnet_syn
            && half_open >= self.half_open
            && v.destinations.estimate() >= self.vnet_dsts
        {
            out.push(alert(
                "syn_flood",
                9_000_006,
                1,
                vnet,
                v,
                ts,
                None,
                None,
                6,
                "moni SYN flood across the VNet (spoofed sources and destinations)".to_string(),
                &[
                    ("half_open_ratio", json!(half_open)),
                    (
                        "distinct_destinations_est",
                        json!(v.destinations.estimate().round()),
                    ),
                    ("threshold_syns", json!(self.vnet_syn)),
                    ("window_secs", json!(secs)),
                ],
            ));
        }
    }

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.by_dst.retain(|_, s| now.micros_since(s.start) <= w);
        self.by_vnet.retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (
            self.by_dst.len() + self.by_vnet.len(),
            self.by_dst.evicted + self.by_vnet.evicted,
        )
    }
}

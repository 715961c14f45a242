//! ARP sweeps: one MAC asking for many addresses that do not answer (nmap
//! `-PR`, arp-scan, a worm looking for neighbours). A router refreshing
//! its cache asks for hosts that exist and answer; only requests left
//! unanswered for `answer_grace_ms` count, like a sweep's probes.
//! Gratuitous ARP and address probes (RFC 5227, sender 0.0.0.0) are
//! announcements, not questions, and are left out.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;

use super::state::{Answer, Bounded, ProbeSet};
use super::{details, Detector, IdsConfig, ARP_SWEEP};
use crate::decode::Decoded;
use crate::record::AlertRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;

#[derive(Debug)]
struct Asker {
    start: Timestamp,
    ip: Ipv4Addr,
    targets: ProbeSet,
    requests: u64,
    alerted: bool,
}

pub struct ArpSweep {
    t: Bounded<(VnetId, [u8; 6]), Asker>,
    window_us: i64,
    grace_us: i64,
    hosts: usize,
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl ArpSweep {
    pub fn new(c: &IdsConfig) -> Self {
        ArpSweep {
            t: Bounded::new(c.max_tracked),
            window_us: i64::from(c.sweep_window_secs) * 1_000_000,
            grace_us: i64::from(c.answer_grace_ms) * 1_000,
            hosts: c.sweep_hosts as usize,
        }
    }

    /// New thresholds, same state (SIGHUP).
    pub fn reconfigure(&mut self, c: &IdsConfig) {
        let t = std::mem::replace(&mut self.t, Bounded::new(1));
        *self = ArpSweep::new(c);
        self.t = t;
    }
}

impl Detector for ArpSweep {
    fn name(&self) -> &'static str {
        "arp_sweep"
    }

    fn observe(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        out: &mut Vec<AlertRecord>,
    ) {
        let Some(a) = d.arp() else { return };
        if a.op == 2 {
            // A reply answers the asker it is addressed to.
            if let Some(s) = self.t.get_mut(&(vnet, a.target_mac)) {
                s.targets
                    .answer(u128::from(u32::from(a.sender_ip)), Answer::Answered);
            }
            return;
        }
        if a.op != 1 || a.sender_ip.is_unspecified() || a.sender_ip == a.target_ip {
            return;
        }
        let (w, grace, threshold) = (self.window_us, self.grace_us, self.hosts);
        let cap = 2 * threshold + 32;
        let fresh = || Asker {
            start: ts,
            ip: a.sender_ip,
            targets: ProbeSet::new(cap),
            requests: 0,
            alerted: false,
        };
        let s = self.t.entry(&(vnet, a.sender_mac), fresh);
        if ts.micros_since(s.start) > w {
            *s = fresh();
        }
        s.targets.raise_cap(cap);
        s.requests += 1;
        s.ip = a.sender_ip;
        s.targets.probe(u128::from(u32::from(a.target_ip)), ts.0);
        if s.alerted {
            return;
        }
        let n = s.targets.unanswered(ts.0, grace);
        if n < threshold {
            return;
        }
        s.alerted = true;
        let (answered, _) = s.targets.answers();
        let first: Vec<String> = s
            .targets
            .first(5)
            .map(|k| Ipv4Addr::from(k as u32).to_string())
            .collect();
        out.push(AlertRecord {
            tunnel: Default::default(),
            gate: None,
            time: s.start,
            end: ts,
            vnet,
            kind: ARP_SWEEP.name,
            trigger: Some((IpAddr::V4(a.sender_ip), IpAddr::V4(a.target_ip))),
            to_server: None,
            flow: None,
            signature_id: 9_000_012,
            signature: format!("moni ARP sweep from {} ({})", s.ip, mac_str(a.sender_mac)),
            category: "Attempted Information Leak".into(),
            rev: 1,
            flow_id: None,
            vlans: Vec::new(),
            severity: ARP_SWEEP.severity,
            src_addr: Some(IpAddr::V4(s.ip)),
            src_port: None,
            dst_addr: None,
            dst_port: None,
            protocol: 0,
            details: details(&[
                ("mac", json!(mac_str(a.sender_mac))),
                ("requests", json!(s.requests)),
                ("unanswered", json!(n)),
                ("answered", json!(answered)),
                ("threshold", json!(threshold)),
                ("window_secs", json!(w / 1_000_000)),
                ("first_targets", json!(first)),
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

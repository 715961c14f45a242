//! Detectors on constructed traffic with known attacker, victim and span.

use std::net::Ipv4Addr;

use super::*;
use crate::decode::{decode, LinkType};

fn frame(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00];
    let total = (20 + l4.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(l4);
    f
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

struct Run {
    ids: Ids,
    out: Vec<AlertRecord>,
}

impl Run {
    fn new(c: &IdsConfig) -> Run {
        Run {
            ids: Ids::new(c),
            out: Vec::new(),
        }
    }

    fn feed(&mut self, us: i64, f: &[u8]) {
        let d = decode(LinkType::Ethernet, f);
        self.ids
            .observe(Timestamp(us), VnetId(0), &d, &mut self.out);
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.out.iter().map(|a| a.kind).collect()
    }
}

const ATTACKER: u32 = 0x0a00_0063; // 10.0.0.99
const VICTIM: u32 = 0x0a00_0001; // 10.0.0.1

#[test]
fn syn_port_scan_names_attacker_victim_span_and_answers() {
    let mut r = Run::new(&IdsConfig::default());
    for p in 0..30u16 {
        let t = i64::from(p) * 100_000;
        r.feed(
            t,
            &frame(ip(ATTACKER), ip(VICTIM), 6, &tcp(40000, 1000 + p, 0x02)),
        );
        // Closed ports answer RST, ports 1000-1001 SYN-ACK.
        let flags = if p < 2 { 0x12 } else { 0x14 };
        r.feed(
            t + 1000,
            &frame(ip(VICTIM), ip(ATTACKER), 6, &tcp(1000 + p, 40000, flags)),
        );
    }
    assert_eq!(r.kinds(), vec!["port_scan"]);
    let a = &r.out[0];
    assert_eq!(a.src_addr, Some(ip(ATTACKER).into()));
    assert_eq!(a.dst_addr, Some(ip(VICTIM).into()));
    assert_eq!((a.time, a.end), (Timestamp(0), Timestamp(19 * 100_000)));
    let d: serde_json::Value = serde_json::from_str(&a.details).expect("json");
    assert_eq!(d["distinct"], 20);
    assert_eq!(d["answered_open"], 2);
    assert_eq!(d["answered_closed"], 17);
}

#[test]
fn reconfigure_applies_new_thresholds_to_kept_state() {
    let mut r = Run::new(&IdsConfig::default());
    for p in 0..4u16 {
        r.feed(
            i64::from(p),
            &frame(ip(ATTACKER), ip(VICTIM), 6, &tcp(40000, 1000 + p, 0x02)),
        );
    }
    assert!(r.out.is_empty());
    r.ids.reconfigure(&IdsConfig {
        scan_ports: 5,
        ..IdsConfig::default()
    });
    // The four ports seen before the reload still count: the fifth alerts.
    r.feed(
        10,
        &frame(ip(ATTACKER), ip(VICTIM), 6, &tcp(40000, 2000, 0x02)),
    );
    assert_eq!(r.kinds(), vec!["port_scan"]);
}

/// A port scan, then a UDP flood, fed to `r` from packet time `t0`.
fn scan_then_flood(r: &mut Run, t0: i64) {
    for p in 0..30u16 {
        let t = t0 + i64::from(p) * 1_000;
        r.feed(
            t,
            &frame(ip(ATTACKER), ip(VICTIM), 6, &tcp(40000, 1000 + p, 0x02)),
        );
    }
    for i in 0..25_000u32 {
        r.feed(
            t0 + 100_000 + i64::from(i) * 30,
            &frame(
                ip(0x0c00_0000 + (i % 5000)),
                ip(VICTIM),
                17,
                &udp(1234, 9999, b"x"),
            ),
        );
    }
}

#[test]
fn only_the_listed_detectors_run() {
    let without = |name: &str| IdsConfig {
        detectors: crate::ids::DETECTORS
            .iter()
            .filter(|d| **d != name)
            .map(|d| (*d).to_string())
            .collect(),
        ..IdsConfig::default()
    };
    let mut all = Run::new(&IdsConfig::default());
    scan_then_flood(&mut all, 0);
    assert_eq!(all.kinds(), vec!["port_scan", "udp_flood"]);
    let mut no_flood = Run::new(&without("flood"));
    scan_then_flood(&mut no_flood, 0);
    assert_eq!(no_flood.kinds(), vec!["port_scan"]);
    let mut no_scan = Run::new(&without("port_scan"));
    scan_then_flood(&mut no_scan, 0);
    assert_eq!(no_scan.kinds(), vec!["udp_flood"]);
    // A reload turns a detector back on (its state starts from then).
    no_scan.ids.reconfigure(&IdsConfig::default());
    no_scan.out.clear();
    scan_then_flood(&mut no_scan, 120_000_000);
    assert_eq!(no_scan.kinds(), vec!["port_scan", "udp_flood"]);
}

#[test]
fn udp_scan_shows_through_port_unreachables() {
    let mut r = Run::new(&IdsConfig::default());
    for p in 0..25u16 {
        let probe = frame(ip(ATTACKER), ip(VICTIM), 17, &udp(5000, 2000 + p, b""));
        r.feed(i64::from(p) * 1000, &probe);
        // ICMP port unreachable quoting the probe's IP header + 8 bytes.
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&probe[14..14 + 28]);
        r.feed(
            i64::from(p) * 1000 + 10,
            &frame(ip(VICTIM), ip(ATTACKER), 1, &icmp),
        );
    }
    assert_eq!(r.kinds(), vec!["port_scan"]);
    assert_eq!(r.out[0].protocol, 17);
    assert_eq!(r.out[0].src_addr, Some(ip(ATTACKER).into()));
}

#[test]
fn ping_and_syn_sweeps_name_the_source() {
    let mut r = Run::new(&IdsConfig::default());
    for h in 0..25u32 {
        let mut echo = vec![8, 0, 0, 0, 0, 7, 0, 1];
        echo.extend_from_slice(b"ping");
        r.feed(
            i64::from(h) * 10_000,
            &frame(ip(ATTACKER), ip(0x0a01_0000 + h), 1, &echo),
        );
        r.feed(
            i64::from(h) * 10_000 + 5,
            &frame(ip(ATTACKER), ip(0x0a02_0000 + h), 6, &tcp(40001, 443, 0x02)),
        );
    }
    // Unanswered only once the answer grace (1 s) passed: any later packet
    // lets the detectors judge.
    assert!(r.kinds().is_empty(), "{:?}", r.kinds());
    r.feed(
        1_300_000,
        &frame(ip(VICTIM), ip(0x0a09_0001), 6, &tcp(80, 999, 0x10)),
    );
    assert_eq!(r.kinds(), vec!["host_sweep", "host_sweep"]);
    assert_eq!(r.out[0].time, Timestamp(0));
    assert!(r
        .out
        .iter()
        .all(|a| a.src_addr == Some(ip(ATTACKER).into())));
    assert_eq!(r.out[1].dst_port, Some(443));
}

/// nmap -sA (and -sW, the same probes): bare ACKs to many ports, each
/// refused by a bare RST.
#[test]
fn ack_scan_shows_through_bare_rsts() {
    let mut r = Run::new(&IdsConfig::default());
    for p in 0..30u16 {
        let t = i64::from(p) * 70;
        r.feed(
            t,
            &frame(ip(ATTACKER), ip(VICTIM), 6, &tcp(53073, 1 + p, 0x10)),
        );
        r.feed(
            t + 20,
            &frame(ip(VICTIM), ip(ATTACKER), 6, &tcp(1 + p, 53073, 0x04)),
        );
    }
    assert_eq!(r.kinds(), vec!["port_scan"]);
    let a = &r.out[0];
    assert_eq!(a.src_addr, Some(ip(ATTACKER).into()));
    assert_eq!(a.dst_addr, Some(ip(VICTIM).into()));
    assert_eq!((a.time, a.end), (Timestamp(20), Timestamp(19 * 70 + 20)));
    let d: serde_json::Value = serde_json::from_str(&a.details).expect("json");
    assert_eq!(d["probe"], "ack");
    // Ordinary streams' ACKs and their RST+ACK closes are no scan.
    let mut r = Run::new(&IdsConfig::default());
    for p in 0..30u16 {
        let t = i64::from(p) * 70;
        r.feed(
            t,
            &frame(ip(ATTACKER), ip(VICTIM), 6, &tcp(40000 + p, 443, 0x10)),
        );
        r.feed(
            t + 9,
            &frame(ip(VICTIM), ip(ATTACKER), 6, &tcp(443, 40000 + p, 0x14)),
        );
    }
    assert!(r.kinds().is_empty(), "{:?}", r.kinds());
}

/// masscan-style UDP to many ports that never answer, and a UDP host
/// sweep: both judged once the answer grace passed.
#[test]
fn unanswered_udp_scan_and_sweep() {
    let mut r = Run::new(&IdsConfig::default());
    for p in 0..40u16 {
        r.feed(
            i64::from(p) * 1_000,
            &frame(ip(ATTACKER), ip(VICTIM), 17, &udp(61000, 1000 + p, b"")),
        );
        r.feed(
            500_000 + i64::from(p) * 1_000,
            &frame(
                ip(ATTACKER),
                ip(0x0a05_0000 + u32::from(p)),
                17,
                &udp(61001, 40125, b""),
            ),
        );
    }
    assert!(r.kinds().is_empty());
    r.feed(
        1_600_000,
        &frame(ip(VICTIM), ip(0x0a09_0001), 6, &tcp(80, 999, 0x10)),
    );
    assert_eq!(r.kinds(), vec!["port_scan", "udp_sweep"]);
    let scan = &r.out[0];
    assert_eq!(
        (scan.src_addr, scan.dst_addr),
        (Some(ip(ATTACKER).into()), Some(ip(VICTIM).into()))
    );
    assert_eq!(scan.protocol, 17);
    assert_eq!(scan.time, Timestamp(0));
    let sweep = &r.out[1];
    assert_eq!(
        (sweep.src_addr, sweep.dst_port),
        (Some(ip(ATTACKER).into()), Some(40125))
    );
    assert_eq!(sweep.time, Timestamp(500_000));
}

/// Two media gateways with 40 RTP streams on distinct ports, answered
/// both ways, and a client whose DNS queries to 30 resolvers are all
/// answered: no scan, no sweep.
#[test]
fn answered_udp_is_no_scan_or_sweep() {
    let mut r = Run::new(&IdsConfig::default());
    let (a, b) = (ip(0x0a00_0010), ip(0x0a00_0020));
    for p in 0..40u16 {
        for k in 0..5i64 {
            let t = i64::from(p) * 50_000 + k * 20_000;
            r.feed(
                t,
                &frame(a, b, 17, &udp(20000 + 2 * p, 30000 + 2 * p, &[0x80; 32])),
            );
            r.feed(
                t + 5_000,
                &frame(b, a, 17, &udp(30000 + 2 * p, 20000 + 2 * p, &[0x80; 32])),
            );
        }
        let resolver = ip(0x0b00_0000 + u32::from(p));
        let q = dns(p, false, 0, "www.example.com");
        r.feed(
            i64::from(p) * 50_000,
            &frame(a, resolver, 17, &udp(33000 + p, 53, &q)),
        );
        let ans = dns(p, true, 0, "www.example.com");
        r.feed(
            i64::from(p) * 50_000 + 30_000,
            &frame(resolver, a, 17, &udp(53, 33000 + p, &ans)),
        );
    }
    r.feed(5_000_000, &frame(b, a, 6, &tcp(80, 999, 0x10)));
    assert!(r.kinds().is_empty(), "{:?}", r.kinds());
}

/// One source's SYN-ping sweep of a /24 is a sweep, not a VNet-wide SYN
/// flood (which needs many sources).
#[test]
fn one_source_syn_sweep_is_no_flood() {
    let mut r = Run::new(&IdsConfig::default());
    for h in 0..256u32 {
        r.feed(
            i64::from(h) * 7_200,
            &frame(ip(ATTACKER), ip(0x0a0a_0000 + h), 6, &tcp(40000, 80, 0x02)),
        );
    }
    assert_eq!(r.kinds(), vec!["host_sweep"]);
}

/// SYN-ACKs from many reflectors to one victim that sent no SYNs.
#[test]
fn syn_ack_reflection_names_the_victim() {
    let mut r = Run::new(&IdsConfig::default());
    for i in 0..2_000u32 {
        let reflector = ip(0x2000_0000 + i * 7);
        r.feed(
            1_000_000 + i64::from(i) * 20,
            &frame(reflector, ip(VICTIM), 6, &tcp(80, 1024 + i as u16, 0x12)),
        );
    }
    assert_eq!(r.kinds(), vec!["syn_ack_reflection"]);
    let a = &r.out[0];
    assert_eq!((a.src_addr, a.dst_addr), (None, Some(ip(VICTIM).into())));
    assert_eq!(a.time, Timestamp(1_000_000));
    // A busy client's own connections are answered SYN-ACKs: no alert.
    let mut r = Run::new(&IdsConfig::default());
    for i in 0..2_000u32 {
        let server = ip(0x2000_0000 + i * 7);
        r.feed(
            i64::from(i) * 20,
            &frame(ip(VICTIM), server, 6, &tcp(1024 + i as u16, 443, 0x02)),
        );
        r.feed(
            i64::from(i) * 20 + 10,
            &frame(server, ip(VICTIM), 6, &tcp(443, 1024 + i as u16, 0x12)),
        );
    }
    assert!(r.kinds().is_empty(), "{:?}", r.kinds());
}

/// The SNMP burst: 4,373 responses in 23 ms (186 kpps) from many
/// reflectors to one victim; far below 20,000 packets in a second, caught
/// by the sub-second rate. A client's own DNS answers are no attack.
#[test]
fn short_amplification_burst_is_caught_with_service_and_factor() {
    let mut r = Run::new(&IdsConfig::default());
    let body = vec![0x30u8; 1_200];
    for i in 0..4_373u32 {
        let reflector = ip(0x3000_0000 + (i % 700) * 13);
        r.feed(
            1_000_000 + i64::from(i) * 23_000 / 4_373,
            &frame(reflector, ip(VICTIM), 17, &udp(161, 40000, &body)),
        );
    }
    assert_eq!(r.kinds(), vec!["amplification"]);
    let a = &r.out[0];
    assert_eq!(a.dst_addr, Some(ip(VICTIM).into()));
    assert_eq!(a.time, Timestamp(1_000_000));
    assert!(a.end.micros_since(a.time) < 23_000);
    let d: serde_json::Value = serde_json::from_str(&a.details).expect("json");
    assert_eq!(d["service"], "snmp");
    assert_eq!(d["factor_basis"], "nominal_request");
    assert_eq!(
        d["amplification_factor"], 20.0,
        "1,200 bytes per 60-byte GetBulk"
    );
    assert!(d["rate_pps_est"].as_f64().expect("rate") >= 5_000.0);
    // Estimates of distinct values never exceed the packets counted.
    let packets = d["packets"].as_f64().expect("packets");
    for k in ["distinct_reflectors_est", "victim_ports_est"] {
        let v = d[k].as_f64().expect(k);
        assert!(v >= 1.0 && v <= packets, "{k} {v} of {packets} packets");
    }
    // The same responses to a host that asked for them.
    let mut r = Run::new(&IdsConfig::default());
    for i in 0..4_373u32 {
        let resolver = ip(0x3000_0000 + (i % 700) * 13);
        let t = 1_000_000 + i64::from(i) * 23_000 / 4_373;
        r.feed(
            t,
            &frame(
                ip(VICTIM),
                resolver,
                17,
                &udp(40000 + (i % 1000) as u16, 53, b"query"),
            ),
        );
        r.feed(
            t + 1,
            &frame(
                resolver,
                ip(VICTIM),
                17,
                &udp(53, 40000 + (i % 1000) as u16, &body),
            ),
        );
    }
    assert!(r.kinds().is_empty(), "{:?}", r.kinds());
}

/// A victim that itself asked a resolver a few questions is still a
/// victim when responses it never asked for pour in: the requests a host
/// sent make its answers no attack only while they are not outnumbered
/// ten to one. (Before, any request at all hid the victim: on a busy
/// network, where thousands of DNS clients fill the request sketch, that
/// hid almost every host.)
#[test]
fn amplification_against_a_host_that_asked_a_little() {
    let mut r = Run::new(&IdsConfig::default());
    let body = vec![0x30u8; 1_200];
    for i in 0..3u32 {
        r.feed(
            1_000_000 + i64::from(i) * 1_000,
            &frame(ip(VICTIM), ip(0x0808_0808), 17, &udp(40000, 53, b"query")),
        );
    }
    for i in 0..8_000u32 {
        let reflector = ip(0x3000_0000 + (i % 700) * 13);
        r.feed(
            1_010_000 + i64::from(i) * 100,
            &frame(reflector, ip(VICTIM), 17, &udp(53, 40000, &body)),
        );
    }
    assert_eq!(r.kinds(), vec!["amplification"]);
    let d: serde_json::Value = serde_json::from_str(&r.out[0].details).expect("json");
    assert_eq!(d["service"], "dns");
    assert_eq!(d["victim_requests"], 3);
    assert_eq!(d["factor_basis"], "observed");
}

fn arp(op: u16, mac: [u8; 6], from: u32, to_mac: [u8; 6], to: u32) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&from.to_be_bytes());
    f.extend_from_slice(&to_mac);
    f.extend_from_slice(&to.to_be_bytes());
    f
}

/// One MAC asking for a /24, nobody answering; a router whose questions
/// are answered is no sweep.
#[test]
fn arp_sweep_names_the_asker() {
    let mut r = Run::new(&IdsConfig::default());
    let scanner = [2, 0, 0, 0, 0, 0x99];
    for h in 1..=254u32 {
        r.feed(
            i64::from(h) * 10_000,
            &arp(1, scanner, ATTACKER, [0; 6], 0x0a00_0000 + h),
        );
    }
    assert_eq!(r.kinds(), vec!["arp_sweep"]);
    let a = &r.out[0];
    assert_eq!(a.src_addr, Some(ip(ATTACKER).into()));
    assert_eq!(a.time, Timestamp(10_000));
    let d: serde_json::Value = serde_json::from_str(&a.details).expect("json");
    assert_eq!(d["mac"], "02:00:00:00:00:99");
    let mut r = Run::new(&IdsConfig::default());
    let router = [2, 0, 0, 0, 0, 1];
    for h in 1..=254u32 {
        let host_mac = [2, 1, 0, 0, 0, h as u8];
        r.feed(
            i64::from(h) * 10_000,
            &arp(1, router, 0x0a00_0001, [0; 6], 0x0a00_0000 + h),
        );
        r.feed(
            i64::from(h) * 10_000 + 300,
            &arp(2, host_mac, 0x0a00_0000 + h, router, 0x0a00_0001),
        );
    }
    assert!(r.kinds().is_empty(), "{:?}", r.kinds());
}

/// A flooder's victim replying to the flood is no second victim.
#[test]
fn echo_replies_to_the_flooder_name_no_victim() {
    let mut r = Run::new(&IdsConfig::default());
    for i in 0..6_000u32 {
        let t = i64::from(i) * 100;
        r.feed(
            t,
            &frame(ip(ATTACKER), ip(VICTIM), 1, &[8, 0, 0, 0, 0, 1, 0, 1]),
        );
        r.feed(
            t + 50,
            &frame(ip(VICTIM), ip(ATTACKER), 1, &[0, 0, 0, 0, 0, 1, 0, 1]),
        );
    }
    assert_eq!(r.kinds(), vec!["icmp_flood"]);
    assert_eq!(r.out[0].dst_addr, Some(ip(VICTIM).into()));
}

/// Real long names are no tunnel; many distinct encoded names of one
/// domain from one client are, even when each is short.
#[test]
fn dns_tunnels_judged_below_the_registered_domain() {
    let mut r = Run::new(&IdsConfig::default());
    let resolver = ip(0x0a00_0035);
    let q = dns(1, false, 0, "txtpadding_323.n1.netalyzr.icsi.berkeley.edu");
    r.feed(0, &frame(ip(VICTIM), resolver, 17, &udp(33000, 53, &q)));
    for i in 0..50u16 {
        let name = format!("r{i}.sn-4g5e6nez.googlevideo.com");
        r.feed(
            10 + i64::from(i),
            &frame(
                ip(VICTIM),
                resolver,
                17,
                &udp(33001 + i, 53, &dns(i, false, 0, &name)),
            ),
        );
    }
    assert!(r.kinds().is_empty(), "{:?}", r.kinds());
    for i in 0..150u32 {
        let name = format!(
            "{:08x}{:08x}.t.example.org",
            i.wrapping_mul(2_654_435_761),
            i
        );
        r.feed(
            1_000 + i64::from(i) * 100,
            &frame(
                ip(ATTACKER),
                resolver,
                17,
                &udp(40000 + i as u16, 53, &dns(i as u16, false, 0, &name)),
            ),
        );
    }
    assert_eq!(r.kinds(), vec!["dns_tunnel"]);
    let a = &r.out[0];
    assert_eq!(a.src_addr, Some(ip(ATTACKER).into()));
    let d: serde_json::Value = serde_json::from_str(&a.details).expect("json");
    assert_eq!(d["reason"], "unique subdomains");
    assert_eq!(d["domain"], "example.org");
}

#[test]
fn answered_connections_to_many_hosts_are_no_sweep() {
    // A browser: SYNs to 30 hosts on 443, each answered by SYN-ACK.
    let mut r = Run::new(&IdsConfig::default());
    for h in 0..30u32 {
        let server = ip(0x0a02_0000 + h);
        r.feed(
            i64::from(h) * 10_000,
            &frame(ip(ATTACKER), server, 6, &tcp(40000 + h as u16, 443, 0x02)),
        );
        r.feed(
            i64::from(h) * 10_000 + 3_000,
            &frame(server, ip(ATTACKER), 6, &tcp(443, 40000 + h as u16, 0x12)),
        );
    }
    assert!(r.kinds().is_empty(), "{:?}", r.kinds());
    // Refused (RST) SYNs still make a sweep.
    for h in 0..25u32 {
        let host = ip(0x0a03_0000 + h);
        r.feed(
            400_000 + i64::from(h) * 10_000,
            &frame(ip(ATTACKER), host, 6, &tcp(41000, 22, 0x02)),
        );
        r.feed(
            400_000 + i64::from(h) * 10_000 + 3_000,
            &frame(host, ip(ATTACKER), 6, &tcp(22, 41000, 0x14)),
        );
    }
    assert_eq!(r.kinds(), vec!["host_sweep"]);
}

/// masscan of one port: SYNs every 200 µs to new hosts, none answered.
/// The source's set of probed hosts is full (72) after 14 ms, and the
/// sweep is judged again only when a probe leaves its grace: the alert
/// comes at the first packet 1 s after the 20th probe, as when every
/// packet was judged, and a refusal is counted at once.
#[test]
fn a_full_sweep_alerts_when_its_probes_leave_their_grace() {
    let syn = |r: &mut Run, i: u32| {
        r.feed(
            i64::from(i) * 200,
            &frame(ip(ATTACKER), ip(0x0a10_0000 + i), 6, &tcp(40000, 80, 0x02)),
        );
    };
    let mut r = Run::new(&IdsConfig::default());
    // Probe i at 200 * i µs; the 20th (i = 19) leaves its grace at
    // 1,003,800 µs, which packet 5,019 is the first to reach.
    for i in 0..5_019 {
        syn(&mut r, i);
    }
    assert!(r.kinds().is_empty(), "{:?}", r.kinds());
    syn(&mut r, 5_019);
    assert_eq!(r.kinds(), vec!["host_sweep"]);
    assert_eq!(r.out[0].time, Timestamp(0));
    assert_eq!(r.out[0].end, Timestamp(5_019 * 200));

    // Host i refuses (RST+ACK) at `at`.
    let refuse = |r: &mut Run, i: u32, at: i64| {
        r.feed(
            at,
            &frame(ip(0x0a10_0000 + i), ip(ATTACKER), 6, &tcp(80, 40000, 0x14)),
        );
    };
    // 100 probes (the set full at 72), the first `refused` hosts refusing
    // from 20 ms, then probe 101: judged, too few unanswered.
    let full_then_refused = |refused: u32| {
        let mut r = Run::new(&IdsConfig::default());
        for i in 0..100 {
            syn(&mut r, i);
        }
        for i in 0..refused {
            refuse(&mut r, i, 20_000 + i64::from(i));
        }
        syn(&mut r, 101);
        assert!(r.kinds().is_empty(), "{refused} refused: {:?}", r.kinds());
        r
    };

    // Refusals count at once, also in a full set still in its grace.
    let mut r = full_then_refused(19);
    refuse(&mut r, 19, 20_300);
    syn(&mut r, 102);
    assert_eq!(r.kinds(), vec!["host_sweep"]);
    assert!(
        (20_300..=20_400).contains(&r.out[0].end.0),
        "alerted at {:?}",
        r.out[0].end
    );

    // A reload that lowers the threshold under the count already judged
    // is heeded at the next judgement, not at the next probe's aging.
    let mut r = full_then_refused(10);
    r.ids.reconfigure(&IdsConfig {
        sweep_hosts: 10,
        ..IdsConfig::default()
    });
    syn(&mut r, 102);
    assert_eq!(r.kinds(), vec!["host_sweep"]);
    assert_eq!(r.out[0].end, Timestamp(102 * 200));
}

#[test]
fn spoofed_syn_flood_is_judged_at_the_victim() {
    let mut r = Run::new(&IdsConfig::default());
    for i in 0..500u32 {
        let f = frame(
            ip(0x0b00_0000 + i * 7919),
            ip(VICTIM),
            6,
            &tcp(1024 + i as u16, 80, 0x02),
        );
        r.feed(i64::from(i) * 1000, &f);
    }
    assert_eq!(
        r.kinds(),
        vec!["syn_flood"],
        "one episode, repeats suppressed"
    );
    let a = &r.out[0];
    assert_eq!(
        (a.src_addr, a.dst_addr, a.dst_port),
        (None, Some(ip(VICTIM).into()), Some(80))
    );
    assert!(
        r.ids.stats().suppressed == 0,
        "the episode alerts once per window crossing"
    );
}

#[test]
fn busy_but_healthy_server_is_no_flood() {
    let mut r = Run::new(&IdsConfig::default());
    for i in 0..2000u32 {
        let client = ip(0x0b00_0000 + i);
        r.feed(
            i64::from(i) * 400,
            &frame(client, ip(VICTIM), 6, &tcp(1024, 80, 0x02)),
        );
        r.feed(
            i64::from(i) * 400 + 100,
            &frame(ip(VICTIM), client, 6, &tcp(80, 1024, 0x12)),
        );
        r.feed(
            i64::from(i) * 400 + 200,
            &frame(client, ip(VICTIM), 6, &tcp(1024, 80, 0x10)),
        );
    }
    assert_eq!(r.kinds(), Vec::<&str>::new());
}

#[test]
fn udp_and_icmp_floods_by_rate() {
    let mut r = Run::new(&IdsConfig::default());
    for i in 0..25_000u32 {
        r.feed(
            i64::from(i) * 30,
            &frame(
                ip(0x0c00_0000 + (i % 5000)),
                ip(VICTIM),
                17,
                &udp(1234, 9999, b"x"),
            ),
        );
    }
    for i in 0..2_500u32 {
        r.feed(
            2_000_000 + i64::from(i) * 100,
            &frame(ip(ATTACKER), ip(VICTIM), 1, &[8, 0, 0, 0, 0, 1, 0, 1]),
        );
    }
    assert_eq!(r.kinds(), vec!["udp_flood", "icmp_flood"]);
}

fn dns(id: u16, response: bool, rcode: u8, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[
        if response { 0x81 } else { 0x01 },
        if response { 0x80 | rcode } else { 0 },
    ]);
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

#[test]
fn nxdomain_storm_and_tunnel_names() {
    let mut r = Run::new(&IdsConfig::default());
    let resolver = ip(0x0a00_0035);
    for i in 0..60u16 {
        let name = format!("host{i}.example.invalid");
        r.feed(
            i64::from(i) * 1000,
            &frame(
                resolver,
                ip(VICTIM),
                17,
                &udp(53, 33000 + i, &dns(i, true, 3, &name)),
            ),
        );
        // Ordinary names are no tunnel.
        r.feed(
            i64::from(i) * 1000 + 1,
            &frame(
                ip(VICTIM),
                resolver,
                17,
                &udp(33000 + i, 53, &dns(i, false, 0, &name)),
            ),
        );
    }
    let tunnel = "mzxw6ytboi4dqnrqgq3tmnzygqztcmjrgiydonjtg4ydmmbsgqyq.t.example.com";
    r.feed(
        100_000,
        &frame(
            ip(ATTACKER),
            resolver,
            17,
            &udp(40000, 53, &dns(7, false, 0, tunnel)),
        ),
    );
    assert_eq!(r.kinds(), vec!["dns_nxdomain_storm", "dns_tunnel"]);
    assert_eq!(r.out[0].src_addr, Some(ip(VICTIM).into()), "the client");
    assert_eq!(r.out[1].src_addr, Some(ip(ATTACKER).into()));
}

/// Ten million SYNs from spoofed sources (every one new) at random
/// targets and ports: every detector table and the signature engine's
/// threshold table stay at their cap, and what they dropped is counted.
#[test]
fn ten_million_spoofed_sources_stay_within_the_caps() {
    let c = IdsConfig {
        max_tracked: 10_000,
        ..IdsConfig::default()
    };
    let mut r = Run::new(&c);
    let rules = rules::RuleSet::parse(
        "t",
        "alert tcp any any -> any any (msg:\"syn\"; flags:S; threshold:type both, track by_src, count 50, seconds 60; sid:1;)\n\
         alert tcp any any -> any any (msg:\"df\"; flags:S; detection_filter:track by_dst, count 1000, seconds 1; sid:2;)",
        &rules::Vars::default(),
    );
    assert!(rules.skipped.is_empty(), "{:?}", rules.skipped);
    let mut sigs = rules::Signatures::new(&rules, c.max_tracked);
    // One frame, rewritten in place: the loop measures the detectors.
    let mut f = frame(ip(0), ip(0), 6, &tcp(1024, 0, 0x02));
    let mut alerts = Vec::new();
    let n = 10_000_000u32;
    for i in 0..n {
        let src = 0x0b00_0000 ^ i.wrapping_mul(2_654_435_761);
        let dst = 0x0d00_0000 + (i.wrapping_mul(40_503) % 65_536);
        f[26..30].copy_from_slice(&src.to_be_bytes());
        f[30..34].copy_from_slice(&dst.to_be_bytes());
        f[36..38].copy_from_slice(&((i % 1000) as u16).to_be_bytes());
        let d = decode(LinkType::Ethernet, &f);
        let ts = Timestamp(i64::from(i) * 10);
        r.ids.observe(ts, VnetId(0), &d, &mut r.out);
        sigs.observe(ts, VnetId(0), &d, None, &mut alerts);
        if alerts.len() > 1024 {
            alerts.clear();
        }
    }
    for (det, keys, evicted) in r.ids.state() {
        // A table holds its cap plus the key being inserted; the flood
        // detector adds one entry per VNet.
        assert!(keys <= 10_000 + 2, "{det}: {keys}");
        if det == "port_scan" || det == "host_sweep" {
            assert!(evicted > 9_000_000, "{det}: {evicted}");
        }
    }
    let [(_, keys, evicted), ..] = sigs.state();
    assert!(keys <= 10_000 + 1, "signature thresholds: {keys}");
    assert!(
        evicted > 9_000_000,
        "signature thresholds evicted {evicted}"
    );
    assert_eq!(
        sigs.stats().matches,
        2 * u64::from(n),
        "both rules match every SYN"
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// One packet of arbitrary traffic: addresses from a small space (so
    /// that keys repeat and answers meet probes) or a large one (so that
    /// tables fill), any protocol, flags, ports, ICMP type and size.
    fn packet() -> impl Strategy<Value = (u32, u32, u8, u8, u16, u16, usize, i64)> {
        (
            prop_oneof![0u32..64, any::<u32>()],
            prop_oneof![0u32..64, any::<u32>()],
            prop_oneof![Just(1u8), Just(6u8), Just(17u8), Just(0u8)],
            any::<u8>(),
            prop_oneof![Just(53u16), Just(161u16), Just(123u16), any::<u16>()],
            prop_oneof![Just(53u16), Just(80u16), any::<u16>()],
            0usize..200,
            0i64..3_000_000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary traffic (TCP with any flags, UDP to and from the
        /// amplifying ports and DNS, ICMP of any type, ARP) keeps every
        /// detector table at its cap.
        #[test]
        fn arbitrary_traffic_keeps_every_table_at_its_cap(
            pkts in proptest::collection::vec(packet(), 1..600),
        ) {
            let cap = 16usize;
            let mut r = Run::new(&IdsConfig { max_tracked: cap, ..IdsConfig::default() });
            let mut t = 0i64;
            for (src, dst, proto, x, sp, dp, len, dt) in pkts {
                t += dt / 100;
                let body = vec![x; len];
                let f = match proto {
                    6 => frame(ip(src), ip(dst), 6, &tcp(sp, dp, x)),
                    17 => {
                        let payload = if sp == 53 || dp == 53 {
                            dns(sp, x & 1 == 1, x & 0x0f, &format!("{:x}{len}.t{}.example.com", src ^ dst, x % 4))
                        } else {
                            body
                        };
                        frame(ip(src), ip(dst), 17, &udp(sp, dp, &payload))
                    }
                    1 => {
                        let mut m = vec![x % 16, 3, 0, 0, 0, 1, 0, 1];
                        m.extend_from_slice(&frame(ip(dst), ip(src), 17, &udp(dp, sp, b""))[14..]);
                        frame(ip(src), ip(dst), 1, &m)
                    }
                    _ => arp(u16::from(x % 3), [2, 0, 0, 0, (src >> 8) as u8, src as u8], src, [0; 6], dst),
                };
                r.feed(t, &f);
            }
            for (det, keys, _) in r.ids.state() {
                // Flood and DNS hold two tables each (+ one entry per VNet):
                // each table holds its cap plus the key being inserted.
                prop_assert!(keys <= 2 * (cap + 1) + 1, "{}: {}", det, keys);
            }
        }
    }

    /// Feeds `frames` (time, frame, VNet) to two flood detectors, one as
    /// [`Ids::observe`] does (the fast path first), one through the full
    /// path only; their alerts.
    fn fast_and_full(c: &IdsConfig, frames: &[(i64, Vec<u8>, u16)]) -> [Vec<AlertRecord>; 2] {
        let (mut fast, mut full) = (flood::Floods::new(c), flood::Floods::new(c));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (t, f, vnet) in frames {
            let d = decode(LinkType::Ethernet, f);
            let (ts, vnet) = (Timestamp(*t), VnetId(*vnet));
            let Some(i) = d.ip else { continue };
            let (hs, hd) = (flood::addr_hash(i.src), flood::addr_hash(i.dst));
            if !fast.fast_path(ts, vnet, &d, || hd) {
                fast.observe_hashed(ts, vnet, &d, hs, hd, &mut a);
            }
            full.observe_hashed(ts, vnet, &d, hs, hd, &mut b);
        }
        [a, b]
    }

    /// What the two runs of [`fast_and_full`] must agree on: kind, VNet,
    /// span, victim and details.
    type AlertKey = (
        &'static str,
        VnetId,
        Timestamp,
        Timestamp,
        Option<IpAddr>,
        String,
    );

    fn alert_keys(v: &[AlertRecord]) -> Vec<AlertKey> {
        v.iter()
            .map(|x| (x.kind, x.vnet, x.time, x.end, x.dst_addr, x.details.clone()))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The floods' fast path ([`flood::Floods::fast_path`]) has the
        /// effect of the full path on ACK segments: SYN, ACK and SYN-ACK
        /// traffic to a few destinations in two VNets, across window
        /// boundaries, raises the same flood alerts either way.
        #[test]
        fn the_floods_ack_fast_path_is_the_full_path(
            pkts in proptest::collection::vec((0u32..6, 0u32..4, 0u8..16, 0u16..2, 0i64..5_000), 1..1500),
            // Per case: how many of 16 segments are ACKs (none: every SYN
            // stays half-open; most: no flood).
            acks in 0u8..16,
        ) {
            let c = IdsConfig { syn_rate: 20, vnet_syn_rate: 40, vnet_syn_destinations: 2, vnet_syn_sources: 2, syn_ack_rate: 20, reflectors: 2, ..IdsConfig::default() };
            let mut t = 0i64;
            let frames: Vec<_> = pkts.into_iter().map(|(src, dst, k, vnet, dt)| {
                t += dt;
                let flags = if k < acks { [0x10, 0x18][usize::from(k & 1)] } else { [0x02, 0x02, 0x12][usize::from(k % 3)] };
                (t, frame(ip(0x0a00_0100 + src), ip(0x0a00_0001 + dst), 6, &tcp(1000 + src as u16, 80, flags)), vnet)
            }).collect();
            let [a, b] = fast_and_full(&c, &frames);
            prop_assert_eq!(alert_keys(&a), alert_keys(&b));
        }

        /// The same for UDP datagrams, with amplifying services' ports
        /// among them (which always take the full path), around a low UDP
        /// flood threshold.
        #[test]
        fn the_floods_udp_fast_path_is_the_full_path(
            pkts in proptest::collection::vec((0u32..6, 0u32..3, prop_oneof![Just(53u16), Just(161u16), Just(5004u16), Just(40000u16)], 0u16..2, 0i64..5_000), 1..1500),
            udp_rate in 1u32..60,
        ) {
            let c = IdsConfig { udp_rate, amp_rate: 20, reflectors: 2, ..IdsConfig::default() };
            let mut t = 0i64;
            let frames: Vec<_> = pkts.into_iter().map(|(src, dst, port, vnet, dt)| {
                t += dt;
                // Half the datagrams from the port, half to it.
                let (sp, dp) = if src % 2 == 0 { (port, 40001) } else { (40001, port) };
                (t, frame(ip(0x0a00_0100 + src), ip(0x0a00_0001 + dst), 17, &udp(sp, dp, &[0; 40])), vnet)
            }).collect();
            let [a, b] = fast_and_full(&c, &frames);
            prop_assert_eq!(alert_keys(&a), alert_keys(&b));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Any bytes, as Ethernet frames and as the payload of port 53 or
        /// an ICMP unreachable, never panic a detector.
        #[test]
        fn arbitrary_frames_never_panic(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..20),
            proto in prop_oneof![Just(1u8), Just(6u8), Just(17u8)],
        ) {
            let mut r = Run::new(&IdsConfig { max_tracked: 64, ..IdsConfig::default() });
            for (i, bytes) in frames.iter().enumerate() {
                r.feed(i as i64, bytes);
                let l4 = match proto {
                    17 => udp(53, 53, bytes),
                    6 => {
                        let mut t = tcp(1, 2, bytes.first().copied().unwrap_or(0));
                        t.extend_from_slice(bytes);
                        t
                    }
                    _ => {
                        let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
                        m.extend_from_slice(bytes);
                        m
                    }
                };
                r.feed(i as i64, &frame(ip(ATTACKER), ip(VICTIM), proto, &l4));
            }
            for (_, keys, _) in r.ids.state() {
                prop_assert!(keys <= 64 + 64);
            }
        }
    }
}

#[test]
fn udp_exchange_keys_differ_by_direction_and_port() {
    let (a, b) = (
        flood::addr_hash(ip(0x0a00_0001).into()),
        flood::addr_hash(ip(0x0a00_0002).into()),
    );
    let fwd = exchange_hash(a, b, 5000, 53);
    assert_ne!(fwd, exchange_hash(b, a, 53, 5000));
    assert_ne!(fwd, exchange_hash(a, b, 5001, 53));
    assert_ne!(fwd, exchange_hash(a, b, 53, 5000));
    assert_eq!(fwd, exchange_hash(a, b, 5000, 53));
}

/// A busy network's one-packet sources (a client's one connection to a
/// server, answered; one DNS query; one ping) make no scan, sweep,
/// per-destination SYN or reflection state: only a second probe does,
/// and it counts the first.
#[test]
fn one_probe_sources_make_no_state_and_a_second_probe_counts_the_first() {
    let mut r = Run::new(&IdsConfig::default());
    for i in 0..5_000u32 {
        let t = 1_000_000 + i64::from(i) * 50;
        let (client, server) = (ip(0x0b00_0000 + i), ip(0x0a01_0000 + i % 1000));
        r.feed(t, &frame(client, server, 6, &tcp(40000, 443, 0x02)));
        r.feed(t + 10, &frame(server, client, 6, &tcp(443, 40000, 0x12)));
        r.feed(t + 20, &frame(client, server, 6, &tcp(40000, 443, 0x10)));
        let q = dns(i as u16, false, 0, "www.example.com");
        r.feed(
            t + 30,
            &frame(
                ip(0x0c00_0000 + i),
                ip(0x0a00_0035),
                17,
                &udp(33000, 53, &q),
            ),
        );
        let mut echo = vec![8, 0, 0, 0, 0, 7, 0, 1];
        echo.extend_from_slice(b"ping");
        r.feed(
            t + 40,
            &frame(ip(0x0d00_0000 + i), ip(0x0e00_0000 + i), 1, &echo),
        );
    }
    assert!(r.kinds().is_empty(), "{:?}", r.kinds());
    for (det, keys, _) in r.ids.state() {
        if det != "dns" {
            // The flood detector holds its one VNet's window.
            assert_eq!(keys, usize::from(det == "flood"), "{det}");
        }
    }
    // A source's second probe enters it, with its first: 20 ports
    // (the threshold) make a scan whose span starts at the first probe.
    let mut r = Run::new(&IdsConfig::default());
    for p in 0..20u16 {
        r.feed(
            5_000 + i64::from(p) * 1_000,
            &frame(ip(ATTACKER), ip(VICTIM), 6, &tcp(40000, 2000 + p, 0x02)),
        );
    }
    assert_eq!(r.kinds(), vec!["port_scan"]);
    assert_eq!(r.out[0].time, Timestamp(5_000));
    let d: serde_json::Value = serde_json::from_str(&r.out[0].details).expect("json");
    assert_eq!(
        (d["distinct"].clone(), d["probes"].clone()),
        (20.into(), 20.into())
    );
}

/// A reload that raises `sweep_hosts` over what the sets made under the
/// old threshold hold (2 x 20 + 32 = 72 hosts) still lets a sweep under
/// way reach it: the reloaded detector alerts as one started with the new
/// threshold does. (The sets kept their old room, so the sweep could not
/// be reported until its window started over.)
#[test]
fn a_raised_sweep_threshold_is_reached_by_a_sweep_under_way() {
    let syn = |r: &mut Run, t: i64, i: u32| {
        r.feed(
            t,
            &frame(ip(ATTACKER), ip(0x0a10_0000 + i), 6, &tcp(40000, 80, 0x02)),
        );
    };
    let raised = IdsConfig {
        sweep_hosts: 100,
        ..IdsConfig::default()
    };
    let mut started = Run::new(&raised);
    let mut reloaded = Run::new(&IdsConfig::default());
    // 300 unanswered SYNs at 100/s; the reload comes after the 50th,
    // while every probe so far is still in its answer grace.
    for i in 0..300u32 {
        let t = i64::from(i) * 10_000;
        if i == 50 {
            reloaded.ids.reconfigure(&raised);
        }
        syn(&mut started, t, i);
        syn(&mut reloaded, t, i);
    }
    syn(&mut started, 5_000_000, 1000);
    syn(&mut reloaded, 5_000_000, 1000);
    assert_eq!(started.kinds(), vec!["host_sweep"]);
    assert_eq!(reloaded.kinds(), vec!["host_sweep"]);
}

/// SIGHUP's `cooldown_secs` applies to the episodes already alerted: a
/// second crossing 10 s after the first is suppressed under the default
/// 60 s and raised once a reload set 5 s.
#[test]
fn a_reloaded_cooldown_applies_at_once() {
    let a = Some(std::net::IpAddr::V4(ip(ATTACKER)));
    let at = |s: i64| Timestamp(s * 1_000_000);
    for (cooldown, second) in [(60, false), (5, true)] {
        let mut ids = Ids::new(&IdsConfig::default());
        let s = &mut ids.suppressor;
        assert!(s.allow("port_scan", VnetId(0), a, None, 0, at(100)));
        ids.reconfigure(&IdsConfig {
            cooldown_secs: cooldown,
            ..IdsConfig::default()
        });
        let s = &mut ids.suppressor;
        assert_eq!(
            s.allow("port_scan", VnetId(0), a, None, 0, at(110)),
            second,
            "cooldown {cooldown} s"
        );
    }
}

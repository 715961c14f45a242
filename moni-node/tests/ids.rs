//! IDS alerts on real captures: the attack captures of the corpus raise
//! the matching behavioural alerts with the right attacker or victim; the
//! clean samples and the real general and VoIP captures raise none. Alerts
//! land in the `alerts` dataset and as EVE-JSON lines.

#[macro_use]
mod common;

use std::path::PathBuf;

use arrow::array::{Array, StringArray, TimestampMicrosecondArray, UInt8Array};
use common::*;

/// (kind, src, dst, start µs, end µs) of one alert.
type Alert = (String, Option<String>, Option<String>, i64, i64);

/// Every alert in `out`.
fn alerts(out: &std::path::Path) -> Vec<Alert> {
    let mut v = Vec::new();
    let dir = out.join("alerts");
    if !dir.is_dir() || std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none()) {
        return v;
    }
    for b in read_dataset(&dir) {
        let kind = col::<StringArray>(&b, "kind");
        let src = col::<StringArray>(&b, "src_addr");
        let dst = col::<StringArray>(&b, "dst_addr");
        let t0 = col::<TimestampMicrosecondArray>(&b, "time");
        let t1 = col::<TimestampMicrosecondArray>(&b, "end_time");
        let sev = col::<UInt8Array>(&b, "severity");
        for i in 0..b.num_rows() {
            assert!((1..=3).contains(&sev.value(i)));
            let opt = |a: &StringArray| (!a.is_null(i)).then(|| a.value(i).to_string());
            v.push((
                kind.value(i).to_string(),
                opt(src),
                opt(dst),
                t0.value(i),
                t1.value(i),
            ));
        }
    }
    v
}

fn replay_one(f: &std::path::Path) -> (tempfile::TempDir, moni_node::summary::Summary) {
    let out = tempfile::tempdir().expect("tempdir");
    let s = replay_files(
        &[f.to_path_buf()],
        Some("100=A:production,200=B:shadow,300=rx:monitor"),
        out.path(),
        "",
    );
    (out, s)
}

#[test]
fn corpus_attacks_raise_the_matching_alerts() {
    let Some(c) = corpus() else { return };
    // nmap SYN scan of one host.
    let (out, _) = replay_one(&c.join("attack/synscan.pcapng"));
    let a = alerts(out.path());
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].0, "port_scan");
    assert_eq!(a[0].1.as_deref(), Some("172.16.0.8"));
    assert_eq!(a[0].2.as_deref(), Some("64.13.134.52"));
    assert!(a[0].3 <= a[0].4);
    // SYN, FIN, NULL and Xmas probes against one host.
    let (out, _) = replay_one(&c.join("attack/ndpi-tcp_scan.pcapng"));
    let a = alerts(out.path());
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_deref(), a[0].2.as_deref()),
        ("port_scan", Some("192.168.1.178"), Some("192.168.1.2"))
    );
    let eve = std::fs::read_to_string(out.path().join("eve.json")).expect("eve.json");
    let line: serde_json::Value =
        serde_json::from_str(eve.lines().next().expect("a line")).expect("json");
    assert_eq!(line["event_type"], "alert");
    assert_eq!(line["src_ip"], "192.168.1.178");
    assert_eq!(line["dest_ip"], "192.168.1.2");
    assert_eq!(line["proto"], "TCP");
    assert_eq!(line["alert"]["signature_id"], 9_000_001);
    assert_eq!(line["alert"]["action"], "allowed");
    // moni's own fields travel as Suricata rule metadata (string arrays).
    assert_eq!(line["alert"]["metadata"]["moni_kind"][0], "port_scan");
    assert_eq!(line["alert"]["source"]["ip"], "192.168.1.178");
    assert_eq!(line["alert"]["target"]["ip"], "192.168.1.2");
    let details: serde_json::Value = serde_json::from_str(
        line["alert"]["metadata"]["moni_details"][0]
            .as_str()
            .expect("details"),
    )
    .expect("details JSON");
    let kinds = details["probe_kinds"].as_array().expect("kinds").len();
    assert_eq!(kinds, 4, "syn, fin, null, xmas");
    // hping-style SYN flood with spoofed sources and destinations.
    let (out, s) = replay_one(&c.join("attack/dosattack-synflood.pcap"));
    let a = alerts(out.path());
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_deref(), a[0].2.as_deref()),
        ("syn_flood", None, None)
    );
    assert_eq!(s.alerts.get("syn_flood"), Some(&1));
    // EVE still names both ends: the packet that raised the alert, as
    // Suricata always does.
    let eve = std::fs::read_to_string(out.path().join("eve.json")).expect("eve.json");
    let line: serde_json::Value =
        serde_json::from_str(eve.lines().next().expect("a line")).expect("json");
    let ip = |k: &str| {
        line[k]
            .as_str()
            .and_then(|x| x.parse::<std::net::IpAddr>().ok())
    };
    assert!(ip("src_ip").is_some() && ip("dest_ip").is_some(), "{line}");
    // A spoofed INVITE is no scan or flood.
    let (out, _) = replay_one(&c.join("attack/metasploit-sip-invite-spoof.pcap"));
    assert!(alerts(out.path()).is_empty());
}

#[test]
fn clean_traffic_raises_no_alert() {
    let mut files: Vec<PathBuf> = [
        "background.pcap",
        "vlan-shadow.pcap",
        "voip-impairments.pcap",
        "paper-miniature.pcap",
    ]
    .iter()
    .map(|f| sample(f))
    .collect();
    if let Some(c) = corpus() {
        for dir in ["general", "voip", "tunnels"] {
            for e in std::fs::read_dir(c.join(dir))
                .expect("corpus dir")
                .flatten()
            {
                files.push(e.path());
            }
        }
    }
    for f in files {
        let (out, s) = replay_one(&f);
        assert!(
            alerts(out.path()).is_empty(),
            "{}: {:?}",
            f.display(),
            alerts(out.path())
        );
        assert!(s.alerts.is_empty());
        let eve = std::fs::metadata(out.path().join("eve.json")).expect("eve.json");
        assert_eq!(eve.len(), 0, "{}", f.display());
    }
}

/// Packet time (µs since the epoch) of a UTC date-time, for the spans
/// tshark prints for the corpus captures.
fn us(s: &str) -> i64 {
    chrono_like(s)
}

/// "2009-01-04T05:15:57.858956" as µs since the epoch (UTC).
fn chrono_like(s: &str) -> i64 {
    let (date, time) = s.split_once('T').expect("T");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().expect("date")).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().expect("time")).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac_us: i64 = format!("{frac:0<6}")[..6].parse().expect("fraction");
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000) + frac_us
}

/// Issue 17: the attacks the detectors missed are reported with the right
/// attacker or victim and time span (first packet per tshark), and the
/// false alarms are gone.
#[test]
fn issue_17_missed_attacks_and_false_alarms() {
    let Some(c) = corpus() else { return };
    let one = |f: &str| {
        let (out, _) = replay_one(&c.join(f));
        alerts(out.path())
    };
    // nmap -sA: 192.168.1.10 → 192.168.1.25, the first RST at
    // 05:15:57.858956 (the first probe 57.858354); every probe refused.
    let a = one("attack/evilfingers-nmap-ACK_SCAN.pcap");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_deref(), a[0].2.as_deref()),
        ("port_scan", Some("192.168.1.10"), Some("192.168.1.25"))
    );
    let first_probe = us("2009-01-04T05:15:57.858354");
    assert!(
        a[0].3 >= first_probe && a[0].3 - first_probe < 1_000,
        "{a:?}"
    );
    assert!(a[0].4 < us("2009-01-04T05:15:57.928564"), "{a:?}");
    // nmap -sU: port scan of 192.168.1.25 (its unreachables refuse).
    let a = one("attack/evilfingers-nmap-UDP_SCAN.pcap");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_deref(), a[0].2.as_deref()),
        ("port_scan", Some("192.168.1.10"), Some("192.168.1.25"))
    );
    // UDP ping sweep, no replies: udp_sweep from 246.237.45.150, from its
    // first datagram (03:05:03.258780).
    let a = one("attack/sgr-hs-udpScan.pcap");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_deref(), a[0].2.as_deref()),
        ("udp_sweep", Some("246.237.45.150"), None)
    );
    assert_eq!(a[0].3, us("2022-07-07T03:05:03.258780"));
    // SYN-ACK reflection: victim 10.10.10.10, from the first SYN-ACK
    // (03:58:45.551136); no sweep by the victim from its backscatter.
    let a = one("attack/stopddos-amp.TCP.reflection.SYNACK.pcap");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_deref(), a[0].2.as_deref()),
        ("syn_ack_reflection", None, Some("10.10.10.10"))
    );
    assert_eq!(a[0].3, us("2021-06-05T03:58:45.551136"));
    assert!(a[0].4 <= us("2021-06-05T03:58:45.697945"));
    // One source's SYN-ping sweep: host_sweep only, no syn_flood.
    let a = one("attack/sgr-hs-tcp_synPingSweepRand.pcapng");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_deref(), a[0].2.as_deref()),
        ("host_sweep", Some("10.0.0.128"), None)
    );
    // ICMP flood: one alert, naming the victim, not the flooder.
    let a = one("attack/cce15-icmp_flood.pcap");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].0.as_str(), a[0].1.as_deref(), a[0].2.as_deref()),
        ("icmp_flood", None, Some("10.2.1.212"))
    );
    // iodine still a tunnel from 10.0.2.30 to its server.
    let a = one("attack/ndpi-dns-tunnel-iodine.pcap");
    assert!(!a.is_empty());
    assert!(
        a.iter()
            .all(|x| (x.0.as_str(), x.1.as_deref(), x.2.as_deref())
                == ("dns_tunnel", Some("10.0.2.30"), Some("10.0.2.20"))),
        "{a:?}"
    );
    // A browser's 60 answered connections to 29 hosts: no sweep.
    assert!(one("general/ndpi-reddit-ipv6.pcap").is_empty());
}

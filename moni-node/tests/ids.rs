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
        for dir in ["general", "voip"] {
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

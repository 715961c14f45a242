//! VoIP analysis beyond tshark's judgement: no false streams on traffic
//! without RTP, bounded state under a flood of fake RTP flows, and the
//! datasets' content.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use common::*;
use moni_samples::frame::{self, L4};
use moni_samples::pcap::{PcapWriter, LINKTYPE_ETHERNET};

#[test]
fn no_false_streams_on_traffic_without_rtp() {
    let out = tempfile::tempdir().expect("tempdir");
    for f in ["background.pcap", "vlan-shadow.pcap"] {
        let s = replay_files(&[sample(f)], None, &out.path().join(f), "");
        assert_eq!(s.voip.streams, 0, "{f}");
    }
    let Some(c) = corpus() else { return };
    for f in [
        "general/ndpi-http_ipv6.pcap",
        "general/TLPW1-http-caplen-lt-len.pcap",
        "general/vlan3136-http-syn-retransmit.pcap",
        "attack/synscan.pcapng",
        "attack/dosattack-synflood.pcap",
        "voip/DTMFsipinfo.pcap",
    ] {
        let s = replay_files(
            &[c.join(f)],
            None,
            &out.path().join(f.replace('/', "_")),
            "",
        );
        assert_eq!(s.voip.streams, 0, "{f}");
    }
}

fn rtp_payload(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut b = vec![0x80, 0];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ssrc.to_be_bytes());
    b.extend_from_slice(&[0xff; 160]);
    b
}

#[test]
fn a_flood_of_short_fake_rtp_flows_stays_bounded() {
    // 100,000 flows of 2 packets (candidates) and 20,000 of 5 (streams),
    // against caps of 10,000 candidates and 5,000 streams.
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("fake-rtp.pcap");
    let file = std::io::BufWriter::new(std::fs::File::create(&pcap).expect("create"));
    let mut w = PcapWriter::new(file, 65535, LINKTYPE_ETHERNET).expect("pcap");
    let dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
    let mut t: i64 = 1_700_000_000_000_000;
    for (flows, per_flow, base) in [(100_000u32, 2u16, 0x0a00_0000u32), (20_000, 5, 0x0b00_0000)] {
        for i in 0..flows {
            let src = IpAddr::V4(Ipv4Addr::from(base + i));
            for k in 0..per_flow {
                let payload = rtp_payload(k, u32::from(k) * 160, i);
                let l4 = L4::Udp {
                    sport: 20_000,
                    dport: 30_000,
                    payload: &payload,
                };
                let f = frame::packet(&[], src, dst, 1, &l4);
                w.write(t, &f, f.len() as u32).expect("write");
                t += 5;
            }
        }
    }
    w.finish().expect("finish");
    let cfg = dir.path().join("node.toml");
    std::fs::write(&cfg, "[rtp]\nmax_candidates = 10000\nmax_streams = 5000\n").expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_moni-node"))
        // One worker: the tables' caps are per analysis worker (issue 15
        // known gap), and this test counts the evictions of one table.
        .args(["replay", "--json", "--workers", "1", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg(&pcap)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let v = &j["voip"];
    assert_eq!(v["streams"], 20_000, "every confirmed stream is written");
    assert_eq!(v["streams_evicted"], 15_000);
    assert!(v["candidates_evicted"].as_u64().expect("count") >= 90_000);
    let rss = j["peak_rss_bytes"].as_u64().expect("rss");
    assert!(rss < 200 * 1000 * 1000, "peak RSS {rss}");
}

#[test]
fn stream_and_window_rows_carry_quality_and_ids() {
    let Some(c) = corpus() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    replay_files(&[c.join("voip/SIP_DTMF2.pcap")], None, out.path(), "");
    use arrow::array::{Array, Float64Array, Int64Array, StringArray, UInt64Array};
    let streams = read_dataset(&out.path().join("rtp_streams"));
    let windows = read_dataset(&out.path().join("rtp_windows"));
    let total_window_packets: u64 = windows
        .iter()
        .map(|b| {
            col::<UInt64Array>(b, "packets_received")
                .values()
                .iter()
                .sum::<u64>()
        })
        .sum();
    let total_stream_packets: u64 = streams
        .iter()
        .map(|b| {
            col::<UInt64Array>(b, "packets_received")
                .values()
                .iter()
                .sum::<u64>()
        })
        .sum();
    assert_eq!(
        total_window_packets, total_stream_packets,
        "windows partition the streams"
    );
    let window_lost: i64 = windows
        .iter()
        .map(|b| {
            col::<Int64Array>(b, "packets_lost")
                .values()
                .iter()
                .sum::<i64>()
        })
        .sum();
    assert_eq!(
        window_lost, 2,
        "the two lost packets of 0x9A7B5382, per window, not cumulative"
    );
    for b in &streams {
        let call = col::<StringArray>(b, "call_id");
        let mos = col::<Float64Array>(b, "mos_lq");
        for i in 0..b.num_rows() {
            assert!(
                !call.is_null(i),
                "SDP-announced streams carry their Call-ID"
            );
            assert!((1.0..=4.5).contains(&mos.value(i)));
        }
    }
}

#[test]
fn generated_impairments_match_the_ground_truth() {
    use arrow::array::{
        Array, Float64Array, Int64Array, StringArray, UInt16Array, UInt32Array, UInt64Array,
    };
    let truth: moni_samples::voip::VoipTruth = serde_json::from_str(
        &std::fs::read_to_string(sample("voip-impairments.truth.json")).expect("truth"),
    )
    .expect("json");
    let out = tempfile::tempdir().expect("tempdir");
    replay_files(&[sample("voip-impairments.pcap")], None, out.path(), "");
    let batches = read_dataset(&out.path().join("rtp_streams"));
    let mut matched = 0;
    for b in &batches {
        for i in 0..b.num_rows() {
            let ssrc = col::<UInt32Array>(b, "ssrc").value(i);
            let t = truth
                .streams
                .iter()
                .find(|t| t.ssrc == ssrc)
                .unwrap_or_else(|| panic!("stream {ssrc:#x} not in truth"));
            assert_eq!(col::<StringArray>(b, "src_addr").value(i), t.src_addr);
            assert_eq!(col::<UInt16Array>(b, "dst_port").value(i), t.dst_port);
            assert_eq!(col::<StringArray>(b, "call_id").value(i), t.call_id);
            assert_eq!(
                col::<UInt64Array>(b, "packets_received").value(i),
                t.packets_received,
                "{}",
                t.call_id
            );
            assert_eq!(
                col::<Int64Array>(b, "packets_expected").value(i),
                t.packets_expected,
                "{}",
                t.call_id
            );
            assert_eq!(
                col::<Int64Array>(b, "packets_lost").value(i),
                t.packets_lost,
                "{}",
                t.call_id
            );
            assert_eq!(
                col::<UInt64Array>(b, "duplicates").value(i),
                t.duplicates,
                "{}",
                t.call_id
            );
            let j = col::<Float64Array>(b, "jitter_ms").value(i);
            assert!(
                (j - t.jitter_ms).abs() <= (0.01 * t.jitter_ms).max(0.01),
                "{}: jitter {j} vs {}",
                t.call_id,
                t.jitter_ms
            );
            matched += 1;
        }
    }
    assert_eq!(matched, truth.streams.len());
    // RTCP: the round trip measured at the probe from SR and RR capture
    // times and the DLSR, and the far end's own report, per stream.
    let mut rtcp_matched = 0;
    for b in &batches {
        for i in 0..b.num_rows() {
            let ssrc = col::<UInt32Array>(b, "ssrc").value(i);
            let rtt = col::<Float64Array>(b, "rtt_ms");
            let Some(t) = truth.rtcp.iter().find(|t| t.ssrc == ssrc) else {
                assert!(rtt.is_null(i), "{ssrc:#x} has no RTCP");
                continue;
            };
            assert!(
                (rtt.value(i) - t.rtt_ms).abs() < 0.01,
                "{} vs {}",
                rtt.value(i),
                t.rtt_ms
            );
            let frac = col::<Float64Array>(b, "remote_fraction_lost").value(i);
            assert!((frac - t.remote_fraction_lost).abs() < 1e-9);
            assert_eq!(
                col::<Int64Array>(b, "remote_cumulative_lost").value(i),
                t.remote_cumulative_lost
            );
            let j = col::<Float64Array>(b, "remote_jitter_ms").value(i);
            assert!((j - t.remote_jitter_ms).abs() < 1e-9, "{j}");
            // MOS-CQ's delay uses RTT/2 (+ the default jitter buffer's
            // mean playout delay and packetization).
            let delay = col::<Float64Array>(b, "one_way_delay_ms").value(i);
            let jb = col::<Float64Array>(b, "jb_delay_ms_adaptive").value(i);
            assert!(
                (delay - (t.rtt_ms / 2.0 + jb + 20.0)).abs() < 0.01,
                "{delay}"
            );
            rtcp_matched += 1;
        }
    }
    assert_eq!(rtcp_matched, truth.rtcp.len());
    assert_eq!(truth.rtcp.len(), 2);
    // The impairments are real: some loss, duplicates and a wraparound.
    assert!(truth.streams.iter().any(|t| t.packets_lost > 10));
    assert!(truth.streams.iter().any(|t| t.duplicates > 0));
}

/// Mean MOS-CQ per (vnet, window start) from `rtp_windows`.
fn window_mos(dir: &std::path::Path) -> std::collections::BTreeMap<(String, i64), f64> {
    use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
    let mut acc: std::collections::BTreeMap<(String, i64), (f64, f64)> = Default::default();
    for b in read_dataset(&dir.join("rtp_windows")) {
        for i in 0..b.num_rows() {
            let k = (
                col::<StringArray>(&b, "vnet").value(i).to_string(),
                col::<TimestampMicrosecondArray>(&b, "window_start").value(i) / 1_000_000,
            );
            let e = acc.entry(k).or_default();
            e.0 += col::<Float64Array>(&b, "mos_cq").value(i);
            e.1 += 1.0;
        }
    }
    acc.into_iter().map(|(k, (s, n))| (k, s / n)).collect()
}

#[test]
fn paper_miniature_reproduces_table_1_qualitatively() {
    let truth: moni_samples::voip::VoipTruth = serde_json::from_str(
        &std::fs::read_to_string(sample("paper-miniature.truth.json")).expect("truth"),
    )
    .expect("json");
    let out = tempfile::tempdir().expect("tempdir");
    let s = replay_files(
        &[sample("paper-miniature.pcap")],
        Some(&truth.vnet_map),
        out.path(),
        "",
    );
    let mos = window_mos(out.path());
    let t0 = 1_700_000_010; // media starts on this window
    for phase in 1..=6i64 {
        let w = t0 + (phase - 1) * 10;
        let (a, b, rx) = (
            mos[&("A".into(), w)],
            mos[&("B".into(), w)],
            mos[&("rx".into(), w)],
        );
        assert!(b > 4.0, "phase {phase}: B {b}");
        if (3..=5).contains(&phase) {
            assert!(a < 3.6, "phase {phase}: A {a} should suffer");
        } else {
            assert!(a > 4.0, "phase {phase}: A {a}");
        }
        // The receiver follows production: degraded with A in phases 3-4,
        // good again once production moved to B in phase 5.
        if (3..=4).contains(&phase) {
            assert!(rx < 4.0, "phase {phase}: rx {rx} should suffer with A");
        } else {
            assert!(rx > 4.0, "phase {phase}: rx {rx}");
        }
    }
    // The node's own comparison says the same, window by window.
    let c = &s.comparison;
    let verdicts: Vec<&str> = c.windows.iter().map(|w| w.verdict).collect();
    assert_eq!(
        verdicts,
        [
            "equal",
            "equal",
            "shadow_better",
            "shadow_better",
            "shadow_better",
            "equal"
        ]
    );
    let rows = read_dataset(&out.path().join("rtp_compare"));
    assert_eq!(
        rows.iter().map(|b| b.num_rows()).sum::<usize>(),
        12,
        "2 streams x 6 windows"
    );
}

#[test]
fn rtcp_reports_give_round_trip_and_far_end_view() {
    use arrow::array::{Array, Float64Array, Int64Array, UInt32Array};
    let Some(c) = corpus() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let s = replay_files(
        &[c.join("voip/SIP_CALL_RTP_G711.pcap")],
        None,
        out.path(),
        "",
    );
    assert_eq!(s.voip.rtcp_packets, 28);
    let mut with_rtt = 0;
    for b in read_dataset(&out.path().join("rtp_streams")) {
        let ssrc = col::<UInt32Array>(&b, "ssrc");
        let rtt = col::<Float64Array>(&b, "rtt_ms");
        let lost = col::<Int64Array>(&b, "remote_cumulative_lost");
        let delay = col::<Float64Array>(&b, "one_way_delay_ms");
        let jb = col::<Float64Array>(&b, "jb_delay_ms_adaptive");
        for i in 0..b.num_rows() {
            if ssrc.value(i) == 0xD2BD_4E3E {
                // The RR echoing this sender's SR came back within a few ms.
                assert!(!rtt.is_null(i));
                let r = rtt.value(i);
                assert!((0.0..50.0).contains(&r), "rtt {r}");
                assert_eq!(lost.value(i), 0, "the far end reports no loss");
                // MOS-CQ then uses RTT/2 instead of the configured 20 ms.
                assert!((delay.value(i) - (r / 2.0 + jb.value(i) + 20.0)).abs() < 1e-6);
                with_rtt += 1;
            }
        }
    }
    assert_eq!(with_rtt, 2, "both copies of the stream");
}

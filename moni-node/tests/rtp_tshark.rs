//! tshark is the independent judge of RTP statistics: on every real VoIP
//! capture of the corpus, moni's `rtp_streams` must list the same streams
//! as `tshark -q -z rtp,streams` (with SDP and its RTP heuristic on) and
//! agree per stream on packets, loss and max delta, and on max/mean jitter
//! with tshark's on the capture without its telephone-event packets (the
//! voice's jitter).
//!
//! Streams tshark finds whose payload type is dynamic and announced by no
//! SDP (`RTPType-N`) are compared on packets, loss and max delta only:
//! tshark computes no jitter without a clock rate, where moni infers the
//! clock from the timestamps (and calls the codec `dynamic-PT`); the same
//! for a telephone-event stream with its own SSRC (`rtpevent`). moni
//! believes such streams after 8 packets, or after 4 between endpoints
//! that carry another stream (WebRTC's bundle), so shorter ones are left
//! out.
//!
//! Loss: tshark computes expected packets from the *last* sequence number
//! seen, RFC 3550 (and moni) from the *highest*; the two differ only when
//! the last packet of a stream arrived reordered, which none of these
//! captures has (the generator keeps stream edges clean), so loss must be
//! equal.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use arrow::array::{
    Array, Float64Array, Int64Array, StringArray, UInt16Array, UInt32Array, UInt64Array,
};
use common::*;

#[derive(Debug, Clone, PartialEq)]
struct Row {
    payload: String,
    packets: u64,
    lost: i64,
    max_delta_ms: f64,
    mean_jitter_ms: f64,
    max_jitter_ms: f64,
}

type Key = (String, u16, String, u16, u32);

fn tshark_streams(file: &Path) -> BTreeMap<Key, Row> {
    let out = Command::new("tshark")
        .args([
            "-n",
            "-q",
            "-o",
            "rtp.heuristic_rtp:TRUE",
            "-z",
            "rtp,streams",
            "-r",
        ])
        .arg(file)
        .output()
        .expect("tshark is installed (.ci/run installs it)");
    assert!(out.status.success(), "tshark failed on {}", file.display());
    let mut rows = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let tok: Vec<&str> = line.split_whitespace().collect();
        let Some(ssrc_at) = tok.iter().position(|t| t.starts_with("0x")) else {
            continue;
        };
        let Some(pct_at) = tok
            .iter()
            .position(|t| t.starts_with('(') && t.ends_with("%)"))
        else {
            continue;
        };
        let num = |i: usize| -> f64 { tok[i].parse().expect("number column") };
        let key = (
            tok[ssrc_at - 4].to_string(),
            tok[ssrc_at - 3].parse().expect("port"),
            tok[ssrc_at - 2].to_string(),
            tok[ssrc_at - 1].parse().expect("port"),
            u32::from_str_radix(&tok[ssrc_at][2..], 16).expect("ssrc"),
        );
        rows.insert(
            key,
            Row {
                payload: tok[ssrc_at + 1..pct_at - 2].join(" "),
                packets: tok[pct_at - 2].parse().expect("packets"),
                lost: tok[pct_at - 1].parse().expect("lost"),
                max_delta_ms: num(pct_at + 3),
                mean_jitter_ms: num(pct_at + 5),
                max_jitter_ms: num(pct_at + 6),
            },
        );
    }
    rows
}

fn moni_streams(file: &Path) -> BTreeMap<Key, Row> {
    let out = tempfile::tempdir().expect("tempdir");
    replay_files(&[file.to_path_buf()], None, out.path(), "");
    let mut rows = BTreeMap::new();
    for b in read_dataset(&out.path().join("rtp_streams")) {
        let s = |n| col::<StringArray>(&b, n);
        let p = |n| col::<UInt16Array>(&b, n);
        // Null where moni computed nothing; tshark prints 0.000 there.
        let f = |n| {
            let a = col::<Float64Array>(&b, n);
            move |i: usize| if a.is_null(i) { 0.0 } else { a.value(i) }
        };
        for i in 0..b.num_rows() {
            let key = (
                s("src_addr").value(i).to_string(),
                p("src_port").value(i),
                s("dst_addr").value(i).to_string(),
                p("dst_port").value(i),
                col::<UInt32Array>(&b, "ssrc").value(i),
            );
            rows.insert(
                key,
                Row {
                    payload: s("codec").value(i).to_string(),
                    packets: col::<UInt64Array>(&b, "packets_received").value(i),
                    lost: col::<Int64Array>(&b, "packets_lost").value(i),
                    max_delta_ms: f("max_delta_ms")(i),
                    mean_jitter_ms: f("jitter_mean_ms")(i),
                    max_jitter_ms: f("jitter_max_ms")(i),
                },
            );
        }
    }
    rows
}

/// A stream tshark knows no clock for: a dynamic payload type without SDP.
fn is_dynamic(r: &Row) -> bool {
    r.payload.starts_with("RTPType-") || r.payload == "rtpevent"
}

fn close(a: f64, b: f64) -> bool {
    // tshark prints 3 decimals.
    (a - b).abs() <= 0.0015 || (a - b).abs() <= 0.01 * b.abs()
}

/// Asserts that moni lists the same streams as tshark and agrees on each;
/// returns how many streams were compared.
fn assert_agree(name: &str, got: &BTreeMap<Key, Row>, want: &BTreeMap<Key, Row>) -> usize {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{name}: streams"
    );
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(g.packets, w.packets, "{name} {k:?} packets");
        // tshark's Lost uses the last sequence seen and moni's the highest
        // (RFC 3550): they differ only if the last packet was reordered,
        // which no compared capture has.
        assert_eq!(g.lost, w.lost, "{name} {k:?} lost");
        for (what, a, b) in [
            ("max delta", g.max_delta_ms, w.max_delta_ms),
            ("max jitter", g.max_jitter_ms, w.max_jitter_ms),
            ("mean jitter", g.mean_jitter_ms, w.mean_jitter_ms),
        ] {
            // tshark has no clock, hence no jitter, for a dynamic payload
            // type without SDP.
            if is_dynamic(w) && what != "max delta" {
                continue;
            }
            assert!(close(a, b), "{name} {k:?} {what}: {g:?} vs {w:?}");
        }
    }
    want.len()
}

/// The streams of tshark's table that moni's heuristic believes: a
/// dynamic payload type without SDP needs 8 packets, or 4 when its
/// endpoints (either direction) carry a stream of 8.
fn believed(all: BTreeMap<Key, Row>) -> BTreeMap<Key, Row> {
    let pair = |k: &Key| {
        let (a, b) = ((k.0.clone(), k.1), (k.2.clone(), k.3));
        if a <= b {
            (a, b)
        } else {
            (b, a)
        }
    };
    let carried: BTreeSet<_> = all
        .iter()
        .filter(|(_, r)| !is_dynamic(r) || r.packets >= 8)
        .map(|(k, _)| pair(k))
        .collect();
    all.into_iter()
        .filter(|(k, r)| {
            !is_dynamic(r) || r.packets >= 8 || (r.packets >= 4 && carried.contains(&pair(k)))
        })
        .collect()
}

#[test]
fn rtp_streams_agree_with_tshark_on_the_generated_impairments() {
    // Untagged, so tshark's stream keys (which ignore VLANs) match moni's.
    let file = sample("voip-impairments.pcap");
    let n = assert_agree(
        "voip-impairments",
        &moni_streams(&file),
        &tshark_streams(&file),
    );
    assert_eq!(n, 12);
}

#[test]
fn rtp_streams_agree_with_tshark_on_the_corpus() {
    let Some(c) = corpus() else { return };
    let mut compared = 0;
    for name in [
        "SIP_CALL_RTP_G711.pcap",
        "sip-rtp-g711.pcap",
        "SIP_DTMF2.pcap",
        "rtp-protocol-g711a-cn.pcap",
        "aaa.pcap",
        "Asterisk_ZFONE_XLITE.pcap",
        "sipp-g711a-rtponly.pcap",
        "ndpi-rtp-vlan.pcapng",
        "DTMFsipinfo.pcap",
        "sip-ipv6-frag-sll.pcap",
        "sipp_uac_Media_DTMF_Speex.pcap",
        "mario_choppy_speech.pcap",
        "whatsapp_login_call.pcap",
        "sip-rtp-g729a.pcap",
        "sip-rtp-dvi4.pcap",
        "rtcp_multiple_pkts_in_the_same_datagram.pcap",
        // A video call (bundled PT 101, 102 and 120 on one port pair, the
        // video's timestamps stepping back) beside the attack.
        "../attack/stopddos-amp.TCP.reflection.SYNACK.pcap",
    ] {
        let file = c.join("voip").join(name);
        let mut want = believed(tshark_streams(&file));
        // The jitter is the voice's: tshark's on the capture without the
        // RFC 4733 packets, whose timestamps repeat the event's start (on
        // the whole capture tshark gives sipp_uac's PCMA stream 90.9 ms of
        // max jitter, where its voice has 0.068 ms). Packets, loss and max
        // delta are the whole capture's.
        let voice = tempfile::tempdir().expect("tempdir");
        let voice_file = voice.path().join(file.file_name().expect("a file"));
        let o = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&file)
            .args(["-Y", "!rtpevent", "-w"])
            .arg(&voice_file)
            .output()
            .expect("tshark");
        assert!(o.status.success(), "{name}: tshark -w");
        let voice_rows = tshark_streams(&voice_file);
        for (k, r) in want.iter_mut() {
            if let Some(v) = voice_rows.get(k) {
                (r.max_jitter_ms, r.mean_jitter_ms) = (v.max_jitter_ms, v.mean_jitter_ms);
            }
        }
        compared += assert_agree(name, &moni_streams(&file), &want);
    }
    assert!(compared >= 15, "compared {compared} streams");
}

/// Writes a nanosecond pcap (magic 0xa1b23c4d) of one PCMU stream whose
/// packets arrive at `arrivals_ns` (ns after a whole second).
fn write_ns_pcap(path: &Path, arrivals_ns: &[i64]) {
    use moni_samples::frame::{self, L4};
    use std::net::{IpAddr, Ipv4Addr};
    let mut f = Vec::new();
    for v in [0xa1b2_3c4du32, 0x0004_0002, 0, 0, 65_535, 1] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    let t0: i64 = 1_700_000_000 * 1_000_000_000;
    for (i, &at) in arrivals_ns.iter().enumerate() {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&(1000 + i as u16).to_be_bytes());
        p.extend_from_slice(&(160 * i as u32).to_be_bytes());
        p.extend_from_slice(&0x0BAD_CAFEu32.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        let l4 = L4::Udp {
            sport: 40_000,
            dport: 40_002,
            payload: &p,
        };
        let frame = frame::packet(
            &[],
            IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2)),
            i as u16,
            &l4,
        );
        let t = t0 + at;
        for v in [
            (t / 1_000_000_000) as u32,
            (t % 1_000_000_000) as u32,
            frame.len() as u32,
            frame.len() as u32,
        ] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&frame);
    }
    std::fs::write(path, f).expect("write pcap");
}

#[test]
fn a_nanosecond_capture_keeps_its_nanoseconds() {
    // 100 packets 20 ms apart, each off by a few hundred µs with ns digits,
    // and one stall of exactly 277.944503 ms between packets 49 and 50.
    let arrivals: Vec<i64> = (0..100i64)
        .map(|i| {
            let stall = if i >= 50 { 257_944_503 } else { 0 };
            let off = if i == 49 || i == 50 {
                0
            } else {
                (i * 104_729) % 900_001
            };
            i * 20_000_000 + stall + off
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ns.pcap");
    write_ns_pcap(&file, &arrivals);
    let got = moni_streams(&file);
    // tshark (3 decimals) agrees on packets, loss, max delta and jitter.
    assert_eq!(assert_agree("ns", &got, &tshark_streams(&file)), 1);
    let row = got.values().next().expect("one stream");
    // The ns digits survive: 277.944503, not 277.944.
    assert!(
        (row.max_delta_ms - 277.944_503).abs() < 1e-9,
        "{}",
        row.max_delta_ms
    );
    // The jitter is RFC 3550's on the ns arrivals (20 ms nominal steps),
    // with tshark's running mean over the packets after the first.
    let (mut j, mut max_j, mut mean) = (0.0f64, 0.0f64, 0.0f64);
    for (n, w) in arrivals.windows(2).enumerate() {
        let d = ((w[1] - w[0]) as f64 / 1e6 - 20.0).abs();
        j += (d - j) / 16.0;
        max_j = max_j.max(j);
        mean = (mean * n as f64 + j) / (n as f64 + 1.0);
    }
    assert!(
        (row.max_jitter_ms - max_j).abs() < 1e-9,
        "{row:?} vs {max_j}"
    );
    assert!(
        (row.mean_jitter_ms - mean).abs() < 1e-9,
        "{row:?} vs {mean}"
    );
}

/// The Call-IDs of the SIP messages tshark dissects in `file` (one entry
/// per message) that match `filter`.
fn tshark_call_ids(file: &Path, sip_ports: &[u16], filter: &str) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(file);
    for p in sip_ports {
        cmd.args(["-d", &format!("udp.port=={p},sip")]);
    }
    let out = cmd
        .args(["-Y", filter, "-T", "fields", "-e", "sip.Call-ID"])
        .output()
        .expect("tshark");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_call_in_the_sip_captures_is_found_with_all_its_messages() {
    let Some(c) = corpus() else { return };
    for (name, ports) in [
        ("SIP_CALL_RTP_G711.pcap", vec![5060u16]),
        ("sip-rtp-g711.pcap", vec![5060]),
        ("SIP_DTMF2.pcap", vec![5060]),
        ("rtp-protocol-g711a-cn.pcap", vec![5060]),
        ("aaa.pcap", vec![5060]),
        ("Asterisk_ZFONE_XLITE.pcap", vec![5060]),
        ("DTMFsipinfo.pcap", vec![5060]),
        ("metasploit-sip-invite-spoof.pcap", vec![5060, 10270]),
        ("sip-ipv6-frag-sll.pcap", vec![5062, 15060, 25060]),
    ] {
        let file = if name.starts_with("metasploit") {
            c.join("attack").join(name)
        } else {
            c.join("voip").join(name)
        };
        let want: BTreeSet<String> = tshark_call_ids(&file, &ports, "sip.Method == \"INVITE\"")
            .into_iter()
            .collect();
        assert!(!want.is_empty(), "{name}: tshark found no INVITE");
        // Every message of a call counts in it: tshark's messages per
        // Call-ID, the 200 OK of a BYE, the ACK of a rejection and a
        // CANCEL's retransmissions included.
        let mut messages = BTreeMap::<String, u64>::new();
        for id in tshark_call_ids(&file, &ports, "sip") {
            *messages.entry(id).or_default() += 1;
        }
        // moni at its defaults (`sip_ports = [5060]`): SIP on other
        // ports is found by its first line, as tshark is told here.
        let out = tempfile::tempdir().expect("tempdir");
        replay_files(&[file], None, out.path(), "");
        // One row per Call-ID (no call split by a CANCEL that crossed
        // its answer), with tshark's count of its messages.
        let mut got = BTreeMap::new();
        for b in read_dataset(&out.path().join("calls")) {
            let ids = col::<StringArray>(&b, "call_id");
            let n = col::<UInt64Array>(&b, "sip_messages");
            for i in 0..b.num_rows() {
                let before = got.insert(ids.value(i).to_string(), n.value(i));
                assert_eq!(before, None, "{name}: {} in two rows", ids.value(i));
            }
        }
        assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), want, "{name}");
        let want_messages: BTreeMap<String, u64> = messages
            .into_iter()
            .filter(|(id, _)| want.contains(id))
            .collect();
        assert_eq!(got, want_messages, "{name}: SIP messages per call");
    }
}

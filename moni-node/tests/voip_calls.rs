//! MOS that survives real calls (issue 12): jitter-buffer models on the
//! corpus's real captures, judged against what tshark sees in them.

mod common;

use arrow::array::{Array, Float64Array, StringArray, UInt32Array, UInt64Array};
use arrow::record_batch::RecordBatch;
use common::*;

/// One row of `rtp_streams`, the columns these tests need.
#[derive(Debug)]
struct Row {
    ssrc: u32,
    codec: String,
    packets: u64,
    mos_lq: f64,
    discards: [Option<u64>; 3],
    delay: [Option<f64>; 3],
    mos_lq_by: [Option<f64>; 3],
}

const MODELS: [&str; 3] = ["fixed50", "fixed200", "adaptive"];

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let opt_u = |name: &str, i: usize| {
            let c = col::<UInt64Array>(b, name);
            (!c.is_null(i)).then(|| c.value(i))
        };
        let opt_f = |name: &str, i: usize| {
            let c = col::<Float64Array>(b, name);
            (!c.is_null(i)).then(|| c.value(i))
        };
        for i in 0..b.num_rows() {
            out.push(Row {
                ssrc: col::<UInt32Array>(b, "ssrc").value(i),
                codec: col::<StringArray>(b, "codec").value(i).to_string(),
                packets: col::<UInt64Array>(b, "packets_received").value(i),
                mos_lq: col::<Float64Array>(b, "mos_lq").value(i),
                discards: MODELS.map(|m| opt_u(&format!("jb_discards_{m}"), i)),
                delay: MODELS.map(|m| opt_f(&format!("jb_delay_ms_{m}"), i)),
                mos_lq_by: MODELS.map(|m| opt_f(&format!("mos_lq_{m}"), i)),
            });
        }
    }
    out
}

fn replay_corpus(name: &str, config: &str) -> Option<Vec<Row>> {
    let c = corpus()?;
    let out = tempfile::tempdir().expect("tempdir");
    replay_files(&[c.join("voip").join(name)], None, out.path(), config);
    Some(rows(&read_dataset(&out.path().join("rtp_streams"))))
}

/// Packets tshark dissects in `file` matching a display filter.
fn tshark_count(file: &std::path::Path, filter: &str) -> usize {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", filter])
        .output()
        .expect("tshark is installed");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn dtmf_is_never_late_and_the_speex_call_scores_well() {
    let Some(rows) = replay_corpus("sipp_uac_Media_DTMF_Speex.pcap", "") else {
        return;
    };
    let Some(c) = corpus() else { return };
    // The stream carries 340 RFC 2833 packets (tshark), every one of which
    // the old all-time-minimum buffer counted late.
    let events = tshark_count(
        &c.join("voip/sipp_uac_Media_DTMF_Speex.pcap"),
        "rtp.ssrc == 0x421970fe && rtpevent",
    );
    assert_eq!(events, 340);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    for r in &rows {
        assert!(r.mos_lq >= 4.0, "{r:#?}");
        for (m, d) in MODELS.iter().zip(r.discards) {
            assert_eq!(d, Some(0), "{m}: {r:#?}");
        }
    }
    assert!(rows
        .iter()
        .any(|r| r.ssrc == 0x421970FE && r.packets == 1144));
}

#[test]
fn adaptive_discards_less_than_fixed50_on_choppy_speech() {
    let Some(rows) = replay_corpus("mario_choppy_speech.pcap", "") else {
        return;
    };
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let r = &rows[0];
    assert_eq!(r.codec, "PCMA");
    let [Some(f50), Some(f200), Some(ad)] = r.discards else {
        panic!("every model configured by default: {r:#?}");
    };
    let [Some(d50), Some(d200), Some(dad)] = r.delay else {
        panic!("{r:#?}");
    };
    // Measured: fixed50 595 discards, fixed200 0, adaptive 10; delays
    // 32.5, 176.2, 63.3 ms.
    assert!(ad < f50, "{r:#?}");
    assert!(f200 <= ad, "{r:#?}");
    assert!(dad > d50 && d200 > dad, "{r:#?}");
    // The default model is the adaptive one.
    assert_eq!(r.mos_lq_by[2], Some(r.mos_lq));
    assert!(r.mos_lq_by[0] < r.mos_lq_by[2], "{r:#?}");
}

#[test]
fn the_default_model_and_the_model_list_are_configurable() {
    let Some(rows) = replay_corpus(
        "mario_choppy_speech.pcap",
        "[rtp]\njitter_buffers = [\"fixed50\"]\ndefault_jitter_buffer = \"fixed50\"\n",
    ) else {
        return;
    };
    let r = &rows[0];
    assert_eq!(r.discards[1], None);
    assert_eq!(r.discards[2], None);
    assert_eq!(r.mos_lq_by[0], Some(r.mos_lq));
    assert!(r.discards[0].is_some_and(|d| d > 500), "{r:#?}");
}

#[test]
fn dns_that_starts_like_rtcp_is_not_rtcp() {
    use moni_samples::frame::{self, L4};
    use moni_samples::pcap::{PcapWriter, LINKTYPE_ETHERNET};
    use std::net::{IpAddr, Ipv4Addr};
    // 500 DNS responses whose id is 0x80C8..: version 2 and "SR" to a
    // first-byte test, on port 53 and with lengths that do not add up.
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("dns.pcap");
    let file = std::io::BufWriter::new(std::fs::File::create(&pcap).expect("create"));
    let mut w = PcapWriter::new(file, 65535, LINKTYPE_ETHERNET).expect("pcap");
    let (c, s) = (
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53)),
    );
    let mut t: i64 = 1_700_000_000_000_000;
    for i in 0..500u16 {
        let mut dns = vec![
            0x80,
            0xc8 + (i % 8) as u8,
            0x81,
            0x80,
            0,
            1,
            0,
            1,
            0,
            0,
            0,
            0,
        ];
        dns.extend_from_slice(&[
            7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm',
        ]);
        dns.extend_from_slice(&[
            0, 0, 1, 0, 1, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4,
        ]);
        let l4 = L4::Udp {
            sport: 53,
            dport: 40_000 + i,
            payload: &dns,
        };
        let f = frame::packet(&[], s, c, 1, &l4);
        w.write(t, &f, f.len() as u32).expect("write");
        t += 1000;
    }
    w.finish().expect("finish");
    let s = replay_files(&[pcap], None, &dir.path().join("out"), "");
    assert_eq!(s.voip.rtcp_packets, 0);
    assert_eq!(s.voip.streams, 0);
}

/// Writes PCMU streams (one per entry: SSRC, source port, packets as
/// (sequence, timestamp, arrival µs offset)) into one capture.
/// Packets of one stream: (sequence, timestamp, arrival µs offset).
type Packets = Vec<(u16, u32, i64)>;

fn write_streams(path: &std::path::Path, streams: &[(u32, u16, Packets)]) {
    write_streams_pt(path, streams, |_| 0);
}

/// As [`write_streams`], with the payload type of each packet given by its
/// sequence number.
fn write_streams_pt(
    path: &std::path::Path,
    streams: &[(u32, u16, Packets)],
    pt_of: impl Fn(u16) -> u8,
) {
    use moni_samples::frame::{self, L4};
    use moni_samples::pcap::{PcapWriter, LINKTYPE_ETHERNET};
    use std::net::{IpAddr, Ipv4Addr};
    let mut all = Vec::new();
    for (ssrc, port, pkts) in streams {
        for &(seq, ts, at) in pkts {
            all.push((at, *ssrc, *port, seq, ts));
        }
    }
    all.sort_by_key(|p| (p.0, p.1));
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut w = PcapWriter::new(file, 65535, LINKTYPE_ETHERNET).expect("pcap");
    let (a, b) = (
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)),
    );
    let t0: i64 = 1_700_000_000_000_000;
    for (at, ssrc, port, seq, ts) in all {
        let mut p = vec![0x80, pt_of(seq)];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        let l4 = L4::Udp {
            sport: port,
            dport: port,
            payload: &p,
        };
        let f = frame::packet(&[], a, b, 1, &l4);
        w.write(t0 + at, &f, f.len() as u32).expect("write");
    }
    w.finish().expect("finish");
}

/// A 60 s PCMU stream with jitter (every 7th packet 15 ms late, every
/// 13th 35 ms late) and loss (every 50th packet): `ts_of(i)` gives the
/// timestamp of packet `i`.
fn impaired(ts_of: impl Fn(u32) -> u32) -> Packets {
    (0..3000u32)
        .filter(|i| i % 50 != 49)
        .map(|i| {
            let late = if i % 13 == 5 {
                35_000
            } else if i % 7 == 3 {
                15_000
            } else {
                0
            };
            (
                (i as u16).wrapping_add(60_000),
                ts_of(i),
                i64::from(i) * 20_000 + late,
            )
        })
        .collect()
}

#[test]
fn timestamp_wrap_and_reset_score_like_their_unwrapped_twins() {
    use arrow::array::{Float64Array, UInt32Array, UInt64Array};
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("ts-events.pcap");
    // Wraps 2^32 after 20 s; restarts at 0 after 30 s (a re-INVITE); and
    // the twin of both.
    let wrap0 = u32::MAX - 160 * 1000 + 1;
    write_streams(
        &pcap,
        &[
            (1, 20_000, impaired(|i| wrap0.wrapping_add(160 * i))),
            (2, 20_002, impaired(|i| 5_000 + 160 * i)),
            (
                3,
                20_004,
                impaired(|i| {
                    if i < 1500 {
                        2_000_000_000 + 160 * i
                    } else {
                        160 * (i - 1500)
                    }
                }),
            ),
        ],
    );
    replay_files(&[pcap], None, &dir.path().join("out"), "");
    let mut by = std::collections::BTreeMap::new();
    for b in read_dataset(&dir.path().join("out/rtp_streams")) {
        for i in 0..b.num_rows() {
            by.insert(
                col::<UInt32Array>(&b, "ssrc").value(i),
                (
                    col::<Float64Array>(&b, "mos_lq").value(i),
                    col::<Float64Array>(&b, "mos_cq").value(i),
                    col::<Float64Array>(&b, "jitter_max_ms").value(i),
                    MODELS.map(|m| col::<UInt64Array>(&b, &format!("jb_discards_{m}")).value(i)),
                    col::<UInt64Array>(&b, "ts_jumps").value(i),
                ),
            );
        }
    }
    assert_eq!(by.len(), 3, "{by:?}");
    let twin = by[&2];
    for ssrc in [1, 3] {
        let s = by[&ssrc];
        assert!((s.0 - twin.0).abs() <= 0.05, "{ssrc}: {s:?} vs {twin:?}");
        assert!((s.1 - twin.1).abs() <= 0.05, "{ssrc}: {s:?} vs {twin:?}");
        // No jitter sample across the reset: max jitter as the twin's.
        assert!((s.2 - twin.2).abs() < 1.0, "{ssrc}: {s:?} vs {twin:?}");
    }
    assert_eq!(by[&3].4, 1, "one timestamp jump");
    assert_eq!(by[&1].4, 0, "a wrap is no jump");
    // The 35 ms delays fit both fixed buffers; the adaptive one learns
    // them within its first spikes (measured: 10 discards of 2,940).
    assert_eq!((twin.3[0], twin.3[1]), (0, 0));
    assert!(twin.3[2] <= 20, "{twin:?}");
}

#[test]
fn window_burst_ratio_comes_from_the_window_own_loss_runs() {
    use arrow::array::{Float64Array, Int64Array, TimestampMicrosecondArray};
    // Three 10 s windows of a clean 20 ms stream (500 packets each):
    // window 0 loses nothing, window 1 loses a run of 16 at its very end
    // (sequence 980..995, which settles only during window 2) and single
    // packets at 600 and 700; window 2 loses nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("bursts.pcap");
    let lost = |i: u32| (980..996).contains(&i) || i == 600 || i == 700;
    let pkts: Vec<_> = (0..1500u32)
        .filter(|&i| !lost(i))
        .map(|i| (i as u16, 160 * i, i64::from(i) * 20_000))
        .collect();
    write_streams(&pcap, &[(7, 30_000, pkts)]);
    replay_files(&[pcap], None, &dir.path().join("out"), "");
    let mut windows = Vec::new();
    for b in read_dataset(&dir.path().join("out/rtp_windows")) {
        for i in 0..b.num_rows() {
            windows.push((
                col::<TimestampMicrosecondArray>(&b, "window_start").value(i),
                col::<Int64Array>(&b, "packets_lost").value(i),
                col::<Float64Array>(&b, "loss_ratio").value(i),
                col::<Float64Array>(&b, "burst_r").value(i),
            ));
        }
    }
    windows.sort_by_key(|w| w.0);
    assert_eq!(windows.len(), 3, "{windows:?}");
    assert_eq!(windows[1].1, 18);
    // Own runs of window 1: 3 runs, 18 packets, loss ratio 18/500.
    let want = (18.0f64 / 3.0 * (1.0 - 18.0 / 500.0)).max(1.0);
    assert!((windows[1].2 - 18.0 / 500.0).abs() < 1e-12, "{windows:?}");
    assert!(
        (windows[1].3 - want).abs() < 1e-9,
        "{windows:?} want {want}"
    );
    assert_eq!((windows[0].3, windows[2].3), (1.0, 1.0), "{windows:?}");
}

#[test]
fn a_mirror_copying_both_directions_hides_no_stream() {
    use arrow::array::Int64Array;
    let Some(c) = corpus() else { return };
    let file = c.join("voip/skinny-sccp-g711u.pcap");
    let out = tempfile::tempdir().expect("tempdir");
    let s = replay_files(std::slice::from_ref(&file), None, out.path(), "");
    // tshark lists 6 streams; two of them carry every packet twice (its
    // "lost" −16 and −18): 33 = 17 + 16 copies, 36 = 18 + 18.
    let mut got = std::collections::BTreeMap::new();
    for b in read_dataset(&out.path().join("rtp_streams")) {
        for i in 0..b.num_rows() {
            got.insert(
                col::<UInt32Array>(&b, "ssrc").value(i),
                (
                    col::<UInt64Array>(&b, "packets_received").value(i),
                    col::<UInt64Array>(&b, "mirror_duplicates").value(i),
                    col::<UInt64Array>(&b, "duplicates").value(i),
                    col::<Int64Array>(&b, "packets_lost").value(i),
                ),
            );
        }
    }
    let want = [
        (0x7C10_71F3u32, 15u64, 0u64),
        (0x1E06_3B22, 16, 0),
        (0x7C10_71E2, 17, 16),
        (0x7C10_71E8, 17, 0),
        (0xF6BF_57DC, 18, 18),
        (0xF6BF_57E2, 18, 0),
    ];
    assert_eq!(got.len(), 6, "{got:x?}");
    for (ssrc, packets, mirrored) in want {
        assert_eq!(
            got.get(&ssrc),
            Some(&(packets, mirrored, 0, 0)),
            "{ssrc:#x}: {got:x?}"
        );
    }
    assert_eq!(s.voip.mirror_duplicates, 34);
}

#[test]
fn dynamic_payload_types_without_sdp_are_tracked_without_a_mos() {
    use arrow::array::Array;
    let Some(c) = corpus() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    replay_files(
        &[c.join("voip/whatsapp_login_call.pcap")],
        None,
        out.path(),
        "",
    );
    // tshark (RTP heuristic on) lists these four streams of ≥ 20 packets,
    // all payload type 120 with no SDP.
    let want = [
        (0x0A15_0E10u32, 127u64),
        (0x2076_33FE, 43),
        (0x4C28_9E6D, 264),
        (0x5459_2824, 173),
    ];
    let mut got = std::collections::BTreeMap::new();
    for b in read_dataset(&out.path().join("rtp_streams")) {
        let mos = col::<Float64Array>(&b, "mos_cq");
        let reason = col::<StringArray>(&b, "mos_reason");
        for i in 0..b.num_rows() {
            assert_eq!(col::<StringArray>(&b, "codec").value(i), "dynamic-PT");
            assert!(mos.is_null(i));
            assert!(reason.value(i).contains("dynamic payload type"));
            got.insert(
                (
                    col::<UInt32Array>(&b, "ssrc").value(i),
                    col::<StringArray>(&b, "dst_addr").value(i).to_string(),
                ),
                col::<UInt64Array>(&b, "packets_received").value(i),
            );
        }
    }
    for (ssrc, packets) in want {
        let n: Vec<_> = got
            .iter()
            .filter(|((s, dst), _)| *s == ssrc && !dst.starts_with("31.13."))
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(n, vec![packets], "{ssrc:#x}: {got:x?}");
    }
}

#[test]
fn a_configured_dynamic_payload_type_gets_its_codec_and_a_mos() {
    use arrow::array::Array;
    let Some(c) = corpus() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    // WhatsApp's payload type 120 is Opus; its timestamps step 2,560 per
    // 160 ms (tshark), a 16 kHz clock.
    replay_files(
        &[c.join("voip/whatsapp_login_call.pcap")],
        None,
        out.path(),
        "[rtp]\ndynamic_codecs = { 120 = \"opus/16000\" }\n",
    );
    let mut got = std::collections::BTreeMap::new();
    for b in read_dataset(&out.path().join("rtp_streams")) {
        let mos = col::<Float64Array>(&b, "mos_cq");
        let reason = col::<StringArray>(&b, "mos_reason");
        let mismatch = col::<arrow::array::BooleanArray>(&b, "clock_mismatch");
        for i in 0..b.num_rows() {
            assert_eq!(col::<StringArray>(&b, "codec").value(i), "opus");
            assert!(reason.is_null(i), "{:?}", reason.value(i));
            assert!(!mismatch.value(i));
            let m = mos.value(i);
            assert!(!mos.is_null(i) && (1.0..=4.5).contains(&m), "{m}");
            got.insert(
                (
                    col::<UInt32Array>(&b, "ssrc").value(i),
                    col::<StringArray>(&b, "dst_addr").value(i).to_string(),
                ),
                (col::<UInt64Array>(&b, "packets_received").value(i), m),
            );
        }
    }
    // The same streams and packet counts as without the setting.
    for (ssrc, packets) in [
        (0x0A15_0E10u32, 127u64),
        (0x2076_33FE, 43),
        (0x4C28_9E6D, 264),
        (0x5459_2824, 173),
    ] {
        let n: Vec<_> = got
            .iter()
            .filter(|((s, dst), _)| *s == ssrc && !dst.starts_with("31.13."))
            .map(|(_, (n, _))| *n)
            .collect();
        assert_eq!(n, vec![packets], "{ssrc:#x}: {got:x?}");
    }
}

#[test]
fn the_heuristic_finds_no_stream_in_the_general_corpus() {
    let Some(c) = corpus() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let mut files = 0;
    for entry in std::fs::read_dir(c.join("general")).expect("general corpus") {
        let path = entry.expect("entry").path();
        let s = replay_files(
            std::slice::from_ref(&path),
            None,
            &out.path().join(path.file_name().expect("name")),
            "",
        );
        assert_eq!(s.voip.streams, 0, "{}", path.display());
        files += 1;
    }
    assert!(files >= 10, "{files} files");
}

#[test]
fn a_codec_change_inside_a_stream_is_counted_and_names_each_window() {
    use arrow::array::{StringArray, TimestampMicrosecondArray};
    // PCMU for 10 s, then PCMA for 10 s, one SSRC, continuous sequence
    // and timestamps.
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("codec-change.pcap");
    let pkts: Packets = (0..1000u32)
        .map(|i| (i as u16, 160 * i, i64::from(i) * 20_000))
        .collect();
    write_streams_pt(
        &pcap,
        &[(9, 31_000, pkts)],
        |seq| if seq < 500 { 0 } else { 8 },
    );
    replay_files(&[pcap], None, &dir.path().join("out"), "");
    let mut windows = Vec::new();
    for b in read_dataset(&dir.path().join("out/rtp_windows")) {
        for i in 0..b.num_rows() {
            windows.push((
                col::<TimestampMicrosecondArray>(&b, "window_start").value(i),
                col::<StringArray>(&b, "codec").value(i).to_string(),
            ));
        }
    }
    windows.sort();
    let codecs: Vec<_> = windows.iter().map(|w| w.1.as_str()).collect();
    assert_eq!(codecs, ["PCMU", "PCMA"]);
    let streams = read_dataset(&dir.path().join("out/rtp_streams"));
    assert_eq!(
        col::<UInt64Array>(&streams[0], "payload_type_changes").value(0),
        1
    );
    assert_eq!(col::<UInt64Array>(&streams[0], "ts_jumps").value(0), 0);
    assert_eq!(col::<UInt64Array>(&streams[0], "jb_discards").value(0), 0);
}

#[test]
fn a_flood_of_one_packet_candidates_does_not_starve_real_streams() {
    use arrow::array::UInt32Array;
    // 5 real PCMU streams (200 packets, 20 ms) and, between two of their
    // packets, 600 one-packet fake candidates from distinct sources: more
    // than the 1,000-candidate cap between a stream's first and fourth
    // packet, so FIFO eviction alone would never confirm them.
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("flood.pcap");
    let mut streams: Vec<(u32, u16, Packets)> = (0..5u32)
        .map(|s| {
            (
                100 + s,
                40_000 + 2 * s as u16,
                (0..200u32)
                    .map(|i| (i as u16, 160 * i, i64::from(i) * 20_000 + i64::from(s)))
                    .collect(),
            )
        })
        .collect();
    // Fakes: one packet each, own SSRC and port, spread over the 4 s.
    for k in 0..120_000u32 {
        let at = i64::from(k) * 4_000_000 / 120_000;
        streams.push((
            1_000_000 + k,
            2000 + (k % 60_000) as u16,
            vec![(k as u16, k, at)],
        ));
    }
    write_streams(&pcap, &streams);
    let s = replay_files(
        &[pcap],
        None,
        &dir.path().join("out"),
        "[rtp]\nmax_candidates = 1000\n",
    );
    let mut found: Vec<u32> = Vec::new();
    for b in read_dataset(&dir.path().join("out/rtp_streams")) {
        for i in 0..b.num_rows() {
            found.push(col::<UInt32Array>(&b, "ssrc").value(i));
        }
    }
    found.sort();
    assert_eq!(found, [100, 101, 102, 103, 104], "{} streams", found.len());
    assert!(s.voip.candidates_evicted > 110_000);
}

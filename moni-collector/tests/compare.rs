//! `moni-collector compare` on the paper's Table 1 in miniature: the
//! per-phase picture (A degraded in the congested phases, B good, then
//! equal once production moved to B), the same answer over HTTP, and a
//! well-formed SVG plot with one shaded band per window.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::replay_miniature;

#[test]
fn compare_prints_the_per_phase_picture_and_a_readable_plot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    replay_miniature(&out);
    let svg = tmp.path().join("fig.svg");
    let o = Command::new(env!("CARGO_BIN_EXE_moni-collector"))
        .args([
            "compare",
            "--production",
            "A",
            "--shadow",
            "B",
            "--format",
            "json",
            "--data",
        ])
        .arg(&out)
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("compare");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let windows = r["windows"].as_array().expect("windows");
    let verdicts: Vec<&str> = windows
        .iter()
        .map(|w| w["verdict"].as_str().unwrap_or(""))
        .collect();
    // Six 10 s phases: light load, rising load, three congested phases
    // where A degrades and B (voice priority) does not, then production
    // on B.
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
    for (i, w) in windows.iter().enumerate() {
        let (a, b) = (
            w["mos_production"].as_f64().unwrap_or(0.0),
            w["mos_shadow"].as_f64().unwrap_or(0.0),
        );
        assert!(b > 4.0, "B stays good in window {i}: {b}");
        if (2..5).contains(&i) {
            assert!(a < 3.6, "A degraded in window {i}: {a}");
        }
    }
    assert!((r["summary"]["shadow_better"].as_f64().unwrap_or(0.0) - 0.5).abs() < 1e-9);
    // The answer the comparison is for: B was never worse, so it is ready;
    // with the roles swapped, A (now the shadow) is not, and the reason
    // names the three congested windows.
    assert_eq!(r["summary"]["ready"], true, "{}", r["summary"]);
    let why = r["summary"]["ready_reason"].as_str().unwrap_or("");
    assert!(
        why.contains("never worse") && why.contains("6 paired windows; better in 3"),
        "{why}"
    );
    // `--require-ready` gates on the answer: exit 1 for "no", with the
    // table printed all the same; 0 for "yes".
    let gate = |production: &str, shadow: &str| {
        Command::new(env!("CARGO_BIN_EXE_moni-collector"))
            .args(["compare", "--production", production, "--shadow", shadow])
            .args(["--require-ready", "--data"])
            .arg(&out)
            .output()
            .expect("compare")
    };
    let swapped = gate("B", "A");
    assert_eq!(swapped.status.code(), Some(1));
    assert!(gate("A", "B").status.success());
    let table = String::from_utf8_lossy(&swapped.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with("ready: "))
        .unwrap_or_default();
    assert!(
        line.starts_with(
            "ready: no (production B was better than shadow A in 3 of 6 paired windows"
        ),
        "{table}"
    );
    // Per stream rows carry jitter too.
    assert!(r["streams"].as_array().is_some_and(|s| s.len() == 12));

    let text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(text.trim_end().ends_with("</svg>"));
    assert_eq!(
        text.matches("<polyline").count(),
        4,
        "one line per VNet in each panel (loss, MOS)"
    );
    assert_eq!(
        text.matches("#d8f0d8\"><title>").count(),
        3,
        "three shadow-better bands"
    );
    // Well-formed: every element opened is closed (a small XML check).
    let opens = text.matches("<rect").count()
        + text.matches("<polyline").count()
        + text.matches("<text").count();
    let closes = text.matches("/>").count()
        + text.matches("</rect>").count()
        + text.matches("</polyline>").count()
        + text.matches("</text>").count();
    assert!(closes >= opens, "{opens} opened, {closes} closed");

    // Table output names the VNets and prints the summary line.
    let o = Command::new(env!("CARGO_BIN_EXE_moni-collector"))
        .args(["compare", "--production", "A", "--shadow", "B", "--data"])
        .arg(&out)
        .output()
        .expect("compare");
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("production A vs shadow B"), "{table}");
    assert!(
        table.contains("6 windows: shadow better 50%, production better 0%, equal 50%"),
        "{table}"
    );
    // A bad question is one error line.
    let o = Command::new(env!("CARGO_BIN_EXE_moni-collector"))
        .args(["compare", "--production", "A", "--shadow", "A", "--data"])
        .arg(&out)
        .output()
        .expect("compare");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
}

#[test]
fn the_operators_report_draws_loss_and_mos_with_marks_and_the_receiver() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    replay_miniature(&out);
    let (html, svg) = (tmp.path().join("report.html"), tmp.path().join("fig.svg"));
    let o = Command::new(env!("CARGO_BIN_EXE_moni-collector"))
        .args([
            "compare",
            "--production",
            "A",
            "--shadow",
            "B",
            "--monitor",
            "rx",
            "--format",
            "json",
            "--mark",
            "2023-11-14T22:13:50Z=congestion",
            "--mark",
            "2023-11-14T22:14:20Z=switch to B",
            "--data",
        ])
        .arg(&out)
        .arg("--report")
        .arg(&html)
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("compare");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    // Per VNet series: A loses packets in the congested phases, B does not,
    // and the receiver's windows are there although they pair with nothing.
    let series = r["series"].as_array().expect("series");
    let loss = |vnet: &str| -> Vec<f64> {
        series
            .iter()
            .filter(|x| x["vnet"] == vnet)
            .map(|x| x["loss"].as_f64().unwrap_or(-1.0))
            .collect()
    };
    let (a, b, rx) = (loss("A"), loss("B"), loss("rx"));
    assert_eq!((a.len(), b.len()), (6, 6), "{series:?}");
    assert!(!rx.is_empty(), "the receiver's windows are drawn");
    assert!(a[2..5].iter().all(|l| *l > 0.01), "{a:?}");
    assert!(b.iter().all(|l| *l < 0.01), "{b:?}");
    assert!(series.iter().all(|x| x["window_secs"] == 10));

    let fig = std::fs::read_to_string(&svg).expect("svg");
    assert!(
        fig.contains("loss and MOS-CQ per 10 s window"),
        "window width from the data"
    );
    assert!(
        fig.contains(">loss %</text>") && fig.contains(">MOS-CQ</text>"),
        "y-axis labels"
    );
    assert_eq!(fig.matches("<polyline").count(), 6, "3 VNets x 2 panels");
    assert_eq!(fig.matches("time (UTC").count(), 1, "one x label");
    for label in [
        "congestion",
        "switch to B",
        "shadow better",
        "production better",
        "equal",
        "one VNet only",
        "monitor rx",
    ] {
        assert!(fig.contains(label), "{label} missing");
    }
    // Readable ticks: 10 s apart over the 60 s of the miniature.
    assert!(fig.contains(">22:13:40</text>") && fig.contains(">22:13:50</text>"));
    let opens = ["<rect", "<polyline", "<text", "<line", "<circle"]
        .iter()
        .map(|t| fig.matches(t).count())
        .sum::<usize>();
    let closes = ["/>", "</rect>", "</polyline>", "</text>", "</circle>"]
        .iter()
        .map(|t| fig.matches(t).count())
        .sum::<usize>();
    assert!(closes >= opens, "{opens} opened, {closes} closed");

    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<svg"), "the figure is in the page");
    assert_eq!(
        page.matches("<tr class=\"shadow_better\">").count(),
        3,
        "the per-window table"
    );
    assert!(
        page.contains("<p class=\"ready\"><strong>Ready: yes.</strong> shadow B was never worse"),
        "the answer at the top"
    );
    assert!(page.trim_end().ends_with("</html>"));
}

/// A pcap record: its 16-byte header and its data.
type Frame = ([u8; 16], Vec<u8>);

/// The file header and the frames of a classic little-endian pcap.
fn pcap_frames(bytes: &[u8]) -> (Vec<u8>, Vec<Frame>) {
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let mut h = [0u8; 16];
        h.copy_from_slice(&bytes[at..at + 16]);
        let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let data = bytes[at + 16..at + 16 + len].to_vec();
        frames.push((h, data));
        at += 16 + len;
    }
    (bytes[..24].to_vec(), frames)
}

/// The SSRC of an untagged Ethernet/IPv4/UDP frame carrying RTP (not SIP).
fn rtp_ssrc(d: &[u8]) -> Option<u32> {
    if d.len() < 42 || d[12..14] != [8, 0] || d[23] != 17 {
        return None;
    }
    let udp = 14 + usize::from(d[14] & 15) * 4;
    let ports = [
        u16::from_be_bytes([d[udp], d[udp + 1]]),
        u16::from_be_bytes([d[udp + 2], d[udp + 3]]),
    ];
    let rtp = udp + 8;
    if ports.contains(&5060) || d.len() < rtp + 12 || d[rtp] >> 6 != 2 {
        return None;
    }
    Some(u32::from_be_bytes([
        d[rtp + 8],
        d[rtp + 9],
        d[rtp + 10],
        d[rtp + 11],
    ]))
}

/// `base` duplicated into VLAN 100 (A) and VLAN 200 (B), as a mirror of a
/// production VNet and its shadow shows the same calls; B drops the RTP
/// packets `drop_b(ssrc, n)` names (`n`: the packet's number in its
/// stream, from 0).
fn shadow_capture(base: &[u8], drop_b: impl Fn(u32, u64) -> bool) -> Vec<u8> {
    let (header, frames) = pcap_frames(base);
    let mut out = header;
    let mut seen = std::collections::HashMap::new();
    for (h, d) in frames {
        let drop = rtp_ssrc(&d).is_some_and(|ssrc| {
            let n = seen.entry(ssrc).or_insert(0u64);
            *n += 1;
            drop_b(ssrc, *n - 1)
        });
        for vlan in [100u16, 200] {
            if vlan == 200 && drop {
                continue;
            }
            let mut tagged = d[..12].to_vec();
            tagged.extend_from_slice(&[0x81, 0x00]);
            tagged.extend_from_slice(&vlan.to_be_bytes());
            tagged.extend_from_slice(&d[12..]);
            let mut h = h;
            let grow = |b: &mut [u8]| {
                let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) + 4;
                b.copy_from_slice(&v.to_le_bytes());
            };
            grow(&mut h[8..12]);
            grow(&mut h[12..16]);
            out.extend_from_slice(&h);
            out.extend_from_slice(&tagged);
        }
    }
    out
}

/// Replays `capture` with A as production and B as shadow and answers
/// `compare` as JSON, and as CSV.
fn compare_shadow(dir: &std::path::Path, capture: &[u8]) -> (serde_json::Value, String) {
    let pcap = dir.join("shadow.pcap");
    std::fs::write(&pcap, capture).expect("write capture");
    let out = dir.join("out");
    let ok = Command::new(common::node_bin())
        .args(["replay", "--no-progress", "--overwrite"])
        .args(["--vnet-map", "100=A:production,200=B:shadow", "--out"])
        .arg(&out)
        .arg(&pcap)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("moni-node replay");
    assert!(ok.success());
    let ask = |format: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_moni-collector"))
            .args(["compare", "--production", "A", "--shadow", "B"])
            .args(["--format", format, "--data"])
            .arg(&out)
            .output()
            .expect("compare");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let json = serde_json::from_str(&ask("json")).expect("json");
    (json, ask("csv"))
}

/// What an engineer deciding the switch must be told, on 4 calls (8 G.711
/// streams, 45 s, 10 s windows) that reach both VNets: a shadow that
/// loses a whole call, or that loses 5 % of one stream, is not ready,
/// although every window's mean over streams is equal (before: "ready:
/// yes" for both; a shadow reviewer's tour found it), and the report
/// names the call; a faithful shadow is ready.
#[test]
fn a_shadow_that_loses_a_call_or_one_streams_quality_is_not_ready() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base_path = tmp.path().join("base.pcap");
    let gen = PathBuf::from(env!("CARGO_BIN_EXE_moni-collector")).with_file_name("moni-gen");
    let ok = Command::new(&gen)
        .args([
            "calls", "--calls", "4", "--secs", "45", "--seed", "7", "--out",
        ])
        .arg(&base_path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{}: {e} (build moni-gen first)", gen.display()));
    assert!(ok.success());
    let base = std::fs::read(&base_path).expect("base");
    let summary = |r: &serde_json::Value, k: &str| r["summary"][k].as_u64().unwrap_or(u64::MAX);

    // The faithful shadow.
    let (r, _) = compare_shadow(tmp.path(), &shadow_capture(&base, |_, _| false));
    assert_eq!(r["summary"]["ready"], true, "{}", r["summary"]);
    assert_eq!(summary(&r, "stream_windows"), 40);
    assert_eq!(summary(&r, "missing_in_shadow"), 0);
    assert_eq!(summary(&r, "stream_windows_production_better"), 0);
    // The evidence: 8 streams in 4 calls, identical in both VNets.
    assert_eq!((summary(&r, "streams"), summary(&r, "calls")), (8, 4));
    assert_eq!(r["summary"]["mos_diff_mean"], 0.0);
    // The spread is taken as at least 0.01 MOS: t(3) x 0.01 / 2.
    let low = r["summary"]["mos_diff_ci95_low"].as_f64().unwrap_or(0.0);
    assert!((low + 0.0159).abs() < 1e-3, "{}", r["summary"]);
    assert_eq!(r["summary"]["confidence"], "high", "{}", r["summary"]);
    // Each VNet's packets per window: 8 streams of 50 packets a second
    // for 45 s (the calls start 1 s into the first 10 s window).
    let packets: Vec<u64> = r["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|x| x["vnet"] == "B")
        .map(|x| x["packets"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(packets, [3600, 4000, 4000, 4000, 2400]);
    assert_eq!(packets.iter().sum::<u64>(), 8 * 45 * 50);
    // And per window beside its verdict, for both VNets.
    let per_window: Vec<(u64, u64)> = r["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| {
            let n = |k: &str| w[k].as_u64().unwrap_or(0);
            (n("packets_production"), n("packets_shadow"))
        })
        .collect();
    assert_eq!(per_window[0], (3600, 3600));
    assert_eq!(per_window[4], (2400, 2400));

    // Call bench-0 (SSRCs 0 and 1) never reaches B: its 2 streams' 5
    // windows each are missing in the shadow.
    let (r, csv) = compare_shadow(tmp.path(), &shadow_capture(&base, |ssrc, _| ssrc <= 1));
    assert_eq!(r["summary"]["ready"], false, "{}", r["summary"]);
    assert_eq!(summary(&r, "missing_in_shadow"), 10, "{}", r["summary"]);
    assert_eq!(summary(&r, "missing_in_production"), 0);
    let why = r["summary"]["ready_reason"].as_str().unwrap_or("");
    assert!(
        why.starts_with("shadow B lacked 10 stream windows that production A carried")
            && why.contains("(call bench-0)"),
        "{why}"
    );
    let unpaired = r["unpaired"].as_array().expect("unpaired");
    assert_eq!(unpaired.len(), 10);
    assert!(unpaired
        .iter()
        .all(|u| u["vnet"] == "A" && u["call_id"] == "bench-0" && u["packets"].as_u64() > Some(0)));
    assert_eq!(
        csv.matches(",missing_in_shadow,\"bench-0\"").count(),
        10,
        "{csv}"
    );

    // B loses every 20th packet of one stream: that stream's windows are
    // worse by far more than the tolerance, the windows' means are not.
    let (r, csv) = compare_shadow(
        tmp.path(),
        &shadow_capture(&base, |ssrc, n| ssrc == 0 && n % 20 == 19),
    );
    let verdicts: Vec<&str> = r["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| w["verdict"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(verdicts, ["equal"; 5], "the mean hides it");
    assert_eq!(r["summary"]["ready"], false, "{}", r["summary"]);
    assert_eq!(summary(&r, "stream_windows_production_better"), 5);
    // One stream of eight far worse: the mean over streams is below zero
    // and its interval reaches past the tolerance.
    let mean = r["summary"]["mos_diff_mean"].as_f64().unwrap_or(0.0);
    let low = r["summary"]["mos_diff_ci95_low"].as_f64().unwrap_or(0.0);
    assert!(mean < -0.02 && low < -0.1, "{}", r["summary"]);
    assert_eq!(r["summary"]["confidence"], "low", "{}", r["summary"]);
    let why = r["summary"]["ready_reason"].as_str().unwrap_or("");
    assert!(
        why.starts_with("production was better for 5 of 40 stream windows")
            && why.contains("SSRC 0x00000000")
            && why.contains("(call bench-0)"),
        "{why}"
    );
    assert_eq!(
        csv.matches(",production_better,\"bench-0\"").count(),
        5,
        "{csv}"
    );
}

//! `moni-collector compare` on the paper's Table 1 in miniature: the
//! per-phase picture (A degraded in the congested phases, B good, then
//! equal once production moved to B), the same answer over HTTP, and a
//! well-formed SVG plot with one shaded band per window.

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

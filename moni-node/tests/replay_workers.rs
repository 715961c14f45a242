//! Issue 15: replay's results do not depend on `--workers`. Every sample
//! and corpus capture is replayed with 1 worker and with 2 and 4; every
//! dataset (flows, bins, RTP windows and streams, calls, comparisons,
//! alerts) is read back from Parquet and compared as a sorted list of
//! rows, so a bin split across rows by the sharding, a flow cut in two or
//! an alert raised twice all fail it. The shadow/production map is on so
//! that the comparison is exercised.

mod common;

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};

const MAP: &str = "100=A:production,200=B:shadow";

/// Every row of every dataset under `out`, as text, sorted per dataset.
fn rows(out: &Path) -> Vec<(String, Vec<String>)> {
    let mut all = Vec::new();
    for name in analyzers::schema::DATASETS {
        let mut files = Vec::new();
        collect(&out.join(name), &mut files);
        files.sort();
        let mut rows = Vec::new();
        for f in files {
            for b in common::read_dataset(&f) {
                rows.extend(batch_rows(&b));
            }
        }
        rows.sort();
        all.push((name.to_string(), rows));
    }
    all
}

/// The directories under `dir` that hold Parquet files (datasets may be
/// partitioned into subdirectories).
fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut has_parquet = false;
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|e| e == "parquet") {
            has_parquet = true;
        }
    }
    if has_parquet {
        out.push(dir.to_path_buf());
    }
}

fn batch_rows(b: &RecordBatch) -> Vec<String> {
    let opts = FormatOptions::default().with_null("null");
    // Timestamps without their zone (formatting one needs chrono-tz).
    let plain: Vec<arrow::array::ArrayRef> = b
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Timestamp(unit, Some(_)) => {
                arrow::compute::cast(c, &DataType::Timestamp(*unit, None)).expect("cast")
            }
            _ => c.clone(),
        })
        .collect();
    let cols: Vec<ArrayFormatter<'_>> = plain
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).expect("formatter"))
        .collect();
    (0..b.num_rows())
        .map(|i| {
            cols.iter()
                .map(|c| c.value(i).to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

fn captures() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut walk = vec![common::root().join("samples/pcap")];
    if let Some(c) = common::corpus() {
        walk.push(c);
    }
    while let Some(d) = walk.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk.push(p);
            } else if p.extension().is_some_and(|e| e == "pcap" || e == "pcapng") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Captures whose results still depend on the number of workers.
const GAPS: &[(&str, &str)] = &[];

/// What differs between 1 and `n` workers on `f`, if anything.
fn compare_one(
    f: &Path,
    n: usize,
    one: &moni_node::summary::Summary,
    want: &[(String, Vec<String>)],
) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = common::replay_files_with(&[f.to_path_buf()], Some(MAP), dir.path(), "", n);
    assert_eq!(s.workers, n as u64);
    let totals =
        |s: &moni_node::summary::Summary| (s.packets, s.bytes, s.flows.exported, s.alerts.clone());
    if totals(&s) != totals(one) {
        return Err(format!(
            "totals with {n} workers: {:?}, with 1: {:?}",
            totals(&s),
            totals(one)
        ));
    }
    let got = rows(dir.path());
    for ((name, w), (_, g)) in want.iter().zip(&got) {
        if w != g {
            return Err(format!(
                "dataset {name} differs with {n} workers: {}",
                differences(w, g)
            ));
        }
    }
    Ok(())
}

/// How the rows `got` (with N workers) differ from `want` (with one):
/// the counts and two rows only on each side.
fn differences(want: &[String], got: &[String]) -> String {
    let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(2).collect();
    let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(2).collect();
    format!(
        "{} rows vs {}; only with 1: {missing:?}; only with N: {extra:?}",
        want.len(),
        got.len()
    )
}

#[test]
fn n_workers_give_the_same_datasets_as_one() {
    let files = captures();
    assert!(files.len() >= 9, "samples missing: {files:?}");
    let mut compared_rows = 0usize;
    let mut compare_pairs = 0u64;
    let mut gaps = common::GapCheck::new(GAPS);
    for f in &files {
        let base = tempfile::tempdir().expect("tempdir");
        let one = common::replay_files_with(std::slice::from_ref(f), Some(MAP), base.path(), "", 1);
        let want = rows(base.path());
        compared_rows += want.iter().map(|(_, r)| r.len()).sum::<usize>();
        compare_pairs +=
            one.comparison.shadow_better + one.comparison.production_better + one.comparison.equal;
        let result = [2, 4]
            .into_iter()
            .try_for_each(|n| compare_one(f, n, &one, &want));
        gaps.record(&f.display().to_string(), result);
    }
    gaps.finish();
    // The comparison must have had something to compare (vlan-shadow).
    assert!(compared_rows > 10_000, "{compared_rows} rows compared");
    assert!(compare_pairs > 0, "no shadow/production pair compared");
}

/// The flow-heavy bench capture (`moni-gen bench --mix flow-heavy`, issue
/// 16) has the mix it promises, every flow is live at once (none idles out
/// in its 0.5 s), and 2 workers give the datasets of 1 on it too.
#[test]
fn the_flow_heavy_mix_holds_and_does_not_depend_on_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("heavy.pcap");
    let t = moni_samples::stream::flow_heavy(&pcap, 100_000, 3).expect("generate");
    let one_dir = dir.path().join("one");
    let one = common::replay_files_with(std::slice::from_ref(&pcap), None, &one_dir, "", 1);
    assert_eq!(one.packets, 100_000);
    assert_eq!(one.flows.exported, t.flows, "every generated flow, once");
    assert_eq!(one.flows.peak_active, t.flows, "all flows live at once");
    assert_eq!(one.voip.streams, 400);
    let mix = |proto: &str| -> f64 {
        let b = common::read_dataset(&one_dir.join("bins"));
        let (mut n, mut all) = (0u64, 0u64);
        for batch in &b {
            let total = common::col::<arrow::array::UInt64Array>(batch, "packets");
            let part = common::col::<arrow::array::UInt64Array>(batch, &format!("{proto}_packets"));
            for i in 0..batch.num_rows() {
                all += total.value(i);
                n += part.value(i);
            }
        }
        n as f64 / all as f64
    };
    let (tcp, udp, icmp) = (mix("tcp"), mix("udp"), mix("icmp"));
    assert!((0.68..0.72).contains(&tcp), "TCP share {tcp}");
    assert!(
        (0.25..0.29).contains(&udp),
        "UDP share {udp} (RTP, DNS and other UDP)"
    );
    assert!((0.02..0.04).contains(&icmp), "ICMP share {icmp}");
    let two_dir = dir.path().join("two");
    let two = common::replay_files_with(&[pcap], None, &two_dir, "", 2);
    assert_eq!(two.flows.exported, one.flows.exported);
    assert_eq!(rows(&two_dir), rows(&one_dir));
}

/// Files given newest first are replayed in time order: a 2016 capture
/// before a 2005 one gave, with 2 workers, the 2005 streams cut in two
/// and ended `idle` (the newer file's clock reached the worker that held
/// them) and whole ones with 1; now both orders, with 1 and 2 workers,
/// give the same datasets.
#[test]
fn files_out_of_time_order_are_replayed_in_it() {
    let Some(c) = common::corpus() else { return };
    let (new, old) = (
        c.join("voip/sip-rtp-dvi4.pcap"),
        c.join("voip/SIP_DTMF2.pcap"),
    );
    let base = tempfile::tempdir().expect("tempdir");
    let want_summary =
        common::replay_files_with(&[old.clone(), new.clone()], None, base.path(), "", 1);
    let want = rows(base.path());
    assert_eq!(want_summary.voip.streams, 4);
    for (files, n) in [(vec![new.clone(), old.clone()], 1), (vec![new, old], 2)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = common::replay_files_with(&files, None, dir.path(), "", n);
        assert_eq!(s.files[0].path, want_summary.files[0].path, "time order");
        assert_eq!(rows(dir.path()), want, "{n} workers");
    }
}

/// Signature thresholds that track hosts and rules span the workers the
/// sharding spreads a host's flows over, and the alert caps span them
/// too: with the node's alert gate, 2 and 4 workers raise exactly the
/// alerts of one (the `alerts` dataset, row for row, and the signature
/// counters) with the corpus's Emerging Threats rules (110 of whose scan
/// rules have thresholds) and rules of every threshold kind and track, at
/// the default caps and at tight ones, on the corpus's attack and VoIP
/// captures.
#[test]
fn signature_alerts_do_not_depend_on_workers() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let own = dir.path().join("thresholds.rules");
    std::fs::write(
        &own,
        r#"alert tcp any any -> any any (msg:"syn by_src"; flags:S; threshold: type threshold, track by_src, count 20, seconds 60; sid:9000001;)
alert tcp any any -> any any (msg:"syn limit by_rule"; flags:S; threshold: type limit, track by_rule, count 3, seconds 10; sid:9000002;)
alert tcp any any -> any any (msg:"syn df by_dst"; flags:S; detection_filter: track by_dst, count 50, seconds 60; sid:9000003;)
alert udp any any -> any any (msg:"udp both by_src"; threshold: type both, track by_src, count 10, seconds 60; sid:9000004;)
alert icmp any any -> any any (msg:"icmp by_src"; threshold: type threshold, track by_src, count 10, seconds 60; sid:9000005;)
alert tcp any any -> any any (msg:"ports by_src"; flags:S; threshold: type threshold, track by_src, count 5, seconds 30, unique_on dst_port; sid:9000006;)
alert ip any any -> any any (msg:"pairs by_both"; threshold: type limit, track by_both, count 2, seconds 60; sid:9000007;)
alert udp any any -> any 5060 (msg:"sip by_dst"; content:"SIP/2.0"; threshold: type limit, track by_dst, count 1, seconds 5; sid:9000008;)
alert tcp any any -> any any (msg:"every syn"; flags:S; sid:9000009;)
"#,
    )
    .expect("write rules");
    let rules: Vec<String> = [
        "emerging-scan.rules",
        "emerging-dns.rules",
        "emerging-voip.rules",
    ]
    .iter()
    .map(|f| corpus.join("rules").join(f))
    .chain([own])
    .map(|p| format!("{:?}", p.display().to_string()))
    .collect();
    let mut files: Vec<PathBuf> = ["attack", "voip"]
        .iter()
        .flat_map(|d| std::fs::read_dir(corpus.join(d)).expect("corpus folder"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    let (mut alerts, mut thresholded, mut capped) = (0usize, 0u64, 0u64);
    // Each cap tight on its own (where both bind at once a worker may drop
    // at the second's cap what one worker raises: docs/ids.md).
    for caps in [
        "",
        "max_alerts_per_packet = 2\n",
        "max_alerts_per_second = 40\n",
    ] {
        let config = format!("[ids]\nrules = [{}]\n{caps}", rules.join(", "));
        for f in &files {
            let out = |n: usize| {
                let d = tempfile::tempdir().expect("tempdir");
                let s =
                    common::replay_files_with(std::slice::from_ref(f), None, d.path(), &config, n);
                let sig = s.signatures.expect("rules loaded").engine;
                let rows = rows(d.path())
                    .into_iter()
                    .find(|(name, _)| name == "alerts")
                    .map(|(_, r)| r)
                    .unwrap_or_default();
                (rows, sig)
            };
            let (want, one) = out(1);
            alerts += want.len();
            thresholded += one.thresholded;
            capped += one.dropped_per_packet + one.dropped_per_second;
            for n in [2, 4] {
                let (got, many) = out(n);
                assert_eq!(
                    (many.matches, many.alerts, many.thresholded),
                    (one.matches, one.alerts, one.thresholded),
                    "{} with {n} workers",
                    f.display()
                );
                assert_eq!(
                    (many.dropped_per_packet, many.dropped_per_second),
                    (one.dropped_per_packet, one.dropped_per_second),
                    "{} with {n} workers",
                    f.display()
                );
                assert!(
                    got == want,
                    "{} with {n} workers: alerts differ: {}",
                    f.display(),
                    differences(&want, &got)
                );
            }
        }
    }
    // The thresholds and caps had work to do.
    assert!(alerts > 1_000, "{alerts} alerts");
    assert!(thresholded > 1_000, "{thresholded} matches held back");
    assert!(capped > 100, "{capped} alerts capped");
}

/// The gate (and the bin merger) on a flood long enough for the workers'
/// watermarks to leave on their own (every 64 batches) and for the
/// capture loop to send an idle worker the clock (every 65,536 packets):
/// 150,000 spoofed SYNs to one server in 1.5 s, whose `by_dst` thresholds
/// and `by_rule` limit span both workers and whose every-SYN rule passes
/// the second's cap.
#[test]
fn signature_alerts_of_a_flood_do_not_depend_on_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("flood.pcap");
    moni_samples::stream::syn_flood(&pcap, 150_000, 5).expect("generate");
    let rules = dir.path().join("flood.rules");
    std::fs::write(
        &rules,
        r#"alert tcp any any -> any any (msg:"syn to a server"; flags:S; threshold: type threshold, track by_dst, count 1000, seconds 60; sid:1;)
alert tcp any any -> any any (msg:"syn limit"; flags:S; threshold: type limit, track by_rule, count 5, seconds 1; sid:2;)
alert tcp any any -> any any (msg:"syn flood"; flags:S; detection_filter: track by_dst, count 20000, seconds 10; sid:3;)
alert tcp any any -> any any (msg:"syn both"; flags:S; threshold: type both, track by_dst, count 50000, seconds 60; sid:4;)
alert tcp any any -> any any (msg:"every syn"; flags:S; sid:5;)
"#,
    )
    .expect("write rules");
    let config = format!("[ids]\nrules = [{:?}]\n", rules.display().to_string());
    let out = |n: usize| {
        let d = tempfile::tempdir().expect("tempdir");
        let s = common::replay_files_with(std::slice::from_ref(&pcap), None, d.path(), &config, n);
        let sig = s.signatures.expect("rules loaded").engine;
        (rows(d.path()), sig)
    };
    let (want, one) = out(1);
    let (got, two) = out(2);
    let counts = |s: &analyzers::ids::rules::SignatureStats| {
        (
            s.matches,
            s.alerts,
            s.thresholded,
            s.dropped_per_packet,
            s.dropped_per_second,
        )
    };
    assert_eq!(counts(&two), counts(&one));
    // Every dataset: the bins too, which wait for the same watermarks.
    for ((name, w), (_, g)) in want.iter().zip(&got) {
        assert_eq!(g.len(), w.len(), "{name}");
        assert!(g == w, "{name} of 2 workers differ from 1's");
    }
    // 150 threshold alerts, 10 of the limit (1.5 s), the flood's filter
    // and the `both` once each, and the every-SYN rule up to the cap.
    assert_eq!(one.matches, 750_000);
    assert!(one.dropped_per_second > 100_000, "{one:?}");
    assert!(one.thresholded > 400_000, "{one:?}");
}

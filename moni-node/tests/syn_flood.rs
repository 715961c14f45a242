//! Memory stays bounded under a SYN flood of spoofed sources: 1,000,000
//! distinct sources against a flow cap of 100,000 stay under 200 MB peak
//! RSS, and every evicted flow is counted and still written out (across
//! files rotated by size, with no temporary file left behind). The summary
//! reports each thread's CPU time.

use std::process::Command;

#[test]
fn million_spoofed_sources_stay_under_200_mb_with_evictions_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("synflood.pcap");
    let t = moni_samples::stream::syn_flood(&pcap, 1_000_000, 7).expect("generate");
    assert_eq!(t.flows, 1_000_000);

    // Small files, to exercise rotation by size on the way.
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[output]\nrotate_max_bytes = 4194304\n").expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_moni-node"))
        .args(["replay", "--json", "--max-flows", "100000", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg(&pcap)
        .output()
        .expect("run moni-node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["packets"], 1_000_000);
    assert_eq!(j["flows"]["peak_active"], 100_000);
    assert_eq!(j["flows"]["evicted"], 900_000);
    assert_eq!(j["flows"]["by_end_reason"]["evicted"], 900_000);
    assert_eq!(j["flows"]["exported"], 1_000_000);
    assert_eq!(
        j["datasets"][0]["rows"], 1_000_000,
        "evicted flows are written, not lost"
    );
    let files = j["datasets"][0]["files"].as_array().expect("files");
    assert!(files.len() >= 3, "rotated by size: {} files", files.len());
    let flows_dir = dir.path().join("out/flows");
    let mut on_disk = 0;
    for e in std::fs::read_dir(&flows_dir).expect("flows dir") {
        let name = e.expect("entry").file_name().to_string_lossy().to_string();
        assert!(
            name.ends_with(".parquet") && !name.starts_with('.'),
            "left behind: {name}"
        );
        on_disk += 1;
    }
    assert_eq!(on_disk, files.len());
    // Each thread's own CPU time: none is zero, and none is more than the
    // run's wall time allows (a process-wide clock would be: it counts
    // every thread).
    let elapsed = j["elapsed_secs"].as_f64().expect("elapsed");
    let workers = j["workers"].as_f64().expect("workers");
    let cpu = |k: &str| j["cpu_seconds"][k].as_f64().expect("cpu_seconds");
    for (k, threads) in [("capture", 1.0), ("workers", workers), ("output", 1.0)] {
        assert!(
            cpu(k) > 0.0 && cpu(k) <= elapsed * threads + 0.05,
            "{k} CPU {} s in {elapsed} s",
            cpu(k)
        );
    }
    let rss = j["peak_rss_bytes"].as_u64().expect("peak RSS measured");
    eprintln!("peak RSS {:.1} MiB", rss as f64 / 1048576.0);
    assert!(rss < 200 * 1000 * 1000, "peak RSS {rss} bytes");
}

//! The live probe in network namespaces (root only; CI sets
//! `MONI_REQUIRE_NETNS=1` so that these never silently skip there):
//! mirrored production traffic, checked against the production veth's own
//! counters; a real Prometheus scraping the node; overload accounting;
//! SIGTERM leaving complete Parquet.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, Int64Array, StringArray, UInt32Array, UInt64Array};
use common::lab::{metric, node_bin, Lab};
use common::*;

/// Starts `moni-node run` in the lab's monitor namespace.
fn start_node(lab: &Lab, dir: &Path, extra: &str) -> Child {
    let config = format!(
        r#"
[node]
name = "lab"
workers = 2
tick_ms = 200
[metrics]
listen = "127.0.0.1:19464"
[[sources]]
interface = "m1"
vnet = "A"
role = "production"
[output]
dir = "{}"
rotate_secs = 2
{extra}
"#,
        dir.join("out").display()
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, config).expect("write config");
    let child = lab
        .cmd(&lab.moni, node_bin().to_str().expect("utf-8 path"))
        .arg("run")
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start moni-node run");
    lab.wait_http(
        &lab.moni,
        "http://127.0.0.1:19464/healthz",
        Duration::from_secs(20),
    );
    child
}

fn scrape(lab: &Lab) -> String {
    lab.http_get(&lab.moni, "http://127.0.0.1:19464/metrics")
        .expect("/metrics answers")
}

/// Polls /metrics until `moni_vnet_packets_total` reaches `want`.
fn wait_analysed(lab: &Lab, want: u64) -> String {
    let t0 = Instant::now();
    loop {
        let text = scrape(lab);
        let got = metric(&text, "moni_vnet_packets_total", &[]).unwrap_or(0.0) as u64;
        if got >= want || t0.elapsed() > Duration::from_secs(15) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGTERM, then the exit status and the JSON summary.
fn stop_node(mut child: Child) -> serde_json::Value {
    let pid = child.id().to_string();
    // `ip netns exec` execs the node, so the child's pid is the node's.
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(ok.success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "node did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(status.success(), "exit {status:?}; stderr: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("summary {out:?}: {e}"))
}

fn leftover_temp_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(dir).expect("out dir") {
        let d = d.expect("entry").path();
        for f in std::fs::read_dir(&d).expect("dataset dir") {
            let name = f.expect("entry").file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn mirrored_traffic_is_counted_exactly_in_parquet_and_metrics() {
    let Some(mut lab) = Lab::create("e2e") else {
        return;
    };
    lab.start_sink();
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = start_node(&lab, tmp.path(), "");
    let before = lab.production_packets();
    let (udp, size, rtp) = (3000u64, 200u64, 150u64);
    lab.traffic(&[
        "send", "--udp", "3000", "--size", "200", "--pps", "20000", "--tcp", "300000", "--rtp",
        "150",
    ]);
    let sent = lab.production_packets() - before;
    assert!(sent > udp + rtp + 10, "only {sent} packets crossed p0");

    let text = wait_analysed(&lab, sent);
    let m = |name: &str| metric(&text, name, &[]).unwrap_or(-1.0) as i64;
    assert_eq!(m("moni_source_packets_total"), sent as i64, "{text}");
    assert_eq!(m("moni_vnet_packets_total"), sent as i64);
    assert_eq!(
        metric(
            &text,
            "moni_vnet_packets_total",
            &[("vnet", "A"), ("role", "production")]
        ),
        Some(sent as f64)
    );
    assert_eq!(m("moni_source_kernel_drops_total"), 0);
    assert_eq!(m("moni_source_interface_drops_total"), 0);
    assert_eq!(m("moni_source_queue_drops_total"), 0);
    assert_eq!(m("moni_worker_packets_total"), sent as i64);
    assert_eq!(m("moni_build_info"), 1);
    assert!(m("process_resident_memory_bytes") > 1_000_000);
    assert!(text.contains("node=\"lab\""));

    let summary = stop_node(node);
    assert_eq!(summary["packets_analysed"], sent);
    let out = tmp.path().join("out");
    assert!(leftover_temp_files(&out).is_empty());

    let flows = flows_as_truth(&read_dataset(&out.join("flows")));
    let total: u64 = flows.iter().map(|f| f.packets_fwd + f.packets_rev).sum();
    assert_eq!(total, sent, "{flows:#?}");
    let u = flows
        .iter()
        .find(|f| f.dst_port == 9000 && f.src_port == 5555)
        .expect("UDP flow");
    assert_eq!((u.packets_fwd, u.bytes_fwd), (udp, udp * (size + 42)));
    assert_eq!((u.vnet.as_str(), u.role.as_str()), ("A", "production"));
    let t = flows.iter().find(|f| f.dst_port == 8080).expect("TCP flow");
    assert_eq!(t.packets_fwd + t.packets_rev, sent - udp - rtp);
    assert_eq!(t.tcp_flags & 0x03, 0x03, "SYN and FIN seen");
    let bins = bins_as_truth(&read_dataset(&out.join("bins")));
    assert_eq!(bins.iter().map(|b| b.packets).sum::<u64>(), sent);

    // The RTP stream (sequence wrapping mid-stream) found without SIP.
    let streams = read_dataset(&out.join("rtp_streams"));
    let mut found = 0;
    for b in &streams {
        let ssrc = col::<UInt32Array>(b, "ssrc");
        let recv = col::<UInt64Array>(b, "packets_received");
        let codec = col::<StringArray>(b, "codec");
        let lost = col::<Int64Array>(b, "packets_lost");
        let expected = col::<Int64Array>(b, "packets_expected");
        for i in 0..b.num_rows() {
            if ssrc.value(i) == 0x1234_abcd {
                found += 1;
                assert_eq!(recv.value(i), rtp);
                assert_eq!((lost.value(i), expected.value(i)), (0, rtp as i64));
                assert_eq!(codec.value(i), "PCMU");
                assert!(!codec.is_null(i));
            }
        }
    }
    assert_eq!(found, 1, "one RTP stream");
}

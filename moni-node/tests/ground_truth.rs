//! The committed samples replay to exactly the generator's ground truth,
//! read back from Parquet: every flow (packets, bytes, timestamps, flags,
//! end reason) and every bin.

mod common;

use common::*;
use moni_samples::truth::{truth, Truth, TruthFlow};
use moni_samples::{scenario, write_pcap};

fn load_truth(name: &str) -> Truth {
    let text = std::fs::read_to_string(sample(name)).expect("truth file");
    serde_json::from_str(&text).expect("truth json")
}

fn sort_flows(mut v: Vec<TruthFlow>) -> Vec<TruthFlow> {
    v.sort_by(|a, b| {
        (
            &a.vnet,
            a.start_time_us,
            &a.src_addr,
            a.src_port,
            &a.dst_addr,
            a.dst_port,
        )
            .cmp(&(
                &b.vnet,
                b.start_time_us,
                &b.src_addr,
                b.src_port,
                &b.dst_addr,
                b.dst_port,
            ))
    });
    v
}

fn check(pcap: &str, truth_file: &str) {
    let t = load_truth(truth_file);
    let out = tempfile::tempdir().expect("tempdir");
    let map = (!t.vnet_map.is_empty()).then_some(t.vnet_map.as_str());
    let summary = replay_files(&[sample(pcap)], map, out.path(), "");
    assert_eq!(summary.packets, t.packets);
    assert_eq!(summary.bytes, t.bytes);
    assert_eq!(summary.decode_errors, t.decode_errors);

    let flows = sort_flows(flows_as_truth(&read_dataset(&out.path().join("flows"))));
    let expected = sort_flows(t.flows.clone());
    assert_eq!(flows.len(), expected.len(), "flow count");
    for (got, want) in flows.iter().zip(&expected) {
        assert_eq!(got, want);
    }

    let mut bins = bins_as_truth(&read_dataset(&out.path().join("bins")));
    bins.sort_by(|a, b| (a.bin_start_us, &a.vnet).cmp(&(b.bin_start_us, &b.vnet)));
    let mut want_bins = t.bins.clone();
    want_bins.sort_by(|a, b| (a.bin_start_us, &a.vnet).cmp(&(b.bin_start_us, &b.vnet)));
    assert_eq!(bins, want_bins);
}

#[test]
fn background_sample_matches_ground_truth() {
    check("background.pcap", "background.truth.json");
}

#[test]
fn vlan_shadow_sample_matches_ground_truth() {
    check("vlan-shadow.pcap", "vlan-shadow.truth.json");
}

#[test]
fn vlan_sample_has_the_same_flows_in_both_vnets_with_their_roles() {
    let out = tempfile::tempdir().expect("tempdir");
    replay_files(
        &[sample("vlan-shadow.pcap")],
        Some("100=A:production,200=B:shadow"),
        out.path(),
        "",
    );
    let flows = flows_as_truth(&read_dataset(&out.path().join("flows")));
    let strip = |vnet: &str, role: &str, vlan: u16| {
        let mut v: Vec<TruthFlow> = flows
            .iter()
            .filter(|f| f.vnet == vnet)
            .map(|f| {
                assert_eq!(f.role, role);
                assert_eq!(f.vlan_id, Some(vlan));
                TruthFlow {
                    vnet: String::new(),
                    role: String::new(),
                    vlan_id: None,
                    // the shadow copy is 100 µs late by construction
                    start_time_us: f.start_time_us - if vnet == "B" { 100 } else { 0 },
                    end_time_us: f.end_time_us - if vnet == "B" { 100 } else { 0 },
                    ..f.clone()
                }
            })
            .collect();
        v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        v
    };
    let a = strip("A", "production", 100);
    let b = strip("B", "shadow", 200);
    assert!(a.len() > 100);
    assert_eq!(a, b);
}

#[test]
fn committed_samples_are_what_the_generator_makes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, s) in [
        ("background", scenario::background(1)),
        ("vlan-shadow", scenario::vlan_shadow(1)),
    ] {
        let path = dir.path().join(format!("{name}.pcap"));
        write_pcap(&s, &path).expect("write");
        let fresh = std::fs::read(&path).expect("read");
        let committed = std::fs::read(sample(&format!("{name}.pcap"))).expect("committed");
        assert!(
            fresh == committed,
            "{name}.pcap differs from the generator's output"
        );
        assert_eq!(truth(&s), load_truth(&format!("{name}.truth.json")));
    }
    for (name, (s, t)) in [
        ("voip-impairments", moni_samples::voip::impaired_calls(1)),
        ("paper-miniature", moni_samples::voip::paper_miniature(1)),
    ] {
        let path = dir.path().join(format!("{name}.pcap"));
        write_pcap(&s, &path).expect("write");
        let fresh = std::fs::read(&path).expect("read");
        let committed = std::fs::read(sample(&format!("{name}.pcap"))).expect("committed");
        assert!(
            fresh == committed,
            "{name}.pcap differs from the generator's output"
        );
        let text = std::fs::read_to_string(sample(&format!("{name}.truth.json"))).expect("truth");
        let committed: moni_samples::voip::VoipTruth = serde_json::from_str(&text).expect("json");
        // Compare through the same JSON round trip (floats parse inexactly).
        let fresh: moni_samples::voip::VoipTruth =
            serde_json::from_str(&serde_json::to_string(&t).expect("encode")).expect("json");
        assert_eq!(fresh, committed, "{name}.truth.json");
    }
}

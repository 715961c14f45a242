//! Real captures from public projects (`../shared/corpus`): every one
//! replays without a crash and with consistent counts, the special cases
//! (VLAN, SLL, IPv6, fragments, caplen < len) decode as they should, and
//! flows on the `general/` captures agree with tshark's conversation table.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "pcap" || x == "pcapng" || x == "cap")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Files broken on purpose, with the packets tshark reads before the
/// damage (corpus README): moni must report the file as cut short and
/// keep exactly those packets.
const BROKEN_ON_PURPOSE: &[(&str, u64)] = &[("corrupt-cut-short-ndpi-fuzz-2021-10-13.pcap", 1)];

/// Corpus captures whose counts do not hold yet, and the open issue that
/// makes them hold.
const REPLAY_GAPS: &[(&str, &str)] = &[];

#[test]
fn every_corpus_capture_replays_with_consistent_counts() {
    let Some(corpus) = corpus() else { return };
    let files = captures(&corpus);
    assert!(files.len() >= 20, "found {} captures", files.len());
    let mut check = GapCheck::new(REPLAY_GAPS);
    for f in files {
        check.record(&f.display().to_string(), replays_consistently(&f));
    }
    check.finish();
}

fn replays_consistently(f: &Path) -> Result<(), String> {
    let out = tempfile::tempdir().expect("tempdir");
    let s = replay_files(&[f.to_path_buf()], None, out.path(), "");
    let name = f.file_name().map(|n| n.to_string_lossy().to_string());
    let broken = BROKEN_ON_PURPOSE
        .iter()
        .find(|(b, _)| name.as_deref() == Some(*b));
    match broken {
        Some((_, kept)) => {
            let failed: Vec<_> = s.failed_files().collect();
            ensure!(
                failed.len() == 1
                    && failed[0]
                        .error
                        .as_deref()
                        .is_some_and(|e| e.contains("truncated")),
                "a file cut short is reported as such: {:?}",
                s.files
            );
            ensure!(
                s.packets == *kept,
                "{} packets kept, tshark reads {kept}",
                s.packets
            );
        }
        None => ensure!(s.failed_files().next().is_none(), "{:?}", s.files),
    }
    ensure!(s.packets > 0, "no packets");
    let bins = bins_as_truth(&read_dataset(&out.path().join("bins")));
    let flows = flows_as_truth(&read_dataset(&out.path().join("flows")));
    let binned: u64 = bins.iter().map(|b| b.packets).sum();
    // Every frame is binned, except that the fragments of a reassembled
    // tunnel packet bin once, as their datagram (and those of a datagram
    // that never completed not at all).
    let r = &s.reassembly;
    let expected = s.packets - r.fragments + r.datagrams;
    ensure!(
        binned == expected,
        "binned {binned} != {expected} ({} frames, reassembly {r:?})",
        s.packets
    );
    let errors: u64 = bins.iter().map(|b| b.decode_errors).sum();
    ensure!(
        errors == s.decode_errors_total,
        "bin errors {errors} != {}",
        s.decode_errors_total
    );
    let in_flows: u64 = flows.iter().map(|f| f.packets_fwd + f.packets_rev).sum();
    ensure!(in_flows <= s.packets, "{in_flows} packets in flows");
    ensure!(
        !s.decode_errors.contains_key("unsupported_link_type"),
        "unsupported link type: {:?}",
        s.decode_errors
    );
    Ok(())
}

fn replay_one(
    corpus: &Path,
    rel: &str,
) -> (
    moni_node::summary::Summary,
    Vec<moni_samples::truth::TruthFlow>,
) {
    replay_one_with(corpus, rel, "")
}

/// [`replay_one`] with a node config (TOML).
fn replay_one_with(
    corpus: &Path,
    rel: &str,
    config: &str,
) -> (
    moni_node::summary::Summary,
    Vec<moni_samples::truth::TruthFlow>,
) {
    let out = tempfile::tempdir().expect("tempdir");
    let s = replay_files(&[corpus.join(rel)], None, out.path(), config);
    let flows = flows_as_truth(&read_dataset(&out.path().join("flows")));
    (s, flows)
}

#[test]
fn special_link_and_network_cases_decode() {
    let Some(c) = corpus() else { return };

    // The same connection untagged, on VLAN 42 and on QinQ 10/20 (Zeek's
    // VLAN-aware flow tuple): three flows of 7 + 7 packets, as Zeek and
    // Suricata count them (tshark keys no conversation on VLANs: one of
    // 42); one of 21 + 21 with `vlan_tracking` off.
    let vlans = |f: &moni_samples::truth::TruthFlow| f.vlan_id;
    let (_, flows) = replay_one(&c, "tunnels/zeek-vlan-collisions.pcap");
    let mut got: Vec<_> = flows
        .iter()
        .map(|f| (vlans(f), f.packets_fwd, f.packets_rev))
        .collect();
    got.sort();
    assert_eq!(got, [(None, 7, 7), (Some(10), 7, 7), (Some(42), 7, 7)]);
    let untracked = "[flows]\nvlan_tracking = false\n";
    let (_, flows) = replay_one_with(&c, "tunnels/zeek-vlan-collisions.pcap", untracked);
    let got: Vec<_> = flows
        .iter()
        .map(|f| (f.packets_fwd, f.packets_rev))
        .collect();
    assert_eq!(got, [(21, 21)]);

    // 802.1Q VLAN 3136 on the client's 106 frames only, the server's 148
    // untagged (Suricata's bug 4376, which it replays with
    // `vlan.use-for-tracking=false`): with VLAN tracking, two one-way
    // flows, the tagged one carrying the id; without, one flow.
    let (_, flows) = replay_one(&c, "general/vlan3136-http-syn-retransmit.pcap");
    let mut got: Vec<_> = flows
        .iter()
        .map(|f| (vlans(f), f.packets_fwd + f.packets_rev))
        .collect();
    got.sort();
    assert_eq!(got, [(None, 148), (Some(3136), 106)]);
    let (_, flows) = replay_one_with(&c, "general/vlan3136-http-syn-retransmit.pcap", untracked);
    let got: Vec<_> = flows
        .iter()
        .map(|f| (vlans(f), f.packets_fwd, f.packets_rev))
        .collect();
    assert_eq!(got, [(Some(3136), 106, 148)]);

    // Linux cooked capture with IPv6 fragment headers (SIP over UDP).
    let (s, flows) = replay_one(&c, "voip/sip-ipv6-frag-sll.pcap");
    assert_eq!(s.decode_errors_total, 0, "{:?}", s.decode_errors);
    assert!(flows
        .iter()
        .any(|f| f.src_addr.contains(':') && f.protocol == 17));
    assert!(flows.iter().any(|f| f.fragments > 0));
    assert_eq!(s.flows.fragments_unmatched, 0);

    // IPv4 fragments of one ICMP echo: all in the echo's flow.
    let (s, flows) = replay_one(&c, "general/ip_frag_source.pcapng");
    assert_eq!(s.flows.fragments_unmatched, 0);
    let frags: u64 = flows.iter().map(|f| f.fragments).sum();
    assert!(frags >= 4, "{flows:?}");

    // IPv6 fragments (ICMPv6 echo).
    let (_, flows) = replay_one(&c, "general/ipv6_fragments.pcapng");
    assert!(flows.iter().any(|f| f.protocol == 58 && f.fragments > 0));

    // caplen < wire length on 45 frames: bytes are wire bytes, no errors.
    let (s, flows) = replay_one(&c, "general/TLPW1-http-caplen-lt-len.pcap");
    let flow_bytes: u64 = flows.iter().map(|f| f.bytes_fwd + f.bytes_rev).sum();
    assert!(
        flow_bytes > 75 * 1342,
        "wire length, not captured length: {flow_bytes}"
    );
    assert_eq!(s.decode_errors_total, 0, "{:?}", s.decode_errors);

    // A SYN flood with spoofed sources and destinations: one flow per SYN.
    let (s, flows) = replay_one(&c, "attack/dosattack-synflood.pcap");
    assert_eq!(s.packets, 100);
    assert!(flows.len() >= 95 && flows.iter().all(|f| f.tcp_flags & 0x02 != 0));
}

/// Frames per unordered (endpoint, endpoint) pair from `tshark -z conv,tcp/udp`
/// (with IP reassembly on, tshark's default, or off).
fn tshark_conversations(file: &Path, defragment: bool) -> BTreeMap<(u8, String, String), u64> {
    let mut cmd = Command::new("tshark");
    if !defragment {
        cmd.args(["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]);
    }
    let out = cmd
        .args(["-n", "-r"])
        .arg(file)
        .args(["-q", "-z", "conv,tcp", "-z", "conv,udp"])
        .output()
        .expect("tshark is installed (.ci/run installs it)");
    // On a file broken on purpose tshark reports what it read before the
    // damage, and exits 2.
    let broken = BROKEN_ON_PURPOSE
        .iter()
        .any(|(b, _)| file.file_name().is_some_and(|n| n == *b));
    assert!(
        out.status.success() || broken,
        "tshark failed on {}",
        file.display()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut proto = 0u8;
    let mut map = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("TCP Conversations") {
            proto = 6;
        } else if line.starts_with("UDP Conversations") {
            proto = 17;
        }
        let tok: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = tok.iter().position(|t| *t == "<->") {
            let frames: u64 = tok[i + 8].parse().expect("total frames column");
            let (a, b) = (tok[i - 1].to_string(), tok[i + 1].to_string());
            let key = if a <= b { (proto, a, b) } else { (proto, b, a) };
            *map.entry(key).or_insert(0) += frames;
        }
    }
    map
}

fn endpoint(addr: &str, port: u16) -> String {
    format!("{addr}:{port}")
}

/// General captures whose flows do not agree with tshark yet, and the
/// open issue that makes them agree.
const TSHARK_FLOW_GAPS: &[(&str, &str)] = &[];

#[test]
fn flows_agree_with_tshark_conversations_on_general_captures() {
    let Some(c) = corpus() else { return };
    let mut check = GapCheck::new(TSHARK_FLOW_GAPS);
    for f in captures(&c.join("general")) {
        check.record(&f.display().to_string(), flows_agree_with_tshark(&f));
    }
    check.finish();
}

/// Captures of IP fragments that never complete: tshark decodes TCP or UDP
/// only in a reassembled datagram, so it lists no conversation; moni counts
/// every fragment in its first fragment's flow (README, flow rules). Judged
/// against tshark with defragmentation off, which decodes the first
/// fragment's ports: the same conversations, each of fragments only.
const UNFINISHED_FRAGMENTS: &[&str] = &["zeek-ipv4-fragmented-3.pcap"];

fn flows_agree_with_tshark(f: &Path) -> Result<(), String> {
    let unfinished = UNFINISHED_FRAGMENTS
        .iter()
        .any(|u| f.file_name().is_some_and(|n| n == *u));
    let want = tshark_conversations(f, !unfinished);
    let out = tempfile::tempdir().expect("tempdir");
    replay_files(&[f.to_path_buf()], None, out.path(), "");
    let flows = flows_as_truth(&read_dataset(&out.path().join("flows")));
    if unfinished {
        ensure!(!want.is_empty(), "tshark decodes the first fragment");
        for fl in &flows {
            let packets = fl.packets_fwd + fl.packets_rev;
            ensure!(
                fl.fragments == packets,
                "{fl:?}: only fragments, all counted"
            );
        }
    }
    let mut got = BTreeMap::new();
    for fl in flows {
        if fl.protocol != 6 && fl.protocol != 17 {
            continue;
        }
        let (a, b) = (
            endpoint(&fl.src_addr, fl.src_port),
            endpoint(&fl.dst_addr, fl.dst_port),
        );
        let key = if a <= b {
            (fl.protocol, a, b)
        } else {
            (fl.protocol, b, a)
        };
        *got.entry(key).or_insert(0u64) += fl.packets_fwd + fl.packets_rev;
    }
    if unfinished {
        let keys = |m: &BTreeMap<(u8, String, String), u64>| m.keys().cloned().collect::<Vec<_>>();
        ensure!(keys(&got) == keys(&want), "moni {got:?}\ntshark {want:?}");
        return Ok(());
    }
    ensure!(got == want, "moni {got:?}\ntshark {want:?}");
    Ok(())
}

/// `decode`'s fast path (Ethernet, ≤ 2 VLAN tags, plain IPv4) must give
/// exactly what the general `etherparse` path gives, on every frame of every
/// corpus capture and of the committed samples.
#[test]
fn fast_decode_path_agrees_with_the_general_path_on_every_frame() {
    let mut files: Vec<PathBuf> = captures(&root().join("samples/pcap"));
    if let Some(corpus) = corpus() {
        files.extend(captures(&corpus));
    }
    assert!(!files.is_empty());
    let mut frames = 0u64;
    for f in &files {
        let mut cap = pcap::Capture::from_file(f).expect("open capture");
        let Some(link) = analyzers::LinkType::from_dlt(cap.get_datalink().0) else {
            continue;
        };
        while let Ok(p) = cap.next_packet() {
            frames += 1;
            assert_eq!(
                analyzers::decode(link, p.data),
                analyzers::decode::decode_general(link, p.data),
                "{} frame {frames}",
                f.display()
            );
        }
    }
    assert!(frames > 10_000, "only {frames} frames");
}

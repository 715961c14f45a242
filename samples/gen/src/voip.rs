//! VoIP scenarios: SIP calls with SDP and G.711 RTP streams under
//! controlled impairments (random and bursty loss, duplicates, reordering,
//! jitter, delay spikes, sequence wraparound), with ground truth computed
//! from what the generator emitted, and the paper's Table 1 experiment in
//! miniature.
//!
//! Truth per stream: `packets_received` counts emitted packets (duplicates
//! included); `packets_expected` is highest − first sequence + 1 over the
//! emitted ones (the first and last packets are never dropped); jitter is
//! RFC 3550 A.8 over the arrival order, computed here independently.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::frame::{self, L4};
use crate::rng::Rng;
use crate::scenario::{Class, FlowSpec, GenPacket, Scenario, VnetSpec, T0_US};

/// How one direction of media is impaired.
#[derive(Clone, Copy, Debug, Default)]
pub struct Impairment {
    /// Probability (percent) that a loss episode starts at a packet.
    pub loss_pct: f64,
    /// Packets lost per episode (1 = random loss).
    pub burst_len: u32,
    pub dup_pct: f64,
    pub reorder_pct: f64,
    /// Uniform extra delay 0..jitter_ms per packet.
    pub jitter_ms: f64,
    /// (at seconds into the call, extra ms, for how many packets).
    pub spike: Option<(f64, f64, u32)>,
}

/// Truth of one RTP stream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TruthStream {
    pub vnet: String,
    pub ssrc: u32,
    pub src_addr: String,
    pub src_port: u16,
    pub dst_addr: String,
    pub dst_port: u16,
    pub call_id: String,
    pub packets_received: u64,
    pub packets_expected: i64,
    pub packets_lost: i64,
    pub duplicates: u64,
    pub jitter_ms: f64,
}

/// A call to generate.
#[derive(Clone, Debug)]
pub struct CallSpec {
    pub call_id: String,
    pub caller: IpAddr,
    pub callee: IpAddr,
    pub caller_rtp: u16,
    pub callee_rtp: u16,
    pub start_us: i64,
    pub secs: f64,
    /// 0 PCMU or 8 PCMA.
    pub payload_type: u8,
    pub first_seq: [u16; 2],
    pub ssrc: [u32; 2],
}

/// Emits a call's SIP dialogue and media into `s` in VNet `vnet` (VLAN
/// `vlan`), impairing the media of each direction with `imp(direction,
/// seconds into the call)`. Returns the truth of both streams.
#[allow(clippy::too_many_arguments)] // where a call goes: VNet, VLAN, delay, snaplen
pub fn emit_call(
    s: &mut Scenario,
    rng: &mut Rng,
    vnet: usize,
    vlan: Option<u16>,
    c: &CallSpec,
    network_delay_ms: f64,
    imp: &dyn Fn(usize, f64) -> Impairment,
    snaplen: usize,
) -> Vec<TruthStream> {
    let vlans: Vec<u16> = vlan.into_iter().collect();
    let codec = if c.payload_type == 0 { "PCMU" } else { "PCMA" };
    let sdp = |addr: IpAddr, port: u16| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {codec}/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n",
            pt = c.payload_type
        )
    };
    let sip = |first: &str, cseq: &str, body: Option<String>| {
        let body = body.unwrap_or_default();
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{first}\r\nVia: SIP/2.0/UDP {}:5060;branch=z9hG4bK-{id}\r\n\
             From: <sip:alice@{}>;tag=a1\r\nTo: <sip:bob@{}>;tag=b1\r\nCall-ID: {id}\r\n\
             CSeq: {cseq}\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            c.caller,
            c.caller,
            c.callee,
            body.len(),
            id = c.call_id
        )
    };
    let uri = format!("sip:bob@{}", c.callee);
    let signalling = [
        (
            0.0,
            true,
            sip(
                &format!("INVITE {uri} SIP/2.0"),
                "1 INVITE",
                Some(sdp(c.caller, c.caller_rtp)),
            ),
        ),
        (0.005, false, sip("SIP/2.0 100 Trying", "1 INVITE", None)),
        (0.2, false, sip("SIP/2.0 180 Ringing", "1 INVITE", None)),
        (
            1.0,
            false,
            sip(
                "SIP/2.0 200 OK",
                "1 INVITE",
                Some(sdp(c.callee, c.callee_rtp)),
            ),
        ),
        (
            1.01,
            true,
            sip(&format!("ACK {uri} SIP/2.0"), "1 ACK", None),
        ),
        (
            1.1 + c.secs,
            true,
            sip(&format!("BYE {uri} SIP/2.0"), "2 BYE", None),
        ),
        (1.11 + c.secs, false, sip("SIP/2.0 200 OK", "2 BYE", None)),
    ];
    let sig_flow = push_flow(s, vnet, vlan, c.caller, c.callee, 5060, 5060, 17);
    for (at, fwd, text) in signalling {
        let (a, b) = if fwd {
            (c.caller, c.callee)
        } else {
            (c.callee, c.caller)
        };
        let l4 = L4::Udp {
            sport: 5060,
            dport: 5060,
            payload: text.as_bytes(),
        };
        let f = frame::packet(&vlans, a, b, 1, &l4);
        push(
            s,
            vnet,
            sig_flow,
            fwd,
            c.start_us + (at * 1e6) as i64,
            f,
            usize::MAX,
        );
    }

    let media_start = c.start_us + 1_050_000;
    let n = (c.secs * 50.0) as u32;
    let mut truths = Vec::new();
    for dir in 0..2usize {
        let (src, dst, sport, dport) = if dir == 0 {
            (c.caller, c.callee, c.caller_rtp, c.callee_rtp)
        } else {
            (c.callee, c.caller, c.callee_rtp, c.caller_rtp)
        };
        let flow = push_flow(s, vnet, vlan, src, dst, sport, dport, 17);
        // (arrival µs, seq, rtp ts, duplicate?)
        let mut arrivals: Vec<(i64, u16, u32, bool)> = Vec::new();
        let mut lose = 0u32;
        let mut duplicates = 0u64;
        for k in 0..n {
            let t_call = f64::from(k) * 0.02;
            let im = imp(dir, t_call);
            let seq = c.first_seq[dir].wrapping_add(k as u16);
            let ts = 160u32.wrapping_mul(k).wrapping_add(1000 * dir as u32);
            let edge = k < 3 || k + 3 >= n;
            if lose == 0 && !edge && rng.range(0, 1_000_000) < (im.loss_pct * 10_000.0) as u64 {
                lose = im.burst_len.max(1);
            }
            if lose > 0 && !edge {
                lose -= 1;
                continue;
            }
            lose = 0;
            let spike_ms = match im.spike {
                Some((at, extra, len)) if t_call >= at && t_call < at + f64::from(len) * 0.02 => {
                    extra
                }
                _ => 0.0,
            };
            let jitter = if im.jitter_ms > 0.0 {
                rng.range(0, (im.jitter_ms * 1000.0) as u64) as f64 / 1000.0
            } else {
                0.0
            };
            let mut arrive = media_start
                + (t_call * 1e6) as i64
                + ((network_delay_ms + jitter + spike_ms) * 1000.0) as i64;
            if !edge && rng.range(0, 1_000_000) < (im.reorder_pct * 10_000.0) as u64 {
                arrive += 25_000; // lands after the next packet
            }
            arrivals.push((arrive, seq, ts, false));
            if !edge && rng.range(0, 1_000_000) < (im.dup_pct * 10_000.0) as u64 {
                arrivals.push((arrive + 1_000, seq, ts, true));
                duplicates += 1;
            }
        }
        arrivals.sort_by_key(|a| (a.0, a.3));
        // Truth.
        let mut jitter = 0.0f64;
        let mut prev: Option<(i64, u32)> = None;
        let first_ext = i64::from(c.first_seq[dir]);
        let mut max_ext = first_ext;
        for &(t, seq, ts, _) in &arrivals {
            let ext = first_ext + i64::from(seq.wrapping_sub(c.first_seq[dir]));
            max_ext = max_ext.max(ext);
            if let Some((pt, pts)) = prev {
                let d = (t - pt) as f64 / 1000.0 - f64::from(ts.wrapping_sub(pts) as i32) / 8.0;
                jitter += (d.abs() - jitter) / 16.0;
            }
            prev = Some((t, ts));
        }
        let expected = max_ext - first_ext + 1;
        truths.push(TruthStream {
            vnet: s.vnets[vnet].name.clone(),
            ssrc: c.ssrc[dir],
            src_addr: src.to_string(),
            src_port: sport,
            dst_addr: dst.to_string(),
            dst_port: dport,
            call_id: c.call_id.clone(),
            packets_received: arrivals.len() as u64,
            packets_expected: expected,
            packets_lost: expected - arrivals.len() as i64,
            duplicates,
            jitter_ms: jitter,
        });
        let payload = vec![if c.payload_type == 0 { 0xff } else { 0xd5 }; 160];
        for (t, seq, ts, _) in arrivals {
            let mut rtp = vec![0x80, c.payload_type];
            rtp.extend_from_slice(&seq.to_be_bytes());
            rtp.extend_from_slice(&ts.to_be_bytes());
            rtp.extend_from_slice(&c.ssrc[dir].to_be_bytes());
            rtp.extend_from_slice(&payload);
            let l4 = L4::Udp {
                sport,
                dport,
                payload: &rtp,
            };
            let f = frame::packet(&vlans, src, dst, 1, &l4);
            push(s, vnet, flow, true, t, f, snaplen);
        }
    }
    truths
}

#[allow(clippy::too_many_arguments)] // a flow is named by its 5-tuple
fn push_flow(
    s: &mut Scenario,
    vnet: usize,
    vlan: Option<u16>,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    protocol: u8,
) -> usize {
    s.flows.push(FlowSpec {
        vnet,
        vlan_id: vlan,
        src,
        dst,
        sport,
        dport,
        protocol,
        end_reason: None,
        fragments: 0,
    });
    s.flows.len() - 1
}

fn push(
    s: &mut Scenario,
    vnet: usize,
    flow: usize,
    forward: bool,
    ts_us: i64,
    f: Vec<u8>,
    snaplen: usize,
) {
    let orig_len = f.len() as u32;
    let mut frame = f;
    frame.truncate(snaplen);
    s.packets.push(GenPacket {
        ts_us,
        frame,
        orig_len,
        flow: Some(flow),
        forward,
        tcp_flags: 0,
        class: Class::Udp,
        decode_error: None,
        vnet,
    });
}

/// Truth of a VoIP scenario.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VoipTruth {
    pub scenario: String,
    pub vnet_map: String,
    pub streams: Vec<TruthStream>,
    /// What RTCP tells about some streams.
    #[serde(default)]
    pub rtcp: Vec<TruthRtcp>,
}

/// Truth of the RTCP exchange about one stream (the caller's media): the
/// round trip the probe measures and the far end's report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TruthRtcp {
    pub ssrc: u32,
    pub rtt_ms: f64,
    pub remote_fraction_lost: f64,
    pub remote_cumulative_lost: i64,
    pub remote_jitter_ms: f64,
}

/// Emits a call's RTCP on the RTP ports + 1: every 5 s of media the caller
/// sends a sender report, and the callee answers `2 × one_way_ms` plus a
/// 0.5 s hold later (as seen at the probe) with a receiver report about the
/// caller's stream that echoes it (LSR) and states the 0.5 s (DLSR), its
/// loss (`fraction`/256, `cumulative`) and jitter (`jitter_units` at
/// 8 kHz). The probe must then measure a round trip of `2 × one_way_ms`.
pub fn emit_rtcp(
    s: &mut Scenario,
    vnet: usize,
    vlan: Option<u16>,
    c: &CallSpec,
    one_way_ms: f64,
    report: (u8, i32, u32),
) -> TruthRtcp {
    let vlans: Vec<u16> = vlan.into_iter().collect();
    let (fraction, cumulative, jitter_units) = report;
    let (sport, dport) = (c.caller_rtp + 1, c.callee_rtp + 1);
    let flow = push_flow(s, vnet, vlan, c.caller, c.callee, sport, dport, 17);
    let media_start = c.start_us + 1_050_000;
    let mut k: u32 = 1;
    while f64::from(k) * 5.0 < c.secs {
        let t_sr = media_start + i64::from(k) * 5_000_000 + 300_000;
        // NTP time of the report (seconds since 1900 and a 2^-32 fraction).
        let ntp_secs = ((t_sr / 1_000_000) as u64 + 2_208_988_800) as u32;
        let ntp_frac = (((t_sr % 1_000_000) as u64) << 32) / 1_000_000;
        let middle = (ntp_secs << 16) | (ntp_frac >> 16) as u32;
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&c.ssrc[0].to_be_bytes());
        sr.extend_from_slice(&ntp_secs.to_be_bytes());
        sr.extend_from_slice(&(ntp_frac as u32).to_be_bytes());
        sr.extend_from_slice(&(160 * 250 * k).to_be_bytes()); // RTP timestamp
        sr.extend_from_slice(&(250 * k).to_be_bytes()); // packets sent
        sr.extend_from_slice(&(250 * 160 * k).to_be_bytes()); // octets sent
        let mut rr = vec![0x81, 201, 0, 7];
        rr.extend_from_slice(&c.ssrc[1].to_be_bytes());
        rr.extend_from_slice(&c.ssrc[0].to_be_bytes());
        let lost = (u32::from(fraction) << 24) | (cumulative as u32 & 0x00ff_ffff);
        rr.extend_from_slice(&lost.to_be_bytes());
        let highest = u32::from(c.first_seq[0]) + 250 * k;
        rr.extend_from_slice(&highest.to_be_bytes());
        rr.extend_from_slice(&jitter_units.to_be_bytes());
        rr.extend_from_slice(&middle.to_be_bytes());
        rr.extend_from_slice(&32_768u32.to_be_bytes()); // DLSR: 0.5 s
        let t_rr = t_sr + (2.0 * one_way_ms * 1000.0) as i64 + 500_000;
        for (t, fwd, payload) in [(t_sr, true, sr), (t_rr, false, rr)] {
            let (a, b, sp, dp) = if fwd {
                (c.caller, c.callee, sport, dport)
            } else {
                (c.callee, c.caller, dport, sport)
            };
            let l4 = L4::Udp {
                sport: sp,
                dport: dp,
                payload: &payload,
            };
            push(
                s,
                vnet,
                flow,
                fwd,
                t,
                frame::packet(&vlans, a, b, 1, &l4),
                usize::MAX,
            );
        }
        k += 1;
    }
    TruthRtcp {
        ssrc: c.ssrc[0],
        rtt_ms: 2.0 * one_way_ms,
        remote_fraction_lost: f64::from(fraction) / 256.0,
        remote_cumulative_lost: i64::from(cumulative),
        remote_jitter_ms: f64::from(jitter_units) / 8.0,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Calls under every impairment kind in one untagged VNet: clean, random
/// loss, bursty loss, duplicates and reordering, jitter with a delay spike,
/// and a sequence wraparound.
pub fn impaired_calls(seed: u64) -> (Scenario, VoipTruth) {
    let mut rng = Rng::new(seed);
    let mut s = Scenario {
        name: "voip-impairments".into(),
        vnets: vec![VnetSpec::new("default", "production", None)],
        ..Scenario::default()
    };
    let cases: [(&str, Impairment); 6] = [
        ("clean", Impairment::default()),
        (
            "random-loss",
            Impairment {
                loss_pct: 3.0,
                burst_len: 1,
                ..Impairment::default()
            },
        ),
        (
            "bursty-loss",
            Impairment {
                loss_pct: 1.0,
                burst_len: 6,
                ..Impairment::default()
            },
        ),
        (
            "dup-reorder",
            Impairment {
                dup_pct: 2.0,
                reorder_pct: 2.0,
                ..Impairment::default()
            },
        ),
        (
            "jitter-spike",
            Impairment {
                jitter_ms: 15.0,
                spike: Some((10.0, 200.0, 10)),
                ..Impairment::default()
            },
        ),
        (
            "wraparound",
            Impairment {
                loss_pct: 1.0,
                burst_len: 2,
                jitter_ms: 4.0,
                ..Impairment::default()
            },
        ),
    ];
    let mut streams = Vec::new();
    let mut rtcp = Vec::new();
    for (i, (name, im)) in cases.iter().enumerate() {
        let i16 = i as u16;
        let call = CallSpec {
            call_id: format!("{name}@moni-gen"),
            caller: ip(&format!("10.1.{i}.10")),
            callee: ip(&format!("10.2.{i}.20")),
            caller_rtp: 40_000 + 2 * i16,
            callee_rtp: 50_000 + 2 * i16,
            start_us: T0_US + i as i64 * 2_000_000,
            secs: 20.0,
            payload_type: if i % 2 == 0 { 0 } else { 8 },
            first_seq: if *name == "wraparound" {
                [65_000, 65_500]
            } else {
                [1000 * i16, 2000 * i16]
            },
            ssrc: [0x1000_0000 + i as u32, 0x2000_0000 + i as u32],
        };
        let im = *im;
        streams.extend(emit_call(
            &mut s,
            &mut rng,
            0,
            None,
            &call,
            10.0,
            &|_, _| im,
            96,
        ));
        // RTCP on two calls: a clean one and one whose far end reports loss.
        match *name {
            "clean" => rtcp.push(emit_rtcp(&mut s, 0, None, &call, 10.0, (0, 0, 24))),
            "random-loss" => rtcp.push(emit_rtcp(&mut s, 0, None, &call, 35.0, (8, 18, 80))),
            _ => {}
        }
    }
    s.packets.sort_by_key(|p| p.ts_us);
    let truth = VoipTruth {
        scenario: s.name.clone(),
        vnet_map: String::new(),
        streams,
        rtcp,
    };
    (s, truth)
}

/// Phase length of the paper miniature, seconds (one scoring window).
pub const PHASE_SECS: f64 = 10.0;

/// The paper's Table 1 in miniature: one G.711 call duplicated into VNet A
/// (VLAN 100, production) and VNet B (VLAN 200, shadow) for six phases of
/// 10 s. Background load rises in phase 2 and is heavy in phases 3-5; A
/// then suffers bursty loss and jitter while B, which gives voice priority,
/// stays clean. Production moves to B in phase 5. VLAN 300 (`rx`, monitor)
/// carries what the receiver gets: A's media until phase 5, then B's.
/// Background load is captured with a 64-byte snaplen, media with 96.
pub fn paper_miniature(seed: u64) -> (Scenario, VoipTruth) {
    let mut rng = Rng::new(seed);
    let mut s = Scenario {
        name: "paper-miniature".into(),
        vnets: vec![
            VnetSpec::new("A", "production", Some(100)),
            VnetSpec::new("B", "shadow", Some(200)),
            VnetSpec::new("rx", "monitor", Some(300)),
        ],
        ..Scenario::default()
    };
    let call = CallSpec {
        call_id: "table1@moni-gen".into(),
        caller: ip("10.10.0.1"),
        callee: ip("10.20.0.1"),
        caller_rtp: 16_384,
        callee_rtp: 16_386,
        // Media starts on a window boundary: the call begins 1.05 s earlier.
        start_us: T0_US + 10_000_000 - 1_050_000,
        secs: 6.0 * PHASE_SECS,
        payload_type: 0,
        first_seq: [65_300, 12_000],
        ssrc: [0xA11C_E001, 0xB0B0_0002],
    };
    let phase = |t: f64| (t / PHASE_SECS) as usize + 1;
    let congested = |t: f64| (3..=5).contains(&phase(t));
    let a_imp = move |_: usize, t: f64| {
        if congested(t) {
            Impairment {
                loss_pct: 2.5,
                burst_len: 4,
                jitter_ms: 40.0,
                ..Impairment::default()
            }
        } else if phase(t) == 2 {
            Impairment {
                jitter_ms: 3.0,
                ..Impairment::default()
            }
        } else {
            Impairment::default()
        }
    };
    let b_imp = move |_: usize, t: f64| {
        if phase(t) >= 2 {
            Impairment {
                jitter_ms: 2.0,
                ..Impairment::default()
            }
        } else {
            Impairment::default()
        }
    };
    let mut streams = Vec::new();
    streams.extend(emit_call(
        &mut s,
        &mut rng,
        0,
        Some(100),
        &call,
        10.0,
        &a_imp,
        96,
    ));
    streams.extend(emit_call(
        &mut s,
        &mut rng,
        1,
        Some(200),
        &call,
        10.0,
        &b_imp,
        96,
    ));
    // The receiver's view follows production: A, then B from phase 5.
    let rx_imp = move |d: usize, t: f64| {
        if phase(t) >= 5 {
            b_imp(d, t)
        } else {
            a_imp(d, t)
        }
    };
    streams.extend(emit_call(
        &mut s,
        &mut rng,
        2,
        Some(300),
        &call,
        10.0,
        &rx_imp,
        96,
    ));

    // Background load in A and B: light in phase 2, heavy in phases 3-5.
    let media_start = call.start_us + 1_050_000;
    for vnet in 0..2usize {
        let vlan = [100u16, 200][vnet];
        let flow = push_flow(
            &mut s,
            vnet,
            Some(vlan),
            ip("10.30.0.1"),
            ip("10.40.0.1"),
            5001,
            5201,
            17,
        );
        for p in 2..=5usize {
            let pps = if p == 2 { 20 } else { 80 };
            let start = media_start + ((p - 1) as f64 * PHASE_SECS * 1e6) as i64;
            for k in 0..(pps * PHASE_SECS as usize) {
                let t = start + (k as f64 * 1e6 / pps as f64) as i64 + vnet as i64 * 37;
                let payload = [0u8; 1400];
                let l4 = L4::Udp {
                    sport: 5001,
                    dport: 5201,
                    payload: &payload,
                };
                let f = frame::packet(&[vlan], ip("10.30.0.1"), ip("10.40.0.1"), 1, &l4);
                push(&mut s, vnet, flow, true, t, f, 64);
            }
        }
    }
    s.packets.sort_by_key(|p| p.ts_us);
    let vnet_map = "100=A:production,200=B:shadow,300=rx:monitor".to_string();
    let truth = VoipTruth {
        scenario: s.name.clone(),
        vnet_map,
        streams,
        rtcp: Vec::new(),
    };
    (s, truth)
}

//! Large scenarios written straight to a pcap file, packet by packet.

use std::fs::File;
use std::io::{self, BufWriter};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::Serialize;

use crate::frame::{self, L4};
use crate::pcap::PcapWriter;
use crate::rng::Rng;
use crate::scenario::T0_US;

/// What a streamed scenario contains.
#[derive(Debug, Serialize)]
pub struct StreamTruth {
    pub scenario: String,
    pub packets: u64,
    pub bytes: u64,
    /// Distinct flows (5-tuples) in the capture.
    pub flows: u64,
}

/// A SYN flood: `sources` SYNs to 192.0.2.80:80, each from a distinct
/// spoofed address (198.18.0.0/15 and up) and random port, 10 µs apart.
pub fn syn_flood(path: &Path, sources: u32, seed: u64) -> io::Result<StreamTruth> {
    let mut rng = Rng::new(seed);
    let mut w = PcapWriter::create(path)?;
    let dst = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80));
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    let mut bytes = 0u64;
    for i in 0..sources {
        let src = IpAddr::V4(Ipv4Addr::from(base.wrapping_add(i)));
        let sport = rng.range(1024, 65_535) as u16;
        let f = frame::packet(
            &[],
            src,
            dst,
            i as u16,
            &L4::Tcp {
                sport,
                dport: 80,
                flags: 0x02,
                payload: &[],
            },
        );
        bytes += f.len() as u64;
        w.write(T0_US + i64::from(i) * 10, &f, f.len() as u32)?;
    }
    w.finish()?;
    Ok(StreamTruth {
        scenario: "syn-flood".into(),
        packets: u64::from(sources),
        bytes,
        flows: u64::from(sources),
    })
}

/// Throughput input: `packets` TCP and UDP packets over a churning pool of
/// `concurrent` flows, with an IMIX size mix (7:4:1 of 64, 594 and 1518
/// bytes on the wire), 2 µs apart.
pub fn bench(path: &Path, packets: u64, concurrent: usize, seed: u64) -> io::Result<StreamTruth> {
    let mut rng = Rng::new(seed);
    let mut w = PcapWriter::create(path)?;
    let concurrent = concurrent.max(1);
    let mut next = 0u32;
    let mut new_flow = |rng: &mut Rng| {
        next += 1;
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (next % 60_000));
        let dst =
            Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + rng.range(0, 4096) as u32);
        let udp = rng.chance(30);
        (
            IpAddr::V4(src),
            IpAddr::V4(dst),
            1024 + (next % 60_000) as u16,
            rng.range(1, 1024) as u16,
            udp,
        )
    };
    let mut pool: Vec<_> = (0..concurrent).map(|_| new_flow(&mut rng)).collect();
    let mut flows = concurrent as u64;
    let payload = vec![0x61u8; 1500];
    let mut bytes = 0u64;
    for i in 0..packets {
        let slot = rng.range(0, concurrent as u64) as usize;
        if rng.range(0, 200) == 0 {
            pool[slot] = new_flow(&mut rng);
            flows += 1;
        }
        let (src, dst, sport, dport, udp) = pool[slot];
        let forward = rng.chance(60);
        let (s, d, sp, dp) = if forward {
            (src, dst, sport, dport)
        } else {
            (dst, src, dport, sport)
        };
        let wire = match rng.range(0, 12) {
            0..=6 => 64usize,
            7..=10 => 594,
            _ => 1518,
        } - 4; // without FCS, as captures store frames
        let l4 = if udp {
            L4::Udp {
                sport: sp,
                dport: dp,
                payload: &payload[..wire - 42],
            }
        } else {
            L4::Tcp {
                sport: sp,
                dport: dp,
                flags: 0x18,
                payload: &payload[..wire - 54],
            }
        };
        let f = frame::packet(&[], s, d, i as u16, &l4);
        bytes += f.len() as u64;
        w.write(T0_US + i as i64 * 2, &f, f.len() as u32)?;
    }
    w.finish()?;
    Ok(StreamTruth {
        scenario: "bench".into(),
        packets,
        bytes,
        flows,
    })
}

/// VoIP throughput input: `calls` concurrent G.711 calls (SIP INVITE, 200
/// with SDP, ACK, then `secs` of 20 ms media each way), written in time
/// order. Media captured with a 96-byte snaplen, as a probe would.
pub fn calls(path: &Path, calls: u32, secs: u32, seed: u64) -> io::Result<StreamTruth> {
    let mut rng = Rng::new(seed);
    let mut w = PcapWriter::create(path)?;
    let addr = |base: u32, i: u32| IpAddr::V4(Ipv4Addr::from(base + i));
    let (a_base, b_base) = (
        u32::from(Ipv4Addr::new(10, 100, 0, 0)),
        u32::from(Ipv4Addr::new(10, 200, 0, 0)),
    );
    let mut packets = 0u64;
    let mut bytes = 0u64;
    let mut emit =
        |w: &mut PcapWriter<BufWriter<File>>, t: i64, f: Vec<u8>, snap: usize| -> io::Result<()> {
            packets += 1;
            bytes += f.len() as u64;
            w.write(t, &f[..snap.min(f.len())], f.len() as u32)
        };
    // Signalling: one call every 250 µs.
    for i in 0..calls {
        let (a, b) = (addr(a_base, i), addr(b_base, i));
        let t = T0_US + i64::from(i) * 250;
        for (k, (src, dst, text)) in [
            (a, b, format!("INVITE sip:b@{b} SIP/2.0\r\nCall-ID: bench-{i}\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@{a}>;tag=1\r\nTo: <sip:b@{b}>\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nc=IN IP4 {a}\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")),
            (b, a, format!("SIP/2.0 200 OK\r\nCall-ID: bench-{i}\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@{a}>;tag=1\r\nTo: <sip:b@{b}>;tag=2\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nc=IN IP4 {b}\r\nm=audio 50000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")),
            (a, b, format!("ACK sip:b@{b} SIP/2.0\r\nCall-ID: bench-{i}\r\nCSeq: 1 ACK\r\n\r\n")),
        ]
        .into_iter()
        .enumerate()
        {
            let l4 = L4::Udp { sport: 5060, dport: 5060, payload: text.as_bytes() };
            emit(&mut w, t + k as i64 * 50, frame::packet(&[], src, dst, 1, &l4), usize::MAX)?;
        }
    }
    // Media: every 20 ms, each call sends one packet each way.
    let media_start = T0_US + 1_000_000;
    let payload = [0xffu8; 160];
    let ticks = secs * 50;
    for k in 0..ticks {
        for i in 0..calls {
            let t =
                media_start + i64::from(k) * 20_000 + i64::from(i) * 7 + rng.range(0, 500) as i64;
            for (dir, (src, dst, sport, dport)) in [
                (addr(a_base, i), addr(b_base, i), 40000u16, 50000u16),
                (addr(b_base, i), addr(a_base, i), 50000, 40000),
            ]
            .into_iter()
            .enumerate()
            {
                let mut rtp = vec![0x80, 0];
                rtp.extend_from_slice(&(k as u16).to_be_bytes());
                rtp.extend_from_slice(&(k * 160).to_be_bytes());
                rtp.extend_from_slice(&(i * 2 + dir as u32).to_be_bytes());
                rtp.extend_from_slice(&payload);
                let l4 = L4::Udp {
                    sport,
                    dport,
                    payload: &rtp,
                };
                emit(
                    &mut w,
                    t + dir as i64 * 3,
                    frame::packet(&[], src, dst, 1, &l4),
                    96,
                )?;
            }
        }
    }
    w.finish()?;
    Ok(StreamTruth {
        scenario: "calls".into(),
        packets,
        bytes,
        flows: u64::from(calls) * 3,
    })
}

/// Flow-heavy throughput input (issue 16): `packets` frames 5 µs apart,
/// about 70% TCP in short connections (handshake, a few data segments
/// and acknowledgements, FIN both ways) of which 4,096 run at once, 20%
/// RTP over 400 streams, 5% one-packet DNS queries and 3% one-packet ICMP
/// echoes, each from a new source, and 2% UDP over 1,000 flows; frames
/// average about 210 bytes, as on the measured capture. At
/// 5,000,000 packets that is about 560,000 flows, all live at once under
/// the default 60 s idle timeout (the capture lasts 25 s).
pub fn flow_heavy(path: &Path, packets: u64, seed: u64) -> io::Result<StreamTruth> {
    /// A TCP connection in progress: addresses, ports, packets sent and
    /// its length.
    #[derive(Clone, Copy)]
    struct Conn {
        client: IpAddr,
        server: IpAddr,
        sport: u16,
        sent: u32,
        len: u32,
    }
    let mut rng = Rng::new(seed);
    let mut w = PcapWriter::create(path)?;
    let v4 = |base: [u8; 4], n: u64| {
        IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::from(base)) + (n % (1 << 22)) as u32,
        ))
    };
    let mut conns_made = 0u64;
    let mut new_conn = |rng: &mut Rng| {
        conns_made += 1;
        Conn {
            client: v4([10, 64, 0, 0], conns_made),
            server: v4([172, 20, 0, 0], rng.range(0, 2048)),
            sport: 1024 + (conns_made % 60_000) as u16,
            sent: 0,
            // 14..=30 packets: a mean of 22, as web requests.
            len: rng.range(14, 31) as u32,
        }
    };
    let mut conns: Vec<Conn> = (0..4096).map(|_| new_conn(&mut rng)).collect();
    let mut rtp_seq = vec![0u16; 400];
    let mut udp_seen = vec![false; 1000];
    let payload = vec![0x61u8; 1500];
    let (mut flows, mut bytes, mut singles) = (0u64, 0u64, 0u64);
    for i in 0..packets {
        let t = T0_US + i as i64 * 5;
        let class = rng.range(0, 100);
        let f = match class {
            0..=69 => {
                let slot = rng.range(0, conns.len() as u64) as usize;
                let c = &mut conns[slot];
                let k = c.sent;
                c.sent += 1;
                // SYN, SYN-ACK, ACK, data both ways, FIN-ACK both ways.
                let (fwd, flags, len) = match k {
                    0 => (true, 0x02, 0),
                    1 => (false, 0x12, 0),
                    2 => (true, 0x10, 0),
                    _ if k + 2 == c.len => (true, 0x11, 0),
                    _ if k + 1 == c.len => (false, 0x11, 0),
                    _ if k % 2 == 1 => (false, 0x18, rng.range(60, 825) as usize),
                    _ => (true, 0x10, 0),
                };
                let (s, d, sp, dp) = if fwd {
                    (c.client, c.server, c.sport, 443)
                } else {
                    (c.server, c.client, 443, c.sport)
                };
                if k == 0 {
                    flows += 1;
                }
                if c.sent >= c.len {
                    *c = new_conn(&mut rng);
                }
                let l4 = L4::Tcp {
                    sport: sp,
                    dport: dp,
                    flags,
                    payload: &payload[..len],
                };
                frame::packet(&[], s, d, i as u16, &l4)
            }
            70..=89 => {
                let s = rng.range(0, 400) as usize;
                let seq = rtp_seq[s];
                rtp_seq[s] = seq.wrapping_add(1);
                let mut rtp = vec![0x80, 0];
                rtp.extend_from_slice(&seq.to_be_bytes());
                rtp.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                rtp.extend_from_slice(&(s as u32 + 1).to_be_bytes());
                rtp.extend_from_slice(&payload[..160]);
                let l4 = L4::Udp {
                    sport: 40_000 + 2 * s as u16,
                    dport: 50_000,
                    payload: &rtp,
                };
                frame::packet(
                    &[],
                    v4([10, 50, 0, 0], s as u64),
                    v4([10, 51, 0, 0], s as u64),
                    1,
                    &l4,
                )
            }
            90..=94 => {
                singles += 1;
                let mut q = vec![0u8; 12];
                q[0..2].copy_from_slice(&(singles as u16).to_be_bytes());
                q[2] = 0x01;
                q[5] = 1;
                q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
                let l4 = L4::Udp {
                    sport: 1024 + (singles % 60_000) as u16,
                    dport: 53,
                    payload: &q,
                };
                frame::packet(
                    &[],
                    v4([10, 128, 0, 0], singles),
                    v4([192, 0, 2, 53], 0),
                    1,
                    &l4,
                )
            }
            95..=97 => {
                singles += 1;
                let l4 = L4::Echo {
                    request: true,
                    id: singles as u16,
                    seq: 1,
                    payload: &payload[..32],
                };
                frame::packet(
                    &[],
                    v4([10, 192, 0, 0], singles),
                    v4([198, 51, 100, 1], 0),
                    1,
                    &l4,
                )
            }
            _ => {
                let n = rng.range(0, 1000);
                if !std::mem::replace(&mut udp_seen[n as usize], true) {
                    flows += 1;
                }
                let l4 = L4::Udp {
                    sport: 3000 + n as u16,
                    dport: 9000,
                    payload: &payload[..200],
                };
                frame::packet(&[], v4([10, 96, 0, 0], n), v4([172, 30, 0, 1], 0), 1, &l4)
            }
        };
        bytes += f.len() as u64;
        w.write(t, &f, f.len() as u32)?;
    }
    w.finish()?;
    Ok(StreamTruth {
        scenario: "flow-heavy".into(),
        packets,
        bytes,
        // TCP connections begun and UDP flows seen, one-packet DNS and
        // ICMP, RTP streams.
        flows: flows + singles + rtp_seq.iter().filter(|&&s| s > 0).count() as u64,
    })
}

//! Large scenarios written straight to a pcap file, packet by packet.

use std::fs::File;
use std::io::{self, BufWriter};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::Serialize;

use crate::frame::{self, L4};
use crate::pcap::{PcapWriter, LINKTYPE_ETHERNET};
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
    let mut w = PcapWriter::new(
        BufWriter::new(File::create(path)?),
        65_535,
        LINKTYPE_ETHERNET,
    )?;
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
    let mut w = PcapWriter::new(
        BufWriter::new(File::create(path)?),
        65_535,
        LINKTYPE_ETHERNET,
    )?;
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

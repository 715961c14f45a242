//! Deterministic capture generator for moni's samples, tests and benchmarks.
//!
//! Every scenario is built from sessions whose packets are labelled with
//! their flow when they are made, and [`truth::truth`] sums those labels into
//! the ground truth that tests compare moni's Parquet output against.
//! Streaming scenarios ([`stream`]) write millions of packets without
//! holding them in memory, for the SYN-flood and throughput benchmarks.

pub mod frame;
pub mod pcap;
pub mod rng;
pub mod scenario;
pub mod stream;
pub mod truth;
pub mod tunnel;
pub mod voip;

use std::path::Path;

/// Writes a scenario's packets as a classic pcap file.
pub fn write_pcap(s: &scenario::Scenario, path: &Path) -> std::io::Result<()> {
    let mut w = pcap::PcapWriter::create(path)?;
    for p in &s.packets {
        w.write(p.ts_us, &p.frame, p.orig_len)?;
    }
    w.finish()?;
    Ok(())
}

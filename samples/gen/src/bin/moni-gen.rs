//! `moni-gen`: writes moni's sample captures and their ground truth.

use std::fs;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use moni_samples::{scenario, stream, truth, write_pcap};

#[derive(Parser)]
#[command(
    version,
    about = "Deterministic capture generator for moni's samples and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mixed untagged background traffic (about 400 s) with ground truth.
    Background(Out),
    /// The background traffic duplicated into VLAN 100 (A, production) and
    /// VLAN 200 (B, shadow), with ground truth.
    VlanShadow(Out),
    /// SIP calls with G.711 media under every impairment kind, with truth.
    Voip(Out),
    /// The paper's Table 1 in miniature: one call through VNets A and B
    /// (and the receiver's view) over six 10 s phases, with truth.
    Paper(Out),
    /// A SYN flood from distinct spoofed sources.
    SynFlood {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        sources: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// VoIP throughput input: concurrent G.711 calls with SIP/SDP.
    Calls {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2000)]
        calls: u32,
        #[arg(long, default_value_t = 15)]
        secs: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The tunnelled twin of a capture: every frame of IN wrapped in VXLAN
    /// (or another encapsulation) with one id.
    Wrap {
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// vxlan, geneve, gre, erspan or mpls.
        #[arg(long, default_value = "vxlan")]
        encap: String,
        #[arg(long, default_value_t = 5001)]
        id: u32,
        /// Wrap only the first N frames (the committed tunnel samples).
        #[arg(long)]
        frames: Option<u64>,
    },
    /// Throughput input: `imix`, an IMIX size mix over churning flows, or
    /// `flow-heavy`, 400,000+ concurrent flows (70% TCP in short
    /// connections, 20% RTP, 5% one-packet DNS, 3% one-packet ICMP).
    Bench {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "imix", value_parser = ["imix", "flow-heavy"])]
        mix: String,
        #[arg(long, default_value_t = 5_000_000)]
        packets: u64,
        #[arg(long, default_value_t = 20_000)]
        concurrent: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(clap::Args)]
struct Out {
    /// Capture to write.
    #[arg(long)]
    out: PathBuf,
    /// Ground-truth JSON to write.
    #[arg(long)]
    truth: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn write_scenario(s: &scenario::Scenario, out: &Out) -> anyhow::Result<()> {
    write_pcap(s, &out.out).with_context(|| format!("writing {}", out.out.display()))?;
    let t = truth::truth(s);
    fs::write(&out.truth, serde_json::to_string_pretty(&t)? + "\n")
        .with_context(|| format!("writing {}", out.truth.display()))?;
    println!(
        "{}: {} packets, {} flows -> {}",
        t.scenario,
        t.packets,
        t.flows.len(),
        out.out.display()
    );
    Ok(())
}

fn write_voip(
    s: &scenario::Scenario,
    t: &moni_samples::voip::VoipTruth,
    out: &Out,
) -> anyhow::Result<()> {
    write_pcap(s, &out.out).with_context(|| format!("writing {}", out.out.display()))?;
    fs::write(&out.truth, serde_json::to_string_pretty(t)? + "\n")
        .with_context(|| format!("writing {}", out.truth.display()))?;
    println!(
        "{}: {} packets, {} RTP streams -> {}",
        t.scenario,
        s.packets.len(),
        t.streams.len(),
        out.out.display()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Background(o) => write_scenario(&scenario::background(o.seed), &o),
        Cmd::VlanShadow(o) => write_scenario(&scenario::vlan_shadow(o.seed), &o),
        Cmd::Voip(o) => {
            let (s, t) = moni_samples::voip::impaired_calls(o.seed);
            write_voip(&s, &t, &o)
        }
        Cmd::Paper(o) => {
            let (s, t) = moni_samples::voip::paper_miniature(o.seed);
            write_voip(&s, &t, &o)
        }
        Cmd::Wrap {
            input,
            out,
            encap,
            id,
            frames,
        } => {
            use moni_samples::tunnel::Encap;
            let encap = match encap.as_str() {
                "vxlan" => Encap::Vxlan,
                "geneve" => Encap::Geneve,
                "gre" => Encap::Gre,
                "erspan" => Encap::Erspan2,
                "mpls" => Encap::Mpls,
                other => anyhow::bail!("unknown encapsulation {other:?}"),
            };
            // An id the header cannot hold would be cut to its low bits,
            // and the twin would not match the map entry of the id given.
            if id > encap.max_id() {
                anyhow::bail!(
                    "--id {id}: a {} id is at most {}",
                    encap.map_kind(),
                    encap.max_id()
                );
            }
            let n = moni_samples::tunnel::wrap_pcap_file(&input, &out, encap, id, frames)
                .with_context(|| format!("wrapping {} into {}", input.display(), out.display()))?;
            println!("{n} frames -> {}", out.display());
            Ok(())
        }
        Cmd::SynFlood { out, sources, seed } => {
            let t = stream::syn_flood(&out, sources, seed)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", serde_json::to_string(&t)?);
            Ok(())
        }
        Cmd::Calls {
            out,
            calls,
            secs,
            seed,
        } => {
            let t = stream::calls(&out, calls, secs, seed)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", serde_json::to_string(&t)?);
            Ok(())
        }
        Cmd::Bench {
            out,
            mix,
            packets,
            concurrent,
            seed,
        } => {
            let t = if mix == "flow-heavy" {
                stream::flow_heavy(&out, packets, seed)
            } else {
                stream::bench(&out, packets, concurrent, seed)
            }
            .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", serde_json::to_string(&t)?);
            Ok(())
        }
    }
}

//! Ground truth of a scenario, derived from the generator's own labels (which
//! flow each packet belongs to, by construction) and the documented flow
//! rules: a flow without an end decided by the generator ends `idle` if the
//! capture continues for the idle timeout after its last packet, else
//! `end_of_input`. Bins are 1 s, per VNet.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scenario::{Class, Scenario};

pub const IDLE_TIMEOUT_US: i64 = 60_000_000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TruthFlow {
    pub vnet: String,
    pub role: String,
    pub vlan_id: Option<u16>,
    pub src_addr: String,
    pub dst_addr: String,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub start_time_us: i64,
    pub end_time_us: i64,
    pub packets_fwd: u64,
    pub bytes_fwd: u64,
    pub packets_rev: u64,
    pub bytes_rev: u64,
    pub tcp_flags: u8,
    pub fragments: u64,
    pub end_reason: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TruthBin {
    pub vnet: String,
    pub bin_start_us: i64,
    pub packets: u64,
    pub bytes: u64,
    pub tcp_packets: u64,
    pub tcp_bytes: u64,
    pub udp_packets: u64,
    pub udp_bytes: u64,
    pub icmp_packets: u64,
    pub icmp_bytes: u64,
    pub other_packets: u64,
    pub other_bytes: u64,
    pub decode_errors: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Truth {
    pub scenario: String,
    pub packets: u64,
    pub bytes: u64,
    /// `--vnet-map` spec that reproduces the scenario's VNets.
    pub vnet_map: String,
    pub decode_errors: BTreeMap<String, u64>,
    pub flows: Vec<TruthFlow>,
    pub bins: Vec<TruthBin>,
}

pub fn truth(s: &Scenario) -> Truth {
    let last_ts = s.packets.iter().map(|p| p.ts_us).max().unwrap_or(0);
    let mut flows: Vec<Option<TruthFlow>> = vec![None; s.flows.len()];
    let mut bins: BTreeMap<(usize, i64), TruthBin> = BTreeMap::new();
    let mut decode_errors = BTreeMap::new();
    for p in &s.packets {
        let len = u64::from(p.orig_len);
        if let Some(fi) = p.flow {
            let spec = &s.flows[fi];
            let vnet = &s.vnets[spec.vnet];
            let f = flows[fi].get_or_insert_with(|| TruthFlow {
                vnet: vnet.name.clone(),
                role: vnet.role.clone(),
                vlan_id: spec.vlan_id,
                src_addr: spec.src.to_string(),
                dst_addr: spec.dst.to_string(),
                src_port: spec.sport,
                dst_port: spec.dport,
                protocol: spec.protocol,
                start_time_us: p.ts_us,
                end_time_us: p.ts_us,
                packets_fwd: 0,
                bytes_fwd: 0,
                packets_rev: 0,
                bytes_rev: 0,
                tcp_flags: 0,
                fragments: spec.fragments,
                end_reason: String::new(),
            });
            f.start_time_us = f.start_time_us.min(p.ts_us);
            f.end_time_us = f.end_time_us.max(p.ts_us);
            f.tcp_flags |= p.tcp_flags;
            if p.forward {
                f.packets_fwd += 1;
                f.bytes_fwd += len;
            } else {
                f.packets_rev += 1;
                f.bytes_rev += len;
            }
        }
        let b = bins
            .entry((p.vnet, p.ts_us.div_euclid(1_000_000)))
            .or_insert_with(|| TruthBin {
                vnet: s.vnets[p.vnet].name.clone(),
                bin_start_us: p.ts_us.div_euclid(1_000_000) * 1_000_000,
                ..TruthBin::default()
            });
        b.packets += 1;
        b.bytes += len;
        let (cp, cb) = match p.class {
            Class::Tcp => (&mut b.tcp_packets, &mut b.tcp_bytes),
            Class::Udp => (&mut b.udp_packets, &mut b.udp_bytes),
            Class::Icmp => (&mut b.icmp_packets, &mut b.icmp_bytes),
            Class::Other => (&mut b.other_packets, &mut b.other_bytes),
        };
        *cp += 1;
        *cb += len;
        if let Some(e) = p.decode_error {
            b.decode_errors += 1;
            *decode_errors.entry(e.to_string()).or_insert(0) += 1;
        }
    }
    let flows: Vec<TruthFlow> = flows
        .into_iter()
        .zip(&s.flows)
        .filter_map(|(f, spec)| {
            let mut f = f?;
            f.end_reason = match spec.end_reason {
                Some(r) => r.to_string(),
                None if last_ts - f.end_time_us >= IDLE_TIMEOUT_US => "idle".into(),
                None => "end_of_input".into(),
            };
            Some(f)
        })
        .collect();
    let vnet_map = s
        .vnets
        .iter()
        .filter_map(|v| v.vlan.map(|id| format!("{id}={}:{}", v.name, v.role)))
        .collect::<Vec<_>>()
        .join(",");
    Truth {
        scenario: s.name.clone(),
        packets: s.packets.len() as u64,
        bytes: s.packets.iter().map(|p| u64::from(p.orig_len)).sum(),
        vnet_map,
        decode_errors,
        flows,
        bins: bins.into_values().collect(),
    }
}

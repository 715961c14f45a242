//! `[decode]`: how far moni looks into tunnels, validated into
//! [`DecodeConfig`].

use analyzers::decode::DecodeConfig;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// `[decode]`: how far moni looks into tunnels.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeSection {
    /// Tunnel layers decapsulated at most; a packet nested deeper counts
    /// `tunnel_too_deep` and stays at that depth. Default 4, at most 8.
    pub max_tunnel_depth: u8,
    /// UDP destination ports read as VXLAN. Default [4789, 8472].
    pub vxlan_ports: Vec<u16>,
    /// UDP destination port of VXLAN-GPE. Default 4790.
    pub vxlan_gpe_port: u16,
    /// UDP destination port of Geneve. Default 6081.
    pub geneve_port: u16,
    /// UDP destination port of GTP-U (a packet only from it is not
    /// GTP-U: TS 29.281 sends both directions to it). Default 2152.
    pub gtpu_port: u16,
    /// What follows the bottom MPLS label: `auto` (IPv4/IPv6 by the first
    /// nibble, otherwise pseudowire Ethernet), `ethernet` or `ip`.
    pub mpls_payload: analyzers::decode::MplsPayload,
    /// Bytes held at most to reassemble fragmented outer packets of
    /// tunnels (the oldest incomplete datagrams are evicted, counted);
    /// 0 turns reassembly off. Default 16 MiB (at most 1 TiB).
    pub max_reassembly_bytes: u64,
    /// Seconds of packet time a fragmented tunnel packet may take to
    /// complete before its fragments are dropped (counted). Default 30.
    pub reassembly_timeout_secs: u32,
}

impl Default for DecodeSection {
    fn default() -> Self {
        let d = DecodeConfig::DEFAULT;
        DecodeSection {
            max_tunnel_depth: d.max_tunnel_depth,
            vxlan_ports: d.vxlan_ports.to_vec(),
            vxlan_gpe_port: d.vxlan_gpe_port,
            geneve_port: d.geneve_port,
            gtpu_port: d.gtpu_port,
            mpls_payload: d.mpls_payload,
            max_reassembly_bytes: d.max_reassembly_bytes as u64,
            reassembly_timeout_secs: d.reassembly_timeout_secs,
        }
    }
}

impl DecodeSection {
    pub(super) fn resolve(&self) -> Result<DecodeConfig, ConfigError> {
        if usize::from(self.max_tunnel_depth) > analyzers::decode::tunnel::MAX_TUNNEL_LAYERS {
            return Err(invalid("decode.max_tunnel_depth", "must be at most 8"));
        }
        if self.vxlan_ports.len() > 16 {
            return Err(invalid("decode.vxlan_ports", "at most 16 ports"));
        }
        Ok(DecodeConfig {
            max_tunnel_depth: self.max_tunnel_depth,
            vxlan_ports: self.vxlan_ports.clone().into(),
            vxlan_gpe_port: self.vxlan_gpe_port,
            geneve_port: self.geneve_port,
            gtpu_port: self.gtpu_port,
            mpls_payload: self.mpls_payload,
            max_reassembly_bytes: usize::try_from(self.max_reassembly_bytes)
                .ok()
                .filter(|&n| n <= 1 << 40)
                .ok_or_else(|| {
                    invalid(
                        "decode.max_reassembly_bytes",
                        "must be at most 1 TiB (1099511627776)",
                    )
                })?,
            reassembly_timeout_secs: self.reassembly_timeout_secs,
        })
    }
}

//! `[flows]`: flow metering timeouts (seconds of packet time) and caps,
//! validated into [`FlowConfig`].

use analyzers::flow::FlowConfig;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// `[flows]`: flow metering timeouts (seconds of packet time) and caps.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Export a flow after this many seconds without a packet. Default 60.
    pub idle_timeout_secs: u64,
    /// Export a flow older than this at its next packet. Default 300.
    pub active_timeout_secs: u64,
    /// Seconds kept after a TCP close for the last ACK. Default 2.
    pub tcp_end_linger_secs: u64,
    /// Hard cap on live flows; the least recently seen is evicted. Default 1,000,000 (1 to 100,000,000).
    pub max_flows: usize,
    /// Fragmented datagrams whose ports are remembered. Default 65,536 (at most 10,000,000).
    pub max_fragmented_datagrams: usize,
    /// The VLAN stack is part of the flow key (as Suricata's
    /// `vlan.use-for-tracking`). Default true.
    pub vlan_tracking: bool,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        let d = FlowConfig::default();
        FlowsConfig {
            idle_timeout_secs: d.idle_timeout_secs,
            active_timeout_secs: d.active_timeout_secs,
            tcp_end_linger_secs: d.tcp_end_linger_secs,
            max_flows: d.max_flows,
            max_fragmented_datagrams: d.max_fragmented_datagrams,
            vlan_tracking: d.vlan_tracking,
        }
    }
}

impl FlowsConfig {
    /// Validates into the flow table's settings.
    pub(super) fn resolve(&self) -> Result<FlowConfig, ConfigError> {
        let f = self;
        if f.idle_timeout_secs == 0 {
            return Err(invalid("flows.idle_timeout_secs", "must be at least 1"));
        }
        if f.active_timeout_secs < f.idle_timeout_secs {
            return Err(invalid(
                "flows.active_timeout_secs",
                format!(
                    "must be at least flows.idle_timeout_secs ({})",
                    f.idle_timeout_secs
                ),
            ));
        }
        if f.max_flows == 0 || f.max_flows > 100_000_000 {
            return Err(invalid(
                "flows.max_flows",
                "must be between 1 and 100000000",
            ));
        }
        if f.max_fragmented_datagrams == 0 || f.max_fragmented_datagrams > 10_000_000 {
            return Err(invalid(
                "flows.max_fragmented_datagrams",
                "must be between 1 and 10000000",
            ));
        }
        Ok(FlowConfig {
            idle_timeout_secs: f.idle_timeout_secs,
            active_timeout_secs: f.active_timeout_secs,
            tcp_end_linger_secs: f.tcp_end_linger_secs,
            max_flows: f.max_flows,
            max_fragmented_datagrams: f.max_fragmented_datagrams,
            vlan_tracking: f.vlan_tracking,
        })
    }
}

//! `[bins]`: the per-VNet time bins, validated into [`BinConfig`].

use analyzers::bins::BinConfig;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// `[bins]`: time bins.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BinsConfig {
    /// Width of a bin in seconds. Default 1.
    pub bin_secs: u32,
    /// Cap on bins open at once. Default 4096 (at most 10,000,000).
    pub max_open_bins: usize,
}

impl Default for BinsConfig {
    fn default() -> Self {
        let d = BinConfig::default();
        BinsConfig {
            bin_secs: d.bin_secs,
            max_open_bins: d.max_open_bins,
        }
    }
}

impl BinsConfig {
    /// Validates into the bin counter's settings.
    pub(super) fn resolve(&self) -> Result<BinConfig, ConfigError> {
        if self.bin_secs == 0 || self.bin_secs > 86_400 {
            return Err(invalid("bins.bin_secs", "must be between 1 and 86400"));
        }
        // A cap that cannot be reached is no bound on memory.
        if self.max_open_bins == 0 || self.max_open_bins > 10_000_000 {
            return Err(invalid(
                "bins.max_open_bins",
                "must be between 1 and 10000000",
            ));
        }
        Ok(BinConfig {
            bin_secs: self.bin_secs,
            max_open_bins: self.max_open_bins,
        })
    }
}

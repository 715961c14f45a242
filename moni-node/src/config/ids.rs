//! `[ids]`: the behavioural detectors and signatures. The section
//! deserializes straight into [`IdsConfig`] (its keys and defaults are
//! documented there); here it is validated and its rule files read.

use std::path::{Path, PathBuf};

use analyzers::ids::IdsConfig;

use super::{invalid, ConfigError, NodeConfig};

/// Validates `[ids]` (the section deserializes straight into
/// [`IdsConfig`]).
pub(super) fn validate_ids(c: &IdsConfig) -> Result<IdsConfig, ConfigError> {
    for (key, v) in [
        ("ids.scan_window_secs", c.scan_window_secs),
        ("ids.scan_ports", c.scan_ports),
        ("ids.stealth_ports", c.stealth_ports),
        ("ids.sweep_window_secs", c.sweep_window_secs),
        ("ids.sweep_hosts", c.sweep_hosts),
        ("ids.flood_window_secs", c.flood_window_secs),
        ("ids.syn_rate", c.syn_rate),
        ("ids.vnet_syn_rate", c.vnet_syn_rate),
        ("ids.udp_rate", c.udp_rate),
        ("ids.icmp_rate", c.icmp_rate),
        ("ids.dns_window_secs", c.dns_window_secs),
        ("ids.nxdomain_per_client", c.nxdomain_per_client),
        ("ids.flood_slice_ms", c.flood_slice_ms),
        ("ids.syn_ack_rate", c.syn_ack_rate),
        ("ids.amp_rate", c.amp_rate),
        ("ids.dns_unique_subdomains", c.dns_unique_subdomains),
    ] {
        if v == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
    }
    if !(0.0..=1.0).contains(&c.syn_half_open) {
        return Err(invalid("ids.syn_half_open", "must be between 0 and 1"));
    }
    // NaN and infinities fail the range test too.
    if !(0.0..=8.0).contains(&c.dns_entropy) {
        return Err(invalid(
            "ids.dns_entropy",
            format!(
                "{} is not a number of bits per character between 0 and 8",
                c.dns_entropy
            ),
        ));
    }
    for (key, v) in [
        ("ids.max_alerts_per_packet", c.max_alerts_per_packet),
        ("ids.max_alerts_per_second", c.max_alerts_per_second),
    ] {
        if v == 0 || v > 1_000_000 {
            return Err(invalid(key, "must be between 1 and 1000000"));
        }
    }
    if c.reload_timeout_secs == 0 || c.reload_timeout_secs > 3600 {
        return Err(invalid(
            "ids.reload_timeout_secs",
            "must be between 1 and 3600",
        ));
    }
    for d in &c.detectors {
        if !analyzers::ids::DETECTORS.contains(&d.as_str()) {
            return Err(invalid(
                "ids.detectors",
                format!(
                    "no detector is named {d:?} (the detectors: {})",
                    analyzers::ids::DETECTORS.join(", ")
                ),
            ));
        }
    }
    if c.max_tracked == 0 || c.max_tracked > 10_000_000 {
        return Err(invalid("ids.max_tracked", "must be between 1 and 10000000"));
    }
    Ok(c.clone())
}

/// Says on stderr which rule variables the operator set that no rule
/// names and Suricata does not know: a typo there (`home_net` for
/// `HOME_NET`) would leave the rules on the defaults without a word.
pub fn warn_unknown_vars(rules: &analyzers::ids::rules::RuleSet, ids: &IdsConfig) {
    for v in rules.unknown_vars(&ids.vars) {
        eprintln!(
            "warning: rule variable {v} is named by no rule and is not one of Suricata's \
             (names are case-sensitive)"
        );
    }
}

impl NodeConfig {
    /// Reads and parses the signature files of `[ids] rules`.
    pub(super) fn load_rules(
        &self,
        ids: &IdsConfig,
    ) -> Result<analyzers::ids::rules::RuleSet, ConfigError> {
        let vars = analyzers::ids::rules::Vars::with(&ids.vars);
        vars.check().map_err(|e| invalid("ids.vars", e))?;
        let mut set = analyzers::ids::rules::RuleSet::default();
        for file in &ids.rules {
            let path = match &self.base_dir {
                Some(dir) if Path::new(file).is_relative() => dir.join(file),
                _ => PathBuf::from(file),
            };
            let bytes = std::fs::read(&path).map_err(|e| {
                invalid("ids.rules", format!("cannot read {}: {e}", path.display()))
            })?;
            set.add_bytes(&path.display().to_string(), &bytes, &vars);
        }
        // Rules configured of which none loads are a mistake (a file of
        // another engine's rules, a text file), not an IDS without rules.
        if set.rules.is_empty() && !set.skipped.is_empty() {
            return Err(invalid(
                "ids.rules",
                format!(
                    "no rule of {} loaded ({} skipped: `moni-node check-rules` says why)",
                    ids.rules.join(", "),
                    set.skipped.len()
                ),
            ));
        }
        Ok(set)
    }
}

//! `[vnets]`: how packets are tagged with a VNet and role (the VLAN map,
//! replaced by `--vnet-map` on the command line), built into a
//! [`VnetMap`].

use analyzers::vnet::{parse_vnet_map_spec, Role, VlanMapping, VnetMap};
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, NodeConfig};

/// `[vnets]`: how packets are tagged with a VNet and role.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VnetsConfig {
    /// VNet of traffic that no map entry or source matches. Default `default`.
    pub default_vnet: String,
    /// Role of the default VNet. Default `production`.
    pub default_role: Role,
    /// Map entries, each `"[KIND:]ID=NAME:ROLE"` (several in one string
    /// separated by commas): KIND `vlan` (the default), `vxlan`, `geneve`,
    /// `nvgre`, `gre`, `erspan`, `mpls`, `gtpu` or `iface`
    /// (docs/vnets.md). Default none.
    pub map: Vec<String>,
}

impl Default for VnetsConfig {
    fn default() -> Self {
        VnetsConfig {
            default_vnet: "default".into(),
            default_role: Role::Production,
            map: Vec::new(),
        }
    }
}

impl NodeConfig {
    /// The VNet map of `vnets` (its `map` replaced by `vnet_map_override`,
    /// the command line's `--vnet-map`, when given).
    pub(super) fn vnet_map(&self, vnet_map_override: Option<&str>) -> Result<VnetMap, ConfigError> {
        let mut mappings: Vec<VlanMapping> = Vec::new();
        match vnet_map_override {
            Some(spec) => {
                mappings =
                    parse_vnet_map_spec(spec).map_err(|e| invalid("--vnet-map", e.to_string()))?;
            }
            None => {
                for entry in &self.vnets.map {
                    mappings.extend(
                        parse_vnet_map_spec(entry)
                            .map_err(|e| invalid("vnets.map", e.to_string()))?,
                    );
                }
            }
        }
        // Named by where the entries came from (a VLAN mapped twice on the
        // command line is the command line's fault).
        let key = if vnet_map_override.is_some() {
            "--vnet-map"
        } else {
            "vnets.map"
        };
        VnetMap::new(&mappings, &self.vnets.default_vnet, self.vnets.default_role)
            .map_err(|e| invalid(key, e.to_string()))
    }

    /// The VLAN map alone, rebuilt on top of `current` so that every VNet
    /// keeps its id (SIGHUP reload).
    pub fn remap_vnets(&self, current: &VnetMap) -> Result<VnetMap, ConfigError> {
        let mut mappings: Vec<VlanMapping> = Vec::new();
        for entry in &self.vnets.map {
            mappings.extend(
                parse_vnet_map_spec(entry).map_err(|e| invalid("vnets.map", e.to_string()))?,
            );
        }
        let mut map = current
            .remap(&mappings, &self.vnets.default_vnet, self.vnets.default_role)
            .map_err(|e| invalid("vnets.map", e.to_string()))?;
        self.source_settings(&mut map)?;
        Ok(map)
    }
}

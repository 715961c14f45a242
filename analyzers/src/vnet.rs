//! VNet tagging: which virtual network (and which role in the paper's
//! Shadow-VNet setup) a packet belongs to.
//!
//! A packet is mapped by its VLAN ids (outermost tag first, the first mapped
//! tag wins) or, when none is mapped, by the capture source's VNet (a live
//! interface mirrored from one VNet). Everything else lands in the default
//! VNet (`default` unless configured). VNets are interned: packets carry a
//! small [`VnetId`] and the names live once in the [`VnetMap`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The role a VNet plays (paper section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Carries the live service (VNet A in the paper).
    Production,
    /// The cloned VNet under evaluation, fed duplicated input (VNet B).
    Shadow,
    /// The monitoring VNet itself.
    Monitor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Production => "production",
            Role::Shadow => "shadow",
            Role::Monitor => "monitor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = VnetMapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "production" => Ok(Role::Production),
            "shadow" => Ok(Role::Shadow),
            "monitor" => Ok(Role::Monitor),
            other => Err(VnetMapError::UnknownRole(other.to_string())),
        }
    }
}

/// Errors in a VNet map specification.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VnetMapError {
    #[error("unknown role {0:?} (expected production, shadow or monitor)")]
    UnknownRole(String),
    #[error("bad VNet map entry {0:?} (expected VLAN=NAME:ROLE, e.g. 100=A:production)")]
    BadEntry(String),
    #[error("VLAN id {0} is out of range (0-4095)")]
    VlanOutOfRange(u32),
    #[error("VLAN id {0} is mapped twice")]
    DuplicateVlan(u16),
    #[error("VNet {name:?} is given two roles ({first} and {second})")]
    ConflictingRole {
        name: String,
        first: Role,
        second: Role,
    },
    #[error("bad VNet name {0:?} (use letters, digits, '-', '_' or '.', at most 64)")]
    BadName(String),
}

/// Index of a VNet in its [`VnetMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct VnetId(pub u16);

/// A VNet: name and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vnet {
    pub name: String,
    pub role: Role,
}

/// One `VLAN=NAME:ROLE` mapping, as written in config and on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanMapping {
    pub vlan: u16,
    pub vnet: String,
    pub role: Role,
}

impl FromStr for VlanMapping {
    type Err = VnetMapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VnetMapError::BadEntry(s.to_string());
        let (vlan, rest) = s.split_once('=').ok_or_else(bad)?;
        let (name, role) = rest.split_once(':').ok_or_else(bad)?;
        let vlan: u32 = vlan.trim().parse().map_err(|_| bad())?;
        if vlan > 4095 {
            return Err(VnetMapError::VlanOutOfRange(vlan));
        }
        Ok(VlanMapping {
            vlan: vlan as u16,
            vnet: name.trim().to_string(),
            role: role.parse()?,
        })
    }
}

/// Parses `100=A:production,200=B:shadow` (empty entries are ignored).
pub fn parse_vnet_map_spec(spec: &str) -> Result<Vec<VlanMapping>, VnetMapError> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The resolved mapping from VLAN ids to VNets.
#[derive(Clone, Debug)]
pub struct VnetMap {
    vnets: Vec<Vnet>,
    by_vlan: HashMap<u16, VnetId>,
    default: VnetId,
}

impl Default for VnetMap {
    fn default() -> Self {
        VnetMap {
            vnets: vec![Vnet {
                name: "default".into(),
                role: Role::Production,
            }],
            by_vlan: HashMap::new(),
            default: VnetId(0),
        }
    }
}

impl VnetMap {
    /// Builds a map from VLAN mappings and the default VNet for traffic no
    /// mapping matches.
    pub fn new(
        mappings: &[VlanMapping],
        default_name: &str,
        default_role: Role,
    ) -> Result<Self, VnetMapError> {
        let mut map = VnetMap {
            vnets: Vec::new(),
            by_vlan: HashMap::new(),
            default: VnetId(0),
        };
        map.default = map.intern(default_name, default_role)?;
        for m in mappings {
            let id = map.intern(&m.vnet, m.role)?;
            if map.by_vlan.insert(m.vlan, id).is_some() {
                return Err(VnetMapError::DuplicateVlan(m.vlan));
            }
        }
        Ok(map)
    }

    /// A new map with other VLAN mappings that keeps every VNet of this one
    /// at its id (a reload must not renumber the VNets that live state and
    /// records refer to). A VNet cannot change its role.
    pub fn remap(
        &self,
        mappings: &[VlanMapping],
        default_name: &str,
        default_role: Role,
    ) -> Result<Self, VnetMapError> {
        let mut map = VnetMap {
            vnets: self.vnets.clone(),
            by_vlan: HashMap::new(),
            default: self.default,
        };
        map.default = map.intern(default_name, default_role)?;
        for m in mappings {
            let id = map.intern(&m.vnet, m.role)?;
            if map.by_vlan.insert(m.vlan, id).is_some() {
                return Err(VnetMapError::DuplicateVlan(m.vlan));
            }
        }
        Ok(map)
    }

    /// Returns the id of VNet `name`, adding it if new. A VNet has one role.
    pub fn intern(&mut self, name: &str, role: Role) -> Result<VnetId, VnetMapError> {
        if !valid_name(name) {
            return Err(VnetMapError::BadName(name.to_string()));
        }
        if let Some(i) = self.vnets.iter().position(|v| v.name == name) {
            let first = self.vnets[i].role;
            if first != role {
                return Err(VnetMapError::ConflictingRole {
                    name: name.to_string(),
                    first,
                    second: role,
                });
            }
            return Ok(VnetId(i as u16));
        }
        if self.vnets.len() >= usize::from(u16::MAX) {
            return Err(VnetMapError::BadName(name.to_string()));
        }
        self.vnets.push(Vnet {
            name: name.to_string(),
            role,
        });
        Ok(VnetId((self.vnets.len() - 1) as u16))
    }

    /// The VNet for a packet with these VLAN ids (outermost first), captured
    /// on a source mapped to `source_vnet` if any.
    #[inline]
    pub fn resolve(&self, vlans: &[u16], source_vnet: Option<VnetId>) -> VnetId {
        if !self.by_vlan.is_empty() {
            for v in vlans {
                if let Some(id) = self.by_vlan.get(v) {
                    return *id;
                }
            }
        }
        source_vnet.unwrap_or(self.default)
    }

    pub fn get(&self, id: VnetId) -> &Vnet {
        self.vnets
            .get(usize::from(id.0))
            .unwrap_or(&self.vnets[usize::from(self.default.0)])
    }

    pub fn default_vnet(&self) -> VnetId {
        self.default
    }

    /// All VNets with their ids, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (VnetId, &Vnet)> {
        self.vnets
            .iter()
            .enumerate()
            .map(|(i, v)| (VnetId(i as u16), v))
    }

    pub fn len(&self) -> usize {
        self.vnets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vnets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cli_spec() {
        let m = parse_vnet_map_spec("100=A:production, 200=B:shadow").expect("spec");
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].vlan, 200);
        assert_eq!(m[1].vnet, "B");
        assert_eq!(m[1].role, Role::Shadow);
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(matches!(
            parse_vnet_map_spec("100=A"),
            Err(VnetMapError::BadEntry(_))
        ));
        assert_eq!(
            parse_vnet_map_spec("5000=A:shadow"),
            Err(VnetMapError::VlanOutOfRange(5000))
        );
        assert!(matches!(
            parse_vnet_map_spec("1=A:boss"),
            Err(VnetMapError::UnknownRole(_))
        ));
        let dup = parse_vnet_map_spec("1=A:shadow,1=B:shadow").expect("parses");
        assert_eq!(
            VnetMap::new(&dup, "default", Role::Production).err(),
            Some(VnetMapError::DuplicateVlan(1))
        );
        let conflict = parse_vnet_map_spec("1=A:shadow,2=A:production").expect("parses");
        assert!(matches!(
            VnetMap::new(&conflict, "default", Role::Production),
            Err(VnetMapError::ConflictingRole { .. })
        ));
    }

    #[test]
    fn resolves_outer_tag_first_then_source_then_default() {
        let m = parse_vnet_map_spec("100=A:production,200=B:shadow").expect("spec");
        let mut map = VnetMap::new(&m, "default", Role::Production).expect("map");
        let a = map.resolve(&[100], None);
        assert_eq!(map.get(a).name, "A");
        assert_eq!(map.get(map.resolve(&[200, 100], None)).role, Role::Shadow);
        assert_eq!(map.get(map.resolve(&[7, 200], None)).name, "B");
        assert_eq!(map.get(map.resolve(&[7], None)).name, "default");
        let c = map.intern("C", Role::Monitor).expect("intern");
        assert_eq!(map.resolve(&[], Some(c)), c);
        assert_eq!(map.resolve(&[100], Some(c)), a);
    }
}

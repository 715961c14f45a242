//! VNet tagging: which virtual network (and which role in the paper's
//! Shadow-VNet setup) a packet belongs to.
//!
//! A map entry is `KIND:ID=NAME:ROLE`, KIND one of `vlan` (the default
//! when omitted, so `100=A:production` is a VLAN), `vxlan` (VXLAN or
//! VXLAN-GPE VNI), `geneve` (VNI), `nvgre` (VSID), `gre` (key), `erspan`
//! (session id), `mpls` (any label of the stack), `gtpu` (TEID) or `iface`
//! (a live source's name, or a pcapng interface by name or as `#N`).
//!
//! Precedence, for a packet several entries match: the innermost mapped
//! tunnel id wins over outer ones (a mirror session's VNI does not hide
//! the tenant VNI inside it); then the VLAN tags, outermost first; then the
//! capture source's VNet (`iface`, or a source's own `vnet`); then the
//! default VNet (`default` unless configured). VNets are interned: packets
//! carry a small [`VnetId`] and the names live once in the [`VnetMap`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::decode::{Decoded, TunnelKind, Tunnels};

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
    #[error("bad VNet map entry {0:?} (expected [KIND:]ID=NAME:ROLE, e.g. 100=A:production or vxlan:5001=A:production; KIND one of vlan, vxlan, geneve, nvgre, gre, erspan, mpls, gtpu, iface)")]
    BadEntry(String),
    #[error("{kind} id {id} is out of range (at most {max})")]
    IdOutOfRange {
        kind: &'static str,
        id: u64,
        max: u32,
    },
    #[error("{0} is mapped twice")]
    DuplicateKey(String),
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
    #[error("bad VNet name {0:?} (use letters, digits, '-', '_' or '.', at most 64; not NULL or __HIVE_DEFAULT_PARTITION__, which readers of the store read as NULL)")]
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

/// The layer a map entry matches: a tunnel kind, the VNet map's name for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelMapKind {
    /// VXLAN or VXLAN-GPE VNI (24 bits).
    Vxlan,
    /// Geneve VNI (24 bits).
    Geneve,
    /// NVGRE virtual subnet id (24 bits): a keyed GRE layer carrying Ethernet.
    Nvgre,
    /// GRE key (32 bits).
    Gre,
    /// ERSPAN session id (10 bits), type II or III.
    Erspan,
    /// Any MPLS label of the stack (20 bits).
    Mpls,
    /// GTP-U TEID (32 bits).
    Gtpu,
}

impl TunnelMapKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelMapKind::Vxlan => "vxlan",
            TunnelMapKind::Geneve => "geneve",
            TunnelMapKind::Nvgre => "nvgre",
            TunnelMapKind::Gre => "gre",
            TunnelMapKind::Erspan => "erspan",
            TunnelMapKind::Mpls => "mpls",
            TunnelMapKind::Gtpu => "gtpu",
        }
    }

    fn max_id(self) -> u32 {
        match self {
            TunnelMapKind::Vxlan | TunnelMapKind::Geneve | TunnelMapKind::Nvgre => 0x00ff_ffff,
            TunnelMapKind::Erspan => 0x3ff,
            TunnelMapKind::Mpls => 0x000f_ffff,
            TunnelMapKind::Gre | TunnelMapKind::Gtpu => u32::MAX,
        }
    }
}

/// What a map entry matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapKey {
    /// An 802.1Q/802.1ad VLAN id.
    Vlan(u16),
    /// A tunnel layer's id.
    Tunnel(TunnelMapKind, u32),
    /// A live capture source (interface) by name.
    Iface(String),
}

impl fmt::Display for MapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapKey::Vlan(v) => write!(f, "VLAN id {v}"),
            MapKey::Tunnel(k, id) => write!(f, "{}:{id}", k.as_str()),
            MapKey::Iface(name) => write!(f, "iface:{name}"),
        }
    }
}

/// One `[KIND:]ID=NAME:ROLE` mapping, as written in config and on the
/// command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanMapping {
    pub key: MapKey,
    pub vnet: String,
    pub role: Role,
}

impl FromStr for VlanMapping {
    type Err = VnetMapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VnetMapError::BadEntry(s.to_string());
        let (key, rest) = s.split_once('=').ok_or_else(bad)?;
        let (name, role) = rest.split_once(':').ok_or_else(bad)?;
        let (kind, id) = match key.split_once(':') {
            Some((kind, id)) => (kind.trim(), id.trim()),
            None => ("vlan", key.trim()),
        };
        let number = || -> Result<u64, VnetMapError> { id.parse().map_err(|_| bad()) };
        let tunnel = |k: TunnelMapKind| -> Result<MapKey, VnetMapError> {
            let n = number()?;
            if n > u64::from(k.max_id()) {
                return Err(VnetMapError::IdOutOfRange {
                    kind: k.as_str(),
                    id: n,
                    max: k.max_id(),
                });
            }
            Ok(MapKey::Tunnel(k, n as u32))
        };
        let key = match kind {
            "vlan" => {
                let n = number()?;
                if n > 4095 {
                    return Err(VnetMapError::VlanOutOfRange(
                        u32::try_from(n).unwrap_or(u32::MAX),
                    ));
                }
                MapKey::Vlan(n as u16)
            }
            "vxlan" => tunnel(TunnelMapKind::Vxlan)?,
            "geneve" => tunnel(TunnelMapKind::Geneve)?,
            "nvgre" => tunnel(TunnelMapKind::Nvgre)?,
            "gre" => tunnel(TunnelMapKind::Gre)?,
            "erspan" => tunnel(TunnelMapKind::Erspan)?,
            "mpls" => tunnel(TunnelMapKind::Mpls)?,
            "gtpu" => tunnel(TunnelMapKind::Gtpu)?,
            // A name, or `#N` for a pcapng interface's index.
            "iface"
                if !id.is_empty()
                    && id
                        .strip_prefix('#')
                        .is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
            {
                MapKey::Iface(id.to_string())
            }
            _ => return Err(bad()),
        };
        Ok(VlanMapping {
            key,
            vnet: name.trim().to_string(),
            role: role.parse()?,
        })
    }
}

/// Parses `100=A:production,vxlan:5002=B:shadow` (empty entries are
/// ignored).
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
        && !reads_as_null(name)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether readers of a Hive-partitioned store (DuckDB, Spark, pyarrow)
/// read this partition value (`vnet=NAME`, `node=NAME`) as NULL rather
/// than as the name: `NULL` and Hive's `__HIVE_DEFAULT_PARTITION__`, in
/// any case. Such names are refused for VNets and nodes.
pub fn reads_as_null(name: &str) -> bool {
    name.eq_ignore_ascii_case("null") || name.eq_ignore_ascii_case("__HIVE_DEFAULT_PARTITION__")
}

/// The resolved mapping from VLAN ids to VNets.
#[derive(Clone, Debug)]
pub struct VnetMap {
    vnets: Vec<Vnet>,
    by_vlan: HashMap<u16, VnetId>,
    by_tunnel: HashMap<(TunnelMapKind, u32), VnetId>,
    by_iface: HashMap<String, VnetId>,
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
            by_tunnel: HashMap::new(),
            by_iface: HashMap::new(),
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
            by_tunnel: HashMap::new(),
            by_iface: HashMap::new(),
            default: VnetId(0),
        };
        map.default = map.intern(default_name, default_role)?;
        for m in mappings {
            map.add(m)?;
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
            by_tunnel: HashMap::new(),
            by_iface: HashMap::new(),
            default: self.default,
        };
        map.default = map.intern(default_name, default_role)?;
        for m in mappings {
            map.add(m)?;
        }
        Ok(map)
    }

    fn add(&mut self, m: &VlanMapping) -> Result<(), VnetMapError> {
        let id = self.intern(&m.vnet, m.role)?;
        let dup = match &m.key {
            MapKey::Vlan(v) => {
                return match self.by_vlan.insert(*v, id) {
                    Some(_) => Err(VnetMapError::DuplicateVlan(*v)),
                    None => Ok(()),
                }
            }
            MapKey::Tunnel(k, n) => self.by_tunnel.insert((*k, *n), id).is_some(),
            MapKey::Iface(name) => self.by_iface.insert(name.clone(), id).is_some(),
        };
        if dup {
            return Err(VnetMapError::DuplicateKey(m.key.to_string()));
        }
        Ok(())
    }

    /// The VNet an `iface:NAME` entry maps a live source to, if any.
    pub fn iface(&self, name: &str) -> Option<VnetId> {
        self.by_iface.get(name).copied()
    }

    /// The VNet of a decoded packet captured on a source mapped to
    /// `source_vnet` if any, by the precedence rule of the module doc.
    #[inline]
    pub fn resolve_packet(&self, d: &Decoded<'_>, source_vnet: Option<VnetId>) -> VnetId {
        if !self.by_tunnel.is_empty() && !d.tunnels.is_empty() {
            if let Some(id) = self.resolve_tunnels(&d.tunnels) {
                return id;
            }
        }
        self.resolve(d.vlans(), source_vnet)
    }

    /// The innermost tunnel layer a tunnel entry maps.
    fn resolve_tunnels(&self, t: &Tunnels) -> Option<VnetId> {
        let get = |k: TunnelMapKind, id: u32| self.by_tunnel.get(&(k, id)).copied();
        for (index, layer) in t.layers().iter().enumerate().rev() {
            let Some(id) = layer.id else { continue };
            let found = match layer.kind {
                TunnelKind::Vxlan => get(TunnelMapKind::Vxlan, id),
                TunnelKind::Geneve => get(TunnelMapKind::Geneve, id),
                TunnelKind::Gre => layer
                    .nvgre_vsid()
                    .and_then(|vsid| get(TunnelMapKind::Nvgre, vsid))
                    .or_else(|| get(TunnelMapKind::Gre, id)),
                TunnelKind::Erspan2 | TunnelKind::Erspan3 => get(TunnelMapKind::Erspan, id),
                TunnelKind::Gtpu => get(TunnelMapKind::Gtpu, id),
                // Any label of this stack, innermost first (an outer
                // stack's labels are matched at its own layer, after the
                // layers inside it).
                TunnelKind::Mpls => t
                    .mpls_labels_of(index)
                    .rev()
                    .find_map(|l| get(TunnelMapKind::Mpls, l))
                    .or_else(|| get(TunnelMapKind::Mpls, id)),
                TunnelKind::Ipip => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
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
        assert_eq!(m[1].key, MapKey::Vlan(200));
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
        // Names a Hive-partitioned store's readers would read as NULL.
        for name in ["NULL", "null", "__HIVE_DEFAULT_PARTITION__"] {
            let m = parse_vnet_map_spec(&format!("1={name}:shadow")).expect("parses");
            assert!(
                matches!(
                    VnetMap::new(&m, "default", Role::Production),
                    Err(VnetMapError::BadName(_))
                ),
                "{name}"
            );
        }
        // A number is a name (read back as text by the documented readers).
        let m = parse_vnet_map_spec("1=0100:shadow").expect("parses");
        assert!(VnetMap::new(&m, "default", Role::Production).is_ok());
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

#[cfg(test)]
mod tunnel_map_tests {
    use super::*;
    use crate::decode::{decode, LinkType};

    /// Ethernet / IPv4 / UDP 4789 / VXLAN `outer_vni` / Ethernet / IPv4 /
    /// UDP 4789 / VXLAN `inner_vni` / Ethernet / IPv4 / UDP 5060.
    fn vxlan_in_vxlan(outer_vni: u32, inner_vni: u32) -> Vec<u8> {
        fn wrap(vni: u32, inner: &[u8]) -> Vec<u8> {
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&[0x08, 0x00]);
            let total = u16::try_from(20 + 8 + 8 + inner.len()).unwrap_or(0);
            f.extend_from_slice(&[
                0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ]);
            f[16..18].copy_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0xc0, 0x00, 0x12, 0xb5, 0, 0, 0, 0]);
            f.extend_from_slice(&[0x08, 0, 0, 0]);
            f.extend_from_slice(&(vni << 8).to_be_bytes());
            f.extend_from_slice(inner);
            f
        }
        let mut sip = vec![0u8; 12];
        sip.extend_from_slice(&[0x08, 0x00]);
        sip.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 192, 168, 0, 1, 192, 168, 0, 2,
        ]);
        sip.extend_from_slice(&[0x13, 0xc4, 0x13, 0xc4, 0, 8, 0, 0]);
        wrap(outer_vni, &wrap(inner_vni, &sip))
    }

    #[test]
    fn parses_every_kind_and_checks_ranges() {
        let m = parse_vnet_map_spec(
            "100=A:production,vlan:101=A:production,vxlan:5001=A:production,geneve:4242=B:shadow,\
             nvgre:7=B:shadow,gre:4294967295=B:shadow,erspan:1023=C:monitor,mpls:16106=A:production,\
             gtpu:1=A:production,iface:eth1=B:shadow",
        )
        .expect("spec");
        assert_eq!(m[0].key, MapKey::Vlan(100));
        assert_eq!(m[2].key, MapKey::Tunnel(TunnelMapKind::Vxlan, 5001));
        assert_eq!(m[9].key, MapKey::Iface("eth1".into()));
        assert!(matches!(
            parse_vnet_map_spec("vxlan:16777216=A:production"),
            Err(VnetMapError::IdOutOfRange { .. })
        ));
        assert!(matches!(
            parse_vnet_map_spec("erspan:1024=A:production"),
            Err(VnetMapError::IdOutOfRange { .. })
        ));
        assert!(matches!(
            parse_vnet_map_spec("ospf:1=A:production"),
            Err(VnetMapError::BadEntry(_))
        ));
        // A pcapng interface by index is `#` and digits.
        let m = parse_vnet_map_spec("iface:#0=A:production,iface:#12=B:shadow").expect("spec");
        assert_eq!(m[1].key, MapKey::Iface("#12".into()));
        for bad in [
            "iface:#x=A:production",
            "iface:#=A:production",
            "iface:#1a=A:production",
        ] {
            assert!(
                matches!(parse_vnet_map_spec(bad), Err(VnetMapError::BadEntry(_))),
                "{bad}"
            );
        }
        let dup = parse_vnet_map_spec("vxlan:1=A:shadow,vxlan:1=B:shadow").expect("parses");
        assert!(matches!(
            VnetMap::new(&dup, "default", Role::Production),
            Err(VnetMapError::DuplicateKey(_))
        ));
    }

    proptest::proptest! {
        /// Any map text parses or is refused with a reason, never a panic.
        #[test]
        fn any_spec_never_panics(spec in "[a-z#:=,0-9A-Z_.-]{0,40}") {
            if let Ok(m) = parse_vnet_map_spec(&spec) {
                let _ = VnetMap::new(&m, "default", Role::Production);
            }
        }
    }

    #[test]
    fn the_innermost_mapped_id_wins() {
        let m =
            parse_vnet_map_spec("vxlan:100=Mirror:monitor,vxlan:5001=A:production").expect("spec");
        let map = VnetMap::new(&m, "default", Role::Production).expect("map");
        let f = vxlan_in_vxlan(100, 5001);
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(d.tunnels.type_name().as_deref(), Some("vxlan/vxlan"));
        assert_eq!(map.get(map.resolve_packet(&d, None)).name, "A");
        // Only the mirror session is mapped: it names the VNet.
        let f = vxlan_in_vxlan(100, 6000);
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(map.get(map.resolve_packet(&d, None)).name, "Mirror");
        // Neither: the source's VNet, then the default.
        let f = vxlan_in_vxlan(7, 8);
        let d = decode(LinkType::Ethernet, &f);
        assert_eq!(map.get(map.resolve_packet(&d, None)).name, "default");
        let mut map = map;
        let s = map.intern("S", Role::Shadow).expect("intern");
        assert_eq!(map.resolve_packet(&d, Some(s)), s);
    }
}

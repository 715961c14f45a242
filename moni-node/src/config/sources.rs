//! `[[sources]]`: the capture sources (interfaces or capture files),
//! validated into [`SourceSettings`] with their VNets interned.

use std::path::PathBuf;

use analyzers::vnet::{Role, VnetMap};
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, NodeConfig};

/// Timestamp precision asked of libpcap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Micro,
    Nano,
}

/// `[[sources]]`: one capture source.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSection {
    /// The `source` label. Default: the interface or the file's name.
    pub name: Option<String>,
    /// Live capture (libpcap) of this interface, or `file`: a capture file
    /// replayed at its recorded pace; exactly one of the two.
    pub interface: Option<String>,
    pub file: Option<PathBuf>,
    /// VNet of this source's traffic (a VLAN or tunnel map entry wins) and its role
    /// (default `production`). Default: the VLAN map, or an `iface:NAME`
    /// map entry.
    pub vnet: Option<String>,
    pub role: Option<Role>,
    /// Put the interface in promiscuous mode. Default true.
    pub promiscuous: bool,
    /// Bytes captured per packet (64-262144), cut by the kernel before
    /// the copy into the capture ring. Default: the interface's MTU plus
    /// 22 (an Ethernet header and two VLAN tags), as Suricata sizes its
    /// packets: no frame on a mirror port is longer. Only offloads on the
    /// capture interface (GRO, or GSO on a veth) make longer ones, up to
    /// 64 KiB, and copying those whole is most of what a probe costs the
    /// host (docs/lab.md); flows count wire lengths, so their bytes stay
    /// right. 262144 where the MTU cannot be read.
    pub snaplen: Option<i32>,
    /// Interfaces on Ethernet: how much of a TCP segment the kernel
    /// copies. `auto` (default): the headers only while no signature
    /// rules are loaded (nothing else in moni reads TCP payload), except
    /// on the SIP ports (`[rtp] sip_ports`); up to the snaplen while rules
    /// are loaded (a reload that loads or drops them changes the cut).
    /// `always`: up to the snaplen. Everything but TCP is always kept up
    /// to the snaplen. The copy runs on the CPU that received the frame,
    /// on a veth mirror production's (docs/lab.md).
    pub tcp_payload: crate::capture::cut::TcpPayload,
    /// Kernel capture buffer, bytes (at least 65536). Default 16 MiB.
    pub buffer_bytes: i32,
    /// BPF filter. Default none.
    pub filter: Option<String>,
    /// Timestamp precision asked of libpcap: `micro` or `nano`.
    pub timestamp_precision: Precision,
    /// Deliver packets at once instead of in kernel blocks. Default false.
    pub immediate: bool,
    /// Files: replay pace (2.0 = twice as fast). Default 1.0.
    pub speed: f64,
}

impl Default for SourceSection {
    fn default() -> Self {
        SourceSection {
            name: None,
            interface: None,
            file: None,
            vnet: None,
            role: None,
            promiscuous: true,
            snaplen: None,
            tcp_payload: crate::capture::cut::TcpPayload::Auto,
            buffer_bytes: 16 * 1024 * 1024,
            filter: None,
            timestamp_precision: Precision::Micro,
            immediate: false,
            speed: 1.0,
        }
    }
}

/// Where a source reads from.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    Interface(String),
    /// A capture file replayed at `speed` times its recorded pace.
    File {
        path: PathBuf,
        speed: f64,
    },
}

/// A validated capture source.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    pub name: String,
    pub kind: SourceKind,
    pub vnet: Option<analyzers::vnet::VnetId>,
    pub promiscuous: bool,
    /// `sources.snaplen`; `None`: from the interface's MTU when it opens.
    pub snaplen: Option<i32>,
    pub tcp_payload: crate::capture::cut::TcpPayload,
    pub buffer_bytes: i32,
    pub filter: Option<String>,
    pub precision: Precision,
    pub immediate: bool,
}

impl NodeConfig {
    pub(super) fn source_settings(
        &self,
        vnets: &mut VnetMap,
    ) -> Result<Vec<SourceSettings>, ConfigError> {
        let mut out: Vec<SourceSettings> = Vec::new();
        for s in &self.sources {
            let kind = match (&s.interface, &s.file) {
                (Some(i), None) if !i.is_empty() => SourceKind::Interface(i.clone()),
                (None, Some(f)) => {
                    if !(s.speed > 0.0 && s.speed <= 1_000_000.0) {
                        return Err(invalid(
                            "sources.speed",
                            "must be above 0 and at most 1000000",
                        ));
                    }
                    SourceKind::File {
                        path: f.clone(),
                        speed: s.speed,
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "sources.interface",
                        "give either interface or file, not both",
                    ))
                }
                _ => {
                    return Err(invalid(
                        "sources.interface",
                        "each source needs an interface or a file",
                    ))
                }
            };
            let name = s.name.clone().unwrap_or_else(|| match &kind {
                SourceKind::Interface(i) => i.clone(),
                SourceKind::File { path, .. } => path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into(),
                ),
            });
            if out.iter().any(|o| o.name == name) {
                return Err(invalid(
                    "sources.name",
                    format!("two sources are named {name:?}"),
                ));
            }
            let vnet = match (&s.vnet, s.role) {
                (Some(v), role) => Some(
                    vnets
                        .intern(v, role.unwrap_or(Role::Production))
                        .map_err(|e| invalid("sources.vnet", e.to_string()))?,
                ),
                (None, Some(_)) => {
                    return Err(invalid("sources.role", "a role needs a vnet"));
                }
                // An `iface:NAME` map entry names the source's VNet.
                (None, None) => vnets.iface(&name).or(match &kind {
                    SourceKind::Interface(i) => vnets.iface(i),
                    SourceKind::File { .. } => None,
                }),
            };
            if s.snaplen.is_some_and(|n| !(64..=262_144).contains(&n)) {
                return Err(invalid("sources.snaplen", "must be between 64 and 262144"));
            }
            if s.buffer_bytes < 65_536 {
                return Err(invalid("sources.buffer_bytes", "must be at least 65536"));
            }
            out.push(SourceSettings {
                name,
                kind,
                vnet,
                promiscuous: s.promiscuous,
                snaplen: s.snaplen,
                tcp_payload: s.tcp_payload,
                buffer_bytes: s.buffer_bytes,
                filter: s.filter.clone().filter(|f| !f.trim().is_empty()),
                precision: s.timestamp_precision,
                immediate: s.immediate,
            });
        }
        Ok(out)
    }
}

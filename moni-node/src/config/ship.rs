//! `[ship]`: uploads of completed files to moni-collector, validated
//! into [`ShipSettings`] (token read, TLS files loaded and checked).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, NodeConfig};

/// What the shipper does when the spool is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Delete the oldest spooled files (their bytes are counted).
    #[default]
    DropOldest,
    /// Keep what is spooled; new records are dropped (rows counted).
    StopWriting,
}

/// `[ship]`: uploads to moni-collector.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShipSection {
    /// Collector base URLs (`http://` or `https://`), e.g.
    /// `["http://10.0.0.5:9470"]`; several: fail over in order. Default
    /// none: nothing is shipped.
    pub collectors: Vec<String>,
    /// Bearer token of this node (at least 16 characters), or
    /// `token_file`, a file holding it; one of the two when collectors are
    /// set.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Completed files waiting to ship, at most this many bytes. Default
    /// 1 GiB.
    pub spool_max_bytes: u64,
    /// When the spool is full: `drop_oldest` (spooled files deleted,
    /// counted) or `stop_writing` (new records dropped, counted).
    pub when_full: WhenFull,
    /// Cap of the exponential backoff between attempts, seconds. Default 30.
    pub retry_max_secs: u64,
    /// Keep acknowledged files (moved to `OUT/shipped/`). Default false.
    pub keep_shipped: bool,
    /// At stop, keep shipping this many seconds; the rest ships at the next
    /// start. Default 15.
    pub drain_secs: u64,
    /// `https://`: trust only this CA (PEM). Default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and its key (PEM) for a collector with mutual
    /// TLS; its CN or a DNS SAN must be this node's id there.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Default for ShipSection {
    fn default() -> Self {
        ShipSection {
            collectors: Vec::new(),
            token: None,
            token_file: None,
            spool_max_bytes: 1 << 30,
            when_full: WhenFull::DropOldest,
            retry_max_secs: 30,
            keep_shipped: false,
            drain_secs: 15,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// Validated `[ship]`; `None` in [`super::Resolved`] when no collector is set.
#[derive(Clone, Debug)]
pub struct ShipSettings {
    pub collectors: Vec<String>,
    pub token: String,
    pub spool_max_bytes: u64,
    pub when_full: WhenFull,
    pub retry_max: std::time::Duration,
    pub keep_shipped: bool,
    pub drain: std::time::Duration,
    pub tls: ShipTls,
}

/// TLS of the uploads: the CA to trust (PEM; `None`: the system's roots)
/// and the client certificate + key (PEM, concatenated) for mutual TLS.
#[derive(Clone, Debug, Default)]
pub struct ShipTls {
    pub ca_pem: Option<Vec<u8>>,
    pub identity_pem: Option<Vec<u8>>,
}

impl ShipSection {
    fn tls(&self) -> Result<ShipTls, ConfigError> {
        let read = |key: &'static str, f: &Path| {
            std::fs::read(f).map_err(|e| invalid(key, format!("{}: {e}", f.display())))
        };
        let ca_pem = match self.ca_file.as_deref() {
            None => None,
            Some(f) => {
                let pem = read("ship.ca_file", f)?;
                match reqwest::Certificate::from_pem_bundle(&pem) {
                    Ok(c) if !c.is_empty() => Some(pem),
                    Ok(_) => {
                        return Err(invalid(
                            "ship.ca_file",
                            format!("{}: no PEM certificate", f.display()),
                        ))
                    }
                    Err(e) => return Err(invalid("ship.ca_file", format!("{}: {e}", f.display()))),
                }
            }
        };
        let identity_pem = match (self.cert_file.as_deref(), self.key_file.as_deref()) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                let mut pem = read("ship.cert_file", c)?;
                pem.push(b'\n');
                pem.extend(read("ship.key_file", k)?);
                if let Err(e) = reqwest::Identity::from_pem(&pem) {
                    return Err(invalid(
                        "ship.key_file",
                        format!("{} with {}: {e}", c.display(), k.display()),
                    ));
                }
                Some(pem)
            }
            (Some(_), None) => return Err(invalid("ship.key_file", "needed with ship.cert_file")),
            (None, Some(_)) => return Err(invalid("ship.cert_file", "needed with ship.key_file")),
        };
        Ok(ShipTls {
            ca_pem,
            identity_pem,
        })
    }
}

impl NodeConfig {
    pub(super) fn ship_settings(&self) -> Result<Option<ShipSettings>, ConfigError> {
        let s = &self.ship;
        if s.collectors.is_empty() {
            return Ok(None);
        }
        for c in &s.collectors {
            if !(c.starts_with("http://") || c.starts_with("https://")) || c.len() < 10 {
                return Err(invalid(
                    "ship.collectors",
                    format!("{c:?} is not an http:// or https:// URL"),
                ));
            }
        }
        let token = match (&s.token, &s.token_file) {
            (Some(t), None) => t.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| invalid("ship.token_file", format!("{}: {e}", f.display())))?
                .trim()
                .to_string(),
            _ => {
                return Err(invalid(
                    "ship.token",
                    "give token or token_file (not both) when collectors are set",
                ))
            }
        };
        if token.len() < 16 {
            return Err(invalid("ship.token", "must be at least 16 characters"));
        }
        if s.spool_max_bytes < 1 << 16 {
            return Err(invalid("ship.spool_max_bytes", "must be at least 65536"));
        }
        if s.drain_secs > 3600 {
            return Err(invalid("ship.drain_secs", "must be at most 3600"));
        }
        if s.retry_max_secs == 0 || s.retry_max_secs > 3600 {
            return Err(invalid("ship.retry_max_secs", "must be between 1 and 3600"));
        }
        Ok(Some(ShipSettings {
            collectors: s
                .collectors
                .iter()
                .map(|c| c.trim_end_matches('/').to_string())
                .collect(),
            token,
            spool_max_bytes: s.spool_max_bytes,
            when_full: s.when_full,
            retry_max: std::time::Duration::from_secs(s.retry_max_secs),
            keep_shipped: s.keep_shipped,
            drain: std::time::Duration::from_secs(s.drain_secs),
            tls: s.tls()?,
        }))
    }
}

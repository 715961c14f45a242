//! Collector configuration: TOML into typed structs with defaults, unknown
//! keys rejected, every error naming its key.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:9470"       # ingest, /metrics, /healthz, /v1/compare
//! data_dir = "moni-data"          # the Hive-partitioned dataset
//! max_body_bytes = 268435456      # larger uploads get 413
//! max_rows_per_upload = 16777216  # more rows in one upload: 413
//! max_decoded_bytes = 4294967296  # more decoded (Arrow, in memory) bytes: 413
//! max_partitions_per_upload = 256 # more VNet x hour partitions in one upload: 422
//! max_vnets_per_node = 1024       # more distinct VNet names stored for one node: 422
//!
//! [storage]
//! kind = "local"                  # the dataset under data_dir; or "s3":
//! # bucket = "moni"               # any S3-compatible store (AWS, MinIO, Ceph, ...)
//! # prefix = "moni/"              # key prefix inside the bucket
//! # endpoint = "http://127.0.0.1:9000"   # omit for AWS
//! # region = "us-east-1"
//! # allow_http = false
//! # access_key_id / secret_access_key: or AWS_* environment variables
//!
//! [[nodes]]                       # one per node allowed to upload
//! id = "node-1"                   # becomes node=<id> in the layout
//! token = "a long random secret"  # or token_file = "/etc/moni/node-1.token"
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::store::Limits;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    pub server: ServerSection,
    pub storage: StorageSection,
    pub nodes: Vec<NodeEntry>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub kind: String,
    pub bucket: Option<String>,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub allow_http: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            kind: "local".into(),
            bucket: None,
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// Validated `[storage]`.
#[derive(Clone, Debug)]
pub enum StorageSettings {
    Local,
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: String,
        allow_http: bool,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: String,
    pub data_dir: PathBuf,
    pub max_body_bytes: u64,
    pub max_rows_per_upload: u64,
    pub max_decoded_bytes: u64,
    pub max_partitions_per_upload: usize,
    pub max_vnets_per_node: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        let limits = Limits::default();
        ServerSection {
            listen: "127.0.0.1:9470".into(),
            data_dir: PathBuf::from("moni-data"),
            max_body_bytes: 256 * 1024 * 1024,
            max_rows_per_upload: limits.max_rows,
            max_decoded_bytes: limits.max_decoded_bytes,
            max_partitions_per_upload: limits.max_partitions,
            max_vnets_per_node: 1024,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeEntry {
    pub id: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub max_body_bytes: u64,
    /// Rows, decoded bytes and partitions per upload.
    pub limits: Limits,
    /// Distinct VNet names one node may have in the dataset.
    pub max_vnets_per_node: usize,
    /// Bearer token → node id.
    pub tokens: HashMap<String, String>,
    pub storage: StorageSettings,
}

/// A node id or VNet name safe to use as one path component.
pub fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<CollectorConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e
                .to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^'))
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    pub fn resolve(&self) -> Result<Settings, ConfigError> {
        let listen = self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!("{:?} is not an address:port", self.server.listen),
            )
        })?;
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        for (key, v) in [
            (
                "server.max_rows_per_upload",
                self.server.max_rows_per_upload,
            ),
            ("server.max_decoded_bytes", self.server.max_decoded_bytes),
            (
                "server.max_partitions_per_upload",
                self.server.max_partitions_per_upload as u64,
            ),
            (
                "server.max_vnets_per_node",
                self.server.max_vnets_per_node as u64,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.nodes.is_empty() {
            return Err(invalid("nodes", "at least one [[nodes]] entry is needed"));
        }
        let mut tokens = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        for n in &self.nodes {
            if !safe_component(&n.id) {
                return Err(invalid(
                    "nodes.id",
                    format!("{:?}: 1-64 letters, digits, '-', '_' or '.'", n.id),
                ));
            }
            if !ids.insert(n.id.as_str()) {
                return Err(invalid(
                    "nodes.id",
                    format!("{:?} is given to two [[nodes]] entries", n.id),
                ));
            }
            let token = match (&n.token, &n.token_file) {
                (Some(t), None) => t.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map_err(|e| invalid("nodes.token_file", format!("{}: {e}", f.display())))?
                    .trim()
                    .to_string(),
                _ => {
                    return Err(invalid(
                        "nodes.token",
                        format!("node {}: give token or token_file", n.id),
                    ))
                }
            };
            if token.len() < 16 {
                return Err(invalid(
                    "nodes.token",
                    format!("node {}: at least 16 characters", n.id),
                ));
            }
            if tokens.insert(token, n.id.clone()).is_some() {
                return Err(invalid("nodes.token", "two nodes share a token"));
            }
        }
        let st = &self.storage;
        let storage = match st.kind.as_str() {
            "local" => StorageSettings::Local,
            "s3" => {
                let bucket = st
                    .bucket
                    .clone()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| invalid("storage.bucket", "needed with kind = \"s3\""))?;
                if !st.prefix.is_empty() && !st.prefix.ends_with('/') {
                    return Err(invalid("storage.prefix", "must end with '/'"));
                }
                if st.access_key_id.is_some() != st.secret_access_key.is_some() {
                    return Err(invalid(
                        "storage.access_key_id",
                        "give both access_key_id and secret_access_key, or neither",
                    ));
                }
                StorageSettings::S3 {
                    bucket,
                    prefix: st.prefix.clone(),
                    endpoint: st.endpoint.clone(),
                    region: st.region.clone(),
                    allow_http: st.allow_http,
                    access_key_id: st.access_key_id.clone(),
                    secret_access_key: st.secret_access_key.clone(),
                }
            }
            other => {
                return Err(invalid(
                    "storage.kind",
                    format!("{other:?}: use \"local\" or \"s3\""),
                ))
            }
        };
        Ok(Settings {
            listen,
            data_dir: self.server.data_dir.clone(),
            max_body_bytes: self.server.max_body_bytes,
            limits: Limits {
                max_rows: self.server.max_rows_per_upload,
                max_decoded_bytes: self.server.max_decoded_bytes,
                max_partitions: self.server.max_partitions_per_upload,
            },
            max_vnets_per_node: self.server.max_vnets_per_node,
            tokens,
            storage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Settings, ConfigError> {
        toml::from_str::<CollectorConfig>(text)
            .map_err(|e| ConfigError::Parse {
                path: PathBuf::from("test.toml"),
                message: e.to_string(),
            })?
            .resolve()
    }

    #[test]
    fn two_nodes_sharing_an_id_are_refused_naming_the_key() {
        let e = resolve(
            "[[nodes]]\nid = \"n1\"\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\n\
             [[nodes]]\nid = \"n1\"\ntoken = \"bbbbbbbbbbbbbbbbbbbb\"\n",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert_eq!(
            e,
            "config key nodes.id: \"n1\" is given to two [[nodes]] entries"
        );
    }

    #[test]
    fn upload_limits_have_defaults_and_zero_is_refused() {
        let node = "[[nodes]]\nid = \"n1\"\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\n";
        let s = resolve(node).expect("defaults");
        assert_eq!(s.limits.max_partitions, 256);
        assert_eq!(s.limits.max_rows, 16 * 1024 * 1024);
        assert_eq!(s.max_vnets_per_node, 1024);
        let e = resolve(&format!("[server]\nmax_partitions_per_upload = 0\n{node}"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("server.max_partitions_per_upload"), "{e}");
    }
}

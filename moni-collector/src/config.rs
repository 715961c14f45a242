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
//! header_timeout_secs = 10        # request line + headers must arrive within this (also the
//!                                 # TLS handshake and the idle time between keep-alive requests)
//! body_idle_timeout_secs = 30     # an upload body under 1 KiB this long is cut (408)
//! max_connections = 1024          # connections served at once; lowered to fd limit - 192
//! max_concurrent_uploads = 64     # upload bodies received at once; more get 503 + Retry-After
//!                                 # (bounds .incoming to this many times max_body_bytes)
//! compare_max_concurrent = 2      # /v1/compare queries at once; more get 503 + Retry-After
//! max_compare_rows = 1000000      # RTP windows one /v1/compare may load; more get 413
//!
//! [tls]                           # HTTPS instead of HTTP when cert_file is set
//! # cert_file = "/etc/moni/collector.crt"   # PEM chain, leaf first (reloaded on SIGHUP)
//! # key_file = "/etc/moni/collector.key"    # PEM private key (PKCS#8, PKCS#1 or SEC1)
//! # client_ca_file = "/etc/moni/nodes-ca.crt"  # mutual TLS: uploads need a client
//! #                               # certificate of this CA whose subject CN or a DNS SAN
//! #                               # is the node id its token names (403 otherwise)
//!
//! [[readers]]                     # tokens allowed to read /v1/compare (node tokens may too)
//! # name = "grafana"              # shown in logs
//! # token_file = "/etc/moni/grafana.token"  # or token = "..."; at least 16 characters
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
    pub readers: Vec<ReaderEntry>,
    pub tls: TlsSection,
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
    pub header_timeout_secs: u64,
    pub body_idle_timeout_secs: u64,
    pub max_connections: usize,
    pub max_concurrent_uploads: usize,
    pub compare_max_concurrent: usize,
    pub max_compare_rows: usize,
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
            header_timeout_secs: 10,
            body_idle_timeout_secs: 30,
            max_connections: 1024,
            max_concurrent_uploads: 64,
            compare_max_concurrent: 2,
            max_compare_rows: 1_000_000,
        }
    }
}

/// `[[readers]]`: a token that may read `/v1/compare` (and nothing else).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReaderEntry {
    /// Shown in logs; defaults to `reader-<n>`.
    pub name: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// `[tls]`: HTTPS (rustls) when `cert_file` is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
}

/// Validated `[tls]`: the files are read (and re-read on SIGHUP) by
/// [`crate::tls`].
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// Validated limits of the HTTP layer.
#[derive(Clone, Debug)]
pub struct ServeLimits {
    pub header_timeout: std::time::Duration,
    pub body_idle_timeout: std::time::Duration,
    /// As configured; [`crate::limits`] lowers it below the fd limit.
    pub max_connections: usize,
    /// Upload bodies received at once: a fleet reconnecting after an
    /// outage, each node with a backlog, would otherwise fill the disk
    /// under `.incoming` with up to `max_connections` bodies of
    /// `max_body_bytes` each. The rest are told to come back (503,
    /// `Retry-After`), which the node's shipper honours.
    pub max_concurrent_uploads: usize,
    pub compare_max_concurrent: usize,
    pub max_compare_rows: usize,
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
    pub upload_limits: Limits,
    /// Distinct VNet names one node may have in the dataset.
    pub max_vnets_per_node: usize,
    /// Bearer token → node id.
    pub tokens: HashMap<String, String>,
    /// Bearer token → reader name (`[[readers]]`).
    pub readers: HashMap<String, String>,
    pub storage: StorageSettings,
    pub limits: ServeLimits,
    pub tls: Option<TlsSettings>,
}

/// Reads a token given inline or in a file (trimmed); `key` names the
/// entry in errors.
fn read_token(
    key: &'static str,
    who: &str,
    token: &Option<String>,
    token_file: &Option<PathBuf>,
) -> Result<String, ConfigError> {
    let token = match (token, token_file) {
        (Some(t), None) => t.clone(),
        (None, Some(f)) => {
            warn_if_readable_by_others(f);
            std::fs::read_to_string(f)
                .map_err(|e| invalid(key, format!("{who}: {}: {e}", f.display())))?
                .trim()
                .to_string()
        }
        _ => return Err(invalid(key, format!("{who}: give token or token_file"))),
    };
    if token.len() < 16 {
        return Err(invalid(key, format!("{who}: at least 16 characters")));
    }
    // A header carries no control character (a newline from a token file
    // written twice, a tab) and no byte beyond ASCII as such: a token
    // with one passed the check and could never authenticate.
    if !token.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(invalid(
            key,
            format!("{who}: only printable ASCII (it is sent in a header)"),
        ));
    }
    Ok(token)
}

/// Secrets (token files, the TLS key) should be mode 0600: warns otherwise.
pub fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "Secret file is readable by group or others; use mode 0600."
            );
        }
    }
}

impl ServerSection {
    fn limits(&self) -> Result<ServeLimits, ConfigError> {
        if !(1..=3600).contains(&self.header_timeout_secs) {
            return Err(invalid(
                "server.header_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=3600).contains(&self.body_idle_timeout_secs) {
            return Err(invalid(
                "server.body_idle_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(8..=1_000_000).contains(&self.max_connections) {
            return Err(invalid(
                "server.max_connections",
                "must be between 8 and 1000000",
            ));
        }
        if !(1..=65_536).contains(&self.max_concurrent_uploads) {
            return Err(invalid(
                "server.max_concurrent_uploads",
                "must be between 1 and 65536",
            ));
        }
        if !(1..=256).contains(&self.compare_max_concurrent) {
            return Err(invalid(
                "server.compare_max_concurrent",
                "must be between 1 and 256",
            ));
        }
        if self.max_compare_rows == 0 {
            return Err(invalid("server.max_compare_rows", "must be at least 1"));
        }
        Ok(ServeLimits {
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            body_idle_timeout: std::time::Duration::from_secs(self.body_idle_timeout_secs),
            max_connections: self.max_connections,
            max_concurrent_uploads: self.max_concurrent_uploads,
            compare_max_concurrent: self.compare_max_concurrent,
            max_compare_rows: self.max_compare_rows,
        })
    }
}

impl TlsSection {
    /// Checks the keys and that the files load (so `check-config` and a
    /// start fail with the key named, not at the first handshake).
    fn settings(&self) -> Result<Option<TlsSettings>, ConfigError> {
        let (cert_file, key_file) = match (&self.cert_file, &self.key_file) {
            (None, None) => {
                if self.client_ca_file.is_some() {
                    return Err(invalid(
                        "tls.client_ca_file",
                        "needs tls.cert_file and tls.key_file",
                    ));
                }
                return Ok(None);
            }
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (Some(_), None) => return Err(invalid("tls.key_file", "needed with tls.cert_file")),
            (None, Some(_)) => return Err(invalid("tls.cert_file", "needed with tls.key_file")),
        };
        let s = TlsSettings {
            cert_file,
            key_file,
            client_ca_file: self.client_ca_file.clone(),
        };
        crate::tls::server_config(&s).map_err(|e| invalid(e.key(), e.to_string()))?;
        Ok(Some(s))
    }
}

/// A node id or VNet name safe to use as one path component, and read
/// back as itself (not as NULL: [`analyzers::vnet::reads_as_null`]).
pub fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !analyzers::vnet::reads_as_null(s)
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
            let token = read_token(
                "nodes.token",
                &format!("node {}", n.id),
                &n.token,
                &n.token_file,
            )?;
            if tokens.insert(token, n.id.clone()).is_some() {
                return Err(invalid("nodes.token", "two nodes share a token"));
            }
        }
        let mut readers = HashMap::new();
        for (i, r) in self.readers.iter().enumerate() {
            let name = r
                .name
                .clone()
                .unwrap_or_else(|| format!("reader-{}", i + 1));
            let token = read_token(
                "readers.token",
                &format!("reader {name}"),
                &r.token,
                &r.token_file,
            )?;
            if tokens.contains_key(&token) || readers.insert(token, name).is_some() {
                return Err(invalid("readers.token", "a token is used twice"));
            }
        }
        let limits = self.server.limits()?;
        let tls = self.tls.settings()?;
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
        // The data directory is made at start when missing; a file in its
        // place passed `check-config` and then failed `serve`.
        let d = &self.server.data_dir;
        if d.exists() && !d.is_dir() {
            return Err(invalid(
                "server.data_dir",
                format!("{} exists and is not a directory", d.display()),
            ));
        }
        Ok(Settings {
            listen,
            data_dir: self.server.data_dir.clone(),
            max_body_bytes: self.server.max_body_bytes,
            upload_limits: Limits {
                max_rows: self.server.max_rows_per_upload,
                max_decoded_bytes: self.server.max_decoded_bytes,
                max_partitions: self.server.max_partitions_per_upload,
                ..Limits::default()
            },
            max_vnets_per_node: self.server.max_vnets_per_node,
            tokens,
            readers,
            storage,
            limits,
            tls,
        })
    }
}

/// "1 node", "2 nodes": a count with its noun, for one-line reports.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
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

    /// From a hostile-input tour: both passed `check-config` and then
    /// failed (a token that can never authenticate; `serve` on a file).
    #[test]
    fn a_token_with_spaces_and_a_data_dir_that_is_a_file_are_refused() {
        let e = resolve("[[nodes]]\nid = \"n1\"\ntoken = \"aaaaaaaa\\tbbbbbbbbbbbb\"\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("config key nodes.token: node n1: only printable ASCII ("),
            "{e}"
        );
        let f = tempfile::NamedTempFile::new().expect("file");
        let e = resolve(&format!(
            "[server]\ndata_dir = \"{}\"\n[[nodes]]\nid = \"n1\"\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\n",
            f.path().display()
        ))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            e.contains("server.data_dir") && e.contains("is not a directory"),
            "{e}"
        );
    }

    #[test]
    fn upload_limits_have_defaults_and_zero_is_refused() {
        let node = "[[nodes]]\nid = \"n1\"\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\n";
        let s = resolve(node).expect("defaults");
        assert_eq!(s.upload_limits.max_partitions, 256);
        assert_eq!(s.upload_limits.max_rows, 16 * 1024 * 1024);
        assert_eq!(s.max_vnets_per_node, 1024);
        let e = resolve(&format!("[server]\nmax_partitions_per_upload = 0\n{node}"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("server.max_partitions_per_upload"), "{e}");
    }
}

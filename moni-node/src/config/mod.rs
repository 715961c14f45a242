//! Node configuration: a TOML file deserialized into typed structs with
//! documented defaults, unknown keys rejected, then validated into the
//! settings the analyzers take ([`Resolved`]). Every error names the
//! offending key.
//!
//! One file per TOML section: [`node`], [`metrics`], [`sources`] (the
//! `[[sources]]` array), [`ship`], [`vnets`], [`flows`], [`bins`], [`rtp`],
//! [`ids`] (its keys are [`IdsConfig`]'s), [`output`] and [`decode`]. Each
//! holds the section's struct (every key a field with its doc comment and
//! its default in `Default`) and its validation.
//!
//! The reference of every key, with its default and its documentation, is
//! `samples/config/reference.toml`, generated from these types (the doc
//! comments and the `Default` values); a test keeps it in sync
//! (`MONI_BLESS=1 cargo test --workspace --lib -- reference_toml`
//! rewrites it).

pub mod bins;
pub mod decode;
pub mod flows;
pub mod ids;
pub mod metrics;
pub mod node;
pub mod output;
#[cfg(test)]
mod reference;
pub mod rtp;
pub mod ship;
pub mod sources;
pub mod vnets;

use std::path::{Path, PathBuf};

use analyzers::bins::BinConfig;
use analyzers::decode::DecodeConfig;
use analyzers::flow::FlowConfig;
use analyzers::ids::IdsConfig;
use analyzers::vnet::VnetMap;
use analyzers::voip::RtpConfig;
use serde::{Deserialize, Serialize};

pub use bins::BinsConfig;
pub use decode::DecodeSection;
pub use flows::FlowsConfig;
pub use metrics::MetricsSection;
pub use node::{NodeSection, NodeSettings};
pub use output::{Codec, OutputConfig};
pub use rtp::RtpSection;
pub use ship::{ShipSection, ShipSettings, ShipTls, WhenFull};
pub use sources::{Precision, SourceKind, SourceSection, SourceSettings};
pub use vnets::VnetsConfig;

/// Errors loading or validating a configuration.
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

pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The whole node configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Directory of the file the config was loaded from (for relative
    /// paths such as `ids.rules`).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    pub node: NodeSection,
    pub ship: ShipSection,
    pub metrics: MetricsSection,
    pub sources: Vec<SourceSection>,
    pub vnets: VnetsConfig,
    pub flows: FlowsConfig,
    pub bins: BinsConfig,
    pub rtp: RtpSection,
    pub ids: IdsConfig,
    pub output: OutputConfig,
    pub decode: DecodeSection,
}

/// The validated settings the node runs with.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub vnets: VnetMap,
    pub decode: DecodeConfig,
    pub flows: FlowConfig,
    pub bins: BinConfig,
    pub rtp: RtpConfig,
    pub ids: IdsConfig,
    /// The signatures of `ids.rules`, with the report of rules skipped.
    pub rules: std::sync::Arc<analyzers::ids::rules::RuleSet>,
    pub compare_tolerance: f64,
    pub output: OutputConfig,
    pub node: NodeSettings,
    pub sources: Vec<SourceSettings>,
    pub ship: Option<ShipSettings>,
}

impl NodeConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut c = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        c.base_dir = path.parent().map(Path::to_path_buf);
        Ok(c)
    }

    /// Parses TOML text; the error is toml's message, which names the key
    /// and line, flattened to one line.
    pub fn parse(text: &str) -> Result<NodeConfig, String> {
        toml::from_str(text).map_err(|e| {
            e.to_string()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^'))
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    /// Validates into [`Resolved`]. `vnet_map_override` (the command line's
    /// `--vnet-map`) replaces `vnets.map` when given.
    pub fn resolve(&self, vnet_map_override: Option<&str>) -> Result<Resolved, ConfigError> {
        let mut vnets = self.vnet_map(vnet_map_override)?;
        let node = self.node_settings()?;
        let sources = self.source_settings(&mut vnets)?;
        let ship = self.ship_settings()?;
        let ids = ids::validate_ids(&self.ids)?;
        let rules = std::sync::Arc::new(self.load_rules(&ids)?);
        let flows = self.flows.resolve()?;
        let bins = self.bins.resolve()?;
        let rtp = self.rtp.resolve()?;
        self.output.validate()?;
        Ok(Resolved {
            vnets,
            decode: self.decode.resolve()?,
            flows,
            bins,
            rtp,
            compare_tolerance: self.rtp.compare_tolerance,
            ids,
            rules,
            output: self.output.clone(),
            node,
            sources,
            ship,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::node::usable_cpus;
    use super::*;
    use analyzers::voip::codec::Impairment;

    #[test]
    fn dynamic_codecs_and_codec_impairments_resolve() {
        let c = NodeConfig::parse(
            "[rtp]\ndynamic_codecs = { 96 = \"opus\", 120 = \"opus/16000\", 97 = \"iLBC\" }\n\
             [rtp.codec_impairments]\niLBC = { ie = 11.0, bpl = 32.0 }\n\
             opus = { ie = 5.0, bpl = 15.0, wideband = true }\n",
        )
        .expect("parse");
        let r = c.resolve(None).expect("resolve").rtp;
        assert_eq!(
            r.dynamic_codecs,
            vec![
                (120, "opus".to_string(), 16_000),
                (96, "opus".to_string(), 48_000),
                (97, "iLBC".to_string(), 8000),
            ]
        );
        assert_eq!(
            r.codec_impairments,
            vec![
                ("iLBC".to_string(), Impairment::narrow(11.0, 32.0)),
                ("opus".to_string(), Impairment::wide(5.0, 15.0)),
            ]
        );
        for toml in [
            "dynamic_codecs = { 95 = \"opus\" }",
            "dynamic_codecs = { x = \"opus\" }",
            "dynamic_codecs = { 96 = \"mystery\" }",
            "dynamic_codecs = { 96 = \"opus/0\" }",
            "dynamic_codecs = { 96 = \"/8000\" }",
        ] {
            let c = NodeConfig::parse(&format!("[rtp]\n{toml}\n")).expect("parse");
            let err = c.resolve(None).expect_err(toml).to_string();
            assert!(err.contains("rtp.dynamic_codecs"), "{toml}: {err}");
        }
        for toml in [
            "x = { ie = 96.0, bpl = 1.0 }",
            "x = { ie = 1.0, bpl = 0.0 }",
        ] {
            let c =
                NodeConfig::parse(&format!("[rtp.codec_impairments]\n{toml}\n")).expect("parse");
            let err = c.resolve(None).expect_err(toml).to_string();
            assert!(err.contains("rtp.codec_impairments"), "{toml}: {err}");
        }
        assert!(NodeConfig::parse("[rtp.codec_impairments]\nx = { ie = 1.0 }\n").is_err());
    }

    use analyzers::voip::jitter_buffer::Model as JbModel;

    #[test]
    fn decode_section_and_tunnel_map_entries_resolve() {
        let c = NodeConfig::parse(
            "[vnets]\nmap = [\"vxlan:5001=A:production\", \"iface:eth1=B:shadow\"]\n\
             [decode]\nmax_tunnel_depth = 2\nvxlan_ports = [4789]\nmpls_payload = \"ethernet\"\n\
             [[sources]]\ninterface = \"eth1\"\n",
        )
        .expect("parse");
        let r = c.resolve(None).expect("resolve");
        assert_eq!(r.decode.max_tunnel_depth, 2);
        assert_eq!(&*r.decode.vxlan_ports, &[4789]);
        assert_eq!(
            r.decode.mpls_payload,
            analyzers::decode::MplsPayload::Ethernet
        );
        // The source named by an iface entry takes that VNet.
        let b = r.sources[0].vnet.expect("mapped by iface");
        assert_eq!(r.vnets.get(b).name, "B");
        let deep = NodeConfig::parse("[decode]\nmax_tunnel_depth = 9\n").expect("parse");
        let err = deep.resolve(None).expect_err("too deep").to_string();
        assert!(err.contains("decode.max_tunnel_depth"), "{err}");
        let bad = NodeConfig::parse("[decode]\nmpls_payload = \"pw\"\n");
        assert!(bad.is_err());
        // Reassembly of tunnel fragments: 16 MiB and 30 s unless set.
        assert_eq!(r.decode.max_reassembly_bytes, 16 << 20);
        assert_eq!(r.decode.reassembly_timeout_secs, 30);
        let small = NodeConfig::parse(
            "[decode]\nmax_reassembly_bytes = 65536\nreassembly_timeout_secs = 5\n",
        )
        .expect("parse")
        .resolve(None)
        .expect("resolve");
        assert_eq!(small.decode.max_reassembly_bytes, 65536);
        assert_eq!(small.decode.reassembly_timeout_secs, 5);
    }

    /// A cap too high to be reached bounds no memory (a hostile-input
    /// tour set 2^64 - 1): refused, naming the key and the range.
    #[test]
    fn caps_beyond_their_range_are_refused() {
        for (text, key) in [
            ("[bins]\nmax_open_bins = 10000001\n", "bins.max_open_bins"),
            (
                "[flows]\nmax_fragmented_datagrams = 18446744073709551615\n",
                "flows.max_fragmented_datagrams",
            ),
            (
                "[decode]\nmax_reassembly_bytes = 1099511627777\n",
                "decode.max_reassembly_bytes",
            ),
        ] {
            let e = NodeConfig::parse(text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.resolve(None).map(|_| ()).map_err(|e| e.to_string()))
                .err()
                .unwrap_or_default();
            assert!(
                e.contains(key) && (e.contains("at most") || e.contains("between")),
                "{e}"
            );
        }
        let ok = NodeConfig::parse("[bins]\nmax_open_bins = 10000000\n").expect("parse");
        assert!(ok.resolve(None).is_ok());
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = NodeConfig::parse("").expect("parse");
        let r = c.resolve(None).expect("resolve");
        assert_eq!(r.flows, FlowConfig::default());
        assert_eq!(r.bins.bin_secs, 1);
        assert_eq!(r.output.rotate_secs, 60);
        assert_eq!(r.vnets.len(), 1);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = NodeConfig::parse("[flows]\nidle_timeout = 5\n").expect_err("unknown key");
        assert!(err.contains("idle_timeout"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn invalid_values_name_their_key() {
        let c = NodeConfig::parse("[flows]\nmax_flows = 0\n").expect("parse");
        let err = c.resolve(None).expect_err("invalid").to_string();
        assert!(err.contains("flows.max_flows"), "{err}");
        let c = NodeConfig::parse("[vnets]\nmap = [\"100=A\"]\n").expect("parse");
        let err = c.resolve(None).expect_err("invalid").to_string();
        assert!(err.contains("vnets.map"), "{err}");
    }

    #[test]
    fn jitter_buffer_models_are_named_and_the_default_is_one_of_them() {
        let r = NodeConfig::parse("")
            .expect("parse")
            .resolve(None)
            .expect("ok");
        assert_eq!(r.rtp.jitter_buffers, JbModel::ALL.to_vec());
        assert_eq!(r.rtp.default_jitter_buffer, JbModel::Adaptive);
        assert_eq!(r.rtp.mirror_dup_window_us, 500);
        let c = NodeConfig::parse(
            "[rtp]\njitter_buffers = [\"fixed200\"]\ndefault_jitter_buffer = \"fixed200\"\n",
        )
        .expect("parse");
        let r = c.resolve(None).expect("resolve");
        assert_eq!(r.rtp.jitter_buffers, vec![JbModel::Fixed200]);
        for (toml, key) in [
            ("jitter_buffers = [\"fixed60\"]", "rtp.jitter_buffers"),
            ("jitter_buffers = []", "rtp.jitter_buffers"),
            (
                "jitter_buffers = [\"adaptive\", \"adaptive\"]",
                "rtp.jitter_buffers",
            ),
            (
                "jitter_buffers = [\"fixed50\"]\ndefault_jitter_buffer = \"adaptive\"",
                "rtp.default_jitter_buffer",
            ),
            ("mirror_dup_window_us = 2000000", "rtp.mirror_dup_window_us"),
        ] {
            let c = NodeConfig::parse(&format!("[rtp]\n{toml}\n")).expect("parse");
            let err = c.resolve(None).expect_err(toml).to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        let err = NodeConfig::parse("[rtp]\njitter_buffer_ms = 60\n").expect_err("removed key");
        assert!(err.contains("jitter_buffer_ms"), "{err}");
    }

    #[test]
    fn ids_section_deserializes_validates_and_rejects_unknown_keys() {
        let c = NodeConfig::parse("[ids]\nscan_ports = 7\n").expect("parse");
        let r = c.resolve(None).expect("resolve");
        assert_eq!(r.ids.scan_ports, 7);
        assert_eq!(r.ids.sweep_hosts, IdsConfig::default().sweep_hosts);
        let err = NodeConfig::parse("[ids]\nscan_port = 7\n").expect_err("unknown key");
        assert!(err.contains("scan_port"), "{err}");
        let c = NodeConfig::parse("[ids]\nsyn_half_open = 1.5\n").expect("parse");
        let err = c.resolve(None).expect_err("invalid").to_string();
        assert!(err.contains("ids.syn_half_open"), "{err}");
    }

    #[test]
    fn ids_rules_load_relative_to_the_config_and_bad_vars_or_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("local.rules"),
            "alert tcp $EXTERNAL_NET any -> $HOME_NET 22 (msg:\"ssh\"; flags:S; sid:1;)\n\
             alert tls any any -> any any (msg:\"app\"; sid:2;)\n",
        )
        .expect("write");
        let cfg = dir.path().join("node.toml");
        std::fs::write(
            &cfg,
            "[ids]\nrules = [\"local.rules\"]\n[ids.vars]\nHOME_NET = \"[192.0.2.0/24]\"\n",
        )
        .expect("write");
        let r = NodeConfig::load(&cfg)
            .and_then(|c| c.resolve(None))
            .expect("resolves");
        assert_eq!(r.rules.rules.len(), 1);
        assert_eq!(r.rules.skipped.len(), 1);
        assert!(r.rules.rules[0]
            .dst
            .matches("192.0.2.9".parse().expect("ip")));
        let bad = NodeConfig::parse("[ids.vars]\nHOME_NET = \"[10.0.0.0/33]\"\n").expect("parse");
        let err = bad.resolve(None).expect_err("bad var").to_string();
        assert!(err.contains("ids.vars: HOME_NET"), "{err}");
        let missing =
            NodeConfig::parse("[ids]\nrules = [\"/nonexistent.rules\"]\n").expect("parse");
        let err = missing.resolve(None).expect_err("missing").to_string();
        assert!(
            err.contains("ids.rules") && err.contains("/nonexistent.rules"),
            "{err}"
        );
    }

    /// Issue 14, defect 9: NaN and infinite entropies, an empty output
    /// directory and a CPU the machine does not have are refused, each
    /// naming its key.
    #[test]
    fn nan_entropy_empty_output_dir_and_missing_cpus_are_refused() {
        let err = |text: &str| {
            NodeConfig::parse(text)
                .expect("parse")
                .resolve(None)
                .expect_err(text)
                .to_string()
        };
        for v in ["nan", "-inf", "inf", "-1.0", "8.5"] {
            let e = err(&format!("[ids]\ndns_entropy = {v}\n"));
            assert!(e.starts_with("config key ids.dns_entropy: "), "{v}: {e}");
        }
        let ok = NodeConfig::parse("[ids]\ndns_entropy = 3.5\n").expect("parse");
        assert_eq!(ok.resolve(None).expect("valid").ids.dns_entropy, 3.5);
        assert_eq!(
            err("[output]\ndir = \"\"\n"),
            "config key output.dir: must not be empty (\".\" names the current directory)"
        );
        let e = err("[node]\nworker_cpus = [1000]\n");
        assert!(
            e.starts_with(
                "config key node.worker_cpus: CPU 1000 is not one this process may run on"
            ),
            "{e}"
        );
        let e = err("[node]\ncapture_cpus = [0, 1023]\n");
        assert!(
            e.starts_with("config key node.capture_cpus: CPU 1023"),
            "{e}"
        );
        // Every CPU of the affinity mask is fine.
        let cpus = usable_cpus();
        let text = format!("[node]\nworker_cpus = {cpus:?}\n");
        let r = NodeConfig::parse(&text).expect("parse").resolve(None);
        assert_eq!(r.expect("usable CPUs").node.worker_cpus, cpus);
    }

    #[test]
    fn alert_caps_and_reload_timeout_are_read_and_validated() {
        let c = NodeConfig::parse(
            "[ids]\nmax_alerts_per_packet = 3\nmax_alerts_per_second = 50\nreload_timeout_secs = 2\n",
        )
        .expect("parse");
        let r = c.resolve(None).expect("resolve");
        assert_eq!(
            (
                r.ids.max_alerts_per_packet,
                r.ids.max_alerts_per_second,
                r.ids.reload_timeout_secs
            ),
            (3, 50, 2)
        );
        let d = NodeConfig::parse("")
            .expect("parse")
            .resolve(None)
            .expect("defaults");
        assert_eq!(
            (
                d.ids.max_alerts_per_packet,
                d.ids.max_alerts_per_second,
                d.ids.reload_timeout_secs
            ),
            (15, 10_000, 10)
        );
        for (text, key) in [
            ("max_alerts_per_packet = 0", "ids.max_alerts_per_packet"),
            ("max_alerts_per_second = 0", "ids.max_alerts_per_second"),
            ("reload_timeout_secs = 0", "ids.reload_timeout_secs"),
            ("detectors = [\"flood\", \"floods\"]", "ids.detectors"),
        ] {
            let c = NodeConfig::parse(&format!("[ids]\n{text}\n")).expect("parse");
            let e = c.resolve(None).expect_err(text).to_string();
            assert!(e.starts_with(&format!("config key {key}: ")), "{e}");
        }
    }

    #[test]
    fn ids_detectors_default_to_all_and_name_the_unknown_one() {
        let r = NodeConfig::parse("")
            .expect("parse")
            .resolve(None)
            .expect("resolve");
        assert_eq!(r.ids.detectors, analyzers::ids::DETECTORS.to_vec());
        let c = NodeConfig::parse("[ids]\ndetectors = [\"dns\", \"flood\"]\n").expect("parse");
        let r = c.resolve(None).expect("resolve");
        assert!(r.ids.runs("flood") && r.ids.runs("dns") && !r.ids.runs("port_scan"));
        let c = NodeConfig::parse("[ids]\ndetectors = [\"sweep\"]\n").expect("parse");
        let e = c.resolve(None).expect_err("unknown detector").to_string();
        assert_eq!(
            e,
            "config key ids.detectors: no detector is named \"sweep\" \
             (the detectors: port_scan, host_sweep, flood, dns, arp_sweep)"
        );
    }

    #[test]
    fn cli_map_replaces_file_map() {
        let c = NodeConfig::parse("[vnets]\nmap = [\"100=A:production\"]\n").expect("parse");
        let r = c.resolve(Some("200=B:shadow")).expect("resolve");
        let names: Vec<_> = r.vnets.iter().map(|(_, v)| v.name.clone()).collect();
        assert_eq!(names, vec!["default", "B"]);
    }
}

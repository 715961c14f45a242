//! Node configuration: a TOML file deserialized into typed structs with
//! documented defaults, unknown keys rejected, then validated into the
//! settings the analyzers take. Every error names the offending key.
//!
//! ```toml
//! [node]                        # `moni-node run` only
//! name = "moni"                 # the `node` label of every metric
//! workers = 1                   # analyzer threads (flows sharded by a symmetric hash)
//! queue_batches = 64            # batches queued per worker; a full queue drops and counts
//! batch_flush_ms = 50           # a partly filled batch leaves the capture thread after this
//! tick_ms = 1000                # clock tick: idle flows, bins, metrics, file rotation
//! nice = 0                      # scheduling niceness of the whole process (-20..19)
//! capture_cpus = []             # CPUs to pin capture threads to (round robin); empty: no pinning
//! worker_cpus = []              # CPUs to pin worker threads to (each must be in the affinity mask)
//!
//! [metrics]
//! listen = "127.0.0.1:9464"     # Prometheus /metrics and /healthz; "" disables
//!
//! [[sources]]                   # one per mirrored port (or capture file)
//! interface = "eth1"            # live capture (libpcap) ...
//! # file = "x.pcap"             # ... or a capture replayed at its recorded pace
//! name = "eth1"                 # `source` label; default: interface or file name
//! vnet = "A"                    # VNet of this source's traffic (VLAN map wins)
//! role = "production"
//! promiscuous = true
//! snaplen = 262144
//! buffer_bytes = 16777216       # kernel capture buffer
//! filter = ""                   # BPF
//! timestamp_precision = "micro" # or "nano"
//! immediate = false             # deliver packets at once instead of in kernel blocks
//! speed = 1.0                   # files: replay pace (2.0 = twice as fast)
//!
//! [ship]                        # upload completed files to moni-collector (run only)
//! collectors = []               # e.g. ["http://10.0.0.5:9470"]; several: fail over in order
//! token = ""                    # bearer token of this node (or token_file = "...")
//! spool_max_bytes = 1073741824  # completed files waiting to ship, at most
//! when_full = "drop_oldest"     # or "stop_writing": new records are dropped and counted
//! retry_max_secs = 30           # exponential backoff cap between attempts
//! keep_shipped = false          # keep acknowledged files (moved to OUT/shipped/)
//! drain_secs = 15               # at stop, keep shipping this long; the rest ships at next start
//! ca_file = ""                  # https://: trust only this CA (PEM); default: the system's roots
//! cert_file = ""                # client certificate (PEM) for a collector with mutual TLS,
//! key_file = ""                 # and its key; CN or a DNS SAN must be this node's id there
//!
//! [vnets]
//! default_vnet = "default"      # VNet of traffic no mapping matches
//! default_role = "production"
//! map = ["100=A:production", "200=B:shadow"]   # VLAN=NAME:ROLE
//!
//! [flows]
//! idle_timeout_secs = 60
//! active_timeout_secs = 300
//! tcp_end_linger_secs = 2
//! max_flows = 1000000
//! max_fragmented_datagrams = 65536
//!
//! [bins]
//! bin_secs = 1
//! max_open_bins = 4096
//!
//! [rtp]
//! sip_ports = [5060]
//! window_secs = 10
//! confirm_packets = 4
//! stream_idle_secs = 30
//! max_streams = 50000
//! max_candidates = 65536
//! max_announced = 65536
//! max_calls = 50000
//! jitter_buffers = ["fixed50", "fixed200", "adaptive"]   # emulated receivers, each scored
//! default_jitter_buffer = "adaptive"   # mos_lq, mos_cq, r_factor, jb_discards, comparison
//! network_delay_ms = 20.0
//! g711_plc = true
//! unknown_codec_ie = 10.0
//! unknown_codec_bpl = 10.0
//! dynamic_codecs = { 96 = "opus", 120 = "opus/16000" }   # PT = "name[/clock]", streams without SDP
//! [rtp.codec_impairments]       # Ie/Bpl per encoding name, before the G.113 table
//! iLBC = { ie = 11.0, bpl = 32.0 }
//! opus = { ie = 5.0, bpl = 15.0, wideband = true }
//! compare_tolerance = 0.1
//! mirror_dup_window_us = 500   # a packet repeated this soon is a SPAN copy, not an RTP duplicate
//!
//! [ids]                         # behavioural detectors (analyzers::ids)
//! enabled = true
//! scan_window_secs = 60         # port scan: distinct ports of one host from one source
//! scan_ports = 20
//! stealth_ports = 3             # FIN/NULL/Xmas probes to this many ports already count
//! sweep_window_secs = 60        # sweep: distinct hosts on one port (or ICMP echo)
//! sweep_hosts = 20
//! flood_window_secs = 1
//! syn_rate = 100                # SYNs/s to one destination ...
//! syn_half_open = 0.8           # ... at least this share never completing
//! vnet_syn_rate = 100           # SYNs/s across a VNet to >= vnet_syn_destinations hosts
//! vnet_syn_destinations = 50
//! udp_rate = 20000              # packets/s to one destination
//! icmp_rate = 2000
//! dns_window_secs = 60
//! nxdomain_per_client = 50
//! dns_name_max = 100            # longer query names: tunnelling
//! dns_entropy = 4.0             # bits/char (0-8), for names of at least dns_entropy_min_len
//! dns_entropy_min_len = 40
//! max_tracked = 50000           # keys per detector table (oldest evicted, counted)
//! cooldown_secs = 60            # one alert per episode
//! rules = []                    # signature files (Suricata subset), relative to this file
//! max_alerts_per_packet = 15    # signature alerts per packet; more are dropped and counted
//! max_alerts_per_second = 10000 # signature alerts per second of packet time (per worker)
//! reload_timeout_secs = 10      # SIGHUP: a reload still loading rules after this is abandoned
//! [ids.vars]                    # rule variables; unset ones keep Suricata's defaults
//! HOME_NET = "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]"
//! EXTERNAL_NET = "!$HOME_NET"
//!
//! [output]
//! dir = "moni-out"              # must not be empty
//! rotate_secs = 60
//! rotate_max_bytes = 134217728
//! zstd_level = 3
//! row_group_rows = 65536
//! ```

use std::path::{Path, PathBuf};

use analyzers::bins::BinConfig;
use analyzers::decode::DecodeConfig;
use analyzers::flow::FlowConfig;
use analyzers::ids::IdsConfig;
use analyzers::vnet::{parse_vnet_map_spec, Role, VlanMapping, VnetMap};
use analyzers::voip::codec::Impairment;
use analyzers::voip::jitter_buffer::Model as JbModel;
use analyzers::voip::RtpConfig;
use serde::Deserialize;

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

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The whole node configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
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

/// `[decode]`: how far moni looks into tunnels.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeSection {
    /// Tunnel layers decapsulated at most; a packet nested deeper counts
    /// `tunnel_too_deep` and stays at that depth. Default 4, at most 8.
    pub max_tunnel_depth: u8,
    /// UDP destination ports read as VXLAN. Default [4789, 8472].
    pub vxlan_ports: Vec<u16>,
    /// UDP destination port of VXLAN-GPE. Default 4790.
    pub vxlan_gpe_port: u16,
    /// UDP destination port of Geneve. Default 6081.
    pub geneve_port: u16,
    /// UDP port of GTP-U (either direction). Default 2152.
    pub gtpu_port: u16,
    /// What follows the bottom MPLS label: `auto` (IPv4/IPv6 by the first
    /// nibble, otherwise pseudowire Ethernet), `ethernet` or `ip`.
    pub mpls_payload: analyzers::decode::MplsPayload,
    /// Bytes held at most to reassemble fragmented outer packets of
    /// tunnels (the oldest incomplete datagrams are evicted, counted);
    /// 0 turns reassembly off. Default 16 MiB.
    pub max_reassembly_bytes: u64,
    /// Seconds of packet time a fragmented tunnel packet may take to
    /// complete before its fragments are dropped (counted). Default 30.
    pub reassembly_timeout_secs: u32,
}

impl Default for DecodeSection {
    fn default() -> Self {
        let d = DecodeConfig::DEFAULT;
        DecodeSection {
            max_tunnel_depth: d.max_tunnel_depth,
            vxlan_ports: d.vxlan_ports.to_vec(),
            vxlan_gpe_port: d.vxlan_gpe_port,
            geneve_port: d.geneve_port,
            gtpu_port: d.gtpu_port,
            mpls_payload: d.mpls_payload,
            max_reassembly_bytes: d.max_reassembly_bytes as u64,
            reassembly_timeout_secs: d.reassembly_timeout_secs,
        }
    }
}

impl DecodeSection {
    fn resolve(&self) -> Result<DecodeConfig, ConfigError> {
        if usize::from(self.max_tunnel_depth) > analyzers::decode::tunnel::MAX_TUNNEL_LAYERS {
            return Err(invalid("decode.max_tunnel_depth", "must be at most 8"));
        }
        if self.vxlan_ports.len() > 16 {
            return Err(invalid("decode.vxlan_ports", "at most 16 ports"));
        }
        Ok(DecodeConfig {
            max_tunnel_depth: self.max_tunnel_depth,
            vxlan_ports: self.vxlan_ports.clone().into(),
            vxlan_gpe_port: self.vxlan_gpe_port,
            geneve_port: self.geneve_port,
            gtpu_port: self.gtpu_port,
            mpls_payload: self.mpls_payload,
            max_reassembly_bytes: usize::try_from(self.max_reassembly_bytes).map_err(|_| {
                invalid("decode.max_reassembly_bytes", "too large for this machine")
            })?,
            reassembly_timeout_secs: self.reassembly_timeout_secs,
        })
    }
}

/// Validates `[ids]` (the section deserializes straight into
/// [`IdsConfig`]).
fn validate_ids(c: &IdsConfig) -> Result<IdsConfig, ConfigError> {
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
    if c.max_tracked == 0 || c.max_tracked > 10_000_000 {
        return Err(invalid("ids.max_tracked", "must be between 1 and 10000000"));
    }
    Ok(c.clone())
}

/// The CPUs this process may be pinned to: its affinity mask, or, where
/// that cannot be read, 0 up to the available parallelism.
fn usable_cpus() -> Vec<usize> {
    match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => ids.into_iter().map(|c| c.id).collect(),
        _ => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// `[node]`: the long-running probe (`moni-node run`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Value of the `node` label. Default `moni`.
    pub name: String,
    /// Analyzer worker threads. Default 1.
    pub workers: usize,
    /// Batches queued per worker before the capture thread drops. Default 64.
    pub queue_batches: usize,
    /// A partly filled batch is sent after this many ms. Default 50.
    pub batch_flush_ms: u64,
    /// Clock tick in ms (idle expiry, metrics, rotation). Default 1000.
    pub tick_ms: u64,
    /// Niceness of the process. Default 0 (unchanged).
    pub nice: i32,
    /// CPUs for capture threads and worker threads. Default none (no pinning).
    pub capture_cpus: Vec<usize>,
    pub worker_cpus: Vec<usize>,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: "moni".into(),
            workers: 1,
            queue_batches: 64,
            batch_flush_ms: 50,
            tick_ms: 1000,
            nice: 0,
            capture_cpus: Vec::new(),
            worker_cpus: Vec::new(),
        }
    }
}

/// What the shipper does when the spool is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Delete the oldest spooled files (their bytes are counted).
    #[default]
    DropOldest,
    /// Keep what is spooled; new records are dropped (rows counted).
    StopWriting,
}

/// `[ship]`: uploads to moni-collector.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShipSection {
    pub collectors: Vec<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub spool_max_bytes: u64,
    pub when_full: WhenFull,
    pub retry_max_secs: u64,
    pub keep_shipped: bool,
    pub drain_secs: u64,
    pub ca_file: Option<PathBuf>,
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

/// Validated `[ship]`; `None` in [`Resolved`] when no collector is set.
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

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address of `/metrics` and `/healthz`; empty disables. Default
    /// `127.0.0.1:9464`.
    pub listen: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// Timestamp precision asked of libpcap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Micro,
    Nano,
}

/// `[[sources]]`: one capture source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSection {
    pub name: Option<String>,
    pub interface: Option<String>,
    pub file: Option<PathBuf>,
    pub vnet: Option<String>,
    pub role: Option<Role>,
    pub promiscuous: bool,
    pub snaplen: i32,
    pub buffer_bytes: i32,
    pub filter: Option<String>,
    pub timestamp_precision: Precision,
    pub immediate: bool,
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
            snaplen: 262_144,
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
    pub snaplen: i32,
    pub buffer_bytes: i32,
    pub filter: Option<String>,
    pub precision: Precision,
    pub immediate: bool,
}

/// Validated `[node]` and `[metrics]` settings.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub name: String,
    pub workers: usize,
    pub queue_batches: usize,
    pub batch_flush: std::time::Duration,
    pub tick: std::time::Duration,
    pub nice: i32,
    pub capture_cpus: Vec<usize>,
    pub worker_cpus: Vec<usize>,
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `[rtp]`: SIP/SDP and RTP stream analysis and scoring.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpSection {
    /// UDP ports carrying SIP. Default [5060].
    pub sip_ports: Vec<u16>,
    /// Scoring window in seconds of packet time. Default 10.
    pub window_secs: u32,
    /// In-sequence packets before an unannounced stream is believed. Default 4.
    pub confirm_packets: usize,
    /// A stream without packets this long ends. Default 30.
    pub stream_idle_secs: u64,
    /// Caps on streams, detection candidates and SDP endpoints.
    pub max_streams: usize,
    pub max_candidates: usize,
    pub max_announced: usize,
    pub max_calls: usize,
    /// Emulated jitter-buffer models (`fixed50`, `fixed200`, `adaptive`),
    /// each with its own discards, delay and MOS columns. Default all three.
    pub jitter_buffers: Vec<String>,
    /// The model the unsuffixed MOS columns and the comparison use; one of
    /// `jitter_buffers`. Default `adaptive`.
    pub default_jitter_buffer: String,
    /// One-way network delay assumed for MOS-CQ, ms. Default 20.
    pub network_delay_ms: f64,
    /// Whether G.711 receivers conceal loss (Bpl 25.1, else 4.3). Default true.
    pub g711_plc: bool,
    /// E-model Ie and Bpl of codecs G.113 does not list. Default 10 and 10.
    pub unknown_codec_ie: f64,
    pub unknown_codec_bpl: f64,
    /// What a dynamic payload type (96-127) carries on streams without
    /// SDP, `PT = "name"` or `PT = "name/clock"` (the clock defaults to the
    /// codec's usual one: opus 48000, AMR-WB 16000, iLBC/Speex/AMR 8000).
    /// Such streams then get that codec, clock and a MOS. Default none.
    pub dynamic_codecs: std::collections::BTreeMap<String, String>,
    /// Ie and Bpl per encoding name (case-insensitive), used before the
    /// G.113 table: for codecs without an ITU value (iLBC, Speex) or to
    /// replace a table row. `{ ie, bpl, wideband = false }`. Default none.
    pub codec_impairments: std::collections::BTreeMap<String, CodecImpairment>,
    /// Shadow and production windows whose MOS differ by at most this are
    /// `equal`. Default 0.1.
    pub compare_tolerance: f64,
    /// A packet repeating its stream's previous one within this many µs
    /// is a mirror copy (`mirror_duplicates`). Default 500.
    pub mirror_dup_window_us: u64,
}

impl Default for RtpSection {
    fn default() -> Self {
        let d = RtpConfig::default();
        RtpSection {
            sip_ports: d.sip_ports,
            window_secs: d.window_secs,
            confirm_packets: d.confirm_packets,
            stream_idle_secs: d.stream_idle_secs,
            max_streams: d.max_streams,
            max_candidates: d.max_candidates,
            max_announced: d.max_announced,
            max_calls: d.max_calls,
            jitter_buffers: d
                .jitter_buffers
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            default_jitter_buffer: d.default_jitter_buffer.name().to_string(),
            network_delay_ms: d.network_delay_ms,
            g711_plc: d.g711_plc,
            unknown_codec_ie: d.unknown_codec.ie,
            unknown_codec_bpl: d.unknown_codec.bpl,
            dynamic_codecs: Default::default(),
            codec_impairments: Default::default(),
            compare_tolerance: 0.1,
            mirror_dup_window_us: d.mirror_dup_window_us,
        }
    }
}

/// One `[rtp.codec_impairments]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodecImpairment {
    /// Equipment impairment factor (Ie,WB for a wideband codec).
    pub ie: f64,
    /// Packet-loss robustness factor.
    pub bpl: f64,
    /// Rated on the wideband (G.107.1) scale. Default false.
    #[serde(default)]
    pub wideband: bool,
}

/// Dynamic payload types per `rtp.dynamic_codecs`, as rtpmap entries.
fn resolve_dynamic_codecs(
    map: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(u8, String, u32)>, ConfigError> {
    let key = "rtp.dynamic_codecs";
    let mut out = Vec::new();
    for (pt, codec) in map {
        let pt = pt
            .parse::<u8>()
            .ok()
            .filter(|p| (96..=127).contains(p))
            .ok_or_else(|| {
                invalid(
                    key,
                    format!("{pt:?} is not a dynamic payload type (96-127)"),
                )
            })?;
        let (name, rate) = match codec.split_once('/') {
            Some((name, rate)) => (
                name.trim(),
                Some(
                    rate.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|r| (1..=1_000_000).contains(r))
                        .ok_or_else(|| invalid(key, format!("{codec:?}: bad clock rate")))?,
                ),
            ),
            None => (codec.trim(), None),
        };
        if name.is_empty() {
            return Err(invalid(key, format!("{pt}: empty codec name")));
        }
        let rate = rate
            .or_else(|| analyzers::voip::codec::default_clock_rate(name))
            .ok_or_else(|| invalid(key, format!("{codec:?}: give the clock as \"name/rate\"")))?;
        out.push((pt, name.to_string(), rate));
    }
    Ok(out)
}

/// Operator impairments per `rtp.codec_impairments`.
fn resolve_codec_impairments(
    map: &std::collections::BTreeMap<String, CodecImpairment>,
) -> Result<Vec<(String, Impairment)>, ConfigError> {
    let key = "rtp.codec_impairments";
    let mut out = Vec::new();
    for (name, c) in map {
        let max_ie = if c.wideband { 129.0 } else { 95.0 };
        if !(0.0..=max_ie).contains(&c.ie) {
            return Err(invalid(
                key,
                format!("{name}: ie must be between 0 and {max_ie}"),
            ));
        }
        if !(c.bpl > 0.0 && c.bpl <= 100.0) {
            return Err(invalid(
                key,
                format!("{name}: bpl must be above 0 and at most 100"),
            ));
        }
        out.push((
            name.clone(),
            Impairment {
                ie: c.ie,
                bpl: c.bpl,
                wideband: c.wideband,
            },
        ));
    }
    Ok(out)
}

/// `[vnets]`: how packets are tagged with a VNet and role.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VnetsConfig {
    /// VNet of traffic that no VLAN mapping or source matches. Default `default`.
    pub default_vnet: String,
    /// Role of the default VNet. Default `production`.
    pub default_role: Role,
    /// VLAN mappings, each `"VLAN=NAME:ROLE"`. Default none.
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

/// `[flows]`: flow metering timeouts (seconds of packet time) and caps.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Export a flow after this many seconds without a packet. Default 60.
    pub idle_timeout_secs: u64,
    /// Export a flow older than this at its next packet. Default 300.
    pub active_timeout_secs: u64,
    /// Seconds kept after a TCP close for the last ACK. Default 2.
    pub tcp_end_linger_secs: u64,
    /// Hard cap on live flows; the least recently seen is evicted. Default 1,000,000.
    pub max_flows: usize,
    /// Fragmented datagrams whose ports are remembered. Default 65,536.
    pub max_fragmented_datagrams: usize,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        let d = FlowConfig::default();
        FlowsConfig {
            idle_timeout_secs: d.idle_timeout_secs,
            active_timeout_secs: d.active_timeout_secs,
            tcp_end_linger_secs: d.tcp_end_linger_secs,
            max_flows: d.max_flows,
            max_fragmented_datagrams: d.max_fragmented_datagrams,
        }
    }
}

/// `[bins]`: time bins.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BinsConfig {
    /// Width of a bin in seconds. Default 1.
    pub bin_secs: u32,
    /// Cap on bins open at once. Default 4096.
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

/// `[output]`: the Parquet datasets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Directory holding one folder per dataset. Default `moni-out`.
    pub dir: PathBuf,
    /// Close a file and start the next after this many seconds of wall
    /// time. Default 60.
    pub rotate_secs: u64,
    /// Close a file once it holds about this many bytes. Default 128 MiB.
    pub rotate_max_bytes: u64,
    /// zstd compression level (1-22). Default 3.
    pub zstd_level: i32,
    /// Rows per Parquet row group (bounds writer memory). Default 65,536.
    pub row_group_rows: usize,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("moni-out"),
            rotate_secs: 60,
            rotate_max_bytes: 128 * 1024 * 1024,
            zstd_level: 3,
            row_group_rows: 65_536,
        }
    }
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

    /// Reads and parses the signature files of `[ids] rules`.
    fn load_rules(&self, ids: &IdsConfig) -> Result<analyzers::ids::rules::RuleSet, ConfigError> {
        let vars = analyzers::ids::rules::Vars::with(&ids.vars);
        vars.check().map_err(|e| invalid("ids.vars", e))?;
        let mut set = analyzers::ids::rules::RuleSet::default();
        for file in &ids.rules {
            let path = match &self.base_dir {
                Some(dir) if Path::new(file).is_relative() => dir.join(file),
                _ => PathBuf::from(file),
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid("ids.rules", format!("cannot read {}: {e}", path.display()))
            })?;
            set.add(&path.display().to_string(), &text, &vars);
        }
        Ok(set)
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
        let mut vnets = VnetMap::new(&mappings, &self.vnets.default_vnet, self.vnets.default_role)
            .map_err(|e| invalid("vnets", e.to_string()))?;
        let node = self.node_settings()?;
        let sources = self.source_settings(&mut vnets)?;
        let ship = self.ship_settings()?;
        let ids = validate_ids(&self.ids)?;
        let rules = std::sync::Arc::new(self.load_rules(&ids)?);

        let f = &self.flows;
        if f.idle_timeout_secs == 0 {
            return Err(invalid("flows.idle_timeout_secs", "must be at least 1"));
        }
        if f.active_timeout_secs < f.idle_timeout_secs {
            return Err(invalid(
                "flows.active_timeout_secs",
                format!(
                    "must be at least flows.idle_timeout_secs ({})",
                    f.idle_timeout_secs
                ),
            ));
        }
        if f.max_flows == 0 || f.max_flows > 100_000_000 {
            return Err(invalid(
                "flows.max_flows",
                "must be between 1 and 100000000",
            ));
        }
        if f.max_fragmented_datagrams == 0 {
            return Err(invalid(
                "flows.max_fragmented_datagrams",
                "must be at least 1",
            ));
        }
        if self.bins.bin_secs == 0 || self.bins.bin_secs > 86_400 {
            return Err(invalid("bins.bin_secs", "must be between 1 and 86400"));
        }
        if self.bins.max_open_bins == 0 {
            return Err(invalid("bins.max_open_bins", "must be at least 1"));
        }
        let r = &self.rtp;
        if r.window_secs == 0 || r.window_secs > 3600 {
            return Err(invalid("rtp.window_secs", "must be between 1 and 3600"));
        }
        if r.confirm_packets == 0 || r.confirm_packets > 64 {
            return Err(invalid("rtp.confirm_packets", "must be between 1 and 64"));
        }
        if r.stream_idle_secs == 0 {
            return Err(invalid("rtp.stream_idle_secs", "must be at least 1"));
        }
        for (key, v) in [
            ("rtp.max_streams", r.max_streams),
            ("rtp.max_candidates", r.max_candidates),
            ("rtp.max_announced", r.max_announced),
            ("rtp.max_calls", r.max_calls),
        ] {
            if v == 0 || v > 10_000_000 {
                return Err(invalid(key, "must be between 1 and 10000000"));
            }
        }
        if !(0.0..=10_000.0).contains(&r.network_delay_ms) {
            return Err(invalid(
                "rtp.network_delay_ms",
                "must be between 0 and 10000",
            ));
        }
        if r.mirror_dup_window_us > 1_000_000 {
            return Err(invalid(
                "rtp.mirror_dup_window_us",
                "must be at most 1000000",
            ));
        }
        let mut jitter_buffers = Vec::new();
        for name in &r.jitter_buffers {
            let Some(m) = JbModel::from_name(name) else {
                return Err(invalid(
                    "rtp.jitter_buffers",
                    format!("unknown model {name:?} (known: fixed50, fixed200, adaptive)"),
                ));
            };
            if jitter_buffers.contains(&m) {
                return Err(invalid(
                    "rtp.jitter_buffers",
                    format!("{name:?} listed twice"),
                ));
            }
            jitter_buffers.push(m);
        }
        if jitter_buffers.is_empty() {
            return Err(invalid(
                "rtp.jitter_buffers",
                "must name at least one model",
            ));
        }
        let default_jitter_buffer = JbModel::from_name(&r.default_jitter_buffer)
            .filter(|m| jitter_buffers.contains(m))
            .ok_or_else(|| {
                invalid(
                    "rtp.default_jitter_buffer",
                    "must be one of rtp.jitter_buffers",
                )
            })?;
        if !(0.0..=95.0).contains(&r.unknown_codec_ie) {
            return Err(invalid("rtp.unknown_codec_ie", "must be between 0 and 95"));
        }
        if !(r.unknown_codec_bpl > 0.0 && r.unknown_codec_bpl <= 100.0) {
            return Err(invalid(
                "rtp.unknown_codec_bpl",
                "must be above 0 and at most 100",
            ));
        }
        if !(0.0..=4.0).contains(&r.compare_tolerance) {
            return Err(invalid("rtp.compare_tolerance", "must be between 0 and 4"));
        }
        let o = &self.output;
        if o.dir.as_os_str().is_empty() {
            return Err(invalid(
                "output.dir",
                "must not be empty (\".\" names the current directory)",
            ));
        }
        if o.rotate_secs == 0 {
            return Err(invalid("output.rotate_secs", "must be at least 1"));
        }
        if o.rotate_max_bytes < 1024 {
            return Err(invalid("output.rotate_max_bytes", "must be at least 1024"));
        }
        if !(1..=22).contains(&o.zstd_level) {
            return Err(invalid("output.zstd_level", "must be between 1 and 22"));
        }
        if o.row_group_rows == 0 {
            return Err(invalid("output.row_group_rows", "must be at least 1"));
        }
        Ok(Resolved {
            vnets,
            decode: self.decode.resolve()?,
            flows: FlowConfig {
                idle_timeout_secs: f.idle_timeout_secs,
                active_timeout_secs: f.active_timeout_secs,
                tcp_end_linger_secs: f.tcp_end_linger_secs,
                max_flows: f.max_flows,
                max_fragmented_datagrams: f.max_fragmented_datagrams,
            },
            bins: BinConfig {
                bin_secs: self.bins.bin_secs,
                max_open_bins: self.bins.max_open_bins,
            },
            rtp: RtpConfig {
                sip_ports: r.sip_ports.clone(),
                window_secs: r.window_secs,
                confirm_packets: r.confirm_packets,
                stream_idle_secs: r.stream_idle_secs,
                max_streams: r.max_streams,
                max_candidates: r.max_candidates,
                max_announced: r.max_announced,
                max_calls: r.max_calls,
                jitter_buffers,
                default_jitter_buffer,
                network_delay_ms: r.network_delay_ms,
                g711_plc: r.g711_plc,
                unknown_codec: Impairment::narrow(r.unknown_codec_ie, r.unknown_codec_bpl),
                codec_impairments: resolve_codec_impairments(&r.codec_impairments)?,
                dynamic_codecs: resolve_dynamic_codecs(&r.dynamic_codecs)?,
                mirror_dup_window_us: r.mirror_dup_window_us,
            },
            compare_tolerance: r.compare_tolerance,
            ids,
            rules,
            output: self.output.clone(),
            node,
            sources,
            ship,
        })
    }

    fn ship_settings(&self) -> Result<Option<ShipSettings>, ConfigError> {
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
            .map_err(|e| invalid("vnets", e.to_string()))?;
        self.source_settings(&mut map)?;
        Ok(map)
    }

    fn node_settings(&self) -> Result<NodeSettings, ConfigError> {
        let n = &self.node;
        if n.name.is_empty()
            || n.name.len() > 64
            || !n
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "node.name",
                "must be 1-64 characters of letters, digits, '-', '_' or '.'",
            ));
        }
        if n.workers == 0 || n.workers > 256 {
            return Err(invalid("node.workers", "must be between 1 and 256"));
        }
        if n.queue_batches == 0 || n.queue_batches > 65_536 {
            return Err(invalid("node.queue_batches", "must be between 1 and 65536"));
        }
        if n.batch_flush_ms == 0 || n.batch_flush_ms > 10_000 {
            return Err(invalid(
                "node.batch_flush_ms",
                "must be between 1 and 10000",
            ));
        }
        if n.tick_ms < 10 || n.tick_ms > 60_000 {
            return Err(invalid("node.tick_ms", "must be between 10 and 60000"));
        }
        if !(-20..=19).contains(&n.nice) {
            return Err(invalid("node.nice", "must be between -20 and 19"));
        }
        if !n.capture_cpus.is_empty() || !n.worker_cpus.is_empty() {
            let usable = usable_cpus();
            for (key, list) in [
                ("node.capture_cpus", &n.capture_cpus),
                ("node.worker_cpus", &n.worker_cpus),
            ] {
                if let Some(c) = list.iter().find(|c| !usable.contains(c)) {
                    return Err(invalid(
                        key,
                        format!(
                            "CPU {c} is not one this process may run on (usable: {})",
                            usable
                                .iter()
                                .map(usize::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        let listen = self.metrics.listen.trim();
        let metrics_listen = if listen.is_empty() {
            None
        } else {
            Some(listen.parse().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("{listen:?} is not an address:port like 127.0.0.1:9464"),
                )
            })?)
        };
        Ok(NodeSettings {
            name: n.name.clone(),
            workers: n.workers,
            queue_batches: n.queue_batches,
            batch_flush: std::time::Duration::from_millis(n.batch_flush_ms),
            tick: std::time::Duration::from_millis(n.tick_ms),
            nice: n.nice,
            capture_cpus: n.capture_cpus.clone(),
            worker_cpus: n.worker_cpus.clone(),
            metrics_listen,
        })
    }

    fn source_settings(&self, vnets: &mut VnetMap) -> Result<Vec<SourceSettings>, ConfigError> {
        let mut out: Vec<SourceSettings> = Vec::new();
        for s in &self.sources {
            let kind = match (&s.interface, &s.file) {
                (Some(i), None) if !i.is_empty() => SourceKind::Interface(i.clone()),
                (None, Some(f)) => {
                    if !(s.speed > 0.0 && s.speed <= 1_000_000.0) {
                        return Err(invalid("sources.speed", "must be above 0"));
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
            if !(64..=262_144).contains(&s.snaplen) {
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
                buffer_bytes: s.buffer_bytes,
                filter: s.filter.clone().filter(|f| !f.trim().is_empty()),
                precision: s.timestamp_precision,
                immediate: s.immediate,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
             alert http any any -> any any (msg:\"app\"; sid:2;)\n",
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
        ] {
            let c = NodeConfig::parse(&format!("[ids]\n{text}\n")).expect("parse");
            let e = c.resolve(None).expect_err(text).to_string();
            assert!(e.starts_with(&format!("config key {key}: ")), "{e}");
        }
    }

    #[test]
    fn cli_map_replaces_file_map() {
        let c = NodeConfig::parse("[vnets]\nmap = [\"100=A:production\"]\n").expect("parse");
        let r = c.resolve(Some("200=B:shadow")).expect("resolve");
        let names: Vec<_> = r.vnets.iter().map(|(_, v)| v.name.clone()).collect();
        assert_eq!(names, vec!["default", "B"]);
    }
}

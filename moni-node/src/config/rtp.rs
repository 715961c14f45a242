//! `[rtp]`: SIP/SDP and RTP stream analysis and scoring, validated into
//! [`RtpConfig`] (`rtp.compare_tolerance` goes to the comparer).

use analyzers::voip::codec::Impairment;
use analyzers::voip::jitter_buffer::Model as JbModel;
use analyzers::voip::RtpConfig;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// `[rtp]`: SIP/SDP and RTP stream analysis and scoring.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpSection {
    /// Ports carrying SIP, UDP or TCP. Default [5060]. SIP on other ports
    /// is found by its first line too.
    pub sip_ports: Vec<u16>,
    /// Scoring window in seconds of packet time. Default 10.
    pub window_secs: u32,
    /// In-sequence packets before an unannounced stream is believed. Default 4.
    pub confirm_packets: usize,
    /// A stream without packets this long ends. Default 30.
    pub stream_idle_secs: u64,
    /// Caps on streams, detection candidates, SDP endpoints and open calls.
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

impl RtpSection {
    /// Validates into the VoIP analyzer's settings.
    pub(super) fn resolve(&self) -> Result<RtpConfig, ConfigError> {
        let r = self;
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
        Ok(RtpConfig {
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
        })
    }
}

/// One `[rtp.codec_impairments]` entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
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

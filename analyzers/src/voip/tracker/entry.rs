//! One tracked stream (the statistics side of the tracker): its RFC 3550
//! counters ([`StreamStats`]), its jitter-buffer models, the mirror-copy
//! check, and how each packet's clock and codec are found within the
//! stream (rtpmap, static table, inferred clock).

use crate::record::{RtpStreamId, RtpWindowRecord, TunnelInfo};
use crate::voip::codec::Impairment;
use crate::voip::jitter_buffer::{JbCounters, JbPacket, JitterBuffers, Model, MODEL_COUNT};
use crate::voip::rtp::{self, RtpHeader};
use crate::voip::stream::{ArrivalNs, StreamStats};

use super::window::{close_window, snapshot, window_index, WindowStart};
use super::{RtpConfig, StreamKey};

#[derive(Debug)]
pub(super) struct Entry {
    /// The stream's key, which a lookup in the index compares.
    pub(super) key: StreamKey,
    pub(super) id: RtpStreamId,
    /// The tunnel of the stream's first packet (the record's columns).
    pub(super) tunnel: TunnelInfo,
    pub(super) rtpmap: Vec<(u8, String, u32)>,
    pub(super) stats: StreamStats,
    pub(super) impairment: Impairment,
    pub(super) window: WindowStart,
    /// The configured jitter-buffer models, by [`Model::index`].
    pub(super) jbs: JitterBuffers,
    /// The default model (falls back to the first configured one).
    pub(super) default_jb: Model,
    pub(super) mos_min: f64,
    pub(super) mos_weighted: f64,
    pub(super) mos_weight: f64,
    pub(super) mos_last: f64,
    /// Latest RTCP round trip for this stream, used for the delay.
    pub(super) rtt_ms: Option<f64>,
    /// The last packet, to recognise its mirror copy.
    pub(super) last: LastPacket,
    pub(super) mirror_duplicates: u64,
}

impl Entry {
    /// A stream starting with packet `h` at `at`, of clock `clock`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        key: StreamKey,
        id: RtpStreamId,
        rtpmap: Vec<(u8, String, u32)>,
        at: ArrivalNs,
        h: &RtpHeader,
        clock: Option<u32>,
        impairment: Impairment,
        config: &RtpConfig,
    ) -> Entry {
        let stats = StreamStats::new(at, h, clock);
        // The default model, or the first configured one.
        let default_jb = if config
            .jitter_buffers
            .contains(&config.default_jitter_buffer)
        {
            config.default_jitter_buffer
        } else {
            config
                .jitter_buffers
                .first()
                .copied()
                .unwrap_or(config.default_jitter_buffer)
        };
        Entry {
            key,
            rtpmap,
            window: WindowStart {
                index: window_index(at.timestamp(), config.window_secs),
                first_ext: Some(stats.extended_max()),
                pts: [(h.payload_type, 1), (0, 0), (0, 0), (0, 0)],
                max_jitter_ms: f64::NAN,
                max_delta_ms: f64::NAN,
                ..WindowStart::default()
            },
            id,
            jbs: JitterBuffers::new(&config.jitter_buffers),
            default_jb,
            impairment,
            stats,
            mos_min: f64::INFINITY,
            mos_weighted: 0.0,
            mos_weight: 0.0,
            mos_last: f64::NAN,
            rtt_ms: None,
            last: LastPacket::default(),
            mirror_duplicates: 0,
            tunnel: TunnelInfo::default(),
        }
    }
}

/// What identifies a packet's mirror copy: sequence, timestamp, payload
/// hash and arrival.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct LastPacket {
    pub(super) sequence: u16,
    pub(super) timestamp: u32,
    pub(super) hash: u64,
    pub(super) arrival_ns: i64,
}

impl LastPacket {
    pub(super) fn of(at: ArrivalNs, h: &RtpHeader, hash: u64) -> LastPacket {
        LastPacket {
            sequence: h.sequence,
            timestamp: h.timestamp,
            hash,
            arrival_ns: at.0,
        }
    }

    /// Whether `next` is this packet again within `window_us`.
    pub(super) fn is_mirrored_by(&self, next: &LastPacket, window_us: u64) -> bool {
        self.sequence == next.sequence
            && self.timestamp == next.timestamp
            && self.hash == next.hash
            && u64::try_from(next.arrival_ns - self.arrival_ns)
                .is_ok_and(|d| d <= window_us.saturating_mul(1000))
    }
}

/// The fingerprint of an RTP payload that tells a mirrored copy (the
/// same bytes) from another packet: its length and its first and last 8
/// bytes, mixed. It is compared only between two packets of one stream
/// with the same sequence number and timestamp within the mirror window,
/// so it need not read every byte, which every RTP packet would pay for
/// (a hash of the whole payload cost 70 instructions and two or three
/// cache lines per packet).
pub(super) fn payload_hash(payload: &[u8]) -> u64 {
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        for (d, s) in w.iter_mut().zip(b) {
            *d = *s;
        }
        u64::from_le_bytes(w)
    };
    let n = payload.len();
    let first = word(payload);
    let last = word(payload.get(n.saturating_sub(8)..).unwrap_or_default());
    let x = (first ^ last.rotate_left(31) ^ (n as u64).rotate_left(13))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

/// Counts one packet of a known stream.
pub(super) fn update_entry(
    e: &mut Entry,
    config: &RtpConfig,
    at: ArrivalNs,
    h: &RtpHeader,
    windows: &mut Vec<RtpWindowRecord>,
) {
    let index = window_index(at.timestamp(), config.window_secs);
    if index > e.window.index {
        close_window(e, config, windows);
        e.window = snapshot(e, index);
    }
    let clock = packet_clock(e, h.payload_type);
    e.stats.observe(at, h, clock);
    if let Some(slot) = e
        .window
        .pts
        .iter_mut()
        .find(|(pt, n)| *n == 0 || *pt == h.payload_type)
    {
        *slot = (h.payload_type, slot.1 + 1);
    }
    if let Some(d) = e.stats.last_regular_delta_ms {
        e.window.max_delta_ms = e.window.max_delta_ms.max(d);
        if packet_clock(e, e.id.payload_type).is_some() {
            // NaN (skipped by `max`) until the stream has a jitter sample.
            e.window.max_jitter_ms = e.window.max_jitter_ms.max(e.stats.jitter_or_nan());
        }
    }
    feed_jitter_buffers(e, at, h);
}

/// Codec name of a stream with a dynamic payload type and no SDP.
pub const DYNAMIC_CODEC: &str = "dynamic-PT";

/// Why a stream has no MOS.
pub const MOS_REASON_DYNAMIC: &str = "dynamic payload type without SDP: codec unknown";
pub const MOS_REASON_VIDEO: &str = "video: the E-model rates voice only";

pub(super) fn is_dynamic(pt: u8) -> bool {
    (96..=127).contains(&pt)
}

/// Gives one packet to every configured jitter-buffer model.
/// Telephone-event and comfort noise are never late.
pub(super) fn feed_jitter_buffers(e: &mut Entry, at: ArrivalNs, h: &RtpHeader) {
    let mut clock = packet_clock(e, h.payload_type);
    // Timestamps that run at another clock than announced would make every
    // packet late or early: the buffers follow the inferred clock.
    if h.payload_type == e.id.payload_type && e.stats.clock_mismatch() {
        clock = e.stats.inferred_clock();
    }
    let p = JbPacket {
        arrival_ns: at.0,
        timestamp: h.timestamp,
        sequence: h.sequence,
        marker: h.marker,
        clock_rate: clock,
        never_late: clock.is_none() || rtp::is_comfort_noise(h.payload_type),
    };
    e.jbs.push(&p);
}

/// Clock rate of a packet's payload type within its stream: the rtpmap's,
/// else the static table's; none for telephone-event (RFC 4733), whose
/// timestamps mark event starts rather than media time.
pub(super) fn packet_clock(e: &Entry, pt: u8) -> Option<u32> {
    if pt == e.id.payload_type {
        // A dynamic payload type without SDP: the clock once inferred.
        return e.stats.clock_rate.or_else(|| e.stats.inferred_clock());
    }
    match e.rtpmap.iter().find(|(p, _, _)| *p == pt) {
        Some((_, name, _)) if name.eq_ignore_ascii_case("telephone-event") => None,
        Some((_, _, rate)) => Some(*rate),
        None => rtp::static_clock_rate(pt),
    }
}

/// Encoding name of payload type `pt` within a stream: the rtpmap's, the
/// static table's, else `dynamic-PT` or `unknown`.
pub(super) fn codec_name(e: &Entry, pt: u8) -> String {
    if let Some((_, name, _)) = e.rtpmap.iter().find(|(p, _, _)| *p == pt) {
        return name.clone();
    }
    match rtp::static_codec_name(pt) {
        Some(n) => n.to_string(),
        None if is_dynamic(pt) => DYNAMIC_CODEC.to_string(),
        None => "unknown".to_string(),
    }
}

/// Cumulative counters of every model (zero for models not configured).
pub(super) fn jb_counters(e: &Entry) -> [JbCounters; MODEL_COUNT] {
    let mut c = [JbCounters::default(); MODEL_COUNT];
    for m in Model::ALL {
        if let Some(jb) = e.jbs.counters(m) {
            c[m.index()] = *jb;
        }
    }
    c
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::record::RtpWindowRecord;
    use crate::time::Timestamp;
    use crate::vnet::VnetId;

    pub(crate) fn header(pt: u8, seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc: 7,
            header_len: 12,
        }
    }

    pub(crate) const T0: i64 = 1_700_000_000_000_000;

    /// A PCMU stream announced with telephone-event on 101, first packet
    /// at T0.
    pub(crate) fn pcmu(config: &RtpConfig) -> Entry {
        let id = RtpStreamId {
            vnet: VnetId(0),
            ssrc: 7,
            src_addr: "10.0.0.1".parse().expect("addr"),
            src_port: 4000,
            dst_addr: "10.0.0.2".parse().expect("addr"),
            dst_port: 4002,
            payload_type: 0,
            codec: "PCMU".into(),
            call_id: None,
        };
        let map = vec![
            (0, "PCMU".into(), 8000),
            (101, "telephone-event".into(), 8000),
        ];
        let at = ArrivalNs::new(Timestamp(T0), 0);
        let key = StreamKey::of(
            id.vnet,
            id.src_addr,
            id.src_port,
            id.dst_addr,
            id.dst_port,
            id.ssrc,
        );
        Entry::new(
            key,
            id,
            map,
            at,
            &header(0, 0, 0),
            Some(8000),
            crate::voip::codec::G711_PLC,
            config,
        )
    }

    #[test]
    fn a_mirror_copy_is_the_same_packet_within_the_window() {
        let h = header(0, 5, 800);
        let at = |ns| ArrivalNs(T0 * 1000 + ns);
        let first = LastPacket::of(at(0), &h, 42);
        assert!(first.is_mirrored_by(&LastPacket::of(at(499_999), &h, 42), 500));
        assert!(first.is_mirrored_by(&LastPacket::of(at(500_000), &h, 42), 500));
        assert!(!first.is_mirrored_by(&LastPacket::of(at(500_001), &h, 42), 500));
        assert!(!first.is_mirrored_by(&LastPacket::of(at(10), &h, 43), 500));
        assert!(!first.is_mirrored_by(&LastPacket::of(at(-10), &h, 42), 500));
        assert_ne!(payload_hash(b"abc"), payload_hash(b"abd"));
        // Another length, another first or last word: another fingerprint.
        let p: Vec<u8> = (0..160u8).collect();
        let mut q = p.clone();
        q[159] ^= 1;
        assert_ne!(payload_hash(&p), payload_hash(&q));
        q = p.clone();
        q[0] ^= 1;
        assert_ne!(payload_hash(&p), payload_hash(&q));
        assert_ne!(payload_hash(&p), payload_hash(&p[..159]));
        assert_eq!(payload_hash(&p), payload_hash(&p.clone()));
        assert_ne!(payload_hash(b""), payload_hash(b"\0"));
    }

    #[test]
    fn each_payload_type_has_its_clock_and_codec() {
        let e = pcmu(&RtpConfig::default());
        assert_eq!(packet_clock(&e, 0), Some(8000));
        // Telephone-event timestamps mark event starts: no clock.
        assert_eq!(packet_clock(&e, 101), None);
        assert_eq!(packet_clock(&e, 8), Some(8000));
        assert_eq!(codec_name(&e, 101), "telephone-event");
        assert_eq!(codec_name(&e, 8), "PCMA");
        assert_eq!(codec_name(&e, 111), DYNAMIC_CODEC);
        assert_eq!(codec_name(&e, 77), "unknown");
        assert!(is_dynamic(96) && is_dynamic(127) && !is_dynamic(95));
        // The default model is the configured one, else the first listed.
        assert_eq!(e.default_jb, Model::Adaptive);
        let only = RtpConfig {
            jitter_buffers: vec![Model::Fixed200],
            ..RtpConfig::default()
        };
        assert_eq!(pcmu(&only).default_jb, Model::Fixed200);
    }

    #[test]
    fn packets_update_the_stream_and_close_windows() {
        let config = RtpConfig::default();
        let mut e = pcmu(&config);
        let mut windows: Vec<RtpWindowRecord> = Vec::new();
        // 12 s of 20 ms packets: the first 10 s window closes.
        for i in 1..600u16 {
            let at = ArrivalNs::new(Timestamp(T0 + i64::from(i) * 20_000), 0);
            update_entry(
                &mut e,
                &config,
                at,
                &header(0, i, 160 * u32::from(i)),
                &mut windows,
            );
        }
        assert_eq!(e.stats.packets, 600);
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].quality.packets_received, 500);
        assert_eq!(windows[0].quality.jb_discards, 0);
        let c = jb_counters(&e);
        assert_eq!(c.iter().map(|c| c.played).collect::<Vec<_>>(), [599; 3]);
    }
}

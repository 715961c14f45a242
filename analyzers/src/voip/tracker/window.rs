//! Scoring windows: a stream's counters at the start of each window of
//! packet time (`window_secs`), and the quality (loss, burst, E-model per
//! jitter-buffer model) of a window or of the stream's whole life.

use crate::record::{JbQuality, RtpQuality, RtpWindowRecord};
use crate::time::Timestamp;
use crate::voip::emodel::{self, Params};
use crate::voip::jitter_buffer::{JbCounters, Model, MODEL_COUNT};

use super::entry::{
    codec_name, jb_counters, Entry, DYNAMIC_CODEC, MOS_REASON_DYNAMIC, MOS_REASON_VIDEO,
};
use super::RtpConfig;
use crate::voip::rtp::is_video;

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct WindowStart {
    pub(super) index: i64,
    pub(super) packets: u64,
    pub(super) expected: i64,
    pub(super) duplicates: u64,
    pub(super) reordered: u64,
    pub(super) jb: [JbCounters; MODEL_COUNT],
    pub(super) runs: u64,
    pub(super) run_packets: u64,
    pub(super) max_jitter_ms: f64,
    pub(super) max_delta_ms: f64,
    /// First extended sequence number of a window (its loss runs are those
    /// at or after it); `None` for a stream's whole life.
    pub(super) first_ext: Option<i64>,
    /// Packets per payload type in the window (the first 4 types seen), for
    /// the window's codec.
    pub(super) pts: [(u8, u64); 4],
}

pub(super) fn window_index(ts: Timestamp, secs: u32) -> i64 {
    ts.secs_floor().div_euclid(i64::from(secs.max(1)))
}

pub(super) fn snapshot(e: &mut Entry, index: i64) -> WindowStart {
    let first_ext = e.stats.extended_max() + 1;
    e.stats.forget_runs_before(first_ext);
    WindowStart {
        first_ext: Some(first_ext),
        index,
        packets: e.stats.packets,
        expected: e.stats.expected(),
        duplicates: e.stats.duplicates,
        reordered: e.stats.reordered,
        jb: jb_counters(e),
        runs: e.stats.loss_runs,
        run_packets: e.stats.loss_run_packets,
        max_jitter_ms: f64::NAN,
        max_delta_ms: f64::NAN,
        pts: [(0, 0); 4],
    }
}

/// Quality since `from` (a window start, or the zero start for a whole life).
pub(super) fn quality(e: &Entry, from: &WindowStart, config: &RtpConfig) -> RtpQuality {
    let s = &e.stats;
    let received = s.packets - from.packets;
    let expected = s.expected() - from.expected;
    let lost = expected - received as i64;
    // A window's runs are those whose positions fall in it; a whole
    // life's are the settled RFC 3611 runs.
    let (runs, run_packets) = match from.first_ext {
        Some(first) => s.runs_since(first),
        None => (
            s.loss_runs - from.runs,
            s.loss_run_packets - from.run_packets,
        ),
    };
    // One-way network delay: half the RTCP round trip when known.
    let network = e.rtt_ms.map_or(config.network_delay_ms, |rtt| rtt / 2.0);
    let ratio = |discards: u64| {
        if expected > 0 {
            ((lost.max(0) as f64 + discards as f64) / expected as f64).clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let burst = |loss_ratio: f64| {
        if runs > 0 {
            (run_packets as f64 / runs as f64 * (1.0 - loss_ratio)).max(1.0)
        } else {
            1.0
        }
    };
    let score = |discards: u64, jb_delay_ms: f64| {
        let loss_ratio = ratio(discards);
        let burst_r = burst(loss_ratio);
        let base = Params {
            ie: e.impairment.ie,
            bpl: e.impairment.bpl,
            ppl_percent: loss_ratio * 100.0,
            burst_r,
            ..Params::default()
        };
        // Wideband codecs are rated on the G.107.1 scale.
        let rate = if e.impairment.wideband {
            emodel::rate_wideband
        } else {
            emodel::rate
        };
        let lq = rate(&base);
        let delay = network + jb_delay_ms + 20.0;
        let cq = rate(&base.with_one_way_delay(delay));
        (loss_ratio, burst_r, lq, cq, delay)
    };
    // No MOS without a codec: the E-model's Ie and Bpl are the codec's.
    let mos_reason = if e.id.codec == DYNAMIC_CODEC {
        Some(MOS_REASON_DYNAMIC)
    } else if is_video(e.stats.payload_type, &e.id.codec) {
        Some(MOS_REASON_VIDEO)
    } else {
        None
    };
    let score = |discards: u64, jb_delay_ms: f64| {
        let (loss_ratio, burst_r, mut lq, mut cq, delay) = score(discards, jb_delay_ms);
        if mos_reason.is_some() {
            (lq.mos, lq.r, cq.mos, cq.r) = (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
        }
        (loss_ratio, burst_r, lq, cq, delay)
    };
    let mut jb = [None; MODEL_COUNT];
    // Each model's score, which the default model's figures reuse (the
    // E-model is the costliest part of closing a window).
    let mut scored = [None; MODEL_COUNT];
    let now = jb_counters(e);
    for m in Model::ALL {
        if !e.jbs.has(m) {
            continue;
        }
        let i = m.index();
        let discards = now[i].discards - from.jb[i].discards;
        let delay_ms = now[i]
            .mean_delay_since(&from.jb[i])
            .unwrap_or(m.nominal_ms());
        let scores = score(discards, delay_ms);
        let (_, _, lq, cq, _) = scores;
        scored[i] = Some(scores);
        jb[i] = Some(JbQuality {
            discards,
            delay_ms,
            r_factor: cq.r,
            mos_lq: lq.mos,
            mos_cq: cq.mos,
        });
    }
    let d = e.default_jb;
    let default = jb[d.index()];
    let discards = default.map_or(0, |q| q.discards);
    let (loss_ratio, burst_r, lq, cq, delay) = scored[d.index()]
        .unwrap_or_else(|| score(discards, default.map_or(d.nominal_ms(), |q| q.delay_ms)));
    RtpQuality {
        packets_received: received,
        packets_expected: expected,
        packets_lost: lost,
        duplicates: s.duplicates - from.duplicates,
        reordered: s.reordered - from.reordered,
        jb_discards: discards,
        jitter_ms: s.jitter_or_nan(),
        jitter_max_ms: from.max_jitter_ms,
        max_delta_ms: from.max_delta_ms,
        loss_ratio,
        burst_r,
        r_factor: cq.r,
        mos_lq: lq.mos,
        mos_cq: cq.mos,
        one_way_delay_ms: delay,
        jitter_buffer: d.name(),
        jb,
        mos_reason,
    }
}

pub(super) fn close_window(e: &mut Entry, config: &RtpConfig, out: &mut Vec<RtpWindowRecord>) {
    if e.stats.packets == e.window.packets {
        return;
    }
    let q = quality(e, &e.window, config);
    let weight = f64::from(config.window_secs.max(1));
    // The minimum over models and windows.
    e.mos_min =
        q.jb.iter()
            .flatten()
            .fold(e.mos_min.min(q.mos_cq), |m, j| m.min(j.mos_cq));
    e.mos_weighted += q.mos_cq * weight;
    e.mos_weight += weight;
    e.mos_last = q.mos_cq;
    // The window's codec is the one that carried most of its packets.
    let mut id = e.id.clone();
    if let Some(&(pt, _)) = e.window.pts.iter().max_by_key(|(_, n)| *n) {
        if e.window.pts.iter().any(|(_, n)| *n > 0) && pt != id.payload_type {
            id.codec = codec_name(e, pt);
            id.payload_type = pt;
        }
    }
    out.push(RtpWindowRecord {
        id,
        window_start: Timestamp::from_secs(e.window.index * i64::from(config.window_secs.max(1))),
        window_secs: config.window_secs,
        quality: q,
        capture_drops: 0,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voip::stream::ArrivalNs;
    use crate::voip::tracker::entry::tests::{header, pcmu, T0};
    use crate::voip::tracker::entry::update_entry;

    #[test]
    fn windows_are_whole_multiples_of_their_length() {
        assert_eq!(window_index(Timestamp::from_secs(0), 10), 0);
        assert_eq!(window_index(Timestamp::from_secs(19), 10), 1);
        assert_eq!(window_index(Timestamp(-1), 10), -1);
        // A zero length is taken as 1 s, never a division by zero.
        assert_eq!(window_index(Timestamp::from_secs(7), 0), 7);
    }

    #[test]
    fn a_window_counts_only_its_own_loss() {
        let config = RtpConfig::default();
        let mut e = pcmu(&config);
        let mut out = Vec::new();
        // Window 0: every 10th packet lost; window 1: none lost.
        for i in 1..1000u16 {
            if i < 500 && i % 10 == 0 {
                continue;
            }
            let at = ArrivalNs::new(Timestamp(T0 + i64::from(i) * 20_000), 0);
            update_entry(
                &mut e,
                &config,
                at,
                &header(0, i, 160 * u32::from(i)),
                &mut out,
            );
        }
        e.stats.settle();
        close_window(&mut e, &config, &mut out);
        assert_eq!(out.len(), 2);
        let (w0, w1) = (&out[0].quality, &out[1].quality);
        assert_eq!((w0.packets_expected, w0.packets_lost), (500, 49));
        assert_eq!((w1.packets_expected, w1.packets_lost), (500, 0));
        assert!((w0.loss_ratio - 0.098).abs() < 1e-12);
        assert_eq!(w1.loss_ratio, 0.0);
        assert!(w1.mos_lq > w0.mos_lq);
        // The G.711 clean window scores the codec's ceiling (R 93.2 at no
        // delay: MOS-LQ 4.41).
        assert!((w1.mos_lq - 4.4094).abs() < 1e-3, "{}", w1.mos_lq);
        // The stream's life: the settled runs, the whole loss.
        let life = quality(&e, &WindowStart::default(), &config);
        assert_eq!(life.packets_lost, 49);
        assert!(e.mos_min <= w0.mos_cq);
    }
}

//! Stream detection: the candidate heuristic for RTP that no SDP
//! announced.
//!
//! A candidate is a stream key (VNet, addresses, ports, SSRC) whose packets
//! are kept until `confirm_packets` of them (a dynamic payload type: twice
//! as many, at least 8, of one payload type) step by one in sequence with
//! timestamps at most one second of 48 kHz apart, either way (video
//! timestamps step back where frames are sent out of display order); a
//! step that breaks this restarts the count. A dynamic payload type between
//! endpoints that already carry a stream (either direction: WebRTC bundles
//! audio, video and retransmissions on one port pair) needs only
//! `confirm_packets`. Only static payload types of known clock or dynamic
//! ones (96-127) qualify. The kept packets are replayed into the stream
//! when it is confirmed, so detection loses none. A repeat of the previous
//! packet within `mirror_dup_window_us` is a mirror copy, counted apart.
//!
//! Bounded: at most `max_candidates`; eviction takes the oldest but passes
//! over up to [`SPARE_STEPPED`] candidates that already stepped by one, so
//! a flood of one-packet candidates cannot starve real streams.

use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::voip::rtp::{self, RtpHeader};
use crate::voip::stream::ArrivalNs;

use super::entry::{is_dynamic, LastPacket};
use super::{RtpConfig, RtpStats, StreamKey};

#[derive(Debug, Default)]
pub(super) struct Candidate {
    pub(super) packets: Vec<(ArrivalNs, RtpHeader)>,
    pub(super) last: LastPacket,
    /// Mirror copies seen while a candidate (passed on to the stream).
    pub(super) mirrored: u64,
}

/// Stepped candidates an eviction may pass over before it takes one anyway.
pub(super) const SPARE_STEPPED: usize = 8;

/// The candidates, capped.
#[derive(Debug, Default)]
pub(super) struct Candidates {
    map: HashMap<StreamKey, Candidate, foldhash::fast::RandomState>,
    order: VecDeque<StreamKey>,
}

impl Candidates {
    /// Offers one packet of an unknown stream (ports already checked);
    /// returns the candidate, removed, once it is confirmed. `paired`
    /// tells whether the key's endpoints already carry a stream (asked
    /// only of a dynamic payload type with `confirm_packets` in sequence).
    #[expect(clippy::too_many_arguments, reason = "one packet and its context")]
    pub(super) fn offer(
        &mut self,
        key: StreamKey,
        at: ArrivalNs,
        h: RtpHeader,
        this: LastPacket,
        paired: impl FnOnce() -> bool,
        config: &RtpConfig,
        stats: &mut RtpStats,
    ) -> Option<Candidate> {
        // Dynamic payload types without SDP (WebRTC, SRTP, WhatsApp) are
        // believed after twice as many packets (at least 8) of one payload
        // type; their clock is inferred later.
        let dynamic = is_dynamic(h.payload_type);
        if !dynamic && rtp::static_clock_rate(h.payload_type).is_none() {
            return None;
        }
        let confirm_static = config.confirm_packets.max(1);
        let confirm = if dynamic {
            (2 * config.confirm_packets).max(8)
        } else {
            confirm_static
        };
        if !self.map.contains_key(&key) {
            if self.map.len() >= config.max_candidates {
                self.evict(stats);
            }
            self.map.insert(key, Candidate::default());
            self.order.push_back(key);
        }
        let c = self.map.get_mut(&key)?;
        if !c.packets.is_empty() && c.last.is_mirrored_by(&this, config.mirror_dup_window_us) {
            stats.mirror_duplicates += 1;
            c.mirrored += 1;
            return None;
        }
        c.last = this;
        let plausible = c.packets.last().is_none_or(|(_, prev)| {
            let ts_step = (h.timestamp.wrapping_sub(prev.timestamp) as i32).unsigned_abs();
            h.sequence == prev.sequence.wrapping_add(1)
                && ts_step <= 48_000
                && (!dynamic || h.payload_type == prev.payload_type)
        });
        if !plausible {
            c.packets.clear();
        }
        c.packets.push((at, h));
        let n = c.packets.len();
        if n >= confirm || (n >= confirm_static && paired()) {
            self.map.remove(&key)
        } else {
            None
        }
    }

    /// Evicts the oldest candidate, but spares (moves to the back) up to
    /// [`SPARE_STEPPED`] candidates that already stepped by one: a flood of
    /// one-packet candidates then cannot starve a real stream that needs a
    /// few more packets to be confirmed.
    fn evict(&mut self, stats: &mut RtpStats) {
        let mut spared = 0;
        while let Some(old) = self.order.pop_front() {
            match self.map.get(&old) {
                None => continue,
                Some(c) if c.packets.len() >= 2 && spared < SPARE_STEPPED => {
                    spared += 1;
                    self.order.push_back(old);
                }
                Some(_) => {
                    self.map.remove(&old);
                    stats.candidates_evicted += 1;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::key::Endpoint;
    use crate::time::Timestamp;
    use crate::vnet::VnetId;

    fn key(n: u16) -> StreamKey {
        StreamKey {
            vnet: VnetId(0),
            src: Endpoint::new("10.0.0.1".parse().expect("addr"), 40_000 + n),
            dst: Endpoint::new("10.0.0.2".parse().expect("addr"), 40_000),
            v6: false,
            ssrc: u32::from(n),
        }
    }

    fn header(pt: u8, seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc: 1,
            header_len: 12,
        }
    }

    /// Offers packet `seq` (20 ms spacing) of stream `n`.
    fn offer(
        c: &mut Candidates,
        config: &RtpConfig,
        stats: &mut RtpStats,
        n: u16,
        pt: u8,
        seq: u16,
    ) -> Option<Candidate> {
        let h = header(pt, seq, 160 * u32::from(seq));
        let at = ArrivalNs::new(Timestamp(1_000_000 + i64::from(seq) * 20_000), 0);
        c.offer(
            key(n),
            at,
            h,
            LastPacket::of(at, &h, u64::from(seq)),
            || false,
            config,
            stats,
        )
    }

    #[test]
    fn four_packets_in_sequence_confirm_a_static_payload_type() {
        let (mut c, cfg, mut st) = (
            Candidates::default(),
            RtpConfig::default(),
            RtpStats::default(),
        );
        for seq in 0..3 {
            assert!(offer(&mut c, &cfg, &mut st, 1, 0, seq).is_none());
        }
        let got = offer(&mut c, &cfg, &mut st, 1, 0, 3).expect("confirmed");
        assert_eq!(got.packets.len(), 4);
        assert!(c.map.is_empty());
        // A payload type of unknown clock is never a candidate.
        assert!(offer(&mut c, &cfg, &mut st, 2, 77, 0).is_none());
        assert!(c.map.is_empty());
    }

    #[test]
    fn a_dynamic_payload_type_needs_eight_and_a_break_restarts() {
        let (mut c, cfg, mut st) = (
            Candidates::default(),
            RtpConfig::default(),
            RtpStats::default(),
        );
        for seq in [0, 1, 2, 3, 4, 5, 6] {
            assert!(offer(&mut c, &cfg, &mut st, 1, 111, seq).is_none());
        }
        // A gap in the sequence starts the count again.
        for seq in 10..17 {
            assert!(offer(&mut c, &cfg, &mut st, 1, 111, seq).is_none(), "{seq}");
        }
        assert_eq!(
            offer(&mut c, &cfg, &mut st, 1, 111, 17).map(|c| c.packets.len()),
            Some(8)
        );
    }

    /// Offers packet `seq` of stream `n` with timestamp `ts`; `paired`
    /// answers whether its endpoints carry a stream.
    fn offer_ts(c: &mut Candidates, n: u16, pt: u8, seq: u16, ts: u32, paired: bool) -> usize {
        let h = header(pt, seq, ts);
        let at = ArrivalNs::new(Timestamp(1_000_000 + i64::from(seq) * 20_000), 0);
        let this = LastPacket::of(at, &h, u64::from(seq));
        let (cfg, mut st) = (RtpConfig::default(), RtpStats::default());
        match c.offer(key(n), at, h, this, || paired, &cfg, &mut st) {
            Some(got) => got.packets.len(),
            None => 0,
        }
    }

    #[test]
    fn video_timestamps_that_step_back_keep_the_count() {
        // Frames sent out of display order: timestamps 1.2 s, 1.17 s,
        // 1.15 s, 1.23 s... of a 90 kHz clock (`stopddos-amp` PT 102).
        let mut c = Candidates::default();
        let ts = [
            108_000, 105_120, 103_500, 101_970, 110_970, 110_970, 110_970, 112_140,
        ];
        for (i, t) in ts.iter().enumerate() {
            let got = offer_ts(&mut c, 1, 102, 57_153 + i as u16, *t, false);
            assert_eq!(got, if i == 7 { 8 } else { 0 }, "packet {i}");
        }
        // More than a second of 48 kHz back is a break.
        for (i, t) in [500_000u32, 400_000].iter().enumerate() {
            offer_ts(&mut c, 2, 0, i as u16, *t, false);
        }
        assert_eq!(c.map[&key(2)].packets.len(), 1);
    }

    #[test]
    fn a_dynamic_payload_type_beside_a_stream_needs_only_confirm_packets() {
        // WebRTC's bundle: a retransmission stream (PT 120, 6 packets)
        // on the port pair of a confirmed video stream.
        let mut c = Candidates::default();
        for seq in 0..3 {
            assert_eq!(offer_ts(&mut c, 1, 120, seq, 960 * u32::from(seq), true), 0);
        }
        assert_eq!(offer_ts(&mut c, 1, 120, 3, 2880, true), 4);
        // Alone, the same packets wait for 8.
        for seq in 0..7 {
            assert_eq!(
                offer_ts(&mut c, 2, 120, seq, 960 * u32::from(seq), false),
                0
            );
        }
        assert_eq!(offer_ts(&mut c, 2, 120, 7, 6720, false), 8);
        // A static payload type never asks.
        for seq in 0..3 {
            let h = header(0, seq, 160 * u32::from(seq));
            let at = ArrivalNs::new(Timestamp(1_000_000), 0);
            let this = LastPacket::of(at, &h, u64::from(seq));
            let (cfg, mut st) = (RtpConfig::default(), RtpStats::default());
            let asked = |_: ()| -> bool { panic!("asked for a static payload type") };
            assert!(c
                .offer(key(3), at, h, this, || asked(()), &cfg, &mut st)
                .is_none());
        }
    }

    #[test]
    fn a_mirror_copy_is_counted_not_kept() {
        let (mut c, cfg, mut st) = (
            Candidates::default(),
            RtpConfig::default(),
            RtpStats::default(),
        );
        assert!(offer(&mut c, &cfg, &mut st, 1, 0, 0).is_none());
        assert!(offer(&mut c, &cfg, &mut st, 1, 0, 0).is_none());
        assert_eq!(st.mirror_duplicates, 1);
        assert_eq!(c.map[&key(1)].mirrored, 1);
        assert_eq!(c.map[&key(1)].packets.len(), 1);
    }

    #[test]
    fn eviction_spares_candidates_that_stepped() {
        let cfg = RtpConfig {
            max_candidates: 4,
            ..RtpConfig::default()
        };
        let (mut c, mut st) = (Candidates::default(), RtpStats::default());
        // Stream 0 stepped once; then a flood of one-packet candidates.
        offer(&mut c, &cfg, &mut st, 0, 0, 0);
        offer(&mut c, &cfg, &mut st, 0, 0, 1);
        for n in 1..100 {
            offer(&mut c, &cfg, &mut st, n, 0, 0);
        }
        assert!(c.map.len() <= 4);
        assert_eq!(st.candidates_evicted, 96);
        assert!(
            c.map.contains_key(&key(0)),
            "the stepped candidate survives"
        );
        offer(&mut c, &cfg, &mut st, 0, 0, 2);
        assert!(offer(&mut c, &cfg, &mut st, 0, 0, 3).is_some());
    }
}

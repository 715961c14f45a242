//! Receiver statistics of one RTP stream (one SSRC in one direction), as
//! RFC 3550 defines them, computed on packet arrival time.
//!
//! - Sequence numbers follow appendix A.1: 16-bit wraparound counted in
//!   `cycles`; a jump of at least `MAX_DROPOUT` ahead or more than
//!   `MAX_MISORDER` behind is a candidate restart, confirmed when the next
//!   packet follows it (counted in `seq_resets`). The stream is created by a
//!   detector that already saw it in sequence, so there is no probation here.
//! - `expected` = extended highest sequence − base + 1 (A.3), summed over
//!   restarts; `lost` = expected − received, signed: duplicates make it
//!   negative.
//! - Duplicates are found with a bitmap of the last 512 sequence numbers;
//!   a packet behind the highest that was not seen is `reordered`.
//! - Interarrival jitter per A.8 with gain 1/16, in ms, computed as tshark's
//!   RTP analysis does (so tshark can judge it): every packet updates the
//!   jitter, but the maximum and the mean, like the max delta, only take
//!   "regular" packets: not the first, not marked, not comfort noise, and
//!   not right after comfort noise (a reordered packet is regular).
//!   The mean is tshark's: a running mean weighted by all packets after
//!   the first, updated on regular packets. The jitter is the voice's:
//!   packets whose payload type has no clock rate (RFC 4733
//!   telephone-event, whose timestamps repeat the event's start) move
//!   neither its media-time nor its arrival reference, so it is what
//!   tshark computes on the capture without them (`-Y '!rtpevent'`);
//!   the max delta takes every packet.
//! - A timestamp jump with a continuous sequence (the sequence moves on by
//!   less than 100, a few losses allowed, but the timestamp that goes backwards or runs more than
//!   `TS_JUMP_MS` ahead of the arrival time: a re-INVITE, a codec or fax
//!   switch, a restarted sender) starts a new jitter segment: no jitter
//!   sample is taken across it (`ts_jumps`).
//! - Payload-type changes are counted, and the clock is inferred from
//!   timestamp steps against arrival spacing over continuous steps of the
//!   stream's own payload type: the nearest of 8, 16, 32, 48 and 90 kHz
//!   within a factor 1.25, else unknown. A stream whose inferred clock
//!   differs from the announced one is a clock mismatch.

use std::collections::VecDeque;

use crate::time::Timestamp;
use crate::voip::rtp::{is_comfort_noise, RtpHeader};

const MAX_DROPOUT: u16 = 3000;
/// Settled loss runs remembered for windows.
const RUN_LOG_CAP: usize = 1024;
/// A packet's arrival at the capture's precision, ns since the epoch:
/// [`Timestamp`] is µs, but nanosecond captures (pcap nanosecond magic,
/// pcapng with `if_tsresol` 9, a live source in nanosecond mode) keep
/// their digits through the delta, jitter and jitter-buffer arithmetic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArrivalNs(pub i64);

impl ArrivalNs {
    /// A µs timestamp and the ns past it (0-999; more is clamped).
    pub fn new(ts: Timestamp, nanos: u16) -> ArrivalNs {
        ArrivalNs(
            ts.micros()
                .saturating_mul(1000)
                .saturating_add(i64::from(nanos.min(999))),
        )
    }

    /// The µs timestamp (rounded down).
    pub fn timestamp(self) -> Timestamp {
        Timestamp(self.0.div_euclid(1000))
    }
}

impl From<Timestamp> for ArrivalNs {
    fn from(ts: Timestamp) -> ArrivalNs {
        ArrivalNs::new(ts, 0)
    }
}

/// Media time running ahead of arrival time by more than this across one
/// sequence step is a timestamp jump, ms.
pub const TS_JUMP_MS: f64 = 1000.0;
/// Clock rates a timestamp clock is inferred to.
const CLOCKS: [u32; 5] = [8000, 16000, 32000, 48000, 90_000];
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: i64 = 1 << 16;
const WINDOW: i64 = 512;
/// RFC 3611 Gmin: losses separated by fewer received packets belong to
/// one burst.
pub const GMIN: u64 = 16;
/// Sequence numbers this far behind the highest are final for loss runs.
const REORDER_HORIZON: i64 = 100;

/// Statistics of one stream.
#[derive(Clone, Debug)]
pub struct StreamStats {
    pub payload_type: u8,
    /// RTP clock rate in Hz, when known (static PT or SDP rtpmap).
    pub clock_rate: Option<u32>,
    pub first_arrival: Timestamp,
    pub last_arrival: Timestamp,
    /// Packets received, duplicates included.
    pub packets: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub seq_resets: u64,
    /// Timestamp jumps with a continuous sequence (new jitter segments).
    pub ts_jumps: u64,
    /// Changes of payload type from one packet to the next.
    pub payload_type_changes: u64,
    /// Loss runs (consecutive missing sequence numbers), counted once the
    /// highest sequence is `REORDER_HORIZON` past them, so a packet that
    /// arrives late within that horizon is not counted as a loss: number of
    /// runs and packets in them.
    pub loss_runs: u64,
    pub loss_run_packets: u64,
    /// Histogram of loss-run lengths: 1, 2, 3, 4, 5-8, 9-16, 17+.
    pub loss_run_hist: [u64; 7],
    /// RFC 3611 §4.7.2 burst/gap split with Gmin 16 (settled positions):
    /// packets (received or lost) and losses in bursts and in gaps.
    pub bursts: u64,
    pub burst_packets: u64,
    pub burst_lost: u64,
    pub gap_packets: u64,
    pub gap_lost: u64,
    pub jitter_ms: f64,
    pub max_jitter_ms: f64,
    pub mean_jitter_ms: f64,
    pub max_delta_ms: f64,
    /// Arrival delta of the last packet if it was a regular one (see the
    /// module doc), for per-window maxima.
    pub last_regular_delta_ms: Option<f64>,
    // sequence state
    max_seq: u16,
    cycles: i64,
    base_ext: i64,
    max_ext: i64,
    expected_before_reset: i64,
    bad_seq: Option<u16>,
    seen: [u64; (WINDOW / 64) as usize],
    finalized: i64,
    open_run: u64,
    since_loss: u64,
    candidate: Option<(u64, u64)>,
    // timing state
    prev_arrival_ns: i64,
    /// Media time and arrival of the last packet with a known clock (the
    /// jitter's references), the clocked packets so far and whether the
    /// last of them was comfort noise: the jitter is the voice's, as
    /// tshark computes it on the capture without the telephone-event
    /// packets.
    prev_ts: u32,
    /// Jitter updates, and regular ones (the mean's), so far: none means
    /// no jitter was computed (no clock, or every packet irregular).
    jitter_samples: u64,
    mean_jitter_samples: u64,
    prev_clocked_ns: i64,
    clocked_packets: u64,
    prev_clocked_cn: bool,
    has_clocked: bool,
    prev_cn: bool,
    last_pt: u8,
    /// Last packet of the stream's own payload type (sequence, timestamp,
    /// arrival ns), and the sums of continuous steps for the clock.
    own_last: (u16, u32, i64),
    clock_units: f64,
    clock_secs: f64,
    clock_steps: u64,
    /// [`StreamStats::inferred_clock`], updated on each continuous step
    /// (read per packet by the jitter buffers).
    inferred: Option<u32>,
    /// Settled loss runs (first position, length), newest last, for the
    /// per-window burst ratio; capped.
    run_log: VecDeque<(i64, u64)>,
}

impl StreamStats {
    /// Starts a stream with its first packet.
    pub fn new(
        arrival: impl Into<ArrivalNs>,
        h: &RtpHeader,
        clock_rate: Option<u32>,
    ) -> StreamStats {
        let ns = arrival.into();
        let arrival = ns.timestamp();
        let mut s = StreamStats {
            payload_type: h.payload_type,
            clock_rate,
            first_arrival: arrival,
            last_arrival: arrival,
            packets: 1,
            duplicates: 0,
            reordered: 0,
            seq_resets: 0,
            loss_runs: 0,
            loss_run_packets: 0,
            loss_run_hist: [0; 7],
            bursts: 0,
            burst_packets: 0,
            burst_lost: 0,
            gap_packets: 0,
            gap_lost: 0,
            jitter_ms: 0.0,
            // NaN until a regular packet gives a sample (`max` skips NaN):
            // the datasets write null, as tshark prints no figure.
            max_jitter_ms: f64::NAN,
            mean_jitter_ms: 0.0,
            max_delta_ms: f64::NAN,
            jitter_samples: 0,
            mean_jitter_samples: 0,
            last_regular_delta_ms: None,
            max_seq: h.sequence,
            cycles: 0,
            base_ext: i64::from(h.sequence),
            max_ext: i64::from(h.sequence),
            expected_before_reset: 0,
            bad_seq: None,
            seen: [0; (WINDOW / 64) as usize],
            finalized: i64::from(h.sequence) - 1,
            open_run: 0,
            since_loss: 0,
            candidate: None,
            prev_arrival_ns: ns.0,
            prev_ts: h.timestamp,
            prev_clocked_ns: ns.0,
            clocked_packets: u64::from(clock_rate.is_some()),
            prev_clocked_cn: is_comfort_noise(h.payload_type),
            has_clocked: clock_rate.is_some(),
            prev_cn: is_comfort_noise(h.payload_type),
            ts_jumps: 0,
            payload_type_changes: 0,
            last_pt: h.payload_type,
            own_last: (h.sequence, h.timestamp, ns.0),
            clock_units: 0.0,
            clock_secs: 0.0,
            clock_steps: 0,
            inferred: None,
            run_log: VecDeque::new(),
        };
        s.mark_seen(s.max_ext);
        s
    }

    /// The clock the timestamps run at, from at least 20 continuous steps
    /// over at least a second: the nearest of 8, 16, 32, 48 and 90 kHz
    /// within a factor 1.25, else `None` (unknown or not yet known).
    pub fn inferred_clock(&self) -> Option<u32> {
        self.inferred
    }

    /// Computes [`StreamStats::inferred_clock`]: the nearest clock by
    /// ratio (max(r/c, c/r), which orders as |ln(r/c)| does, without a
    /// logarithm per packet).
    fn infer_clock(&self) -> Option<u32> {
        if self.clock_steps < 20 || self.clock_secs < 1.0 {
            return None;
        }
        let rate = self.clock_units / self.clock_secs;
        // Within a factor 1.12 of the clock already inferred, that clock is
        // still the nearest (neighbouring clocks are a factor 1.5 or more
        // apart, so the nearest changes only beyond a factor 1.22) and
        // within 1.25: no search.
        if let Some(c) = self.inferred {
            let c = f64::from(c);
            if rate < c * 1.12 && rate * 1.12 > c {
                return self.inferred;
            }
        }
        let (best, ratio) = CLOCKS
            .iter()
            .map(|&c| {
                let c_f = f64::from(c);
                (c, if rate > c_f { rate / c_f } else { c_f / rate })
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        (ratio < 1.25).then_some(best)
    }

    /// The inferred clock contradicts the announced (or static) one.
    pub fn clock_mismatch(&self) -> bool {
        match (self.clock_rate, self.inferred_clock()) {
            (Some(announced), Some(inferred)) => announced != inferred,
            _ => false,
        }
    }

    /// Loss runs whose positions fall at or after extended sequence
    /// `from` (a window's first position): settled runs from the log, the
    /// open run, and the runs not yet settled in the reorder horizon as
    /// they stand. A run crossing `from` counts with its part after it.
    /// Returns (runs, lost packets in them).
    pub fn runs_since(&self, from: i64) -> (u64, u64) {
        let (mut runs, mut packets) = (0u64, 0u64);
        for &(start, len) in self.run_log.iter().rev() {
            let end = start + len as i64;
            if end <= from {
                break;
            }
            runs += 1;
            packets += (end - start.max(from)) as u64;
        }
        let open_start = self.finalized + 1 - self.open_run as i64;
        let mut cur = (self.finalized + 1 - open_start.max(from)).max(0) as u64;
        for e in self.finalized + 1..=self.max_ext {
            if self.is_seen(e) {
                if cur > 0 {
                    runs += 1;
                    packets += cur;
                }
                cur = 0;
            } else if e >= from {
                cur += 1;
            }
        }
        (runs, packets)
    }

    /// Drops logged runs that end before `from` (no window needs them).
    pub fn forget_runs_before(&mut self, from: i64) {
        while self
            .run_log
            .front()
            .is_some_and(|&(start, len)| start + len as i64 <= from)
        {
            self.run_log.pop_front();
        }
    }

    /// Packets expected from the sequence numbers (A.3).
    pub fn expected(&self) -> i64 {
        self.expected_before_reset + self.max_ext - self.base_ext + 1
    }

    /// expected − received; negative with duplicates.
    pub fn lost(&self) -> i64 {
        self.expected() - self.packets as i64
    }

    /// Extended highest sequence number received.
    pub fn extended_max(&self) -> i64 {
        self.max_ext
    }

    /// Counts one more packet of the stream. `clock` is the clock rate of
    /// this packet's payload type: `None` (e.g. telephone-event, as tshark
    /// treats it) leaves the jitter and its media-time reference alone.
    pub fn observe(&mut self, arrival: impl Into<ArrivalNs>, h: &RtpHeader, clock: Option<u32>) {
        let ns = arrival.into().0;
        let arrival = ArrivalNs(ns).timestamp();
        self.packets += 1;
        self.last_arrival = self.last_arrival.max(arrival);
        // A few packets may be lost at the jump itself.
        let continuous = (1..MAX_MISORDER).contains(&h.sequence.wrapping_sub(self.max_seq));
        self.observe_seq(h.sequence);
        if h.payload_type != self.last_pt {
            self.payload_type_changes += 1;
            self.last_pt = h.payload_type;
        }
        if h.payload_type == self.payload_type {
            let (seq, ts, at) = self.own_last;
            let units = h.timestamp.wrapping_sub(ts) as i32;
            let secs = (ns - at) as f64 / 1e9;
            // Continuous steps only, and not a jump (< 2 s of 90 kHz).
            if h.sequence == seq.wrapping_add(1) && units > 0 && units < 180_000 && secs > 0.0 {
                self.clock_units += f64::from(units);
                self.clock_secs += secs;
                self.clock_steps += 1;
                self.inferred = self.infer_clock();
            }
            self.own_last = (h.sequence, h.timestamp, ns);
        }

        // Timing, in arrival order (see the module doc).
        let delta_ms = (ns - self.prev_arrival_ns) as f64 / 1e6;
        let cn = is_comfort_noise(h.payload_type);
        if let Some(rate) = clock.filter(|r| *r > 0) {
            // The jitter: clocked packets only, each against the previous
            // clocked one (a telephone-event packet in between moves
            // neither reference).
            let clocked_delta_ms = (ns - self.prev_clocked_ns) as f64 / 1e6;
            if self.has_clocked {
                let ts_diff = h.timestamp.wrapping_sub(self.prev_ts) as i32;
                let nominal_ms = f64::from(ts_diff) * 1000.0 / f64::from(rate);
                if continuous && (ts_diff < 0 || nominal_ms - clocked_delta_ms > TS_JUMP_MS) {
                    self.ts_jumps += 1;
                } else {
                    let d = (clocked_delta_ms - nominal_ms).abs();
                    self.jitter_ms = (15.0 * self.jitter_ms + d) / 16.0;
                    self.jitter_samples += 1;
                }
                // tshark flags a backwards timestamp only on marked
                // packets, which are irregular anyway; a reordered packet
                // stays regular.
                if !h.marker && !cn && !self.prev_clocked_cn {
                    self.max_jitter_ms = self.max_jitter_ms.max(self.jitter_ms);
                    // tshark's running mean: weighted by all (clocked)
                    // packets after the first, updated on regular ones.
                    let n = (self.clocked_packets - 1) as f64;
                    self.mean_jitter_ms = (self.mean_jitter_ms * n + self.jitter_ms) / (n + 1.0);
                    self.mean_jitter_samples += 1;
                }
            }
            self.has_clocked = true;
            self.prev_ts = h.timestamp;
            self.prev_clocked_ns = ns;
            self.clocked_packets += 1;
            self.prev_clocked_cn = cn;
        }
        // The arrival delta: every packet.
        let regular = !h.marker && !cn && !self.prev_cn;
        self.last_regular_delta_ms = regular.then_some(delta_ms);
        if regular {
            self.max_delta_ms = self.max_delta_ms.max(delta_ms);
        }
        self.prev_cn = cn;
        self.prev_arrival_ns = ns;
    }

    /// The jitter, NaN when none was computed.
    pub fn jitter_or_nan(&self) -> f64 {
        if self.jitter_samples == 0 {
            f64::NAN
        } else {
            self.jitter_ms
        }
    }

    /// tshark's mean jitter, NaN when no regular packet gave a sample.
    pub fn mean_jitter_or_nan(&self) -> f64 {
        if self.mean_jitter_samples == 0 {
            f64::NAN
        } else {
            self.mean_jitter_ms
        }
    }

    fn observe_seq(&mut self, seq: u16) {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta == 0 {
            self.duplicates += 1;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += SEQ_MOD;
            }
            self.max_seq = seq;
            self.advance_to(self.cycles + i64::from(seq));
            self.bad_seq = None;
        } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
            // A big jump: restart only if the next packet confirms it.
            if self.bad_seq == Some(seq) {
                // The previous packet (seq - 1) announced the restart: the
                // new segment starts there.
                self.seq_resets += 1;
                self.finalize_to(self.max_ext);
                self.expected_before_reset += self.max_ext - self.base_ext + 1;
                self.cycles = 0;
                self.max_seq = seq;
                self.base_ext = i64::from(seq) - 1;
                self.max_ext = i64::from(seq);
                self.seen = [0; (WINDOW / 64) as usize];
                self.mark_seen(self.base_ext);
                self.mark_seen(self.max_ext);
                self.finalized = self.base_ext - 1;
                self.bad_seq = None;
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
            }
        } else {
            // Behind the highest: a late (reordered) packet or a duplicate.
            let wrap = if seq > self.max_seq { SEQ_MOD } else { 0 };
            let ext = self.cycles + i64::from(seq) - wrap;
            if ext <= self.max_ext - WINDOW || ext < self.base_ext {
                self.reordered += 1;
            } else if self.is_seen(ext) {
                self.duplicates += 1;
            } else {
                self.reordered += 1;
                self.mark_seen(ext);
            }
        }
    }

    /// A new highest extended sequence number.
    fn advance_to(&mut self, ext: i64) {
        let gap = ext - self.max_ext - 1;
        if gap + 1 >= WINDOW {
            // The bitmap cannot hold the gap: settle everything before it.
            self.finalize_to(self.max_ext);
            self.open_run += gap as u64;
            self.finalized = ext - 1;
            self.seen = [0; (WINDOW / 64) as usize];
        } else {
            for e in self.max_ext + 1..ext {
                self.clear_seen(e);
            }
        }
        self.max_ext = ext;
        self.mark_seen(ext);
        self.finalize_to(ext - REORDER_HORIZON);
    }

    /// Settles loss runs up to `upto` (inclusive) from the bitmap.
    fn finalize_to(&mut self, upto: i64) {
        for e in self.finalized + 1..=upto {
            if self.is_seen(e) {
                self.close_run(e);
                self.burst_gap_received();
            } else {
                self.open_run += 1;
                self.burst_gap_lost();
            }
        }
        self.finalized = self.finalized.max(upto);
    }

    /// Closes the open loss run, which ends just before position `after`.
    fn close_run(&mut self, after: i64) {
        let run = self.open_run;
        if run == 0 {
            return;
        }
        self.open_run = 0;
        if self.run_log.len() >= RUN_LOG_CAP {
            self.run_log.pop_front();
        }
        self.run_log.push_back((after - run as i64, run));
        self.loss_runs += 1;
        self.loss_run_packets += run;
        let bucket = match run {
            1..=4 => (run - 1) as usize,
            5..=8 => 4,
            9..=16 => 5,
            _ => 6,
        };
        self.loss_run_hist[bucket] += 1;
    }

    /// Settles every loss run (end of the stream): packets arriving later
    /// still count as received or reordered.
    pub fn settle(&mut self) {
        self.finalize_to(self.max_ext);
        self.close_run(self.finalized + 1);
        self.close_candidate();
        self.gap_packets += self.since_loss;
        self.since_loss = 0;
    }

    /// A lost position: it joins the open candidate burst if fewer than
    /// Gmin packets arrived since the last loss, else opens one (the
    /// received packets before it were gap).
    fn burst_gap_lost(&mut self) {
        match self.candidate.as_mut() {
            Some((packets, lost)) => {
                *packets += self.since_loss + 1;
                *lost += 1;
            }
            None => {
                self.gap_packets += self.since_loss;
                self.candidate = Some((1, 1));
            }
        }
        self.since_loss = 0;
    }

    fn burst_gap_received(&mut self) {
        self.since_loss += 1;
        if self.since_loss == GMIN {
            self.close_candidate();
        }
    }

    /// A candidate with two or more losses is a burst; a lone loss is a
    /// gap loss.
    fn close_candidate(&mut self) {
        if let Some((packets, lost)) = self.candidate.take() {
            if lost >= 2 {
                self.bursts += 1;
                self.burst_packets += packets;
                self.burst_lost += lost;
            } else {
                self.gap_packets += packets;
                self.gap_lost += lost;
            }
        }
    }

    /// Fraction of packets lost within bursts and within gaps (RFC 3611).
    pub fn burst_gap_density(&self) -> (f64, f64) {
        let d = |lost: u64, packets: u64| {
            if packets == 0 {
                0.0
            } else {
                lost as f64 / packets as f64
            }
        };
        (
            d(self.burst_lost, self.burst_packets),
            d(self.gap_lost, self.gap_packets),
        )
    }

    fn slot(ext: i64) -> (usize, u64) {
        let i = ext.rem_euclid(WINDOW) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    fn mark_seen(&mut self, ext: i64) {
        let (w, bit) = Self::slot(ext);
        self.seen[w] |= bit;
    }

    fn clear_seen(&mut self, ext: i64) {
        let (w, bit) = Self::slot(ext);
        self.seen[w] &= !bit;
    }

    fn is_seen(&self, ext: i64) -> bool {
        let (w, bit) = Self::slot(ext);
        self.seen[w] & bit != 0
    }

    /// RFC 3611 / G.107 burst ratio: mean observed loss-run length over the
    /// mean expected for random loss at the same rate; 1 without loss,
    /// never below 1.
    pub fn burst_ratio(&self) -> f64 {
        let expected = self.expected();
        if self.loss_runs == 0 || expected <= 0 {
            return 1.0;
        }
        let ppl = (self.loss_run_packets as f64 / expected as f64).min(1.0);
        let mean_run = self.loss_run_packets as f64 / self.loss_runs as f64;
        (mean_run * (1.0 - ppl)).max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc: 1,
            header_len: 12,
        }
    }

    #[test]
    fn nanosecond_arrivals_keep_their_digits() {
        let t0 = Timestamp(1_700_000_000_000_000);
        let mut s = StreamStats::new(ArrivalNs::new(t0, 0), &h(0, 0), Some(8000));
        s.observe(
            ArrivalNs::new(Timestamp(t0.0 + 20_000), 503),
            &h(1, 160),
            Some(8000),
        );
        assert!(
            (s.max_delta_ms - 20.000_503).abs() < 1e-12,
            "{}",
            s.max_delta_ms
        );
        assert!((s.jitter_ms - 0.000_503 / 16.0).abs() < 1e-12);
        assert_eq!(s.last_arrival, Timestamp(t0.0 + 20_000));
        assert_eq!(ArrivalNs::new(t0, 5000).0 % 1000, 999);
    }

    /// Feeds packets (seq, arrival ms), timestamps 160 per sequence number.
    fn run(pkts: &[(u16, f64)]) -> StreamStats {
        let at = |ms: f64| Timestamp((ms * 1000.0) as i64);
        let ts = |seq: u16| u32::from(seq).wrapping_mul(160);
        let mut s = StreamStats::new(at(pkts[0].1), &h(pkts[0].0, ts(pkts[0].0)), Some(8000));
        for &(seq, ms) in &pkts[1..] {
            s.observe(at(ms), &h(seq, ts(seq)), Some(8000));
        }
        s
    }

    #[test]
    fn telephone_events_between_voice_packets_leave_the_jitter_alone() {
        // Voice every 20 ms on time; after packet 50 a digit of 8 event
        // packets (no clock: their timestamps repeat the event's start)
        // takes sequence numbers 51-58, arriving at odd moments; voice
        // resumes at 59 with its timestamps moved on by the digit.
        let at = |ms: f64| Timestamp((ms * 1000.0) as i64);
        let mut s = StreamStats::new(at(0.0), &h(0, 0), Some(8000));
        for i in 1..100u16 {
            let ms = f64::from(i) * 20.0;
            if (51..59).contains(&i) {
                let event = RtpHeader {
                    payload_type: 101,
                    ..h(i, 160 * 51)
                };
                s.observe(at(ms + 7.0), &event, None);
            } else {
                s.observe(at(ms), &h(i, 160 * u32::from(i)), Some(8000));
            }
        }
        assert_eq!(s.max_jitter_ms, 0.0, "{s:?}");
        assert_eq!((s.mean_jitter_ms, s.ts_jumps), (0.0, 0));
        // The arrival deltas take every packet: 20 + 7 ms into the digit.
        assert!((s.max_delta_ms - 27.0).abs() < 1e-9, "{}", s.max_delta_ms);
    }

    #[test]
    fn a_timestamp_reset_with_continuous_sequence_is_a_new_segment() {
        // 100 packets, then the timestamp restarts at 0 (seq continuous).
        let at = |ms: f64| Timestamp((ms * 1000.0) as i64);
        let mut s = StreamStats::new(at(0.0), &h(0, 3_000_000_000), Some(8000));
        for i in 1..200u16 {
            let ts = if i < 100 {
                3_000_000_000 + 160 * u32::from(i)
            } else {
                160 * u32::from(i - 100)
            };
            s.observe(at(f64::from(i) * 20.0), &h(i, ts), Some(8000));
        }
        assert_eq!(s.ts_jumps, 1);
        assert!(
            s.jitter_ms < 1e-9 && s.max_jitter_ms < 1e-9,
            "{}",
            s.max_jitter_ms
        );
        assert_eq!(s.inferred_clock(), Some(8000));
        assert!(!s.clock_mismatch());
    }

    #[test]
    fn a_16_khz_stream_announced_at_8_khz_is_a_clock_mismatch() {
        let at = |ms: f64| Timestamp((ms * 1000.0) as i64);
        let mut s = StreamStats::new(at(0.0), &h(0, 0), Some(8000));
        for i in 1..100u16 {
            s.observe(
                at(f64::from(i) * 20.0),
                &h(i, 320 * u32::from(i)),
                Some(8000),
            );
        }
        assert_eq!(s.inferred_clock(), Some(16000));
        assert!(s.clock_mismatch());
        assert_eq!(s.ts_jumps, 0);
        assert_eq!(s.payload_type_changes, 0);
    }

    #[test]
    fn clean_stream_has_no_loss_and_no_jitter() {
        let pkts: Vec<_> = (0..100u16).map(|i| (i, f64::from(i) * 20.0)).collect();
        let s = run(&pkts);
        assert_eq!((s.packets, s.expected(), s.lost()), (100, 100, 0));
        assert!(s.jitter_ms.abs() < 1e-9);
        assert!((s.max_delta_ms - 20.0).abs() < 1e-9);
    }

    #[test]
    fn wraparound_loss_duplicates_and_reordering() {
        // 65530..65535, 0..9 with 2 and 3 lost, 5 duplicated, 8 and 7 swapped.
        let mut seqs: Vec<u16> = (65530..=65535).collect();
        seqs.extend([0, 1, 4, 5, 5, 6, 8, 7, 9]);
        let pkts: Vec<_> = seqs
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, i as f64 * 20.0))
            .collect();
        let mut s = run(&pkts);
        s.settle();
        assert_eq!(s.expected(), 16);
        assert_eq!(s.packets, 15);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.lost(), 1, "2 lost, minus 1 duplicate");
        assert_eq!(s.loss_runs, 1);
        assert_eq!(s.loss_run_hist[1], 1, "one run of two");
        assert_eq!(s.extended_max(), 65536 + 9);
    }

    #[test]
    fn burst_and_gap_follow_gmin() {
        // 200 packets: a lone loss at 20 (gap), losses at 100, 105, 110
        // (one burst: 11 positions, 3 lost), the rest received.
        let lost = [20u16, 100, 105, 110];
        let pkts: Vec<_> = (0..200u16)
            .filter(|i| !lost.contains(i))
            .map(|i| (i, f64::from(i) * 20.0))
            .collect();
        let mut s = run(&pkts);
        s.settle();
        assert_eq!(s.bursts, 1);
        assert_eq!((s.burst_packets, s.burst_lost), (11, 3));
        assert_eq!((s.gap_packets, s.gap_lost), (189, 1));
        let (bd, gd) = s.burst_gap_density();
        assert!((bd - 3.0 / 11.0).abs() < 1e-12);
        assert!((gd - 1.0 / 189.0).abs() < 1e-12);
    }

    #[test]
    fn confirmed_jump_is_a_restart() {
        let s = run(&[
            (10, 0.0),
            (11, 20.0),
            (40_000, 40.0),
            (40_001, 60.0),
            (40_002, 80.0),
        ]);
        assert_eq!(s.seq_resets, 1);
        assert_eq!(s.expected(), 5);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn jitter_follows_a8() {
        // Every other packet 5 ms late: D alternates 5 and 5 (both edges).
        let pkts: Vec<_> = (0..200u16)
            .map(|i| (i, f64::from(i) * 20.0 + if i % 2 == 1 { 5.0 } else { 0.0 }))
            .collect();
        let s = run(&pkts);
        // J converges to 5 ms.
        assert!((s.jitter_ms - 5.0).abs() < 0.01, "{}", s.jitter_ms);
        assert!((s.max_delta_ms - 25.0).abs() < 1e-9);
    }

    #[test]
    fn burst_ratio_is_one_for_single_losses_and_more_for_bursts() {
        let single: Vec<_> = (0..100u16)
            .filter(|i| i % 10 != 5)
            .map(|i| (i, f64::from(i) * 20.0))
            .collect();
        let settled = |p: &[(u16, f64)]| {
            let mut s = run(p);
            s.settle();
            s
        };
        assert!((settled(&single).burst_ratio() - 1.0).abs() < 1e-9);
        let burst: Vec<_> = (0..100u16)
            .filter(|i| !(40..50).contains(i))
            .map(|i| (i, f64::from(i) * 20.0))
            .collect();
        assert!(settled(&burst).burst_ratio() > 8.0);
    }
}

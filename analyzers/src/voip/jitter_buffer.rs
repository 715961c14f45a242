//! Emulated receiver jitter buffers: each model decides, packet by packet,
//! whether a real receiver with that buffer would have played the packet
//! or discarded it as late, and how long played packets were delayed
//! (from the fastest recent packet's transit to the playout point: the
//! wait plus the packet's own jitter).
//!
//! Why several: a passive probe does not know the receiver's buffer, and
//! the answer to "was this packet late" depends on it entirely. Like
//! VoIPmonitor (fixed 50 ms, fixed 200 ms, adaptive up to 500 ms; see the
//! voice-quality reference), every stream feeds every configured model and
//! each model gets its own loss, delay and MOS.
//!
//! All models work on the *transit* of a packet, `n = arrival − media
//! time` in ms (media time = unwrapped RTP timestamp / clock rate), which is
//! the one-way delay up to an unknown constant. A buffer holds a *playout
//! point* `P` on that scale: a packet with `n ≤ P` is played after waiting
//! `P − n`; a packet with `n > P` arrives after its playout moment and is a
//! late discard.
//!
//! Re-anchoring: the buffer restarts its playout point at the current
//! packet (counted in `resyncs`). *Soft* re-anchors keep what the model
//! learnt about the path; *hard* ones restart the transit scale.
//! - soft: a talkspurt start (marker bit); a media-time gap (timestamp
//!   step) longer than the model's resync threshold (silence without a
//!   marker, or a loss burst); a wrap of the 32-bit timestamp (the
//!   timestamp is unwrapped, so the transit is continuous across it, and
//!   the anchor there changes nothing for a receiver that unwraps);
//! - hard: the first packet; a change of the clock rate (payload type
//!   change to another clock); a transit step between consecutive
//!   packets larger than the resync threshold — a timestamp discontinuity
//!   (reset, re-INVITE, codec or fax switch with a continuous sequence) or
//!   a stall; a packet later than the playout point by more than the
//!   resync threshold.
//!
//! Between anchors, a fixed buffer settles on the fastest packet of its
//! segment (`P = min n + size`), so a burst after a stall drains into it
//! instead of holding the delay of the stall.
//!
//! Packets that are never late: telephone-event (RFC 4733; its timestamp
//! is the event start, repeated) and comfort noise (RFC 3389), and any
//! packet whose clock is unknown. They are counted as `exempt` and leave
//! the timing state alone.
//!
//! The 32-bit timestamp and the 16-bit sequence are unwrapped: packets
//! behind the highest sequence (reordered) are judged against the playout
//! point but do not move the transit reference. A stream's models share
//! that work: [`JitterBuffers`] unwraps a packet and computes its transit
//! once, and each model only judges it (the fixed models keep no
//! estimates), so three models cost little more than one.
//!
//! Models:
//! - `fixed50`: `P = n_anchor + 50`, resync threshold 100 ms.
//! - `fixed200`: `P = n_anchor + 200`, resync threshold 200 ms.
//! - `adaptive`: Ramjee, Kurose, Towsley and Schulzrinne (1994),
//!   algorithm 4 (exponential average with spike mode), in ms: the
//!   paper's constants 800 and 63 timestamp units at 8 kHz become 100 ms
//!   and 7.875 ms. Estimates `d̂` (transit) and `v̂` (variation) give the
//!   target `d̂ + clamp(max(4·v̂, hi + 10 − d̂), 20, 500)`, never more
//!   than 500 ms above the fastest transit of the segment. `hi` is the
//!   highest excess of a transit over `d̂` (as it stood before the
//!   packet) seen outside spikes over the last 10 s of media time (one
//!   maximum per 2 s), plus a 10 ms margin, as Asterisk's
//!   `jitterbuf.c` sizes its buffer from the high end of its delay
//!   history (500 packets) plus an extra: the EWMA alone forgets a
//!   recurring 35 ms delay within a dozen packets and would discard it
//!   every time. Excess, not transit: a sender whose clock runs ahead
//!   (the transit drifting down 30 ms a second in `SIP_CALL_RTP_G711`)
//!   would otherwise keep the old, higher transits as the high end and
//!   grow the buffer all call long (254 ms on a clean call). A talkspurt
//!   start (marker, or a media gap beyond the resync threshold) sets
//!   `d̂` to its first packet's transit: a level the path moved to in the
//!   silence is not a delay. The playout point jumps to the
//!   target at a talkspurt start (marker) and right after a late packet
//!   (the buffer grows to fit it, at least 20 ms above its transit), and
//!   otherwise moves towards it per played packet
//!   by at most the larger of 2 ms (time stretching, about 10% of a
//!   20 ms frame) and 1/16 of the distance (frames dropped or inserted
//!   when far off, as Asterisk's `jitterbuf.c` does), never below the
//!   latest transit plus 20 ms. Resync threshold 500 ms.

/// A jitter-buffer model moni knows. Every known model has its columns in
/// `rtp_windows` and `rtp_streams`; models not configured leave them null.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    Fixed50,
    Fixed200,
    Adaptive,
}

/// Number of known models (the size of per-model arrays).
pub const MODEL_COUNT: usize = 3;

impl Model {
    /// Every model, in column order.
    pub const ALL: [Model; MODEL_COUNT] = [Model::Fixed50, Model::Fixed200, Model::Adaptive];

    /// The configuration and column name.
    pub fn name(self) -> &'static str {
        match self {
            Model::Fixed50 => "fixed50",
            Model::Fixed200 => "fixed200",
            Model::Adaptive => "adaptive",
        }
    }

    pub fn from_name(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Position in [`Model::ALL`] and in per-model arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Media-time gap or transit step beyond which the buffer re-anchors, ms.
    pub fn resync_ms(self) -> f64 {
        match self {
            Model::Fixed50 => 100.0,
            Model::Fixed200 => 200.0,
            Model::Adaptive => ADAPTIVE_MAX_MS,
        }
    }

    /// Nominal buffer delay, ms: the fixed size, or the adaptive minimum
    /// headroom (used when a period has no played packet to measure).
    pub fn nominal_ms(self) -> f64 {
        match self {
            Model::Fixed50 => 50.0,
            Model::Fixed200 => 200.0,
            Model::Adaptive => ADAPTIVE_MIN_MS,
        }
    }
}

/// Adaptive bounds: headroom over the estimated transit, ms.
pub const ADAPTIVE_MIN_MS: f64 = 20.0;
pub const ADAPTIVE_MAX_MS: f64 = 500.0;
/// Largest move of the adaptive playout point per played packet, ms.
const ADAPTIVE_STEP_MS: f64 = 2.0;
/// The playout point keeps this margin above the highest recent transit,
/// ms.
const ADAPTIVE_HI_MARGIN_MS: f64 = 10.0;
/// The highest recent excess is the highest of the last this many seconds
/// of media time (Asterisk's `jitterbuf.c` sizes from a history of 500
/// packets, 10 s at 20 ms).
const HI_SECONDS: usize = 10;
/// Ramjee et al. algorithm 4 spike thresholds, in ms.
const SPIKE_START_MS: f64 = 100.0;
const SPIKE_END_MS: f64 = 7.875;

/// One packet as a jitter buffer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JbPacket {
    /// Capture time, ns (the capture's precision; µs captures give whole µs).
    pub arrival_ns: i64,
    pub timestamp: u32,
    pub sequence: u16,
    pub marker: bool,
    /// Clock rate of this packet's payload type; `None` exempts it.
    pub clock_rate: Option<u32>,
    /// Telephone-event or comfort noise: never late.
    pub never_late: bool,
}

/// What the buffer did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Played,
    Late,
    /// Not judged (telephone-event, comfort noise, unknown clock).
    Exempt,
}

/// Cumulative counters of one buffer; a period's figures are differences.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JbCounters {
    pub played: u64,
    pub discards: u64,
    pub exempt: u64,
    pub resyncs: u64,
    /// Sum over played packets of their wait in the buffer, ms.
    pub delay_sum_ms: f64,
}

impl JbCounters {
    /// Mean wait of the packets played since `from`, ms; `None` if none.
    pub fn mean_delay_since(&self, from: &JbCounters) -> Option<f64> {
        let n = self.played - from.played;
        (n > 0).then(|| (self.delay_sum_ms - from.delay_sum_ms) / n as f64)
    }
}

/// The unwrapping of the timestamp and sequence and the transit of a
/// packet, the same for every model of a stream: computed once per packet
/// ([`JitterBuffers`]) and handed to each model's [`Judge`].
#[derive(Clone, Debug, Default)]
struct Unwrap {
    /// Last raw timestamp of an in-order packet and the clock.
    last_ts: u32,
    clock: u32,
    /// ms per timestamp unit of `clock` (a multiplication per packet).
    ms_per_unit: f64,
    /// Extended timestamp of the last in-order packet.
    ext_ts: i64,
    /// Highest sequence number (raw).
    last_seq: u16,
    /// Origin of the transit scale (first clocked packet, or the first
    /// after a clock change).
    origin_ns: i64,
    origin_ts: i64,
    started: bool,
}

/// One clocked packet as every model sees it.
#[derive(Clone, Copy, Debug)]
struct Transit {
    /// Transit, ms: arrival − media time, up to a constant.
    n: f64,
    /// A model was fed before this packet.
    started: bool,
    /// The first packet or a clock change: the transit scale restarts.
    restart: bool,
    /// Marker bit or a 32-bit timestamp wrap: a soft re-anchor for every
    /// model.
    soft: bool,
    /// Not behind the highest sequence number.
    in_order: bool,
    /// Media-time step from the previous in-order packet, ms (0 when
    /// reordered): a soft re-anchor beyond a model's resync threshold.
    step_ms: f64,
    /// Media time since the segment's origin, ms.
    media_ms: f64,
}

impl Unwrap {
    /// Unwraps one packet of clock `clock`.
    fn transit(&mut self, p: &JbPacket, clock: u32) -> Transit {
        let started = self.started;
        let restart = !started || clock != self.clock;
        if restart {
            self.clock = clock;
            self.ms_per_unit = 1000.0 / f64::from(clock);
            self.last_ts = p.timestamp;
            self.ext_ts = i64::from(p.timestamp);
            self.last_seq = p.sequence;
            self.origin_ns = p.arrival_ns;
            self.origin_ts = self.ext_ts;
        }
        let mut soft = p.marker;
        // Unwrap the sequence: behind the highest means reordered.
        let in_order = p.sequence.wrapping_sub(self.last_seq) as i16 >= 0;
        // Unwrap the timestamp relative to the last in-order packet.
        let ts_step = i64::from(p.timestamp.wrapping_sub(self.last_ts) as i32);
        let ext = self.ext_ts + ts_step;
        let mut step_ms = 0.0;
        if in_order {
            if ts_step > 0 && p.timestamp < self.last_ts {
                soft = true; // wrap
            }
            step_ms = ts_step as f64 * self.ms_per_unit;
            self.last_seq = p.sequence;
            self.last_ts = p.timestamp;
            self.ext_ts = ext;
        }
        self.started = true;
        Transit {
            n: (p.arrival_ns - self.origin_ns) as f64 * 1e-6
                - (ext - self.origin_ts) as f64 * self.ms_per_unit,
            started,
            restart,
            soft,
            in_order,
            step_ms,
            media_ms: (ext - self.origin_ts) as f64 * self.ms_per_unit,
        }
    }
}

/// One model's decisions on the transits of a stream.
#[derive(Clone, Debug)]
struct Judge {
    model: Model,
    counters: JbCounters,
    /// Transit of the previous in-order clocked packet, and the one before.
    n1: f64,
    n2: f64,
    playout: f64,
    /// Fastest transit of the current segment.
    base: f64,
    // adaptive estimates
    d_hat: f64,
    v_hat: f64,
    spike: bool,
    spike_var: f64,
    /// Highest recent excess of a transit over `d_hat` (before the
    /// packet updated it), outside spikes.
    hi: HiWindow,
    /// The fastest transit of the last [`LOW_SPAN_MS`] to twice that of
    /// media time (this span's minimum and the previous span's, and the
    /// media time this span started at): the path's delay without its
    /// jitter, which the playout delay counts from.
    low: [f64; 3],
}

/// Span of the recent-minimum transit ([`Judge::low`]), ms of media time:
/// short enough that a sender clock drifting by tens of ms a second moves
/// it little, long enough to hold the fastest packets between jitter
/// bursts.
const LOW_SPAN_MS: f64 = 500.0;

/// The highest value over the last [`HI_SECONDS`] seconds of media time,
/// kept per [`HI_SLICE_MS`] slice in `f32` (a stream feeds it every packet:
/// it stays within one cache line of the judge, as the one `f64` it
/// replaced did, nearly).
#[derive(Clone, Debug)]
struct HiWindow {
    /// Maximum per slice, by slice number modulo the window.
    per_slice: [f32; HI_SLICES],
    /// The maximum of the other slices (recomputed when a slice starts).
    others: f32,
    /// The newest slice's number and index, and the media time it ends
    /// at: a packet inside it costs one comparison.
    slice: i64,
    index: u8,
    slice_end_ms: f64,
}

/// The high-water window in slices of this many ms of media time.
const HI_SLICE_MS: f64 = 2000.0;
const HI_SLICES: usize = HI_SECONDS * 1000 / HI_SLICE_MS as usize;

impl HiWindow {
    fn new() -> HiWindow {
        HiWindow {
            per_slice: [f32::NEG_INFINITY; HI_SLICES],
            others: f32::NEG_INFINITY,
            slice: 0,
            index: 0,
            slice_end_ms: HI_SLICE_MS,
        }
    }

    fn index_of(slice: i64) -> u8 {
        slice.rem_euclid(HI_SLICES as i64) as u8
    }

    /// Starts over with one value at media time `media_ms`.
    fn reset(&mut self, n: f64, media_ms: f64) {
        *self = HiWindow::new();
        self.slice = (media_ms / HI_SLICE_MS).floor() as i64;
        self.index = Self::index_of(self.slice);
        self.slice_end_ms = (self.slice + 1) as f64 * HI_SLICE_MS;
        self.feed(n, media_ms);
    }

    #[inline]
    fn feed(&mut self, n: f64, media_ms: f64) {
        if media_ms >= self.slice_end_ms {
            self.roll(media_ms);
        }
        // A packet behind the newest slice (reordered) counts in it.
        let i = usize::from(self.index) % HI_SLICES;
        self.per_slice[i] = self.per_slice[i].max(n as f32);
    }

    #[cold]
    fn roll(&mut self, media_ms: f64) {
        let slice = (media_ms / HI_SLICE_MS).floor() as i64;
        // Slices without packets (silence) hold nothing.
        let gap = (slice - self.slice).clamp(1, HI_SLICES as i64);
        for s in slice - gap + 1..=slice {
            self.per_slice[usize::from(Self::index_of(s))] = f32::NEG_INFINITY;
        }
        self.slice = slice;
        self.index = Self::index_of(slice);
        self.slice_end_ms = (slice + 1) as f64 * HI_SLICE_MS;
        let current = usize::from(self.index);
        self.others = self
            .per_slice
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != current)
            .map(|(_, v)| *v)
            .fold(f32::NEG_INFINITY, f32::max);
    }

    #[inline]
    fn get(&self) -> f64 {
        f64::from(
            self.others
                .max(self.per_slice[usize::from(self.index) % HI_SLICES]),
        )
    }
}

/// One emulated buffer.
#[derive(Clone, Debug)]
pub struct JitterBuffer {
    unwrap: Unwrap,
    judge: Judge,
}

impl JitterBuffer {
    pub fn new(model: Model) -> JitterBuffer {
        JitterBuffer {
            unwrap: Unwrap::default(),
            judge: Judge::new(model),
        }
    }

    pub fn model(&self) -> Model {
        self.judge.model
    }

    pub fn counters(&self) -> &JbCounters {
        &self.judge.counters
    }

    /// Judges one packet.
    pub fn push(&mut self, p: &JbPacket) -> Verdict {
        match p.clock_rate {
            Some(c) if c > 0 && !p.never_late => {
                let t = self.unwrap.transit(p, c);
                self.judge.judge(&t)
            }
            _ => {
                self.judge.counters.exempt += 1;
                Verdict::Exempt
            }
        }
    }
}

/// The configured models of one stream: the packet is unwrapped once and
/// judged by each model (the same verdicts as separate [`JitterBuffer`]s,
/// at a fraction of the cost).
#[derive(Clone, Debug)]
pub struct JitterBuffers {
    unwrap: Unwrap,
    judges: [Option<Judge>; MODEL_COUNT],
}

impl JitterBuffers {
    /// Buffers for the models in `models` (in any order).
    pub fn new(models: &[Model]) -> JitterBuffers {
        JitterBuffers {
            unwrap: Unwrap::default(),
            judges: Model::ALL.map(|m| models.contains(&m).then(|| Judge::new(m))),
        }
    }

    /// Whether `model` is fed.
    pub fn has(&self, model: Model) -> bool {
        self.judges[model.index()].is_some()
    }

    /// Counters by [`Model::index`], `None` for models not fed.
    pub fn counters(&self, model: Model) -> Option<&JbCounters> {
        self.judges[model.index()].as_ref().map(|j| &j.counters)
    }

    /// Judges one packet with every model.
    pub fn push(&mut self, p: &JbPacket) {
        match p.clock_rate {
            Some(c) if c > 0 && !p.never_late => {
                let t = self.unwrap.transit(p, c);
                for j in self.judges.iter_mut().flatten() {
                    j.judge(&t);
                }
            }
            _ => {
                for j in self.judges.iter_mut().flatten() {
                    j.counters.exempt += 1;
                }
            }
        }
    }
}

impl Judge {
    fn new(model: Model) -> Judge {
        Judge {
            model,
            counters: JbCounters::default(),
            n1: 0.0,
            n2: 0.0,
            playout: 0.0,
            base: 0.0,
            d_hat: 0.0,
            v_hat: 0.0,
            spike: false,
            spike_var: 0.0,
            hi: HiWindow::new(),
            low: [0.0; 3],
        }
    }

    /// Judges one clocked packet.
    fn judge(&mut self, t: &Transit) -> Verdict {
        let resync = self.model.resync_ms();
        let n = t.n;
        // A hard re-anchor restarts the transit scale and the estimates (a
        // discontinuity); a soft one only moves the playout point (a new
        // talkspurt on the same path).
        let mut hard = t.restart;
        // A media-time gap: silence or a loss burst.
        let soft = t.soft || t.step_ms > resync;
        if t.started && t.in_order && (n - self.n1).abs() > resync {
            hard = true; // a timestamp discontinuity or a stall
        }
        if t.started && n - self.playout > resync {
            hard = true; // so late that the receiver resynchronises
        }
        // A talkspurt or a discontinuity restarts it too: a level the path
        // moved to in the silence is not a delay of the buffer.
        let low = self.recent_low(n, t.media_ms, hard || soft || !t.started);
        if t.in_order || hard {
            if self.model == Model::Adaptive {
                self.estimate(n, t.media_ms, hard, soft);
            } else if hard {
                // A fixed buffer needs none of the estimates, only the
                // reference transit of the new segment.
                self.n1 = n;
                self.n2 = n;
            }
        }
        if hard || soft {
            self.anchor(n, hard);
        }
        if self.model != Model::Adaptive {
            // A fixed buffer settles on the fastest packet of its segment.
            self.playout = self.playout.min(n + self.model.nominal_ms());
        }
        let verdict = if n > self.playout {
            self.counters.discards += 1;
            if self.model == Model::Adaptive {
                // The buffer grows to fit the late packet.
                self.playout = self.target().max(n + ADAPTIVE_MIN_MS);
            }
            Verdict::Late
        } else {
            self.counters.played += 1;
            // The packet's mouth-to-ear delay beyond the path's: its
            // wait in the buffer plus its own transit above the fastest
            // recent packet's. The wait alone made a jittery path look
            // faster (a late packet waits less), so a fixed buffer scored
            // a jittery shadow better than a clean production.
            self.counters.delay_sum_ms += self.playout - low;
            if self.model == Model::Adaptive {
                let goal = self.target().max(n + ADAPTIVE_MIN_MS);
                let diff = goal - self.playout;
                let step = ADAPTIVE_STEP_MS.max(diff.abs() / 16.0);
                self.playout += diff.clamp(-step, step);
            }
            Verdict::Played
        };
        if t.in_order {
            self.n2 = self.n1;
            self.n1 = n;
        }
        verdict
    }

    /// Feeds transit `n` at media time `media_ms` to the recent minimum
    /// (restarted at a re-anchor) and returns it.
    fn recent_low(&mut self, n: f64, media_ms: f64, restart: bool) -> f64 {
        let [cur, prev, start] = &mut self.low;
        if restart || media_ms - *start >= 2.0 * LOW_SPAN_MS {
            (*cur, *prev, *start) = (n, n, media_ms);
        } else if media_ms - *start >= LOW_SPAN_MS {
            (*prev, *cur, *start) = (*cur, n, media_ms);
        } else {
            *cur = cur.min(n);
        }
        cur.min(*prev)
    }

    /// Adaptive target playout point.
    fn target(&self) -> f64 {
        let headroom = (4.0 * self.v_hat)
            .max(self.hi.get() + ADAPTIVE_HI_MARGIN_MS)
            .clamp(ADAPTIVE_MIN_MS, ADAPTIVE_MAX_MS);
        (self.d_hat + headroom).min(self.base + ADAPTIVE_MAX_MS)
    }

    /// Ramjee et al. algorithm 4 (only the adaptive model uses the result,
    /// the others only need the segment minimum).
    fn estimate(&mut self, n: f64, media_ms: f64, reset: bool, talkspurt: bool) {
        if reset {
            // A new segment: the transit scale moved; the variation of the
            // path did not.
            self.d_hat = n;
            self.base = n;
            self.n1 = n;
            self.n2 = n;
            self.spike = false;
            self.spike_var = 0.0;
            self.hi.reset(0.0, media_ms);
            return;
        }
        self.base = self.base.min(n);
        if talkspurt {
            // A talkspurt starts at its first packet's transit: a level
            // the path moved to during the silence is not a delay of this
            // packet (the estimate would take a dozen packets to follow,
            // each of them counted as that far above).
            self.d_hat = n;
            self.spike = false;
            self.hi.feed(0.0, media_ms);
            return;
        }
        // How far above the expected transit this packet came.
        let above = n - self.d_hat;
        if !self.spike {
            if (n - self.n1).abs() > 2.0 * self.v_hat.abs() + SPIKE_START_MS {
                self.spike = true;
                self.spike_var = 0.0;
            }
        } else {
            self.spike_var = self.spike_var / 2.0 + ((2.0 * n - self.n1 - self.n2) / 8.0).abs();
            if self.spike_var <= SPIKE_END_MS {
                self.spike = false;
                return;
            }
        }
        if self.spike {
            self.d_hat += n - self.n1;
        } else {
            self.d_hat = 0.125 * n + 0.875 * self.d_hat;
        }
        self.v_hat = 0.125 * (n - self.d_hat).abs() + 0.875 * self.v_hat;
        if !self.spike {
            self.hi.feed(above, media_ms);
        }
    }

    fn anchor(&mut self, n: f64, reset: bool) {
        self.counters.resyncs += 1;
        self.playout = match self.model {
            Model::Fixed50 | Model::Fixed200 => n + self.model.nominal_ms(),
            // A talkspurt start takes the target (Ramjee: d̂ + 4v̂); a
            // discontinuity restarts from this packet with the minimum
            // headroom and the variation learnt so far.
            Model::Adaptive if reset => {
                n + (4.0 * self.v_hat).clamp(ADAPTIVE_MIN_MS, ADAPTIVE_MAX_MS)
            }
            Model::Adaptive => self.target().max(n + ADAPTIVE_MIN_MS),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    /// A 20 ms PCMU stream: packet `i` sent at `i·20` ms with timestamp
    /// `ts0 + 160·i`.
    struct Gen {
        pkts: Vec<JbPacket>,
    }

    impl Gen {
        fn new() -> Gen {
            Gen { pkts: Vec::new() }
        }
        fn voice(&mut self, seq: u16, ts: u32, arrival_ms: f64, marker: bool) {
            self.pkts.push(JbPacket {
                arrival_ns: (arrival_ms * MS as f64) as i64,
                timestamp: ts,
                sequence: seq,
                marker,
                clock_rate: Some(8000),
                never_late: false,
            });
        }
        fn event(&mut self, seq: u16, ts: u32, arrival_ms: f64) {
            self.pkts.push(JbPacket {
                arrival_ns: (arrival_ms * MS as f64) as i64,
                timestamp: ts,
                sequence: seq,
                marker: false,
                clock_rate: None,
                never_late: true,
            });
        }
        /// Runs every model; returns (discards, mean delay ms, resyncs).
        fn run(&self) -> [(u64, f64, u64); MODEL_COUNT] {
            Model::ALL.map(|m| {
                let mut jb = JitterBuffer::new(m);
                for p in &self.pkts {
                    jb.push(p);
                }
                let c = *jb.counters();
                let d = c
                    .mean_delay_since(&JbCounters::default())
                    .unwrap_or(f64::NAN);
                (c.discards, d, c.resyncs)
            })
        }
    }

    /// A path that adds 0-80 ms of jitter costs the mouth-to-ear delay a
    /// fixed buffer's size, counted from the fastest packets: 200 ms for
    /// `fixed200`, where the mean wait alone is about 160 ms (a jittery
    /// shadow scored better than a clean production under `fixed200`; a
    /// shadow engineer's tour found it). On a clean path both are 200.
    #[test]
    fn playout_delay_counts_from_the_fastest_packets_not_each_wait() {
        let mut jittery = Gen::new();
        let mut x = 12345u32;
        for i in 0..1500u16 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let extra = f64::from(x >> 16 & 0x7fff) / 32768.0 * 80.0;
            let t = 20.0 * f64::from(i) + extra;
            jittery.voice(i, 160 * u32::from(i), t, false);
        }
        let [j50, j200, ad] = jittery.run();
        assert_eq!(j200.0, 0, "{j200:?}");
        assert!((j200.1 - 200.0).abs() < 2.0, "{j200:?}");
        assert!(j50.0 > 0, "a 50 ms buffer drops some: {j50:?}");
        assert!(ad.1 >= 60.0, "the adaptive buffer fits the jitter: {ad:?}");
        let mut plain = Gen::new();
        clean(&mut plain, 0..1500, 0, 0.0);
        let [_, p200, _] = plain.run();
        assert!((p200.1 - 200.0).abs() < 1e-6, "{p200:?}");
    }

    fn clean(g: &mut Gen, seqs: std::ops::Range<u16>, ts0: u32, t0: f64) {
        for i in seqs.clone() {
            let k = u32::from(i - seqs.start);
            g.voice(
                i,
                ts0.wrapping_add(160 * k),
                t0 + 20.0 * f64::from(k),
                false,
            );
        }
    }

    #[test]
    fn clean_stream_plays_everything_with_the_nominal_delay() {
        let mut g = Gen::new();
        clean(&mut g, 0..500, 1000, 0.0);
        let [f50, f200, ad] = g.run();
        assert_eq!((f50.0, f200.0, ad.0), (0, 0, 0));
        assert!((f50.1 - 50.0).abs() < 1e-6, "{f50:?}");
        assert!((f200.1 - 200.0).abs() < 1e-6, "{f200:?}");
        // Adaptive: no variation, minimum headroom.
        assert!((ad.1 - ADAPTIVE_MIN_MS).abs() < 0.5, "{ad:?}");
        assert_eq!((f50.2, f200.2, ad.2), (1, 1, 1));
    }

    #[test]
    fn dtmf_run_is_never_late() {
        // 100 voice packets, then 2 s of RFC 4733 events repeating the
        // event start timestamp (transit grows 20 ms per packet), then
        // voice again with its timestamp advanced by the 2 s.
        let mut g = Gen::new();
        clean(&mut g, 0..100, 0, 0.0);
        for i in 0..100u16 {
            g.event(100 + i, 160 * 100, 2000.0 + 20.0 * f64::from(i));
        }
        for i in 0..100u16 {
            let k = 200 + u32::from(i);
            g.voice(200 + i, 160 * k, 20.0 * f64::from(k), false);
        }
        for (m, (discards, delay, _)) in Model::ALL.iter().zip(g.run()) {
            assert_eq!(discards, 0, "{m:?}");
            assert!((delay - m.nominal_ms()).abs() < 0.5, "{m:?} {delay}");
        }
        let mut jb = JitterBuffer::new(Model::Adaptive);
        for p in &g.pkts {
            jb.push(p);
        }
        assert_eq!(jb.counters().exempt, 100);
        assert_eq!(jb.counters().played, 200);
    }

    #[test]
    fn a_420_ms_stall_costs_at_most_one_packet() {
        // 200 packets, then the sender stalls 420 ms: the next 21 packets
        // arrive together, then the stream continues on time.
        let mut g = Gen::new();
        clean(&mut g, 0..200, 0, 0.0);
        for i in 200..221u16 {
            g.voice(i, 160 * u32::from(i), 200.0 * 20.0 + 420.0, false);
        }
        for i in 221..1000u16 {
            g.voice(i, 160 * u32::from(i), 20.0 * f64::from(i), false);
        }
        let [f50, f200, ad] = g.run();
        // Fixed buffers re-anchor on the stall (step > resync) and again
        // when the burst has drained (the buffer would overflow).
        assert_eq!(f50.0, 0, "{f50:?}");
        assert_eq!(f200.0, 0, "{f200:?}");
        assert!(f50.2 >= 2 && f200.2 >= 2);
        // Adaptive: the first stalled packet is late (420 < 500 resync),
        // the spike then moves the playout point and the burst plays.
        assert_eq!(ad.0, 1, "{ad:?}");
        // Delays stay near nominal over the call (the burst waits longer).
        assert!((f50.1 - 50.0).abs() < 1e-6, "{f50:?}");
        assert!((f200.1 - 200.0).abs() < 1e-6, "{f200:?}");
        assert!(ad.1 > ADAPTIVE_MIN_MS && ad.1 < 60.0, "{ad:?}");
    }

    #[test]
    fn timestamp_reset_with_continuous_sequence_re_anchors() {
        let mut g = Gen::new();
        clean(&mut g, 0..300, 3_000_000_000, 0.0);
        clean(&mut g, 300..600, 0, 6000.0);
        for (m, (discards, delay, resyncs)) in Model::ALL.iter().zip(g.run()) {
            assert_eq!(discards, 0, "{m:?}");
            assert_eq!(resyncs, 2, "{m:?}");
            assert!((delay - m.nominal_ms()).abs() < 0.5, "{m:?} {delay}");
        }
    }

    #[test]
    fn timestamp_wrap_is_unwrapped() {
        let mut g = Gen::new();
        // Wraps 2^32 after 50 packets; 10 ms of jitter on every third.
        let ts0 = u32::MAX - 160 * 50 + 1;
        for i in 0..400u16 {
            let late = if i % 3 == 0 { 10.0 } else { 0.0 };
            g.voice(
                i,
                ts0.wrapping_add(160 * u32::from(i)),
                20.0 * f64::from(i) + late,
                false,
            );
        }
        let mut twin = Gen::new();
        for p in &g.pkts {
            let mut q = *p;
            q.timestamp = p.timestamp.wrapping_sub(ts0);
            twin.pkts.push(q);
        }
        let (a, b) = (g.run(), twin.run());
        for i in 0..MODEL_COUNT {
            assert_eq!(a[i].0, b[i].0, "{:?}", Model::ALL[i]);
            assert_eq!(a[i].0, 0);
            assert!((a[i].1 - b[i].1).abs() < 1.0, "{:?} {:?}", a[i], b[i]);
            // The wrap is one extra anchor.
            assert_eq!(a[i].2, b[i].2 + 1);
        }
    }

    #[test]
    fn talkspurt_marker_re_anchors() {
        // A talkspurt, 60 ms of comfort noise (never late; the media gap
        // stays below every resync threshold), then a marked talkspurt
        // 70 ms slower.
        let mut g = Gen::new();
        clean(&mut g, 0..100, 0, 0.0);
        for i in 0..3u16 {
            g.pkts.push(JbPacket {
                arrival_ns: ((20.0 * f64::from(100 + i)) * MS as f64) as i64,
                timestamp: 160 * (100 + u32::from(i)),
                sequence: 100 + i,
                marker: false,
                clock_rate: Some(8000),
                never_late: true,
            });
        }
        let mut unmarked = Gen::new();
        unmarked.pkts = g.pkts.clone();
        for i in 103..253u16 {
            let t = 20.0 * f64::from(i) + 70.0;
            g.voice(i, 160 * u32::from(i), t, i == 103);
            unmarked.voice(i, 160 * u32::from(i), t, false);
        }
        let [f50, f200, ad] = g.run();
        assert_eq!((f50.0, f200.0, ad.0), (0, 0, 0));
        assert_eq!(f50.2, 2);
        // Without the marker the 50 ms buffer loses the whole talkspurt
        // (70 ms is below its 100 ms resync threshold).
        let [u50, u200, uad] = unmarked.run();
        assert_eq!(u50.0, 150);
        assert_eq!(u200.0, 0, "{u200:?}");
        // Adaptive grows after the first late packet.
        assert_eq!(uad.0, 1, "{uad:?}");
        assert!((f50.1 - 50.0).abs() < 1e-6);
        assert!((f200.1 - 200.0).abs() < 1e-6, "{f200:?}");
        // Re-anchored at the new talkspurt's level: the least wait
        // throughout.
        assert!((ad.1 - ADAPTIVE_MIN_MS).abs() < 1e-6, "{ad:?}");
    }

    #[test]
    fn a_sender_whose_clock_runs_ahead_does_not_grow_the_adaptive_buffer() {
        // SIP_CALL_RTP_G711.pcap's shape: the packets come 2.5% faster
        // than their media time (the transit drifts down 25 ms a second),
        // in unmarked talkspurts of 100 packets with 2 s silences between.
        // A maximum that decayed per packet held still in the silences
        // and grew the buffer to 250 ms in 40 s of a clean call.
        let mut g = Gen::new();
        let (mut seq, mut ts, mut at) = (0u16, 0u32, 0.0);
        for _ in 0..20 {
            for _ in 0..100 {
                g.voice(seq, ts, at, false);
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
                at += 19.5;
            }
            ts = ts.wrapping_add(16_000);
            at += 1950.0;
        }
        let [f50, _, ad] = g.run();
        assert_eq!((f50.0, ad.0), (0, 0), "{f50:?} {ad:?}");
        assert!(ad.1 < 40.0, "{ad:?}");
    }

    #[test]
    fn a_spike_costs_fixed50_more_than_adaptive() {
        // Every 200 packets, a 90 ms spike: one packet 90 ms late, the next
        // four arriving with it (decaying), then on time.
        let mut g = Gen::new();
        for i in 0..1000u16 {
            let k = i % 200;
            let extra = if (100..105).contains(&k) {
                90.0 - 20.0 * f64::from(k - 100)
            } else {
                0.0
            };
            g.voice(
                i,
                160 * u32::from(i),
                20.0 * f64::from(i) + extra.max(0.0),
                false,
            );
        }
        let [f50, f200, ad] = g.run();
        // 90 and 70 ms late: over 50 ms, below the 100 ms resync.
        assert_eq!(f50.0, 10, "{f50:?}");
        assert_eq!(f200.0, 0);
        // Adaptive: late once per spike, then grown.
        assert!(ad.0 <= 5 && ad.0 < f50.0, "{ad:?}");
        assert!(ad.1 > ADAPTIVE_MIN_MS, "{ad:?}");
        assert_eq!(f50.2, 1);
    }

    #[test]
    fn reordered_packets_do_not_move_the_reference() {
        let mut g = Gen::new();
        let order = [0u16, 1, 3, 2, 4, 5, 6];
        for (k, &i) in order.iter().enumerate() {
            g.voice(i, 160 * u32::from(i), 20.0 * k as f64, false);
        }
        let [f50, _, _] = g.run();
        // Packet 2 arrives 20 ms after its slot: within 50 ms.
        assert_eq!(f50.0, 0);
        assert_eq!(f50.2, 1);
    }

    proptest::proptest! {
        #[test]
        fn any_sequence_is_counted_once(
            pkts in proptest::collection::vec(
                (proptest::prelude::any::<i64>(), proptest::prelude::any::<u32>(),
                 proptest::prelude::any::<u16>(), proptest::prelude::any::<bool>(),
                 proptest::option::of(proptest::prelude::any::<u32>()),
                 proptest::prelude::any::<bool>()),
                0..64),
        ) {
            for m in Model::ALL {
                let mut jb = JitterBuffer::new(m);
                for &(t, ts, seq, marker, clock, never_late) in &pkts {
                    jb.push(&JbPacket {
                        arrival_ns: t / 4,
                        timestamp: ts,
                        sequence: seq,
                        marker,
                        clock_rate: clock,
                        never_late,
                    });
                }
                let c = jb.counters();
                proptest::prop_assert_eq!(c.played + c.discards + c.exempt, pkts.len() as u64);
                proptest::prop_assert!(c.delay_sum_ms >= 0.0 || c.delay_sum_ms.is_nan());
            }
        }

        /// The bank (one unwrap, several judges) decides exactly as
        /// separate buffers do.
        #[test]
        fn the_bank_judges_like_separate_buffers(
            pkts in proptest::collection::vec(
                (0i64..40_000_000, 0u32..400, 0u16..3, proptest::prelude::any::<bool>(),
                 proptest::prelude::any::<bool>()),
                0..200),
            ts0 in proptest::prelude::any::<u32>(),
            seq0 in proptest::prelude::any::<u16>(),
        ) {
            let mut bank = JitterBuffers::new(&Model::ALL);
            let mut alone = Model::ALL.map(JitterBuffer::new);
            let (mut at, mut ts, mut seq) = (0i64, ts0, seq0);
            for &(gap_ns, ts_step, seq_step, marker, event) in &pkts {
                at += gap_ns;
                ts = ts.wrapping_add(ts_step);
                seq = seq.wrapping_add(seq_step).wrapping_sub(u16::from(seq_step == 2) * 3);
                let p = JbPacket {
                    arrival_ns: at,
                    timestamp: ts,
                    sequence: seq,
                    marker,
                    clock_rate: (!event).then_some(8000),
                    never_late: event,
                };
                bank.push(&p);
                for jb in &mut alone {
                    jb.push(&p);
                }
            }
            for jb in &alone {
                proptest::prop_assert_eq!(bank.counters(jb.model()), Some(jb.counters()));
            }
        }
    }
}

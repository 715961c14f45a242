//! How long a batch rests before the capture loop fills it again, chosen
//! by measuring.
//!
//! The capture loop takes a fresh batch from the free list, which hands
//! out the one freed longest ago ([`super::batch::free_list`]), so a batch
//! comes back only after every spare before it. A long rotation means
//! the worker's core (another one) no longer holds the batch's lines when
//! the loop writes them again; a short one keeps the batches the loop
//! cycles through in the last-level cache. Which costs the loop less
//! depends on the machine and, on this project's 2-core VMs, on the hour
//! (interleaved runs, release build):
//! - Session 30 (2026-12-04, AMD EPYC), in a spell of costly cross-core
//!   lines: with only the dozen batches that circulate on their own (the
//!   queues, the batches being filled) the capture thread of a 2-worker
//!   flow-heavy replay took 2.8 s of CPU (1.5 s with everything on one
//!   core) and the replay 3.3 s; with 32 spares 2.2-2.3 s of CPU and
//!   2.7-2.8 s; with 64, 1.7 s and 2.2 s; with 128 the same as 64. While
//!   the cost was low, the rotation changed nothing.
//! - Session 33 (a VM of the same kind: 2 MiB L2, 32 MiB L3), in a spell
//!   where the capture thread took as much CPU with one worker per core as
//!   on one core: a 2-worker IMIX replay took 0.89 s with 8 or 32 spares,
//!   1.01-1.05 s with 64 and 1.2 s with 256; 4 interleaved rounds of 32
//!   against 64: IMIX 1 worker on 1 core 1.53 / 1.60 s, 2 workers 0.91 /
//!   1.00 s; flow-heavy 2.40 / 2.50 s and 1.35 / 1.42 s.
//!
//! A fixed length loses 5-9% in one kind of spell or 30% in the other.
//! So `replay`'s loop measures: the free list starts with [`SPARES`], and
//! the loop can hold [`EXTRA`] more aside in a FIFO of its own, which
//! lengthens the rotation to [`LONG`]. In epochs of [`EPOCH_BATCHES`] batches
//! sent it tries short, long, long, short (the middle two cancel a drift
//! of the traffic or the machine), after a first epoch at the long one that
//! pays for the start, compares its own CPU time per packet, keeps the
//! cheaper (the long one only if more than 3% cheaper: it holds more
//! memory) for [`HOLD_EPOCHS`] epochs and tries again. `run`
//! keeps the long rotation in its free list, as before (see
//! [`Rotation::new`]).

use std::collections::VecDeque;

use super::batch::PacketBatch;

/// Spare batches the free list starts with: the short rotation.
pub const SPARES: usize = 16;

/// Batches the loop holds aside in the long rotation.
pub const EXTRA: usize = 48;

/// Spare batches of the long rotation: what `run`'s free list starts with
/// (its loops hold none aside), and what the short one and the loop's
/// held batches add up to in `replay`.
pub const LONG: usize = SPARES + EXTRA;

/// Batches sent per epoch: at 5 M packets/s about 50 ms of the capture
/// thread's time, long enough that one epoch's CPU time is not noise.
pub const EPOCH_BATCHES: u32 = 1024;

/// Epochs the cheaper rotation runs before both are tried again (the
/// machine's spells last minutes; a try costs at most two epochs at the
/// dearer one).
pub const HOLD_EPOCHS: u32 = 16;

/// How much cheaper per packet the long rotation must be to be kept (it
/// holds more memory; 2026-12-04 two tries within 3% of each other went
/// either way from one run to the next).
const MARGIN: f64 = 0.03;

/// The short or the long rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    Short,
    Long,
}

/// The order of a try: short, long, long, short.
const TRY: [Length; 4] = [Length::Short, Length::Long, Length::Long, Length::Short];

/// Picks the rotation from the capture thread's cost per packet of each
/// epoch (pure: no clock, so it can be tested with made-up costs).
#[derive(Debug)]
pub struct Chooser {
    /// `Some(step)` while trying (the step of [`TRY`] running), else
    /// `None`.
    trying: Option<usize>,
    /// Summed cost per packet of the try's short and long epochs.
    cost: [f64; 2],
    /// Epochs left at the chosen rotation before the next try.
    hold: u32,
    chosen: Length,
    /// Epochs run at each rotation (short, long), for the log.
    pub epochs: [u64; 2],
}

impl Default for Chooser {
    /// A first epoch at the long rotation before the first try: it pays
    /// for the start (the held batches' and the tables' first page faults,
    /// cold caches), which would otherwise fall on the try's first epoch.
    fn default() -> Self {
        Chooser {
            trying: None,
            cost: [0.0; 2],
            hold: 1,
            chosen: Length::Long,
            epochs: [0; 2],
        }
    }
}

impl Chooser {
    /// The rotation to run now.
    pub fn current(&self) -> Length {
        match self.trying {
            Some(step) => TRY[step],
            None => self.chosen,
        }
    }

    /// Ends an epoch that cost `per_packet` (any unit; the same each time)
    /// and returns the rotation of the next one. A cost that is not a
    /// positive number (no packets, a clock that cannot be read) ends the
    /// epoch without counting it.
    pub fn end_epoch(&mut self, per_packet: f64) -> Length {
        let ran = self.current();
        self.epochs[ran as usize] += 1;
        let valid = per_packet.is_finite() && per_packet > 0.0;
        match self.trying {
            Some(step) => {
                if !valid {
                    // Start the try again: a half-measured try decides
                    // nothing.
                    self.trying = Some(0);
                    self.cost = [0.0; 2];
                    return self.current();
                }
                self.cost[TRY[step] as usize] += per_packet;
                if step + 1 < TRY.len() {
                    self.trying = Some(step + 1);
                } else {
                    // The long rotation holds 48 more batches: it must be
                    // clearly cheaper to be kept.
                    self.chosen = if self.cost[Length::Long as usize]
                        < self.cost[Length::Short as usize] * (1.0 - MARGIN)
                    {
                        Length::Long
                    } else {
                        Length::Short
                    };
                    self.trying = None;
                    self.hold = HOLD_EPOCHS;
                    self.cost = [0.0; 2];
                }
            }
            None => {
                self.hold = self.hold.saturating_sub(1);
                if self.hold == 0 {
                    self.trying = Some(0);
                }
            }
        }
        self.current()
    }
}

/// The batches the loop holds aside, and the measuring.
#[derive(Debug)]
pub struct Rotation {
    /// Batches taken from the free list, oldest first, while the rotation
    /// is long.
    held: VecDeque<PacketBatch>,
    /// Batches put aside when the rotation turned short, reused first
    /// when it turns long again (so a change allocates nothing).
    reserve: Vec<PacketBatch>,
    length: Length,
    /// Measure and choose (`replay`), or hold nothing aside (`run`, whose
    /// free list starts with the long rotation's [`LONG`] spares, shared
    /// by its capture loops, and whose capture threads also wait for
    /// packets, so their CPU time per packet says little about the
    /// rotation).
    adapt: bool,
    chooser: Chooser,
    sent: u32,
    /// Packets read and the thread's CPU seconds when the epoch began.
    mark: Option<(u64, f64)>,
}

impl Rotation {
    /// A rotation that measures and chooses (`adapt`), or one that holds
    /// nothing aside, leaving the length to the free list's spares.
    pub fn new(adapt: bool) -> Rotation {
        let chooser = Chooser::default();
        Rotation {
            held: VecDeque::with_capacity(if adapt { EXTRA + 1 } else { 0 }),
            reserve: Vec::with_capacity(if adapt { EXTRA } else { 0 }),
            length: if adapt {
                chooser.current()
            } else {
                Length::Short
            },
            adapt,
            chooser,
            sent: 0,
            mark: None,
        }
    }

    /// The batch to fill next, given the one the free list handed out (or
    /// a new one when it was empty).
    pub fn next(&mut self, from_free: PacketBatch) -> PacketBatch {
        match self.length {
            Length::Short => {
                if let Some(b) = self.held.pop_front() {
                    // Turned short: the held batches go aside one by one.
                    self.reserve.push(from_free);
                    b
                } else {
                    from_free
                }
            }
            Length::Long => {
                self.held.push_back(from_free);
                if self.held.len() > EXTRA {
                    self.held.pop_front().unwrap_or_default()
                } else {
                    self.reserve
                        .pop()
                        .unwrap_or_else(PacketBatch::with_capacity)
                }
            }
        }
    }

    /// Counts a batch sent; at the end of an epoch, measures it with
    /// `packets` (read so far) and `cpu_seconds` (the capture thread's)
    /// and picks the next rotation.
    pub fn sent(&mut self, packets: u64, cpu_seconds: impl FnOnce() -> f64) {
        if !self.adapt {
            return;
        }
        self.sent += 1;
        if self.sent < EPOCH_BATCHES && self.mark.is_some() {
            return;
        }
        self.sent = 0;
        let cpu = cpu_seconds();
        if let Some((p0, c0)) = self.mark.replace((packets, cpu)) {
            let per_packet = (cpu - c0) / packets.saturating_sub(p0).max(1) as f64;
            let valid = packets > p0 && c0 > 0.0;
            self.length = self
                .chooser
                .end_epoch(if valid { per_packet } else { f64::NAN });
        }
    }

    /// Epochs run short and long (`replay`'s log).
    pub fn epochs(&self) -> [u64; 2] {
        self.chooser.epochs
    }

    /// Batches held aside now (at most [`EXTRA`]); the tests' view.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.len() + self.reserve.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cheaper rotation wins its try and runs HOLD_EPOCHS epochs, then
    /// both are tried again; an epoch without a cost restarts the try.
    #[test]
    fn the_cheaper_rotation_is_kept_and_tried_again_later() {
        let mut c = Chooser::default();
        assert_eq!(c.current(), Length::Long, "the warm-up epoch");
        c.end_epoch(5.0);
        let cost = |l: Length| if l == Length::Long { 1.2 } else { 1.0 };
        let mut ran = Vec::new();
        for _ in 0..4 {
            ran.push(c.current());
            c.end_epoch(cost(c.current()));
        }
        assert_eq!(ran, TRY.to_vec());
        for _ in 0..HOLD_EPOCHS {
            assert_eq!(c.current(), Length::Short);
            c.end_epoch(cost(c.current()));
        }
        // Tried again; now long is cheaper.
        assert_eq!(c.current(), Length::Short);
        c.end_epoch(f64::NAN);
        assert_eq!(c.current(), Length::Short, "restarted, not advanced");
        for _ in 0..4 {
            let l = c.current();
            c.end_epoch(if l == Length::Long { 0.7 } else { 1.0 });
        }
        assert_eq!(c.current(), Length::Long);
        assert_eq!(c.epochs, [2 + HOLD_EPOCHS as u64 + 1 + 2, 1 + 2 + 2]);
    }

    /// A drift that makes each epoch dearer than the last by the same
    /// step is cancelled by the order short, long, long, short; the long
    /// rotation must be more than MARGIN cheaper to be kept.
    #[test]
    fn a_steady_drift_does_not_decide_the_try() {
        for (long_extra, kept) in [
            (-0.05, Length::Long),
            (-0.01, Length::Short),
            (0.01, Length::Short),
        ] {
            let mut c = Chooser::default();
            c.end_epoch(9.0); // the warm-up
            let mut t = 1.0;
            for _ in 0..4 {
                let extra = if c.current() == Length::Long {
                    long_extra
                } else {
                    0.0
                };
                c.end_epoch(t + extra);
                t += 0.1;
            }
            assert_eq!(c.current(), kept, "long {long_extra:+} per epoch");
        }
    }

    fn marked(n: u8) -> PacketBatch {
        let mut b = PacketBatch::with_capacity();
        b.push(&crate::capture::RawPacket {
            ts: analyzers::Timestamp(0),
            nanos: 0,
            wire_len: 1,
            data: &[n],
        });
        b
    }

    fn mark(b: &PacketBatch) -> Option<u8> {
        b.iter_tagged().next().map(|(p, _)| p.data[0])
    }

    /// Long, a batch from the free list comes back EXTRA batches later;
    /// turning short gives the held ones back first and keeps them aside,
    /// and turning long again uses those before allocating.
    #[test]
    fn the_long_rotation_delays_each_batch_by_extra() {
        let mut r = Rotation::new(true);
        assert_eq!(r.length, Length::Long, "the warm-up epoch");
        let mut out = Vec::new();
        for n in 0..(EXTRA + 3) as u8 {
            out.push(mark(&r.next(marked(n))));
        }
        assert!(
            out[..EXTRA].iter().all(Option::is_none),
            "new batches first"
        );
        assert_eq!(&out[EXTRA..], &[Some(0), Some(1), Some(2)]);
        assert_eq!(r.held(), EXTRA);
        r.length = Length::Short;
        let b = r.next(marked(200));
        assert_eq!(mark(&b), Some(3), "the oldest held batch first");
        assert_eq!(r.held(), EXTRA, "the free list's batch went aside");
        for _ in 1..EXTRA {
            r.next(marked(201));
        }
        assert_eq!(mark(&r.next(marked(202))), Some(202), "none held: as given");
        assert_eq!(r.held(), EXTRA);
        r.length = Length::Long;
        let b = r.next(marked(203));
        assert_eq!(mark(&b), Some(201), "a batch put aside, not a new one");
        assert_eq!(r.held(), EXTRA, "bounded");
    }
}

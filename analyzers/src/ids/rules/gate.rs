//! The node-wide half of the signatures' output: `threshold` and
//! `detection_filter` state that tracks more than one flow, and the alert
//! caps, decided in one place for all workers.
//!
//! A worker holds its flows, so it can count `track by_flow` itself. A
//! `track by_src` (or `by_dst`, `by_rule`, `by_both`) threshold counts
//! matches across flows that the sharding spreads over several workers:
//! counted per worker, a scanner's 20 SYNs to 20 hosts made 5 per worker
//! with 4 workers, and `type limit, count 3, track by_rule` raised 12
//! alerts instead of 3 (`sgr-hs-udpScan.pcap`, `dosattack-synflood.pcap`).
//! The caps (`ids.max_alerts_per_packet`, `ids.max_alerts_per_second`)
//! likewise let N workers raise N times the second's alerts. So with
//! several workers, each signature alert leaves its worker with a
//! [`GateTicket`]: the thresholds it did not check, and what the caps need.
//! The node puts the alerts of all workers back in packet order
//! ([`order_key`]) and passes them through one [`AlertGate`], which
//! decides them as one worker seeing every packet would have.
//!
//! A worker still applies both caps to the alerts it decided itself (so
//! that a flood of them never leaves it): it counts no more of a packet's
//! or a second's alerts than the gate does, so what it drops the gate
//! would have dropped too. One case is left: where both caps bind at
//! once, a worker's count of the second can include an alert the gate
//! then drops at the packet's cap (for a deferred alert it passed there),
//! and the worker may drop at the second's cap an alert one worker would
//! have raised.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::threshold::{self, TrackKey, Window};
use super::{AlertLimits, Threshold, ThresholdKind, Track};
use crate::ids::state::Bounded;
use crate::record::AlertRecord;
use crate::time::Timestamp;

/// What the gate decides for one signature alert.
#[derive(Clone, Debug, PartialEq)]
pub struct GateTicket {
    /// The rule's `detection_filter` and `threshold` (in that order, as a
    /// worker checks them), each with the key it tracks and the port it
    /// counts for `unique_on`; empty when the worker checked them.
    pub thresholds: Vec<(Threshold, TrackKey, Option<u16>)>,
    /// The caps in force when the packet was matched.
    pub limits: AlertLimits,
    /// The packet's number in its capture source (0: unknown).
    pub number: u64,
    /// 0: the packet; 1: the datagram its fragments made, matched after
    /// it (a second pass over the same packet, with its own per-packet
    /// cap).
    pub part: u8,
    /// The rule's place among the packet's rules: a packet's alerts are
    /// decided in it.
    pub order: u32,
}

/// The order the gate decides alerts in: packet time, the packet's number,
/// its part, the worker, the rule's place. All alerts of one packet are
/// together and in rule order, and packets come in capture order where
/// packet time runs forward.
pub type OrderKey = (i64, u64, u8, usize, u32);

pub fn order_key(alert: &AlertRecord, t: &GateTicket, worker: usize) -> OrderKey {
    (alert.time.0, t.number, t.part, worker, t.order)
}

/// What the gate did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GateStats {
    /// Alerts passed.
    pub alerts: u64,
    /// Alerts held back by a threshold the gate checked.
    pub thresholded: u64,
    pub dropped_per_packet: u64,
    pub dropped_per_second: u64,
}

/// The windows of `limit` and `both` thresholds the gate has filled (its
/// `count` matches reached): a later match in one cannot alert and
/// changes nothing the gate keeps, so a worker drops it itself
/// ([`FullWindows::filled`]) instead of raising an alert the gate would
/// hold back. Under a flood that a rate-limited rule matches packet by
/// packet (`type limit, count 1, track by_src` on SYNs), this keeps the
/// alerts the workers raise near the alerts that go out. Shared by the
/// gate (which writes) and the workers (which read); at most `cap` windows,
/// beyond which the ended ones are forgotten, then all (a forgotten window
/// only means its matches go to the gate).
#[derive(Debug)]
pub struct FullWindows {
    /// Key: (packet time of the match that filled it, end of the window).
    map: RwLock<HashMap<TrackKey, (i64, i64), foldhash::fast::RandomState>>,
    cap: usize,
}

impl FullWindows {
    pub fn new(cap: usize) -> FullWindows {
        FullWindows {
            map: RwLock::new(HashMap::default()),
            cap: cap.max(1),
        }
    }

    /// The threshold a worker may judge by a filled window: a rule's only
    /// one (no `detection_filter` counted before it), of type `limit` or
    /// `both`, counting matches (not `unique_on` ports), across flows.
    pub fn applies(detection_filter: Option<Threshold>, t: Option<Threshold>) -> Option<Threshold> {
        let t = t?;
        (detection_filter.is_none()
            && matches!(t.kind, ThresholdKind::Limit | ThresholdKind::Both)
            && t.unique_on_dst_port.is_none()
            && t.track != Track::Flow)
            .then_some(t)
    }

    /// Whether a match of `key` at `ts` falls in a window the gate filled
    /// with an earlier match (strictly earlier: a match at the same time
    /// may come before the filling one in packet order).
    pub fn filled(&self, key: &TrackKey, ts: Timestamp) -> bool {
        let Ok(map) = self.map.read() else {
            return false;
        };
        map.get(key)
            .is_some_and(|&(at, end)| at < ts.0 && ts.0 < end)
    }

    fn fill(&self, key: &TrackKey, at: i64, end: i64) {
        let Ok(mut map) = self.map.write() else {
            return;
        };
        if map.len() >= self.cap && !map.contains_key(key) {
            map.retain(|_, w| w.1 > at);
            if map.len() >= self.cap {
                map.clear();
            }
        }
        map.insert(*key, (at, end));
    }

    /// Windows held.
    pub fn len(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Thresholds and caps for the alerts of every worker, decided in
/// [`order_key`] order.
#[derive(Debug)]
pub struct AlertGate {
    thresholds: Bounded<TrackKey, Window>,
    full: Arc<FullWindows>,
    /// The packet whose alerts are being decided: (time, number, part,
    /// worker), and its alerts passed so far.
    packet: Option<(i64, u64, u8, usize)>,
    in_packet: u32,
    /// The second of packet time being counted, and its alerts so far.
    second: i64,
    in_second: u32,
    pub stats: GateStats,
}

impl AlertGate {
    /// `max_tracked` caps the threshold table, as a worker's
    /// (`ids.max_tracked`).
    pub fn new(max_tracked: usize) -> AlertGate {
        AlertGate {
            thresholds: Bounded::new(max_tracked),
            full: Arc::new(FullWindows::new(max_tracked)),
            packet: None,
            in_packet: 0,
            second: i64::MIN,
            in_second: 0,
            stats: GateStats::default(),
        }
    }

    /// The windows this gate fills, for the workers to read.
    pub fn full_windows(&self) -> Arc<FullWindows> {
        Arc::clone(&self.full)
    }

    /// Threshold keys held, and evicted at the cap so far.
    pub fn state(&self) -> (usize, u64) {
        (self.thresholds.len(), self.thresholds.evicted)
    }

    /// Whether `alert` (raised by `worker`, with ticket `t`) goes out.
    /// Alerts must come in [`order_key`] order.
    pub fn decide(&mut self, alert: &AlertRecord, t: &GateTicket, worker: usize) -> bool {
        let ts = alert.time;
        let packet = (ts.0, t.number, t.part, worker);
        if self.packet != Some(packet) {
            self.packet = Some(packet);
            self.in_packet = 0;
        }
        // A worker judges by a filled window only a rule's one threshold.
        let alone = t.thresholds.len() == 1;
        for (th, key, port) in &t.thresholds {
            let (pass, filled) = threshold::check_filling(&mut self.thresholds, key, th, ts, *port);
            if let Some(end) =
                filled.filter(|_| alone && FullWindows::applies(None, Some(*th)).is_some())
            {
                self.full.fill(key, ts.0, end);
            }
            if !pass {
                self.stats.thresholded += 1;
                return false;
            }
        }
        // The packet's cap first: what it drops never counts against the
        // second's (as in a worker).
        if self.in_packet >= t.limits.per_packet {
            self.stats.dropped_per_packet += 1;
            return false;
        }
        self.in_packet += 1;
        let second = ts.0.div_euclid(1_000_000);
        if second != self.second {
            self.second = second;
            self.in_second = 0;
        }
        if self.in_second >= t.limits.per_second {
            self.stats.dropped_per_second += 1;
            return false;
        }
        self.in_second += 1;
        self.stats.alerts += 1;
        true
    }
}

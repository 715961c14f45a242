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
//! A worker still applies the per-packet cap to the alerts it decided
//! itself (so a packet matching thousands of rules never leaves it with
//! thousands of alerts): it counts no more of the packet's alerts than the
//! gate does, so what it drops the gate would have dropped too. The
//! per-second cap is the gate's alone: a worker's count of the second
//! would include alerts the gate then drops at the packet's cap.

use super::threshold::{self, TrackKey, Window};
use super::{AlertLimits, Threshold};
use crate::ids::state::Bounded;
use crate::record::AlertRecord;

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

/// Thresholds and caps for the alerts of every worker, decided in
/// [`order_key`] order.
#[derive(Debug)]
pub struct AlertGate {
    thresholds: Bounded<TrackKey, Window>,
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
            packet: None,
            in_packet: 0,
            second: i64::MIN,
            in_second: 0,
            stats: GateStats::default(),
        }
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
        for (th, key, port) in &t.thresholds {
            if !threshold::check(&mut self.thresholds, key, th, ts, *port) {
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

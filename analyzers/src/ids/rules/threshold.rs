//! `threshold` and `detection_filter`, with Suricata's semantics
//! (detect-engine-threshold.c): a window opens at the first match of a
//! tracked key and lasts `seconds`; a match after it opens a new one.

use std::net::IpAddr;

use super::{Threshold, ThresholdKind, Track};
use crate::ids::state::Bounded;
use crate::time::Timestamp;

/// What a threshold counts for: the rule, and the tracked address(es) or
/// flow id (`by_flow`).
/// (rule, source, destination, flow). The rule is a worker's rule index,
/// or for the node's alert gate [`gate_rule`]: the rule set's generation
/// and the rule's sid.
pub type TrackKey = (u64, Option<IpAddr>, Option<IpAddr>, u64);

/// The rule part of a key the alert gate tracks: the sid (unique in a rule
/// set, so that the key does not depend on rule order) under the rule
/// set's generation, so that rules a reload brings never count in the
/// windows of the rules before it (a worker starts them with empty
/// tables; the gate, which outlives the reload, would otherwise carry an
/// old rule's window over to a new rule with its sid).
pub fn gate_rule(generation: u32, sid: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(sid)
}

/// Largest `unique_on` set kept per key (all 65,536 ports, as Suricata's
/// 8 KiB bitmap; most counts stop far earlier).
const MAX_UNIQUE: usize = 65_536;

#[derive(Debug)]
pub struct Window {
    first: Timestamp,
    count: u32,
    /// Distinct ports seen (sorted), for `unique_on`.
    ports: Vec<u16>,
    /// `backoff`: the match count that alerts next.
    next: u64,
}

/// The key a threshold tracks a packet by.
/// A packet without a flow counts under flow id 0.
pub fn key(rule: u64, t: &Threshold, src: IpAddr, dst: IpAddr, flow: Option<u64>) -> TrackKey {
    match t.track {
        Track::Src => (rule, Some(src), None, 0),
        Track::Dst => (rule, None, Some(dst), 0),
        Track::Rule => (rule, None, None, 0),
        Track::Both => (rule, Some(src), Some(dst), 0),
        Track::Flow => (rule, None, None, flow.unwrap_or(0)),
    }
}

/// The port a match counts for `unique_on`: `unique_on src_port` counts
/// distinct source ports; every other threshold keys on the destination
/// port. (`ports`: the packet's (source, destination).)
pub fn counted_port(t: &Threshold, ports: Option<(u16, u16)>) -> Option<u16> {
    match t.unique_on_dst_port {
        Some(false) => ports.map(|p| p.0),
        _ => ports.map(|p| p.1),
    }
}

/// Whether this match alerts, updating the key's window.
pub fn check(
    table: &mut Bounded<TrackKey, Window>,
    key: &TrackKey,
    t: &Threshold,
    ts: Timestamp,
    port: Option<u16>,
) -> bool {
    check_filling(table, key, t, ts, port).0
}

/// [`check`], and the end of the window (µs) when this match filled a
/// `limit` or `both` window (its match count just reached `count`): no
/// later match in that window can alert.
pub fn check_filling(
    table: &mut Bounded<TrackKey, Window>,
    key: &TrackKey,
    t: &Threshold,
    ts: Timestamp,
    port: Option<u16>,
) -> (bool, Option<i64>) {
    let seconds_us = i64::from(t.seconds) * 1_000_000;
    let w = table.entry(key, || Window {
        first: Timestamp(i64::MIN),
        count: 0,
        ports: Vec::new(),
        next: 0,
    });
    if t.kind == ThresholdKind::Backoff {
        // No window: alerts at match count, count * multiplier, count *
        // multiplier^2, ... of the flow (detect-engine-threshold.c).
        w.count = w.count.saturating_add(1);
        if w.next == 0 {
            w.next = u64::from(t.count);
        }
        if u64::from(w.count) != w.next {
            return (false, None);
        }
        w.next = (w.next.saturating_mul(u64::from(t.multiplier))).min(u64::from(u32::MAX));
        return (true, None);
    }
    let fresh = w.first.0 == i64::MIN || ts.micros_since(w.first) >= seconds_us;
    if fresh {
        w.first = ts;
        w.count = 0;
        w.ports.clear();
    }
    if t.unique_on_dst_port.is_some() {
        // Distinct ports instead of matches.
        let Some(p) = port else {
            return (false, None);
        };
        if let Err(at) = w.ports.binary_search(&p) {
            if w.ports.len() < MAX_UNIQUE.min(t.count as usize + 1) {
                w.ports.insert(at, p);
            }
        }
        return (w.ports.len() > t.count as usize, None);
    }
    w.count = w.count.saturating_add(1);
    let filled = (matches!(t.kind, ThresholdKind::Limit | ThresholdKind::Both)
        && w.count == t.count)
        .then(|| w.first.0.saturating_add(seconds_us));
    let pass = match t.kind {
        ThresholdKind::Limit => w.count <= t.count,
        ThresholdKind::Threshold => {
            if w.count >= t.count {
                w.count = 0;
                true
            } else {
                false
            }
        }
        ThresholdKind::Both => w.count == t.count,
        ThresholdKind::DetectionFilter => w.count > t.count,
        ThresholdKind::Backoff => false,
    };
    (pass, filled)
}

//! Shadow versus production: the same duplicated call seen in a production
//! VNet and a shadow VNet (same SSRC, same inner 5-tuple) is paired window
//! by window, and each pair gets a verdict.
//!
//! MOS here is the conversational MOS-CQ of each window with the default
//! jitter-buffer model (`rtp.default_jitter_buffer`, named in the
//! `jitter_buffer` column). Two windows are
//! `equal` when their MOS differs by at most the tolerance (default 0.1,
//! about the resolution at which listeners tell calls apart); otherwise the
//! higher wins. Both the node and the collector use this module.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::record::RtpWindowRecord;
use crate::time::Timestamp;
use crate::vnet::{Role, VnetId, VnetMap};

/// Verdict of one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    ShadowBetter,
    ProductionBetter,
    Equal,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::ShadowBetter => "shadow_better",
            Verdict::ProductionBetter => "production_better",
            Verdict::Equal => "equal",
        }
    }

    /// The verdict for MOS values of the two VNets.
    pub fn of(mos_production: f64, mos_shadow: f64, tolerance: f64) -> Verdict {
        let diff = mos_shadow - mos_production;
        if diff.abs() <= tolerance {
            Verdict::Equal
        } else if diff > 0.0 {
            Verdict::ShadowBetter
        } else {
            Verdict::ProductionBetter
        }
    }
}

/// One stream's window in both VNets.
#[derive(Clone, Debug, PartialEq)]
pub struct RtpCompareRecord {
    pub production: VnetId,
    pub shadow: VnetId,
    pub ssrc: u32,
    pub src_addr: IpAddr,
    pub src_port: u16,
    pub dst_addr: IpAddr,
    pub dst_port: u16,
    pub call_id: Option<String>,
    pub window_start: Timestamp,
    pub window_secs: u32,
    pub mos_production: f64,
    pub mos_shadow: f64,
    /// Shadow minus production.
    pub mos_diff: f64,
    pub loss_production: f64,
    pub loss_shadow: f64,
    pub jitter_production_ms: f64,
    pub jitter_shadow_ms: f64,
    /// The jitter-buffer model the MOS values come from.
    pub jitter_buffer: &'static str,
    pub verdict: Verdict,
}

type PairKey = (i64, u32, IpAddr, u16, IpAddr, u16);

fn key(w: &RtpWindowRecord) -> PairKey {
    (
        w.window_start.micros(),
        w.id.ssrc,
        w.id.src_addr,
        w.id.src_port,
        w.id.dst_addr,
        w.id.dst_port,
    )
}

/// The windows of production and shadow VNets, by VNet and pairing key.
type ByVnet<'a> = BTreeMap<VnetId, BTreeMap<PairKey, &'a RtpWindowRecord>>;

fn by_vnet<'a>(windows: &'a [RtpWindowRecord], vnets: &VnetMap) -> ByVnet<'a> {
    let mut by: ByVnet<'a> = BTreeMap::new();
    for w in windows {
        if matches!(vnets.get(w.id.vnet).role, Role::Production | Role::Shadow) {
            by.entry(w.id.vnet).or_default().insert(key(w), w);
        }
    }
    by
}

/// Every (production, shadow) pair of VNets in the map, with or without
/// windows.
fn vnet_pairs(vnets: &VnetMap) -> impl Iterator<Item = (VnetId, VnetId)> + '_ {
    let of = move |r: Role| {
        vnets
            .iter()
            .filter(move |(_, v)| v.role == r)
            .map(|(id, _)| id)
    };
    of(Role::Production).flat_map(move |p| of(Role::Shadow).map(move |s| (p, s)))
}

/// Pairs the windows of every production VNet with those of every shadow
/// VNet. Output is ordered by window, then stream.
pub fn compare_windows(
    windows: &[RtpWindowRecord],
    vnets: &VnetMap,
    tolerance: f64,
) -> Vec<RtpCompareRecord> {
    let by = by_vnet(windows, vnets);
    let mut out = Vec::new();
    for (p, s) in vnet_pairs(vnets) {
        if let (Some(pw), Some(sw)) = (by.get(&p), by.get(&s)) {
            for (k, a) in pw {
                let Some(b) = sw.get(k) else { continue };
                if a.capture_drops > 0 || b.capture_drops > 0 {
                    continue; // the probe's loss, not the network's
                }
                if let Some(r) = judge(a, b, tolerance) {
                    out.push(r);
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (a.window_start, a.production, a.shadow, a.ssrc, a.src_port).cmp(&(
            b.window_start,
            b.production,
            b.shadow,
            b.ssrc,
            b.src_port,
        ))
    });
    out
}

/// A stream's window that one VNet of a production/shadow pair carried and
/// the other did not: a call the shadow lost, or a window in which it
/// carried none of a stream's packets, shows here and not as a pair (a
/// comparison of pairs alone would call such a shadow ready).
#[derive(Clone, Debug, PartialEq)]
pub struct UnpairedWindow {
    /// The VNet that carried the window.
    pub vnet: VnetId,
    /// The VNet of the other role that lacks it.
    pub lacking: VnetId,
    /// The role of `vnet`: a production window the shadow lacks is the
    /// shadow's failure.
    pub role: Role,
    pub window: RtpWindowRecord,
}

/// Packets a window must hold to count as lacking its twin: a call's first
/// or last packets a few ms across a window boundary from the other VNet's
/// copy (its path a little slower) make a window of a handful of packets
/// that the other does not have, which is no loss.
pub const MIN_UNPAIRED_PACKETS: u64 = 10;

/// The windows of each production/shadow pair of VNets that the other VNet
/// of the pair lacks, ordered by window, then stream. Windows in which the
/// probe dropped packets are left out (it may have missed the twin): the
/// window's own, or any window of the lacking VNet at that time (the
/// probe that watched it, on another node maybe, was losing packets); and
/// windows of fewer than [`MIN_UNPAIRED_PACKETS`] packets.
pub fn unpaired_windows(windows: &[RtpWindowRecord], vnets: &VnetMap) -> Vec<UnpairedWindow> {
    let by = by_vnet(windows, vnets);
    let lossy: std::collections::HashSet<(VnetId, i64)> = windows
        .iter()
        .filter(|w| w.capture_drops > 0)
        .map(|w| (w.id.vnet, w.window_start.micros()))
        .collect();
    let mut out = Vec::new();
    let none = BTreeMap::new();
    for (p, s) in vnet_pairs(vnets) {
        for (has, lacking) in [(p, s), (s, p)] {
            let Some(hw) = by.get(&has) else { continue };
            let lw = by.get(&lacking).unwrap_or(&none);
            for (k, w) in hw {
                if w.capture_drops == 0
                    && w.quality.packets_received >= MIN_UNPAIRED_PACKETS
                    && !lw.contains_key(k)
                    && !lossy.contains(&(lacking, w.window_start.micros()))
                {
                    out.push(UnpairedWindow {
                        vnet: has,
                        lacking,
                        role: vnets.get(has).role,
                        window: (*w).clone(),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| {
        let k = |u: &UnpairedWindow| (key(&u.window), u.vnet, u.lacking);
        k(a).cmp(&k(b))
    });
    out
}

/// One row per window across all paired streams: mean MOS per VNet.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowVerdict {
    pub production: VnetId,
    pub shadow: VnetId,
    pub window_start: Timestamp,
    pub streams: u64,
    pub mos_production: f64,
    pub mos_shadow: f64,
    pub loss_production: f64,
    pub loss_shadow: f64,
    pub verdict: Verdict,
}

/// Aggregates paired records per window (mean over streams).
pub fn per_window(records: &[RtpCompareRecord], tolerance: f64) -> Vec<WindowVerdict> {
    let mut t = WindowTally::new(tolerance, usize::MAX);
    for r in records {
        t.add(r);
    }
    t.windows()
}

/// How much the paired streams say: the mean of the shadow's MOS minus
/// production's over the calls paired, with its 95% confidence interval,
/// and whether that interval rules out a shadow worse by more than the
/// tolerance.
///
/// The unit of evidence is the call (by Call-ID; a stream without one is a
/// call of its own), each the mean of its streams, each of those the mean
/// of its windows: the windows of one stream, and the two streams of one
/// call, share its path, codec and talkers, so counting each as
/// independent would make one long call look like proof. With fewer than
/// two calls there is no interval, and the confidence is low whatever the
/// verdicts were. The spread is taken as at least [`MIN_SD`]: two calls
/// that happen to agree to the last digit are not a certainty.
#[derive(Clone, Debug, PartialEq)]
pub struct MosDifference {
    pub streams: usize,
    pub calls: usize,
    pub stream_windows: usize,
    /// Shadow minus production, mean over the calls.
    pub mean: f64,
    /// The 95% interval of that mean (Student's t over the calls), when
    /// two or more calls were paired.
    pub ci95: Option<(f64, f64)>,
    /// The interval lies above minus the tolerance: the shadow is not worse
    /// by more than the tolerance, at 95% confidence.
    pub confident: bool,
    /// Why the confidence is low, in one phrase (empty when it is high).
    pub why_low: String,
}

/// The least standard deviation of the calls' differences assumed, in
/// MOS: the resolution at which the node's MOS values are compared.
pub const MIN_SD: f64 = 0.01;

/// Two-sided 97.5% quantiles of Student's t for 1 to 30 degrees of
/// freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The 97.5% quantile of Student's t with `dof` degrees of freedom; past
/// 30, the value at the start of each step (31: 2.040, 41: 2.020, 61:
/// 2.000, 121: 1.980), which errs towards a wider interval.
fn t975(dof: usize) -> f64 {
    match dof {
        0 => f64::INFINITY,
        1..=30 => T975[dof - 1],
        31..=40 => 2.040,
        41..=60 => 2.020,
        61..=120 => 2.000,
        _ => 1.980,
    }
}

/// [`MosDifference`] of the stream windows paired; `None` when none were.
pub fn mos_difference(pairs: &[RtpCompareRecord], tolerance: f64) -> Option<MosDifference> {
    type StreamKey = (VnetId, VnetId, u32, IpAddr, u16, IpAddr, u16);
    let mut streams: BTreeMap<StreamKey, (f64, u32, Option<&str>)> = BTreeMap::new();
    for r in pairs.iter().filter(|r| r.mos_diff.is_finite()) {
        let k = (
            r.production,
            r.shadow,
            r.ssrc,
            r.src_addr,
            r.src_port,
            r.dst_addr,
            r.dst_port,
        );
        let e = streams.entry(k).or_insert((0.0, 0, None));
        e.0 += r.mos_diff;
        e.1 += 1;
        e.2 = e.2.or(r.call_id.as_deref());
    }
    if streams.is_empty() {
        return None;
    }
    // Each call's mean over its streams; a stream without a Call-ID is a
    // call of its own.
    type CallKey<'a> = (Option<&'a str>, Option<&'a StreamKey>);
    let mut calls: BTreeMap<CallKey<'_>, (f64, u32)> = BTreeMap::new();
    for (k, (sum, n, call)) in &streams {
        let key = (*call, call.is_none().then_some(k));
        let e = calls.entry(key).or_insert((0.0, 0));
        e.0 += sum / f64::from(*n);
        e.1 += 1;
    }
    let means: Vec<f64> = calls.values().map(|(s, n)| s / f64::from(*n)).collect();
    let n = means.len();
    let mean = means.iter().sum::<f64>() / n as f64;
    let ci95 = (n >= 2).then(|| {
        let var = means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half = t975(n - 1) * var.sqrt().max(MIN_SD) / (n as f64).sqrt();
        (mean - half, mean + half)
    });
    let why_low = match ci95 {
        None => "one call paired: no interval to judge by".to_string(),
        Some((low, _)) if low < -tolerance => format!(
            "the 95% interval reaches {low:+.2} MOS, below -{tolerance}: {n} calls do not \
             rule out a shadow worse by more than the tolerance"
        ),
        Some(_) => String::new(),
    };
    Some(MosDifference {
        streams: streams.len(),
        calls: n,
        stream_windows: streams.values().map(|v| v.1 as usize).sum(),
        mean,
        ci95,
        confident: why_low.is_empty(),
        why_low,
    })
}

/// (window start, production, shadow).
type WindowKey = (i64, VnetId, VnetId);

/// Streams, then the sums of MOS production, MOS shadow, loss production,
/// loss shadow.
type Sums = (u64, f64, f64, f64, f64);

/// [`per_window`] kept as the pairs arrive, in bounded memory: the
/// comparison of a replay's summary and of a node that runs for weeks.
/// At most `cap` windows are kept (about 100 bytes each); past that the
/// oldest is settled: its verdict is counted and its row forgotten, and a
/// late pair of a settled window is counted in `late` instead of opening
/// it again.
#[derive(Debug)]
pub struct WindowTally {
    acc: BTreeMap<WindowKey, Sums>,
    cap: usize,
    tolerance: f64,
    /// Verdicts of the settled windows: shadow better, production better,
    /// equal.
    settled: [u64; 3],
    /// The last window settled: windows settle in key order, so a pair of
    /// a key at or below it belongs to a window settled already.
    settled_upto: Option<WindowKey>,
    /// Pairs of windows already settled.
    pub late: u64,
}

impl WindowTally {
    pub fn new(tolerance: f64, cap: usize) -> WindowTally {
        WindowTally {
            acc: BTreeMap::new(),
            cap: cap.max(1),
            tolerance,
            settled: [0; 3],
            settled_upto: None,
            late: 0,
        }
    }

    /// A new tolerance (SIGHUP): the verdicts of windows not settled yet
    /// are given with it.
    pub fn set_tolerance(&mut self, tolerance: f64) {
        self.tolerance = tolerance;
    }

    pub fn add(&mut self, r: &RtpCompareRecord) {
        let key = (r.window_start.micros(), r.production, r.shadow);
        if self.settled_upto.is_some_and(|s| key <= s) {
            self.late += 1;
            return;
        }
        let e = self.acc.entry(key).or_default();
        e.0 += 1;
        e.1 += r.mos_production;
        e.2 += r.mos_shadow;
        e.3 += r.loss_production;
        e.4 += r.loss_shadow;
        while self.acc.len() > self.cap {
            let Some((k, sums)) = self.acc.pop_first() else {
                break;
            };
            let v = verdict_of(k, sums, self.tolerance);
            self.settled[slot(v.verdict)] += 1;
            self.settled_upto = Some(k);
        }
    }

    /// The windows kept, oldest first.
    pub fn windows(&self) -> Vec<WindowVerdict> {
        self.acc
            .iter()
            .map(|(&k, &sums)| verdict_of(k, sums, self.tolerance))
            .collect()
    }

    /// Windows by verdict, settled ones included: shadow better,
    /// production better, equal.
    pub fn counts(&self) -> [u64; 3] {
        let mut c = self.settled;
        for (&k, &sums) in &self.acc {
            c[slot(verdict_of(k, sums, self.tolerance).verdict)] += 1;
        }
        c
    }

    /// Windows settled at the cap (counted, not listed).
    pub fn settled(&self) -> u64 {
        self.settled.iter().sum()
    }
}

fn slot(v: Verdict) -> usize {
    match v {
        Verdict::ShadowBetter => 0,
        Verdict::ProductionBetter => 1,
        Verdict::Equal => 2,
    }
}

fn verdict_of((t, p, s): WindowKey, (n, mp, ms, lp, ls): Sums, tolerance: f64) -> WindowVerdict {
    let n_f = n as f64;
    let (mp, ms) = (mp / n_f, ms / n_f);
    WindowVerdict {
        production: p,
        shadow: s,
        window_start: Timestamp(t),
        streams: n,
        mos_production: mp,
        mos_shadow: ms,
        loss_production: lp / n_f,
        loss_shadow: ls / n_f,
        verdict: Verdict::of(mp, ms, tolerance),
    }
}

/// Identity of a window for pairing: stream (without the VNet) and start.
type PairId = (u32, IpAddr, u16, IpAddr, u16, i64);

fn pair_id(w: &RtpWindowRecord) -> PairId {
    (
        w.id.ssrc,
        w.id.src_addr,
        w.id.src_port,
        w.id.dst_addr,
        w.id.dst_port,
        w.window_start.0,
    )
}

/// What the [`Comparer`] did with the windows it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompareStats {
    /// Windows of a production or shadow VNet taken in.
    pub windows: u64,
    /// Production/shadow pairs judged.
    pub pairs: u64,
    /// Windows whose twin did not come within three window lengths.
    pub unpaired_expired: u64,
    /// Windows not kept because [`Comparer::cap`] windows were waiting
    /// already (they cannot be paired).
    pub dropped_at_cap: u64,
    /// Pairs not judged because the probe dropped packets during either
    /// window ([`RtpWindowRecord::capture_drops`]): their loss and MOS
    /// would be the probe's, not the network's.
    pub capture_drops: u64,
}

/// Pairs production and shadow windows as they finish, for `replay` and
/// `run` alike: a probe that runs for ever cannot wait for the end of its
/// input.
///
/// The two copies of a window finish at about the same time (at the first
/// packet after the window in each VNet) and in the same analysis worker
/// (the shard hash ignores VLANs and VNIs), but not always in the same
/// batch, so a window waits here until its twin arrives, for at most three
/// window lengths behind the newest window *of its own worker* (`source`
/// of [`Comparer::push`]): workers run ahead of each other, and expiring
/// by another worker's time would make the result depend on the number of
/// workers. Every pair is judged once, when its second window arrives.
///
/// Nothing is kept when the VNet map lacks a production or a shadow VNet
/// (there is no pair to make; issue 12: 600 k streams' windows cost
/// hundreds of MB for nothing), nor windows of monitor VNets; at most
/// `cap` windows wait at once, the rest are counted in
/// [`CompareStats::dropped_at_cap`].
#[derive(Debug)]
pub struct Comparer {
    cap: usize,
    tolerance: f64,
    /// Waiting windows by stream and window start (several VNets each),
    /// each with whether it was paired already.
    pending: std::collections::HashMap<PairId, Vec<(RtpWindowRecord, bool)>>,
    /// Arrival order per source, for expiry: (window end, id).
    order: BTreeMap<usize, std::collections::VecDeque<(i64, PairId)>>,
    /// Newest window start per source.
    newest: BTreeMap<usize, i64>,
    waiting: usize,
    stats: CompareStats,
}

impl Comparer {
    /// Windows waiting for a twin by default (about 300 bytes each).
    pub const DEFAULT_CAP: usize = 200_000;

    pub fn new(cap: usize, tolerance: f64) -> Self {
        Comparer {
            cap: cap.max(2),
            tolerance,
            pending: std::collections::HashMap::new(),
            order: BTreeMap::new(),
            newest: BTreeMap::new(),
            waiting: 0,
            stats: CompareStats::default(),
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn tolerance(&self) -> f64 {
        self.tolerance
    }

    /// A new tolerance (SIGHUP) for the pairs judged from now on.
    pub fn set_tolerance(&mut self, tolerance: f64) {
        self.tolerance = tolerance;
    }

    /// Windows waiting for their twin.
    pub fn pending(&self) -> usize {
        self.waiting
    }

    pub fn stats(&self) -> &CompareStats {
        &self.stats
    }

    /// Adds finished windows of `source` (an analysis worker); returns the
    /// comparisons now complete.
    pub fn push(
        &mut self,
        source: usize,
        windows: &[RtpWindowRecord],
        vnets: &VnetMap,
    ) -> Vec<RtpCompareRecord> {
        let mut out = Vec::new();
        let has = |r: Role| vnets.iter().any(|(_, v)| v.role == r);
        if !(has(Role::Production) && has(Role::Shadow)) {
            return out;
        }
        for w in windows {
            let role = vnets.get(w.id.vnet).role;
            if !matches!(role, Role::Production | Role::Shadow) {
                continue;
            }
            self.stats.windows += 1;
            let id = pair_id(w);
            let newest = self.newest.entry(source).or_insert(i64::MIN);
            *newest = (*newest).max(w.window_start.0);
            let mut paired = false;
            if let Some(twins) = self.pending.get_mut(&id) {
                for (t, t_paired) in twins {
                    let (p, s) = match (vnets.get(t.id.vnet).role, role) {
                        (Role::Production, Role::Shadow) => (&*t, w),
                        (Role::Shadow, Role::Production) => (w, &*t),
                        _ => continue,
                    };
                    if p.capture_drops > 0 || s.capture_drops > 0 {
                        self.stats.capture_drops += 1;
                    } else if let Some(r) = judge(p, s, self.tolerance) {
                        out.push(r);
                    }
                    *t_paired = true;
                    paired = true;
                }
            }
            if self.waiting >= self.cap {
                self.stats.dropped_at_cap += 1;
                continue;
            }
            self.pending
                .entry(id)
                .or_default()
                .push((w.clone(), paired));
            self.waiting += 1;
            self.order.entry(source).or_default().push_back((
                w.window_start.0 + 3 * i64::from(w.window_secs.max(1)) * 1_000_000,
                id,
            ));
        }
        self.expire(source);
        self.stats.pairs += out.len() as u64;
        out
    }

    /// Forgets the windows of `source` more than three window lengths
    /// behind its newest window.
    fn expire(&mut self, source: usize) {
        let Some(&newest) = self.newest.get(&source) else {
            return;
        };
        let Some(order) = self.order.get_mut(&source) else {
            return;
        };
        while let Some(&(limit, id)) = order.front() {
            if newest <= limit {
                break;
            }
            order.pop_front();
            if let Some(v) = self.pending.get_mut(&id) {
                // The oldest window of this id from this source: windows of
                // one id arrive in order.
                if !v.is_empty() {
                    let (_, paired) = v.remove(0);
                    self.waiting -= 1;
                    if !paired {
                        self.stats.unpaired_expired += 1;
                    }
                }
                if v.is_empty() {
                    self.pending.remove(&id);
                }
            }
        }
    }
}

/// The comparison of production window `a` with shadow window `b`; `None`
/// when either has no MOS (unknown codec).
fn judge(a: &RtpWindowRecord, b: &RtpWindowRecord, tolerance: f64) -> Option<RtpCompareRecord> {
    let (mp, ms) = (a.quality.mos_cq, b.quality.mos_cq);
    if !(mp.is_finite() && ms.is_finite()) {
        return None;
    }
    Some(RtpCompareRecord {
        production: a.id.vnet,
        shadow: b.id.vnet,
        ssrc: a.id.ssrc,
        src_addr: a.id.src_addr,
        src_port: a.id.src_port,
        dst_addr: a.id.dst_addr,
        dst_port: a.id.dst_port,
        call_id: a.id.call_id.clone().or_else(|| b.id.call_id.clone()),
        window_start: a.window_start,
        window_secs: a.window_secs,
        mos_production: mp,
        mos_shadow: ms,
        mos_diff: ms - mp,
        loss_production: a.quality.loss_ratio,
        loss_shadow: b.quality.loss_ratio,
        jitter_production_ms: a.quality.jitter_ms,
        jitter_shadow_ms: b.quality.jitter_ms,
        jitter_buffer: a.quality.jitter_buffer,
        verdict: Verdict::of(mp, ms, tolerance),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RtpQuality, RtpStreamId};
    use crate::vnet::parse_vnet_map_spec;

    fn window(vnet: u16, t: i64, mos: f64) -> RtpWindowRecord {
        RtpWindowRecord {
            id: RtpStreamId {
                vnet: VnetId(vnet),
                ssrc: 7,
                src_addr: "10.0.0.1".parse().expect("addr"),
                src_port: 4000,
                dst_addr: "10.0.0.2".parse().expect("addr"),
                dst_port: 5000,
                payload_type: 0,
                codec: "PCMU".into(),
                call_id: None,
            },
            window_start: Timestamp::from_secs(t),
            window_secs: 10,
            quality: RtpQuality {
                mos_cq: mos,
                ..RtpQuality::default()
            },
            capture_drops: 0,
        }
    }

    fn pair(t: i64, ssrc: u32, mos_p: f64, mos_s: f64) -> RtpCompareRecord {
        RtpCompareRecord {
            production: VnetId(1),
            shadow: VnetId(2),
            ssrc,
            src_addr: "10.0.0.1".parse().expect("addr"),
            src_port: 4000,
            dst_addr: "10.0.0.2".parse().expect("addr"),
            dst_port: 5000,
            call_id: None,
            window_start: Timestamp::from_secs(t),
            window_secs: 10,
            mos_production: mos_p,
            mos_shadow: mos_s,
            mos_diff: mos_s - mos_p,
            loss_production: 0.0,
            loss_shadow: 0.0,
            jitter_production_ms: 0.0,
            jitter_shadow_ms: 0.0,
            jitter_buffer: "none",
            verdict: Verdict::of(mos_p, mos_s, 0.1),
        }
    }

    /// The tally kept as pairs arrive is `per_window` of all of them;
    /// at its cap it lists the newest windows and still counts every one,
    /// and a late pair of a settled window does not open it again.
    #[test]
    fn window_tally_lists_the_newest_windows_and_counts_all() {
        // Window 0: two streams, mean 3.0 vs 3.6 (shadow better); 10:
        // equal; 20: production better; 30: shadow better.
        let pairs = [
            pair(0, 1, 2.8, 3.7),
            pair(0, 2, 3.2, 3.5),
            pair(10, 1, 4.0, 4.05),
            pair(20, 1, 4.2, 3.0),
            pair(30, 1, 3.0, 4.0),
        ];
        let mut all = WindowTally::new(0.1, usize::MAX);
        let mut capped = WindowTally::new(0.1, 2);
        for p in &pairs {
            all.add(p);
            capped.add(p);
        }
        let every = per_window(&pairs, 0.1);
        assert_eq!(all.windows(), every);
        assert_eq!(every.len(), 4);
        assert_eq!(every[0].streams, 2);
        assert!((every[0].mos_shadow - 3.6).abs() < 1e-9);
        assert_eq!(all.counts(), [2, 1, 1]);
        assert_eq!(capped.counts(), [2, 1, 1]);
        assert_eq!(capped.settled(), 2);
        assert_eq!(capped.windows(), every[2..].to_vec());
        capped.add(&pair(10, 3, 1.0, 4.0));
        assert_eq!((capped.late, capped.counts()), (1, [2, 1, 1]));
        // Another shadow's pair of the last window settled (10) is not
        // late: that window was never settled.
        let mut other = pair(10, 4, 4.0, 4.0);
        other.shadow = VnetId(3);
        capped.add(&other);
        assert_eq!(capped.late, 1);
        assert_eq!(capped.counts(), [2, 1, 2]);
    }

    #[test]
    fn comparer_pairs_twins_across_pushes_and_expires_orphans() {
        let m = parse_vnet_map_spec("100=A:production,200=B:shadow").expect("spec");
        let vnets = VnetMap::new(&m, "default", Role::Monitor).expect("map");
        let mut c = Comparer::new(1000, 0.1);
        // Production's window 0 finishes first, the shadow's in a later batch.
        assert!(c.push(0, &[window(1, 0, 3.0)], &vnets).is_empty());
        let r = c.push(0, &[window(2, 0, 4.2), window(1, 10, 4.0)], &vnets);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].verdict, Verdict::ShadowBetter);
        // Not paired twice, and a monitor-role window is ignored.
        assert!(c.push(0, &[window(0, 10, 1.0)], &vnets).is_empty());
        // Another worker's time does not expire this worker's windows.
        assert!(c.push(1, &[window(1, 500, 4.0)], &vnets).is_empty());
        assert_eq!(c.stats().unpaired_expired, 0);
        // Window 10 never gets a twin: it expires three windows later (the
        // paired windows of 0 leave too, uncounted).
        let r = c.push(0, &[window(1, 50, 4.0), window(2, 50, 4.0)], &vnets);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].verdict, Verdict::Equal);
        // Left: the two windows of 50 and the other worker's.
        assert_eq!((c.stats().unpaired_expired, c.pending()), (1, 3));
        assert_eq!(c.stats().pairs, 2);
    }

    #[test]
    fn windows_the_probe_lost_packets_in_are_not_judged() {
        // Production's window 0 lost 40% to the probe's own drops (an
        // overloaded capture): MOS 1.0 against the shadow's 4.4. Judged,
        // it would say the shadow is better; it is counted instead.
        let m = parse_vnet_map_spec("100=A:production,200=B:shadow").expect("spec");
        let vnets = VnetMap::new(&m, "default", Role::Monitor).expect("map");
        let mut c = Comparer::new(1000, 0.1);
        let mut lossy = window(1, 0, 1.0);
        lossy.capture_drops = 405_414;
        assert!(c
            .push(0, &[lossy.clone(), window(2, 0, 4.4)], &vnets)
            .is_empty());
        assert_eq!((c.stats().capture_drops, c.stats().pairs), (1, 0));
        // Either side: the shadow's drops count too.
        let mut lossy_shadow = window(2, 10, 1.0);
        lossy_shadow.capture_drops = 1;
        assert!(c
            .push(0, &[window(1, 10, 4.4), lossy_shadow], &vnets)
            .is_empty());
        assert_eq!(c.stats().capture_drops, 2);
        // The batch comparison (the collector's) leaves them out as well.
        let all = [
            lossy,
            window(2, 0, 4.4),
            window(1, 20, 4.0),
            window(2, 20, 4.0),
        ];
        let r = compare_windows(&all, &vnets, 0.1);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].window_start, Timestamp::from_secs(20));
    }

    /// A window one VNet of the pair lacks is listed with the VNet that
    /// has it; a shadow that carried nothing at all lacks every window.
    #[test]
    fn windows_without_a_twin_are_listed_not_dropped() {
        let m = parse_vnet_map_spec("100=A:production,200=B:shadow").expect("spec");
        let vnets = VnetMap::new(&m, "default", Role::Monitor).expect("map");
        let full = |vnet, t| {
            let mut w = window(vnet, t, 4.4);
            w.quality.packets_received = 500;
            w
        };
        let mut all = vec![
            full(1, 0),
            full(2, 0),
            full(1, 10), // the shadow went dark
            full(1, 20),
            full(2, 20),
            full(2, 30), // the shadow only
        ];
        let mut lossy = full(1, 40);
        lossy.capture_drops = 3; // the probe may have missed its twin
        all.push(lossy);
        // A call's last packets just past a boundary in production only
        // (its copy a few ms faster in the shadow): no loss.
        let mut edge = full(1, 50);
        edge.quality.packets_received = MIN_UNPAIRED_PACKETS - 1;
        all.push(edge);
        // Production's window at 60 s lacks its twin while the probe
        // watching the shadow dropped packets (another stream's window
        // says so): not the shadow's failure.
        all.push(full(1, 60));
        let mut other = full(2, 60);
        other.id.ssrc = 8;
        other.capture_drops = 12;
        all.push(other);
        let u = unpaired_windows(&all, &vnets);
        let got: Vec<_> = u
            .iter()
            .map(|u| {
                (
                    u.window.window_start.secs_floor(),
                    u.vnet.0,
                    u.lacking.0,
                    u.role,
                )
            })
            .collect();
        assert_eq!(
            got,
            [(10, 1, 2, Role::Production), (30, 2, 1, Role::Shadow)]
        );
        assert_eq!(compare_windows(&all, &vnets, 0.1).len(), 2);
        let only_production: Vec<_> = all.iter().filter(|w| w.id.vnet.0 == 1).cloned().collect();
        // A shadow that carried nothing lacks every full window the probe
        // saw whole: 0, 10, 20 and 60.
        assert_eq!(unpaired_windows(&only_production, &vnets).len(), 4);
    }

    #[test]
    fn a_new_tolerance_judges_the_pairs_after_it() {
        let m = parse_vnet_map_spec("100=A:production,200=B:shadow").expect("spec");
        let vnets = VnetMap::new(&m, "default", Role::Monitor).expect("map");
        let mut c = Comparer::new(1000, 0.1);
        let r = c.push(0, &[window(1, 0, 3.8), window(2, 0, 4.3)], &vnets);
        assert_eq!(r[0].verdict, Verdict::ShadowBetter);
        c.set_tolerance(2.0);
        let r = c.push(0, &[window(1, 10, 3.8), window(2, 10, 4.3)], &vnets);
        assert_eq!(r[0].verdict, Verdict::Equal);
        assert_eq!(c.tolerance(), 2.0);
    }

    /// Issue 12 point 9: without a shadow VNet nothing is kept; at the cap,
    /// windows are counted, not kept.
    #[test]
    fn comparer_keeps_nothing_without_a_pair_and_counts_the_cap() {
        let m = parse_vnet_map_spec("100=A:production,300=C:monitor").expect("spec");
        let vnets = VnetMap::new(&m, "default", Role::Monitor).expect("map");
        let mut c = Comparer::new(1000, 0.1);
        let many: Vec<_> = (0..100).map(|i| window(1, i * 10, 4.0)).collect();
        assert!(c.push(0, &many, &vnets).is_empty());
        assert_eq!((c.pending(), c.stats().windows), (0, 0));

        let m = parse_vnet_map_spec("100=A:production,200=B:shadow").expect("spec");
        let vnets = VnetMap::new(&m, "default", Role::Monitor).expect("map");
        let mut c = Comparer::new(3, 0.1);
        let mut ws: Vec<_> = (0..5)
            .map(|i| {
                let mut w = window(1, 0, 4.0);
                w.id.ssrc = i;
                w
            })
            .collect();
        assert!(c.push(0, &ws, &vnets).is_empty());
        assert_eq!((c.pending(), c.stats().dropped_at_cap), (3, 2));
        // The kept ones still pair.
        for w in &mut ws {
            w.id.vnet = VnetId(2);
        }
        assert_eq!(c.push(0, &ws, &vnets).len(), 3);
    }

    #[test]
    fn pairs_windows_and_judges_them() {
        let m = parse_vnet_map_spec("100=A:production,200=B:shadow").expect("spec");
        let vnets = VnetMap::new(&m, "default", Role::Monitor).expect("map");
        // VnetIds: 0 default, 1 A, 2 B.
        let w = vec![
            window(1, 0, 4.3),
            window(2, 0, 4.35),
            window(1, 10, 3.2),
            window(2, 10, 4.3),
            window(1, 20, 4.4),
            window(2, 20, 3.9),
            window(1, 30, 4.0), // no shadow counterpart
            window(0, 0, 1.0),  // not production or shadow
        ];
        let r = compare_windows(&w, &vnets, 0.1);
        let verdicts: Vec<_> = r.iter().map(|x| x.verdict).collect();
        assert_eq!(
            verdicts,
            vec![
                Verdict::Equal,
                Verdict::ShadowBetter,
                Verdict::ProductionBetter
            ]
        );
        assert!((r[1].mos_diff - 1.1).abs() < 1e-9);
        assert_eq!(per_window(&r, 0.1).len(), 3);
    }

    /// The interval is over calls, each the mean of its streams, each the
    /// mean of its windows: one long call is one piece of evidence however
    /// many windows or streams it has.
    #[test]
    fn mos_difference_counts_calls_not_windows_or_streams() {
        assert_eq!(mos_difference(&[], 0.1), None);
        // One call of two streams, 30 windows each, identical in both
        // VNets: no interval, low confidence.
        let mut one = Vec::new();
        for ssrc in [1, 2] {
            for i in 0..30 {
                let mut p = pair(i * 10, ssrc, 4.0, 4.0);
                p.call_id = Some("a".into());
                one.push(p);
            }
        }
        let d = mos_difference(&one, 0.1).expect("pairs");
        assert_eq!((d.streams, d.calls, d.stream_windows), (2, 1, 60));
        assert_eq!(d.mean, 0.0);
        assert_eq!(d.ci95, None);
        assert!(!d.confident && d.why_low.contains("one call"), "{d:?}");
        // Four calls (streams without a Call-ID each one): diffs -0.02,
        // 0.0, +0.02, 0.0 (mean 0, sample sd 0.01633, t(3) 3.182:
        // half-width 0.02598).
        let mut four = Vec::new();
        for (ssrc, diff) in [(1, -0.02), (2, 0.0), (3, 0.02), (4, 0.0)] {
            for w in 0..3 {
                four.push(pair(w * 10, ssrc, 4.0, 4.0 + diff));
            }
        }
        let d = mos_difference(&four, 0.1).expect("pairs");
        assert_eq!((d.streams, d.calls, d.stream_windows), (4, 4, 12));
        let (lo, hi) = d.ci95.expect("interval");
        assert!(
            (hi - 0.025_98).abs() < 1e-4 && (lo + 0.025_98).abs() < 1e-4,
            "{d:?}"
        );
        assert!(d.confident && d.why_low.is_empty());
        // Two calls that agree exactly: the spread is taken as MIN_SD
        // (t(1) 12.706 x 0.01 / sqrt 2 = 0.0898), still inside 0.1.
        let two = [pair(0, 1, 4.0, 4.0), pair(0, 2, 4.0, 4.0)];
        let d = mos_difference(&two, 0.1).expect("pairs");
        let (lo, _) = d.ci95.expect("interval");
        assert!((lo + 0.089_85).abs() < 1e-4, "{d:?}");
        // Two calls far apart: an interval too wide to rule out a worse
        // shadow although neither call's mean is beyond the tolerance.
        let wide = [pair(0, 1, 4.0, 3.91), pair(0, 2, 4.0, 4.09)];
        let d = mos_difference(&wide, 0.1).expect("pairs");
        let (lo, _) = d.ci95.expect("interval");
        assert!(lo < -1.0, "t(1) is 12.7: {d:?}");
        assert!(!d.confident && d.why_low.contains("2 calls"), "{d:?}");
        // Past 30 degrees of freedom the quantile errs wide.
        assert!(t975(31) > t975(30) - 0.01 && t975(121) > 1.96);
    }
}

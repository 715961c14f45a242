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

/// Pairs the windows of every production VNet with those of every shadow
/// VNet. Output is ordered by window, then stream.
pub fn compare_windows(
    windows: &[RtpWindowRecord],
    vnets: &VnetMap,
    tolerance: f64,
) -> Vec<RtpCompareRecord> {
    let role = |v: VnetId| vnets.get(v).role;
    let mut by_vnet: BTreeMap<VnetId, BTreeMap<PairKey, &RtpWindowRecord>> = BTreeMap::new();
    for w in windows {
        if matches!(role(w.id.vnet), Role::Production | Role::Shadow) {
            by_vnet.entry(w.id.vnet).or_default().insert(key(w), w);
        }
    }
    let mut out = Vec::new();
    for (_, pw) in by_vnet
        .iter()
        .filter(|(v, _)| role(**v) == Role::Production)
    {
        for (_, sw) in by_vnet.iter().filter(|(v, _)| role(**v) == Role::Shadow) {
            for (k, a) in pw {
                let Some(b) = sw.get(k) else { continue };
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
    // (window, production, shadow) -> (streams, sums of MOS P, MOS S, loss P, loss S)
    type Sums = (u64, f64, f64, f64, f64);
    let mut acc: BTreeMap<(i64, VnetId, VnetId), Sums> = BTreeMap::new();
    for r in records {
        let e = acc
            .entry((r.window_start.micros(), r.production, r.shadow))
            .or_default();
        e.0 += 1;
        e.1 += r.mos_production;
        e.2 += r.mos_shadow;
        e.3 += r.loss_production;
        e.4 += r.loss_shadow;
    }
    acc.into_iter()
        .map(|((t, p, s), (n, mp, ms, lp, ls))| {
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
        })
        .collect()
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
                    if let Some(r) = judge(p, s, self.tolerance) {
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
}

//! The multi-pattern prefilter: which rules' fast patterns occur in a
//! payload, in one pass.
//!
//! Our own Aho-Corasick DFA: a full transition table (256 entries a
//! state, ASCII case folded into it), its states numbered so that every
//! state where some pattern ends comes after all others. The scan is one
//! table load and one comparison per payload byte, with no other branch
//! on the common path. This measured about twice as fast as the
//! `aho-corasick` crate's DFA search on this machine (bench/rules.sh),
//! whose general search loop checks for special states and prefilters.
//! Rule sets whose table would pass [`MAX_STATES`] states (about 64 MiB)
//! use the crate instead, with an overlapping search (every occurrence of
//! every pattern is reported). Both build in time near-linear in the total
//! pattern bytes (the DFA: states times 256), and the engine caps a
//! pattern at 4,096 bytes ([`super::parse::MAX_CONTENT_BYTES`]).
//!
//! Matching is case-insensitive here; the engine checks the exact case
//! (and every other condition) of each candidate rule afterwards.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// Largest DFA we build ourselves (states of 1 KiB each).
pub const MAX_STATES: usize = 65_536;

/// Pattern bytes up to which the crate builds its DFA (above: its
/// contiguous NFA).
const MAX_CRATE_DFA_BYTES: usize = 262_144;

/// Compiled patterns.
pub enum Prefilter {
    Dfa(Dfa),
    Crate(Crate),
}

/// Full-table DFA; states `>= first_out` have outputs.
pub struct Dfa {
    /// `u16` states (at most [`MAX_STATES`]): half the cache footprint.
    trans: Vec<u16>,
    first_out: u32,
    /// Per output state: the patterns ending exactly there, and the next
    /// output state along its suffix links (its longest proper suffix
    /// where some pattern ends), [`NO_LINK`] if none. Outputs are not
    /// copied down the suffix links, so a set of nested patterns (`a`,
    /// `aa`, ... ) costs memory linear in its states, not quadratic.
    outputs: Vec<(Vec<u32>, u32)>,
    /// Longest pattern: how far the interleaved lanes overlap.
    max_len: usize,
}

/// Independent lanes a payload is split into (see [`Dfa::scan`]).
const LANES: usize = 4;

/// Output states noted per scan before falling back to reporting inline.
const HITS: usize = 64;

/// End of a chain of output states.
const NO_LINK: u32 = u32::MAX;

/// The `aho-corasick` crate, for very large rule sets.
pub struct Crate {
    ac: AhoCorasick,
}

impl Dfa {
    fn new(lower: &[Vec<u8>]) -> Option<Dfa> {
        // The trie, children keyed by lower-case byte.
        let mut children: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        let mut out: Vec<Vec<u32>> = vec![Vec::new()];
        for (id, p) in lower.iter().enumerate() {
            let mut u = 0usize;
            for &b in p {
                u = match children[u].iter().find(|(c, _)| *c == b) {
                    Some(&(_, v)) => v as usize,
                    None => {
                        children.push(Vec::new());
                        out.push(Vec::new());
                        let v = children.len() - 1;
                        children[u].push((b, v as u32));
                        v
                    }
                };
                if children.len() > MAX_STATES {
                    return None;
                }
            }
            out[u].push(id as u32);
        }
        // Breadth first: failure links, suffix links to the next state
        // with an output, full transitions.
        let n = children.len();
        let mut delta = vec![0u32; n * 256];
        let mut fail = vec![0u32; n];
        let mut dict = vec![NO_LINK; n];
        let mut order = std::collections::VecDeque::from([0usize]);
        while let Some(u) = order.pop_front() {
            for byte in 0..=255u8 {
                let key = byte.to_ascii_lowercase();
                let child = children[u].iter().find(|(c, _)| *c == key).map(|&(_, v)| v);
                let via_fail = if u == 0 {
                    0
                } else {
                    delta[fail[u] as usize * 256 + usize::from(byte)]
                };
                match child {
                    Some(v) => {
                        delta[u * 256 + usize::from(byte)] = v;
                        if byte == key {
                            // First visit of this child (its lower-case byte).
                            // `via_fail` is shallower: its own link is set.
                            fail[v as usize] = via_fail;
                            dict[v as usize] = if out[via_fail as usize].is_empty() {
                                dict[via_fail as usize]
                            } else {
                                via_fail
                            };
                            order.push_back(v as usize);
                        }
                    }
                    None => delta[u * 256 + usize::from(byte)] = via_fail,
                }
            }
        }
        // Renumber: states with outputs (their own or along the suffix
        // links) last.
        let has_out: Vec<bool> = (0..n)
            .map(|s| !out[s].is_empty() || dict[s] != NO_LINK)
            .collect();
        let mut map = vec![0u32; n];
        let mut next = 0u32;
        for s in 0..n {
            if !has_out[s] {
                map[s] = next;
                next += 1;
            }
        }
        let first_out = next;
        for s in 0..n {
            if has_out[s] {
                map[s] = next;
                next += 1;
            }
        }
        let mut outputs = Vec::with_capacity((next - first_out) as usize);
        for s in 0..n {
            if has_out[s] {
                let mut own = std::mem::take(&mut out[s]);
                own.sort_unstable();
                own.dedup();
                let link = match dict[s] {
                    NO_LINK => NO_LINK,
                    d => map[d as usize] - first_out,
                };
                outputs.push((own, link));
            }
        }
        let mut trans = vec![0u16; n * 256];
        for s in 0..n {
            let row = map[s] as usize * 256;
            for b in 0..256 {
                trans[row + b] = u16::try_from(map[delta[s * 256 + b] as usize]).ok()?;
            }
        }
        // The root must stay state 0 (it has no output: no empty patterns).
        (map[0] == 0).then_some(Dfa {
            trans,
            first_out,
            outputs,
            max_len: lower.iter().map(Vec::len).max().unwrap_or(1),
        })
    }

    /// One DFA step; a state with outputs is noted in `hits` (counted in
    /// `n` even past its capacity, which sends the caller to the slow path).
    #[inline(always)]
    fn step(&self, s: u32, b: u8, hits: &mut [u32; HITS], n: &mut usize) -> u32 {
        let s = u32::from(self.trans[(s as usize) << 8 | usize::from(b)]);
        if s >= self.first_out {
            if let Some(h) = hits.get_mut(*n) {
                *h = s;
            }
            *n += 1;
        }
        s
    }

    /// Each step waits for the previous one's table load, so one lane runs
    /// at the load latency. The payload is split into [`LANES`] pieces
    /// walked in lockstep (independent loads overlap in the CPU); each
    /// piece but the first starts `max_len - 1` bytes early, so a pattern
    /// across a boundary is seen whole by the lane it ends in. The loop
    /// makes no calls, so the four states stay in registers: output states
    /// are noted and reported afterwards.
    #[inline]
    fn scan(&self, hay: &[u8], found: &mut impl FnMut(u32)) {
        let mut hits = [0u32; HITS];
        let mut n = 0usize;
        let overlap = self.max_len - 1;
        let piece = hay.len() / LANES;
        if piece <= 4 * overlap + 16 {
            let mut s = 0u32;
            for &b in hay {
                s = self.step(s, b, &mut hits, &mut n);
            }
        } else {
            let start = |k: usize| (k * piece).saturating_sub(if k == 0 { 0 } else { overlap });
            let (a0, a1, a2, a3) = (start(0), start(1), start(2), start(3));
            let lanes = (
                &hay[a0..a0 + piece],
                &hay[a1..a1 + piece],
                &hay[a2..a2 + piece],
                &hay[a3..a3 + piece],
            );
            let (mut s0, mut s1, mut s2, mut s3) = (0u32, 0u32, 0u32, 0u32);
            for i in 0..piece {
                s0 = self.step(s0, lanes.0[i], &mut hits, &mut n);
                s1 = self.step(s1, lanes.1[i], &mut hits, &mut n);
                s2 = self.step(s2, lanes.2[i], &mut hits, &mut n);
                s3 = self.step(s3, lanes.3[i], &mut hits, &mut n);
            }
            // Each lane finishes its own bytes (up to the next lane's).
            for (k, (mut s, a)) in [(s0, a0), (s1, a1), (s2, a2), (s3, a3)]
                .into_iter()
                .enumerate()
            {
                let end = if k + 1 == LANES {
                    hay.len()
                } else {
                    (k + 1) * piece
                };
                for &b in &hay[a + piece..end] {
                    s = self.step(s, b, &mut hits, &mut n);
                }
            }
        }
        if n > HITS {
            // Many matches (a payload full of patterns): walk again,
            // reporting as we go.
            let mut s = 0u32;
            for &b in hay {
                s = u32::from(self.trans[(s as usize) << 8 | usize::from(b)]);
                if s >= self.first_out {
                    self.report(s, found);
                }
            }
            return;
        }
        for &s in &hits[..n] {
            self.report(s, found);
        }
    }

    /// Every pattern ending at output state `s`: its own, then those of
    /// the output states along its suffix links.
    #[inline]
    fn report(&self, s: u32, found: &mut impl FnMut(u32)) {
        let mut k = s - self.first_out;
        while let Some((own, link)) = self.outputs.get(k as usize) {
            for &id in own {
                found(id);
            }
            k = *link;
        }
    }
}

impl Crate {
    fn new(lower: &[Vec<u8>]) -> Option<Crate> {
        // The crate's DFA searches fastest, but its build time and memory
        // grow with states times byte classes (3.5 s and over 100 MiB for
        // 100,000 short patterns); past a few hundred thousand states the
        // contiguous NFA builds in a fraction of that. Standard match
        // semantics: an overlapping search reports every occurrence of
        // every pattern, nested ones included, in time linear in the
        // payload plus the matches.
        let bytes: usize = lower.iter().map(Vec::len).sum();
        let kind = if bytes <= MAX_CRATE_DFA_BYTES {
            AhoCorasickKind::DFA
        } else {
            AhoCorasickKind::ContiguousNFA
        };
        let build = |kind| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(kind)
                .build(lower)
        };
        let ac = build(Some(kind)).or_else(|_| build(None)).ok()?;
        Some(Crate { ac })
    }

    fn scan(&self, hay: &[u8], found: &mut impl FnMut(u32)) {
        for m in self.ac.find_overlapping_iter(hay) {
            found(m.pattern().as_u32());
        }
    }
}

impl Prefilter {
    /// `patterns`: non-empty byte strings, ids in order; `None` if none
    /// could be compiled.
    pub fn new(patterns: &[Vec<u8>]) -> Option<Prefilter> {
        let lower: Vec<Vec<u8>> = patterns.iter().map(|p| p.to_ascii_lowercase()).collect();
        if lower.is_empty() || lower.iter().any(Vec::is_empty) {
            return None;
        }
        match Dfa::new(&lower) {
            Some(d) => Some(Prefilter::Dfa(d)),
            None => Crate::new(&lower).map(Prefilter::Crate),
        }
    }

    /// Calls `found` with the id of every pattern occurring in `hay` (at
    /// least once; possibly more than once).
    #[inline]
    pub fn scan(&self, hay: &[u8], mut found: impl FnMut(u32)) {
        match self {
            Prefilter::Dfa(d) => d.scan(hay, &mut found),
            Prefilter::Crate(c) => c.scan(hay, &mut found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both implementations, to compare.
    fn both(pats: &[Vec<u8>]) -> [Prefilter; 2] {
        let lower: Vec<Vec<u8>> = pats.iter().map(|p| p.to_ascii_lowercase()).collect();
        [
            Prefilter::Dfa(Dfa::new(&lower).expect("dfa")),
            Prefilter::Crate(Crate::new(&lower).expect("crate")),
        ]
    }

    fn found(p: &Prefilter, hay: &[u8]) -> Vec<u32> {
        let mut v = Vec::new();
        p.scan(hay, |id| v.push(id));
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn finds_overlapping_nested_and_case_variant_patterns() {
        let pats: Vec<Vec<u8>> = ["abcd", "bc", "CD", "x", "zz", "dab"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert!(matches!(Prefilter::new(&pats), Some(Prefilter::Dfa(_))));
        for p in both(&pats) {
            assert_eq!(found(&p, b"..ABcd.."), vec![0, 1, 2]);
            assert_eq!(found(&p, b"dabcdX"), vec![0, 1, 2, 3, 5]);
            assert_eq!(found(&p, b"z"), Vec::<u32>::new());
            assert_eq!(found(&p, b"zZ"), vec![4]);
            assert_eq!(found(&p, b""), Vec::<u32>::new());
            assert_eq!(
                found(&p, b"ab"),
                Vec::<u32>::new(),
                "pattern cut by the end"
            );
        }
        assert!(Prefilter::new(&[]).is_none());
        assert!(Prefilter::new(&[Vec::new()]).is_none());
    }

    #[test]
    fn a_pattern_is_found_at_every_position_across_lane_boundaries() {
        let pats = vec![b"abcdef".to_vec(), b"Q".to_vec()];
        let p = Prefilter::new(&pats).expect("compiles");
        for n in [40usize, 200, 1001] {
            for at in 0..=n - 6 {
                let mut hay = vec![b'x'; n];
                hay[at..at + 6].copy_from_slice(b"ABCdef");
                assert_eq!(found(&p, &hay), vec![0], "n {n} at {at}");
                hay[n - 1 - at % n] = b'q';
                assert!(found(&p, &hay).contains(&1), "n {n} at {at}");
            }
        }
    }

    #[test]
    fn a_payload_full_of_matches_takes_the_reporting_path() {
        let pats = vec![b"ab".to_vec(), b"zz".to_vec(), b"b".to_vec()];
        let p = Prefilter::new(&pats).expect("compiles");
        let mut hay = b"ab".repeat(500);
        assert_eq!(found(&p, &hay), vec![0, 2]);
        hay.extend_from_slice(b"zz");
        assert_eq!(found(&p, &hay), vec![0, 1, 2]);
    }

    proptest::proptest! {
        /// The same answer as a naive search, on any bytes.
        #[test]
        fn agrees_with_a_naive_search(
            pats in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 1..7), 1..20),
            hay in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            seed in proptest::prelude::any::<u64>(),
        ) {
            // Plant two patterns (one with its case flipped) so that
            // matches are the rule, not the exception.
            let mut hay = hay;
            for (k, flip) in [(seed as usize, false), ((seed >> 16) as usize, true)] {
                let q = &pats[k % pats.len()];
                let at = (seed >> 32) as usize % (hay.len() + 1);
                let q: Vec<u8> = if flip { q.to_ascii_uppercase() } else { q.clone() };
                hay.splice(at..at, q);
            }
            let want: Vec<u32> = pats
                .iter()
                .enumerate()
                .filter(|(_, q)| hay.windows(q.len()).any(|w| w.eq_ignore_ascii_case(q)))
                .map(|(i, _)| i as u32)
                .collect();
            for p in both(&pats) {
                proptest::prop_assert_eq!(found(&p, &hay), want.clone());
            }
        }
    }
}

//! Bounded detector state: keyed tables that evict their oldest entry at a
//! cap (counted), and a HyperLogLog for distinct counts that cost a fixed
//! 64 bytes whatever the number of (spoofed) sources.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashMap;

/// A map with at most `cap` keys; inserting into a full map evicts the
/// oldest inserted key.
#[derive(Debug)]
pub struct Bounded<K, V> {
    map: HashMap<K, V, foldhash::fast::RandomState>,
    order: VecDeque<K>,
    cap: usize,
    pub evicted: u64,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    pub fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::default(),
            order: VecDeque::new(),
            cap: cap.max(1),
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entry for `k`, made with `make` if absent. One hash lookup: a
    /// full map evicts its oldest key at the next insertion, so it holds
    /// at most `cap + 1` keys.
    pub fn entry(&mut self, k: &K, make: impl FnOnce() -> V) -> &mut V {
        if self.map.len() > self.cap {
            while let Some(old) = self.order.pop_front() {
                if self.map.remove(&old).is_some() {
                    self.evicted += 1;
                    break;
                }
            }
        }
        if self.order.len() > 2 * self.cap + 16 {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        match self.map.entry(k.clone()) {
            hashbrown::hash_map::Entry::Occupied(o) => o.into_mut(),
            hashbrown::hash_map::Entry::Vacant(v) => {
                self.order.push_back(k.clone());
                v.insert(make())
            }
        }
    }

    /// The entry for `k` if present (never inserts).
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k)
    }

    /// Removes every entry for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(|k, v| keep(k, v));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }
}

/// HyperLogLog with 64 registers (about 13% standard error: enough for
/// thresholds like "at least 10 sources", in 64 bytes per key).
#[derive(Clone, Debug)]
pub struct Hll {
    reg: [u8; 64],
}

impl Default for Hll {
    fn default() -> Self {
        Hll { reg: [0; 64] }
    }
}

impl Hll {
    pub fn add<T: Hash>(&mut self, x: &T) {
        // foldhash is fast but not uniform enough in every bit for HLL:
        // finish with splitmix64's mixer.
        let mut h = foldhash::fast::FixedState::with_seed(0x6d6f6e69).hash_one(x);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let idx = (h >> 58) as usize;
        let rank = ((h << 6) | 0x20).leading_zeros() as u8 + 1;
        if rank > self.reg[idx] {
            self.reg[idx] = rank;
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = 64.0;
        let sum: f64 = self
            .reg
            .iter()
            .map(|&r| 1.0 / (1u64 << r.min(63)) as f64)
            .sum();
        let raw = 0.709 * m * m / sum;
        let zeros = self.reg.iter().filter(|&&r| r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_evicts_oldest_and_counts() {
        let mut b: Bounded<u32, u32> = Bounded::new(3);
        for k in 0..10 {
            *b.entry(&k, || 0) += 1;
        }
        assert!(b.len() <= 4);
        assert_eq!(b.evicted, 10 - b.len() as u64);
        assert!(b.iter().all(|(k, _)| *k >= 6));
    }

    #[test]
    fn hll_estimates_within_a_few_percent() {
        for n in [10u32, 1000, 100_000] {
            let mut h = Hll::default();
            for i in 0..n {
                h.add(&i);
                h.add(&i); // duplicates do not count
            }
            let e = h.estimate();
            let err = (e - f64::from(n)).abs() / f64::from(n);
            assert!(err < 0.35, "{n}: {e}");
        }
    }
}

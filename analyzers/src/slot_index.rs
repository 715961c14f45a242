//! The index of the hot tables (flows, RTP streams, and the IDS tables
//! every new source writes, `ids::state::FifoTable`): from a key's hash
//! to the slot of the table's entry array that holds the key.
//!
//! Open addressing with linear probing over 8-byte entries (32 bits of the
//! key's hash, then the slot plus one; 0 marks an empty entry), kept at
//! most half full. A lookup of a known key reads one entry, nearly always
//! in the cache line of its home position, then the slot it names: on a
//! table of 400,000 flows, where nothing is in the cache, that is one miss
//! before the slot where a swiss table took two (its control bytes, then
//! the entry). Removal shifts the entries after it back into the hole
//! instead of leaving a tombstone, so probe lengths stay those of a table
//! that never saw a removal, however many keys come and go. Growing moves
//! the entries by their stored hash bits and never reads a slot.

/// The index. Slots are `u32` below `u32::MAX - 1`.
#[derive(Debug, Clone)]
pub struct SlotIndex {
    entries: Vec<u64>,
    mask: usize,
    len: usize,
}

#[inline]
fn entry(h: u32, slot: u32) -> u64 {
    u64::from(h) << 32 | u64::from(slot + 1)
}

impl SlotIndex {
    /// An index with room for `keys` entries before it first grows.
    pub fn with_capacity(keys: usize) -> SlotIndex {
        let size = keys.saturating_mul(2).next_power_of_two().max(16);
        SlotIndex {
            entries: vec![0; size],
            mask: size - 1,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the index holds.
    pub fn bytes(&self) -> usize {
        self.entries.len() * 8
    }

    #[inline]
    fn home(&self, h: u32) -> usize {
        h as usize & self.mask
    }

    /// The entry a lookup of hash `h` reads first, for a caller that
    /// prefetches it before the lookup.
    #[inline]
    pub fn home_entry(&self, h: u32) -> Option<&u64> {
        self.entries.get(self.home(h))
    }

    /// The slot of the first entry with hash `h`, without asking whether
    /// it is the one wanted (a lookup would read the slot to know): the
    /// slot a prefetch should bring in. Reads only entries.
    #[inline]
    pub fn peek(&self, h: u32) -> Option<u32> {
        self.find(h, |_| true)
    }

    /// The slot of an entry with hash `h` for which `is_it` holds.
    #[inline]
    pub fn find(&self, h: u32, mut is_it: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut pos = self.home(h);
        loop {
            let e = *self.entries.get(pos)?;
            if e == 0 {
                return None;
            }
            if (e >> 32) as u32 == h {
                let slot = (e as u32).wrapping_sub(1);
                if is_it(slot) {
                    return Some(slot);
                }
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Adds `slot` under hash `h` (the caller knows it is not there yet).
    pub fn insert(&mut self, h: u32, slot: u32) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.place(entry(h, slot));
        self.len += 1;
    }

    fn place(&mut self, e: u64) {
        let mut pos = self.home((e >> 32) as u32);
        while self.entries[pos] != 0 {
            pos = (pos + 1) & self.mask;
        }
        self.entries[pos] = e;
    }

    fn grow(&mut self) {
        let size = self.entries.len() * 2;
        let old = std::mem::replace(&mut self.entries, vec![0; size]);
        self.mask = size - 1;
        for e in old.into_iter().filter(|&e| e != 0) {
            self.place(e);
        }
    }

    /// Removes `slot`'s entry under hash `h`; false if there is none.
    pub fn remove(&mut self, h: u32, slot: u32) -> bool {
        let want = entry(h, slot);
        let mut pos = self.home(h);
        loop {
            match self.entries[pos] {
                0 => return false,
                e if e == want => break,
                _ => pos = (pos + 1) & self.mask,
            }
        }
        // Backward shift: each later entry of the run moves into the hole
        // when its home is not between the hole and where it lies (so a
        // lookup from its home still passes over no empty entry).
        let mut hole = pos;
        let mut j = pos;
        loop {
            j = (j + 1) & self.mask;
            let e = self.entries[j];
            if e == 0 {
                break;
            }
            let home = self.home((e >> 32) as u32);
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = 0;
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        Remove(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        // Few distinct hashes and small tables: long runs, collisions and
        // wrap-around at the end of the array.
        prop::collection::vec(
            prop_oneof![
                (0u32..64).prop_map(Op::Insert),
                any::<usize>().prop_map(Op::Remove),
            ],
            0..400,
        )
    }

    proptest! {
        /// Against a map: every live slot is found under its hash, a
        /// removed one is not, and the count agrees, through growth,
        /// collisions and removals in the middle of runs.
        #[test]
        fn agrees_with_a_map(ops in ops(), spread in any::<bool>()) {
            let mut index = SlotIndex::with_capacity(4);
            let mut model: HashMap<u32, u32> = HashMap::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Insert(h) => {
                        let h = if spread { h.wrapping_mul(0x9E37_79B9) } else { h };
                        index.insert(h, next);
                        model.insert(next, h);
                        next += 1;
                    }
                    Op::Remove(i) => {
                        if model.is_empty() {
                            prop_assert!(!index.remove(7, 12345));
                            continue;
                        }
                        let mut keys: Vec<u32> = model.keys().copied().collect();
                        keys.sort_unstable();
                        let slot = keys[i % keys.len()];
                        let h = model.remove(&slot).unwrap_or_default();
                        prop_assert!(index.remove(h, slot));
                        prop_assert!(!index.remove(h, slot));
                    }
                }
                prop_assert_eq!(index.len(), model.len());
                prop_assert!(index.len() * 2 <= index.entries.len());
            }
            for (&slot, &h) in &model {
                prop_assert_eq!(index.find(h, |s| s == slot), Some(slot));
            }
            for slot in next..next + 20 {
                prop_assert_eq!(index.find(slot, |s| s == slot), None);
            }
        }
    }

    #[test]
    fn wraps_around_the_end() {
        let mut index = SlotIndex::with_capacity(8);
        let last = index.mask as u32;
        for slot in 0..5 {
            index.insert(last, slot);
        }
        assert!(index.remove(last, 0));
        for slot in 1..5 {
            assert_eq!(index.find(last, |s| s == slot), Some(slot));
        }
        assert_eq!(index.entries.iter().filter(|&&e| e != 0).count(), 4);
    }
}

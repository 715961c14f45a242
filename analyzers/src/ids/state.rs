//! Bounded detector state: keyed tables that evict their oldest entry at a
//! cap (counted), and a HyperLogLog for distinct counts that cost a fixed
//! 64 bytes whatever the number of (spoofed) sources.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};

use hashbrown::HashMap;

use crate::slot_index::SlotIndex;

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

/// A [`Bounded`] for the tables every new source writes (scans, sweeps,
/// floods): the same keys, cap and oldest-first eviction, laid out for
/// that traffic. Entries live in a ring in insertion order, so a new key
/// is written at the ring's tail and the evicted one read at its head,
/// both sequential. The index is a [`SlotIndex`]: 8-byte entries of 32
/// hash bits and a ring position, so a lookup reads one index entry and
/// then the ring entry it names (a swiss table read its control bytes,
/// then its bucket, then the entry: on a scan that fills the table, one
/// miss more per lookup). 1 MiB at the default cap. The answer that
/// follows a probe (a SYN-ACK after its SYN) finds its entry near the
/// tail, still in cache.
///
/// Eviction takes the oldest *live* key; an entry removed (or dropped by
/// [`FifoTable::retain`]) leaves a hole that eviction skips.
#[derive(Debug)]
pub struct FifoTable<K, V> {
    /// Positions of live entries (their `seq`'s low 31 bits, see
    /// [`seq_slot`]), by their key's hash.
    index: SlotIndex,
    /// Entries from `base` on: (hash, key, value; `None` for a hole).
    ring: VecDeque<(u64, K, Option<V>)>,
    /// The `seq` of `ring[0]`.
    base: u64,
    live: usize,
    cap: usize,
    hasher: foldhash::fast::FixedState,
    pub evicted: u64,
}

/// A ring position's `seq` as the index keeps it: its low 31 bits. The
/// ring never holds 2^31 entries (caps are below 2^28, the ring at most
/// about twice its cap), so they name one position.
#[inline]
fn seq_slot(seq: u64) -> u32 {
    (seq & SEQ_BITS) as u32
}

const SEQ_BITS: u64 = (1 << 31) - 1;

/// The ring position of index slot `slot` when `ring[0]` has `seq` `base`.
#[inline]
fn slot_pos(slot: u32, base: u64) -> usize {
    (u64::from(slot).wrapping_sub(base) & SEQ_BITS) as usize
}

impl<K: Hash + Eq, V> FifoTable<K, V> {
    /// A table for at most `cap` keys (at most 2^28).
    pub fn new(cap: usize) -> Self {
        let cap = cap.clamp(1, 1 << 28);
        // Sized for the keys that usually get this far (the detectors
        // admit a key at its second probe, so normal traffic keeps their
        // tables small and in cache); a table that fills grows to its cap.
        let n = (cap + 1).min(1024);
        FifoTable {
            index: SlotIndex::with_capacity(n),
            ring: VecDeque::with_capacity(n),
            base: 0,
            live: 0,
            cap,
            hasher: foldhash::fast::FixedState::with_seed(0x6669_666f),
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    #[inline]
    fn find(&self, h: u64, k: &K) -> Option<usize> {
        let (ring, base) = (&self.ring, self.base);
        self.index
            .find(h as u32, |slot| {
                ring.get(slot_pos(slot, base))
                    .is_some_and(|e| e.2.is_some() && e.1 == *k)
            })
            .map(|slot| slot_pos(slot, base))
    }

    /// Drops the index entry of `ring[i]`.
    fn unindex(&mut self, i: usize) {
        let Some(h) = self.ring.get(i).map(|e| e.0) else {
            return;
        };
        self.index.remove(h as u32, seq_slot(self.base + i as u64));
    }

    /// The hash this table files `k` under: a caller that also keeps the
    /// key elsewhere ([`FirstProbes`]) hashes it once.
    #[inline]
    pub fn hash(&self, k: &K) -> u64 {
        self.hasher.hash_one(k)
    }

    /// The entry for `k`, made with `make` if absent. A full table evicts
    /// its oldest live key at the next insertion, so it holds at most
    /// `cap + 1` keys (as [`Bounded::entry`]).
    pub fn entry(&mut self, k: &K, make: impl FnOnce() -> V) -> &mut V
    where
        K: Clone,
    {
        let h = self.hash(k);
        self.make_room();
        let i = match self.find(h, k) {
            Some(i) => i,
            None => self.push(h, k),
        };
        // `i` is a live entry found above or the one just pushed.
        self.ring[i].2.get_or_insert_with(make)
    }

    /// The entry for `k` (hashed by [`FifoTable::hash`]), or the one
    /// `admit` makes if it is absent; `None` when absent and `admit`
    /// declines (nothing inserted).
    pub fn entry_hashed(
        &mut self,
        h: u64,
        k: &K,
        admit: impl FnOnce() -> Option<V>,
    ) -> Option<&mut V>
    where
        K: Clone,
    {
        if let Some(i) = self.find(h, k) {
            return self.ring.get_mut(i).and_then(|e| e.2.as_mut());
        }
        let v = admit()?;
        self.make_room();
        let i = self.push(h, k);
        Some(self.ring[i].2.insert(v))
    }

    /// Evicts the oldest live key of a full table; compacts a ring of
    /// holes.
    fn make_room(&mut self) {
        if self.live > self.cap {
            while !self.ring.is_empty() {
                let live = self.ring.front().is_some_and(|e| e.2.is_some());
                if live {
                    self.unindex(0);
                }
                self.ring.pop_front();
                self.base += 1;
                if live {
                    self.live -= 1;
                    self.evicted += 1;
                    break;
                }
            }
        }
        if self.ring.len() > 2 * self.cap + 16 {
            self.compact();
        }
    }

    /// Appends `k` (hash `h`, not present) without a value yet: its ring
    /// position.
    fn push(&mut self, h: u64, k: &K) -> usize
    where
        K: Clone,
    {
        let seq = self.base + self.ring.len() as u64;
        self.ring.push_back((h, k.clone(), None));
        self.index.insert(h as u32, seq_slot(seq));
        self.live += 1;
        self.ring.len() - 1
    }

    /// The index entry a lookup of hash `h` reads first, for a caller
    /// that prefetches it a few packets ahead (with several tables to
    /// look a packet up in, whose misses then overlap).
    #[inline]
    pub fn index_line(&self, h: u64) -> Option<*const u8> {
        self.index
            .home_entry(h as u32)
            .map(|e| std::ptr::from_ref(e).cast::<u8>())
    }

    /// The ring entry a lookup of hash `h` compares first, once
    /// [`FifoTable::index_line`]'s line has arrived, for a caller that
    /// prefetches it.
    #[inline]
    pub fn entry_line(&self, h: u64) -> Option<*const u8> {
        let slot = self.index.peek(h as u32)?;
        self.ring
            .get(slot_pos(slot, self.base))
            .map(|e| std::ptr::from_ref(e).cast::<u8>())
    }

    /// The entry for `k` (hashed by [`FifoTable::hash`]) if present.
    pub fn get_mut_hashed(&mut self, h: u64, k: &K) -> Option<&mut V> {
        let i = self.find(h, k)?;
        self.ring.get_mut(i).and_then(|e| e.2.as_mut())
    }

    /// Rebuilds the ring without its holes (they pile up only when many
    /// keys are removed between evictions).
    fn compact(&mut self) {
        let old = std::mem::take(&mut self.ring);
        self.index = SlotIndex::with_capacity(self.live);
        self.ring.reserve(self.live);
        self.base = 0;
        for e in old.into_iter().filter(|e| e.2.is_some()) {
            self.index
                .insert(e.0 as u32, seq_slot(self.ring.len() as u64));
            self.ring.push_back(e);
        }
    }

    /// The entry for `k` if present (never inserts).
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let h = self.hasher.hash_one(k);
        let i = self.find(h, k)?;
        self.ring.get_mut(i).and_then(|e| e.2.as_mut())
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let h = self.hasher.hash_one(k);
        let i = self.find(h, k)?;
        self.unindex(i);
        self.live -= 1;
        self.ring.get_mut(i).and_then(|e| e.2.take())
    }

    /// Removes every entry for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for i in 0..self.ring.len() {
            let drop = match self.ring.get_mut(i) {
                Some((_, k, Some(v))) => !keep(k, v),
                _ => false,
            };
            if drop {
                self.unindex(i);
                self.live -= 1;
                if let Some(e) = self.ring.get_mut(i) {
                    e.2 = None;
                }
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.ring
            .iter()
            .filter_map(|(_, k, v)| v.as_ref().map(|v| (k, v)))
    }
}

/// The first probe of each key not yet in a detector's table, in a fixed
/// array of slots indexed by the key's hash: a key enters the table only
/// at its second probe, seeded with its first, so the sources that probe
/// once (one DNS query, one ping, one client's connection to a server:
/// most of a busy network's sources) cost one slot write and no table
/// entry. A key whose first probe was overwritten by another key's before
/// its second arrived starts again from its second, as a key evicted from
/// a full table does; overwrites are counted (`dropped`), as evictions
/// are.
///
/// The slots are as many as the table's cap (rounded up to a power of
/// two): a first probe survives about as long as a key would in the full
/// table. A slot holds the key's tag beside the first probe's time and
/// content, so that a probe, its answer or a key's second probe touches
/// one cache line (a busy network's first probes are random writes over
/// the whole array; with tags apart from the probes each took two).
#[derive(Debug)]
pub struct FirstProbes<T> {
    slots: Box<[FirstSlot<T>]>,
    pub dropped: u64,
}

/// One slot of [`FirstProbes`].
#[derive(Clone, Copy, Debug, Default)]
struct FirstSlot<T> {
    /// Bits 32.. of the key hash with the low bit set; `0` for an empty
    /// slot.
    tag: u32,
    /// When the first probe was seen.
    at: i64,
    first: T,
}

impl<T> FirstProbes<T> {
    /// The bytes one slot takes (the array has one per key of the cap).
    pub const SLOT_BYTES: usize = std::mem::size_of::<FirstSlot<T>>();
}

impl<T: Copy + Default> FirstProbes<T> {
    /// Slots for a table of `cap` keys: `cap` rounded up to a power of
    /// two, at least 64 and at most 2^18.
    pub fn new(cap: usize) -> Self {
        let n = cap.clamp(64, 1 << 18).next_power_of_two();
        FirstProbes {
            slots: vec![FirstSlot::default(); n].into_boxed_slice(),
            dropped: 0,
        }
    }

    /// The slot of hash `h` and its tag.
    #[inline]
    fn slot(&self, h: u64) -> (usize, u32) {
        (h as usize & (self.slots.len() - 1), (h >> 32) as u32 | 1)
    }

    /// A probe of key `h` at `now_us`: the key's first probe (its time and
    /// what it was) if one is pending within `window_us`, taken out of its
    /// slot so the caller admits the key with it; otherwise `first` is
    /// kept as the key's first probe and `None` returned.
    #[inline]
    pub fn second(&mut self, h: u64, now_us: i64, window_us: i64, first: T) -> Option<(i64, T)> {
        let (i, tag) = self.slot(h);
        let s = self.slots.get_mut(i)?;
        if s.tag == tag {
            s.tag = 0;
            if now_us.saturating_sub(s.at) <= window_us {
                return Some((s.at, s.first));
            }
        } else if s.tag != 0 {
            self.dropped += 1;
        }
        *s = FirstSlot {
            tag,
            at: now_us,
            first,
        };
        None
    }

    /// The slot of key `h`, for a caller that prefetches it.
    #[inline]
    pub fn line(&self, h: u64) -> Option<*const u8> {
        let (i, _) = self.slot(h);
        self.slots
            .get(i)
            .map(|s| std::ptr::from_ref(s).cast::<u8>())
    }

    /// The pending first probe of key `h`, if any within `window_us` of
    /// `now_us` (for an answer to it).
    #[inline]
    pub fn pending(&mut self, h: u64, now_us: i64, window_us: i64) -> Option<&mut T> {
        let (i, tag) = self.slot(h);
        let s = self.slots.get_mut(i)?;
        (s.tag == tag && now_us.saturating_sub(s.at) <= window_us).then_some(&mut s.first)
    }
}

/// A detector's table whose keys enter at their second probe: a
/// [`FifoTable`] with the [`FirstProbes`] that hold each key's first
/// until then (the port-scan and sweep detectors' shared mechanism).
#[derive(Debug)]
pub struct SecondProbeTable<K, V, F> {
    /// The admitted keys.
    pub table: FifoTable<K, V>,
    first: FirstProbes<F>,
}

impl<K: Hash + Eq + Clone, V, F: Copy + Default> SecondProbeTable<K, V, F> {
    /// A table of at most `cap` keys, with as many first-probe slots.
    pub fn new(cap: usize) -> Self {
        SecondProbeTable {
            table: FifoTable::new(cap),
            first: FirstProbes::new(cap),
        }
    }

    /// A probe of `key` at `now_us`: the key's entry when it is in the
    /// table, or when this is its second probe within `window_us` (made by
    /// `seed` from the first probe's time and content); `None` when this
    /// is the key's first probe, which is kept as `first`.
    pub fn probe(
        &mut self,
        key: &K,
        now_us: i64,
        window_us: i64,
        first: F,
        seed: impl FnOnce(i64, F) -> V,
    ) -> Option<&mut V> {
        let h = self.table.hash(key);
        let firsts = &mut self.first;
        self.table.entry_hashed(h, key, || {
            let (at, f) = firsts.second(h, now_us, window_us, first)?;
            Some(seed(at, f))
        })
    }

    /// An answer to `key`'s prober at `now_us`: given to its entry
    /// (`tracked`), or to its pending first probe (`pending`).
    pub fn answer(
        &mut self,
        key: &K,
        now_us: i64,
        window_us: i64,
        tracked: impl FnOnce(&mut V),
        pending: impl FnOnce(&mut F),
    ) {
        let h = self.table.hash(key);
        if let Some(v) = self.table.get_mut_hashed(h, key) {
            tracked(v);
        } else if let Some(f) = self.first.pending(h, now_us, window_us) {
            pending(f);
        }
    }

    /// `key`'s hash, and where its lookup reads first (its index entry
    /// and its first-probe slot), for a caller that prefetches them a few
    /// packets ahead.
    #[inline]
    pub fn lines(&self, key: &K) -> (u64, [Option<*const u8>; 2]) {
        let h = self.table.hash(key);
        (h, [self.table.index_line(h), self.first.line(h)])
    }

    /// Where that lookup reads next (see [`FifoTable::entry_line`]).
    #[inline]
    pub fn entry_line(&self, h: u64) -> Option<*const u8> {
        self.table.entry_line(h)
    }

    /// Keys evicted from the table and first probes overwritten.
    pub fn evicted(&self) -> u64 {
        self.table.evicted + self.first.dropped
    }
}

/// HyperLogLog with 64 registers (about 13% standard error: enough for
/// thresholds like "at least 10 sources", in 64 bytes per key).
///
/// Most keys (a client that got one SYN-ACK, a server a handful of
/// sources) set only a few registers, so the first `HLL_SPARSE` set
/// registers are kept inline as (index, rank) pairs and the 64-byte
/// register array is allocated only past them. The estimate is computed
/// on the same 64 registers either way, so it is exactly the dense one.
#[derive(Clone, Debug, Default)]
pub struct Hll {
    sparse: [(u8, u8); HLL_SPARSE],
    sparse_len: u8,
    dense: Option<Box<[u8; 64]>>,
}

/// Registers kept inline before a [`Hll`] allocates its array.
const HLL_SPARSE: usize = 6;

impl Hll {
    /// The hash [`Hll::add`] uses for `x`: callers adding one value to
    /// several sketches hash it once ([`Hll::add_hash`]).
    #[inline]
    pub fn hash<T: Hash>(x: &T) -> u64 {
        foldhash::fast::FixedState::with_seed(0x6d6f6e69).hash_one(x)
    }

    /// Adds a value; whether a register rose (only then can the
    /// estimate change).
    pub fn add<T: Hash>(&mut self, x: &T) -> bool {
        self.add_hash(Self::hash(x))
    }

    /// Adds a value by its [`Hll::hash`].
    pub fn add_hash(&mut self, mut h: u64) -> bool {
        // foldhash is fast but not uniform enough in every bit for HLL:
        // finish with splitmix64's mixer.
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let idx = (h >> 58) as usize;
        let rank = ((h << 6) | 0x20).leading_zeros() as u8 + 1;
        if let Some(reg) = &mut self.dense {
            return reg.get_mut(idx).is_some_and(|r| raise(r, rank));
        }
        let n = usize::from(self.sparse_len);
        if let Some(p) = self.sparse[..n]
            .iter_mut()
            .find(|p| usize::from(p.0) == idx)
        {
            return raise(&mut p.1, rank);
        }
        if n < HLL_SPARSE {
            self.sparse[n] = (idx as u8, rank);
            self.sparse_len += 1;
            return true;
        }
        let mut reg = Box::new(self.registers());
        if let Some(r) = reg.get_mut(idx) {
            raise(r, rank);
        }
        self.dense = Some(reg);
        true
    }

    fn registers(&self) -> [u8; 64] {
        if let Some(reg) = &self.dense {
            return **reg;
        }
        let mut reg = [0u8; 64];
        for &(i, r) in &self.sparse[..usize::from(self.sparse_len)] {
            if let Some(x) = reg.get_mut(usize::from(i)) {
                *x = r;
            }
        }
        reg
    }

    pub fn estimate(&self) -> f64 {
        estimate(&self.registers())
    }
}

/// A short list kept inline up to `N` items, on the heap past them: the
/// per-key lists of the detectors (ports a source probed, hosts of a
/// sweep) hold one or two items for nearly every key, and a heap
/// allocation per new source (and its free at eviction) cost more than
/// the detector's own work.
#[derive(Clone, Debug)]
pub enum InlineVec<T, const N: usize> {
    Inline(u8, [T; N]),
    Heap(Vec<T>),
}

impl<T: Copy + Default, const N: usize> Default for InlineVec<T, N> {
    fn default() -> Self {
        InlineVec::Inline(0, [T::default(); N])
    }
}

impl<T: Copy + Default, const N: usize> InlineVec<T, N> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            InlineVec::Inline(n, a) => &a[..usize::from(*n)],
            InlineVec::Heap(v) => v,
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            InlineVec::Inline(n, a) => &mut a[..usize::from(*n)],
            InlineVec::Heap(v) => v,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, x: T) {
        match self {
            InlineVec::Inline(n, a) if usize::from(*n) < N => {
                a[usize::from(*n)] = x;
                *n += 1;
            }
            InlineVec::Inline(n, a) => {
                let mut v = Vec::with_capacity(2 * N.max(2));
                v.extend_from_slice(&a[..usize::from(*n)]);
                v.push(x);
                *self = InlineVec::Heap(v);
            }
            InlineVec::Heap(v) => v.push(x),
        }
    }

    /// Removes item `i`, the last item taking its place (`Vec::swap_remove`).
    pub fn swap_remove(&mut self, i: usize) {
        match self {
            InlineVec::Inline(n, a) => {
                let last = usize::from(*n).saturating_sub(1);
                if i <= last && *n > 0 {
                    a.swap(i, last);
                    *n -= 1;
                }
            }
            InlineVec::Heap(v) => {
                if i < v.len() {
                    v.swap_remove(i);
                }
            }
        }
    }
}

/// What became of one probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Answer {
    /// No answer yet.
    #[default]
    Pending,
    /// The target answered as a live service would (SYN-ACK, a UDP reply,
    /// an echo reply, an ARP reply): a client at work, not a probe.
    Answered,
    /// The target refused (RST, ICMP unreachable): a probe that found
    /// nothing, which counts at once.
    Refused,
}

/// The targets one source probed, each with its first time and what became
/// of it, so that only **unanswered or refused** probes make a sweep or a
/// scan: a browser opening connections to 29 CDN hosts gets every SYN
/// answered, a sweep of a /24 mostly does not. A probe counts as
/// unanswered once `grace` passed without an answer.
///
/// Holds at most `cap` targets (answered ones are dropped first when
/// full), so a source costs a fixed amount of memory.
#[derive(Clone, Debug)]
pub struct ProbeSet<T = u128> {
    /// Nearly every source probes one target: kept inline. Targets are
    /// hosts ([`addr_key`]) or, for a port scan, ports (`u16`: a smaller
    /// entry for the table every new source writes).
    probes: InlineVec<(T, i64, Answer), 1>,
    cap: u32,
    /// How many of `probes` are [`Answer::Answered`]: a set full of
    /// probes none of which was answered (a scanner's, once it has probed
    /// `cap` targets) takes no new one, which this tells without reading
    /// the set. A sweep of one port across a /16 at full speed compared
    /// each probe with the whole set before: 14% more CPU for the replay
    /// (`bench/attacks.py`'s `host-sweep`).
    answered: u32,
    /// One bit per target ever kept ([`target_bit`]; a target dropped
    /// keeps its bit): a target whose bit is clear is not in the set,
    /// which this tells without reading the set. A SYN scan of random
    /// hosts and ports compared every probe with each target of its
    /// port's set, 4% of the replay's CPU samples (`bench/attacks.py`'s
    /// `syn-scan`).
    bloom: u64,
}

/// The [`ProbeSet::bloom`] bit of a target (a host's [`addr_key`] or a
/// port): the top six bits of a multiplicative hash of its folded value.
#[inline]
fn target_bit<T: Into<u128>>(target: T) -> u64 {
    let x = target.into();
    let folded = (x as u64) ^ ((x >> 64) as u64);
    1 << (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
}

impl<T: Copy + Default + PartialEq + Into<u128>> ProbeSet<T> {
    pub fn new(cap: usize) -> Self {
        ProbeSet {
            probes: InlineVec::default(),
            cap: u32::try_from(cap.max(1)).unwrap_or(u32::MAX),
            answered: 0,
            bloom: 0,
        }
    }

    /// Whether `target` may be in the set (its bloom bit is set).
    #[inline]
    fn may_hold(&self, target: T) -> bool {
        self.bloom & target_bit(target) != 0
    }

    pub fn len(&self) -> usize {
        self.probes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// Lets the set hold up to `cap` targets if it held fewer: a reload
    /// that raised a detector's threshold also raises the room of the
    /// sets made under the old one, which could otherwise never reach it.
    #[inline]
    pub fn raise_cap(&mut self, cap: usize) {
        self.cap = self.cap.max(u32::try_from(cap).unwrap_or(u32::MAX));
    }

    /// A probe of `target` at `at_us` (a repeat keeps its first time);
    /// whether it was kept as a new pending probe.
    pub fn probe(&mut self, target: T, at_us: i64) -> bool {
        let full = self.probes.len() >= self.cap as usize;
        if full && self.answered == 0 {
            // Kept or not, the target changes nothing.
            return false;
        }
        let bit = target_bit(target);
        if self.bloom & bit != 0 && self.probes.as_slice().iter().any(|p| p.0 == target) {
            return false;
        }
        if full {
            match self
                .probes
                .as_slice()
                .iter()
                .position(|p| p.2 == Answer::Answered)
            {
                Some(i) => {
                    self.probes.swap_remove(i);
                    self.answered -= 1;
                }
                None => return false,
            }
        }
        self.probes.push((target, at_us, Answer::Pending));
        self.bloom |= bit;
        true
    }

    /// The earliest time among the pending probes still in their grace at
    /// `now_us` (`i64::MAX` if none): until `grace_us` after it, no probe
    /// turns unanswered by time alone, so [`ProbeSet::unanswered`] can
    /// grow only through a new probe or a refusal.
    pub fn next_aging(&self, now_us: i64, grace_us: i64) -> i64 {
        self.probes
            .as_slice()
            .iter()
            .filter(|p| p.2 == Answer::Pending && now_us.saturating_sub(p.1) < grace_us)
            .map(|p| p.1)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// The target answered (or refused); a target not probed is ignored,
    /// and a refusal is never turned back into an answer.
    pub fn answer(&mut self, target: T, how: Answer) {
        if !self.may_hold(target) {
            return;
        }
        if let Some(p) = self
            .probes
            .as_mut_slice()
            .iter_mut()
            .find(|p| p.0 == target)
        {
            if p.2 != Answer::Refused {
                match (p.2 == Answer::Answered, how == Answer::Answered) {
                    (false, true) => self.answered += 1,
                    (true, false) => self.answered -= 1,
                    _ => {}
                }
                p.2 = how;
            }
        }
    }

    /// A refusal of a target never seen probed (the probe was not seen, or
    /// the refusal is the only sign of it: an RST to a bare ACK).
    pub fn refused(&mut self, target: T, at_us: i64) {
        let _ = self.probe(target, at_us);
        self.answer(target, Answer::Refused);
    }

    /// Probes refused, or unanswered for at least `grace_us` at `now_us`.
    pub fn unanswered(&self, now_us: i64, grace_us: i64) -> usize {
        self.probes
            .as_slice()
            .iter()
            .filter(|p| match p.2 {
                Answer::Refused => true,
                Answer::Pending => now_us.saturating_sub(p.1) >= grace_us,
                Answer::Answered => false,
            })
            .count()
    }

    /// (answered, refused) counts.
    pub fn answers(&self) -> (usize, usize) {
        let a = self
            .probes
            .as_slice()
            .iter()
            .filter(|p| p.2 == Answer::Answered)
            .count();
        let r = self
            .probes
            .as_slice()
            .iter()
            .filter(|p| p.2 == Answer::Refused)
            .count();
        (a, r)
    }

    /// The target probed last.
    pub fn last(&self) -> Option<T> {
        self.probes.as_slice().last().map(|p| p.0)
    }

    /// The first `n` targets, in probe order.
    pub fn first(&self, n: usize) -> impl Iterator<Item = T> + '_ {
        self.probes.as_slice().iter().take(n).map(|p| p.0)
    }
}

/// An IP address as one `u128` key (IPv4 in the low bits, IPv6 with the
/// top bit flipped so the two never collide).
pub fn addr_key(a: std::net::IpAddr) -> u128 {
    match a {
        std::net::IpAddr::V4(v) => u128::from(u32::from(v)),
        std::net::IpAddr::V6(v) => u128::from(v) ^ (1 << 127),
    }
}

/// The address of an [`addr_key`].
pub fn key_addr(k: u128) -> std::net::IpAddr {
    if k >> 32 == 0 {
        std::net::IpAddr::V4(std::net::Ipv4Addr::from(k as u32))
    } else {
        std::net::IpAddr::V6(std::net::Ipv6Addr::from(k ^ (1 << 127)))
    }
}

/// Recently seen packet keys: the detectors that care only about the
/// first packet of a UDP exchange (a probe, or the first answer) skip the
/// rest of a stream with one look at one cache line. Keys sit in buckets
/// of [`Recent::WAYS`], the most recent first, and the least recent key of
/// a full bucket makes room: a table that kept one key per slot let two
/// streams that shared a slot evict each other at every packet, so that
/// every packet of both looked new (one in twenty of a 4,000-stream VoIP
/// capture's packets, each then looked up by the scan and sweep
/// detectors). A key pushed out only makes its next packet look new again
/// (one more table lookup), never hides a new exchange for long.
///
/// The caller chooses the bucket apart from the key ([`Recent::peek`],
/// [`Recent::seen`]): both directions of a UDP exchange go to one
/// bucket, so that asking whether a datagram's exchange is known and
/// whether its answer was seen first reads one line, not two (the first
/// datagram of each of a flow-heavy capture's 250,000 one-packet DNS
/// exchanges missed the cache twice, 3.3% of the replay's CPU samples).
#[derive(Debug)]
pub struct Recent {
    buckets: Box<[Bucket]>,
}

/// One bucket's keys, most recent first: one cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(64))]
struct Bucket([u64; Recent::WAYS]);

impl Recent {
    /// Keys per bucket: 64 bytes, a cache line (the two directions of
    /// four exchanges).
    pub const WAYS: usize = 8;

    /// A table of `2^slots_log2` keys (at least one bucket).
    pub fn new(slots_log2: u32) -> Self {
        let buckets = ((1usize << slots_log2) / Self::WAYS).max(1);
        Recent {
            buckets: vec![Bucket::default(); buckets].into_boxed_slice(),
        }
    }

    /// The key as kept (never 0, which marks an empty slot) and the index
    /// of the bucket `at` names.
    #[inline]
    fn place(&self, at: u64, h: u64) -> (u64, usize) {
        (h | 1, (at >> 7) as usize & (self.buckets.len() - 1))
    }

    /// Whether `h` is among the keys of the bucket `at` names (records
    /// nothing).
    #[inline]
    pub fn peek(&self, at: u64, h: u64) -> bool {
        let (h, b) = self.place(at, h);
        self.buckets.get(b).is_some_and(|k| k.0.contains(&h))
    }

    /// Where the bucket `at` names lies, for a caller that fetches its
    /// line before it asks ([`super::Ids::early_lines`]).
    #[inline]
    pub fn line(&self, at: u64) -> Option<*const u8> {
        let (_, b) = self.place(at, 0);
        self.buckets
            .get(b)
            .map(|k| std::ptr::from_ref(k).cast::<u8>())
    }

    /// Whether `h` was among the keys of the bucket `at` names; records
    /// it either way, as the bucket's most recent.
    #[inline]
    pub fn seen(&mut self, at: u64, h: u64) -> bool {
        let (h, b) = self.place(at, h);
        let Some(Bucket(keys)) = self.buckets.get_mut(b) else {
            return false;
        };
        match keys.iter().position(|&k| k == h) {
            Some(0) => true,
            Some(i) => {
                keys[..=i].rotate_right(1);
                true
            }
            None => {
                keys.rotate_right(1);
                keys[0] = h;
                false
            }
        }
    }
}

/// A [`Hll`] whose estimate is kept until a register rises: for the
/// tests that may run on every packet while their answer stays the same
/// (a flood on one victim fails the VNet-wide test on each SYN, a scan of
/// one host the per-destination one). An estimate reads 64 registers;
/// two per packet took a tenth of a spoofed SYN flood's CPU time.
#[derive(Clone, Debug, Default)]
pub struct KeptHll {
    hll: Hll,
    estimate: Option<f64>,
}

impl KeptHll {
    pub fn add<T: Hash>(&mut self, x: &T) {
        if self.hll.add(x) {
            self.estimate = None;
        }
    }

    pub fn add_hash(&mut self, h: u64) {
        if self.hll.add_hash(h) {
            self.estimate = None;
        }
    }

    /// [`Hll::estimate`], computed again only after a register rose.
    pub fn estimate(&mut self) -> f64 {
        *self.estimate.get_or_insert_with(|| self.hll.estimate())
    }
}

/// Sets register `r` to `rank` if that is higher; whether it was.
#[inline]
fn raise(r: &mut u8, rank: u8) -> bool {
    let grew = rank > *r;
    *r = (*r).max(rank);
    grew
}

/// HyperLogLog's estimate from its 64 registers, with the small-range
/// (linear counting) correction.
fn estimate(reg: &[u8]) -> f64 {
    let m = 64.0;
    let sum: f64 = reg.iter().map(|&r| 1.0 / (1u64 << r.min(63)) as f64).sum();
    let raw = 0.709 * m * m / sum;
    let zeros = reg.iter().filter(|&&r| r == 0).count();
    if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that share a bucket: the same bits 7.. of the hash.
    fn same_bucket(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(|i| i << 40 | 0x80)
    }

    #[test]
    fn recent_keeps_a_bucket_of_keys_and_drops_the_least_recent() {
        const W: usize = Recent::WAYS;
        let mut r = Recent::new(8);
        let keys: Vec<u64> = same_bucket(W as u64 + 1).collect();
        for &k in &keys[..W] {
            assert!(!r.seen(k, k), "new");
        }
        // Two streams alternating in one bucket both stay known.
        for _ in 0..3 {
            assert!(r.seen(keys[0], keys[0]) && r.seen(keys[1], keys[1]));
        }
        assert!(keys[..W].iter().all(|&k| r.peek(k, k)));
        // keys[2] is now the least recent: one more key pushes it out.
        assert!(!r.seen(keys[W], keys[W]));
        assert!(!r.peek(keys[2], keys[2]));
        assert!((0..=W)
            .filter(|&i| i != 2)
            .all(|i| r.peek(keys[i], keys[i])));
        // Other buckets are untouched.
        assert!(!r.peek(0x100, 0x100));
    }

    #[test]
    fn recent_keeps_a_key_in_the_bucket_the_caller_names() {
        let mut r = Recent::new(8);
        let (fwd, back) = (0x1234_5600_0000_0080_u64, 0x0abc_de00_0000_0100_u64);
        // Both directions in the bucket of `fwd ^ back`, not their own.
        let at = fwd ^ back;
        assert!(!r.seen(at, fwd));
        assert!(r.peek(at, fwd) && !r.peek(at, back));
        assert!(!r.peek(fwd, fwd), "not in its own bucket");
        assert!(!r.seen(at, back) && r.peek(at, back) && r.peek(at, fwd));
        assert_eq!(
            r.line(at),
            r.line(at ^ 0x7f),
            "bits below 7 do not choose the bucket"
        );
        assert_ne!(r.line(at), r.line(at ^ 0x80));
    }

    proptest! {
        /// Against a model: each bucket a list of at most `WAYS` keys, most
        /// recent first.
        #[test]
        fn recent_is_a_small_lru_per_bucket(ops in proptest::collection::vec((0u64..12, 0u64..3, any::<bool>()), 0..300)) {
            let mut r = Recent::new(5); // 4 buckets of 8
            let mut model: std::collections::HashMap<usize, Vec<u64>> = Default::default();
            for (key, bucket, peek) in ops {
                let h = key << 40 | bucket << 7;
                let list = model.entry((h >> 7) as usize & 3).or_default();
                let known = list.contains(&(h | 1));
                if peek {
                    prop_assert_eq!(r.peek(h, h), known);
                } else {
                    prop_assert_eq!(r.seen(h, h), known);
                    list.retain(|&k| k != h | 1);
                    list.insert(0, h | 1);
                    list.truncate(Recent::WAYS);
                }
            }
        }
    }

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
    fn probe_set_counts_refused_and_late_probes_only() {
        let mut p = ProbeSet::<u16>::new(4);
        p.probe(1, 0);
        p.probe(2, 0);
        p.probe(3, 500);
        p.answer(1, Answer::Answered);
        p.answer(2, Answer::Refused);
        assert_eq!(p.unanswered(600, 1000), 1, "refused counts at once");
        assert_eq!(p.unanswered(1000, 1000), 1, "2 refused, 3 still in grace");
        assert_eq!(p.unanswered(1500, 1000), 2);
        p.probe(4, 0);
        p.probe(5, 0); // full: the answered probe makes room
        assert_eq!(p.len(), 4);
        p.probe(6, 0); // full of unanswered probes: not kept
        assert_eq!(p.len(), 4);
        assert_eq!(p.answers(), (0, 1));
    }

    /// The set as it was before it counted its answered probes: every
    /// probe compared with the whole set.
    #[derive(Default)]
    struct ProbeSetModel {
        probes: Vec<(u8, i64, Answer)>,
        cap: usize,
    }

    impl ProbeSetModel {
        fn probe(&mut self, target: u8, at: i64) {
            if self.probes.iter().any(|p| p.0 == target) {
                return;
            }
            if self.probes.len() >= self.cap {
                match self.probes.iter().position(|p| p.2 == Answer::Answered) {
                    Some(i) => {
                        self.probes.swap_remove(i);
                    }
                    None => return,
                }
            }
            self.probes.push((target, at, Answer::Pending));
        }

        fn answer(&mut self, target: u8, how: Answer) {
            if let Some(p) = self.probes.iter_mut().find(|p| p.0 == target) {
                if p.2 != Answer::Refused {
                    p.2 = how;
                }
            }
        }
    }

    proptest! {
        /// Counting the answered probes changes nothing the set holds,
        /// whatever the probes, answers and refusals, full or not.
        #[test]
        fn probe_set_skips_a_full_unanswered_set_without_changing_it(
            cap in 1usize..6,
            ops in proptest::collection::vec((0u8..4, 0u8..10, 0i64..100), 0..200),
        ) {
            check_probe_set(cap, ops)?;
        }

        /// Its bloom bits (256 targets over 64 bits: most share a bit)
        /// only ever spare a comparison that would have found nothing.
        #[test]
        fn probe_set_bloom_never_hides_a_target(
            cap in 1usize..80,
            ops in proptest::collection::vec((0u8..4, any::<u8>(), 0i64..100), 0..400),
        ) {
            check_probe_set(cap, ops)?;
        }
    }

    fn check_probe_set(
        cap: usize,
        ops: Vec<(u8, u8, i64)>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut set = ProbeSet::<u8>::new(cap);
        let mut model = ProbeSetModel {
            cap,
            ..ProbeSetModel::default()
        };
        for (op, target, at) in ops {
            match op {
                0 | 1 => {
                    set.probe(target, at);
                    model.probe(target, at);
                }
                2 => {
                    set.answer(target, Answer::Answered);
                    model.answer(target, Answer::Answered);
                }
                _ => {
                    set.refused(target, at);
                    model.probe(target, at);
                    model.answer(target, Answer::Refused);
                }
            }
            prop_assert_eq!(set.probes.as_slice(), &model.probes[..]);
            let answered = model
                .probes
                .iter()
                .filter(|p| p.2 == Answer::Answered)
                .count();
            prop_assert_eq!(set.answered as usize, answered);
        }
        Ok(())
    }

    #[test]
    fn first_probes_give_back_the_first_at_the_second_and_count_overwrites() {
        let mut f: FirstProbes<u16> = FirstProbes::new(64);
        assert_eq!(f.second(7, 100, 1_000, 1), None, "a first probe is kept");
        *f.pending(7, 150, 1_000).expect("pending") += 10;
        assert_eq!(f.pending(8, 150, 1_000), None, "another key");
        assert_eq!(
            f.second(7, 200, 1_000, 2),
            Some((100, 11)),
            "taken at the second"
        );
        assert_eq!(f.pending(7, 250, 1_000), None, "taken out");
        // Past its window a first probe is no longer paired.
        assert_eq!(f.second(9, 0, 1_000, 1), None);
        assert_eq!(f.second(9, 5_000, 1_000, 2), None);
        assert_eq!(f.second(9, 5_100, 1_000, 3), Some((5_000, 2)));
        // Another key in the same slot overwrites it, counted.
        assert_eq!(f.second(3, 0, 1_000, 1), None);
        assert_eq!(f.second(3 + (5 << 32), 10, 1_000, 1), None);
        assert_eq!(f.dropped, 1);
        assert_eq!(f.second(3, 20, 1_000, 1), None, "the first was lost");
    }

    #[test]
    fn addr_keys_round_trip() {
        for a in ["10.0.0.1", "::1", "64:ff9b::9765:798c", "0.0.0.0"] {
            let ip: std::net::IpAddr = a.parse().expect("an address");
            assert_eq!(key_addr(addr_key(ip)), ip);
        }
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

    /// The dense HyperLogLog moni had before the sparse form: the sparse
    /// one must give bit-for-bit the same estimates.
    fn dense_estimate<T: Hash>(xs: impl Iterator<Item = T>) -> f64 {
        let mut reg = [0u8; 64];
        for x in xs {
            let mut h = foldhash::fast::FixedState::with_seed(0x6d6f6e69).hash_one(&x);
            h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            h ^= h >> 31;
            let idx = (h >> 58) as usize;
            let rank = ((h << 6) | 0x20).leading_zeros() as u8 + 1;
            reg[idx] = reg[idx].max(rank);
        }
        super::estimate(&reg)
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sparse_hll_estimates_exactly_as_the_dense_registers(
            xs in proptest::collection::vec(any::<u32>(), 0..200),
        ) {
            let mut h = Hll::default();
            for (i, x) in xs.iter().enumerate() {
                let before = h.registers();
                let rose = if i % 2 == 0 {
                    h.add(x)
                } else {
                    h.add_hash(Hll::hash(x))
                };
                // `add` tells when a register rose, which callers that
                // keep an estimate rely on to know it is still right.
                prop_assert_eq!(rose, h.registers() != before);
                let want = dense_estimate(xs[..=i].iter());
                prop_assert_eq!(h.estimate().to_bits(), want.to_bits());
            }
            prop_assert_eq!(Hll::default().estimate().to_bits(), dense_estimate(std::iter::empty::<u32>()).to_bits());
        }

        /// A kept estimate is always the one a fresh estimate would give
        /// (its cache is dropped whenever a register rises).
        #[test]
        fn a_kept_estimate_is_always_the_fresh_one(
            xs in proptest::collection::vec(any::<u16>(), 0..300),
        ) {
            let (mut kept, mut hll) = (KeptHll::default(), Hll::default());
            for (i, x) in xs.iter().enumerate() {
                if i % 3 == 0 {
                    kept.add_hash(Hll::hash(x));
                } else {
                    kept.add(x);
                }
                hll.add(x);
                prop_assert_eq!(kept.estimate().to_bits(), hll.estimate().to_bits());
            }
        }

        #[test]
        fn fifo_table_evicts_as_bounded_and_the_oldest_live_key(
            ops in proptest::collection::vec((0u8..3, 0u16..40), 0..400),
            cap in 1usize..12,
            late in any::<bool>(),
        ) {
            let mut f: FifoTable<u16, u32> = FifoTable::new(cap);
            if late {
                // Positions wrap in the index's 31 bits within the run.
                f.base = SEQ_BITS - 4;
            }
            let mut b: Bounded<u16, u32> = Bounded::new(cap);
            // The model: live keys, oldest first.
            let mut model: Vec<(u16, u32)> = Vec::new();
            let mut evicted = 0u64;
            let mut removed_any = false;
            for (op, k) in ops {
                match op {
                    0 => {
                        if model.len() > cap {
                            model.remove(0);
                            evicted += 1;
                        }
                        if !model.iter().any(|e| e.0 == k) {
                            model.push((k, 0));
                        }
                        if let Some(e) = model.iter_mut().find(|e| e.0 == k) {
                            e.1 += 1;
                        }
                        *f.entry(&k, || 0) += 1;
                        *b.entry(&k, || 0) += 1;
                    }
                    1 => {
                        let want = model.iter_mut().find(|e| e.0 == k).map(|e| {
                            e.1 += 10;
                            e.1
                        });
                        let got = f.get_mut(&k).map(|v| {
                            *v += 10;
                            *v
                        });
                        prop_assert_eq!(got, want);
                        if let Some(v) = b.get_mut(&k) {
                            *v += 10;
                        }
                    }
                    _ => {
                        // Removals (and retain) leave holes that eviction
                        // skips; Bounded's stale order entries differ
                        // from here on, the model does not.
                        removed_any = true;
                        let want = model.iter().position(|e| e.0 == k).map(|i| model.remove(i).1);
                        prop_assert_eq!(f.remove(&k), want);
                        if k % 7 == 0 {
                            f.retain(|k, _| k % 5 != 0);
                            model.retain(|e| e.0 % 5 != 0);
                        }
                    }
                }
                prop_assert_eq!(f.len(), model.len());
                prop_assert_eq!(f.evicted, evicted);
                let mut live: Vec<(u16, u32)> = f.iter().map(|(k, v)| (*k, *v)).collect();
                let mut want = model.clone();
                live.sort_unstable();
                want.sort_unstable();
                prop_assert_eq!(&live, &want);
                if !removed_any {
                    let mut bl: Vec<(u16, u32)> = b.iter().map(|(k, v)| (*k, *v)).collect();
                    bl.sort_unstable();
                    prop_assert_eq!(&bl, &want);
                    prop_assert_eq!(b.evicted, evicted);
                }
            }
        }

        #[test]
        fn inline_vec_behaves_as_a_vec(
            ops in proptest::collection::vec((any::<bool>(), any::<u16>(), 0usize..12), 0..60),
        ) {
            let mut v: InlineVec<u16, 3> = InlineVec::default();
            let mut want: Vec<u16> = Vec::new();
            for (push, x, i) in ops {
                if push {
                    v.push(x);
                    want.push(x);
                } else if i < want.len() {
                    v.swap_remove(i);
                    want.swap_remove(i);
                } else {
                    v.swap_remove(i); // out of range: nothing
                }
                prop_assert_eq!(v.as_slice(), &want[..]);
                prop_assert_eq!(v.len(), want.len());
            }
        }
    }
}

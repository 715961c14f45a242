//! SYN, UDP and ICMP floods.
//!
//! A SYN flood's sources are spoofed, so it is judged where it lands: per
//! destination, by the rate of SYNs and the share that never complete the
//! handshake (half-open); and per VNet, for floods whose destinations are
//! random too. Distinct sources are HyperLogLog-counted (fixed memory under
//! millions of spoofed addresses). UDP and ICMP floods are rates per
//! destination.
//!
//! Cost: ordinary packets (UDP media, TCP data and ACKs) only bump a
//! count-min sketch per VNet and window (two rows of 4,096 counters per
//! kind, keyed by destination): one small-table lookup and one hash per
//! packet, and fixed memory whatever the number of destinations. Counts
//! from the sketch are upper bounds (a destination can only be over-counted,
//! by at most the window's traffic / 4,096 with high probability). Only
//! SYNs, rare in normal traffic, keep exact per-destination state, and
//! only for a destination that got a quarter of `syn_rate` SYNs this
//! window (counted in an 8 KiB array; the state is seeded with that count
//! and the first SYN's time). ACKs (the completions the half-open ratio
//! reads) are counted only to those destinations, from then on, so the
//! rest of every stream skips the sketch: the half-open ratio is that of
//! the SYNs since the destination got exact state. The two packet kinds
//! that make most traffic take a fast path with the same effect as the
//! full one (`Floods::fast_path`: an ACK segment reads one bit, or
//! nothing while no destination has exact SYN state, the common case; a
//! datagram of another service than the amplifying ones bumps one
//! sketch), which [`super::Ids`] tries before the full path (an ACK's
//! addresses are hashed only when the bit must be read).
//!
//! Echo replies to a host that itself sends echo requests are its answers,
//! not a flood against it (a flooder's victim replying names no second
//! victim). A VNet-wide SYN flood needs many sources: one source to many
//! hosts is a sweep.
//!
//! Reflection: SYN-ACKs (`syn_ack_reflection`) and UDP responses of the
//! amplifying services (`amplification`: DNS, NTP, SNMP, SSDP, CLDAP,
//! memcached, by source port) arriving at one victim from many reflectors
//! while the victim sent few SYNs or requests itself. Their rates are
//! estimated over sub-second slices (`flood_slice_ms`) as well as the
//! window, so a 23 ms burst of 4,373 packets (186 kpps) counts at its
//! own rate, not diluted over a second. Only those services' responses to
//! a host once they outnumber ten to one the requests it sent this window,
//! and SYN-ACKs to a host once they outnumber the SYNs it sent this window
//! (a client's answers and answered connections never do), create state;
//! the ones counted before that (count-min sketches) seed the entry's
//! packet count.

use std::net::IpAddr;

use serde_json::json;

use super::state::{addr_key, FifoTable, Hll, KeptHll};
use super::{
    details, AlertKind, Detector, IdsConfig, AMPLIFICATION, ICMP_FLOOD, SYN_ACK_REFLECTION,
    SYN_FLOOD, UDP_FLOOD,
};
use crate::decode::{tcp_flags as f, Decoded, Transport};
use crate::record::AlertRecord;
use crate::time::Timestamp;
use crate::vnet::VnetId;

use std::hash::BuildHasher;

/// Exact state of SYNs to one destination in the current window.
#[derive(Debug, Default)]
struct SynWindow {
    start: Timestamp,
    syns: u64,
    /// SYNs counted before the exact state began (seeded from
    /// [`SynDsts`]): the half-open ratio is over the SYNs after them,
    /// against the ACKs counted from then on.
    seeded: u64,
    sources: KeptHll,
    ports: KeptHll,
    alerted: bool,
}

const CMS_WIDTH: usize = 4096;
/// VNets with flood state at once (each holds 96 KiB of sketches).
const MAX_VNETS: usize = 64;

/// Count-min sketch: two rows of counters, estimate = the smaller.
#[derive(Debug)]
struct Cms {
    rows: Box<[[u32; CMS_WIDTH]; 2]>,
    /// Whether anything was added since the last clear (else clearing
    /// skips the 32 KiB: the ACK sketch and the gated sketches' second
    /// stage stay empty in most windows).
    used: bool,
}

impl Default for Cms {
    fn default() -> Self {
        Cms {
            rows: Box::new([[0; CMS_WIDTH]; 2]),
            used: false,
        }
    }
}

impl Cms {
    fn add(&mut self, h: u64) -> u32 {
        let (a, b) = ((h as usize) % CMS_WIDTH, ((h >> 32) as usize) % CMS_WIDTH);
        self.used = true;
        self.rows[0][a] = self.rows[0][a].saturating_add(1);
        self.rows[1][b] = self.rows[1][b].saturating_add(1);
        self.rows[0][a].min(self.rows[1][b])
    }

    fn get(&self, h: u64) -> u32 {
        let (a, b) = ((h as usize) % CMS_WIDTH, ((h >> 32) as usize) % CMS_WIDTH);
        self.rows[0][a].min(self.rows[1][b])
    }

    fn clear(&mut self) {
        if self.used {
            for r in self.rows.iter_mut() {
                r.fill(0);
            }
            self.used = false;
        }
    }
}

/// Slots of a [`GatedCms`]'s coarse stage.
const COARSE_SLOTS: usize = 1024;

/// Counts by key in two stages, for the rates of the floods (UDP, ICMP by
/// destination) that every such packet bumps: a coarse array of 1,024
/// counters (8 KiB with their seeds, hot in cache) counts every packet; a key's slot is
/// the sum over the keys that share it, so while it stays under `hot_at`
/// (an eighth of the threshold) no key in it can reach the threshold and
/// the count-min sketch (32 KiB, cold: a cache miss or two per packet) is
/// not touched. From the packet that brings a slot to `hot_at` on, its
/// keys count in the sketch too, on top of the slot's count before that
/// packet (its seed: at least what any of its keys had). An estimate is
/// an upper bound, as the sketch's own: it over-counts a key by at most
/// its slot's seed, under an eighth of the threshold plus one packet. In
/// normal traffic no slot gets near: a slot reaches an eighth of 20,000
/// UDP packets a second only at 2.5 M UDP packets a second in all.
#[derive(Debug)]
struct GatedCms {
    /// Each slot's count and its seed ([`NOT_HOT`] until it gets hot),
    /// side by side: one cache line for both.
    slots: Box<[Slot; COARSE_SLOTS]>,
    fine: Cms,
}

/// A [`GatedCms`] slot: its count, and its seed once hot.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(8))]
struct Slot {
    count: u32,
    seed: u32,
}

/// A [`GatedCms`] slot that did not reach `hot_at`.
const NOT_HOT: u32 = u32::MAX;

const COLD: Slot = Slot {
    count: 0,
    seed: NOT_HOT,
};

impl Default for GatedCms {
    fn default() -> Self {
        GatedCms {
            slots: Box::new([COLD; COARSE_SLOTS]),
            fine: Cms::default(),
        }
    }
}

impl GatedCms {
    /// Bits 48.. of the hash (the sketch indexes by 0..12 and 32..44).
    #[inline]
    fn slot(h: u64) -> usize {
        (h >> 48) as usize % COARSE_SLOTS
    }

    /// Counts one packet of `h`; its estimate, this packet included.
    #[inline]
    fn add(&mut self, h: u64, hot_at: u32) -> u32 {
        let Some(s) = self.slots.get_mut(Self::slot(h)) else {
            return u32::MAX;
        };
        let before = s.count;
        s.count = s.count.saturating_add(1);
        if s.seed == NOT_HOT {
            if s.count < hot_at {
                return s.count;
            }
            s.seed = before;
        }
        s.seed.saturating_add(self.fine.add(h))
    }

    /// Counts one packet of `h` if its estimate stays under `limit` (the
    /// threshold: the caller's full path counts the packet that reaches
    /// it, and alerts); whether it did. A slot far from hot takes one
    /// load and one store.
    #[inline]
    fn add_below(&mut self, h: u64, hot_at: u32, limit: u32) -> bool {
        if let Some(s) = self.slots.get_mut(Self::slot(h)) {
            if s.seed == NOT_HOT && s.count.saturating_add(1) < hot_at.min(limit) {
                s.count += 1;
                return true;
            }
        }
        if self.get(h).saturating_add(1) >= limit {
            return false;
        }
        self.add(h, hot_at);
        true
    }

    /// The estimate of `h`.
    #[inline]
    fn get(&self, h: u64) -> u32 {
        match self.slots.get(Self::slot(h)) {
            Some(&Slot {
                count,
                seed: NOT_HOT,
            }) => count,
            Some(s) => s.seed.saturating_add(self.fine.get(h)),
            None => u32::MAX,
        }
    }

    fn clear(&mut self) {
        self.slots.fill(COLD);
        self.fine.clear();
    }
}

/// Count-min sketches of `N` counts per key (packets and bytes, say),
/// laid out so that one key's cells share a cache line: a key hashes to
/// one block of `CELLS` cells (64 bytes) and to two distinct cells in it,
/// and its estimates are the smaller of the two, per count. As many
/// counters as two rows of `CELLS * BLOCKS / 2`, each shared by as many
/// keys on average, for one cache miss per packet instead of two: the
/// hosts these sketches count (every DNS client, every SYN's and echo
/// request's source) are mostly new ones.
#[derive(Debug)]
struct BlockCms<const N: usize, const CELLS: usize, const BLOCKS: usize> {
    blocks: Box<[Block<N, CELLS>; BLOCKS]>,
}

/// One block of a [`BlockCms`], aligned to a cache line: unaligned (the
/// allocator gives 16 bytes), three blocks in four straddled two lines,
/// and a key whose two cells fell on both missed twice.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Block<const N: usize, const CELLS: usize>([[u32; N]; CELLS]);

const _: () = assert!(std::mem::size_of::<Block<2, 8>>() == 64);
const _: () = assert!(std::mem::size_of::<Block<1, 16>>() == 64);
const _: () = assert!(std::mem::size_of::<Block<4, 4>>() == 64);

/// Packets and bytes (or SYNs sent and SYN-ACKs got) by host: 64 KiB.
type PairCms = BlockCms<2, 8, 1024>;
/// One count by host: 32 KiB.
type LineCms = BlockCms<1, 16, 512>;
/// Requests sent, their bytes, and responses got by host (and a spare
/// count that pads a cell to 16 bytes): 128 KiB.
type AmpCms = BlockCms<4, 4, 2048>;

impl<const N: usize, const CELLS: usize, const BLOCKS: usize> Default
    for BlockCms<N, CELLS, BLOCKS>
{
    fn default() -> Self {
        BlockCms {
            blocks: Box::new([Block([[0; N]; CELLS]); BLOCKS]),
        }
    }
}

impl<const N: usize, const CELLS: usize, const BLOCKS: usize> BlockCms<N, CELLS, BLOCKS> {
    /// The block of `h` (its low bits, as [`Cms`]'s first row) and its
    /// two cells in it (bits 32..).
    #[inline]
    fn cells(h: u64) -> (usize, usize, usize) {
        let i = (h >> 32) as usize % CELLS;
        let j = (i + 1 + (h >> 36) as usize % (CELLS - 1)) % CELLS;
        (h as usize % BLOCKS, i, j)
    }

    /// Adds `x` to the counts of `h`; its estimates after (as
    /// [`BlockCms::get`], without finding the cells again).
    #[inline]
    fn add(&mut self, h: u64, x: [u32; N]) -> [u32; N] {
        let (b, i, j) = Self::cells(h);
        let Some(Block(block)) = self.blocks.get_mut(b) else {
            return [u32::MAX; N];
        };
        for k in [i, j] {
            if let Some(c) = block.get_mut(k) {
                for (c, x) in c.iter_mut().zip(x) {
                    *c = c.saturating_add(x);
                }
            }
        }
        match (block.get(i), block.get(j)) {
            (Some(x), Some(y)) => std::array::from_fn(|k| x[k].min(y[k])),
            _ => [u32::MAX; N],
        }
    }

    /// The cache line [`BlockCms::add`] and [`BlockCms::get`] read for `h`.
    #[inline]
    fn line(&self, h: u64) -> Option<*const u8> {
        let (b, _, _) = Self::cells(h);
        self.blocks
            .get(b)
            .map(|block| std::ptr::from_ref(block).cast::<u8>())
    }

    /// The estimates of `h` (each the smaller of its two cells).
    #[inline]
    fn get(&self, h: u64) -> [u32; N] {
        let (b, i, j) = Self::cells(h);
        match self
            .blocks
            .get(b)
            .map(|Block(block)| (block.get(i), block.get(j)))
        {
            Some((Some(x), Some(y))) => std::array::from_fn(|k| x[k].min(y[k])),
            _ => [u32::MAX; N],
        }
    }

    fn clear(&mut self) {
        self.blocks.fill(Block([[0; N]; CELLS]));
    }
}

/// Slots of a [`SynDsts`].
const SYN_DST_SLOTS: usize = 1 << 13;

/// SYNs to each destination this window, one saturating `u8` per hash
/// slot (8 KiB, in cache), with the time of each slot's first SYN: a
/// destination gets exact state ([`SynWindow`]) only once its count
/// reaches a quarter of the SYN threshold (seeded with the count and the
/// first SYN's time), and only ACKs to such destinations are counted (the
/// completions a SYN flood's half-open ratio reads, from then on), so the
/// rest of every stream skips the sketch. A count can only be too high
/// (slots shared), which admits a destination early, never late.
///
/// Which slots reached the promotion count is also kept as one bit per
/// slot (1 KiB, which stays in the L1 cache where the counts would not
/// under a stream of packet data): every ACK of every stream reads it.
#[derive(Debug)]
struct SynDsts {
    counts: Box<[u8; SYN_DST_SLOTS]>,
    first: Box<[i64; SYN_DST_SLOTS]>,
    promoted: Box<[u64; SYN_DST_SLOTS / 64]>,
    /// Whether any slot is marked: until one is, an ACK needs neither
    /// its destination's hash nor the bit.
    any_promoted: bool,
}

impl Default for SynDsts {
    fn default() -> Self {
        SynDsts {
            counts: Box::new([0; SYN_DST_SLOTS]),
            first: Box::new([0; SYN_DST_SLOTS]),
            promoted: Box::new([0; SYN_DST_SLOTS / 64]),
            any_promoted: false,
        }
    }
}

impl SynDsts {
    /// Bits 12.. of the hash: the sketches index by 0..12 and 32..44.
    #[inline]
    fn slot(h: u64) -> usize {
        (h >> 12) as usize % SYN_DST_SLOTS
    }

    /// One more SYN to `h` at `ts`: the slot's count. The slot is marked
    /// promoted once its count reaches `promote_at`.
    fn add(&mut self, h: u64, ts: i64, promote_at: u64) -> u8 {
        let i = Self::slot(h);
        let Some(c) = self.counts.get_mut(i) else {
            return u8::MAX;
        };
        if *c == 0 {
            if let Some(f) = self.first.get_mut(i) {
                *f = ts;
            }
        }
        *c = c.saturating_add(1);
        let c = *c;
        if u64::from(c) >= promote_at {
            self.mark(i);
        }
        c
    }

    /// The time of the first SYN to `h`'s slot this window (read only at
    /// promotion: the times are a cold 64 KiB).
    fn first(&self, h: u64, or: i64) -> i64 {
        self.first.get(Self::slot(h)).copied().unwrap_or(or)
    }

    /// Marks slot `i` promoted.
    fn mark(&mut self, i: usize) {
        if let Some(w) = self.promoted.get_mut(i / 64) {
            *w |= 1 << (i % 64);
            self.any_promoted = true;
        }
    }

    /// Whether `h` got the promotion count of SYNs this window.
    #[inline]
    fn promoted(&self, h: u64) -> bool {
        let i = Self::slot(h);
        self.promoted
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn clear(&mut self) {
        self.counts.fill(0);
        self.promoted.fill(0);
        self.any_promoted = false;
    }

    /// Marks again every slot with at least `promote_at` SYNs, and only
    /// those (a new threshold).
    fn mark_promoted(&mut self, promote_at: u64) {
        self.promoted.fill(0);
        self.any_promoted = false;
        for i in 0..SYN_DST_SLOTS {
            if self
                .counts
                .get(i)
                .is_some_and(|c| u64::from(*c) >= promote_at)
            {
                self.mark(i);
            }
        }
    }
}

/// The last instant of a window (its start + its length), in
/// microseconds; [`i64::MIN`] (every packet is after it) before it starts.
#[derive(Debug, Clone, Copy)]
struct WindowEnd(i64);

impl Default for WindowEnd {
    fn default() -> Self {
        WindowEnd(i64::MIN)
    }
}

/// Per VNet and window: sketches of ACKs, UDP and ICMP by destination, and
/// the VNet-wide SYN counts.
#[derive(Debug, Default)]
struct VnetWindow {
    start: Timestamp,
    /// The window's last instant: the fast path's one comparison.
    end: WindowEnd,
    /// ACKs by destination, counted only to destinations in `syn_dsts`.
    acks: Cms,
    syn_dsts: SynDsts,
    udp: GatedCms,
    icmp: GatedCms,
    /// ICMP echo requests and SYNs by *source*: a host's own pings and
    /// connections, whose answers are no attack on it.
    echo_requests: LineCms,
    /// By host: SYNs it sent, SYN-ACKs it got.
    host_syns: PairCms,
    /// By host: requests it sent to the amplifying services (packets and
    /// bytes), and their responses it got.
    amp_requests: AmpCms,
    syns: u64,
    completions: u64,
    sources: KeptHll,
    destinations: KeptHll,
    alerted: bool,
}

/// Rate over the window and over sub-second slices of it.
#[derive(Debug, Default, Clone, Copy)]
struct Rate {
    slice_start: i64,
    slice: u64,
    peak_slice: u64,
}

impl Rate {
    fn add(&mut self, ts: Timestamp, slice_us: i64) {
        if ts.0.saturating_sub(self.slice_start) >= slice_us || ts.0 < self.slice_start {
            self.slice_start = ts.0;
            self.slice = 0;
        }
        self.slice += 1;
        self.peak_slice = self.peak_slice.max(self.slice);
    }

    /// Packets per second: the busiest slice's, or the window's so far.
    fn per_sec(&self, total: u64, window_us: i64, slice_us: i64) -> f64 {
        let slice = self.peak_slice as f64 * 1e6 / slice_us.max(1) as f64;
        let whole = total as f64 * 1e6 / window_us.max(1) as f64;
        slice.max(whole)
    }
}

/// Reflected traffic arriving at one victim in the current window.
#[derive(Debug, Default)]
struct Reflected {
    start: Timestamp,
    packets: u64,
    bytes: u64,
    rate: Rate,
    reflectors: KeptHll,
    ports: KeptHll,
    /// Packets per service (index in [`AMP_SERVICES`]).
    per_service: [u32; AMP_SERVICES.len()],
    alerted: bool,
}

/// The amplifying UDP services: (source port, name, typical request
/// payload in bytes when no request was seen: DNS ANY, NTP monlist, SNMP
/// GetBulk, SSDP M-SEARCH, CLDAP rootDSE, memcached `stats`).
pub const AMP_SERVICES: [(u16, &str, u32); 6] = [
    (53, "dns", 40),
    (123, "ntp", 8),
    (161, "snmp", 60),
    (1900, "ssdp", 90),
    (389, "cldap", 52),
    (11211, "memcached", 15),
];

/// The hash of an address ([`addr_key`]) that the flood sketches index
/// by; [`super::Ids`] computes it once per packet for the source and the
/// destination and shares it with the other detectors.
pub(crate) const FLOOD_HASHER: foldhash::fast::FixedState =
    foldhash::fast::FixedState::with_seed(0x666c6f6f64);

/// The [`FLOOD_HASHER`] hash of an address.
#[inline]
pub(crate) fn addr_hash(a: IpAddr) -> u64 {
    FLOOD_HASHER.hash_one(addr_key(a))
}

/// The index in [`AMP_SERVICES`] of the service on `port` (a `match`, not
/// a search of the list: every UDP packet asks twice).
#[inline]
fn amp_service(port: u16) -> Option<usize> {
    match port {
        53 => Some(0),
        123 => Some(1),
        161 => Some(2),
        1900 => Some(3),
        389 => Some(4),
        11211 => Some(5),
        _ => None,
    }
}

pub struct Floods {
    by_dst: FifoTable<(VnetId, IpAddr), SynWindow>,
    /// SYN-ACKs (`.0`) and amplified responses (`.1`) per victim.
    reflected: FifoTable<(VnetId, IpAddr, bool), Reflected>,
    /// Few VNets: a short list with the last hit first tried.
    by_vnet: Vec<(VnetId, VnetWindow)>,
    last_vnet: usize,
    vnets_evicted: u64,
    window_us: i64,
    secs: u64,
    syn: u64,
    /// SYNs to a destination in a window before it gets exact state.
    promote_at: u64,
    half_open: f64,
    vnet_syn: u64,
    vnet_dsts: f64,
    udp: u32,
    icmp: u32,
    /// [`GatedCms`]'s `hot_at` for `udp` and `icmp`: an eighth of them.
    udp_hot: u32,
    icmp_hot: u32,
    vnet_sources: f64,
    slice_us: i64,
    syn_ack_rate: f64,
    amp_rate: f64,
    reflectors: f64,
}

/// The count at which a [`GatedCms`] slot gets hot, for `threshold`: an
/// eighth of it, at least 1.
fn hot_at(threshold: u64) -> u32 {
    u32::try_from(threshold / 8).unwrap_or(u32::MAX).max(1)
}

impl Floods {
    pub fn new(c: &IdsConfig) -> Self {
        let secs = u64::from(c.flood_window_secs.max(1));
        Floods {
            by_dst: FifoTable::new(c.max_tracked),
            reflected: FifoTable::new(c.max_tracked),
            by_vnet: Vec::new(),
            last_vnet: 0,
            vnets_evicted: 0,
            window_us: secs as i64 * 1_000_000,
            secs,
            syn: u64::from(c.syn_rate) * secs,
            promote_at: (u64::from(c.syn_rate) * secs / 4).clamp(1, u64::from(u8::MAX)),
            half_open: c.syn_half_open,
            vnet_syn: u64::from(c.vnet_syn_rate) * secs,
            vnet_dsts: f64::from(c.vnet_syn_destinations),
            udp: u32::try_from(u64::from(c.udp_rate) * secs).unwrap_or(u32::MAX),
            icmp: u32::try_from(u64::from(c.icmp_rate) * secs).unwrap_or(u32::MAX),
            udp_hot: hot_at(u64::from(c.udp_rate) * secs),
            icmp_hot: hot_at(u64::from(c.icmp_rate) * secs),
            vnet_sources: f64::from(c.vnet_syn_sources),
            slice_us: i64::from(c.flood_slice_ms.max(1)) * 1_000,
            syn_ack_rate: f64::from(c.syn_ack_rate),
            amp_rate: f64::from(c.amp_rate),
            reflectors: f64::from(c.reflectors),
        }
    }
}

impl Floods {
    /// New thresholds, same state (SIGHUP).
    pub fn reconfigure(&mut self, c: &IdsConfig) {
        let by_dst = std::mem::replace(&mut self.by_dst, FifoTable::new(1));
        let reflected = std::mem::replace(&mut self.reflected, FifoTable::new(1));
        let by_vnet = std::mem::take(&mut self.by_vnet);
        let (last, evicted) = (self.last_vnet, self.vnets_evicted);
        *self = Floods::new(c);
        self.by_dst = by_dst;
        self.reflected = reflected;
        self.by_vnet = by_vnet;
        // The promotion marks and the windows' ends follow the new
        // settings at once.
        for (_, v) in &mut self.by_vnet {
            v.syn_dsts.mark_promoted(self.promote_at);
            if v.start.0 != 0 {
                v.end = WindowEnd(v.start.0.saturating_add(self.window_us));
            }
        }
        self.last_vnet = last;
        self.vnets_evicted = evicted;
    }
}

#[allow(clippy::too_many_arguments)] // the alert's fields
fn alert(
    kind: AlertKind,
    sid: u32,
    vnet: VnetId,
    start: Timestamp,
    ts: Timestamp,
    victim: Option<IpAddr>,
    port: Option<u16>,
    protocol: u8,
    what: String,
    d: &[(&str, serde_json::Value)],
    trigger: (IpAddr, IpAddr),
) -> AlertRecord {
    AlertRecord {
        tunnel: Default::default(),
        gate: None,
        time: start,
        end: ts,
        vnet,
        kind: kind.name,
        signature_id: sid,
        signature: what,
        category: "Attempted Denial of Service".into(),
        rev: 1,
        flow_id: None,
        vlans: Vec::new(),
        severity: kind.severity,
        src_addr: None,
        src_port: None,
        dst_addr: victim,
        dst_port: port,
        protocol,
        details: details(d),
        trigger: Some(trigger),
        to_server: None,
        flow: None,
    }
}

impl Floods {
    /// One reflected packet (a SYN-ACK when `service` is `None`, else an
    /// amplifying service's response) from `reflector` to `victim`, who
    /// sent `requests` SYNs or requests (`request_bytes` bytes) this window
    /// and got `earlier` such packets before this one that made no state
    /// (they seed a new entry's count).
    #[allow(clippy::too_many_arguments)] // the packet's facts
    fn reflect(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        reflector: IpAddr,
        victim: IpAddr,
        service: Option<usize>,
        requests: u64,
        request_bytes: u64,
        earlier: u64,
        out: &mut Vec<AlertRecord>,
    ) {
        let amp = service.is_some();
        let wu = self.window_us;
        let s = self
            .reflected
            .entry(&(vnet, victim, amp), Reflected::default);

        if s.start.0 == 0 {
            *s = Reflected {
                start: ts,
                packets: earlier,
                ..Reflected::default()
            };
        } else if ts.micros_since(s.start) > wu {
            *s = Reflected {
                start: ts,
                ..Reflected::default()
            };
        }
        s.packets += 1;
        s.bytes += d.payload.len() as u64;
        s.rate.add(ts, self.slice_us);
        s.reflectors.add(&reflector);
        if let Some((_, dp)) = d.ports() {
            s.ports.add(&dp);
        }
        if let Some(i) = service {
            if let Some(n) = s.per_service.get_mut(i) {
                *n = n.saturating_add(1);
            }
        }
        if s.alerted {
            return;
        }
        let rate = s.rate.per_sec(s.packets, wu, self.slice_us);
        let threshold = if amp {
            self.amp_rate
        } else {
            self.syn_ack_rate
        };
        if rate < threshold || s.packets < 10 {
            return;
        }
        let reflectors = s.reflectors.estimate();
        // The victim asked for at most a tenth of what it got.
        if reflectors < self.reflectors || requests.saturating_mul(10) > s.packets {
            return;
        }
        s.alerted = true;
        let secs = self.secs;
        let span_ms = ts.micros_since(s.start) as f64 / 1000.0;
        let common = [
            ("packets", json!(s.packets)),
            ("bytes", json!(s.bytes)),
            ("rate_pps_est", json!(rate.round())),
            ("peak_slice_packets", json!(s.rate.peak_slice)),
            ("slice_ms", json!(self.slice_us / 1000)),
            ("span_ms", json!((span_ms * 10.0).round() / 10.0)),
            // The estimates never claim more distinct values than
            // packets (HyperLogLog is off by a few percent either way).
            (
                "distinct_reflectors_est",
                json!(reflectors.min(s.packets as f64).round()),
            ),
            (
                "victim_ports_est",
                json!(s.ports.estimate().min(s.packets as f64).round()),
            ),
            ("victim_requests", json!(requests)),
            ("threshold_pps", json!(threshold)),
            ("threshold_reflectors", json!(self.reflectors)),
            ("window_secs", json!(secs)),
        ];
        let a = match service {
            None => alert(
                SYN_ACK_REFLECTION,
                9_000_010,
                vnet,
                s.start,
                ts,
                Some(victim),
                None,
                6,
                format!("moni SYN-ACK reflection against {victim}"),
                &common,
                (reflector, victim),
            ),
            Some(_) => {
                let top = s
                    .per_service
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, n)| **n)
                    .map_or(0, |(i, _)| i);
                let (port, name, nominal) = AMP_SERVICES[top.min(AMP_SERVICES.len() - 1)];
                let mean = s.bytes as f64 / s.packets.max(1) as f64;
                let (factor, basis) = if requests > 0 && request_bytes > 0 {
                    (s.bytes as f64 / request_bytes as f64, "observed")
                } else {
                    (mean / f64::from(nominal), "nominal_request")
                };
                let mut pairs = common.to_vec();
                pairs.extend([
                    ("service", json!(name)),
                    ("service_port", json!(port)),
                    (
                        "amplification_factor",
                        json!((factor * 10.0).round() / 10.0),
                    ),
                    ("factor_basis", json!(basis)),
                    ("mean_response_bytes", json!(mean.round())),
                ]);
                alert(
                    AMPLIFICATION,
                    9_000_011,
                    vnet,
                    s.start,
                    ts,
                    Some(victim),
                    None,
                    17,
                    format!(
                        "moni {} amplification against {victim}",
                        name.to_uppercase()
                    ),
                    &pairs,
                    (reflector, victim),
                )
            }
        };
        out.push(a);
    }
}

impl Detector for Floods {
    fn name(&self) -> &'static str {
        "flood"
    }

    fn observe(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        out: &mut Vec<AlertRecord>,
    ) {
        let Some(ip) = d.ip else { return };
        let (hs, hd) = (addr_hash(ip.src), addr_hash(ip.dst));
        self.observe_hashed(ts, vnet, d, hs, hd, out);
    }

    fn advance(&mut self, now: Timestamp) {
        let w = self.window_us;
        self.by_dst.retain(|_, s| now.micros_since(s.start) <= w);
        self.reflected.retain(|_, s| now.micros_since(s.start) <= w);
    }

    fn state(&self) -> (usize, u64) {
        (
            self.by_dst.len() + self.reflected.len() + self.by_vnet.len(),
            self.by_dst.evicted + self.reflected.evicted + self.vnets_evicted,
        )
    }
}

impl Floods {
    /// The fast path of [`Floods::observe_hashed`] for the two packet kinds
    /// that make most traffic, with the same effect; `false` (nothing
    /// counted) for any other packet, or when the packet is of another
    /// VNet than the last one, or its window has ended: the caller then
    /// takes the full path, which needs the source's hash too (an ACK's
    /// source is never hashed when this takes it).
    /// - An ACK segment (ACK, neither SYN nor RST: the bulk of every
    ///   stream) counts as a completion, and as an ACK to its destination
    ///   when that has exact SYN state: one bit read (and its hash
    ///   computed), once any destination has it this window.
    /// - A UDP datagram neither to nor from an amplifying service's port
    ///   bumps the UDP flood sketch, unless it would reach the threshold
    ///   (the full path then counts it and alerts).
    ///
    /// `hd` gives the destination's hash ([`addr_hash`]), asked only
    /// when needed: an ACK needs it only once some destination got exact
    /// SYN state this window.
    #[inline]
    pub(crate) fn fast_path(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        hd: impl FnOnce() -> u64,
    ) -> bool {
        match d.transport {
            Transport::Tcp { flags, .. } if flags & (f::SYN | f::ACK | f::RST) == f::ACK => {
                self.fast_ack(ts, vnet, hd)
            }
            Transport::Udp { src_port, dst_port }
                if amp_service(src_port).is_none() && amp_service(dst_port).is_none() =>
            {
                self.fast_udp(ts, vnet, hd())
            }
            _ => false,
        }
    }

    /// The line of the by-host sketch [`Floods::observe_hashed`] will
    /// count this packet in (a SYN's or an echo request's source, a
    /// SYN-ACK's or an echo reply's destination, either end of a
    /// request to or response from an amplifying service), for a caller
    /// that fetches it while it does other work with the packet: on
    /// traffic from many hosts (the flow-heavy capture's 250,000 DNS
    /// clients and 150,000 pingers) that count missed the cache on most
    /// such packets, three quarters of the detector's own time. Only for
    /// the VNet whose window the last packet used (nearly always the
    /// packet's own).
    #[inline]
    pub(crate) fn early_line(
        &self,
        vnet: VnetId,
        d: &Decoded<'_>,
        hs: u64,
        hd: u64,
    ) -> Option<*const u8> {
        let (id, v) = self.by_vnet.get(self.last_vnet)?;
        if *id != vnet {
            return None;
        }
        match d.transport {
            Transport::Tcp { flags, .. } => match flags & (f::SYN | f::ACK | f::RST) {
                x if x == f::SYN => v.host_syns.line(hs),
                x if x == f::SYN | f::ACK => v.host_syns.line(hd),
                _ => None,
            },
            Transport::Udp { src_port, dst_port } => {
                if amp_service(dst_port).is_some() {
                    v.amp_requests.line(hs)
                } else if amp_service(src_port).is_some() {
                    v.amp_requests.line(hd)
                } else {
                    None
                }
            }
            Transport::Icmp {
                icmp_type: 8 | 128, ..
            } => v.echo_requests.line(hs),
            Transport::Icmp {
                icmp_type: 0 | 129, ..
            } => v.echo_requests.line(hd),
            _ => None,
        }
    }

    /// The VNet window last hit, if it is `vnet`'s and still open at `ts`.
    #[inline]
    fn open_window(&mut self, ts: Timestamp, vnet: VnetId) -> Option<&mut VnetWindow> {
        let (id, v) = self.by_vnet.get_mut(self.last_vnet)?;
        // The full path's test.
        (*id == vnet && ts.0 <= v.end.0).then_some(v)
    }

    /// [`Floods::fast_path`] for an ACK segment. Inlined, as is
    /// [`Floods::fast_udp`]: a call and its arguments cost as much as the
    /// work (`bench/ids-cost.sh` measures the detector by turning it off,
    /// not by the profile of these functions).
    #[inline(always)]
    fn fast_ack(&mut self, ts: Timestamp, vnet: VnetId, hd: impl FnOnce() -> u64) -> bool {
        let Some(v) = self.open_window(ts, vnet) else {
            return false;
        };
        if v.syn_dsts.any_promoted {
            let hd = hd();
            if v.syn_dsts.promoted(hd) {
                v.acks.add(hd);
            }
        }
        v.completions += 1;
        true
    }

    /// [`Floods::fast_path`] for a UDP datagram.
    #[inline(always)]
    fn fast_udp(&mut self, ts: Timestamp, vnet: VnetId, hd: u64) -> bool {
        let (threshold, hot) = (self.udp, self.udp_hot);
        let Some(v) = self.open_window(ts, vnet) else {
            return false;
        };
        v.udp.add_below(hd, hot, threshold)
    }

    /// [`Detector::observe`] with the packet's source and destination
    /// already hashed ([`addr_hash`], computed once per packet by
    /// [`super::Ids`]).
    pub(crate) fn observe_hashed(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        hs: u64,
        hd: u64,
        out: &mut Vec<AlertRecord>,
    ) {
        let Some(ip) = d.ip else { return };
        let wu = self.window_us;
        let secs = self.secs;
        let (syn, ack, syn_ack) = match d.transport {
            Transport::Tcp { flags, .. } => (
                flags & (f::SYN | f::ACK | f::RST) == f::SYN,
                // The client's ACK that completes a handshake, or any later
                // segment: the connection is not half-open.
                flags & (f::SYN | f::ACK | f::RST) == f::ACK,
                flags & (f::SYN | f::ACK | f::RST) == f::SYN | f::ACK,
            ),
            _ => (false, false, false),
        };
        let udp = matches!(d.transport, Transport::Udp { .. });
        let icmp = matches!(d.transport, Transport::Icmp { .. });
        if !(syn || ack || syn_ack || udp || icmp) {
            return;
        }
        let h = hd;
        let i = match self.by_vnet.get(self.last_vnet) {
            Some((id, _)) if *id == vnet => self.last_vnet,
            _ => match self.by_vnet.iter().position(|(id, _)| *id == vnet) {
                Some(i) => i,
                None => {
                    if self.by_vnet.len() >= MAX_VNETS {
                        self.by_vnet.remove(0);
                        self.vnets_evicted += 1;
                    }
                    self.by_vnet.push((vnet, VnetWindow::default()));
                    self.by_vnet.len() - 1
                }
            },
        };
        self.last_vnet = i;
        let Some((_, v)) = self.by_vnet.get_mut(i) else {
            return;
        };
        if ts.0 > v.end.0 {
            // Past the window's end, or before the first window. A start
            // at time 0 means none here, as in every table of the
            // detectors: such a window begins again at the next packet.
            v.start = ts;
            v.end = match ts.0 {
                0 => WindowEnd::default(),
                t => WindowEnd(t.saturating_add(wu)),
            };
            v.acks.clear();
            v.syn_dsts.clear();
            v.udp.clear();
            v.icmp.clear();
            v.echo_requests.clear();
            v.host_syns.clear();
            v.amp_requests.clear();
            v.syns = 0;
            v.completions = 0;
            v.sources = KeptHll::default();
            v.destinations = KeptHll::default();
            v.alerted = false;
        }
        let start = v.start;
        if ack {
            // Read only for destinations with exact SYN state: the rest
            // (the clients' side of every stream, servers with a few new
            // connections) need no count.
            if v.syn_dsts.promoted(h) {
                v.acks.add(h);
            }
            v.completions += 1;
            return;
        }
        if syn_ack {
            // SYN-ACKs to a host that sent few SYNs: reflected. A host's
            // SYN-ACKs count (and make state) only once they outnumber
            // its own SYNs, so a client's answered connections make none.
            let [own_syns, n] = v.host_syns.add(h, [0, 1]);
            let (own_syns, n) = (u64::from(own_syns), u64::from(n));
            if own_syns > 0 && n <= own_syns {
                return;
            }
            self.reflect(
                ts,
                vnet,
                d,
                ip.src,
                ip.dst,
                None,
                own_syns,
                0,
                n.saturating_sub(1),
                out,
            );
            return;
        }
        if udp {
            let (sp, dp) = d.ports().unwrap_or((0, 0));
            if amp_service(dp).is_some() {
                // A request to an amplifying service, by its sender.
                let len = u32::try_from(d.payload.len()).unwrap_or(u32::MAX);
                v.amp_requests.add(hs, [1, len.max(1), 0, 0]);
            } else if let Some(svc) = amp_service(sp) {
                // A response: amplification is judged apart from UDP
                // floods (it is one, with a service and a factor).
                let [requests, req_bytes, responses, _] = v.amp_requests.add(h, [0, 0, 1, 0]);
                if requests > 0
                    && responses <= requests.saturating_mul(10)
                    && (self.reflected.is_empty()
                        || self.reflected.get_mut(&(vnet, ip.dst, true)).is_none())
                {
                    // Answers to this host's own questions: no state.
                    return;
                }
                self.reflect(
                    ts,
                    vnet,
                    d,
                    ip.src,
                    ip.dst,
                    Some(svc),
                    u64::from(requests),
                    u64::from(req_bytes),
                    u64::from(responses.saturating_sub(1)),
                    out,
                );
                return;
            }
            if v.udp.add(h, self.udp_hot) == self.udp {
                out.push(alert(
                    UDP_FLOOD,
                    9_000_004,
                    vnet,
                    start,
                    ts,
                    Some(ip.dst),
                    d.ports().map(|p| p.1),
                    17,
                    format!("moni UDP flood against {}", ip.dst),
                    &[
                        ("udp_packets_est", json!(self.udp)),
                        ("threshold_packets", json!(self.udp)),
                        ("window_secs", json!(secs)),
                    ],
                    (ip.src, ip.dst),
                ));
            }
            return;
        }
        if icmp {
            match d.transport {
                Transport::Icmp {
                    icmp_type: 8 | 128, ..
                } => {
                    v.echo_requests.add(hs, [1]);
                }
                // The answers to this host's own pings.
                Transport::Icmp {
                    icmp_type: 0 | 129, ..
                } if v.echo_requests.get(h)[0] > 0 => return,
                _ => {}
            }
            if v.icmp.add(h, self.icmp_hot) == self.icmp {
                out.push(alert(
                    ICMP_FLOOD,
                    9_000_005,
                    vnet,
                    start,
                    ts,
                    Some(ip.dst),
                    None,
                    ip.protocol,
                    format!("moni ICMP flood against {}", ip.dst),
                    &[
                        ("icmp_packets_est", json!(self.icmp)),
                        ("threshold_packets", json!(self.icmp)),
                        ("window_secs", json!(secs)),
                    ],
                    (ip.src, ip.dst),
                ));
            }
            return;
        }
        // A SYN: VNet-wide counts (spoofed sources *and* destinations) ...
        v.syns += 1;
        v.host_syns.add(hs, [1, 0]);
        let to_dst = v.syn_dsts.add(h, ts.0, self.promote_at);
        // Each value hashed once for the sketches it goes into.
        let src_hll = Hll::hash(&ip.src);
        v.sources.add_hash(src_hll);
        v.destinations.add(&ip.dst);
        if !v.alerted && v.syns >= self.vnet_syn {
            let half_open = 1.0 - (v.completions.min(v.syns) as f64 / v.syns as f64);
            // The estimates only once the cheap test passed (busy normal
            // traffic crosses the SYN count in every window).
            let (dsts, srcs) = if half_open >= self.half_open {
                (v.destinations.estimate(), v.sources.estimate())
            } else {
                (0.0, 0.0)
            };
            if half_open >= self.half_open && dsts >= self.vnet_dsts && srcs >= self.vnet_sources {
                v.alerted = true;
                out.push(alert(
                    SYN_FLOOD,
                    9_000_006,
                    vnet,
                    start,
                    ts,
                    None,
                    None,
                    6,
                    "moni SYN flood across the VNet (spoofed sources and destinations)".to_string(),
                    &[
                        ("syns", json!(v.syns)),
                        ("completions", json!(v.completions)),
                        ("half_open_ratio", json!(half_open)),
                        // Never more distinct values than SYNs (the
                        // estimates are off by a few percent either way).
                        (
                            "distinct_sources_est",
                            json!(srcs.min(v.syns as f64).round()),
                        ),
                        (
                            "distinct_destinations_est",
                            json!(dsts.min(v.syns as f64).round()),
                        ),
                        ("threshold_syns", json!(self.vnet_syn)),
                        ("window_secs", json!(secs)),
                    ],
                    (ip.src, ip.dst),
                ));
            }
        }
        // ... and exact state at the destination, once it got a quarter of
        // the threshold this window (most destinations never do).
        if u64::from(to_dst) < self.promote_at {
            return;
        }
        let acks_to_dst = u64::from(v.acks.get(h));
        let first_syn = v.syn_dsts.first(h, ts.0);
        let v_start = v.start;
        let port = d.ports().map(|p| p.1);
        let w = self.by_dst.entry(&(vnet, ip.dst), SynWindow::default);
        if ts.micros_since(w.start) > wu || w.start.0 == 0 || w.start < v_start {
            // Seeded with this window's SYNs so far (sources and ports
            // count from here).
            *w = SynWindow {
                start: Timestamp(first_syn.max(v_start.0)),
                syns: u64::from(to_dst) - 1,
                seeded: u64::from(to_dst) - 1,
                ..SynWindow::default()
            };
        }
        w.syns += 1;
        w.sources.add_hash(src_hll);
        w.ports.add(&port);
        if w.alerted || w.syns < self.syn {
            return;
        }
        let judged = w.syns - w.seeded.min(w.syns - 1);
        let half_open = 1.0 - (acks_to_dst.min(judged) as f64 / judged as f64);
        if half_open < self.half_open {
            return;
        }
        // One source walking many ports is a scan (the port-scan detector's
        // business), not a flood: a flood hits few ports, or comes from
        // many (spoofed) sources.
        let sources = w.sources.estimate();
        let scan_like = sources < 10.0 && w.ports.estimate() > 20.0;
        if half_open >= self.half_open && !scan_like {
            w.alerted = true;
            out.push(alert(
                SYN_FLOOD,
                9_000_003,
                vnet,
                w.start,
                ts,
                Some(ip.dst),
                port,
                6,
                format!("moni SYN flood against {}", ip.dst),
                &[
                    ("syns", json!(w.syns)),
                    ("completions_est", json!(acks_to_dst)),
                    ("half_open_ratio", json!(half_open)),
                    (
                        "distinct_sources_est",
                        json!(sources.min(w.syns as f64).round()),
                    ),
                    (
                        "distinct_ports_est",
                        json!(w.ports.estimate().min(w.syns as f64).round()),
                    ),
                    ("threshold_syns", json!(self.syn)),
                    ("window_secs", json!(secs)),
                ],
                (ip.src, ip.dst),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{amp_service, Floods, GatedCms, VnetWindow, AMP_SERVICES, NOT_HOT};
    use crate::ids::IdsConfig;
    use crate::time::Timestamp;
    use crate::vnet::VnetId;

    /// The line fetched ahead for a packet is the block its by-host count
    /// lives in: a SYN's and an echo request's source, a SYN-ACK's and an
    /// echo reply's destination, a DNS query's client and a DNS answer's
    /// receiver; none for a bare ACK, other UDP, or another VNet. Blocks
    /// are whole cache lines.
    #[test]
    fn the_line_fetched_ahead_is_the_one_counted() {
        let mut f = Floods::new(&IdsConfig::default());
        let vnet = VnetId(0);
        let frame = |proto: u8, l4: &[u8]| {
            let mut p = vec![0u8; 12];
            let len = (20 + l4.len()) as u8;
            p.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, len, 0, 1, 0x40, 0, 64, proto, 0, 0]);
            p.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
            p.extend_from_slice(l4);
            p
        };
        let tcp = |flags: u8| {
            frame(
                6,
                &[
                    0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0x20, 0, 0, 0, 0, 0,
                ],
            )
        };
        let udp = |sp: u16, dp: u16| {
            let (s, d) = (sp.to_be_bytes(), dp.to_be_bytes());
            frame(17, &[s[0], s[1], d[0], d[1], 0, 12, 0, 0, 1, 2, 3, 4])
        };
        let icmp = |t: u8| frame(1, &[t, 0, 0, 0, 0, 1, 0, 1]);
        let cases: Vec<(Vec<u8>, Option<bool>)> = vec![
            (tcp(0x02), Some(true)),
            (tcp(0x12), Some(false)),
            (tcp(0x10), None),
            (udp(40000, 53), Some(true)),
            (udp(53, 40000), Some(false)),
            (udp(40000, 5004), None),
            (icmp(8), Some(true)),
            (icmp(0), Some(false)),
        ];
        // A first packet opens the VNet's window.
        let syn = tcp(0x02);
        let first = crate::decode::decode(crate::decode::LinkType::Ethernet, &syn);
        f.observe_hashed(Timestamp(1), vnet, &first, 1, 2, &mut Vec::new());
        for (p, by_source) in cases {
            let d = crate::decode::decode(crate::decode::LinkType::Ethernet, &p);
            let ip = d.ip.expect("an IPv4 packet");
            let (hs, hd) = (super::addr_hash(ip.src), super::addr_hash(ip.dst));
            let (_, v) = &f.by_vnet[f.last_vnet];
            let want = by_source.and_then(|s| {
                let h = if s { hs } else { hd };
                match d.transport {
                    crate::decode::Transport::Tcp { .. } => v.host_syns.line(h),
                    crate::decode::Transport::Udp { .. } => v.amp_requests.line(h),
                    _ => v.echo_requests.line(h),
                }
            });
            assert_eq!(f.early_line(vnet, &d, hs, hd), want, "{:?}", d.transport);
            if let Some(l) = want {
                assert_eq!(l as usize % 64, 0, "a block starts a cache line");
            }
            assert_eq!(f.early_line(VnetId(7), &d, hs, hd), None);
        }
    }

    /// A reload with a new SYN threshold marks promotions by it at once,
    /// both ways: the ACK fast path reads only the marks.
    #[test]
    fn a_new_threshold_marks_promotions_again() {
        let c = |syn_rate| IdsConfig {
            syn_rate,
            ..IdsConfig::default()
        };
        let mut f = Floods::new(&c(400));
        let mut v = VnetWindow {
            start: Timestamp(1),
            end: super::WindowEnd(1_000_001),
            ..VnetWindow::default()
        };
        // An ACK from 10.0.0.2 to 10.0.0.1 (Ethernet, IPv4, TCP).
        let mut ack = vec![0u8; 12];
        ack.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        ack.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
        ack.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0x20, 0, 0, 0, 0, 0,
        ]);
        let d = crate::decode::decode(crate::decode::LinkType::Ethernet, &ack);
        let h = super::addr_hash(d.ip.expect("an IPv4 packet").dst);
        for _ in 0..50 {
            v.syn_dsts.add(h, 1, f.promote_at);
        }
        f.by_vnet.push((VnetId(0), v));
        let promoted = |f: &Floods| f.by_vnet[0].1.syn_dsts.promoted(h);
        assert!(!promoted(&f), "50 SYNs, promotion at 100");
        f.reconfigure(&c(100));
        assert!(promoted(&f), "50 SYNs, promotion at 25");
        f.reconfigure(&c(400));
        assert!(!promoted(&f), "back to 100");
        // The fast path counts the ACK only once promoted.
        f.reconfigure(&c(100));
        assert!(f.fast_path(Timestamp(2), VnetId(0), &d, || h));
        assert_eq!(f.by_vnet[0].1.acks.get(h), 1);
    }

    proptest::proptest! {
        /// A gated count is an upper bound of the true count, and over it
        /// by at most the seed of the key's slot (under `hot_at`) plus
        /// what the sketch itself over-counts; a slot that never got hot
        /// never touches the sketch.
        #[test]
        fn gated_counts_bound_the_true_counts(
            keys in proptest::collection::vec((0u64..40, 0u64..3), 1..3000),
            hot_at in 1u32..300,
        ) {
            let mut g = GatedCms::default();
            let mut plain = super::Cms::default();
            let mut truth = std::collections::HashMap::new();
            // Hashes: a few keys share slots (bits 48..) on purpose.
            let hash = |k: u64, s: u64| {
                (s << 48) | (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0x0000_ffff_ffff_ffff)
            };
            for (k, s) in keys {
                let h = hash(k, s);
                let n = truth.entry(h).or_insert(0u32);
                *n += 1;
                let est = g.add(h, hot_at);
                let bound = plain.add(h);
                proptest::prop_assert!(est >= *n, "{est} < {n}");
                proptest::prop_assert_eq!(g.get(h), est);
                let slot = GatedCms::slot(h);
                let seed = g.slots[slot].seed;
                if seed == NOT_HOT {
                    proptest::prop_assert_eq!(est, g.slots[slot].count);
                } else {
                    proptest::prop_assert!(seed < hot_at);
                    proptest::prop_assert!(est <= seed + bound, "{est} > {seed} + {bound}");
                }
            }
            proptest::prop_assert_eq!(g.fine.used, g.slots.iter().any(|s| s.seed != NOT_HOT));
            g.clear();
            proptest::prop_assert!(!g.fine.used && g.fine.rows.iter().all(|r| r.iter().all(|c| *c == 0)));
        }
    }

    proptest::proptest! {
        /// A key's two cells are distinct cells of one block, and its
        /// estimates bound its true sums from above.
        #[test]
        fn pair_counts_bound_the_true_sums(
            adds in proptest::collection::vec((proptest::prelude::any::<u64>(), 0u32..5, 0u32..1500), 1..2000),
        ) {
            let mut p = super::PairCms::default();
            let mut l = super::LineCms::default();
            let mut truth = std::collections::HashMap::new();
            for (h, x, y) in adds {
                let (b, i, j) = super::PairCms::cells(h);
                proptest::prop_assert!(b < 1024 && i < 8 && j < 8 && i != j);
                let (b, i, j) = super::LineCms::cells(h);
                proptest::prop_assert!(b < 512 && i < 16 && j < 16 && i != j);
                let (b, i, j) = super::AmpCms::cells(h);
                proptest::prop_assert!(b < 2048 && i < 4 && j < 4 && i != j);
                let after = p.add(h, [x, y]);
                proptest::prop_assert_eq!(after, p.get(h));
                l.add(h, [x]);
                let t = truth.entry(h).or_insert((0u32, 0u32));
                *t = (t.0 + x, t.1 + y);
                let [ex, ey] = p.get(h);
                proptest::prop_assert!(ex >= t.0 && ey >= t.1);
                proptest::prop_assert!(l.get(h)[0] >= t.0);
            }
        }
    }

    /// The `match` names the same service as the list, for every port.
    #[test]
    fn amp_service_agrees_with_the_list() {
        for port in 0..=u16::MAX {
            assert_eq!(
                amp_service(port),
                AMP_SERVICES.iter().position(|s| s.0 == port),
                "port {port}"
            );
        }
    }
}

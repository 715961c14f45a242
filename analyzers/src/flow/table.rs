//! The flow table: capped, expired on packet time.
//!
//! Flows live in a slab of 128-byte, line-aligned slots (key, flags and
//! id in the first cache line; counters and times in the second) with an
//! index of 8-byte entries (32 bits of the key's hash, then the slot;
//! [`crate::slot_index`]): a lookup reads one entry and the slot it then
//! updates, and the index grows without reading slots.
//! Slots and expiry queue are reserved for `max_flows` up front (the
//! queue with room for the stale entries it may hold), so they never
//! reallocate mid-run; the index starts with room for 65,536 flows and grows
//! (sized for the cap, a small table's lookups missed the cache). A live
//! flow costs about 165 bytes (slot 128, index entry at half load 16,
//! queue entry with its share of stale room 20).
//!
//! Expiry order comes from a lazy second-chance queue rather than a linked
//! LRU list, because relinking on every packet costs two cache misses on
//! random neighbours: each live flow has one queue entry holding the time it
//! was queued; a packet only updates its flow's counters. When an entry
//! reaches the front and its flow was seen since it was queued, it is
//! queued again with its last time. So:
//!
//! - idle expiry pops from the front while the front was queued at least
//!   the idle timeout ago (amortised O(1) per packet), exporting the flows
//!   really idle. Re-queued entries make the queue only roughly ordered, so
//!   a flow may be exported up to one idle timeout late; a packet arriving
//!   for a flow idle that long still opens a new record;
//! - a full table evicts in O(1) with a clock over the slots (see
//!   `evict_one`): a flow not seen since the hand last passed, so one-packet
//!   flows (a SYN flood of spoofed sources) go first. Evictions are counted
//!   and exported with end reason `evicted`, so nothing is lost, and memory
//!   stays bounded under the flood;
//! - the active timeout is checked when a flow's packet arrives: the old
//!   record is exported and the packet opens a new one;
//! - a TCP flow that saw FIN in both directions or a RST is exported after
//!   a short linger (to keep the last ACK in it), or at once when a new SYN
//!   reuses its ports.
//!
//! The index uses a randomly seeded hasher: flow keys are chosen by
//! whoever sends packets.

use std::collections::VecDeque;

use std::hash::BuildHasher;

use hashbrown::HashMap;

use crate::slot_index::SlotIndex;

use super::fragments::FragmentTracker;
use super::key::{Endpoint, FlowKey};
use crate::decode::{tcp_flags, Decoded, Fragment, Transport, Tunnels};
use crate::record::{DirectionStats, EndReason, FlowRecord, TunnelInfo};
use crate::time::Timestamp;
use crate::vnet::VnetId;

/// Flow metering settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// A flow with no packet for this long is exported (`idle`). Default 60 s.
    pub idle_timeout_secs: u64,
    /// A flow older than this is exported at its next packet (`active`),
    /// which opens a new record. Default 300 s.
    pub active_timeout_secs: u64,
    /// Time kept after a TCP close (FIN both ways, or RST) so the final ACK
    /// lands in the same record. Default 2 s.
    pub tcp_end_linger_secs: u64,
    /// Hard cap on live flows; beyond it a flow not seen recently is
    /// evicted (a clock: see the module doc).
    /// Default 1,000,000.
    pub max_flows: usize,
    /// How many fragmented datagrams' ports are remembered. Default 65,536.
    pub max_fragmented_datagrams: usize,
    /// Whether the VLAN stack of a packet outside any tunnel segment is
    /// part of its flow key ([`Decoded::flow_segment`]): the same 5-tuple
    /// on two VLANs is then two flows, as in Suricata and Zeek. Off for a
    /// trunk whose two directions arrive on different VLANs (or one tagged
    /// and one not), which would otherwise split each flow in two halves.
    /// Default on.
    pub vlan_tracking: bool,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            idle_timeout_secs: 60,
            active_timeout_secs: 300,
            tcp_end_linger_secs: 2,
            max_flows: 1_000_000,
            max_fragmented_datagrams: 65_536,
            vlan_tracking: true,
        }
    }
}

/// Counters of the flow table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows opened.
    pub created: u64,
    /// Records exported, by [`EndReason::index`].
    pub exported: [u64; 5],
    /// Highest number of live flows at once.
    pub peak_active: u64,
    /// Later IP fragments whose first fragment was not seen.
    pub fragments_unmatched: u64,
    /// Fragmented datagrams forgotten because the fragment tracker was full.
    pub fragments_evicted: u64,
    /// Slots the eviction clock looked at, over all evictions: at most
    /// [`CLOCK_SECOND_CHANCES`] + 1 per eviction at the cap.
    pub eviction_slots_inspected: u64,
}

impl FlowStats {
    pub fn exported_total(&self) -> u64 {
        self.exported.iter().sum()
    }

    pub fn evicted(&self) -> u64 {
        self.exported[EndReason::Evicted.index()]
    }
}

/// The fields of a packet the flow table needs.
#[derive(Clone, Copy, Debug)]
pub struct FlowPacket {
    pub ts: Timestamp,
    pub wire_len: u32,
    pub vnet: VnetId,
    pub vlan_id: Option<u16>,
    /// The hash [`FlowTable::lookahead`] gave for this very packet (same
    /// VNet, same decode), when the caller kept it: the lookup then does
    /// not hash the key a second time. `None`: hashed here.
    pub hash: Option<u32>,
}

/// What the flow table knows of one packet's flow, for the signature
/// engine's `flow:` keyword and for joining alerts to flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketFlow {
    /// The flow's [`FlowRecord::flow_id`].
    pub id: u64,
    /// Sent by the flow's initiator (Suricata's `to_server`).
    pub to_server: bool,
    /// TCP: the three-way handshake was completed by an earlier packet
    /// (its final ACK is not established yet, as in Suricata). Other
    /// protocols: both directions have carried packets, this one
    /// included.
    pub established: bool,
    /// The flow's packets and bytes so far, this packet included.
    pub counters: crate::record::FlowCounters,
}

/// A flow's id: a hash of its key and first-packet time, so the same
/// capture gives the same ids on every run. Kept below 2^51 like
/// Suricata's `flow_id`: JSON readers that hold numbers as doubles
/// (JavaScript tools such as EveBox and Kibana, `jq`) keep it exact, so an
/// EVE alert still joins its flow.
fn flow_id(key: &FlowKey, start: Timestamp) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let words = [
        key.lo.addr_hi,
        key.lo.addr_lo,
        u64::from(key.lo.port) << 16 | u64::from(key.hi.port),
        key.hi.addr_hi,
        key.hi.addr_lo,
        u64::from(key.segment) << 32
            | u64::from(key.vnet.0) << 16
            | u64::from(key.protocol) << 1
            | u64::from(key.v6),
        start.micros() as u64,
    ];
    let h = words
        .iter()
        .fold(0x9E37_79B9_7F4A_7C15u64, |h, &w| mix(h.wrapping_add(w)));
    (h & FLOW_ID_MASK).max(1)
}

/// 51 bits, as Suricata's `FlowGetId`.
const FLOW_ID_MASK: u64 = (1 << 51) - 1;

/// TCP handshake progress bits of [`Slot::handshake`].
const SYN_SEEN: u8 = 1;
const SYN_ACK_SEEN: u8 = 2;
const ESTABLISHED: u8 = 4;

/// Bits of [`Slot::bits`].
const OCCUPIED: u8 = 1;
const INITIATOR_IS_LO: u8 = 2;
const FIN_FWD: u8 = 4;
const FIN_REV: u8 = 8;
const CLOSED: u8 = 16;
/// Set by every packet after a flow's first, cleared when the eviction
/// clock passes: the clock's second chance.
const REFERENCED: u8 = 32;
const HAS_VLAN: u8 = 64;

/// Largest slot index; the flow cap is clamped below it.
const MAX_SLOTS: usize = u32::MAX as usize - 1;

/// The table reserves room for this many flows up front at most (virtual
/// memory: pages are touched only as flows arrive). A larger cap grows past
/// it the usual way.
const PRESIZE_MAX: usize = 1 << 22;

/// The index a table of at most `max_flows` flows starts with (see
/// [`INDEX_PRESIZE_MAX`]).
fn starting_index(max_flows: usize) -> SlotIndex {
    SlotIndex::with_capacity(max_flows.min(INDEX_PRESIZE_MAX))
}

/// The room an expiry queue needs for `live` flows: one entry each, and
/// the stale entries [`FlowTable::compact_queues`] lets pile up before it
/// drops them.
fn queue_room(live: usize) -> usize {
    live + live / 4 + 1024
}

/// The hash index starts with room for this many flows at most and grows
/// (a rehash moves 8-byte entries and never reads a slot). Sized for the
/// cap, its entries spread over megabytes and every lookup of a table of
/// tens of thousands of flows missed the cache: a 2 M-packet IMIX capture
/// with 45,000 flows spent twice the time in `observe`.
const INDEX_PRESIZE_MAX: usize = 1 << 16;

/// How many recently seen flows the eviction clock passes over (clearing
/// their mark) before it evicts the flow under its hand regardless: the
/// bound on the slots one eviction inspects.
pub const CLOCK_SECOND_CHANCES: u32 = 8;

/// The flow key as the table stores it: 44 bytes with 4-byte alignment,
/// so a slot's first cache line holds the key and the fields every packet
/// reads (a [`FlowKey`] is 56 bytes with its padding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
struct PackedKey {
    /// `lo` then `hi` address, each as four big-endian-ordered words.
    addrs: [u32; 8],
    /// `lo` port in the high half, `hi` port in the low half.
    ports: u32,
    segment: u32,
    vnet: u16,
    protocol: u8,
    v6: u8,
}

impl PackedKey {
    #[inline]
    fn new(k: &FlowKey) -> PackedKey {
        let w = |x: u64| [(x >> 32) as u32, x as u32];
        let [a0, a1] = w(k.lo.addr_hi);
        let [a2, a3] = w(k.lo.addr_lo);
        let [a4, a5] = w(k.hi.addr_hi);
        let [a6, a7] = w(k.hi.addr_lo);
        PackedKey {
            addrs: [a0, a1, a2, a3, a4, a5, a6, a7],
            ports: u32::from(k.lo.port) << 16 | u32::from(k.hi.port),
            segment: k.segment,
            vnet: k.vnet.0,
            protocol: k.protocol,
            v6: u8::from(k.v6),
        }
    }

    fn word(&self, i: usize) -> u64 {
        u64::from(self.addrs[2 * i]) << 32 | u64::from(self.addrs[2 * i + 1])
    }

    fn lo(&self) -> Endpoint {
        Endpoint {
            addr_hi: self.word(0),
            addr_lo: self.word(1),
            port: (self.ports >> 16) as u16,
        }
    }

    fn hi(&self) -> Endpoint {
        Endpoint {
            addr_hi: self.word(2),
            addr_lo: self.word(3),
            port: self.ports as u16,
        }
    }
}

impl std::hash::Hash for PackedKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        for i in 0..4 {
            h.write_u64(self.word(i));
        }
        h.write_u64(u64::from(self.ports) << 32 | u64::from(self.segment));
        h.write_u64(
            u64::from(self.vnet) << 16 | u64::from(self.protocol) << 8 | u64::from(self.v6),
        );
    }
}

/// One direction's counters and times (µs since the epoch).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Dir {
    packets: u64,
    bytes: u64,
    first: i64,
    last: i64,
}

impl Dir {
    /// Counts one packet. A direction with no packet yet takes its
    /// times from it, unless they were set when the record opened (the
    /// initiator's side of a record that the active timeout opened on a
    /// responder's packet keeps the record's start: `start()` must not
    /// move later, or the next active timeout would come late).
    #[inline]
    fn add(&mut self, ts: i64, wire_len: u32) {
        if self.packets == 0 && self.first == 0 {
            self.first = ts;
            self.last = ts;
        } else {
            self.first = self.first.min(ts);
            self.last = self.last.max(ts);
        }
        self.packets += 1;
        self.bytes += u64::from(wire_len);
    }
}

/// One flow in two cache lines (the slot is line-aligned): the first holds
/// the key a lookup compares and the flags, id and handshake every packet
/// reads; the second the counters and times every packet updates. A packet
/// of a known flow touches its 8-byte index entry and these two lines
/// (adjacent, which the hardware fetches together). What few flows have
/// (tunnel layers, fragment counts) lives in side maps so the others pay
/// nothing.
///
/// The flow's start is its forward direction's first time: the first
/// packet is forward by definition.
#[derive(Debug)]
#[repr(C, align(64))]
struct Slot {
    key: PackedKey,
    generation: u32,
    bits: u8,
    handshake: u8,
    tcp_flags_fwd: u8,
    tcp_flags_rev: u8,
    vlan_id: u16,
    id: u64,
    fwd: Dir,
    rev: Dir,
}

impl Slot {
    #[inline]
    fn last_seen(&self) -> Timestamp {
        Timestamp(if self.rev.packets == 0 {
            self.fwd.last
        } else {
            self.fwd.last.max(self.rev.last)
        })
    }

    #[inline]
    fn start(&self) -> Timestamp {
        Timestamp(self.fwd.first)
    }

    #[inline]
    fn live(&self) -> bool {
        self.bits & OCCUPIED != 0
    }

    #[inline]
    fn closed(&self) -> bool {
        self.bits & CLOSED != 0
    }
}

const _: () = assert!(std::mem::size_of::<PackedKey>() == 44);
const _: () = assert!(std::mem::size_of::<Slot>() == 128);

/// A queue entry: when it was queued, the slot, and the slot's generation
/// (an entry whose generation no longer matches is stale and skipped).
type Entry = (Timestamp, u32, u32);

/// The flow table. Feed it packets in capture order with [`FlowTable::observe`];
/// finished flows are appended to the caller's output vector.
#[derive(Debug)]
pub struct FlowTable {
    config: FlowConfig,
    idle_us: i64,
    active_us: i64,
    linger_us: i64,
    hasher: foldhash::fast::RandomState,
    /// Live flows: the high 32 bits of the key's hash, then the slot index.
    index: SlotIndex,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// The eviction clock's hand: the next slot it inspects.
    hand: usize,
    queue: VecDeque<Entry>,
    closing: VecDeque<Entry>,
    fragments: FragmentTracker,
    stats: FlowStats,
    /// Live flows per VNet (indexed by [`VnetId`]), for the active-flows gauge.
    active_by_vnet: Vec<u64>,
    /// The tunnel layers of each tunnelled flow's first packet, by slot.
    /// Kept aside so untunnelled flows pay nothing; at most one entry per
    /// live flow, so bounded by `max_flows`.
    tunnels: HashMap<u32, Tunnels, foldhash::fast::RandomState>,
    /// IP fragments counted per flow, by slot (fragmented flows are few).
    fragment_counts: HashMap<u32, u64, foldhash::fast::RandomState>,
    /// The newest time [`FlowTable::advance`] was given.
    newest: Timestamp,
    /// [`FlowTable::flush_some`] is emptying the table: the index and the
    /// free list are gone (nothing looks a flow up until the input ends,
    /// so the final flush neither needs them nor grows the free list to
    /// one entry per flow while the records are written).
    draining: bool,
}

/// The two port fields of a flow key: TCP and UDP ports; an ICMP echo's
/// identifier twice (request and reply meet), other ICMP its type and code.
#[inline]
fn transport_ports(t: &Transport) -> (u16, u16) {
    match *t {
        Transport::Tcp {
            src_port, dst_port, ..
        }
        | Transport::Udp { src_port, dst_port } => (src_port, dst_port),
        Transport::Icmp {
            icmp_type,
            code,
            echo_id,
        } => match echo_id {
            Some(id) => (id, id),
            None => (0, u16::from(icmp_type) << 8 | u16::from(code)),
        },
        Transport::None => (0, 0),
    }
}

fn secs_to_us(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000)
}

impl FlowTable {
    /// A table with room reserved for `max_flows` flows (up to 4 M), so
    /// the slots never reallocate while it fills; the index starts smaller
    /// (see `INDEX_PRESIZE_MAX`).
    pub fn new(config: FlowConfig) -> Self {
        let max_flows = config.max_flows.clamp(1, MAX_SLOTS);
        let presize = max_flows.min(PRESIZE_MAX);
        FlowTable {
            idle_us: secs_to_us(config.idle_timeout_secs),
            active_us: secs_to_us(config.active_timeout_secs),
            linger_us: secs_to_us(config.tcp_end_linger_secs),
            hasher: foldhash::fast::RandomState::default(),
            index: starting_index(max_flows),
            slots: Vec::with_capacity(presize),
            free: Vec::new(),
            hand: 0,
            queue: VecDeque::with_capacity(queue_room(presize)),
            closing: VecDeque::new(),
            fragments: FragmentTracker::new(config.max_fragmented_datagrams),
            stats: FlowStats::default(),
            active_by_vnet: Vec::new(),
            tunnels: HashMap::default(),
            fragment_counts: HashMap::default(),
            newest: Timestamp(i64::MIN),
            draining: false,
            config: FlowConfig {
                max_flows,
                ..config
            },
        }
    }

    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// Changes timeouts and caps without dropping state (a smaller cap takes
    /// effect as new flows arrive). `vlan_tracking` stays as it is: it
    /// changes every VLAN flow's key, which would give each live flow a
    /// second record (a restart applies it).
    pub fn reconfigure(&mut self, config: FlowConfig) {
        self.idle_us = secs_to_us(config.idle_timeout_secs);
        self.active_us = secs_to_us(config.active_timeout_secs);
        self.linger_us = secs_to_us(config.tcp_end_linger_secs);
        self.config = FlowConfig {
            max_flows: config.max_flows.clamp(1, MAX_SLOTS),
            vlan_tracking: self.config.vlan_tracking,
            ..config
        };
    }

    pub fn stats(&self) -> FlowStats {
        let mut s = self.stats.clone();
        s.fragments_unmatched = self.fragments.unmatched;
        s.fragments_evicted = self.fragments.evicted;
        s
    }

    /// Number of live flows.
    pub fn len(&self) -> usize {
        if self.draining {
            self.active_by_vnet.iter().sum::<u64>() as usize
        } else {
            self.index.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live flows per VNet, indexed by [`VnetId`] (shorter than the VNet
    /// map when the last VNets have never had a flow).
    pub fn active_by_vnet(&self) -> &[u64] {
        &self.active_by_vnet
    }

    #[inline]
    fn hash(&self, k: &PackedKey) -> u32 {
        (self.hasher.hash_one(k) >> 32) as u32
    }

    /// The slot of the live flow with key `k` (hash `h`).
    #[inline]
    fn find(&self, h: u32, k: &PackedKey) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(h, |slot| {
            slots.get(slot as usize).is_some_and(|s| s.key == *k)
        })
    }

    /// Where the lookup of this packet's flow will first read (its index
    /// entry), for a caller that prefetches it a few packets ahead: on a
    /// table of hundreds of thousands of flows that read misses the cache.
    /// With it comes the key's hash, for [`FlowTable::slot_ahead`] once the
    /// entry has arrived. `None` for a packet without an IP layer and for a
    /// fragment (whose ports the lookup takes from its datagram's first
    /// fragment).
    #[inline]
    pub fn lookahead(&self, vnet: VnetId, d: &Decoded<'_>) -> Option<(*const u8, u32)> {
        let ip = d.ip?;
        if ip.fragment != Fragment::None {
            return None;
        }
        let (src_port, dst_port) = transport_ports(&d.transport);
        let (mut key, _) = FlowKey::new(
            vnet,
            ip.protocol,
            ip.src.is_ipv6(),
            Endpoint::new(ip.src, src_port),
            Endpoint::new(ip.dst, dst_port),
        );
        key.segment = d.flow_segment(self.config.vlan_tracking);
        let h = self.hash(&PackedKey::new(&key));
        self.index
            .home_entry(h)
            .map(|e| (std::ptr::from_ref(e).cast::<u8>(), h))
    }

    /// The slot (address and size) the lookup of hash `h` (from
    /// [`FlowTable::lookahead`]) will compare and update, to prefetch once
    /// the index entry is in the cache; `None` for a flow the table does
    /// not hold.
    #[inline]
    pub fn slot_ahead(&self, h: u32) -> Option<(*const u8, usize)> {
        let slot = self.index.peek(h)?;
        self.slots.get(slot as usize).map(|s| {
            (
                std::ptr::from_ref(s).cast::<u8>(),
                std::mem::size_of::<Slot>(),
            )
        })
    }

    /// Counts one decoded packet and tells its flow. Packets without an IP
    /// layer are ignored.
    pub fn observe(
        &mut self,
        pkt: FlowPacket,
        d: &Decoded<'_>,
        out: &mut Vec<FlowRecord>,
    ) -> Option<PacketFlow> {
        let ip = d.ip?;
        self.advance(pkt.ts, out);

        let is_fragment = ip.fragment != Fragment::None;
        let transport_ports = transport_ports(&d.transport);
        let segment = d.flow_segment(self.config.vlan_tracking);
        let (src_port, dst_port) = match ip.fragment {
            Fragment::None => transport_ports,
            Fragment::First { id } => {
                let key = (pkt.vnet, segment, ip.src, ip.dst, ip.protocol, id);
                self.fragments.first(key, transport_ports);
                transport_ports
            }
            Fragment::Later { id } => self
                .fragments
                .later((pkt.vnet, segment, ip.src, ip.dst, ip.protocol, id))
                .unwrap_or((0, 0)),
        };
        let flags = d.tcp_flags();
        let (mut key, src_is_lo) = FlowKey::new(
            pkt.vnet,
            ip.protocol,
            ip.src.is_ipv6(),
            Endpoint::new(ip.src, src_port),
            Endpoint::new(ip.dst, dst_port),
        );
        key.segment = segment;
        let packed = PackedKey::new(&key);
        // A fragment's ports come from its datagram's first fragment: the
        // hash of its own decode (lookahead gives none) would not do.
        let h = match pkt.hash {
            Some(h) if !is_fragment => {
                debug_assert_eq!(h, self.hash(&packed), "a hash for another packet");
                h
            }
            _ => self.hash(&packed),
        };

        let idx = match self.find(h, &packed) {
            Some(idx) => {
                let st = &self.slots[idx as usize];
                let new_syn = flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
                if st.closed() && new_syn {
                    self.export(idx, EndReason::TcpEnd, out);
                    self.insert(&key, packed, h, src_is_lo, pkt, &d.tunnels, out)
                } else if pkt.ts.micros_since(st.last_seen()) >= self.idle_us {
                    // Idle already, though its queue entry is not due yet.
                    self.export(idx, EndReason::Idle, out);
                    self.insert(&key, packed, h, src_is_lo, pkt, &d.tunnels, out)
                } else if pkt.ts.micros_since(st.start()) >= self.active_us {
                    // The flow goes on in a new record, and its initiator
                    // and handshake with it: a server's packet after the
                    // split is still to the client, and established.
                    let (initiator_is_lo, handshake) =
                        (st.bits & INITIATOR_IS_LO != 0, st.handshake);
                    self.export(idx, EndReason::Active, out);
                    let new = self.insert(&key, packed, h, initiator_is_lo, pkt, &d.tunnels, out);
                    self.slots[new as usize].handshake = handshake;
                    new
                } else {
                    self.slots[idx as usize].bits |= REFERENCED;
                    idx
                }
            }
            // A hit checks the key, and a new flow is filed under the
            // key's own hash (new flows pay the hash the hint spares the
            // others): a wrong hint could at worst start a second record
            // of a flow, never file one where its export would not find
            // it to remove.
            None => {
                let own = if pkt.hash.is_some() {
                    self.hash(&packed)
                } else {
                    h
                };
                self.insert(&key, packed, own, src_is_lo, pkt, &d.tunnels, out)
            }
        };

        if is_fragment {
            *self.fragment_counts.entry(idx).or_default() += 1;
        }
        let slot = &mut self.slots[idx as usize];
        let forward = src_is_lo == (slot.bits & INITIATOR_IS_LO != 0);
        if forward {
            slot.fwd.add(pkt.ts.0, pkt.wire_len);
            slot.tcp_flags_fwd |= flags;
        } else {
            slot.rev.add(pkt.ts.0, pkt.wire_len);
            slot.tcp_flags_rev |= flags;
        }
        // TCP: the ACK that completes the handshake is not established
        // yet (Suricata's `flow:not_established` matches it); the packets
        // after it are.
        let established_before = slot.handshake & ESTABLISHED != 0;
        if ip.protocol == 6 {
            let syn_ack = flags & (tcp_flags::SYN | tcp_flags::ACK);
            slot.handshake |= match (forward, syn_ack) {
                (true, tcp_flags::SYN) => SYN_SEEN,
                (false, s)
                    if s == tcp_flags::SYN | tcp_flags::ACK && slot.handshake & SYN_SEEN != 0 =>
                {
                    SYN_ACK_SEEN
                }
                (true, tcp_flags::ACK) if slot.handshake & SYN_ACK_SEEN != 0 => ESTABLISHED,
                _ => 0,
            };
        } else if slot.rev.packets > 0 {
            slot.handshake |= ESTABLISHED;
        }
        let seen = PacketFlow {
            id: slot.id,
            to_server: forward,
            established: if ip.protocol == 6 {
                established_before
            } else {
                slot.handshake & ESTABLISHED != 0
            },
            counters: crate::record::FlowCounters {
                pkts_toserver: slot.fwd.packets,
                pkts_toclient: slot.rev.packets,
                bytes_toserver: slot.fwd.bytes,
                bytes_toclient: slot.rev.bytes,
                start: slot.start(),
            },
        };
        if ip.protocol == 6 && !slot.closed() {
            if flags & tcp_flags::FIN != 0 {
                slot.bits |= if forward { FIN_FWD } else { FIN_REV };
            }
            if flags & tcp_flags::RST != 0 || slot.bits & (FIN_FWD | FIN_REV) == FIN_FWD | FIN_REV {
                slot.bits |= CLOSED;
                let generation = slot.generation;
                self.closing.push_back((pkt.ts, idx, generation));
            }
        }
        Some(seen)
    }

    /// Exports flows that expired by `now` (idle, or TCP-closed past the
    /// linger). Called on every packet; call it on a timer too when live
    /// traffic may stop. In the middle of a [`FlowTable::flush_some`] it
    /// first rebuilds the index and free list the flush gave up.
    pub fn advance(&mut self, now: Timestamp, out: &mut Vec<FlowRecord>) {
        if self.draining {
            self.undrain();
        }
        self.newest = self.newest.max(now);
        while let Some(&(queued, idx, generation)) = self.queue.front() {
            if now.micros_since(queued) < self.idle_us {
                break;
            }
            self.queue.pop_front();
            let Some((last, closed)) = self
                .live(idx, generation)
                .map(|st| (st.last_seen(), st.closed()))
            else {
                continue;
            };
            if now.micros_since(last) >= self.idle_us {
                // A closed TCP flow idle this long is past its linger too:
                // it ends as `tcp_end` whichever queue reaches it first (a
                // table whose time jumps, as in a worker that sees a share
                // of the packets, must end it as one that sees them all).
                let reason = if closed {
                    EndReason::TcpEnd
                } else {
                    EndReason::Idle
                };
                self.export(idx, reason, out);
            } else {
                self.queue.push_back((last, idx, generation));
            }
        }
        while let Some(&(closed_at, idx, generation)) = self.closing.front() {
            if now.micros_since(closed_at) < self.linger_us {
                break;
            }
            self.closing.pop_front();
            let Some(st) = self.live(idx, generation) else {
                continue;
            };
            if !st.closed() {
                continue;
            }
            let last = st.last_seen();
            if now.micros_since(last) >= self.linger_us {
                self.export(idx, EndReason::TcpEnd, out);
            } else {
                self.closing.push_back((last, idx, generation));
            }
        }
    }

    /// Exports every live flow, oldest first: with end reason `tcp_end` if
    /// it was a closed TCP flow waiting out its linger, `idle` if it was
    /// idle by the newest time seen already (the lazy queue had not reached
    /// it: the end reason must not depend on which other flows share the
    /// table), `end_of_input` otherwise.
    pub fn flush(&mut self, out: &mut Vec<FlowRecord>) {
        while !self.flush_some(out, usize::MAX) {}
    }

    /// [`FlowTable::flush`] in parts: exports up to `max` flows and tells
    /// whether the table is now empty. The caller writes each part before
    /// asking for the next, so the records of a full table never all wait
    /// in memory at once. The input has ended: the first call gives up
    /// the index and the free list (nothing is looked up while the table
    /// empties), and once it is empty the table starts over (no slot in
    /// use, a new index). A packet before that rebuilds them (see
    /// [`FlowTable::advance`]).
    pub fn flush_some(&mut self, out: &mut Vec<FlowRecord>, max: usize) -> bool {
        if !self.draining {
            // Its memory goes back before the records are made.
            self.draining = true;
            self.index = SlotIndex::with_capacity(0);
            self.free = Vec::new();
        }
        let mut n = 0;
        while n < max {
            let Some((_, idx, generation)) = self.queue.pop_front() else {
                break;
            };
            let Some(st) = self.live(idx, generation) else {
                continue;
            };
            let reason = if st.closed() {
                EndReason::TcpEnd
            } else if self.newest.micros_since(st.last_seen()) >= self.idle_us {
                EndReason::Idle
            } else {
                EndReason::EndOfInput
            };
            self.export(idx, reason, out);
            n += 1;
        }
        let done = self.queue.is_empty();
        if done {
            // Empty: a table that starts over, with its slots' room kept.
            self.closing.clear();
            self.slots.clear();
            self.hand = 0;
            self.index = starting_index(self.config.max_flows);
            self.draining = false;
        }
        done
    }

    /// Packets again before [`FlowTable::flush_some`] emptied the table:
    /// the index and free list come back from the slots, once per drain so
    /// interrupted (moni's workers do not do this: their input ends with
    /// the flush).
    #[cold]
    fn undrain(&mut self) {
        let live = self.len();
        self.draining = false;
        // Room for the flows still live, if more than a new table's.
        self.index =
            SlotIndex::with_capacity(live.max(self.config.max_flows.min(INDEX_PRESIZE_MAX)));
        for idx in 0..self.slots.len() {
            if self.slots[idx].live() {
                let h = self.hash(&self.slots[idx].key);
                self.index.insert(h, idx as u32);
            } else {
                self.free.push(idx as u32);
            }
        }
    }

    /// The flow in `idx` if the slot still holds the flow of `generation`.
    #[inline]
    fn live(&self, idx: u32, generation: u32) -> Option<&Slot> {
        let slot = self.slots.get(idx as usize)?;
        (slot.live() && slot.generation == generation).then_some(slot)
    }

    /// Exports one flow to make room, in O(1): a clock over the slots. The
    /// hand passes over up to [`CLOCK_SECOND_CHANCES`] flows seen since it
    /// last passed (clearing their mark) and evicts the first flow not seen
    /// since, or the one under it after that many. A flow with one packet
    /// (a spoofed SYN) is never marked, so a flood evicts its own flows
    /// first. Every slot looked at is counted in
    /// [`FlowStats::eviction_slots_inspected`].
    fn evict_one(&mut self, out: &mut Vec<FlowRecord>) {
        let n = self.slots.len();
        let mut passed = 0;
        // Free slots exist at the cap only after the cap was lowered; the
        // occupied ones number at least the cap, so the loop ends.
        for _ in 0..2 * n + CLOCK_SECOND_CHANCES as usize + 1 {
            let idx = self.hand;
            self.hand = if idx + 1 >= n { 0 } else { idx + 1 };
            self.stats.eviction_slots_inspected += 1;
            let s = &mut self.slots[idx];
            if !s.live() {
                continue;
            }
            if s.bits & REFERENCED != 0 && passed < CLOCK_SECOND_CHANCES {
                s.bits &= !REFERENCED;
                passed += 1;
                continue;
            }
            self.export(idx as u32, EndReason::Evicted, out);
            return;
        }
    }

    /// Drops stale entries once a queue holds more than [`queue_room`] of
    /// the live flows (each live flow has one entry in the expiry queue,
    /// so that is more than a quarter of them plus 1,024 stale entries),
    /// so queues stay proportional to the table even when flows end by TCP
    /// close, the active timeout or eviction (which leave their entry
    /// behind), and the expiry queue never outgrows the room reserved for
    /// it: growing would copy it into one twice its size while both are
    /// held, at the moment the table is full. Amortised O(1) per insert:
    /// with S stale entries the live ones number under 4 S, so a
    /// compaction reads under 5 S entries (one slot each) and drops S. A
    /// flood beyond the cap (3 M spoofed SYN sources at a cap of 1 M)
    /// showed no difference in time against room for as many stale
    /// entries as live ones, and 11 MB less at its peak.
    fn compact_queues(&mut self) {
        let limit = queue_room(self.index.len());
        let slots = &self.slots;
        let live = |&(_, idx, generation): &Entry| {
            slots
                .get(idx as usize)
                .is_some_and(|s| s.live() && s.generation == generation)
        };
        if self.queue.len() > limit {
            self.queue.retain(live);
        }
        if self.closing.len() > limit {
            self.closing.retain(live);
        }
    }

    #[allow(clippy::too_many_arguments)] // the parts of one packet's key, all at hand
    fn insert(
        &mut self,
        key: &FlowKey,
        packed: PackedKey,
        h: u32,
        src_is_lo: bool,
        pkt: FlowPacket,
        tunnels: &Tunnels,
        out: &mut Vec<FlowRecord>,
    ) -> u32 {
        while self.index.len() >= self.config.max_flows && !self.index.is_empty() {
            self.evict_one(out);
        }
        self.compact_queues();
        let mut bits = OCCUPIED;
        if src_is_lo {
            bits |= INITIATOR_IS_LO;
        }
        if pkt.vlan_id.is_some() {
            bits |= HAS_VLAN;
        }
        let new_dir = Dir {
            packets: 0,
            bytes: 0,
            first: pkt.ts.0,
            last: pkt.ts.0,
        };
        let fresh = |generation| Slot {
            key: packed,
            generation,
            bits,
            handshake: 0,
            tcp_flags_fwd: 0,
            tcp_flags_rev: 0,
            vlan_id: pkt.vlan_id.unwrap_or(0),
            id: flow_id(key, pkt.ts),
            fwd: new_dir,
            rev: Dir::default(),
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                let slot = &mut self.slots[idx as usize];
                *slot = fresh(slot.generation.wrapping_add(1));
                idx
            }
            None => {
                self.slots.push(fresh(0));
                (self.slots.len() - 1) as u32
            }
        };
        if !tunnels.is_empty() {
            self.tunnels.insert(idx, *tunnels);
        }
        let generation = self.slots[idx as usize].generation;
        self.queue.push_back((pkt.ts, idx, generation));
        self.index.insert(h, idx);
        let v = usize::from(key.vnet.0);
        if self.active_by_vnet.len() <= v {
            self.active_by_vnet.resize(v + 1, 0);
        }
        self.active_by_vnet[v] += 1;
        self.stats.created += 1;
        self.stats.peak_active = self.stats.peak_active.max(self.index.len() as u64);
        idx
    }

    fn export(&mut self, idx: u32, reason: EndReason, out: &mut Vec<FlowRecord>) {
        if !self.draining {
            let h = self.hash(&self.slots[idx as usize].key);
            self.index.remove(h, idx);
            self.free.push(idx);
        }
        let slot = &mut self.slots[idx as usize];
        slot.bits &= !OCCUPIED;
        if let Some(n) = self.active_by_vnet.get_mut(usize::from(slot.key.vnet)) {
            *n = n.saturating_sub(1);
        }
        self.stats.exported[reason.index()] += 1;
        let tunnel = if self.tunnels.is_empty() {
            TunnelInfo::default()
        } else {
            self.tunnels
                .remove(&idx)
                .map(|t| TunnelInfo::of(&t))
                .unwrap_or_default()
        };
        let fragments = if self.fragment_counts.is_empty() {
            0
        } else {
            self.fragment_counts.remove(&idx).unwrap_or(0)
        };
        let (k, st) = (&slot.key, &*slot);
        let (lo, hi) = (k.lo(), k.hi());
        let (src, dst) = if st.bits & INITIATOR_IS_LO != 0 {
            (lo, hi)
        } else {
            (hi, lo)
        };
        let dir = |d: &Dir, tcp_flags: u8| DirectionStats {
            packets: d.packets,
            bytes: d.bytes,
            first: Timestamp(d.first),
            last: Timestamp(d.last),
            tcp_flags,
        };
        let v6 = k.v6 != 0;
        out.push(FlowRecord {
            flow_id: st.id,
            vnet: VnetId(k.vnet),
            vlan_id: (st.bits & HAS_VLAN != 0).then_some(st.vlan_id),
            src_addr: src.ip(v6),
            dst_addr: dst.ip(v6),
            src_port: src.port,
            dst_port: dst.port,
            protocol: k.protocol,
            fwd: dir(&st.fwd, st.tcp_flags_fwd),
            rev: dir(&st.rev, st.tcp_flags_rev),
            fragments,
            end_reason: reason,
            tunnel,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, LinkType};

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f
    }

    const C: [u8; 4] = [10, 0, 0, 9];
    const S: [u8; 4] = [10, 0, 0, 1];

    fn feed(
        t: &mut FlowTable,
        secs: f64,
        frame: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Option<PacketFlow> {
        let d = decode(LinkType::Ethernet, frame);
        let pkt = FlowPacket {
            ts: Timestamp((secs * 1e6) as i64),
            wire_len: frame.len() as u32,
            vnet: VnetId(0),
            vlan_id: None,
            // As a worker does: the hash its lookahead gave (observe
            // checks it against its own in debug builds).
            hash: t.lookahead(VnetId(0), &d).map(|(_, h)| h),
        };
        t.observe(pkt, &d, out)
    }

    /// `inner` in VXLAN VNI `vni` between 192.0.2.1 and 192.0.2.2.
    fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        let total = u16::try_from(20 + 8 + 8 + inner.len()).unwrap_or(0);
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[
            192, 0, 2, 1, 192, 0, 2, 2, 0xc0, 0x01, 0x12, 0xb5, 0, 0, 0, 0,
        ]);
        f.extend_from_slice(&[0x08, 0, 0, 0]);
        f.extend_from_slice(&(vni << 8).to_be_bytes());
        f.extend_from_slice(inner);
        f
    }

    #[test]
    fn the_same_conversation_in_two_vnis_is_two_flows_with_their_tunnel() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        for vni in [1, 2] {
            feed(
                &mut t,
                0.0,
                &vxlan(vni, &tcp(C, 40000, S, 80, 0x02)),
                &mut out,
            );
            feed(
                &mut t,
                0.1,
                &vxlan(vni, &tcp(S, 80, C, 40000, 0x12)),
                &mut out,
            );
        }
        feed(&mut t, 0.2, &tcp(C, 40000, S, 80, 0x10), &mut out);
        t.flush(&mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        let mut ids: Vec<_> = out.iter().map(|r| r.tunnel.tunnel_id).collect();
        ids.sort();
        assert_eq!(ids, [None, Some(1), Some(2)]);
        for r in &out {
            let expected = if r.tunnel.tunnel_id.is_some() { 2 } else { 1 };
            assert_eq!(r.packets(), expected);
            assert_eq!(r.src_port, 40000);
            if r.tunnel.tunnel_id.is_some() {
                assert_eq!(r.tunnel.tunnel_type.as_deref(), Some("vxlan"));
                assert_eq!(
                    r.tunnel.outer_src_addr.map(|a| a.to_string()).as_deref(),
                    Some("192.0.2.1")
                );
            }
        }
    }

    /// Both directions of a conversation prefetch the same index entry,
    /// one of the index's; a later fragment has nothing to prefetch.
    #[test]
    fn lookahead_names_the_flows_index_entry() {
        let t = FlowTable::new(FlowConfig::default());
        let fwd = tcp(C, 40000, S, 80, 0x02);
        let rev = tcp(S, 80, C, 40000, 0x12);
        let at = |f: &[u8]| t.lookahead(VnetId(0), &decode(LinkType::Ethernet, f));
        let (p, h) = at(&fwd).expect("an IP packet");
        assert_eq!(at(&rev), Some((p, h)));
        assert_eq!(t.slot_ahead(h), None, "no flow yet");
        let range = t
            .index
            .home_entry(0)
            .map(|e| std::ptr::from_ref(e) as usize);
        let base = range.expect("entries");
        let offset = (p as usize).wrapping_sub(base);
        assert!(
            offset < t.index.bytes() && offset.is_multiple_of(8),
            "{offset}"
        );
        let mut later = fwd.clone();
        later[20] = 0x00;
        later[21] = 0x10; // fragment offset 16 x 8 bytes
        assert_eq!(at(&later), None);
        assert_eq!(
            t.lookahead(VnetId(0), &decode(LinkType::Ethernet, &[0u8; 14])),
            None
        );
    }

    #[test]
    fn tcp_session_is_one_flow_with_initiator_forward() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        feed(&mut t, 0.0, &tcp(C, 40000, S, 80, 0x02), &mut out);
        feed(&mut t, 0.1, &tcp(S, 80, C, 40000, 0x12), &mut out);
        feed(&mut t, 0.2, &tcp(C, 40000, S, 80, 0x10), &mut out);
        feed(&mut t, 0.3, &tcp(C, 40000, S, 80, 0x11), &mut out);
        feed(&mut t, 0.4, &tcp(S, 80, C, 40000, 0x11), &mut out);
        feed(&mut t, 0.5, &tcp(C, 40000, S, 80, 0x10), &mut out);
        assert!(out.is_empty(), "linger keeps the last ACK");
        feed(&mut t, 10.0, &tcp(C, 1, S, 2, 0x02), &mut out);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.end_reason, EndReason::TcpEnd);
        assert_eq!(r.src_port, 40000);
        assert_eq!((r.fwd.packets, r.rev.packets), (4, 2));
        assert_eq!(r.fwd.bytes, 4 * 54);
        assert_eq!(r.tcp_flags(), 0x13);
        assert_eq!(r.end_time(), Timestamp(500_000));
    }

    #[test]
    fn idle_and_active_timeouts_on_packet_time() {
        let cfg = FlowConfig {
            idle_timeout_secs: 10,
            active_timeout_secs: 30,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        let mut out = Vec::new();
        for i in 0..8 {
            feed(
                &mut t,
                f64::from(i) * 5.0,
                &tcp(C, 1000, S, 80, 0x10),
                &mut out,
            );
        }
        // 0..35 s every 5 s: the packet at 30 s closes the first record.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_reason, EndReason::Active);
        assert_eq!(out[0].fwd.packets, 6);
        feed(&mut t, 100.0, &tcp(C, 2000, S, 80, 0x10), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].end_reason, EndReason::Idle);
        assert_eq!(out[1].fwd.packets, 2);
        t.flush(&mut out);
        assert_eq!(out[2].end_reason, EndReason::EndOfInput);
        assert_eq!(t.stats().exported_total(), 3);
    }

    /// A record split by the active timeout continues its flow: the
    /// server's first packet after the split is to the client, and the
    /// handshake holds (a server packet was called `to_server` and
    /// `not_established` after 300 s, which silenced Suricata rules on
    /// long connections).
    #[test]
    fn the_record_after_an_active_timeout_keeps_direction_and_handshake() {
        let mut t = FlowTable::new(FlowConfig {
            active_timeout_secs: 30,
            idle_timeout_secs: 30,
            ..FlowConfig::default()
        });
        let mut out = Vec::new();
        let at = |t: &mut FlowTable, secs: f64, frame: &[u8], out: &mut Vec<FlowRecord>| {
            feed(t, secs, frame, out).expect("flow")
        };
        at(&mut t, 0.0, &tcp(C, 1000, S, 80, 0x02), &mut out);
        at(&mut t, 0.1, &tcp(S, 80, C, 1000, 0x12), &mut out);
        at(&mut t, 0.2, &tcp(C, 1000, S, 80, 0x10), &mut out);
        for i in 1..=5 {
            at(
                &mut t,
                f64::from(i) * 5.0,
                &tcp(C, 1000, S, 80, 0x18),
                &mut out,
            );
        }
        // The server's packet at 31 s splits the record.
        let after = at(&mut t, 31.0, &tcp(S, 80, C, 1000, 0x18), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_reason, EndReason::Active);
        assert!(!after.to_server && after.established, "{after:?}");
        // The client speaks again later: the record still starts at the
        // server's packet, and the next split comes 30 s after it (it came
        // 30 s after the client's packet, which moved the start).
        at(&mut t, 40.0, &tcp(C, 1000, S, 80, 0x18), &mut out);
        at(&mut t, 61.5, &tcp(C, 1000, S, 80, 0x18), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1].start_time(), Timestamp(31_000_000));
        assert_eq!(out[1].end_reason, EndReason::Active);
        assert_eq!((out[1].fwd.packets, out[1].rev.packets), (1, 1));
        let r = &out[1];
        assert_eq!(r.src_addr.to_string(), "10.0.0.9", "the client still");
    }

    /// Issue 15: the end reason does not depend on which other flows share
    /// the table. A flow idle by the table's newest time ends as `idle` at
    /// the end of the input even when the lazy queue had not reached it,
    /// and a closed TCP flow reached by the idle queue (time jumped past
    /// its linger and its idle timeout at once) ends as `tcp_end`.
    #[test]
    fn end_reasons_do_not_depend_on_the_other_flows() {
        let cfg = FlowConfig {
            idle_timeout_secs: 10,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg.clone());
        let mut out = Vec::new();
        feed(&mut t, 0.0, &tcp(C, 1000, S, 80, 0x10), &mut out);
        feed(&mut t, 5.0, &tcp(C, 1000, S, 80, 0x10), &mut out);
        feed(&mut t, 6.0, &tcp(C, 2000, S, 80, 0x10), &mut out);
        // The first flow's entry (queued at 0) is re-queued behind the
        // second's (queued at 6) ...
        t.advance(Timestamp::from_secs(10), &mut out);
        // ... so at 15.2 s, idle 10.2 s, it is not reached.
        t.advance(Timestamp(15_200_000), &mut out);
        assert!(out.is_empty());
        t.flush(&mut out);
        let mut reasons: Vec<(u16, EndReason)> =
            out.iter().map(|r| (r.src_port, r.end_reason)).collect();
        reasons.sort_by_key(|r| r.0);
        assert_eq!(
            reasons,
            vec![(1000, EndReason::Idle), (2000, EndReason::EndOfInput)]
        );

        let mut t = FlowTable::new(cfg);
        let mut out = Vec::new();
        feed(&mut t, 0.0, &tcp(C, 5, S, 80, 0x02), &mut out);
        feed(&mut t, 0.1, &tcp(S, 80, C, 5, 0x14), &mut out);
        t.advance(Timestamp::from_secs(100), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_reason, EndReason::TcpEnd);
    }

    #[test]
    fn cap_evicts_least_recently_seen_and_counts() {
        let cfg = FlowConfig {
            max_flows: 100,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        let mut out = Vec::new();
        for i in 0..10_000u32 {
            let src = [172, 16, (i >> 8) as u8, i as u8];
            feed(
                &mut t,
                f64::from(i) * 1e-4,
                &tcp(src, 1234, S, 80, 0x02),
                &mut out,
            );
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.stats().evicted(), 9_900);
        assert_eq!(out.len(), 9_900);
        assert!(out.iter().all(|r| r.end_reason == EndReason::Evicted));
        // Oldest first: the first evicted flow is the first one seen.
        assert_eq!(out[0].src_addr.to_string(), "172.16.0.0");
        t.flush(&mut out);
        let total: u64 = out.iter().map(|r| r.packets()).sum();
        assert_eq!(total, 10_000, "eviction loses no packet");
    }

    /// Issue 16: a table at its cap evicts without scanning. Every flow is
    /// seen again before the flood (so each is marked recently seen, the
    /// clock's worst case), then new flows arrive one per packet: each
    /// insert evicts one flow and inspects at most
    /// `CLOCK_SECOND_CHANCES + 1` slots, however large the table.
    #[test]
    fn eviction_at_the_cap_inspects_a_bounded_number_of_slots() {
        for cap in [1_000u32, 20_000] {
            let mut t = FlowTable::new(FlowConfig {
                max_flows: cap as usize,
                ..FlowConfig::default()
            });
            let mut out = Vec::new();
            let src = |i: u32| [172, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            for round in 0..2 {
                for i in 0..cap {
                    let ts = f64::from(round * cap + i) * 1e-5;
                    feed(&mut t, ts, &tcp(src(i), 1234, S, 80, 0x10), &mut out);
                }
            }
            assert_eq!(t.len(), cap as usize);
            assert!(out.is_empty());
            let mut worst = 0;
            let room = t.queue.capacity();
            for i in 0..3 * cap {
                let before = t.stats().eviction_slots_inspected;
                let ts = 1.0 + f64::from(i) * 1e-5;
                feed(&mut t, ts, &tcp(src(cap + i), 4321, S, 80, 0x02), &mut out);
                worst = worst.max(t.stats().eviction_slots_inspected - before);
                // Each eviction leaves a stale queue entry: they are
                // dropped before the queue outgrows its reserved room (a
                // reallocation would hold old and new queue at once).
                assert!(t.queue.len() <= queue_room(cap as usize));
            }
            assert_eq!(t.queue.capacity(), room, "cap {cap}: the queue grew");
            assert_eq!(t.len(), cap as usize);
            assert_eq!(t.stats().evicted(), u64::from(3 * cap));
            assert!(
                worst <= u64::from(CLOCK_SECOND_CHANCES) + 1,
                "cap {cap}: {worst} slots inspected by one insert"
            );
            // The flood's own one-packet flows go before the flows seen
            // twice once the clock has cleared their marks: the old flows
            // keep most of the table.
            let old = out.iter().filter(|r| r.src_port == 1234).count();
            let flood = out.len() - old;
            assert!(flood > old, "flood {flood} evicted, old {old}");
        }
    }

    /// `frame` with 802.1Q tags (outermost first) after its MAC addresses.
    fn tagged(frame: &[u8], vlans: &[u16]) -> Vec<u8> {
        let mut f = frame[..12].to_vec();
        for v in vlans {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&frame[12..]);
        f
    }

    /// One connection's packets untagged, on VLAN 42 and on QinQ 10/20
    /// (Zeek's `vlan-collisions.pcap`): three flows with VLAN tracking,
    /// whose ids differ; one without it (an asymmetric trunk).
    #[test]
    fn the_same_five_tuple_on_other_vlans_is_another_flow() {
        for (tracking, flows) in [(true, 3), (false, 1)] {
            let mut t = FlowTable::new(FlowConfig {
                vlan_tracking: tracking,
                ..FlowConfig::default()
            });
            let mut out = Vec::new();
            for (i, stack) in [&[][..], &[42], &[10, 20]].into_iter().enumerate() {
                let at = 1.0 + i as f64 * 0.05;
                feed(
                    &mut t,
                    at,
                    &tagged(&tcp(C, 40000, S, 80, 0x02), stack),
                    &mut out,
                );
                feed(
                    &mut t,
                    at + 0.01,
                    &tagged(&tcp(S, 80, C, 40000, 0x12), stack),
                    &mut out,
                );
            }
            t.flush(&mut out);
            assert_eq!(out.len(), flows, "tracking {tracking}: {out:?}");
            assert!(out.iter().all(|r| r.fwd.packets * flows as u64 == 3));
            let ids: std::collections::HashSet<_> = out.iter().map(|r| r.flow_id).collect();
            assert_eq!(ids.len(), flows);
        }
        // Every stack of one or two tags has its own discriminator, and
        // none is a tunnel's (whose top bit is clear) or 0.
        let stacks: Vec<Vec<u16>> = vec![
            vec![0, 100],
            vec![42],
            vec![10, 20],
            vec![10, 21],
            vec![10],
            vec![20, 10],
            vec![10, 20, 30],
            vec![4095, 4095],
        ];
        let segs: std::collections::HashSet<u32> = stacks
            .iter()
            .map(|s| crate::decode::vlan::segment(s))
            .collect();
        assert_eq!(segs.len(), stacks.len());
        assert!(segs.iter().all(|s| s >> 31 == 1));
        // A priority tag (VLAN id 0, as IP phones send) is no VLAN: the
        // same flow as untagged, as Suricata keys it; a trailing 0 adds
        // nothing either.
        assert_eq!(crate::decode::vlan::segment(&[0]), 0);
        assert_eq!(
            crate::decode::vlan::segment(&[10, 0]),
            crate::decode::vlan::segment(&[10])
        );
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        feed(
            &mut t,
            1.0,
            &tagged(&tcp(C, 40000, S, 80, 0x02), &[0]),
            &mut out,
        );
        feed(&mut t, 1.1, &tcp(S, 80, C, 40000, 0x12), &mut out);
        t.flush(&mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        // A reload keeps the running choice (it would split every live
        // VLAN flow): a restart applies it.
        t.reconfigure(FlowConfig {
            vlan_tracking: false,
            ..FlowConfig::default()
        });
        assert!(t.config().vlan_tracking);
    }

    /// A flow's packets, bytes, flags, times, VLAN and fragment count
    /// survive the compact slot layout exactly.
    #[test]
    fn records_carry_every_field() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        let mut feed_vlan = |secs: f64, frame: &[u8], vlan: Option<u16>| {
            let d = decode(LinkType::Ethernet, frame);
            let pkt = FlowPacket {
                ts: Timestamp((secs * 1e6) as i64),
                wire_len: frame.len() as u32 + 100,
                vnet: VnetId(3),
                vlan_id: vlan,
                hash: None,
            };
            t.observe(pkt, &d, &mut out)
        };
        let f1 = feed_vlan(1.0, &tcp(C, 40000, S, 80, 0x02), Some(42)).expect("flow");
        let f2 = feed_vlan(1.5, &tcp(S, 80, C, 40000, 0x12), None).expect("flow");
        assert_eq!(f1.id, f2.id);
        assert!(f1.to_server && !f2.to_server);
        assert_eq!(f2.counters.pkts_toclient, 1);
        assert_eq!(f2.counters.start, Timestamp(1_000_000));
        let f3 = feed_vlan(2.0, &tcp(C, 40000, S, 80, 0x10), None).expect("flow");
        assert!(!f3.established, "the handshake's own ACK");
        let f4 = feed_vlan(2.1, &tcp(C, 40000, S, 80, 0x10), None).expect("flow");
        assert!(f4.established);
        t.flush(&mut out);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.flow_id, f1.id);
        assert_eq!(r.vnet, VnetId(3));
        assert_eq!(r.vlan_id, Some(42));
        assert_eq!(r.src_addr.to_string(), "10.0.0.9");
        assert_eq!(r.dst_addr.to_string(), "10.0.0.1");
        assert_eq!((r.src_port, r.dst_port, r.protocol), (40000, 80, 6));
        assert_eq!((r.fwd.packets, r.fwd.bytes), (3, 3 * 154));
        assert_eq!((r.rev.packets, r.rev.bytes), (1, 154));
        assert_eq!((r.fwd.tcp_flags, r.rev.tcp_flags), (0x12, 0x12));
        assert_eq!(r.start_time(), Timestamp(1_000_000));
        assert_eq!(r.end_time(), Timestamp(2_100_000));
        assert_eq!(r.rev.first, Timestamp(1_500_000));
        assert_eq!(r.fragments, 0);
        assert_eq!(r.end_reason, EndReason::EndOfInput);
    }

    #[test]
    fn flush_in_parts_gives_the_same_records() {
        let run = |part: usize| {
            let mut t = FlowTable::new(FlowConfig::default());
            let mut out = Vec::new();
            for i in 0..1000u32 {
                let src = [172, 16, (i >> 8) as u8, i as u8];
                feed(
                    &mut t,
                    f64::from(i) * 1e-3,
                    &tcp(src, 1, S, 80, 0x02),
                    &mut out,
                );
            }
            let mut parts = 0;
            while !t.flush_some(&mut out, part) {
                parts += 1;
            }
            assert!(t.is_empty());
            (out, parts)
        };
        let (whole, _) = run(usize::MAX);
        let (parted, parts) = run(64);
        assert_eq!(whole.len(), 1000);
        assert_eq!(parted, whole);
        assert!(parts >= 15, "{parts}");
    }

    /// The final flush gives up the index and the free list; a packet that
    /// still comes (mid-drain, or after) finds its flow as before: the
    /// rest of a drained flow's packets make no duplicate, and a new table
    /// starts after the drain.
    #[test]
    fn packets_during_and_after_a_flush_in_parts_find_their_flows() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        let src = |i: u32| [172, 16, (i >> 8) as u8, i as u8];
        for i in 0..100u32 {
            feed(&mut t, 0.0, &tcp(src(i), 1, S, 80, 0x02), &mut out);
        }
        assert!(!t.flush_some(&mut out, 10));
        assert_eq!((out.len(), t.len()), (10, 90));
        // Flow 50 is still in the table: its second packet joins it.
        feed(&mut t, 0.5, &tcp(src(50), 1, S, 80, 0x10), &mut out);
        assert_eq!(t.len(), 90);
        t.flush(&mut out);
        assert_eq!(out.len(), 100);
        let f50 = out
            .iter()
            .filter(|r| r.src_port == 1 && r.src_addr.to_string() == "172.16.0.50");
        assert_eq!(f50.map(|r| r.packets()).collect::<Vec<_>>(), vec![2]);
        assert!(t.is_empty());
        // After the flush: a fresh table.
        out.clear();
        feed(&mut t, 1.0, &tcp(src(7), 2, S, 80, 0x02), &mut out);
        feed(&mut t, 1.1, &tcp(S, 80, src(7), 2, 0x12), &mut out);
        assert_eq!(t.len(), 1);
        t.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].packets(), 2);
    }

    #[test]
    fn syn_reusing_closed_ports_opens_a_new_flow() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        feed(&mut t, 0.0, &tcp(C, 5, S, 80, 0x02), &mut out);
        feed(&mut t, 0.1, &tcp(S, 80, C, 5, 0x14), &mut out);
        feed(&mut t, 0.2, &tcp(C, 5, S, 80, 0x02), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_reason, EndReason::TcpEnd);
        assert_eq!(out[0].packets(), 2);
    }

    #[test]
    fn idle_gap_splits_a_flow_even_when_its_queue_entry_was_requeued() {
        let cfg = FlowConfig {
            idle_timeout_secs: 60,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        let mut out = Vec::new();
        // Flow X at 0 s and 50 s; flow Y at 10..14 s; at 61 s X is
        // re-queued behind Y's entry; Y's next packet comes at 100 s.
        feed(&mut t, 0.0, &tcp(C, 1, S, 2, 0x10), &mut out);
        feed(&mut t, 10.0, &tcp(C, 3, S, 4, 0x10), &mut out);
        feed(&mut t, 14.0, &tcp(C, 3, S, 4, 0x10), &mut out);
        feed(&mut t, 50.0, &tcp(C, 1, S, 2, 0x10), &mut out);
        feed(&mut t, 61.0, &tcp(C, 5, S, 6, 0x10), &mut out);
        feed(&mut t, 100.0, &tcp(C, 3, S, 4, 0x10), &mut out);
        let y: Vec<_> = out.iter().filter(|r| r.src_port == 3).collect();
        assert_eq!(y.len(), 1);
        assert_eq!(y[0].end_reason, EndReason::Idle);
        assert_eq!(y[0].fwd.packets, 2);
    }
}

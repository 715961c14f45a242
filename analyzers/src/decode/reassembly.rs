//! Reassembly of fragmented *outer* IP packets of tunnels.
//!
//! A tunnel over a path with a small MTU (GTP-U in a mobile core, GRE or
//! ERSPAN across a WAN) fragments the outer IP packet: only the first
//! fragment carries the tunnel header, the others carry the rest of the
//! inner packet. [`decode`](super::decode) is a pure per-frame function, so
//! it decapsulates the first fragment as far as it goes and leaves the
//! others between the tunnel endpoints. [`Reassembler`] is the state that
//! puts such datagrams back together; whoever drives decoding (the node's
//! engine) owns one and calls [`Reassembler::decode`] instead of
//! [`decode_with`](super::decode_with).
//!
//! What it takes: only fragments whose datagram must be whole to be
//! decapsulated, i.e. GRE and IP-in-IP (protocols 47, 4, 41), and UDP whose
//! first fragment goes to a tunnel port of [`DecodeConfig`]. Every other
//! frame, including fragments of untunnelled traffic (inner fragments),
//! takes the per-frame path unchanged, and an unfragmented frame costs one
//! check of [`Fragment`]. A UDP fragment that arrives before its first
//! fragment cannot be recognised as a tunnel's and also takes the per-frame
//! path.
//!
//! [`Reassembler::for_signatures`] makes a second kind of table, which
//! takes every fragment: the signature engine matches whole datagrams, as
//! Suricata does. It rebuilds each datagram the way Suricata's defrag does
//! (the first fragment's link and IP headers, with the length, fragment
//! field and checksum fixed; for IPv6 without the fragment header) and
//! decodes it from the link layer.
//!
//! Invariants:
//! - Memory: the bytes held (fragment data plus a fixed charge per
//!   datagram and per received range) never exceed
//!   [`DecodeConfig::max_reassembly_bytes`]; the oldest datagrams are
//!   evicted to make room (counted in [`ReassemblyStats::evictions`]).
//! - Time is packet time: a datagram not complete
//!   [`DecodeConfig::reassembly_timeout_secs`] after its first fragment is
//!   dropped when a later packet (or [`Reassembler::advance`]) passes that
//!   point (counted in [`ReassemblyStats::timeouts`]).
//! - Overlaps are resolved first-wins: bytes already received are never
//!   overwritten (a fragment that brought overlapping bytes is counted in
//!   [`ReassemblyStats::overlaps`]).
//! - Any byte sequence, no panic. Fragments of a datagram that never
//!   completes are held, then dropped and counted; they reach no flow.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::tunnel::{self, DecodeConfig};
use super::{be16, decode_link, from_ether_type, Decoded, Fragment, LinkType};
use crate::time::Timestamp;

/// The largest datagram an IPv4 or IPv6 (non-jumbo) header can describe.
const MAX_DATAGRAM: usize = 65_535;
/// What a datagram costs besides its data (its table entry and headers).
const ENTRY_COST: usize = 128;
/// What one received range of a datagram costs.
const RANGE_COST: usize = 16;

const GRE: u8 = 47;
const IPV4_IN_IP: u8 = 4;
const IPV6_IN_IP: u8 = 41;
const UDP: u8 = 17;

/// Counters of the reassembly table (replay summary, metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Fragments taken into the table.
    pub fragments: u64,
    /// Datagrams completed and decoded whole.
    pub datagrams: u64,
    /// Datagrams dropped incomplete because their time ran out.
    pub timeouts: u64,
    /// Datagrams dropped incomplete to stay within
    /// `decode.max_reassembly_bytes` (and fragments larger than it).
    pub evictions: u64,
    /// Fragments that overlapped bytes already received (first wins).
    pub overlaps: u64,
    /// Fragments refused as impossible (beyond 65,535 bytes, or
    /// contradicting the datagram's known end).
    pub invalid: u64,
}

impl ReassemblyStats {
    pub fn merge(&mut self, o: &ReassemblyStats) {
        self.fragments += o.fragments;
        self.datagrams += o.datagrams;
        self.timeouts += o.timeouts;
        self.evictions += o.evictions;
        self.overlaps += o.overlaps;
        self.invalid += o.invalid;
    }
}

/// What [`Reassembler::decode`] made of a frame.
#[derive(Debug)]
pub enum Reassembled<'a> {
    /// Not a tunnel fragment: the frame decoded on its own, exactly as
    /// [`decode_with`](super::decode_with) decodes it.
    Packet(Decoded<'a>),
    /// A tunnel fragment held until its datagram is complete.
    Held,
    /// The fragment completed its datagram: the datagram decoded (and
    /// decapsulated) whole, with the wire bytes and the number of all its
    /// fragments.
    Datagram {
        decoded: Decoded<'a>,
        wire_len: u64,
        fragments: u32,
        /// What was decoded: the IP datagram (tunnel table), or the whole
        /// rebuilt frame, link header included ([`Reassembler::for_signatures`]).
        frame: &'a [u8],
    },
}

/// The frames of a datagram that never completed (its time ran out, it was
/// evicted, or the input ended): counted in the VNet's volume all the
/// same, since they crossed the wire ([`Reassembler::take_dropped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// What the caller tagged the datagram's first frame with
    /// ([`Reassembler::set_tag`]: the capture source's VNet).
    pub tag: u16,
    /// The outer VLAN stack of its first frame.
    pub vlan_ids: [u16; 3],
    pub vlan_count: u8,
    /// The IP protocol the fragments carry (GRE, UDP, IP-in-IP).
    pub protocol: u8,
    /// Its frames and their wire bytes.
    pub fragments: u32,
    pub wire_len: u64,
}

/// A datagram's identity: RFC 791 (source, destination, protocol, id) and
/// RFC 8200 (source, destination, id), with the outer VLAN so that two
/// VNets' copies of a datagram stay apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
    vlan: u16,
}

/// One fragment as read from its IP packet.
#[derive(Debug, PartialEq, Eq)]
struct Piece<'a> {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    /// IPv4 protocol, or the next header of the IPv6 fragment header.
    protocol: u8,
    /// Byte offset of `data` in the datagram.
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// Bytes of the IP packet before `data`: the IPv4 header, or the IPv6
    /// header and extension headers up to the fragment header.
    head_len: usize,
    /// IPv6: where in the packet the next-header byte that names the
    /// fragment header is.
    next_at: usize,
}

struct Datagram {
    /// Bytes received so far, at their offsets (gaps are zero).
    data: Vec<u8>,
    /// Received ranges, sorted, disjoint and not adjacent.
    ranges: Vec<(usize, usize)>,
    /// The datagram's length, once its last fragment arrived.
    end: Option<usize>,
    /// The outer VLAN stack of the first frame seen.
    vlan_ids: [u16; 3],
    vlan_count: u8,
    /// The caller's tag of the first frame seen ([`Reassembler::set_tag`]).
    tag: u16,
    protocol: u8,
    wire_len: u64,
    fragments: u32,
    /// Generation, to tell this datagram from an older one of the same
    /// key in the expiry queue.
    generation: u64,
    /// Signature table: the first fragment's frame up to its data (link
    /// and IP headers), and where its IP header starts and the IPv6
    /// next-header byte to fix is (empty until the first fragment came).
    head: Vec<u8>,
    ip_at: usize,
    next_at: usize,
}

impl Datagram {
    fn dropped(&self) -> Dropped {
        Dropped {
            tag: self.tag,
            vlan_ids: self.vlan_ids,
            vlan_count: self.vlan_count,
            protocol: self.protocol,
            fragments: self.fragments,
            wire_len: self.wire_len,
        }
    }

    fn cost(&self) -> usize {
        ENTRY_COST + self.data.len() + self.head.len() + RANGE_COST * self.ranges.len()
    }

    /// Copies the bytes of `[start, end)` not yet received; `true` if any
    /// were already there (an overlap, first wins).
    fn insert(&mut self, start: usize, bytes: &[u8]) -> bool {
        let end = start + bytes.len();
        if bytes.is_empty() {
            return false;
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        let mut overlap = false;
        let mut at = start;
        let mut merged = Vec::with_capacity(self.ranges.len() + 1);
        let (mut new_start, mut new_end) = (start, end);
        for &(s, e) in &self.ranges {
            if e < start || s > end {
                merged.push((s, e));
                continue;
            }
            // Touches or overlaps [start, end): copy the gap before it.
            if s > at {
                self.data[at..s.min(end)].copy_from_slice(&bytes[at - start..s.min(end) - start]);
            }
            if s < end && e > start {
                overlap = true;
            }
            at = at.max(e);
            new_start = new_start.min(s);
            new_end = new_end.max(e);
        }
        if at < end {
            self.data[at..end].copy_from_slice(&bytes[at - start..]);
        }
        merged.push((new_start, new_end));
        merged.sort_unstable();
        self.ranges = merged;
        overlap
    }

    fn is_complete(&self) -> bool {
        matches!((self.end, self.ranges.first()), (Some(end), Some(&(0, e))) if e >= end)
    }
}

/// The table of datagrams being reassembled. See the module doc.
pub struct Reassembler {
    max_bytes: usize,
    timeout_micros: i64,
    table: HashMap<Key, Datagram>,
    /// Datagrams in order of their first fragment, for timeouts and
    /// evictions (entries of datagrams already gone are skipped).
    order: VecDeque<(Timestamp, Key, u64)>,
    generation: u64,
    held_bytes: usize,
    stats: ReassemblyStats,
    /// The last datagram put together (header and data), which a
    /// [`Reassembled::Datagram`] borrows.
    buf: Vec<u8>,
    /// Takes every fragment and rebuilds whole frames
    /// ([`Reassembler::for_signatures`]).
    all: bool,
    /// The tag new datagrams get.
    tag: u16,
    /// Datagrams given up since the last [`Reassembler::take_dropped`]
    /// (the tunnel table only: the signature table's frames were counted
    /// as they came).
    dropped: Vec<Dropped>,
}

impl Reassembler {
    pub fn new(config: &DecodeConfig) -> Self {
        Reassembler {
            max_bytes: config.max_reassembly_bytes,
            timeout_micros: i64::from(config.reassembly_timeout_secs)
                .saturating_mul(Timestamp::MICROS_PER_SEC),
            table: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            held_bytes: 0,
            stats: ReassemblyStats::default(),
            buf: Vec::new(),
            all: false,
            tag: 0,
            dropped: Vec::new(),
        }
    }

    /// The tag of the datagrams the next frames start (the caller's
    /// capture-source VNet), which [`Dropped`] gives back.
    pub fn set_tag(&mut self, tag: u16) {
        self.tag = tag;
    }

    /// The datagrams given up since the last call (drain it after every
    /// [`Reassembler::decode`] and [`Reassembler::advance`]; at the end of
    /// the input, after [`Reassembler::give_up_all`]).
    pub fn take_dropped(&mut self) -> Vec<Dropped> {
        std::mem::take(&mut self.dropped)
    }

    /// The end of the input: every datagram still incomplete is reported
    /// in [`Reassembler::take_dropped`] (and stays counted in
    /// [`Reassembler::pending`]). Call once.
    pub fn give_up_all(&mut self) {
        if !self.all {
            let mut all: Vec<(u64, Dropped)> = self
                .table
                .values()
                .map(|d| (d.generation, d.dropped()))
                .collect();
            all.sort_unstable_by_key(|(g, _)| *g);
            self.dropped.extend(all.into_iter().map(|(_, d)| d));
        }
    }

    /// A table that takes the fragments of every datagram, not only of
    /// tunnels, and rebuilds each datagram as a frame the way Suricata's
    /// defrag does, for the signature engine (same caps and timeout).
    pub fn for_signatures(config: &DecodeConfig) -> Self {
        Reassembler {
            all: true,
            ..Reassembler::new(config)
        }
    }

    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// Bytes held now (never above `decode.max_reassembly_bytes`).
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Datagrams waiting for fragments.
    pub fn pending(&self) -> usize {
        self.table.len()
    }

    /// Decodes one frame like [`decode_with`](super::decode_with), except
    /// that fragments of a tunnel are held until their datagram is whole.
    pub fn decode<'a>(
        &'a mut self,
        link: LinkType,
        ts: Timestamp,
        frame: &'a [u8],
        wire_len: u32,
        config: &DecodeConfig,
    ) -> Reassembled<'a> {
        let mut outer = decode_link(link, frame);
        let fragmented = outer
            .ip
            .is_some_and(|ip| !matches!(ip.fragment, Fragment::None));
        // A first fragment may cut its transport header short: only the
        // signature table, which reads the fragment from its IP header,
        // takes it anyway.
        let broken = outer
            .error
            .is_some_and(|e| !self.all || e.layer() != "transport");
        if !fragmented || broken || self.max_bytes == 0 {
            {
                tunnel::decapsulate(&mut outer, config);
                return Reassembled::Packet(outer);
            }
        }
        self.advance(ts);
        let Some(piece) = read_piece(outer.net_payload) else {
            {
                tunnel::decapsulate(&mut outer, config);
                return Reassembled::Packet(outer);
            }
        };
        let key = Key {
            src: piece.src,
            dst: piece.dst,
            id: piece.id,
            protocol: piece.protocol,
            vlan: outer.outer_vlan().unwrap_or(0),
        };
        if !self.all && !self.table.contains_key(&key) && !is_tunnel(&piece, config) {
            {
                tunnel::decapsulate(&mut outer, config);
                return Reassembled::Packet(outer);
            }
        }
        // Where the IP packet starts in the frame (the decoder's slices
        // point into `frame`).
        let ip_at = (outer.net_payload.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
        let head = (self.all && piece.offset == 0)
            .then(|| frame.get(..ip_at.checked_add(piece.head_len)?))
            .flatten()
            .map(|h| (h, ip_at));
        match self.add(key, ts, &piece, &outer, wire_len, head) {
            Some(d) if self.all => {
                let (wire_len, fragments) = (d.wire_len, d.fragments);
                if !self.build_frame(&key, &d) {
                    self.stats.invalid += 1;
                    return Reassembled::Held;
                }
                let this: &'a Self = self;
                Reassembled::Datagram {
                    decoded: super::decode_with(link, &this.buf, config),
                    wire_len,
                    fragments,
                    frame: &this.buf,
                }
            }
            Some(d) => {
                let vlans = (d.vlan_ids, d.vlan_count);
                let (wire_len, fragments) = (d.wire_len, d.fragments);
                self.build(&key, &d);
                let ether_type = if key.src.is_ipv4() { 0x0800 } else { 0x86dd };
                let this: &'a Self = self;
                let mut inner = from_ether_type(ether_type, &this.buf);
                (inner.vlan_ids, inner.vlan_count) = vlans;
                Reassembled::Datagram {
                    decoded: {
                        tunnel::decapsulate(&mut inner, config);
                        inner
                    },
                    wire_len,
                    fragments,
                    frame: &this.buf,
                }
            }
            None => Reassembled::Held,
        }
    }

    /// Drops the datagrams whose time ran out at `now` (packet time).
    pub fn advance(&mut self, now: Timestamp) {
        while let Some(&(first, key, generation)) = self.order.front() {
            if now.micros_since(first) <= self.timeout_micros {
                break;
            }
            self.order.pop_front();
            if self.remove(&key, generation) {
                self.stats.timeouts += 1;
            }
        }
    }

    /// Removes the datagram of `key` if it is still generation
    /// `generation`; whether it was.
    fn remove(&mut self, key: &Key, generation: u64) -> bool {
        match self.table.get(key) {
            Some(d) if d.generation == generation => {
                self.held_bytes -= d.cost();
                if !self.all && d.fragments > 0 {
                    self.dropped.push(d.dropped());
                }
                self.table.remove(key);
                true
            }
            _ => false,
        }
    }

    /// A fragment that joins no datagram (invalid, or too large to hold):
    /// its frame is reported as given up.
    fn lost_frame(&mut self, outer: &Decoded<'_>, wire_len: u32) {
        if !self.all {
            self.dropped.push(Dropped {
                tag: self.tag,
                vlan_ids: outer.vlan_ids,
                vlan_count: outer.vlan_count,
                protocol: outer.ip.map_or(0, |ip| ip.protocol),
                fragments: 1,
                wire_len: u64::from(wire_len),
            });
        }
    }

    /// Adds a fragment; the datagram, taken out of the table, when it is
    /// complete.
    fn add(
        &mut self,
        key: Key,
        ts: Timestamp,
        piece: &Piece<'_>,
        outer: &Decoded<'_>,
        wire_len: u32,
        head: Option<(&[u8], usize)>,
    ) -> Option<Datagram> {
        let end = piece.offset + piece.data.len();
        if end > MAX_DATAGRAM - 60 {
            self.stats.invalid += 1;
            self.lost_frame(outer, wire_len);
            return None;
        }
        if let Some(known) = self.table.get(&key).and_then(|d| d.end) {
            if end > known || (!piece.more && end != known) {
                self.stats.invalid += 1;
                self.lost_frame(outer, wire_len);
                return None;
            }
        }
        // Room first: what this fragment may add, at most.
        let old_cost = self.table.get(&key).map_or(0, Datagram::cost);
        let grow = self
            .table
            .get(&key)
            .map_or(ENTRY_COST + end, |d| end.saturating_sub(d.data.len()))
            + RANGE_COST
            + head.map_or(0, |(h, _)| h.len());
        if grow + old_cost > self.max_bytes {
            self.stats.evictions += 1;
            if let Some(d) = self.table.get(&key) {
                let generation = d.generation;
                self.remove(&key, generation);
            }
            self.lost_frame(outer, wire_len);
            return None;
        }
        while self.held_bytes + grow > self.max_bytes {
            // The oldest other datagram (stale queue entries go too).
            let Some(pos) = self.order.iter().position(|(_, k, _)| *k != key) else {
                break;
            };
            if let Some((_, k, g)) = self.order.remove(pos) {
                if self.remove(&k, g) {
                    self.stats.evictions += 1;
                }
            }
        }
        self.stats.fragments += 1;
        if !self.table.contains_key(&key) {
            let generation = self.generation;
            self.generation += 1;
            self.order.push_back((ts, key, generation));
            let d = Datagram {
                data: Vec::new(),
                ranges: Vec::new(),
                end: None,
                vlan_ids: outer.vlan_ids,
                vlan_count: outer.vlan_count,
                tag: self.tag,
                protocol: key.protocol,
                wire_len: 0,
                fragments: 0,
                generation,
                head: Vec::new(),
                ip_at: 0,
                next_at: 0,
            };
            self.held_bytes += d.cost();
            self.table.insert(key, d);
        }
        let d = self.table.get_mut(&key)?;
        let before = d.cost();
        if d.insert(piece.offset, piece.data) {
            self.stats.overlaps += 1;
        }
        if !piece.more && d.end.is_none() {
            d.end = Some(end);
        }
        if let (Some((h, ip_at)), true) = (head, d.head.is_empty()) {
            // The first offset-0 fragment's headers (first wins, as its data).
            d.head.extend_from_slice(h);
            d.ip_at = ip_at;
            d.next_at = ip_at + piece.next_at;
        }
        d.wire_len += u64::from(wire_len);
        d.fragments += 1;
        self.held_bytes = self.held_bytes - before + d.cost();
        if !d.is_complete() {
            return None;
        }
        let d = self.table.remove(&key)?;
        self.held_bytes -= d.cost();
        self.stats.datagrams += 1;
        Some(d)
    }

    /// Writes the whole datagram, behind a fresh unfragmented IP header,
    /// into `self.buf`.
    fn build(&mut self, key: &Key, d: &Datagram) {
        let len = d.end.unwrap_or(0).min(d.data.len());
        let data = &d.data[..len];
        self.buf.clear();
        match (key.src, key.dst) {
            (IpAddr::V4(s), IpAddr::V4(t)) => {
                let total = (20 + len).min(MAX_DATAGRAM) as u16;
                self.buf.extend_from_slice(&[0x45, 0]);
                self.buf.extend_from_slice(&total.to_be_bytes());
                self.buf.extend_from_slice(&(key.id as u16).to_be_bytes());
                self.buf.extend_from_slice(&[0, 0, 64, key.protocol, 0, 0]);
                self.buf.extend_from_slice(&s.octets());
                self.buf.extend_from_slice(&t.octets());
            }
            (s, t) => {
                let to6 = |a: IpAddr| match a {
                    IpAddr::V6(a) => a.octets(),
                    IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                };
                self.buf.extend_from_slice(&[0x60, 0, 0, 0]);
                self.buf
                    .extend_from_slice(&(len.min(MAX_DATAGRAM) as u16).to_be_bytes());
                self.buf.extend_from_slice(&[key.protocol, 64]);
                self.buf.extend_from_slice(&to6(s));
                self.buf.extend_from_slice(&to6(t));
            }
        }
        self.buf.extend_from_slice(data);
    }
}

impl Reassembler {
    /// Writes the datagram as a frame into `self.buf`, as Suricata's defrag
    /// rebuilds it: the first fragment's link and IP headers with the
    /// total length, the fragment field and the header checksum fixed
    /// (IPv4), or without the fragment header and with the payload length
    /// and next header fixed (IPv6); then the data. `false` if the first
    /// fragment's headers were not kept.
    fn build_frame(&mut self, key: &Key, d: &Datagram) -> bool {
        let len = d.end.unwrap_or(0).min(d.data.len());
        let (head, ip) = (&d.head, d.ip_at);
        if head.len() <= ip {
            return false;
        }
        self.buf.clear();
        self.buf.extend_from_slice(head);
        let ip_len = head.len() - ip;
        let b = &mut self.buf;
        if key.src.is_ipv4() {
            let Ok(total) = u16::try_from(ip_len + len) else {
                return false;
            };
            if ip_len < 20 {
                return false;
            }
            b[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
            b[ip + 6..ip + 8].copy_from_slice(&[0, 0]);
            b[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
            let sum = checksum(&b[ip..ip + ip_len]);
            b[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
        } else {
            let Ok(payload) = u16::try_from(ip_len - 40 + len) else {
                return false;
            };
            if ip_len < 40 || d.next_at >= b.len() {
                return false;
            }
            b[ip + 4..ip + 6].copy_from_slice(&payload.to_be_bytes());
            b[d.next_at] = key.protocol;
        }
        self.buf.extend_from_slice(&d.data[..len]);
        true
    }
}

/// The Internet checksum (RFC 1071) of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether the datagram of `piece` must be whole to be decapsulated: GRE
/// or IP-in-IP, or a first UDP fragment to a tunnel port.
fn is_tunnel(piece: &Piece<'_>, config: &DecodeConfig) -> bool {
    match piece.protocol {
        GRE | IPV4_IN_IP | IPV6_IN_IP => true,
        UDP if piece.offset == 0 => {
            let Some(dst) = piece.data.get(2..4) else {
                return false;
            };
            let dst = be16(dst);
            config.vxlan_ports.contains(&dst)
                || dst == config.vxlan_gpe_port
                || dst == config.geneve_port
                || dst == config.gtpu_port
        }
        _ => false,
    }
}

/// Reads a fragment from its IP packet (header first); `None` when it is
/// not a complete fragment (cut by the snaplen, malformed).
fn read_piece(ip: &[u8]) -> Option<Piece<'_>> {
    match ip.first()? >> 4 {
        4 => {
            let h = ip.get(..20)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(be16(&h[2..4]));
            if ihl < 20 || total < ihl {
                return None;
            }
            // Cut by the snaplen: the bytes are not all there.
            let data = ip.get(ihl..total)?;
            let flags_offset = be16(&h[6..8]);
            let src: [u8; 4] = h[12..16].try_into().ok()?;
            let dst: [u8; 4] = h[16..20].try_into().ok()?;
            Some(Piece {
                src: IpAddr::from(src),
                dst: IpAddr::from(dst),
                id: u32::from(be16(&h[4..6])),
                protocol: h[9],
                offset: usize::from(flags_offset & 0x1fff) * 8,
                more: flags_offset & 0x2000 != 0,
                data,
                head_len: ihl,
                next_at: 0,
            })
        }
        6 => {
            let h = ip.get(..40)?;
            let end = 40 + usize::from(be16(&h[4..6]));
            let packet = ip.get(..end)?;
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            let dst: [u8; 16] = h[24..40].try_into().ok()?;
            // The unfragmentable part: hop-by-hop, routing, destination
            // options before the fragment header.
            let mut next = h[6];
            let mut at = 40;
            let mut next_at = 6;
            loop {
                match next {
                    0 | 43 | 60 => {
                        let len = (usize::from(*packet.get(at + 1)?) + 1) * 8;
                        next = *packet.get(at)?;
                        next_at = at;
                        at += len;
                    }
                    44 => {
                        let f = packet.get(at..at + 8)?;
                        let offset_flags = be16(&f[2..4]);
                        return Some(Piece {
                            src: IpAddr::from(src),
                            dst: IpAddr::from(dst),
                            id: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
                            protocol: f[0],
                            offset: usize::from(offset_flags >> 3) * 8,
                            more: offset_flags & 1 == 1,
                            data: packet.get(at + 8..)?,
                            head_len: at,
                            next_at,
                        });
                    }
                    _ => return None,
                }
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode_with, Transport, TunnelKind};
    use proptest::prelude::*;

    const MAC: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

    /// An Ethernet frame of an IPv4 UDP packet 10.0.0.1:1000 →
    /// 10.0.0.2:2000 with `payload` bytes of payload.
    fn inner_frame(payload: usize) -> Vec<u8> {
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 8 + payload) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&1000u16.to_be_bytes());
        f.extend_from_slice(&2000u16.to_be_bytes());
        f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend((0..payload).map(|i| i as u8));
        f
    }

    /// The IP payload of a VXLAN packet (UDP to 4789, VNI 5000) carrying
    /// `inner`.
    fn vxlan(inner: &[u8]) -> Vec<u8> {
        let mut p = 5555u16.to_be_bytes().to_vec();
        p.extend_from_slice(&4789u16.to_be_bytes());
        p.extend_from_slice(&((8 + 8 + inner.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0x00, 0x13, 0x88, 0]);
        p.extend_from_slice(inner);
        p
    }

    /// The IP payload of a GRE packet (transparent Ethernet) carrying
    /// `inner`.
    fn gre(inner: &[u8]) -> Vec<u8> {
        let mut p = vec![0, 0, 0x65, 0x58];
        p.extend_from_slice(inner);
        p
    }

    /// An Ethernet frame holding bytes `[offset, offset + len)` of
    /// `datagram` as an IPv4 fragment 192.0.2.1 → 192.0.2.2.
    fn frag4(datagram: &[u8], protocol: u8, id: u16, offset: usize, len: usize) -> Vec<u8> {
        let end = (offset + len).min(datagram.len());
        let more = end < datagram.len();
        let data = &datagram[offset..end];
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        let flags = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        f.extend_from_slice(&flags.to_be_bytes());
        f.extend_from_slice(&[64, protocol, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(data);
        f
    }

    /// The same as an IPv6 fragment 2001:db8::1 → 2001:db8::2.
    fn frag6(datagram: &[u8], protocol: u8, id: u32, offset: usize, len: usize) -> Vec<u8> {
        let end = (offset + len).min(datagram.len());
        let more = end < datagram.len();
        let data = &datagram[offset..end];
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[44, 64]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let flags = offset as u16 | u16::from(more);
        f.extend_from_slice(&[protocol, 0]);
        f.extend_from_slice(&flags.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    /// What the reassembler made of a frame, in owned form.
    #[derive(Debug, PartialEq)]
    enum Got {
        Packet,
        Held,
        /// (inner ports, tunnel kind and id, wire bytes, fragments)
        Datagram(
            Option<(u16, u16)>,
            Option<(TunnelKind, Option<u32>)>,
            u64,
            u32,
        ),
    }

    fn feed(r: &mut Reassembler, cfg: &DecodeConfig, t: Timestamp, frame: &[u8]) -> Got {
        match r.decode(LinkType::Ethernet, t, frame, frame.len() as u32, cfg) {
            Reassembled::Packet(_) => Got::Packet,
            Reassembled::Held => Got::Held,
            Reassembled::Datagram {
                decoded,
                wire_len,
                fragments,
                ..
            } => {
                assert_eq!(decoded.error, None);
                let inner = decoded.ip.expect("inner IP");
                assert_eq!(inner.src, IpAddr::from([10, 0, 0, 1]));
                let layer = decoded.tunnels.layers().first().map(|l| (l.kind, l.id));
                Got::Datagram(decoded.ports(), layer, wire_len, fragments)
            }
        }
    }

    fn split(d: &[u8], f: impl Fn(usize, usize) -> Vec<u8>) -> Vec<Vec<u8>> {
        (0..d.len()).step_by(200).map(|o| f(o, 200)).collect()
    }

    #[test]
    fn reassembles_vxlan_fragments_in_order() {
        let cfg = DecodeConfig::DEFAULT;
        let mut r = Reassembler::new(&cfg);
        let datagram = vxlan(&inner_frame(500));
        let frames = split(&datagram, |o, l| frag4(&datagram, 17, 7, o, l));
        assert_eq!(frames.len(), 3);
        assert_eq!(feed(&mut r, &cfg, ts(1), &frames[0]), Got::Held);
        assert_eq!(feed(&mut r, &cfg, ts(1), &frames[1]), Got::Held);
        let wire: usize = frames.iter().map(Vec::len).sum();
        assert_eq!(
            feed(&mut r, &cfg, ts(2), &frames[2]),
            Got::Datagram(
                Some((1000, 2000)),
                Some((TunnelKind::Vxlan, Some(5000))),
                wire as u64,
                3
            )
        );
        assert_eq!(r.stats().fragments, 3);
        assert_eq!(r.stats().datagrams, 1);
        assert_eq!((r.pending(), r.held_bytes()), (0, 0));
    }

    #[test]
    fn reassembles_gre_fragments_out_of_order_in_ipv4_and_ipv6() {
        let cfg = DecodeConfig::DEFAULT;
        let datagram = gre(&inner_frame(700));
        for v6 in [false, true] {
            let mut r = Reassembler::new(&cfg);
            let frames = split(&datagram, |o, l| {
                if v6 {
                    frag6(&datagram, 47, 99, o, l)
                } else {
                    frag4(&datagram, 47, 99, o, l)
                }
            });
            assert_eq!(frames.len(), 4);
            for i in [3, 1, 2] {
                assert_eq!(feed(&mut r, &cfg, ts(1), &frames[i]), Got::Held);
            }
            let got = feed(&mut r, &cfg, ts(1), &frames[0]);
            let wire: usize = frames.iter().map(Vec::len).sum();
            assert_eq!(
                got,
                Got::Datagram(
                    Some((1000, 2000)),
                    Some((TunnelKind::Gre, None)),
                    wire as u64,
                    4
                ),
                "v6 {v6}"
            );
        }
    }

    #[test]
    fn overlapping_bytes_keep_the_first_copy() {
        let cfg = DecodeConfig::DEFAULT;
        let mut r = Reassembler::new(&cfg);
        let datagram = gre(&inner_frame(300));
        // The attacker's copy of bytes 96..200 changes the inner ports
        // (bytes 4 + 14 + 20 = 38.. of the datagram) if it wins.
        let mut forged = datagram.clone();
        for b in &mut forged[32..200] {
            *b = 0xee;
        }
        assert_eq!(
            feed(&mut r, &cfg, ts(1), &frag4(&datagram, 47, 1, 0, 96)),
            Got::Held
        );
        assert_eq!(
            feed(&mut r, &cfg, ts(1), &frag4(&forged, 47, 1, 32, 168)),
            Got::Held
        );
        let got = feed(&mut r, &cfg, ts(1), &frag4(&datagram, 47, 1, 200, 400));
        assert!(
            matches!(got, Got::Datagram(Some((1000, 2000)), ..)),
            "{got:?}"
        );
        assert_eq!(r.stats().overlaps, 1);
        // The forged bytes beyond the first copy (96..200) were taken:
        // first wins only where bytes were already there.
        let mut r = Reassembler::new(&cfg);
        feed(&mut r, &cfg, ts(1), &frag4(&forged, 47, 1, 32, 168));
        let got = feed(&mut r, &cfg, ts(1), &frag4(&datagram, 47, 1, 0, 96));
        assert_eq!(got, Got::Held);
        let last = frag4(&datagram, 47, 1, 200, 400);
        match r.decode(LinkType::Ethernet, ts(1), &last, 0, &cfg) {
            Reassembled::Datagram { decoded, .. } => {
                // The forged copy came first and kept bytes 96..200.
                assert_ne!(decoded.ports(), Some((1000, 2000)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_datagram_incomplete_after_the_timeout_is_dropped_and_counted() {
        let cfg = DecodeConfig::DEFAULT;
        let mut r = Reassembler::new(&cfg);
        let datagram = gre(&inner_frame(500));
        let frames = split(&datagram, |o, l| frag4(&datagram, 47, 3, o, l));
        assert_eq!(feed(&mut r, &cfg, ts(100), &frames[0]), Got::Held);
        assert_eq!(feed(&mut r, &cfg, ts(130), &frames[1]), Got::Held);
        assert_eq!(r.stats().timeouts, 0);
        // 31 s of packet time after the first fragment: gone, and the
        // last fragment starts a datagram of its own that never completes.
        assert_eq!(feed(&mut r, &cfg, ts(131), &frames[2]), Got::Held);
        assert_eq!(r.stats().timeouts, 1);
        assert_eq!(r.stats().datagrams, 0);
        r.advance(ts(200));
        assert_eq!(r.stats().timeouts, 2);
        assert_eq!((r.pending(), r.held_bytes()), (0, 0));
    }

    #[test]
    fn the_byte_cap_evicts_the_oldest_datagram_and_counts_it() {
        let cfg = DecodeConfig {
            max_reassembly_bytes: 3000,
            ..DecodeConfig::DEFAULT
        };
        let mut r = Reassembler::new(&cfg);
        let a = vxlan(&inner_frame(2000));
        let b = vxlan(&inner_frame(2000));
        assert_eq!(
            feed(&mut r, &cfg, ts(1), &frag4(&a, 17, 1, 0, 1400)),
            Got::Held
        );
        assert!(r.held_bytes() <= 3000);
        assert_eq!(
            feed(&mut r, &cfg, ts(2), &frag4(&b, 17, 2, 0, 1400)),
            Got::Held
        );
        assert_eq!(r.stats().evictions, 1);
        assert_eq!(r.pending(), 1);
        assert!(r.held_bytes() <= 3000);
        // A's rest no longer has a datagram: a UDP later fragment is
        // decoded on its own.
        assert_eq!(
            feed(&mut r, &cfg, ts(3), &frag4(&a, 17, 1, 1400, 1400)),
            Got::Packet
        );
        // B completes.
        let got = feed(&mut r, &cfg, ts(3), &frag4(&b, 17, 2, 1400, 1400));
        assert!(
            matches!(got, Got::Datagram(Some((1000, 2000)), ..)),
            "{got:?}"
        );
        // A datagram larger than the cap never fits: evicted, counted.
        let big = gre(&inner_frame(6000));
        for o in (0..big.len()).step_by(1400) {
            feed(&mut r, &cfg, ts(4), &frag4(&big, 47, 9, o, 1400));
            assert!(r.held_bytes() <= 3000);
        }
        assert!(r.stats().evictions >= 2);
        assert_eq!(r.stats().datagrams, 1);
    }

    #[test]
    fn untunnelled_and_unfragmented_frames_decode_as_decode_with() {
        let cfg = DecodeConfig::DEFAULT;
        let mut r = Reassembler::new(&cfg);
        let whole = inner_frame(100);
        // A fragmented DNS answer: inner fragments keep today's path.
        let mut dns = inner_frame(600)[14..].to_vec();
        dns[22..24].copy_from_slice(&53u16.to_be_bytes());
        let udp = dns[20..].to_vec();
        let frames = [
            whole.clone(),
            frag4(&udp, 17, 5, 0, 200),
            frag4(&udp, 17, 5, 200, 200),
            frag4(&udp, 17, 5, 400, 400),
        ];
        for f in &frames {
            let want = decode_with(LinkType::Ethernet, f, &cfg);
            match r.decode(LinkType::Ethernet, ts(1), f, 0, &cfg) {
                Reassembled::Packet(d) => assert_eq!(d, want),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(r.stats(), &ReassemblyStats::default());
        // Reassembly off: a tunnel fragment too.
        let off = DecodeConfig {
            max_reassembly_bytes: 0,
            ..DecodeConfig::DEFAULT
        };
        let mut r = Reassembler::new(&off);
        let datagram = vxlan(&inner_frame(500));
        let f = frag4(&datagram, 17, 7, 0, 200);
        let Reassembled::Packet(d) = r.decode(LinkType::Ethernet, ts(1), &f, 0, &off) else {
            panic!("held with reassembly off");
        };
        assert!(matches!(d.transport, Transport::Udp { .. }));
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// The three fragments of a TCP SYN in suricata-verify's
    /// `defrag__bug-6887-defrag-eth-vlan-ipv4-tcp-syn` (Ethernet, VLAN 6,
    /// 8 bytes each): the signature table rebuilds exactly the frame its
    /// `test.yaml` says Suricata logs as `packet` (first fragment's link
    /// and IP headers; length, fragment field and checksum fixed).
    #[test]
    fn signature_table_rebuilds_the_frame_suricata_logs() {
        let frames = [
            "050403020100 000102030405 81000006 0800 4500001c00012000400654d6 01010101 02020202 30391f9000000001",
            "050403020100 000102030405 81000006 0800 4500001c00012001400654d5 01010101 02020202 0000000060022000",
            "050403020100 000102030405 81000006 0800 4500001c00010002400674d4 01010101 02020202 190c000003030e00",
        ]
        .map(hex);
        // test.yaml's `packet`, base64-decoded.
        let want = hex(
            "050403020100 000102030405 81000006 0800 4500002c00010000400674c6 01010101 02020202 \
             30391f90000000010000000060022000190c000003030e00",
        );
        let cfg = DecodeConfig::DEFAULT;
        // The tunnel table leaves them alone.
        let mut tunnels = Reassembler::new(&cfg);
        for f in &frames {
            assert!(matches!(
                tunnels.decode(LinkType::Ethernet, ts(1), f, 46, &cfg),
                Reassembled::Packet(_)
            ));
        }
        let mut r = Reassembler::for_signatures(&cfg);
        for f in &frames[..2] {
            assert!(matches!(
                r.decode(LinkType::Ethernet, ts(1), f, 46, &cfg),
                Reassembled::Held
            ));
        }
        match r.decode(LinkType::Ethernet, ts(1), &frames[2], 46, &cfg) {
            Reassembled::Datagram {
                decoded,
                frame,
                wire_len,
                fragments,
            } => {
                assert_eq!(frame, want.as_slice());
                assert_eq!((wire_len, fragments), (138, 3));
                assert_eq!(decoded.vlans(), &[6]);
                assert_eq!(decoded.ports(), Some((12345, 8080)));
                assert_eq!(decoded.tcp_flags(), crate::decode::tcp_flags::SYN);
                assert_eq!(decoded.error, None);
            }
            other => panic!("not reassembled: {other:?}"),
        }
        assert_eq!((r.pending(), r.held_bytes()), (0, 0));
    }

    /// IPv6: the rebuilt frame is the unfragmented packet (fragment header
    /// gone, payload length and next header fixed), whatever the order.
    #[test]
    fn signature_table_rebuilds_ipv6_without_the_fragment_header() {
        let mut datagram = 1000u16.to_be_bytes().to_vec();
        datagram.extend_from_slice(&53u16.to_be_bytes());
        datagram.extend_from_slice(&[0x02, 0x08, 0, 0]);
        datagram.extend((0..512).map(|i| i as u8));
        let mut frames: Vec<Vec<u8>> = (0..datagram.len())
            .step_by(160)
            .map(|o| frag6(&datagram, 17, 77, o, 160))
            .collect();
        frames.reverse();
        let mut want = MAC.to_vec();
        want.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        want.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
        want.extend_from_slice(&[17, 64]);
        want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        want.extend_from_slice(&datagram);
        let cfg = DecodeConfig::DEFAULT;
        let mut r = Reassembler::for_signatures(&cfg);
        let n = frames.len();
        for (i, f) in frames.iter().enumerate() {
            match r.decode(LinkType::Ethernet, ts(1), f, 0, &cfg) {
                Reassembled::Held => assert!(i + 1 < n),
                Reassembled::Datagram { decoded, frame, .. } => {
                    assert_eq!(i + 1, n);
                    assert_eq!(frame, want.as_slice());
                    assert_eq!(decoded.ports(), Some((1000, 53)));
                    assert_eq!(decoded.payload.len(), 512);
                }
                Reassembled::Packet(_) => panic!("fragment {i} not taken"),
            }
        }
    }

    /// One fragment for the fuzz tests: (IPv6, protocol, id, offset in
    /// 8-byte units, length, bytes seed).
    fn fragment() -> impl Strategy<Value = (bool, u8, u8, u16, u16, u8)> {
        (
            any::<bool>(),
            prop_oneof![Just(47u8), Just(17), Just(4), Just(41), any::<u8>()],
            0u8..4,
            0u16..200,
            0u16..1600,
            any::<u8>(),
        )
    }

    fn build(f: (bool, u8, u8, u16, u16, u8)) -> Vec<u8> {
        let (v6, protocol, id, offset, len, seed) = f;
        let offset = usize::from(offset) * 8;
        let mut d = vec![0u8; offset + usize::from(len)];
        for (i, b) in d.iter_mut().enumerate() {
            *b = seed.wrapping_add(i as u8);
        }
        if protocol == 17 && d.len() >= offset + 4 {
            d[offset + 2..offset + 4].copy_from_slice(&4789u16.to_be_bytes());
        }
        if v6 {
            frag6(&d, protocol, u32::from(id), offset, usize::from(len) + 1)
        } else {
            frag4(&d, protocol, u16::from(id), offset, usize::from(len) + 1)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1024,
            ..ProptestConfig::default()
        })]

        /// Arbitrary fragments (and arbitrary bytes) in any order: no
        /// panic, and never more held than the cap.
        #[test]
        fn arbitrary_fragments_never_panic_and_stay_under_the_cap(
            frags in proptest::collection::vec((fragment(), 0i64..50), 1..40),
            noise in proptest::collection::vec(any::<u8>(), 0..200),
            cap in 0usize..20_000,
        ) {
            let cfg = DecodeConfig { max_reassembly_bytes: cap, ..DecodeConfig::DEFAULT };
            // The tunnel table and the signature table (every fragment).
            for mut r in [Reassembler::new(&cfg), Reassembler::for_signatures(&cfg)] {
                let mut t = 0;
                for (f, dt) in frags.iter().copied() {
                    t += dt;
                    let frame = build(f);
                    let _ = r.decode(LinkType::Ethernet, ts(t), &frame, 0, &cfg);
                    prop_assert!(r.held_bytes() <= cap);
                    let _ = r.decode(LinkType::RawIp, ts(t), &noise, 0, &cfg);
                    let _ = r.decode(LinkType::RawIp, ts(t), &frame[14..], 0, &cfg);
                }
                r.advance(ts(t + 31));
                prop_assert_eq!((r.pending(), r.held_bytes()), (0, 0));
            }
        }

        /// The fragments of real tunnel datagrams, mutated and shuffled:
        /// no panic, and never more held than the cap.
        #[test]
        fn mutated_fragments_never_panic_and_stay_under_the_cap(
            payload in 0usize..3000,
            size in 8usize..1500,
            v6 in any::<bool>(),
            use_gre in any::<bool>(),
            order in proptest::collection::vec(any::<u16>(), 0..10),
            mutations in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<u8>()), 0..8),
            cap in 1000usize..10_000,
        ) {
            let cfg = DecodeConfig { max_reassembly_bytes: cap, ..DecodeConfig::DEFAULT };
            let mut r = Reassembler::new(&cfg);
            let inner = inner_frame(payload);
            let (datagram, protocol) = if use_gre { (gre(&inner), 47) } else { (vxlan(&inner), 17) };
            let size = size / 8 * 8;
            let mut frames: Vec<Vec<u8>> = (0..datagram.len())
                .step_by(size.max(8))
                .map(|o| if v6 {
                    frag6(&datagram, protocol, 1, o, size.max(8))
                } else {
                    frag4(&datagram, protocol, 1, o, size.max(8))
                })
                .collect();
            for (i, o) in order.iter().enumerate() {
                let n = frames.len();
                frames.swap(i % n, usize::from(*o) % n);
            }
            for (which, at, v) in mutations {
                let n = frames.len();
                let f = &mut frames[usize::from(which) % n];
                let at = usize::from(at) % (f.len() + 1);
                if at == f.len() { f.truncate(at / 2) } else { f[at] = v }
            }
            for f in &frames {
                let _ = r.decode(LinkType::Ethernet, ts(1), f, 0, &cfg);
                prop_assert!(r.held_bytes() <= cap);
            }
        }
    }
}

//! Packets in batches, for handing them from the capture loop to the
//! analysis workers: one allocation per batch instead of per packet, and
//! batches are recycled so steady state allocates nothing. A packet the
//! capture loop already decoded travels with its [`Detached`] decode, so
//! that the worker does not decode it again.

use analyzers::decode::{Decoded, Detached, Tunnels};
use analyzers::vnet::VnetId;
use analyzers::Timestamp;
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;

use super::rotation::EXTRA;
use super::{RawPacket, SharedChunk};

/// What the capture loop says about one packet of a batch besides its
/// bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tag {
    /// The VNet of the packet's source (a `[[sources]]` entry's `vnet`, or
    /// a pcapng interface mapped by `iface:`), used when no other mapping
    /// matches.
    pub source_vnet: Option<VnetId>,
    /// A copy of a SIP message another worker owns: the receiving worker
    /// only learns the media it announces, in packet order, and does not
    /// count it.
    pub learn_only: bool,
    /// The packet's 1-based number in its capture source (a file, or a
    /// live interface since it opened): Suricata's EVE `pcap_cnt`. 0 when
    /// unknown.
    pub number: u64,
}

/// The free list the workers return batches to and the capture loop takes
/// them from, oldest first: it starts with `spares` spare batches and has
/// room for `in_flight` batches (those the queues and the loops can hold)
/// besides those and the [`EXTRA`] a loop may hold aside
/// ([`super::rotation`], which says why the rotation matters and how its
/// length is chosen).
pub fn free_list(in_flight: usize, spares: usize) -> (Sender<PacketBatch>, Receiver<PacketBatch>) {
    let (tx, rx) = crossbeam_channel::bounded(in_flight + spares + EXTRA);
    for _ in 0..spares {
        // Cannot fail: the channel has room for these and more.
        let _ = tx.try_send(PacketBatch::with_capacity());
    }
    (tx, rx)
}

/// Up to [`PacketBatch::CAPACITY`] packets: copied out of the capture
/// buffer, or where a file's reader lets them lie (in a chunk the batch
/// holds, [`PacketBatch::push_shared`]).
#[derive(Debug, Default)]
pub struct PacketBatch {
    data: Vec<u8>,
    /// The file chunks the packets not copied lie in, each once.
    chunks: Vec<SharedChunk>,
    /// (timestamp, nanoseconds below it, wire length, offset, captured
    /// length, tag, where: [`OWN`] for `data`, else the index of the
    /// packet's chunk in `chunks`).
    meta: Vec<Meta>,
    /// The capture loop's decode of each packet, when it made one (one
    /// entry per `meta` entry), with the index of its tunnel stack in
    /// `tunnels` (`u32::MAX`: none).
    decoded: Vec<(Option<Detached>, u32)>,
    /// The tunnel stacks of the batch's tunnelled packets, by value: the
    /// stack's box is freed on the capture thread and a new one made on
    /// the worker's, because freeing another thread's allocations made a
    /// tunnelled capture 2.4x slower (glibc arenas).
    tunnels: Vec<Tunnels>,
}

/// A packet of a batch: see [`PacketBatch`]'s `meta`.
type Meta = (Timestamp, u16, u32, u32, u32, Tag, u32);

/// A packet whose bytes the batch copied into its own buffer.
const OWN: u32 = u32::MAX;

impl PacketBatch {
    /// Packets per batch. A batch is written by the capture thread while
    /// its lines stay in that core's L2 cache (1 MiB here), one per worker
    /// at a time: 256 packets with their decodes are about 150 KiB on the
    /// IMIX capture. At 1,024 two workers' batches filled together no
    /// longer fitted, and the capture thread took 15% more CPU (IMIX, 2
    /// workers, 6 interleaved rounds: 1.18-1.29 s against 1.42-1.58 s;
    /// wall 1.21 s against 1.43 s, one core 1.97 s against 2.39 s).
    pub const CAPACITY: usize = 256;
    /// A batch also closes at this many bytes of packet data, which bounds
    /// the memory of the queue (its depth times this): a packet that would
    /// take a batch past it goes to the next one
    /// ([`PacketBatch::has_room_for`]; packets are at most 256 KiB, the
    /// largest snaplen).
    pub const MAX_BYTES: usize = 256 << 10;

    pub fn with_capacity() -> Self {
        PacketBatch {
            data: Vec::with_capacity(Self::CAPACITY * 256),
            chunks: Vec::new(),
            meta: Vec::with_capacity(Self::CAPACITY),
            decoded: Vec::with_capacity(Self::CAPACITY),
            tunnels: Vec::new(),
        }
    }

    /// Adds a packet with the default tag (no source VNet, analysed).
    pub fn push(&mut self, p: &RawPacket<'_>) {
        self.push_tagged(p, Tag::default());
    }

    pub fn push_tagged(&mut self, p: &RawPacket<'_>, tag: Tag) {
        self.push_decoded(p, tag, None);
    }

    /// Adds a packet with the capture loop's decode of it, if any.
    pub fn push_decoded(&mut self, p: &RawPacket<'_>, tag: Tag, decoded: Option<Detached>) {
        self.push_bytes(p, tag);
        self.push_decode(decoded);
    }

    /// The first half of [`PacketBatch::push_decoded`]: the packet's bytes
    /// and tag. [`PacketBatch::push_decode`] must follow before anything
    /// else is added (the capture loop runs the IDS in between, while the
    /// lines it is about to read arrive).
    pub fn push_bytes(&mut self, p: &RawPacket<'_>, tag: Tag) {
        debug_assert_eq!(self.meta.len(), self.decoded.len(), "a decode is missing");
        let offset = self.data.len() as u32;
        self.data.extend_from_slice(p.data);
        self.meta.push((
            p.ts,
            p.nanos,
            p.wire_len,
            offset,
            p.data.len() as u32,
            tag,
            OWN,
        ));
    }

    /// As [`PacketBatch::push_bytes`], for a packet lying in `chunk`: the
    /// batch holds the chunk (once for all its packets there) instead of
    /// copying the bytes. A packet outside the chunk is copied.
    pub fn push_shared(&mut self, p: &RawPacket<'_>, tag: Tag, chunk: &SharedChunk) {
        debug_assert_eq!(self.meta.len(), self.decoded.len(), "a decode is missing");
        let offset = (p.data.as_ptr() as usize).wrapping_sub(chunk.as_ptr() as usize);
        if offset
            .checked_add(p.data.len())
            .is_none_or(|end| end > chunk.len())
        {
            debug_assert!(false, "a shared packet lies outside its chunk");
            return self.push_bytes(p, tag);
        }
        let at = match self.chunks.last() {
            Some(c) if Arc::ptr_eq(c, chunk) => self.chunks.len() - 1,
            _ => {
                self.chunks.push(Arc::clone(chunk));
                self.chunks.len() - 1
            }
        };
        self.meta.push((
            p.ts,
            p.nanos,
            p.wire_len,
            offset as u32,
            p.data.len() as u32,
            tag,
            at as u32,
        ));
    }

    /// The second half of [`PacketBatch::push_decoded`]: the decode of the
    /// packet [`PacketBatch::push_bytes`] added last.
    ///
    /// Inlined into the capture loop, where the decode is detached: called,
    /// the decode came through memory and its copy into the batch loaded
    /// 16 bytes over the caller's narrower stores just made, a load the
    /// core cannot forward (half of this function's samples).
    #[inline(always)]
    pub fn push_decode(&mut self, mut decoded: Option<Detached>) {
        let tunnels = match decoded.as_mut().and_then(Detached::take_tunnels) {
            Some(t) => self.keep_tunnels(t),
            None => u32::MAX,
        };
        self.decoded.push((decoded, tunnels));
    }

    /// Keeps a tunnelled packet's stack, once for consecutive packets
    /// with the same stack (a mirror session, a VNI), and gives its box
    /// back; returns its index in `tunnels`.
    #[inline(never)] // out of the inlined push: most packets have no stack
    fn keep_tunnels(&mut self, t: Box<Tunnels>) -> u32 {
        // Compared in place: moving the stack out of its box costs more.
        let n = self.tunnels.len();
        let at = if n == 0 || self.tunnels[n - 1] != *t {
            self.tunnels.push(*t);
            n
        } else {
            n - 1
        };
        analyzers::decode::recycle_tunnels(t);
        at as u32
    }

    /// Whether a packet of `bytes` fits without taking the batch past
    /// [`PacketBatch::MAX_BYTES`] (an empty batch takes any packet).
    pub fn has_room_for(&self, bytes: usize) -> bool {
        self.meta.is_empty() || self.data.len() + bytes <= Self::MAX_BYTES
    }

    pub fn is_full(&self) -> bool {
        self.meta.len() >= Self::CAPACITY || self.data.len() >= Self::MAX_BYTES
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Packet `i`'s decode as the capture loop kept it (`None` if it kept
    /// none), attached to the packet's bytes here.
    pub fn decoded_at(&self, i: usize) -> Option<Decoded<'_>> {
        let m = self.meta.get(i)?;
        let (d, t) = self.decoded.get(i)?;
        d.as_ref()?
            .attach_ref(self.packet(m).data, self.tunnels.get(*t as usize))
    }

    /// Packet `i`'s bytes.
    pub fn data_at(&self, i: usize) -> Option<&[u8]> {
        self.meta.get(i).map(|m| self.packet(m).data)
    }

    /// Packets that are analysed (not learn-only copies).
    pub fn analysed(&self) -> usize {
        self.meta.iter().filter(|m| !m.5.learn_only).count()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.chunks.clear();
        self.meta.clear();
        self.decoded.clear();
        self.tunnels.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = RawPacket<'_>> {
        self.iter_tagged().map(|(p, _)| p)
    }

    /// The packets in order, each with its [`Tag`].
    pub fn iter_tagged(&self) -> impl Iterator<Item = (RawPacket<'_>, Tag)> {
        self.meta.iter().map(move |m| (self.packet(m), m.5))
    }

    /// Packet `i`'s bytes and [`Tag`]; `None` past the end.
    #[inline(always)]
    pub fn packet_at(&self, i: usize) -> Option<(RawPacket<'_>, Tag)> {
        self.meta.get(i).map(|m| (self.packet(m), m.5))
    }

    /// Writes packet `i`'s decode as the capture loop kept it into `out`,
    /// attached to the packet's bytes here (its tunnel stack borrowed
    /// from the batch); `false`, and `out` as it was, when it kept none.
    ///
    /// A worker takes the packets by place into slots it keeps, not
    /// through an iterator of structs holding them: moving such structs
    /// (two decodes, the packet and its tag, about 400 bytes) stalled as
    /// [`Detached::attach_into`] says (`perf annotate`: 30% of a VoIP
    /// worker's samples on two such copies).
    #[inline(always)]
    pub fn decode_into<'a>(&'a self, i: usize, out: &mut Decoded<'a>) -> bool {
        let (Some(m), Some((Some(d), t))) = (self.meta.get(i), self.decoded.get(i)) else {
            return false;
        };
        d.attach_into(self.packet(m).data, self.tunnels.get(*t as usize), out)
    }

    /// Asks for the lines packet `i` will be read from: its first bytes
    /// and its decode. A worker asks [`PREFETCH_AHEAD`] packets before a
    /// packet's turn; nothing past the end.
    #[inline(always)]
    pub fn prefetch_at(&self, i: usize) {
        if let Some(m) = self.meta.get(i) {
            crate::sys::prefetch(self.packet(m).data);
        }
        if let Some(d) = self.decoded.get(i) {
            crate::sys::prefetch_value(d);
        }
    }
}

/// How many packets ahead of its turn a worker hashes a packet's flow and
/// stream keys, to prefetch their index entries at once and the flow slot
/// and stream entry they name one packet later, two packets before its
/// turn (3 rather than 2: 3-4% less CPU on the VoIP and flow-heavy
/// captures, 7 and 5 interleaved rounds, about this VM's noise). The
/// worker attaches the packet's decode one packet before that
/// ([`PacketBatch::decode_into`]), once its prefetch
/// ([`PREFETCH_AHEAD`] packets ahead) has arrived.
pub const LOOKAHEAD: usize = 3;

/// How many packets ahead a worker prefetches ([`PacketBatch::prefetch_at`]): a
/// worker spends about a microsecond per packet, several times a cross-core
/// transfer, so a few packets ahead is early enough, and late enough that
/// the lines are still in the cache when their turn comes.
pub const PREFETCH_AHEAD: usize = 6;

impl PacketBatch {
    #[inline(always)]
    fn packet(&self, &(ts, nanos, wire_len, offset, len, _, at): &Meta) -> RawPacket<'_> {
        let bytes: &[u8] = if at == OWN {
            &self.data
        } else {
            self.chunks.get(at as usize).map_or(&[], |c| c.as_slice())
        };
        RawPacket {
            ts,
            nanos,
            wire_len,
            data: bytes
                .get(offset as usize..(offset + len) as usize)
                .unwrap_or(&[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use analyzers::{DecodeConfig, LinkType};

    /// The free list starts with its spare batches and has room for
    /// the in-flight ones besides; a returned batch comes back only after
    /// every batch returned before it.
    #[test]
    fn the_free_list_hands_out_the_batch_freed_longest_ago() {
        let (tx, rx) = free_list(3, 16);
        assert_eq!(rx.len(), 16);
        let mut marked = Vec::new();
        for n in 1..=3u64 {
            let mut b = rx.try_recv().expect("a spare batch");
            b.push_tagged(
                &RawPacket {
                    ts: Timestamp(0),
                    nanos: 0,
                    wire_len: 1,
                    data: &[0],
                },
                Tag {
                    number: n,
                    ..Tag::default()
                },
            );
            marked.push(b);
        }
        // The in-flight batches fit beside the spares.
        for b in marked {
            tx.try_send(b).expect("room for an in-flight batch");
        }
        let mut order = Vec::new();
        while let Ok(b) = rx.try_recv() {
            if let Some((_, tag)) = b.iter_tagged().next() {
                order.push((tag.number, rx.len()));
            }
        }
        // After the 16 - 3 spares still waiting, in the order freed.
        assert_eq!(order, vec![(1, 2), (2, 1), (3, 0)]);
    }

    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let len = (20 + payload.len()) as u16;
        let mut p = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(payload);
        p
    }

    fn ethernet(ip: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(ip);
        f
    }

    fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x02;
        t
    }

    /// A VXLAN packet (VNI 5000) carrying `inner`.
    fn vxlan(inner: &[u8]) -> Vec<u8> {
        let mut udp = vec![0u8; 8];
        udp[0..2].copy_from_slice(&5555u16.to_be_bytes());
        udp[2..4].copy_from_slice(&4789u16.to_be_bytes());
        udp[4..6].copy_from_slice(&((16 + inner.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0x08, 0, 0, 0, 0x00, 0x13, 0x88, 0]);
        udp.extend_from_slice(inner);
        ethernet(&ipv4(17, [192, 0, 2, 1], [192, 0, 2, 2], &udp))
    }

    /// What the capture loop's IDS reads back from a batch is the decode
    /// it made of the packet: plain, and tunnelled with the stack shared
    /// by consecutive packets.
    #[test]
    fn a_kept_decode_reads_back_as_made() {
        let syn = |s: u8| ethernet(&ipv4(6, [10, 0, 0, s], [10, 0, 0, 9], &tcp_syn(1000, 80)));
        let frames = [syn(1), vxlan(&syn(2)), vxlan(&syn(3)), syn(4)];
        let cfg = DecodeConfig::default();
        let mut b = PacketBatch::with_capacity();
        let mut made = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let p = RawPacket {
                ts: Timestamp(i as i64),
                nanos: 0,
                wire_len: f.len() as u32,
                data: f,
            };
            let d = analyzers::decode_with(LinkType::Ethernet, f, &cfg);
            assert!(d.ip.is_some(), "frame {i} decodes");
            made.push(d.clone());
            let detached = d.detach(f);
            assert!(detached.is_some(), "frame {i} detaches");
            b.push_decoded(&p, Tag::default(), detached);
        }
        assert!(made[1].tunnels.segment() != made[0].tunnels.segment());
        for (i, d) in made.iter().enumerate() {
            assert_eq!(b.decoded_at(i).as_ref(), Some(d), "frame {i}");
            assert_eq!(b.data_at(i), Some(&frames[i][..]));
        }
        assert!(b.decoded_at(frames.len()).is_none());
        assert_eq!(b.tunnels.len(), 1, "the two VXLAN packets share one stack");
    }

    #[test]
    fn a_batch_filled_as_the_loop_fills_it_stays_within_its_bytes() {
        // The loop's rule: send a batch that has no room before pushing.
        let mut b = PacketBatch::with_capacity();
        let big = vec![7u8; 100 << 10];
        let largest = vec![9u8; PacketBatch::MAX_BYTES];
        let mut sent = Vec::new();
        for data in [&big, &big, &big, &largest, &big].map(Vec::as_slice) {
            if !b.has_room_for(data.len()) {
                sent.push((b.len(), b.iter().map(|p| p.data.len()).sum::<usize>()));
                b.clear();
            }
            b.push(&RawPacket {
                ts: Timestamp(0),
                nanos: 0,
                wire_len: data.len() as u32,
                data,
            });
            assert!(b.iter().map(|p| p.data.len()).sum::<usize>() <= PacketBatch::MAX_BYTES);
        }
        // Two of 100 KiB fit; the third starts a batch; the largest packet
        // fills one of its own.
        assert_eq!(sent, vec![(2, 200 << 10), (1, 100 << 10), (1, 256 << 10)]);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn round_trips_packets() {
        let mut b = PacketBatch::with_capacity();
        for i in 0..3u8 {
            b.push(&RawPacket {
                ts: Timestamp(i64::from(i)),
                nanos: 0,
                wire_len: 100,
                data: &[i; 5],
            });
        }
        let got: Vec<_> = b
            .iter()
            .map(|p| (p.ts.0, p.data[0], p.data.len()))
            .collect();
        assert_eq!(got, vec![(0, 0, 5), (1, 1, 5), (2, 2, 5)]);
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn tags_stay_with_their_packets() {
        let mut b = PacketBatch::with_capacity();
        let p = RawPacket {
            ts: Timestamp(1),
            nanos: 0,
            wire_len: 60,
            data: &[1, 2, 3],
        };
        b.push(&p);
        let learn = Tag {
            source_vnet: Some(VnetId(2)),
            learn_only: true,
            number: 0,
        };
        b.push_tagged(&p, learn);
        let tags: Vec<Tag> = b.iter_tagged().map(|(_, t)| t).collect();
        assert_eq!(tags, vec![Tag::default(), learn]);
        assert_eq!((b.len(), b.analysed()), (2, 1));
    }
}

//! Finds RTP streams in UDP traffic and keeps their statistics, bounded.
//!
//! - SIP on the configured ports (UDP) announces media endpoints through
//!   SDP; a stream to or from an announced endpoint is tracked from its
//!   first packet, with the rtpmap's codec and clock rate.
//! - Other streams are found by a heuristic: both ports ≥ 1024, a valid
//!   version-2 header with a static payload type of known clock, and
//!   `confirm_packets` packets of one SSRC whose sequence numbers step by
//!   one and whose timestamps step by at most one second of audio each,
//!   either way; a dynamic payload type (96-127) without SDP needs twice
//!   as many (at least 8) of one type unless its endpoints already carry a
//!   stream (WebRTC's bundle), gets codec `dynamic-PT`, an inferred clock
//!   and no MOS (`mos_reason`), unless `dynamic_codecs` names its codec.
//! - A packet repeating its stream's previous one within
//!   `mirror_dup_window_us` is a mirror copy (`mirror_duplicates`).
//! - RTCP only as a whole compound packet with both ports ≥ 1024.
//!   Candidate packets are kept and replayed into the stream when it is
//!   confirmed, so no packet is lost to detection. DNS, random UDP and
//!   encrypted noise fail this almost surely.
//! - Each stream is scored per window of packet time (`window_secs`) and
//!   over its life; loss per window is that window's, never cumulative.
//! - Memory is bounded: at most `max_streams` streams, `max_candidates`
//!   candidates and `max_announced` announced endpoints, each evicting its
//!   oldest with a counter; candidate eviction passes over (up to 8)
//!   candidates that already stepped by one, so a flood of one-packet
//!   candidates cannot starve real streams. Streams idle for `stream_idle_secs` end.
//!
//! The parts, each with its unit tests: `calls.rs` (SIP call table, SDP
//! announcements), `detect.rs` (the candidate heuristic), `entry.rs` (one
//! stream's statistics, clocks, codecs, jitter buffers, mirror copies),
//! `rtcp_table.rs` (RTCP state per source), `window.rs` (scoring windows and
//! the E-model quality). This file holds the configuration and the
//! tracker that routes each packet and owns the bounded tables.

mod calls;
mod detect;
mod entry;
mod rtcp_table;
mod window;

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::HashMap;

use crate::decode::{Decoded, Transport};
use crate::flow::key::Endpoint;
use crate::record::{
    CallRecord, EndReason, RtpStreamId, RtpStreamRecord, RtpWindowRecord, TunnelInfo,
};
use crate::slot_index::SlotIndex;
use crate::time::Timestamp;
use crate::vnet::VnetId;
use crate::voip::codec::{self, Impairment};
use crate::voip::jitter_buffer::Model;
use crate::voip::rtcp;
use crate::voip::rtp::{self, RtpHeader};
use crate::voip::sdp;
use crate::voip::stream::ArrivalNs;

use calls::{Announced, Calls};
use detect::Candidates;
use entry::{feed_jitter_buffers, is_dynamic, payload_hash, update_entry, Entry, LastPacket};
pub use entry::{DYNAMIC_CODEC, MOS_REASON_DYNAMIC, MOS_REASON_VIDEO};
use rtcp_table::{Leg, RtcpTable};
use window::{close_window, quality, window_index, WindowStart};

/// RTP analysis settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RtpConfig {
    /// Ports carrying SIP. Default `[5060]`; SIP on other ports is found by
    /// its first line ([`crate::voip::sdp::looks_like_sip`]).
    pub sip_ports: Vec<u16>,
    /// Scoring window, seconds of packet time. Default 10.
    pub window_secs: u32,
    /// Packets of one SSRC in sequence before an unannounced stream is
    /// believed. Default 4.
    pub confirm_packets: usize,
    /// A stream without packets this long ends. Default 30 s.
    pub stream_idle_secs: u64,
    /// Caps. Defaults 50,000 streams, 65,536 candidates, 65,536 endpoints,
    /// 50,000 calls.
    pub max_streams: usize,
    pub max_calls: usize,
    pub max_candidates: usize,
    pub max_announced: usize,
    /// Emulated jitter buffers every stream feeds (see
    /// [`crate::voip::jitter_buffer`]). Default fixed50, fixed200, adaptive.
    pub jitter_buffers: Vec<Model>,
    /// The model `mos_lq`, `mos_cq`, `r_factor`, `jb_discards` and the
    /// comparison come from; always one of `jitter_buffers`. Default
    /// adaptive.
    pub default_jitter_buffer: Model,
    /// One-way network delay assumed for MOS-CQ when RTCP gives none.
    /// Default 20 ms.
    pub network_delay_ms: f64,
    /// Whether G.711 receivers conceal loss (Bpl 25.1) or not (4.3).
    /// Default true.
    pub g711_plc: bool,
    /// Impairment of codecs the table ([`crate::voip::codec`]) does not
    /// know, and the Bpl of its Ie-only rows. Default Ie 10, Bpl 10.
    pub unknown_codec: Impairment,
    /// Operator's Ie/Bpl per encoding name (case-insensitive), before the
    /// table: codecs without an ITU value (iLBC, Speex) or a measured
    /// value for one. Default none.
    pub codec_impairments: Vec<(String, Impairment)>,
    /// What a dynamic payload type carries on streams without SDP:
    /// (payload type 96-127, encoding name, clock rate), used like an
    /// rtpmap, so such a stream gets its codec, clock and a MOS. Default
    /// none (codec `dynamic-PT`, MOS null with `mos_reason`).
    pub dynamic_codecs: Vec<(u8, String, u32)>,
    /// A packet repeating the previous packet of its stream (same
    /// addresses, ports, sequence, timestamp and payload hash) within this
    /// many µs is a mirror artefact (a SPAN copying both directions), not
    /// an RTP duplicate. Default 500.
    pub mirror_dup_window_us: u64,
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            sip_ports: vec![5060],
            window_secs: 10,
            confirm_packets: 4,
            stream_idle_secs: 30,
            max_streams: 50_000,
            max_calls: 50_000,
            max_candidates: 65_536,
            max_announced: 65_536,
            jitter_buffers: Model::ALL.to_vec(),
            default_jitter_buffer: Model::Adaptive,
            network_delay_ms: 20.0,
            g711_plc: true,
            unknown_codec: Impairment::narrow(10.0, 10.0),
            codec_impairments: Vec::new(),
            dynamic_codecs: Vec::new(),
            mirror_dup_window_us: 500,
        }
    }
}

/// Counters of the tracker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtpStats {
    pub sip_messages: u64,
    pub streams_started: u64,
    pub streams_evicted: u64,
    pub candidates_evicted: u64,
    pub announced_evicted: u64,
    pub rtcp_packets: u64,
    pub rtp_packets: u64,
    pub calls_started: u64,
    pub calls_evicted: u64,
    /// Mirror copies dropped (see [`RtpConfig::mirror_dup_window_us`]).
    pub mirror_duplicates: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StreamKey {
    vnet: VnetId,
    src: Endpoint,
    dst: Endpoint,
    v6: bool,
    ssrc: u32,
}

impl StreamKey {
    /// The key of an RTP packet from `src:src_port` to `dst:dst_port`.
    #[inline]
    fn of(vnet: VnetId, src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16, ssrc: u32) -> Self {
        StreamKey {
            vnet,
            src: Endpoint::new(src, src_port),
            dst: Endpoint::new(dst, dst_port),
            v6: src.is_ipv6(),
            ssrc,
        }
    }

    /// The key's address pair, the same for both directions and every
    /// SSRC ([`RtpTracker::pairs`]).
    fn pair(&self) -> PairKey {
        let (a, b) = if self.src <= self.dst {
            (self.src, self.dst)
        } else {
            (self.dst, self.src)
        };
        (self.vnet, a, b)
    }
}

/// An address pair (VNet, lower endpoint, higher endpoint) that carries RTP.
type PairKey = (VnetId, Endpoint, Endpoint);

/// Six words, where the derived `Hash` wrote nine fields one by one: the
/// key is hashed twice per RTP packet (the lookahead, then the lookup).
impl std::hash::Hash for StreamKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.src.addr_hi);
        h.write_u64(self.src.addr_lo);
        h.write_u64(self.dst.addr_hi);
        h.write_u64(self.dst.addr_lo);
        h.write_u64(
            u64::from(self.src.port) << 48 | u64::from(self.dst.port) << 32 | u64::from(self.ssrc),
        );
        h.write_u64(u64::from(self.vnet.0) << 8 | u64::from(self.v6));
    }
}

pub struct RtpTracker {
    config: RtpConfig,
    /// Stream key's hash to slot in `slab`: 8 bytes per stream, so a
    /// lookup can be prefetched in two steps ([`RtpTracker::lookahead`],
    /// then [`RtpTracker::entry_ahead`]); entries live in the slab.
    streams: SlotIndex,
    hasher: foldhash::fast::RandomState,
    slab: Vec<Option<Entry>>,
    free: Vec<u32>,
    queue: VecDeque<(Timestamp, StreamKey)>,
    candidates: Candidates,
    /// Streams per address pair, either direction: a new SSRC between
    /// endpoints that already carry RTP (WebRTC's bundled audio, video and
    /// retransmission streams; the reverse leg of a call) is believed after
    /// `confirm_packets` whatever its payload type. At most one entry per
    /// stream.
    pairs: HashMap<PairKey, u32, foldhash::fast::RandomState>,
    calls: Calls,
    /// RTCP state per (VNet, leg, media SSRC): capture times of its recent
    /// sender reports (by NTP middle 32 bits) and the latest view.
    rtcp: RtcpTable,
    stats: RtpStats,
}

impl RtpTracker {
    pub fn new(config: RtpConfig) -> Self {
        RtpTracker {
            rtcp: RtcpTable::new(config.max_streams),
            config,
            streams: SlotIndex::with_capacity(0),
            hasher: foldhash::fast::RandomState::default(),
            slab: Vec::new(),
            free: Vec::new(),
            queue: VecDeque::new(),
            candidates: Candidates::default(),
            pairs: HashMap::default(),
            calls: Calls::default(),
            stats: RtpStats::default(),
        }
    }

    pub fn stats(&self) -> &RtpStats {
        &self.stats
    }

    /// New thresholds without dropping streams or calls (SIGHUP): SIP
    /// ports, confirmation, idle timeout, caps (for new entries), jitter
    /// buffer, delay, PLC and unknown-codec impairment. The scoring window
    /// keeps its length, since open windows are measured in it.
    pub fn reconfigure(&mut self, config: RtpConfig) {
        let window_secs = self.config.window_secs;
        self.config = RtpConfig {
            window_secs,
            ..config
        };
        self.rtcp.set_max(self.config.max_streams);
    }

    pub fn active_streams(&self) -> usize {
        self.streams.len()
    }

    /// Looks at one decoded packet; finished windows and streams are
    /// appended to the outputs.
    pub fn observe(
        &mut self,
        ts: Timestamp,
        vnet: VnetId,
        d: &Decoded<'_>,
        windows: &mut Vec<RtpWindowRecord>,
        streams: &mut Vec<RtpStreamRecord>,
    ) {
        self.observe_ns(ts, 0, vnet, d, windows, streams);
    }

    /// As [`RtpTracker::observe`], with the `nanos` (0-999) past `ts` of a
    /// nanosecond capture, which the delta, jitter and jitter-buffer
    /// arithmetic keep.
    pub fn observe_ns(
        &mut self,
        ts: Timestamp,
        nanos: u16,
        vnet: VnetId,
        d: &Decoded<'_>,
        windows: &mut Vec<RtpWindowRecord>,
        streams: &mut Vec<RtpStreamRecord>,
    ) {
        self.observe_hashed(ts, nanos, vnet, d, None, windows, streams);
    }

    /// As [`RtpTracker::observe_ns`], with the hash that
    /// [`RtpTracker::lookahead`] gave for this very packet (same VNet, same
    /// decode), when the caller kept it: the stream is then looked up
    /// without hashing its key a second time.
    #[expect(clippy::too_many_arguments, reason = "observe_ns plus the hash")]
    pub fn observe_hashed(
        &mut self,
        ts: Timestamp,
        nanos: u16,
        vnet: VnetId,
        d: &Decoded<'_>,
        hash: Option<u32>,
        windows: &mut Vec<RtpWindowRecord>,
        streams: &mut Vec<RtpStreamRecord>,
    ) {
        let at = ArrivalNs::new(ts, nanos);
        self.expire(ts, windows, streams);
        // SIP over TCP: one message per segment (no stream reassembly).
        if self.is_sip(d) {
            if let Some(msg) = sdp::parse_sip(d.payload) {
                self.calls
                    .signalling(ts, vnet, msg, &self.config, &mut self.stats);
            }
            return;
        }
        let (Some(ip), Transport::Udp { src_port, dst_port }) = (d.ip, d.transport) else {
            return;
        };
        let payload = d.payload;
        // RTCP only where it can be: never on a well-known port (DNS), and
        // only as a whole compound packet.
        if rtp::looks_like_rtcp(payload) {
            if src_port >= 1024 && dst_port >= 1024 && rtp::is_rtcp_compound(payload) {
                self.stats.rtcp_packets += 1;
                let leg = Leg::of(ip.src, ip.dst);
                self.rtcp
                    .report(ts, vnet, leg, &rtcp::parse_compound(payload));
            }
            // Neither RTCP nor RTP (payload types 72-79 with the marker).
            return;
        }
        let Some(h) = RtpHeader::parse(payload) else {
            return;
        };
        let key = StreamKey::of(vnet, ip.src, src_port, ip.dst, dst_port, h.ssrc);
        let this = LastPacket::of(at, &h, payload_hash(payload));
        let mirror_us = self.config.mirror_dup_window_us;
        // A hit checks the key, and a new stream is filed under the key's
        // own hash (`start` hashes it): a wrong hint could at worst start
        // a second entry for a stream, which expires as any other, never
        // file one where its removal would not find it.
        let hash = hash.unwrap_or_else(|| self.hash(&key));
        debug_assert_eq!(hash, self.hash(&key), "a hash for another packet");
        if let Some(i) = self.find(hash, &key) {
            if let Some(Some(e)) = self.slab.get_mut(i as usize) {
                if e.last.is_mirrored_by(&this, mirror_us) {
                    e.mirror_duplicates += 1;
                    self.stats.mirror_duplicates += 1;
                    return;
                }
                e.last = this;
                self.stats.rtp_packets += 1;
                if !self.rtcp.is_empty()
                    && window_index(ts, self.config.window_secs) > e.window.index
                {
                    let leg = Leg::new(key.src, key.dst);
                    e.rtt_ms = self.rtcp.rtt_ms(vnet, leg, h.ssrc).or(e.rtt_ms);
                }
                update_entry(e, &self.config, at, &h, windows);
                return;
            }
        }
        let announced = self.calls.announced(vnet, key.src, key.dst);
        if let Some(a) = announced {
            self.stats.rtp_packets += 1;
            self.start(key, at, &h, Some(a), windows, streams);
            self.set_last(key, this);
            self.set_tunnel(key, d);
            return;
        }
        if src_port < 1024 || dst_port < 1024 {
            return;
        }
        let pairs = &self.pairs;
        let confirmed = self.candidates.offer(
            key,
            at,
            h,
            this,
            || pairs.contains_key(&key.pair()),
            &self.config,
            &mut self.stats,
        );
        if let Some(c) = confirmed {
            {
                let mut packets = c.packets.into_iter();
                if let Some((t0, h0)) = packets.next() {
                    self.stats.rtp_packets += 1;
                    self.start(key, t0, &h0, None, windows, streams);
                    self.set_tunnel(key, d);
                    for (t, h) in packets {
                        self.stats.rtp_packets += 1;
                        self.update(key, t, &h, windows);
                    }
                    self.set_last(key, this);
                    if let Some(Some(e)) =
                        self.slot(&key).and_then(|i| self.slab.get_mut(i as usize))
                    {
                        e.mirror_duplicates += c.mirrored;
                    }
                }
            }
        }
    }

    fn set_last(&mut self, key: StreamKey, last: LastPacket) {
        if let Some(i) = self.slot(&key) {
            if let Some(Some(e)) = self.slab.get_mut(i as usize) {
                e.last = last;
            }
        }
    }

    /// Ends streams idle at `now` although no packet arrived to notice it
    /// (live capture calls this on a clock tick).
    pub fn advance(
        &mut self,
        now: Timestamp,
        windows: &mut Vec<RtpWindowRecord>,
        streams: &mut Vec<RtpStreamRecord>,
    ) {
        self.expire(now, windows, streams);
    }

    /// Learns only the media endpoints a SIP message announces, without
    /// counting it or opening a call. A sharded probe gives every worker a
    /// copy of each SIP message this way, so that media whose addresses
    /// differ from the signalling's (a proxy in the path) is still tracked
    /// from its first packet by the worker that owns it.
    pub fn learn_media(&mut self, vnet: VnetId, d: &Decoded<'_>) {
        if !self.is_sip(d) {
            return;
        }
        if let Some(msg) = sdp::parse_sip(d.payload) {
            for m in &msg.media {
                self.calls.announce(
                    vnet,
                    m.clone(),
                    msg.call_id.clone(),
                    &self.config,
                    &mut self.stats,
                );
            }
        }
    }

    /// The high 32 bits of the key's hash, as the index stores them.
    fn hash(&self, key: &StreamKey) -> u32 {
        (self.hasher.hash_one(key) >> 32) as u32
    }

    /// The slab slot of the stream with `key` (hash `h`).
    #[inline]
    fn find(&self, h: u32, key: &StreamKey) -> Option<u32> {
        let slab = &self.slab;
        self.streams.find(
            h,
            |i| matches!(slab.get(i as usize), Some(Some(e)) if e.key == *key),
        )
    }

    /// The slab slot of the stream with `key`.
    fn slot(&self, key: &StreamKey) -> Option<u32> {
        self.find(self.hash(key), key)
    }

    /// The index entry that [`RtpTracker::observe_ns`] of this packet
    /// will read first, for a caller to prefetch a few packets ahead,
    /// with the key's hash for [`RtpTracker::entry_ahead`]. `None` for a
    /// packet that cannot be RTP over UDP, and for RTCP.
    #[inline]
    pub fn lookahead(&self, vnet: VnetId, d: &Decoded<'_>) -> Option<(*const u8, u32)> {
        let (Some(ip), Transport::Udp { src_port, dst_port }) = (d.ip, d.transport) else {
            return None;
        };
        if rtp::looks_like_rtcp(d.payload) {
            return None;
        }
        let h = RtpHeader::parse(d.payload)?;
        let key = StreamKey::of(vnet, ip.src, src_port, ip.dst, dst_port, h.ssrc);
        let h = self.hash(&key);
        self.streams
            .home_entry(h)
            .map(|e| (std::ptr::from_ref(e).cast::<u8>(), h))
    }

    /// The stream entry (address and size) a lookup of hash `h` (from
    /// [`RtpTracker::lookahead`]) will compare and update, to prefetch
    /// once the index entry is in the cache; `None` for a stream the
    /// tracker does not hold.
    #[inline]
    pub fn entry_ahead(&self, h: u32) -> Option<(*const u8, usize)> {
        let slot = self.streams.peek(h)?;
        self.slab.get(slot as usize).map(|e| {
            (
                std::ptr::from_ref(e).cast::<u8>(),
                std::mem::size_of::<Option<Entry>>(),
            )
        })
    }

    /// Whether a decoded packet is SIP ([`is_sip`] on the configured ports).
    pub fn is_sip(&self, d: &Decoded<'_>) -> bool {
        is_sip(d, &self.config.sip_ports)
    }

    /// Calls open now.
    pub fn active_calls(&self) -> usize {
        self.calls.active()
    }

    /// Open streams and calls per VNet, indexed by [`VnetId`] (`vnets`
    /// entries). A scan of the tables: call it on a clock tick, not per packet.
    pub fn active_by_vnet(&self, vnets: usize) -> (Vec<u64>, Vec<u64>) {
        let mut streams = vec![0u64; vnets];
        let mut calls = vec![0u64; vnets];
        for e in self.slab.iter().flatten() {
            if let Some(n) = streams.get_mut(usize::from(e.key.vnet.0)) {
                *n += 1;
            }
        }
        for vnet in self.calls.vnets() {
            if let Some(n) = calls.get_mut(usize::from(vnet.0)) {
                *n += 1;
            }
        }
        (streams, calls)
    }

    /// Takes the finished call records.
    pub fn take_calls(&mut self) -> Vec<CallRecord> {
        self.calls.take()
    }

    /// Ends every stream and call (end of input).
    pub fn flush(
        &mut self,
        windows: &mut Vec<RtpWindowRecord>,
        streams: &mut Vec<RtpStreamRecord>,
    ) {
        self.calls.flush();
        let keys: Vec<StreamKey> = self.queue.drain(..).map(|(_, k)| k).collect();
        for k in keys {
            self.finish(k, EndReason::EndOfInput, windows, streams);
        }
        // Streams not in the queue cannot exist, but be sure nothing is lost.
        let rest: Vec<StreamKey> = self.slab.iter().flatten().map(|e| e.key).collect();
        for k in rest {
            self.finish(k, EndReason::EndOfInput, windows, streams);
        }
    }

    /// Records the tunnel of a new stream's first packet.
    fn set_tunnel(&mut self, key: StreamKey, d: &Decoded<'_>) {
        if d.tunnels.is_empty() {
            return;
        }
        if let Some(i) = self.slot(&key) {
            if let Some(Some(e)) = self.slab.get_mut(i as usize) {
                e.tunnel = TunnelInfo::of(&d.tunnels);
            }
        }
    }

    fn start(
        &mut self,
        key: StreamKey,
        at: ArrivalNs,
        h: &RtpHeader,
        announced: Option<Announced>,
        windows: &mut Vec<RtpWindowRecord>,
        streams: &mut Vec<RtpStreamRecord>,
    ) {
        while self.streams.len() >= self.config.max_streams.max(1) {
            match self.queue.pop_front() {
                Some((_, old)) => {
                    if self.slot(&old).is_some() {
                        self.stats.streams_evicted += 1;
                        self.finish(old, EndReason::Evicted, windows, streams);
                    }
                }
                None => break,
            }
        }
        // Without SDP, a dynamic payload type the operator named
        // (`dynamic_codecs`) is mapped like an rtpmap.
        let announced = announced.or_else(|| {
            (is_dynamic(h.payload_type)
                && self
                    .config
                    .dynamic_codecs
                    .iter()
                    .any(|(pt, _, _)| *pt == h.payload_type))
            .then(|| Announced {
                rtpmap: self.config.dynamic_codecs.clone(),
                call_id: None,
            })
        });
        let mapped = announced
            .as_ref()
            .and_then(|a| a.rtpmap.iter().find(|(pt, _, _)| *pt == h.payload_type));
        let (codec_name, clock) = match mapped {
            Some((_, name, rate)) => (name.clone(), Some(*rate)),
            None if is_dynamic(h.payload_type) => (DYNAMIC_CODEC.to_string(), None),
            None => (
                rtp::static_codec_name(h.payload_type)
                    .unwrap_or("unknown")
                    .to_string(),
                rtp::static_clock_rate(h.payload_type),
            ),
        };
        let impairment = codec::impairment(
            &codec_name,
            self.config.g711_plc,
            &self.config.codec_impairments,
            self.config.unknown_codec,
        );
        let ts = at.timestamp();
        let rtpmap = announced
            .as_ref()
            .map(|a| a.rtpmap.clone())
            .unwrap_or_default();
        let id = RtpStreamId {
            vnet: key.vnet,
            ssrc: key.ssrc,
            src_addr: key.src.ip(key.v6),
            src_port: key.src.port,
            dst_addr: key.dst.ip(key.v6),
            dst_port: key.dst.port,
            payload_type: h.payload_type,
            codec: codec_name,
            call_id: announced.and_then(|a| a.call_id),
        };
        let entry = Entry::new(key, id, rtpmap, at, h, clock, impairment, &self.config);
        let idx = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(entry);
                i
            }
            None => {
                self.slab.push(Some(entry));
                (self.slab.len() - 1) as u32
            }
        };
        if let Some(Some(e)) = self.slab.get_mut(idx as usize) {
            feed_jitter_buffers(e, at, h);
        }
        let h = self.hash(&key);
        self.streams.insert(h, idx);
        *self.pairs.entry(key.pair()).or_insert(0) += 1;
        self.queue.push_back((ts, key));
        self.stats.streams_started += 1;
    }

    fn update(
        &mut self,
        key: StreamKey,
        at: ArrivalNs,
        h: &RtpHeader,
        windows: &mut Vec<RtpWindowRecord>,
    ) {
        if let Some(i) = self.slot(&key) {
            if let Some(Some(e)) = self.slab.get_mut(i as usize) {
                update_entry(e, &self.config, at, h, windows);
            }
        }
    }

    fn expire(
        &mut self,
        now: Timestamp,
        windows: &mut Vec<RtpWindowRecord>,
        streams: &mut Vec<RtpStreamRecord>,
    ) {
        self.calls.expire(now);
        let idle_us = i64::try_from(self.config.stream_idle_secs)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        while let Some(&(queued, key)) = self.queue.front() {
            if now.micros_since(queued) < idle_us {
                break;
            }
            self.queue.pop_front();
            let entry = self.slot(&key).and_then(|i| self.slab.get(i as usize));
            let Some(Some(last)) = entry.map(|e| e.as_ref().map(|e| e.stats.last_arrival)) else {
                continue;
            };
            if now.micros_since(last) >= idle_us {
                self.finish(key, EndReason::Idle, windows, streams);
            } else {
                self.queue.push_back((last, key));
            }
        }
    }

    fn finish(
        &mut self,
        key: StreamKey,
        reason: EndReason,
        windows: &mut Vec<RtpWindowRecord>,
        streams: &mut Vec<RtpStreamRecord>,
    ) {
        let h = self.hash(&key);
        let Some(i) = self.find(h, &key) else {
            return;
        };
        self.streams.remove(h, i);
        if let hashbrown::hash_map::Entry::Occupied(mut o) = self.pairs.entry(key.pair()) {
            *o.get_mut() -= 1;
            if *o.get() == 0 {
                o.remove();
            }
        }
        let Some(mut e) = self.slab.get_mut(i as usize).and_then(Option::take) else {
            return;
        };
        self.free.push(i);
        let leg = Leg::of(e.id.src_addr, e.id.dst_addr);
        let view = self
            .rtcp
            .view(e.id.vnet, leg, e.id.ssrc, e.stats.clock_rate);
        e.rtt_ms = view.rtt_ms;
        e.stats.settle();
        close_window(&mut e, &self.config, windows);
        let whole = quality(
            &e,
            &WindowStart {
                max_jitter_ms: e.stats.max_jitter_ms,
                max_delta_ms: e.stats.max_delta_ms,
                ..WindowStart::default()
            },
            &self.config,
        );
        streams.push(RtpStreamRecord {
            start: e.stats.first_arrival,
            end: e.stats.last_arrival,
            quality: whole,
            jitter_mean_ms: e.stats.mean_jitter_or_nan(),
            seq_resets: e.stats.seq_resets,
            ts_jumps: e.stats.ts_jumps,
            payload_type_changes: e.stats.payload_type_changes,
            clock_mismatch: e.stats.clock_mismatch(),
            mirror_duplicates: e.mirror_duplicates,
            loss_runs: e.stats.loss_runs,
            loss_run_hist: e.stats.loss_run_hist,
            bursts: e.stats.bursts,
            burst_density: e.stats.burst_gap_density().0,
            gap_density: e.stats.burst_gap_density().1,
            mos_min: if e.mos_min.is_finite() {
                e.mos_min
            } else {
                f64::NAN
            },
            mos_mean: if e.mos_weight > 0.0 {
                e.mos_weighted / e.mos_weight
            } else {
                f64::NAN
            },
            mos_last: e.mos_last,
            end_reason: reason,
            rtcp: view,
            id: e.id,
            tunnel: e.tunnel,
        });
    }
}

/// Whether a packet is SIP: TCP or UDP on one of `ports`, or UDP whose
/// payload starts like SIP on any other port ([`sdp::looks_like_sip`]).
/// One test for the tracker and for the probe that routes SIP to one
/// worker, which must agree.
pub fn is_sip(d: &Decoded<'_>, ports: &[u16]) -> bool {
    match (d.ip, d.transport) {
        (
            Some(_),
            Transport::Tcp {
                src_port, dst_port, ..
            }
            | Transport::Udp { src_port, dst_port },
        ) => {
            // One inlined pass (the list is short; `contains` twice was an
            // out-of-line call per port on every packet), then the first
            // line on other ports.
            ports.iter().any(|&p| p == src_port || p == dst_port)
                || (matches!(d.transport, Transport::Udp { .. }) && sdp::looks_like_sip(d.payload))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeError, IpLayer};
    use crate::record::RtpQuality;
    use crate::voip::emodel::{self, Params};
    use std::net::Ipv4Addr;

    fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    fn udp(payload: &[u8], port: u16) -> Decoded<'_> {
        let mut d = Decoded::failed(DecodeError::UnsupportedLinkType);
        d.error = None;
        d.ip = Some(IpLayer {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            protocol: 17,
            fragment: crate::decode::Fragment::None,
        });
        d.transport = Transport::Udp {
            src_port: port,
            dst_port: port,
        };
        d.payload = payload;
        d
    }

    /// One 20 ms stream of `n` packets of payload type `pt` (timestamp step
    /// `step`), every `lose_every`th packet lost; the finished stream.
    fn one_stream(config: RtpConfig, pt: u8, step: u32, lose_every: u32) -> RtpStreamRecord {
        let mut t = RtpTracker::new(config);
        let (mut w, mut s) = (Vec::new(), Vec::new());
        for i in 0..1500u32 {
            if i % lose_every == lose_every - 1 {
                continue;
            }
            let p = rtp(pt, i as u16, step * i, 7);
            let ts = Timestamp(1_700_000_000_000_000 + i64::from(i) * 20_000);
            t.observe(ts, VnetId(0), &udp(&p, 40_000), &mut w, &mut s);
        }
        t.flush(&mut w, &mut s);
        assert_eq!(s.len(), 1, "{s:#?}");
        s.remove(0)
    }

    /// The rating the stream's own loss, burst and delay give with `imp`.
    fn expected(q: &RtpQuality, imp: Impairment) -> (f64, f64) {
        let p = Params {
            ie: imp.ie,
            bpl: imp.bpl,
            ppl_percent: q.loss_ratio * 100.0,
            burst_r: q.burst_r,
            ..Params::default()
        };
        let rate = if imp.wideband {
            emodel::rate_wideband
        } else {
            emodel::rate
        };
        (
            rate(&p).mos,
            rate(&p.with_one_way_delay(q.one_way_delay_ms)).r,
        )
    }

    #[test]
    fn lookahead_names_the_streams_index_entry_and_then_its_entry() {
        let mut t = RtpTracker::new(RtpConfig::default());
        let (mut w, mut s) = (Vec::new(), Vec::new());
        let p = rtp(0, 1, 160, 7);
        let other = rtp(0, 1, 160, 8);
        let (at, h) = t.lookahead(VnetId(0), &udp(&p, 40_000)).expect("RTP");
        assert_eq!(t.entry_ahead(h), None, "no stream yet");
        let (at_other, h_other) = t.lookahead(VnetId(0), &udp(&other, 40_000)).expect("RTP");
        assert_ne!((at, h), (at_other, h_other), "the SSRC is part of the key");
        // Not RTP: no version 2 header, or not UDP.
        assert_eq!(t.lookahead(VnetId(0), &udp(&[0u8; 20], 40_000)), None);
        let mut tcp = udp(&p, 40_000);
        tcp.transport = Transport::Tcp {
            src_port: 40_000,
            dst_port: 40_000,
            flags: 0x18,
        };
        assert_eq!(t.lookahead(VnetId(0), &tcp), None);
        for i in 0..200u32 {
            let p = rtp(0, i as u16, 160 * i, 7);
            let ts = Timestamp(1_700_000_000_000_000 + i64::from(i) * 20_000);
            t.observe(ts, VnetId(0), &udp(&p, 40_000), &mut w, &mut s);
        }
        assert_eq!(t.active_streams(), 1);
        let (entry, len) = t.entry_ahead(h).expect("the stream is held");
        let i = t.slot(&t.slab.iter().flatten().next().expect("entry").key);
        let want = t.slab.get(i.expect("slot") as usize).expect("slab");
        assert_eq!(entry, std::ptr::from_ref(want).cast::<u8>());
        assert_eq!(len, std::mem::size_of::<Option<Entry>>());
        t.flush(&mut w, &mut s);
        assert_eq!((t.active_streams(), s.len()), (0, 1));
        assert_eq!(t.entry_ahead(h), None, "gone with its stream");
    }

    #[test]
    fn the_codec_table_drives_r() {
        let cases = [
            (0u8, 160u32, codec::G711_PLC),
            (18, 160, codec::G729A),
            (4, 240, codec::G723_1_6K3),
            // G.722 is wideband and rated on the G.107.1 scale.
            (9, 160, codec::G722),
            // GSM-FR: Ie 20 from G.113, Bpl the configured default.
            (3, 160, Impairment::narrow(20.0, 10.0)),
        ];
        let mut rs = Vec::new();
        for (pt, step, imp) in cases {
            let q = one_stream(RtpConfig::default(), pt, step, 25).quality;
            assert!((q.loss_ratio - 0.04).abs() < 1e-3, "{pt}: {q:#?}");
            let (lq, r) = expected(&q, imp);
            assert!((q.mos_lq - lq).abs() < 1e-9, "{pt}: {} vs {lq}", q.mos_lq);
            assert!((q.r_factor - r).abs() < 1e-9, "{pt}: {} vs {r}", q.r_factor);
            rs.push(q.mos_lq);
        }
        // Same loss, the codec alone ranks them: G.711 with PLC above
        // G.729A above G.723.1.
        assert!(rs[0] > rs[1] && rs[1] > rs[2], "{rs:?}");
        // G.711 without PLC (Bpl 4.3) suffers more from the same loss.
        let no_plc = RtpConfig {
            g711_plc: false,
            ..RtpConfig::default()
        };
        let q = one_stream(no_plc, 0, 160, 25).quality;
        assert!((q.mos_lq - expected(&q, codec::G711_NO_PLC).0).abs() < 1e-9);
        assert!(q.mos_lq < rs[0] - 0.5, "{} vs {}", q.mos_lq, rs[0]);
    }

    #[test]
    fn an_operator_override_replaces_the_table() {
        let measured = Impairment::narrow(8.0, 30.0);
        let config = RtpConfig {
            codec_impairments: vec![("g729".into(), measured)],
            ..RtpConfig::default()
        };
        let q = one_stream(config, 18, 160, 25).quality;
        let (lq, r) = expected(&q, measured);
        assert!((q.mos_lq - lq).abs() < 1e-9 && (q.r_factor - r).abs() < 1e-9);
    }

    #[test]
    fn a_dynamic_payload_type_is_scored_once_configured() {
        let unnamed = one_stream(RtpConfig::default(), 111, 960, 25);
        assert_eq!(unnamed.id.codec, DYNAMIC_CODEC);
        assert!(unnamed.quality.mos_lq.is_nan() && unnamed.quality.r_factor.is_nan());
        assert_eq!(unnamed.quality.mos_reason, Some(MOS_REASON_DYNAMIC));

        let config = RtpConfig {
            dynamic_codecs: vec![(111, "opus".into(), 48_000)],
            ..RtpConfig::default()
        };
        let named = one_stream(config, 111, 960, 25);
        assert_eq!(named.id.codec, "opus");
        let q = &named.quality;
        assert_eq!(q.mos_reason, None);
        assert_eq!(q.packets_received, unnamed.quality.packets_received);
        let (lq, r) = expected(q, codec::OPUS_DEFAULT);
        assert!((q.mos_lq - lq).abs() < 1e-9, "{} vs {lq}", q.mos_lq);
        assert!((q.r_factor - r).abs() < 1e-9);
        // The clock is the configured one: 20 ms of 48 kHz per packet, so
        // the jitter of an evenly spaced stream is 0.
        assert!(q.jitter_max_ms.abs() < 1e-9, "{q:#?}");
        assert!(!named.clock_mismatch);
    }
}

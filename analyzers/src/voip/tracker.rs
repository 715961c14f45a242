//! Finds RTP streams in UDP traffic and keeps their statistics, bounded.
//!
//! - SIP on the configured ports (UDP) announces media endpoints through
//!   SDP; a stream to or from an announced endpoint is tracked from its
//!   first packet, with the rtpmap's codec and clock rate.
//! - Other streams are found by a heuristic: both ports ≥ 1024, a valid
//!   version-2 header with a static payload type of known clock, and
//!   `confirm_packets` packets of one SSRC whose sequence numbers step by
//!   one and whose timestamps advance by at most one second of audio each;
//!   a dynamic payload type (96-127) without SDP needs twice as many (at
//!   least 8) of one type, gets codec `dynamic-PT`, an inferred clock and
//!   no MOS (`mos_reason`).
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

use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::decode::{Decoded, Transport};
use crate::flow::key::Endpoint;
use crate::record::{
    CallRecord, EndReason, JbQuality, RtcpView, RtpQuality, RtpStreamId, RtpStreamRecord,
    RtpWindowRecord, TunnelInfo,
};
use crate::time::Timestamp;
use crate::vnet::VnetId;
use crate::voip::codec::{self, Impairment};
use crate::voip::emodel::{self, Params};
use crate::voip::jitter_buffer::{JbCounters, JbPacket, JitterBuffers, Model, MODEL_COUNT};
use crate::voip::rtcp;
use crate::voip::rtp::{self, RtpHeader};
use crate::voip::sdp;
use crate::voip::stream::{ArrivalNs, StreamStats};

/// RTP analysis settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RtpConfig {
    /// UDP ports carrying SIP. Default [5060].
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StreamKey {
    vnet: VnetId,
    src: Endpoint,
    dst: Endpoint,
    v6: bool,
    ssrc: u32,
}

#[derive(Clone, Debug)]
struct Announced {
    rtpmap: Vec<(u8, String, u32)>,
    call_id: Option<String>,
}

#[derive(Clone, Copy, Debug, Default)]
struct WindowStart {
    index: i64,
    packets: u64,
    expected: i64,
    duplicates: u64,
    reordered: u64,
    jb: [JbCounters; MODEL_COUNT],
    runs: u64,
    run_packets: u64,
    max_jitter_ms: f64,
    max_delta_ms: f64,
    /// First extended sequence number of a window (its loss runs are those
    /// at or after it); `None` for a stream's whole life.
    first_ext: Option<i64>,
    /// Packets per payload type in the window (the first 4 types seen), for
    /// the window's codec.
    pts: [(u8, u64); 4],
}

#[derive(Debug)]
struct Entry {
    id: RtpStreamId,
    /// The tunnel of the stream's first packet (the record's columns).
    tunnel: TunnelInfo,
    rtpmap: Vec<(u8, String, u32)>,
    stats: StreamStats,
    impairment: Impairment,
    window: WindowStart,
    /// The configured jitter-buffer models, by [`Model::index`].
    jbs: JitterBuffers,
    /// The default model (falls back to the first configured one).
    default_jb: Model,
    mos_min: f64,
    mos_weighted: f64,
    mos_weight: f64,
    mos_last: f64,
    /// Latest RTCP round trip for this stream, used for the delay.
    rtt_ms: Option<f64>,
    /// The last packet, to recognise its mirror copy.
    last: LastPacket,
    mirror_duplicates: u64,
}

/// What identifies a packet's mirror copy: sequence, timestamp, payload
/// hash and arrival.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LastPacket {
    sequence: u16,
    timestamp: u32,
    hash: u64,
    arrival_ns: i64,
}

impl LastPacket {
    fn of(at: ArrivalNs, h: &RtpHeader, hash: u64) -> LastPacket {
        LastPacket {
            sequence: h.sequence,
            timestamp: h.timestamp,
            hash,
            arrival_ns: at.0,
        }
    }

    /// Whether `next` is this packet again within `window_us`.
    fn is_mirrored_by(&self, next: &LastPacket, window_us: u64) -> bool {
        self.sequence == next.sequence
            && self.timestamp == next.timestamp
            && self.hash == next.hash
            && u64::try_from(next.arrival_ns - self.arrival_ns)
                .is_ok_and(|d| d <= window_us.saturating_mul(1000))
    }
}

fn payload_hash(payload: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6d6f6e69).hash_one(payload)
}

#[derive(Debug, Default)]
struct Candidate {
    packets: Vec<(ArrivalNs, RtpHeader)>,
    last: LastPacket,
    /// Mirror copies seen while a candidate (passed on to the stream).
    mirrored: u64,
}

pub struct RtpTracker {
    config: RtpConfig,
    /// Stream key to slot in `slab`: a compact index keeps the hash table
    /// small and cache-friendly; entries live in the slab.
    streams: HashMap<StreamKey, u32, foldhash::fast::RandomState>,
    slab: Vec<Option<Entry>>,
    free: Vec<u32>,
    queue: VecDeque<(Timestamp, StreamKey)>,
    candidates: HashMap<StreamKey, Candidate, foldhash::fast::RandomState>,
    candidate_order: VecDeque<StreamKey>,
    announced: HashMap<(VnetId, Endpoint), Announced, foldhash::fast::RandomState>,
    announced_order: VecDeque<(VnetId, Endpoint)>,
    calls: HashMap<(VnetId, String), CallRecord, foldhash::fast::RandomState>,
    call_order: VecDeque<(VnetId, String)>,
    finished_calls: Vec<CallRecord>,
    /// RTCP state per (VNet, media SSRC): capture times of its recent
    /// sender reports (by NTP middle 32 bits) and the latest view.
    rtcp: HashMap<(VnetId, u32), RtcpState, foldhash::fast::RandomState>,
    rtcp_order: VecDeque<(VnetId, u32)>,
    stats: RtpStats,
}

#[derive(Clone, Debug, Default)]
struct RtcpState {
    sender_reports: VecDeque<(u32, Timestamp)>,
    view: RtcpView,
    /// Jitter in timestamp units, converted with the stream's clock.
    remote_jitter_units: Option<u32>,
}

fn window_index(ts: Timestamp, secs: u32) -> i64 {
    ts.secs_floor().div_euclid(i64::from(secs.max(1)))
}

impl RtpTracker {
    pub fn new(config: RtpConfig) -> Self {
        RtpTracker {
            config,
            streams: HashMap::default(),
            slab: Vec::new(),
            free: Vec::new(),
            queue: VecDeque::new(),
            candidates: HashMap::default(),
            candidate_order: VecDeque::new(),
            announced: HashMap::default(),
            announced_order: VecDeque::new(),
            calls: HashMap::default(),
            call_order: VecDeque::new(),
            finished_calls: Vec::new(),
            rtcp: HashMap::default(),
            rtcp_order: VecDeque::new(),
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
        let at = ArrivalNs::new(ts, nanos);
        self.expire(ts, windows, streams);
        // SIP over TCP: one message per segment (no stream reassembly).
        if self.is_sip(d) {
            if let Some(msg) = sdp::parse_sip(d.payload) {
                self.signalling(ts, vnet, msg);
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
                self.rtcp_report(ts, vnet, &rtcp::parse_compound(payload));
            }
            // Neither RTCP nor RTP (payload types 72-79 with the marker).
            return;
        }
        let Some(h) = RtpHeader::parse(payload) else {
            return;
        };
        let key = StreamKey {
            vnet,
            src: Endpoint::new(ip.src, src_port),
            dst: Endpoint::new(ip.dst, dst_port),
            v6: ip.src.is_ipv6(),
            ssrc: h.ssrc,
        };
        let this = LastPacket::of(at, &h, payload_hash(payload));
        let mirror_us = self.config.mirror_dup_window_us;
        if let Some(&i) = self.streams.get(&key) {
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
                    e.rtt_ms = self
                        .rtcp
                        .get(&(vnet, h.ssrc))
                        .and_then(|st| st.view.rtt_ms)
                        .or(e.rtt_ms);
                }
                update_entry(e, &self.config, at, &h, windows);
                return;
            }
        }
        let announced = self
            .announced
            .get(&(vnet, key.dst))
            .or_else(|| self.announced.get(&(vnet, key.src)))
            .cloned();
        if let Some(a) = announced {
            self.stats.rtp_packets += 1;
            self.start(key, at, &h, Some(a), windows, streams);
            self.set_last(key, this);
            self.set_tunnel(key, d);
            return;
        }
        // Dynamic payload types without SDP (WebRTC, SRTP, WhatsApp) are
        // believed after twice as many packets (at least 8) of one payload
        // type; their clock is inferred later.
        let dynamic = is_dynamic(h.payload_type);
        if src_port < 1024
            || dst_port < 1024
            || (!dynamic && rtp::static_clock_rate(h.payload_type).is_none())
        {
            return;
        }
        let confirm = if dynamic {
            (2 * self.config.confirm_packets).max(8)
        } else {
            self.config.confirm_packets.max(1)
        };
        let confirmed = {
            if !self.candidates.contains_key(&key) {
                if self.candidates.len() >= self.config.max_candidates {
                    self.evict_candidate();
                }
                self.candidates.insert(key, Candidate::default());
                self.candidate_order.push_back(key);
            }
            let Some(c) = self.candidates.get_mut(&key) else {
                return;
            };
            if !c.packets.is_empty() && c.last.is_mirrored_by(&this, mirror_us) {
                self.stats.mirror_duplicates += 1;
                c.mirrored += 1;
                return;
            }
            c.last = this;
            let plausible = c.packets.last().is_none_or(|(_, prev)| {
                let ts_step = h.timestamp.wrapping_sub(prev.timestamp);
                h.sequence == prev.sequence.wrapping_add(1)
                    && ts_step <= 48_000
                    && (!dynamic || h.payload_type == prev.payload_type)
            });
            if !plausible {
                c.packets.clear();
            }
            c.packets.push((at, h));
            c.packets.len() >= confirm
        };
        if confirmed {
            if let Some(c) = self.candidates.remove(&key) {
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
                    if let Some(Some(e)) = self
                        .streams
                        .get(&key)
                        .and_then(|&i| self.slab.get_mut(i as usize))
                    {
                        e.mirror_duplicates += c.mirrored;
                    }
                }
            }
        }
    }

    fn set_last(&mut self, key: StreamKey, last: LastPacket) {
        if let Some(&i) = self.streams.get(&key) {
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
                self.announce(vnet, m.clone(), msg.call_id.clone());
            }
        }
    }

    /// Whether a decoded packet is SIP on the configured ports.
    pub fn is_sip(&self, d: &Decoded<'_>) -> bool {
        match (d.ip, d.transport) {
            (
                Some(_),
                Transport::Tcp {
                    src_port, dst_port, ..
                }
                | Transport::Udp { src_port, dst_port },
            ) => {
                self.config.sip_ports.contains(&src_port)
                    || self.config.sip_ports.contains(&dst_port)
            }
            _ => false,
        }
    }

    /// Calls open now.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Open streams and calls per VNet, indexed by [`VnetId`] (`vnets`
    /// entries). A scan of the tables: call it on a clock tick, not per packet.
    pub fn active_by_vnet(&self, vnets: usize) -> (Vec<u64>, Vec<u64>) {
        let mut streams = vec![0u64; vnets];
        let mut calls = vec![0u64; vnets];
        for k in self.streams.keys() {
            if let Some(n) = streams.get_mut(usize::from(k.vnet.0)) {
                *n += 1;
            }
        }
        for (vnet, _) in self.calls.keys() {
            if let Some(n) = calls.get_mut(usize::from(vnet.0)) {
                *n += 1;
            }
        }
        (streams, calls)
    }

    /// Takes the finished call records.
    pub fn take_calls(&mut self) -> Vec<CallRecord> {
        std::mem::take(&mut self.finished_calls)
    }

    /// Follows a call's signalling: INVITE opens it, 18x gives the
    /// post-dial delay, 200 the answer, BYE/CANCEL/final errors end it.
    fn signalling(&mut self, ts: Timestamp, vnet: VnetId, msg: sdp::SipMessage) {
        self.stats.sip_messages += 1;
        for m in &msg.media {
            self.announce(vnet, m.clone(), msg.call_id.clone());
        }
        let Some(call_id) = msg.call_id.clone() else {
            return;
        };
        let key = (vnet, call_id);
        let method = msg.method.as_deref();
        let cseq_method = msg.cseq.as_ref().map(|(_, m)| m.as_str());
        if method == Some("INVITE") && !self.calls.contains_key(&key) {
            if self.calls.len() >= self.config.max_calls.max(1) {
                self.evict_call();
            }
            self.stats.calls_started += 1;
            if self.call_order.len() > 2 * self.calls.len() + 1024 {
                let calls = &self.calls;
                self.call_order.retain(|k| calls.contains_key(k));
            }
            self.call_order.push_back(key.clone());
            self.calls.insert(
                key.clone(),
                CallRecord {
                    vnet,
                    call_id: key.1.clone(),
                    caller: msg.from.clone().unwrap_or_default(),
                    callee: msg.to.clone().unwrap_or_default(),
                    invite_time: ts,
                    answer_time: None,
                    end_time: None,
                    end_reason: String::new(),
                    post_dial_delay_ms: None,
                    media: String::new(),
                    sip_messages: 0,
                },
            );
        }
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.sip_messages += 1;
        for m in &msg.media {
            let ep = format!("{}:{}", m.addr, m.port);
            if !call.media.split(',').any(|e| e == ep) {
                if !call.media.is_empty() {
                    call.media.push(',');
                }
                call.media.push_str(&ep);
            }
        }
        let since_invite = ts.micros_since(call.invite_time) as f64 / 1000.0;
        let end = match (method, msg.status, cseq_method) {
            (_, Some(180 | 183), Some("INVITE")) => {
                call.post_dial_delay_ms.get_or_insert(since_invite);
                None
            }
            (_, Some(200..=299), Some("INVITE")) => {
                call.answer_time.get_or_insert(ts);
                None
            }
            // 401/407 challenge the INVITE; the caller retries in the
            // same call with credentials.
            (_, Some(401 | 407), Some("INVITE")) => None,
            (_, Some(code @ 300..=699), Some("INVITE")) if call.answer_time.is_none() => {
                Some(if code == 487 {
                    "cancel".to_string()
                } else {
                    format!("rejected_{code}")
                })
            }
            (Some("BYE"), _, _) => Some("bye".to_string()),
            (Some("CANCEL"), _, _) => Some("cancel".to_string()),
            _ => None,
        };
        if let Some(reason) = end {
            if let Some(mut c) = self.calls.remove(&key) {
                c.end_time = Some(ts);
                c.end_reason = reason;
                self.finished_calls.push(c);
            }
        }
    }

    fn rtcp_state(&mut self, key: (VnetId, u32)) -> &mut RtcpState {
        if !self.rtcp.contains_key(&key) {
            if self.rtcp.len() >= self.config.max_streams.max(1) {
                while let Some(old) = self.rtcp_order.pop_front() {
                    if self.rtcp.remove(&old).is_some() {
                        break;
                    }
                }
            }
            self.rtcp_order.push_back(key);
        }
        self.rtcp.entry(key).or_default()
    }

    /// Learns from an RTCP compound packet: sender reports are remembered
    /// by their NTP time; a report block echoing one gives the round trip
    /// (RFC 3550 §6.4.1, measured at the probe), plus the far end's loss
    /// and jitter; an XR VoIP metrics block gives its own MOS.
    fn rtcp_report(&mut self, ts: Timestamp, vnet: VnetId, r: &rtcp::Rtcp) {
        for &(ssrc, ntp) in &r.sender_reports {
            let st = self.rtcp_state((vnet, ssrc));
            st.sender_reports.push_back((ntp, ts));
            if st.sender_reports.len() > 8 {
                st.sender_reports.pop_front();
            }
        }
        for b in &r.blocks {
            let st = self.rtcp_state((vnet, b.source));
            if b.lsr != 0 {
                if let Some(&(_, t_sr)) = st.sender_reports.iter().find(|(n, _)| *n == b.lsr) {
                    let rtt_ms = ts.micros_since(t_sr) as f64 / 1000.0
                        - f64::from(b.dlsr) * 1000.0 / 65536.0;
                    if rtt_ms >= 0.0 {
                        st.view.rtt_ms = Some(rtt_ms);
                    }
                }
            }
            st.view.remote_fraction_lost = Some(b.fraction_lost);
            st.view.remote_cumulative_lost = Some(i64::from(b.cumulative_lost));
            st.remote_jitter_units = Some(b.jitter);
        }
        for &(_, source, _, _, mos_cq) in &r.voip_metrics {
            if let Some(m) = mos_cq {
                self.rtcp_state((vnet, source)).view.remote_mos_cq = Some(m);
            }
        }
    }

    /// The RTCP view of a stream, jitter converted with its clock rate.
    fn rtcp_view(&self, vnet: VnetId, ssrc: u32, clock: Option<u32>) -> RtcpView {
        let Some(st) = self.rtcp.get(&(vnet, ssrc)) else {
            return RtcpView::default();
        };
        let mut v = st.view;
        v.remote_jitter_ms = match (st.remote_jitter_units, clock) {
            (Some(j), Some(rate)) if rate > 0 => Some(f64::from(j) * 1000.0 / f64::from(rate)),
            _ => None,
        };
        v
    }

    fn evict_call(&mut self) {
        while let Some(old) = self.call_order.pop_front() {
            if let Some(mut c) = self.calls.remove(&old) {
                c.end_reason = "evicted".into();
                self.finished_calls.push(c);
                self.stats.calls_evicted += 1;
                return;
            }
        }
    }

    /// Ends every stream and call (end of input).
    pub fn flush(
        &mut self,
        windows: &mut Vec<RtpWindowRecord>,
        streams: &mut Vec<RtpStreamRecord>,
    ) {
        for key in std::mem::take(&mut self.call_order) {
            if let Some(mut c) = self.calls.remove(&key) {
                c.end_reason = "end_of_input".into();
                self.finished_calls.push(c);
            }
        }
        let keys: Vec<StreamKey> = self.queue.drain(..).map(|(_, k)| k).collect();
        for k in keys {
            self.finish(k, EndReason::EndOfInput, windows, streams);
        }
        // Streams not in the queue cannot exist, but be sure nothing is lost.
        let rest: Vec<StreamKey> = self.streams.keys().copied().collect();
        for k in rest {
            self.finish(k, EndReason::EndOfInput, windows, streams);
        }
    }

    fn announce(&mut self, vnet: VnetId, m: sdp::Media, call_id: Option<String>) {
        let key = (vnet, Endpoint::new(m.addr, m.port));
        if !self.announced.contains_key(&key) {
            if self.announced.len() >= self.config.max_announced {
                if let Some(old) = self.announced_order.pop_front() {
                    self.announced.remove(&old);
                    self.stats.announced_evicted += 1;
                }
            }
            self.announced_order.push_back(key);
        }
        self.announced.insert(
            key,
            Announced {
                rtpmap: m.rtpmap,
                call_id,
            },
        );
    }

    /// Evicts the oldest candidate, but spares (moves to the back) up to
    /// [`SPARE_STEPPED`] candidates that already stepped by one: a flood of
    /// one-packet candidates then cannot starve a real stream that needs a
    /// few more packets to be confirmed.
    fn evict_candidate(&mut self) {
        let mut spared = 0;
        while let Some(old) = self.candidate_order.pop_front() {
            match self.candidates.get(&old) {
                None => continue,
                Some(c) if c.packets.len() >= 2 && spared < SPARE_STEPPED => {
                    spared += 1;
                    self.candidate_order.push_back(old);
                }
                Some(_) => {
                    self.candidates.remove(&old);
                    self.stats.candidates_evicted += 1;
                    return;
                }
            }
        }
    }

    /// Records the tunnel of a new stream's first packet.
    fn set_tunnel(&mut self, key: StreamKey, d: &Decoded<'_>) {
        if d.tunnels.is_empty() {
            return;
        }
        if let Some(&i) = self.streams.get(&key) {
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
                    if self.streams.contains_key(&old) {
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
        let stats = StreamStats::new(at, h, clock);
        let rtpmap = announced
            .as_ref()
            .map(|a| a.rtpmap.clone())
            .unwrap_or_default();
        let entry = Entry {
            rtpmap,
            id: RtpStreamId {
                vnet: key.vnet,
                ssrc: key.ssrc,
                src_addr: key.src.ip(key.v6),
                src_port: key.src.port,
                dst_addr: key.dst.ip(key.v6),
                dst_port: key.dst.port,
                payload_type: h.payload_type,
                codec: codec_name,
                call_id: announced.and_then(|a| a.call_id),
            },
            window: WindowStart {
                index: window_index(ts, self.config.window_secs),
                first_ext: Some(stats.extended_max()),
                pts: [(h.payload_type, 1), (0, 0), (0, 0), (0, 0)],
                ..WindowStart::default()
            },
            jbs: JitterBuffers::new(&self.config.jitter_buffers),
            default_jb: if self
                .config
                .jitter_buffers
                .contains(&self.config.default_jitter_buffer)
            {
                self.config.default_jitter_buffer
            } else {
                self.config
                    .jitter_buffers
                    .first()
                    .copied()
                    .unwrap_or(self.config.default_jitter_buffer)
            },
            impairment,
            stats,
            mos_min: f64::INFINITY,
            mos_weighted: 0.0,
            mos_weight: 0.0,
            mos_last: f64::NAN,
            rtt_ms: None,
            last: LastPacket::default(),
            mirror_duplicates: 0,
            tunnel: TunnelInfo::default(),
        };
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
        self.streams.insert(key, idx);
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
        if let Some(&i) = self.streams.get(&key) {
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
        let idle_us = i64::try_from(self.config.stream_idle_secs)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        while let Some(&(queued, key)) = self.queue.front() {
            if now.micros_since(queued) < idle_us {
                break;
            }
            self.queue.pop_front();
            let entry = self
                .streams
                .get(&key)
                .and_then(|&i| self.slab.get(i as usize));
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
        let Some(i) = self.streams.remove(&key) else {
            return;
        };
        let Some(mut e) = self.slab.get_mut(i as usize).and_then(Option::take) else {
            return;
        };
        self.free.push(i);
        let view = self.rtcp_view(e.id.vnet, e.id.ssrc, e.stats.clock_rate);
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
            jitter_mean_ms: e.stats.mean_jitter_ms,
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

/// Counts one packet of a known stream.
fn update_entry(
    e: &mut Entry,
    config: &RtpConfig,
    at: ArrivalNs,
    h: &RtpHeader,
    windows: &mut Vec<RtpWindowRecord>,
) {
    let index = window_index(at.timestamp(), config.window_secs);
    if index > e.window.index {
        close_window(e, config, windows);
        e.window = snapshot(e, index);
    }
    let clock = packet_clock(e, h.payload_type);
    e.stats.observe(at, h, clock);
    if let Some(slot) = e
        .window
        .pts
        .iter_mut()
        .find(|(pt, n)| *n == 0 || *pt == h.payload_type)
    {
        *slot = (h.payload_type, slot.1 + 1);
    }
    if let Some(d) = e.stats.last_regular_delta_ms {
        e.window.max_delta_ms = e.window.max_delta_ms.max(d);
        if packet_clock(e, e.id.payload_type).is_some() {
            e.window.max_jitter_ms = e.window.max_jitter_ms.max(e.stats.jitter_ms);
        }
    }
    feed_jitter_buffers(e, at, h);
}

/// Stepped candidates an eviction may pass over before it takes one anyway.
const SPARE_STEPPED: usize = 8;

/// Codec name of a stream with a dynamic payload type and no SDP.
pub const DYNAMIC_CODEC: &str = "dynamic-PT";

/// Why a stream has no MOS.
pub const MOS_REASON_DYNAMIC: &str = "dynamic payload type without SDP: codec unknown";

fn is_dynamic(pt: u8) -> bool {
    (96..=127).contains(&pt)
}

/// Gives one packet to every configured jitter-buffer model.
/// Telephone-event and comfort noise are never late.
fn feed_jitter_buffers(e: &mut Entry, at: ArrivalNs, h: &RtpHeader) {
    let mut clock = packet_clock(e, h.payload_type);
    // Timestamps that run at another clock than announced would make every
    // packet late or early: the buffers follow the inferred clock.
    if h.payload_type == e.id.payload_type && e.stats.clock_mismatch() {
        clock = e.stats.inferred_clock();
    }
    let p = JbPacket {
        arrival_ns: at.0,
        timestamp: h.timestamp,
        sequence: h.sequence,
        marker: h.marker,
        clock_rate: clock,
        never_late: clock.is_none() || rtp::is_comfort_noise(h.payload_type),
    };
    e.jbs.push(&p);
}

/// Clock rate of a packet's payload type within its stream: the rtpmap's,
/// else the static table's; none for telephone-event (RFC 4733), whose
/// timestamps mark event starts rather than media time.
fn packet_clock(e: &Entry, pt: u8) -> Option<u32> {
    if pt == e.id.payload_type {
        // A dynamic payload type without SDP: the clock once inferred.
        return e.stats.clock_rate.or_else(|| e.stats.inferred_clock());
    }
    match e.rtpmap.iter().find(|(p, _, _)| *p == pt) {
        Some((_, name, _)) if name.eq_ignore_ascii_case("telephone-event") => None,
        Some((_, _, rate)) => Some(*rate),
        None => rtp::static_clock_rate(pt),
    }
}

/// Encoding name of payload type `pt` within a stream: the rtpmap's, the
/// static table's, else `dynamic-PT` or `unknown`.
fn codec_name(e: &Entry, pt: u8) -> String {
    if let Some((_, name, _)) = e.rtpmap.iter().find(|(p, _, _)| *p == pt) {
        return name.clone();
    }
    match rtp::static_codec_name(pt) {
        Some(n) => n.to_string(),
        None if is_dynamic(pt) => DYNAMIC_CODEC.to_string(),
        None => "unknown".to_string(),
    }
}

/// Cumulative counters of every model (zero for models not configured).
fn jb_counters(e: &Entry) -> [JbCounters; MODEL_COUNT] {
    let mut c = [JbCounters::default(); MODEL_COUNT];
    for m in Model::ALL {
        if let Some(jb) = e.jbs.counters(m) {
            c[m.index()] = *jb;
        }
    }
    c
}

fn snapshot(e: &mut Entry, index: i64) -> WindowStart {
    let first_ext = e.stats.extended_max() + 1;
    e.stats.forget_runs_before(first_ext);
    WindowStart {
        first_ext: Some(first_ext),
        index,
        packets: e.stats.packets,
        expected: e.stats.expected(),
        duplicates: e.stats.duplicates,
        reordered: e.stats.reordered,
        jb: jb_counters(e),
        runs: e.stats.loss_runs,
        run_packets: e.stats.loss_run_packets,
        max_jitter_ms: 0.0,
        max_delta_ms: 0.0,
        pts: [(0, 0); 4],
    }
}

/// Quality since `from` (a window start, or the zero start for a whole life).
fn quality(e: &Entry, from: &WindowStart, config: &RtpConfig) -> RtpQuality {
    let s = &e.stats;
    let received = s.packets - from.packets;
    let expected = s.expected() - from.expected;
    let lost = expected - received as i64;
    // A window's runs are those whose positions fall in it; a whole
    // life's are the settled RFC 3611 runs.
    let (runs, run_packets) = match from.first_ext {
        Some(first) => s.runs_since(first),
        None => (
            s.loss_runs - from.runs,
            s.loss_run_packets - from.run_packets,
        ),
    };
    // One-way network delay: half the RTCP round trip when known.
    let network = e.rtt_ms.map_or(config.network_delay_ms, |rtt| rtt / 2.0);
    let ratio = |discards: u64| {
        if expected > 0 {
            ((lost.max(0) as f64 + discards as f64) / expected as f64).clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let burst = |loss_ratio: f64| {
        if runs > 0 {
            (run_packets as f64 / runs as f64 * (1.0 - loss_ratio)).max(1.0)
        } else {
            1.0
        }
    };
    let score = |discards: u64, jb_delay_ms: f64| {
        let loss_ratio = ratio(discards);
        let burst_r = burst(loss_ratio);
        let base = Params {
            ie: e.impairment.ie,
            bpl: e.impairment.bpl,
            ppl_percent: loss_ratio * 100.0,
            burst_r,
            ..Params::default()
        };
        // Wideband codecs are rated on the G.107.1 scale.
        let rate = if e.impairment.wideband {
            emodel::rate_wideband
        } else {
            emodel::rate
        };
        let lq = rate(&base);
        let delay = network + jb_delay_ms + 20.0;
        let cq = rate(&base.with_one_way_delay(delay));
        (loss_ratio, burst_r, lq, cq, delay)
    };
    // No MOS without a codec: the E-model's Ie and Bpl are the codec's.
    let mos_reason = (e.id.codec == DYNAMIC_CODEC).then_some(MOS_REASON_DYNAMIC);
    let score = |discards: u64, jb_delay_ms: f64| {
        let (loss_ratio, burst_r, mut lq, mut cq, delay) = score(discards, jb_delay_ms);
        if mos_reason.is_some() {
            (lq.mos, lq.r, cq.mos, cq.r) = (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
        }
        (loss_ratio, burst_r, lq, cq, delay)
    };
    let mut jb = [None; MODEL_COUNT];
    let now = jb_counters(e);
    for m in Model::ALL {
        if !e.jbs.has(m) {
            continue;
        }
        let i = m.index();
        let discards = now[i].discards - from.jb[i].discards;
        let delay_ms = now[i]
            .mean_delay_since(&from.jb[i])
            .unwrap_or(m.nominal_ms());
        let (_, _, lq, cq, _) = score(discards, delay_ms);
        jb[i] = Some(JbQuality {
            discards,
            delay_ms,
            r_factor: cq.r,
            mos_lq: lq.mos,
            mos_cq: cq.mos,
        });
    }
    let d = e.default_jb;
    let default = jb[d.index()];
    let discards = default.map_or(0, |q| q.discards);
    let (loss_ratio, burst_r, lq, cq, delay) =
        score(discards, default.map_or(d.nominal_ms(), |q| q.delay_ms));
    RtpQuality {
        packets_received: received,
        packets_expected: expected,
        packets_lost: lost,
        duplicates: s.duplicates - from.duplicates,
        reordered: s.reordered - from.reordered,
        jb_discards: discards,
        jitter_ms: s.jitter_ms,
        jitter_max_ms: from.max_jitter_ms,
        max_delta_ms: from.max_delta_ms,
        loss_ratio,
        burst_r,
        r_factor: cq.r,
        mos_lq: lq.mos,
        mos_cq: cq.mos,
        one_way_delay_ms: delay,
        jitter_buffer: d.name(),
        jb,
        mos_reason,
    }
}

fn close_window(e: &mut Entry, config: &RtpConfig, out: &mut Vec<RtpWindowRecord>) {
    if e.stats.packets == e.window.packets {
        return;
    }
    let q = quality(e, &e.window, config);
    let weight = f64::from(config.window_secs.max(1));
    // The minimum over models and windows.
    e.mos_min =
        q.jb.iter()
            .flatten()
            .fold(e.mos_min.min(q.mos_cq), |m, j| m.min(j.mos_cq));
    e.mos_weighted += q.mos_cq * weight;
    e.mos_weight += weight;
    e.mos_last = q.mos_cq;
    // The window's codec is the one that carried most of its packets.
    let mut id = e.id.clone();
    if let Some(&(pt, _)) = e.window.pts.iter().max_by_key(|(_, n)| *n) {
        if e.window.pts.iter().any(|(_, n)| *n > 0) && pt != id.payload_type {
            id.codec = codec_name(e, pt);
            id.payload_type = pt;
        }
    }
    out.push(RtpWindowRecord {
        id,
        window_start: Timestamp::from_secs(e.window.index * i64::from(config.window_secs.max(1))),
        window_secs: config.window_secs,
        quality: q,
        capture_drops: 0,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeError, IpLayer};
    use crate::voip::emodel::Params;
    use std::net::{IpAddr, Ipv4Addr};

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

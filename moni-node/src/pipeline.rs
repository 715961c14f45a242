//! The analysis engine of one worker ([`crate::worker`]), whatever the
//! source: decode (with tunnel reassembly), VNet tagging, counters, time
//! bins, flows, RTP and SIP, signatures (the cross-flow IDS detectors run
//! in the capture loop instead, which sees every packet; an `Engine` built
//! with `[ids] enabled` runs them too, for a caller that is the only
//! worker). Finished records are buffered here until the worker hands
//! them to the sinks as one [`crate::sink::Records`].

use std::sync::Arc;

use analyzers::bins::Binner;
use analyzers::decode::DecodeErrorCounts;
use analyzers::flow::{FlowPacket, FlowStats, FlowTable};

use analyzers::decode::Fragment;
use analyzers::decode::{Reassembled, Reassembler, ReassemblyStats};
use analyzers::ids::rules::gate::FullWindows;
use analyzers::ids::rules::{PacketInfo, RuleSet, Signatures};
use analyzers::ids::Ids;
use analyzers::record::{AlertRecord, BinRecord, FlowRecord, RtpStreamRecord, RtpWindowRecord};
use analyzers::vnet::{VnetId, VnetMap};
use analyzers::voip::{RtpStats, RtpTracker};
use analyzers::{decode_with, DecodeError, Decoded, LinkType};

use crate::capture::RawPacket;
use crate::config::Resolved;

/// The reassembly tag of a frame whose source has no VNet of its own.
const NO_SOURCE_VNET: u16 = u16::MAX;

/// Traffic counters of one VNet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VnetCounters {
    pub packets: u64,
    pub bytes: u64,
    /// Flow records exported for this VNet.
    pub flows: u64,
}

/// Finished RTP streams of one VNet.
#[derive(Clone, Debug, PartialEq)]
pub struct VoipCounters {
    pub streams: u64,
    pub packets_received: u64,
    pub packets_lost: i64,
    /// Sum and minimum of the streams' whole-life MOS-CQ.
    pub mos_cq_sum: f64,
    pub mos_cq_min: f64,
    /// Streams with a MOS (the mean's divisor).
    pub mos_streams: u64,
    /// Mirror copies of the streams' packets (SPAN of both directions).
    pub mirror_duplicates: u64,
}

impl Default for VoipCounters {
    fn default() -> Self {
        VoipCounters {
            streams: 0,
            packets_received: 0,
            packets_lost: 0,
            mos_cq_sum: 0.0,
            mos_cq_min: f64::INFINITY,
            mos_streams: 0,
            mirror_duplicates: 0,
        }
    }
}

/// Counters of everything the engine saw.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub packets: u64,
    /// Wire bytes.
    pub bytes: u64,
    pub decode_errors: DecodeErrorCounts,
    /// Indexed by [`VnetId`].
    pub vnets: Vec<VnetCounters>,
    /// Indexed by [`VnetId`].
    pub voip: Vec<VoipCounters>,
    /// IDS alerts taken, by kind.
    pub alerts: std::collections::BTreeMap<&'static str, u64>,
    /// Reassembly of fragmented tunnel packets.
    pub reassembly: ReassemblyStats,
}

pub struct Engine {
    vnets: VnetMap,
    /// `[decode]`: tunnel ports, depth and MPLS payload.
    decode: analyzers::DecodeConfig,
    /// Fragmented outer packets of tunnels being put back together.
    reassembly: Reassembler,
    /// The newest packet time seen (for what the end of the input gives up).
    last_ts: analyzers::Timestamp,
    flows: FlowTable,
    bins: Binner,
    rtp: RtpTracker,
    counters: Counters,
    flow_out: Vec<FlowRecord>,
    bin_out: Vec<BinRecord>,
    rtp_window_out: Vec<RtpWindowRecord>,
    rtp_stream_out: Vec<RtpStreamRecord>,
    ids: Option<Ids>,
    /// The signature engine, when rules are loaded.
    sigs: Option<Signatures>,
    /// The counters of the rule sets a reload replaced, so that the
    /// summary counts the whole run.
    sigs_replaced: Option<analyzers::ids::rules::SignatureStats>,
    /// `[ids] alert_packet`: signature alerts carry their packet.
    alert_packet: bool,
    /// IP fragments put back together for the signatures (which match
    /// whole datagrams, as Suricata's do), when rules are loaded; flows,
    /// bins and the detectors count the fragments themselves.
    sig_defrag: Option<Reassembler>,
    alert_out: Vec<AlertRecord>,
    /// See [`Engine::gate_signatures`].
    gate: Option<Arc<FullWindows>>,
}

/// Compiles the rules of `rules` with the caps of `ids` (`None` without
/// rules). Called off the analysis thread on a reload: a large rule set
/// takes a while.
pub fn compile(rules: &RuleSet, ids: &analyzers::ids::IdsConfig) -> Option<Signatures> {
    (!rules.rules.is_empty())
        .then(|| Signatures::new(rules, ids.max_tracked).with_limits(ids.alert_limits()))
}

/// The hashes of a packet's flow and RTP stream, from [`Engine::prefetch`]
/// for [`Engine::prefetch_slot`], and then for [`Engine::process`] of the
/// same packet, whose lookups need not hash the keys again.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ahead {
    flow: Option<u32>,
    stream: Option<u32>,
}

impl Engine {
    pub fn new(config: &Resolved) -> Engine {
        Engine {
            counters: Counters {
                vnets: vec![VnetCounters::default(); config.vnets.len()],
                voip: vec![VoipCounters::default(); config.vnets.len()],
                ..Counters::default()
            },
            vnets: config.vnets.clone(),
            decode: config.decode.clone(),
            reassembly: Reassembler::new(&config.decode),
            last_ts: analyzers::Timestamp(0),
            flows: FlowTable::new(config.flows.clone()),
            bins: Binner::new(config.bins.clone()),
            rtp: RtpTracker::new(config.rtp.clone()),
            flow_out: Vec::new(),
            bin_out: Vec::new(),
            rtp_window_out: Vec::new(),
            rtp_stream_out: Vec::new(),
            ids: config.ids.enabled.then(|| Ids::new(&config.ids)),
            sigs: compile(&config.rules, &config.ids),
            sigs_replaced: None,
            alert_packet: config.ids.alert_packet,
            sig_defrag: (!config.rules.rules.is_empty())
                .then(|| Reassembler::for_signatures(&config.decode)),
            alert_out: Vec::new(),
            gate: None,
        }
    }

    pub fn vnets(&self) -> &VnetMap {
        &self.vnets
    }

    /// The decoder settings (`[decode]`), for stages that decode again.
    pub fn decode_config(&self) -> &analyzers::DecodeConfig {
        &self.decode
    }

    /// Prefetches what [`Engine::process`] of this packet will read first
    /// and miss in the cache (the index entries of its flow and of its RTP
    /// stream), a few packets before it is processed; returns their hashes
    /// for [`Engine::prefetch_slot`] a packet later.
    #[inline]
    pub fn prefetch(&self, d: &Decoded<'_>, source_vnet: Option<VnetId>) -> Ahead {
        let vnet = self.vnets.resolve_packet(d, source_vnet);
        let flow = self.flows.lookahead(vnet, d).map(|(entry, hash)| {
            crate::sys::prefetch_line(entry);
            hash
        });
        let stream = self.rtp.lookahead(vnet, d).map(|(entry, hash)| {
            crate::sys::prefetch_line(entry);
            hash
        });
        Ahead { flow, stream }
    }

    /// Prefetches the flow slot and the stream entry of the hashes from
    /// [`Engine::prefetch`], whose index entries have arrived since.
    #[inline]
    pub fn prefetch_slot(&self, ahead: Ahead) {
        if let Some((slot, len)) = ahead.flow.and_then(|h| self.flows.slot_ahead(h)) {
            crate::sys::prefetch_lines(slot, len);
        }
        if let Some((entry, len)) = ahead.stream.and_then(|h| self.rtp.entry_ahead(h)) {
            crate::sys::prefetch_lines(entry, len);
        }
    }

    /// Runs one packet through the analyzers. `source_vnet` is the VNet of
    /// the capture source, used when no VLAN mapping matches. `decoded` is
    /// the capture loop's decode of this packet with the same `[decode]`
    /// settings, when it made one: it stands in for decoding again unless
    /// the packet is a fragment, which the reassembler must see. `number`
    /// is the packet's 1-based number in its source (0: unknown), which
    /// signature alerts carry as `pcap_cnt`. `ahead` is what
    /// [`Engine::prefetch`] gave for this packet and this decode, if the
    /// caller looked ahead to it.
    #[inline]
    pub fn process(
        &mut self,
        link: Option<LinkType>,
        pkt: &RawPacket<'_>,
        source_vnet: Option<VnetId>,
        number: u64,
        decoded: Option<&Decoded<'_>>,
        ahead: Option<Ahead>,
    ) {
        self.last_ts = self.last_ts.max(pkt.ts);
        let c = &mut self.counters;
        c.packets += 1;
        c.bytes += u64::from(pkt.wire_len);
        // A fragment of a tunnel packet waits for the rest of its datagram,
        // which then counts once, with the wire bytes of all its fragments.
        let decoded = decoded.filter(|d| !d.is_fragment());
        // The hashes hold for the capture loop's decode only.
        let ahead = ahead.filter(|_| decoded.is_some()).unwrap_or_default();
        // The capture loop's decode is read where the batch holds it; one
        // made here (a fragment's datagram, an unsupported link) lives in
        // `made`.
        let mut made = None;
        let (d, wire_len, whole): (&Decoded<'_>, _, _) = match (link, decoded) {
            (Some(_), Some(d)) => (d, pkt.wire_len, true),
            (Some(link), None) => {
                self.reassembly
                    .set_tag(source_vnet.map_or(NO_SOURCE_VNET, |v| v.0));
                match self
                    .reassembly
                    .decode(link, pkt.ts, pkt.data, pkt.wire_len, &self.decode)
                {
                    Reassembled::Packet(d) => (&*made.insert(d), pkt.wire_len, true),
                    Reassembled::Held => {
                        self.counters.reassembly = self.reassembly.stats().clone();
                        self.count_given_up(pkt.ts);
                        return;
                    }
                    Reassembled::Datagram {
                        decoded, wire_len, ..
                    } => {
                        let wire_len = u32::try_from(wire_len).unwrap_or(u32::MAX);
                        (&*made.insert(decoded), wire_len, false)
                    }
                }
            }
            (None, _) => (
                &*made.insert(Decoded::failed(DecodeError::UnsupportedLinkType)),
                pkt.wire_len,
                true,
            ),
        };
        if let Some(e) = d.error {
            c.decode_errors.add(e);
        }
        let vnet = self.vnets.resolve_packet(d, source_vnet);
        if let Some(v) = c.vnets.get_mut(usize::from(vnet.0)) {
            v.packets += 1;
            v.bytes += u64::from(wire_len);
        }
        self.bins
            .observe(pkt.ts, wire_len, vnet, d, &mut self.bin_out);
        let flow = self.flows.observe(
            FlowPacket {
                ts: pkt.ts,
                wire_len,
                vnet,
                vlan_id: d.outer_vlan(),
                hash: ahead.flow,
            },
            d,
            &mut self.flow_out,
        );
        self.rtp.observe_hashed(
            pkt.ts,
            pkt.nanos,
            vnet,
            d,
            ahead.stream,
            &mut self.rtp_window_out,
            &mut self.rtp_stream_out,
        );
        if let Some(ids) = &mut self.ids {
            ids.observe(pkt.ts, vnet, d, &mut self.alert_out);
        }
        if let Some(sigs) = &mut self.sigs {
            // A datagram put together from tunnel fragments has no one
            // frame to show.
            let frame = link
                .filter(|_| self.alert_packet && whole)
                .map(|l| (pkt.data, l.linktype()));
            let info = PacketInfo {
                number,
                frame,
                fragments: 0,
            };
            sigs.observe_packet(pkt.ts, vnet, d, flow, info, &mut self.alert_out);
            // An untunnelled fragment: the signatures also see its datagram
            // once whole, in the flow the fragments were counted in.
            let fragment = d.ip.is_some_and(|ip| ip.fragment != Fragment::None);
            if let (Some(link), Some(defrag), true, true) = (
                link,
                &mut self.sig_defrag,
                fragment,
                whole && d.tunnels.is_empty(),
            ) {
                if let Reassembled::Datagram {
                    decoded,
                    frame,
                    fragments,
                    ..
                } = defrag.decode(link, pkt.ts, pkt.data, pkt.wire_len, &self.decode)
                {
                    let frame = self.alert_packet.then_some((frame, link.linktype()));
                    let info = PacketInfo {
                        number,
                        frame,
                        fragments,
                    };
                    sigs.observe_packet(pkt.ts, vnet, &decoded, flow, info, &mut self.alert_out);
                }
            }
        }
        drop(made);
        if !whole {
            self.counters.reassembly = self.reassembly.stats().clone();
            self.count_given_up(pkt.ts);
        }
    }

    /// Counts the frames of tunnel datagrams the reassembly gave up (their
    /// time ran out, they were evicted, the input ended) in their VNet's
    /// volume and bins at `ts`: they crossed the wire, though they reach
    /// no flow.
    fn count_given_up(&mut self, ts: analyzers::Timestamp) {
        for g in self.reassembly.take_dropped() {
            let source = (g.tag != NO_SOURCE_VNET).then_some(VnetId(g.tag));
            let vlans = &g.vlan_ids[..usize::from(g.vlan_count).min(g.vlan_ids.len())];
            let vnet = self.vnets.resolve(vlans, source);
            if let Some(v) = self.counters.vnets.get_mut(usize::from(vnet.0)) {
                v.packets += u64::from(g.fragments);
                v.bytes += g.wire_len;
            }
            self.bins.observe_frames(
                ts,
                vnet,
                g.protocol,
                g.fragments,
                g.wire_len,
                &mut self.bin_out,
            );
        }
    }

    /// The signature engine, if rules are loaded.
    /// One of several workers (`Some`: the alert gate's filled windows):
    /// signature alerts leave with a ticket for the node's alert gate
    /// ([`Signatures::set_gate`]), also after a reload brings new rules.
    pub fn gate_signatures(&mut self, gate: Option<Arc<FullWindows>>) {
        if let Some(s) = &mut self.sigs {
            s.set_gate(gate.clone());
        }
        self.gate = gate;
    }

    pub fn signatures(&self) -> Option<&Signatures> {
        self.sigs.as_ref()
    }

    /// The signature engine's counters with those of its reassembly
    /// table, if rules are loaded (or were: the counters of rule sets a
    /// reload replaced are in the sum).
    pub fn signature_stats(&self) -> Option<analyzers::ids::rules::SignatureStats> {
        if self.sigs.is_none() && self.sigs_replaced.is_none() {
            return None;
        }
        let mut s = self.sigs_replaced.clone().unwrap_or_default();
        if let Some(sigs) = &self.sigs {
            s += sigs.stats();
        }
        if let Some(d) = &self.sig_defrag {
            let r = d.stats();
            s.defrag_datagrams = r.datagrams;
            s.defrag_dropped = r.timeouts + r.evictions + r.invalid;
        }
        Some(s)
    }

    /// Alerts raised but not yet taken.
    pub fn pending_alerts(&self) -> usize {
        self.alert_out.len()
    }

    /// Takes the alerts raised so far (counted by kind here).
    pub fn take_alerts(&mut self) -> Vec<AlertRecord> {
        for a in &self.alert_out {
            *self.counters.alerts.entry(a.kind).or_default() += 1;
        }
        std::mem::take(&mut self.alert_out)
    }

    /// The detectors' counters and state sizes, if IDS is on.
    pub fn ids(&self) -> Option<&Ids> {
        self.ids.as_ref()
    }

    /// Learns the media a SIP packet announces without counting the packet
    /// (the copy a sharded probe gives to the workers that do not own it).
    pub fn learn_signalling(
        &mut self,
        link: Option<LinkType>,
        pkt: &RawPacket<'_>,
        source_vnet: Option<VnetId>,
    ) {
        let Some(link) = link else { return };
        let d = decode_with(link, pkt.data, &self.decode);
        let vnet = self.vnets.resolve_packet(&d, source_vnet);
        self.rtp.learn_media(vnet, &d);
    }

    /// Lets time pass without packets (live capture, on a clock tick):
    /// flows idle at `now`, bins that ended and idle streams become records.
    pub fn advance(&mut self, now: analyzers::Timestamp) {
        self.reassembly.advance(now);
        self.count_given_up(now);
        if let Some(d) = &mut self.sig_defrag {
            d.advance(now);
        }
        self.counters.reassembly = self.reassembly.stats().clone();
        self.flows.advance(now, &mut self.flow_out);
        self.bins.advance(now, &mut self.bin_out);
        self.rtp
            .advance(now, &mut self.rtp_window_out, &mut self.rtp_stream_out);
        if let Some(ids) = &mut self.ids {
            ids.advance(now);
        }
    }

    /// Live flows per VNet (indexed by VNet id; may be shorter).
    pub fn active_flows_by_vnet(&self) -> &[u64] {
        self.flows.active_by_vnet()
    }

    /// Open RTP streams and SIP calls per VNet.
    pub fn voip_active_by_vnet(&self) -> (Vec<u64>, Vec<u64>) {
        self.rtp.active_by_vnet(self.vnets.len())
    }

    /// RTP windows finished but not yet taken.
    pub fn pending_rtp_windows(&self) -> &[RtpWindowRecord] {
        &self.rtp_window_out
    }

    /// Replaces the VNet map and the flow, RTP and IDS thresholds without
    /// dropping state (SIGHUP). The new map must keep every existing VNet at
    /// its id. `new_sigs`: `Some` when the rules changed, holding the
    /// signatures compiled elsewhere (threshold state starts afresh);
    /// `None` keeps the running ones with the new alert caps.
    pub fn reconfigure(
        &mut self,
        vnets: VnetMap,
        flows: analyzers::flow::FlowConfig,
        rtp: analyzers::voip::RtpConfig,
        ids: &analyzers::ids::IdsConfig,
        new_sigs: Option<Option<Signatures>>,
    ) {
        match new_sigs {
            Some(s) => {
                if s.is_none() {
                    self.sig_defrag = None;
                } else if self.sig_defrag.is_none() {
                    self.sig_defrag = Some(Reassembler::for_signatures(&self.decode));
                }
                if let Some(old) = &self.sigs {
                    *self.sigs_replaced.get_or_insert_with(Default::default) += old.stats();
                }
                self.sigs = s;
                if let Some(s) = &mut self.sigs {
                    s.set_gate(self.gate.clone());
                }
            }
            None => {
                if let Some(s) = &mut self.sigs {
                    s.set_limits(ids.alert_limits());
                }
            }
        }
        self.alert_packet = ids.alert_packet;
        self.rtp.reconfigure(rtp);
        if let Some(d) = &mut self.ids {
            d.reconfigure(ids);
        }
        self.vnets = vnets;
        let n = self.vnets.len();
        if self.counters.vnets.len() < n {
            self.counters.vnets.resize(n, VnetCounters::default());
            self.counters.voip.resize(n, VoipCounters::default());
        }
        self.flows.reconfigure(flows);
    }

    /// Ends the input for up to `max` open flows (they become records);
    /// tells whether none is left. Taking the records between calls keeps
    /// a full table's records from all waiting in memory at once.
    pub fn finish_flows_part(&mut self, max: usize) -> bool {
        self.flows.flush_some(&mut self.flow_out, max)
    }

    /// Ends the input: every open flow and bin becomes a record.
    pub fn finish(&mut self) {
        self.reassembly.give_up_all();
        self.count_given_up(self.last_ts);
        self.flows.flush(&mut self.flow_out);
        self.bins.flush(&mut self.bin_out);
        self.rtp
            .flush(&mut self.rtp_window_out, &mut self.rtp_stream_out);
    }

    /// RTP window and stream records waiting to be written.
    pub fn pending_rtp(&self) -> usize {
        self.rtp_window_out.len() + self.rtp_stream_out.len()
    }

    /// Takes the finished RTP records (streams counted per VNet here).
    pub fn take_rtp(&mut self) -> (Vec<RtpWindowRecord>, Vec<RtpStreamRecord>) {
        for r in &self.rtp_stream_out {
            if let Some(v) = self.counters.voip.get_mut(usize::from(r.id.vnet.0)) {
                v.streams += 1;
                v.packets_received += r.quality.packets_received;
                v.packets_lost += r.quality.packets_lost;
                // Streams without a MOS (unknown codec) do not count here.
                if r.quality.mos_cq.is_finite() {
                    v.mos_cq_sum += r.quality.mos_cq;
                    v.mos_cq_min = v.mos_cq_min.min(r.quality.mos_cq);
                    v.mos_streams += 1;
                }
                v.mirror_duplicates += r.mirror_duplicates;
            }
        }
        (
            std::mem::take(&mut self.rtp_window_out),
            std::mem::take(&mut self.rtp_stream_out),
        )
    }

    /// Takes the finished SIP call records.
    pub fn take_calls(&mut self) -> Vec<analyzers::record::CallRecord> {
        self.rtp.take_calls()
    }

    pub fn rtp_stats(&self) -> &RtpStats {
        self.rtp.stats()
    }

    /// Flow records waiting to be written.
    pub fn pending_flows(&self) -> usize {
        self.flow_out.len()
    }

    pub fn pending_bins(&self) -> usize {
        self.bin_out.len()
    }

    /// Takes the finished flow records (counted per VNet here).
    pub fn take_flows(&mut self) -> Vec<FlowRecord> {
        for r in &self.flow_out {
            if let Some(v) = self.counters.vnets.get_mut(usize::from(r.vnet.0)) {
                v.flows += 1;
            }
        }
        std::mem::take(&mut self.flow_out)
    }

    /// Gives back the buffer [`Engine::take_flows`] returned, once its
    /// records were converted, so that the next records fill it in place:
    /// a new buffer regrew from nothing every time (each record moved once
    /// more, on a capped table that exports a flow per packet) and was
    /// freed on the writer's thread. A buffer larger than `max` records
    /// (the flows of a replay's end) is dropped.
    pub fn recycle_flows(&mut self, mut buffer: Vec<FlowRecord>, max: usize) {
        buffer.clear();
        if self.flow_out.is_empty() && buffer.capacity() <= max {
            self.flow_out = buffer;
        }
    }

    pub fn take_bins(&mut self) -> Vec<BinRecord> {
        std::mem::take(&mut self.bin_out)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn flow_stats(&self) -> FlowStats {
        self.flows.stats()
    }

    /// Fragmented tunnel packets still incomplete (at the end of a
    /// replay: never completed).
    pub fn reassembly_pending(&self) -> u64 {
        self.reassembly.pending() as u64
    }

    /// Bin rows emitted for bins already emitted (packets reordered by more
    /// than a bin).
    pub fn late_bin_rows(&self) -> u64 {
        self.bins.late_rows
    }
}

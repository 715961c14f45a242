//! An analysis worker, for `replay` and `run` alike: runs its share of the
//! packets (the capture loop shards them by address pair, so a flow, its
//! RTP and RTCP, and its copies in a production and a shadow VNet all
//! meet here) through an [`Engine`] with the flow table, the RTP tracker
//! and the signatures; publishes its counters as metric deltas and hands
//! finished records to the sinks as one [`Records`] value.
//!
//! On packet time only, except in live mode (`wall_clock`): there, on a
//! clock tick when the port is quiet, time passes so that idle flows, bins
//! and streams still end.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use analyzers::decode::{Decoded, LinkType};
use analyzers::flow::FlowConfig;
use analyzers::ids::rules::gate::FullWindows;
use analyzers::record::{EndReason, FlowRecord, RtpWindowRecord};
use analyzers::vnet::VnetMap;
use analyzers::Timestamp;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::capture::batch::{PacketBatch, LOOKAHEAD, PREFETCH_AHEAD};
use crate::config::Resolved;
use crate::metrics::Metrics;
use crate::pipeline::Engine;

use crate::capture::driver::WorkItem;
use crate::sink::Records;

/// Configuration changes a worker applies without dropping state.
pub enum Control {
    Reload {
        vnets: Arc<VnetMap>,
        flows: FlowConfig,
        rtp: analyzers::voip::RtpConfig,
        ids: analyzers::ids::IdsConfig,
        /// `Some` when the rules changed: this worker's copy of the
        /// signatures, compiled off the worker (`None` inside: no rules).
        sigs: Option<Option<analyzers::ids::rules::Signatures>>,
    },
}

/// Alerts a worker holds before handing them to the writer (besides every
/// clock tick), so an alert storm leaves in bounded batches.
const ALERT_BATCH: usize = 1024;

pub struct WorkerCtx {
    pub index: usize,
    /// Packets the node's sources lost so far (kernel, interface and queue
    /// drops of every source), for each RTP window's `capture_drops`.
    pub capture_drops: Arc<std::sync::atomic::AtomicU64>,
    pub config: Resolved,
    pub input: Receiver<WorkItem>,
    pub control: Receiver<Control>,
    pub free: Sender<PacketBatch>,
    pub records: Sender<Records>,
    pub metrics: Arc<Metrics>,
    pub tick: Duration,
    /// Let time pass on the wall clock when no packet comes (live); a
    /// replay runs on packet time only.
    pub wall_clock: bool,
    /// One of several workers: signature alerts go to the node's alert
    /// gate ([`crate::sink::GateSink`]), whose filled windows these are.
    pub gate: Option<Arc<FullWindows>>,
}

/// What a worker saw, for the summary at the end.
#[derive(Clone, Debug, Default)]
pub struct WorkerTotals {
    pub counters: crate::pipeline::Counters,
    pub flows: analyzers::flow::FlowStats,
    pub rtp: analyzers::voip::RtpStats,
    pub signatures: Option<analyzers::ids::rules::SignatureStats>,
    pub late_bin_rows: u64,
    pub reassembly_pending: u64,
    pub busy: Duration,
    /// The workers' CPU time (summed over workers, like the rest).
    pub cpu_seconds: f64,
}

/// Metric values already published, so that each tick adds the difference.
#[derive(Default)]
struct Published {
    packets: u64,
    vnet: Vec<(u64, u64)>,
    active_flows: Vec<i64>,
    active_streams: Vec<i64>,
    active_calls: Vec<i64>,
    decode_errors: Vec<u64>,
    evictions: [u64; 4],
    /// `moni_decode_reassembly_total`, as last published.
    reassembly: [u64; 6],
    /// Signature alerts dropped per packet and per second (reset with
    /// new rules).
    sig_dropped: [u64; 2],
}

fn now_ts() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
    )
}

/// How far behind the clock a tick lets time pass: packets still in
/// batches and queues must not find their flow or bin already closed.
const TICK_SLACK_US: i64 = 3_000_000;

/// Records leave a worker when this many of a kind are pending (besides
/// every tick), so that memory stays bounded between ticks.
const FLOW_BATCH: usize = 4096;
const RTP_BATCH: usize = 1024;
const BIN_BATCH: usize = 1024;

/// With the alert gate on (rules loaded, several workers), a worker's
/// watermark leaves at least every this many batches (64 × 256 packets),
/// also when it has no records: the gate holds every worker's signature
/// alerts until all watermarks have passed them, so a worker the sharding
/// gives no alerts must not hold the others' back until its next tick.
const WATERMARK_BATCHES: u32 = 64;

/// Runs a batch's packets through the engine, in order, each with the
/// decode the capture loop kept (`newest`: the newest packet time seen).
///
/// The worker reads ahead: [`PREFETCH_AHEAD`] packets before a packet's
/// turn it asks for its first bytes and its decode; [`LOOKAHEAD`] + 1
/// before, it attaches the decode into a slot of `ring`, where the
/// analysis reads it; one packet later it hashes the packet's flow and
/// stream keys (from the slot, whose stores are written by then) and asks
/// for their index entries, and one later for the flow slot and stream
/// entry they name. At its turn the lookups use the hashes instead of
/// hashing the keys again.
#[inline(always)]
fn analyse_batch(
    engine: &mut Engine,
    batch: &PacketBatch,
    link: Option<LinkType>,
    newest: &mut Timestamp,
) {
    // Slots for the packet at its turn and the LOOKAHEAD + 1 after it.
    const RING: usize = LOOKAHEAD + 2;
    let mut ring: [Decoded<'_>; RING] = Default::default();
    let mut attached = [false; RING];
    let mut kept = [None; RING];
    let n = batch.len();
    for a in 0..(LOOKAHEAD + 1).min(n) {
        attached[a] = batch.decode_into(a, &mut ring[a]);
    }
    for i in 0..n {
        batch.prefetch_at(i + PREFETCH_AHEAD);
        let a = i + LOOKAHEAD + 1;
        if a < n {
            attached[a % RING] = batch.decode_into(a, &mut ring[a % RING]);
        }
        if let Some(ahead) = kept[(i + LOOKAHEAD - 1) % RING] {
            engine.prefetch_slot(ahead);
        }
        let h = i + LOOKAHEAD;
        if let Some((_, tag)) = batch.packet_at(h).filter(|_| attached[h % RING]) {
            if !tag.learn_only {
                kept[h % RING] = Some(engine.prefetch(&ring[h % RING], tag.source_vnet));
            }
        }
        let hashes = kept[i % RING].take();
        let Some((pkt, tag)) = batch.packet_at(i) else {
            break;
        };
        if tag.learn_only {
            engine.learn_signalling(link, &pkt, tag.source_vnet);
        } else {
            *newest = (*newest).max(pkt.ts);
            let decoded = attached[i % RING].then_some(&ring[i % RING]);
            engine.process(link, &pkt, tag.source_vnet, tag.number, decoded, hashes);
        }
    }
}

pub fn run_worker(ctx: WorkerCtx) -> WorkerTotals {
    let mut engine = Engine::new(&ctx.config);
    engine.gate_signatures(ctx.gate.clone());
    let mut vnets = Arc::new(ctx.config.vnets.clone());
    let worker = ctx.index.to_string();
    let busy_gauge = ctx
        .metrics
        .worker_busy
        .with_label_values(&[worker.as_str()]);
    let mut busy = Duration::ZERO;
    let mut busy_total = Duration::ZERO;
    let mut tick_start = Instant::now();
    let mut state = State {
        drops: DropHistory::default(),
        published: Published::default(),
        newest_packet: Timestamp(i64::MIN),
        watermark: None,
        sent_watermark: None,
    };
    state
        .drops
        .sample(now_ts(), ctx.capture_drops.load(Ordering::Relaxed));
    // Batches since this worker's watermark last left, when the alert
    // gate waits for it.
    let mut since_watermark = 0;
    let mut gate_alerts = ctx.gate.is_some() && engine.signatures().is_some();
    loop {
        let wait = ctx.tick.saturating_sub(tick_start.elapsed());
        match ctx.input.recv_timeout(wait) {
            Ok(item) => {
                let t = Instant::now();
                let mut batch = item.packets;
                analyse_batch(&mut engine, &batch, item.link, &mut state.newest_packet);
                if let Some(clock) = item.clock {
                    // The input's clock (replay): time passes as it would
                    // with one worker seeing every packet.
                    // `>=`: the last packet may have had no IP layer, and
                    // the flow table heard only of packets with one.
                    if clock >= state.newest_packet {
                        engine.advance(clock);
                        state.newest_packet = clock;
                    }
                }
                batch.clear();
                let _ = ctx.free.try_send(batch);
                busy += t.elapsed();
                if gate_alerts {
                    since_watermark += 1;
                    if since_watermark >= WATERMARK_BATCHES {
                        since_watermark = 0;
                        send_watermark(&mut engine, &vnets, &ctx, &mut state);
                    }
                }
                if engine.pending_flows() >= FLOW_BATCH
                    || engine.pending_rtp() >= RTP_BATCH
                    || engine.pending_bins() >= BIN_BATCH
                    || engine.pending_alerts() >= ALERT_BATCH
                {
                    send_records(&mut engine, &vnets, &ctx, &mut state, false);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while let Ok(Control::Reload {
            vnets: v,
            flows,
            rtp,
            ids,
            sigs,
        }) = ctx.control.try_recv()
        {
            engine.reconfigure((*v).clone(), flows, rtp, &ids, sigs);
            vnets = v;
            gate_alerts = ctx.gate.is_some() && engine.signatures().is_some();
        }
        if tick_start.elapsed() >= ctx.tick {
            let elapsed = tick_start.elapsed();
            busy_gauge.set(busy.as_secs_f64() / elapsed.as_secs_f64().max(1e-9));
            busy_total += busy;
            busy = Duration::ZERO;
            tick_start = Instant::now();
            state
                .drops
                .sample(now_ts(), ctx.capture_drops.load(Ordering::Relaxed));
            if ctx.wall_clock {
                // Never move time backwards past packets already seen (a
                // capture clock ahead of ours).
                let now = Timestamp(now_ts().0 - TICK_SLACK_US);
                if now > state.newest_packet {
                    if state.newest_packet.0 != i64::MIN {
                        engine.advance(now);
                    }
                    // Even a worker that saw nothing is done with the time
                    // before `now`: the bin merger may write those bins.
                    state.watermark = Some(now);
                }
            }
            send_records(&mut engine, &vnets, &ctx, &mut state, true);
        }
    }
    // A full flow table leaves in batches: a million records built at once
    // would double the probe's peak memory.
    while !engine.finish_flows_part(FLOW_BATCH) {
        send_records(&mut engine, &vnets, &ctx, &mut state, false);
    }
    engine.finish();
    state
        .drops
        .sample(now_ts(), ctx.capture_drops.load(Ordering::Relaxed));
    send_records(&mut engine, &vnets, &ctx, &mut state, true);
    busy_gauge.set(0.0);
    WorkerTotals {
        counters: engine.counters().clone(),
        flows: engine.flow_stats(),
        rtp: engine.rtp_stats().clone(),
        signatures: engine.signature_stats(),
        late_bin_rows: engine.late_bin_rows(),
        reassembly_pending: engine.reassembly_pending(),
        busy: busy_total + busy,
        cpu_seconds: crate::sys::thread_cpu_seconds(),
    }
}

/// The worker's own bookkeeping beside the engine.
struct State {
    drops: DropHistory,
    published: Published,
    newest_packet: Timestamp,
    /// Packet time this worker is done with (see [`Records::watermark`]).
    watermark: Option<Timestamp>,
    sent_watermark: Option<Timestamp>,
}

impl State {
    /// The watermark moves up to the newest packet seen (never back).
    fn advance_watermark(&mut self) {
        if self.newest_packet.0 != i64::MIN {
            let n = self.newest_packet;
            self.watermark = Some(self.watermark.map_or(n, |w| w.max(n)));
        }
    }
}

/// Samples of the node's capture-drop total over time, so that a finished
/// RTP window can carry the drops that happened while it was open.
#[derive(Default)]
struct DropHistory {
    samples: std::collections::VecDeque<(Timestamp, u64)>,
}

impl DropHistory {
    const KEEP: usize = 4096;

    fn sample(&mut self, at: Timestamp, total: u64) {
        if self.samples.back().is_some_and(|&(_, t)| t == total) && self.samples.len() > 1 {
            // Unchanged: move the last sample's time forward instead of growing.
            if let Some(last) = self.samples.back_mut() {
                last.0 = at;
            }
            return;
        }
        self.samples.push_back((at, total));
        if self.samples.len() > Self::KEEP {
            self.samples.pop_front();
        }
    }

    /// The total as of time `t` (the last sample at or before it).
    fn at(&self, t: Timestamp) -> u64 {
        let i = self.samples.partition_point(|&(at, _)| at <= t);
        match i {
            0 => self.samples.front().map_or(0, |s| s.1),
            i => self.samples[i - 1].1,
        }
    }

    /// Drops between `start` and `end`.
    fn between(&self, start: Timestamp, end: Timestamp) -> u64 {
        self.at(end).saturating_sub(self.at(start))
    }
}

/// Publishes metric deltas and sends finished records to the writer.
/// `on_tick`: also refresh the open-streams and open-calls gauges, which
/// scan the RTP tables (records also leave between ticks, whenever many are
/// pending, and that path must stay cheap).
fn send_records(
    engine: &mut Engine,
    vnets: &Arc<VnetMap>,
    ctx: &WorkerCtx,
    state: &mut State,
    on_tick: bool,
) {
    let m = &ctx.metrics;
    let p = &mut state.published;
    let labels: Vec<[String; 2]> = vnets
        .iter()
        .map(|(_, v)| [v.name.clone(), v.role.as_str().to_string()])
        .collect();
    let lv =
        |i: usize| -> Option<[&str; 2]> { labels.get(i).map(|l| [l[0].as_str(), l[1].as_str()]) };

    let flows: Vec<FlowRecord> = engine.take_flows();
    let mut evicted = vec![0u64; labels.len()];
    let mut exported = vec![0u64; labels.len()];
    for f in &flows {
        let i = usize::from(f.vnet.0);
        if let Some(n) = exported.get_mut(i) {
            *n += 1;
        }
        if f.end_reason == EndReason::Evicted {
            if let Some(n) = evicted.get_mut(i) {
                *n += 1;
            }
        }
    }
    let (mut rtp_windows, rtp_streams) = engine.take_rtp();
    for w in &mut rtp_windows {
        let end = Timestamp(w.window_start.0 + i64::from(w.window_secs) * 1_000_000);
        w.capture_drops = state.drops.between(w.window_start, end);
    }
    observe_windows(m, &rtp_windows, &lv);
    let mut streams_done = vec![0u64; labels.len()];
    for s in &rtp_streams {
        if let Some(n) = streams_done.get_mut(usize::from(s.id.vnet.0)) {
            *n += 1;
        }
    }
    let c = engine.counters();
    m.worker_packets
        .with_label_values(&[ctx.index.to_string()])
        .inc_by(c.packets - p.packets);
    p.packets = c.packets;
    p.vnet.resize(labels.len(), (0, 0));
    p.active_flows.resize(labels.len(), 0);
    p.active_streams.resize(labels.len(), 0);
    p.active_calls.resize(labels.len(), 0);
    let active = engine.active_flows_by_vnet();
    let voip_active = on_tick.then(|| engine.voip_active_by_vnet());
    for i in 0..labels.len() {
        let Some(l) = lv(i) else { continue };
        let vc = c.vnets.get(i).cloned().unwrap_or_default();
        let (pp, pb) = p.vnet[i];
        if vc.packets > pp {
            m.vnet_packets.with_label_values(&l).inc_by(vc.packets - pp);
            m.vnet_bytes.with_label_values(&l).inc_by(vc.bytes - pb);
        }
        p.vnet[i] = (vc.packets, vc.bytes);
        let a = active.get(i).copied().unwrap_or(0) as i64;
        if a != p.active_flows[i] {
            m.vnet_active_flows
                .with_label_values(&l)
                .add(a - p.active_flows[i]);
            p.active_flows[i] = a;
        }
        let (s, k) = match &voip_active {
            Some((streams, calls)) => (
                streams.get(i).copied().unwrap_or(0) as i64,
                calls.get(i).copied().unwrap_or(0) as i64,
            ),
            None => (p.active_streams[i], p.active_calls[i]),
        };
        if s != p.active_streams[i] {
            m.voip_active_streams
                .with_label_values(&l)
                .add(s - p.active_streams[i]);
            p.active_streams[i] = s;
        }
        if k != p.active_calls[i] {
            m.voip_active_calls
                .with_label_values(&l)
                .add(k - p.active_calls[i]);
            p.active_calls[i] = k;
        }
        if exported[i] > 0 {
            m.vnet_flows.with_label_values(&l).inc_by(exported[i]);
        }
        if evicted[i] > 0 {
            m.vnet_flow_evictions
                .with_label_values(&l)
                .inc_by(evicted[i]);
        }
        if streams_done[i] > 0 {
            m.voip_streams.with_label_values(&l).inc_by(streams_done[i]);
        }
    }
    let errors: Vec<(analyzers::DecodeError, u64)> = c.decode_errors.iter().collect();
    p.decode_errors.resize(analyzers::DecodeError::ALL.len(), 0);
    for (e, n) in errors {
        let i = analyzers::DecodeError::ALL
            .iter()
            .position(|x| *x == e)
            .unwrap_or(0);
        if let Some(prev) = p.decode_errors.get_mut(i) {
            if n > *prev {
                m.decode_errors
                    .with_label_values(&[e.as_str()])
                    .inc_by(n - *prev);
                *prev = n;
            }
        }
    }
    let counts = crate::metrics::reassembly_counts(&c.reassembly);
    for (i, n) in counts.iter().enumerate() {
        if *n > p.reassembly[i] {
            m.reassembly
                .with_label_values(&[crate::metrics::REASSEMBLY_EVENTS[i]])
                .inc_by(n - p.reassembly[i]);
            p.reassembly[i] = *n;
        }
    }
    let st = engine.rtp_stats();
    let ev = [
        ("stream_cap", st.streams_evicted),
        ("candidate_cap", st.candidates_evicted),
        ("announced_cap", st.announced_evicted),
        ("call_cap", st.calls_evicted),
    ];
    for (i, (reason, n)) in ev.iter().enumerate() {
        if *n > p.evictions[i] {
            m.voip_evictions
                .with_label_values(&[*reason])
                .inc_by(n - p.evictions[i]);
            p.evictions[i] = *n;
        }
    }
    let alerts = engine.take_alerts();
    if let Some(ids) = engine.ids() {
        for (det, keys, evicted) in ids.state() {
            m.ids_state_keys
                .with_label_values(&[det, &ctx.index.to_string()])
                .set(keys as i64);
            let c = m
                .ids_evictions
                .with_label_values(&[det, &ctx.index.to_string()]);
            if evicted > c.get() {
                c.inc_by(evicted - c.get());
            }
        }
        let c = m.ids_suppressed.with_label_values(&[ctx.index.to_string()]);
        let n = ids.stats().suppressed;
        if n > c.get() {
            c.inc_by(n - c.get());
        }
    }
    if let Some(sigs) = engine.signatures() {
        for (table, keys, evicted) in sigs.state() {
            let l = [table, &ctx.index.to_string()];
            m.ids_state_keys.with_label_values(&l).set(keys as i64);
            let c = m.ids_evictions.with_label_values(&l);
            if evicted > c.get() {
                c.inc_by(evicted - c.get());
            }
        }
        let st = sigs.stats();
        for (i, (reason, n)) in [
            ("per_packet", st.dropped_per_packet),
            ("per_second", st.dropped_per_second),
        ]
        .into_iter()
        .enumerate()
        {
            let prev = &mut p.sig_dropped[i];
            if n < *prev {
                // New rules, new counters.
                *prev = 0;
            }
            if n > *prev {
                m.ids_dropped_alerts
                    .with_label_values(&[reason])
                    .inc_by(n - *prev);
                *prev = n;
            }
        }
    }
    state.advance_watermark();
    let mut records = Records {
        vnets: vnets.clone(),
        worker: Some(ctx.index),
        watermark: state.watermark,
        flows,
        flow_batches: Vec::new(),
        bins: engine.take_bins(),
        rtp_windows,
        rtp_streams,
        rtp_compare: Vec::new(),
        calls: engine.take_calls(),
        alerts,
    };
    records.convert_flows();
    if records.flows.is_empty() {
        engine.recycle_flows(std::mem::take(&mut records.flows), 2 * FLOW_BATCH);
    }
    // Sent even when empty while the watermark moves: the bin merger waits
    // for every worker's.
    let moved = records.watermark != state.sent_watermark;
    if records.is_empty() && !moved {
        return;
    }
    state.sent_watermark = records.watermark;
    if ctx.records.send(records).is_err() {
        tracing::warn!(
            worker = ctx.index,
            "The record sinks are gone; records dropped."
        );
    }
}

/// Sends this worker's watermark, if it moved since it last left, with
/// the bins and alerts raised before it (those two sinks release what
/// every worker's watermark has passed, so what a worker made before its
/// watermark must travel with it), but no flows or metrics.
fn send_watermark(engine: &mut Engine, vnets: &Arc<VnetMap>, ctx: &WorkerCtx, state: &mut State) {
    state.advance_watermark();
    let Some(w) = state.watermark.filter(|&w| state.sent_watermark != Some(w)) else {
        return;
    };
    state.sent_watermark = Some(w);
    let mut r = Records::new(Arc::clone(vnets));
    r.worker = Some(ctx.index);
    r.watermark = Some(w);
    r.bins = engine.take_bins();
    r.alerts = engine.take_alerts();
    let _ = ctx.records.send(r);
}

fn observe_windows<'a>(
    m: &Metrics,
    windows: &[RtpWindowRecord],
    lv: &impl Fn(usize) -> Option<[&'a str; 2]>,
) {
    for w in windows {
        let Some(l) = lv(usize::from(w.id.vnet.0)) else {
            continue;
        };
        if w.capture_drops > 0 {
            // The probe dropped packets in this window: its loss and MOS
            // would be the probe's (counted in the sources' drops).
            continue;
        }
        let q = &w.quality;
        m.voip_window_mos.with_label_values(&l).observe(q.mos_cq);
        m.voip_last_window_mos.with_label_values(&l).set(q.mos_cq);
        m.voip_last_window_loss
            .with_label_values(&l)
            .set(q.loss_ratio);
        if q.jitter_ms.is_finite() {
            m.voip_last_window_jitter
                .with_label_values(&l)
                .set(q.jitter_ms / 1000.0);
        }
    }
}

impl WorkerTotals {
    /// Adds another worker's totals. `peak_active` becomes the sum of the
    /// workers' peaks (an upper bound of the node's peak).
    pub fn merge(&mut self, o: &WorkerTotals) {
        let c = &mut self.counters;
        c.packets += o.counters.packets;
        c.bytes += o.counters.bytes;
        c.decode_errors.merge(&o.counters.decode_errors);
        if c.vnets.len() < o.counters.vnets.len() {
            c.vnets.resize(
                o.counters.vnets.len(),
                crate::pipeline::VnetCounters::default(),
            );
        }
        for (a, b) in c.vnets.iter_mut().zip(&o.counters.vnets) {
            a.packets += b.packets;
            a.bytes += b.bytes;
            a.flows += b.flows;
        }
        if c.voip.len() < o.counters.voip.len() {
            c.voip.resize(
                o.counters.voip.len(),
                crate::pipeline::VoipCounters::default(),
            );
        }
        for (a, b) in c.voip.iter_mut().zip(&o.counters.voip) {
            a.streams += b.streams;
            a.packets_received += b.packets_received;
            a.packets_lost += b.packets_lost;
            a.mos_cq_sum += b.mos_cq_sum;
            a.mos_cq_min = a.mos_cq_min.min(b.mos_cq_min);
            a.mos_streams += b.mos_streams;
            a.mirror_duplicates += b.mirror_duplicates;
        }
        for (k, n) in &o.counters.alerts {
            *c.alerts.entry(k).or_default() += n;
        }
        c.reassembly.merge(&o.counters.reassembly);
        let f = &mut self.flows;
        f.created += o.flows.created;
        for (a, b) in f.exported.iter_mut().zip(o.flows.exported) {
            *a += b;
        }
        f.peak_active += o.flows.peak_active;
        f.fragments_unmatched += o.flows.fragments_unmatched;
        f.fragments_evicted += o.flows.fragments_evicted;
        let r = &mut self.rtp;
        r.sip_messages += o.rtp.sip_messages;
        r.streams_started += o.rtp.streams_started;
        r.streams_evicted += o.rtp.streams_evicted;
        r.candidates_evicted += o.rtp.candidates_evicted;
        r.announced_evicted += o.rtp.announced_evicted;
        r.rtcp_packets += o.rtp.rtcp_packets;
        r.rtp_packets += o.rtp.rtp_packets;
        r.calls_started += o.rtp.calls_started;
        r.calls_evicted += o.rtp.calls_evicted;
        r.mirror_duplicates += o.rtp.mirror_duplicates;
        if let Some(b) = &o.signatures {
            *self.signatures.get_or_insert_with(Default::default) += b;
        }
        self.late_bin_rows += o.late_bin_rows;
        self.reassembly_pending += o.reassembly_pending;
        self.busy += o.busy;
        self.cpu_seconds += o.cpu_seconds;
    }
}

/// The workers of one pipeline, started.
pub struct Workers<'scope> {
    /// Where the capture loop sends each worker's batches.
    pub inputs: Vec<Sender<crate::capture::driver::WorkItem>>,
    /// Reloads (SIGHUP), one channel per worker.
    pub control: Vec<Sender<Control>>,
    pub handles: Vec<std::thread::ScopedJoinHandle<'scope, WorkerTotals>>,
}

impl Workers<'_> {
    /// Waits for every worker (after the capture loops hung up) and adds
    /// up their totals; `false` when a worker panicked (its totals are
    /// missing).
    pub fn join(self) -> (WorkerTotals, bool) {
        let mut total = WorkerTotals::default();
        let mut ok = true;
        for h in self.handles {
            match h.join() {
                Ok(t) => total.merge(&t),
                Err(_) => ok = false,
            }
        }
        (total, ok)
    }
}

/// What every worker of a pipeline shares.
pub struct WorkerSetup<'a> {
    pub config: &'a Resolved,
    pub workers: usize,
    /// Batches queued per worker.
    pub queue_batches: usize,
    pub free: Sender<PacketBatch>,
    pub records: Sender<Records>,
    pub metrics: Arc<Metrics>,
    pub capture_drops: Arc<std::sync::atomic::AtomicU64>,
    pub tick: Duration,
    pub wall_clock: bool,
    /// CPUs to pin workers to (`node.worker_cpus`; empty: no pinning).
    pub cpus: Vec<usize>,
    /// Nice steps the workers run below the capture thread (0: level).
    /// Replay, where one capture thread feeds every worker, gives the
    /// capture thread the CPU first: see `replay::WORKER_NICE`.
    pub nice_below_capture: i32,
    /// With several workers: the alert gate's filled windows
    /// ([`crate::sink::GateSink::full_windows`]); `None` with one.
    pub gate: Option<Arc<FullWindows>>,
}

/// One worker's share of the flow settings: `flows.max_flows` bounds the
/// node, not each worker, so the workers share it (the shard hash spreads
/// flows evenly), at start and on every reload alike.
pub fn per_worker(
    flows: &analyzers::flow::FlowConfig,
    workers: usize,
) -> analyzers::flow::FlowConfig {
    analyzers::flow::FlowConfig {
        max_flows: flows.max_flows.div_ceil(workers.max(1)).max(1),
        ..flows.clone()
    }
}

/// Starts the workers in `scope`. The IDS detectors are left to the
/// capture loop (they must see every packet); signatures, which need the
/// flow state, run here.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    s: WorkerSetup<'_>,
) -> Workers<'scope> {
    let mut config = s.config.clone();
    config.ids.enabled = false;
    config.flows = per_worker(&config.flows, s.workers);
    let mut w = Workers {
        inputs: Vec::new(),
        control: Vec::new(),
        handles: Vec::new(),
    };
    for index in 0..s.workers.max(1) {
        let (tx, rx) = crossbeam_channel::bounded(s.queue_batches.max(1));
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded::<Control>();
        w.inputs.push(tx);
        w.control.push(ctl_tx);
        let ctx = WorkerCtx {
            index,
            capture_drops: Arc::clone(&s.capture_drops),
            config: config.clone(),
            input: rx,
            control: ctl_rx,
            free: s.free.clone(),
            records: s.records.clone(),
            metrics: Arc::clone(&s.metrics),
            tick: s.tick,
            wall_clock: s.wall_clock,
            gate: s.gate.clone(),
        };
        let cpus = s.cpus.clone();
        let nice = s.nice_below_capture;
        w.handles.push(crate::sys::spawn_named(
            scope,
            format!("moni-worker-{index}"),
            move || {
                crate::sys::pin_current_thread(&cpus, index, "worker");
                crate::sys::lower_thread_priority(nice);
                run_worker(ctx)
            },
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::per_worker;

    /// The node's flow cap is shared by its workers, rounded up, never 0:
    /// at start and on a reload (which once gave each worker the whole
    /// cap, so a reload doubled the node's bound with two workers).
    #[test]
    fn the_flow_cap_is_shared_by_the_workers() {
        let flows = analyzers::flow::FlowConfig {
            max_flows: 1_000,
            ..Default::default()
        };
        assert_eq!(per_worker(&flows, 1).max_flows, 1_000);
        assert_eq!(per_worker(&flows, 3).max_flows, 334);
        assert_eq!(per_worker(&flows, 0).max_flows, 1_000);
        let one = analyzers::flow::FlowConfig {
            max_flows: 1,
            ..Default::default()
        };
        assert_eq!(per_worker(&one, 4).max_flows, 1);
        assert_eq!(
            per_worker(&flows, 2).idle_timeout_secs,
            flows.idle_timeout_secs
        );
    }
}

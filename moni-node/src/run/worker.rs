//! An analyzer worker: runs its share of the packets through an [`Engine`],
//! lets time pass on a clock tick when the port is quiet, publishes its
//! counters as metric deltas and hands finished records to the writer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use analyzers::flow::FlowConfig;
use analyzers::record::{EndReason, FlowRecord, RtpWindowRecord};
use analyzers::vnet::VnetMap;
use analyzers::voip::compare::LiveComparer;
use analyzers::Timestamp;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::capture::batch::PacketBatch;
use crate::config::Resolved;
use crate::metrics::Metrics;
use crate::pipeline::Engine;

use super::capture::WorkItem;
use super::writer::Records;

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
    pub writer: Sender<Records>,
    pub metrics: Arc<Metrics>,
    pub tick: Duration,
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

pub fn run_worker(ctx: WorkerCtx) {
    let mut engine = Engine::new(&ctx.config);
    let mut vnets = Arc::new(ctx.config.vnets.clone());
    let worker = ctx.index.to_string();
    let busy_gauge = ctx
        .metrics
        .worker_busy
        .with_label_values(&[worker.as_str()]);
    let mut busy = Duration::ZERO;
    let mut tick_start = Instant::now();
    let mut newest_packet = Timestamp(i64::MIN);
    let mut state = State {
        comparer: LiveComparer::new(200_000),
        drops: DropHistory::default(),
        published: Published::default(),
    };
    state
        .drops
        .sample(now_ts(), ctx.capture_drops.load(Ordering::Relaxed));
    loop {
        let wait = ctx.tick.saturating_sub(tick_start.elapsed());
        match ctx.input.recv_timeout(wait) {
            Ok(item) => {
                let t = Instant::now();
                if let Some(sig) = &item.signalling {
                    for pkt in sig.iter() {
                        engine.learn_signalling(item.link, &pkt, item.source_vnet);
                    }
                }
                for pkt in item.packets.iter() {
                    newest_packet = newest_packet.max(pkt.ts);
                    engine.process(item.link, &pkt, item.source_vnet);
                }
                let mut batch = item.packets;
                batch.clear();
                let _ = ctx.free.try_send(batch);
                busy += t.elapsed();
                if engine.pending_flows() >= 4096
                    || engine.pending_rtp() >= 1024
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
        }
        if tick_start.elapsed() >= ctx.tick {
            let elapsed = tick_start.elapsed();
            busy_gauge.set(busy.as_secs_f64() / elapsed.as_secs_f64().max(1e-9));
            busy = Duration::ZERO;
            tick_start = Instant::now();
            // Never move time backwards past packets already seen (a file
            // source's clock, or a capture clock ahead of ours).
            state
                .drops
                .sample(now_ts(), ctx.capture_drops.load(Ordering::Relaxed));
            let now = Timestamp(now_ts().0 - TICK_SLACK_US);
            if now > newest_packet && newest_packet.0 != i64::MIN {
                engine.advance(now);
            }
            send_records(&mut engine, &vnets, &ctx, &mut state, true);
        }
    }
    engine.finish();
    state
        .drops
        .sample(now_ts(), ctx.capture_drops.load(Ordering::Relaxed));
    send_records(&mut engine, &vnets, &ctx, &mut state, true);
    busy_gauge.set(0.0);
}

/// The worker's own bookkeeping beside the engine.
struct State {
    comparer: LiveComparer,
    drops: DropHistory,
    published: Published,
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
    let rtp_compare = state
        .comparer
        .push(&rtp_windows, vnets, ctx.config.compare_tolerance);
    for r in &rtp_compare {
        m.voip_compare_windows
            .with_label_values(&[r.verdict.as_str()])
            .inc();
    }
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
    for a in &alerts {
        m.ids_alerts
            .with_label_values(&[a.kind, &a.severity.to_string()])
            .inc();
    }
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
        let (keys, evicted) = sigs.state();
        let l = ["signature_thresholds", &ctx.index.to_string()];
        m.ids_state_keys.with_label_values(&l).set(keys as i64);
        let c = m.ids_evictions.with_label_values(&l);
        if evicted > c.get() {
            c.inc_by(evicted - c.get());
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
    let records = Records {
        vnets: vnets.clone(),
        flows,
        bins: engine.take_bins(),
        rtp_windows,
        rtp_streams,
        rtp_compare,
        calls: engine.take_calls(),
        alerts,
    };
    if !records.is_empty() && ctx.writer.send(records).is_err() {
        tracing::warn!(
            worker = ctx.index,
            "The Parquet writer is gone; records dropped."
        );
    }
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
        let q = &w.quality;
        m.voip_window_mos.with_label_values(&l).observe(q.mos_cq);
        m.voip_last_window_mos.with_label_values(&l).set(q.mos_cq);
        m.voip_last_window_loss
            .with_label_values(&l)
            .set(q.loss_ratio);
        m.voip_last_window_jitter
            .with_label_values(&l)
            .set(q.jitter_ms / 1000.0);
    }
}

//! A capture thread: reads one source, shards its packets into per-worker
//! batches and hands full (or old enough) batches to the workers.
//!
//! It never blocks on a worker: when a worker's queue is full the batch is
//! dropped and its packets counted in `moni_source_queue_drops_total`, so a
//! slow analysis shows up as counted loss instead of kernel drops that
//! would hide where the time went.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use analyzers::ids::Ids;
use analyzers::record::AlertRecord;
use analyzers::vnet::{VnetId, VnetMap};
use analyzers::{LinkType, Timestamp};
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::capture::batch::PacketBatch;
use crate::capture::file::FileSource;
use crate::capture::live::{LiveRead, LiveSource};
use crate::capture::{PacketSource, RawPacket};
use crate::config::{SourceKind, SourceSettings};
use crate::metrics::Metrics;

use super::shard::worker_for;

/// What a capture thread sends a worker.
pub struct WorkItem {
    pub link: Option<LinkType>,
    pub source_vnet: Option<VnetId>,
    pub packets: PacketBatch,
    /// Copies of SIP messages another worker owns: only their SDP is learnt.
    pub signalling: Option<PacketBatch>,
}

/// Everything a capture thread needs.
pub struct CaptureCtx {
    pub settings: SourceSettings,
    pub workers: Vec<Sender<WorkItem>>,
    pub free: Receiver<PacketBatch>,
    pub stop: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
    pub batch_flush: Duration,
    pub tick: Duration,
    pub sip_ports: Vec<u16>,
    /// The node's running total of lost packets (all sources), which the
    /// workers put on each RTP window.
    pub capture_drops: Arc<std::sync::atomic::AtomicU64>,
    /// With more than one worker the IDS detectors run here, on every
    /// packet of the source: a sweep's or a flood's packets spread over
    /// workers by the address hash, so no single worker would see them all.
    pub ids: Option<(analyzers::ids::IdsConfig, Arc<analyzers::vnet::VnetMap>)>,
    /// Where this thread's alerts go.
    pub writer: Sender<super::writer::Records>,
    /// `[decode]`, to shard and run the IDS on the innermost packet.
    pub decode: analyzers::DecodeConfig,
}

/// Per-worker batch being filled.
struct Pending {
    batch: PacketBatch,
    signalling: Option<PacketBatch>,
    since: Option<Instant>,
}

struct Dispatcher<'a> {
    ctx: &'a CaptureCtx,
    link: Option<LinkType>,
    pending: Vec<Pending>,
    packets: u64,
    bytes: u64,
    queue_drops: u64,
    published: (u64, u64, u64),
    ids: Option<(Ids, Arc<VnetMap>)>,
    alerts: Vec<AlertRecord>,
}

impl<'a> Dispatcher<'a> {
    fn new(ctx: &'a CaptureCtx, link: Option<LinkType>) -> Self {
        Dispatcher {
            pending: (0..ctx.workers.len())
                .map(|_| Pending {
                    batch: PacketBatch::with_capacity(),
                    signalling: None,
                    since: None,
                })
                .collect(),
            ctx,
            link,
            packets: 0,
            bytes: 0,
            queue_drops: 0,
            published: (0, 0, 0),
            ids: match (&ctx.ids, ctx.workers.len() > 1) {
                (Some((config, vnets)), true) => Some((Ids::new(config), Arc::clone(vnets))),
                _ => None,
            },
            alerts: Vec::new(),
        }
    }

    fn new_batch(&self) -> PacketBatch {
        self.ctx
            .free
            .try_recv()
            .unwrap_or_else(|_| PacketBatch::with_capacity())
    }

    #[inline]
    fn push(&mut self, pkt: &RawPacket<'_>) {
        self.packets += 1;
        self.bytes += u64::from(pkt.wire_len);
        let n = self.pending.len();
        let w = if n > 1 {
            match self.link {
                Some(link) => {
                    let d = analyzers::decode_with(link, pkt.data, &self.ctx.decode);
                    let w = worker_for(&d, n);
                    if let Some((ids, vnets)) = &mut self.ids {
                        let vnet = vnets.resolve_packet(&d, self.ctx.settings.vnet);
                        ids.observe(pkt.ts, vnet, &d, &mut self.alerts);
                    }
                    if let Some((sp, dp)) = d.ports() {
                        if self.ctx.sip_ports.contains(&sp) || self.ctx.sip_ports.contains(&dp) {
                            for (i, p) in self.pending.iter_mut().enumerate() {
                                if i != w {
                                    p.signalling
                                        .get_or_insert_with(PacketBatch::with_capacity)
                                        .push(pkt);
                                }
                            }
                        }
                    }
                    w
                }
                None => 0,
            }
        } else {
            0
        };
        let p = &mut self.pending[w];
        if p.since.is_none() {
            p.since = Some(Instant::now());
        }
        p.batch.push(pkt);
        if p.batch.is_full() {
            self.send(w);
        }
    }

    /// Sends worker `w`'s batch; a full queue drops it (counted).
    fn send(&mut self, w: usize) {
        let fresh = self.new_batch();
        let p = &mut self.pending[w];
        p.since = None;
        let packets = std::mem::replace(&mut p.batch, fresh);
        let item = WorkItem {
            link: self.link,
            source_vnet: self.ctx.settings.vnet,
            packets,
            signalling: p.signalling.take(),
        };
        match self.ctx.workers[w].try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) | Err(TrySendError::Disconnected(item)) => {
                self.queue_drops += item.packets.len() as u64;
            }
        }
    }

    /// Sends batches that waited longer than the flush interval (or all).
    fn flush_old(&mut self, all: bool) {
        let now = Instant::now();
        for w in 0..self.pending.len() {
            let p = &self.pending[w];
            let old = p
                .since
                .is_some_and(|t| now.duration_since(t) >= self.ctx.batch_flush);
            if (all || old) && (!p.batch.is_empty() || p.signalling.is_some()) {
                self.send(w);
            }
        }
    }

    /// Final batches at shutdown: wait (bounded) for queue space instead of
    /// dropping, since nothing new arrives any more.
    fn drain(&mut self) {
        for w in 0..self.pending.len() {
            let p = &mut self.pending[w];
            if p.batch.is_empty() && p.signalling.is_none() {
                continue;
            }
            let item = WorkItem {
                link: self.link,
                source_vnet: self.ctx.settings.vnet,
                packets: std::mem::take(&mut p.batch),
                signalling: p.signalling.take(),
            };
            if let Err(e) = self.ctx.workers[w].send_timeout(item, Duration::from_secs(5)) {
                let item = e.into_inner();
                self.queue_drops += item.packets.len() as u64;
            }
        }
    }

    /// Hands this thread's alerts to the writer (never blocking: a full
    /// writer queue drops them, counted).
    fn send_alerts(&mut self) {
        let Some((_, vnets)) = &self.ids else {
            return;
        };
        if self.alerts.is_empty() {
            return;
        }
        let alerts = std::mem::take(&mut self.alerts);
        for a in &alerts {
            self.ctx
                .metrics
                .ids_alerts
                .with_label_values(&[a.kind, &a.severity.to_string()])
                .inc();
        }
        let n = alerts.len() as u64;
        if self
            .ctx
            .writer
            .try_send(super::writer::Records::alerts_only(
                Arc::clone(vnets),
                alerts,
            ))
            .is_err()
        {
            self.ctx
                .metrics
                .ids_dropped_alerts
                .with_label_values(&["writer_queue_full"])
                .inc_by(n);
        }
    }

    fn publish(&mut self) {
        self.send_alerts();
        if let Some((ids, _)) = &self.ids {
            let src = format!("capture:{}", self.ctx.settings.name);
            for (det, keys, evicted) in ids.state() {
                self.ctx
                    .metrics
                    .ids_state_keys
                    .with_label_values(&[det, src.as_str()])
                    .set(keys as i64);
                let c = self
                    .ctx
                    .metrics
                    .ids_evictions
                    .with_label_values(&[det, src.as_str()]);
                if evicted > c.get() {
                    c.inc_by(evicted - c.get());
                }
            }
        }
        let name = [self.ctx.settings.name.as_str()];
        let m = &self.ctx.metrics;
        let (p, b, q) = self.published;
        m.source_packets
            .with_label_values(&name)
            .inc_by(self.packets - p);
        m.source_bytes
            .with_label_values(&name)
            .inc_by(self.bytes - b);
        m.source_queue_drops
            .with_label_values(&name)
            .inc_by(self.queue_drops - q);
        self.ctx
            .capture_drops
            .fetch_add(self.queue_drops - q, Ordering::Relaxed);
        self.published = (self.packets, self.bytes, self.queue_drops);
    }
}

/// Runs one source until it ends, fails or `stop` is set. Returns the
/// error that ended it, if any.
pub fn run_source(ctx: CaptureCtx) -> Option<String> {
    let name = [ctx.settings.name.as_str()];
    ctx.metrics.source_up.with_label_values(&name).set(1);
    let result = match ctx.settings.kind.clone() {
        SourceKind::Interface(iface) => run_live(&ctx, &iface),
        SourceKind::File { path, speed } => run_file(&ctx, &path, speed),
    };
    ctx.metrics.source_up.with_label_values(&name).set(0);
    result.err()
}

fn run_live(ctx: &CaptureCtx, iface: &str) -> Result<(), String> {
    let mut src = LiveSource::open(&ctx.settings, iface).map_err(|e| e.to_string())?;
    let mut d = Dispatcher::new(ctx, src.link_type());
    let mut published_drops = (0u64, 0u64);
    let mut next_tick = Instant::now() + ctx.tick.min(Duration::from_millis(250));
    let mut since_check = 0u32;
    let mut result = Ok(());
    while !ctx.stop.load(Ordering::Relaxed) {
        let idle = match src.read() {
            Ok(LiveRead::Packet(p)) => {
                d.push(&p);
                false
            }
            Ok(LiveRead::Idle) => true,
            Err(e) => {
                result = Err(e.to_string());
                break;
            }
        };
        since_check += 1;
        if idle || since_check >= 256 {
            since_check = 0;
            d.flush_old(false);
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + ctx.tick.min(Duration::from_millis(250));
                d.publish();
                publish_drops(ctx, &mut src, &mut published_drops);
            }
        }
    }
    // Packets libpcap still holds are read before stopping, so a stop loses
    // nothing that had reached the probe.
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        match src.read() {
            Ok(LiveRead::Packet(p)) => d.push(&p),
            _ => break,
        }
    }
    d.drain();
    d.publish();
    publish_drops(ctx, &mut src, &mut published_drops);
    result
}

/// Adds the source's new kernel and interface drops to the metrics and to
/// the node's running total.
fn publish_drops(ctx: &CaptureCtx, src: &mut LiveSource, published: &mut (u64, u64)) {
    let name = [ctx.settings.name.as_str()];
    let drops = src.drops();
    let (k, i) = (drops.kernel - published.0, drops.interface - published.1);
    ctx.metrics
        .source_kernel_drops
        .with_label_values(&name)
        .inc_by(k);
    ctx.metrics
        .source_interface_drops
        .with_label_values(&name)
        .inc_by(i);
    ctx.capture_drops.fetch_add(k + i, Ordering::Relaxed);
    *published = (drops.kernel, drops.interface);
}

const MINUTE_US: i64 = 60_000_000;

/// Replays a file at `speed` times its recorded pace, with timestamps moved
/// (by whole minutes) to now so that it behaves like a live port.
fn run_file(ctx: &CaptureCtx, path: &std::path::Path, speed: f64) -> Result<(), String> {
    let mut src =
        FileSource::open(path, ctx.settings.filter.as_deref()).map_err(|e| e.to_string())?;
    let link = src.link_type();
    let mut d = Dispatcher::new(ctx, link);
    let wall0 = Instant::now();
    let epoch0 = Timestamp(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
    );
    let mut first: Option<Timestamp> = None;
    let mut shift: Option<i64> = None;
    let mut next_tick = Instant::now() + ctx.tick;
    let mut result = Ok(());
    while !ctx.stop.load(Ordering::Relaxed) {
        let pkt = match src.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                result = Err(e.to_string());
                break;
            }
        };
        let t0 = *first.get_or_insert(pkt.ts);
        // Packet time keeps the recorded spacing (jitter and windows stay
        // true); only the wall-clock pace is scaled.
        let recorded_us = pkt.ts.micros_since(t0).max(0);
        let offset_us = (recorded_us as f64 / speed) as i64;
        let due = wall0 + Duration::from_micros(offset_us as u64);
        // Sleep in short slices so that stop and batch flushing stay prompt.
        loop {
            let now = Instant::now();
            if now >= due || ctx.stop.load(Ordering::Relaxed) {
                break;
            }
            d.flush_old(false);
            std::thread::sleep((due - now).min(Duration::from_millis(20)));
        }
        // Whole minutes to now: windows and bins (which divide a minute)
        // fall on the same boundaries as in `replay` of the same file.
        let shift = *shift.get_or_insert_with(|| {
            let gap = epoch0.0 - t0.0;
            (gap + MINUTE_US - 1).div_euclid(MINUTE_US) * MINUTE_US
        });
        let moved = RawPacket {
            ts: Timestamp(pkt.ts.0 + shift),
            ..pkt
        };
        d.push(&moved);
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + ctx.tick;
            d.flush_old(false);
            d.publish();
        }
    }
    d.drain();
    d.publish();
    result
}

//! The one capture loop, for `replay` and `run` alike.
//!
//! [`Dispatcher::drive`] reads a [`PacketSource`] to its end (or until the
//! stop flag): it paces packets ([`Pacing`]), decodes each just enough to
//! pick its worker ([`shard::worker_for`]), runs what must see every packet
//! (the cross-flow IDS detectors: a sweep's or a flood's packets spread
//! over workers by the address hash), and hands per-worker batches to the
//! workers, each packet with that decode ([`analyzers::decode::Detached`])
//! so that no packet is decoded twice. What happens when a worker's queue is full is the
//! [`Overload`] policy: `block` (replay: nothing is ever lost) or `drop`
//! (live: the batch is dropped and counted in
//! `moni_source_queue_drops_total`, so a slow analysis shows up as counted
//! loss instead of kernel drops that would hide where the time went).
//!
//! One dispatcher can drive several sources one after the other (replay's
//! files, one continuous input): its IDS state and batches carry over.
//!
//! SIP messages also go, as learn-only copies in packet order, to every
//! worker that does not own them, so that the worker owning the media
//! learns what the SDP announced before the first RTP packet.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use analyzers::ids::{Ahead, Ids, IdsConfig, IdsStats};
use analyzers::record::AlertRecord;
use analyzers::vnet::{VnetId, VnetMap};
use analyzers::{DecodeConfig, Decoded, LinkType, Timestamp};
use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::batch::{PacketBatch, Tag};
use super::classic::Placed;
use super::rotation::Rotation;
use super::{CaptureError, Next, PacketSource, RawPacket, SharedChunk};
use crate::metrics::Metrics;
use crate::shard::FragmentPins;
use crate::sink::Records;

/// How fast packets leave the loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// As fast as the workers take them (replay).
    AsFastAsPossible,
    /// At `speed` times the recorded pace, with timestamps moved by whole
    /// minutes to now, so that a file behaves like a live port (a `run`
    /// source of kind file). Windows and bins, which divide a minute, fall
    /// on the same boundaries as in `replay` of the same file.
    Recorded { speed: f64 },
}

/// What a full worker queue does to the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overload {
    /// Wait for room: nothing is lost (replay).
    Block,
    /// Drop the batch and count its packets (live capture: waiting would
    /// turn into kernel drops nobody can attribute).
    Drop,
}

/// What a worker receives.
pub struct WorkItem {
    pub link: Option<LinkType>,
    pub packets: PacketBatch,
    /// With [`DriverSettings::share_clock`]: the newest packet time the
    /// loop has read, of any worker's packets. The worker lets its time
    /// pass to it after the batch, so that a flow idle by the input's
    /// clock ends as `idle` whichever worker holds it, exactly as with one
    /// worker (whose flow table sees every packet's time).
    pub clock: Option<Timestamp>,
}

/// The loop's settings.
#[derive(Clone, Debug)]
pub struct DriverSettings {
    /// For metric labels and messages (the `[[sources]]` name, or the
    /// capture file).
    pub name: String,
    pub pacing: Pacing,
    pub overload: Overload,
    /// A partly filled batch leaves after this long (`None`: only full
    /// batches and the end of a source send; replay, where time is the
    /// packets').
    pub batch_flush: Option<Duration>,
    /// How often counters are published.
    pub tick: Duration,
    /// Hand the loop's packet clock to the workers with each batch, and
    /// to every worker at the end (replay: one input, one clock). Live
    /// sources leave it off: several sources' clocks differ, and the
    /// workers let time pass on the wall clock instead.
    pub share_clock: bool,
    /// On a stop, keep reading what the source still holds for up to this
    /// long (until it is idle): a live capture then loses nothing that had
    /// reached the probe.
    pub drain_on_stop: Option<Duration>,
    /// The VNet of the source (`[[sources]] vnet`).
    pub source_vnet: Option<VnetId>,
    pub sip_ports: Vec<u16>,
    /// Signature rules are loaded: the kernel keeps TCP payload (see
    /// [`PacketSource::set_tcp_cut`]); without, it cuts it except on
    /// `sip_ports`.
    pub tcp_payload: bool,
    pub decode: DecodeConfig,
    /// `[ids]` when enabled: the cross-flow detectors run here.
    pub ids: Option<IdsConfig>,
    /// For `iface:` mappings and the IDS's VNet of a packet.
    pub vnets: Arc<VnetMap>,
    /// Choose the batches' rotation by measuring the loop's CPU time
    /// (`replay`), or leave it to the free list's spares (`run`, whose
    /// free list holds the long rotation): see [`super::rotation`].
    pub adapt_rotation: bool,
}

/// What `run` changes in a running capture loop (SIGHUP).
pub enum SourceControl {
    /// A new VNet map (every existing VNet at its id) and new `[ids]`
    /// thresholds, windows and running detectors; the detectors keep
    /// their state. Table caps keep their start-up values, and detectors
    /// that were off at start (`[ids] enabled = false`) stay off until a
    /// restart.
    Reload {
        vnets: Arc<VnetMap>,
        ids: IdsConfig,
        /// Signature rules are loaded ([`DriverSettings::tcp_payload`]).
        tcp_payload: bool,
    },
}

/// The channels of the loop.
pub struct DriverIo {
    pub workers: Vec<Sender<WorkItem>>,
    /// Batches the workers are done with.
    pub free: Receiver<PacketBatch>,
    /// Where the IDS alerts go (the sinks).
    pub records: Sender<Records>,
    pub metrics: Arc<Metrics>,
    /// The node's running total of lost packets (all sources), which the
    /// workers put on each RTP window.
    pub capture_drops: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
    /// Reloads (`run`; replay passes `crossbeam_channel::never()`).
    pub control: Receiver<SourceControl>,
}

/// Totals of a dispatcher.
#[derive(Clone, Debug, Default)]
pub struct DriverTotals {
    pub packets: u64,
    pub bytes: u64,
    /// Bytes as captured: what the kernel copied, after its cut.
    pub captured_bytes: u64,
    pub queue_drops: u64,
    pub kernel_drops: u64,
    pub interface_drops: u64,
    /// The IDS detectors' counters, if IDS is on.
    pub ids: Option<IdsStats>,
    /// Alerts the IDS could not queue (a full sink queue, live only).
    pub alerts_dropped: u64,
    /// Tunnel datagrams whose fragment pin was forgotten at the cap
    /// ([`crate::shard::MAX_PINS`]) before its timeout.
    pub fragment_pins_evicted: u64,
    /// SIP conversations on other ports forgotten at the cap
    /// ([`crate::shard::MAX_SIP_FLOWS`]): their later datagrams may go
    /// to another worker than their calls.
    pub sip_conversations_evicted: u64,
    /// CPU time of the thread that drove the dispatcher, when it finished.
    pub cpu_seconds: f64,
}

/// Per-worker batch being filled.
struct Pending {
    batch: PacketBatch,
    since: Option<Instant>,
    /// The loop's packet count when this worker's batch was last sent.
    sent_at: u64,
}

/// One capture loop's state: batches being filled, the IDS, counters.
pub struct Dispatcher {
    settings: DriverSettings,
    io: DriverIo,
    link: Option<LinkType>,
    pending: Vec<Pending>,
    totals: DriverTotals,
    /// Counters as last published: packets, bytes, queue, kernel and
    /// interface drops, captured bytes.
    published: [u64; 6],
    /// The drop totals of the current source as last read.
    source_drops: (u64, u64),
    /// A reload changed [`DriverSettings::tcp_payload`]: the source's cut
    /// is set again.
    recut: bool,
    ids: Option<Ids>,
    /// Packets whose IDS observation waits, in order: those with lines to
    /// read ahead [`IDS_DELAY`] packets, so that what the detectors'
    /// lookups will read is prefetched first, and those behind them (each
    /// is in its worker's batch until that is sent, which observes them
    /// all first, as does every tick).
    ids_queue: VecDeque<Deferred>,
    alerts: Vec<AlertRecord>,
    /// pcapng interface index -> its source VNet, as resolved once.
    ifaces: Vec<Option<(Option<VnetId>, Option<LinkType>)>>,
    /// The newest packet time read.
    newest: Option<Timestamp>,
    /// Where the later fragments of tunnels' outer datagrams go.
    pins: FragmentPins,
    /// Which packets are SIP signalling (they all go to worker 0).
    sip: crate::shard::SipFlows,
    /// The capture thread's CPU time and the wall time when counters were
    /// last published (`moni_source_capture_busy_ratio`).
    cpu_mark: Option<(f64, Instant)>,
    /// How long a batch rests before it is filled again.
    rotation: Rotation,
}

/// Checks for a flush, a tick or a stop every this many packets.
const CHECK_EVERY: u32 = 256;

/// With a shared clock, a worker that was sent nothing for this many
/// packets is sent what its batch holds (perhaps nothing) with the clock:
/// its watermark then moves, so that the bins and signature alerts the
/// sinks hold until every worker has passed their time
/// ([`crate::sink::Watermarks`]) wait for at most this many packets, not
/// for the end of the input, when the sharding gives a worker little.
const IDLE_SEND: u64 = 65_536;

/// Packets taken at once from a source that reads ahead (a classic pcap
/// file: those whole in its buffer), decoded before any is handed on.
const BURST: usize = 16;

/// How many packets the IDS runs behind the capture loop for a packet with
/// lines to read ahead. On a scan or a
/// spoofed flood nearly every packet is a new key of the scan and sweep
/// detectors, whose tables then miss the cache (index entry, first-probe
/// slot, then the entry): their lines are prefetched when the packet is
/// read ([`Ids::lookahead`]) and the entries one packet before it is
/// observed ([`Ids::entry_lines`]), as a worker does for flows. A packet
/// with nothing to read ahead (most packets: those of established flows,
/// RTP) waits only for the packets before it, and is observed at once from
/// the decode at hand when none waits, instead of from the batch's copy.
const IDS_DELAY: u64 = 4;

/// A packet waiting for the IDS: where it is (worker, place in the batch),
/// its number among the packets read, its time and VNet, and its keys for
/// the second prefetch.
struct Deferred {
    w: usize,
    i: usize,
    at: u64,
    ts: Timestamp,
    vnet: VnetId,
    ahead: Ahead,
}

impl Dispatcher {
    pub fn new(settings: DriverSettings, io: DriverIo) -> Dispatcher {
        let pending = (0..io.workers.len().max(1))
            .map(|_| Pending {
                batch: PacketBatch::with_capacity(),
                since: None,
                sent_at: 0,
            })
            .collect();
        Dispatcher {
            ids: settings.ids.as_ref().map(Ids::new),
            ids_queue: VecDeque::with_capacity(IDS_DELAY as usize + 1),
            pins: FragmentPins::new(settings.decode.reassembly_timeout_secs),
            sip: crate::shard::SipFlows::default(),
            cpu_mark: None,
            rotation: Rotation::new(settings.adapt_rotation),
            settings,
            io,
            link: None,
            pending,
            totals: DriverTotals::default(),
            published: [0; 6],
            source_drops: (0, 0),
            recut: false,
            alerts: Vec::new(),
            ifaces: Vec::new(),
            newest: None,
        }
    }

    /// Reads `src` to its end, a read error or the stop flag. Returns the
    /// packets read from it, and the error that ended it. `progress` is
    /// called now and then (a progress bar).
    pub fn drive(
        &mut self,
        src: &mut dyn PacketSource,
        progress: &mut dyn FnMut(&dyn PacketSource),
    ) -> (u64, Option<CaptureError>) {
        let link = src.link_type();
        if link != self.link {
            // A batch holds packets of one link type.
            self.flush_all();
            self.link = link;
        }
        self.ifaces.clear();
        self.source_drops = (0, 0);
        self.set_tcp_cut(src);
        let wall0 = Instant::now();
        let epoch0 = wall_clock_now();
        let mut first: Option<Timestamp> = None;
        let mut shift = 0i64;
        let mut next_tick = Instant::now() + self.settings.tick;
        let mut since_check = 0u32;
        let mut packets = 0u64;
        let mut error = None;
        let mut scratch = Vec::new();
        // Bursts only as fast as possible: paced packets wait one by one.
        let bursts = matches!(self.settings.pacing, Pacing::AsFastAsPossible);
        let mut placed = Vec::with_capacity(BURST);
        loop {
            if bursts {
                if let Some(buf) = src.burst(BURST, &mut placed) {
                    if !placed.is_empty() {
                        self.push_burst(buf, &placed, packets);
                        packets += placed.len() as u64;
                        since_check += placed.len() as u32;
                        if since_check >= CHECK_EVERY {
                            since_check = 0;
                            if self.check(src, &mut next_tick, &mut packets, progress) {
                                break;
                            }
                        }
                        continue;
                    }
                }
            }
            since_check += 1;
            let idle = match src.next() {
                Ok(Next::Packet { pkt, iface }) => {
                    packets += 1;
                    // Paced: the packet waits for its time first (a reload
                    // that arrives meanwhile applies to it, VNet map
                    // included).
                    let pkt = match self.settings.pacing {
                        Pacing::AsFastAsPossible => pkt,
                        Pacing::Recorded { speed } => {
                            let t0 = *first.get_or_insert_with(|| {
                                let gap = epoch0.0 - pkt.ts.0;
                                shift = (gap + MINUTE_US - 1).div_euclid(MINUTE_US) * MINUTE_US;
                                pkt.ts
                            });
                            self.wait_until(wall0, pkt.ts.micros_since(t0).max(0), speed);
                            RawPacket {
                                ts: Timestamp(pkt.ts.0 + shift),
                                ..pkt
                            }
                        }
                    };
                    // pcapng: the interface's VNet, resolved once per index
                    // (a name lookup needs the source, so the packet is
                    // copied out the first time).
                    // pcapng: also the interface's link type, which may
                    // differ from the first interface's (a capture of
                    // `eth0` and `any`): a batch holds one link type.
                    let (pkt, vnet, link) = match iface {
                        None => (pkt, self.settings.source_vnet, self.link),
                        Some(i) => match self.ifaces.get(i as usize) {
                            Some(Some((v, l))) => (pkt, *v, *l),
                            _ => {
                                scratch.clear();
                                scratch.extend_from_slice(pkt.data);
                                let (ts, nanos, wire_len) = (pkt.ts, pkt.nanos, pkt.wire_len);
                                let l = src.interface_link(i);
                                let v = self.iface_vnet(i, src.interface_name(i), l);
                                let p = RawPacket {
                                    ts,
                                    nanos,
                                    wire_len,
                                    data: &scratch,
                                };
                                (p, v, l)
                            }
                        },
                    };
                    if link != self.link {
                        self.flush_all();
                        self.link = link;
                    }
                    self.push(&pkt, vnet, packets);
                    false
                }
                Ok(Next::Idle) => true,
                Ok(Next::End) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            if idle || since_check >= CHECK_EVERY {
                since_check = 0;
                if self.check(src, &mut next_tick, &mut packets, progress) {
                    break;
                }
            }
        }
        self.publish(src);
        progress(src);
        (packets, error)
    }

    /// What the loop does every [`CHECK_EVERY`] packets and when idle:
    /// stop (draining what the source holds, `packets` counting it),
    /// flush old batches, apply controls, publish at each tick. Whether
    /// to stop.
    fn check(
        &mut self,
        src: &mut dyn PacketSource,
        next_tick: &mut Instant,
        packets: &mut u64,
        progress: &mut dyn FnMut(&dyn PacketSource),
    ) -> bool {
        if self.io.stop.load(Ordering::Relaxed) {
            if let Some(limit) = self.settings.drain_on_stop {
                *packets += self.drain(src, Instant::now() + limit, *packets);
            }
            return true;
        }
        self.flush_old();
        self.apply_controls();
        if std::mem::take(&mut self.recut) {
            self.set_tcp_cut(src);
        }
        let now = Instant::now();
        if now >= *next_tick {
            *next_tick = now + self.settings.tick;
            self.publish(src);
            progress(src);
        }
        false
    }

    /// Reads what the source still holds until it is idle or `deadline`;
    /// `read` packets of it were read before.
    fn drain(&mut self, src: &mut dyn PacketSource, deadline: Instant, read: u64) -> u64 {
        let mut n = 0;
        while Instant::now() < deadline {
            match src.next() {
                Ok(Next::Packet { pkt, .. }) => {
                    n += 1;
                    self.push(&pkt, self.settings.source_vnet, read + n);
                }
                _ => break,
            }
        }
        n
    }

    /// Sends what every worker's batch holds (the end of a source, or of
    /// the input) and publishes the counters. Call once all sources ended.
    pub fn finish(mut self) -> DriverTotals {
        self.observe_deferred();
        // Nothing new arrives any more: wait (bounded, when dropping) for
        // queue space instead of dropping.
        let clock = self.clock();
        for w in 0..self.pending.len() {
            let p = &mut self.pending[w];
            p.since = None;
            // With a shared clock every worker hears the input's last time.
            if p.batch.is_empty() && clock.is_none() {
                continue;
            }
            let item = WorkItem {
                link: self.link,
                packets: std::mem::take(&mut p.batch),
                clock,
            };
            let Some(tx) = self.io.workers.get(w) else {
                continue;
            };
            let sent = match self.settings.overload {
                Overload::Block => tx.send(item).map_err(|e| e.into_inner()),
                Overload::Drop => tx
                    .send_timeout(item, Duration::from_secs(5))
                    .map_err(|e| e.into_inner()),
            };
            if let Err(item) = sent {
                self.totals.queue_drops += item.packets.analysed() as u64;
            }
        }
        self.send_alerts(true);
        self.publish_counters();
        // The source has ended: its capture thread is idle from here.
        self.io
            .metrics
            .source_capture_busy
            .with_label_values(&[self.settings.name.as_str()])
            .set(0.0);
        self.totals.ids = self.ids.as_ref().map(|i| i.stats().clone());
        self.totals.fragment_pins_evicted = self.pins.evicted;
        self.totals.sip_conversations_evicted = self.sip.evicted;
        self.totals.cpu_seconds = crate::sys::thread_cpu_seconds();
        let [short, long] = self.rotation.epochs();
        tracing::debug!(
            source = %self.settings.name,
            short_epochs = short,
            long_epochs = long,
            "Batch rotation."
        );
        self.totals
    }

    fn clock(&self) -> Option<Timestamp> {
        self.newest.filter(|_| self.settings.share_clock)
    }

    fn iface_vnet(
        &mut self,
        index: u32,
        name: Option<String>,
        link: Option<LinkType>,
    ) -> Option<VnetId> {
        // `iface:#N` names the interface by index, `iface:NAME` by name.
        let v = &self.settings.vnets;
        let vnet = v
            .iface(&format!("#{index}"))
            .or_else(|| name.and_then(|n| v.iface(&n)))
            .or(self.settings.source_vnet);
        let i = index as usize;
        if i < 4096 {
            if self.ifaces.len() <= i {
                self.ifaces.resize(i + 1, None);
            }
            self.ifaces[i] = Some((vnet, link));
        }
        vnet
    }

    /// The kernel's cut of TCP payload the settings ask for.
    fn set_tcp_cut(&self, src: &mut dyn PacketSource) {
        src.set_tcp_cut((!self.settings.tcp_payload).then_some(&self.settings.sip_ports[..]));
    }

    /// Applies the reloads that arrived: the packets read from here on see
    /// the new VNet map and thresholds.
    fn apply_controls(&mut self) {
        while let Ok(SourceControl::Reload {
            vnets,
            ids,
            tcp_payload,
        }) = self.io.control.try_recv()
        {
            self.recut |= tcp_payload != self.settings.tcp_payload;
            self.settings.tcp_payload = tcp_payload;
            // Packets waiting for the detectors were read under the old
            // configuration: they are judged under it.
            self.observe_deferred();
            self.settings.vnets = vnets;
            // pcapng interfaces' VNets are resolved again (`iface:`).
            self.ifaces.clear();
            if let Some(d) = &mut self.ids {
                d.reconfigure(&ids);
                self.settings.ids = Some(ids);
            }
        }
    }

    /// Sleeps until `offset_us` of recorded time (scaled by `speed`) has
    /// passed since `wall0`, in short slices so that a stop and batch
    /// flushing stay prompt.
    fn wait_until(&mut self, wall0: Instant, offset_us: i64, speed: f64) {
        let scaled = (offset_us as f64 / speed.max(1e-6)) as u64;
        let due = wall0 + Duration::from_micros(scaled);
        loop {
            let now = Instant::now();
            if now >= due || self.io.stop.load(Ordering::Relaxed) {
                return;
            }
            self.flush_old();
            self.apply_controls();
            std::thread::sleep((due - now).min(Duration::from_millis(20)));
        }
    }

    /// Hands one packet on; `number` is its 1-based number in its source.
    #[inline]
    fn push(&mut self, pkt: &RawPacket<'_>, source_vnet: Option<VnetId>, number: u64) {
        let mut decoded = self.decode(pkt, source_vnet);
        self.dispatch(pkt, source_vnet, number, &mut decoded, None);
    }

    /// Hands on the packets of a burst the source read ahead
    /// ([`PacketSource::burst`]): all of them are decoded first, and the
    /// lines the IDS will read for each asked for, then each is handed on
    /// in order as [`Dispatcher::push`] does. A packet's lines thus have
    /// the rest of the burst's decoding to arrive in, where one packet's
    /// copy into its batch was too short for a line from memory (the
    /// recent-exchanges line of a new UDP exchange, a new host's sketch
    /// line). `read` packets of the source came before the burst. The
    /// packets stay in `buf`, which their batches hold.
    fn push_burst(&mut self, buf: &SharedChunk, placed: &[Placed], read: u64) {
        let source_vnet = self.settings.source_vnet;
        let mut decoded = Vec::with_capacity(placed.len());
        for (k, p) in placed.iter().enumerate() {
            let Some(pkt) = p.packet(buf.as_slice()) else {
                debug_assert!(false, "a burst's record lies outside its buffer");
                continue;
            };
            // Numbered by place in the file, whatever was skipped; decoded
            // in its slot.
            decoded.push((read + 1 + k as u64, pkt, None));
            if let Some((_, _, d)) = decoded.last_mut() {
                self.decode_in(&pkt, source_vnet, d);
            }
        }
        // Each decode is read where the first loop put it, and moved out
        // only into its batch: read from a copy just made, its addresses
        // stalled the shard hash (the loads waited on the copy's stores),
        // 5% of the capture thread.
        for (number, pkt, d) in &mut decoded {
            self.dispatch(pkt, source_vnet, *number, d, Some(buf));
        }
    }

    /// A packet's decode, kept for the IDS and the worker, with its VNet
    /// when the IDS runs (whose first lines for it are asked for here);
    /// `None` for a link type moni cannot decode.
    #[inline]
    fn decode<'a>(
        &self,
        pkt: &RawPacket<'a>,
        source_vnet: Option<VnetId>,
    ) -> Option<(Decoded<'a>, Option<VnetId>)> {
        let mut out = None;
        self.decode_in(pkt, source_vnet, &mut out);
        out
    }

    /// [`Dispatcher::decode`] into `out`, where the caller keeps it: the
    /// decode is built in place ([`analyzers::decode_into`]).
    #[inline]
    fn decode_in<'a>(
        &self,
        pkt: &RawPacket<'a>,
        source_vnet: Option<VnetId>,
        out: &mut Option<(Decoded<'a>, Option<VnetId>)>,
    ) {
        let Some(link) = self.link else {
            *out = None;
            return;
        };
        let (d, vnet) = out.get_or_insert_with(Default::default);
        analyzers::decode_into(link, pkt.data, &self.settings.decode, d);
        *vnet = self.ids.as_ref().map(|ids| {
            let vnet = self.settings.vnets.resolve_packet(d, source_vnet);
            // The IDS reads its tables once the packet is in its batch:
            // the lines it reads first arrive meanwhile.
            for l in ids.early_lines(vnet, d).into_iter().flatten() {
                crate::sys::prefetch_line(l);
            }
            vnet
        });
    }

    /// Hands one decoded packet on: shards it, puts it into its worker's
    /// batch (SIP to every worker), runs the IDS on it. A packet lying in
    /// a file's `chunk` stays there (the batch holds the chunk); any
    /// other is copied. The decode moves out of `decoded` into the batch.
    #[inline]
    fn dispatch(
        &mut self,
        pkt: &RawPacket<'_>,
        source_vnet: Option<VnetId>,
        number: u64,
        decoded: &mut Option<(Decoded<'_>, Option<VnetId>)>,
        chunk: Option<&SharedChunk>,
    ) {
        self.totals.packets += 1;
        self.totals.bytes += u64::from(pkt.wire_len);
        self.totals.captured_bytes += pkt.data.len() as u64;
        self.newest = Some(self.newest.map_or(pkt.ts, |t| t.max(pkt.ts)));
        let n = self.pending.len();
        let mut sip = false;
        let w = match &*decoded {
            Some((d, _)) => {
                let mut w = self.pins.worker_for(pkt.ts, d, n);
                if n > 1 {
                    sip = self.sip.is_sip(d, &self.settings.sip_ports);
                    if sip || self.sip.is_sip_flow(d) {
                        // One worker holds every call: the legs of a call
                        // (a B2BUA's, a proxy's hops) are flows between
                        // other hosts, which the sharding spreads, and a
                        // call must not depend on `--workers`. Its
                        // fragments follow it.
                        w = 0;
                        self.pins.pin_first_fragment(pkt.ts, d, w);
                    }
                }
                w
            }
            None => 0,
        };
        if sip {
            let tag = Tag {
                source_vnet,
                learn_only: true,
                number,
            };
            for i in (0..n).filter(|&i| i != w) {
                if !self.pending[i].batch.has_room_for(pkt.data.len()) {
                    self.send(i);
                }
                self.pending[i].batch.push_tagged(pkt, tag);
                if self.pending[i].since.is_none() {
                    self.pending[i].since = Some(Instant::now());
                }
                if self.pending[i].batch.is_full() {
                    self.send(i);
                }
            }
        }
        if !self.pending[w].batch.has_room_for(pkt.data.len()) {
            self.send(w);
        }
        let p = &mut self.pending[w];
        if p.since.is_none() && self.settings.batch_flush.is_some() {
            p.since = Some(Instant::now());
        }
        let i = p.batch.len();
        let tag = Tag {
            source_vnet,
            learn_only: false,
            number,
        };
        match chunk {
            Some(c) => p.batch.push_shared(pkt, tag, c),
            None => p.batch.push_bytes(pkt, tag),
        }
        if let (Some((d, Some(vnet))), Some(ids)) = (&*decoded, self.ids.as_mut()) {
            let vnet = *vnet;
            let (ahead, lines) = ids.lookahead(vnet, d);
            if ahead.reads_ahead() || !self.ids_queue.is_empty() {
                for l in lines.into_iter().flatten() {
                    crate::sys::prefetch_line(l);
                }
                self.ids_queue.push_back(Deferred {
                    w,
                    i,
                    at: self.totals.packets,
                    ts: pkt.ts,
                    vnet,
                    ahead,
                });
            } else {
                // Nothing to read ahead and nothing waiting: the
                // packet is observed now, in order, from the decode
                // at hand (an established flow's packet, RTP).
                ids.observe(pkt.ts, vnet, d, &mut self.alerts);
            }
        }
        // The worker analyses this decode instead of decoding again.
        p.batch
            .push_decode(decoded.take().and_then(|(d, _)| d.detach(pkt.data)));
        // The packets read ahead for leave the queue IDS_DELAY packets
        // later; those behind them that need no read ahead, right after.
        while let Some(x) = self.ids_queue.front() {
            if x.ahead.reads_ahead() && self.totals.packets - x.at < IDS_DELAY {
                // One packet before its turn, the entries its index lines
                // (read IDS_DELAY - 1 packets ago) name.
                if self.totals.packets - x.at == IDS_DELAY - 1 {
                    if let Some(ids) = &self.ids {
                        for l in ids.entry_lines(&x.ahead).into_iter().flatten() {
                            crate::sys::prefetch_line(l);
                        }
                    }
                }
                break;
            }
            self.observe_next();
        }
        if self.pending[w].batch.is_full() {
            self.send(w);
        }
        if n > 1 && self.settings.share_clock && self.totals.packets.is_multiple_of(IDLE_SEND) {
            for i in 0..n {
                if self.totals.packets - self.pending[i].sent_at >= IDLE_SEND {
                    self.send(i);
                }
            }
        }
        if self.alerts.len() >= ALERT_BATCH {
            self.send_alerts(false);
        }
    }

    /// Runs the IDS on the oldest packet waiting for it.
    #[inline]
    fn observe_next(&mut self) {
        let (Some(ids), Some(link)) = (self.ids.as_mut(), self.link) else {
            self.ids_queue.clear();
            return;
        };
        let Some(x) = self.ids_queue.pop_front() else {
            return;
        };
        let Some(batch) = self.pending.get(x.w).map(|p| &p.batch) else {
            debug_assert!(false, "a packet waiting for the IDS names no batch");
            return;
        };
        // The decode the capture loop kept with the packet, or (when it
        // kept none) the same decode again.
        let d = batch.decoded_at(x.i).or_else(|| {
            batch
                .data_at(x.i)
                .map(|data| analyzers::decode_with(link, data, &self.settings.decode))
        });
        debug_assert!(d.is_some(), "a packet waiting for the IDS is in its batch");
        if let Some(d) = d {
            ids.observe(x.ts, x.vnet, &d, &mut self.alerts);
        }
    }

    /// Runs the IDS on every packet waiting for it (before a batch leaves,
    /// at every tick, and at the end).
    fn observe_deferred(&mut self) {
        while !self.ids_queue.is_empty() {
            self.observe_next();
        }
    }

    /// Sends worker `w`'s batch according to the overload policy.
    fn send(&mut self, w: usize) {
        self.observe_deferred();
        let fresh = self.rotation.next(
            self.io
                .free
                .try_recv()
                .unwrap_or_else(|_| PacketBatch::with_capacity()),
        );
        self.rotation
            .sent(self.totals.packets, crate::sys::thread_cpu_seconds);
        let clock = self.clock();
        let p = &mut self.pending[w];
        p.since = None;
        p.sent_at = self.totals.packets;
        let item = WorkItem {
            link: self.link,
            packets: std::mem::replace(&mut p.batch, fresh),
            clock,
        };
        let Some(tx) = self.io.workers.get(w) else {
            return;
        };
        let lost = match self.settings.overload {
            Overload::Block => tx.send(item).err().map(|e| e.into_inner()),
            Overload::Drop => match tx.try_send(item) {
                Ok(()) => None,
                Err(TrySendError::Full(item)) | Err(TrySendError::Disconnected(item)) => Some(item),
            },
        };
        if let Some(item) = lost {
            self.totals.queue_drops += item.packets.analysed() as u64;
        }
    }

    /// Sends batches that waited longer than the flush interval.
    fn flush_old(&mut self) {
        let Some(limit) = self.settings.batch_flush else {
            return;
        };
        let now = Instant::now();
        for w in 0..self.pending.len() {
            let old = self.pending[w]
                .since
                .is_some_and(|t| now.duration_since(t) >= limit);
            if old && !self.pending[w].batch.is_empty() {
                self.send(w);
            }
        }
    }

    /// Sends every non-empty batch.
    fn flush_all(&mut self) {
        for w in 0..self.pending.len() {
            if !self.pending[w].batch.is_empty() {
                self.send(w);
            }
        }
    }

    /// Hands the IDS alerts to the sinks: blocking when the policy is
    /// `block`, else never (a full sink queue drops them, counted).
    fn send_alerts(&mut self, last: bool) {
        if self.alerts.is_empty() {
            return;
        }
        let alerts = std::mem::take(&mut self.alerts);
        let n = alerts.len() as u64;
        let records = Records {
            alerts,
            ..Records::new(Arc::clone(&self.settings.vnets))
        };
        let sent = match self.settings.overload {
            Overload::Block => self.io.records.send(records).is_ok(),
            Overload::Drop if last => self
                .io
                .records
                .send_timeout(records, Duration::from_secs(5))
                .is_ok(),
            Overload::Drop => self.io.records.try_send(records).is_ok(),
        };
        if !sent {
            self.totals.alerts_dropped += n;
            self.io
                .metrics
                .ids_dropped_alerts
                .with_label_values(&["writer_queue_full"])
                .inc_by(n);
        }
    }

    fn publish(&mut self, src: &mut dyn PacketSource) {
        // A quiet link (or a paced replay) may leave packets waiting for
        // the IDS until their batch leaves: their alerts go out with this
        // tick's instead.
        self.observe_deferred();
        self.send_alerts(false);
        if let Some(d) = src.drops() {
            let (k, i) = self.source_drops;
            self.totals.kernel_drops += d.kernel.saturating_sub(k);
            self.totals.interface_drops += d.interface.saturating_sub(i);
            self.source_drops = (d.kernel, d.interface);
        }
        self.publish_counters();
    }

    fn publish_counters(&mut self) {
        let m = &self.io.metrics;
        if let Some(ids) = &self.ids {
            let label = format!("capture:{}", self.settings.name);
            for (det, keys, evicted) in ids.state() {
                m.ids_state_keys
                    .with_label_values(&[det, label.as_str()])
                    .set(keys as i64);
                let c = m.ids_evictions.with_label_values(&[det, label.as_str()]);
                if evicted > c.get() {
                    c.inc_by(evicted - c.get());
                }
            }
            let c = m.ids_suppressed.with_label_values(&[label.as_str()]);
            let n = ids.stats().suppressed;
            if n > c.get() {
                c.inc_by(n - c.get());
            }
        }
        let t = &self.totals;
        let now = [
            t.packets,
            t.bytes,
            t.queue_drops,
            t.kernel_drops,
            t.interface_drops,
            t.captured_bytes,
        ];
        let d: Vec<u64> = now
            .iter()
            .zip(self.published)
            .map(|(n, p)| n.saturating_sub(p))
            .collect();
        let name = [self.settings.name.as_str()];
        // Published from the thread that drives the dispatcher: its own
        // CPU clock.
        let mark = (crate::sys::thread_cpu_seconds(), Instant::now());
        if let Some((cpu, at)) = self.cpu_mark {
            let wall = mark.1.duration_since(at).as_secs_f64();
            if wall > 0.0 {
                m.source_capture_busy
                    .with_label_values(&name)
                    .set(((mark.0 - cpu) / wall).clamp(0.0, 1.0));
            }
        }
        self.cpu_mark = Some(mark);
        m.source_packets.with_label_values(&name).inc_by(d[0]);
        m.source_bytes.with_label_values(&name).inc_by(d[1]);
        m.source_queue_drops.with_label_values(&name).inc_by(d[2]);
        m.source_kernel_drops.with_label_values(&name).inc_by(d[3]);
        m.source_interface_drops
            .with_label_values(&name)
            .inc_by(d[4]);
        m.source_captured_bytes
            .with_label_values(&name)
            .inc_by(d[5]);
        self.io
            .capture_drops
            .fetch_add(d[2] + d[3] + d[4], Ordering::Relaxed);
        self.published = now;
    }
}

/// IDS alerts leave the loop in batches of at most this many (besides
/// every tick).
const ALERT_BATCH: usize = 1024;

const MINUTE_US: i64 = 60_000_000;

fn wall_clock_now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
    )
}

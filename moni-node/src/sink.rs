//! The records seam: what the analysis workers (and the capture loop's IDS)
//! finish leaves them as one [`Records`] value, and goes through the
//! [`Sinks`] in one fixed order, for `replay` and `run` alike:
//!
//! ```text
//! Records ─ GateSink ─ BinMerger ─ CompareSink ─ Tally ─ ParquetSink (Parquet + eve.json)
//!           (signature  (one row per  (shadow vs    (summary and
//!            alerts of   VNet and bin) production)   Prometheus counts)
//!            all workers)
//! ```
//!
//! Each stage implements [`Sink`]: it sees the records (and may change
//! them: the gate and the merger hold alerts and bins back, the comparer
//! adds its pairs) before the stages after it. [`consume`] is the one
//! loop that feeds them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use analyzers::ids::rules::gate::{order_key, AlertGate, GateStats, OrderKey};
use analyzers::record::{
    AlertRecord, BinRecord, CallRecord, FlowRecord, RtpStreamRecord, RtpWindowRecord,
};
use analyzers::schema::DatasetRecord;
use analyzers::vnet::{VnetId, VnetMap};
use analyzers::voip::compare::{CompareStats, Comparer, RtpCompareRecord, WindowTally};
use analyzers::Timestamp;
use arrow::array::RecordBatch;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::export::{Datasets, ExportError};
use crate::health::Health;
use crate::metrics::Metrics;

/// Finished records of one worker (or of the capture loop's IDS), with the
/// VNet map that names them.
pub struct Records {
    pub vnets: Arc<VnetMap>,
    /// The analysis worker that sent them (`None`: the capture loop).
    pub worker: Option<usize>,
    /// The worker's packet time when it took these records: every bin it
    /// will still emit starts at most two bins before it (late packets
    /// aside). A worker sends its watermark even without records.
    pub watermark: Option<Timestamp>,
    pub flows: Vec<FlowRecord>,
    /// Flows already converted to the `flows` dataset's Arrow batches. A
    /// worker converts its own ([`Records::convert_flows`]): the end of a
    /// replay flushes every flow still open, hundreds of thousands at
    /// once, and converting them all on the one output thread left the
    /// other cores idle while it did (a 2-worker flow-heavy replay: 0.3-0.45
    /// s of its 2.4 s went to writing flows, on one core).
    pub flow_batches: Vec<RecordBatch>,
    pub bins: Vec<BinRecord>,
    pub rtp_windows: Vec<RtpWindowRecord>,
    pub rtp_streams: Vec<RtpStreamRecord>,
    pub rtp_compare: Vec<RtpCompareRecord>,
    pub calls: Vec<CallRecord>,
    pub alerts: Vec<AlertRecord>,
}

impl Records {
    pub fn new(vnets: Arc<VnetMap>) -> Records {
        Records {
            vnets,
            worker: None,
            watermark: None,
            flows: Vec::new(),
            flow_batches: Vec::new(),
            bins: Vec::new(),
            rtp_windows: Vec::new(),
            rtp_streams: Vec::new(),
            rtp_compare: Vec::new(),
            calls: Vec::new(),
            alerts: Vec::new(),
        }
    }

    pub fn rows(&self) -> u64 {
        (self.flows.len()
            + self
                .flow_batches
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>()
            + self.bins.len()
            + self.rtp_windows.len()
            + self.rtp_streams.len()
            + self.rtp_compare.len()
            + self.calls.len()
            + self.alerts.len()) as u64
    }

    /// Converts `flows` to [`Records::flow_batches`] (in the worker that
    /// made them). On a conversion error they stay rows, for the writer to
    /// convert again and report with its dataset.
    pub fn convert_flows(&mut self) {
        if self.flows.is_empty() {
            return;
        }
        if let Ok(b) = analyzers::schema::batches(&self.flows, &self.vnets) {
            self.flow_batches.extend(b);
            self.flows.clear();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows() == 0
    }
}

/// One stage of the records seam.
pub trait Sink {
    /// Sees (and may change) records before the stages after it.
    fn accept(&mut self, r: &mut Records) -> Result<(), ExportError>;
    /// A clock tick (a quiet moment: rotate files, publish counters).
    fn tick(&mut self) -> Result<(), ExportError> {
        Ok(())
    }
    /// The input ended: whatever was held back goes into `held`, for the
    /// stages after this one.
    fn finish(&mut self, _held: &mut Records) -> Result<(), ExportError> {
        Ok(())
    }
}

/// Each worker's newest watermark (the packet time it is done with,
/// [`Records::watermark`]), for the stages that hold records until every
/// worker has passed them.
pub struct Watermarks {
    marks: Vec<Option<i64>>,
}

impl Watermarks {
    pub fn new(workers: usize) -> Watermarks {
        Watermarks {
            marks: vec![None; workers.max(1)],
        }
    }

    /// Takes the watermark `r` carries, if a worker sent it.
    pub fn update(&mut self, r: &Records) {
        if let (Some(w), Some(t)) = (r.worker, r.watermark) {
            if let Some(slot) = self.marks.get_mut(w) {
                *slot = Some(slot.map_or(t.0, |s| s.max(t.0)));
            }
        }
    }

    /// The packet time (µs) every worker has reached; `None` while one
    /// has not said.
    pub fn reached(&self) -> Option<i64> {
        self.marks
            .iter()
            .try_fold(i64::MAX, |m, w| w.map(|w| m.min(w)))
    }
}

/// Sums the bin rows of all workers per (VNet, bin), so that sharding
/// never splits a bin across rows: a bin is written once every worker's
/// watermark has passed it by two bins (when each worker's binner has
/// emitted it). At most `cap` bins wait; beyond, the oldest are written
/// early and counted in `released_at_cap`.
pub struct BinMerger {
    held: BTreeMap<(i64, VnetId), BinRecord>,
    watermarks: Watermarks,
    cap: usize,
    pub released_at_cap: u64,
}

impl BinMerger {
    /// Bins waiting at most (VNets × bins, e.g. 64 VNets for 17 minutes of
    /// 1 s bins).
    pub const DEFAULT_CAP: usize = 65_536;

    pub fn new(workers: usize, cap: usize) -> BinMerger {
        BinMerger {
            held: BTreeMap::new(),
            watermarks: Watermarks::new(workers),
            cap: cap.max(1),
            released_at_cap: 0,
        }
    }

    /// Bins held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

fn add_bin(into: &mut BinRecord, b: &BinRecord) {
    let add = |a: &mut analyzers::record::Counts, b: &analyzers::record::Counts| {
        a.packets += b.packets;
        a.bytes += b.bytes;
    };
    add(&mut into.total, &b.total);
    add(&mut into.tcp, &b.tcp);
    add(&mut into.udp, &b.udp);
    add(&mut into.icmp, &b.icmp);
    add(&mut into.other, &b.other);
    into.decode_errors += b.decode_errors;
}

impl Sink for BinMerger {
    fn accept(&mut self, r: &mut Records) -> Result<(), ExportError> {
        self.watermarks.update(r);
        for b in r.bins.drain(..) {
            match self.held.entry((b.bin_start.0, b.vnet)) {
                std::collections::btree_map::Entry::Occupied(mut e) => add_bin(e.get_mut(), &b),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(b);
                }
            }
        }
        let done_below = self.watermarks.reached();
        loop {
            let over = self.held.len() > self.cap;
            let Some(entry) = self.held.first_entry() else {
                break;
            };
            let b = entry.get();
            let width = i64::from(b.bin_secs.max(1)) * 1_000_000;
            let passed = done_below.is_some_and(|t| {
                // The worker's binner emitted every bin two bins before the
                // bin of its newest packet.
                let newest_bin = Timestamp(t).secs_floor() * 1_000_000 / width;
                b.bin_start.0 / width + 2 <= newest_bin
            });
            if !(passed || over) {
                break;
            }
            if !passed {
                self.released_at_cap += 1;
            }
            r.bins.push(entry.remove());
        }
        Ok(())
    }

    fn finish(&mut self, held: &mut Records) -> Result<(), ExportError> {
        held.bins
            .extend(std::mem::take(&mut self.held).into_values());
        Ok(())
    }
}

/// The signature alerts of several workers, decided as one worker seeing
/// every packet would decide them ([`analyzers::ids::rules::gate`]): the
/// thresholds that track more than a flow, and the alert caps. An alert
/// waits until every worker's watermark is past its packet time, then
/// goes through the [`AlertGate`] in packet order (each worker raises its
/// alerts in that order, so the gate merges the workers' queues). At most
/// `cap` alerts wait; beyond, the oldest are decided early and counted in
/// `decided_early` (their order may then differ from one worker's).
/// Alerts without a ticket (one worker, the capture loop's detectors)
/// pass untouched.
pub struct GateSink {
    gate: AlertGate,
    /// Per worker, its alerts waiting, in the order it raised them.
    queues: Vec<VecDeque<AlertRecord>>,
    held: usize,
    watermarks: Watermarks,
    cap: usize,
    pub decided_early: u64,
    metrics: Arc<Metrics>,
    published: GateStats,
}

impl GateSink {
    /// Alerts waiting at most (a few seconds of alerts at the default
    /// `ids.max_alerts_per_second`, with room for alerts the gate
    /// holds back by their thresholds).
    pub const DEFAULT_CAP: usize = 65_536;

    /// `max_tracked`: the gate's threshold table's cap (`ids.max_tracked`).
    pub fn new(workers: usize, max_tracked: usize, cap: usize, metrics: Arc<Metrics>) -> GateSink {
        GateSink {
            gate: AlertGate::new(max_tracked),
            queues: (0..workers.max(1)).map(|_| VecDeque::new()).collect(),
            held: 0,
            watermarks: Watermarks::new(workers),
            cap: cap.max(1),
            decided_early: 0,
            metrics,
            published: GateStats::default(),
        }
    }

    /// The windows the gate fills, for the workers
    /// ([`WorkerSetup::gate`](crate::worker::WorkerSetup::gate)).
    pub fn full_windows(&self) -> Arc<analyzers::ids::rules::gate::FullWindows> {
        self.gate.full_windows()
    }

    /// What the gate decided so far.
    pub fn stats(&self) -> &GateStats {
        &self.gate.stats
    }

    /// Alerts waiting now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The worker whose oldest waiting alert comes first, and its key.
    fn first(&self) -> Option<(OrderKey, usize)> {
        self.queues
            .iter()
            .enumerate()
            .filter_map(|(w, q)| {
                let a = q.front()?;
                Some((order_key(a, a.gate.as_deref()?, w), w))
            })
            .min()
    }

    /// Decides worker `w`'s oldest waiting alert; it if it goes out.
    fn decide_first_of(&mut self, w: usize) -> Option<AlertRecord> {
        let mut a = self.queues.get_mut(w)?.pop_front()?;
        self.held -= 1;
        let t = a.gate.take()?;
        self.gate.decide(&a, &t, w).then_some(a)
    }

    fn publish(&mut self) {
        let s = self.gate.stats.clone();
        let p = &self.published;
        let m = &self.metrics;
        for (reason, now, before) in [
            ("per_packet", s.dropped_per_packet, p.dropped_per_packet),
            ("per_second", s.dropped_per_second, p.dropped_per_second),
        ] {
            if now > before {
                m.ids_dropped_alerts
                    .with_label_values(&[reason])
                    .inc_by(now - before);
            }
        }
        let (keys, evicted) = self.gate.state();
        let l = ["signature_thresholds", "gate"];
        m.ids_state_keys.with_label_values(&l).set(keys as i64);
        let c = m.ids_evictions.with_label_values(&l);
        if evicted > c.get() {
            c.inc_by(evicted - c.get());
        }
        self.published = s;
    }
}

impl Sink for GateSink {
    fn accept(&mut self, r: &mut Records) -> Result<(), ExportError> {
        self.watermarks.update(r);
        if r.alerts.iter().any(|a| a.gate.is_some()) {
            let w = r.worker.unwrap_or(0).min(self.queues.len() - 1);
            for a in std::mem::take(&mut r.alerts) {
                if a.gate.is_some() {
                    self.queues[w].push_back(a);
                    self.held += 1;
                } else {
                    r.alerts.push(a);
                }
            }
        }
        let reached = self.watermarks.reached();
        while let Some((key, w)) = self.first() {
            let passed = reached.is_some_and(|t| key.0 < t);
            let over = self.held > self.cap;
            if !(passed || over) {
                break;
            }
            if !passed {
                self.decided_early += 1;
            }
            if let Some(a) = self.decide_first_of(w) {
                r.alerts.push(a);
            }
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), ExportError> {
        self.publish();
        Ok(())
    }

    fn finish(&mut self, held: &mut Records) -> Result<(), ExportError> {
        while let Some((_, w)) = self.first() {
            if let Some(a) = self.decide_first_of(w) {
                held.alerts.push(a);
            }
        }
        if self.decided_early > 0 {
            tracing::warn!(
                alerts = self.decided_early,
                "Signature alerts were decided before every worker had passed their packet time (more than {} waited): their thresholds and caps may differ from one worker's.",
                self.cap
            );
        }
        self.publish();
        Ok(())
    }
}

/// The shadow/production [`Comparer`] as a stage: adds the pairs judged to
/// the records (`rtp_compare`).
pub struct CompareSink {
    pub comparer: Comparer,
}

impl Sink for CompareSink {
    fn accept(&mut self, r: &mut Records) -> Result<(), ExportError> {
        if let Some(w) = r.worker {
            let pairs = self.comparer.push(w, &r.rtp_windows, &r.vnets);
            r.rtp_compare.extend(pairs);
        }
        Ok(())
    }
}

/// Counts what passes for the summary and for Prometheus: alerts by kind
/// and severity, comparison verdicts, and the comparison's windows for
/// the summary's per-window table (replay's and run's alike, bounded).
pub struct Tally {
    metrics: Arc<Metrics>,
    pub alerts: BTreeMap<&'static str, u64>,
    pub windows: WindowTally,
    published_compare: CompareStats,
}

/// The most windows the summary lists (about 100 bytes each); older ones
/// are still counted by verdict (`comparison.windows_not_listed`).
pub const SUMMARY_WINDOWS: usize = 100_000;

impl Tally {
    /// `tolerance`: the comparison's, for the windows' verdicts.
    fn new(metrics: Arc<Metrics>, tolerance: f64) -> Tally {
        Tally {
            metrics,
            alerts: BTreeMap::new(),
            windows: WindowTally::new(tolerance, SUMMARY_WINDOWS),
            published_compare: CompareStats::default(),
        }
    }

    /// Publishes the comparer's counters (dropped at the cap).
    pub fn publish_compare(&mut self, s: &CompareStats) {
        let m = &self.metrics;
        let p = &mut self.published_compare;
        if s.dropped_at_cap > p.dropped_at_cap {
            m.voip_compare_dropped
                .with_label_values(&["cap"])
                .inc_by(s.dropped_at_cap - p.dropped_at_cap);
        }
        if s.unpaired_expired > p.unpaired_expired {
            m.voip_compare_dropped
                .with_label_values(&["unpaired"])
                .inc_by(s.unpaired_expired - p.unpaired_expired);
        }
        if s.capture_drops > p.capture_drops {
            m.voip_compare_dropped
                .with_label_values(&["capture_drops"])
                .inc_by(s.capture_drops - p.capture_drops);
        }
        *p = s.clone();
    }
}

impl Sink for Tally {
    fn accept(&mut self, r: &mut Records) -> Result<(), ExportError> {
        let m = &self.metrics;
        for a in &r.alerts {
            *self.alerts.entry(a.kind).or_default() += 1;
            m.ids_alerts
                .with_label_values(&[a.kind, &a.severity.to_string()])
                .inc();
        }
        for c in &r.rtp_compare {
            m.voip_compare_windows
                .with_label_values(&[c.verdict.as_str()])
                .inc();
        }
        for c in &r.rtp_compare {
            self.windows.add(c);
        }
        Ok(())
    }
}

/// The Parquet datasets and `eve.json`. After an output error it keeps
/// draining (workers never block on a dead writer) and reports the error
/// at the end; with `stop_writing` and a full spool it counts what it does
/// not write.
pub struct ParquetSink {
    pub out: Datasets,
    metrics: Arc<Metrics>,
    /// Set by the shipper when the spool is over its cap (`stop_writing`).
    spool_full: Option<Arc<AtomicBool>>,
    /// Told of failing and mended writes (`/healthz`).
    health: Option<Arc<Health>>,
    /// The first write error, kept for the summary once rows were lost to
    /// it or writes still fail at the end.
    pub error: Option<ExportError>,
    /// Writes are failing (logged once, until they work again).
    failing: bool,
    pub rows_dropped_spool_full: u64,
    /// Per writer: rows, files, rows lost, as last published.
    published: Vec<(u64, usize, u64)>,
}

impl ParquetSink {
    pub fn new(
        out: Datasets,
        metrics: Arc<Metrics>,
        spool_full: Option<Arc<AtomicBool>>,
        health: Option<Arc<Health>>,
    ) -> ParquetSink {
        let published = vec![(0, 0, 0); out.all().len()];
        ParquetSink {
            out,
            metrics,
            spool_full,
            health,
            error: None,
            failing: false,
            rows_dropped_spool_full: 0,
            published,
        }
    }

    /// A write failed: a storage failure (a full disk), retried by the
    /// writers, never a reason to stop writing.
    fn failed(&mut self, e: ExportError) {
        if !self.failing {
            tracing::error!(
                error = %e,
                "Writing Parquet failed; records wait in memory (up to 32 MiB a dataset) and are written when a retry succeeds."
            );
            if let Some(h) = &self.health {
                h.set("output", Some(e.to_string()));
            }
            self.failing = true;
        } else {
            tracing::debug!(error = %e, "Writing Parquet still fails.");
        }
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Tries the failing writers again when their time has come.
    fn retry(&mut self, force: bool) {
        match self.out.retry_if_due(force) {
            Err(e) => self.failed(e),
            Ok(_) if self.failing && !self.out.is_failing() => {
                tracing::info!("Writing Parquet works again; the records that waited are written.");
                if let Some(h) = &self.health {
                    h.set("output", None);
                }
                self.failing = false;
            }
            Ok(_) => {}
        }
    }

    /// Rows lost to failed writes, all datasets.
    pub fn rows_lost(&self) -> u64 {
        self.out.all().iter().map(|w| w.rows_lost).sum()
    }

    fn publish(&mut self) {
        for (w, p) in self.out.all().iter().zip(self.published.iter_mut()) {
            let l = [w.dataset()];
            if w.rows_lost > p.2 {
                self.metrics
                    .parquet_rows_lost
                    .with_label_values(&l)
                    .inc_by(w.rows_lost - p.2);
            }
            self.metrics
                .parquet_write_failing
                .with_label_values(&l)
                .set(i64::from(w.is_failing()));
            if w.rows_in_files > p.0 {
                self.metrics
                    .parquet_rows
                    .with_label_values(&l)
                    .inc_by(w.rows_in_files - p.0);
            }
            if w.files.len() > p.1 {
                self.metrics
                    .parquet_files
                    .with_label_values(&l)
                    .inc_by((w.files.len() - p.1) as u64);
            }
            *p = (w.rows_in_files, w.files.len(), w.rows_lost);
        }
    }
}

/// Writes every dataset of `r`, also after one failed (a failing writer
/// holds its batches for the retry); the first error.
fn write(out: &mut Datasets, r: &Records) -> Result<(), ExportError> {
    [
        out.write_flows(&r.flows, &r.vnets),
        out.write_batches(FlowRecord::DATASET.name, &r.flow_batches),
        out.write_bins(&r.bins, &r.vnets),
        out.write_rtp(&r.rtp_windows, &r.rtp_streams, &r.vnets),
        out.write_compare(&r.rtp_compare, &r.vnets),
        out.write_alerts(&r.alerts, &r.vnets),
        out.write_calls(&r.calls, &r.vnets),
    ]
    .into_iter()
    .collect()
}

impl Sink for ParquetSink {
    fn accept(&mut self, r: &mut Records) -> Result<(), ExportError> {
        if r.is_empty() {
            return Ok(());
        }
        if self
            .spool_full
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
        {
            self.metrics
                .spool_dropped_rows
                .with_label_values(&[] as &[&str])
                .inc_by(r.rows());
            self.rows_dropped_spool_full += r.rows();
        } else if let Err(e) = write(&mut self.out, r) {
            self.failed(e);
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), ExportError> {
        self.retry(false);
        if let Err(e) = self.out.rotate_if_due() {
            self.failed(e);
        }
        self.publish();
        Ok(())
    }

    fn finish(&mut self, held: &mut Records) -> Result<(), ExportError> {
        self.accept(held)?;
        if let Err(e) = self.out.close() {
            self.failed(e);
        }
        // A failure mended without a row lost leaves no error behind.
        if self.rows_lost() == 0 && !self.out.is_failing() {
            self.error = None;
        }
        self.publish();
        Ok(())
    }
}

/// Every stage, wired in the one order both modes use.
pub struct Sinks {
    pub gate: GateSink,
    pub bins: BinMerger,
    pub compare: CompareSink,
    pub tally: Tally,
    pub parquet: ParquetSink,
    /// The newest VNet map seen, for what is flushed at the end.
    vnets: Option<Arc<VnetMap>>,
    /// The comparison's tolerance as `f64` bits, which a SIGHUP of `run`
    /// changes ([`Sinks::tolerance`]); taken at each batch and tick.
    tolerance: Arc<std::sync::atomic::AtomicU64>,
    /// CPU time the thread that ran [`consume`] spent in it (not what it
    /// did before: replay's main thread loads the config and the rules).
    pub cpu_seconds: f64,
}

impl Sinks {
    /// The newest VNet map the records carried (a `run` reload's, with
    /// the VNets it added), if any arrived.
    pub fn newest_vnets(&self) -> Option<Arc<VnetMap>> {
        self.vnets.clone()
    }

    /// `metrics`: where the tally counts alerts and verdicts;
    /// `max_tracked`: the alert gate's threshold table's cap.
    pub fn new(
        workers: usize,
        compare_tolerance: f64,
        max_tracked: usize,
        parquet: ParquetSink,
        metrics: Arc<Metrics>,
    ) -> Sinks {
        Sinks {
            gate: GateSink::new(
                workers,
                max_tracked,
                GateSink::DEFAULT_CAP,
                Arc::clone(&metrics),
            ),
            bins: BinMerger::new(workers, BinMerger::DEFAULT_CAP),
            compare: CompareSink {
                comparer: Comparer::new(Comparer::DEFAULT_CAP, compare_tolerance),
            },
            tally: Tally::new(metrics, compare_tolerance),
            parquet,
            vnets: None,
            tolerance: Arc::new(std::sync::atomic::AtomicU64::new(
                compare_tolerance.to_bits(),
            )),
            cpu_seconds: 0.0,
        }
    }

    fn stages(&mut self) -> [&mut dyn Sink; 5] {
        [
            &mut self.gate,
            &mut self.bins,
            &mut self.compare,
            &mut self.tally,
            &mut self.parquet,
        ]
    }

    /// Where a reload sets a new comparison tolerance (`f64` bits): pairs
    /// judged after it, and windows not settled yet, take it.
    pub fn tolerance(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.tolerance)
    }

    fn take_tolerance(&mut self) {
        let t = f64::from_bits(self.tolerance.load(std::sync::atomic::Ordering::Relaxed));
        if t != self.compare.comparer.tolerance() {
            self.compare.comparer.set_tolerance(t);
            self.tally.windows.set_tolerance(t);
        }
    }

    pub fn accept(&mut self, mut r: Records) {
        self.take_tolerance();
        self.vnets = Some(Arc::clone(&r.vnets));
        for s in self.stages() {
            // Stages keep their own errors (the Parquet writer reports its
            // first at the end); none stops the others.
            let _ = s.accept(&mut r);
        }
    }

    pub fn tick(&mut self) {
        self.take_tolerance();
        for s in self.stages() {
            let _ = s.tick();
        }
        let stats = self.compare.comparer.stats().clone();
        self.tally.publish_compare(&stats);
    }

    /// Ends the input: each stage's held records go through the stages
    /// after it; the files are completed.
    pub fn finish(&mut self) {
        self.take_tolerance();
        let vnets = self
            .vnets
            .clone()
            .unwrap_or_else(|| Arc::new(VnetMap::default()));
        for i in 0..5 {
            let mut held = Records::new(Arc::clone(&vnets));
            let mut stages = self.stages();
            let _ = stages[i].finish(&mut held);
            for s in stages.iter_mut().skip(i + 1) {
                let _ = s.accept(&mut held);
            }
        }
        let stats = self.compare.comparer.stats().clone();
        self.tally.publish_compare(&stats);
    }
}

/// Feeds every record batch to the sinks until all senders hung up, with a
/// tick when `tick` passes without one; then ends the input.
pub fn consume(input: &Receiver<Records>, sinks: &mut Sinks, tick: Duration) {
    let cpu0 = crate::sys::thread_cpu_seconds();
    let mut last_tick = std::time::Instant::now();
    loop {
        match input.recv_timeout(tick) {
            Ok(r) => sinks.accept(r),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= tick {
            last_tick = std::time::Instant::now();
            sinks.tick();
        }
    }
    sinks.finish();
    sinks.cpu_seconds = crate::sys::thread_cpu_seconds() - cpu0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(vnet: u16, secs: i64, packets: u64) -> BinRecord {
        BinRecord {
            vnet: VnetId(vnet),
            bin_start: Timestamp::from_secs(secs),
            bin_secs: 1,
            total: analyzers::record::Counts {
                packets,
                bytes: packets * 100,
            },
            ..BinRecord::default()
        }
    }

    fn from(worker: usize, at: i64, bins: Vec<BinRecord>) -> Records {
        Records {
            worker: Some(worker),
            watermark: Some(Timestamp::from_secs(at)),
            bins,
            ..Records::new(Arc::new(VnetMap::default()))
        }
    }

    /// A worker's flows leave as Arrow batches of the flows dataset, the
    /// same rows the writer would have converted.
    #[test]
    fn a_workers_flows_are_converted_to_the_datasets_batches() {
        use analyzers::record::{DirectionStats, EndReason};
        let flow = |id: u64| FlowRecord {
            tunnel: Default::default(),
            flow_id: id,
            vnet: VnetId(0),
            vlan_id: None,
            src_addr: "10.0.0.1".parse().expect("addr"),
            dst_addr: "10.0.0.2".parse().expect("addr"),
            src_port: 1000,
            dst_port: 53,
            protocol: 17,
            fwd: DirectionStats {
                packets: 1,
                bytes: 80,
                first: Timestamp::from_secs(1),
                last: Timestamp::from_secs(1),
                tcp_flags: 0,
            },
            rev: DirectionStats::default(),
            fragments: 0,
            end_reason: EndReason::Idle,
        };
        let vnets = Arc::new(VnetMap::default());
        let mut r = Records {
            flows: (1..=3).map(flow).collect(),
            ..Records::new(Arc::clone(&vnets))
        };
        let expected = analyzers::schema::batches(&r.flows, &vnets).expect("convert");
        assert_eq!(r.rows(), 3);
        r.convert_flows();
        assert!(r.flows.is_empty());
        assert_eq!(r.rows(), 3, "the rows are still counted");
        assert_eq!(r.flow_batches, expected);
        let ids = r.flow_batches[0]
            .column_by_name("flow_id")
            .expect("flow_id column");
        assert_eq!(ids.len(), 3);
    }

    /// Two workers' rows of one bin leave as one row, once both workers
    /// are two bins past it.
    #[test]
    fn merges_a_bin_of_two_workers_into_one_row() {
        let mut m = BinMerger::new(2, 100);
        let mut r = from(0, 12, vec![bin(0, 10, 3), bin(1, 10, 1)]);
        m.accept(&mut r).expect("accept");
        assert!(r.bins.is_empty(), "worker 1 has not passed bin 10 yet");
        let mut r = from(1, 11, vec![bin(0, 10, 4)]);
        m.accept(&mut r).expect("accept");
        assert!(r.bins.is_empty(), "worker 1 is only one bin past");
        let mut r = from(1, 12, vec![]);
        m.accept(&mut r).expect("accept");
        let got: Vec<(u16, i64, u64)> = r
            .bins
            .iter()
            .map(|b| (b.vnet.0, b.bin_start.0 / 1_000_000, b.total.packets))
            .collect();
        assert_eq!(got, vec![(0, 10, 7), (1, 10, 1)]);
        assert_eq!((m.held(), m.released_at_cap), (0, 0));
    }

    #[test]
    fn the_cap_writes_the_oldest_bins_early_and_counts_them() {
        let mut m = BinMerger::new(2, 2);
        let mut r = from(0, 100, (0..5).map(|i| bin(0, i, 1)).collect());
        m.accept(&mut r).expect("accept");
        assert_eq!(r.bins.len(), 3);
        assert_eq!(r.bins[0].bin_start, Timestamp::from_secs(0));
        assert_eq!((m.held(), m.released_at_cap), (2, 3));
        let mut held = Records::new(Arc::new(VnetMap::default()));
        m.finish(&mut held).expect("finish");
        assert_eq!(held.bins.len(), 2);
    }

    /// A signature alert of packet `number` at second `secs`, raised by a
    /// rule whose `limit 1 per 60 s by_rule` the gate checks.
    fn gated_alert(secs: i64, number: u64) -> AlertRecord {
        use analyzers::ids::rules::gate::GateTicket;
        use analyzers::ids::rules::{AlertLimits, Threshold, ThresholdKind, Track};
        let t = Threshold {
            kind: ThresholdKind::Limit,
            track: Track::Rule,
            count: 1,
            seconds: 60,
            unique_on_dst_port: None,
            multiplier: 0,
        };
        AlertRecord {
            time: Timestamp::from_secs(secs),
            end: Timestamp::from_secs(secs),
            vnet: VnetId(0),
            kind: "signature",
            signature_id: 7,
            rev: 1,
            signature: "limit".into(),
            category: "".into(),
            severity: 3,
            src_addr: None,
            src_port: None,
            dst_addr: None,
            dst_port: None,
            protocol: 6,
            flow_id: None,
            vlans: Vec::new(),
            details: "{}".into(),
            trigger: None,
            to_server: None,
            flow: None,
            tunnel: Default::default(),
            gate: Some(Box::new(GateTicket {
                thresholds: vec![(t, (7, None, None, 0), None)],
                limits: AlertLimits::default(),
                number,
                part: 0,
                order: 0,
            })),
        }
    }

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new("test").expect("metrics"))
    }

    /// The gate holds a worker's alerts until every worker has passed
    /// their packet time, then decides them in packet order: the earlier
    /// alert, which arrived later from the other worker, is the one a
    /// `limit 1` lets through.
    #[test]
    fn the_gate_decides_the_workers_alerts_in_packet_order() {
        let mut g = GateSink::new(2, 100, 100, metrics());
        let mut r = from(0, 20, vec![]);
        r.alerts = vec![gated_alert(12, 5)];
        g.accept(&mut r).expect("accept");
        assert!(r.alerts.is_empty(), "worker 1 has said nothing yet");
        assert_eq!(g.held(), 1);
        let mut r = from(1, 12, vec![]);
        r.alerts = vec![gated_alert(11, 3)];
        g.accept(&mut r).expect("accept");
        assert_eq!(r.alerts.len(), 1, "worker 1 is past second 11");
        assert_eq!(r.alerts[0].time, Timestamp::from_secs(11));
        assert!(
            r.alerts[0].gate.is_none(),
            "decided alerts leave without a ticket"
        );
        // An alert of the capture loop's detectors passes at once.
        let mut r = Records::new(Arc::new(VnetMap::default()));
        let mut plain = gated_alert(30, 0);
        plain.gate = None;
        plain.kind = "syn_flood";
        r.alerts = vec![plain];
        g.accept(&mut r).expect("accept");
        assert_eq!(r.alerts.len(), 1);
        let mut held = Records::new(Arc::new(VnetMap::default()));
        g.finish(&mut held).expect("finish");
        assert!(
            held.alerts.is_empty(),
            "the limit held the second alert back"
        );
        assert_eq!((g.stats().alerts, g.stats().thresholded), (1, 1));
        assert_eq!(g.decided_early, 0);
    }

    /// At its cap the gate decides the oldest alerts early, and counts
    /// them.
    #[test]
    fn the_gate_decides_early_at_its_cap() {
        let mut g = GateSink::new(2, 100, 2, metrics());
        let mut r = from(0, 100, vec![]);
        r.alerts = (1..=5).map(|i| gated_alert(i, i as u64)).collect();
        g.accept(&mut r).expect("accept");
        assert_eq!((g.held(), g.decided_early), (2, 3));
        assert_eq!(
            r.alerts.len(),
            1,
            "the first passed the limit, two were held back"
        );
    }
}

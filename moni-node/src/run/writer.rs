//! The Parquet writer thread: every worker's finished records go to one set
//! of rotating datasets, so each dataset has one file open at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use analyzers::record::{
    AlertRecord, BinRecord, CallRecord, FlowRecord, RtpStreamRecord, RtpWindowRecord,
};
use analyzers::vnet::VnetMap;
use analyzers::voip::compare::RtpCompareRecord;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::export::{Datasets, ExportError};
use crate::metrics::Metrics;

/// Finished records of one worker, with the VNet map that names them.
pub struct Records {
    pub vnets: Arc<VnetMap>,
    pub flows: Vec<FlowRecord>,
    pub bins: Vec<BinRecord>,
    pub rtp_windows: Vec<RtpWindowRecord>,
    pub rtp_streams: Vec<RtpStreamRecord>,
    pub rtp_compare: Vec<RtpCompareRecord>,
    pub calls: Vec<CallRecord>,
    pub alerts: Vec<AlertRecord>,
}

impl Records {
    /// Alerts alone (from a capture thread's IDS).
    pub fn alerts_only(vnets: Arc<VnetMap>, alerts: Vec<AlertRecord>) -> Records {
        Records {
            vnets,
            flows: Vec::new(),
            bins: Vec::new(),
            rtp_windows: Vec::new(),
            rtp_streams: Vec::new(),
            rtp_compare: Vec::new(),
            calls: Vec::new(),
            alerts,
        }
    }

    pub fn rows(&self) -> u64 {
        (self.flows.len()
            + self.bins.len()
            + self.rtp_windows.len()
            + self.rtp_streams.len()
            + self.rtp_compare.len()
            + self.calls.len()
            + self.alerts.len()) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
            && self.bins.is_empty()
            && self.rtp_windows.is_empty()
            && self.rtp_streams.is_empty()
            && self.rtp_compare.is_empty()
            && self.calls.is_empty()
            && self.alerts.is_empty()
    }
}

/// What the writer did, for the exit summary.
#[derive(Debug, Default, serde::Serialize)]
pub struct WriterSummary {
    pub datasets: Vec<(String, u64, usize)>,
    pub error: Option<String>,
    /// Records not written because the spool was full (`stop_writing`).
    pub rows_dropped_spool_full: u64,
}

/// Writes until every worker has hung up, then completes the open files.
/// After an output error it keeps draining (workers never block on a dead
/// writer), clears `healthy` and reports the error at exit.
pub fn run_writer(
    mut out: Datasets,
    input: Receiver<Records>,
    metrics: Arc<Metrics>,
    healthy: Arc<AtomicBool>,
    spool_full: Arc<AtomicBool>,
    tick: Duration,
) -> WriterSummary {
    let mut error: Option<ExportError> = None;
    let mut published: Vec<(u64, usize)> = vec![(0, 0); out.all().len()];
    let mut rows_dropped = 0u64;
    loop {
        match input.recv_timeout(tick) {
            Ok(r) => {
                if spool_full.load(Ordering::Relaxed) {
                    // stop_writing: the spool is over its cap; count what is lost.
                    metrics
                        .spool_dropped_rows
                        .with_label_values(&[] as &[&str])
                        .inc_by(r.rows());
                    rows_dropped += r.rows();
                } else if error.is_none() {
                    if let Err(e) = write(&mut out, &r) {
                        tracing::error!(error = %e, "Writing Parquet failed; records are dropped from now on.");
                        healthy.store(false, Ordering::Relaxed);
                        error = Some(e);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if error.is_none() {
            if let Err(e) = out.rotate_if_due() {
                healthy.store(false, Ordering::Relaxed);
                error = Some(e);
            }
        }
        publish(&out, &metrics, &mut published);
    }
    if error.is_none() {
        if let Err(e) = out.close() {
            error = Some(e);
        }
    }
    publish(&out, &metrics, &mut published);
    WriterSummary {
        datasets: out
            .all()
            .iter()
            .map(|w| (w.dataset().to_string(), w.rows_written, w.files.len()))
            .collect(),
        error: error.map(|e| e.to_string()),
        rows_dropped_spool_full: rows_dropped,
    }
}

fn write(out: &mut Datasets, r: &Records) -> Result<(), ExportError> {
    out.write_flows(&r.flows, &r.vnets)?;
    out.write_bins(&r.bins, &r.vnets)?;
    out.write_rtp(&r.rtp_windows, &r.rtp_streams, &r.vnets)?;
    out.write_compare(&r.rtp_compare, &r.vnets)?;
    out.write_alerts(&r.alerts, &r.vnets)?;
    out.write_calls(&r.calls, &r.vnets)
}

fn publish(out: &Datasets, m: &Metrics, published: &mut [(u64, usize)]) {
    for (w, p) in out.all().iter().zip(published.iter_mut()) {
        let l = [w.dataset()];
        if w.rows_written > p.0 {
            m.parquet_rows
                .with_label_values(&l)
                .inc_by(w.rows_written - p.0);
        }
        if w.files.len() > p.1 {
            m.parquet_files
                .with_label_values(&l)
                .inc_by((w.files.len() - p.1) as u64);
        }
        *p = (w.rows_written, w.files.len());
    }
}

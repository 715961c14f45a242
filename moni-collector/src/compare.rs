//! `moni-collector compare`: is shadow VNet B ready to replace production A?
//!
//! Reads the collected `rtp_windows` of both VNets (every node), pairs the
//! same stream's windows across them with the `analyzers` comparison (the
//! logic the node uses too), and reports per window and stream the MOS,
//! loss and jitter of each VNet, the difference and a verdict, per window
//! the mean over streams, per VNet its mean MOS and loss per window, and a
//! summary; [`crate::figure`] draws it as the paper's Fig. 7/8.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use analyzers::record::{RtpQuality, RtpStreamId, RtpWindowRecord};
use analyzers::vnet::{Role, VnetMap};
use analyzers::voip::compare::{
    compare_windows, mos_difference, per_window, unpaired_windows, MosDifference, RtpCompareRecord,
    UnpairedWindow, Verdict, WindowVerdict,
};
use analyzers::voip::jitter_buffer::Model as JbModel;
use analyzers::Timestamp;
use anyhow::{bail, Context};
use arrow::array::{
    Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

/// The question, from the command line or the HTTP query string.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CompareQuery {
    pub production: String,
    pub shadow: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub node: Option<String>,
    pub format: Option<String>,
    pub tolerance: Option<f64>,
    /// A third VNet drawn beside the pair (the receiver, `monitor` role).
    pub monitor: Option<String>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct Report {
    pub production: String,
    pub shadow: String,
    pub tolerance: f64,
    /// The jitter-buffer model whose MOS is compared (the node's
    /// `rtp.default_jitter_buffer`); empty when no window was paired or the
    /// files predate the models.
    pub jitter_buffer: String,
    pub windows: Vec<WindowRow>,
    pub streams: Vec<StreamRow>,
    /// Stream windows one VNet carried and the other did not (a call the
    /// shadow lost, a window it went dark in): never paired, so in no
    /// verdict above, but a production window the shadow lacks is the
    /// shadow's failure.
    pub unpaired: Vec<UnpairedRow>,
    /// Mean MOS-CQ and loss per window of every VNet asked for, paired or
    /// not (a window only one VNet has is here too): the figure's lines.
    pub series: Vec<SeriesRow>,
    pub summary: Summary,
}

/// One VNet's window: the mean over its streams.
#[derive(Debug, Serialize)]
pub struct SeriesRow {
    pub vnet: String,
    pub role: String,
    pub window_start: String,
    pub window_start_unix: i64,
    pub window_secs: u32,
    pub streams: u64,
    /// Packets the VNet's streams received in the window: how much the
    /// window's MOS and loss rest on.
    pub packets: u64,
    pub mos: f64,
    pub loss: f64,
}

#[derive(Debug, Serialize)]
pub struct WindowRow {
    pub window_start: String,
    pub window_start_unix: i64,
    pub streams: u64,
    pub mos_production: f64,
    pub mos_shadow: f64,
    pub mos_diff: f64,
    pub loss_production: f64,
    pub loss_shadow: f64,
    /// Packets each VNet's streams received in the window (all its
    /// streams, paired or not): what the window's figures rest on.
    pub packets_production: u64,
    pub packets_shadow: u64,
    pub verdict: String,
}

#[derive(Debug, Serialize)]
pub struct StreamRow {
    pub window_start: String,
    pub ssrc: u32,
    pub src: String,
    pub dst: String,
    /// The SIP Call-ID that announced the stream, if the probe saw it.
    pub call_id: Option<String>,
    pub mos_production: f64,
    pub mos_shadow: f64,
    pub mos_diff: f64,
    pub loss_production: f64,
    pub loss_shadow: f64,
    pub jitter_production_ms: f64,
    pub jitter_shadow_ms: f64,
    pub verdict: String,
}

/// A stream's window that only one VNet of the pair carried.
#[derive(Debug, Serialize)]
pub struct UnpairedRow {
    pub window_start: String,
    /// The VNet that carried it and its role; the other VNet lacks it.
    pub vnet: String,
    pub role: String,
    pub ssrc: u32,
    pub src: String,
    pub dst: String,
    pub call_id: Option<String>,
    /// Packets the VNet that has the window received in it.
    pub packets: u64,
    pub mos: f64,
    pub loss: f64,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub windows: usize,
    /// Stream windows paired, and those of them in which production was
    /// better by more than the tolerance: one bad call among many decides
    /// here, where the window means above average it away.
    pub stream_windows: usize,
    pub stream_windows_production_better: usize,
    /// Production stream windows the shadow lacks, and shadow stream
    /// windows production lacks.
    pub missing_in_shadow: usize,
    pub missing_in_production: usize,
    pub shadow_better: f64,
    pub production_better: f64,
    pub equal: f64,
    /// (window start, MOS) of the worst window of each VNet.
    pub worst_production: Option<(String, f64)>,
    pub worst_shadow: Option<(String, f64)>,
    /// The question the comparison is for, "is the shadow ready to
    /// replace production?": yes when at least one window was paired, in
    /// none was production better by more than the tolerance, neither on
    /// the mean over streams nor for any one stream, and the shadow
    /// carried every stream window production did (the paper's
    /// criterion: voice quality in the shadow at least as good, for every
    /// call).
    pub ready: bool,
    /// Why, in one line.
    pub ready_reason: String,
    /// How much the evidence says: the streams paired and their calls,
    /// and the mean over the streams of the shadow's MOS minus
    /// production's with its 95% interval (none with fewer than two
    /// streams), as `MosDifference` computes them.
    pub streams: usize,
    pub calls: usize,
    pub mos_diff_mean: Option<f64>,
    pub mos_diff_ci95_low: Option<f64>,
    pub mos_diff_ci95_high: Option<f64>,
    /// `high` when that interval lies above minus the tolerance (the shadow
    /// is not worse by more than it, at 95% confidence), `low` otherwise.
    pub confidence: &'static str,
    /// Why the confidence is low (empty when high).
    pub confidence_reason: String,
}

/// The confidence line of the table and the HTML report.
pub(crate) fn evidence_line(m: &Summary) -> String {
    let Some(mean) = m.mos_diff_mean else {
        return "evidence: no stream paired; confidence: low".into();
    };
    let ci = match (m.mos_diff_ci95_low, m.mos_diff_ci95_high) {
        (Some(lo), Some(hi)) => format!(", 95% interval {lo:+.3} .. {hi:+.3}"),
        _ => String::new(),
    };
    let why = if m.confidence_reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", m.confidence_reason)
    };
    format!(
        "evidence: {} streams in {} calls, {} stream windows; mean MOS difference \
         (shadow - production) {mean:+.3}{ci}; confidence: {}{why}",
        m.streams, m.calls, m.stream_windows, m.confidence
    )
}

/// The readiness answer and its reason, from the verdicts of the windows
/// and of the stream windows, and the stream windows the shadow lacks.
fn readiness(
    q: &CompareQuery,
    tolerance: f64,
    per: &[WindowVerdict],
    pairs: &[RtpCompareRecord],
    unpaired: &[UnpairedWindow],
) -> (bool, String) {
    let (p, s) = (&q.production, &q.shadow);
    let missing = |r: Role| unpaired.iter().filter(|u| u.role == r).count();
    if per.is_empty() {
        let (mp, ms) = (missing(Role::Production), missing(Role::Shadow));
        // Both carried streams, none the other's: the shadow's copy is not
        // the same traffic as far as pairing can tell.
        let hint = if mp > 0 && ms > 0 {
            format!(
                " ({p} has {mp} stream windows and {s} {ms}, none with the same SSRC, \
                 addresses, ports and window: does {s} carry a copy of {p}'s calls?)"
            )
        } else {
            String::new()
        };
        return (
            false,
            format!("no window of {p} and {s} was paired with a MOS: nothing to judge{hint}"),
        );
    }
    let n = per.len();
    let count = |v: Verdict| per.iter().filter(|w| w.verdict == v).count();
    let stream = |r: &RtpCompareRecord| {
        describe_stream(
            r.ssrc,
            (r.src_addr, r.src_port),
            (r.dst_addr, r.dst_port),
            r.call_id.as_deref(),
        )
    };
    let mut why = Vec::new();
    let lacked: Vec<&UnpairedWindow> = unpaired
        .iter()
        .filter(|u| u.role == Role::Production)
        .collect();
    if let Some(first) = lacked.first() {
        let (w, id) = (&first.window, &first.window.id);
        why.push(format!(
            "shadow {s} lacked {} stream windows that production {p} carried, the first \
             {} at {}",
            lacked.len(),
            describe_stream(
                id.ssrc,
                (id.src_addr, id.src_port),
                (id.dst_addr, id.dst_port),
                id.call_id.as_deref()
            ),
            fmt_time(w.window_start)
        ));
    }
    let worse = count(Verdict::ProductionBetter);
    if worse > 0 {
        let (when, by) = per
            .iter()
            .map(|w| (w.window_start, w.mos_production - w.mos_shadow))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or((String::new(), 0.0), |(t, d)| (fmt_time(t), d));
        why.push(format!(
            "production {p} was better than shadow {s} in {worse} of {n} paired \
             windows; the widest gap {by:.2} MOS at {when}"
        ));
    }
    let worse_streams: Vec<&RtpCompareRecord> = pairs
        .iter()
        .filter(|r| r.verdict == Verdict::ProductionBetter)
        .collect();
    if let Some(w) = worse_streams
        .iter()
        .max_by(|a, b| (-a.mos_diff).total_cmp(&-b.mos_diff))
    {
        why.push(format!(
            "production was better for {} of {} stream windows; the widest gap {:.2} MOS \
             for {} at {}",
            worse_streams.len(),
            pairs.len(),
            -w.mos_diff,
            stream(w),
            fmt_time(w.window_start)
        ));
    }
    if !why.is_empty() {
        return (false, why.join("; "));
    }
    (
        true,
        format!(
            "shadow {s} was never worse than production {p} by more than {tolerance} MOS \
             in {n} paired windows; better in {}",
            count(Verdict::ShadowBetter)
        ),
    )
}

/// A stream as a reason names it: `SSRC 0x... SRC:PORT -> DST:PORT (call ID)`.
fn describe_stream(
    ssrc: u32,
    (src, sport): (std::net::IpAddr, u16),
    (dst, dport): (std::net::IpAddr, u16),
    call_id: Option<&str>,
) -> String {
    let call = call_id.map_or(String::new(), |c| format!(" (call {c})"));
    format!("SSRC {ssrc:#010x} {src}:{sport} -> {dst}:{dport}{call}")
}

/// `YYYY-MM-DD HH:MM:SS` UTC.
pub fn fmt_time(t: Timestamp) -> String {
    let u = t.utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        u.year, u.month, u.day, u.hour, u.minute, u.second
    )
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds, or `YYYY-MM-DD[THH:MM[:SS]][Z]` (UTC).
pub fn parse_time(s: &str) -> anyhow::Result<Timestamp> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(Timestamp::from_secs(secs));
    }
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let num = |x: Option<&str>| -> anyhow::Result<i64> {
        x.unwrap_or("0")
            .parse::<i64>()
            .with_context(|| format!("bad time {s:?}: use Unix seconds or YYYY-MM-DDTHH:MM:SSZ"))
    };
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next())?, num(d.next())?, num(d.next())?);
    let mut t = time.split(':');
    let (h, mi, se) = (num(t.next())?, num(t.next())?, num(t.next())?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        bail!("bad time {s:?}: use Unix seconds or YYYY-MM-DDTHH:MM:SSZ");
    }
    Ok(Timestamp::from_secs(
        days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se,
    ))
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            parquet_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}

/// The value of the Hive directory level `key` (`vnet=`) in `path`.
fn path_value(path: &Path, key: &str) -> Option<String> {
    path.parent()?
        .components()
        .filter_map(|c| c.as_os_str().to_str()?.strip_prefix(key))
        .next_back()
        .map(str::to_string)
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> anyhow::Result<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .with_context(|| format!("column {name} missing or of another type"))
}

/// A query that would load more windows than allowed (HTTP 413).
#[derive(Debug, thiserror::Error)]
#[error("the query would load more than {0} RTP windows: narrow it with from, to or node")]
pub struct TooManyRows(pub usize);

/// The windows of the two VNets in `data` (a collector's data directory or
/// a node's output directory), with a map naming them.
pub fn load_windows(
    data: &Path,
    q: &CompareQuery,
) -> anyhow::Result<(Vec<RtpWindowRecord>, VnetMap)> {
    load_windows_limited(data, q, usize::MAX)
}

/// [`load_windows`], failing with [`TooManyRows`] once more than
/// `max_rows` windows match.
pub fn load_windows_limited(
    data: &Path,
    q: &CompareQuery,
    max_rows: usize,
) -> anyhow::Result<(Vec<RtpWindowRecord>, VnetMap)> {
    if q.production == q.shadow || q.production.is_empty() || q.shadow.is_empty() {
        bail!("give two different VNets: --production A --shadow B");
    }
    let vnet_err = |e: analyzers::vnet::VnetMapError| anyhow::anyhow!("{e}");
    let mut map = VnetMap::new(&[], "other", Role::Monitor).map_err(vnet_err)?;
    let id_p = map
        .intern(&q.production, Role::Production)
        .map_err(vnet_err)?;
    let id_s = map.intern(&q.shadow, Role::Shadow).map_err(vnet_err)?;
    let id_m = match q.monitor.as_deref().filter(|m| !m.is_empty()) {
        Some(m) if m == q.production || m == q.shadow => {
            bail!("--monitor {m:?} is already the production or shadow VNet")
        }
        Some(m) => Some((m, map.intern(m, Role::Monitor).map_err(vnet_err)?)),
        None => None,
    };
    let from = q.from.as_deref().map(parse_time).transpose()?;
    let to = q.to.as_deref().map(parse_time).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            bail!("--from must be before --to (the range is empty)");
        }
    }
    if let Some(n) = q.node.as_deref() {
        if !crate::config::safe_component(n) {
            bail!("--node {n:?} is not a node name (letters, digits, '-', '_' or '.')");
        }
    }
    let root = data.join("rtp_windows");
    if !root.is_dir() {
        bail!("no rtp_windows dataset under {}", data.display());
    }
    let mut files = Vec::new();
    parquet_files(&root, &mut files);
    files.sort();
    let mut out = Vec::new();
    // Every VNet with windows in the data (any node, any time), to name
    // them when one asked for is not there.
    let mut present = std::collections::BTreeSet::new();
    for f in files {
        let s = f.to_string_lossy();
        if let Some(node) = &q.node {
            if !s.contains(&format!("/node={node}/")) {
                continue;
            }
        }
        let file = std::fs::File::open(&f).with_context(|| format!("{}", f.display()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .with_context(|| format!("{}", f.display()))?;
        // A collector's part keeps its VNet in the path (`vnet=NAME/`), a
        // node's file in the `vnet` column.
        let path_vnet = path_value(&f, "vnet=");
        for b in reader {
            let b = b.with_context(|| format!("{}", f.display()))?;
            let vnet_col = match &path_vnet {
                Some(_) if b.column_by_name("vnet").is_none() => None,
                _ => Some(col::<StringArray>(&b, "vnet")?),
            };
            let ssrc = col::<UInt32Array>(&b, "ssrc")?;
            let src = col::<StringArray>(&b, "src_addr")?;
            let sport = col::<UInt16Array>(&b, "src_port")?;
            let dst = col::<StringArray>(&b, "dst_addr")?;
            let dport = col::<UInt16Array>(&b, "dst_port")?;
            let pt = col::<UInt8Array>(&b, "payload_type")?;
            let codec = col::<StringArray>(&b, "codec")?;
            let call = col::<StringArray>(&b, "call_id")?;
            let ws = col::<TimestampMicrosecondArray>(&b, "window_start")?;
            let secs = col::<UInt32Array>(&b, "window_secs")?;
            let mos = col::<Float64Array>(&b, "mos_cq")?;
            let loss = col::<Float64Array>(&b, "loss_ratio")?;
            let jitter = col::<Float64Array>(&b, "jitter_ms")?;
            // The probe's own loss in the window: a node's files hold it as
            // uint64, the collector's parts as int64.
            let drops = b.column_by_name("capture_drops");
            let drops_u = drops.and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
            let drops_i = drops.and_then(|c| c.as_any().downcast_ref::<Int64Array>());
            let received = b.column_by_name("packets_received");
            let received_u = received.and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
            let received_i = received.and_then(|c| c.as_any().downcast_ref::<Int64Array>());
            // Absent in files written before the jitter-buffer models.
            let jb = b
                .column_by_name("jitter_buffer")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>());
            for i in 0..b.num_rows() {
                let vnet = match (vnet_col, &path_vnet) {
                    (Some(c), _) => c.value(i),
                    (None, Some(v)) => v.as_str(),
                    (None, None) => continue,
                };
                if !present.contains(vnet) {
                    present.insert(vnet.to_string());
                }
                // No MOS for a stream of unknown codec (`mos_reason`).
                if mos.is_null(i) {
                    continue;
                }
                let id = if vnet == q.production {
                    id_p
                } else if vnet == q.shadow {
                    id_s
                } else if let Some((_, m)) = id_m.filter(|(name, _)| *name == vnet) {
                    m
                } else {
                    continue;
                };
                let t = Timestamp(ws.value(i));
                if from.is_some_and(|f| t < f) || to.is_some_and(|x| t >= x) {
                    continue;
                }
                let (Ok(sa), Ok(da)) = (src.value(i).parse(), dst.value(i).parse()) else {
                    continue;
                };
                if out.len() >= max_rows {
                    return Err(TooManyRows(max_rows).into());
                }
                out.push(RtpWindowRecord {
                    id: RtpStreamId {
                        vnet: id,
                        ssrc: ssrc.value(i),
                        src_addr: sa,
                        src_port: sport.value(i),
                        dst_addr: da,
                        dst_port: dport.value(i),
                        payload_type: pt.value(i),
                        codec: codec.value(i).to_string(),
                        call_id: (!call.is_null(i)).then(|| call.value(i).to_string()),
                    },
                    window_start: t,
                    window_secs: secs.value(i),
                    quality: RtpQuality {
                        packets_received: received_u.map_or_else(
                            || received_i.map_or(0, |c| u64::try_from(c.value(i)).unwrap_or(0)),
                            |c| c.value(i),
                        ),
                        mos_cq: mos.value(i),
                        loss_ratio: loss.value(i),
                        jitter_ms: if jitter.is_null(i) {
                            f64::NAN
                        } else {
                            jitter.value(i)
                        },
                        jitter_buffer: jb
                            .and_then(|c| JbModel::from_name(c.value(i)))
                            .map_or("", JbModel::name),
                        ..RtpQuality::default()
                    },
                    capture_drops: drops_u.map_or_else(
                        || drops_i.map_or(0, |c| u64::try_from(c.value(i)).unwrap_or(0)),
                        |c| c.value(i),
                    ),
                });
            }
        }
    }
    let out = merge_nodes(out);
    let missing: Vec<&str> = [q.production.as_str(), q.shadow.as_str()]
        .into_iter()
        .chain(id_m.map(|(m, _)| m))
        .filter(|v| !present.contains(*v))
        .collect();
    if !missing.is_empty() {
        return Err(UnknownVnet {
            missing: missing.iter().map(|v| v.to_string()).collect(),
            present: present.into_iter().collect(),
        }
        .into());
    }
    Ok((out, map))
}

/// A stream's window seen by several nodes (two probes on the same
/// traffic) counts once, with the mean of the nodes' values (MOS, loss,
/// jitter; the most capture drops): pairing keeps one window per stream
/// and VNet, and used to keep whichever node's file came last, where a
/// reader of the store takes the mean over the rows.
fn merge_nodes(rows: Vec<RtpWindowRecord>) -> Vec<RtpWindowRecord> {
    type Key = (u16, i64, u32, std::net::IpAddr, u16, std::net::IpAddr, u16);
    // Per key: the row kept, the rows merged into it, and those of them
    // with a jitter (a null jitter takes no part in its mean).
    let mut at: std::collections::HashMap<Key, (usize, u32, u32)> =
        std::collections::HashMap::new();
    let mut out: Vec<RtpWindowRecord> = Vec::with_capacity(rows.len());
    for r in rows {
        let id = &r.id;
        let key = (
            id.vnet.0,
            r.window_start.0,
            id.ssrc,
            id.src_addr,
            id.src_port,
            id.dst_addr,
            id.dst_port,
        );
        let Some((i, n, nj)) = at.get_mut(&key) else {
            let nj = u32::from(r.quality.jitter_ms.is_finite());
            at.insert(key, (out.len(), 1, nj));
            out.push(r);
            continue;
        };
        let Some(m) = out.get_mut(*i) else { continue };
        let k = f64::from(*n);
        let mean = |a: f64, b: f64| (a * k + b) / (k + 1.0);
        let (q, o) = (&mut m.quality, &r.quality);
        q.mos_cq = mean(q.mos_cq, o.mos_cq);
        q.loss_ratio = mean(q.loss_ratio, o.loss_ratio);
        if o.jitter_ms.is_finite() {
            let kj = f64::from(*nj);
            q.jitter_ms = if *nj == 0 {
                o.jitter_ms
            } else {
                (q.jitter_ms * kj + o.jitter_ms) / (kj + 1.0)
            };
            *nj += 1;
        }
        m.capture_drops = m.capture_drops.max(r.capture_drops);
        // The packets one probe saw: the mean of the nodes' counts, as the
        // other values (two probes on the same traffic see the same).
        q.packets_received = ((q.packets_received as f64 * k + o.packets_received as f64)
            / (k + 1.0))
            .round() as u64;
        *n += 1;
    }
    out
}

/// A VNet asked for has no RTP windows in the data at all (a typo, or the
/// wrong data directory): named with the VNets that are there.
#[derive(Debug, thiserror::Error)]
#[error("no RTP windows for VNet {} in this data; VNets present: {}", .missing.join(", "), if .present.is_empty() { "none".to_string() } else { .present.join(", ") })]
pub struct UnknownVnet {
    pub missing: Vec<String>,
    pub present: Vec<String>,
}

/// Runs the comparison.
pub fn report(data: &Path, q: &CompareQuery) -> anyhow::Result<Report> {
    report_limited(data, q, usize::MAX)
}

/// [`report`] loading at most `max_rows` windows ([`TooManyRows`] beyond).
pub fn report_limited(data: &Path, q: &CompareQuery, max_rows: usize) -> anyhow::Result<Report> {
    let tolerance = q.tolerance.unwrap_or(0.1);
    if !(0.0..=4.0).contains(&tolerance) {
        bail!("tolerance must be between 0 and 4");
    }
    let (windows, map) = load_windows_limited(data, q, max_rows)?;
    let pairs = compare_windows(&windows, &map, tolerance);
    let per = per_window(&pairs, tolerance);
    let unpaired = unpaired_windows(&windows, &map);
    let mut r = build_report(q, tolerance, &pairs, &per, &unpaired, &map);
    r.series = series(&windows, &map);
    // Each window's packets per VNet, from the series (a lookup each: a
    // day's store has thousands of windows).
    let packets: std::collections::HashMap<(&str, i64), u64> = r
        .series
        .iter()
        .map(|s| ((s.vnet.as_str(), s.window_start_unix), s.packets))
        .collect();
    let of = |vnet: &str, t: i64| packets.get(&(vnet, t)).copied().unwrap_or(0);
    for w in &mut r.windows {
        let t = w.window_start_unix;
        (w.packets_production, w.packets_shadow) = (of(&q.production, t), of(&q.shadow, t));
    }
    Ok(r)
}

/// Mean MOS-CQ and loss per (VNet, window) over the VNet's streams.
fn series(windows: &[RtpWindowRecord], map: &VnetMap) -> Vec<SeriesRow> {
    use std::collections::BTreeMap;
    /// (role order, VNet, window start in µs)
    type Key = (u8, String, i64);
    /// (streams, MOS sum, loss sum, window width, packets)
    type Sums = (u64, f64, f64, u32, u64);
    let mut acc: BTreeMap<Key, Sums> = BTreeMap::new();
    for w in windows {
        let v = map.get(w.id.vnet);
        let order = match v.role {
            Role::Production => 0,
            Role::Shadow => 1,
            _ => 2,
        };
        let e = acc
            .entry((order, v.name.to_string(), w.window_start.micros()))
            .or_insert((0, 0.0, 0.0, w.window_secs, 0));
        e.0 += 1;
        e.1 += w.quality.mos_cq;
        e.2 += w.quality.loss_ratio;
        e.4 += w.quality.packets_received;
    }
    acc.into_iter()
        .map(|((_, vnet, t), (n, mos, loss, secs, packets))| {
            let t = Timestamp(t);
            SeriesRow {
                role: map
                    .iter()
                    .find(|(_, v)| v.name.as_str() == vnet)
                    .map_or("monitor", |(_, v)| v.role.as_str())
                    .to_string(),
                vnet,
                window_start: fmt_time(t),
                window_start_unix: t.secs_floor(),
                window_secs: secs,
                streams: n,
                packets,
                mos: mos / n as f64,
                loss: loss / n as f64,
            }
        })
        .collect()
}

fn build_report(
    q: &CompareQuery,
    tolerance: f64,
    pairs: &[RtpCompareRecord],
    per: &[WindowVerdict],
    unpaired: &[UnpairedWindow],
    map: &VnetMap,
) -> Report {
    let n = per.len();
    let share = |v: Verdict| {
        if n == 0 {
            0.0
        } else {
            per.iter().filter(|w| w.verdict == v).count() as f64 / n as f64
        }
    };
    let (ready, mut ready_reason) = readiness(q, tolerance, per, pairs, unpaired);
    let diff: Option<MosDifference> = mos_difference(pairs, tolerance);
    if let Some(d) = diff.as_ref().filter(|d| ready && !d.confident) {
        // A yes on thin evidence says so where it is read.
        ready_reason.push_str(&format!("; but confidence is low: {}", d.why_low));
    }
    let missing = |r: Role| unpaired.iter().filter(|u| u.role == r).count();
    let worst = |f: fn(&WindowVerdict) -> f64| {
        per.iter()
            .min_by(|a, b| f(a).total_cmp(&f(b)))
            .map(|w| (fmt_time(w.window_start), f(w)))
    };
    Report {
        production: q.production.clone(),
        shadow: q.shadow.clone(),
        tolerance,
        jitter_buffer: pairs
            .first()
            .map_or(String::new(), |r| r.jitter_buffer.to_string()),
        windows: per
            .iter()
            .map(|w| WindowRow {
                window_start: fmt_time(w.window_start),
                window_start_unix: w.window_start.secs_floor(),
                streams: w.streams,
                mos_production: w.mos_production,
                mos_shadow: w.mos_shadow,
                mos_diff: w.mos_shadow - w.mos_production,
                loss_production: w.loss_production,
                loss_shadow: w.loss_shadow,
                packets_production: 0,
                packets_shadow: 0,
                verdict: w.verdict.as_str().to_string(),
            })
            .collect(),
        streams: pairs
            .iter()
            .map(|r| StreamRow {
                window_start: fmt_time(r.window_start),
                ssrc: r.ssrc,
                src: format!("{}:{}", r.src_addr, r.src_port),
                dst: format!("{}:{}", r.dst_addr, r.dst_port),
                call_id: r.call_id.clone(),
                mos_production: r.mos_production,
                mos_shadow: r.mos_shadow,
                mos_diff: r.mos_diff,
                loss_production: r.loss_production,
                loss_shadow: r.loss_shadow,
                jitter_production_ms: r.jitter_production_ms,
                jitter_shadow_ms: r.jitter_shadow_ms,
                verdict: r.verdict.as_str().to_string(),
            })
            .collect(),
        unpaired: unpaired
            .iter()
            .map(|u| {
                let w = &u.window;
                UnpairedRow {
                    window_start: fmt_time(w.window_start),
                    vnet: map.get(u.vnet).name.to_string(),
                    role: u.role.as_str().to_string(),
                    ssrc: w.id.ssrc,
                    src: format!("{}:{}", w.id.src_addr, w.id.src_port),
                    dst: format!("{}:{}", w.id.dst_addr, w.id.dst_port),
                    call_id: w.id.call_id.clone(),
                    packets: w.quality.packets_received,
                    mos: w.quality.mos_cq,
                    loss: w.quality.loss_ratio,
                }
            })
            .collect(),
        series: Vec::new(),
        summary: Summary {
            windows: n,
            stream_windows: pairs.len(),
            stream_windows_production_better: pairs
                .iter()
                .filter(|r| r.verdict == Verdict::ProductionBetter)
                .count(),
            missing_in_shadow: missing(Role::Production),
            missing_in_production: missing(Role::Shadow),
            shadow_better: share(Verdict::ShadowBetter),
            production_better: share(Verdict::ProductionBetter),
            equal: share(Verdict::Equal),
            worst_production: worst(|w| w.mos_production),
            worst_shadow: worst(|w| w.mos_shadow),
            ready,
            ready_reason,
            streams: diff.as_ref().map_or(0, |d| d.streams),
            calls: diff.as_ref().map_or(0, |d| d.calls),
            mos_diff_mean: diff.as_ref().map(|d| d.mean),
            mos_diff_ci95_low: diff.as_ref().and_then(|d| d.ci95).map(|c| c.0),
            mos_diff_ci95_high: diff.as_ref().and_then(|d| d.ci95).map(|c| c.1),
            confidence: if diff.as_ref().is_some_and(|d| d.confident) {
                "high"
            } else {
                "low"
            },
            confidence_reason: diff
                .as_ref()
                .map_or_else(|| "no stream paired".to_string(), |d| d.why_low.clone()),
        },
    }
}

impl Report {
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "production {} vs shadow {} (equal within {} MOS)",
            self.production, self.shadow, self.tolerance
        );
        let _ = writeln!(
            s,
            "{:<19}  {:>7}  {:>6}  {:>6}  {:>6}  {:>7}  {:>7}  {:>7}  {:>7}  verdict",
            "window (UTC)",
            "streams",
            "MOS P",
            "MOS S",
            "diff",
            "loss P",
            "loss S",
            "pkts P",
            "pkts S"
        );
        for w in &self.windows {
            let _ = writeln!(
                s,
                "{:<19}  {:>7}  {:>6.2}  {:>6.2}  {:>+6.2}  {:>6.1}%  {:>6.1}%  {:>7}  {:>7}  {}",
                w.window_start,
                w.streams,
                w.mos_production,
                w.mos_shadow,
                w.mos_diff,
                w.loss_production * 100.0,
                w.loss_shadow * 100.0,
                w.packets_production,
                w.packets_shadow,
                w.verdict
            );
        }
        let m = &self.summary;
        let _ = writeln!(
            s,
            "{} windows: shadow better {:.0}%, production better {:.0}%, equal {:.0}%",
            m.windows,
            m.shadow_better * 100.0,
            m.production_better * 100.0,
            m.equal * 100.0
        );
        let _ = writeln!(
            s,
            "{} stream windows: production better in {}; shadow lacked {} of production's, \
             production lacked {} of the shadow's",
            m.stream_windows,
            m.stream_windows_production_better,
            m.missing_in_shadow,
            m.missing_in_production
        );
        if let (Some(p), Some(sh)) = (&m.worst_production, &m.worst_shadow) {
            let _ = writeln!(
                s,
                "worst window: production {} MOS {:.2}; shadow {} MOS {:.2}",
                p.0, p.1, sh.0, sh.1
            );
        }
        let _ = writeln!(s, "{}", evidence_line(m));
        let _ = writeln!(
            s,
            "ready: {} ({})",
            if m.ready { "yes" } else { "no" },
            m.ready_reason
        );
        s
    }

    pub fn csv(&self) -> String {
        let mut s = String::from(
            "window_start,ssrc,src,dst,mos_production,mos_shadow,mos_diff,loss_production,loss_shadow,jitter_production_ms,jitter_shadow_ms,verdict,call_id\n",
        );
        // A jitter never computed is an empty field, not `NaN`.
        let ms = |v: f64| {
            if v.is_finite() {
                format!("{v:.3}")
            } else {
                String::new()
            }
        };
        // A Call-ID is the caller's text: quoted, as RFC 4180 does.
        let call = |c: &Option<String>| {
            c.as_deref()
                .map_or(String::new(), |c| format!("\"{}\"", c.replace('"', "\"\"")))
        };
        for r in &self.streams {
            let _ = writeln!(
                s,
                "{},{},{},{},{:.4},{:.4},{:.4},{:.6},{:.6},{},{},{},{}",
                r.window_start,
                r.ssrc,
                r.src,
                r.dst,
                r.mos_production,
                r.mos_shadow,
                r.mos_diff,
                r.loss_production,
                r.loss_shadow,
                ms(r.jitter_production_ms),
                ms(r.jitter_shadow_ms),
                r.verdict,
                call(&r.call_id)
            );
        }
        // A window one VNet lacks: its values on the side that has it, the
        // other side empty, and the verdict says which side is missing.
        for u in &self.unpaired {
            let (mos, loss) = (format!("{:.4}", u.mos), format!("{:.6}", u.loss));
            let (mp, ms_, lp, ls, verdict) = if u.role == "production" {
                (mos, String::new(), loss, String::new(), "missing_in_shadow")
            } else {
                (
                    String::new(),
                    mos,
                    String::new(),
                    loss,
                    "missing_in_production",
                )
            };
            let _ = writeln!(
                s,
                "{},{},{},{},{mp},{ms_},,{lp},{ls},,,{verdict},{}",
                u.window_start,
                u.ssrc,
                u.src,
                u.dst,
                call(&u.call_id)
            );
        }
        s
    }

    /// The figure (loss and MOS-CQ panels, verdict shading) as SVG.
    pub fn svg(&self) -> String {
        crate::figure::svg(self, &[])
    }
}

/// The HTTP endpoint's answer: (content type, body).
pub fn run_query(data: &Path, q: &CompareQuery) -> anyhow::Result<(&'static str, String)> {
    run_query_limited(data, q, usize::MAX)
}

/// [`run_query`] loading at most `max_rows` windows.
pub fn run_query_limited(
    data: &Path,
    q: &CompareQuery,
    max_rows: usize,
) -> anyhow::Result<(&'static str, String)> {
    let r = report_limited(data, q, max_rows)?;
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => ("application/json", serde_json::to_string_pretty(&r)?),
        "csv" => ("text/csv", r.csv()),
        "table" => ("text/plain", r.table()),
        "svg" => ("image/svg+xml", r.svg()),
        "html" => ("text/html; charset=utf-8", crate::figure::html(&r, &[])),
        other => bail!("format {other:?}: use json, csv, table, svg or html"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_two_nodes_saw_counts_once_with_their_mean() {
        let w = |vnet: u16, node_mos: f64, ssrc: u32| RtpWindowRecord {
            id: RtpStreamId {
                vnet: analyzers::vnet::VnetId(vnet),
                ssrc,
                src_addr: "10.0.0.1".parse().expect("addr"),
                src_port: 4000,
                dst_addr: "10.0.0.2".parse().expect("addr"),
                dst_port: 5000,
                payload_type: 0,
                codec: "PCMU".into(),
                call_id: None,
            },
            window_start: Timestamp::from_secs(1_700_000_000),
            window_secs: 10,
            quality: RtpQuality {
                mos_cq: node_mos,
                loss_ratio: 0.1 * node_mos,
                ..RtpQuality::default()
            },
            capture_drops: 0,
        };
        // Nodes n1 and n2 both hold production's window (MOS 2.0 and 1.0)
        // and the shadow's; another stream is seen once.
        let rows = vec![
            w(1, 2.0, 7),
            w(2, 4.4, 7),
            w(1, 1.0, 7),
            w(2, 4.4, 7),
            w(1, 3.0, 8),
        ];
        let out = merge_nodes(rows);
        // Jitter: a null one takes no part in the mean.
        let mut j = vec![w(1, 2.0, 9), w(1, 2.0, 9), w(1, 2.0, 9)];
        j[0].quality.jitter_ms = f64::NAN;
        j[1].quality.jitter_ms = 4.0;
        j[2].quality.jitter_ms = 8.0;
        assert_eq!(merge_nodes(j)[0].quality.jitter_ms, 6.0);
        // Packets: the mean of the nodes' counts, not the first node's.
        let mut p = vec![w(1, 2.0, 10), w(1, 2.0, 10)];
        p[0].quality.packets_received = 500;
        p[1].quality.packets_received = 490;
        assert_eq!(merge_nodes(p)[0].quality.packets_received, 495);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].quality.mos_cq, 1.5);
        assert!((out[0].quality.loss_ratio - 0.15).abs() < 1e-12);
        assert_eq!(out[1].quality.mos_cq, 4.4);
        assert_eq!(out[2].quality.mos_cq, 3.0);
    }

    #[test]
    fn times_parse_both_ways() {
        let t = parse_time("2023-11-14T22:13:20Z").expect("parse");
        assert_eq!(t.secs_floor(), 1_700_000_000);
        assert_eq!(fmt_time(t), "2023-11-14 22:13:20");
        assert_eq!(parse_time("1700000000").expect("secs"), t);
        assert_eq!(
            parse_time("2000-02-29").expect("date").secs_floor(),
            951_782_400
        );
        assert!(parse_time("2023-13-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }
}

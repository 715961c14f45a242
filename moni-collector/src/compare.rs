//! `moni-collector compare`: is shadow VNet B ready to replace production A?
//!
//! Reads the collected `rtp_windows` of both VNets (every node), pairs the
//! same stream's windows across them with the `analyzers` comparison (the
//! logic the node uses too), and reports per window and stream the MOS,
//! loss and jitter of each VNet, the difference and a verdict, per window
//! the mean over streams, and a summary; optionally an SVG plot of MOS over
//! time with the windows shaded by verdict (the paper's Fig. 7/8).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use analyzers::record::{RtpQuality, RtpStreamId, RtpWindowRecord};
use analyzers::vnet::{Role, VnetMap};
use analyzers::voip::compare::{
    compare_windows, per_window, RtpCompareRecord, Verdict, WindowVerdict,
};
use analyzers::voip::jitter_buffer::Model as JbModel;
use analyzers::Timestamp;
use anyhow::{bail, Context};
use arrow::array::{
    Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt16Array,
    UInt32Array, UInt8Array,
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
    pub summary: Summary,
}

#[derive(Debug, Serialize)]
pub struct WindowRow {
    pub window_start: String,
    pub streams: u64,
    pub mos_production: f64,
    pub mos_shadow: f64,
    pub mos_diff: f64,
    pub loss_production: f64,
    pub loss_shadow: f64,
    pub verdict: String,
}

#[derive(Debug, Serialize)]
pub struct StreamRow {
    pub window_start: String,
    pub ssrc: u32,
    pub src: String,
    pub dst: String,
    pub mos_production: f64,
    pub mos_shadow: f64,
    pub mos_diff: f64,
    pub loss_production: f64,
    pub loss_shadow: f64,
    pub jitter_production_ms: f64,
    pub jitter_shadow_ms: f64,
    pub verdict: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub windows: usize,
    pub shadow_better: f64,
    pub production_better: f64,
    pub equal: f64,
    /// (window start, MOS) of the worst window of each VNet.
    pub worst_production: Option<(String, f64)>,
    pub worst_shadow: Option<(String, f64)>,
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
    let from = q.from.as_deref().map(parse_time).transpose()?;
    let to = q.to.as_deref().map(parse_time).transpose()?;
    let root = data.join("rtp_windows");
    if !root.is_dir() {
        bail!("no rtp_windows dataset under {}", data.display());
    }
    let mut files = Vec::new();
    parquet_files(&root, &mut files);
    files.sort();
    let mut out = Vec::new();
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
        for b in reader {
            let b = b.with_context(|| format!("{}", f.display()))?;
            let vnet = col::<StringArray>(&b, "vnet")?;
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
            // Absent in files written before the jitter-buffer models.
            let jb = b
                .column_by_name("jitter_buffer")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>());
            for i in 0..b.num_rows() {
                // No MOS for a stream of unknown codec (`mos_reason`).
                if mos.is_null(i) {
                    continue;
                }
                let id = if vnet.value(i) == q.production {
                    id_p
                } else if vnet.value(i) == q.shadow {
                    id_s
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
                        mos_cq: mos.value(i),
                        loss_ratio: loss.value(i),
                        jitter_ms: jitter.value(i),
                        jitter_buffer: jb
                            .and_then(|c| JbModel::from_name(c.value(i)))
                            .map_or("", JbModel::name),
                        ..RtpQuality::default()
                    },
                    capture_drops: 0,
                });
            }
        }
    }
    Ok((out, map))
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
    Ok(build_report(q, tolerance, &pairs, &per))
}

fn build_report(
    q: &CompareQuery,
    tolerance: f64,
    pairs: &[RtpCompareRecord],
    per: &[WindowVerdict],
) -> Report {
    let n = per.len();
    let share = |v: Verdict| {
        if n == 0 {
            0.0
        } else {
            per.iter().filter(|w| w.verdict == v).count() as f64 / n as f64
        }
    };
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
                streams: w.streams,
                mos_production: w.mos_production,
                mos_shadow: w.mos_shadow,
                mos_diff: w.mos_shadow - w.mos_production,
                loss_production: w.loss_production,
                loss_shadow: w.loss_shadow,
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
        summary: Summary {
            windows: n,
            shadow_better: share(Verdict::ShadowBetter),
            production_better: share(Verdict::ProductionBetter),
            equal: share(Verdict::Equal),
            worst_production: worst(|w| w.mos_production),
            worst_shadow: worst(|w| w.mos_shadow),
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
            "{:<19}  {:>7}  {:>6}  {:>6}  {:>6}  {:>7}  {:>7}  verdict",
            "window (UTC)", "streams", "MOS P", "MOS S", "diff", "loss P", "loss S"
        );
        for w in &self.windows {
            let _ = writeln!(
                s,
                "{:<19}  {:>7}  {:>6.2}  {:>6.2}  {:>+6.2}  {:>6.1}%  {:>6.1}%  {}",
                w.window_start,
                w.streams,
                w.mos_production,
                w.mos_shadow,
                w.mos_diff,
                w.loss_production * 100.0,
                w.loss_shadow * 100.0,
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
        if let (Some(p), Some(sh)) = (&m.worst_production, &m.worst_shadow) {
            let _ = writeln!(
                s,
                "worst window: production {} MOS {:.2}; shadow {} MOS {:.2}",
                p.0, p.1, sh.0, sh.1
            );
        }
        s
    }

    pub fn csv(&self) -> String {
        let mut s = String::from(
            "window_start,ssrc,src,dst,mos_production,mos_shadow,mos_diff,loss_production,loss_shadow,jitter_production_ms,jitter_shadow_ms,verdict\n",
        );
        for r in &self.streams {
            let _ = writeln!(
                s,
                "{},{},{},{},{:.4},{:.4},{:.4},{:.6},{:.6},{:.3},{:.3},{}",
                r.window_start,
                r.ssrc,
                r.src,
                r.dst,
                r.mos_production,
                r.mos_shadow,
                r.mos_diff,
                r.loss_production,
                r.loss_shadow,
                r.jitter_production_ms,
                r.jitter_shadow_ms,
                r.verdict
            );
        }
        s
    }

    /// MOS over time for both VNets, windows shaded by verdict.
    pub fn svg(&self) -> String {
        let (w, h, left, right, top, bottom) = (900.0, 420.0, 60.0, 20.0, 40.0, 60.0);
        let n = self.windows.len().max(1) as f64;
        let pw = (w - left - right) / n;
        let y = |mos: f64| top + (4.5 - mos.clamp(1.0, 4.5)) / 3.5 * (h - top - bottom);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" font-size="15" text-anchor="middle">MOS-CQ per 10 s window: production {} vs shadow {}</text>"#,
            w / 2.0,
            esc(&self.production),
            esc(&self.shadow)
        );
        for (i, win) in self.windows.iter().enumerate() {
            let fill = match win.verdict.as_str() {
                "shadow_better" => "#d8f0d8",
                "production_better" => "#f6d6d6",
                _ => "#eeeeee",
            };
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{} {}</title></rect>"#,
                left + i as f64 * pw,
                pw,
                h - top - bottom,
                esc(&win.window_start),
                win.verdict
            );
        }
        for mos in [1.0, 2.0, 3.0, 3.6, 4.0, 4.5] {
            let _ = writeln!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="3,3"/><text x="{}" y="{:.1}" text-anchor="end">{mos:.1}</text>"##,
                w - right,
                y(mos),
                y(mos),
                left - 6.0,
                y(mos) + 4.0
            );
        }
        for (name, color, f) in [
            (
                &self.production,
                "#c0392b",
                (|r: &WindowRow| r.mos_production) as fn(&WindowRow) -> f64,
            ),
            (&self.shadow, "#2471a3", |r: &WindowRow| r.mos_shadow),
        ] {
            let pts: Vec<String> = self
                .windows
                .iter()
                .enumerate()
                .map(|(i, r)| format!("{:.1},{:.1}", left + (i as f64 + 0.5) * pw, y(f(r))))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2.5" points="{}"><title>{}</title></polyline>"#,
                pts.join(" "),
                esc(name)
            );
        }
        if let (Some(first), Some(last)) = (self.windows.first(), self.windows.last()) {
            let _ = writeln!(
                s,
                r#"<text x="{left}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
                h - bottom + 18.0,
                esc(&first.window_start),
                w - right,
                h - bottom + 18.0,
                esc(&last.window_start)
            );
        }
        let ly = h - 18.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{ly}" y2="{ly}" stroke="#c0392b" stroke-width="2.5"/><text x="{}" y="{}">production {}</text><line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="#2471a3" stroke-width="2.5"/><text x="{}" y="{}">shadow {}</text><rect x="{}" y="{}" width="14" height="10" fill="#d8f0d8"/><text x="{}" y="{}">shadow better</text><rect x="{}" y="{}" width="14" height="10" fill="#f6d6d6"/><text x="{}" y="{}">production better</text>"##,
            left + 25.0,
            left + 30.0,
            ly + 4.0,
            esc(&self.production),
            left + 200.0,
            left + 225.0,
            left + 230.0,
            ly + 4.0,
            esc(&self.shadow),
            left + 400.0,
            ly - 6.0,
            left + 418.0,
            ly + 4.0,
            left + 540.0,
            ly - 6.0,
            left + 558.0,
            ly + 4.0
        );
        s.push_str("</svg>\n");
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
        other => bail!("format {other:?}: use json, csv, table or svg"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

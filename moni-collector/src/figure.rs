//! The operator's report: the paper's Fig. 7/8 drawn from a [`Report`].
//!
//! Two panels over one time axis: loss % per window of every VNet asked
//! for (production, shadow and, when given, the monitor/receiver VNet)
//! above MOS-CQ per window, whose background is shaded by the window's
//! verdict. The window width comes from the data, the time ticks from the
//! span (a readable step: 1 s … 1 h), windows that only one VNet has are
//! drawn as points of that VNet, and `--mark TIME=LABEL` draws a labelled
//! vertical line (a phase start, the moment production switched). The HTML
//! report puts the SVG above the summary and the per-window table.
//! Everything is plain SVG/HTML text with every value escaped.

use std::fmt::Write as _;

use anyhow::Context;

use crate::compare::{fmt_time, parse_time, Report, SeriesRow};

/// A labelled moment (`--mark TIME=LABEL`).
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub unix: i64,
    pub label: String,
}

impl std::str::FromStr for Mark {
    type Err = anyhow::Error;

    /// `TIME=LABEL`, TIME as Unix seconds or `YYYY-MM-DDTHH:MM:SSZ`.
    fn from_str(s: &str) -> anyhow::Result<Mark> {
        let (t, label) = s
            .split_once('=')
            .with_context(|| format!("--mark {s:?}: want TIME=LABEL"))?;
        Ok(Mark {
            unix: parse_time(t)?.secs_floor(),
            label: label.trim().to_string(),
        })
    }
}

const W: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 40.0;
const LOSS_TOP: f64 = 70.0;
const LOSS_H: f64 = 140.0;
const MOS_TOP: f64 = 240.0;
const MOS_H: f64 = 230.0;
const AXIS_Y: f64 = MOS_TOP + MOS_H;
const H: f64 = 560.0;

fn color(role: &str) -> &'static str {
    match role {
        "production" => "#c0392b",
        "shadow" => "#2471a3",
        _ => "#555555",
    }
}

fn verdict_fill(v: &str) -> &'static str {
    match v {
        "shadow_better" => "#d8f0d8",
        "production_better" => "#f6d6d6",
        _ => "#eeeeee",
    }
}

/// A readable tick step for `span` seconds: at most about 10 ticks.
fn tick_step(span: i64) -> i64 {
    const STEPS: [i64; 14] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 10)
        .unwrap_or_else(|| (span / 10 / 3600 + 1) * 3600)
}

/// The top of the loss axis: a round number above the highest loss (%).
fn loss_top(max_pct: f64) -> f64 {
    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        .into_iter()
        .find(|t| max_pct <= *t)
        .unwrap_or(100.0)
}

/// The figure as SVG.
pub fn svg(r: &Report, marks: &[Mark]) -> String {
    let series = &r.series;
    let width = series
        .iter()
        .map(|s| s.window_secs)
        .max()
        .unwrap_or(10)
        .max(1);
    let t0 = series
        .iter()
        .map(|s| s.window_start_unix)
        .chain(r.windows.iter().map(|w| w.window_start_unix))
        .min()
        .unwrap_or(0);
    let t1 = series
        .iter()
        .map(|s| s.window_start_unix + i64::from(s.window_secs))
        .chain(
            r.windows
                .iter()
                .map(|w| w.window_start_unix + i64::from(width)),
        )
        .max()
        .unwrap_or(t0 + 1)
        .max(t0 + 1);
    let pw = W - LEFT - RIGHT;
    let x = |t: f64| LEFT + (t - t0 as f64) / (t1 - t0) as f64 * pw;
    let max_loss = series.iter().map(|s| s.loss * 100.0).fold(0.0, f64::max);
    let ltop = loss_top(max_loss);
    let y_loss = |pct: f64| LOSS_TOP + LOSS_H - pct.clamp(0.0, ltop) / ltop * LOSS_H;
    let y_mos = |m: f64| MOS_TOP + (4.5 - m.clamp(1.0, 4.5)) / 3.5 * MOS_H;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">Production {} vs shadow {}: loss and MOS-CQ per {width} s window</text>"#,
        W / 2.0,
        esc(&r.production),
        esc(&r.shadow)
    );
    // Verdict shading behind the MOS panel, one band per paired window.
    for w in &r.windows {
        let a = x(w.window_start_unix as f64);
        let b = x((w.window_start_unix + i64::from(width)) as f64);
        let _ = writeln!(
            s,
            r#"<rect x="{a:.1}" y="{MOS_TOP}" width="{:.1}" height="{MOS_H}" fill="{}"><title>{} {}</title></rect>"#,
            (b - a).max(0.5),
            verdict_fill(&w.verdict),
            esc(&w.window_start),
            esc(&w.verdict)
        );
    }
    // Panel frames, grid and y-axis labels.
    for (top, h) in [(LOSS_TOP, LOSS_H), (MOS_TOP, MOS_H)] {
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{pw}" height="{h}" fill="none" stroke="#888"/>"##
        );
    }
    for i in 0..=4 {
        let pct = ltop * f64::from(i) / 4.0;
        let y = y_loss(pct);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ccc" stroke-dasharray="3,3"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            trim_num(pct)
        );
    }
    for m in [1.0, 2.0, 3.0, 3.6, 4.0, 4.5] {
        let y = y_mos(m);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#bbb" stroke-dasharray="3,3"/><text x="{}" y="{:.1}" text-anchor="end">{m:.1}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    for (label, mid) in [
        ("loss %", LOSS_TOP + LOSS_H / 2.0),
        ("MOS-CQ", MOS_TOP + MOS_H / 2.0),
    ] {
        let _ = writeln!(
            s,
            r#"<text x="18" y="{mid}" text-anchor="middle" transform="rotate(-90 18 {mid})">{label}</text>"#
        );
    }
    // Time ticks under the MOS panel, one x label.
    let step = tick_step(t1 - t0);
    let mut t = (t0 + step - 1).div_euclid(step) * step;
    while t <= t1 {
        let xt = x(t as f64);
        let hms = fmt_time(analyzers::Timestamp::from_secs(t));
        let _ = writeln!(
            s,
            r##"<line x1="{xt:.1}" x2="{xt:.1}" y1="{AXIS_Y}" y2="{}" stroke="#888"/><text x="{xt:.1}" y="{}" text-anchor="middle">{}</text>"##,
            AXIS_Y + 5.0,
            AXIS_Y + 18.0,
            esc(hms.get(11..).unwrap_or(&hms))
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">time (UTC, {})</text>"#,
        LEFT + pw / 2.0,
        AXIS_Y + 36.0,
        esc(fmt_time(analyzers::Timestamp::from_secs(t0))
            .get(..10)
            .unwrap_or(""))
    );
    // One line (and a point per window) per VNet in each panel.
    let mut names: Vec<(&str, &str)> = Vec::new();
    for row in series {
        if !names.iter().any(|(n, _)| *n == row.vnet) {
            names.push((row.vnet.as_str(), row.role.as_str()));
        }
    }
    for (name, role) in &names {
        let rows: Vec<&SeriesRow> = series.iter().filter(|r| r.vnet == *name).collect();
        let c = color(role);
        for (f, panel) in [
            (
                (|r: &SeriesRow| r.loss * 100.0) as fn(&SeriesRow) -> f64,
                "loss",
            ),
            (|r: &SeriesRow| r.mos, "mos"),
        ] {
            let y = |v: f64| if panel == "loss" { y_loss(v) } else { y_mos(v) };
            let pts: Vec<String> = rows
                .iter()
                .map(|r| {
                    let mid = r.window_start_unix as f64 + f64::from(r.window_secs) / 2.0;
                    format!("{:.1},{:.1}", x(mid), y(f(r)))
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"><title>{} {} ({panel})</title></polyline>"#,
                pts.join(" "),
                esc(role),
                esc(name)
            );
            for (r, p) in rows.iter().zip(&pts) {
                let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    s,
                    r#"<circle cx="{px}" cy="{py}" r="2.5" fill="{c}"><title>{} {}: {} {:.2}</title></circle>"#,
                    esc(name),
                    esc(&r.window_start),
                    if panel == "loss" { "loss %" } else { "MOS-CQ" },
                    f(r)
                );
            }
        }
    }
    // Marks across both panels.
    for m in marks {
        if m.unix < t0 || m.unix > t1 {
            continue;
        }
        let xm = x(m.unix as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xm:.1}" x2="{xm:.1}" y1="{}" y2="{AXIS_Y}" stroke="#000" stroke-dasharray="5,3"/><text x="{:.1}" y="{}" font-size="11">{}</text>"##,
            LOSS_TOP - 4.0,
            xm + 3.0,
            LOSS_TOP - 8.0,
            esc(&m.label)
        );
    }
    // Legend: every line and every shading.
    let ly = H - 22.0;
    let mut lx = LEFT;
    for (name, role) in &names {
        let _ = write!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2.5"/><text x="{}" y="{}">{} {}</text>"#,
            lx + 22.0,
            color(role),
            lx + 27.0,
            ly + 4.0,
            esc(role),
            esc(name)
        );
        lx += 130.0;
    }
    for (fill, label) in [
        ("#d8f0d8", "shadow better"),
        ("#f6d6d6", "production better"),
        ("#eeeeee", "equal"),
        ("#ffffff", "one VNet only"),
    ] {
        let _ = write!(
            s,
            r##"<rect x="{lx}" y="{}" width="14" height="10" fill="{fill}" stroke="#888"/><text x="{}" y="{}">{label}</text>"##,
            ly - 6.0,
            lx + 18.0,
            ly + 4.0
        );
        lx += 30.0 + 6.5 * label.len() as f64;
    }
    s.push('\n');
    s.push_str("</svg>\n");
    s
}

/// The report as one HTML page: title, summary, the figure, the
/// per-window table and each VNet's windows.
pub fn html(r: &Report, marks: &[Mark]) -> String {
    let mut s = String::new();
    let title = format!(
        "moni: is shadow {} ready to replace production {}?",
        r.shadow, r.production
    );
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}.shadow_better{{background:#d8f0d8}}.production_better{{background:#f6d6d6}}</style>\n</head>\n<body>\n<h1>{}</h1>",
        esc(&title),
        esc(&title)
    );
    let m = &r.summary;
    let _ = writeln!(
        s,
        "<p>{} paired windows: shadow better {:.0}%, production better {:.0}%, equal {:.0}% (equal within {} MOS).</p>",
        m.windows,
        m.shadow_better * 100.0,
        m.production_better * 100.0,
        m.equal * 100.0,
        r.tolerance
    );
    let _ = writeln!(
        s,
        "<p class=\"ready\"><strong>Ready: {}.</strong> {}.</p>",
        if m.ready { "yes" } else { "no" },
        esc(&m.ready_reason)
    );
    let _ = writeln!(s, "<p>{}.</p>", esc(&crate::compare::evidence_line(m)));
    if !marks.is_empty() {
        let list: Vec<String> = marks
            .iter()
            .map(|k| {
                format!(
                    "{} {}",
                    esc(&fmt_time(analyzers::Timestamp::from_secs(k.unix))),
                    esc(&k.label)
                )
            })
            .collect();
        let _ = writeln!(s, "<p>Marks: {}.</p>", list.join("; "));
    }
    s.push_str(&svg(r, marks));
    let _ = writeln!(
        s,
        "<h2>Per window</h2>\n<table>\n<tr><th>window (UTC)</th><th>streams</th><th>MOS {p}</th><th>MOS {sh}</th><th>diff</th><th>loss {p}</th><th>loss {sh}</th><th>verdict</th></tr>",
        p = esc(&r.production),
        sh = esc(&r.shadow)
    );
    for w in &r.windows {
        let _ = writeln!(
            s,
            "<tr class=\"{v}\"><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:+.2}</td><td>{:.1}%</td><td>{:.1}%</td><td>{v}</td></tr>",
            esc(&w.window_start),
            w.streams,
            w.mos_production,
            w.mos_shadow,
            w.mos_diff,
            w.loss_production * 100.0,
            w.loss_shadow * 100.0,
            v = esc(&w.verdict)
        );
    }
    s.push_str("</table>\n");
    stream_table(&mut s, r);
    s.push_str("<h2>Per VNet</h2>\n<table>\n<tr><th>window (UTC)</th><th>VNet</th><th>role</th><th>streams</th><th>packets</th><th>MOS-CQ</th><th>loss</th></tr>\n");
    for row in &r.series {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}%</td></tr>",
            esc(&row.window_start),
            esc(&row.vnet),
            esc(&row.role),
            row.streams,
            row.packets,
            row.mos,
            row.loss * 100.0
        );
    }
    s.push_str("</table>\n</body>\n</html>\n");
    s
}

/// Rows shown in the HTML report's table of the stream windows that
/// decide (the JSON and CSV formats have them all).
const HTML_STREAM_ROWS: usize = 200;

/// The stream windows that say "no": those production carried and the
/// shadow lacks, and those in which production was better, with their
/// call; the window means above can hide one bad call among many.
fn stream_table(s: &mut String, r: &Report) {
    let lacked: Vec<_> = r
        .unpaired
        .iter()
        .filter(|u| u.role == "production")
        .collect();
    let worse: Vec<_> = r
        .streams
        .iter()
        .filter(|x| x.verdict == "production_better")
        .collect();
    let total = lacked.len() + worse.len();
    let _ = writeln!(
        s,
        "<h2>Stream windows that decide</h2>\n<p>{} stream windows paired; production better in {}; \
         shadow {} lacked {} that production carried; production lacked {} of the shadow's.</p>",
        r.summary.stream_windows,
        r.summary.stream_windows_production_better,
        esc(&r.shadow),
        r.summary.missing_in_shadow,
        r.summary.missing_in_production
    );
    if total == 0 {
        return;
    }
    let _ = writeln!(
        s,
        "<table>\n<tr><th>window (UTC)</th><th>SSRC</th><th>from</th><th>to</th><th>call</th><th>MOS {p}</th><th>MOS {sh}</th><th>packets {p}</th><th>verdict</th></tr>",
        p = esc(&r.production),
        sh = esc(&r.shadow)
    );
    for u in lacked.iter().take(HTML_STREAM_ROWS) {
        let _ = writeln!(
            s,
            "<tr class=\"production_better\"><td>{}</td><td>{:#010x}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td></td><td>{}</td><td>missing_in_shadow</td></tr>",
            esc(&u.window_start),
            u.ssrc,
            esc(&u.src),
            esc(&u.dst),
            esc(u.call_id.as_deref().unwrap_or("")),
            u.mos,
            u.packets
        );
    }
    for w in worse
        .iter()
        .take(HTML_STREAM_ROWS.saturating_sub(lacked.len()))
    {
        let _ = writeln!(
            s,
            "<tr class=\"production_better\"><td>{}</td><td>{:#010x}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td></td><td>production_better</td></tr>",
            esc(&w.window_start),
            w.ssrc,
            esc(&w.src),
            esc(&w.dst),
            esc(w.call_id.as_deref().unwrap_or("")),
            w.mos_production,
            w.mos_shadow
        );
    }
    s.push_str("</table>\n");
    if total > HTML_STREAM_ROWS {
        let _ = writeln!(
            s,
            "<p>and {} more (all of them: <code>--format csv</code>).</p>",
            total - HTML_STREAM_ROWS
        );
    }
}

fn trim_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_readable_steps() {
        assert_eq!(tick_step(8), 1);
        assert_eq!(tick_step(60), 10);
        assert_eq!(tick_step(600), 60);
        assert_eq!(tick_step(86_400), 10_800);
        assert_eq!(loss_top(0.0), 1.0);
        assert_eq!(loss_top(12.5), 20.0);
    }

    #[test]
    fn marks_parse_and_refuse_garbage() {
        let m: Mark = "1700000000=switch to B".parse().expect("mark");
        assert_eq!((m.unix, m.label.as_str()), (1_700_000_000, "switch to B"));
        assert!("no-equals".parse::<Mark>().is_err());
        assert!("yesterday=x".parse::<Mark>().is_err());
    }
}

//! Shipping completed Parquet files to moni-collector.
//!
//! The output directory is the spool: the writer completes a file under a
//! hidden temporary name and renames it, so every visible `*.parquet` in a
//! dataset folder is complete and waiting to ship. The shipper uploads the
//! oldest first, with the file's SHA-256 (the collector stores by it, so a
//! retry after a lost acknowledgement stores nothing twice), and deletes a
//! file only after a 2xx, which the collector sends once the data is
//! fsynced in its dataset. Connection errors, every 5xx (507 storage full,
//! 503 with `Retry-After`, ...), 401, 403, 408, 429 and any other answer
//! that does not judge the file are retried with exponential backoff (at
//! least the collector's `Retry-After`, at most `retry_max`), failing over
//! through the configured collectors. Only a file the collector refuses by
//! its content (400 bad data, 413 too large, 422 invalid) moves to
//! `OUT/rejected/` and is counted, never retried for ever.
//!
//! The spool is capped (`spool_max_bytes`): `drop_oldest` deletes the oldest
//! files, `stop_writing` makes the writer drop new records instead; either
//! way what is lost is counted. After a crash, a restarted node discards the
//! temporary files of incomplete writes and ships everything else.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::config::{ShipSettings, WhenFull};
use crate::metrics::Metrics;

pub struct ShipCtx {
    pub settings: ShipSettings,
    pub out_dir: PathBuf,
    /// Set once the writer has completed its last file.
    pub writers_done: Arc<AtomicBool>,
    /// Set while the spool is over its cap under `stop_writing`.
    pub spool_full: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
}

/// What the shipper did, for the exit summary.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ShipSummary {
    pub files_shipped: u64,
    pub bytes_shipped: u64,
    pub files_rejected: u64,
    pub files_dropped: u64,
    pub bytes_dropped: u64,
    pub failures: u64,
    /// Files still spooled at exit (shipped at the next start).
    pub files_left: usize,
}

/// Completed files waiting in the spool, oldest first: (dataset, path, size).
pub fn spooled(out_dir: &Path) -> Vec<(String, PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    for dataset in analyzers::schema::DATASETS {
        let Ok(rd) = std::fs::read_dir(out_dir.join(dataset)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".parquet") {
                continue;
            }
            if let Ok(m) = e.metadata() {
                if m.is_file() {
                    let t = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    out.push((dataset.to_string(), e.path(), m.len(), t));
                }
            }
        }
    }
    out.sort_by(|a, b| (a.3, &a.1).cmp(&(b.3, &b.1)));
    out
}

/// Removes temporary files of writes a crash interrupted; returns how many.
pub fn discard_incomplete(out_dir: &Path) -> usize {
    let mut n = 0;
    for dataset in analyzers::schema::DATASETS {
        let Ok(rd) = std::fs::read_dir(out_dir.join(dataset)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                && name.ends_with(".tmp")
                && std::fs::remove_file(e.path()).is_ok()
            {
                n += 1;
            }
        }
    }
    n
}

#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Retry later (network, 5xx, 401, 429, ...), waiting at least the
    /// collector's `Retry-After` when it gave one.
    Transient(String, Option<Duration>),
    /// The collector refused this file as bad.
    Rejected(String),
}

/// A collector's non-2xx answer: only the statuses that judge the file's
/// content reject it; everything else (storage full, overload, auth,
/// rate limits, unknown statuses) is retried.
fn classify(status: u16, retry_after: Option<Duration>, msg: String) -> Failure {
    match status {
        400 | 413 | 422 => Failure::Rejected(msg),
        _ => Failure::Transient(msg, retry_after),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn upload(
    client: &reqwest::blocking::Client,
    base: &str,
    token: &str,
    dataset: &str,
    path: &Path,
) -> Result<(), Failure> {
    let hash = sha256_file(path)
        .map_err(|e| Failure::Transient(format!("{}: {e}", path.display()), None))?;
    let file = File::open(path)
        .map_err(|e| Failure::Transient(format!("{}: {e}", path.display()), None))?;
    let len = file
        .metadata()
        .map_err(|e| Failure::Transient(e.to_string(), None))?
        .len();
    let resp = client
        .post(format!("{base}/v1/ingest/{dataset}"))
        .bearer_auth(token)
        .header("X-Content-Sha256", &hash)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/vnd.apache.parquet",
        )
        .body(reqwest::blocking::Body::sized(file, len))
        .send()
        .map_err(|e| Failure::Transient(format!("{base}: {}", error_chain(&e)), None))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let after = retry_after(resp.headers());
    let body: String = resp.text().unwrap_or_default().chars().take(300).collect();
    let msg = format!("{base}: {status}: {}", body.trim());
    Err(classify(status.as_u16(), after, msg))
}

/// Sleeps up to `d`, returning early when the writer finishes meanwhile
/// (so a stop does not wait out a long backoff before the drain starts).
/// Once the writer is done it sleeps the whole `d`: the caller bounds it by
/// the time left to drain. (Returning at once then made a drain against a
/// collector that was down retry every 50 ms, ignoring the backoff and
/// `Retry-After`.)
fn pause(d: Duration, done: &AtomicBool) {
    let end = Instant::now() + d;
    let was_done = done.load(Ordering::Relaxed);
    while Instant::now() < end {
        if !was_done && done.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(
            Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
        );
    }
}

/// Ships until the writer is done and the spool is empty (or the configured
/// `drain` has passed since the writer finished: the rest ships at the next
/// start).
pub fn run_shipper(ctx: ShipCtx) -> ShipSummary {
    let s = &ctx.settings;
    let m = &ctx.metrics;
    let mut sum = ShipSummary::default();
    let client = match super::ship_tls::client(s) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: ship: cannot build the HTTP client: {e}");
            return sum;
        }
    };
    let mut collector = 0usize;
    let mut backoff = Duration::from_millis(250);
    let mut done_at: Option<Instant> = None;
    loop {
        if ctx.writers_done.load(Ordering::Relaxed) && done_at.is_none() {
            done_at = Some(Instant::now());
        }
        let mut files = spooled(&ctx.out_dir);
        let mut total: u64 = files.iter().map(|f| f.2).sum();
        if total > s.spool_max_bytes {
            match s.when_full {
                WhenFull::DropOldest => {
                    while total > s.spool_max_bytes && !files.is_empty() {
                        let (_, path, size, _) = files.remove(0);
                        if std::fs::remove_file(&path).is_ok() {
                            total -= size;
                            sum.files_dropped += 1;
                            sum.bytes_dropped += size;
                            m.spool_dropped_bytes
                                .with_label_values(&[] as &[&str])
                                .inc_by(size);
                            tracing::warn!(file = %path.display(), "Spool full: dropped the oldest file.");
                        }
                    }
                }
                WhenFull::StopWriting => ctx.spool_full.store(true, Ordering::Relaxed),
            }
        } else if total < s.spool_max_bytes / 10 * 9 {
            ctx.spool_full.store(false, Ordering::Relaxed);
        }
        m.spool_bytes
            .with_label_values(&[] as &[&str])
            .set(i64::try_from(total).unwrap_or(i64::MAX));
        m.spool_files
            .with_label_values(&[] as &[&str])
            .set(files.len() as i64);
        if files.is_empty() {
            if done_at.is_some() {
                break;
            }
            pause(Duration::from_millis(200), &ctx.writers_done);
            continue;
        }
        if done_at.is_some_and(|t| t.elapsed() > s.drain) {
            sum.files_left = files.len();
            break;
        }
        for (dataset, path, size, _) in files {
            let base = &s.collectors[collector % s.collectors.len()];
            match upload(&client, base, &s.token, &dataset, &path) {
                Ok(()) => {
                    let gone = if s.keep_shipped {
                        let dir = ctx.out_dir.join("shipped").join(&dataset);
                        std::fs::create_dir_all(&dir).and_then(|_| {
                            std::fs::rename(&path, dir.join(path.file_name().unwrap_or_default()))
                        })
                    } else {
                        std::fs::remove_file(&path)
                    };
                    if let Err(e) = gone {
                        tracing::warn!(file = %path.display(), error = %e, "Shipped file could not be removed from the spool.");
                    }
                    sum.files_shipped += 1;
                    sum.bytes_shipped += size;
                    m.ship_files.with_label_values(&[dataset.as_str()]).inc();
                    m.ship_bytes
                        .with_label_values(&[dataset.as_str()])
                        .inc_by(size);
                    backoff = Duration::from_millis(250);
                }
                Err(Failure::Rejected(msg)) => {
                    eprintln!("error: ship: {} refused: {msg}", path.display());
                    let dir = ctx.out_dir.join("rejected").join(&dataset);
                    let _ = std::fs::create_dir_all(&dir).and_then(|_| {
                        std::fs::rename(&path, dir.join(path.file_name().unwrap_or_default()))
                    });
                    sum.files_rejected += 1;
                    m.ship_failures.with_label_values(&["rejected"]).inc();
                }
                Err(Failure::Transient(msg, after)) => {
                    tracing::warn!(error = %msg, "Upload failed; retrying with backoff.");
                    sum.failures += 1;
                    m.ship_failures.with_label_values(&["unavailable"]).inc();
                    collector += 1;
                    let mut wait = backoff.max(after.unwrap_or_default().min(s.retry_max));
                    // The writer may have finished during this upload (a
                    // connection that timed out): the drain starts now.
                    if done_at.is_none() && ctx.writers_done.load(Ordering::Relaxed) {
                        done_at = Some(Instant::now());
                    }
                    if let Some(t) = done_at {
                        // Draining: wait no longer than the drain has left
                        // (the loop's check then ends it).
                        wait = wait
                            .min(s.drain.saturating_sub(t.elapsed()) + Duration::from_millis(10));
                    }
                    pause(wait, &ctx.writers_done);
                    backoff = (backoff * 2).min(s.retry_max);
                    break;
                }
            }
        }
    }
    m.spool_files
        .with_label_values(&[] as &[&str])
        .set(sum.files_left as i64);
    sum
}

/// An error with its causes ("error sending request: ...: invalid peer
/// certificate: Expired"): reqwest's own message alone hides why a TLS
/// handshake or a connection failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draining (the writer done), a pause waits its whole backoff: it
    /// returned within 50 ms, and a stop against a collector that was down
    /// retried 101 times in 5 s. Before the writer is done, its finishing
    /// cuts the pause short, so the drain starts at once.
    #[test]
    fn a_pause_waits_out_its_backoff_while_draining_and_ends_when_the_writer_finishes() {
        let done = AtomicBool::new(true);
        let t = Instant::now();
        pause(Duration::from_millis(300), &done);
        assert!(t.elapsed() >= Duration::from_millis(300));
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&done);
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::Relaxed);
        });
        let t = Instant::now();
        pause(Duration::from_secs(30), &done);
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let _ = setter.join();
    }

    #[test]
    fn only_content_refusals_reject_a_file() {
        for status in [400, 413, 422] {
            assert_eq!(
                classify(status, None, "m".into()),
                Failure::Rejected("m".into()),
                "{status}"
            );
        }
        for status in [401, 403, 404, 408, 409, 429, 500, 502, 503, 504, 507] {
            assert_eq!(
                classify(status, Some(Duration::from_secs(5)), "m".into()),
                Failure::Transient("m".into(), Some(Duration::from_secs(5))),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(
            reqwest::header::RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("7"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }
}

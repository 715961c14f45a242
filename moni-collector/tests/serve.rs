//! The collector's serving layer under hostile clients (loopback only, each
//! test bounded in time): a slowloris flood leaves `/healthz` answering, a
//! stalled upload body is cut, and `/v1/compare` needs a token and is
//! bounded.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FLOOD: usize = 1000;
const FLOOD_SECS: u64 = 12;

/// One slowloris connection for `until`: connects, sends a request head a
/// byte a second and never finishes it; when the server closes it, counts
/// that and connects again a second later.
async fn slowloris(port: u16, until: Instant, closed: Arc<AtomicU64>, refused: Arc<AtomicU64>) {
    let head =
        b"POST /v1/ingest/flows HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    while Instant::now() < until {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut buf = [0u8; 512];
        for b in head.iter().cycle() {
            if Instant::now() >= until {
                return;
            }
            let gone = s.write_all(&[*b]).await.is_err()
                || matches!(
                    tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await,
                    Ok(Ok(0) | Err(_))
                );
            if gone {
                closed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            }
        }
    }
}

#[test]
fn a_slowloris_of_1000_connections_leaves_healthz_answering_within_a_second() {
    // The test needs 1,000+ descriptors itself.
    let own = moni_collector::limits::raise_fd_limit().expect("fd limit");
    assert!(
        own > 1200,
        "the test needs an fd limit above 1200, has {own}"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // 512 descriptors in all (soft and hard): fewer than the flood, so the
    // collector must cap its connections below the limit, and keep a way
    // in for health checks.
    let _c = Collector::start(
        tmp.path(),
        port,
        &config(
            port,
            &tmp.path().join("data"),
            "header_timeout_secs = 3\n",
            "",
        ),
        Some(512),
    );
    assert_eq!(
        raw_request(
            port,
            "GET /healthz HTTP/1.0\r\n\r\n",
            Duration::from_secs(5)
        ),
        Some((200, "ok\n".to_string()))
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let until = Instant::now() + Duration::from_secs(FLOOD_SECS);
    let closed = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| rt.spawn(slowloris(port, until, closed.clone(), refused.clone())))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    // Health checks and a scrape during the flood: each on a fresh
    // connection, each answered within a second.
    let mut checks = 0;
    let mut slowest = Duration::ZERO;
    while Instant::now() + Duration::from_secs(1) < until {
        let t0 = Instant::now();
        let got = raw_request(
            port,
            "GET /healthz HTTP/1.0\r\n\r\n",
            Duration::from_secs(1),
        );
        assert_eq!(
            got,
            Some((200, "ok\n".to_string())),
            "check {checks} during the flood"
        );
        slowest = slowest.max(t0.elapsed());
        checks += 1;
        if checks % 8 == 0 {
            let m = raw_request(
                port,
                "GET /metrics HTTP/1.0\r\n\r\n",
                Duration::from_secs(1),
            )
            .expect("metrics during the flood");
            assert_eq!(m.0, 200);
            assert!(m.1.contains("moni_collector_open_connections"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(checks >= 30, "{checks} checks");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    rt.block_on(async {
        for f in flood {
            let _ = f.await;
        }
    });
    drop(rt);
    // Every slow connection was closed by the collector at least once (the
    // 3 s header timeout, or made room beyond the cap); none was refused.
    let closed = closed.load(Ordering::Relaxed);
    assert!(closed >= FLOOD as u64, "{closed} closed");
    assert_eq!(refused.load(Ordering::Relaxed), 0);
    // The collector is at its cap (512 fds - 128 reserve - 64 for the 32
    // probe slots and their peeking duplicates) and counted the
    // connections beyond it.
    let (status, m) = raw_request(
        port,
        "GET /metrics HTTP/1.0\r\n\r\n",
        Duration::from_secs(2),
    )
    .expect("metrics");
    assert_eq!(status, 200);
    let over: f64 = m
        .lines()
        .find(|l| {
            l.starts_with("moni_collector_refused_connections_total{reason=\"over_capacity\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("over_capacity counter");
    assert!(over >= (FLOOD - 320) as f64, "{over}");
    // And serves a normal request again: an unauthenticated upload is 401.
    let (status, body) = raw_request(
        port,
        "POST /v1/ingest/flows HTTP/1.0\r\nContent-Length: 4\r\n\r\nPAR1",
        Duration::from_secs(3),
    )
    .expect("answer after the flood");
    assert_eq!(status, 401, "{body}");
}

#[test]
fn an_upload_body_that_stalls_is_cut_with_408_and_a_silent_connection_is_closed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _c = Collector::start(
        tmp.path(),
        port,
        &config(
            port,
            &tmp.path().join("data"),
            "header_timeout_secs = 2\nbody_idle_timeout_secs = 1\n",
            "",
        ),
        None,
    );
    use std::io::{Read, Write};
    // An authenticated upload announcing 100,000 bytes, sending 10, then
    // nothing: answered 408 after the 1 s idle timeout.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    let t0 = Instant::now();
    write!(
        s,
        "POST /v1/ingest/flows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100000\r\n\r\nPAR1PAR1PA"
    )
    .expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("idle"), "{text}");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // One that trickles a byte every 200 ms never goes silent, but brings
    // under 1 KiB a second: cut the same way.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let t0 = Instant::now();
    write!(
        s,
        "POST /v1/ingest/flows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100000\r\n\r\nPAR1"
    )
    .expect("send");
    let mut raw = Vec::new();
    while t0.elapsed() < Duration::from_secs(8) {
        let _ = s.write_all(b"x");
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if !raw.is_empty() && raw.ends_with(b"}") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("under 1 KiB"), "{text}");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // A connection that sends nothing is closed after the header timeout.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    let t0 = Instant::now();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let waited = t0.elapsed();
    assert_eq!(n, 0);
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Nothing was stored.
    assert!(parquet_files(&tmp.path().join("data")).is_empty());
}

#[test]
fn compare_needs_a_token_and_bounds_the_rows_and_the_queries_it_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The node's output directory has the dataset layout compare reads.
    let data = tmp.path().join("data");
    replay_miniature(&data);
    let port = free_port();
    let _c = Collector::start(
        tmp.path(),
        port,
        &config(port, &data, "compare_max_concurrent = 1\n", &reader()),
        None,
    );
    let get = |auth: Option<&str>, query: &str| {
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        raw_request(
            port,
            &format!("GET /v1/compare?production=A&shadow=B{query} HTTP/1.0\r\n{auth}\r\n"),
            Duration::from_secs(20),
        )
        .expect("answer")
    };
    let (status, body) = get(None, "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bearer token"), "{body}");
    assert_eq!(get(Some("not-a-known-token-at-all"), "").0, 401);
    // A reader token and any node token may ask.
    let (status, body) = get(Some(READER), "&format=json");
    assert_eq!(status, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(r["summary"]["windows"], 6);
    let (status, body2) = get(Some(TOKEN_2), "&format=json");
    assert_eq!(status, 200);
    assert_eq!(body, body2);
    // The operator's report, with the receiver, straight from the service.
    let (status, page) = get(Some(READER), "&monitor=rx&format=html");
    assert_eq!(status, 200, "{page}");
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("monitor rx"));
    // A VNet that is not there is named with those that are.
    let (status, err) = raw_request(
        port,
        &format!("GET /v1/compare?production=A&shadow=Z HTTP/1.0\r\nAuthorization: Bearer {READER}\r\n\r\n"),
        Duration::from_secs(20),
    )
    .expect("answer");
    assert_eq!(status, 400, "{err}");
    assert!(err.contains("VNets present: A, B, rx"), "{err}");
    // A bad node name, a range that ends before it starts: told so, and
    // no error tells a reader where the collector keeps its data.
    let (status, err) = get(Some(READER), "&node=..%2Fx");
    assert_eq!(status, 400, "{err}");
    assert!(err.contains("is not a node name"), "{err}");
    let (status, err) = get(
        Some(READER),
        "&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
    );
    assert_eq!(status, 400, "{err}");
    assert!(err.contains("--from must be before --to"), "{err}");
    // Without a token, a malformed query is still 401.
    assert_eq!(get(None, "&shadow=C").0, 401);
    // A parameter given twice or not a number: a JSON error too.
    for (query, says) in [
        ("&shadow=C", "duplicate field `shadow`"),
        ("&tolerance=x", "tolerance"),
    ] {
        let (status, err) = get(Some(READER), query);
        assert_eq!(status, 400, "{err}");
        let e: serde_json::Value = serde_json::from_str(&err).expect("a JSON error");
        assert!(
            e["error"].as_str().is_some_and(|m| m.contains(says)),
            "{err}"
        );
    }
    let dir = data.display().to_string();
    let (_, err) = get(Some(READER), "&node=nobody");
    assert!(!err.contains(&dir), "{err}");
    // Parallel queries: at most one runs, the others are told to retry.
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..12)
            .map(|_| {
                s.spawn(|| {
                    let req = format!(
                        "GET /v1/compare?production=A&shadow=B&format=json HTTP/1.0\r\nAuthorization: Bearer {READER}\r\n\r\n"
                    );
                    raw_request(port, &req, Duration::from_secs(30)).expect("answer")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (status, b) in &answers {
        match status {
            200 => assert_eq!(b, &body),
            503 => assert!(b.contains("retry later"), "{b}"),
            other => panic!("{other}: {b}"),
        }
    }
    assert!(answers.iter().any(|a| a.0 == 200));
    // A query loading more windows than max_compare_rows is refused.
    drop(_c);
    let port = free_port();
    let _c = Collector::start(
        tmp.path(),
        port,
        &config(port, &data, "max_compare_rows = 10\n", &reader()),
        None,
    );
    let (status, body) = raw_request(
        port,
        &format!("GET /v1/compare?production=A&shadow=B HTTP/1.0\r\nAuthorization: Bearer {READER}\r\n\r\n"),
        Duration::from_secs(20),
    )
    .expect("answer");
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("more than 10 RTP windows"), "{body}");
}

/// Beyond `max_concurrent_uploads` bodies at once, an upload is told to
/// come back (503, `Retry-After`, counted as `busy`) before its body is
/// read; once the slot is free, it is stored.
#[test]
fn uploads_beyond_max_concurrent_uploads_are_told_to_retry() {
    use std::io::Write;
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    replay_miniature(&out);
    let file = parquet_files(&out.join("flows"))
        .into_iter()
        .next()
        .expect("a flows file");
    let body = std::fs::read(&file).expect("read");
    let port = free_port();
    let _c = Collector::start(
        tmp.path(),
        port,
        &config(
            port,
            &tmp.path().join("data"),
            "max_concurrent_uploads = 1\nmax_body_bytes = 33554432\n",
            "",
        ),
        None,
    );
    let upload_as = |token: &str, body: &[u8]| -> (u16, String) {
        let mut req = format!(
            "POST /v1/ingest/flows HTTP/1.0\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.set_write_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        if let Err(e) = s.write_all(&req) {
            return (0, format!("sending the body: {e}"));
        }
        let mut raw = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    };
    let upload = |body: &[u8]| upload_as(TOKEN, body);
    // One upload holds the slot: its body is announced, half sent.
    let mut held = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        held,
        "POST /v1/ingest/flows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("send");
    held.write_all(&body[..body.len() / 2]).expect("send");
    let metric = || {
        raw_request(
            port,
            "GET /metrics HTTP/1.0\r\n\r\n",
            Duration::from_secs(5),
        )
        .map(|(_, m)| m)
        .unwrap_or_default()
    };
    let in_progress = |n: u32, what: &str| {
        let t0 = Instant::now();
        while !metric().contains(&format!("moni_collector_uploads_in_progress {n}")) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the held upload never {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    in_progress(1, "started");
    let (status, text) = upload(&body);
    assert_eq!(status, 503, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 5"),
        "{text}"
    );
    assert!(text.contains("1 uploads already being received"), "{text}");
    // A body larger than the sockets' buffers is read to its end and
    // dropped, so that the node gets the 503 and its Retry-After instead
    // of a connection reset mid-body (which it can only take for a network
    // failure); a wrong token likewise gets its 401, which the node logs
    // as such, instead of a reset.
    let large = vec![0u8; 32 << 20];
    let (status, text) = upload(&large);
    assert_eq!(status, 503, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 5"),
        "{text}"
    );
    let (status, text) = upload_as("not-a-token", &large);
    assert_eq!(status, 401, "{text}");
    // A known node's body over `max_body_bytes` gets its 413 too: the node
    // moves that file to rejected/ instead of retrying it for ever.
    let (status, text) = upload(&vec![0u8; 40 << 20]);
    assert_eq!(status, 413, "{text}");
    let metrics = metric();
    // Every reason and dataset is exported from the start, at 0, so that
    // the first refusal is an increase an alert sees.
    for zero in [
        "moni_collector_rejected_uploads_total{reason=\"bad_value\"} 0",
        "moni_collector_spills_total{dataset=\"flows\"} 0",
    ] {
        assert!(metrics.contains(zero), "{zero}: {metrics}");
    }
    assert!(
        metrics.contains("moni_collector_rejected_uploads_total{reason=\"busy\"} 2"),
        "{metrics}"
    );
    // The held upload finishes and is stored; then the slot is free.
    held.write_all(&body[body.len() / 2..]).expect("send");
    let mut raw = Vec::new();
    held.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&raw).contains("}") {
        match std::io::Read::read(&mut held, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    drop(held);
    in_progress(0, "ended");
    let (status, text) = upload(&body);
    assert_eq!(status, 201, "{text}");
    // The same file: every part already stored by the held upload.
    let v: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default()).expect("json");
    assert!(v["parts"].as_u64().is_some_and(|n| n > 0), "{text}");
    assert_eq!(v["already_stored"], v["parts"], "{text}");
}

#[test]
fn check_config_names_the_key_of_a_bad_serving_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    for (server, extra, key) in [
        (
            "header_timeout_secs = 0\n",
            "",
            "server.header_timeout_secs",
        ),
        (
            "body_idle_timeout_secs = 0\n",
            "",
            "server.body_idle_timeout_secs",
        ),
        ("max_connections = 2\n", "", "server.max_connections"),
        (
            "max_concurrent_uploads = 0\n",
            "",
            "server.max_concurrent_uploads",
        ),
        (
            "compare_max_concurrent = 0\n",
            "",
            "server.compare_max_concurrent",
        ),
        ("max_compare_rows = 0\n", "", "server.max_compare_rows"),
        ("", "[[readers]]\ntoken = \"short\"\n", "readers.token"),
        (
            "",
            "[tls]\ncert_file = \"/nonexistent.crt\"\n",
            "tls.key_file",
        ),
        (
            "",
            "[tls]\ncert_file = \"/nonexistent.crt\"\nkey_file = \"/nonexistent.key\"\n",
            "tls.cert_file",
        ),
        (
            "",
            "[tls]\nclient_ca_file = \"/x.crt\"\n",
            "tls.client_ca_file",
        ),
    ] {
        let path = tmp.path().join("c.toml");
        std::fs::write(&path, config(1, &data, server, extra)).expect("write");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_moni-collector"))
            .arg("check-config")
            .arg(&path)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(key), "{key}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

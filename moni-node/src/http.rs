//! A minimal HTTP/1.1 endpoint for `/metrics` and `/healthz`.
//!
//! Scrapes are rare and small, so one thread answers connections one at a
//! time, each with a short read timeout: a stuck client cannot hold it long,
//! and nothing here touches the packet path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::health::Health;
use crate::metrics::Metrics;

/// Binds the listener (errors name the address).
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("metrics.listen {addr}: cannot listen: {e}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves until `stop` is set. `health` answers `/healthz`.
pub fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    health: Arc<Health>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, &metrics, &health) {
                    tracing::debug!(error = %e, "Metrics request failed.");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "Accepting a metrics connection failed.");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut s: TcpStream, metrics: &Metrics, health: &Health) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        let n = s.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body): (&str, &str, Vec<u8>) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET" | "HEAD", "/healthz") => {
            match health.report() {
                None => ("200 OK", "text/plain", b"ok\n".to_vec()),
                Some(problems) => ("503 Service Unavailable", "text/plain", problems.into_bytes()),
            }
        }
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/html",
            b"<html><body><a href=\"/metrics\">metrics</a> <a href=\"/healthz\">healthz</a></body></html>\n".to_vec(),
        ),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        _ => ("405 Method Not Allowed", "text/plain", b"method not allowed\n".to_vec()),
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        s.write_all(&body)?;
    }
    s.flush()
}

//! The collector's connection layer: accept loop, connection cap, timeouts,
//! TLS handshakes and graceful shutdown (hyper HTTP/1.1 under axum's
//! router).
//!
//! - At most `max_connections` connections are served at once (lowered so
//!   that they fit under the fd limit, see [`crate::limits`]). Beyond it a
//!   small pool of [`PROBE_SLOTS`] connections answers only `/healthz` and
//!   `/metrics` (everything else 503 + `Retry-After`), with a
//!   [`PROBE_HEADER_TIMEOUT`]; when the pool is full, the oldest of them
//!   still waiting for its request is closed for the newest, taking first
//!   those whose request head has still not arrived whole (a check sends
//!   it at once, a slowloris trickles it; looked at when accepted and
//!   again before one is closed: peeked, or over TLS the handshake done),
//!   those with part of one before those with none yet (a check between
//!   its connect and its write), and a new connection without a whole
//!   head is closed (`probe_too_slow`) rather than push out one with it.
//!   So a flood of slow or idle connections cannot starve
//!   health checks and scrapes, and the accept loop never waits on a
//!   connection.
//! - The request line and headers (and the TLS handshake, and the pause
//!   between keep-alive requests) must arrive within `header_timeout`;
//!   a request body silent (under 1 KiB) for `body_idle_timeout` is cut ([`idle_body`],
//!   answered 408). Handlers check the token before storing a body. A
//!   refused body that says it fits `max_body_bytes` is read and dropped
//!   so that the client gets the answer, not a reset (at most 10 s, 64
//!   bodies at once: `server::answer_before_body`); one over the limit is
//!   not read.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};

use crate::tls::{PeerNames, Reloadable};

/// Connections served beyond the cap, for `/healthz` and `/metrics` only.
pub const PROBE_SLOTS: usize = 32;
/// Descriptors those connections can hold: each plain-HTTP slot whose
/// head had not arrived when accepted keeps a duplicate of its socket to
/// peek at.
pub const PROBE_FDS: usize = 2 * PROBE_SLOTS;
/// Header timeout of those connections: a probe sends its request at once.
pub const PROBE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a stop waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Limits of the connection layer (validated and fd-capped).
#[derive(Clone, Debug)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Metrics of the connection layer.
#[derive(Clone)]
pub struct ConnMetrics {
    pub open: IntGauge,
    pub refused: IntCounterVec,
}

impl ConnMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<ConnMetrics> {
        let open = IntGauge::new(
            "moni_collector_open_connections",
            "Connections being served (within max_connections).",
        )?;
        r.register(Box::new(open.clone()))?;
        let refused = IntCounterVec::new(
            Opts::new(
                "moni_collector_refused_connections_total",
                "Connections beyond max_connections (over_capacity: served \
                 /healthz and /metrics only; probe_too_slow: closed beyond \
                 them because its request head had not arrived whole) and TLS handshakes \
                 that failed or timed out (tls_handshake).",
            ),
            &["reason"],
        )?;
        r.register(Box::new(refused.clone()))?;
        for reason in ["over_capacity", "probe_too_slow", "tls_handshake"] {
            refused.with_label_values(&[reason]);
        }
        Ok(ConnMetrics { open, refused })
    }
}

/// A connection of the probe pool: its id, how to close it, and whether
/// its request head has arrived (then it is being answered and stays).
struct ProbeSlot {
    id: u64,
    evict: Arc<Notify>,
    answering: Arc<AtomicBool>,
    /// Its whole request head (TLS: its ClientHello) has been seen
    /// waiting (at accept, or when a victim was sought later).
    complete: bool,
    /// Plain HTTP: a duplicate of its socket, to peek again before
    /// evicting it, so that a check accepted a moment before its bytes
    /// arrived does not lose its slot to the slow connections after it.
    sock: Option<std::os::fd::OwnedFd>,
    /// TLS: set when its handshake completed (rustls has read the
    /// ClientHello off the socket by then, so a peek would see nothing).
    handshaken: Arc<AtomicBool>,
}

impl ProbeSlot {
    /// How much of its request head has arrived: peeked again (plain
    /// HTTP; once all of it has, the duplicate descriptor is given back),
    /// or over TLS whether its handshake is done (rustls reads what
    /// arrives, so a peek says nothing there: until then it is `Nothing`).
    fn look(&mut self, tls: bool) -> Head {
        if self.complete {
            return Head::Whole;
        }
        let head = if tls {
            if self.handshaken.load(Ordering::Relaxed) {
                Head::Whole
            } else {
                Head::Nothing
            }
        } else {
            self.sock
                .as_ref()
                .map_or(Head::Nothing, |fd| head_state(fd, false))
        };
        if head == Head::Whole {
            self.complete = true;
            self.sock = None;
        }
        head
    }
}

/// What has arrived of a connection's request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    /// No byte yet: a client between its connect and its write, or an
    /// idle connection.
    Nothing,
    /// Part of it: a slowloris trickling it (a check writes it at once).
    Partial,
    Whole,
}

/// Connections served beyond the cap. When all [`PROBE_SLOTS`] are taken,
/// the oldest that has not sent its request head yet is closed for the
/// newest (a health check sends its request at once; a slow client holding
/// a slot is the one to go); when every slot is answering, the newest is
/// closed instead.
#[derive(Default)]
struct ProbePool {
    next_id: u64,
    live: std::collections::VecDeque<ProbeSlot>,
}

fn lock(pool: &Mutex<ProbePool>) -> std::sync::MutexGuard<'_, ProbePool> {
    match pool.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets
/// requests in flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    probe: Router,
    limits: ConnLimits,
    tls: Option<Arc<Reloadable>>,
    metrics: ConnMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    let probes = Arc::new(Mutex::new(ProbePool::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: the cap should prevent them; do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.as_ref().map(|t| t.current());
        let metrics = metrics.clone();
        if let Ok(permit) = conns.clone().try_acquire_owned() {
            let conn = Conn {
                router: app.clone(),
                header_timeout: limits.header_timeout,
                keep_alive: true,
                stop: stop_rx.clone(),
                answering: None,
                handshaken: None,
            };
            tokio::spawn(async move {
                let _permit = permit;
                metrics.open.inc();
                conn.handshake_and_run(stream, tls, &metrics).await;
                metrics.open.dec();
            });
            continue;
        }
        metrics.refused.with_label_values(&["over_capacity"]).inc();
        // A health check or scrape sends its whole request head (or TLS
        // ClientHello) right after connecting, so it is already waiting
        // when the accept loop reaches it; a slowloris trickles its head.
        // A slot is taken from a connection without a whole head first,
        // so a flood of new slow connections cannot push checks out.
        let complete = head_waiting(&stream, tls.is_some());
        let sock = if complete || tls.is_some() {
            None
        } else {
            std::os::fd::AsFd::as_fd(&stream).try_clone_to_owned().ok()
        };
        let handshaken = Arc::new(AtomicBool::new(false));
        let evict = Arc::new(Notify::new());
        let answering = Arc::new(AtomicBool::new(false));
        let id = {
            let mut pool = lock(&probes);
            if pool.live.len() >= PROBE_SLOTS {
                // The oldest idle slot with part of a head goes first (a
                // slowloris), then the oldest with none yet (a check may
                // be between its connect and its write: the trickling
                // ones go before it), then, for a new connection with its
                // whole head, the oldest idle one.
                let tls_on = tls.is_some();
                let mut looks = [None; PROBE_SLOTS];
                for (l, p) in looks.iter_mut().zip(pool.live.iter_mut()) {
                    if !p.answering.load(Ordering::Relaxed) {
                        *l = Some(p.look(tls_on));
                    }
                }
                let oldest = |h: Head| looks.iter().position(|l| *l == Some(h));
                let victim = oldest(Head::Partial)
                    .or_else(|| oldest(Head::Nothing))
                    .or_else(|| {
                        complete
                            .then(|| looks.iter().position(Option::is_some))
                            .flatten()
                    });
                match victim.and_then(|i| pool.live.remove(i)) {
                    Some(oldest) => oldest.evict.notify_one(),
                    None => {
                        metrics.refused.with_label_values(&["probe_too_slow"]).inc();
                        drop(stream);
                        continue;
                    }
                }
            }
            pool.next_id += 1;
            let id = pool.next_id;
            pool.live.push_back(ProbeSlot {
                id,
                evict: evict.clone(),
                answering: answering.clone(),
                complete,
                sock,
                handshaken: handshaken.clone(),
            });
            id
        };
        let conn = Conn {
            router: probe.clone(),
            header_timeout: PROBE_HEADER_TIMEOUT,
            keep_alive: false,
            stop: stop_rx.clone(),
            answering: Some(answering),
            handshaken: Some(handshaken),
        };
        let pool = probes.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = conn.handshake_and_run(stream, tls, &metrics) => {}
                () = evict.notified() => {}
            }
            lock(&pool).live.retain(|p| p.id != id);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let n = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, conns.acquire_many(n))
        .await
        .is_err()
    {
        tracing::warn!("Requests still in flight after the shutdown grace period; stopping.");
    }
}

/// Whether a whole request head (plain HTTP: up to the blank line) or a
/// whole first TLS record is already waiting in the socket.
fn head_waiting(stream: impl std::os::fd::AsFd, tls: bool) -> bool {
    head_state(stream, tls) == Head::Whole
}

/// How much of a request head (plain HTTP: up to the blank line) or of a
/// first TLS record is waiting in the socket. Peeks without waiting: the
/// bytes stay for hyper or rustls.
fn head_state(stream: impl std::os::fd::AsFd, tls: bool) -> Head {
    use rustix::net::{recv, RecvFlags};
    let mut buf = [0u8; 4096];
    let n = match recv(stream, &mut buf[..], RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((n, _)) => n,
        Err(_) => 0,
    };
    let b = &buf[..n];
    let whole = if tls {
        b.len() >= 5
            && b.len() >= (5 + usize::from(u16::from_be_bytes([b[3], b[4]]))).min(buf.len())
    } else {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    };
    match (whole, n) {
        (true, _) => Head::Whole,
        (false, 0) => Head::Nothing,
        (false, _) => Head::Partial,
    }
}

struct Conn {
    router: Router,
    header_timeout: Duration,
    keep_alive: bool,
    stop: watch::Receiver<bool>,
    /// Set when a request head has arrived (probe pool only).
    answering: Option<Arc<AtomicBool>>,
    /// Set when the TLS handshake completed (probe pool only).
    handshaken: Option<Arc<AtomicBool>>,
}

impl Conn {
    async fn handshake_and_run(
        self,
        stream: tokio::net::TcpStream,
        tls: Option<Arc<rustls::ServerConfig>>,
        metrics: &ConnMetrics,
    ) {
        let Some(cfg) = tls else {
            return self.run(stream, PeerNames::default()).await;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        match tokio::time::timeout(self.header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(s)) => {
                if let Some(h) = &self.handshaken {
                    h.store(true, Ordering::Relaxed);
                }
                let peer = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(PeerNames::from_der)
                    .unwrap_or_default();
                self.run(s, peer).await;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                metrics.refused.with_label_values(&["tls_handshake"]).inc();
            }
            Err(_) => {
                metrics.refused.with_label_values(&["tls_handshake"]).inc();
            }
        }
    }

    async fn run<I>(self, io: I, peer: PeerNames)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router;
        let answering = self.answering;
        let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            if let Some(a) = &answering {
                a.store(true, Ordering::Relaxed);
            }
            req.extensions_mut().insert(peer.clone());
            let mut r = router.clone();
            async move {
                let resp: Result<Response, Infallible> =
                    tower_service::Service::call(&mut r, req).await;
                resp
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .keep_alive(self.keep_alive)
            .serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut stop = self.stop;
        let stopping = async move {
            // (the guard wait_for returns must not live across an await)
            let _ = stop.wait_for(|s| *s).await.is_ok();
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended");
                }
            }
            () = stopping => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// Error of a request body silent for longer than its idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("request body idle (under 1 KiB) for more than {0:?}")]
pub struct BodyIdle(pub Duration);

/// Bytes a body must bring within each idle timeout to count as moving:
/// a client that sends one byte every few seconds never went silent, and
/// held an ingest slot and a connection for as long as it liked.
pub const BODY_PROGRESS_BYTES: usize = 1024;

/// `body` with an idle timeout: cut when fewer than
/// [`BODY_PROGRESS_BYTES`] arrived within `idle` (the body's end aside);
/// the flag is set when it fired (the handler then sees a body error, the
/// answer becomes 408).
pub fn idle_body(body: Body, idle: Duration) -> (Body, Arc<AtomicBool>) {
    let fired = Arc::new(AtomicBool::new(false));
    let flag = fired.clone();
    let stream = body.into_data_stream();
    let start = (stream, tokio::time::Instant::now() + idle, 0usize);
    let s = futures_util::stream::unfold(Some(start), move |state| {
        let flag = flag.clone();
        async move {
            let (mut stream, mut deadline, mut moved) = state?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    moved += chunk.len();
                    if moved >= BODY_PROGRESS_BYTES {
                        (deadline, moved) = (tokio::time::Instant::now() + idle, 0);
                    }
                    Some((Ok(chunk), Some((stream, deadline, moved))))
                }
                Ok(Some(Err(e))) => Some((Err(axum::Error::new(e)), None)),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, Ordering::Relaxed);
                    Some((Err(axum::Error::new(BodyIdle(idle))), None))
                }
            }
        }
    });
    (Body::from_stream(s), fired)
}

/// Middleware: applies [`idle_body`] and turns a fired timeout into 408
/// with `Connection: close` (the client is told to retry; a node does).
pub async fn body_idle_timeout(
    axum::extract::State(idle): axum::extract::State<Duration>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let (body, fired) = idle_body(body, idle);
    let resp = next.run(Request::from_parts(parts, body)).await;
    if fired.load(Ordering::Relaxed) {
        let msg = serde_json::json!({ "error": BodyIdle(idle).to_string() }).to_string();
        let mut r = (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONTENT_TYPE, "application/json")],
            msg,
        )
            .into_response();
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A check accepted before its bytes arrived is seen with its whole
    /// head when a victim is sought later (and gives back its duplicate
    /// descriptor); part of a head is told from none.
    #[test]
    fn a_slot_peeks_again_for_a_head_that_came_after_the_accept() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        assert!(!head_waiting(&server, false));
        let mut slot = ProbeSlot {
            id: 1,
            evict: Arc::new(Notify::new()),
            answering: Arc::new(AtomicBool::new(false)),
            complete: false,
            handshaken: Arc::new(AtomicBool::new(false)),
            sock: Some(
                std::os::fd::AsFd::as_fd(&server)
                    .try_clone_to_owned()
                    .expect("dup"),
            ),
        };
        assert_eq!(slot.look(false), Head::Nothing);
        client
            .write_all(b"GET /healthz HTTP/1.0\r\n")
            .expect("write");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(slot.look(false), Head::Partial, "half a head is not a head");
        assert!(slot.sock.is_some());
        client.write_all(b"\r\n").expect("write");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(slot.look(false), Head::Whole);
        assert!(slot.sock.is_none());
        // The peek left the bytes for the server's own read.
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(&mut &server, &mut buf).expect("read");
        assert_eq!(&buf[..n], b"GET /healthz HTTP/1.0\r\n\r\n");
    }

    /// Over TLS rustls reads the ClientHello off the socket, so the second
    /// look asks whether the handshake is done instead of peeking.
    #[test]
    fn a_tls_slot_has_arrived_once_its_handshake_is_done() {
        let handshaken = Arc::new(AtomicBool::new(false));
        let mut slot = ProbeSlot {
            id: 1,
            evict: Arc::new(Notify::new()),
            answering: Arc::new(AtomicBool::new(false)),
            complete: false,
            handshaken: handshaken.clone(),
            sock: None,
        };
        assert_eq!(slot.look(true), Head::Nothing);
        handshaken.store(true, Ordering::Relaxed);
        assert_eq!(slot.look(true), Head::Whole);
    }
}

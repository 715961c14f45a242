//! `moni-collector serve`: the HTTP service.
//!
//! - `POST /v1/ingest/{dataset}` with `Authorization: Bearer <token>` and
//!   the Parquet file as body (optionally `X-Content-Sha256`): 201 once
//!   every part is durably stored, with a JSON body; 401 bad token, 400
//!   unknown dataset / bad name / hash mismatch, 413 too large (body, rows,
//!   decoded bytes), 422 not Parquet, wrong schema, nulls in a NOT NULL
//!   column, too many partitions or VNets; 507 storage full and 503 other
//!   storage failures (both with `Retry-After`: the node retries them).
//!   Every refusal is one JSON `error` line.
//! - `GET /v1/compare?production=A&shadow=B[&monitor=&from=&to=&node=&format=json|csv|table|svg|html]`
//!   with `Authorization: Bearer <token>` of a `[[readers]]` entry or any
//!   node: 401 without; at most `compare_max_concurrent` at once (503 with
//!   `Retry-After` beyond); 413 when the query would load more than
//!   `max_compare_rows` windows.
//! - `GET /metrics`, `GET /healthz`: no token; still answered when the
//!   connection cap is reached (see [`crate::http`]).
//!
//! With `[tls] client_ca_file`, an upload must come over a connection
//! whose client certificate names the token's node (CN or DNS SAN): 403
//! otherwise.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};

use crate::backend::Backend;
use crate::compare::{self, CompareQuery};
use crate::config::Settings;
use crate::metrics::CollectorMetrics;
use crate::store::{self, IngestError};
use crate::{http, limits, tls};

struct AppState {
    settings: Settings,
    backend: Backend,
    metrics: CollectorMetrics,
    seq: AtomicU64,
    /// Bounds the uploads being validated and written at once: each holds
    /// one decoded batch and its partitions' unflushed row groups, so this
    /// bounds the collector's memory (bodies still stream to disk
    /// concurrently).
    ingest_slots: Arc<tokio::sync::Semaphore>,
    /// VNet names stored per node, for `max_vnets_per_node`.
    vnets: std::sync::Mutex<HashMap<String, BTreeSet<String>>>,
    /// Bounds the `/v1/compare` queries running at once (each loads windows).
    compare_slots: tokio::sync::Semaphore,
    /// Upload bodies being received or stored (`max_concurrent_uploads`).
    upload_slots: Arc<tokio::sync::Semaphore>,
    /// Refused bodies being read out ([`answer_before_body`]).
    linger_slots: Arc<tokio::sync::Semaphore>,
    /// `[tls] client_ca_file` is set: uploads need a matching certificate.
    mutual_tls: bool,
}

fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({ "error": message.to_string() }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Runs until SIGINT/SIGTERM; SIGHUP reloads the TLS certificates.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .map_err(|e| anyhow::anyhow!("server.data_dir {}: {e}", settings.data_dir.display()))?;
    let fd_limit = limits::raise_fd_limit();
    let max_connections =
        limits::connection_cap(settings.limits.max_connections, http::PROBE_FDS, fd_limit);
    if max_connections < 8 {
        anyhow::bail!(
            "server.max_connections: the file-descriptor limit ({}) leaves room for {max_connections} connections; raise it (ulimit -n, LimitNOFILE=)",
            fd_limit.unwrap_or(0)
        );
    }
    if max_connections < settings.limits.max_connections {
        tracing::warn!(
            configured = settings.limits.max_connections,
            used = max_connections,
            fd_limit = fd_limit.unwrap_or(0),
            "server.max_connections lowered to fit the file-descriptor limit."
        );
    }
    let tls = match &settings.tls {
        Some(t) => Some(Arc::new(
            tls::Reloadable::new(t.clone()).map_err(|e| anyhow::anyhow!("{}: {e}", e.key()))?,
        )),
        None => None,
    };
    // Held until serve returns: a second collector on this data_dir must
    // not touch our `.incoming`.
    let _lock = store::lock_data_dir(&settings.data_dir)?;
    let recovered = store::recover(&settings.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "server.data_dir {}: recovering .incoming: {e}",
            settings.data_dir.display()
        )
    })?;
    if recovered != store::Recovered::default() {
        tracing::warn!(
            commits_finished = recovered.commits_finished,
            files_removed = recovered.files_removed,
            "Finished interrupted commits and removed temporary files of interrupted uploads."
        );
    }
    let known_vnets = store::known_vnets(&settings.data_dir);
    let listener = listen(settings.listen)
        .map_err(|e| anyhow::anyhow!("server.listen {}: cannot listen: {e}", settings.listen))?;
    let backend = Backend::from_settings(settings.data_dir.clone(), &settings.storage)?;
    tracing::info!(
        listen = %settings.listen,
        store = %backend.describe(),
        nodes = settings.tokens.len(),
        tls = tls.is_some(),
        max_connections,
        "Collector listening."
    );
    let collector_metrics = CollectorMetrics::new()?;
    let conn_metrics = http::ConnMetrics::register(collector_metrics.registry())?;
    let limits = http::ConnLimits {
        max_connections,
        header_timeout: settings.limits.header_timeout,
    };
    let body_idle = settings.limits.body_idle_timeout;
    let state = Arc::new(AppState {
        backend,
        compare_slots: tokio::sync::Semaphore::new(settings.limits.compare_max_concurrent),
        upload_slots: Arc::new(tokio::sync::Semaphore::new(
            settings.limits.max_concurrent_uploads,
        )),
        linger_slots: Arc::new(tokio::sync::Semaphore::new(MAX_LINGERING)),
        settings,
        metrics: collector_metrics,
        seq: AtomicU64::new(0),
        vnets: std::sync::Mutex::new(known_vnets),
        ingest_slots: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()) * 2,
        )),
        mutual_tls: tls.as_ref().is_some_and(|t| t.mutual()),
    });
    let app = router(state.clone(), body_idle);
    let probe = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            let mut r = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "at the connection limit: only /healthz and /metrics are served",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        })
        .with_state(state);
    if let Some(t) = tls.clone() {
        tokio::spawn(reload_on_sighup(t));
    }
    http::serve(
        listener,
        app,
        probe,
        limits,
        tls,
        conn_metrics,
        shutdown_signal(),
    )
    .await;
    Ok(())
}

/// The routes: ingest (client certificate checked with mutual TLS, body
/// idle timeout), compare, metrics, health.
fn router(state: Arc<AppState>, body_idle: Duration) -> Router {
    let ingest_route = post(ingest)
        .layer(middleware::from_fn_with_state(
            body_idle,
            http::body_idle_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_client_cert,
        ));
    Router::new()
        .route("/v1/ingest/{dataset}", ingest_route)
        .route("/v1/compare", get(compare_http))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn shutdown_signal() {
    let term = async {
        if let Ok(mut s) = signal(SignalKind::terminate()) {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn reload_on_sighup(tls: Arc<tls::Reloadable>) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("Cannot listen for SIGHUP: TLS certificates will not reload.");
        return;
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("TLS certificates reloaded."),
            Err(e) => {
                tracing::error!(key = e.key(), error = %e, "TLS reload failed; the old certificates stay.")
            }
        }
    }
}

/// The bearer token of a request (the scheme's name in any case, as RFC
/// 9110 has it: `bearer` from a client that writes it so is no other
/// scheme).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim_start_matches(' '))
}

/// With mutual TLS: the upload's token must name a node that the client
/// certificate names too (403 otherwise). An unknown token passes on to
/// the handler's 401.
async fn require_client_cert(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if st.mutual_tls {
        if let Some(node) = bearer(req.headers()).and_then(|t| st.settings.tokens.get(t)) {
            let names = req.extensions().get::<tls::PeerNames>();
            if !names.is_some_and(|n| n.contains(node)) {
                st.metrics
                    .rejected
                    .with_label_values(&["client_certificate"])
                    .inc();
                let r = json_error(
                    StatusCode::FORBIDDEN,
                    format!("the client certificate does not name node {node}"),
                );
                let read = fits(req.headers(), st.settings.max_body_bytes);
                return answer_before_body(&st, req.into_body(), read, r);
            }
        }
    }
    next.run(req).await
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn compare_http(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<CompareQuery>, QueryRejection>,
) -> Response {
    let authorized = bearer(&headers)
        .is_some_and(|t| st.settings.readers.contains_key(t) || st.settings.tokens.contains_key(t));
    if !authorized {
        let mut r = json_error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    // A query the extractor refuses (a parameter missing, given twice or
    // not a number) is a JSON error like every other, not axum's text.
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Ok(_slot) = st.compare_slots.try_acquire() else {
        let mut r = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} comparisons already running; retry later",
                st.settings.limits.compare_max_concurrent
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    };
    let data = st.settings.data_dir.clone();
    // A reader learns what its query lacked, not where the collector keeps
    // its data.
    let dir = data.display().to_string();
    let hide = move |e: anyhow::Error| format!("{e:#}").replace(&dir, "the data directory");
    let max_rows = st.settings.limits.max_compare_rows;
    let res =
        tokio::task::spawn_blocking(move || compare::run_query_limited(&data, &q, max_rows)).await;
    match res {
        Ok(Ok((ctype, body))) => ([(header::CONTENT_TYPE, ctype)], body).into_response(),
        Ok(Err(e)) if e.downcast_ref::<compare::TooManyRows>().is_some() => {
            json_error(StatusCode::PAYLOAD_TOO_LARGE, hide(e))
        }
        Ok(Err(e)) => json_error(StatusCode::BAD_REQUEST, hide(e)),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn ingest(
    State(st): State<Arc<AppState>>,
    Path(dataset): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let reject = |status: StatusCode, reason: &str, message: String| {
        st.metrics.rejected.with_label_values(&[reason]).inc();
        json_error(status, message)
    };
    let max = st.settings.max_body_bytes;
    let declared = content_length(&headers);
    let refused_read = fits(&headers, max);
    let token = bearer(&headers);
    let Some(node) = token.and_then(|t| st.settings.tokens.get(t)).cloned() else {
        let r = reject(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown bearer token".into(),
        );
        return answer_before_body(&st, body, refused_read, r);
    };
    if analyzers::schema::dataset(&dataset).is_none() {
        let e = IngestError::UnknownDataset(dataset.chars().take(64).collect());
        let r = reject(StatusCode::BAD_REQUEST, e.reason(), e.to_string());
        return answer_before_body(&st, body, refused_read, r);
    }
    if declared.is_some_and(|n| n > max) {
        let r = reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body over {max} bytes"),
        );
        // A known node's file over the limit: read to its declared end,
        // so that the node gets the 413 and moves the file to `rejected/`
        // instead of retrying it (and the files behind it) for ever.
        return answer_before_body(&st, body, declared, r);
    }
    // Held until the answer: the body on disk and its storing count.
    let Ok(_upload_slot) = st.upload_slots.clone().try_acquire_owned() else {
        st.metrics.rejected.with_label_values(&["busy"]).inc();
        let mut r = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} uploads already being received; retry later",
                st.settings.limits.max_concurrent_uploads
            ),
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
        return answer_before_body(&st, body, refused_read, r);
    };
    let seq = st.seq.fetch_add(1, Ordering::Relaxed);
    let incoming = store::incoming_dir(&st.settings.data_dir);
    let tmp: PathBuf = incoming.join(format!("upload-{}-{seq}.tmp", std::process::id()));
    // Removed however the handler ends, also when the node hangs up and
    // the handler is dropped mid-way.
    let _body_file = RemoveOnDrop(tmp.clone());
    let _in_progress = InProgress::new(&st.metrics.uploads_in_progress);
    let received = receive(body, &tmp, max).await;
    let hash = match received {
        Ok(h) => h,
        Err(Receive::TooLarge) => {
            return reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body over {max} bytes"),
            );
        }
        Err(Receive::Client(e)) => {
            return reject(
                StatusCode::BAD_REQUEST,
                "body",
                format!("reading the body: {e}"),
            );
        }
        Err(Receive::Storage(e)) => {
            tracing::warn!(node = %node, dataset = %dataset, error = %e, "Storing an upload's body failed.");
            return storage_refusal(&st, &e);
        }
    };
    let t0 = Instant::now();
    if let Some(h) = headers
        .get("x-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        if !h.eq_ignore_ascii_case(&hash) {
            let e = IngestError::HashMismatch {
                header: h.chars().take(64).collect(),
                body: hash,
            };
            return reject(StatusCode::BAD_REQUEST, e.reason(), e.to_string());
        }
    }
    let (ds, nd, tp, hs) = (dataset.clone(), node.clone(), tmp.clone(), hash.clone());
    let limits = st.settings.upload_limits;
    let Ok(slot) = st.ingest_slots.clone().acquire_owned().await else {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "shutting down".into(),
        );
    };
    let prepared = tokio::task::spawn_blocking(move || {
        // The slot goes with the work: a node that hangs up drops this
        // handler, not the decoding it started.
        let _slot = slot;
        store::prepare(&ds, &nd, &tp, &hs, &incoming, &limits)
    })
    .await;
    // The body is no longer needed: freed now, not after the commit (the
    // guard removes it on every other way out).
    let _ = tokio::fs::remove_file(&tmp).await;
    let res = match prepared {
        Ok(Ok(p)) => match admit_vnets(&st, &node, &p.vnets) {
            Err(e) => Err(e),
            Ok(()) => {
                let (rows, latest_mos) = (p.rows, p.latest_mos.clone());
                st.metrics
                    .spills
                    .with_label_values(&[dataset.as_str()])
                    .inc_by(p.spills as u64);
                st.backend
                    .put(p)
                    .await
                    .map(|(parts, already_stored, bytes)| store::Stored {
                        rows,
                        parts,
                        already_stored,
                        bytes,
                        latest_mos,
                    })
            }
        },
        Ok(Err(e)) => Err(e),
        // A panic of the decoder is the file's (`store::prepare` refuses
        // it); one elsewhere is the collector's, and the node retries.
        Err(e) => Err(IngestError::Io(e.to_string())),
    };
    let stored = match res {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(node = %node, dataset = %dataset, error = %e, "Upload refused.");
            return refusal(&st, &e);
        }
    };
    let m = &st.metrics;
    let l = [node.as_str(), dataset.as_str()];
    m.uploads.with_label_values(&l).inc();
    if stored.parts > 0 && stored.already_stored == stored.parts {
        m.duplicates.with_label_values(&l).inc();
    } else {
        m.rows.with_label_values(&l).inc_by(stored.rows);
    }
    m.bytes_stored.with_label_values(&l).inc_by(stored.bytes);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    m.last_seen.with_label_values(&[node.as_str()]).set(now);
    for (vnet, role, mos) in &stored.latest_mos {
        m.window_mos
            .with_label_values(&[node.as_str(), vnet.as_str(), role.as_str()])
            .set(*mos);
    }
    m.upload_seconds
        .with_label_values(&[dataset.as_str()])
        .observe(t0.elapsed().as_secs_f64());
    let body = serde_json::json!({
        "node": node, "dataset": dataset, "sha256": hash,
        "rows": stored.rows, "parts": stored.parts, "already_stored": stored.already_stored,
    });
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Seconds a node is asked to wait after a storage failure.
const RETRY_AFTER_SECS: &str = "5";

/// How long a body refused before it was read is still read, to be
/// dropped ([`answer_before_body`]).
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);

/// At most this many refused bodies are read at once; past it, a refused
/// connection is closed with its body unread.
const MAX_LINGERING: usize = 64;

/// The request's `Content-Length`, if it has a valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// How much of a refused body to read out: all of it when it says it fits
/// `max`; a larger one (a stranger's) is not read at all.
fn fits(headers: &HeaderMap, max: u64) -> Option<u64> {
    content_length(headers).filter(|&n| n <= max)
}

/// `answer`, given before the upload's body was read. With `read`, the
/// body is then read in the background (at most `read` bytes, for at most
/// [`LINGER`], at most [`MAX_LINGERING`] bodies at once) and dropped, as a
/// web server's lingering close does. Closing with the body unread resets
/// the connection while the node is still sending, and the node sees a
/// network failure instead of the answer: a 503's `Retry-After` lost, a
/// wrong token or certificate logged as a connection error instead of
/// 401 or 403, and a 400 or 413 (whose file the node moves to
/// `rejected/`) retried for ever. Nothing is stored or held: each chunk
/// read is dropped.
fn answer_before_body(st: &AppState, body: Body, read: Option<u64>, answer: Response) -> Response {
    let Some(limit) = read else {
        return answer;
    };
    let Ok(slot) = st.linger_slots.clone().try_acquire_owned() else {
        return answer;
    };
    tokio::spawn(async move {
        let _slot = slot;
        let mut stream = body.into_data_stream();
        let mut got = 0u64;
        let _ = tokio::time::timeout(LINGER, async {
            while let Some(Ok(chunk)) = stream.next().await {
                got += chunk.len() as u64;
                if got >= limit {
                    break;
                }
            }
        })
        .await;
    });
    answer
}

/// The answer to a refused upload: counted by reason; a storage failure
/// (5xx) carries `Retry-After` so the node retries it later.
fn refusal(st: &AppState, e: &IngestError) -> Response {
    st.metrics.rejected.with_label_values(&[e.reason()]).inc();
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut r = json_error(status, e);
    if status.is_server_error() {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    r
}

/// A file removed when the value is dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `moni_collector_uploads_in_progress` up while the value lives.
struct InProgress(prometheus::IntGauge);

impl InProgress {
    fn new(g: &prometheus::IntGauge) -> InProgress {
        g.inc();
        InProgress(g.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn storage_refusal(st: &AppState, e: &std::io::Error) -> Response {
    refusal(st, &IngestError::storage(e))
}

/// Admits the VNets of an upload under `max_vnets_per_node` (and records
/// the new ones).
fn admit_vnets(st: &AppState, node: &str, vnets: &BTreeSet<String>) -> Result<(), IngestError> {
    let limit = st.settings.max_vnets_per_node;
    let mut all = st
        .vnets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let known = all.entry(node.to_string()).or_default();
    let new: Vec<&String> = vnets.iter().filter(|v| !known.contains(*v)).collect();
    if known.len() + new.len() > limit {
        return Err(IngestError::TooManyVnets {
            node: node.to_string(),
            limit,
            new: new
                .iter()
                .take(3)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    known.extend(new.into_iter().cloned());
    Ok(())
}

enum Receive {
    TooLarge,
    /// The client's body stream failed (4xx; the client is gone anyway).
    Client(String),
    /// Writing the body failed (ENOSPC, EIO, ...): a 5xx.
    Storage(std::io::Error),
}

/// Streams the body into `tmp` (never all in memory), hashing it. After a
/// write error the rest of the body (at most `max`) is read and dropped, so
/// the client gets the 5xx answer instead of a broken connection.
async fn receive(body: Body, tmp: &std::path::Path, max: u64) -> Result<String, Receive> {
    let mut failed: Option<std::io::Error> = None;
    let mut created = tokio::fs::File::create(tmp).await;
    if let (Err(e), Some(dir)) = (&created, tmp.parent()) {
        // `.incoming` removed under the running service (a clean-up of the
        // data directory): made again, instead of refusing every upload
        // until a restart.
        if e.kind() == std::io::ErrorKind::NotFound && tokio::fs::create_dir_all(dir).await.is_ok()
        {
            tracing::warn!(dir = %dir.display(), "The uploads' staging directory was gone; made it again.");
            created = tokio::fs::File::create(tmp).await;
        }
    }
    let mut f = match created {
        Ok(f) => Some(f),
        Err(e) => {
            failed = Some(e);
            None
        }
    };
    let mut hasher = Sha256::new();
    let mut n: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Receive::Client(e.to_string()))?;
        n += chunk.len() as u64;
        if n > max {
            return Err(Receive::TooLarge);
        }
        hasher.update(&chunk);
        if let Some(file) = f.as_mut() {
            if let Err(e) = file.write_all(&chunk).await {
                failed = Some(e);
                f = None;
            }
        }
    }
    if let Some(mut file) = f {
        if let Err(e) = file.flush().await {
            failed = Some(e);
        }
    }
    match failed {
        Some(e) => Err(Receive::Storage(e)),
        None => Ok(hex::encode(hasher.finalize())),
    }
}

/// Binds the listening socket with a deep accept queue (the kernel caps
/// it at `net.core.somaxconn`): tokio's default of 1,024 overflows when a
/// thousand clients reconnect at once, and a health check whose SYN is
/// dropped then waits a whole second for its retransmission.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}

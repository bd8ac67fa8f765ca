//! `walwatch serve`: collect on an interval, serve the latest collection over HTTP.
//!
//! Collection runs every `--interval` on tokio's blocking pool (it is file I/O) and replaces
//! the shared [`Collection`]; `/metrics`, `/status` and `/healthz` only read the latest one, so a
//! scrape costs rendering only and every client sees the same numbers. Problems are logged once
//! per change of state, not once per collection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use std::convert::Infallible;
use tokio::net::TcpListener;

use crate::collect::{Collection, Collector};
use crate::config::Settings;
use crate::controller::policy::ControllerMode;
use crate::controller::watch::WalWatcher;
use crate::controller::Controller;
use crate::discovery::{self, StatsDirs};
use crate::metrics::{Detail, Exposition, Format, Renderer};
use crate::model::DbState;
use crate::text;
use crate::web::{self, Body, Compressible, Web};

/// How long `serve` waits for the first collection before it starts answering anyway (then
/// `/metrics` and `/status` answer 503, and `/healthz` fails, until one finishes).
const FIRST_COLLECTION_WAIT: Duration = Duration::from_secs(5);

/// `/healthz` fails when the last collection finished longer ago than this, or when one has
/// been running longer than this: three intervals (two missed collections are tolerated) plus
/// 10 s for a slow file system.
pub fn stale_after(interval: Duration) -> Duration {
    interval
        .saturating_mul(3)
        .saturating_add(Duration::from_secs(10))
}

/// Where the collection loop stands, for `/healthz`.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub started: Instant,
    pub last_finished: Option<Instant>,
    pub running_since: Option<Instant>,
}

/// Why `/healthz` fails at `now`, or `None` when it is healthy.
pub fn unhealthy(now: Instant, p: &Progress, stale_after: Duration) -> Option<String> {
    let age = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
    if let Some(since) = p.running_since {
        if now.saturating_duration_since(since) > stale_after {
            return Some(format!(
                "a collection has been running for {:.1} s (limit {:.1} s = 3 x --interval + 10 s): a file it reads is blocking it; see the log",
                age(since),
                stale_after.as_secs_f64()
            ));
        }
    }
    match p.last_finished {
        None => Some(format!(
            "no collection has finished yet (started {:.1} s ago)",
            age(p.started)
        )),
        Some(t) if now.saturating_duration_since(t) > stale_after => Some(format!(
            "the last collection finished {:.1} s ago (limit {:.1} s = 3 x --interval + 10 s); see the log",
            age(t),
            stale_after.as_secs_f64()
        )),
        Some(_) => None,
    }
}

/// The latest collection and the number of series its exposition holds.
type Latest = (Arc<Collection>, usize);

/// State shared by the collector and the HTTP handlers.
pub struct Shared {
    latest: RwLock<Option<Latest>>,
    progress: Mutex<Progress>,
    stale_after: Duration,
    stats_dirs: StatsDirs,
    detail: Detail,
    /// `--web.max-requests`: permits for `/metrics` and `/status` responses in progress.
    requests: Arc<tokio::sync::Semaphore>,
    max_requests: usize,
    /// Render time of the last complete `/metrics` response, in nanoseconds.
    last_render_ns: Arc<AtomicU64>,
    /// Where metrics are served (`--web.telemetry-path`), and the landing page that links it.
    telemetry_path: String,
    landing_page: String,
}

impl Shared {
    fn latest(&self) -> Option<Latest> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Binds, then serves until SIGTERM or SIGINT.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let web = Arc::new(Web::load(&settings.web).map_err(anyhow::Error::msg)?);
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| bind_error(settings.listen, e))?;
    let databases: Vec<PathBuf> = settings
        .databases
        .iter()
        .map(|p| discovery::normalize(p))
        .collect();
    let controller = (settings.controller.mode != ControllerMode::Off)
        .then(|| Arc::new(Controller::new(settings.controller.clone())));
    if let Some(c) = &controller {
        let s = c.settings();
        tracing::info!(mode = ?s.mode, soft_limit = %s.soft_limit, hard_limit = %s.hard_limit, truncate_timeout = ?s.truncate_timeout, "checkpoint controller on");
    }
    let shared = Arc::new(Shared {
        latest: RwLock::new(None),
        progress: Mutex::new(Progress {
            started: Instant::now(),
            last_finished: None,
            running_since: None,
        }),
        stale_after: stale_after(settings.interval),
        stats_dirs: settings.stats_dirs.clone(),
        detail: settings.metrics,
        requests: Arc::new(tokio::sync::Semaphore::new(settings.web.max_requests)),
        max_requests: settings.web.max_requests,
        last_render_ns: Arc::new(AtomicU64::new(0)),
        landing_page: landing_page(&settings.telemetry_path),
        telemetry_path: settings.telemetry_path.clone(),
    });
    let watcher = match &controller {
        Some(c) => match WalWatcher::start(c.clone()) {
            Ok(w) => {
                c.enable_fast_reaction();
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch WAL files (inotify); the controller reacts at each collection only");
                None
            }
        },
        None => None,
    };
    // Collection runs in its own task: one that never returns stops neither the HTTP server nor
    // /healthz, which then fails.
    let (first_done, first) = tokio::sync::oneshot::channel();
    let collector = tokio::spawn(collect_loop(
        shared.clone(),
        settings.clone(),
        databases.clone(),
        controller,
        watcher,
        first_done,
    ));
    if tokio::time::timeout(FIRST_COLLECTION_WAIT, first)
        .await
        .is_err()
    {
        tracing::warn!(
            "the first collection has not finished after {FIRST_COLLECTION_WAIT:?}; serving anyway (/metrics answers 503 until it does)"
        );
    }
    tracing::info!(
        listen = %settings.listen,
        stats_dirs = %settings.stats_dirs,
        interval = ?settings.interval,
        databases = databases.len(),
        max_connections = settings.web.max_connections,
        max_requests = settings.web.max_requests,
        metrics = ?settings.metrics,
        header_timeout = ?settings.web.header_timeout,
        basic_auth = web.authenticates(),
        "walwatch {} serving {}://{}{}",
        env!("CARGO_PKG_VERSION"),
        web.scheme(),
        settings.listen,
        settings.telemetry_path
    );
    let handler: web::Handler = {
        let shared = shared.clone();
        Arc::new(move |req| handle(&shared, req))
    };
    web::serve(listener, web, handler, shutdown_signal()).await;
    collector.abort();
    Ok(())
}

fn bind_error(addr: SocketAddr, e: std::io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => " (the port is already in use: is another walwatch running? choose another address with --web.listen-address, alias --listen)",
        std::io::ErrorKind::AddrNotAvailable => " (no local interface has this address; choose another with --web.listen-address, alias --listen)",
        std::io::ErrorKind::PermissionDenied => " (permission denied; choose a port above 1023 with --web.listen-address, alias --listen)",
        _ => " (choose another address with --web.listen-address, alias --listen)",
    };
    anyhow::anyhow!("cannot listen on {addr}: {e}{hint}")
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop walwatch with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// One collection, then the controller's turn on it (checkpoints are blocking I/O too).
async fn collect_blocking(
    collector: Arc<Mutex<Collector>>,
    controller: Option<Arc<Controller>>,
    detail: Detail,
) -> anyhow::Result<Latest> {
    tokio::task::spawn_blocking(move || {
        let mut collection = collector
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .collect();
        if let Some(c) = controller {
            c.after_collection(&mut collection.dbs);
            collection.controller_mode = Some(c.settings().mode.name());
        }
        let series = crate::metrics::count_series(&collection, detail);
        (Arc::new(collection), series)
    })
    .await
    .context("collection task failed")
}

async fn collect_loop(
    shared: Arc<Shared>,
    settings: Settings,
    databases: Vec<PathBuf>,
    controller: Option<Arc<Controller>>,
    mut watcher: Option<WalWatcher>,
    first_done: tokio::sync::oneshot::Sender<()>,
) {
    let mut log = ChangeLog::default();
    let collector = Arc::new(Mutex::new(Collector::new(
        settings.stats_dirs.clone(),
        databases,
        shared.detail == Detail::Detailed,
    )));
    let mut first_done = Some(first_done);
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await; // the first tick is immediate
        shared.progress().running_since = Some(Instant::now());
        match collect_blocking(collector.clone(), controller.clone(), shared.detail).await {
            Ok((c, series)) => {
                log.observe(&c);
                if let Some(w) = &mut watcher {
                    w.set_databases(c.dbs.iter().map(|d| Path::new(&d.path)));
                }
                let previous = shared
                    .latest
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .replace((c, series));
                // The previous collection is freed here (or when its last scrape ends): give
                // its memory back, off the async workers.
                tokio::task::spawn_blocking(move || {
                    drop(previous);
                    crate::sys::release_free_memory();
                });
                shared.progress().last_finished = Some(Instant::now());
            }
            Err(e) => tracing::error!(error = %e, "collection failed"),
        }
        shared.progress().running_since = None;
        if let Some(tx) = first_done.take() {
            let _ = tx.send(());
        }
    }
}

/// What was last logged about one database: its error, its blockers (pid, slot) and the rules
/// its inconsistent values broke.
type DbLogState = (Option<String>, Vec<(u32, &'static str)>, Vec<&'static str>);

/// Logs problems and blockers when they appear, change or clear.
#[derive(Default)]
struct ChangeLog {
    dbs: HashMap<String, DbLogState>,
    bad_files: HashMap<PathBuf, String>,
    dir_error: Option<String>,
}

impl ChangeLog {
    fn observe(&mut self, c: &Collection) {
        if c.stats_dir_error != self.dir_error {
            if let Some(e) = &c.stats_dir_error {
                tracing::warn!("{e}");
            }
            self.dir_error.clone_from(&c.stats_dir_error);
        }
        let mut bad = HashMap::new();
        for b in &c.bad_stats_files {
            if self.bad_files.get(&b.path) != Some(&b.message) && b.reason != "uninitialized" {
                tracing::warn!(stats_file = %text::path(&b.path), reason = b.reason, "skipping stats file: {}", text::escaped(b.message.as_bytes()));
            }
            bad.insert(b.path.clone(), b.message.clone());
        }
        self.bad_files = bad;

        let mut seen = HashMap::new();
        for db in &c.dbs {
            let shown = text::escaped(db.path.as_bytes());
            let blockers: Vec<(u32, &'static str)> =
                db.blockers.iter().map(|b| (b.pid, b.slot)).collect();
            let inconsistent: Vec<&'static str> = db.inconsistent.iter().map(|i| i.what).collect();
            let now = (db.error.clone(), blockers, inconsistent);
            let before = self.dbs.get(&db.path);
            if before.is_none() {
                tracing::info!(db = %shown, sources = ?db.sources, up = db.up, "watching database");
            }
            if before.map(|b| &b.0) != Some(&now.0) {
                match &now.0 {
                    Some(e) => {
                        tracing::warn!(db = %shown, up = db.up, "{}", text::escaped(e.as_bytes()))
                    }
                    None if before.is_some() => {
                        tracing::info!(db = %shown, "database readable again")
                    }
                    None => {}
                }
            }
            if before.map(|b| &b.1) != Some(&now.1) {
                log_blockers(db);
            }
            if before.map_or(&[][..], |b| &b.2[..]) != &now.2[..] && !now.2.is_empty() {
                log_inconsistent(db);
            }
            seen.insert(db.path.clone(), now);
        }
        for gone in self.dbs.keys().filter(|k| !seen.contains_key(*k)) {
            tracing::info!(db = %text::escaped(gone.as_bytes()), "database gone; no longer watched");
        }
        self.dbs = seen;
    }
}

/// Values that cannot be true, once per change of the rules they break (see plausible.rs).
fn log_inconsistent(db: &DbState) {
    for source in ["stats_file", "shm"] {
        let found: Vec<String> = db
            .inconsistent
            .iter()
            .filter(|i| i.source == source)
            .map(|i| format!("{}: {}", i.what, i.detail))
            .collect();
        if !found.is_empty() {
            let stats_file = db
                .stats_file
                .as_deref()
                .map(|f| text::escaped(f.as_bytes()));
            tracing::warn!(
                db = %text::escaped(db.path.as_bytes()),
                "{} ({})",
                crate::plausible::advice(source, stats_file.as_deref()),
                text::escaped(found.join("; ").as_bytes())
            );
        }
    }
}

fn log_blockers(db: &DbState) {
    if db.blockers.is_empty() {
        return;
    }
    for b in &db.blockers {
        tracing::warn!(
            db = %text::escaped(db.path.as_bytes()),
            slot = b.slot,
            pid = b.pid,
            process = %text::escaped(b.process.as_deref().unwrap_or("?").as_bytes()),
            read_mark = b.read_mark,
            age_seconds = b.age_seconds,
            blocks = b.blocks.name(),
            "checkpoint blocker: {}",
            b.reason
        );
    }
}

fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are supported\n",
        );
    }
    // Routes below are named by their default paths: the telemetry path is served as
    // `/metrics`, and `/metrics` itself only when it is the telemetry path.
    let path = match req.uri().path() {
        p if p == shared.telemetry_path => "/metrics",
        "/metrics" => "",
        p => p,
    };
    if path == "/healthz" {
        let now = Instant::now();
        let progress = *shared.progress();
        return match unhealthy(now, &progress, shared.stale_after) {
            None => text(StatusCode::OK, "ok\n"),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("unhealthy: {why}\n"),
            ),
        };
    }
    let latest = match (path, shared.latest()) {
        ("/metrics" | "/status", None) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no collection has finished yet; try again in a few seconds (see /healthz)\n",
            )
        }
        (_, latest) => latest,
    };
    // A permit per /metrics or /status response, held until its body is sent or dropped.
    let permit = match path {
        "/metrics" | "/status" => match shared.requests.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "too many requests in progress: {} /metrics and /status responses (--web.max-requests) are being sent; try again later\n",
                        shared.max_requests
                    ),
                );
                r.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        },
        _ => None,
    };
    let mut response = match (path, latest) {
        ("/metrics", Some((latest, series))) => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            let exposition = Exposition {
                detail: shared.detail,
                series,
                last_render_seconds: shared.last_render_ns.load(Ordering::Relaxed) as f64 / 1e9,
            };
            let body = RenderBody {
                renderer: Renderer::new(latest, format, exposition),
                last_render_ns: shared.last_render_ns.clone(),
                _permit: permit,
            };
            with_type(Response::new(BodyExt::boxed(body)), format.content_type())
        }
        ("/status", Some((latest, _))) => {
            let status = StatusJson {
                walwatch_version: env!("CARGO_PKG_VERSION"),
                stats_dirs: &shared.stats_dirs,
                unreadable_stats_dirs: latest.unreadable_stats_dirs,
                collected_unix_seconds: latest.finished_unix_seconds,
                collect_duration_seconds: latest.duration.as_secs_f64(),
                stats_dir_error: latest.stats_dir_error.as_deref(),
                bad_stats_files: latest
                    .bad_stats_files
                    .iter()
                    .map(|b| BadFileJson {
                        path: b.path.to_string_lossy().into_owned(),
                        reason: b.reason,
                        message: &b.message,
                    })
                    .collect(),
                databases: &latest.dbs,
            };
            match serde_json::to_vec_pretty(&status) {
                Ok(mut json) => {
                    json.push(b'\n');
                    let body = web::Holding::new(full(json), permit);
                    with_type(Response::new(BodyExt::boxed(body)), "application/json")
                }
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot encode status: {e}\n"),
                ),
            }
        }
        ("/", _) => with_type(
            Response::new(full(shared.landing_page.clone())),
            "text/html; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            &format!(
                "not found; try /, {}, /status or /healthz\n",
                shared.telemetry_path
            ),
        ),
    };
    if matches!(path, "/metrics" | "/status") && response.status() == StatusCode::OK {
        response.extensions_mut().insert(Compressible);
    }
    response
}

#[derive(Serialize)]
struct StatusJson<'a> {
    walwatch_version: &'static str,
    stats_dirs: &'a StatsDirs,
    /// Per-user directories this sidecar may not open (it is not root).
    unreadable_stats_dirs: usize,
    collected_unix_seconds: f64,
    collect_duration_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats_dir_error: Option<&'a str>,
    bad_stats_files: Vec<BadFileJson<'a>>,
    databases: &'a [DbState],
}

#[derive(Serialize)]
struct BadFileJson<'a> {
    path: String,
    reason: &'static str,
    message: &'a str,
}

/// The landing page, linking the metrics at `telemetry_path` (checked by
/// `config::parse_telemetry_path`: URL-safe characters only, so it needs no escaping).
fn landing_page(telemetry_path: &str) -> String {
    format!(
        concat!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>walwatch</title></head>\n<body>\n",
            "<h1>walwatch ",
            env!("CARGO_PKG_VERSION"),
            "</h1>\n<p>SQLite WAL, lock and checkpoint exporter.</p>\n<ul>\n",
            "<li><a href=\"{rel}\">{path}</a>: Prometheus metrics</li>\n",
            "<li><a href=\"status\">/status</a>: databases, WAL, readers, blockers, recent checkpoints (JSON)</li>\n",
            "<li><a href=\"healthz\">/healthz</a>: liveness</li>\n",
            "</ul>\n</body></html>\n"
        ),
        rel = telemetry_path.trim_start_matches('/'),
        path = telemetry_path
    )
}

use web::full;

fn text(status: StatusCode, body: &str) -> Response<Body> {
    web::plain(status, body)
}

fn with_type(mut r: Response<Body>, content_type: &'static str) -> Response<Body> {
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Streams a [`Renderer`]'s chunks as the response body, holding a `--web.max-requests`
/// permit until it is sent (or dropped); records the render time when it is complete.
struct RenderBody {
    renderer: Renderer,
    last_render_ns: Arc<AtomicU64>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl hyper::body::Body for RenderBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = self.renderer.next();
        if self.renderer.done() {
            let ns = self.renderer.elapsed.as_nanos().min(u64::MAX as u128) as u64;
            self.last_render_ns.store(ns, Ordering::Relaxed);
        }
        Poll::Ready(chunk.map(|chunk| Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.renderer.done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_fails_on_a_stale_or_stuck_collection() {
        let t0 = Instant::now();
        let limit = stale_after(Duration::from_secs(5));
        assert_eq!(limit, Duration::from_secs(25));
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut p = Progress {
            started: t0,
            last_finished: None,
            running_since: Some(t0),
        };
        assert!(unhealthy(at(1), &p, limit)
            .unwrap()
            .contains("no collection has finished yet"));
        p.last_finished = Some(at(2));
        p.running_since = None;
        assert_eq!(unhealthy(at(20), &p, limit), None);
        let why = unhealthy(at(30), &p, limit).unwrap();
        assert!(
            why.contains("finished 28.0 s ago") && why.contains("25.0 s"),
            "{why}"
        );
        // A collection stuck on a file: the last one finished recently, but this one runs on.
        p.last_finished = Some(at(100));
        p.running_since = Some(at(101));
        assert_eq!(unhealthy(at(120), &p, limit), None);
        let why = unhealthy(at(127), &p, limit).unwrap();
        assert!(why.contains("running for 26.0 s"), "{why}");
    }
}

//! `walwatch serve`: collect on an interval, serve the latest collection over HTTP.
//!
//! Collection runs every `--interval` on tokio's blocking pool (it is file I/O) and replaces
//! the shared [`Collection`]; `/metrics`, `/status` and `/healthz` only read the latest one, so a
//! scrape costs rendering only and every client sees the same numbers. Problems are logged once
//! per change of state, not once per collection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use anyhow::Context as _;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::collect::{self, Collection};
use crate::config::Settings;
use crate::controller::policy::Mode;
use crate::controller::watch::WalWatcher;
use crate::controller::Controller;
use crate::discovery::{self, StatsDirs};
use crate::metrics::{Format, Renderer};
use crate::model::DbState;
use crate::text;

type Body = BoxBody<Bytes, Infallible>;

/// State shared by the collector and the HTTP handlers.
pub struct Shared {
    latest: RwLock<Arc<Collection>>,
    stats_dirs: StatsDirs,
}

impl Shared {
    fn latest(&self) -> Arc<Collection> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Binds, then serves until SIGTERM or SIGINT.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| bind_error(settings.listen, e))?;
    let databases: Vec<PathBuf> = settings
        .databases
        .iter()
        .map(|p| discovery::normalize(p))
        .collect();
    let mut log = ChangeLog::default();
    let controller = (settings.controller.mode != Mode::Off)
        .then(|| Arc::new(Controller::new(settings.controller.clone())));
    if let Some(c) = &controller {
        let s = c.settings();
        tracing::info!(mode = ?s.mode, soft_limit = %s.soft_limit, hard_limit = %s.hard_limit, truncate_timeout = ?s.truncate_timeout, "checkpoint controller on");
    }
    let first = collect_blocking(
        settings.stats_dirs.clone(),
        databases.clone(),
        controller.clone(),
    )
    .await?;
    log.observe(&first);
    let shared = Arc::new(Shared {
        latest: RwLock::new(Arc::new(first)),
        stats_dirs: settings.stats_dirs.clone(),
    });
    tracing::info!(
        listen = %settings.listen,
        stats_dirs = %settings.stats_dirs,
        interval = ?settings.interval,
        databases = databases.len(),
        "walwatch {} serving http://{}/metrics",
        env!("CARGO_PKG_VERSION"),
        settings.listen
    );

    let watcher = match &controller {
        Some(c) => match WalWatcher::start(c.clone()) {
            Ok(mut w) => {
                c.enable_fast_reaction();
                w.set_databases(shared.latest().dbs.iter().map(|d| Path::new(&d.path)));
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch WAL files (inotify); the controller reacts at each collection only");
                None
            }
        },
        None => None,
    };
    let collector = tokio::spawn(collect_loop(
        shared.clone(),
        settings.clone(),
        databases,
        log,
        controller,
        watcher,
    ));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let shared = shared.clone();
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(&shared, req)) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            signal = &mut shutdown => {
                tracing::info!(signal, "shutting down");
                break;
            }
        }
    }
    drop(listener);
    collector.abort();
    if tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 5 s; closing them");
    }
    Ok(())
}

fn bind_error(addr: SocketAddr, e: std::io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => " (the port is already in use: is another walwatch running? choose another address with --listen)",
        std::io::ErrorKind::AddrNotAvailable => " (no local interface has this address; choose another with --listen)",
        std::io::ErrorKind::PermissionDenied => " (permission denied; choose a port above 1023 with --listen)",
        _ => " (choose another address with --listen)",
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
    stats_dirs: StatsDirs,
    databases: Vec<PathBuf>,
    controller: Option<Arc<Controller>>,
) -> anyhow::Result<Collection> {
    tokio::task::spawn_blocking(move || {
        let mut collection = collect::collect(&stats_dirs, &databases);
        if let Some(c) = controller {
            c.after_collection(&mut collection.dbs);
            collection.controller_mode = Some(match c.settings().mode {
                Mode::Observe => "observe",
                _ => "act",
            });
        }
        collection
    })
    .await
    .context("collection task failed")
}

async fn collect_loop(
    shared: Arc<Shared>,
    settings: Settings,
    databases: Vec<PathBuf>,
    mut log: ChangeLog,
    controller: Option<Arc<Controller>>,
    mut watcher: Option<WalWatcher>,
) {
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the first collection is done
    loop {
        ticker.tick().await;
        match collect_blocking(
            settings.stats_dirs.clone(),
            databases.clone(),
            controller.clone(),
        )
        .await
        {
            Ok(c) => {
                log.observe(&c);
                if let Some(w) = &mut watcher {
                    w.set_databases(c.dbs.iter().map(|d| Path::new(&d.path)));
                }
                *shared.latest.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(c);
            }
            Err(e) => tracing::error!(error = %e, "collection failed"),
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
            blocks = b.blocks,
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
    match req.uri().path() {
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            let body = RenderBody(Renderer::new(shared.latest(), format));
            with_type(Response::new(BodyExt::boxed(body)), format.content_type())
        }
        "/status" => {
            let latest = shared.latest();
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
                    with_type(Response::new(full(json)), "application/json")
                }
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot encode status: {e}\n"),
                ),
            }
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/" => with_type(
            Response::new(full(LANDING_PAGE)),
            "text/html; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /, /metrics, /status or /healthz\n",
        ),
    }
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

const LANDING_PAGE: &str = concat!(
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>walwatch</title></head>\n<body>\n",
    "<h1>walwatch ",
    env!("CARGO_PKG_VERSION"),
    "</h1>\n<p>SQLite WAL, lock and checkpoint exporter.</p>\n<ul>\n",
    "<li><a href=\"metrics\">/metrics</a>: Prometheus metrics</li>\n",
    "<li><a href=\"status\">/status</a>: databases, WAL, readers, blockers, recent checkpoints (JSON)</li>\n",
    "<li><a href=\"healthz\">/healthz</a>: liveness</li>\n",
    "</ul>\n</body></html>\n"
);

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = with_type(
        Response::new(full(body.to_owned())),
        "text/plain; charset=utf-8",
    );
    *r.status_mut() = status;
    r
}

fn with_type(mut r: Response<Body>, content_type: &'static str) -> Response<Body> {
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Streams a [`Renderer`]'s chunks as the response body.
struct RenderBody(Renderer);

impl hyper::body::Body for RenderBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.0
                .next()
                .map(|chunk| Ok(Frame::data(Bytes::from(chunk)))),
        )
    }
}

//! The HTTP(S) server of `walwatch serve`, hardened for a shared host, following node_exporter
//! and exporter-toolkit:
//!
//! - [`config`]: `--web.config.file` (exporter-toolkit YAML: TLS, basic auth, headers);
//! - [`tls`]: rustls with the `ring` provider; [`auth`]: bcrypt basic auth with a cache;
//! - [`slots`]: `--web.max-connections`, where idle connections give way to new ones so a
//!   scrape always gets through;
//! - [`accept`]: back-off and bounded logging when `accept` fails (EMFILE…);
//! - [`gzip`]: compressed responses when the client accepts them;
//! - `io`: a connection whose client reads nothing for [`WRITE_TIMEOUT`] is closed.
//!
//! A client must send complete request headers within `--web.header-timeout` of connecting (and
//! of its previous response, on a keep-alive connection: hyper counts the idle wait as part of the
//! header read, so that one bound also closes idle keep-alive connections), else it is closed; a
//! TLS handshake gets the same time.

pub mod accept;
pub mod auth;
pub mod config;
pub mod gzip;
mod io;
pub mod slots;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderName, HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE,
    RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};

use self::auth::{BasicAuth, Verdict};
use self::slots::{Admission, Busy, Slot, Slots};

/// A response body.
pub type Body = BoxBody<Bytes, Infallible>;
/// What answers requests (authentication, compression and limits are done around it).
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> Response<Body> + Send + Sync>;

/// Default of `--web.max-connections`: several Prometheus servers, a few people and their
/// scripts, with room to spare; far below the usual 1024 open files, so that the collector
/// (which opens stats files, databases, -wal and -shm files) never runs out of descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default of `--web.max-requests` (node_exporter's): parallel scrapes beyond it get 503 at once,
/// so slow or many scrapers cannot make the sidecar hold more than this many responses.
pub const DEFAULT_MAX_REQUESTS: usize = 40;
/// Default of `--web.header-timeout` (as Go servers commonly use for ReadHeaderTimeout).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that accepts no byte of its response for this long is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a request waits for its turn at a bcrypt check before getting 503.
const AUTH_WAIT: Duration = Duration::from_secs(10);

/// The answer to plain HTTP on the TLS port (as Go's servers give).
const PLAIN_HTTP_TO_TLS: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server: use https:// (Prometheus: scheme: https).\n";

/// Marks a response the web layer may gzip (set by the handler on `/metrics` and `/status`).
#[derive(Clone, Copy, Debug)]
pub struct Compressible;

/// The `--web.*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    pub config_file: Option<PathBuf>,
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// `--web.max-requests`: `/metrics` and `/status` responses in progress at once.
    pub max_requests: usize,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            config_file: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_requests: DEFAULT_MAX_REQUESTS,
        }
    }
}

/// The server's fixed parts: TLS, auth, headers, limits.
pub struct Web {
    tls: Option<tokio_rustls::TlsAcceptor>,
    auth: Option<BasicAuth>,
    headers: Vec<(HeaderName, HeaderValue)>,
    slots: Arc<Slots>,
    header_timeout: Duration,
}

impl Web {
    /// Reads `--web.config.file` (if any) and its certificates. Errors are for the operator.
    pub fn load(settings: &WebSettings) -> Result<Self, String> {
        let config = match &settings.config_file {
            Some(path) => config::read(path)?,
            None => config::WebConfig::default(),
        };
        let tls = match &config.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(t)?)),
            None => None,
        };
        let auth = if config.users.is_empty() {
            None
        } else {
            Some(BasicAuth::new(config.users, AUTH_WAIT)?)
        };
        let headers = config
            .headers
            .into_iter()
            .filter_map(|(n, v)| {
                Some((
                    HeaderName::from_bytes(n.as_bytes()).ok()?,
                    HeaderValue::from_str(&v).ok()?,
                ))
            })
            .collect();
        Ok(Self {
            tls,
            auth,
            headers,
            slots: Slots::new(settings.max_connections),
            header_timeout: settings.header_timeout,
        })
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Whether basic auth is on.
    pub fn authenticates(&self) -> bool {
        self.auth.is_some()
    }

    /// Authenticates, answers, compresses. The connection counts as serving a request (and so
    /// cannot be closed to make room for another) only once its request is authenticated: a
    /// flood of unauthenticated requests cannot pin the slots.
    async fn respond(
        &self,
        req: Request<Incoming>,
        handler: &Handler,
        slot: &Slot,
    ) -> Response<Body> {
        if let Some(auth) = &self.auth {
            let verdict = auth
                .check(req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes))
                .await;
            match verdict {
                Verdict::Allowed => {}
                Verdict::Denied => {
                    let mut r = plain(StatusCode::UNAUTHORIZED, "unauthorized: this walwatch requires HTTP basic auth (user and password from its --web.config.file)\n");
                    r.headers_mut().insert(
                        WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"walwatch\", charset=\"UTF-8\""),
                    );
                    return self.finish(r, None);
                }
                Verdict::Busy => {
                    let mut r = plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many password checks in progress; try again\n",
                    );
                    r.headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                    return self.finish(r, None);
                }
            }
        }
        let busy = slot.busy();
        let gzip_ok = gzip::accepted(
            req.headers()
                .get(ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        );
        let mut response = handler(req);
        if response.extensions().get::<Compressible>().is_some() {
            response
                .headers_mut()
                .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
            if gzip_ok && !response.headers().contains_key(CONTENT_ENCODING) {
                let (mut parts, body) = response.into_parts();
                parts
                    .headers
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                parts.headers.remove(hyper::header::CONTENT_LENGTH);
                response = Response::from_parts(parts, BodyExt::boxed(gzip::GzipBody::new(body)));
            }
        }
        self.finish(response, Some(busy))
    }

    /// Adds the configured headers; keeps the connection marked busy until the body is sent.
    fn finish(&self, response: Response<Body>, busy: Option<Busy>) -> Response<Body> {
        let (mut parts, body) = response.into_parts();
        for (name, value) in &self.headers {
            parts.headers.insert(name.clone(), value.clone());
        }
        Response::from_parts(parts, BodyExt::boxed(Holding::new(body, busy)))
    }
}

/// A `text/plain` response.
pub fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(full(text.to_owned()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A body that keeps `guard` alive until the body is sent or dropped: a connection's [`Busy`]
/// mark (the connection cap must not take a connection that is still answering), or a
/// `--web.max-requests` permit (the limit counts responses in flight, not handlers).
pub(crate) struct Holding<G> {
    body: Body,
    _guard: G,
}

impl<G> Holding<G> {
    pub(crate) fn new(body: Body, guard: G) -> Self {
        Self {
            body,
            _guard: guard,
        }
    }
}

impl<G: Unpin> hyper::body::Body for Holding<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Logs a recurring event at most once per interval, with the count since the last line.
struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    fn hit(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self
            .last
            .is_none_or(|t| t.elapsed() >= accept::SUMMARY_EVERY)
        {
            log(self.count);
            self.count = 0;
            self.last = Some(Instant::now());
        }
    }
}

/// Accepts and serves connections until `shutdown` completes; then gives open connections 5 s.
pub async fn serve(
    listener: TcpListener,
    web: Arc<Web>,
    handler: Handler,
    shutdown: impl Future<Output = &'static str>,
) {
    let graceful = GracefulShutdown::new();
    let mut backoff = accept::Backoff::default();
    let mut pause: Option<Duration> = None;
    let mut refused = Throttled {
        last: None,
        count: 0,
    };
    let mut made_room = Throttled {
        last: None,
        count: 0,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = async {
                if let Some(p) = pause.take() {
                    tokio::time::sleep(p).await;
                }
                listener.accept().await
            } => a,
            signal = &mut shutdown => {
                tracing::info!(signal, "shutting down");
                break;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if accept::per_connection(&e) => continue,
            Err(e) => {
                if accept::out_of_resources(&e) && web.slots.evict_one() {
                    tracing::debug!("closed the oldest idle connection to free a descriptor");
                }
                pause = Some(backoff.failed(&e));
                continue;
            }
        };
        backoff.succeeded();
        match web.slots.admit() {
            (Admission::Full, _) => {
                refused.hit(|n| {
                    tracing::warn!(%peer, refused = n, "connection refused: all {} connections (--web.max-connections) are serving requests", web.slots.len());
                });
                drop(stream);
            }
            (Admission::Admitted(slot, evicted), closed_one) => {
                if closed_one {
                    made_room.hit(|n| {
                        tracing::warn!(%peer, closed = n, "connection limit (--web.max-connections) reached: closing the oldest connections that are not serving a request (this line at most every {:?})", accept::SUMMARY_EVERY);
                    });
                }
                tokio::spawn(connection(
                    web.clone(),
                    handler.clone(),
                    stream,
                    peer,
                    slot,
                    evicted,
                    graceful.watcher(),
                ));
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 5 s; closing them");
    }
}

async fn connection(
    web: Arc<Web>,
    handler: Handler,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    evicted: tokio::sync::oneshot::Receiver<()>,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let slot = Arc::new(slot);
    let service = {
        let (web, slot) = (web.clone(), slot.clone());
        hyper::service::service_fn(move |req| {
            let (web, handler, slot) = (web.clone(), handler.clone(), slot.clone());
            async move { Ok::<_, Infallible>(web.respond(req, &handler, &slot).await) }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(web.header_timeout);
    let work = async {
        let result = match &web.tls {
            None => {
                let io = io::WriteTimeout::new(stream, WRITE_TIMEOUT);
                watcher
                    .watch(http.serve_connection(TokioIo::new(io), service))
                    .await
            }
            Some(acceptor) => {
                let deadline = tokio::time::Instant::now() + web.header_timeout;
                let mut first = [0u8; 1];
                // A TLS connection starts with a handshake record (0x16); a request line starts
                // with an upper-case method. Tell a scraper configured for http what is wrong.
                if let Ok(Ok(1)) = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await
                {
                    if first[0].is_ascii_uppercase() {
                        let mut stream = stream;
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            tokio::io::AsyncWriteExt::write_all(&mut stream, PLAIN_HTTP_TO_TLS),
                        )
                        .await;
                        return;
                    }
                }
                let io = io::WriteTimeout::new(stream, WRITE_TIMEOUT);
                match tokio::time::timeout_at(deadline, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(tls), service))
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake not done within --web.header-timeout");
                        return;
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    };
    tokio::select! {
        () = work => {}
        _ = evicted => tracing::debug!(%peer, "closed to make room for a new connection"),
    }
    drop(slot);
}

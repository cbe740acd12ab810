//! HTTP: the media routes (HTTP-FLV at `/{app}/{name}.flv`, HLS at `/{app}/{name}.m3u8` and
//! `/{app}/{name}/...`, the player page at `/{app}/{name}`), `/healthz`, JSON errors, and the
//! server of every HTTP listener: a task per connection, TLS for HTTPS, a header timeout, an
//! idle timeout, bounded bodies, writes that fail when they stall, the node's connection
//! budget. Must not build FLV itself: that is `flv` (and HTTP-FLV plays are `net::flv`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use std::net::SocketAddr;
use std::time::Instant;

use super::clients::ClientRole;
use super::io::{IdleTimeout, StallTimeout};
use super::limit::ConnBudget;
use super::{NetContext, Node, PlayRequest, Refusal};
use crate::telemetry::metric;

/// A JSON error body: `{"status": 404, "reason": "..."}`.
pub fn json_error(status: u16, reason: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!(
        "{{\"status\":{},\"reason\":{}}}",
        code.as_u16(),
        json_string(reason)
    );
    (
        code,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `/healthz` and the HTTP-FLV route.
pub fn media_routes<N: Node>(ctx: Arc<NetContext<N>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::<N>))
        .route("/{app}/{file}", get(play_file::<N>))
        .route("/{app}/{name}/{file}", get(hls_file::<N>))
        .with_state(ctx)
}

/// Ready for new clients: 503 while draining or shutting down, so load balancers stop
/// sending players here while existing ones finish (`/healthz` stays 200: the process is fine).
async fn ready<N: Node>(State(ctx): State<Arc<NetContext<N>>>) -> Response {
    if ctx.is_draining() || ctx.shutdown.is_cancelled() {
        json_error(503, "draining")
    } else {
        "ready\n".into_response()
    }
}

async fn play_file<N: Node>(
    State(ctx): State<Arc<NetContext<N>>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    Path((app, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    takeover: Option<Extension<super::flv::Takeover>>,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    if let Some(name) = file.strip_suffix(".m3u8") {
        let req = play_request(app, name, query, peer, "hls");
        return super::hls::serve(ctx, req, peer.ip(), None, &headers).await;
    }
    let Some(name) = file.strip_suffix(".flv") else {
        if file.contains('.') {
            return json_error(
                404,
                "unknown path: play URLs are /{app}/{name}.flv, /{app}/{name}.m3u8, /{app}/{name}",
            );
        }
        // The page itself needs a valid token: it hands its query to the URLs it plays.
        let req = play_request(app, &file, query, peer, "page");
        if let Err(r) = ctx.admit_play(&req) {
            metrics::counter!(metric::PLAYS_REFUSED, "protocol" => "page", "reason" => r.reason)
                .increment(1);
            return json_error(r.http_status, &r.description);
        }
        return player_page(&ctx.hls_options, &req.app, &req.name, &req.query);
    };
    if ctx.shutdown.is_cancelled() {
        return json_error(503, "shutting down");
    }
    let asked = Instant::now();
    let req = play_request(app, name, query, peer, "http-flv");
    let accepted = if let Err(r) = ctx.admit_play(&req) {
        Err(r)
    } else if ctx.is_draining() {
        Err(Refusal::draining(false))
    } else {
        ctx.node.play(&req).await
    };
    match accepted {
        Ok(sub) => {
            let client = ctx.clients.register(
                ctx.next_conn_id(),
                ClientRole::Player,
                "http-flv",
                req.key(),
                req.peer.clone(),
            );
            let play = super::flv::FlvPlay { sub, client, asked };
            match takeover {
                // The connection plays it (see `flv`).
                Some(Extension(slot)) => {
                    slot.put(play);
                    super::flv::play_head(Body::empty())
                }
                None => super::flv::body_response(play, ctx.limits.batch_frames),
            }
        }
        Err(r) => {
            metrics::counter!(metric::PLAYS_REFUSED, "protocol" => "http-flv", "reason" => r.reason)
                .increment(1);
            json_error(r.http_status, &r.description)
        }
    }
}

fn play_request(
    app: String,
    name: &str,
    query: String,
    peer: SocketAddr,
    protocol: &'static str,
) -> PlayRequest {
    PlayRequest {
        app,
        name: name.to_string(),
        query,
        peer: peer.to_string(),
        protocol,
    }
}

/// `/{app}/{name}/{file}`: HLS playlists, segments, parts and init segments.
async fn hls_file<N: Node>(
    State(ctx): State<Arc<NetContext<N>>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    Path((app, name, file)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let req = play_request(app, &name, query.unwrap_or_default(), peer, "hls");
    super::hls::serve(ctx, req, peer.ip(), Some(&file), &headers).await
}

/// The player page of a stream: hls.js (or native HLS), or mpegts.js for HTTP-FLV.
fn player_page(opts: &super::hls::HlsOptions, app: &str, name: &str, query: &str) -> Response {
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    let html = include_str!("assets/player.html")
        .replace("{{KEY}}", &html_escape(&format!("{app}/{name}")))
        .replace("{{HLS_URL}}", &js_escape(&format!("/{app}/{name}.m3u8{q}")))
        .replace("{{FLV_URL}}", &js_escape(&format!("/{app}/{name}.flv{q}")))
        .replace("{{HLSJS_URL}}", &js_escape(&opts.hlsjs_url))
        .replace("{{MPEGTSJS_URL}}", &js_escape(&opts.mpegtsjs_url));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from(html))
        .unwrap_or_else(|_| json_error(500, "response"))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// For a value inside a double-quoted JS string in an HTML script: no quote, backslash or
/// `<` (which could close the script element) survives.
fn js_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' | '<' | '>' | '&' | '\'' => format!("\\u{:04x}", c as u32),
            c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// The peer address of an HTTP connection, for handlers (`ConnectInfo<PeerAddr>`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// How an HTTP listener serves its connections.
#[derive(Clone)]
pub struct HttpServe {
    pub limits: super::NetLimits,
    /// The node's budget of public connections; `None` (the API listener): not counted.
    pub budget: Option<Arc<ConnBudget>>,
    /// HTTPS: the TLS handshake happens within the header timeout.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Largest request body a handler may read; a longer declared one gets 413 at once.
    pub max_body: usize,
}

/// Request bodies on the public listeners: no media route reads one.
pub const PUBLIC_MAX_BODY: usize = 16 * 1024;
/// Request bodies on the API listener (JSON calls, gRPC messages).
pub const API_MAX_BODY: usize = 4 * 1024 * 1024;
/// Bytes hyper buffers for one HTTP/1 request head (and reads at a time).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Header list of one HTTP/2 request.
const MAX_H2_HEADER_LIST: u32 = 16 * 1024;
/// Concurrent requests on one HTTP/2 connection.
const MAX_H2_STREAMS: u32 = 128;

/// What a refused HTTP connection reads before it is closed.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Serves `router` until `shutdown`, each connection in its own task (HTTP/1.1 with a header
/// timeout, or HTTP/2 by prior knowledge or ALPN), then waits for open responses to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: HttpServe,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let proto = if opts.tls.is_some() { "https" } else { "http" };
    let conns = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let permit = match opts.budget.as_ref().map(|b| b.try_acquire(peer.ip())) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(refused)) => {
                metrics::counter!(metric::CONNECTIONS_REFUSED, "protocol" => proto, "reason" => refused.reason())
                    .increment(1);
                debug!(%peer, reason = refused.reason(), "connection refused");
                if opts.tls.is_none() {
                    // Never waits: a full socket just gets the close.
                    let _ = sock.try_write(BUSY);
                }
                continue;
            }
        };
        metrics::counter!(metric::CONNECTIONS_ACCEPTED, "protocol" => proto).increment(1);
        let _ = sock.set_nodelay(true);
        super::rtmp::set_send_buffer(&sock, opts.limits.send_buffer);
        let (router, opts, shutdown) = (router.clone(), opts.clone(), shutdown.clone());
        conns.spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_conn(sock, peer, router, &opts, shutdown).await {
                metrics::counter!(metric::CONNECTION_ERRORS, "protocol" => proto, "reason" => e.reason())
                    .increment(1);
                debug!(%peer, error = %e, "http connection closed");
            }
        });
    }
    conns.close();
    conns.wait().await;
    Ok(())
}

/// Why an HTTP connection ended early.
#[derive(Debug, thiserror::Error)]
enum HttpConnError {
    #[error("no request head within the header timeout")]
    HeaderTimeout,
    #[error("tls handshake: {0}")]
    Tls(std::io::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("http: {0}")]
    Hyper(#[from] hyper::Error),
}

impl HttpConnError {
    fn reason(&self) -> &'static str {
        match self {
            HttpConnError::HeaderTimeout => "header_timeout",
            HttpConnError::Tls(_) => "tls",
            HttpConnError::Io(_) => "io",
            HttpConnError::Hyper(e) if e.is_timeout() => "header_timeout",
            HttpConnError::Hyper(_) => "http",
        }
    }
}

async fn serve_conn(
    sock: TcpStream,
    peer: SocketAddr,
    router: Router,
    opts: &HttpServe,
    shutdown: CancellationToken,
) -> Result<(), HttpConnError> {
    let header = opts.limits.http_header_timeout;
    let svc = service(router.clone(), peer, opts.max_body);
    match &opts.tls {
        Some(acceptor) => {
            let tls = tokio::time::timeout(header, acceptor.accept(sock))
                .await
                .map_err(|_| HttpConnError::HeaderTimeout)?
                .map_err(HttpConnError::Tls)?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            Box::pin(drive(tls, h2, svc, opts, shutdown)).await
        }
        None => {
            let h2 = tokio::time::timeout(header, sniff_h2(&sock))
                .await
                .map_err(|_| HttpConnError::HeaderTimeout)??;
            // Each way of serving a connection is boxed: a connection task holds the state of
            // the one it takes (an HTTP-FLV player's is a few KiB, hyper's much more).
            if !h2 {
                // An HTTP-FLV play as the first request: the connection is the player's.
                let mut head = vec![0u8; super::flv::TAKEOVER_HEAD_MAX];
                let n = sock.peek(&mut head).await?;
                if let Some((len, req)) = super::flv::takeover_request(&head[..n]) {
                    let conn = super::flv::TakeoverConn {
                        peer,
                        write_timeout: opts.limits.write_timeout,
                        batch: opts.limits.batch_frames,
                        shutdown,
                    };
                    drop(head);
                    let play = super::flv::serve_taken_over(sock, len, req, router, conn);
                    return Ok(Box::pin(play).await?);
                }
            }
            let io = super::zerocopy::ZeroCopyTcp(sock);
            Box::pin(drive(io, h2, svc, opts, shutdown)).await
        }
    }
}

/// Whether a plaintext connection opens with the HTTP/2 preface (gRPC, h2c), decided on the
/// first bytes without consuming them.
async fn sniff_h2(sock: &TcpStream) -> std::io::Result<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        let n = sock.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != PREFACE[..n] {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // A preface split across packets: peek returns at once while nothing new came.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Serves one connection until it ends or, at shutdown, until its open requests finish.
async fn drive<I>(
    io: I,
    h2: bool,
    svc: impl hyper::service::Service<
        axum::http::Request<hyper::body::Incoming>,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static,
    opts: &HttpServe,
    shutdown: CancellationToken,
) -> Result<(), HttpConnError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(IdleTimeout::new(
        StallTimeout::new(io, opts.limits.write_timeout),
        opts.limits.http_idle_timeout,
    ));
    macro_rules! until_shutdown {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => r,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }};
    }
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_header_list_size(MAX_H2_HEADER_LIST)
            .max_concurrent_streams(MAX_H2_STREAMS);
        until_shutdown!(b.serve_connection(io, svc))?;
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(opts.limits.http_header_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        until_shutdown!(b.serve_connection(io, svc))?;
    }
    Ok(())
}

/// The router as a hyper service: the peer address for `ConnectInfo<PeerAddr>`, and request
/// bodies bounded to `max_body` bytes (413 when one says it is longer).
fn service(
    router: Router,
    peer: SocketAddr,
    max_body: usize,
) -> impl hyper::service::Service<
    axum::http::Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
        let mut router = router.clone();
        async move {
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max_body as u64) {
                return Ok(json_error(413, "request body too large"));
            }
            let mut req = req.map(|b| Body::new(http_body_util::Limited::new(b, max_body)));
            req.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
            tower_service::Service::call(&mut router, req).await
        }
    })
}

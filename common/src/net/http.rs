//! HTTP: the media routes (HTTP-FLV at `/{app}/{name}.flv`, HLS at `/{app}/{name}.m3u8` and
//! `/{app}/{name}/...`, the player page at `/{app}/{name}`), `/healthz`, JSON errors, and a
//! server whose connections fail writes that stall. Must not build FLV itself: that is `flv`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::stream;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use std::net::SocketAddr;
use std::time::Instant;

use super::clients::{ClientGuard, ClientRole, Egress};
use super::io::StallTimeout;
use super::{NetContext, Node, PlayRequest, Refusal};
use crate::flv;
use crate::media::{CloseReason, MediaFrame, Subscriber};
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
            flv_response(sub, client, ctx.limits.batch_frames, asked)
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

struct FlvBody {
    sub: Subscriber,
    client: ClientGuard,
    /// Made once (see the RTMP play loop): resolves when the client is kicked.
    kicked: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    frames: Vec<Arc<MediaFrame>>,
    pending: std::collections::VecDeque<Bytes>,
    batch: usize,
    first_frame: Option<Instant>,
    _gauge: metric::GaugeGuard,
}

fn flv_response(sub: Subscriber, client: ClientGuard, batch: usize, asked: Instant) -> Response {
    let _ = client.info.egress.set(Egress {
        counter: metrics::counter!(metric::BYTES_SENT, "protocol" => "http-flv"),
        stream: sub.stream().clone(),
        direct: None,
    });
    let mut pending = std::collections::VecDeque::new();
    pending.push_back(Bytes::copy_from_slice(&flv::file_header(true, true)));
    let state = FlvBody {
        sub,
        kicked: Box::pin(client.info.kick.clone().cancelled_owned()),
        client,
        frames: Vec::with_capacity(batch),
        pending,
        batch,
        first_frame: Some(asked),
        _gauge: metric::GaugeGuard::new(metrics::gauge!(metric::PLAYERS, "protocol" => "http-flv")),
    };
    let body = stream::unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                st.client.info.book_egress(b.len() as u64);
                return Some((Ok::<Bytes, std::io::Error>(b), st));
            }
            let got = tokio::select! {
                r = st.sub.recv(&mut st.frames, st.batch) => r,
                _ = &mut st.kicked => {
                    metrics::counter!(metric::CLIENTS_KICKED, "reason" => "api").increment(1);
                    return None;
                }
            };
            match got {
                // No direct sink here: nothing was written ahead.
                Ok(_) => {
                    if let Some(t) = st.first_frame.take() {
                        metrics::histogram!(metric::FIRST_FRAME, "protocol" => "http-flv")
                            .record(t.elapsed().as_secs_f64());
                    }
                    for f in st.frames.drain(..) {
                        st.pending.push_back(flv::tag_bytes(&f).clone());
                    }
                }
                Err(CloseReason::TooSlow) => {
                    return Some((Err(std::io::Error::other("player too slow")), st));
                }
                Err(_) => return None,
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "video/x-flv")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| json_error(500, "response"))
}

/// The peer address of an HTTP connection, for handlers (`ConnectInfo<PeerAddr>`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, StallListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, StallListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// A TCP listener whose connections fail writes that stall for `write_timeout`.
pub struct StallListener {
    inner: TcpListener,
    write_timeout: Duration,
    send_buffer: usize,
}

impl axum::serve::Listener for StallListener {
    type Io = StallTimeout<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((s, a)) => {
                    let _ = s.set_nodelay(true);
                    super::rtmp::set_send_buffer(&s, self.send_buffer);
                    metrics::counter!(metric::CONNECTIONS_ACCEPTED, "protocol" => "http")
                        .increment(1);
                    return (StallTimeout::new(s, self.write_timeout), a);
                }
                Err(e) => {
                    warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Serves `router` until `shutdown`, then waits for open responses to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &super::NetLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = StallListener {
        inner: listener,
        write_timeout: limits.write_timeout,
        send_buffer: limits.send_buffer,
    };
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<PeerAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

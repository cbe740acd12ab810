//! HTTP: the media routes (HTTP-FLV at `/{app}/{name}.flv`), `/healthz`, JSON errors, and a
//! server whose connections fail writes that stall. Must not build FLV itself: that is `flv`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::stream;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::io::StallTimeout;
use super::{NetContext, Node, PlayRequest};
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
        .route("/{app}/{file}", get(play_file::<N>))
        .with_state(ctx)
}

async fn play_file<N: Node>(
    State(ctx): State<Arc<NetContext<N>>>,
    Path((app, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(name) = file.strip_suffix(".flv") else {
        return json_error(404, "unknown path: play URLs are /{app}/{name}.flv");
    };
    if ctx.shutdown.is_cancelled() {
        return json_error(503, "shutting down");
    }
    let req = PlayRequest {
        app,
        name: name.to_string(),
        query: query.unwrap_or_default(),
        peer: String::new(),
        protocol: "http-flv",
    };
    match ctx.node.play(&req).await {
        Ok(sub) => flv_response(sub, ctx.limits.batch_frames),
        Err(r) => {
            metrics::counter!(metric::PLAYS_REFUSED, "protocol" => "http-flv", "reason" => r.reason)
                .increment(1);
            json_error(r.http_status, &r.description)
        }
    }
}

struct FlvBody {
    sub: Subscriber,
    frames: Vec<Arc<MediaFrame>>,
    pending: std::collections::VecDeque<Bytes>,
    batch: usize,
    _gauge: metric::GaugeGuard,
    sent: metrics::Counter,
}

fn flv_response(sub: Subscriber, batch: usize) -> Response {
    let mut pending = std::collections::VecDeque::new();
    pending.push_back(Bytes::copy_from_slice(&flv::file_header(true, true)));
    let state = FlvBody {
        sub,
        frames: Vec::with_capacity(batch),
        pending,
        batch,
        _gauge: metric::GaugeGuard::new(metrics::gauge!(metric::PLAYERS, "protocol" => "http-flv")),
        sent: metrics::counter!(metric::BYTES_SENT, "protocol" => "http-flv"),
    };
    let body = stream::unfold(state, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                crate::telemetry::count_egress(&st.sent, b.len() as u64);
                return Some((Ok::<Bytes, std::io::Error>(b), st));
            }
            match st.sub.recv(&mut st.frames, st.batch).await {
                Ok(()) => {
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

/// A TCP listener whose connections fail writes that stall for `write_timeout`.
struct StallListener {
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
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

//! HTTP-FLV players: one FLV tag stream per player, on one of two paths.
//!
//! - **Taken over** (the common case): when the first request of a plaintext HTTP/1
//!   connection is a bodiless `GET` of an `.flv` path, the connection skips hyper. The request
//!   still goes through the router (same handler, same admission, same answers), but once the
//!   handler accepts the play it leaves it in the request's [`Takeover`] slot; the response
//!   head is written here, the body runs until the connection closes, and the socket is lent
//!   to the fan-out exactly like an RTMP player's: while the player keeps up, every frame's
//!   tag goes out in one direct write from the publisher's fan-out (`flv::flv_wire`: header,
//!   the frame's own payload, trailer), with no task wake-up and no copy.
//! - **Through hyper** (HTTPS, HTTP/2, a request after the first on a kept-alive connection,
//!   a head that arrived in pieces): a streamed response body ([`body_response`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, Response, Version, header};
use bytes::{Bytes, BytesMut};
use futures::stream;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::clients::{ClientGuard, Egress};
use super::http::PeerAddr;
use super::io::{SharedStream, StallTimeout, write_all_vectored};
use crate::flv::{self, flv_wire};
use crate::media::{CloseReason, MediaFrame, Subscriber, lock, unwritten_wire};
use crate::telemetry::metric;

/// Request heads longer than this (or split across packets) take the hyper path.
pub const TAKEOVER_HEAD_MAX: usize = 4096;
/// A taken-over connection's answer that is not a play (an error, a redirect) is sent whole,
/// up to this many bytes of body.
const ANSWER_MAX_BODY: usize = 64 * 1024;
/// Headers of a request taken over.
const MAX_HEADERS: usize = 48;

/// A play accepted by the handler, left for the connection to run.
pub struct FlvPlay {
    pub sub: Subscriber,
    pub client: ClientGuard,
    /// When the request arrived (first-frame time).
    pub asked: Instant,
}

/// The slot a taken-over request carries (a request extension): the handler leaves its play
/// here instead of streaming a body through hyper.
#[derive(Clone, Default)]
pub struct Takeover(Arc<Mutex<Option<FlvPlay>>>);

impl Takeover {
    pub fn put(&self, play: FlvPlay) {
        *lock(&self.0) = Some(play);
    }

    fn take(&self) -> Option<FlvPlay> {
        lock(&self.0).take()
    }
}

/// The head every FLV play answers with.
pub fn play_head(body: Body) -> axum::response::Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("video/x-flv"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// The first request of a connection, from the bytes peeked so far, if it can be taken over:
/// a whole `GET` head for a path ending in `.flv`, with no body and no upgrade. Returns the
/// head's length and the request (with an empty body) to route.
pub fn takeover_request(head: &[u8]) -> Option<(usize, Request<Body>)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(head).ok()? else {
        return None;
    };
    let path = req.path?;
    if req.method? != "GET" || !path.split('?').next()?.ends_with(".flv") {
        return None;
    }
    let version = match req.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut out = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(version);
    for h in req.headers.iter() {
        let name = h.name;
        let body = name.eq_ignore_ascii_case("content-length") && h.value != b"0";
        if body
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return None;
        }
        out = out.header(name, h.value);
    }
    Some((len, out.body(Body::empty()).ok()?))
}

/// What a taken-over connection needs besides its socket and its request.
pub struct TakeoverConn {
    pub peer: SocketAddr,
    pub write_timeout: std::time::Duration,
    pub batch: usize,
    pub shutdown: CancellationToken,
}

/// Serves the connection whose first request (`head_len` bytes, not read yet) is `req`: routes
/// it, then plays the stream if the handler accepted it, else writes its answer; either way
/// the connection ends with the response.
pub async fn serve_taken_over(
    mut sock: TcpStream,
    head_len: usize,
    mut req: Request<Body>,
    mut router: Router,
    conn: TakeoverConn,
) -> std::io::Result<()> {
    let mut head = vec![0; head_len];
    sock.read_exact(&mut head).await?;
    let slot = Takeover::default();
    req.extensions_mut()
        .insert(ConnectInfo(PeerAddr(conn.peer)));
    req.extensions_mut().insert(slot.clone());
    // Boxed: the handler's state is needed only until it answers, not while the player plays.
    let Ok(resp) = Box::pin(tower_service::Service::call(&mut router, req)).await;
    match slot.take() {
        Some(play) => play_taken_over(sock, response_head(&resp, None), play, &conn).await,
        None => {
            let (parts, body) = resp.into_parts();
            let body = http_body_util::Limited::new(body, ANSWER_MAX_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let resp = Response::from_parts(parts, ());
            let head = response_head(&resp, Some(body.len()));
            let mut sock = StallTimeout::new(sock, conn.write_timeout);
            write_all_vectored(&mut sock, &[head, body]).await?;
            sock.shutdown().await
        }
    }
}

/// `resp`'s status line and headers, with `Connection: close` (and `Content-Length` if the
/// body's length is known: else it runs until the close).
fn response_head<B>(resp: &Response<B>, len: Option<usize>) -> Bytes {
    let status = resp.status();
    let mut out = BytesMut::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.headers() {
        if name == header::CONNECTION || name == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = len {
        out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.freeze()
}

/// Plays `play` on its own connection: the head and FLV header, then frames, directly from
/// the fan-out while the player keeps up. Ends when the client closes, the stream ends, the
/// player is kicked or too slow, or the node shuts down; the last tag is always whole.
async fn play_taken_over(
    sock: TcpStream,
    head: Bytes,
    play: FlvPlay,
    conn: &TakeoverConn,
) -> std::io::Result<()> {
    let FlvPlay {
        mut sub,
        client,
        asked,
    } = play;
    let _gauge =
        metric::GaugeGuard::new(metrics::gauge!(metric::PLAYERS, "protocol" => "http-flv"));
    let shared = SharedStream::new(sock);
    let _ = client.info.egress.set(Egress {
        counter: metrics::counter!(metric::BYTES_SENT, "protocol" => "http-flv"),
        stream: sub.stream().clone(),
        direct: Some(shared.clone()),
    });
    let mut sock = StallTimeout::new(shared.clone(), conn.write_timeout);
    let mut frames: Vec<Arc<MediaFrame>> = Vec::new();
    let mut bufs = vec![head, Bytes::from_static(&FILE_HEADER)];
    let mut first_frame = Some(asked);
    let mut junk = BytesMut::new();
    let slow = sub.cancelled();
    let shutdown = conn.shutdown.cancelled();
    let kicked = client.info.kick.cancelled();
    let too_slow = slow.cancelled();
    tokio::pin!(shutdown, kicked, too_slow);
    let mut had_media = false;
    let result = loop {
        if !bufs.is_empty() {
            let n: usize = bufs.iter().map(|b| b.len()).sum();
            let wrote = tokio::select! {
                biased;
                r = write_all_vectored(&mut sock, &bufs) => r,
                _ = &mut too_slow => Err(std::io::Error::other("player too slow")),
            };
            // The fan-out writes to this player directly: its task may not wake again for
            // long, and keeps no room for a batch (the primed GOP's was hundreds of entries).
            bufs.clear();
            bufs.shrink_to(0);
            frames.shrink_to(0);
            client.info.book_egress(n as u64);
            if let Err(e) = wrote {
                break Err(e);
            }
            // From the first frame on, while this player keeps up, the fan-out writes to it
            // directly.
            if had_media && let Some(t) = first_frame.take() {
                metrics::histogram!(metric::FIRST_FRAME, "protocol" => "http-flv")
                    .record(t.elapsed().as_secs_f64());
                sub.set_direct_sink(shared.direct_sink(), flv_wire);
            }
        }
        // Bytes of the taken frames that a direct write already sent.
        let written = tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            _ = &mut kicked => {
                metrics::counter!(metric::CLIENTS_KICKED, "reason" => "api").increment(1);
                break Ok(());
            }
            // The client has nothing more to say: what it sends is discarded, its close ends
            // the play.
            r = shared.read_buf(&mut junk, 512) => match r {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => {
                    junk = BytesMut::new();
                    continue;
                }
            },
            r = sub.recv(&mut frames, conn.batch) => match r {
                Ok(written) => written,
                Err(CloseReason::TooSlow) => break Err(std::io::Error::other("player too slow")),
                Err(_) => break Ok(()),
            },
        };
        unwritten_wire(&mut bufs, &frames, written, flv_wire);
        had_media = !frames.is_empty();
        frames.clear();
    };
    // Take the socket back from the fan-out and finish any tag a direct write started.
    if result.is_ok() {
        let written = sub.try_recv(&mut frames, 0);
        if written > 0 {
            bufs.clear();
            unwritten_wire(&mut bufs, &frames, written, flv_wire);
            let _ = write_all_vectored(&mut sock, &bufs).await;
        }
        let _ = sock.shutdown().await;
    }
    client.info.book_egress(0);
    result
}

/// The FLV file header every play starts with (audio and video flagged).
static FILE_HEADER: [u8; 13] = flv::file_header(true, true);

struct FlvBody {
    sub: Subscriber,
    client: ClientGuard,
    /// Made once (see the RTMP play loop): resolves when the client is kicked.
    kicked: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    frames: Vec<Arc<MediaFrame>>,
    pending: VecDeque<Bytes>,
    batch: usize,
    first_frame: Option<Instant>,
    _gauge: metric::GaugeGuard,
}

/// An FLV play streamed through hyper as the response body.
pub fn body_response(play: FlvPlay, batch: usize) -> axum::response::Response {
    let FlvPlay { sub, client, asked } = play;
    let _ = client.info.egress.set(Egress {
        counter: metrics::counter!(metric::BYTES_SENT, "protocol" => "http-flv"),
        stream: sub.stream().clone(),
        direct: None,
    });
    let state = FlvBody {
        sub,
        kicked: Box::pin(client.info.kick.clone().cancelled_owned()),
        client,
        frames: Vec::with_capacity(batch),
        pending: VecDeque::from([Bytes::from_static(&FILE_HEADER)]),
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
                        st.pending.extend(
                            flv_wire(&f)
                                .into_iter()
                                .filter(|b| !b.is_empty())
                                .map(|b| f.wire_bytes(b)),
                        );
                    }
                }
                Err(CloseReason::TooSlow) => {
                    return Some((Err(std::io::Error::other("player too slow")), st));
                }
                Err(_) => return None,
            }
        }
    });
    play_head(Body::from_stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_bodiless_flv_gets_are_taken_over() {
        let ok = b"GET /live/a.flv?token=x HTTP/1.1\r\nHost: h\r\nUser-Agent: ffmpeg\r\n\r\nNEXT";
        let (len, req) = takeover_request(ok).expect("taken over");
        assert_eq!(len, ok.len() - 4);
        assert_eq!(req.uri(), "/live/a.flv?token=x");
        assert_eq!(req.headers()["user-agent"], "ffmpeg");
        assert_eq!(req.version(), Version::HTTP_11);
        let old = b"GET /live/a.flv HTTP/1.0\r\n\r\n";
        assert_eq!(
            takeover_request(old).map(|(_, r)| r.version()),
            Some(Version::HTTP_10)
        );
        for no in [
            &b"GET /live/a.flv HTTP/1.1\r\nHost: h\r\n"[..],
            b"GET /live/a.m3u8 HTTP/1.1\r\n\r\n",
            b"HEAD /live/a.flv HTTP/1.1\r\n\r\n",
            b"GET /live/a.flv HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /live/a.flv HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /live/a.flv HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /live/a.m3u8?x=.flv HTTP/1.1\r\n\r\n",
            b"GET /x.flv HTTP/1.1\r\nBad Header\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
            b"",
        ] {
            assert!(
                takeover_request(no).is_none(),
                "{:?}",
                String::from_utf8_lossy(no)
            );
        }
    }

    #[test]
    fn answers_close_the_connection() {
        let mut r = Response::new(());
        *r.status_mut() = axum::http::StatusCode::NOT_FOUND;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("x/y"));
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        let head = response_head(&r, Some(12));
        assert_eq!(
            &head[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: x/y\r\ncontent-length: 12\r\nconnection: close\r\n\r\n"
        );
        let head = response_head(&play_head(Body::empty()), None);
        assert!(head.starts_with(b"HTTP/1.1 200 OK\r\ncontent-type: video/x-flv\r\n"));
        assert!(!head.windows(14).any(|w| w == b"content-length"));
    }
}

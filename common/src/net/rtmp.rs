//! The RTMP server connection: drives a sans-IO `ServerSession` over a TCP or TLS socket, hands
//! publish and play to the `Node`, pumps frames from the hub to players in batches.
//! Must not parse RTMP itself: that is `crate::rtmp`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::clients::{ClientInfo, ClientRole, Egress};
use super::io::{SharedStream, StallTimeout, Transport, write_all_vectored};
use super::{NetContext, Node, PlayRequest, PublishRequest, Refusal};
use crate::flv;
use crate::media::{
    CloseReason, FrameKind, MediaFrame, Publisher, Subscriber, WireSlot, unwritten_wire,
};
use crate::rtmp::chunk::{encode_first_header, encode_message};
use crate::rtmp::message::type_id;
use crate::rtmp::{
    CSID_AUDIO, CSID_DATA, CSID_VIDEO, STREAM_ID, ServerConfig, ServerEvent, ServerSession,
    SessionError,
};
use crate::telemetry::metric;

/// Outbound chunk size of every player connection: fixed, so that one encoding of a frame
/// serves every player, and large (SRS's default), so that nearly every frame is one chunk:
/// a header plus the frame's own payload, nothing copied, a cached GOP held once.
pub const PLAY_CHUNK_SIZE: u32 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("rtmp: {0}")]
    Session(#[from] SessionError),
    #[error("no publish or play within the handshake timeout")]
    HandshakeTimeout,
    #[error("no media from the publisher within the idle timeout")]
    PublishIdle,
    #[error("write stalled: player stopped reading")]
    WriteTimeout,
    #[error("player too slow")]
    TooSlow,
    #[error("tls handshake: {0}")]
    Tls(std::io::Error),
}

impl ConnError {
    pub fn reason(&self) -> &'static str {
        match self {
            ConnError::Io(_) => "io",
            ConnError::Session(e) => e.reason(),
            ConnError::HandshakeTimeout => "handshake_timeout",
            ConnError::PublishIdle => "publish_idle",
            ConnError::WriteTimeout => "write_timeout",
            ConnError::TooSlow => "too_slow",
            ConnError::Tls(_) => "tls",
        }
    }
}

/// The chunk stream and message type a frame of `kind` goes out on.
fn csid_and_type(kind: FrameKind) -> (u32, u8) {
    match kind {
        FrameKind::Audio => (CSID_AUDIO, type_id::AUDIO),
        FrameKind::Video => (CSID_VIDEO, type_id::VIDEO),
        FrameKind::Data => (CSID_DATA, type_id::DATA_AMF0),
    }
}

/// The RTMP message a frame becomes for every player, built once per frame: its chunk header
/// (kept inline in the frame) and its payload when it fits one chunk, else the whole chunked
/// message (a slot) and nothing; never a trailer.
pub fn rtmp_wire(frame: &MediaFrame) -> [&[u8]; 3] {
    if frame.payload.len() <= PLAY_CHUNK_SIZE as usize {
        let head = frame.head(|f, mut out| {
            let room = out.len();
            let (csid, tid) = csid_and_type(f.kind);
            encode_first_header(
                csid,
                f.timestamp_ms,
                tid,
                STREAM_ID,
                f.payload.len(),
                &mut out,
            );
            room - out.len()
        });
        return [head, &frame.payload, &[]];
    }
    let whole = frame.wire(WireSlot::Rtmp, |f| {
        let (csid, tid) = csid_and_type(f.kind);
        let mut out = BytesMut::new();
        encode_message(
            PLAY_CHUNK_SIZE,
            csid,
            f.timestamp_ms,
            tid,
            STREAM_ID,
            &f.payload,
            &mut out,
        );
        out.freeze()
    });
    [whole, &[], &[]]
}

/// Accepts RTMP connections (RTMPS with `tls`) until shutdown; each runs in its own task
/// tracked by `tasks`, within the node's connection budget.
pub async fn serve<N: Node>(
    listener: TcpListener,
    ctx: Arc<NetContext<N>>,
    tasks: TaskTracker,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let proto = if tls.is_some() { "rtmps" } else { "rtmp" };
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "rtmp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let permit = match ctx.budget.try_acquire(peer.ip()) {
            Ok(p) => p,
            Err(refused) => {
                metrics::counter!(metric::CONNECTIONS_REFUSED, "protocol" => proto, "reason" => refused.reason())
                    .increment(1);
                debug!(%peer, reason = refused.reason(), "connection refused");
                continue;
            }
        };
        metrics::counter!(metric::CONNECTIONS_ACCEPTED, "protocol" => proto).increment(1);
        let id = ctx.next_conn_id();
        let ctx = ctx.clone();
        let tls = tls.clone();
        let span = info_span!("conn", id, %peer, proto);
        tasks.spawn(
            async move {
                let _permit = permit;
                if let Err(e) = handle(sock, peer, &ctx, id, tls).await {
                    metrics::counter!(metric::CONNECTION_ERRORS, "protocol" => proto, "reason" => e.reason())
                        .increment(1);
                    info!(error = %e, "connection closed");
                }
            }
            .instrument(span),
        );
    }
}

/// A queued (TLS) player's batch vectors keep room for this many entries between writes (it
/// takes a frame or two per wake-up; the primed GOP's batch is given back). A player the
/// fan-out writes to directly keeps none: its task may not wake again for minutes.
const KEPT_BATCH: usize = 8;

/// Bounds of a connection's read buffer (`Conn::read_some`).
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

struct Conn<T> {
    sock: StallTimeout<T>,
    session: ServerSession,
    /// Bytes asked for by the next read: grows while reads fill it (a publisher).
    read_size: usize,
}

impl<T: Transport> Conn<T> {
    async fn flush(&mut self) -> std::io::Result<()> {
        if let Some(out) = self.session.take_output() {
            self.sock.write_all(&out).await?;
            // TLS may keep records buffered past a write; plain TCP's flush does nothing.
            self.sock.flush().await?;
        }
        Ok(())
    }

    /// Reads once and feeds the session; the bytes read, 0 at end of stream.
    async fn read_some(&mut self) -> Result<usize, ConnError> {
        // Sized by what the peer sends: a player sends a few bytes now and then (thousands of
        // players must not hold 64 KiB each), a publisher megabits. Doubles while reads fill
        // it. The buffer lives for this read only (the session copies what it keeps), and on
        // plain TCP is only allocated once bytes are there: a waiting connection holds none.
        let mut buf = BytesMut::new();
        let n = self
            .sock
            .get_mut()
            .read_into(&mut buf, self.read_size)
            .await?;
        if n == 0 {
            return Ok(0);
        }
        if n >= self.read_size {
            self.read_size = (self.read_size * 2).min(READ_MAX);
        }
        self.session.handle_input(&buf)?;
        Ok(n)
    }
}

async fn handle<N: Node>(
    sock: TcpStream,
    peer: SocketAddr,
    ctx: &NetContext<N>,
    conn_id: u64,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<(), ConnError> {
    sock.set_nodelay(true)?;
    // One deadline from accept to an accepted publish or play, the TLS handshake included.
    let deadline = Instant::now() + ctx.limits.handshake_timeout;
    match tls {
        None => run(SharedStream::new(sock), peer, ctx, conn_id, deadline).await,
        // Boxed: a TLS stream and its handshake are kilobytes, which every plain connection's
        // task would otherwise reserve too (a task is as large as its largest branch).
        Some(acceptor) => {
            Box::pin(async move {
                let stream = timeout_at(deadline, acceptor.accept(sock))
                    .await
                    .map_err(|_| ConnError::HandshakeTimeout)?
                    .map_err(ConnError::Tls)?;
                run(stream, peer, ctx, conn_id, deadline).await
            })
            .await
        }
    }
}

async fn run<N: Node, T: Transport>(
    sock: T,
    peer: SocketAddr,
    ctx: &NetContext<N>,
    conn_id: u64,
    deadline: Instant,
) -> Result<(), ConnError> {
    let config = ServerConfig {
        chunk_size: PLAY_CHUNK_SIZE,
        seed: ctx.next_conn_id() ^ 0x5bd1_e995,
        ..ServerConfig::default()
    };
    let mut conn = Conn {
        sock: StallTimeout::new(sock, ctx.limits.write_timeout),
        session: ServerSession::new(config),
        read_size: READ_MIN,
    };
    let result = negotiate(&mut conn, peer, ctx, conn_id, deadline).await;
    // Whatever the outcome, the peer gets our last words (an _error, an onStatus).
    let _ = timeout(std::time::Duration::from_secs(1), conn.flush()).await;
    // TLS ends with close_notify, so that the peer sees an end rather than a truncation.
    if conn.sock.get_ref().shared().is_none() {
        let _ = timeout(std::time::Duration::from_secs(1), conn.sock.shutdown()).await;
    }
    result
}

/// Handshake, connect, then publish or play; within the handshake timeout.
async fn negotiate<N: Node, T: Transport>(
    conn: &mut Conn<T>,
    peer: SocketAddr,
    ctx: &NetContext<N>,
    conn_id: u64,
    deadline: Instant,
) -> Result<(), ConnError> {
    let mut app = String::new();
    let mut app_query = String::new();
    loop {
        while let Some(ev) = conn.session.poll_event()? {
            match ev {
                ServerEvent::Connect {
                    app: a,
                    app_query: q,
                    ..
                } => {
                    debug!(app = %a, "connect");
                    app = a;
                    app_query = q;
                    conn.session.accept_connect();
                }
                ServerEvent::Publish {
                    stream_id,
                    name,
                    query,
                    ..
                } => {
                    let req = PublishRequest {
                        app: app.clone(),
                        name: name.clone(),
                        query: join_query(&app_query, &query),
                        peer: peer.to_string(),
                        conn_id,
                    };
                    // Boxed: a player's task is as large as its largest await, and the
                    // publish path's is larger than the play path's (few connections publish).
                    return Box::pin(start_publish(conn, ctx, conn_id, req, stream_id)).await;
                }
                ServerEvent::Play {
                    stream_id,
                    name,
                    query,
                } => {
                    let req = PlayRequest {
                        query: join_query(&app_query, &query),
                        app: std::mem::take(&mut app),
                        name,
                        peer: peer.to_string(),
                        protocol: "rtmp",
                    };
                    return start_play(conn, ctx, conn_id, req, stream_id).await;
                }
                _ => {}
            }
        }
        conn.flush().await?;
        let more = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(()),
            r = timeout_at(deadline, conn.read_some()) => r.map_err(|_| ConnError::HandshakeTimeout)??,
        };
        if more == 0 {
            return Ok(());
        }
    }
}

async fn start_publish<N: Node, T: Transport>(
    conn: &mut Conn<T>,
    ctx: &NetContext<N>,
    conn_id: u64,
    req: PublishRequest,
    stream_id: u32,
) -> Result<(), ConnError> {
    // Admission before anything else, the claim of the key included: an unauthenticated
    // publisher never takes a stream over.
    let accepted = if let Err(r) = ctx.admit_publish(&req).await {
        Err(r)
    } else if ctx.is_draining() {
        Err(Refusal::draining(true))
    } else {
        ctx.node.publish(&req).await
    };
    let publisher = match accepted {
        Ok(p) => p,
        Err(r) => {
            info!(stream = %req.key(), reason = r.reason, "publish refused");
            metrics::counter!(metric::PUBLISHES_REFUSED, "reason" => r.reason).increment(1);
            conn.session
                .reject_publish(stream_id, r.rtmp_code, &r.description);
            return Ok(());
        }
    };
    let client = ctx.clients.register(
        conn_id,
        ClientRole::Publisher,
        "rtmp",
        req.key(),
        req.peer.clone(),
    );
    conn.session.accept_publish(stream_id, &req.name);
    conn.flush().await?;
    let result = publish_loop(conn, publisher, &client.info, stream_id, ctx)
        .instrument(info_span!("session", stream = %req.key(), role = "publisher"))
        .await;
    ctx.node.unpublished(&req);
    result
}

async fn start_play<N: Node, T: Transport>(
    conn: &mut Conn<T>,
    ctx: &NetContext<N>,
    conn_id: u64,
    req: PlayRequest,
    stream_id: u32,
) -> Result<(), ConnError> {
    let asked = Instant::now();
    let accepted = if let Err(r) = ctx.admit_play(&req) {
        Err(r)
    } else if ctx.is_draining() {
        Err(Refusal::draining(false))
    } else {
        ctx.node.play(&req).await
    };
    let sub = match accepted {
        Ok(s) => s,
        Err(r) => {
            info!(stream = %req.key(), reason = r.reason, "play refused");
            metrics::counter!(metric::PLAYS_REFUSED, "protocol" => "rtmp", "reason" => r.reason)
                .increment(1);
            conn.session
                .reject_play(stream_id, r.rtmp_code, &r.description);
            return Ok(());
        }
    };
    let client = ctx.clients.register(
        conn_id,
        ClientRole::Player,
        "rtmp",
        req.key(),
        req.peer.clone(),
    );
    set_send_buffer(conn.sock.get_ref().tcp(), ctx.limits.send_buffer);
    conn.session.accept_play(stream_id, &req.name);
    conn.flush().await?;
    conn.session.release_negotiation();
    // No span of its own: entering one on every poll of every player costs ~1.5% of the
    // edge's CPU; its few log lines carry the stream instead.
    debug!(stream = %req.key(), "play started");
    // Not kept for the whole play (its strings, in each of thousands of players' tasks).
    drop(req);
    play_loop(conn, sub, &client.info, stream_id, ctx, asked).await
}

/// Applies SO_SNDBUF (0: leave the kernel's autotuning alone).
pub fn set_send_buffer(sock: &TcpStream, bytes: usize) {
    if bytes > 0
        && let Err(e) = socket2::SockRef::from(sock).set_send_buffer_size(bytes)
    {
        debug!(error = %e, "cannot set send buffer");
    }
}

fn join_query(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}&{b}"),
    }
}

async fn publish_loop<N: Node, T: Transport>(
    conn: &mut Conn<T>,
    publisher: Publisher,
    client: &ClientInfo,
    stream_id: u32,
    ctx: &NetContext<N>,
) -> Result<(), ConnError> {
    info!("publish started");
    let _gauge = metric::GaugeGuard::new(metrics::gauge!(metric::PUBLISHERS));
    let _streams =
        metric::GaugeGuard::new(metrics::gauge!(metric::STREAMS_ACTIVE, "kind" => "published"));
    let idle = ctx.limits.publish_idle_timeout;
    let mut last_media = Instant::now();
    let received = metrics::counter!(metric::BYTES_RECEIVED, "protocol" => "rtmp");
    // Made once, not per read (a publisher's socket is read ~70 times a second): the
    // cancellation futures, and one idle timer re-armed only when it fires.
    let shutdown = ctx.shutdown.cancelled();
    let api_kick = client.kick.cancelled();
    let taken_over = publisher.kicked().cancelled();
    let idle_timer = sleep_until(last_media + idle);
    tokio::pin!(shutdown, api_kick, taken_over, idle_timer);
    loop {
        let more = tokio::select! {
            biased;
            _ = &mut shutdown => {
                conn.session.end_publish(stream_id, "NetStream.Unpublish.Success", "server shutting down");
                return Ok(());
            }
            _ = &mut api_kick => {
                info!("publisher kicked by the API");
                metrics::counter!(metric::CLIENTS_KICKED, "reason" => "api").increment(1);
                conn.session.end_publish(stream_id, "NetStream.Publish.BadName", "kicked by an operator");
                return Ok(());
            }
            _ = &mut taken_over => {
                info!("publisher kicked");
                conn.session.end_publish(stream_id, "NetStream.Publish.BadName", "stream taken over or kicked");
                return Ok(());
            }
            r = conn.read_some() => r?,
            _ = &mut idle_timer => {
                if Instant::now() >= last_media + idle {
                    return Err(ConnError::PublishIdle);
                }
                idle_timer.as_mut().reset(last_media + idle);
                continue;
            }
        };
        if more == 0 {
            info!("publisher disconnected");
            return Ok(());
        }
        received.increment(more as u64);
        client.add_bytes(more as u64);
        while let Some(ev) = conn.session.poll_event()? {
            match ev {
                ServerEvent::Media {
                    type_id,
                    timestamp,
                    payload,
                } => {
                    if let Some(frame) = flv::frame_from_message(type_id, timestamp, payload) {
                        last_media = Instant::now();
                        publisher.send(frame);
                    }
                }
                ServerEvent::Metadata { timestamp, payload } => {
                    publisher.send(MediaFrame::new(
                        FrameKind::Data,
                        timestamp,
                        false,
                        false,
                        payload,
                    ));
                }
                ServerEvent::CloseStream { .. } => {
                    info!("publisher unpublished");
                    return Ok(());
                }
                _ => {}
            }
        }
        conn.flush().await?;
    }
}

async fn play_loop<N: Node, T: Transport>(
    conn: &mut Conn<T>,
    mut sub: Subscriber,
    client: &ClientInfo,
    stream_id: u32,
    ctx: &NetContext<N>,
    asked: Instant,
) -> Result<(), ConnError> {
    let _gauge = metric::GaugeGuard::new(metrics::gauge!(metric::PLAYERS, "protocol" => "rtmp"));
    // What the fan-out writes to the socket directly is booked node-wide once a second
    // (`ClientTable::book_egress`), what this task writes as it goes.
    let _ = client.egress.set(Egress {
        counter: metrics::counter!(metric::BYTES_SENT, "protocol" => "rtmp"),
        stream: sub.stream().clone(),
        direct: conn.sock.get_ref().shared().cloned(),
    });
    let mut frames: Vec<Arc<MediaFrame>> = Vec::new();
    let result = play_frames(conn, &mut sub, &mut frames, stream_id, ctx, asked, client).await;
    // Take the socket back from the fan-out before the last words (an onStatus) go out, and
    // finish any frame a direct write started, so that they arrive well-formed.
    if result.is_ok() {
        let written = sub.try_recv(&mut frames, 0);
        if written > 0 {
            let mut bufs = Vec::new();
            unwritten_wire(&mut bufs, &frames, written, rtmp_wire);
            // Bounded by the socket's stall timeout.
            let _ = write_all_vectored(&mut conn.sock, &bufs).await;
            let _ = conn.sock.flush().await;
        }
    }
    client.book_egress(0);
    result
}

async fn play_frames<N: Node, T: Transport>(
    conn: &mut Conn<T>,
    sub: &mut Subscriber,
    frames: &mut Vec<Arc<MediaFrame>>,
    stream_id: u32,
    ctx: &NetContext<N>,
    asked: Instant,
    client: &ClientInfo,
) -> Result<(), ConnError> {
    let mut first_frame = Some(asked);
    let slow_token = sub.cancelled();
    let batch = ctx.limits.batch_frames;
    let mut bufs: Vec<Bytes> = Vec::new();
    // Created once: a cancellation future registers with its token when made, which costs
    // more than the poll itself.
    let shutdown = ctx.shutdown.cancelled();
    let kicked = client.kick.cancelled();
    let too_slow = slow_token.cancelled();
    tokio::pin!(shutdown, kicked, too_slow);
    loop {
        // Bytes of the taken frames that a direct write already sent.
        let written = tokio::select! {
            biased;
            _ = &mut shutdown => {
                conn.session.end_play(stream_id, "NetStream.Play.Stop", "server shutting down");
                return Ok(());
            }
            _ = &mut kicked => {
                metrics::counter!(metric::CLIENTS_KICKED, "reason" => "api").increment(1);
                conn.session.end_play(stream_id, "NetStream.Play.Stop", "kicked by an operator");
                return Ok(());
            }
            r = conn.read_some() => {
                if r? == 0 {
                    return Ok(());
                }
                while let Some(ev) = conn.session.poll_event()? {
                    if let ServerEvent::CloseStream { .. } = ev {
                        return Ok(());
                    }
                }
                // Our reply (an acknowledgement, a ping) shares the socket with the fan-out.
                sub.try_recv(frames, batch)
            }
            r = sub.recv(frames, batch) => match r {
                Ok(written) => written,
                Err(reason) => return end_play(conn, stream_id, reason, sub),
            },
        };
        unwritten_wire(&mut bufs, frames, written, rtmp_wire);
        bufs.extend(conn.session.take_output());
        let had_media = !frames.is_empty();
        frames.clear();
        let n: usize = bufs.iter().map(|b| b.len()).sum();
        if n == 0 {
            bufs.clear();
            continue;
        }
        // The socket fails a write that stalls for the write timeout (StallTimeout): no timer
        // is armed unless the socket is full. Biased: a write that completes at once never
        // polls the too-slow token.
        tokio::select! {
            biased;
            r = write_flush(&mut conn.sock, &bufs) => r.map_err(stall_error)?,
            _ = &mut too_slow => {
                info!(stream = %sub.stream().key(), dropped = sub.dropped(), "player too slow, disconnected");
                return Err(ConnError::TooSlow);
            }
        }
        // Cleared now, not at the next wake-up: while the fan-out writes directly, that may be
        // never, and these frames (a whole primed GOP at first) would stay alive until then.
        // The vectors sized for that primed GOP shrink back too (a few KiB per player).
        bufs.clear();
        let kept = match conn.sock.get_ref().shared() {
            Some(_) => 0,
            None => KEPT_BATCH,
        };
        bufs.shrink_to(kept);
        frames.shrink_to(kept);
        client.book_egress(n as u64);
        if had_media && let Some(t) = first_frame.take() {
            metrics::histogram!(metric::FIRST_FRAME, "protocol" => "rtmp")
                .record(t.elapsed().as_secs_f64());
            // From now on, while this player keeps up, the fan-out writes to it directly
            // (plain TCP; a TLS player stays on the queued path).
            if let Some(shared) = conn.sock.get_ref().shared() {
                sub.set_direct_sink(shared.direct_sink(), rtmp_wire);
            }
        }
    }
}

/// Writes `bufs` and flushes what a TLS transport buffered (nothing to flush on plain TCP).
async fn write_flush<T: Transport>(
    sock: &mut StallTimeout<T>,
    bufs: &[Bytes],
) -> std::io::Result<()> {
    write_all_vectored(sock, bufs).await?;
    sock.flush().await
}

/// A write that timed out in `StallTimeout` is a stalled player; anything else is I/O.
fn stall_error(e: std::io::Error) -> ConnError {
    if e.kind() == std::io::ErrorKind::TimedOut {
        ConnError::WriteTimeout
    } else {
        ConnError::Io(e)
    }
}

fn end_play<T>(
    conn: &mut Conn<T>,
    stream_id: u32,
    reason: CloseReason,
    sub: &Subscriber,
) -> Result<(), ConnError> {
    match reason {
        CloseReason::Ended => {
            conn.session
                .end_play(stream_id, "NetStream.Play.UnpublishNotify", "stream ended");
            Ok(())
        }
        CloseReason::Shutdown => {
            conn.session
                .end_play(stream_id, "NetStream.Play.Stop", "server shutting down");
            Ok(())
        }
        CloseReason::Kicked => Ok(()),
        CloseReason::TooSlow => {
            info!(stream = %sub.stream().key(), dropped = sub.dropped(), "player too slow, disconnected");
            Err(ConnError::TooSlow)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two parts, end to end, are exactly the message `encode_message` would write.
    #[test]
    fn wire_parts_make_the_whole_chunked_message() {
        let cases = [
            (FrameKind::Audio, 40, 200),
            (FrameKind::Video, 80, PLAY_CHUNK_SIZE as usize),
            (FrameKind::Video, 120, PLAY_CHUNK_SIZE as usize + 1),
            (FrameKind::Video, 0x0100_0000, 150_000),
            (FrameKind::Data, 0x0100_0000, 30),
        ];
        for (kind, ts, len) in cases {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frame = MediaFrame::new(kind, ts, false, false, Bytes::from(payload.clone()));
            let [a, b, c] = rtmp_wire(&frame);
            assert!(c.is_empty());
            let (csid, tid) = csid_and_type(kind);
            let mut expected = BytesMut::new();
            encode_message(
                PLAY_CHUNK_SIZE,
                csid,
                ts,
                tid,
                STREAM_ID,
                &payload,
                &mut expected,
            );
            assert_eq!([a, b].concat(), &expected[..], "{kind:?} {len} bytes");
            // One chunk: the payload is the frame's own, not a copy.
            if len <= PLAY_CHUNK_SIZE as usize {
                assert_eq!(b.as_ptr(), frame.payload.as_ptr());
            }
        }
    }
}

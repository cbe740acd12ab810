//! The project's own RTMP client (common::rtmp::ClientSession over tokio) for tests that need
//! more than ffmpeg shows: time to first frame, keyframe-first, exact timestamps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::flv::{VideoTagInfo, inspect_video};
use common::rtmp::message::type_id;
use common::rtmp::{ClientConfig, ClientEvent, ClientSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;

/// One media message as received.
#[derive(Debug, Clone)]
pub struct Media {
    pub type_id: u8,
    pub timestamp: u32,
    pub payload: Bytes,
    pub at: Instant,
}

impl Media {
    pub fn is_video(&self) -> bool {
        self.type_id == type_id::VIDEO
    }

    pub fn video_info(&self) -> Option<VideoTagInfo> {
        if self.is_video() {
            inspect_video(&self.payload)
        } else {
            None
        }
    }
}

/// An RTMP connection driven by our client session.
pub struct Client {
    sock: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
    /// Sleep after every read (a player that reads in small bites).
    read_pause: Option<Duration>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, app: &str) -> std::io::Result<Client> {
        Self::connect_with(addr, app, None).await
    }

    /// Connects with a small receive buffer (set before connecting, so the TCP window stays
    /// small) and a pause after every read: the server's writes often find the socket full.
    pub async fn connect_slow_reader(
        addr: SocketAddr,
        app: &str,
        recv_buffer: u32,
        pause: Duration,
    ) -> std::io::Result<Client> {
        let mut c = Self::connect_with(addr, app, Some(recv_buffer)).await?;
        c.read_pause = Some(pause);
        Ok(c)
    }

    async fn connect_with(
        addr: SocketAddr,
        app: &str,
        recv_buffer: Option<u32>,
    ) -> std::io::Result<Client> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        let sock = socket.connect(addr).await?;
        sock.set_nodelay(true)?;
        let session = ClientSession::new(ClientConfig::new(app, &format!("rtmp://{addr}/{app}")));
        let mut c = Client {
            sock,
            session,
            buf: vec![0; 64 * 1024],
            read_pause: None,
        };
        c.flush().await?;
        Ok(c)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if let Some(out) = self.session.take_output() {
            self.sock.write_all(&out).await?;
        }
        Ok(())
    }

    /// The next event, or `None` at end of stream / deadline.
    pub async fn next_event(&mut self, deadline: Instant) -> Option<ClientEvent> {
        loop {
            match self.session.poll_event() {
                Ok(Some(e)) => return Some(e),
                Ok(None) => {}
                Err(_) => return None,
            }
            self.flush().await.ok()?;
            let n = timeout_at(deadline.into(), self.sock.read(&mut self.buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.session.handle_input(&self.buf[..n]).ok()?;
            if let Some(pause) = self.read_pause {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Plays `name`; returns once NetStream.Play.Start arrives, or the refusing status.
    pub async fn play(&mut self, name: &str, deadline: Instant) -> Result<(), ClientEvent> {
        self.session.play(name);
        self.flush().await.map_err(|_| ClientEvent::StreamEof)?;
        loop {
            match self.next_event(deadline).await {
                Some(ClientEvent::PlayStarted) => return Ok(()),
                Some(e @ ClientEvent::Status { .. }) if is_error(&e) => return Err(e),
                Some(_) => {}
                None => return Err(ClientEvent::StreamEof),
            }
        }
    }

    /// Publishes `name`; returns once NetStream.Publish.Start arrives, or the refusing status.
    pub async fn publish(&mut self, name: &str, deadline: Instant) -> Result<(), ClientEvent> {
        self.session.publish(name);
        self.flush().await.map_err(|_| ClientEvent::StreamEof)?;
        loop {
            match self.next_event(deadline).await {
                Some(ClientEvent::PublishStarted) => return Ok(()),
                Some(e @ ClientEvent::Status { .. }) if is_error(&e) => return Err(e),
                Some(_) => {}
                None => return Err(ClientEvent::StreamEof),
            }
        }
    }

    /// Sends one media message on the published stream.
    pub async fn send(
        &mut self,
        type_id: u8,
        timestamp: u32,
        payload: &[u8],
    ) -> std::io::Result<()> {
        self.session.send_media(type_id, timestamp, payload);
        self.flush().await
    }

    /// The next audio or video message.
    pub async fn next_media(&mut self, deadline: Instant) -> Option<Media> {
        loop {
            match self.next_event(deadline).await? {
                ClientEvent::Media {
                    type_id,
                    timestamp,
                    payload,
                } => {
                    return Some(Media {
                        type_id,
                        timestamp,
                        payload,
                        at: Instant::now(),
                    });
                }
                ClientEvent::StreamEof => return None,
                _ => {}
            }
        }
    }
}

fn is_error(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::Status { level, .. } if level == "error")
}

/// Connects, plays and returns (time from connect to the first video frame, that frame).
pub async fn first_video_frame(addr: SocketAddr, key: &str, within: Duration) -> (Duration, Media) {
    let (app, name) = key.split_once('/').expect("key app/name");
    let start = Instant::now();
    let deadline = start + within;
    let mut c = Client::connect(addr, app).await.expect("connect");
    c.play(name, deadline).await.expect("play");
    loop {
        let m = c
            .next_media(deadline)
            .await
            .expect("a video frame before the deadline");
        if m.is_video() {
            let info = m.video_info().expect("parsable video");
            if !info.sequence_header {
                return (m.at - start, m);
            }
        }
    }
}

/// Counts video frames a player receives in the background; records the longest gap.
pub struct Watcher {
    frames: Arc<AtomicUsize>,
    /// Video timestamps that went backwards.
    backwards: Arc<AtomicUsize>,
    max_gap_ms: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    pub async fn start(addr: SocketAddr, key: &str) -> Watcher {
        let (app, name) = key.split_once('/').expect("key");
        let mut c = Client::connect(addr, app).await.expect("connect");
        c.play(name, Instant::now() + Duration::from_secs(10))
            .await
            .expect("play");
        let frames = Arc::new(AtomicUsize::new(0));
        let max_gap_ms = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let backwards = Arc::new(AtomicUsize::new(0));
        let (f, g, s, b) = (
            frames.clone(),
            max_gap_ms.clone(),
            stop.clone(),
            backwards.clone(),
        );
        let task = tokio::spawn(async move {
            let mut last = Instant::now();
            let mut last_ts: Option<u32> = None;
            while !s.load(Ordering::Relaxed) {
                let Some(m) = c.next_media(Instant::now() + Duration::from_secs(30)).await else {
                    return;
                };
                if m.is_video() {
                    if last_ts.is_some_and(|t| m.timestamp < t) {
                        b.fetch_add(1, Ordering::Relaxed);
                    }
                    last_ts = Some(m.timestamp);
                    let gap = (m.at - last).as_millis() as usize;
                    g.fetch_max(gap, Ordering::Relaxed);
                    last = m.at;
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Watcher {
            frames,
            backwards,
            max_gap_ms,
            stop,
            task,
        }
    }

    /// How many video timestamps went backwards so far.
    pub fn backwards(&self) -> usize {
        self.backwards.load(Ordering::Relaxed)
    }

    pub fn frames(&self) -> usize {
        self.frames.load(Ordering::Relaxed)
    }

    /// Waits until more than `count` video frames have arrived; `false` after `limit`.
    pub async fn wait_beyond(&self, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.frames() <= count {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops watching: (video frames received, longest gap between them in ms).
    pub async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
        let _ = self.task.await;
        (
            self.frames.load(Ordering::Relaxed),
            self.max_gap_ms.load(Ordering::Relaxed),
        )
    }
}

/// Publishes `name` (with its query) on `addr` with the project's RTMP client within `within`:
/// the publishing client, or the refusing status (code, description).
pub async fn try_publish(
    addr: SocketAddr,
    app: &str,
    name: &str,
    within: Duration,
) -> Result<Client, (String, String)> {
    let mut c = Client::connect(addr, app).await.expect("connect");
    match c.publish(name, Instant::now() + within).await {
        Ok(()) => Ok(c),
        Err(ClientEvent::Status {
            code, description, ..
        }) => Err((code, description)),
        Err(other) => panic!("publish {app}/{name}: {other:?}"),
    }
}

/// Waits until `node` serves `key` to a fresh RTMP player (a first video frame arrives);
/// panics after 20 s.
pub async fn wait_playable(node: &crate::NodeProc, key: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = tokio::time::timeout(
            Duration::from_secs(4),
            first_video_frame(node.rtmp, key, Duration::from_secs(4)),
        )
        .await;
        if probe.is_ok() {
            return;
        }
        assert!(
            Instant::now() < end,
            "{key} never became playable on {}",
            node.node_id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A blocking socket to `addr` that has completed a real (simple) RTMP handshake, for hostile
/// clients that then send what they like.
pub fn handshaken(addr: SocketAddr) -> std::net::TcpStream {
    try_handshaken(addr).unwrap_or_else(|e| panic!("rtmp handshake with {addr}: {e}"))
}

/// [`handshaken`] for clients that carry on when the server refuses them.
pub fn try_handshaken(addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    use common::rtmp::handshake::{ClientHandshake, HandshakeKind};
    use std::io::{Error, Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut hs = ClientHandshake::new(7, HandshakeKind::Simple);
    if let Some(c0c1) = hs.take_output() {
        s.write_all(&c0c1)?;
    }
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !hs.is_complete() {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(Error::other("server closed during handshake"));
        }
        got.extend_from_slice(&buf[..n]);
        let used = hs.feed(&got).map_err(|e| Error::other(format!("{e:?}")))?;
        got.drain(..used);
    }
    if let Some(c2) = hs.take_output() {
        s.write_all(&c2)?;
    }
    Ok(s)
}

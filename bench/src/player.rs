//! Players: RTMP (lean: project handshake + commands + [`ChunkScanner`]; or the reference
//! path through `common::rtmp::ClientSession`), HTTP-FLV (hand-written HTTP/1.1, chunked
//! transfer, [`FlvScanner`]) and HLS (`hls_player`). Each keeps its figures in a
//! [`PlayerStats`] of atomics. RTMP and HTTP-FLV players also play over TLS (`rtmps://`,
//! `https://`): the same code, generic over the stream, so plaintext players are unchanged.
//!
//! Cheapness matters (3000 players on one core): lean players read with one syscall per
//! wake-up into a buffer per worker thread (hot in cache), parse chunk and tag headers only,
//! and allocate nothing per frame.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::flv::inspect_video;
use common::rtmp::amf0::Amf0Value;
use common::rtmp::command::{CSID_COMMAND, Command, connect_command, write_command};
use common::rtmp::handshake::{ClientHandshake, HandshakeKind};
use common::rtmp::message::{AckTracker, ControlMessage, UserControl, type_id};
use common::rtmp::{ClientConfig, ClientEvent, ClientSession};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::timeout;

use crate::flv_scan::{Dechunker, FlvScanner, parse_head};
use crate::hist::Histogram;
use crate::hls_player::{HlsCounters, HlsMode};
use crate::rtmp_scan::ChunkScanner;
use crate::stream::{ns_since_epoch, send_stamp};
use crate::target::Target;

pub const WARMUP: u8 = 0;
pub const MEASURING: u8 = 1;
pub const DONE: u8 = 2;

/// Player states.
pub const CONNECTING: u8 = 0;
pub const PLAYING: u8 = 1;
pub const FAILED: u8 = 2;
pub const STALLED: u8 = 3;

/// How RTMP players decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// Handshake and commands from `common::rtmp`, media through the lean chunk scanner.
    Lean,
    /// Everything through `common::rtmp::ClientSession` (reassembles every message).
    Session,
}

/// What every player task shares.
pub struct Shared {
    pub phase: AtomicU8,
    pub connect_timeout: Duration,
    pub decoder: Decoder,
    /// How long a stalled player's socket is drained at the end to see if the server closed it.
    pub drain: Duration,
    /// How HLS players follow a playlist.
    pub hls_mode: HlsMode,
    /// Plain HLS: the playlist reload interval (none: half the target duration).
    pub hls_poll: Option<Duration>,
    /// Errors HLS players carried on after (a failed request), by kind.
    pub hls_errors: Mutex<BTreeMap<String, u64>>,
    /// The TLS client of `rtmps://` and `https://` players.
    pub tls: Option<tokio_rustls::TlsConnector>,
}

impl Shared {
    pub(crate) fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    /// Counts an error a player carried on after.
    pub(crate) fn soft_error(&self, st: &PlayerStats, kind: &str) {
        st.hls.errors.fetch_add(1, Ordering::Relaxed);
        let mut m = self.hls_errors.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(kind.to_string()).or_insert(0) += 1;
    }
}

impl PlayerStats {
    /// Accounts one read of `n` bytes at `at`.
    pub(crate) fn received(&self, n: usize, at: Instant) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.last_rx_ns.store(ns_since_epoch(at), Ordering::Relaxed);
    }

    /// Records a failure (the first one wins).
    pub fn fail(&self, kind: String) {
        self.state.store(FAILED, Ordering::Relaxed);
        let _ = self.error.set(kind);
    }
}

/// What became of a player that stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallOutcome {
    /// The server closed the connection (EOF or reset after draining what was buffered).
    pub closed_by_server: bool,
    /// Bytes read while draining at the end.
    pub drained_bytes: u64,
}

/// One player's figures (written by its task, read by the runner).
#[derive(Debug)]
pub struct PlayerStats {
    pub group: usize,
    pub stalled: bool,
    pub bytes: AtomicU64,
    /// Successful reads (syscalls that returned data).
    pub reads: AtomicU64,
    /// Instant of the last read that returned data (or of the start), ns since the epoch:
    /// the runner's watchdog fails players silent for longer than `--silence-timeout`.
    pub last_rx_ns: AtomicU64,
    /// Coded video frames (sequence headers excluded).
    pub video: AtomicU64,
    pub audio: AtomicU64,
    /// Gaps of more than 1 s between video frames while measuring (across reconnections).
    pub gaps: AtomicU64,
    pub max_gap_us: AtomicU64,
    /// Receive instant of the frame that ended the longest gap, ns since the epoch.
    pub max_gap_end_ns: AtomicU64,
    /// Connections that ended or failed before the run was done (players with `--reconnect`
    /// then play again from their next URL).
    pub disconnects: AtomicU64,
    /// Connect start to the first coded video frame, us (0: none yet).
    pub ttff_us: AtomicU64,
    /// 0 unknown, 1 the first coded video frame was a keyframe, 2 it was not.
    pub first_key: AtomicU8,
    /// Receive instant of the last video frame, ns since the epoch.
    pub last_video_ns: AtomicU64,
    pub state: AtomicU8,
    pub error: OnceLock<String>,
    pub stall: OnceLock<StallOutcome>,
    /// How media arrives in bursts, us: 0 for streaming players, the segment (plain HLS) or
    /// part (LL-HLS) duration. A gap counts past 1 s plus this, and the frame rate a player
    /// needs to be ok is taken over the window less this.
    pub burst_us: AtomicU64,
    pub hls: HlsCounters,
}

impl PlayerStats {
    pub fn new(group: usize, stalled: bool) -> Self {
        PlayerStats {
            group,
            stalled,
            bytes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            last_rx_ns: AtomicU64::new(ns_since_epoch(Instant::now())),
            video: AtomicU64::new(0),
            audio: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            max_gap_us: AtomicU64::new(0),
            max_gap_end_ns: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            ttff_us: AtomicU64::new(0),
            first_key: AtomicU8::new(0),
            last_video_ns: AtomicU64::new(0),
            state: AtomicU8::new(CONNECTING),
            error: OnceLock::new(),
            stall: OnceLock::new(),
            burst_us: AtomicU64::new(0),
            hls: HlsCounters::default(),
        }
    }
}

/// Why a player failed (the kind is what the report counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail(pub String);

impl Fail {
    pub(crate) fn new(kind: impl Into<String>) -> Self {
        Fail(kind.into())
    }

    pub(crate) fn io(during: &str, e: &std::io::Error) -> Self {
        let kind = match e.kind() {
            ErrorKind::ConnectionRefused => "refused".to_string(),
            ErrorKind::ConnectionReset => "reset".to_string(),
            ErrorKind::BrokenPipe => "broken_pipe".to_string(),
            ErrorKind::TimedOut => "timeout".to_string(),
            ErrorKind::AddrNotAvailable => "no_local_port".to_string(),
            k => format!("{k:?}").to_lowercase(),
        };
        Fail(format!("{during}_{kind}"))
    }
}

/// Per-frame bookkeeping shared by every player kind.
pub(crate) struct Track<'a> {
    st: &'a PlayerStats,
    shared: &'a Shared,
    hist: &'a Histogram,
    start: Instant,
    /// The player's last video frame, ns since the epoch (0: none), carried over from an
    /// earlier connection so that a reconnection's gap is measured.
    last_video_ns: u64,
}

impl<'a> Track<'a> {
    pub(crate) fn new(
        st: &'a PlayerStats,
        shared: &'a Shared,
        hist: &'a Histogram,
        start: Instant,
    ) -> Self {
        Track {
            st,
            shared,
            hist,
            start,
            last_video_ns: st.last_video_ns.load(Ordering::Relaxed),
        }
    }

    /// An audio (8) or video (9) message/tag; `head` is at least its first bytes.
    fn media(&mut self, kind: u8, head: &[u8], at: Instant) {
        match kind {
            type_id::VIDEO => {}
            type_id::AUDIO => {
                self.st.audio.fetch_add(1, Ordering::Relaxed);
                return;
            }
            _ => return,
        }
        let Some(info) = inspect_video(head) else {
            return;
        };
        if !info.coded_frame {
            return;
        }
        self.video_frame(info.keyframe, send_stamp(head), at);
    }

    /// A coded video frame received at `at`, with its embedded send instant if any.
    pub(crate) fn video_frame(&mut self, keyframe: bool, stamp: Option<u64>, at: Instant) {
        let st = self.st;
        st.video.fetch_add(1, Ordering::Relaxed);
        if st.first_key.load(Ordering::Relaxed) == 0 {
            let ttff = (at - self.start).as_micros().max(1) as u64;
            st.ttff_us.store(ttff, Ordering::Relaxed);
            st.first_key
                .store(if keyframe { 1 } else { 2 }, Ordering::Relaxed);
        }
        let at_ns = ns_since_epoch(at);
        let measuring = self.shared.phase() == MEASURING;
        if measuring {
            if self.last_video_ns != 0 {
                let gap = at_ns.saturating_sub(self.last_video_ns) / 1000;
                if gap > 1_000_000 + st.burst_us.load(Ordering::Relaxed) {
                    st.gaps.fetch_add(1, Ordering::Relaxed);
                }
                // One writer per player: load, compare, store is enough.
                if gap > st.max_gap_us.load(Ordering::Relaxed) {
                    st.max_gap_us.store(gap, Ordering::Relaxed);
                    st.max_gap_end_ns.store(at_ns, Ordering::Relaxed);
                }
            }
            if let Some(sent) = stamp {
                self.hist.record(at_ns.saturating_sub(sent) / 1000);
            }
        }
        self.last_video_ns = at_ns;
        st.last_video_ns.store(at_ns, Ordering::Relaxed);
    }
}

/// Runs one player until it fails or its task is aborted; records the failure.
pub async fn run_player(shared: &Shared, st: &PlayerStats, hist: &Histogram, target: &Target) {
    if let Err(f) = play_once(shared, st, hist, target).await
        && shared.phase() != DONE
    {
        st.disconnects.fetch_add(1, Ordering::Relaxed);
        st.fail(f.0);
    }
}

/// A player with fallback URLs, as a real player given several edges: whenever its connection
/// ends or fails before the run is done, it counts a disconnect, waits `delay` and plays again
/// from the next of `targets` (round robin). It never fails for good: the watchdog's silence
/// timeout is what gives up on it. The first disconnect's reason is its `error`.
pub async fn run_player_failover(
    shared: &Shared,
    st: &PlayerStats,
    hist: &Histogram,
    targets: &[Target],
    delay: Duration,
) {
    for target in targets.iter().cycle() {
        let result = play_once(shared, st, hist, target).await;
        if shared.phase() == DONE {
            return;
        }
        st.disconnects.fetch_add(1, Ordering::Relaxed);
        let _ = st.error.set(match result {
            Err(f) => f.0,
            Ok(()) => "ended".into(),
        });
        tokio::time::sleep(delay).await;
    }
}

/// One connection of a player, until it ends.
async fn play_once(
    shared: &Shared,
    st: &PlayerStats,
    hist: &Histogram,
    target: &Target,
) -> Result<(), Fail> {
    // From before the TCP connect (and the TLS handshake): the time to the first frame.
    let start = Instant::now();
    match target {
        Target::Rtmp {
            addr,
            app,
            name,
            tc_url,
            tls,
        } => {
            let rtmp = Rtmp { app, name, tc_url };
            match (tls, shared.decoder) {
                (None, Decoder::Lean) => {
                    let sock = connect(shared, *addr).await?;
                    rtmp_lean(shared, st, hist, sock, start, &rtmp).await
                }
                (None, Decoder::Session) => {
                    let sock = connect(shared, *addr).await?;
                    rtmp_session(shared, st, hist, sock, start, &rtmp).await
                }
                (Some(host), Decoder::Lean) => {
                    let sock = connect_tls(shared, *addr, host).await?;
                    rtmp_lean(shared, st, hist, sock, start, &rtmp).await
                }
                (Some(host), Decoder::Session) => {
                    let sock = connect_tls(shared, *addr, host).await?;
                    rtmp_session(shared, st, hist, sock, start, &rtmp).await
                }
            }
        }
        Target::Http {
            addr,
            host,
            path,
            tls: None,
        } => {
            let sock = connect(shared, *addr).await?;
            http_flv(shared, st, hist, sock, start, host, path).await
        }
        Target::Http {
            addr,
            host,
            path,
            tls: Some(name),
        } => {
            let sock = connect_tls(shared, *addr, name).await?;
            http_flv(shared, st, hist, sock, start, host, path).await
        }
        Target::Hls { addr, host, path } => {
            crate::hls_player::run(shared, st, hist, *addr, host, path).await
        }
    }
}

pub(crate) type Sock = tokio::net::TcpStream;

thread_local! {
    /// One read buffer per worker thread: players copy out what they keep before yielding.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 128 * 1024]);
}

pub(crate) async fn connect(shared: &Shared, addr: SocketAddr) -> Result<Sock, Fail> {
    let sock = timeout(shared.connect_timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| Fail::new("connect_timeout"))?
        .map_err(|e| Fail::io("connect", &e))?;
    let _ = sock.set_nodelay(true);
    Ok(sock)
}

/// A TCP connection to `addr`, then a TLS handshake for `server_name` (within the connect
/// timeout each).
async fn connect_tls(
    shared: &Shared,
    addr: SocketAddr,
    server_name: &str,
) -> Result<tokio_rustls::client::TlsStream<Sock>, Fail> {
    let tcp = connect(shared, addr).await?;
    let connector = shared
        .tls
        .as_ref()
        .ok_or_else(|| Fail::new("tls_not_configured"))?;
    let name = crate::tls::server_name(server_name).map_err(|_| Fail::new("tls_server_name"))?;
    timeout(shared.connect_timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| Fail::new("tls_handshake_timeout"))?
        .map_err(|e| Fail::io("tls_handshake", &e))
}

pub(crate) async fn write_all<S: AsyncWrite + Unpin>(
    sock: &mut S,
    data: &[u8],
) -> Result<(), Fail> {
    sock.write_all(data)
        .await
        .map_err(|e| Fail::io("write", &e))
}

/// Waits (at most `within`, if given) and reads once into the thread's buffer, handing the
/// bytes and their receive instant to `f`. `Ok(false)` at end of stream. The buffer is
/// borrowed only inside one poll, so players on the same thread share it; tokio's `poll_read`
/// clears the socket's readiness after a short read, so a wake-up costs one `read` syscall.
/// Streaming players pass no bound (a timer per read is measurable at 3000 players): the
/// runner's watchdog fails silent players instead.
pub(crate) async fn read_once<S: AsyncRead + Unpin>(
    sock: &mut S,
    within: Option<Duration>,
    mut f: impl FnMut(&[u8], Instant) -> Result<(), Fail>,
) -> Result<bool, Fail> {
    let read = std::future::poll_fn(|cx| {
        READ_BUF.with_borrow_mut(|buf| {
            let mut rb = ReadBuf::new(buf);
            match Pin::new(&mut *sock).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(e)) => Poll::Ready(Err(Fail::io("read", &e))),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        Poll::Ready(Ok(false))
                    } else {
                        Poll::Ready(f(&buf[..n], Instant::now()).map(|()| true))
                    }
                }
            }
        })
    });
    match within {
        Some(d) => timeout(d, read)
            .await
            .map_err(|_| Fail::new("silence_timeout"))?,
        None => read.await,
    }
}

/// A player that stopped reading: waits for the end of the run, then drains its socket for
/// `shared.drain` to see whether the server closed it.
async fn stall<S: AsyncRead + Unpin>(
    shared: &Shared,
    st: &PlayerStats,
    sock: &mut S,
) -> Result<(), Fail> {
    st.state.store(STALLED, Ordering::Relaxed);
    while shared.phase() != DONE {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = Instant::now() + shared.drain;
    let mut drained = 0u64;
    let closed = loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        match read_once(sock, Some(left), |b, _| {
            drained += b.len() as u64;
            Ok(())
        })
        .await
        {
            Ok(true) => {}
            Ok(false) => break true,
            Err(f) if f.0 == "silence_timeout" => break false,
            Err(_) => break true,
        }
    };
    let _ = st.stall.set(StallOutcome {
        closed_by_server: closed,
        drained_bytes: drained,
    });
    Ok(())
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Command exchange of a playing client (what `ClientSession` does, over the lean scanner).
struct PlayCommands<'a> {
    app: &'a str,
    name: &'a str,
    tc_url: &'a str,
    out: BytesMut,
    ack: AckTracker,
    playing: bool,
    fail: Option<Fail>,
}

const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 2.0;
/// Our outbound chunk size (never changed: we only send small commands).
const OUT_CHUNK: u32 = 128;

impl PlayCommands<'_> {
    fn connect(&mut self) {
        debug_assert_eq!(TXN_CONNECT, 1.0, "connect_command uses transaction 1");
        let values = connect_command(self.app, self.tc_url, "LNX 9,0,124,2");
        write_command(OUT_CHUNK, CSID_COMMAND, 0, &values, &mut self.out);
    }

    /// A non-media message from the scanner.
    fn message(&mut self, type_id: u8, body: &[u8]) {
        match type_id {
            type_id::WINDOW_ACK_SIZE => {
                if let Some(v) = be32(body) {
                    self.ack.set_window(v);
                }
            }
            type_id::USER_CONTROL => match UserControl::parse(body) {
                Ok(UserControl::PingRequest(t)) => {
                    ControlMessage::UserControl(UserControl::PingResponse(t))
                        .encode(OUT_CHUNK, &mut self.out);
                }
                Ok(UserControl::StreamEof(_)) => self.fail(Fail::new("stream_eof")),
                _ => {}
            },
            type_id::COMMAND_AMF0 => match Command::parse(body) {
                Ok(cmd) => self.command(&cmd),
                Err(_) => self.fail(Fail::new("protocol_bad_command")),
            },
            _ => {}
        }
    }

    fn fail(&mut self, f: Fail) {
        if self.fail.is_none() {
            self.fail = Some(f);
        }
    }

    fn command(&mut self, cmd: &Command) {
        match cmd.name.as_str() {
            "_result" if cmd.transaction_id == TXN_CONNECT => {
                let values = [
                    Amf0Value::string("createStream"),
                    Amf0Value::Number(TXN_CREATE_STREAM),
                    Amf0Value::Null,
                ];
                write_command(OUT_CHUNK, CSID_COMMAND, 0, &values, &mut self.out);
            }
            "_result" if cmd.transaction_id == TXN_CREATE_STREAM => {
                let sid = cmd.arg_f64(0).unwrap_or(1.0) as u32;
                ControlMessage::UserControl(UserControl::SetBufferLength {
                    stream_id: sid,
                    buffer_ms: 1000,
                })
                .encode(OUT_CHUNK, &mut self.out);
                let values = [
                    Amf0Value::string("play"),
                    Amf0Value::Number(0.0),
                    Amf0Value::Null,
                    Amf0Value::string(self.name),
                    Amf0Value::Number(-1000.0),
                ];
                write_command(OUT_CHUNK, 8, sid, &values, &mut self.out);
            }
            "onStatus" | "_error" => {
                let code = cmd.info("code");
                if cmd.name == "_error" || cmd.info("level") == "error" {
                    self.fail(Fail(format!("refused:{code}")));
                } else if code == "NetStream.Play.Start" {
                    self.playing = true;
                } else if matches!(
                    code.as_str(),
                    "NetStream.Play.Stop" | "NetStream.Play.UnpublishNotify"
                ) {
                    self.fail(Fail(format!("ended:{code}")));
                }
            }
            _ => {}
        }
    }
}

/// What an RTMP player asks for.
struct Rtmp<'a> {
    app: &'a str,
    name: &'a str,
    tc_url: &'a str,
}

async fn rtmp_lean<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    st: &PlayerStats,
    hist: &Histogram,
    mut sock: S,
    start: Instant,
    &Rtmp { app, name, tc_url }: &Rtmp<'_>,
) -> Result<(), Fail> {
    // Handshake: C0C1, S0S1S2 (3073 bytes), C2.
    let mut hs = ClientHandshake::new(
        0x9e37_79b9 ^ start.elapsed().as_nanos() as u64,
        HandshakeKind::Digest,
    );
    if let Some(c0c1) = hs.take_output() {
        write_all(&mut sock, &c0c1).await?;
    }
    let mut leftover = Vec::new();
    while !hs.is_complete() {
        let mut err = None;
        let open = read_once(&mut sock, None, |b, at| {
            st.received(b.len(), at);
            match hs.feed(b) {
                Ok(used) => leftover.extend_from_slice(&b[used..]),
                Err(_) => err = Some(Fail::new("handshake")),
            }
            Ok(())
        })
        .await?;
        if let Some(f) = err {
            return Err(f);
        }
        if !open {
            return Err(Fail::new("handshake_eof"));
        }
    }
    let mut cmds = PlayCommands {
        app,
        name,
        tc_url,
        out: BytesMut::with_capacity(512),
        ack: AckTracker::new(),
        playing: false,
        fail: None,
    };
    if let Some(c2) = hs.take_output() {
        cmds.out.extend_from_slice(&c2);
    }
    cmds.connect();
    let mut scanner = ChunkScanner::new();
    let mut track = Track::new(st, shared, hist, start);
    let mut first = Some(leftover);
    loop {
        if !cmds.out.is_empty() {
            let out = cmds.out.split();
            write_all(&mut sock, &out).await?;
        }
        if let Some(f) = cmds.fail.take() {
            return Err(f);
        }
        if cmds.playing && st.state.load(Ordering::Relaxed) == CONNECTING {
            if st.stalled {
                return stall(shared, st, &mut sock).await;
            }
            st.state.store(PLAYING, Ordering::Relaxed);
        }
        let mut handle = |bytes: &[u8], at: Instant| -> Result<(), Fail> {
            st.received(bytes.len(), at);
            scanner
                .feed(bytes, &mut |m| {
                    if matches!(m.type_id, type_id::AUDIO | type_id::VIDEO) {
                        track.media(m.type_id, m.data, at);
                    } else {
                        cmds.message(m.type_id, m.data);
                    }
                })
                .map_err(|e| Fail(format!("protocol:{e}")))?;
            if let Some(seq) = cmds.ack.on_received(scanner.bytes()) {
                ControlMessage::Acknowledgement(seq).encode(OUT_CHUNK, &mut cmds.out);
            }
            Ok(())
        };
        if let Some(bytes) = first.take() {
            // Already counted as received with the handshake.
            st.bytes.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
            handle(&bytes, Instant::now())?;
            continue;
        }
        if !read_once(&mut sock, None, handle).await? {
            return Err(Fail::new("eof"));
        }
    }
}

/// The reference path: every message through `ClientSession` and `ChunkDecoder`.
async fn rtmp_session<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    st: &PlayerStats,
    hist: &Histogram,
    mut sock: S,
    start: Instant,
    &Rtmp { app, name, tc_url }: &Rtmp<'_>,
) -> Result<(), Fail> {
    let mut session = ClientSession::new(ClientConfig::new(app, tc_url));
    session.play(name);
    let mut track = Track::new(st, shared, hist, start);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        loop {
            match session.poll_event() {
                Ok(Some(ClientEvent::PlayStarted)) => {
                    st.state.store(PLAYING, Ordering::Relaxed);
                    if st.stalled {
                        if let Some(out) = session.take_output() {
                            sock.write_all(&out)
                                .await
                                .map_err(|e| Fail::io("write", &e))?;
                        }
                        return stall(shared, st, &mut sock).await;
                    }
                }
                Ok(Some(ClientEvent::Media {
                    type_id, payload, ..
                })) => track.media(type_id, &payload, now),
                Ok(Some(ClientEvent::Status { level, code, .. })) if level == "error" => {
                    return Err(Fail(format!("refused:{code}")));
                }
                Ok(Some(ClientEvent::StreamEof)) => return Err(Fail::new("stream_eof")),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(Fail(format!("protocol:{e}"))),
            }
        }
        if let Some(out) = session.take_output() {
            sock.write_all(&out)
                .await
                .map_err(|e| Fail::io("write", &e))?;
        }
        let n = sock
            .read(&mut buf)
            .await
            .map_err(|e| Fail::io("read", &e))?;
        if n == 0 {
            return Err(Fail::new("eof"));
        }
        st.received(n, Instant::now());
        session
            .handle_input(&buf[..n])
            .map_err(|e| Fail(format!("protocol:{e}")))?;
    }
}

async fn http_flv<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    st: &PlayerStats,
    hist: &Histogram,
    mut sock: S,
    start: Instant,
    host: &str,
    path: &str,
) -> Result<(), Fail> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: livecdn-loadgen\r\nAccept: */*\r\n\r\n"
    );
    write_all(&mut sock, request.as_bytes()).await?;
    let mut head_buf = Vec::new();
    let (head, rest) = loop {
        let open = read_once(&mut sock, None, |b, at| {
            st.received(b.len(), at);
            head_buf.extend_from_slice(b);
            Ok(())
        })
        .await?;
        match parse_head(&head_buf) {
            Ok(Some(h)) => {
                let rest = head_buf.split_off(h.len);
                break (h, rest);
            }
            Ok(None) if open => {}
            Ok(None) => return Err(Fail::new("eof")),
            Err(e) => return Err(Fail(format!("protocol:{e}"))),
        }
    };
    if head.status != 200 {
        return Err(Fail(format!("http_{}", head.status)));
    }
    st.state.store(PLAYING, Ordering::Relaxed);
    drop(head_buf);
    if st.stalled {
        return stall(shared, st, &mut sock).await;
    }
    let mut dechunk = head.chunked.then(Dechunker::new);
    let mut flv = FlvScanner::new();
    let mut track = Track::new(st, shared, hist, start);
    let mut body = |bytes: &[u8], at: Instant| -> Result<(), Fail> {
        let mut on_tag = |t: crate::flv_scan::Tag<'_>| track.media(t.tag_type, t.prefix, at);
        let r = match dechunk.as_mut() {
            Some(d) => d.feed(bytes, &mut |data| flv.feed(data, &mut on_tag)),
            None => flv.feed(bytes, &mut on_tag),
        };
        r.map_err(|e| Fail(format!("protocol:{e}")))?;
        if dechunk.as_ref().is_some_and(Dechunker::is_done) {
            return Err(Fail::new("eof"));
        }
        Ok(())
    };
    body(&rest, Instant::now())?;
    drop(rest);
    loop {
        let open = read_once(&mut sock, None, |b, at| {
            st.received(b.len(), at);
            body(b, at)
        })
        .await?;
        if !open {
            return Err(Fail::new("eof"));
        }
    }
}

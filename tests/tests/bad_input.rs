//! Hostile and broken peers: each ends only its own connection, within a timeout, while a
//! concurrent player keeps receiving frames; slow players are dropped to keyframes, then cut.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::rtmp::{Watcher, handshaken, wait_playable};
use harness::{FfmpegPublisher, Origin, StreamSpec, wait_for};

async fn origin_with_stream(extra: &[&str], key: &str) -> (Origin, FfmpegPublisher) {
    let origin = Origin::start(extra);
    let publisher = FfmpegPublisher::start(&origin.rtmp_url(key), StreamSpec::default());
    wait_playable(&origin, key).await;
    (origin, publisher)
}

/// Blocks until the server closes `s` (EOF or reset); returns how long that took.
fn closed_within(mut s: TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut buf = [0u8; 65536];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return start.elapsed(),
        }
    }
    panic!("connection still open after {limit:?}");
}

/// A type-0 chunk header (1-byte basic header) for csid 2..63.
fn chunk0(csid: u8, ts: u32, len: u32, type_id: u8, msid: u32) -> Vec<u8> {
    let mut v = vec![csid];
    v.extend_from_slice(&ts.to_be_bytes()[1..]);
    v.extend_from_slice(&len.to_be_bytes()[1..]);
    v.push(type_id);
    v.extend_from_slice(&msid.to_le_bytes());
    v
}

fn set_chunk_size(size: u32) -> Vec<u8> {
    let mut v = chunk0(2, 0, 4, 1, 0);
    v.extend_from_slice(&size.to_be_bytes());
    v
}

/// Opens a connection and misbehaves on it.
type BadPeer = Box<dyn FnOnce() -> TcpStream + Send>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_ends_only_its_connection() {
    let (origin, _publisher) =
        origin_with_stream(&["--rtmp-handshake-timeout", "2s"], "live/victim").await;
    let watcher = Watcher::start(origin.rtmp, "live/victim").await;
    let addr = origin.rtmp;
    let limit = Duration::from_secs(5);

    let cases: Vec<(&str, BadPeer)> = vec![
        (
            "garbage instead of a handshake",
            Box::new(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    .expect("write");
                s
            }),
        ),
        (
            "truncated handshake",
            Box::new(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                let mut c0c1 = vec![3u8];
                c0c1.extend_from_slice(&[0u8; 700]);
                s.write_all(&c0c1).expect("write");
                s
            }),
        ),
        (
            "handshake that never completes (no C2)",
            Box::new(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                let mut c0c1 = vec![3u8];
                c0c1.extend_from_slice(&[0u8; 1536]);
                s.write_all(&c0c1).expect("write");
                s
            }),
        ),
        (
            "chunk size 0",
            Box::new(move || {
                let mut s = handshaken(addr);
                s.write_all(&set_chunk_size(0)).expect("write");
                s
            }),
        ),
        (
            "chunk size above 16 MiB",
            Box::new(move || {
                let mut s = handshaken(addr);
                s.write_all(&set_chunk_size(16 * 1024 * 1024 + 1))
                    .expect("write");
                s
            }),
        ),
        (
            "message length that lies",
            Box::new(move || {
                let mut s = handshaken(addr);
                let mut v = chunk0(3, 0, 0xFF_FFFF, 20, 0);
                v.extend_from_slice(&[0x02, 0x00, 0x07]);
                s.write_all(&v).expect("write");
                s
            }),
        ),
        (
            "type-3 header on an unknown chunk stream",
            Box::new(move || {
                let mut s = handshaken(addr);
                s.write_all(&[0xC0 | 9, 1, 2, 3, 4]).expect("write");
                s
            }),
        ),
        (
            "command with malformed AMF0",
            Box::new(move || {
                let mut s = handshaken(addr);
                let body = [0x02, 0x00, 0x07, b'c', b'o', b'n', 0x03, 0xFF];
                let mut v = chunk0(3, 0, body.len() as u32, 20, 0);
                v.extend_from_slice(&body);
                s.write_all(&v).expect("write");
                s
            }),
        ),
    ];
    for (name, make) in cases {
        let before = watcher.frames();
        let took = tokio::task::spawn_blocking(move || closed_within(make(), limit))
            .await
            .expect("join");
        assert!(took < limit, "{name}: closed after {took:?}");
        // A bad peer can be closed within a millisecond, between two frames: what matters
        // is that the concurrent player still gets the next one.
        assert!(
            watcher.wait_beyond(before, Duration::from_secs(1)).await,
            "{name}: the concurrent player stopped receiving"
        );
    }
    let (_, body) = origin.http_get("/metrics");
    assert!(
        body.contains("livecdn_net_connection_errors_total"),
        "errors are counted"
    );
    let (frames, gap) = watcher.finish().await;
    assert!(frames > 100, "player got {frames} frames");
    assert!(gap < 1000, "player saw a {gap} ms gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_are_closed_and_cost_others_nothing() {
    let (origin, _publisher) =
        origin_with_stream(&["--rtmp-handshake-timeout", "2s"], "live/crowd").await;
    let watcher = Watcher::start(origin.rtmp, "live/crowd").await;
    let addr = origin.rtmp;
    let socks: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let start = Instant::now();
    let all_closed = tokio::task::spawn_blocking(move || {
        socks
            .into_iter()
            .map(|s| closed_within(s, Duration::from_secs(8)))
            .max()
    })
    .await
    .expect("join");
    assert!(all_closed.is_some());
    assert!(start.elapsed() < Duration::from_secs(8));
    let (frames, gap) = watcher.finish().await;
    assert!(frames > 40, "player got {frames} frames");
    assert!(gap < 1000, "player saw a {gap} ms gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_player_is_dropped_to_keyframes_then_disconnected() {
    let (origin, _publisher) = origin_with_stream(
        &[
            "--media-queue-max-ms",
            "1000",
            "--media-slow-max-overflows",
            "3",
            "--net-send-buffer",
            "16384",
        ],
        "live/stall",
    )
    .await;
    let fast = Watcher::start(origin.rtmp, "live/stall").await;

    // A player with a tiny receive window that plays, then never reads again.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = sock.connect(origin.rtmp).await.expect("connect");
    let std = stream.into_std().expect("std");
    std.set_nonblocking(false).expect("blocking");
    let mut stalled = std;
    {
        // Handshake and play with raw bytes from our client session, then stop reading.
        use common::rtmp::{ClientConfig, ClientSession};
        let mut session = ClientSession::new(ClientConfig::new("live", "rtmp://x/live"));
        session.play("stall");
        stalled.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut buf = [0u8; 4096];
        let mut started = false;
        let end = Instant::now() + Duration::from_secs(5);
        while !started && Instant::now() < end {
            if let Some(out) = session.take_output() {
                stalled.write_all(&out).expect("write");
            }
            let n = stalled.read(&mut buf).expect("read");
            session.handle_input(&buf[..n]).expect("input");
            while let Ok(Some(e)) = session.poll_event() {
                if e == common::rtmp::ClientEvent::PlayStarted {
                    started = true;
                }
            }
        }
        assert!(started, "stalled player never started");
    }
    // Drops happen first, then the disconnect.
    wait_for(
        "frames dropped for the stalled player",
        Duration::from_secs(15),
        || origin.metric("livecdn_media_frames_dropped_total", "") > 0.0,
    );
    wait_for(
        "the stalled player to be disconnected",
        Duration::from_secs(20),
        || origin.metric("livecdn_media_slow_players_disconnected_total", "") >= 1.0,
    );
    let took = tokio::task::spawn_blocking(move || closed_within(stalled, Duration::from_secs(10)))
        .await
        .expect("join");
    assert!(took < Duration::from_secs(10));
    // Meanwhile the fast player kept full frame rate (25 fps) with no gap.
    let before = fast.frames();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let in_two_seconds = fast.frames() - before;
    let (_, gap) = fast.finish().await;
    assert!(
        in_two_seconds >= 45,
        "fast player got {in_two_seconds} frames in 2 s"
    );
    assert!(gap < 500, "fast player saw a {gap} ms gap");
}

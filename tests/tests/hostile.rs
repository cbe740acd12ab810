//! Hostile peers that try to make a node hold memory for them (issue 13, items 1 and 2): a
//! 16 MiB command before connect, AMF0 null-array amplification, 16 MiB frames 1 ms apart and
//! a sequence header flood for a player that drips, a player that reads a trickle. Each runs
//! against an origin serving a real ffmpeg publisher to a real ffmpeg player and to our own
//! player, which must keep playing with no gap over 1 s; the node's RSS (VmRSS) is sampled
//! before and during the attack and must stay bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::rtmp::chunk::ChunkDecoder;
use common::rtmp::command::Command;
use common::rtmp::message::type_id;
use common::rtmp::{ClientConfig, ClientEvent, ClientSession};
use harness::rtmp::{Client, Watcher, handshaken, wait_playable};
use harness::{FfmpegPublisher, Origin, Played, StreamSpec, ffmpeg_play, wait_for};

const MIB: u64 = 1024 * 1024;

/// VmRSS of `pid` in bytes (0 once it is gone).
fn rss(pid: u32) -> u64 {
    harness::rss_kib(pid) * 1024
}

/// Samples the RSS of `pid` every 20 ms in the background; `stop` returns the peak.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let (peak, stop) = (
            Arc::new(AtomicU64::new(rss(pid))),
            Arc::new(AtomicBool::new(false)),
        );
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssPeak { peak, stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}

/// An origin with a real ffmpeg publisher on `live/victim`, our own player on it, and a real
/// ffmpeg player on it for `seconds` (in the background).
struct Scene {
    origin: Origin,
    _publisher: FfmpegPublisher,
    watcher: Watcher,
    ffmpeg: tokio::task::JoinHandle<Played>,
}

async fn scene(extra: &[&str], seconds: u32) -> Scene {
    let origin = Origin::start(extra);
    let publisher = FfmpegPublisher::start(&origin.rtmp_url("live/victim"), StreamSpec::default());
    wait_playable(&origin, "live/victim").await;
    let watcher = Watcher::start(origin.rtmp, "live/victim").await;
    let url = origin.rtmp_url("live/victim");
    let ffmpeg = tokio::task::spawn_blocking(move || {
        ffmpeg_play(&url, seconds, Duration::from_secs(u64::from(seconds) + 20))
    });
    Scene {
        origin,
        _publisher: publisher,
        watcher,
        ffmpeg,
    }
}

impl Scene {
    /// The real players kept playing: ffmpeg decoded without error, ours saw no gap over 1 s.
    async fn assert_players_ok(self, seconds: u32) {
        let (frames, gap) = self.watcher.finish().await;
        assert!(gap < 1000, "our player saw a {gap} ms gap");
        assert!(frames > 20, "our player got {frames} frames");
        let played = self.ffmpeg.await.expect("join");
        assert!(played.ok, "ffmpeg player failed: {}", played.stderr);
        let want = (seconds as usize * 25) * 8 / 10;
        assert!(
            played.video_frames >= want,
            "ffmpeg player decoded {} frames, want {want}",
            played.video_frames
        );
    }
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

/// Reads until the server closes `s` (within `limit`); returns what it sent.
fn read_to_close(mut s: TcpStream, limit: Duration) -> Vec<u8> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return all,
        }
    }
    panic!("connection still open after {limit:?}");
}

/// The names of the AMF0 commands in `bytes` (the server's chunk stream at 128).
fn command_names(bytes: &[u8]) -> Vec<String> {
    let mut d = ChunkDecoder::default();
    let mut buf = BytesMut::from(bytes);
    let mut names = Vec::new();
    while let Ok(Some(m)) = d.decode(&mut buf) {
        if m.type_id == type_id::COMMAND_AMF0
            && let Ok(c) = Command::parse(&m.payload)
        {
            names.push(c.name);
        }
    }
    names
}

/// A 16 MiB command before connect, and connect commands that are strict arrays of nulls
/// (60 KiB: under the pre-connect size bound, over the AMF0 value budget), many at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_connect_command_amplification_is_refused_and_rss_stays_bounded() {
    let seconds = 10;
    let sc = scene(&[], seconds).await;
    let addr = sc.origin.rtmp;
    let pid = sc.origin.proc.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss(pid);
    let peak = RssPeak::start(pid);

    let answers = tokio::task::spawn_blocking(move || {
        let mut answers = Vec::new();
        for round in 0..3 {
            let threads: Vec<_> = (0..16)
                .map(|i| {
                    std::thread::spawn(move || {
                        let mut s = handshaken(addr);
                        if (i + round) % 2 == 0 {
                            // 16 MiB announced, then as much of it as the server takes.
                            let mut v = chunk0(3, 0, 0xFF_FFFF, 20, 0);
                            v.extend_from_slice(&[0x02, 0x00, 0x07]);
                            v.extend_from_slice(b"connect");
                            let _ = s.write_all(&v);
                            let filler = vec![0x05u8; 1 << 20];
                            for _ in 0..16 {
                                if s.write_all(&filler).is_err() {
                                    break;
                                }
                            }
                        } else {
                            // connect(…, [null × 60000]) at chunk size 128 (3-byte type-3
                            // continuations are 1 byte each here: csid 3).
                            let mut body = vec![0x02, 0x00, 0x07];
                            body.extend_from_slice(b"connect");
                            body.push(0x0a);
                            body.extend_from_slice(&60_000u32.to_be_bytes());
                            body.resize(body.len() + 60_000, 0x05);
                            let mut v = chunk0(3, 0, body.len() as u32, 20, 0);
                            for (k, c) in body.chunks(128).enumerate() {
                                if k > 0 {
                                    v.push(0xC3);
                                }
                                v.extend_from_slice(c);
                            }
                            let _ = s.write_all(&v);
                        }
                        command_names(&read_to_close(s, Duration::from_secs(10)))
                    })
                })
                .collect();
            for t in threads {
                answers.push(t.join().expect("attacker"));
            }
        }
        answers
    })
    .await
    .expect("join");
    let peak = peak.stop();
    // Every hostile connection was closed; the oversized ones heard why first.
    assert_eq!(answers.len(), 48);
    assert!(
        answers
            .iter()
            .filter(|a| a.iter().any(|n| n == "_error"))
            .count()
            >= 24,
        "{answers:?}"
    );
    let growth = peak.saturating_sub(before);
    eprintln!(
        "rss before {} MiB, peak {} MiB (+{} MiB)",
        before / MIB,
        peak / MIB,
        growth / MIB
    );
    // 24 x 16 MiB commands and 24 null arrays (32 x 60 KiB of values each) used to be held
    // and decoded: hundreds of MiB. Now each costs its 64 KiB at most.
    assert!(growth < 48 * MIB, "rss grew by {} MiB", growth / MIB);
    sc.assert_players_ok(seconds).await;
}

/// A raw player: handshake and play `name`, then read `bite` bytes every `pause` until
/// `drain` is set; then it reads all it can and returns once the server has closed the
/// connection (what the server had queued in its socket buffers comes first).
fn drip_player(
    addr: SocketAddr,
    name: &str,
    (recv_buffer, bite, pause): (usize, usize, Duration),
    drain: Arc<AtomicBool>,
) -> Duration {
    let limit = Duration::from_secs(60);
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(recv_buffer).expect("rcvbuf");
    sock.connect(&addr.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut session = ClientSession::new(ClientConfig::new("live", "rtmp://x/live"));
    session.play(name);
    let mut buf = vec![0u8; 4096];
    let mut started = false;
    let end = Instant::now() + Duration::from_secs(10);
    while !started && Instant::now() < end {
        if let Some(out) = session.take_output() {
            s.write_all(&out).expect("write");
        }
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed before play started");
        session.handle_input(&buf[..n]).expect("input");
        while let Ok(Some(e)) = session.poll_event() {
            if e == ClientEvent::PlayStarted {
                started = true;
            }
        }
    }
    assert!(started, "drip player never started");
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let mut bite_buf = vec![0u8; 65536];
    while start.elapsed() < limit {
        let n = if drain.load(Ordering::Relaxed) {
            65536
        } else {
            std::thread::sleep(pause);
            bite
        };
        match s.read(&mut bite_buf[..n]) {
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
    panic!("drip player still connected after {limit:?}");
}

/// A hostile publisher on `live/flood` sending `count` messages from `make(i)`.
async fn flood(addr: SocketAddr, count: u32, make: impl Fn(u32) -> (u8, u32, Vec<u8>)) {
    let mut c = Client::connect(addr, "live").await.expect("connect");
    c.publish("flood", Instant::now() + Duration::from_secs(10))
        .await
        .expect("publish");
    for i in 0..count {
        let (tid, ts, payload) = make(i);
        if c.send(tid, ts, &payload).await.is_err() {
            break;
        }
    }
}

/// Frames of 16 MiB - 1 bytes, 1 ms apart (all keyframes), and then a flood of 1 MiB video
/// sequence headers and metadata, to a player that drips 1 KiB every 200 ms: the byte bound
/// of its queue (16 MiB here) holds, the drip player is closed, the node's RSS stays under
/// the bound plus the GOP cache and decoder buffers, and the real players are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_controlled_floods_close_a_drip_player_and_rss_stays_bounded() {
    let seconds = 14;
    let sc = scene(
        &[
            "--media-queue-max-bytes",
            "16777216",
            "--media-gop-max-bytes",
            "33554432",
        ],
        seconds,
    )
    .await;
    let addr = sc.origin.rtmp;
    let pid = sc.origin.proc.pid();
    for (what, big) in [
        ("16 MiB frames 1 ms apart", true),
        ("sequence header flood", false),
    ] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss(pid);
        let peak = RssPeak::start(pid);
        // The player asks first and waits for the stream (play_wait); the flood starts as soon
        // as the stream is published.
        let drain = Arc::new(AtomicBool::new(false));
        let d = drain.clone();
        let drip = tokio::task::spawn_blocking(move || {
            drip_player(addr, "flood", (4096, 1024, Duration::from_millis(200)), d)
        });
        let origin = &sc.origin;
        let closed_before = origin.metric("livecdn_media_slow_players_disconnected_total", "");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let attacker = tokio::spawn(async move {
            if big {
                flood(addr, 40, |i| {
                    let mut p = vec![0u8; 0xFF_FFFF];
                    p[..5].copy_from_slice(&[0x17, 1, 0, 0, 0]);
                    (type_id::VIDEO, 1000 + i, p)
                })
                .await;
            } else {
                flood(addr, 400, |i| {
                    if i == 0 {
                        (type_id::VIDEO, 0, vec![0x17, 1, 0, 0, 0, 1, 2, 3])
                    } else if i % 2 == 0 {
                        let mut p = vec![0u8; 1 << 20];
                        p[..5].copy_from_slice(&[0x17, 0, 0, 0, 0]);
                        (type_id::VIDEO, 0, p)
                    } else {
                        let mut body = BytesMut::new();
                        common::rtmp::amf0::encode_all(
                            &[
                                common::rtmp::amf0::Amf0Value::string("onMetaData"),
                                common::rtmp::amf0::Amf0Value::object([(
                                    "pad",
                                    common::rtmp::amf0::Amf0Value::string("x".repeat(200_000)),
                                )]),
                            ],
                            &mut body,
                        );
                        (type_id::DATA_AMF0, 0, body.to_vec())
                    }
                })
                .await;
            }
            // Holds the stream (and its caches) until the end of the case.
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let start = Instant::now();
        tokio::task::block_in_place(|| {
            wait_for(
                "the drip player to be disconnected",
                Duration::from_secs(30),
                || {
                    origin.metric("livecdn_media_slow_players_disconnected_total", "")
                        > closed_before
                },
            )
        });
        let closed_after = start.elapsed();
        drain.store(true, Ordering::Relaxed);
        let eof = drip.await.expect("drip player");
        let peak = peak.stop();
        attacker.abort();
        let growth = peak.saturating_sub(before);
        eprintln!(
            "{what}: drip player closed after {closed_after:?} (eof read after {eof:?}); rss before {} MiB, peak {} MiB (+{} MiB)",
            before / MIB,
            peak / MIB,
            growth / MIB
        );
        // Queue 16 MiB + GOP cache 32 MiB + the publisher's reassembly (16 MiB message,
        // copied once) + the player's wire form of one frame (16 MiB) + allocator slack.
        assert!(
            growth < 160 * MIB,
            "{what}: rss grew by {} MiB",
            growth / MIB
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        sc.origin
            .metric("livecdn_media_slow_players_disconnected_total", "")
            >= 2.0
    );
    sc.assert_players_ok(seconds).await;
}

/// A player that reads 4 KiB every 2 s with a full socket: each read lets a write move (with
/// the old stall timeout, reset by any progress, it stayed connected indefinitely; checked by
/// hand against it), but at 2 KiB/s, below `MIN_WRITE_RATE`, so the write stall timeout
/// (10 s) closes it. The queue policy is relaxed so that only the stall timeout can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickle_reading_player_is_closed_by_the_stall_timeout() {
    let seconds = 10;
    let sc = scene(
        &[
            "--net-write-timeout",
            "10s",
            "--media-queue-max-ms",
            "600000",
            "--media-slow-max-overflows",
            "1000",
            "--net-send-buffer",
            "4096",
        ],
        seconds,
    )
    .await;
    let addr = sc.origin.rtmp;
    let drain = Arc::new(AtomicBool::new(false));
    let d = drain.clone();
    let trickle = tokio::task::spawn_blocking(move || {
        drip_player(addr, "victim", (8192, 4096, Duration::from_secs(2)), d)
    });
    let start = Instant::now();
    // The old stall timeout was reset by every write that moved: never.
    tokio::task::block_in_place(|| {
        wait_for(
            "the trickle player's write timeout",
            Duration::from_secs(30),
            || {
                sc.origin
                    .metric("livecdn_net_connection_errors_total", "write_timeout")
                    >= 1.0
            },
        )
    });
    let closed_after = start.elapsed();
    drain.store(true, Ordering::Relaxed);
    let eof = trickle.await.expect("trickle player");
    eprintln!("trickle player closed after {closed_after:?} (eof read after {eof:?})");
    sc.assert_players_ok(seconds).await;
}

//! Test harness: a hostile client mix against one node, run in the background while real
//! players watch: slowloris HTTP connections (half a request head, then silence; reopened as
//! the server reaps them), junk RTMP (garbage instead of a handshake, and garbage chunks after
//! a real one) and plays of random names over HTTP-FLV and RTMP. It counts what it did and
//! how the server answered; it never panics (a refused attack is what the server should do).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::rtmp::{Client, try_handshaken};

/// How hard each attack pushes.
#[derive(Debug, Clone, Copy)]
pub struct FloodSpec {
    /// Slowloris connections held open at once.
    pub slowloris: usize,
    /// Threads each opening junk RTMP connections back to back.
    pub junk_rtmp: usize,
    /// Threads each playing random names back to back (HTTP-FLV and RTMP in turn).
    pub random_plays: usize,
}

impl Default for FloodSpec {
    fn default() -> Self {
        FloodSpec {
            slowloris: 200,
            junk_rtmp: 2,
            random_plays: 4,
        }
    }
}

/// What a flood did, and what the server answered.
#[derive(Debug, Default, Clone, Copy)]
pub struct FloodReport {
    /// Slowloris connections opened, and those the server closed (header timeout, limits).
    pub slowloris_opened: u64,
    pub slowloris_closed: u64,
    /// Junk RTMP connections, and those the server closed within 5 s.
    pub junk_rtmp: u64,
    pub junk_rtmp_closed: u64,
    /// Plays of names nobody publishes, and those refused (HTTP 4xx/5xx, an RTMP error
    /// status, or a closed connection) rather than left hanging.
    pub random_plays: u64,
    pub random_plays_refused: u64,
}

#[derive(Default)]
struct Counters {
    slowloris_opened: AtomicU64,
    slowloris_closed: AtomicU64,
    junk_rtmp: AtomicU64,
    junk_rtmp_closed: AtomicU64,
    random_plays: AtomicU64,
    random_plays_refused: AtomicU64,
}

/// A running flood; [`stop`](Self::stop) ends it and reports.
pub struct Flood {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flood {
    /// Starts every attack of `spec` against the node's HTTP and RTMP listeners.
    pub fn start(http: SocketAddr, rtmp: SocketAddr, spec: FloodSpec) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mut threads = Vec::new();
        let (s, c) = (stop.clone(), counters.clone());
        threads.push(std::thread::spawn(move || {
            slowloris(http, spec.slowloris, &s, &c)
        }));
        for k in 0..spec.junk_rtmp {
            let (s, c) = (stop.clone(), counters.clone());
            threads.push(std::thread::spawn(move || junk_rtmp(rtmp, k, &s, &c)));
        }
        for k in 0..spec.random_plays {
            let (s, c) = (stop.clone(), counters.clone());
            threads.push(std::thread::spawn(move || {
                random_plays(http, rtmp, k, &s, &c)
            }));
        }
        Flood {
            stop,
            counters,
            threads,
        }
    }

    /// Stops every attack (each finishes what it is doing, a few seconds at most).
    pub fn stop(self) -> FloodReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FloodReport {
            slowloris_opened: get(&c.slowloris_opened),
            slowloris_closed: get(&c.slowloris_closed),
            junk_rtmp: get(&c.junk_rtmp),
            junk_rtmp_closed: get(&c.junk_rtmp_closed),
            random_plays: get(&c.random_plays),
            random_plays_refused: get(&c.random_plays_refused),
        }
    }
}

/// Whether the server has closed `s` (reads nothing pending without blocking).
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Holds `count` half-sent request heads open, replacing each the server closes.
fn slowloris(http: SocketAddr, count: usize, stop: &AtomicBool, c: &Counters) {
    let open = || -> Option<TcpStream> {
        let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(2)).ok()?;
        s.write_all(b"GET /live/slow.flv HTTP/1.1\r\nHost: x\r\nUser-Agent: slow")
            .ok()?;
        s.set_nonblocking(true).ok()?;
        c.slowloris_opened.fetch_add(1, Ordering::Relaxed);
        Some(s)
    };
    let mut held: Vec<TcpStream> = Vec::with_capacity(count);
    while !stop.load(Ordering::Relaxed) {
        let before = held.len();
        held.retain_mut(|s| !closed(s));
        c.slowloris_closed
            .fetch_add((before - held.len()) as u64, Ordering::Relaxed);
        while held.len() < count && !stop.load(Ordering::Relaxed) {
            match open() {
                Some(s) => held.push(s),
                None => break,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Junk RTMP back to back: garbage instead of a handshake (odd connections), garbage chunks
/// after a real handshake (even ones). Each waits up to 5 s for the server to close it.
fn junk_rtmp(rtmp: SocketAddr, seed: usize, stop: &AtomicBool, c: &Counters) {
    let mut n = seed as u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let junk: Vec<u8> = (0..4096u64)
            .map(|i| (n.wrapping_mul(2_654_435_761).wrapping_add(i * 97) >> 3) as u8)
            .collect();
        let sock = if n.is_multiple_of(2) {
            try_handshaken(rtmp).ok()
        } else {
            TcpStream::connect_timeout(&rtmp, Duration::from_secs(2)).ok()
        };
        let Some(mut s) = sock else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        c.junk_rtmp.fetch_add(1, Ordering::Relaxed);
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        // The server may close before all of it is written: that is a fine answer.
        let _ = s.write_all(&junk);
        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
        let end = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 4096];
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => {
                    c.junk_rtmp_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    c.junk_rtmp_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// Plays of names nobody publishes, HTTP-FLV and RTMP in turn: `PLAYS_IN_FLIGHT` at once
/// per thread, each started as soon as the last one was answered.
fn random_plays(http: SocketAddr, rtmp: SocketAddr, seed: usize, stop: &AtomicBool, c: &Counters) {
    const PLAYS_IN_FLIGHT: u64 = 16;
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let lanes = (0..PLAYS_IN_FLIGHT).map(|lane| async move {
        let mut n = (seed as u64 * PLAYS_IN_FLIGHT + lane) << 32;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let name = format!("nobody{:x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16);
            c.random_plays.fetch_add(1, Ordering::Relaxed);
            if random_play(http, rtmp, &name, n.is_multiple_of(2)).await {
                c.random_plays_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    rt.block_on(futures::future::join_all(lanes));
}

/// One play of `name` over HTTP-FLV or RTMP; whether it was refused (an HTTP error status,
/// an RTMP error status, or the connection closed) within 10 s rather than left hanging.
async fn random_play(http: SocketAddr, rtmp: SocketAddr, name: &str, over_http: bool) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(10);
    if !over_http {
        return match Client::connect(rtmp, "live").await {
            Ok(mut client) => {
                client.play(name, deadline).await.is_err() && Instant::now() < deadline
            }
            Err(_) => true,
        };
    }
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(http).await.ok()?;
        let req =
            format!("GET /live/{name}.flv HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 64];
        let mut got = 0;
        while got < 12 {
            match s.read(&mut head[got..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let status: u16 = String::from_utf8_lossy(&head[..got])
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Some(status == 0 || status >= 400)
    };
    tokio::time::timeout_at(deadline.into(), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

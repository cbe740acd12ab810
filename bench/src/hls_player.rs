//! HLS players: one keep-alive HTTP/1.1 connection each ([`crate::http1`]), following a
//! media playlist ([`crate::m3u8`]) like a live player and fetching every new segment (plain
//! HLS) or part (LL-HLS) once, with the frames found in the media ([`TsScanner`] for MPEG-TS,
//! [`Mp4Scanner`] for fMP4) timed on arrival like any other player's.
//!
//! - **Plain**: starts at the newest segment; reloads the playlist every half target duration
//!   (or `--hls-poll`; the first reload at a random point of that interval), or with a
//!   blocking reload (`_HLS_msn`) when the playlist says CAN-BLOCK-RELOAD.
//! - **LL-HLS**: starts at the newest independent part; after fetching the new parts, asks for
//!   the next one with a blocking playlist reload (`_HLS_msn`/`_HLS_part`, `_HLS_skip=YES` when
//!   allowed), as RFC 8216bis players do. The preload hint is not requested: on loopback the
//!   blocking reload costs the same round trip.
//!
//! A failed request (an HTTP error, a segment gone from the window) is counted and the player
//! carries on; a broken connection or malformed media fails the player.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::hist::Histogram;
use crate::http1::{FeedError, Response, get_request};
use crate::m3u8::{MediaPlaylist, resolve, with_query};
use crate::mp4_scan::Mp4Scanner;
use crate::player::{
    CONNECTING, DONE, Fail, PLAYING, PlayerStats, Shared, Sock, Track, connect, read_once,
};
use crate::ts_scan::{Frame, TsScanner};

/// How HLS players follow the playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsMode {
    /// LL-HLS when the playlist has parts and blocking reload, plain otherwise.
    Auto,
    /// Whole segments only, even from an LL-HLS playlist.
    Plain,
    /// Parts and blocking reload (plain if the playlist has no parts).
    Ll,
}

/// What an HLS player did (read by the runner).
#[derive(Debug, Default)]
pub struct HlsCounters {
    pub playlists: AtomicU64,
    /// Playlist requests with `_HLS_msn`.
    pub blocking: AtomicU64,
    pub segments: AtomicU64,
    pub parts: AtomicU64,
    pub inits: AtomicU64,
    /// Failed requests the player carried on after.
    pub errors: AtomicU64,
    /// Connections opened after the first (the server closed a keep-alive connection).
    pub reconnects: AtomicU64,
    /// Start to the first playlist with something to play, us (0: none yet).
    pub first_playlist_us: AtomicU64,
    /// 0 not yet known, 1 plain, 2 LL-HLS.
    pub mode: AtomicU8,
}

/// Largest playlist accepted.
const MAX_PLAYLIST: usize = 4 * 1024 * 1024;

/// One keep-alive connection.
struct Conn<'a> {
    shared: &'a Shared,
    st: &'a PlayerStats,
    addr: SocketAddr,
    host: &'a str,
    sock: Option<Sock>,
    req: Vec<u8>,
    opened: u64,
}

fn feed_error(e: FeedError<Fail>) -> Fail {
    match e {
        FeedError::Http(e) => Fail(format!("protocol:{e}")),
        FeedError::Sink(f) => f,
    }
}

impl Conn<'_> {
    /// GETs `path`, handing the body to `sink` when the status is 200; returns the status. A
    /// reused connection the server closed meanwhile is reopened once.
    async fn get(
        &mut self,
        path: &str,
        sink: &mut impl FnMut(&[u8], Instant) -> Result<(), Fail>,
    ) -> Result<u16, Fail> {
        get_request(&mut self.req, self.host, path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let reused = self.sock.is_some();
            let mut sock = match self.sock.take() {
                Some(s) => s,
                None => {
                    let s = connect(self.shared, self.addr).await?;
                    if self.opened > 0 {
                        self.st.hls.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    self.opened += 1;
                    s
                }
            };
            let retry = reused && attempt == 1;
            if let Err(e) = sock.write_all(&self.req).await {
                if retry {
                    continue;
                }
                return Err(Fail::io("write", &e));
            }
            let mut resp = Response::new();
            let st = self.st;
            let outcome = loop {
                let read = read_once(&mut sock, None, |b, at| {
                    st.received(b.len(), at);
                    resp.feed(b, &mut |status, body| {
                        if status == 200 {
                            sink(body, at)
                        } else {
                            Ok(())
                        }
                    })
                    .map_err(feed_error)
                })
                .await;
                match read {
                    Ok(true) if resp.is_done() => break Ok(true),
                    Ok(true) => {}
                    Ok(false) => {
                        resp.eof();
                        if resp.is_done() {
                            break Ok(true);
                        }
                        break if retry && resp.is_untouched() {
                            Ok(false)
                        } else {
                            Err(Fail::new("eof"))
                        };
                    }
                    Err(_) if retry && resp.is_untouched() => break Ok(false),
                    Err(f) => break Err(f),
                }
            };
            match outcome {
                Ok(true) => {
                    if !resp.close {
                        self.sock = Some(sock);
                    }
                    return Ok(resp.status);
                }
                Ok(false) => continue,
                Err(f) => return Err(f),
            }
        }
    }

    /// GETs a playlist: (status, the playlist if 200 and one).
    async fn playlist(&mut self, path: &str) -> Result<(u16, Option<MediaPlaylist>), Fail> {
        let mut text = Vec::new();
        let status = self
            .get(path, &mut |b, _| {
                if text.len() + b.len() > MAX_PLAYLIST {
                    return Err(Fail::new("playlist_too_large"));
                }
                text.extend_from_slice(b);
                Ok(())
            })
            .await?;
        self.st.hls.playlists.fetch_add(1, Ordering::Relaxed);
        if status != 200 {
            return Ok((status, None));
        }
        Ok((
            status,
            MediaPlaylist::parse(&String::from_utf8_lossy(&text)),
        ))
    }
}

/// The media scanners of one player (their state spans responses: the init segment's track).
struct Media<'t, 'a> {
    track: &'t mut Track<'a>,
    ts: TsScanner<Instant>,
    mp4: Mp4Scanner,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Init,
    Segment,
    Part,
}

impl Media<'_, '_> {
    /// GETs a segment, part or init segment at `uri` (relative to `base`); counts it.
    async fn fetch(
        &mut self,
        conn: &mut Conn<'_>,
        base: &str,
        uri: &str,
        kind: Kind,
    ) -> Result<(), Fail> {
        let path = resolve(base, uri);
        let ts = path.split('?').next().is_some_and(|p| p.ends_with(".ts"));
        let Media {
            track,
            ts: tsc,
            mp4,
        } = self;
        let mut on_frame = |f: Frame, at: Instant| track.video_frame(f.keyframe, f.stamp, at);
        let status = conn
            .get(&path, &mut |b, at| {
                if ts {
                    tsc.feed(b, at, &mut on_frame)
                        .map_err(|e| Fail(format!("protocol:ts_{e:?}").to_lowercase()))
                } else {
                    mp4.feed(b, at, &mut on_frame)
                        .map_err(|e| Fail(format!("protocol:mp4_{e:?}").to_lowercase()))
                }
            })
            .await;
        if ts {
            tsc.finish(&mut on_frame);
        } else {
            mp4.finish();
        }
        let status = status?;
        let c = &conn.st.hls;
        let (counter, what) = match kind {
            Kind::Init => (&c.inits, "init"),
            Kind::Segment => (&c.segments, "segment"),
            Kind::Part => (&c.parts, "part"),
        };
        if status == 200 {
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            conn.shared
                .soft_error(conn.st, &format!("{what}_http_{status}"));
        }
        Ok(())
    }

    /// Fetches the init segment when the playlist names a new one.
    async fn init(
        &mut self,
        conn: &mut Conn<'_>,
        base: &str,
        pl: &MediaPlaylist,
        current: &mut Option<String>,
    ) -> Result<(), Fail> {
        if let Some(map) = &pl.map
            && current.as_ref() != Some(map)
        {
            self.fetch(conn, base, map, Kind::Init).await?;
            *current = Some(map.clone());
        }
        Ok(())
    }
}

/// Runs one HLS player on the playlist at `path` until it fails or the run ends.
pub async fn run(
    shared: &Shared,
    st: &PlayerStats,
    hist: &Histogram,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(), Fail> {
    if st.stalled {
        return Err(Fail::new("stalled_hls_players_unsupported"));
    }
    let start = Instant::now();
    let mut conn = Conn {
        shared,
        st,
        addr,
        host,
        sock: None,
        req: Vec::with_capacity(256),
        opened: 0,
    };
    let mut track = Track::new(st, shared, hist, start);
    let mut media = Media {
        track: &mut track,
        ts: TsScanner::new(),
        mp4: Mp4Scanner::new(),
    };

    // The first playlist with something to play; retried while the server has none yet (a
    // stream starting, nginx-rtmp before its first fragment).
    let deadline = start + shared.connect_timeout;
    let pl = loop {
        let last = match conn.playlist(path).await {
            Ok((200, Some(pl))) if pl.playable() => break pl,
            Ok((200, None)) => return Err(Fail::new("bad_playlist")),
            Ok((status, _)) => Fail(format!("first_playlist_http_{status}")),
            Err(f) => f,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    st.hls
        .first_playlist_us
        .store(start.elapsed().as_micros().max(1) as u64, Ordering::Relaxed);
    let ll = match shared.hls_mode {
        HlsMode::Plain => false,
        HlsMode::Ll => pl.part_target_s.is_some(),
        HlsMode::Auto => pl.part_target_s.is_some() && pl.can_block_reload,
    };
    st.hls.mode.store(if ll { 2 } else { 1 }, Ordering::Relaxed);
    let burst = if ll {
        pl.part_target_s.unwrap_or(0.0)
    } else {
        pl.target_duration_s
    };
    st.burst_us
        .store((burst.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    let _ = st
        .state
        .compare_exchange(CONNECTING, PLAYING, Ordering::Relaxed, Ordering::Relaxed);
    let mut map = None;
    media.init(&mut conn, path, &pl, &mut map).await?;
    if ll {
        low_latency(&mut conn, &mut media, path, pl, &mut map).await
    } else {
        plain(&mut conn, &mut media, path, pl, &mut map).await
    }
}

async fn plain(
    conn: &mut Conn<'_>,
    media: &mut Media<'_, '_>,
    path: &str,
    mut pl: MediaPlaylist,
    map: &mut Option<String>,
) -> Result<(), Fail> {
    let shared = conn.shared;
    let mut next = pl.segments.last().map_or(0, |s| s.msn);
    // The first reload comes after a random part of the interval, so the clients' reloads are
    // spread over it whatever the server did with the first request: livecdn holds the first
    // request of a new packager until a segment completes, which would otherwise line those
    // clients' reloads up with segment completions (and flatter their latency).
    let mut phase = Some(jitter(conn.st));
    loop {
        if let Some(first) = pl.segments.first()
            && next < first.msn
        {
            shared.soft_error(conn.st, "segments_missed");
            next = first.msn;
        }
        for seg in &pl.segments {
            if seg.msn >= next {
                media.fetch(conn, path, &seg.uri, Kind::Segment).await?;
                next = seg.msn + 1;
            }
        }
        if pl.endlist {
            return Err(Fail::new("ended"));
        }
        if shared.phase() == DONE {
            return Ok(());
        }
        let reload = if pl.can_block_reload {
            conn.st.hls.blocking.fetch_add(1, Ordering::Relaxed);
            with_query(path, &format!("_HLS_msn={next}"))
        } else {
            let every = shared.hls_poll.map_or_else(
                || (pl.target_duration_s / 2.0).clamp(0.1, 10.0),
                |d| d.as_secs_f64(),
            );
            let wait = every * phase.take().unwrap_or(1.0);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            path.to_string()
        };
        match conn.playlist(&reload).await? {
            (200, Some(p)) => {
                pl = p;
                media.init(conn, path, &pl, map).await?;
            }
            (status, _) => {
                shared.soft_error(conn.st, &format!("playlist_http_{status}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A number in [0, 1) that differs between players (no RNG dependency: a hash of the
/// player's address and the clock).
fn jitter(st: &PlayerStats) -> f64 {
    let seed = (st as *const PlayerStats as u64) ^ crate::stream::ns_since_epoch(Instant::now());
    // SplitMix64 finalizer.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

async fn low_latency(
    conn: &mut Conn<'_>,
    media: &mut Media<'_, '_>,
    path: &str,
    mut pl: MediaPlaylist,
    map: &mut Option<String>,
) -> Result<(), Fail> {
    let shared = conn.shared;
    // (msn, part index) of the next part to fetch: first the newest independent part.
    let mut cursor = pl
        .parts()
        .filter(|(_, _, p)| p.independent)
        .last()
        .map(|(m, i, _)| (m, i))
        .or_else(|| pl.segments.last().map(|s| (s.msn, 0)))
        .unwrap_or((pl.next_msn(), 0));
    loop {
        for seg in &pl.segments {
            if seg.msn < cursor.0 {
                continue;
            }
            if seg.parts.is_empty() {
                // Too old to be listed with parts: the whole segment, if not begun.
                if cursor == (seg.msn, 0) {
                    media.fetch(conn, path, &seg.uri, Kind::Segment).await?;
                } else {
                    shared.soft_error(conn.st, "parts_missed");
                }
            } else {
                for (i, p) in seg.parts.iter().enumerate() {
                    if seg.msn > cursor.0 || i >= cursor.1 {
                        media.fetch(conn, path, &p.uri, Kind::Part).await?;
                    }
                }
            }
            cursor = (seg.msn + 1, 0);
        }
        let open = pl.next_msn();
        if cursor.0 < open {
            shared.soft_error(conn.st, "parts_missed");
            cursor = (open, 0);
        }
        for (i, p) in pl.open_parts.iter().enumerate() {
            if i >= cursor.1 {
                media.fetch(conn, path, &p.uri, Kind::Part).await?;
                cursor = (open, i + 1);
            }
        }
        if pl.endlist {
            return Err(Fail::new("ended"));
        }
        if shared.phase() == DONE {
            return Ok(());
        }
        let skip = if pl.can_skip { "&_HLS_skip=YES" } else { "" };
        let reload = with_query(
            path,
            &format!("_HLS_msn={}&_HLS_part={}{skip}", cursor.0, cursor.1),
        );
        conn.st.hls.blocking.fetch_add(1, Ordering::Relaxed);
        match conn.playlist(&reload).await? {
            (200, Some(p)) => {
                pl = p;
                media.init(conn, path, &pl, map).await?;
            }
            (status, _) => {
                shared.soft_error(conn.st, &format!("playlist_http_{status}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

//! HLS over HTTP: one packager task per stream and node, started by the first HLS request (it
//! plays the stream like any player, so an edge pulls it) and stopped when no HLS request came
//! for `hls.idle_timeout`; playlists with LL-HLS blocking reload; segments, parts and init
//! segments served from memory. Must not cut or mux media itself: that is `hls`, `ts`, `fmp4`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::watch;
use tracing::debug;

use super::http::json_error;
use super::{NetContext, Node, PlayRequest, Refusal};
use crate::hls::{Availability, Container, HlsConfig, Render, Segmenter};
use crate::media::{CloseReason, MediaFrame, lock};
use crate::telemetry::metric;

/// HLS options of a node.
#[derive(Debug, Clone)]
pub struct HlsOptions {
    pub segmenter: HlsConfig,
    /// A stream's packager stops after this long without an HLS request for it.
    pub idle_timeout: Duration,
    /// `Access-Control-Allow-Origin` of HLS responses; empty: no CORS header.
    pub cors_origin: String,
    /// Script URLs of the player page.
    pub hlsjs_url: String,
    pub mpegtsjs_url: String,
    /// How long a first playlist request waits for an unpublished stream (`media.play_wait`).
    pub play_wait: Duration,
}

impl Default for HlsOptions {
    fn default() -> Self {
        Self {
            segmenter: HlsConfig::default(),
            idle_timeout: Duration::from_secs(30),
            cors_origin: "*".into(),
            hlsjs_url: "https://cdn.jsdelivr.net/npm/hls.js@1/dist/hls.min.js".into(),
            mpegtsjs_url: "https://cdn.jsdelivr.net/npm/mpegts.js@1/dist/mpegts.js".into(),
            play_wait: Duration::from_secs(5),
        }
    }
}

/// Viewers are estimated from the distinct client addresses that asked within this long.
const VIEWER_WINDOW: Duration = Duration::from_secs(10);
/// Addresses remembered per stream for that estimate.
const VIEWER_MAX: usize = 10_000;

/// The packagers of a node, by stream key.
#[derive(Default)]
pub struct HlsStreams {
    streams: Mutex<HashMap<String, Arc<HlsStream>>>,
}

/// One stream's packager state, shared by its task and the HTTP handlers.
pub struct HlsStream {
    seg: Mutex<Segmenter>,
    /// Bumped when a part or segment completes, or the packager stops.
    changed: watch::Sender<u64>,
    /// Set when the packager stopped (why), so waiting requests answer at once.
    stopped: Mutex<Option<Refusal>>,
    /// Milliseconds since `born` of the last request.
    last_request: AtomicU64,
    born: Instant,
    viewers: Mutex<HashMap<IpAddr, Instant>>,
    /// Playlists rendered at the segmenter's current generation.
    playlists: Mutex<PlaylistCache>,
    /// `Cache-Control` of blocking playlist responses.
    blocking_cache: HeaderValue,
}

/// The playlists of one segmenter generation: a stream's clients ask for the same few (plain
/// or LL, delta or not, with the same query), so each is rendered once per part, not once per
/// request.
#[derive(Default)]
struct PlaylistCache {
    generation: u64,
    entries: Vec<CachedPlaylist>,
}

struct CachedPlaylist {
    container: Container,
    skip: bool,
    base: String,
    query: String,
    text: Bytes,
}

/// Distinct playlists kept per generation (queries may carry per-viewer tokens).
const PLAYLIST_CACHE_MAX: usize = 16;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl HlsStream {
    fn touch(&self, peer: IpAddr) {
        self.last_request
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
        let mut v = lock(&self.viewers);
        if v.len() >= VIEWER_MAX && !v.contains_key(&peer) {
            v.retain(|_, t| t.elapsed() < VIEWER_WINDOW);
            if v.len() >= VIEWER_MAX {
                return;
            }
        }
        v.insert(peer, Instant::now());
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_request.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    /// Distinct client addresses that asked within the last few seconds.
    pub fn viewers(&self) -> usize {
        let mut v = lock(&self.viewers);
        v.retain(|_, t| t.elapsed() < VIEWER_WINDOW);
        v.len()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Waits until `ready` holds on the segmenter, the packager stops, or `deadline`.
    async fn wait_until(
        &self,
        deadline: Duration,
        mut ready: impl FnMut(&Segmenter) -> Option<Result<(), Response>>,
    ) -> Result<(), Response> {
        let mut rx = self.changed.subscribe();
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(r) = ready(&lock(&self.seg)) {
                return r;
            }
            if let Some(r) = lock(&self.stopped).clone() {
                return Err(json_error(r.http_status, &r.description));
            }
            match tokio::time::timeout_at(end, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(json_error(503, "timed out waiting for media")),
            }
        }
    }
}

impl HlsStreams {
    /// Viewers by stream key, for the APIs and the players gauge.
    pub fn viewers(&self) -> Vec<(String, usize)> {
        let streams: Vec<_> = lock(&self.streams)
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        streams.into_iter().map(|(k, s)| (k, s.viewers())).collect()
    }

    /// Estimated HLS viewers of one stream, if it is packaged here.
    pub fn viewers_of(&self, key: &str) -> Option<usize> {
        let stream = lock(&self.streams).get(key).cloned()?;
        Some(stream.viewers())
    }
}

/// The packager of `req`'s stream, started if none runs.
fn packager<N: Node>(ctx: &Arc<NetContext<N>>, req: &PlayRequest, peer: IpAddr) -> Arc<HlsStream> {
    let key = req.key();
    let mut streams = lock(&ctx.hls.streams);
    if let Some(s) = streams.get(&key) {
        s.touch(peer);
        return s.clone();
    }
    let stream = Arc::new(HlsStream {
        seg: Mutex::new({
            let mut seg = Segmenter::new(ctx.hls_options.segmenter.clone());
            // Parts and TS segments in memfds: plaintext HTTP/1 sends them with sendfile.
            seg.set_store(super::zerocopy::store);
            seg
        }),
        changed: watch::channel(0).0,
        stopped: Mutex::new(None),
        last_request: AtomicU64::new(0),
        born: Instant::now(),
        viewers: Mutex::new(HashMap::new()),
        playlists: Mutex::new(PlaylistCache::default()),
        // RFC 8216bis: a blocking response names one version of the playlist and may be
        // cached (six target durations).
        blocking_cache: HeaderValue::from_str(&format!(
            "public, max-age={}",
            6 * ctx.hls_options.segmenter.target_ms.div_ceil(1000)
        ))
        .unwrap_or(HeaderValue::from_static("no-cache")),
    });
    stream.touch(peer);
    streams.insert(key.clone(), stream.clone());
    drop(streams);
    let req = PlayRequest {
        protocol: "hls",
        ..req.clone()
    };
    tokio::spawn(run_packager(ctx.clone(), req, stream.clone()));
    stream
}

/// Plays the stream into the segmenter until no one asked for a while. A publisher that ends
/// is waited for again (a republish continues the same playlist after a discontinuity).
async fn run_packager<N: Node>(ctx: Arc<NetContext<N>>, req: PlayRequest, stream: Arc<HlsStream>) {
    let key = req.key();
    let idle = ctx.hls_options.idle_timeout;
    let _gauge = metric::GaugeGuard::new(metrics::gauge!(metric::HLS_PACKAGERS));
    let players = metrics::gauge!(metric::PLAYERS, "protocol" => "hls");
    // This stream's share of the HLS players gauge, taken back when the packager stops.
    let mut counted = 0usize;
    let mut sessions = 0u64;
    let why = loop {
        if ctx.shutdown.is_cancelled() || stream.idle_for() > idle {
            break Refusal::not_found("stream ended");
        }
        let mut sub = match ctx.node.play(&req).await {
            Ok(sub) => sub,
            Err(r) if sessions == 0 => break r,
            // Ended and not back: keep the playlist a while for late requests, then stop.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if sessions > 0 {
            lock(&stream.seg).new_session();
        }
        sessions += 1;
        let mut frames: Vec<Arc<MediaFrame>> = Vec::with_capacity(64);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // Until the cached GOP that starts the subscription has been packaged.
        let mut priming = sessions == 1;
        let ended = loop {
            tokio::select! {
                r = sub.recv(&mut frames, 64) => match r {
                    Ok(_) => {
                        let now = wall_ms();
                        let mut seg = lock(&stream.seg);
                        let mut changed = frames.drain(..).fold(false, |c, f| seg.push(&f, now) | c);
                        // The queue ran dry: the burst of cached frames is in.
                        if priming && sub.try_recv(&mut frames, 64) == 0 {
                            priming = !seg.primed() && seg.segments().is_empty();
                        }
                        changed |= frames.drain(..).fold(false, |c, f| seg.push(&f, now) | c);
                        drop(seg);
                        if changed {
                            stream.bump();
                        }
                    }
                    Err(reason) => break Some(reason),
                },
                _ = tick.tick() => {
                    let now = stream.viewers();
                    players.increment(now as f64 - counted as f64);
                    counted = now;
                    if stream.idle_for() > idle || ctx.shutdown.is_cancelled() {
                        break None;
                    }
                }
            }
        };
        lock(&stream.seg).end();
        stream.bump();
        match ended {
            None => break Refusal::not_found("stream no longer packaged"),
            Some(CloseReason::Ended) => debug!(stream = %key, "hls: publisher ended"),
            Some(r) => debug!(stream = %key, reason = r.as_str(), "hls: subscription closed"),
        }
    };
    {
        let mut streams = lock(&ctx.hls.streams);
        if streams.get(&key).is_some_and(|s| Arc::ptr_eq(s, &stream)) {
            streams.remove(&key);
        }
    }
    players.decrement(counted as f64);
    *lock(&stream.stopped) = Some(why);
    stream.bump();
}

/// What an HLS URL under `/{app}/{name}/` names.
enum Resource {
    Playlist(Container),
    Init(String),
    Segment(String, Container),
    Part(String, usize),
}

fn resource(file: &str) -> Option<Resource> {
    match file {
        "index.m3u8" => return Some(Resource::Playlist(Container::Fmp4)),
        "ts.m3u8" => return Some(Resource::Playlist(Container::Ts)),
        _ => {}
    }
    if let Some(stem) = file.strip_suffix(".mp4") {
        return stem
            .starts_with("init-")
            .then(|| Resource::Init(stem.to_string()));
    }
    if let Some(stem) = file.strip_suffix(".ts") {
        return Some(Resource::Segment(stem.to_string(), Container::Ts));
    }
    let stem = file.strip_suffix(".m4s")?;
    match stem.rsplit_once('.') {
        Some((seg, part)) => Some(Resource::Part(seg.to_string(), part.parse().ok()?)),
        None => Some(Resource::Segment(stem.to_string(), Container::Fmp4)),
    }
}

/// `_HLS_msn`, `_HLS_part`, `_HLS_skip` and the rest of the query (kept for child URIs).
#[derive(Debug, Default)]
struct HlsQuery {
    msn: Option<u64>,
    part: Option<u64>,
    skip: bool,
    rest: String,
    bad: bool,
}

fn parse_query(query: &str) -> HlsQuery {
    let mut q = HlsQuery::default();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "_HLS_msn" => {
                q.msn = v.parse().ok().or_else(|| {
                    q.bad = true;
                    None
                })
            }
            "_HLS_part" => {
                q.part = v.parse().ok().or_else(|| {
                    q.bad = true;
                    None
                })
            }
            "_HLS_skip" => q.skip = v == "YES" || v == "v2",
            _ => rest.push(pair),
        }
    }
    if q.part.is_some() && q.msn.is_none() {
        q.bad = true;
    }
    if !rest.is_empty() {
        q.rest = format!("?{}", rest.join("&"));
    }
    q
}

/// `GET /{app}/{name}.m3u8` (base `{name}/`) or `/{app}/{name}/{file}` (base empty).
pub async fn serve<N: Node>(
    ctx: Arc<NetContext<N>>,
    req: PlayRequest,
    peer: IpAddr,
    file: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    // Every HLS request, not only the playlist: a segment, part or init URL without a valid
    // token is refused (the playlist hands its query to every URI it lists). The packager's
    // own play is not checked again.
    if let Err(r) = ctx.admit_play(&req) {
        metrics::counter!(metric::PLAYS_REFUSED, "protocol" => "hls", "reason" => r.reason)
            .increment(1);
        return with_cors(
            json_error(r.http_status, &r.description),
            &ctx.hls_options.cors_origin,
        );
    }
    let (resource, base) = match file {
        None => (
            Resource::Playlist(Container::Fmp4),
            format!("{}/", req.name),
        ),
        Some(f) => match resource(f) {
            Some(r) => (r, String::new()),
            None => return json_error(404, "unknown HLS resource"),
        },
    };
    let query = parse_query(&req.query);
    if query.bad {
        return json_error(400, "bad _HLS_msn/_HLS_part");
    }
    if ctx.shutdown.is_cancelled() {
        return json_error(503, "shutting down");
    }
    let stream = match &resource {
        // Only a playlist starts packaging; the rest is served from what runs.
        Resource::Playlist(_) => {
            if ctx.is_draining() && lock(&ctx.hls.streams).get(&req.key()).is_none() {
                return json_error(503, "node is draining: connect to another node");
            }
            packager(&ctx, &req, peer)
        }
        _ => match lock(&ctx.hls.streams).get(&req.key()) {
            Some(s) => {
                s.touch(peer);
                s.clone()
            }
            None => return json_error(404, "stream not packaged here: ask for its playlist first"),
        },
    };
    let opts = &ctx.hls_options;
    let target = Duration::from_millis(u64::from(opts.segmenter.target_ms));
    let resp = match resource {
        Resource::Playlist(container) => {
            playlist(&stream, container, &query, &base, target, opts.play_wait).await
        }
        Resource::Init(name) => {
            let init = lock(&stream.seg)
                .init()
                .filter(|i| i.name == name)
                .map(|i| i.data.clone());
            match init {
                Some(data) => media(data, "video/mp4", headers),
                None => json_error(404, "no such init segment"),
            }
        }
        Resource::Segment(name, container) => {
            let seg = lock(&stream.seg).segment(&name);
            match (seg, container) {
                (Some(s), Container::Fmp4) => {
                    media_chunks(s.fmp4().cloned().collect(), "video/mp4", headers)
                }
                (Some(s), Container::Ts) => media(s.ts().clone(), "video/mp2t", headers),
                (None, _) => json_error(404, "segment not in the window"),
            }
        }
        Resource::Part(name, index) => {
            // A preload hint's target: wait (bounded) for it to complete.
            let mut found = None;
            let waited = stream
                .wait_until(3 * target, |seg| {
                    if let Some(p) = seg.part(&name, index) {
                        found = Some(p);
                        return Some(Ok(()));
                    }
                    if seg.part_pending(&name, index) {
                        None
                    } else {
                        Some(Err(json_error(404, "part not in the window")))
                    }
                })
                .await;
            match (waited, found) {
                (Ok(()), Some(p)) => media(p.data.clone(), "video/mp4", headers),
                (Err(r), _) => r,
                (Ok(()), None) => json_error(404, "part not in the window"),
            }
        }
    };
    with_cors(resp, &opts.cors_origin)
}

async fn playlist(
    stream: &HlsStream,
    container: Container,
    q: &HlsQuery,
    base: &str,
    target: Duration,
    play_wait: Duration,
) -> Response {
    let blocking = q.msn.is_some();
    // A first request waits for something to play (the stream may be starting); a blocking
    // one waits for the part or segment it names, at most three target durations.
    let deadline = if blocking {
        3 * target
    } else {
        play_wait + 2 * target
    };
    let waited = stream
        .wait_until(deadline, |seg| match q.msn {
            Some(msn) => match seg.availability(msn, q.part) {
                Availability::Ready => Some(Ok(())),
                Availability::TooFar => Some(Err(json_error(400, "_HLS_msn is too far ahead"))),
                Availability::Pending => None,
            },
            // A plain request waits for a complete segment: players that do not block
            // (ffmpeg, plain HLS) and hls.js's first load treat a playlist of parts only as
            // empty. Only a packager's first seconds wait; an LL client's blocking requests
            // then follow the parts.
            None => (!seg.segments().is_empty()).then_some(Ok(())),
        })
        .await;
    if let Err(r) = waited {
        return r;
    }
    let text = {
        let seg = lock(&stream.seg);
        let mut cache = lock(&stream.playlists);
        if cache.generation != seg.generation() {
            cache.generation = seg.generation();
            cache.entries.clear();
        }
        let hit = cache.entries.iter().find(|e| {
            e.container == container && e.skip == q.skip && e.base == base && e.query == q.rest
        });
        match hit {
            Some(e) => Some(e.text.clone()),
            None => {
                let render = Render {
                    container,
                    skip: q.skip,
                    base,
                    query: &q.rest,
                };
                let text = crate::hls::render(&seg, &render).map(Bytes::from);
                if let Some(text) = &text {
                    if cache.entries.len() >= PLAYLIST_CACHE_MAX {
                        cache.entries.remove(0);
                    }
                    cache.entries.push(CachedPlaylist {
                        container,
                        skip: q.skip,
                        base: base.to_string(),
                        query: q.rest.clone(),
                        text: text.clone(),
                    });
                }
                text
            }
        }
    };
    let Some(text) = text else {
        return json_error(503, "nothing to play yet");
    };
    // The plain URL changes with every part: not cached.
    let cache = if blocking {
        stream.blocking_cache.clone()
    } else {
        HeaderValue::from_static("no-cache")
    };
    let mut resp = Response::new(Body::from(text));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    h.insert(header::CACHE_CONTROL, cache);
    resp
}

/// A part or init segment: immutable, cacheable, `Range` honoured.
fn media(data: Bytes, content_type: &'static str, headers: &HeaderMap) -> Response {
    media_chunks(vec![data], content_type, headers)
}

/// A segment (its parts back to back), part or init segment: immutable, cacheable, `Range`
/// honoured. The chunks are sent as they are, not joined (a range of several is joined).
fn media_chunks(chunks: Vec<Bytes>, content_type: &'static str, headers: &HeaderMap) -> Response {
    let len: usize = chunks.iter().map(Bytes::len).sum();
    crate::telemetry::count_egress(
        &metrics::counter!(metric::BYTES_SENT, "protocol" => "hls"),
        len as u64,
    );
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len));
    let (status, content_range, body) = match range {
        Some(Ok((start, end))) => (
            StatusCode::PARTIAL_CONTENT,
            Some(format!("bytes {start}-{end}/{len}")),
            Body::from(joined(chunks).slice(start..=end)),
        ),
        Some(Err(())) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            Some(format!("bytes */{len}")),
            Body::empty(),
        ),
        None if chunks.len() == 1 => (StatusCode::OK, None, Body::from(joined(chunks))),
        None => (
            StatusCode::OK,
            None,
            Body::new(Chunks {
                chunks: chunks.into_iter(),
                left: len as u64,
            }),
        ),
    };
    // Static header values: no allocation or validation per response.
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600, immutable"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(v) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert(header::CONTENT_RANGE, v);
    }
    resp
}

/// The chunks as one buffer: the only one as it is, several copied together.
fn joined(chunks: Vec<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.into_iter().next().unwrap_or_default();
    }
    let mut out = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
    for c in &chunks {
        out.extend_from_slice(c);
    }
    out.into()
}

/// A response body of several shared buffers, of a known length.
struct Chunks {
    chunks: std::vec::IntoIter<Bytes>,
    left: u64,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let next = self.chunks.next();
        if let Some(c) = &next {
            self.left = self.left.saturating_sub(c.len() as u64);
        }
        std::task::Poll::Ready(next.map(|c| Ok(hyper::body::Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// One `bytes=` range (`a-b`, `a-`, `-n`) of a body of `len` bytes: inclusive bounds, or
/// `Err` when unsatisfiable. Several ranges are answered with the whole body (`None`).
fn parse_range(v: &str, len: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = v.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: usize = n.parse().ok()?;
            if n == 0 {
                return Some(Err(()));
            }
            (len.saturating_sub(n), len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<usize>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    Some(if start <= end && end < len {
        Ok((start, end))
    } else {
        Err(())
    })
}

fn with_cors(mut resp: Response, origin: &str) -> Response {
    let value = match origin {
        "" => None,
        "*" => Some(HeaderValue::from_static("*")),
        _ => HeaderValue::from_str(origin).ok(),
    };
    if let Some(v) = value {
        resp.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Some(Ok((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }

    fn body_of(resp: Response) -> (StatusCode, Vec<u8>) {
        use http_body_util::BodyExt;
        let status = resp.status();
        let body = futures::executor::block_on(resp.into_body().collect())
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        (status, body)
    }

    #[test]
    fn a_segment_of_several_chunks_is_served_whole_and_by_range() {
        let chunks = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg")];
        let resp = media_chunks(chunks.clone(), "video/mp4", &HeaderMap::new());
        // hyper sends Content-Length from the exact size.
        assert_eq!(hyper::body::Body::size_hint(resp.body()).exact(), Some(7));
        assert_eq!(body_of(resp), (StatusCode::OK, b"abcdefg".to_vec()));
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=2-4"));
        let resp = media_chunks(chunks, "video/mp4", &headers);
        assert_eq!(
            resp.headers().get(header::CONTENT_RANGE),
            Some(&HeaderValue::from_static("bytes 2-4/7"))
        );
        assert_eq!(
            body_of(resp),
            (StatusCode::PARTIAL_CONTENT, b"cde".to_vec())
        );
    }

    #[test]
    fn hls_query_keeps_the_rest_for_child_uris() {
        let q = parse_query("token=abc&_HLS_msn=12&_HLS_part=3&_HLS_skip=YES&x=1");
        assert_eq!(
            (q.msn, q.part, q.skip, q.bad),
            (Some(12), Some(3), true, false)
        );
        assert_eq!(q.rest, "?token=abc&x=1");
        assert!(parse_query("_HLS_part=1").bad);
        assert!(parse_query("_HLS_msn=x").bad);
    }

    #[test]
    fn resources() {
        assert!(
            matches!(resource("12.m4s"), Some(Resource::Segment(s, Container::Fmp4)) if s == "12")
        );
        assert!(matches!(resource("12_3400.2.m4s"), Some(Resource::Part(s, 2)) if s == "12_3400"));
        assert!(
            matches!(resource("12.ts"), Some(Resource::Segment(s, Container::Ts)) if s == "12")
        );
        assert!(matches!(
            resource("init-0a0b0c0d.mp4"),
            Some(Resource::Init(_))
        ));
        assert!(matches!(
            resource("ts.m3u8"),
            Some(Resource::Playlist(Container::Ts))
        ));
        assert!(resource("x.mp4").is_none());
        assert!(resource("12.x.m4s").is_none());
    }
}

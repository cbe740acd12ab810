//! The hub: the one fan-out point. Per stream it caches metadata, sequence headers and the last
//! GOP, and pushes each published frame into every subscriber's bounded queue: on the
//! publisher's thread for most streams, through shard tasks on every worker for hot ones
//! (`shard`). Must not know any protocol or the cluster; takes no global lock per frame.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::frame::MediaFrame;
use super::lock;
use super::shard::{Fanout, ShardStats};
use super::subscriber::{BATCH_MAX, CloseReason, SubShared, Subscriber};

/// Bounds of the hub's caches and queues.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Keep the last GOP so a new player starts on a keyframe at once.
    pub gop_cache: bool,
    /// A GOP longer than this (frames) is not cached.
    pub gop_max_frames: usize,
    /// A GOP larger than this (bytes) is not cached.
    pub gop_max_bytes: usize,
    /// A subscriber's queue may hold this many milliseconds of media before it drops to the
    /// next keyframe.
    pub queue_max_ms: u32,
    /// ... and at most this many payload bytes, headers and metadata included (a publisher
    /// controls timestamps: 16 MiB frames 1 ms apart are little media time).
    pub queue_max_bytes: usize,
    /// A subscriber that overflows this many times within `slow_window_ms` of media is closed.
    pub slow_max_overflows: u32,
    pub slow_window_ms: u32,
    /// A stream with this many subscribers has its fan-out split across shard tasks (`shard`);
    /// below, the publisher's own thread pushes to every subscriber.
    pub fanout_min_subscribers: usize,
    /// How many shards a hot stream is split into: 0 = one per runtime worker; 1 = never shard.
    pub fanout_shards: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            gop_cache: true,
            gop_max_frames: 2048,
            gop_max_bytes: 32 * 1024 * 1024,
            queue_max_ms: 10_000,
            queue_max_bytes: 64 * 1024 * 1024,
            slow_max_overflows: 3,
            slow_window_ms: 60_000,
            fanout_min_subscribers: 128,
            fanout_shards: 0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    #[error("stream {0} is already being published")]
    AlreadyPublishing(String),
}

/// All streams of a node, by key `app/name`.
pub struct Hub {
    config: HubConfig,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    next_id: AtomicU64,
    /// Payload bytes in all streams' GOP caches, and their high-water mark (what the node's
    /// memory must hold at least: `gop_cache_bytes`).
    gop_bytes: AtomicUsize,
    gop_peak: AtomicUsize,
}

impl Hub {
    pub fn new(config: HubConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            gop_bytes: AtomicUsize::new(0),
            gop_peak: AtomicUsize::new(0),
        })
    }

    /// Payload bytes the GOP caches of all streams hold now, and the most they have held at
    /// once since the node started (the floor of the node's memory under this load).
    pub fn gop_cache_bytes(&self) -> (usize, usize) {
        (
            self.gop_bytes.load(Ordering::Relaxed),
            self.gop_peak.load(Ordering::Relaxed),
        )
    }

    /// Books a change of one stream's GOP cache from `before` to `after` bytes.
    fn account_gop(&self, before: usize, after: usize) {
        if after >= before {
            let now =
                self.gop_bytes.fetch_add(after - before, Ordering::Relaxed) + (after - before);
            self.gop_peak.fetch_max(now, Ordering::Relaxed);
        } else {
            self.gop_bytes.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Finds or creates the stream of `key` and runs `f` on its state while the hub map is
    /// still locked, so `remove_if_unused` cannot drop the entry between the lookup and the
    /// registration of a publisher or subscriber (which would strand it on a stream nobody
    /// else can reach). Lock order: hub map, then stream state.
    fn with_entry<R>(
        self: &Arc<Self>,
        key: &str,
        f: impl FnOnce(&Arc<Stream>, &mut StreamState) -> R,
    ) -> (Arc<Stream>, R) {
        let mut streams = lock(&self.streams);
        let stream = streams
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Stream {
                    key: key.to_string(),
                    hub: Arc::downgrade(self),
                    state: Mutex::new(StreamState::default()),
                    published: tokio::sync::Notify::new(),
                    stats: StreamStats::default(),
                })
            })
            .clone();
        let r = f(&stream, &mut lock(&stream.state));
        drop(streams);
        (stream, r)
    }

    /// Becomes the publisher of `key`; refused while another publisher has it.
    pub fn publish(self: &Arc<Self>, key: &str) -> Result<Publisher, HubError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kicked = CancellationToken::new();
        let (stream, claimed) = self.with_entry(key, |_, st| {
            if st.publisher.is_some() {
                return false;
            }
            st.publisher = Some(id);
            st.publisher_kick = Some(kicked.clone());
            self.account_gop(st.gop_bytes, 0);
            st.reset_caches();
            true
        });
        if !claimed {
            return Err(HubError::AlreadyPublishing(key.to_string()));
        }
        stream.published.notify_waiters();
        Ok(Publisher { stream, id, kicked })
    }

    /// Subscribes to `key`, primed with what the stream has cached. The stream need not be
    /// published yet: the subscriber then waits for the publisher.
    pub fn subscribe(self: &Arc<Self>, key: &str) -> Subscriber {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(SubShared::new(id, self.config.clone()));
        let (stream, ()) = self.with_entry(key, |stream, st| {
            st.prime(&shared);
            st.add_subscriber(shared.clone(), &self.config, stream);
        });
        Subscriber::new(stream, shared)
    }

    /// Tells the publisher of `key` to stop (taken over elsewhere, kicked by an operator).
    /// Returns whether there was one.
    pub fn kick_publisher(&self, key: &str) -> bool {
        let Some(stream) = self.get(key) else {
            return false;
        };
        let st = lock(&stream.state);
        match &st.publisher_kick {
            Some(k) => {
                k.cancel();
                true
            }
            None => false,
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Stream>> {
        lock(&self.streams).get(key).cloned()
    }

    /// Every stream currently known (published or awaited).
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        lock(&self.streams).values().cloned().collect()
    }

    /// Ends every stream: subscribers see `reason` after what is queued.
    pub fn close_all(&self, reason: CloseReason) {
        for s in self.streams() {
            s.close_subscribers(reason);
        }
    }
}

/// Per-stream counters readable without the stream lock.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub frames_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Bytes written to this stream's players (all protocols), counted by the players.
    pub bytes_out: AtomicU64,
    pub frames_dropped: AtomicU64,
}

/// One stream: caches plus the list of subscribers.
pub struct Stream {
    key: String,
    hub: std::sync::Weak<Hub>,
    state: Mutex<StreamState>,
    /// Woken when a publisher arrives, for players that came first.
    published: tokio::sync::Notify,
    pub stats: StreamStats,
}

/// A snapshot of a stream for APIs and metrics.
#[derive(Debug, Clone)]
pub struct StreamSnapshot {
    pub key: String,
    pub publishing: bool,
    pub subscribers: usize,
    pub metadata: Option<Arc<MediaFrame>>,
    pub video_sequence_header: Option<Arc<MediaFrame>>,
    pub audio_sequence_header: Option<Arc<MediaFrame>>,
}

impl Stream {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn snapshot(&self) -> StreamSnapshot {
        let st = lock(&self.state);
        StreamSnapshot {
            key: self.key.clone(),
            publishing: st.publisher.is_some(),
            subscribers: st.subscriber_count(),
            metadata: st.metadata.clone(),
            video_sequence_header: st.video_seq.clone(),
            audio_sequence_header: st.audio_seq.clone(),
        }
    }

    pub fn is_publishing(&self) -> bool {
        lock(&self.state).publisher.is_some()
    }

    /// Resolves once the stream has a publisher.
    pub async fn wait_published(&self) {
        loop {
            let notified = self.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_publishing() {
                return;
            }
            notified.await;
        }
    }

    pub fn subscriber_count(&self) -> usize {
        lock(&self.state).subscriber_count()
    }

    /// Members and batches delivered of each shard of this stream's fan-out (empty while the
    /// publisher's thread fans out alone).
    pub fn fanout_shards(&self) -> Vec<ShardStats> {
        (lock(&self.state).fan.as_ref()).map_or_else(Vec::new, Fanout::stats)
    }

    /// Closes every subscriber with `reason`, after the frames handed to it so far.
    fn close_subscribers(&self, reason: CloseReason) {
        lock(&self.state).close_subscribers(reason);
    }

    pub(super) fn remove_subscriber(&self, id: u64) {
        {
            let mut st = lock(&self.state);
            if !st.fan.as_mut().is_some_and(|fan| fan.remove(id)) {
                st.subscribers.retain(|s| s.id != id);
            }
            // Shards end once their last subscriber has gone: a stream that comes back is
            // fanned out inline until it is hot again.
            if st.fan.as_ref().is_some_and(|fan| fan.len() == 0) {
                st.fan = None;
            }
        }
        self.remove_if_unused();
    }

    /// Books `n` frames not delivered to a player.
    pub(super) fn count_dropped(&self, n: usize, reason: &'static str) {
        if n > 0 {
            self.stats
                .frames_dropped
                .fetch_add(n as u64, Ordering::Relaxed);
            metrics::counter!(crate::telemetry::metric::FRAMES_DROPPED, "reason" => reason)
                .increment(n as u64);
        }
    }

    /// Drops the hub entry once nobody publishes or waits on it.
    fn remove_if_unused(&self) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut streams = lock(&hub.streams);
        let st = lock(&self.state);
        if st.publisher.is_none() && st.subscriber_count() == 0 {
            // Only remove the entry if it is still this stream (a new one may have replaced it).
            if streams
                .get(&self.key)
                .is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), self))
            {
                streams.remove(&self.key);
            }
        }
    }
}

#[derive(Default)]
struct StreamState {
    publisher: Option<u64>,
    publisher_kick: Option<CancellationToken>,
    metadata: Option<Arc<MediaFrame>>,
    video_seq: Option<Arc<MediaFrame>>,
    audio_seq: Option<Arc<MediaFrame>>,
    gop: VecDeque<Arc<MediaFrame>>,
    gop_bytes: usize,
    /// The current GOP outgrew the bounds: cache nothing until the next keyframe.
    gop_overflow: bool,
    /// The subscribers the publisher's thread pushes to (all of them unless `fan`).
    subscribers: Vec<Arc<SubShared>>,
    /// A hot stream's shards, which own its subscribers instead.
    fan: Option<Fanout>,
    /// Audio published since the last frame that woke the players: it rides along with the
    /// next one (`wakes`), so each player is touched once per video frame, not per message.
    riders: Vec<Arc<MediaFrame>>,
    /// Media timestamp of the last frame that woke the players.
    last_wake_ms: Option<u32>,
}

/// Players whose state the fan-out loads together (`fan_out`).
const TOUCH_AHEAD: usize = 8;

/// Audio alone wakes players at most this often (in media time): with video, audio rides
/// along with the next video frame, so a player writes once per video frame, not once per
/// message (~68 -> ~25 writes/s at 25 fps + AAC), which is most of the kernel's cost.
const AUDIO_WAKE_MS: i32 = 100;

/// Whether `frame` should wake the players now, with the `riders` waiting before it.
fn wakes(frame: &MediaFrame, last_wake_ms: Option<u32>, riders: usize) -> bool {
    if !frame.is_audio() || frame.sequence_header || riders + 1 >= BATCH_MAX {
        return true;
    }
    let Some(last) = last_wake_ms else {
        return true;
    };
    let d = frame.timestamp_ms.wrapping_sub(last) as i32;
    // Far backwards is a discontinuity, not audio slightly behind video.
    !(-10_000..AUDIO_WAKE_MS).contains(&d)
}

impl StreamState {
    fn reset_caches(&mut self) {
        self.metadata = None;
        self.video_seq = None;
        self.audio_seq = None;
        self.clear_gop();
        self.riders.clear();
        self.last_wake_ms = None;
    }

    fn subscriber_count(&self) -> usize {
        self.subscribers.len() + self.fan.as_ref().map_or(0, Fanout::len)
    }

    /// Registers a primed subscriber: with the publisher's thread, or in a shard once the
    /// stream is hot (then the inline ones move to shards too: nothing is in flight to them).
    fn add_subscriber(&mut self, sub: Arc<SubShared>, config: &HubConfig, stream: &Arc<Stream>) {
        if self.fan.is_none() && self.subscribers.len() + 1 >= config.fanout_min_subscribers {
            self.fan = Fanout::start(config, stream);
        }
        let Some(mut fan) = self.fan.take() else {
            self.subscribers.push(sub);
            return;
        };
        for s in std::mem::take(&mut self.subscribers) {
            fan.add(s, || self.headers());
        }
        fan.add(sub, || self.headers());
        self.fan = Some(fan);
    }

    fn close_subscribers(&self, reason: CloseReason) {
        for s in &self.subscribers {
            s.close(reason);
        }
        if let Some(fan) = &self.fan {
            fan.close(reason);
        }
    }

    /// The current metadata and sequence headers.
    fn headers(&self) -> Vec<Arc<MediaFrame>> {
        let headers = [&self.metadata, &self.video_seq, &self.audio_seq];
        headers.into_iter().flatten().cloned().collect()
    }

    fn clear_gop(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
    }

    fn prime(&self, sub: &SubShared) {
        let mut frames = self.headers();
        // Riders the GOP cache holds too (its last frames) come with the next wake: priming
        // with them as well would deliver them twice.
        let riding = (self.riders.iter().rev().zip(self.gop.iter().rev()))
            .take_while(|(r, g)| Arc::ptr_eq(r, g))
            .count();
        frames.extend(self.gop.iter().take(self.gop.len() - riding).cloned());
        sub.prime(frames);
    }

    fn cache(&mut self, frame: &Arc<MediaFrame>, config: &HubConfig) {
        if frame.kind == super::FrameKind::Data {
            self.metadata = Some(frame.clone());
            return;
        }
        if frame.sequence_header {
            if frame.is_video() {
                self.video_seq = Some(frame.clone());
            } else {
                self.audio_seq = Some(frame.clone());
            }
            return;
        }
        if !config.gop_cache {
            return;
        }
        if frame.is_video() && frame.keyframe {
            self.clear_gop();
            self.gop_overflow = false;
        } else if self.gop.is_empty() {
            // Nothing before the first keyframe is worth priming with.
            return;
        }
        if self.gop_overflow {
            return;
        }
        self.gop_bytes += frame.payload.len();
        self.gop.push_back(frame.clone());
        if self.gop.len() > config.gop_max_frames || self.gop_bytes > config.gop_max_bytes {
            self.clear_gop();
            self.gop_overflow = true;
        }
    }

    /// Hands the riders and `frame` to every subscriber, or to the shards that own them;
    /// returns how many frames the inline ones dropped.
    fn fan_out(&mut self, frame: Option<Arc<MediaFrame>>, config: &HubConfig) -> usize {
        let mut batch = std::mem::take(&mut self.riders);
        batch.extend(frame);
        let dropped = push_all(&self.subscribers, &batch);
        if !batch.is_empty()
            && let Some(mut fan) = self.fan.take()
        {
            fan.send(&batch, config, || self.headers());
            self.fan = Some(fan);
        }
        batch.clear();
        // Keeps the allocation for the next riders.
        self.riders = batch;
        dropped
    }
}

/// Pushes `batch` to each of `subs`; returns how many frames they dropped. A few players at a
/// time: their state is loaded first, with independent loads whose cache misses overlap, where
/// taking each lock in turn would wait for one miss after another (and then for one more
/// behind each socket).
pub(super) fn push_all(subs: &[Arc<SubShared>], batch: &[Arc<MediaFrame>]) -> usize {
    let mut dropped = 0;
    for group in subs.chunks(TOUCH_AHEAD) {
        group.iter().for_each(|sub| sub.touch());
        group.iter().for_each(|sub| sub.touch_sink());
        dropped += group.iter().map(|sub| sub.push(batch)).sum::<usize>();
    }
    dropped
}

/// The right to publish one stream; dropping it ends the stream for its subscribers.
pub struct Publisher {
    stream: Arc<Stream>,
    id: u64,
    kicked: CancellationToken,
}

impl Publisher {
    /// Cancelled when someone asked this publisher to stop (`Hub::kick_publisher`).
    pub fn kicked(&self) -> &CancellationToken {
        &self.kicked
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Fans one frame out: caches it and queues it to every subscriber.
    pub fn send(&self, frame: MediaFrame) {
        let frame = Arc::new(frame);
        let stats = &self.stream.stats;
        stats.frames_in.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_in
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
        let Some(hub) = self.stream.hub.upgrade() else {
            return;
        };
        let mut st = lock(&self.stream.state);
        let gop_before = st.gop_bytes;
        st.cache(&frame, &hub.config);
        hub.account_gop(gop_before, st.gop_bytes);
        if !wakes(&frame, st.last_wake_ms, st.riders.len()) {
            st.riders.push(frame);
            return;
        }
        st.last_wake_ms = Some(frame.timestamp_ms);
        let dropped = st.fan_out(Some(frame), &hub.config);
        drop(st);
        self.stream.count_dropped(dropped, "slow_player");
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        {
            let mut st = lock(&self.stream.state);
            if st.publisher == Some(self.id) {
                // The last audio still goes out before the end (through the shards too).
                let config = self.stream.hub.upgrade().map(|h| h.config.clone());
                let dropped = st.fan_out(None, &config.unwrap_or_default());
                self.stream.count_dropped(dropped, "slow_player");
                st.publisher = None;
                st.publisher_kick = None;
                if let Some(hub) = self.stream.hub.upgrade() {
                    hub.account_gop(st.gop_bytes, 0);
                }
                st.reset_caches();
                st.close_subscribers(CloseReason::Ended);
            }
        }
        self.stream.remove_if_unused();
    }
}

//! A subscriber's bounded queue, measured in milliseconds of media, and its drop policy:
//! on overflow drop to the next keyframe (never sequence headers or metadata); close a
//! subscriber that stays too slow. Must not block the publisher: every operation is O(1)
//! amortised under a per-subscriber lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::frame::{FrameKind, MediaFrame};
use super::hub::{HubConfig, Stream};
use super::lock;

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The publisher stopped (delivered after the queued frames).
    Ended,
    /// The subscriber kept falling behind.
    TooSlow,
    /// An operator or shutdown closed it.
    Kicked,
    /// The node is shutting down (delivered after the queued frames).
    Shutdown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Ended => "ended",
            CloseReason::TooSlow => "too_slow",
            CloseReason::Kicked => "kicked",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

struct Queue {
    frames: VecDeque<Arc<MediaFrame>>,
    /// Video is being dropped until the next keyframe.
    awaiting_keyframe: bool,
    closed: Option<CloseReason>,
    /// Media timestamps of recent overflows, to tell "slow for a moment" from "too slow".
    overflows: VecDeque<u32>,
    /// Media timestamp of the last frame that woke the player.
    last_wake_ms: Option<u32>,
}

/// Audio alone wakes a player at most this often (in media time): with video, audio rides
/// along with the next video frame, so a player writes once per video frame, not once per
/// message (~68 -> ~25 writes/s at 25 fps + AAC), which is most of the kernel's cost.
const AUDIO_WAKE_MS: i32 = 100;

/// Whether `frame` should wake the player now.
fn wakes(frame: &MediaFrame, last_wake_ms: Option<u32>) -> bool {
    if !frame.is_audio() {
        return true;
    }
    let Some(last) = last_wake_ms else {
        return true;
    };
    let d = frame.timestamp_ms.wrapping_sub(last) as i32;
    // Far backwards is a discontinuity, not audio slightly behind video.
    !(-10_000..AUDIO_WAKE_MS).contains(&d)
}

/// The half of a subscription the hub holds.
pub(super) struct SubShared {
    pub(super) id: u64,
    config: HubConfig,
    queue: Mutex<Queue>,
    notify: Notify,
    /// Cancelled when the subscription must end at once (kicked, too slow), so a player
    /// blocked in a socket write can give up.
    cancel: CancellationToken,
    pub(super) dropped: AtomicU64,
}

fn is_header(f: &MediaFrame) -> bool {
    f.sequence_header || f.kind == FrameKind::Data
}

impl SubShared {
    pub(super) fn new(id: u64, config: HubConfig) -> Self {
        Self {
            id,
            config,
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                awaiting_keyframe: true,
                closed: None,
                overflows: VecDeque::new(),
                last_wake_ms: None,
            }),
            notify: Notify::new(),
            cancel: CancellationToken::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Initial frames: headers then the cached GOP (which starts on a keyframe).
    pub(super) fn prime(&self, frames: Vec<Arc<MediaFrame>>) {
        let mut q = lock(&self.queue);
        for f in frames {
            if f.is_video() && f.keyframe && !f.sequence_header {
                q.awaiting_keyframe = false;
            }
            q.frames.push_back(f);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Queues one frame; returns how many frames this call dropped.
    pub(super) fn push(&self, frame: &Arc<MediaFrame>) -> usize {
        let mut q = lock(&self.queue);
        if q.closed.is_some() {
            return 0;
        }
        let mut dropped = 0;
        if q.awaiting_keyframe && !is_header(frame) {
            if frame.is_video() && frame.keyframe {
                q.awaiting_keyframe = false;
            } else if frame.is_video() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return 1;
            }
        }
        q.frames.push_back(frame.clone());
        if queued_ms(&q.frames) > self.config.queue_max_ms {
            dropped = self.overflow(&mut q, frame.timestamp_ms);
            // The keyframe that overflowed the queue is the one to resume from: dropping it
            // too would cost the player a whole extra GOP.
            if frame.is_video() && frame.keyframe && q.closed.is_none() {
                q.frames.push_back(frame.clone());
                q.awaiting_keyframe = false;
                dropped -= 1;
                self.dropped.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let wake = wakes(frame, q.last_wake_ms) || q.closed.is_some();
        if wake {
            q.last_wake_ms = Some(frame.timestamp_ms);
        }
        drop(q);
        if wake {
            self.notify.notify_one();
        }
        dropped
    }

    /// Drops queued media (keeping headers) and waits for the next keyframe; closes the
    /// subscriber if this happens too often.
    fn overflow(&self, q: &mut Queue, now_ms: u32) -> usize {
        let before = q.frames.len();
        q.frames.retain(|f| is_header(f));
        let dropped = before - q.frames.len();
        self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        q.awaiting_keyframe = true;
        q.overflows.push_back(now_ms);
        let window = self.config.slow_window_ms;
        while q
            .overflows
            .front()
            .is_some_and(|&t| now_ms.wrapping_sub(t) > window)
        {
            q.overflows.pop_front();
        }
        if q.overflows.len() as u32 >= self.config.slow_max_overflows {
            q.frames.clear();
            q.closed = Some(CloseReason::TooSlow);
            self.cancel.cancel();
            metrics::counter!(crate::telemetry::metric::SLOW_PLAYERS_DISCONNECTED).increment(1);
        }
        dropped
    }

    pub(super) fn close(&self, reason: CloseReason) {
        let mut q = lock(&self.queue);
        if q.closed.is_none() {
            q.closed = Some(reason);
            if matches!(reason, CloseReason::Kicked | CloseReason::TooSlow) {
                q.frames.clear();
                self.cancel.cancel();
            }
        }
        drop(q);
        self.notify.notify_one();
    }
}

/// Milliseconds of media between the oldest queued media frame and the newest. Headers do
/// not count (metadata is often re-sent with timestamp 0), and the distance is the shorter way
/// round the 32-bit clock: a newest frame slightly behind the oldest (audio and video
/// interleaved out of order) is a few milliseconds, not 4 billion, while a large jump either
/// way still counts as large, so the queue stays bounded.
fn queued_ms(frames: &VecDeque<Arc<MediaFrame>>) -> u32 {
    let first = frames.iter().find(|f| !is_header(f));
    let last = frames.iter().rev().find(|f| !is_header(f));
    let (Some(first), Some(last)) = (first, last) else {
        return 0;
    };
    let forward = last.timestamp_ms.wrapping_sub(first.timestamp_ms);
    forward.min(first.timestamp_ms.wrapping_sub(last.timestamp_ms))
}

/// The player's half of a subscription. Dropping it unsubscribes.
pub struct Subscriber {
    stream: Arc<Stream>,
    shared: Arc<SubShared>,
}

impl Subscriber {
    pub(super) fn new(stream: Arc<Stream>, shared: Arc<SubShared>) -> Self {
        Self { stream, shared }
    }

    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Frames this subscriber lost to overflow.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits for frames and moves up to `max` of them into `out`. Returns the close reason
    /// once the subscription has ended and its queue is drained.
    pub async fn recv(
        &mut self,
        out: &mut Vec<Arc<MediaFrame>>,
        max: usize,
    ) -> Result<(), CloseReason> {
        loop {
            {
                let mut q = lock(&self.shared.queue);
                if !q.frames.is_empty() {
                    let n = q.frames.len().min(max);
                    out.extend(q.frames.drain(..n));
                    return Ok(());
                }
                if let Some(reason) = q.closed {
                    return Err(reason);
                }
            }
            self.shared.notify.notified().await;
        }
    }

    /// Takes what is queued without waiting.
    pub fn try_recv(&mut self, out: &mut Vec<Arc<MediaFrame>>, max: usize) -> usize {
        let mut q = lock(&self.shared.queue);
        let n = q.frames.len().min(max);
        out.extend(q.frames.drain(..n));
        n
    }

    /// Cancelled when the subscription ends at once (kicked or too slow): race socket
    /// writes against it.
    pub fn cancelled(&self) -> CancellationToken {
        self.shared.cancel.clone()
    }

    /// Why the subscription was closed, if it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        lock(&self.shared.queue).closed
    }

    /// Ends this subscription from outside (kick, shutdown).
    pub fn closer(&self) -> SubscriberCloser {
        SubscriberCloser(self.shared.clone())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stream.remove_subscriber(self.shared.id);
    }
}

/// A handle that can end a subscription from another task.
#[derive(Clone)]
pub struct SubscriberCloser(Arc<SubShared>);

impl SubscriberCloser {
    pub fn close(&self, reason: CloseReason) {
        self.0.close(reason);
    }
}

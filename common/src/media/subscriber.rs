//! A subscriber's bounded queue, measured in milliseconds of media and in bytes (headers and
//! metadata included: a publisher controls timestamps), and its drop policy: on overflow drop
//! to the next keyframe (keeping the latest sequence headers and metadata); close a
//! subscriber that stays too slow, or whose headers alone outgrow the byte bound. Must not
//! block the publisher: every operation is O(1) amortised under a per-subscriber lock, and a
//! direct write (below) never blocks.
//!
//! Direct delivery: a player that keeps up lends its socket to the fan-out (`DirectSink`).
//! While its queue is empty and its task has nothing in flight, the publisher's fan-out
//! writes each frame straight to the socket: one non-blocking syscall per player and frame,
//! no task wake-up, no poll. When the socket does not take everything (or the player's task
//! needs to write itself), the queue takes over again and the task drains it as before.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Poll, Waker};

use bytes::Bytes;
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

/// A player's socket that the fan-out may write to directly while the player keeps up.
pub trait DirectSink: Send + Sync {
    /// Writes what the socket takes now, without blocking (`WouldBlock` if nothing).
    fn try_write(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize>;
    /// Loads what `try_write` reads first, ahead of it (see `hub::fan_out`).
    fn touch(&self) {}
}

/// A protocol's wire form of a frame, in up to three parts (any may be empty): a header, the
/// frame's own payload (no copy) and a trailer.
pub type WireFn = for<'a> fn(&'a MediaFrame) -> [&'a [u8]; 3];

/// Appends the wire forms of `frames` minus their first `written` bytes (what a direct write
/// already sent of them: see `Subscriber::recv`).
pub fn unwritten_wire(
    bufs: &mut Vec<Bytes>,
    frames: &[Arc<MediaFrame>],
    mut written: usize,
    wire: WireFn,
) {
    for f in frames {
        for part in wire(f) {
            let skip = written.min(part.len());
            written -= skip;
            if skip < part.len() {
                bufs.push(f.wire_bytes(&part[skip..]));
            }
        }
    }
}

/// A socket lent to the fan-out, and the wire form its protocol writes.
struct Direct {
    sink: Arc<dyn DirectSink>,
    wire: WireFn,
}

/// The fan-out hands a subscriber at most this many frames at once (see `hub::wakes`), and
/// so at most this many go out in one direct write.
pub(super) const BATCH_MAX: usize = 16;

/// A player's task takes frames from its queue until it holds this many payload bytes (at
/// least one frame): what it holds while it writes counts against no queue, so a player
/// reading slowly must not take a whole batch of 16 MiB frames at once.
const TAKE_MAX_BYTES: usize = 1024 * 1024;

/// Queue slots an emptied queue keeps (it shrinks back to this after a backlog).
const KEPT_SLOTS: usize = 16;

/// In C layout, the fields a direct write reads first: with the mutex's own word they fill
/// the first cache line of `SubShared`.
#[repr(C)]
struct Queue {
    /// The fan-out may write to `sink` now: the player's task is idle with nothing in flight
    /// (so nothing is queued).
    direct: bool,
    /// Video is being dropped until the next keyframe.
    awaiting_keyframe: bool,
    closed: Option<CloseReason>,
    sink: Option<Direct>,
    frames: VecDeque<Arc<MediaFrame>>,
    /// Payload bytes of `frames`.
    bytes: usize,
    /// Bytes at the front of `frames` already written by a partial direct write: the player
    /// must send the rest of those frames first (and they must not be dropped).
    written: usize,
    /// Frames at the front of `frames` that `written` reaches into.
    pinned: usize,
    /// The player's task, parked in `recv`.
    waker: Option<Waker>,
    /// Media timestamps of recent overflows, to tell "slow for a moment" from "too slow".
    overflows: VecDeque<u32>,
}

/// The half of a subscription the hub holds. Cache-line aligned, the queue's lock and the
/// fields a direct write reads in the first line: the fan-out touches thousands per frame.
#[repr(C, align(64))]
pub(super) struct SubShared {
    queue: Mutex<Queue>,
    pub(super) id: u64,
    config: HubConfig,
    /// Cancelled when the subscription must end at once (kicked, too slow), so a player
    /// blocked in a socket write can give up.
    cancel: CancellationToken,
    pub(super) dropped: AtomicU64,
}

pub(super) fn is_header(f: &MediaFrame) -> bool {
    f.sequence_header || f.kind == FrameKind::Data
}

/// Which of the (at most three) headers a player needs `f` is: metadata, video or audio
/// sequence header.
fn header_class(f: &MediaFrame) -> Option<usize> {
    match f.kind {
        FrameKind::Data => Some(0),
        FrameKind::Video if f.sequence_header => Some(1),
        FrameKind::Audio if f.sequence_header => Some(2),
        _ => None,
    }
}

impl SubShared {
    pub(super) fn new(id: u64, config: HubConfig) -> Self {
        Self {
            queue: Mutex::new(Queue {
                direct: false,
                awaiting_keyframe: true,
                closed: None,
                sink: None,
                frames: VecDeque::new(),
                bytes: 0,
                written: 0,
                pinned: 0,
                waker: None,
                overflows: VecDeque::new(),
            }),
            id,
            config,
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
            q.bytes += f.payload.len();
            q.frames.push_back(f);
        }
        q.wake();
    }

    /// Loads this subscriber's first cache line ahead of `push` (see `hub::fan_out`).
    pub(super) fn touch(&self) {
        std::hint::black_box(self.queue.is_poisoned());
    }

    /// Loads the direct sink's state ahead of `push`, if the next frame will go to it.
    pub(super) fn touch_sink(&self) {
        if let Ok(q) = self.queue.try_lock()
            && q.direct
            && let Some(d) = &q.sink
        {
            d.sink.touch();
        }
    }

    /// Delivers a batch from the fan-out: audio that rode along (never filtered) and, last,
    /// the frame that woke the players. Written straight to the socket if the player is
    /// idle, else queued for its task. Returns how many frames this call dropped.
    pub(super) fn push(&self, batch: &[Arc<MediaFrame>]) -> usize {
        let Some(last) = batch.last() else {
            return 0;
        };
        let mut q = lock(&self.queue);
        if q.closed.is_some() {
            return 0;
        }
        let (mut batch, mut dropped) = (batch, 0);
        if q.awaiting_keyframe && last.is_video() && !is_header(last) {
            if last.keyframe {
                q.awaiting_keyframe = false;
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                batch = &batch[..batch.len() - 1];
                dropped = 1;
                if batch.is_empty() {
                    return dropped;
                }
            }
        }
        // The common case of a player that keeps up: out it goes, nothing is queued.
        if q.direct && q.write_direct(batch) {
            return dropped;
        }
        q.frames.extend(batch.iter().cloned());
        q.bytes += batch.iter().map(|f| f.payload.len()).sum::<usize>();
        if q.bytes > self.config.queue_max_bytes || queued_ms(&q.frames) > self.config.queue_max_ms
        {
            dropped += self.overflow(&mut q, last.timestamp_ms);
            // The keyframe that overflowed the queue is the one to resume from: dropping it
            // too would cost the player a whole extra GOP. (It may not have been dropped: a
            // direct write may have started on it.)
            let kept = q.frames.back().is_some_and(|f| Arc::ptr_eq(f, last));
            if last.is_video()
                && last.keyframe
                && !last.sequence_header
                && q.closed.is_none()
                && !kept
                && q.bytes + last.payload.len() <= self.config.queue_max_bytes
            {
                q.bytes += last.payload.len();
                q.frames.push_back(last.clone());
                q.awaiting_keyframe = false;
                dropped = dropped.saturating_sub(1);
                self.uncount_drop();
            }
        }
        q.wake();
        dropped
    }

    /// The fan-out skipped `frames` for this subscriber (its shard fell behind, `shard`): as
    /// after an overflow, video resumes at the next keyframe, but this is no fault of the
    /// player's and does not count towards closing it. Returns the frames counted as dropped.
    pub(super) fn lose(&self, frames: usize) -> usize {
        let mut q = lock(&self.queue);
        if q.closed.is_some() {
            return 0;
        }
        q.awaiting_keyframe = true;
        self.dropped.fetch_add(frames as u64, Ordering::Relaxed);
        frames
    }

    /// Takes back one drop counted by `overflow` (never below zero).
    fn uncount_drop(&self) {
        let _ = self
            .dropped
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
    }

    /// Drops queued media, keeping the latest metadata and sequence header of each kind
    /// (all the next keyframe needs), and waits for the next keyframe; closes the subscriber
    /// if this happens too often, or if what must be kept still exceeds the byte bound.
    fn overflow(&self, q: &mut Queue, now_ms: u32) -> usize {
        let before = q.frames.len();
        let pinned = q.pinned;
        // Frames a direct write started on must be finished, whatever they are. Walking from
        // the back, the first header of each kind seen is the latest.
        let mut seen = [false; 3];
        let mut kept = VecDeque::with_capacity(pinned + 3);
        for (i, f) in std::mem::take(&mut q.frames).into_iter().enumerate().rev() {
            let keep = if i < pinned {
                true
            } else if let Some(class) = header_class(&f) {
                !std::mem::replace(&mut seen[class], true)
            } else {
                false
            };
            if keep {
                kept.push_front(f);
            }
        }
        q.frames = kept;
        q.bytes = q.frames.iter().map(|f| f.payload.len()).sum();
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
        if q.overflows.len() as u32 >= self.config.slow_max_overflows
            || q.bytes > self.config.queue_max_bytes
        {
            q.clear();
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
                q.clear();
                self.cancel.cancel();
            }
        }
        q.wake();
    }
}

impl Queue {
    /// Wakes the player's task (the lock is still held: waking only schedules it).
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Drops everything queued, except what a direct write has started (the connection ends
    /// anyway, but its last bytes stay well-formed).
    fn clear(&mut self) {
        self.frames.truncate(self.pinned);
        self.bytes = self.frames.iter().map(|f| f.payload.len()).sum();
    }

    /// Moves up to `max` frames (at least the pinned ones) into `out` and takes the socket
    /// back from the fan-out; returns the bytes of them already written.
    /// Stops early once `TAKE_MAX_BYTES` are taken (never before the pinned frames).
    fn take(&mut self, out: &mut Vec<Arc<MediaFrame>>, max: usize) -> usize {
        let n = self.frames.len().min(max.max(self.pinned));
        let mut taken_bytes = 0;
        for i in 0..n {
            if i >= self.pinned.max(1) && taken_bytes >= TAKE_MAX_BYTES {
                break;
            }
            let Some(f) = self.frames.pop_front() else {
                break;
            };
            taken_bytes += f.payload.len();
            out.push(f);
        }
        self.bytes = self.bytes.saturating_sub(taken_bytes);
        // The primed GOP grew the queue to hundreds of slots; a player that keeps up needs a
        // handful (thousands of players each kept a few KiB of empty slots).
        if self.frames.is_empty() && self.frames.capacity() > KEPT_SLOTS {
            self.frames.shrink_to(KEPT_SLOTS);
        }
        self.direct = false;
        self.pinned = 0;
        std::mem::take(&mut self.written)
    }

    /// Writes `batch` (not queued yet) to the sink without blocking; `true` if all of it went
    /// out. If not, the socket goes back to the player's task, which owns what is left once
    /// the caller has queued `batch`.
    fn write_direct(&mut self, batch: &[Arc<MediaFrame>]) -> bool {
        // Only lent while nothing is queued (`recv`).
        debug_assert!(self.frames.is_empty());
        let Some(Direct { sink, wire }) = &self.sink else {
            return false;
        };
        if batch.len() > BATCH_MAX {
            self.direct = false;
            return false;
        }
        let mut slices = [IoSlice::new(&[]); 3 * BATCH_MAX];
        let mut total = 0;
        let mut count = 0;
        for part in batch.iter().flat_map(|f| wire(f)) {
            if !part.is_empty() {
                slices[count] = IoSlice::new(part);
                total += part.len();
                count += 1;
            }
        }
        match sink.try_write(&slices[..count]) {
            Ok(n) if n == total => true,
            Ok(n) => {
                let mut start = 0;
                self.pinned = batch
                    .iter()
                    .take_while(|f| {
                        let before = start;
                        start += wire(f).iter().map(|p| p.len()).sum::<usize>();
                        before < n
                    })
                    .count();
                self.written = n;
                self.direct = false;
                false
            }
            // Full (or failed): the task's own write waits for room, times out or fails.
            Err(_) => {
                self.direct = false;
                false
            }
        }
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

    #[cfg(test)]
    pub(super) fn queue_capacity(&self) -> usize {
        lock(&self.shared.queue).frames.capacity()
    }

    /// Payload bytes waiting in this subscriber's queue.
    pub fn queued_bytes(&self) -> usize {
        lock(&self.shared.queue).bytes
    }

    /// Waits for frames and moves up to `max` of them into `out`; returns how many bytes at
    /// the start of their wire forms a direct write already sent (the caller sends the rest).
    /// Returns the close reason once the subscription has ended and its queue is drained.
    /// While it waits with nothing queued, the fan-out may write to the direct sink.
    pub async fn recv(
        &mut self,
        out: &mut Vec<Arc<MediaFrame>>,
        max: usize,
    ) -> Result<usize, CloseReason> {
        poll_fn(|cx| {
            let mut q = lock(&self.shared.queue);
            if !q.frames.is_empty() {
                return Poll::Ready(Ok(q.take(out, max)));
            }
            if let Some(reason) = q.closed {
                return Poll::Ready(Err(reason));
            }
            q.direct = q.sink.is_some();
            if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                q.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Takes what is queued without waiting, and the socket back from the fan-out: call it
    /// before writing anything else to a socket lent as a direct sink. Returns the bytes
    /// already written, as `recv`.
    pub fn try_recv(&mut self, out: &mut Vec<Arc<MediaFrame>>, max: usize) -> usize {
        lock(&self.shared.queue).take(out, max)
    }

    /// Lends the player's socket to the fan-out (see the module docs). Call it once the
    /// player's own first write has gone out.
    pub fn set_direct_sink(&mut self, sink: Arc<dyn DirectSink>, wire: WireFn) {
        lock(&self.shared.queue).sink = Some(Direct { sink, wire });
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
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // A shard may still hold this subscriber for a moment: it must not write to the socket
        // once its player is gone.
        {
            let mut q = lock(&self.shared.queue);
            q.direct = false;
            q.sink = None;
        }
        self.stream.remove_subscriber(self.shared.id);
    }
}

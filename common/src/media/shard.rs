//! Sharded fan-out of one hot stream. Past `HubConfig::fanout_min_subscribers`, a stream's
//! subscribers are split across shard tasks (by default one per runtime worker), each owning its
//! part of the subscriber list. The publisher hands each shard every batch, in order with the
//! subscribes and unsubscribes, over a lock-free channel: one send per shard per frame, no lock
//! per subscriber, and the shards' pushes and direct writes run on whichever workers pick them up.
//! Must not block the publisher: a shard that falls behind has batches skipped for it, and its
//! subscribers resume at the next keyframe, as after an overflow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::mpsc;

use super::frame::MediaFrame;
use super::hub::{HubConfig, Stream, push_all};
use super::subscriber::{CloseReason, SubShared, is_header};

/// A shard holds at most this many batches not yet delivered (10 s of 25 fps video) before the
/// publisher skips it; and at most `HubConfig::queue_max_bytes` of their payloads.
const SHARD_MAX_BATCHES: usize = 256;

/// What the publisher tells a shard, in the order it happened under the stream's lock.
enum Msg {
    /// A subscriber, already primed: it gets every batch after this one.
    Add(Arc<SubShared>),
    Remove(u64),
    /// A batch for every subscriber of the shard, after `lost` frames were skipped for it.
    Frames {
        batch: Arc<[Arc<MediaFrame>]>,
        bytes: usize,
        lost: usize,
    },
    /// Ends every subscription of the shard (after the batches before it).
    Close(CloseReason),
}

/// What a shard and the publisher share: how far behind the shard is.
#[derive(Default)]
struct Backlog {
    batches: AtomicUsize,
    bytes: AtomicUsize,
    /// Batches delivered so far (the shard is in use: tests, debugging).
    delivered: AtomicU64,
    /// Messages of any kind not handled yet.
    pending: AtomicUsize,
}

/// The publisher's end of one shard.
struct Shard {
    tx: mpsc::UnboundedSender<Msg>,
    backlog: Arc<Backlog>,
    members: usize,
    /// Frames skipped while the shard was behind, not told to it yet.
    lost: usize,
    /// Headers were among them: the current ones go first when the shard catches up.
    lost_header: bool,
}

/// A stream's shards, while it has them (`StreamState::fan`).
pub(super) struct Fanout {
    shards: Vec<Shard>,
    /// Which shard each subscriber is in.
    placed: HashMap<u64, usize>,
}

/// Members and batches delivered, per shard (tests and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    pub members: usize,
    pub delivered: u64,
    /// Messages (batches, subscribes, unsubscribes) the shard has not handled yet.
    pub pending: usize,
}

impl Fanout {
    /// Starts the shard tasks on the current runtime: `config.fanout_shards` of them, or one
    /// per worker if that is 0. None outside a runtime, or with fewer than two shards.
    pub(super) fn start(config: &HubConfig, stream: &Arc<Stream>) -> Option<Self> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let n = match config.fanout_shards {
            0 => handle.metrics().num_workers(),
            n => n,
        };
        if n < 2 {
            return None;
        }
        let shards = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                let backlog = Arc::new(Backlog::default());
                handle.spawn(run(rx, backlog.clone(), Arc::downgrade(stream)));
                Shard {
                    tx,
                    backlog,
                    members: 0,
                    lost: 0,
                    lost_header: false,
                }
            })
            .collect();
        Some(Self {
            shards,
            placed: HashMap::new(),
        })
    }

    pub(super) fn len(&self) -> usize {
        self.placed.len()
    }

    /// Places a primed subscriber in the shard with the fewest.
    pub(super) fn add(&mut self, sub: Arc<SubShared>, headers: impl Fn() -> Vec<Arc<MediaFrame>>) {
        let Some((i, shard)) = (self.shards.iter_mut().enumerate()).min_by_key(|(_, s)| s.members)
        else {
            return;
        };
        // Frames skipped before it joined are in its priming: only the others lost them.
        if shard.lost > 0 {
            let batch: Vec<_> = if shard.lost_header {
                headers()
            } else {
                Vec::new()
            };
            shard.hand(batch.into(), 0);
        }
        shard.members += 1;
        self.placed.insert(sub.id, i);
        shard.send(Msg::Add(sub));
    }

    /// Removes subscriber `id`; false if it is in no shard.
    pub(super) fn remove(&mut self, id: u64) -> bool {
        let Some(i) = self.placed.remove(&id) else {
            return false;
        };
        let shard = &mut self.shards[i];
        shard.members -= 1;
        shard.send(Msg::Remove(id));
        true
    }

    /// Hands `batch` to every shard with subscribers; a shard that is too far behind skips it.
    pub(super) fn send(
        &mut self,
        batch: &[Arc<MediaFrame>],
        config: &HubConfig,
        headers: impl Fn() -> Vec<Arc<MediaFrame>>,
    ) {
        let bytes = batch.iter().map(|f| f.payload.len()).sum::<usize>();
        let shared: Arc<[Arc<MediaFrame>]> = batch.into();
        for shard in self.shards.iter_mut().filter(|s| s.members > 0) {
            let backlog = &shard.backlog;
            if backlog.batches.load(Ordering::Relaxed) >= SHARD_MAX_BATCHES
                || backlog.bytes.load(Ordering::Relaxed) + bytes > config.queue_max_bytes
            {
                shard.lost += batch.len();
                shard.lost_header |= batch.iter().any(|f| is_header(f));
                continue;
            }
            if shard.lost_header {
                // The headers skipped may be needed to decode what follows.
                let mut with_headers = headers();
                with_headers.extend(batch.iter().cloned());
                shard.hand(with_headers.into(), bytes);
            } else {
                shard.hand(shared.clone(), bytes);
            }
        }
    }

    /// Ends every subscription after the batches already handed out.
    pub(super) fn close(&self, reason: CloseReason) {
        for shard in &self.shards {
            shard.send(Msg::Close(reason));
        }
    }

    pub(super) fn stats(&self) -> Vec<ShardStats> {
        (self.shards.iter())
            .map(|s| ShardStats {
                members: s.members,
                delivered: s.backlog.delivered.load(Ordering::Relaxed),
                pending: s.backlog.pending.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Shard {
    fn send(&self, msg: Msg) {
        self.backlog.pending.fetch_add(1, Ordering::Relaxed);
        // Fails only once the runtime is gone (and the task with it).
        let _ = self.tx.send(msg);
    }

    fn hand(&mut self, batch: Arc<[Arc<MediaFrame>]>, bytes: usize) {
        self.backlog.batches.fetch_add(1, Ordering::Relaxed);
        self.backlog.bytes.fetch_add(bytes, Ordering::Relaxed);
        let lost = std::mem::take(&mut self.lost);
        self.lost_header = false;
        self.send(Msg::Frames { batch, bytes, lost });
    }
}

/// A shard's task: owns its subscribers, pushes every batch to each of them.
async fn run(mut rx: mpsc::UnboundedReceiver<Msg>, backlog: Arc<Backlog>, stream: Weak<Stream>) {
    let mut subs: Vec<Arc<SubShared>> = Vec::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Add(sub) => subs.push(sub),
            Msg::Remove(id) => {
                if let Some(i) = subs.iter().position(|s| s.id == id) {
                    subs.swap_remove(i);
                }
            }
            Msg::Frames { batch, bytes, lost } => {
                let lost = if lost > 0 {
                    subs.iter().map(|s| s.lose(lost)).sum()
                } else {
                    0
                };
                let dropped = push_all(&subs, &batch);
                backlog.batches.fetch_sub(1, Ordering::Relaxed);
                backlog.bytes.fetch_sub(bytes, Ordering::Relaxed);
                backlog.delivered.fetch_add(1, Ordering::Relaxed);
                if (dropped > 0 || lost > 0)
                    && let Some(stream) = stream.upgrade()
                {
                    stream.count_dropped(dropped, "slow_player");
                    stream.count_dropped(lost, "fanout_behind");
                }
            }
            Msg::Close(reason) => subs.iter().for_each(|s| s.close(reason)),
        }
        backlog.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

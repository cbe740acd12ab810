//! Media plane: frames, the per-stream fan-out hub, GOP cache and subscriber queues.
//! Knows nothing of RTMP, FLV, MPEG-TS or etcd: it moves `MediaFrame`s.

mod frame;
mod hub;
mod shard;
#[cfg(test)]
mod shard_tests;
mod subscriber;
#[cfg(test)]
mod tests;

pub use frame::{FrameKind, MediaFrame, WireSlot};
pub use hub::{Hub, HubConfig, HubError, Publisher, Stream, StreamSnapshot, StreamStats};
pub use shard::ShardStats;
pub use subscriber::{CloseReason, DirectSink, Subscriber, WireFn, unwritten_wire};

/// Locks a mutex, ignoring poisoning: the data under our locks stays consistent even if a
/// holder panicked mid-way (every critical section is a few assignments).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

//! The cluster registry: which nodes exist and which origin owns which stream. A `Registry`
//! trait with an etcd implementation and an in-memory one. Knows nothing about media.

mod etcd;
mod memory;
mod view;

pub use etcd::{EtcdConfig, EtcdRegistry};
pub use memory::{MemoryRegistry, MemoryStore};
pub use proto::cluster::{NodeLoad, NodeRecord, PublicUrls, Role, StreamRecord};
pub use view::ClusterView;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RegistryError {
    /// etcd could not be reached or answered with an error; the call may be retried.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be decoded.
    #[error("corrupt record at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The result of claiming a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// We own the stream now (created, or taken over).
    Owned,
    /// Another origin owns it; here is its record.
    OwnedBy(StreamRecord),
}

/// A change to one stream key.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The key exists with this record (sent first with the current state, then on changes).
    /// Shared: an event sits in a broadcast ring and in every watcher's queue, and a pulled
    /// stream's watch is one of those per stream (a 32-slot queue block of full records was
    /// 5 KiB per pulled stream).
    Put(std::sync::Arc<StreamRecord>),
    /// The key is absent (sent first if absent, then on deletion).
    Deleted,
}

/// The key of a stream, `app/name`.
/// Forwards a key's broadcast of events to one watcher's queue, `first` first. A watcher that
/// lagged gets `current()` (the state is what it needs, not the missed steps). Ends when the
/// watcher or the broadcast is gone; returns the subscription so its owner can clean up.
pub(crate) async fn forward_events(
    tx: mpsc::Sender<StreamEvent>,
    first: Option<StreamEvent>,
    mut sub: tokio::sync::broadcast::Receiver<StreamEvent>,
    current: impl Fn() -> StreamEvent,
) -> tokio::sync::broadcast::Receiver<StreamEvent> {
    use tokio::sync::broadcast::error::RecvError;
    if let Some(first) = first
        && tx.send(first).await.is_err()
    {
        return sub;
    }
    loop {
        let event = tokio::select! {
            _ = tx.closed() => break,
            r = sub.recv() => match r {
                Ok(ev) => ev,
                Err(RecvError::Lagged(_)) => current(),
                Err(RecvError::Closed) => break,
            },
        };
        if tx.send(event).await.is_err() {
            break;
        }
    }
    sub
}

pub fn stream_key(app: &str, name: &str) -> String {
    format!("{app}/{name}")
}

/// Where nodes and streams are recorded. Every call is bounded in time; none is made on the
/// media path. Implementations keep this node's registrations alive (lease keep-alive) and
/// restore them after the backend was unreachable.
pub trait Registry: Send + Sync + 'static {
    /// Records (or refreshes) this node; kept while the process lives, restored after an
    /// outage. Call again to update the load.
    fn register(&self, node: NodeRecord) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// Claims `record.app/record.name` for this node. With `takeover`, an existing claim by
    /// another node is replaced. A claim is kept alive and restored like the node record.
    fn claim(
        &self,
        record: StreamRecord,
        takeover: bool,
    ) -> BoxFuture<'_, Result<Claim, RegistryError>>;

    /// Gives up our claim of `app/name` (no-op if another node owns it now).
    fn release(&self, app: &str, name: &str) -> BoxFuture<'_, Result<(), RegistryError>>;

    /// The current owner of `app/name`.
    fn lookup(
        &self,
        app: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<StreamRecord>, RegistryError>>;

    /// Changes to `app/name`: the current state first, then every change. The watch survives
    /// backend outages (re-established, with the then-current state re-sent). Dropping the
    /// receiver ends it.
    fn watch(&self, app: &str, name: &str) -> mpsc::Receiver<StreamEvent>;

    /// Every registered node.
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeRecord>, RegistryError>>;

    /// Every claimed stream.
    fn streams(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, RegistryError>>;

    /// This node's cached view of every node and stream, kept current by one watch: what
    /// player requests and the cluster APIs read instead of calling the registry.
    fn view(&self) -> std::sync::Arc<ClusterView>;

    /// Streams this node claimed and then lost to another node's takeover (or could not
    /// re-claim after an outage): the origin must stop publishing them. Each key is `app/name`.
    fn lost_claims(&self) -> tokio::sync::broadcast::Receiver<String>;
}

/// Unix time in milliseconds, for `started_at` / `updated_at` fields.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

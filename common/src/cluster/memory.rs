//! In-process `Registry` (single node, or several nodes sharing one `MemoryStore` in tests).
//! Same claim/release/watch semantics as etcd; it must not do I/O or outlive its process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use tokio::sync::{broadcast, mpsc};

use super::{
    Claim, ClusterView, NodeRecord, Registry, RegistryError, StreamEvent, StreamRecord, stream_key,
};

/// Events buffered per watched key before a slow watcher is resynchronised.
const WATCH_FANOUT: usize = 256;
/// Events buffered per `watch()` receiver.
const WATCH_QUEUE: usize = 64;
/// Lost claims buffered per registry.
const LOST_QUEUE: usize = 64;

/// The shared state several `MemoryRegistry` nodes can see, like one etcd cluster.
pub struct MemoryStore {
    state: Mutex<StoreState>,
    /// What every node on this store sees (updated with the store, always in sync).
    view: Arc<ClusterView>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        let view = ClusterView::new();
        view.replace(Vec::new(), Vec::new());
        Self {
            state: Mutex::default(),
            view,
        }
    }
}

#[derive(Default)]
struct StoreState {
    nodes: BTreeMap<String, NodeRecord>,
    streams: BTreeMap<String, Entry>,
    watchers: HashMap<String, broadcast::Sender<StreamEvent>>,
}

struct Entry {
    record: StreamRecord,
    /// The owning registry's lost-claims channel: identifies the owner and tells it on takeover.
    owner: broadcast::Sender<String>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, StoreState> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than refusing all further registry calls would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StoreState {
    fn notify(&mut self, key: &str, event: StreamEvent) {
        if let Some(tx) = self.watchers.get(key) {
            if tx.receiver_count() == 0 {
                self.watchers.remove(key);
            } else {
                let _ = tx.send(event);
            }
        }
    }

    fn current(&self, key: &str) -> StreamEvent {
        match self.streams.get(key) {
            Some(e) => StreamEvent::Put(Arc::new(e.record.clone())),
            None => StreamEvent::Deleted,
        }
    }
}

/// One node's view of a `MemoryStore`.
pub struct MemoryRegistry {
    store: Arc<MemoryStore>,
    lost: broadcast::Sender<String>,
    node_id: Mutex<Option<String>>,
}

impl MemoryRegistry {
    /// A registry with its own private store (a single-node deployment).
    pub fn new() -> Arc<MemoryRegistry> {
        Self::shared(Arc::new(MemoryStore::default()))
    }

    /// Another node on an existing store.
    pub fn shared(store: Arc<MemoryStore>) -> Arc<MemoryRegistry> {
        Arc::new(MemoryRegistry {
            store,
            lost: broadcast::channel(LOST_QUEUE).0,
            node_id: Mutex::new(None),
        })
    }

    /// The store, to create more nodes on it with `shared`.
    pub fn store(&self) -> Arc<MemoryStore> {
        self.store.clone()
    }

    /// Simulates this node's lease expiring: its node record and every stream it owns vanish.
    pub fn expire(&self) {
        let node_id = self
            .node_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut st = self.store.lock();
        if let Some(id) = node_id {
            st.nodes.remove(&id);
            self.store.view.delete_node(&id);
        }
        let ours: Vec<String> = st
            .streams
            .iter()
            .filter(|(_, e)| e.owner.same_channel(&self.lost))
            .map(|(k, _)| k.clone())
            .collect();
        for key in ours {
            st.streams.remove(&key);
            st.notify(&key, StreamEvent::Deleted);
            self.store.view.delete_stream(&key);
        }
    }

    fn claim_now(&self, record: StreamRecord, takeover: bool) -> Claim {
        let key = stream_key(&record.app, &record.name);
        let mut st = self.store.lock();
        if let Some(e) = st.streams.get(&key) {
            let ours = e.owner.same_channel(&self.lost)
                || e.record.origin_node_id == record.origin_node_id;
            if !ours && !takeover {
                return Claim::OwnedBy(e.record.clone());
            }
            if !ours {
                let _ = e.owner.send(key.clone());
            }
        }
        st.streams.insert(
            key.clone(),
            Entry {
                record: record.clone(),
                owner: self.lost.clone(),
            },
        );
        st.notify(&key, StreamEvent::Put(Arc::new(record.clone())));
        self.store.view.put_stream(key, record);
        Claim::Owned
    }
}

impl Registry for MemoryRegistry {
    fn register(&self, node: NodeRecord) -> BoxFuture<'_, Result<(), RegistryError>> {
        *self.node_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(node.node_id.clone());
        self.store.view.put_node(node.clone());
        self.store.lock().nodes.insert(node.node_id.clone(), node);
        Box::pin(async { Ok(()) })
    }

    fn claim(
        &self,
        record: StreamRecord,
        takeover: bool,
    ) -> BoxFuture<'_, Result<Claim, RegistryError>> {
        let claim = self.claim_now(record, takeover);
        Box::pin(async move { Ok(claim) })
    }

    fn release(&self, app: &str, name: &str) -> BoxFuture<'_, Result<(), RegistryError>> {
        let key = stream_key(app, name);
        let mut st = self.store.lock();
        let ours = st
            .streams
            .get(&key)
            .is_some_and(|e| e.owner.same_channel(&self.lost));
        if ours {
            st.streams.remove(&key);
            st.notify(&key, StreamEvent::Deleted);
            self.store.view.delete_stream(&key);
        }
        Box::pin(async { Ok(()) })
    }

    fn lookup(
        &self,
        app: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<StreamRecord>, RegistryError>> {
        let found = self
            .store
            .lock()
            .streams
            .get(&stream_key(app, name))
            .map(|e| e.record.clone());
        Box::pin(async move { Ok(found) })
    }

    fn watch(&self, app: &str, name: &str) -> mpsc::Receiver<StreamEvent> {
        let key = stream_key(app, name);
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let (first, sub) = {
            let mut st = self.store.lock();
            let sub = st
                .watchers
                .entry(key.clone())
                .or_insert_with(|| broadcast::channel(WATCH_FANOUT).0)
                .subscribe();
            (st.current(&key), sub)
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            super::forward_events(tx, Some(first), sub, || store.lock().current(&key)).await;
        });
        rx
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeRecord>, RegistryError>> {
        let nodes = self.store.lock().nodes.values().cloned().collect();
        Box::pin(async move { Ok(nodes) })
    }

    fn streams(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, RegistryError>> {
        let streams = self
            .store
            .lock()
            .streams
            .values()
            .map(|e| e.record.clone())
            .collect();
        Box::pin(async move { Ok(streams) })
    }

    fn view(&self) -> Arc<ClusterView> {
        self.store.view.clone()
    }

    fn lost_claims(&self) -> broadcast::Receiver<String> {
        self.lost.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(node: &str) -> StreamRecord {
        StreamRecord {
            app: "live".into(),
            name: "cam".into(),
            origin_node_id: node.into(),
            origin_rtmp_address: format!("{node}:1935"),
            started_at: 1,
            codecs: vec!["h264".into()],
            ..Default::default()
        }
    }

    async fn next(rx: &mut mpsc::Receiver<StreamEvent>) -> StreamEvent {
        tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .expect("event in time")
            .expect("watch open")
    }

    #[tokio::test]
    async fn claim_refuse_takeover_release() {
        let a = MemoryRegistry::new();
        let b = MemoryRegistry::shared(a.store());
        let mut lost_a = a.lost_claims();
        let mut lost_b = b.lost_claims();

        assert_eq!(a.claim(rec("a"), false).await, Ok(Claim::Owned));
        // Claiming again (same node) is idempotent.
        assert_eq!(a.claim(rec("a"), false).await, Ok(Claim::Owned));
        assert_eq!(b.claim(rec("b"), false).await, Ok(Claim::OwnedBy(rec("a"))));
        // b cannot release a's stream.
        b.release("live", "cam").await.expect("release");
        assert_eq!(b.lookup("live", "cam").await, Ok(Some(rec("a"))));

        assert_eq!(b.claim(rec("b"), true).await, Ok(Claim::Owned));
        assert_eq!(lost_a.try_recv(), Ok("live/cam".to_string()));
        assert!(lost_b.try_recv().is_err());
        assert_eq!(a.lookup("live", "cam").await, Ok(Some(rec("b"))));

        // a no longer owns it: its release is a no-op.
        a.release("live", "cam").await.expect("release");
        assert_eq!(a.lookup("live", "cam").await, Ok(Some(rec("b"))));
        b.release("live", "cam").await.expect("release");
        assert_eq!(a.lookup("live", "cam").await, Ok(None));
        assert_eq!(a.streams().await.map(|s| s.len()), Ok(0));
    }

    #[tokio::test]
    async fn same_node_id_counts_as_ours() {
        let a = MemoryRegistry::new();
        let a_again = MemoryRegistry::shared(a.store());
        assert_eq!(a.claim(rec("a"), false).await, Ok(Claim::Owned));
        assert_eq!(a_again.claim(rec("a"), false).await, Ok(Claim::Owned));
    }

    #[tokio::test]
    async fn watch_sees_current_state_then_changes() {
        let a = MemoryRegistry::new();
        let b = MemoryRegistry::shared(a.store());
        let mut w = b.watch("live", "cam");
        assert_eq!(next(&mut w).await, StreamEvent::Deleted);
        a.claim(rec("a"), false).await.expect("claim");
        assert_eq!(next(&mut w).await, StreamEvent::Put(rec("a").into()));
        a.release("live", "cam").await.expect("release");
        assert_eq!(next(&mut w).await, StreamEvent::Deleted);
        b.claim(rec("b"), false).await.expect("claim");
        assert_eq!(next(&mut w).await, StreamEvent::Put(rec("b").into()));

        let mut late = a.watch("live", "cam");
        assert_eq!(next(&mut late).await, StreamEvent::Put(rec("b").into()));
    }

    #[tokio::test]
    async fn nodes_and_expiry() {
        let a = MemoryRegistry::new();
        let b = MemoryRegistry::shared(a.store());
        let node = |id: &str| NodeRecord {
            node_id: id.into(),
            ..Default::default()
        };
        a.register(node("a")).await.expect("register");
        b.register(node("b")).await.expect("register");
        a.claim(rec("a"), false).await.expect("claim");
        let mut w = b.watch("live", "cam");
        assert_eq!(next(&mut w).await, StreamEvent::Put(rec("a").into()));
        assert_eq!(b.nodes().await.map(|n| n.len()), Ok(2));

        a.expire();
        assert_eq!(next(&mut w).await, StreamEvent::Deleted);
        assert_eq!(b.nodes().await, Ok(vec![node("b")]));
        assert_eq!(b.claim(rec("b"), false).await, Ok(Claim::Owned));
    }

    #[tokio::test]
    async fn the_shared_view_follows_the_store() {
        let a = MemoryRegistry::new();
        let b = MemoryRegistry::shared(a.store());
        let view = b.view();
        assert!(view.is_synced(), "a memory store is its own snapshot");
        let mut w = view.watch("live", "cam");
        assert_eq!(next(&mut w).await, StreamEvent::Deleted);
        a.register(NodeRecord {
            node_id: "a".into(),
            ..Default::default()
        })
        .await
        .expect("register");
        a.claim(rec("a"), false).await.expect("claim");
        assert_eq!(next(&mut w).await, StreamEvent::Put(rec("a").into()));
        assert_eq!(view.lookup("live/cam"), Some(rec("a")));
        assert_eq!(view.nodes().len(), 1);
        a.expire();
        assert_eq!(next(&mut w).await, StreamEvent::Deleted);
        assert!(view.streams().is_empty() && view.nodes().is_empty());
    }

    #[tokio::test]
    async fn dropped_watch_receiver_ends_the_task() {
        let a = MemoryRegistry::new();
        let w = a.watch("live", "cam");
        drop(w);
        // The forwarding task notices the closed receiver; later changes must not fail.
        tokio::time::sleep(Duration::from_millis(10)).await;
        a.claim(rec("a"), false).await.expect("claim");
        assert!(a.store.lock().watchers.is_empty());
    }
}

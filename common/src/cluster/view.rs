//! A node's cached view of the registry: every node record and stream record as last seen,
//! kept current by one watch per node (the registry implementation feeds it). Lookups,
//! per-stream watches and the cluster APIs are answered from memory, so no player request and
//! no API call costs a registry round trip. No I/O here; while the registry is unreachable the
//! view keeps its last state (streams that flow keep flowing).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::{NodeRecord, StreamEvent, StreamRecord};

/// Events buffered per watched key before a slow watcher is resynchronised.
const WATCH_FANOUT: usize = 16;
/// Events buffered per `watch()` receiver.
const WATCH_QUEUE: usize = 16;

/// Nodes and streams as the registry last told this node.
pub struct ClusterView {
    state: Mutex<ViewState>,
    /// True once a first complete snapshot was applied.
    synced: watch::Sender<bool>,
    /// Bumped on every change of the streams, for pollers of `streams()`.
    version: watch::Sender<u64>,
}

#[derive(Default)]
struct ViewState {
    synced: bool,
    nodes: BTreeMap<String, NodeRecord>,
    /// `nodes` as one shared list, rebuilt on the first read after a change.
    nodes_shared: Option<Arc<Vec<NodeRecord>>>,
    /// By `app/name`.
    streams: BTreeMap<String, StreamRecord>,
    /// Watchers of one key each.
    watchers: HashMap<String, broadcast::Sender<StreamEvent>>,
}

impl ViewState {
    fn current(&self, key: &str) -> StreamEvent {
        match self.streams.get(key) {
            Some(r) => StreamEvent::Put(Arc::new(r.clone())),
            None => StreamEvent::Deleted,
        }
    }

    fn notify(&mut self, key: &str, event: StreamEvent) {
        if let Some(tx) = self.watchers.get(key) {
            if tx.receiver_count() == 0 {
                self.watchers.remove(key);
            } else {
                let _ = tx.send(event);
            }
        }
    }
}

impl ClusterView {
    /// An empty view, not synced yet: watches wait for the first snapshot.
    pub fn new() -> Arc<ClusterView> {
        Arc::new(ClusterView {
            state: Mutex::new(ViewState::default()),
            synced: watch::channel(false).0,
            version: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, ViewState> {
        // Every update is a map insert/remove or a flag: consistent across a panicking holder.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a complete snapshot was applied (the view may be stale during an outage).
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits up to `limit` for the first snapshot; false if it did not come.
    pub async fn wait_synced(&self, limit: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The owner of `key` (`app/name`) as last seen.
    pub fn lookup(&self, key: &str) -> Option<StreamRecord> {
        self.lock().streams.get(key).cloned()
    }

    pub fn streams(&self) -> Vec<StreamRecord> {
        self.lock().streams.values().cloned().collect()
    }

    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.lock().nodes.values().cloned().collect()
    }

    /// Every node record as one shared list (what the locator reads per request): no copy
    /// unless a record changed since the last read.
    pub fn nodes_shared(&self) -> Arc<Vec<NodeRecord>> {
        let mut st = self.lock();
        if let Some(list) = &st.nodes_shared {
            return list.clone();
        }
        let list = Arc::new(st.nodes.values().cloned().collect::<Vec<_>>());
        st.nodes_shared = Some(list.clone());
        list
    }

    /// Keys watched now (for tests and metrics).
    pub fn watched_keys(&self) -> usize {
        self.lock().watchers.len()
    }

    /// A receiver of stream changes: `version()` changes whenever `streams()` may have.
    pub fn version(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Changes to `app/name` like `Registry::watch`: the current state first (once the view is
    /// synced), then every change. Costs no registry call. Dropping the receiver ends it.
    pub fn watch(self: &Arc<Self>, app: &str, name: &str) -> mpsc::Receiver<StreamEvent> {
        let key = super::stream_key(app, name);
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let (first, sub) = {
            let mut st = self.lock();
            let sub = st
                .watchers
                .entry(key.clone())
                .or_insert_with(|| broadcast::channel(WATCH_FANOUT).0)
                .subscribe();
            // Before the first snapshot, `replace` sends every watcher its state.
            let first = st.synced.then(|| st.current(&key));
            (first, sub)
        };
        let view = self.clone();
        tokio::spawn(async move {
            let sub = super::forward_events(tx, first, sub, || view.lock().current(&key)).await;
            view.forget(&key, sub);
        });
        rx
    }

    /// Drops a watcher's subscription and the key's entry if it was the last one, so names
    /// watched once (random names from a hostile client) leave nothing behind.
    fn forget(&self, key: &str, sub: broadcast::Receiver<StreamEvent>) {
        let mut st = self.lock();
        drop(sub);
        if st
            .watchers
            .get(key)
            .is_some_and(|t| t.receiver_count() == 0)
        {
            st.watchers.remove(key);
        }
    }

    /// Applies a complete snapshot (first sync, or resync after an outage): watchers of keys
    /// that changed meanwhile hear the difference; on the first sync every watcher hears its
    /// state.
    pub fn replace(&self, nodes: Vec<NodeRecord>, streams: Vec<(String, StreamRecord)>) {
        {
            let mut st = self.lock();
            let first = !st.synced;
            let old = std::mem::take(&mut st.streams);
            st.streams = streams.into_iter().collect();
            st.nodes = nodes.into_iter().map(|n| (n.node_id.clone(), n)).collect();
            st.nodes_shared = None;
            st.synced = true;
            let keys: Vec<String> = st.watchers.keys().cloned().collect();
            for key in keys {
                let now = st.streams.get(&key);
                if first || now != old.get(&key) {
                    let ev = st.current(&key);
                    st.notify(&key, ev);
                }
            }
        }
        self.synced.send_replace(true);
        self.version.send_modify(|v| *v += 1);
    }

    pub fn put_stream(&self, key: String, record: StreamRecord) {
        {
            let mut st = self.lock();
            if st.streams.get(&key) == Some(&record) {
                return;
            }
            st.streams.insert(key.clone(), record.clone());
            st.notify(&key, StreamEvent::Put(Arc::new(record)));
        }
        self.version.send_modify(|v| *v += 1);
    }

    pub fn delete_stream(&self, key: &str) {
        {
            let mut st = self.lock();
            if st.streams.remove(key).is_none() {
                return;
            }
            st.notify(key, StreamEvent::Deleted);
        }
        self.version.send_modify(|v| *v += 1);
    }

    pub fn put_node(&self, node: NodeRecord) {
        let mut st = self.lock();
        st.nodes.insert(node.node_id.clone(), node);
        st.nodes_shared = None;
    }

    pub fn delete_node(&self, node_id: &str) {
        let mut st = self.lock();
        if st.nodes.remove(node_id).is_some() {
            st.nodes_shared = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: &str) -> StreamRecord {
        StreamRecord {
            app: "live".into(),
            name: "cam".into(),
            origin_node_id: node.into(),
            origin_rtmp_address: format!("{node}:1935"),
            started_at: 1,
            codecs: vec![],
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
    async fn watch_waits_for_sync_then_follows_changes_and_resyncs() {
        let v = ClusterView::new();
        let mut w = v.watch("live", "cam");
        let mut other = v.watch("live", "other");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), w.recv())
                .await
                .is_err(),
            "no state before the first snapshot"
        );
        v.replace(vec![], vec![("live/cam".into(), rec("a"))]);
        assert_eq!(next(&mut w).await, StreamEvent::Put(rec("a").into()));
        assert_eq!(next(&mut other).await, StreamEvent::Deleted);
        assert_eq!(v.lookup("live/cam"), Some(rec("a")));

        v.put_stream("live/cam".into(), rec("b"));
        assert_eq!(next(&mut w).await, StreamEvent::Put(rec("b").into()));
        // A resync after an outage tells only the keys that changed.
        v.replace(vec![], vec![]);
        assert_eq!(next(&mut w).await, StreamEvent::Deleted);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), other.recv())
                .await
                .is_err()
        );
        let mut late = v.watch("live", "cam");
        assert_eq!(next(&mut late).await, StreamEvent::Deleted);
    }

    #[tokio::test]
    async fn dropped_watchers_leave_no_entry() {
        let v = ClusterView::new();
        v.replace(vec![], vec![]);
        let watches: Vec<_> = (0..100)
            .map(|i| v.watch("live", &format!("n{i}")))
            .collect();
        assert_eq!(v.watched_keys(), 100);
        drop(watches);
        for _ in 0..100 {
            if v.watched_keys() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(v.watched_keys(), 0);
    }
}

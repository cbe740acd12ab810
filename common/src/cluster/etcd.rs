//! etcd-backed `Registry`: node and stream keys bound to this node's lease, kept alive and
//! restored after outages. Knows nothing about media; no call waits longer than `op_timeout`.

use crate::telemetry::metric;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue,
    LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
    WatchOptions, WatchStream,
};
use futures::future::BoxFuture;
use prost::Message;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    Claim, ClusterView, NodeRecord, Registry, RegistryError, StreamEvent, StreamRecord, stream_key,
};

/// First and longest pause between attempts to re-establish a broken watch.
const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(100);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Events buffered per `watch()` receiver.
const WATCH_QUEUE: usize = 64;
/// Lost claims buffered per registry.
const LOST_QUEUE: usize = 64;
/// Attempts of a claim whose key keeps changing under it.
const CLAIM_ATTEMPTS: usize = 3;
/// HTTP/2 pings detect a dead etcd connection; etcd refuses pings more often than every 5 s.
const H2_KEEPALIVE: Duration = Duration::from_secs(10);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach etcd and how long registrations live without renewal.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `http://host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// Key prefix of this cluster (default `/livecdn/v1`).
    pub prefix: String,
    /// Lease TTL: keys vanish at most this long after the node stops renewing (from 3 s, see
    /// `ttl_secs`; default 5 s, whole seconds).
    pub lease_ttl: Duration,
    /// Bound of every single etcd call (default 2 s).
    pub op_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            prefix: "/livecdn/v1".to_string(),
            lease_ttl: Duration::from_secs(5),
            op_timeout: Duration::from_secs(2),
        }
    }
}

impl EtcdConfig {
    /// Defaults with these endpoints.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            ..Self::default()
        }
    }
}

/// The registry on etcd. Dropping it stops its background tasks without revoking the lease
/// (like a crash: keys vanish after the TTL); `close` removes them at once.
pub struct EtcdRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: EtcdConfig,
    /// `{prefix}` without a trailing slash.
    prefix: String,
    state: Mutex<State>,
    lost: broadcast::Sender<String>,
    cancel: CancellationToken,
    /// Wakes the keep-alive task early (an operation saw our lease missing).
    lease_check: Notify,
    /// Every node and stream, kept current by `view_task` (one watch of the whole prefix).
    view: Arc<ClusterView>,
}

struct State {
    lease: i64,
    node: Option<NodeRecord>,
    /// The node record may not be stored as it is now (a register failed).
    node_dirty: bool,
    /// Claims must be re-asserted (new lease, or one of our keys vanished).
    restore: bool,
    /// Claimed streams by `app/name`.
    claims: HashMap<String, ClaimEntry>,
    /// Releases that failed (etcd unreachable), retried by the keep-alive task:
    /// `app/name` -> our origin node id.
    pending_releases: HashMap<String, String>,
}

struct ClaimEntry {
    record: StreamRecord,
    /// Revision of our write; older events about the key are not news.
    revision: i64,
}

enum KeepAlive {
    Alive,
    Expired,
    Failed(String),
}

impl EtcdRegistry {
    /// Connects, grants this node's lease and starts keeping it alive. Fails if etcd cannot
    /// be reached within `op_timeout`.
    pub async fn connect(config: EtcdConfig) -> Result<Arc<EtcdRegistry>, RegistryError> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(config.op_timeout)
            .with_keep_alive(H2_KEEPALIVE, H2_KEEPALIVE_TIMEOUT)
            .with_require_leader(true);
        let mut client = bounded(
            config.op_timeout,
            Client::connect(config.endpoints.clone(), Some(opts)),
        )
        .await
        .map_err(|e| e.context("connect"))?;
        let lease = bounded(
            config.op_timeout,
            client.lease_grant(ttl_secs(&config), None),
        )
        .await
        .map_err(|e| e.context("grant lease"))?
        .id();
        let prefix = config.prefix.trim_end_matches('/').to_string();
        let inner = Arc::new(Inner {
            client,
            config,
            prefix,
            state: Mutex::new(State {
                lease,
                node: None,
                node_dirty: false,
                restore: false,
                claims: HashMap::new(),
                pending_releases: HashMap::new(),
            }),
            lost: broadcast::channel(LOST_QUEUE).0,
            cancel: CancellationToken::new(),
            lease_check: Notify::new(),
            view: ClusterView::new(),
        });
        tokio::spawn(keep_alive_task(inner.clone()));
        tokio::spawn(view_task(inner.clone()));
        tracing::info!(lease, endpoints = ?inner.config.endpoints, "registry connected");
        Ok(Arc::new(EtcdRegistry { inner }))
    }

    /// The lease our keys are bound to now (it changes after an expiry).
    pub fn lease_id(&self) -> i64 {
        self.inner.lock().lease
    }

    /// Stops the background tasks and revokes the lease, so our node and stream keys vanish
    /// now rather than after the TTL.
    pub async fn close(&self) -> Result<(), RegistryError> {
        self.inner.cancel.cancel();
        let lease = self.lease_id();
        let mut c = self.inner.client.clone();
        bounded(self.inner.config.op_timeout, c.lease_revoke(lease))
            .await
            .map(|_| ())
            .map_err(|e| e.context("revoke lease"))
    }
}

impl Drop for EtcdRegistry {
    fn drop(&mut self) {
        self.inner.cancel.cancel();
    }
}

/// Runs an etcd call with a deadline.
async fn bounded<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Etcd(e)),
        Err(_) => Err(CallError::Timeout(limit)),
    }
}

#[derive(Debug)]
enum CallError {
    Etcd(etcd_client::Error),
    Timeout(Duration),
}

impl CallError {
    fn lease_missing(&self) -> bool {
        match self {
            CallError::Etcd(etcd_client::Error::GRpcStatus(s)) => {
                s.message().contains("lease not found")
            }
            CallError::Etcd(etcd_client::Error::LeaseKeepAliveError(m)) => {
                m.contains("lease not found")
            }
            _ => false,
        }
    }

    fn context(&self, what: &str) -> RegistryError {
        match self {
            CallError::Etcd(e) => RegistryError::Unavailable(format!("{what}: {e}")),
            CallError::Timeout(d) => {
                RegistryError::Unavailable(format!("{what}: no answer within {d:?}"))
            }
        }
    }
}

/// The lease TTL asked of etcd, in whole seconds. etcd revokes expired leases on a 500 ms tick
/// and watchers hear of it after that, so a lease of exactly `lease_ttl` would leave a dead
/// node's keys visible for up to `lease_ttl` + 0.5 s. From 3 s up the node asks for one second
/// less, which makes `lease_ttl` the bound on how long a dead node's keys outlive it (below
/// that, etcd's own 2 s minimum wins).
fn ttl_secs(config: &EtcdConfig) -> i64 {
    let ms = config.lease_ttl.as_millis().max(1);
    let secs = i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX);
    if secs >= 3 { secs - 1 } else { secs }
}

fn decode_stream(key: &str, bytes: &[u8]) -> Result<StreamRecord, RegistryError> {
    StreamRecord::decode(bytes).map_err(|e| RegistryError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn revision(resp: &TxnResponse) -> i64 {
    resp.header().map(|h| h.revision()).unwrap_or(0)
}

/// The key-values a transaction's `get` branch returned.
fn txn_kvs(resp: &TxnResponse) -> Vec<KeyValue> {
    resp.op_responses()
        .into_iter()
        .find_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.kvs().to_vec()),
            _ => None,
        })
        .unwrap_or_default()
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // State stays consistent across a panicking holder: every update is a single insert
        // or flag write.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn node_key(&self, node_id: &str) -> String {
        format!("{}/nodes/{node_id}", self.prefix)
    }

    fn streams_prefix(&self) -> String {
        format!("{}/streams/", self.prefix)
    }

    fn stream_path(&self, app: &str, name: &str) -> String {
        format!("{}{}", self.streams_prefix(), stream_key(app, name))
    }

    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, RegistryError> {
        bounded(self.config.op_timeout, fut).await.map_err(|e| {
            if e.lease_missing() {
                self.lease_check.notify_one();
            }
            e.context(what)
        })
    }

    /// Counts and times one registry operation.
    async fn measured<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        let start = Instant::now();
        metrics::counter!(metric::REGISTRY_OPERATIONS, "op" => op).increment(1);
        let res = fut.await;
        metrics::histogram!(metric::REGISTRY_DURATION, "op" => op)
            .record(start.elapsed().as_secs_f64());
        if let Err(e) = &res {
            metrics::counter!(metric::REGISTRY_FAILURES, "op" => op).increment(1);
            tracing::debug!(op, error = %e, "registry operation failed");
        }
        res
    }

    async fn put_node(&self, node: &NodeRecord) -> Result<(), RegistryError> {
        let lease = self.lock().lease;
        let mut c = self.client.clone();
        let opts = PutOptions::new().with_lease(lease);
        self.call(
            "put node",
            c.put(
                self.node_key(&node.node_id),
                node.encode_to_vec(),
                Some(opts),
            ),
        )
        .await
        .map(|_| ())
    }

    fn remember(self: &Arc<Self>, record: StreamRecord, revision: i64) {
        let key = stream_key(&record.app, &record.name);
        {
            let mut st = self.lock();
            st.pending_releases.remove(&key);
            st.claims.insert(key, ClaimEntry { record, revision });
        }
    }

    /// Forgets a claim another node now holds and tells the owner of this registry.
    fn lose(&self, key: &str) {
        if self.lock().claims.remove(key).is_some() {
            tracing::warn!(stream = key, "stream claim lost to another node");
            let _ = self.lost.send(key.to_string());
        }
    }

    async fn claim_inner(
        self: &Arc<Self>,
        record: StreamRecord,
        takeover: bool,
    ) -> Result<Claim, RegistryError> {
        let key = self.stream_path(&record.app, &record.name);
        let value = record.encode_to_vec();
        let mut c = self.client.clone();
        for _ in 0..CLAIM_ATTEMPTS {
            let lease = self.lock().lease;
            let put = || {
                TxnOp::put(
                    key.clone(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )
            };
            if takeover {
                let resp = self
                    .call("takeover", c.txn(Txn::new().and_then([put()])))
                    .await?;
                self.remember(record, revision(&resp));
                return Ok(Claim::Owned);
            }
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([put()])
                .or_else([TxnOp::get(key.clone(), None)]);
            let resp = self.call("claim", c.txn(txn)).await?;
            if resp.succeeded() {
                self.remember(record, revision(&resp));
                return Ok(Claim::Owned);
            }
            let Some(kv) = txn_kvs(&resp).into_iter().next() else {
                continue;
            };
            let existing = decode_stream(&key, kv.value())?;
            if existing.origin_node_id != record.origin_node_id {
                return Ok(Claim::OwnedBy(existing));
            }
            // Our own record (an earlier run of this node, or a restore): bind it to our lease.
            if kv.lease() == lease && kv.value() == value.as_slice() {
                self.remember(record, kv.mod_revision());
                return Ok(Claim::Owned);
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([put()]);
            let resp = self.call("rebind claim", c.txn(txn)).await?;
            if resp.succeeded() {
                self.remember(record, revision(&resp));
                return Ok(Claim::Owned);
            }
        }
        Err(RegistryError::Unavailable(format!(
            "claim {key}: the key kept changing"
        )))
    }

    /// Deletes `app/name` if its record names `our_id` as origin.
    async fn release_inner(&self, key: &str, our_id: &str) -> Result<(), RegistryError> {
        let path = format!("{}{key}", self.streams_prefix());
        let mut c = self.client.clone();
        let resp = self.call("get", c.get(path.clone(), None)).await?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(());
        };
        let owner = decode_stream(&path, kv.value())?.origin_node_id;
        if owner != our_id {
            return Ok(());
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                path.clone(),
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([TxnOp::delete(path, None)]);
        // A failed compare means the key changed hands meanwhile: then it is not ours to delete.
        self.call("delete", c.txn(txn)).await.map(|_| ())
    }

    /// One keep-alive round trip, opening the keep-alive stream if needed.
    async fn keep_alive_once(
        &self,
        keeper: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
        lease: i64,
    ) -> KeepAlive {
        let limit = self.config.op_timeout;
        let Some((k, stream)) = keeper.as_mut() else {
            let mut lc = self.client.lease_client();
            return match bounded(limit, lc.keep_alive(lease)).await {
                Ok(pair) => {
                    *keeper = Some(pair);
                    KeepAlive::Alive
                }
                Err(e) if e.lease_missing() => KeepAlive::Expired,
                Err(e) => KeepAlive::Failed(e.context("keep-alive").to_string()),
            };
        };
        if let Err(e) = k.keep_alive().await {
            return KeepAlive::Failed(e.to_string());
        }
        match bounded(limit, stream.message()).await {
            Ok(Some(resp)) if resp.ttl() > 0 => KeepAlive::Alive,
            Ok(Some(_)) => KeepAlive::Expired,
            Ok(None) => KeepAlive::Failed("keep-alive stream closed".to_string()),
            Err(e) => KeepAlive::Failed(e.context("keep-alive").to_string()),
        }
    }

    /// Brings etcd in line with what this node holds: node record, failed releases, claims.
    /// Returns whether everything was done (otherwise it is retried on the next tick).
    async fn reconcile(self: &Arc<Self>) -> bool {
        let (node, put_node, releases, restore) = {
            let st = self.lock();
            (
                st.node.clone(),
                st.node_dirty || st.restore,
                st.pending_releases.clone(),
                st.restore,
            )
        };
        let mut done = true;
        if let (Some(node), true) = (node, put_node) {
            match self.put_node(&node).await {
                Ok(()) => {
                    let mut st = self.lock();
                    if st.node.as_ref() == Some(&node) {
                        st.node_dirty = false;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "node record not restored yet");
                    return false;
                }
            }
        }
        for (key, our_id) in releases {
            match self.release_inner(&key, &our_id).await {
                Ok(()) => {
                    self.lock().pending_releases.remove(&key);
                }
                Err(_) => done = false,
            }
        }
        if restore {
            let records: Vec<StreamRecord> = self
                .lock()
                .claims
                .values()
                .map(|e| e.record.clone())
                .collect();
            let mut claims_done = true;
            for record in records {
                let key = stream_key(&record.app, &record.name);
                match self.claim_inner(record, false).await {
                    Ok(Claim::Owned) => {}
                    Ok(Claim::OwnedBy(other)) => {
                        tracing::warn!(stream = %key, owner = %other.origin_node_id, "could not re-claim stream");
                        self.lose(&key);
                    }
                    Err(e) => {
                        tracing::debug!(stream = %key, error = %e, "stream not re-claimed yet");
                        claims_done = false;
                    }
                }
            }
            if claims_done {
                self.lock().restore = false;
                tracing::info!("registry claims restored");
            }
            done &= claims_done;
        }
        done
    }

    fn has_work(&self) -> bool {
        let st = self.lock();
        st.node_dirty || st.restore || !st.pending_releases.is_empty()
    }

    /// Grants a fresh lease after ours expired; our keys are then restored on it.
    async fn regrant(&self) -> Result<i64, RegistryError> {
        let mut c = self.client.clone();
        let lease = self
            .call("grant lease", c.lease_grant(ttl_secs(&self.config), None))
            .await?
            .id();
        let mut st = self.lock();
        st.lease = lease;
        st.restore = true;
        Ok(lease)
    }

    /// Checks a stored stream key against our claims: someone else's write after ours means
    /// the claim is lost; a deletion after ours means it must be re-asserted.
    fn observe_stream(&self, kv: &KeyValue, deleted: bool) {
        let Some(key) = kv
            .key_str()
            .ok()
            .and_then(|k| k.strip_prefix(&self.streams_prefix()))
            .map(str::to_string)
        else {
            return;
        };
        let our_id = {
            let st = self.lock();
            match st.claims.get(&key) {
                Some(e) if kv.mod_revision() > e.revision => e.record.origin_node_id.clone(),
                _ => return,
            }
        };
        if deleted {
            self.lock().restore = true;
            self.lease_check.notify_one();
            return;
        }
        match decode_stream(&key, kv.value()) {
            Ok(r) if r.origin_node_id != our_id => self.lose(&key),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "undecodable stream record"),
        }
    }

    /// The current state of one stream key and the revision it was read at.
    async fn current(&self, path: &str) -> Result<(StreamEvent, i64), RegistryError> {
        let mut c = self.client.clone();
        let resp = self.call("get", c.get(path, None)).await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let event = match resp.kvs().first() {
            Some(kv) => StreamEvent::Put(Arc::new(decode_stream(path, kv.value())?)),
            None => StreamEvent::Deleted,
        };
        Ok((event, rev))
    }

    async fn open_watch(
        &self,
        path: &str,
        from: i64,
        prefix: bool,
    ) -> Result<WatchStream, RegistryError> {
        let mut c = self.client.clone();
        let mut opts = WatchOptions::new().with_start_revision(from);
        if prefix {
            opts = opts.with_prefix();
        }
        let mut stream = self.call("watch", c.watch(path, Some(opts))).await?;
        // The first message confirms the watch was created (etcd-client 0.18+).
        match bounded(self.config.op_timeout, stream.message()).await {
            Ok(Some(r)) if r.created() && !r.canceled() => Ok(stream),
            Ok(_) => Err(RegistryError::Unavailable(format!(
                "watch {path}: not created"
            ))),
            Err(e) => Err(e.context("watch")),
        }
    }
}

async fn keep_alive_task(inner: Arc<Inner>) {
    let ttl = Duration::from_secs(ttl_secs(&inner.config).unsigned_abs());
    let tick = (ttl / 3).max(Duration::from_millis(100));
    let retry = (ttl / 5).max(Duration::from_millis(100));
    let mut keeper = None;
    let mut failing = false;
    loop {
        let pause = if failing { retry } else { tick };
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
            _ = inner.lease_check.notified() => {}
        }
        let lease = inner.lock().lease;
        let start = Instant::now();
        let outcome = inner.keep_alive_once(&mut keeper, lease).await;
        metrics::counter!(metric::REGISTRY_OPERATIONS, "op" => "keepalive").increment(1);
        metrics::histogram!(metric::REGISTRY_DURATION, "op" => "keepalive")
            .record(start.elapsed().as_secs_f64());
        match outcome {
            KeepAlive::Alive => {
                if failing {
                    tracing::info!(lease, "registry lease renewed again");
                    failing = false;
                }
            }
            KeepAlive::Expired => {
                keeper = None;
                metrics::counter!(metric::LEASE_RENEWAL_FAILURES).increment(1);
                metrics::counter!(metric::REGISTRY_FAILURES, "op" => "keepalive").increment(1);
                match inner.regrant().await {
                    Ok(new) => {
                        tracing::warn!(old = lease, new, "registry lease expired; restoring keys");
                        failing = false;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "registry lease expired; cannot grant a new one");
                        failing = true;
                        continue;
                    }
                }
            }
            KeepAlive::Failed(reason) => {
                keeper = None;
                metrics::counter!(metric::LEASE_RENEWAL_FAILURES).increment(1);
                metrics::counter!(metric::REGISTRY_FAILURES, "op" => "keepalive").increment(1);
                if !failing {
                    tracing::warn!(lease, %reason, "registry lease renewal failed; retrying");
                }
                failing = true;
                continue;
            }
        }
        if inner.has_work() && !inner.reconcile().await {
            failing = true;
        }
    }
}

/// Keeps `Inner::view` current: one list and one watch of the whole prefix (nodes and
/// streams), re-established with backoff after outages; the view keeps its last state
/// meanwhile and is replaced by a fresh snapshot when etcd answers again. The same watch
/// checks our claims (`observe_stream`): another node's write after ours means takeover.
async fn view_task(inner: Arc<Inner>) {
    let mut backoff = WATCH_BACKOFF_MIN;
    loop {
        let established = tokio::select! {
            _ = inner.cancel.cancelled() => return,
            r = view_watch_once(&inner) => r,
        };
        if established {
            backoff = WATCH_BACKOFF_MIN;
        }
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(WATCH_BACKOFF_MAX);
    }
}

/// What a key under the prefix is, for the view.
enum ViewKey {
    Node(String),
    Stream(String),
}

impl Inner {
    fn view_key(&self, key: &[u8]) -> Option<ViewKey> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        if let Some(id) = rest.strip_prefix("nodes/") {
            return Some(ViewKey::Node(id.to_string()));
        }
        rest.strip_prefix("streams/")
            .map(|k| ViewKey::Stream(k.to_string()))
    }

    fn apply_view(&self, kv: &KeyValue, deleted: bool) {
        match (self.view_key(kv.key()), deleted) {
            (Some(ViewKey::Node(id)), true) => self.view.delete_node(&id),
            (Some(ViewKey::Stream(key)), true) => self.view.delete_stream(&key),
            (Some(ViewKey::Node(_)), false) => match NodeRecord::decode(kv.value()) {
                Ok(n) => self.view.put_node(n),
                Err(e) => tracing::warn!(error = %e, "undecodable node record"),
            },
            (Some(ViewKey::Stream(key)), false) => match decode_stream(&key, kv.value()) {
                Ok(r) => self.view.put_stream(key, r),
                Err(e) => tracing::warn!(error = %e, "undecodable stream record"),
            },
            (None, _) => {}
        }
    }
}

/// Keys per page of the view's initial list: one response for the whole prefix would pass
/// the gRPC client's 4 MiB message limit at about 32,000 keys (docs/scaling.md).
const LIST_PAGE: i64 = 2000;

/// Every key under `prefix` at one revision (pages of `LIST_PAGE`, the later ones pinned to
/// the first one's revision, so the snapshot is consistent), and that revision.
async fn list_prefix(inner: &Inner, prefix: &str) -> Result<(Vec<KeyValue>, i64), RegistryError> {
    let mut end = prefix.as_bytes().to_vec();
    // The prefix's range end: its last byte + 1 ('/' + 1 = '0').
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let mut c = inner.client.clone();
    let mut from = prefix.as_bytes().to_vec();
    let mut rev = 0;
    let mut kvs = Vec::new();
    loop {
        let mut opts = GetOptions::new()
            .with_range(end.clone())
            .with_limit(LIST_PAGE);
        if rev > 0 {
            opts = opts.with_revision(rev);
        }
        let mut resp = inner.call("list", c.get(from.clone(), Some(opts))).await?;
        if rev == 0 {
            rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        }
        let more = resp.more();
        let page = resp.take_kvs();
        match page.last() {
            Some(last) if more => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => {
                kvs.extend(page);
                return Ok((kvs, rev));
            }
        }
        kvs.extend(page);
    }
}

/// Lists the prefix into the view, then follows changes until the watch breaks. Returns
/// whether the watch had been established.
async fn view_watch_once(inner: &Inner) -> bool {
    let prefix = format!("{}/", inner.prefix);
    let listed = inner.measured("list", list_prefix(inner, &prefix)).await;
    let (kvs, rev) = match listed {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "cluster view: list failed");
            return false;
        }
    };
    let mut nodes = Vec::new();
    let mut streams = Vec::new();
    for kv in &kvs {
        match inner.view_key(kv.key()) {
            Some(ViewKey::Node(_)) => match NodeRecord::decode(kv.value()) {
                Ok(n) => nodes.push(n),
                Err(e) => tracing::warn!(error = %e, "undecodable node record"),
            },
            Some(ViewKey::Stream(key)) => {
                inner.observe_stream(kv, false);
                match decode_stream(&key, kv.value()) {
                    Ok(r) => streams.push((key, r)),
                    Err(e) => tracing::warn!(error = %e, "undecodable stream record"),
                }
            }
            None => {}
        }
    }
    let watched = inner
        .measured("watch", inner.open_watch(&prefix, rev + 1, true))
        .await;
    // The snapshot is applied only with a watch behind it, so no change can fall between.
    inner.view.replace(nodes, streams);
    let mut stream = match watched {
        Ok(s) => s,
        Err(_) => return false,
    };
    loop {
        match stream.message().await {
            Ok(Some(resp)) if !resp.canceled() => {
                for ev in resp.events() {
                    if let Some(kv) = ev.kv() {
                        let deleted = ev.event_type() == EventType::Delete;
                        inner.observe_stream(kv, deleted);
                        inner.apply_view(kv, deleted);
                    }
                }
            }
            Ok(_) | Err(_) => {
                tracing::debug!("cluster view: watch broken; re-establishing");
                return true;
            }
        }
    }
}

/// Sends `event` unless the receiver or the registry is gone; false means stop.
async fn deliver(
    tx: &mpsc::Sender<StreamEvent>,
    cancel: &CancellationToken,
    event: StreamEvent,
) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        r = tx.send(event) => r.is_ok(),
    }
}

/// Follows one stream key for a `watch()` receiver, re-establishing after outages.
async fn stream_watch_task(inner: Arc<Inner>, path: String, tx: mpsc::Sender<StreamEvent>) {
    let cancel = inner.cancel.child_token();
    let mut backoff = WATCH_BACKOFF_MIN;
    loop {
        let established = tokio::select! {
            _ = tx.closed() => return,
            _ = cancel.cancelled() => return,
            r = stream_watch_once(&inner, &path, &tx, &cancel) => match r {
                Some(established) => established,
                None => return,
            },
        };
        if established {
            backoff = WATCH_BACKOFF_MIN;
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(WATCH_BACKOFF_MAX);
    }
}

/// Sends the current state of `path`, then its changes until the watch breaks. `None` means
/// the receiver is gone; otherwise whether the watch had been established.
async fn stream_watch_once(
    inner: &Inner,
    path: &str,
    tx: &mpsc::Sender<StreamEvent>,
    cancel: &CancellationToken,
) -> Option<bool> {
    let opened = inner
        .measured("watch", async {
            let (state, rev) = inner.current(path).await?;
            let stream = inner.open_watch(path, rev + 1, false).await?;
            Ok((state, stream))
        })
        .await;
    let (state, mut stream) = match opened {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(key = path, error = %e, "stream watch not established");
            return Some(false);
        }
    };
    if !deliver(tx, cancel, state).await {
        return None;
    }
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) if !resp.canceled() => resp,
            Ok(_) | Err(_) => {
                tracing::debug!(key = path, "stream watch broken; re-establishing");
                return Some(true);
            }
        };
        for ev in resp.events() {
            let event = match (ev.event_type(), ev.kv()) {
                (EventType::Delete, _) => StreamEvent::Deleted,
                (EventType::Put, Some(kv)) => match decode_stream(path, kv.value()) {
                    Ok(r) => StreamEvent::Put(Arc::new(r)),
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable stream record");
                        continue;
                    }
                },
                (EventType::Put, None) => continue,
            };
            if !deliver(tx, cancel, event).await {
                return None;
            }
        }
    }
}

impl Registry for EtcdRegistry {
    fn register(&self, node: NodeRecord) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(self.inner.measured("register", async move {
            {
                let mut st = self.inner.lock();
                st.node = Some(node.clone());
                st.node_dirty = true;
            }
            self.inner.put_node(&node).await?;
            let mut st = self.inner.lock();
            if st.node.as_ref() == Some(&node) {
                st.node_dirty = false;
            }
            Ok(())
        }))
    }

    fn claim(
        &self,
        record: StreamRecord,
        takeover: bool,
    ) -> BoxFuture<'_, Result<Claim, RegistryError>> {
        Box::pin(
            self.inner
                .measured("claim", self.inner.claim_inner(record, takeover)),
        )
    }

    fn release(&self, app: &str, name: &str) -> BoxFuture<'_, Result<(), RegistryError>> {
        let key = stream_key(app, name);
        Box::pin(self.inner.measured("release", async move {
            let our_id = {
                let mut st = self.inner.lock();
                let from_claim = st.claims.remove(&key).map(|e| e.record.origin_node_id);
                from_claim.or_else(|| st.node.as_ref().map(|n| n.node_id.clone()))
            };
            let Some(our_id) = our_id else {
                return Ok(());
            };
            let res = self.inner.release_inner(&key, &our_id).await;
            if res.is_err() {
                // Otherwise the key would live as long as our lease, i.e. as long as we do.
                self.inner.lock().pending_releases.insert(key, our_id);
            }
            res
        }))
    }

    fn lookup(
        &self,
        app: &str,
        name: &str,
    ) -> BoxFuture<'_, Result<Option<StreamRecord>, RegistryError>> {
        let path = self.inner.stream_path(app, name);
        Box::pin(self.inner.measured("lookup", async move {
            match self.inner.current(&path).await? {
                (StreamEvent::Put(r), _) => Ok(Some(Arc::unwrap_or_clone(r))),
                (StreamEvent::Deleted, _) => Ok(None),
            }
        }))
    }

    fn watch(&self, app: &str, name: &str) -> mpsc::Receiver<StreamEvent> {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let path = self.inner.stream_path(app, name);
        tokio::spawn(stream_watch_task(self.inner.clone(), path, tx));
        rx
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeRecord>, RegistryError>> {
        Box::pin(self.inner.measured("list", async move {
            let prefix = format!("{}/nodes/", self.inner.prefix);
            let mut c = self.inner.client.clone();
            let resp = self
                .inner
                .call(
                    "list nodes",
                    c.get(prefix, Some(GetOptions::new().with_prefix())),
                )
                .await?;
            Ok(resp
                .kvs()
                .iter()
                .filter_map(|kv| match NodeRecord::decode(kv.value()) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::warn!(key = ?kv.key_str(), error = %e, "undecodable node record");
                        None
                    }
                })
                .collect())
        }))
    }

    fn streams(&self) -> BoxFuture<'_, Result<Vec<StreamRecord>, RegistryError>> {
        Box::pin(self.inner.measured("list", async move {
            let prefix = self.inner.streams_prefix();
            let mut c = self.inner.client.clone();
            let resp = self
                .inner
                .call("list streams", c.get(prefix, Some(GetOptions::new().with_prefix())))
                .await?;
            Ok(resp
                .kvs()
                .iter()
                .filter_map(|kv| match StreamRecord::decode(kv.value()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(key = ?kv.key_str(), error = %e, "undecodable stream record");
                        None
                    }
                })
                .collect())
        }))
    }

    fn view(&self) -> Arc<ClusterView> {
        self.inner.view.clone()
    }

    fn lost_claims(&self) -> broadcast::Receiver<String> {
        self.inner.lost.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds_less_the_expiry_tick() {
        let mut c = EtcdConfig::default();
        assert_eq!(ttl_secs(&c), 4);
        c.lease_ttl = Duration::from_millis(2500);
        assert_eq!(ttl_secs(&c), 2);
        c.lease_ttl = Duration::from_secs(2);
        assert_eq!(ttl_secs(&c), 2);
        c.lease_ttl = Duration::from_millis(1500);
        assert_eq!(ttl_secs(&c), 2);
        c.lease_ttl = Duration::ZERO;
        assert_eq!(ttl_secs(&c), 1);
    }

    #[tokio::test]
    async fn connect_fails_fast_without_etcd() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let config = EtcdConfig {
            endpoints: vec![format!("http://127.0.0.1:{port}")],
            op_timeout: Duration::from_millis(300),
            ..EtcdConfig::default()
        };
        let start = Instant::now();
        let res = EtcdRegistry::connect(config).await;
        assert!(matches!(res, Err(RegistryError::Unavailable(_))));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}

//! registry-sim's nodes: the records they write, the counters they share, raw edges (etcd-client
//! calls with `EtcdRegistry`'s keys, values, TTL and intervals) and the loops of the real ones.
//! Nothing here fails the run: errors are counted.

use super::*;

// ---------------------------------------------------------------------------------------------
// Records

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A node record as `common::node` writes it (same fields, realistic lengths).
pub(crate) fn node_record(id: &str, role: Role, n: usize) -> NodeRecord {
    let ip = format!("10.{}.{}.{}", n / 65536 % 256, n / 256 % 256, n % 256);
    NodeRecord {
        node_id: id.to_string(),
        role: role as i32,
        region: ["eu-west", "us-east", "ap-south"][n % 3].to_string(),
        zone: format!("zone-{}", n % 3 + 1),
        rtmp_address: format!("{ip}:1935"),
        http_address: format!("{ip}:8080"),
        grpc_address: format!("{ip}:8080"),
        load: Some(load(n)),
        draining: false,
        capacity_players: 5000,
        tier: u32::from(role == Role::Edge),
        public_urls: Some(PublicUrls {
            rtmp: format!("rtmp://{id}.cdn.example.com:1935"),
            http: format!("https://{id}.cdn.example.com"),
        }),
    }
}

pub(crate) fn load(n: usize) -> NodeLoad {
    NodeLoad {
        players: 1000 + n as u64 % 997,
        streams: 50 + n as u64 % 31,
        egress_bits_per_second: 2_000_000_000 + n as u64 * 7919,
        updated_at: now_ms(),
    }
}

pub(crate) fn stream_record(app: &str, name: &str, origin: usize) -> StreamRecord {
    StreamRecord {
        app: app.to_string(),
        name: name.to_string(),
        origin_node_id: origin_id(origin),
        origin_rtmp_address: format!("10.200.0.{origin}:1935"),
        started_at: now_ms(),
        codecs: vec!["avc1.64001f".to_string(), "mp4a.40.2".to_string()],
        prewarm_regions: Vec::new(),
    }
}

pub(crate) fn origin_id(i: usize) -> String {
    format!("origin-{i:02}")
}

pub(crate) fn edge_id(i: usize) -> String {
    format!("edge-{i:05}")
}

// ---------------------------------------------------------------------------------------------
// Shared state and counters

pub(crate) const COUNTERS: usize = 10;

#[derive(Default)]
pub(crate) struct Counters {
    /// Node-record puts sent (raw and real nodes).
    pub(crate) node_puts: AtomicU64,
    pub(crate) put_errors: AtomicU64,
    pub(crate) keepalives: AtomicU64,
    pub(crate) keepalive_errors: AtomicU64,
    pub(crate) regrants: AtomicU64,
    /// Events received by the raw watchers.
    pub(crate) events: AtomicU64,
    /// Watch responses (each carries one or more events) received by the raw watchers.
    pub(crate) watch_msgs: AtomicU64,
    pub(crate) watch_breaks: AtomicU64,
    pub(crate) watch_errors: AtomicU64,
    /// Watches compacted away or canceled by etcd.
    pub(crate) watch_canceled: AtomicU64,
}

impl Counters {
    pub(crate) fn all(&self) -> [&AtomicU64; COUNTERS] {
        [
            &self.node_puts,
            &self.put_errors,
            &self.keepalives,
            &self.keepalive_errors,
            &self.regrants,
            &self.events,
            &self.watch_msgs,
            &self.watch_breaks,
            &self.watch_errors,
            &self.watch_canceled,
        ]
    }

    pub(crate) fn get(&self) -> [u64; COUNTERS] {
        self.all().map(|c| c.load(Ordering::Relaxed))
    }
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One failover: written at `start`; every edge records when it sees the new owner.
pub(crate) struct Failover {
    pub(crate) name: String,
    pub(crate) new_origin: String,
    pub(crate) start: OnceLock<Instant>,
    pub(crate) seen: AtomicUsize,
    pub(crate) last_us: AtomicU64,
}

impl Failover {
    pub(crate) fn saw(&self) {
        if let Some(start) = self.start.get() {
            let us = start.elapsed().as_micros() as u64;
            self.last_us.fetch_max(us, Ordering::Relaxed);
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(crate) struct Shared {
    pub(crate) load_interval: Duration,
    pub(crate) ttl: i64,
    pub(crate) cancel: CancellationToken,
    pub(crate) c: Counters,
    pub(crate) failovers: Vec<Failover>,
    /// `{prefix}/streams/fo/`: the failover keys.
    pub(crate) fo_prefix: Vec<u8>,
    pub(crate) nodes_prefix: Vec<u8>,
    /// Delivery lag of node records (now - updated_at), sampled by raw watchers.
    pub(crate) lag: Histogram,
    pub(crate) watchers_up: AtomicUsize,
}

// ---------------------------------------------------------------------------------------------
// Raw edges: etcd-client calls with EtcdRegistry's keys, values, TTL and intervals

pub(crate) async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timeout".to_string()),
    }
}

/// Grants the lease and writes the node record; the loops then keep both alive.
pub(crate) async fn raw_setup(sh: &Shared, client: &mut Client, n: usize) -> Result<i64, String> {
    let lease = bounded(client.lease_grant(sh.ttl, None)).await?.id();
    let rec = node_record(&edge_id(n), Role::Edge, n);
    let key = format!("{PREFIX}/nodes/{}", rec.node_id);
    let opts = PutOptions::new().with_lease(lease);
    bounded(client.put(key, rec.encode_to_vec(), Some(opts))).await?;
    Ok(lease)
}

/// Keep-alive every TTL/3 and a node-record put every `load_interval` (first one at `phase`).
pub(crate) async fn raw_lease_loop(
    sh: Arc<Shared>,
    mut client: Client,
    n: usize,
    mut lease: i64,
    phase: Duration,
) {
    let mut rec = node_record(&edge_id(n), Role::Edge, n);
    let key = format!("{PREFIX}/nodes/{}", rec.node_id);
    let tick = Duration::from_secs(sh.ttl as u64) / 3;
    let start = tokio::time::Instant::now();
    let mut ka = tokio::time::interval_at(
        start + phase.mul_f64(tick.as_secs_f64() / sh.load_interval.as_secs_f64()),
        tick,
    );
    let mut put = tokio::time::interval_at(start + phase, sh.load_interval);
    ka.set_missed_tick_behavior(MissedTickBehavior::Delay);
    put.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    loop {
        tokio::select! {
            _ = sh.cancel.cancelled() => return,
            _ = ka.tick() => {
                match keep_alive(&mut client, &mut keeper, lease).await {
                    Ok(true) => inc(&sh.c.keepalives),
                    Ok(false) => {
                        // Expired (the node was starved longer than the TTL): a new lease.
                        keeper = None;
                        inc(&sh.c.regrants);
                        if let Ok(r) = bounded(client.lease_grant(sh.ttl, None)).await {
                            lease = r.id();
                        }
                    }
                    Err(_) => {
                        keeper = None;
                        inc(&sh.c.keepalive_errors);
                    }
                }
            }
            _ = put.tick() => {
                rec.load = Some(load(n));
                let opts = PutOptions::new().with_lease(lease);
                match bounded(client.put(key.clone(), rec.encode_to_vec(), Some(opts))).await {
                    Ok(_) => inc(&sh.c.node_puts),
                    Err(_) => inc(&sh.c.put_errors),
                }
            }
        }
    }
}

/// One keep-alive round trip like `EtcdRegistry`: Ok(false) means the lease is gone.
pub(crate) async fn keep_alive(
    client: &mut Client,
    keeper: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    lease: i64,
) -> Result<bool, String> {
    if keeper.is_none() {
        *keeper = Some(bounded(client.lease_keep_alive(lease)).await?);
    }
    let Some((k, stream)) = keeper.as_mut() else {
        return Err("no keeper".to_string());
    };
    bounded(k.keep_alive()).await?;
    match bounded(stream.message()).await? {
        Some(r) => Ok(r.ttl() > 0),
        None => Err("keep-alive stream closed".to_string()),
    }
}

/// One watch of the whole prefix, like `view_watch_once` (without the initial list: that is
/// measured once per configuration instead), re-opened after a break.
pub(crate) async fn raw_watch_loop(sh: Arc<Shared>, mut client: Client) {
    let prefix = format!("{PREFIX}/");
    let mut counted = false;
    let mut nth: u64 = 0;
    loop {
        let opened = async {
            let mut s =
                bounded(client.watch(prefix.clone(), Some(WatchOptions::new().with_prefix())))
                    .await?;
            match bounded(s.message()).await? {
                Some(r) if r.created() && !r.canceled() => Ok(s),
                _ => Err("watch not created".to_string()),
            }
        };
        let opened = tokio::select! {
            _ = sh.cancel.cancelled() => return,
            r = opened => r,
        };
        match opened {
            Ok(mut stream) => {
                if !counted {
                    counted = true;
                    sh.watchers_up.fetch_add(1, Ordering::Relaxed);
                }
                loop {
                    let msg = tokio::select! {
                        _ = sh.cancel.cancelled() => return,
                        m = stream.message() => m,
                    };
                    match msg {
                        Ok(Some(resp)) if !resp.canceled() => on_events(&sh, &resp, &mut nth),
                        Ok(Some(_)) => {
                            inc(&sh.c.watch_canceled);
                            break;
                        }
                        Ok(None) | Err(_) => {
                            inc(&sh.c.watch_breaks);
                            break;
                        }
                    }
                }
            }
            Err(_) => inc(&sh.c.watch_errors),
        }
        tokio::select! {
            _ = sh.cancel.cancelled() => return,
            _ = sleep(Duration::from_secs(1)) => {}
        }
    }
}

pub(crate) fn on_events(sh: &Shared, resp: &WatchResponse, nth: &mut u64) {
    let events = resp.events();
    sh.c.events
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    inc(&sh.c.watch_msgs);
    for ev in events {
        let Some(kv) = ev.kv() else { continue };
        let key = kv.key();
        if ev.event_type() != EventType::Put {
            continue;
        }
        if key.starts_with(&sh.fo_prefix) {
            if let Ok(r) = StreamRecord::decode(kv.value())
                && let Some(f) = sh
                    .failovers
                    .iter()
                    .find(|f| f.name == r.name && f.new_origin == r.origin_node_id)
            {
                f.saw();
            }
        } else if key.starts_with(&sh.nodes_prefix) {
            *nth += 1;
            if (*nth).is_multiple_of(LAG_SAMPLE)
                && let Ok(n) = NodeRecord::decode(kv.value())
                && let Some(l) = n.load
            {
                sh.lag.record(now_ms().saturating_sub(l.updated_at) * 1000);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Real nodes: EtcdRegistry

pub(crate) async fn connect_real(
    endpoints: &[String],
    ttl: u64,
) -> anyhow::Result<Arc<EtcdRegistry>> {
    let config = EtcdConfig {
        lease_ttl: Duration::from_secs(ttl),
        ..EtcdConfig::new(endpoints.to_vec())
    };
    EtcdRegistry::connect(config)
        .await
        .map_err(|e| anyhow::anyhow!("connect registry: {e}"))
}

/// `common::node::report_load`: register every `load_interval`.
pub(crate) async fn real_load_loop(
    sh: Arc<Shared>,
    reg: Arc<EtcdRegistry>,
    mut rec: NodeRecord,
    n: usize,
    phase: Duration,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, sh.load_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sh.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        rec.load = Some(load(n));
        match reg.register(rec.clone()).await {
            Ok(()) => inc(&sh.c.node_puts),
            Err(_) => inc(&sh.c.put_errors),
        }
    }
}

/// A real edge's view of a failover key: records when it names the new owner.
pub(crate) async fn real_failover_watch(sh: Arc<Shared>, reg: Arc<EtcdRegistry>, idx: usize) {
    let Some(f) = sh.failovers.get(idx) else {
        return;
    };
    let mut rx = reg.view().watch("fo", &f.name);
    loop {
        let ev = tokio::select! {
            _ = sh.cancel.cancelled() => return,
            ev = rx.recv() => ev,
        };
        match ev {
            Some(StreamEvent::Put(r))
                if r.origin_node_id == f.new_origin && f.start.get().is_some() =>
            {
                f.saw();
                return;
            }
            Some(_) => {}
            None => return,
        }
    }
}

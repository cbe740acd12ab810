//! The edge node: serves RTMP and HTTP-FLV players from its hub, pulling each stream once from
//! its owner (found in the registry's cached view, or a static origin list) on the first play,
//! behind a negative cache and caps on ingests and on waiting plays per client (`gate`).
//! `run(config, shutdown)` is what `main` and the tests call.

pub mod gate;
mod ingest;
pub mod prewarm;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use common::admission::Admission;
use common::cluster::{ClusterView, Role};
use common::config::{CommonArgs, parse_duration};
use common::media::{Hub, Publisher, Subscriber};
use common::net::{Node, PlayRequest, PublishRequest, Refusal};
pub use common::node::NodeError;
use common::node::{NodeParts, bind, serve};
use common::telemetry::metric;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use gate::{Gate, GateConfig, Shed};
pub use ingest::{IngestConfig, Parents, Upstreams};

/// Every option of the edge: flag, `LIVECDN_*` variable, or key of the `--config` file.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "edge",
    version,
    about = "livecdn edge: pulls streams on demand, serves players"
)]
pub struct EdgeConfig {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Tier of this edge: 1 pulls from origins; n > 1 pulls each stream from a tier n-1 edge
    /// the locator picks (the next one, then the origin, if it fails).
    #[arg(long = "tier", env = "LIVECDN_TIER", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub tier: u32,
    /// Static upstream `rtmp://host:port` (repeatable), tried in order, used instead of etcd.
    #[arg(long = "origin", env = "LIVECDN_ORIGIN", value_delimiter = ',')]
    pub origin: Vec<String>,
    /// Keep pulling a stream this long after its last player left.
    #[arg(long = "edge-idle-grace", env = "LIVECDN_EDGE_IDLE_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub edge_idle_grace: Duration,
    /// Players stay connected this long while a failed upstream is re-established.
    #[arg(long = "edge-reconnect-window", env = "LIVECDN_EDGE_RECONNECT_WINDOW", default_value = "15s", value_parser = parse_duration)]
    pub edge_reconnect_window: Duration,
    /// After an upstream ends a stream, wait this long for a new owner before ending players.
    #[arg(long = "edge-moved-wait", env = "LIVECDN_EDGE_MOVED_WAIT", default_value = "3s", value_parser = parse_duration)]
    pub edge_moved_wait: Duration,
    /// Upstream TCP connect timeout.
    #[arg(long = "edge-connect-timeout", env = "LIVECDN_EDGE_CONNECT_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub edge_connect_timeout: Duration,
    /// An upstream silent for this long is treated as dead.
    #[arg(long = "edge-upstream-timeout", env = "LIVECDN_EDGE_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub edge_upstream_timeout: Duration,
    /// A stream just found unpublished is answered 404 / StreamNotFound at once for this long
    /// (no new lookup, no ingest); 0 turns the cache off.
    #[arg(long = "edge-not-found-ttl", env = "LIVECDN_EDGE_NOT_FOUND_TTL", default_value = "2s", value_parser = parse_duration)]
    pub edge_not_found_ttl: Duration,
    /// Concurrent ingests (streams pulled or awaited) at most; plays of other streams beyond
    /// it are refused (503 / NetStream.Play.Failed).
    #[arg(
        long = "edge-max-ingests",
        env = "LIVECDN_EDGE_MAX_INGESTS",
        default_value_t = 1000
    )]
    pub edge_max_ingests: usize,
    /// Plays waiting for a stream that does not flow yet, per client address, at most;
    /// beyond it, 429 / NetStream.Play.Failed.
    #[arg(
        long = "edge-max-pending-per-ip",
        env = "LIVECDN_EDGE_MAX_PENDING_PER_IP",
        default_value_t = 8
    )]
    pub edge_max_pending_per_ip: usize,
}

/// The ingests running on this edge, by stream key. Players attach and ingests detach under
/// one lock, so a player never attaches to an ingest that is ending.
pub struct Ingests {
    /// Each running ingest with the upstream it currently pulls from.
    running: Mutex<HashMap<String, Arc<Mutex<Option<String>>>>>,
}

impl Ingests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mutex<Option<String>>>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes `key` and ends its hub stream (players get end-of-stream).
    pub(crate) fn remove(&self, key: &str, publisher: Option<Publisher>) {
        let mut running = self.lock();
        running.remove(key);
        drop(publisher);
    }

    /// Removes `key` (ending its hub stream) unless a player watches it: atomic with
    /// respect to `Edge::attach`, which subscribes under the same lock.
    pub(crate) fn remove_if_unwatched(
        &self,
        key: &str,
        hub: &Hub,
        publisher: &mut Option<Publisher>,
    ) -> bool {
        let mut running = self.lock();
        if hub.get(key).is_some_and(|s| s.subscriber_count() > 0) {
            return false;
        }
        running.remove(key);
        drop(publisher.take());
        true
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn upstream(&self, key: &str) -> Option<String> {
        let slot = self.lock().get(key)?.clone();
        slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the edge does with a publish or a play.
pub struct Edge {
    hub: Arc<Hub>,
    ingests: Arc<Ingests>,
    upstreams: Upstreams,
    ingest_config: IngestConfig,
    play_wait: Duration,
    admission: Admission,
    /// Negative cache and caps (see `gate`).
    gate: Arc<Mutex<Gate>>,
    /// The registry's cached view (absent with a static origin list).
    view: Option<Arc<ClusterView>>,
    /// Streams pulled ahead of any player.
    prewarmed: prewarm::Prewarmed,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// One play counted as waiting for its client address until dropped (whatever way the play
/// ends, a client hanging up included).
struct Pending {
    gate: Arc<Mutex<Gate>>,
    ip: IpAddr,
}

impl Drop for Pending {
    fn drop(&mut self) {
        lock(&self.gate).end_pending(self.ip);
        metrics::gauge!(metric::PENDING_PLAYS).decrement(1.0);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shed(s: Shed, key: &str) -> Refusal {
    metrics::counter!(metric::PLAYS_SHED, "reason" => s.reason()).increment(1);
    match s {
        Shed::NotFoundCached => Refusal::not_found(format!("{key} is not published anywhere")),
        Shed::IngestLimit => Refusal::limited(
            503,
            "ingest_limit",
            "this edge pulls as many streams as it may: try another edge",
        ),
        Shed::PendingLimit => Refusal::limited(
            429,
            "pending_limit",
            "too many plays from this address wait for streams that are not published",
        ),
    }
}

/// The client address of `peer` (`ip:port`); unparsable peers share one bucket.
fn peer_ip(peer: &str) -> IpAddr {
    peer.parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| peer.parse::<IpAddr>())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

impl Edge {
    /// Whether the registry's view names an owner of `key` now.
    fn owner_known(&self, key: &str) -> bool {
        self.view.as_ref().is_some_and(|v| v.lookup(key).is_some())
    }

    /// Subscribes to `app/name`, starting its ingest if none runs and the cap allows.
    fn attach(&self, app: &str, name: &str) -> Result<Subscriber, Shed> {
        let key = format!("{app}/{name}");
        let mut running = self.ingests.lock();
        if running.contains_key(&key) {
            return Ok(self.hub.subscribe(&key));
        }
        lock(&self.gate).may_start_ingest(running.len())?;
        // Subscribed before the ingest starts: it ends at once when it sees no player.
        let sub = self.hub.subscribe(&key);
        let upstream = Arc::new(Mutex::new(None));
        running.insert(key.clone(), upstream.clone());

        let ingest = ingest::Ingest {
            app: app.to_string(),
            name: name.to_string(),
            key: key.clone(),
            hub: self.hub.clone(),
            upstreams: self.upstreams.clone(),
            config: self.ingest_config.clone(),
            ingests: self.ingests.clone(),
            shutdown: self.shutdown.clone(),
            upstream,
        };
        self.tasks.spawn(ingest.run());
        Ok(sub)
    }
}

impl Node for Edge {
    fn admission(&self) -> &Admission {
        &self.admission
    }

    fn upstream(&self, key: &str) -> Option<String> {
        self.ingests.upstream(key)
    }

    fn prewarmed(&self) -> Vec<String> {
        self.prewarmed.keys()
    }

    async fn publish(&self, _req: &PublishRequest) -> Result<Publisher, Refusal> {
        Err(Refusal::busy(
            "edges do not accept publishers: publish to an origin",
        ))
    }

    async fn play(&self, req: &PlayRequest) -> Result<Subscriber, Refusal> {
        if req.app.is_empty() || req.name.is_empty() {
            return Err(Refusal::not_found("play URLs are /{app}/{name}"));
        }
        let key = req.key();
        // A stream that flows here costs nothing more: no limit applies.
        if self.hub.get(&key).is_some_and(|s| s.is_publishing())
            && let Ok(sub) = self.attach(&req.app, &req.name)
            && sub.stream().is_publishing()
        {
            return Ok(sub);
        }
        let owner_known = self.owner_known(&key);
        let pending = {
            let mut gate = lock(&self.gate);
            if owner_known {
                gate.forget_missing(&key);
            } else if gate.known_missing(&key, Instant::now()) {
                drop(gate);
                return Err(shed(Shed::NotFoundCached, &key));
            }
            let ip = peer_ip(&req.peer);
            gate.begin_pending(ip).map_err(|s| shed(s, &key))?;
            metrics::gauge!(metric::PENDING_PLAYS).increment(1.0);
            Pending {
                gate: self.gate.clone(),
                ip,
            }
        };
        let sub = self
            .attach(&req.app, &req.name)
            .map_err(|s| shed(s, &key))?;
        let published = tokio::time::timeout(self.play_wait, sub.stream().wait_published()).await;
        drop(pending);
        match published {
            Ok(()) => Ok(sub),
            Err(_) => {
                // Not published within the wait, and no owner either: the next plays of this
                // name within the TTL fail at once instead of starting an ingest again.
                if !self.owner_known(&key) {
                    lock(&self.gate).note_missing(&key, Instant::now());
                }
                Err(Refusal::not_found(format!(
                    "{key} is not published anywhere"
                )))
            }
        }
    }
}

/// `rtmp://host:port[/...]` or `host:port` -> `host:port` (1935 if absent).
fn upstream_addr(url: &str) -> Result<String, NodeError> {
    let rest = url.strip_prefix("rtmp://").unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or_default();
    if hostport.is_empty() {
        return Err(NodeError::Config(format!("origin `{url}` has no host")));
    }
    Ok(if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:1935")
    })
}

/// Runs the edge until `shutdown`, then ends every player cleanly within the grace.
pub async fn run(config: EdgeConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    let rtmp = bind(config.common.net.rtmp_listen).await?;
    let http = bind(config.common.net.http_listen).await?;
    let api_token = config
        .common
        .api
        .token()
        .map_err(|e| NodeError::Config(e.to_string()))?;
    let api = bind(config.common.api.api_listen).await?;
    // Without a static list the registry finds owners; with one, a local in-memory registry
    // only records this node.
    let registry = config.common.cluster.registry().await?;
    let upstreams = if config.origin.is_empty() {
        Upstreams::Registry(registry.clone())
    } else {
        Upstreams::Static(
            config
                .origin
                .iter()
                .map(|u| upstream_addr(u))
                .collect::<Result<_, _>>()?,
        )
    };
    let view = match &upstreams {
        Upstreams::Registry(r) => Some(r.view()),
        Upstreams::Static(_) => None,
    };
    let hub = Hub::new(config.common.media.hub_config());
    let tasks = TaskTracker::new();
    let node = Arc::new(Edge {
        hub: hub.clone(),
        ingests: Arc::new(Ingests {
            running: Mutex::new(HashMap::new()),
        }),
        upstreams,
        ingest_config: IngestConfig {
            idle_grace: config.edge_idle_grace,
            reconnect_window: config.edge_reconnect_window,
            moved_wait: config.edge_moved_wait,
            connect_timeout: config.edge_connect_timeout,
            read_timeout: config.edge_upstream_timeout,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            cluster_secret: config.common.auth.cluster_secret.clone(),
            parents: match config.tier {
                1 => None,
                tier => Some(Parents {
                    tier: tier - 1,
                    region: config.common.node.region.clone(),
                    config: config
                        .common
                        .locate
                        .locate_config()
                        .map_err(NodeError::Config)?,
                }),
            },
        },
        play_wait: config.common.media.media_play_wait,
        admission: config.common.auth.admission(Vec::new()),
        gate: Arc::new(Mutex::new(Gate::new(GateConfig {
            not_found_ttl: config.edge_not_found_ttl,
            max_ingests: config.edge_max_ingests.max(1),
            max_pending_per_ip: config.edge_max_pending_per_ip.max(1),
            trusted: config.common.net.limits().trusted_networks,
        }))),
        view: view.clone(),
        prewarmed: prewarm::Prewarmed::default(),
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
    });
    if let Some(view) = view {
        let me = prewarm::Identity {
            node_id: config.common.node.node_id(),
            region: config.common.node.region.clone(),
            rules: config.common.locate.clone(),
            config: config
                .common
                .locate
                .locate_config()
                .map_err(NodeError::Config)?,
        };
        tokio::spawn(prewarm::run(node.clone(), view, me, shutdown.clone()));
    }
    let parts = NodeParts {
        role: Role::Edge,
        node,
        hub,
        registry,
        node_args: config.common.node,
        hls: config
            .common
            .hls
            .options(config.common.media.media_play_wait),
        net_args: config.common.net,
        locate: config.common.locate.clone(),
        tier: config.tier,
        api_token,
        api_listen: config.common.api.api_listen,
        load_interval: config.common.cluster.load_interval,
        tasks,
        shutdown,
    };
    serve(parts, rtmp, http, api).await
}

//! The edge node: serves RTMP and HTTP-FLV players from its hub, pulling each stream once from
//! its owner (found in etcd, or a static origin list) on the first play. `run(config, shutdown)`
//! is what `main` and the tests call.

mod ingest;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use common::admission::Admission;
use common::cluster::Role;
use common::config::{CommonArgs, parse_duration};
use common::media::{Hub, Publisher, Subscriber};
use common::net::{Node, PlayRequest, PublishRequest, Refusal};
pub use common::node::NodeError;
use common::node::{NodeParts, bind, serve};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use ingest::{IngestConfig, Upstreams};

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
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Edge {
    /// Subscribes to `app/name`, starting its ingest if none runs.
    fn attach(&self, app: &str, name: &str) -> Subscriber {
        let key = format!("{app}/{name}");
        let mut running = self.ingests.lock();
        if !running.contains_key(&key) {
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
        }
        self.hub.subscribe(&key)
    }
}

impl Node for Edge {
    fn admission(&self) -> &Admission {
        &self.admission
    }

    fn upstream(&self, key: &str) -> Option<String> {
        self.ingests.upstream(key)
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
        let sub = self.attach(&req.app, &req.name);
        let published = tokio::time::timeout(self.play_wait, sub.stream().wait_published()).await;
        match published {
            Ok(()) => Ok(sub),
            Err(_) => Err(Refusal::not_found(format!(
                "{} is not published anywhere",
                req.key()
            ))),
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
        },
        play_wait: config.common.media.media_play_wait,
        admission: config.common.auth.admission(Vec::new()),
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
    });
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
        api_token,
        api_listen: config.common.api.api_listen,
        load_interval: config.common.cluster.load_interval,
        tasks,
        shutdown,
    };
    serve(parts, rtmp, http, api).await
}

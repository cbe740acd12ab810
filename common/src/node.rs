//! What origin and edge share around their `Node`: the HTTP router (media, JSON API, gRPC,
//! metrics), the node's record and load in the registry, and the shutdown sequence. The
//! binaries only build their `Node` and call `serve`.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::cluster::{NodeLoad, NodeRecord, PublicUrls, Registry, RegistryError, Role, now_ms};
use crate::config::{NetArgs, NodeArgs};
use crate::control::Control;
use crate::media::{CloseReason, Hub};
use crate::net::{self, NetContext, Node};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("configuration: {0}")]
    Config(String),
}

/// Binds a listener, naming the address on failure.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { addr, source })
}

/// A node ready to serve.
pub struct NodeParts<N: Node> {
    pub role: Role,
    pub node: Arc<N>,
    pub hub: Arc<Hub>,
    pub registry: Arc<dyn Registry>,
    pub node_args: NodeArgs,
    pub net_args: NetArgs,
    pub hls: crate::net::hls::HlsOptions,
    /// Locate answers, pre-warm rules, and what the node's record says about its capacity.
    pub locate: crate::config::LocateArgs,
    /// Edge tier (1: pulls from origins); 0 on origins.
    pub tier: u32,
    /// Bearer token of the control API's changing calls (see `ApiArgs::token`).
    pub api_token: Option<String>,
    /// The API listener's address (for the log).
    pub api_listen: std::net::SocketAddr,
    /// How often the node's record and load are refreshed in the registry.
    pub load_interval: Duration,
    /// Tasks the node spawned (ingests); waited for at shutdown.
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
}

/// Serves RTMP, public HTTP (media, the player page, `/healthz`, `/readyz`, `/metrics`) and the
/// API listener (`/api/v1`, gRPC, `/metrics`) until shutdown, then ends every stream cleanly
/// within the grace. No control call is served on the public port.
pub async fn serve<N: Node>(
    parts: NodeParts<N>,
    rtmp: TcpListener,
    http: TcpListener,
    api: TcpListener,
) -> Result<(), NodeError> {
    let role = match parts.role {
        Role::Edge => "edge",
        _ => "origin",
    };
    crate::telemetry::init_metrics(role);
    // TLS listeners are optional: bound here, with the certificate loaded (or the start fails
    // naming the option or file).
    let tls = parts
        .net_args
        .tls()
        .map_err(|e| NodeError::Config(e.to_string()))?;
    let rtmps = match parts.net_args.rtmps_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let https = match parts.net_args.https_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let ctx = NetContext::new(
        parts.node,
        parts.net_args.limits(),
        parts.hls,
        parts.shutdown.clone(),
    );
    let refresh = Arc::new(Notify::new());
    let control = Control::new(
        ctx.clone(),
        parts.hub.clone(),
        parts.registry.clone(),
        refresh.clone(),
        parts.api_token.clone(),
    );
    tokio::spawn(control.clone().sample_rates());
    tokio::spawn(book_egress(ctx.clone()));
    // /metrics stays on the public port too: Prometheus scrapes it where load balancers
    // already reach, and it holds only aggregate series (no stream keys, no addresses).
    let metrics = crate::telemetry::metrics_handle();
    let hub = parts.hub.clone();
    let render = move || {
        // Sums kept by the hub, published when asked for rather than per frame.
        let (gop, gop_peak) = hub.gop_cache_bytes();
        metrics::gauge!(crate::telemetry::metric::GOP_CACHE_BYTES).set(gop as f64);
        metrics::gauge!(crate::telemetry::metric::GOP_CACHE_PEAK_BYTES).set(gop_peak as f64);
        std::future::ready(metrics.render())
    };
    let locator = net::locate::Locator::new(
        parts.registry.view(),
        &parts.locate,
        &parts.node_args.region,
    )
    .map_err(NodeError::Config)?;
    let router = net::http::media_routes(ctx.clone())
        .merge(net::locate::routes(locator))
        .route("/metrics", get(render.clone()));
    let api_router = crate::control::http::routes(control.clone())
        .merge(crate::control::grpc::routes(control))
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }));
    let node_id = parts.node_args.node_id();
    info!(
        node_id = %node_id,
        role,
        rtmp = %parts.net_args.rtmp_listen,
        http = %parts.net_args.http_listen,
        api = %parts.api_listen,
        rtmps = ?parts.net_args.rtmps_listen,
        https = ?parts.net_args.https_listen,
        "node started"
    );
    let record = NodeRecord {
        node_id,
        role: parts.role as i32,
        region: parts.node_args.region.clone(),
        zone: parts.node_args.zone.clone(),
        rtmp_address: parts.net_args.rtmp_address(),
        http_address: parts.net_args.http_address(),
        grpc_address: parts.net_args.http_address(),
        load: None,
        draining: false,
        capacity_players: parts.locate.capacity_players,
        tier: parts.tier,
        public_urls: Some(PublicUrls {
            rtmp: parts.locate.public_rtmp_url.clone().unwrap_or_default(),
            http: parts.locate.public_http_url.clone().unwrap_or_default(),
        }),
    };
    tokio::spawn(report_load(
        parts.registry.clone(),
        record,
        parts.load_interval,
        refresh,
        ctx.clone(),
        parts.hub.clone(),
    ));
    let tasks = parts.tasks;
    let rtmp_task = tokio::spawn(net::rtmp::serve(rtmp, ctx.clone(), tasks.clone(), None));
    let public = net::http::HttpServe {
        limits: parts.net_args.limits(),
        budget: Some(ctx.budget.clone()),
        tls: None,
        max_body: net::http::PUBLIC_MAX_BODY,
    };
    // The API listener is the operators' way in when the public budget is exhausted: it
    // does not count against it (it listens on loopback or a private network).
    let api_serve = net::http::HttpServe {
        budget: None,
        max_body: net::http::API_MAX_BODY,
        ..public.clone()
    };
    let shutdown = parts.shutdown.clone();
    let mut tls_tasks = Vec::new();
    if let Some(tls) = tls {
        tokio::spawn(tls.store.clone().watch(shutdown.clone()));
        if let Some(l) = rtmps {
            tls_tasks.push(tokio::spawn(net::rtmp::serve(
                l,
                ctx.clone(),
                tasks.clone(),
                Some(tls.rtmps.clone()),
            )));
        }
        if let Some(l) = https {
            let opts = net::http::HttpServe {
                tls: Some(tls.https.clone()),
                ..public.clone()
            };
            let (router, shutdown) = (router.clone(), shutdown.clone());
            tls_tasks.push(tokio::spawn(async move {
                let _ = net::http::serve(l, router, opts, shutdown).await;
            }));
        }
    }
    let http_task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { net::http::serve(http, router, public, shutdown).await })
    };
    let api_task =
        tokio::spawn(async move { net::http::serve(api, api_router, api_serve, shutdown).await });
    parts.shutdown.cancelled().await;
    info!("shutting down");
    parts.hub.close_all(CloseReason::Shutdown);
    tasks.close();
    let grace = parts.node_args.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        let _ = rtmp_task.await;
        for t in tls_tasks {
            let _ = t.await;
        }
        tasks.wait().await;
        let _ = http_task.await;
        let _ = api_task.await;
    })
    .await;
    if drained.is_err() {
        info!(
            ?grace,
            "shutdown grace elapsed, closing remaining connections"
        );
    }
    Ok(())
}

/// Books the bytes the fan-out wrote to players' sockets once a second, until shutdown (each
/// player books the rest when it ends).
async fn book_egress<N: Node>(ctx: Arc<NetContext<N>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => ctx.clients.book_egress(),
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

/// Registers the node and refreshes its record (load, draining) every `every`, or at once
/// when `refresh` is notified, until shutdown.
async fn report_load<N: Node>(
    registry: Arc<dyn Registry>,
    mut record: NodeRecord,
    every: Duration,
    refresh: Arc<Notify>,
    ctx: Arc<NetContext<N>>,
    hub: Arc<Hub>,
) {
    let mut tick = tokio::time::interval(every);
    let mut last_bytes = crate::telemetry::egress_bytes();
    let mut last_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = refresh.notified() => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        let streams = hub.streams();
        // Every HLS packager is one hub subscriber standing for its estimated viewers.
        let hls = ctx.hls.viewers();
        let subscribers: usize = streams.iter().map(|s| s.subscriber_count()).sum();
        // Pre-warm holds are one hub subscriber each, and no player.
        let internal = hls.len() + ctx.node.prewarmed().len();
        let players =
            subscribers.saturating_sub(internal) + hls.iter().map(|(_, n)| n).sum::<usize>();
        let published = streams.iter().filter(|s| s.is_publishing()).count();
        let bytes = crate::telemetry::egress_bytes();
        let secs = last_at.elapsed().as_secs_f64().max(0.001);
        let bps = (bytes.saturating_sub(last_bytes) as f64 * 8.0 / secs) as u64;
        last_bytes = bytes;
        last_at = tokio::time::Instant::now();
        record.draining = ctx.is_draining();
        record.load = Some(NodeLoad {
            players: players as u64,
            streams: published as u64,
            egress_bits_per_second: bps,
            updated_at: now_ms(),
        });
        if let Err(e) = registry.register(record.clone()).await {
            warn!(error = %e, "node registration failed; retrying");
        }
    }
}

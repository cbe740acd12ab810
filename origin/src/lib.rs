//! The origin node: accepts RTMP publishers into its hub and serves their streams to RTMP and
//! HTTP-FLV players. `run(config, shutdown)` is what `main` and the tests call.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use clap::Parser;
use common::config::{MediaArgs, NetArgs, NodeArgs};
use common::media::{CloseReason, Hub, HubError, Publisher, Subscriber};
use common::net::{self, NetContext, Node, PlayRequest, PublishRequest, Refusal};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// Every option of the origin: flag, `LIVECDN_*` variable, or key of the `--config` file.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "origin",
    version,
    about = "livecdn origin: RTMP ingest and playback"
)]
pub struct OriginConfig {
    /// TOML file with any of the options below (`[rtmp] listen = ...` is `--rtmp-listen`).
    #[arg(long, env = "LIVECDN_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub media: MediaArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("http server: {0}")]
    Http(std::io::Error),
}

/// What the origin does with a publish or a play.
pub struct Origin {
    hub: Arc<Hub>,
    play_wait: Duration,
}

impl Node for Origin {
    async fn publish(&self, req: &PublishRequest) -> Result<Publisher, Refusal> {
        if req.name.is_empty() || req.app.is_empty() {
            return Err(Refusal::busy("publish URLs are rtmp://host/{app}/{name}"));
        }
        self.hub.publish(&req.key()).map_err(|e| match e {
            HubError::AlreadyPublishing(k) => {
                Refusal::busy(format!("{k} is already being published"))
            }
        })
    }

    async fn play(&self, req: &PlayRequest) -> Result<Subscriber, Refusal> {
        let sub = self.hub.subscribe(&req.key());
        let published = tokio::time::timeout(self.play_wait, sub.stream().wait_published()).await;
        match published {
            Ok(()) => Ok(sub),
            Err(_) => Err(Refusal::not_found(format!(
                "{} is not published",
                req.key()
            ))),
        }
    }
}

/// Runs the origin until `shutdown` is cancelled, then closes every stream cleanly within
/// the configured grace.
pub async fn run(config: OriginConfig, shutdown: CancellationToken) -> Result<(), OriginError> {
    let rtmp = bind(config.net.rtmp_listen).await?;
    let http = bind(config.net.http_listen).await?;
    let hub = Hub::new(config.media.hub_config());
    let node = Arc::new(Origin {
        hub: hub.clone(),
        play_wait: config.media.media_play_wait,
    });
    let ctx = NetContext::new(node, config.net.limits(), shutdown.clone());
    let metrics = common::telemetry::metrics_handle();
    let router = net::http::media_routes(ctx.clone()).route(
        "/metrics",
        get(move || std::future::ready(metrics.render())),
    );
    info!(
        node_id = %config.node.node_id(),
        rtmp = %config.net.rtmp_listen,
        http = %config.net.http_listen,
        "origin started"
    );
    let tasks = TaskTracker::new();
    let rtmp_task = tokio::spawn(net::rtmp::serve(rtmp, ctx.clone(), tasks.clone()));
    let limits = config.net.limits();
    let http_shutdown = shutdown.clone();
    let http_task =
        tokio::spawn(async move { net::http::serve(http, router, &limits, http_shutdown).await });
    shutdown.cancelled().await;
    info!("shutting down");
    hub.close_all(CloseReason::Shutdown);
    tasks.close();
    let grace = config.node.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        let _ = rtmp_task.await;
        tasks.wait().await;
        let _ = http_task.await;
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

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, OriginError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| OriginError::Bind { addr, source })
}

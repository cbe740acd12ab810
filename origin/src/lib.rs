//! The origin node: accepts RTMP publishers into its hub and serves their streams to RTMP and
//! HTTP-FLV players. `run(config, shutdown)` is what `main` and the tests call.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use common::admission::Admission;
use common::cluster::{Claim, Registry, Role, StreamRecord};
use common::config::CommonArgs;
use common::media::{Hub, HubError, Publisher, Subscriber};
use common::net::hook::PublishHooks;
use common::net::{Node, PlayRequest, PublishRequest, Refusal};
pub use common::node::NodeError;
use common::node::{NodeParts, bind, serve};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// Every option of the origin: flag, `LIVECDN_*` variable, or key of the `--config` file.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "origin",
    version,
    about = "livecdn origin: RTMP ingest and playback"
)]
pub struct OriginConfig {
    #[command(flatten)]
    pub common: CommonArgs,
    /// When a key being published elsewhere is published here: `takeover` (the new publish
    /// wins, the old origin drops its publisher) or `reject` (NetStream.Publish.BadName).
    #[arg(
        long = "on-conflict",
        env = "LIVECDN_ON_CONFLICT",
        default_value = "takeover"
    )]
    pub on_conflict: OnConflict,
    /// `APP=KEY` (repeatable; `*` as APP: every app): publishers need a token signed with a
    /// key of their app in the stream URL's query. Several keys of one app are all valid.
    #[arg(
        long = "publish-key",
        env = "LIVECDN_PUBLISH_KEY",
        value_name = "APP=KEY",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = common::admission::parse_app_key
    )]
    pub publish_key: Vec<common::admission::AppKey>,
    /// `http://` URL POSTed (nginx-rtmp form: `call=publish&addr=..&app=..&name=..&` and the
    /// URL's query arguments) on every publish attempt after the key check: a 2xx answer
    /// allows, anything else, an error or no answer within `--on-publish-timeout` refuses.
    #[arg(long = "on-publish", env = "LIVECDN_ON_PUBLISH", value_name = "URL", value_parser = common::net::hook::parse_hook_url)]
    pub on_publish: Option<common::net::hook::HookUrl>,
    /// `http://` URL told (`call=publish_done`, fire-and-forget) when a publish ends.
    #[arg(long = "on-unpublish", env = "LIVECDN_ON_UNPUBLISH", value_name = "URL", value_parser = common::net::hook::parse_hook_url)]
    pub on_unpublish: Option<common::net::hook::HookUrl>,
    /// `APP=URL` (repeatable; `*` as APP: every app): publish every stream of the app to
    /// this RTMP(S) destination too, `{name}` in the URL being the stream name
    /// (`live=rtmp://backup.example.com/live/{name}`). Reconnects with backoff; a slow or
    /// dead destination never affects the publisher or players.
    #[arg(long = "forward", env = "LIVECDN_FORWARD", value_name = "APP=URL", value_delimiter = ';', value_parser = common::net::forward::parse_rule)]
    pub forward: Vec<common::net::forward::ForwardRule>,
    /// PEM file(s) of the CAs rtmps forward destinations are checked against (default: the
    /// system bundle /etc/ssl/certs/ca-certificates.crt).
    #[arg(long = "forward-ca", env = "LIVECDN_FORWARD_CA", value_delimiter = ',')]
    pub forward_ca: Vec<std::path::PathBuf>,
    /// Bound of one hook call (connect, request, answer).
    #[arg(long = "on-publish-timeout", env = "LIVECDN_ON_PUBLISH_TIMEOUT", default_value = "2s", value_parser = common::config::parse_duration)]
    pub on_publish_timeout: Duration,
}

/// What a publish of a key owned by another origin does.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    Reject,
    Takeover,
}

/// What the origin does with a publish or a play.
pub struct Origin {
    hub: Arc<Hub>,
    registry: Arc<dyn Registry>,
    node_id: String,
    rtmp_address: String,
    on_conflict: OnConflict,
    claim_timeout: Duration,
    play_wait: Duration,
    admission: Admission,
    hooks: Option<Arc<PublishHooks>>,
    /// Relays to other servers (`--forward`).
    forwards: common::net::forward::Forwards,
    /// `--prewarm` rules, stamped on the records of the streams they name.
    prewarm: common::config::LocateArgs,
}

impl Origin {
    fn record(&self, req: &PublishRequest) -> StreamRecord {
        StreamRecord {
            app: req.app.clone(),
            name: req.name.clone(),
            origin_node_id: self.node_id.clone(),
            origin_rtmp_address: self.rtmp_address.clone(),
            started_at: common::cluster::now_ms(),
            codecs: Vec::new(),
            prewarm_regions: self.prewarm.prewarm_regions(&req.app),
        }
    }
}

impl Node for Origin {
    fn admission(&self) -> &Admission {
        &self.admission
    }

    fn forwards(&self) -> Vec<common::net::forward::ForwardView> {
        self.forwards.views()
    }

    fn publish_hooks(&self) -> Option<&PublishHooks> {
        self.hooks.as_deref()
    }

    async fn publish(&self, req: &PublishRequest) -> Result<Publisher, Refusal> {
        if req.name.is_empty() || req.app.is_empty() {
            return Err(Refusal::busy("publish URLs are rtmp://host/{app}/{name}"));
        }
        let publisher = self.hub.publish(&req.key()).map_err(|e| match e {
            HubError::AlreadyPublishing(k) => {
                Refusal::busy(format!("{k} is already being published"))
            }
        })?;
        let takeover = self.on_conflict == OnConflict::Takeover;
        let claim = tokio::time::timeout(
            self.claim_timeout,
            self.registry.claim(self.record(req), takeover),
        )
        .await;
        match claim {
            Ok(Ok(Claim::Owned)) => {
                self.forwards.start(&self.hub, &req.app, &req.name);
                Ok(publisher)
            }
            Ok(Ok(Claim::OwnedBy(other))) => Err(Refusal::busy(format!(
                "{} is being published on origin {}",
                req.key(),
                other.origin_node_id
            ))),
            // The registry is unreachable: the stream flows here and the claim is retried
            // until it lands (a publisher never hangs on etcd).
            Ok(Err(_)) | Err(_) => {
                warn!(stream = %req.key(), "registry unreachable: publishing unclaimed, retrying the claim");
                metrics::counter!(common::telemetry::metric::CLAIMS_DEFERRED).increment(1);
                let registry = self.registry.clone();
                let record = self.record(req);
                let hub = self.hub.clone();
                let key = req.key();
                tokio::spawn(async move {
                    retry_claim(registry, hub, key, record, takeover).await;
                });
                self.forwards.start(&self.hub, &req.app, &req.name);
                Ok(publisher)
            }
        }
    }

    async fn set_prewarm(
        &self,
        app: &str,
        name: &str,
        regions: Vec<String>,
    ) -> Result<(), Refusal> {
        let key = format!("{app}/{name}");
        let mine = self.registry.view().lookup(&key).filter(|r| {
            r.origin_node_id == self.node_id
                && self.hub.get(&key).is_some_and(|s| s.is_publishing())
        });
        let Some(mut record) = mine else {
            return Err(Refusal::not_found(format!(
                "{key} is not published on this origin"
            )));
        };
        record.prewarm_regions = regions;
        // Our own claim, re-put (bound to our lease); lost to a takeover meanwhile: refused.
        match tokio::time::timeout(self.claim_timeout, self.registry.claim(record, false)).await {
            Ok(Ok(Claim::Owned)) => Ok(()),
            Ok(Ok(Claim::OwnedBy(other))) => Err(Refusal::not_found(format!(
                "{key} is published on origin {} now",
                other.origin_node_id
            ))),
            Ok(Err(e)) => Err(Refusal::unavailable(e.to_string())),
            Err(_) => Err(Refusal::unavailable("registry did not answer in time")),
        }
    }

    fn unpublished(&self, req: &PublishRequest) {
        if let Some(hooks) = &self.hooks {
            hooks.unpublished(req);
        }
        // A publisher that reconnected at once already re-claimed the key: keep it.
        if self.hub.get(&req.key()).is_some_and(|s| s.is_publishing()) {
            return;
        }
        self.forwards.stop(&req.app, &req.name);
        let registry = self.registry.clone();
        let (app, name) = (req.app.clone(), req.name.clone());
        tokio::spawn(async move {
            if let Err(e) = registry.release(&app, &name).await {
                warn!(stream = %format!("{app}/{name}"), error = %e, "release failed; the lease will expire it");
            }
        });
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

/// Claims `key` once the registry answers, while its publisher is still here.
async fn retry_claim(
    registry: Arc<dyn Registry>,
    hub: Arc<Hub>,
    key: String,
    record: StreamRecord,
    takeover: bool,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !hub.get(&key).is_some_and(|s| s.is_publishing()) {
            return;
        }
        match registry.claim(record.clone(), takeover).await {
            Ok(Claim::Owned) => {
                info!(stream = %key, "deferred claim landed");
                return;
            }
            Ok(Claim::OwnedBy(other)) => {
                warn!(stream = %key, owner = %other.origin_node_id, "another origin owns the stream: dropping our publisher");
                hub.kick_publisher(&key);
                return;
            }
            Err(_) => continue,
        }
    }
}

/// Runs the origin until `shutdown` is cancelled, then closes every stream cleanly within
/// the configured grace.
pub async fn run(config: OriginConfig, shutdown: CancellationToken) -> Result<(), NodeError> {
    let rtmp = bind(config.common.net.rtmp_listen).await?;
    let http = bind(config.common.net.http_listen).await?;
    let api_token = config
        .common
        .api
        .token()
        .map_err(|e| NodeError::Config(e.to_string()))?;
    let api = bind(config.common.api.api_listen).await?;
    let registry = config.common.cluster.registry().await?;
    let hub = Hub::new(config.common.media.hub_config());
    let node = Arc::new(Origin {
        hub: hub.clone(),
        registry: registry.clone(),
        node_id: config.common.node.node_id(),
        rtmp_address: config.common.net.rtmp_address(),
        on_conflict: config.on_conflict,
        claim_timeout: config.common.cluster.etcd_timeout,
        play_wait: config.common.media.media_play_wait,
        admission: config.common.auth.admission(config.publish_key.clone()),
        prewarm: config.common.locate.clone(),
        forwards: common::net::forward::Forwards::new(config.forward.clone(), &config.forward_ca)
            .map_err(NodeError::Config)?,
        hooks: PublishHooks::new(
            config.on_publish.clone(),
            config.on_unpublish.clone(),
            config.on_publish_timeout,
        ),
    });
    // A stream taken over by another origin (or not re-claimable after an outage) stops here.
    let mut lost = registry.lost_claims();
    let lost_hub = hub.clone();
    tokio::spawn(async move {
        while let Ok(key) = lost.recv().await {
            info!(stream = %key, "stream claimed by another origin: dropping our publisher");
            lost_hub.kick_publisher(&key);
        }
    });
    let parts = NodeParts {
        role: Role::Origin,
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
        tier: 0,
        api_token,
        api_listen: config.common.api.api_listen,
        load_interval: config.common.cluster.load_interval,
        tasks: TaskTracker::new(),
        shutdown,
    };
    serve(parts, rtmp, http, api).await
}

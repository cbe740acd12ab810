//! Tokio shells around the sans-IO protocols: the RTMP server connection, the RTMP pull
//! client and the HTTP routes. What a node does with a publish or a play is behind `Node`.

pub mod clients;
pub mod flv;
pub mod forward;
pub mod hls;
pub mod hook;
pub mod http;
pub mod io;
pub mod limit;
pub mod locate;
pub mod pull;
pub mod rtmp;
pub mod tls;
pub mod zerocopy;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admission::{Action, Admission, Ask, Denial};
use crate::media::{Publisher, Subscriber};

/// A publish as the network asked for it.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub app: String,
    pub name: String,
    /// Query string of the stream name (and of the app), kept for authentication.
    pub query: String,
    pub peer: String,
    /// The connection's id (the API's client id; `clientid` of the publish hooks).
    pub conn_id: u64,
}

impl PublishRequest {
    pub fn key(&self) -> String {
        format!("{}/{}", self.app, self.name)
    }
}

/// A play as the network asked for it.
#[derive(Debug, Clone)]
pub struct PlayRequest {
    pub app: String,
    pub name: String,
    pub query: String,
    pub peer: String,
    pub protocol: &'static str,
}

impl PlayRequest {
    pub fn key(&self) -> String {
        format!("{}/{}", self.app, self.name)
    }
}

/// Why a publish or a play was refused, in each protocol's words.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// RTMP onStatus code, e.g. `NetStream.Publish.BadName`.
    pub rtmp_code: &'static str,
    pub http_status: u16,
    /// Metrics label.
    pub reason: &'static str,
    pub description: String,
}

impl Refusal {
    pub fn not_found(description: impl Into<String>) -> Self {
        Self {
            rtmp_code: "NetStream.Play.StreamNotFound",
            http_status: 404,
            reason: "not_found",
            description: description.into(),
        }
    }

    pub fn busy(description: impl Into<String>) -> Self {
        Self {
            rtmp_code: "NetStream.Publish.BadName",
            http_status: 409,
            reason: "busy",
            description: description.into(),
        }
    }

    /// The node is draining: new publishers and players go elsewhere.
    pub fn draining(publish: bool) -> Self {
        Self {
            rtmp_code: if publish {
                "NetStream.Publish.Denied"
            } else {
                "NetStream.Play.Failed"
            },
            http_status: 503,
            reason: "draining",
            description: "node is draining: connect to another node".into(),
        }
    }

    /// Admission said no: `NetStream.Publish.Unauthorized` / `NetStream.Play.Failed`, HTTP
    /// 401 (no or unreadable token) or 403 (expired, forged, another stream).
    pub fn denied(action: Action, denial: &Denial) -> Self {
        Self {
            rtmp_code: match action {
                Action::Publish => "NetStream.Publish.Unauthorized",
                Action::Play => "NetStream.Play.Failed",
            },
            http_status: denial.http_status(),
            reason: denial.reason(),
            description: denial.to_string(),
        }
    }

    /// An app or stream name admission does not accept (`admission::validate_name`).
    pub fn bad_name(action: Action, bad: &crate::admission::BadName) -> Self {
        Self {
            rtmp_code: match action {
                Action::Publish => "NetStream.Publish.BadName",
                Action::Play => "NetStream.Play.StreamNotFound",
            },
            http_status: 400,
            reason: "bad_name",
            description: bad.to_string(),
        }
    }

    /// A limit of the node (ingests, waiting plays) was reached: `NetStream.Play.Failed`,
    /// HTTP `http_status` (503 node-wide, 429 per client).
    pub fn limited(http_status: u16, reason: &'static str, description: impl Into<String>) -> Self {
        Self {
            rtmp_code: "NetStream.Play.Failed",
            http_status,
            reason,
            description: description.into(),
        }
    }

    pub fn unavailable(description: impl Into<String>) -> Self {
        Self {
            rtmp_code: "NetStream.Play.Failed",
            http_status: 503,
            reason: "unavailable",
            description: description.into(),
        }
    }
}

/// What a node (origin or edge) does when the network asks to publish or play.
pub trait Node: Send + Sync + 'static {
    fn publish(
        &self,
        req: &PublishRequest,
    ) -> impl Future<Output = Result<Publisher, Refusal>> + Send;
    fn play(&self, req: &PlayRequest) -> impl Future<Output = Result<Subscriber, Refusal>> + Send;
    /// An accepted publish ended (by any path).
    fn unpublished(&self, _req: &PublishRequest) {}
    /// What this node admits (keys, cluster secret): every entry point asks it before
    /// `publish` or `play`.
    fn admission(&self) -> &Admission {
        &crate::admission::OPEN
    }
    /// The publish hooks (`on_publish`, `on_unpublish`) of this node, if any: admission asks
    /// `on_publish` after the key check.
    fn publish_hooks(&self) -> Option<&hook::PublishHooks> {
        None
    }
    /// The upstream this node pulls `app/name` from (edges), for the APIs.
    fn upstream(&self, _key: &str) -> Option<String> {
        None
    }
    /// Streams this node pulls ahead of any player (pre-warm), each held by one internal
    /// subscriber that is not a player.
    fn prewarmed(&self) -> Vec<String> {
        Vec::new()
    }
    /// Relays of published streams to other servers (origins' `--forward`), for the APIs.
    fn forwards(&self) -> Vec<forward::ForwardView> {
        Vec::new()
    }
    /// Marks `app/name`, published here, hot in `regions` (an empty list: cold again): the
    /// stream's record says so, and the chosen edge of each region pulls it (origins only).
    fn set_prewarm(
        &self,
        _app: &str,
        _name: &str,
        _regions: Vec<String>,
    ) -> impl Future<Output = Result<(), Refusal>> + Send {
        std::future::ready(Err(Refusal::not_found(
            "only the origin that publishes a stream marks it hot",
        )))
    }
}

/// Limits and timeouts shared by every connection of a node.
#[derive(Debug, Clone)]
pub struct NetLimits {
    /// From accept to an accepted publish or play.
    pub handshake_timeout: Duration,
    /// A publisher that sends no media for this long is dropped.
    pub publish_idle_timeout: Duration,
    /// A write to a player that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
    /// Open connections of the public listeners (RTMP, RTMPS, HTTP, HTTPS together)
    /// beyond this are refused at accept.
    pub max_connections: usize,
    /// Open connections from one client address (all public listeners), 0: no limit.
    pub max_connections_per_ip: usize,
    /// Addresses without a per-address limit (cluster peers, proxies on the host).
    pub trusted_networks: Vec<limit::Cidr>,
    /// An HTTP request head (and, over HTTPS, the TLS handshake) must arrive within this.
    pub http_header_timeout: Duration,
    /// An HTTP connection with no request in flight and no bytes either way is closed.
    pub http_idle_timeout: Duration,
    /// Frames written per batch (one writev).
    pub batch_frames: usize,
    /// SO_SNDBUF of player sockets in bytes; 0 keeps the kernel's autotuning. A smaller
    /// buffer makes a stalled player visible to the hub's queue sooner.
    pub send_buffer: usize,
}

impl Default for NetLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            publish_idle_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(30),
            max_connections: 20_000,
            max_connections_per_ip: 100,
            trusted_networks: Vec::new(),
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            batch_frames: 64,
            send_buffer: 0,
        }
    }
}

/// State every connection handler needs.
pub struct NetContext<N: Node> {
    pub node: Arc<N>,
    pub limits: NetLimits,
    /// Stop accepting, end every stream cleanly.
    pub shutdown: CancellationToken,
    /// Connected publishers and players.
    pub clients: Arc<clients::ClientTable>,
    /// HLS packagers running on this node, and their options.
    pub hls: hls::HlsStreams,
    pub hls_options: hls::HlsOptions,
    /// Places of the public listeners' connections (`limits.max_connections`, per IP).
    pub budget: Arc<limit::ConnBudget>,
    draining: AtomicBool,
    next_conn_id: AtomicU64,
}

impl<N: Node> NetContext<N> {
    pub fn new(
        node: Arc<N>,
        limits: NetLimits,
        hls_options: hls::HlsOptions,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            node,
            budget: limit::ConnBudget::new(
                limits.max_connections,
                limits.max_connections_per_ip,
                limits.trusted_networks.clone(),
            ),
            limits,
            shutdown,
            clients: Arc::default(),
            hls: hls::HlsStreams::default(),
            hls_options,
            draining: AtomicBool::new(false),
            next_conn_id: AtomicU64::new(1),
        })
    }

    /// While draining, new publishes and plays are refused (existing ones go on).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::Relaxed);
        metrics::gauge!(crate::telemetry::metric::DRAINING).set(if on { 1.0 } else { 0.0 });
    }

    /// The admission check of a publish, before `Node::publish`: names, then the keys, then
    /// (if configured) the `on_publish` hook; all must allow.
    pub async fn admit_publish(&self, req: &PublishRequest) -> Result<(), Refusal> {
        self.admit(
            Action::Publish,
            "rtmp",
            &req.app,
            &req.name,
            &req.query,
            &req.peer,
        )?;
        match self.node.publish_hooks() {
            Some(hooks) => hooks.admit(req).await,
            None => Ok(()),
        }
    }

    /// The admission check of a play request (RTMP, HTTP-FLV, every HLS request, the player
    /// page), before `Node::play`.
    pub fn admit_play(&self, req: &PlayRequest) -> Result<(), Refusal> {
        self.admit(
            Action::Play,
            req.protocol,
            &req.app,
            &req.name,
            &req.query,
            &req.peer,
        )
    }

    fn admit(
        &self,
        action: Action,
        protocol: &str,
        app: &str,
        name: &str,
        query: &str,
        peer: &str,
    ) -> Result<(), Refusal> {
        // Names first, for every protocol and before any token, registry or hub work.
        if let Err(bad) = crate::admission::validate_name(app, name) {
            tracing::debug!(protocol, peer, error = %bad, "refused: bad name");
            return Err(Refusal::bad_name(action, &bad));
        }
        let ask = Ask {
            action,
            protocol,
            app,
            name,
            query,
            peer,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.node.admission().check(&ask, now).map(|_| ()).map_err(|d| {
            tracing::debug!(stream = %format!("{app}/{name}"), protocol, peer, denial = %d, "refused by admission");
            Refusal::denied(action, &d)
        })
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}

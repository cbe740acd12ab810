//! Configuration: every option is a command-line flag, a `LIVECDN_*` environment variable and
//! a key of the TOML file given by `--config` (precedence in that order). The file's
//! `[section] key` is the flag `--section-key`; unknown keys are rejected naming the key.
//! Also the option groups origin and edge share.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches};

use crate::media::HubConfig;
use crate::net::NetLimits;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}: unknown key `{key}`")]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: key `{key}` must be a string, number, boolean or array of them")]
    BadValue { path: PathBuf, key: String },
    #[error("{0}")]
    Invalid(String),
}

/// Parses `T` from `args` (argv[0] first), the environment and the `--config` file.
pub fn load_from<T: CommandFactory + FromArgMatches>(
    args: Vec<OsString>,
) -> Result<T, clap::Error> {
    let mut cmd = T::command();
    let file = config_path(&args);
    let mut full: Vec<OsString> = args.iter().take(1).cloned().collect();
    if let Some(path) = file {
        match file_args(&cmd, &path, &args[1.min(args.len())..]) {
            Ok(extra) => full.extend(extra),
            Err(e) => return Err(cmd.error(clap::error::ErrorKind::InvalidValue, e.to_string())),
        }
    }
    full.extend(args.into_iter().skip(1));
    let matches = cmd.try_get_matches_from_mut(full)?;
    T::from_arg_matches(&matches)
}

/// `load_from` over the process's arguments; prints the error and exits on failure.
pub fn load<T: CommandFactory + FromArgMatches>() -> T {
    match load_from(std::env::args_os().collect()) {
        Ok(t) => t,
        Err(e) => e.exit(),
    }
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("LIVECDN_CONFIG").map(PathBuf::from)
}

/// The file's keys as `--flag value` arguments, skipping those the command line or the
/// environment already set.
fn file_args(
    cmd: &clap::Command,
    path: &PathBuf,
    cli: &[OsString],
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let mut flat = Vec::new();
    flatten("", &table, &mut flat);
    let mut out = Vec::new();
    for (key, value) in flat {
        let flag = key.replace(['.', '_'], "-");
        let Some(arg) = cmd.get_arguments().find(|a| {
            flag != "config"
                && (a.get_long() == Some(flag.as_str())
                    || a.get_visible_aliases()
                        .is_some_and(|v| v.contains(&flag.as_str())))
        }) else {
            return Err(ConfigError::UnknownKey {
                path: path.clone(),
                key,
            });
        };
        let long = arg.get_long().unwrap_or(flag.as_str()).to_string();
        let on_cli = cli.iter().any(|a| {
            let a = a.to_string_lossy();
            [&flag, &long]
                .iter()
                .any(|f| a == format!("--{f}") || a.starts_with(&format!("--{f}=")))
        });
        let in_env = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
        if on_cli || in_env {
            continue;
        }
        let values = match &value {
            toml::Value::Array(items) => items.iter().map(scalar).collect(),
            v => vec![scalar(v)],
        };
        for v in values {
            let v = v.ok_or_else(|| ConfigError::BadValue {
                path: path.clone(),
                key: key.clone(),
            })?;
            out.push(OsString::from(format!("--{long}={v}")));
        }
    }
    Ok(out)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            v => out.push((key, v.clone())),
        }
    }
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses `500ms`, `10s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown duration unit `{other}` in `{s}`")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The options every node has (origin and edge add their own).
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// TOML file with any of the options below (`[rtmp] listen = ...` is `--rtmp-listen`).
    #[arg(long, env = "LIVECDN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    #[command(flatten)]
    pub hls: HlsArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub locate: LocateArgs,
}

/// Sending players to the nearest, least-loaded edge, and pre-warming edges. Root-level keys
/// of the file: `region_map = ["10.1.0.0/16=eu"]`, `region_distance = ["eu:us=100"]`,
/// `capacity_players = 5000`, `prewarm = ["live=eu,us"]`; `[locate] epsilon = 0.25`.
#[derive(Args, Debug, Clone)]
pub struct LocateArgs {
    /// `CIDR=REGION` (repeatable): where clients of that network are (longest prefix wins).
    /// A client outside every network is placed in this node's region.
    #[arg(
        long = "region-map",
        env = "LIVECDN_REGION_MAP",
        value_name = "CIDR=REGION",
        value_delimiter = ','
    )]
    pub region_map: Vec<String>,
    /// `A:B=N` (repeatable): distance between two regions; the locator falls back to the
    /// nearest region first. Unlisted pairs are farther than every listed one.
    #[arg(
        long = "region-distance",
        env = "LIVECDN_REGION_DISTANCE",
        value_name = "A:B=N",
        value_delimiter = ','
    )]
    pub region_distance: Vec<String>,
    /// Bounded-load slack: an edge takes a stream's new players while its players stay
    /// under (1 + epsilon) x the mean of its region's edges.
    #[arg(
        long = "locate-epsilon",
        env = "LIVECDN_LOCATE_EPSILON",
        default_value_t = 0.25
    )]
    pub locate_epsilon: f64,
    /// Alternatives the JSON locate answer lists after the chosen edge.
    #[arg(
        long = "locate-alternatives",
        env = "LIVECDN_LOCATE_ALTERNATIVES",
        default_value_t = 3
    )]
    pub locate_alternatives: usize,
    /// Proxies (CIDRs, comma-separated) whose `X-Forwarded-For` names the client, and which
    /// may override the region with `?region=` or `X-Livecdn-Region` (loopback always may).
    #[arg(
        long = "locate-trusted-proxies",
        env = "LIVECDN_LOCATE_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128",
        value_parser = check_cidr
    )]
    pub locate_trusted_proxies: Vec<String>,
    /// Players this node takes at most (0: no limit): the locator sends no more.
    #[arg(
        long = "capacity-players",
        env = "LIVECDN_CAPACITY_PLAYERS",
        default_value_t = 0
    )]
    pub capacity_players: u64,
    /// `APP=REGION[,REGION]` (repeatable; `*` as APP: every app): as soon as a stream of the
    /// app is published, the edge the locator would choose for it in each region pulls it
    /// and keeps it while it is published. On an origin, stamped on the stream's record.
    #[arg(long = "prewarm", env = "LIVECDN_PREWARM", value_name = "APP=REGIONS", value_delimiter = ';', value_parser = parse_prewarm)]
    pub prewarm: Vec<(String, Vec<String>)>,
    /// Base URL players reach this node's RTMP at (`rtmp://edge1.example.com:1935`); default
    /// `rtmp://` + the advertised RTMP address.
    #[arg(long = "public-rtmp-url", env = "LIVECDN_PUBLIC_RTMP_URL")]
    pub public_rtmp_url: Option<String>,
    /// Base URL players reach this node's HTTP at (`https://edge1.example.com`); default
    /// `http://` + the advertised HTTP address.
    #[arg(long = "public-http-url", env = "LIVECDN_PUBLIC_HTTP_URL")]
    pub public_http_url: Option<String>,
}

/// `APP=REGION[,REGION]`.
fn parse_prewarm(s: &str) -> Result<(String, Vec<String>), String> {
    let (app, regions) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected APP=REGION[,REGION]"))?;
    let regions: Vec<String> = regions
        .split(',')
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    if app.trim().is_empty() || regions.is_empty() {
        return Err(format!("`{s}`: expected APP=REGION[,REGION]"));
    }
    Ok((app.trim().to_string(), regions))
}

impl LocateArgs {
    /// The chooser's settings; an error names the bad option.
    pub fn locate_config(&self) -> Result<crate::locate::LocateConfig, String> {
        let distances = crate::locate::RegionDistances::parse(&self.region_distance)
            .map_err(|e| format!("--region-distance: {e}"))?;
        crate::locate::LocateConfig::new(self.locate_epsilon, distances)
            .map_err(|e| format!("--locate-epsilon: {e}"))
    }

    /// The regions whose edges pre-warm streams of `app` by this node's rules.
    pub fn prewarm_regions(&self, app: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (a, regions) in &self.prewarm {
            if a == app || a == "*" {
                for r in regions {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
        out
    }
}

/// Signed play URLs and the cluster credential (publish keys are the origin's own option).
/// Root-level keys of the file: `play_key = ["live=KEY"]`, `cluster_secret = "..."`.
#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// `APP=KEY` (repeatable; `*` as APP: every app): plays need a token signed with a key of
    /// their app. Several keys of one app are all valid (rotation).
    #[arg(
        long = "play-key",
        env = "LIVECDN_PLAY_KEY",
        value_name = "APP=KEY",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = crate::admission::parse_app_key
    )]
    pub play_key: Vec<crate::admission::AppKey>,
    /// Shared by the cluster's nodes: an edge signs its pulls with it, and a node with play
    /// keys admits such a pull without a viewer token.
    #[arg(
        long = "cluster-secret",
        env = "LIVECDN_CLUSTER_SECRET",
        hide_env_values = true,
        value_parser = crate::admission::parse_secret
    )]
    pub cluster_secret: Option<crate::admission::Secret>,
    /// A token stays valid this long past its expiry (clocks of signers and nodes differ).
    #[arg(long = "auth-clock-skew", env = "LIVECDN_AUTH_CLOCK_SKEW", default_value = "30s", value_parser = parse_duration)]
    pub auth_clock_skew: Duration,
}

impl AuthArgs {
    /// What the node admits, with the origin's `publish_keys` (none on an edge).
    pub fn admission(
        &self,
        publish_keys: Vec<crate::admission::AppKey>,
    ) -> crate::admission::Admission {
        crate::admission::Admission {
            publish: crate::admission::Keys::new(publish_keys),
            play: crate::admission::Keys::new(self.play_key.clone()),
            cluster_secret: self.cluster_secret.clone(),
            clock_skew_s: self.auth_clock_skew.as_secs(),
        }
    }
}

/// The control plane's own listener: the JSON API, gRPC and `/metrics`.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Listener of the control API (JSON `/api/v1`, gRPC, `/metrics`). Keep it off the
    /// internet: on a non-loopback address the node requires an API token.
    #[arg(
        long = "api-listen",
        env = "LIVECDN_API_LISTEN",
        default_value = "127.0.0.1:1985"
    )]
    pub api_listen: SocketAddr,
    /// Bearer token every call that changes something (drain, undrain, kick) must carry
    /// (`Authorization: Bearer TOKEN`). Without one, changes are accepted only because the
    /// listener is loopback-only.
    #[arg(long = "api-token", env = "LIVECDN_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// File holding the API token (its first line), instead of `--api-token`.
    #[arg(long = "api-token-file", env = "LIVECDN_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
}

impl ApiArgs {
    /// The API token from `--api-token` or `--api-token-file`; an error names what is wrong,
    /// including a non-loopback listener without a token.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        let token = match (&self.api_token, &self.api_token_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "--api-token and --api-token-file: give one, not both".into(),
                ));
            }
            (Some(t), None) => Some(t.trim().to_string()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some(text.lines().next().unwrap_or_default().trim().to_string())
            }
            (None, None) => None,
        };
        if token.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(ConfigError::Invalid(
                "--api-token: the token is empty".into(),
            ));
        }
        if token.is_none() && !self.api_listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "--api-listen {}: a control API off loopback needs --api-token or --api-token-file",
                self.api_listen
            )));
        }
        Ok(token)
    }
}

/// Identity of a node in the cluster.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Unique node id (default: the hostname).
    #[arg(long = "node-id", env = "LIVECDN_NODE_ID")]
    pub node_id: Option<String>,
    /// Zone label (finer than region).
    #[arg(long = "zone", env = "LIVECDN_ZONE", default_value = "")]
    pub zone: String,
    /// Region label used by schedulers and dashboards.
    #[arg(long = "region", env = "LIVECDN_REGION", default_value = "default")]
    pub region: String,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG overrides it.
    #[arg(long = "log", env = "LIVECDN_LOG", default_value = "info")]
    pub log: String,
    /// On SIGTERM/SIGINT, players and publishers get this long to be closed cleanly.
    #[arg(long = "shutdown-grace", env = "LIVECDN_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl NodeArgs {
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(hostname)
    }
}

/// Listeners and per-connection limits.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// RTMP listener.
    #[arg(
        long = "rtmp-listen",
        env = "LIVECDN_RTMP_LISTEN",
        default_value = "0.0.0.0:1935"
    )]
    pub rtmp_listen: SocketAddr,
    /// HTTP listener (HTTP-FLV, /healthz).
    #[arg(
        long = "http-listen",
        env = "LIVECDN_HTTP_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub http_listen: SocketAddr,
    /// RTMP address other nodes reach this one at (default: the listen address, with the
    /// hostname if it listens on all interfaces).
    #[arg(long = "rtmp-advertise", env = "LIVECDN_RTMP_ADVERTISE")]
    pub rtmp_advertise: Option<String>,
    /// HTTP address other nodes and tools reach this one at (same default rule).
    #[arg(long = "http-advertise", env = "LIVECDN_HTTP_ADVERTISE")]
    pub http_advertise: Option<String>,
    /// From accept to publish/play; slower connections are closed.
    #[arg(long = "rtmp-handshake-timeout", env = "LIVECDN_RTMP_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub rtmp_handshake_timeout: Duration,
    /// A publisher sending no media for this long is dropped.
    #[arg(long = "rtmp-publish-idle-timeout", env = "LIVECDN_RTMP_PUBLISH_IDLE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub rtmp_publish_idle_timeout: Duration,
    /// A write to a player that makes no progress for this long closes it.
    #[arg(long = "net-write-timeout", env = "LIVECDN_NET_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub net_write_timeout: Duration,
    /// One budget of open connections across the public listeners (RTMP, RTMPS, HTTP,
    /// HTTPS; not the API listener): beyond it, new connections are closed at accept.
    #[arg(
        long = "net-max-connections",
        env = "LIVECDN_NET_MAX_CONNECTIONS",
        default_value_t = 20_000
    )]
    pub net_max_connections: usize,
    /// Open connections from one client address across the public listeners (0: no limit).
    #[arg(
        long = "net-max-connections-per-ip",
        env = "LIVECDN_NET_MAX_CONNECTIONS_PER_IP",
        default_value_t = 100
    )]
    pub net_max_connections_per_ip: usize,
    /// Networks (`10.0.0.0/8`, `::1/128`, an address; comma-separated) without a
    /// per-address limit: other nodes of the cluster (an edge pulls every stream it serves
    /// from its origin over one address) and proxies. `""`: none.
    #[arg(
        long = "net-trusted-networks",
        env = "LIVECDN_NET_TRUSTED_NETWORKS",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128",
        value_parser = check_cidr
    )]
    pub net_trusted_networks: Vec<String>,
    /// An HTTP request head must arrive within this (over HTTPS, the TLS handshake too; on
    /// HTTP/1 keep-alive, also the wait for the next request).
    #[arg(long = "http-header-timeout", env = "LIVECDN_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http_header_timeout: Duration,
    /// An HTTP connection with no bytes either way for this long is closed (an idle HTTP/2
    /// connection, a response that sends nothing).
    #[arg(long = "http-idle-timeout", env = "LIVECDN_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub http_idle_timeout: Duration,
    /// PEM certificate chain of the RTMPS and HTTPS listeners; re-read when it changes.
    #[arg(long = "tls-cert", env = "LIVECDN_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls-cert`; re-read when it changes.
    #[arg(long = "tls-key", env = "LIVECDN_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// RTMPS listener (publish and play over TLS); absent: none. Needs --tls-cert and --tls-key.
    #[arg(long = "rtmps-listen", env = "LIVECDN_RTMPS_LISTEN")]
    pub rtmps_listen: Option<SocketAddr>,
    /// HTTPS listener (HTTP-FLV, HLS, the player page); absent: none. Needs --tls-cert and --tls-key.
    #[arg(long = "https-listen", env = "LIVECDN_HTTPS_LISTEN")]
    pub https_listen: Option<SocketAddr>,
    /// Frames per write batch (one writev).
    #[arg(long = "net-batch-frames", env = "LIVECDN_NET_BATCH_FRAMES", default_value_t = 64, value_parser = clap::value_parser!(usize))]
    pub net_batch_frames: usize,
    /// SO_SNDBUF of player sockets in bytes; 0 keeps the kernel's autotuning.
    #[arg(
        long = "net-send-buffer",
        env = "LIVECDN_NET_SEND_BUFFER",
        default_value_t = 0
    )]
    pub net_send_buffer: usize,
}

/// A network of `--net-trusted-networks` (`""` stands for none).
fn check_cidr(s: &str) -> Result<String, String> {
    if !s.trim().is_empty() {
        crate::net::limit::Cidr::parse(s)?;
    }
    Ok(s.to_string())
}

fn advertised(explicit: &Option<String>, listen: SocketAddr) -> String {
    if let Some(a) = explicit {
        return a.clone();
    }
    if listen.ip().is_unspecified() {
        format!("{}:{}", hostname(), listen.port())
    } else {
        listen.to_string()
    }
}

/// The machine's hostname, or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

impl NetArgs {
    /// The RTMP address other nodes use to reach this one.
    pub fn rtmp_address(&self) -> String {
        advertised(&self.rtmp_advertise, self.rtmp_listen)
    }

    /// The HTTP address other nodes and tools use to reach this one.
    pub fn http_address(&self) -> String {
        advertised(&self.http_advertise, self.http_listen)
    }

    /// The TLS acceptors if a TLS listener is configured (`None` without one); a listener
    /// without a certificate and key, or unreadable files, is an error naming the option.
    pub fn tls(&self) -> Result<Option<crate::net::tls::Tls>, ConfigError> {
        if self.rtmps_listen.is_none() && self.https_listen.is_none() {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Err(ConfigError::Invalid(
                "--rtmps-listen and --https-listen need --tls-cert and --tls-key ([tls] cert, key)"
                    .into(),
            ));
        };
        crate::net::tls::Tls::new(cert.clone(), key.clone())
            .map(Some)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    pub fn limits(&self) -> NetLimits {
        NetLimits {
            handshake_timeout: self.rtmp_handshake_timeout,
            publish_idle_timeout: self.rtmp_publish_idle_timeout,
            write_timeout: self.net_write_timeout,
            max_connections: self.net_max_connections,
            max_connections_per_ip: self.net_max_connections_per_ip,
            trusted_networks: self
                .net_trusted_networks
                .iter()
                .filter_map(|c| crate::net::limit::Cidr::parse(c).ok())
                .collect(),
            http_header_timeout: self.http_header_timeout,
            http_idle_timeout: self.http_idle_timeout,
            batch_frames: self.net_batch_frames.max(1),
            send_buffer: self.net_send_buffer,
        }
    }
}

/// Where the cluster registry lives.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// etcd endpoints, comma-separated (`http://10.0.0.1:2379,...`). Absent: an in-memory
    /// registry (a single node on its own).
    #[arg(
        long = "etcd",
        visible_alias = "etcd-endpoints",
        env = "LIVECDN_ETCD",
        value_delimiter = ','
    )]
    pub etcd: Vec<String>,
    /// Prefix of every key livecdn writes in etcd.
    #[arg(
        long = "etcd-prefix",
        env = "LIVECDN_ETCD_PREFIX",
        default_value = "/livecdn/v1"
    )]
    pub etcd_prefix: String,
    /// TTL of the node's lease: a dead node's keys vanish this long after it died.
    #[arg(long = "etcd-lease-ttl", env = "LIVECDN_ETCD_LEASE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub etcd_lease_ttl: Duration,
    /// Bound of every etcd request.
    #[arg(long = "etcd-timeout", env = "LIVECDN_ETCD_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub etcd_timeout: Duration,
    /// At start, keep trying to reach etcd this long before giving up.
    #[arg(long = "etcd-connect-wait", env = "LIVECDN_ETCD_CONNECT_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub etcd_connect_wait: Duration,
    /// How often the node refreshes its record (with its load) in the registry.
    #[arg(long = "load-interval", env = "LIVECDN_LOAD_INTERVAL", default_value = "3s", value_parser = parse_duration)]
    pub load_interval: Duration,
}

impl ClusterArgs {
    /// The registry these options name: etcd if endpoints are given, else in-memory.
    pub async fn registry(
        &self,
    ) -> Result<std::sync::Arc<dyn crate::cluster::Registry>, crate::cluster::RegistryError> {
        if self.etcd.is_empty() {
            return Ok(crate::cluster::MemoryRegistry::new());
        }
        let config = crate::cluster::EtcdConfig {
            endpoints: self.etcd.clone(),
            prefix: self.etcd_prefix.clone(),
            lease_ttl: self.etcd_lease_ttl,
            op_timeout: self.etcd_timeout,
        };
        // etcd may start after us (compose, Kubernetes): keep trying for a while.
        let give_up = std::time::Instant::now() + self.etcd_connect_wait;
        loop {
            match crate::cluster::EtcdRegistry::connect(config.clone()).await {
                Ok(registry) => return Ok(registry),
                Err(e) if std::time::Instant::now() >= give_up => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "etcd not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The hub's caches and player queues.
#[derive(Args, Debug, Clone)]
pub struct MediaArgs {
    /// Keep the last GOP so new players start on a keyframe at once.
    #[arg(long = "media-gop-cache", env = "LIVECDN_MEDIA_GOP_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub media_gop_cache: bool,
    /// A GOP with more frames than this is not cached.
    #[arg(
        long = "media-gop-max-frames",
        env = "LIVECDN_MEDIA_GOP_MAX_FRAMES",
        default_value_t = 2048
    )]
    pub media_gop_max_frames: usize,
    /// A GOP larger than this many bytes is not cached.
    #[arg(long = "media-gop-max-bytes", env = "LIVECDN_MEDIA_GOP_MAX_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub media_gop_max_bytes: usize,
    /// Milliseconds of media a player may fall behind before it drops to the next keyframe.
    #[arg(
        long = "media-queue-max-ms",
        env = "LIVECDN_MEDIA_QUEUE_MAX_MS",
        default_value_t = 10_000
    )]
    pub media_queue_max_ms: u32,
    /// Payload bytes a player's queue may hold (headers and metadata included) before it drops
    /// to the next keyframe; a player whose headers alone exceed it is disconnected.
    #[arg(
        long = "media-queue-max-bytes",
        env = "LIVECDN_MEDIA_QUEUE_MAX_BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    pub media_queue_max_bytes: usize,
    /// A player that overflows this many times within the slow window is disconnected.
    #[arg(
        long = "media-slow-max-overflows",
        env = "LIVECDN_MEDIA_SLOW_MAX_OVERFLOWS",
        default_value_t = 3
    )]
    pub media_slow_max_overflows: u32,
    /// The slow window, in milliseconds of media.
    #[arg(
        long = "media-slow-window-ms",
        env = "LIVECDN_MEDIA_SLOW_WINDOW_MS",
        default_value_t = 60_000
    )]
    pub media_slow_window_ms: u32,
    /// A stream with this many players has its fan-out split across the runtime's workers.
    #[arg(
        long = "media-fanout-min-subscribers",
        env = "LIVECDN_MEDIA_FANOUT_MIN_SUBSCRIBERS",
        default_value_t = 128
    )]
    pub media_fanout_min_subscribers: usize,
    /// Shards of a hot stream's fan-out: 0 = one per runtime worker, 1 = never split.
    #[arg(
        long = "media-fanout-shards",
        env = "LIVECDN_MEDIA_FANOUT_SHARDS",
        default_value_t = 0
    )]
    pub media_fanout_shards: usize,
    /// How long a player of a stream that is not (yet) published waits before StreamNotFound/404.
    #[arg(long = "media-play-wait", env = "LIVECDN_MEDIA_PLAY_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub media_play_wait: Duration,
}

impl MediaArgs {
    pub fn hub_config(&self) -> HubConfig {
        HubConfig {
            gop_cache: self.media_gop_cache,
            gop_max_frames: self.media_gop_max_frames,
            gop_max_bytes: self.media_gop_max_bytes,
            queue_max_ms: self.media_queue_max_ms,
            queue_max_bytes: self.media_queue_max_bytes.max(1),
            slow_max_overflows: self.media_slow_max_overflows.max(1),
            slow_window_ms: self.media_slow_window_ms,
            fanout_min_subscribers: self.media_fanout_min_subscribers,
            fanout_shards: self.media_fanout_shards,
        }
    }
}

/// HLS packaging and serving.
#[derive(Args, Debug, Clone)]
pub struct HlsArgs {
    /// Target segment duration: a segment starts at the first keyframe of each window of
    /// this length (a longer GOP makes longer segments).
    #[arg(long = "hls-target-duration", env = "LIVECDN_HLS_TARGET_DURATION", default_value = "2s", value_parser = parse_duration)]
    pub hls_target_duration: Duration,
    /// LL-HLS part duration.
    #[arg(long = "hls-part-duration", env = "LIVECDN_HLS_PART_DURATION", default_value = "300ms", value_parser = parse_duration)]
    pub hls_part_duration: Duration,
    /// Complete segments kept in memory and listed, per stream.
    #[arg(
        long = "hls-window-segments",
        env = "LIVECDN_HLS_WINDOW_SEGMENTS",
        default_value_t = 10
    )]
    pub hls_window_segments: usize,
    /// Bytes of segments and parts kept in memory, per stream.
    #[arg(long = "hls-window-bytes", env = "LIVECDN_HLS_WINDOW_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub hls_window_bytes: usize,
    /// A stream's packaging stops after this long without an HLS request for it.
    #[arg(long = "hls-idle-timeout", env = "LIVECDN_HLS_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub hls_idle_timeout: Duration,
    /// Access-Control-Allow-Origin of HLS responses ("" sends none).
    #[arg(
        long = "hls-cors-origin",
        env = "LIVECDN_HLS_CORS_ORIGIN",
        default_value = "*"
    )]
    pub hls_cors_origin: String,
    /// hls.js script URL of the player page.
    #[arg(
        long = "hls-player-hlsjs-url",
        env = "LIVECDN_HLS_PLAYER_HLSJS_URL",
        default_value = "https://cdn.jsdelivr.net/npm/hls.js@1/dist/hls.min.js"
    )]
    pub hls_player_hlsjs_url: String,
    /// mpegts.js script URL of the player page (HTTP-FLV).
    #[arg(
        long = "hls-player-mpegtsjs-url",
        env = "LIVECDN_HLS_PLAYER_MPEGTSJS_URL",
        default_value = "https://cdn.jsdelivr.net/npm/mpegts.js@1/dist/mpegts.js"
    )]
    pub hls_player_mpegtsjs_url: String,
}

impl HlsArgs {
    pub fn options(&self, play_wait: Duration) -> crate::net::hls::HlsOptions {
        let ms = |d: Duration| d.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
        crate::net::hls::HlsOptions {
            segmenter: crate::hls::HlsConfig {
                target_ms: ms(self.hls_target_duration).max(100),
                part_ms: ms(self.hls_part_duration).max(50),
                window_segments: self.hls_window_segments.max(2),
                window_bytes: self.hls_window_bytes,
            },
            idle_timeout: self.hls_idle_timeout,
            cors_origin: self.hls_cors_origin.clone(),
            hlsjs_url: self.hls_player_hlsjs_url.clone(),
            mpegtsjs_url: self.hls_player_mpegtsjs_url.clone(),
            play_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T {
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        node: NodeArgs,
    }

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn file_then_cli_precedence_and_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("livecdn-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "region = \"eu\"\n[rtmp]\nlisten = \"127.0.0.1:1999\"\n[http]\nlisten = \"127.0.0.1:8999\"\n",
        )
        .expect("write");
        let p = good.to_string_lossy().to_string();
        let t: T = load_from(args(&["x", "--config", &p])).expect("load");
        assert_eq!(t.net.rtmp_listen.port(), 1999);
        assert_eq!(t.node.region, "eu");
        let t: T = load_from(args(&[
            "x",
            "--config",
            &p,
            "--rtmp-listen",
            "127.0.0.1:2000",
        ]))
        .expect("load");
        assert_eq!(t.net.rtmp_listen.port(), 2000);
        assert_eq!(t.net.http_listen.port(), 8999);

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[rtmp]\nlisten = \"127.0.0.1:1999\"\nlisen = 3\n").expect("write");
        let err = load_from::<T>(args(&["x", "--config", &bad.to_string_lossy()]))
            .expect_err("unknown key");
        assert!(err.to_string().contains("rtmp.lisen"), "{err}");

        let invalid = dir.join("invalid.toml");
        std::fs::write(&invalid, "[rtmp]\nlisten = \"nowhere\"\n").expect("write");
        let err = load_from::<T>(args(&["x", "--config", &invalid.to_string_lossy()]))
            .expect_err("invalid value");
        assert!(err.to_string().contains("--rtmp-listen"), "{err}");
    }
}

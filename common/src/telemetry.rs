//! Logging and metrics setup, and the names of every metric livecdn exports
//! (`livecdn_<subsystem>_<name>_<unit>`, low-cardinality labels only).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Metric names, in one place so code, dashboards and alert rules agree. Labels are of low
/// cardinality only (`protocol`, `role`, `reason`, `op`, `kind`); never a stream key.
pub mod metric {
    // net: connections and bytes
    /// Counter {protocol}: connections accepted.
    pub const CONNECTIONS_ACCEPTED: &str = "livecdn_net_connections_accepted_total";
    /// Counter {protocol, reason}: connections refused at accept (limit, draining).
    pub const CONNECTIONS_REFUSED: &str = "livecdn_net_connections_refused_total";
    /// Gauge: connections open on the public listeners (the `net.max_connections` budget in use).
    pub const CONNECTIONS_OPEN: &str = "livecdn_net_connections_open";
    /// Counter {protocol, reason}: connections ended by an error (bad input, timeouts...).
    pub const CONNECTION_ERRORS: &str = "livecdn_net_connection_errors_total";
    /// Counter {protocol}: bytes received from publishers and upstreams.
    pub const BYTES_RECEIVED: &str = "livecdn_net_received_bytes_total";
    /// Counter {protocol}: bytes sent to players.
    pub const BYTES_SENT: &str = "livecdn_net_sent_bytes_total";
    // media: streams, publishers, players
    /// Gauge {kind = published | pulled}: streams published on this node / pulled by this edge.
    pub const STREAMS_ACTIVE: &str = "livecdn_media_streams_active";
    /// Gauge: publishers connected.
    pub const PUBLISHERS: &str = "livecdn_media_publishers";
    /// Gauge {protocol}: players connected (HLS: distinct addresses that fetched in the last
    /// 10 s, an estimate: HLS has no connection per player).
    pub const PLAYERS: &str = "livecdn_media_players";
    /// Counter {reason}: publishes refused.
    pub const PUBLISHES_REFUSED: &str = "livecdn_media_publishes_refused_total";
    /// Counter {protocol, reason}: plays refused.
    pub const PLAYS_REFUSED: &str = "livecdn_media_plays_refused_total";
    /// Histogram {protocol}: from the play request to the first media frame written.
    pub const FIRST_FRAME: &str = "livecdn_media_first_frame_seconds";
    /// Counter {reason}: frames not delivered to a player.
    pub const FRAMES_DROPPED: &str = "livecdn_media_frames_dropped_total";
    /// Counter: players disconnected for being too slow.
    pub const SLOW_PLAYERS_DISCONNECTED: &str = "livecdn_media_slow_players_disconnected_total";
    /// Gauge: payload bytes held by all streams' GOP caches (set when /metrics is rendered).
    pub const GOP_CACHE_BYTES: &str = "livecdn_media_gop_cache_bytes";
    /// Gauge: the most payload bytes all GOP caches held at once since the node started.
    pub const GOP_CACHE_PEAK_BYTES: &str = "livecdn_media_gop_cache_peak_bytes";
    /// Gauge: streams packaged for HLS on this node.
    pub const HLS_PACKAGERS: &str = "livecdn_hls_packagers";
    /// Counter {reason}: clients kicked through the API.
    pub const CLIENTS_KICKED: &str = "livecdn_media_clients_kicked_total";
    // edge: upstream pulls
    /// Gauge: upstream pulls running on this edge.
    pub const UPSTREAMS_ACTIVE: &str = "livecdn_edge_upstreams_active";
    /// Counter: upstream connection attempts.
    pub const UPSTREAM_ATTEMPTS: &str = "livecdn_edge_upstream_attempts_total";
    /// Counter {reason}: upstream failures.
    pub const UPSTREAM_FAILURES: &str = "livecdn_edge_upstream_failures_total";
    /// Counter {reason = not_found_cached | ingest_limit | pending_limit}: plays an edge
    /// refused before they could cost an ingest or a registry lookup.
    pub const PLAYS_SHED: &str = "livecdn_edge_plays_shed_total";
    /// Gauge: plays waiting for a stream that does not flow yet on this edge.
    pub const PENDING_PLAYS: &str = "livecdn_edge_pending_plays";
    // origin
    /// Counter: publishes accepted while etcd was unreachable (claim retried later).
    pub const CLAIMS_DEFERRED: &str = "livecdn_origin_claims_deferred_total";
    // registry (etcd)
    /// Counter {op}: registry operations.
    pub const REGISTRY_OPERATIONS: &str = "livecdn_registry_operations_total";
    /// Counter {op}: registry operations that failed.
    pub const REGISTRY_FAILURES: &str = "livecdn_registry_failures_total";
    /// Counter: lease keep-alive failures.
    pub const LEASE_RENEWAL_FAILURES: &str = "livecdn_registry_lease_renewal_failures_total";
    /// Histogram {op}: etcd round-trip time.
    pub const REGISTRY_DURATION: &str = "livecdn_registry_request_duration_seconds";
    // node
    /// Gauge {version, role}: always 1.
    pub const BUILD_INFO: &str = "livecdn_build_info";
    /// Gauge: 1 while the node drains.
    pub const DRAINING: &str = "livecdn_node_draining";

    /// Protocols players use.
    pub const PLAY_PROTOCOLS: [&str; 3] = ["rtmp", "http-flv", "hls"];

    /// Increments a gauge now and decrements it on drop, so gauges return to zero when the
    /// load leaves, whatever path a connection ends by.
    pub struct GaugeGuard(metrics::Gauge);

    impl GaugeGuard {
        pub fn new(g: metrics::Gauge) -> Self {
            g.increment(1.0);
            Self(g)
        }
    }

    impl Drop for GaugeGuard {
        fn drop(&mut self) {
            self.0.decrement(1.0);
        }
    }
}

static EGRESS_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts bytes sent to players, for the Prometheus counter and the node's reported load.
pub fn count_egress(counter: &metrics::Counter, bytes: u64) {
    counter.increment(bytes);
    EGRESS_BYTES.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// Bytes sent to players since start.
pub fn egress_bytes() -> u64 {
    EGRESS_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the tracing subscriber (`RUST_LOG` or `default_filter`). Safe to call twice.
pub fn init_logging(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Installs the global Prometheus recorder once and returns its handle (render() serves
/// `/metrics`). Later calls return the same handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(metric::FIRST_FRAME.to_string()),
                    &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(metric::REGISTRY_DURATION.to_string()),
                        &[
                            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
                        ],
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            // Fails only if another recorder is installed (tests running several nodes in
            // one process): the handle then renders nothing, which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Makes every metric of a node of `role` ("origin" or "edge") exist at zero from the start,
/// so dashboards and alerts see them before any load.
pub fn init_metrics(role: &'static str) {
    use metrics::{counter, gauge};
    let _ = metrics_handle();
    gauge!(metric::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "role" => role).set(1.0);
    gauge!(metric::DRAINING).set(0.0);
    gauge!(metric::PUBLISHERS).set(0.0);
    gauge!(metric::HLS_PACKAGERS).set(0.0);
    gauge!(metric::GOP_CACHE_BYTES).set(0.0);
    gauge!(metric::GOP_CACHE_PEAK_BYTES).set(0.0);
    for kind in ["published", "pulled"] {
        gauge!(metric::STREAMS_ACTIVE, "kind" => kind).set(0.0);
    }
    for p in metric::PLAY_PROTOCOLS {
        gauge!(metric::PLAYERS, "protocol" => p).set(0.0);
        counter!(metric::BYTES_SENT, "protocol" => p).absolute(0);
        counter!(metric::PLAYS_REFUSED, "protocol" => p, "reason" => "not_found").absolute(0);
    }
    for p in ["rtmp", "http"] {
        counter!(metric::CONNECTIONS_ACCEPTED, "protocol" => p).absolute(0);
    }
    counter!(metric::CONNECTIONS_REFUSED, "protocol" => "rtmp", "reason" => "limit").absolute(0);
    counter!(metric::CONNECTION_ERRORS, "protocol" => "rtmp", "reason" => "io").absolute(0);
    counter!(metric::BYTES_RECEIVED, "protocol" => "rtmp").absolute(0);
    counter!(metric::FRAMES_DROPPED, "reason" => "slow_player").absolute(0);
    // A hot stream's shard that fell behind (`media::shard`): an overloaded node, not a player.
    counter!(metric::FRAMES_DROPPED, "reason" => "fanout_behind").absolute(0);
    counter!(metric::SLOW_PLAYERS_DISCONNECTED).absolute(0);
    counter!(metric::PUBLISHES_REFUSED, "reason" => "busy").absolute(0);
    counter!(metric::REGISTRY_OPERATIONS, "op" => "register").absolute(0);
    counter!(metric::REGISTRY_FAILURES, "op" => "register").absolute(0);
    counter!(metric::LEASE_RENEWAL_FAILURES).absolute(0);
    if role == "edge" {
        gauge!(metric::UPSTREAMS_ACTIVE).set(0.0);
        counter!(metric::UPSTREAM_ATTEMPTS).absolute(0);
        counter!(metric::UPSTREAM_FAILURES, "reason" => "connect").absolute(0);
        gauge!(metric::PENDING_PLAYS).set(0.0);
        for r in ["not_found_cached", "ingest_limit", "pending_limit"] {
            counter!(metric::PLAYS_SHED, "reason" => r).absolute(0);
        }
    } else {
        counter!(metric::CLAIMS_DEFERRED).absolute(0);
    }
}

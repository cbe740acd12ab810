//! Logging and metrics setup, and the names of every metric livecdn exports
//! (`livecdn_<subsystem>_<name>_<unit>`, low-cardinality labels only).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Metric names, in one place so dashboards and code agree.
pub mod metric {
    pub const CONNECTIONS_ACCEPTED: &str = "livecdn_net_connections_accepted_total";
    pub const CONNECTIONS_REFUSED: &str = "livecdn_net_connections_refused_total";
    pub const CONNECTION_ERRORS: &str = "livecdn_net_connection_errors_total";
    pub const PUBLISHERS: &str = "livecdn_media_publishers";
    pub const PLAYERS: &str = "livecdn_media_players";
    pub const PLAYS_REFUSED: &str = "livecdn_media_plays_refused_total";
    pub const BYTES_RECEIVED: &str = "livecdn_net_received_bytes_total";
    pub const BYTES_SENT: &str = "livecdn_net_sent_bytes_total";
    pub const FRAMES_DROPPED: &str = "livecdn_media_frames_dropped_total";
    pub const SLOW_PLAYERS_DISCONNECTED: &str = "livecdn_media_slow_players_disconnected_total";
    pub const BUILD_INFO: &str = "livecdn_build_info";

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
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed (tests running several nodes in
            // one process): the handle then renders nothing, which is harmless.
            let _ = metrics::set_global_recorder(recorder);
            metrics::gauge!(metric::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

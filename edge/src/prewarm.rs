//! Pre-warm: an edge pulls a hot stream as soon as it is published, before any player asks,
//! when the locator would send that stream's players of this edge's region here. A stream is
//! hot in a region when its record names the region (the origin stamps it from its
//! `--prewarm` rules or the API) or this edge's own `--prewarm` rules do. The pull is an
//! ordinary play held by the edge itself (so the ingest, GOP cache and failover are the same
//! as for a player) and kept while the stream stays published.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::{ClusterView, StreamRecord, stream_key};
use common::locate::LocateConfig;
use common::net::{Node, PlayRequest};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::Edge;

/// Metric: gauge of streams this edge pulls ahead of its players.
pub const PREWARMED: &str = "livecdn_edge_prewarmed_streams";
/// Metric: counter of pre-warm pulls started.
pub const PREWARMS: &str = "livecdn_edge_prewarms_total";

/// How often choices are re-evaluated while nothing changes (node loads move them).
const RECHECK: Duration = Duration::from_secs(1);

/// The streams this edge pre-warms now, each with the token that ends its hold.
#[derive(Default)]
pub struct Prewarmed {
    held: Mutex<HashMap<String, CancellationToken>>,
}

impl Prewarmed {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn keys(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    pub fn contains(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }
}

/// Who this edge is, for the choice.
pub struct Identity {
    pub node_id: String,
    pub region: String,
    /// This edge's own `--prewarm` rules.
    pub rules: common::config::LocateArgs,
    pub config: LocateConfig,
}

impl Identity {
    /// Whether `record`'s stream is hot in this edge's region and the locator picks this edge.
    fn should_hold(&self, record: &StreamRecord, view: &ClusterView) -> bool {
        let hot_here = record.prewarm_regions.contains(&self.region)
            || self
                .rules
                .prewarm_regions(&record.app)
                .contains(&self.region);
        if !hot_here {
            return false;
        }
        let key = stream_key(&record.app, &record.name);
        let nodes = view.nodes_shared();
        common::locate::choose_for_players(&self.region, &key, &nodes, &self.config, 1)
            .first()
            .is_some_and(|c| c.node_id == self.node_id)
    }
}

/// Follows the view until `shutdown`: starts a hold for every stream this edge should
/// pre-warm, ends holds of streams that are gone.
pub async fn run(
    edge: Arc<Edge>,
    view: Arc<ClusterView>,
    me: Identity,
    shutdown: CancellationToken,
) {
    let mut version = view.version();
    let mut tick = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = version.changed() => if r.is_err() { break },
            _ = tick.tick() => {}
        }
        let streams = view.streams();
        let live: std::collections::HashSet<String> = streams
            .iter()
            .map(|r| stream_key(&r.app, &r.name))
            .collect();
        // Streams no longer published: let go (the ingest ends when no player watches).
        edge.prewarmed.lock().retain(|key, stop| {
            let keep = live.contains(key) && !stop.is_cancelled();
            if !keep {
                stop.cancel();
            }
            keep
        });
        for record in &streams {
            let key = stream_key(&record.app, &record.name);
            if edge.prewarmed.contains(&key) || !me.should_hold(record, &view) {
                continue;
            }
            let stop = shutdown.child_token();
            edge.prewarmed.lock().insert(key.clone(), stop.clone());
            metrics::counter!(PREWARMS).increment(1);
            info!(stream = %key, "pre-warming");
            tokio::spawn(hold(edge.clone(), record.clone(), stop));
        }
        metrics::gauge!(PREWARMED).set(edge.prewarmed.lock().len() as f64);
    }
    for (_, stop) in edge.prewarmed.lock().drain() {
        stop.cancel();
    }
}

/// Plays `record`'s stream on this edge and discards the frames until `stop` or the stream
/// ends; then marks the hold ended (cancelled) so the next pass may start it again.
async fn hold(edge: Arc<Edge>, record: StreamRecord, stop: CancellationToken) {
    let req = PlayRequest {
        app: record.app.clone(),
        name: record.name.clone(),
        query: String::new(),
        peer: "prewarm".to_string(),
        protocol: "prewarm",
    };
    let played = tokio::select! {
        r = edge.play(&req) => r,
        _ = stop.cancelled() => return,
    };
    match played {
        Ok(mut sub) => {
            let mut frames = Vec::with_capacity(64);
            loop {
                tokio::select! {
                    r = sub.recv(&mut frames, 64) => {
                        if r.is_err() {
                            break;
                        }
                        frames.clear();
                    }
                    _ = stop.cancelled() => break,
                }
            }
        }
        Err(r) => debug!(stream = %req.key(), reason = r.reason, "pre-warm play refused"),
    }
    stop.cancel();
}

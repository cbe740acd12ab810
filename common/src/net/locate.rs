//! The locator's HTTP shell: `GET /api/v1/locate/{app}/{name}` (JSON) and the redirecting
//! play entries `/locate/{app}/{name}.flv`, `.m3u8` and `/locate/{app}/{name}` (the player
//! page), served by every node on its public listener. The choice itself is
//! `crate::locate::choose`, a pure function of (client region, stream key, cluster view); here
//! only the client's region is worked out and the answer rendered. Nothing here calls the
//! registry: the view is in memory.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::http::{PeerAddr, json_error};
use super::limit::Cidr;
use crate::cluster::{ClusterView, NodeRecord};
use crate::config::LocateArgs;
use crate::locate::{Choice, LocateConfig, Reason, RegionMap};

/// Header a trusted proxy (or a test on loopback) sets to place a client in a region.
pub const REGION_HEADER: &str = "x-livecdn-region";

/// Metric: counter {reason} of locate answers (`region_hit`, `fallback_region`, `spill`,
/// `no_edge`).
pub const DECISIONS: &str = "livecdn_locate_decisions_total";

/// What a node needs to answer locate requests.
pub struct Locator {
    view: Arc<ClusterView>,
    config: LocateConfig,
    regions: RegionMap,
    trusted: Vec<Cidr>,
    /// Clients outside every mapped network are placed here (the node's own region: the
    /// DNS or anycast that brought them here found it near).
    own_region: String,
    alternatives: usize,
    /// The view's nodes with the players this node sent each edge since that edge's last
    /// load report added: a burst of requests between two reports (every `load_interval`)
    /// must not all land on one edge.
    sent: std::sync::Mutex<Sent>,
}

#[derive(Default)]
struct Sent {
    /// The view's list this copy was made from.
    base: Option<Arc<Vec<NodeRecord>>>,
    nodes: Vec<NodeRecord>,
    /// Players sent per node id since its load report of `updated_at` (the key's value).
    since: std::collections::HashMap<String, (u64, u64)>,
}

impl Sent {
    /// The nodes to choose from: the view's, plus what was sent since each one's report.
    fn refresh(&mut self, base: Arc<Vec<NodeRecord>>) {
        if self.base.as_ref().is_some_and(|b| Arc::ptr_eq(b, &base)) {
            return;
        }
        self.nodes = base.as_ref().clone();
        let mut since = std::mem::take(&mut self.since);
        for n in &mut self.nodes {
            let reported = n.load.map_or(0, |l| l.updated_at);
            if let Some((at, count)) = since.remove(&n.node_id)
                && at == reported
            {
                let load = n.load.get_or_insert_with(Default::default);
                load.players = load.players.saturating_add(count);
                self.since.insert(n.node_id.clone(), (at, count));
            }
        }
        self.base = Some(base);
    }

    fn count(&mut self, node_id: &str) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.node_id == node_id) {
            let load = n.load.get_or_insert_with(Default::default);
            load.players = load.players.saturating_add(1);
            let entry = self
                .since
                .entry(node_id.to_string())
                .or_insert((load.updated_at, 0));
            entry.1 += 1;
        }
    }
}

impl Locator {
    /// The locator of a node in `own_region` reading `view`; an error names the bad option.
    pub fn new(
        view: Arc<ClusterView>,
        args: &LocateArgs,
        own_region: &str,
    ) -> Result<Arc<Self>, String> {
        let trusted = args
            .locate_trusted_proxies
            .iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| Cidr::parse(c))
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(Self {
            view,
            config: args.locate_config()?,
            regions: RegionMap::parse(&args.region_map)
                .map_err(|e| format!("--region-map: {e}"))?,
            trusted,
            own_region: own_region.to_string(),
            alternatives: args.locate_alternatives,
            sent: std::sync::Mutex::default(),
        }))
    }

    /// The client's region: an override (`?region=`, `X-Livecdn-Region`) from loopback or a
    /// trusted proxy, else the region map of the client address (`X-Forwarded-For` believed
    /// only from trusted proxies), else this node's region.
    pub fn client_region(&self, peer: IpAddr, headers: &HeaderMap, query: &str) -> String {
        let trusted_peer = peer.is_loopback() || self.trusted.iter().any(|c| c.contains(peer));
        if trusted_peer {
            let asked = query_param(query, "region").or_else(|| {
                headers
                    .get(REGION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
            if let Some(r) = asked.filter(|r| !r.is_empty() && r.len() <= 64) {
                return r;
            }
        }
        let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        let client = crate::locate::client_ip(peer, xff, &self.trusted);
        self.regions
            .region_of(client)
            .unwrap_or(&self.own_region)
            .to_string()
    }

    /// The chosen edge and its alternatives, best first, with their records; the chosen one
    /// is counted as having one more player until its next load report.
    pub fn choose(&self, region: &str, app: &str, name: &str) -> Vec<(Choice, NodeRecord)> {
        let key = crate::cluster::stream_key(app, name);
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.refresh(self.view.nodes_shared());
        let choices = crate::locate::choose_for_players(
            region,
            &key,
            &sent.nodes,
            &self.config,
            1 + self.alternatives,
        );
        let reason = Reason::of(&choices);
        metrics::counter!(DECISIONS, "reason" => reason.as_str()).increment(1);
        if let Some(first) = choices.first() {
            sent.count(&first.node_id);
        }
        choices
            .into_iter()
            .filter_map(|c| {
                let node = sent.nodes.iter().find(|n| n.node_id == c.node_id)?.clone();
                Some((c, node))
            })
            .collect()
    }
}

/// The value of `key` in a query string (undecoded; region names need no escaping).
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

/// The query without the locator's own `region` parameter: what the edge URL carries (the
/// play token and anything else the player sent are kept as they were).
fn forwarded_query(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some("region"))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn routes(locator: Arc<Locator>) -> Router {
    Router::new()
        .route("/api/v1/locate/{app}/{name}", get(locate_json))
        .route("/locate/{app}/{file}", get(locate_redirect))
        .with_state(locator)
}

async fn locate_json(
    State(loc): State<Arc<Locator>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    Path((app, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    if let Err(bad) = crate::admission::validate_name(&app, &name) {
        return json_error(400, &bad.to_string());
    }
    let region = loc.client_region(peer.ip(), &headers, &query);
    let forwarded = forwarded_query(&query);
    let choices = loc.choose(&region, &app, &name);
    let Some((first, node)) = choices.first() else {
        return no_edge(&region);
    };
    let entry = |c: &Choice, n: &NodeRecord| {
        let urls = crate::locate::play_urls(n, &app, &name, &forwarded);
        serde_json::json!({
            "edge": c.node_id,
            "region": c.region,
            "reason": c.reason.as_str(),
            "urls": { "rtmp": urls.rtmp, "flv": urls.flv, "hls": urls.hls },
        })
    };
    let mut body = entry(first, node);
    body["client_region"] = region.into();
    body["alternatives"] = choices[1..]
        .iter()
        .map(|(c, n)| entry(c, n))
        .collect::<Vec<_>>()
        .into();
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

async fn locate_redirect(
    State(loc): State<Arc<Locator>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    Path((app, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let (name, kind) = if let Some(n) = file.strip_suffix(".flv") {
        (n, Kind::Flv)
    } else if let Some(n) = file.strip_suffix(".m3u8") {
        (n, Kind::Hls)
    } else if !file.contains('.') {
        (file.as_str(), Kind::Page)
    } else {
        return json_error(
            404,
            "locate URLs are /locate/{app}/{name}.flv, .m3u8, or /locate/{app}/{name}",
        );
    };
    if let Err(bad) = crate::admission::validate_name(&app, name) {
        return json_error(400, &bad.to_string());
    }
    let region = loc.client_region(peer.ip(), &headers, &query);
    let Some((_, node)) = loc.choose(&region, &app, name).into_iter().next() else {
        return no_edge(&region);
    };
    let forwarded = forwarded_query(&query);
    let urls = crate::locate::play_urls(&node, &app, name, &forwarded);
    let location = match kind {
        Kind::Flv => urls.flv,
        Kind::Hls => urls.hls,
        Kind::Page => {
            let q = if forwarded.is_empty() {
                String::new()
            } else {
                format!("?{forwarded}")
            };
            format!("{}/{app}/{name}{q}", crate::locate::public_http(&node))
        }
    };
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".to_string()),
        ],
    )
        .into_response()
}

enum Kind {
    Flv,
    Hls,
    Page,
}

fn no_edge(region: &str) -> Response {
    json_error(
        503,
        &format!("no edge can take this player now (client region {region})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_query_drops_region_only() {
        assert_eq!(
            forwarded_query("region=eu&txSecret=a&txTime=b"),
            "txSecret=a&txTime=b"
        );
        assert_eq!(forwarded_query("expires=1&sign=x"), "expires=1&sign=x");
        assert_eq!(forwarded_query("region=eu"), "");
        assert_eq!(forwarded_query(""), "");
    }

    #[test]
    fn query_param_finds_the_key() {
        assert_eq!(
            query_param("a=1&region=us", "region").as_deref(),
            Some("us")
        );
        assert_eq!(query_param("regionx=1", "region"), None);
    }
}

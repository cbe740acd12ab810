//! The HTTP JSON control API (`/api/v1/...`), in the shape SRS users know, on the API listener.
//! Calls that change the node need the API token when one is set. Errors are JSON
//! `{"status", "reason"}`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::Control;
use crate::net::Node;
use crate::net::http::json_error;

/// The `/api/v1` routes.
pub fn routes<N: Node>(control: Arc<Control<N>>) -> Router {
    Router::new()
        .route("/api/v1/streams", get(streams::<N>))
        .route("/api/v1/streams/{app}/{name}", get(stream::<N>))
        .route("/api/v1/streams/{app}/{name}/prewarm", post(prewarm::<N>))
        .route("/api/v1/forwards", get(forwards::<N>))
        .route("/api/v1/clients", get(clients::<N>))
        .route("/api/v1/clients/{id}", axum::routing::delete(kick::<N>))
        .route("/api/v1/cluster/nodes", get(cluster_nodes::<N>))
        .route("/api/v1/cluster/streams", get(cluster_streams::<N>))
        .route("/api/v1/drain", post(drain::<N>))
        .route("/api/v1/undrain", post(undrain::<N>))
        .with_state(control)
}

/// 401 unless the call carries the API token (when one is configured).
fn refuse_change<N: Node>(c: &Control<N>, headers: &HeaderMap) -> Option<Response> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if c.may_change(auth) {
        return None;
    }
    let mut r = json_error(
        401,
        "this call changes the node: send Authorization: Bearer <api token>",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    Some(r)
}

async fn undrain<N: Node>(State(c): State<Arc<Control<N>>>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse_change(&c, &headers) {
        return r;
    }
    c.undrain();
    Json(serde_json::json!({ "draining": false })).into_response()
}

#[derive(Deserialize)]
struct PrewarmQuery {
    /// Comma-separated regions; empty: the stream is cold again.
    #[serde(default)]
    regions: String,
}

/// Marks a stream published on this origin hot in some regions (pre-warm).
async fn prewarm<N: Node>(
    State(c): State<Arc<Control<N>>>,
    headers: HeaderMap,
    Path((app, name)): Path<(String, String)>,
    Query(q): Query<PrewarmQuery>,
) -> Response {
    if let Some(r) = refuse_change(&c, &headers) {
        return r;
    }
    let regions: Vec<String> = q
        .regions
        .split(',')
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect();
    if regions.len() > 64 || regions.iter().any(|r| r.len() > 64) {
        return json_error(400, "at most 64 regions of at most 64 bytes");
    }
    match c.net.node.set_prewarm(&app, &name, regions.clone()).await {
        Ok(()) => Json(serde_json::json!({ "app": app, "name": name, "prewarm_regions": regions }))
            .into_response(),
        Err(r) => json_error(r.http_status, &r.description),
    }
}

async fn forwards<N: Node>(State(c): State<Arc<Control<N>>>) -> Response {
    Json(serde_json::json!({ "forwards": c.net.node.forwards() })).into_response()
}

async fn streams<N: Node>(State(c): State<Arc<Control<N>>>) -> Response {
    Json(serde_json::json!({ "streams": c.streams() })).into_response()
}

async fn stream<N: Node>(
    State(c): State<Arc<Control<N>>>,
    Path((app, name)): Path<(String, String)>,
) -> Response {
    match c.stream(&app, &name) {
        Some(s) => Json(s).into_response(),
        None => json_error(404, &format!("no stream {app}/{name} on this node")),
    }
}

async fn clients<N: Node>(State(c): State<Arc<Control<N>>>) -> Response {
    Json(serde_json::json!({ "clients": c.clients() })).into_response()
}

async fn kick<N: Node>(
    State(c): State<Arc<Control<N>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refuse_change(&c, &headers) {
        return r;
    }
    let Ok(id) = id.parse::<u64>() else {
        return json_error(400, "client ids are numbers");
    };
    if c.kick(id) {
        Json(serde_json::json!({ "kicked": id })).into_response()
    } else {
        json_error(404, &format!("no client {id}"))
    }
}

async fn cluster_nodes<N: Node>(State(c): State<Arc<Control<N>>>) -> Response {
    match c.cluster_view().await.map(|v| v.nodes()) {
        Ok(nodes) => {
            let nodes: Vec<_> = nodes
                .iter()
                .map(|n| {
                    let load = n.load.unwrap_or_default();
                    serde_json::json!({
                        "node_id": n.node_id,
                        "role": role_name(n.role),
                        "region": n.region,
                        "zone": n.zone,
                        "rtmp_address": n.rtmp_address,
                        "http_address": n.http_address,
                        "grpc_address": n.grpc_address,
                        "draining": n.draining,
                        "tier": n.tier,
                        "capacity_players": n.capacity_players,
                        "public_urls": {
                            "rtmp": crate::locate::public_rtmp(n),
                            "http": crate::locate::public_http(n),
                        },
                        "load": {
                            "players": load.players,
                            "streams": load.streams,
                            "egress_bits_per_second": load.egress_bits_per_second,
                            "updated_at": load.updated_at,
                        },
                    })
                })
                .collect();
            Json(serde_json::json!({ "nodes": nodes })).into_response()
        }
        Err(e) => json_error(503, &e),
    }
}

/// The role's name as operators read it.
pub fn role_name(role: i32) -> &'static str {
    match crate::cluster::Role::try_from(role) {
        Ok(crate::cluster::Role::Origin) => "origin",
        Ok(crate::cluster::Role::Edge) => "edge",
        _ => "unknown",
    }
}

async fn cluster_streams<N: Node>(State(c): State<Arc<Control<N>>>) -> Response {
    match c.cluster_view().await.map(|v| v.streams()) {
        Ok(streams) => {
            let streams: Vec<_> = streams
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "app": s.app,
                        "name": s.name,
                        "origin_node_id": s.origin_node_id,
                        "origin_rtmp_address": s.origin_rtmp_address,
                        "started_at": s.started_at,
                        "codecs": s.codecs,
                        "prewarm_regions": s.prewarm_regions,
                    })
                })
                .collect();
            Json(serde_json::json!({ "streams": streams })).into_response()
        }
        Err(e) => json_error(503, &e),
    }
}

#[derive(Deserialize)]
struct DrainParams {
    /// Seconds to wait for clients to leave (default 30).
    deadline: Option<u64>,
}

async fn drain<N: Node>(
    State(c): State<Arc<Control<N>>>,
    headers: HeaderMap,
    Query(p): Query<DrainParams>,
) -> Response {
    if let Some(r) = refuse_change(&c, &headers) {
        return r;
    }
    let deadline = Duration::from_secs(p.deadline.unwrap_or(30));
    Json(c.drain(deadline).await).into_response()
}

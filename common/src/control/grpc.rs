//! The gRPC control service (`livecdn.control.v1.Control`) with server reflection, served on
//! the API listener. Same operations as the JSON API, from the same `Control`; calls that
//! change the node need the API token when one is set.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use proto::control as pb;
use proto::control::control_server::{Control as ControlApi, ControlServer};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::{Control, StreamView};
use crate::cluster::StreamRecord;
use crate::net::Node;

/// The gRPC routes (control service + reflection), ready to merge into the HTTP router.
pub fn routes<N: Node>(control: Arc<Control<N>>) -> axum::Router {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1();
    let mut routes = tonic::service::Routes::new(ControlServer::new(Service(control)));
    if let Ok(r) = reflection {
        routes = routes.add_service(r);
    }
    routes.into_axum_router()
}

struct Service<N: Node>(Arc<Control<N>>);

impl<N: Node> Service<N> {
    /// UNAUTHENTICATED unless the call carries the API token (`authorization: Bearer ...`
    /// metadata) when one is configured.
    fn may_change<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if self.0.may_change(auth) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "this call changes the node: send authorization: Bearer <api token>",
            ))
        }
    }
}

fn to_pb(s: StreamView) -> pb::StreamInfo {
    pb::StreamInfo {
        app: s.app,
        name: s.name,
        publishing: s.publishing,
        publisher_client_id: s.publisher.as_ref().map(|p| p.client_id).unwrap_or(0),
        publisher_peer: s.publisher.map(|p| p.peer).unwrap_or_default(),
        upstream: s.upstream.unwrap_or_default(),
        video: s.video.map(|v| pb::VideoInfo {
            codec: v.codec,
            profile: v.profile,
            level: v.level,
            width: v.width,
            height: v.height,
        }),
        audio: s.audio.map(|a| pb::AudioInfo {
            codec: a.codec,
            profile: a.profile,
            sample_rate: a.sample_rate,
            channels: a.channels,
        }),
        bitrate_in_bps: s.bitrate_in_bps,
        bitrate_out_bps: s.bitrate_out_bps,
        players_by_protocol: s.players.into_iter().collect(),
        frames_in: s.frames_in,
        frames_dropped: s.frames_dropped,
    }
}

type ChangeStream = Pin<Box<dyn Stream<Item = Result<pb::StreamChange, Status>> + Send>>;

#[tonic::async_trait]
impl<N: Node> ControlApi for Service<N> {
    async fn list_streams(
        &self,
        _: Request<pb::ListStreamsRequest>,
    ) -> Result<Response<pb::ListStreamsResponse>, Status> {
        let streams = self.0.streams().into_iter().map(to_pb).collect();
        Ok(Response::new(pb::ListStreamsResponse { streams }))
    }

    async fn get_stream(
        &self,
        req: Request<pb::GetStreamRequest>,
    ) -> Result<Response<pb::StreamInfo>, Status> {
        let r = req.into_inner();
        self.0
            .stream(&r.app, &r.name)
            .map(|s| Response::new(to_pb(s)))
            .ok_or_else(|| {
                Status::not_found(format!("no stream {}/{} on this node", r.app, r.name))
            })
    }

    async fn list_clients(
        &self,
        _: Request<pb::ListClientsRequest>,
    ) -> Result<Response<pb::ListClientsResponse>, Status> {
        let clients = self
            .0
            .clients()
            .into_iter()
            .map(|c| pb::ClientInfo {
                id: c.id,
                role: c.role.to_string(),
                protocol: c.protocol.to_string(),
                stream: c.stream,
                peer: c.peer,
                connected_at: c.connected_at,
                bytes: c.bytes,
            })
            .collect();
        Ok(Response::new(pb::ListClientsResponse { clients }))
    }

    async fn kick_client(
        &self,
        req: Request<pb::KickClientRequest>,
    ) -> Result<Response<pb::KickClientResponse>, Status> {
        self.may_change(&req)?;
        let id = req.into_inner().id;
        if self.0.kick(id) {
            Ok(Response::new(pb::KickClientResponse { kicked: true }))
        } else {
            Err(Status::not_found(format!("no client {id}")))
        }
    }

    async fn list_cluster_nodes(
        &self,
        _: Request<pb::ListClusterNodesRequest>,
    ) -> Result<Response<pb::ListClusterNodesResponse>, Status> {
        let nodes = self
            .0
            .cluster_view()
            .await
            .map_err(Status::unavailable)?
            .nodes();
        Ok(Response::new(pb::ListClusterNodesResponse { nodes }))
    }

    async fn list_cluster_streams(
        &self,
        _: Request<pb::ListClusterStreamsRequest>,
    ) -> Result<Response<pb::ListClusterStreamsResponse>, Status> {
        let streams = self
            .0
            .cluster_view()
            .await
            .map_err(Status::unavailable)?
            .streams();
        Ok(Response::new(pb::ListClusterStreamsResponse { streams }))
    }

    type WatchStreamsStream = ChangeStream;

    /// Reports the differences between successive states of the node's cached view (no
    /// registry call per watcher); it survives registry outages (the view's resync catches up).
    async fn watch_streams(
        &self,
        _: Request<pb::WatchStreamsRequest>,
    ) -> Result<Response<Self::WatchStreamsStream>, Status> {
        let view = self.0.cluster_view().await.map_err(Status::unavailable)?;
        let shutdown = self.0.net.shutdown.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut known: Option<HashMap<String, StreamRecord>> = None;
            let mut version = view.version();
            loop {
                let now: HashMap<String, StreamRecord> = view
                    .streams()
                    .into_iter()
                    .map(|s| (format!("{}/{}", s.app, s.name), s))
                    .collect();
                if let Some(before) = known.replace(now.clone()) {
                    for change in diff(&before, &now) {
                        if tx.send(Ok(change)).await.is_err() {
                            return;
                        }
                    }
                }
                tokio::select! {
                    r = version.changed() => if r.is_err() { return },
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream_from(rx))))
    }

    async fn drain(
        &self,
        req: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        self.may_change(&req)?;
        let secs = match req.into_inner().deadline_seconds {
            0 => 30,
            s => s,
        };
        let d = self.0.drain(Duration::from_secs(secs.into())).await;
        Ok(Response::new(pb::DrainResponse {
            remaining_clients: d.remaining_clients,
            deadline_reached: d.deadline_reached,
        }))
    }

    async fn undrain(
        &self,
        req: Request<pb::UndrainRequest>,
    ) -> Result<Response<pb::UndrainResponse>, Status> {
        self.may_change(&req)?;
        self.0.undrain();
        Ok(Response::new(pb::UndrainResponse {}))
    }
}

/// Started, ended and moved streams between two registry snapshots.
fn diff(
    before: &HashMap<String, StreamRecord>,
    now: &HashMap<String, StreamRecord>,
) -> Vec<pb::StreamChange> {
    use pb::stream_change::Kind;
    let mut out = Vec::new();
    for (k, rec) in now {
        match before.get(k) {
            None => out.push(pb::StreamChange {
                kind: Kind::Started as i32,
                stream: Some(rec.clone()),
                previous_origin_node_id: String::new(),
            }),
            Some(old) if old.origin_node_id != rec.origin_node_id => out.push(pb::StreamChange {
                kind: Kind::Moved as i32,
                stream: Some(rec.clone()),
                previous_origin_node_id: old.origin_node_id.clone(),
            }),
            Some(_) => {}
        }
    }
    for (k, rec) in before {
        if !now.contains_key(k) {
            out.push(pb::StreamChange {
                kind: Kind::Ended as i32,
                stream: Some(rec.clone()),
                previous_origin_node_id: String::new(),
            });
        }
    }
    out
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(app: &str, origin: &str) -> StreamRecord {
        StreamRecord {
            app: app.into(),
            name: "s".into(),
            origin_node_id: origin.into(),
            ..Default::default()
        }
    }

    #[test]
    fn diff_reports_started_moved_ended() {
        let before: HashMap<_, _> = [
            ("a/s".to_string(), rec("a", "o1")),
            ("b/s".to_string(), rec("b", "o1")),
        ]
        .into_iter()
        .collect();
        let now: HashMap<_, _> = [
            ("a/s".to_string(), rec("a", "o2")),
            ("c/s".to_string(), rec("c", "o1")),
        ]
        .into_iter()
        .collect();
        let mut kinds: Vec<(i32, String)> = diff(&before, &now)
            .into_iter()
            .map(|c| (c.kind, c.stream.map(|s| s.app).unwrap_or_default()))
            .collect();
        kinds.sort();
        use pb::stream_change::Kind;
        assert_eq!(
            kinds,
            vec![
                (Kind::Started as i32, "c".to_string()),
                (Kind::Ended as i32, "b".to_string()),
                (Kind::Moved as i32, "a".to_string()),
            ]
        );
    }
}

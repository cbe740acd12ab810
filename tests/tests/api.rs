//! The control plane end to end: the JSON API and the gRPC service list exactly what the test
//! created, kick one client only, drain a node; gRPC reflection works; a real Prometheus
//! scrapes every node and its numbers match what players actually received.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::etcd::Etcd;
use harness::rtmp::Client;
use harness::{
    FfmpegPublisher, NodeProc, Proc, StreamSpec, free_port, http_request, require, wait_for,
};
use proto::control::control_client::ControlClient;
use proto::control::{self as pb};
use serde_json::Value;

fn cluster(etcd: &Etcd) -> (NodeProc, NodeProc) {
    let common = [
        "--etcd",
        &etcd.endpoint,
        "--etcd-lease-ttl",
        "2s",
        "--load-interval",
        "500ms",
    ];
    (NodeProc::start(&common), NodeProc::edge(&common))
}

fn json(node: &NodeProc, path: &str) -> Value {
    let (status, body) = node.api_get(path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// An HTTP-FLV player on a raw socket counting the bytes it reads until stopped or closed.
struct FlvReader {
    bytes: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl FlvReader {
    fn start(node: &NodeProc, key: &str) -> FlvReader {
        let mut s = TcpStream::connect(node.http).expect("connect");
        write!(s, "GET /{key}.flv HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        s.set_read_timeout(Some(Duration::from_millis(200))).ok();
        let (bytes, closed, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (b, c, st) = (bytes.clone(), closed.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        b.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            c.store(true, Ordering::Relaxed);
        });
        FlvReader {
            bytes,
            closed,
            stop,
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for FlvReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn wait_stream_on(node: &NodeProc, key: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = tokio::time::timeout(
            Duration::from_secs(4),
            harness::rtmp::first_video_frame(node.rtmp, key, Duration::from_secs(4)),
        )
        .await;
        if probe.is_ok() {
            return;
        }
        assert!(Instant::now() < end, "{key} never playable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_api_lists_exactly_what_exists_and_kicks_one_client() {
    let etcd = Etcd::start();
    let (origin, edge) = cluster(&etcd);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/api"), StreamSpec::default());
    wait_stream_on(&edge, "live/api").await;
    let mut rtmp_player = Client::connect(edge.rtmp, "live").await.expect("connect");
    rtmp_player
        .play("api", Instant::now() + Duration::from_secs(10))
        .await
        .expect("play");
    let flv_player = FlvReader::start(&edge, "live/api");
    wait_for(
        "both players listed on the edge",
        Duration::from_secs(10),
        || {
            json(&edge, "/api/v1/clients")["clients"]
                .as_array()
                .map(|a| a.len())
                == Some(2)
        },
    );
    // Bitrates are measured over a window: give it a few samples (what the fan-out writes
    // to players directly is booked once a second).
    wait_for("measured bitrates", Duration::from_secs(10), || {
        let s = json(&edge, "/api/v1/streams/live/api");
        s["bitrate_in_bps"].as_u64() > Some(10_000) && s["bitrate_out_bps"].as_u64() > Some(10_000)
    });

    let streams = json(&edge, "/api/v1/streams");
    let list = streams["streams"].as_array().expect("streams");
    assert_eq!(list.len(), 1, "{streams}");
    let s = &list[0];
    assert_eq!(s["app"], "live");
    assert_eq!(s["name"], "api");
    assert_eq!(s["players"]["rtmp"], 1, "{s}");
    assert_eq!(s["players"]["http-flv"], 1, "{s}");
    assert_eq!(s["upstream"], origin.rtmp.to_string(), "{s}");
    assert_eq!(s["video"]["codec"], "H.264", "{s}");
    assert_eq!(s["video"]["width"], 320);
    assert_eq!(s["video"]["height"], 240);
    assert_eq!(s["audio"]["codec"], "AAC");
    assert_eq!(s["audio"]["sample_rate"], 44100);
    assert!(s["bitrate_out_bps"].as_u64() > Some(10_000), "{s}");

    // The origin: one publisher (ffmpeg) and one player (the edge's upstream).
    let clients = json(&origin, "/api/v1/clients");
    let roles: Vec<_> = clients["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| c["role"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(roles.len(), 2, "{clients}");
    assert!(roles.contains(&"publisher".to_string()) && roles.contains(&"player".to_string()));
    let ostream = json(&origin, "/api/v1/streams/live/api");
    assert!(
        ostream["publisher"]["client_id"].as_u64().is_some(),
        "{ostream}"
    );
    assert_eq!(ostream["upstream"], Value::Null);

    // The cluster as etcd sees it.
    let nodes = json(&edge, "/api/v1/cluster/nodes");
    let ids: Vec<_> = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["node_id"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "{nodes}");
    let cstreams = json(&edge, "/api/v1/cluster/streams");
    assert_eq!(
        cstreams["streams"][0]["origin_node_id"],
        origin.node_id.as_str(),
        "{cstreams}"
    );

    // Errors are JSON with a status and a reason.
    let (status, body) = edge.api_get("/api/v1/streams/live/nothing");
    assert_eq!(status, 404);
    let err: Value = serde_json::from_str(&body).expect("json error");
    assert_eq!(err["status"], 404);
    assert!(err["reason"].as_str().is_some_and(|r| !r.is_empty()));

    // Kick the RTMP player only.
    let rtmp_id = json(&edge, "/api/v1/clients")["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["protocol"] == "rtmp")
        .and_then(|c| c["id"].as_u64())
        .expect("rtmp client id");
    let (status, body) = http_request(
        edge.api,
        "DELETE",
        &format!("/api/v1/clients/{rtmp_id}"),
        Duration::from_secs(60),
    );
    assert_eq!(status, 200, "{body}");
    let end = Instant::now() + Duration::from_secs(5);
    while rtmp_player.next_media(end).await.is_some() {}
    assert!(Instant::now() < end, "kicked RTMP player still receiving");
    let before = flv_player.bytes();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        flv_player.bytes() > before,
        "the other player was disturbed"
    );
    assert!(!flv_player.closed.load(Ordering::Relaxed));
    let (status, _) = http_request(
        edge.api,
        "DELETE",
        &format!("/api/v1/clients/{rtmp_id}"),
        Duration::from_secs(60),
    );
    assert_eq!(status, 404);
}

async fn grpc(node: &NodeProc) -> ControlClient<tonic::transport::Channel> {
    ControlClient::connect(format!("http://{}", node.api))
        .await
        .expect("grpc connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_lists_kicks_watches_and_drains() {
    let etcd = Etcd::start();
    let (origin, edge) = cluster(&etcd);
    let mut og = grpc(&origin).await;
    let mut eg = grpc(&edge).await;
    let mut watch = og
        .watch_streams(pb::WatchStreamsRequest {})
        .await
        .expect("watch")
        .into_inner();

    let publisher = FfmpegPublisher::start(&origin.rtmp_url("live/rpc"), StreamSpec::default());
    let started = tokio::time::timeout(Duration::from_secs(15), watch.message())
        .await
        .expect("a change within 15 s")
        .expect("stream ok")
        .expect("a change");
    assert_eq!(started.kind, pb::stream_change::Kind::Started as i32);
    assert_eq!(
        started.stream.as_ref().map(|s| s.name.as_str()),
        Some("rpc")
    );
    wait_stream_on(&edge, "live/rpc").await;

    let mut p1 = Client::connect(edge.rtmp, "live").await.expect("connect");
    p1.play("rpc", Instant::now() + Duration::from_secs(10))
        .await
        .expect("play");
    let mut p2 = Client::connect(edge.rtmp, "live").await.expect("connect");
    p2.play("rpc", Instant::now() + Duration::from_secs(10))
        .await
        .expect("play");
    let streams = eg
        .list_streams(pb::ListStreamsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(streams.streams.len(), 1);
    assert_eq!(streams.streams[0].players_by_protocol.get("rtmp"), Some(&2));
    let clients = eg
        .list_clients(pb::ListClientsRequest {})
        .await
        .expect("clients")
        .into_inner();
    assert_eq!(clients.clients.len(), 2);
    let nodes = og
        .list_cluster_nodes(pb::ListClusterNodesRequest {})
        .await
        .expect("nodes")
        .into_inner();
    assert_eq!(nodes.nodes.len(), 2);
    let missing = eg
        .get_stream(pb::GetStreamRequest {
            app: "live".into(),
            name: "none".into(),
        })
        .await
        .expect_err("not found");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Kick p1 only.
    let first = clients.clients[0].id;
    eg.kick_client(pb::KickClientRequest { id: first })
        .await
        .expect("kick");
    let end = Instant::now() + Duration::from_secs(5);
    let (mut kicked, mut kept) = if clients.clients[0].id < clients.clients[1].id {
        (p1, p2)
    } else {
        (p2, p1)
    };
    while kicked.next_media(end).await.is_some() {}
    assert!(Instant::now() < end, "kicked player still receiving");
    assert!(
        kept.next_media(Instant::now() + Duration::from_secs(2))
            .await
            .is_some()
    );

    // Drain the edge: new players refused, the existing one continues, etcd says draining.
    let mut drainer = eg.clone();
    let drain = tokio::spawn(async move {
        drainer
            .drain(pb::DrainRequest {
                deadline_seconds: 4,
            })
            .await
    });
    wait_for(
        "the edge to show as draining",
        Duration::from_secs(10),
        || {
            json(&origin, "/api/v1/cluster/nodes")["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["node_id"] == edge.node_id.as_str() && n["draining"] == true)
        },
    );
    let mut late = Client::connect(edge.rtmp, "live").await.expect("connect");
    assert!(
        late.play("rpc", Instant::now() + Duration::from_secs(5))
            .await
            .is_err(),
        "new player accepted while draining"
    );
    let (status, _) = edge.http_get("/live/rpc.flv");
    assert_eq!(status, 503);
    assert_eq!(edge.http_get("/readyz").0, 503, "readiness while draining");
    assert_eq!(edge.http_get("/healthz").0, 200, "liveness while draining");
    assert_eq!(origin.http_get("/readyz").0, 200);
    for _ in 0..20 {
        assert!(
            kept.next_media(Instant::now() + Duration::from_secs(2))
                .await
                .is_some(),
            "existing player cut while draining"
        );
    }
    let result = drain.await.expect("join").expect("drain").into_inner();
    assert!(result.deadline_reached);
    assert_eq!(result.remaining_clients, 1);

    // The stream ends: the watch says so.
    drop(publisher);
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let c = watch.message().await.expect("ok").expect("change");
            if c.kind == pb::stream_change::Kind::Ended as i32 {
                return c;
            }
        }
    })
    .await
    .expect("ended within 15 s");
    assert_eq!(ended.stream.map(|s| s.name), Some("rpc".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reflection_lists_the_control_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let origin = NodeProc::start(&[]);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", origin.api))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = client
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let msg = resp.message().await.expect("ok").expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.clone()).collect();
    assert!(
        names.contains(&"livecdn.control.v1.Control".to_string()),
        "{names:?}"
    );
}

/// Queries a Prometheus server's HTTP API for an instant vector; returns (labels, value) pairs.
fn prom_query(port: u16, q: &str) -> Vec<(Value, f64)> {
    let path = format!("/api/v1/query?query={}", urlencode(q));
    let (status, body) =
        harness::http_get(format!("127.0.0.1:{port}").parse().expect("addr"), &path);
    if status != 200 {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let val = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            (r["metric"].clone(), val)
        })
        .collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_every_node_and_true_player_numbers() {
    require("prometheus");
    let etcd = Etcd::start();
    let (origin, edge) = cluster(&etcd);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/prom"), StreamSpec::default());
    wait_stream_on(&edge, "live/prom").await;

    let dir = std::env::temp_dir().join(format!("livecdn-prom-{}", free_port()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: livecdn\n    static_configs:\n      - targets: ['{}', '{}']\n",
            origin.http, edge.http
        ),
    )
    .expect("config");
    let port = free_port();
    let mut cmd = std::process::Command::new("prometheus");
    cmd.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let _prom = Proc::spawn("prometheus", &mut cmd);
    wait_for(
        "both targets up in Prometheus",
        Duration::from_secs(30),
        || {
            let up = prom_query(port, "up");
            up.len() == 2 && up.iter().all(|(_, v)| *v == 1.0)
        },
    );

    // 3 HTTP-FLV players on the edge, counting what they read.
    let players: Vec<FlvReader> = (0..3)
        .map(|_| FlvReader::start(&edge, "live/prom"))
        .collect();
    wait_for(
        "Prometheus to see 3 HTTP-FLV players on the edge",
        Duration::from_secs(20),
        || {
            let q = format!(
                "livecdn_media_players{{protocol=\"http-flv\",instance=\"{}\"}}",
                edge.http
            );
            prom_query(port, &q).first().map(|(_, v)| *v) == Some(3.0)
        },
    );
    let start: u64 = players.iter().map(FlvReader::bytes).sum();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The players' rate, bytes per second.
    let rate = (players.iter().map(FlvReader::bytes).sum::<u64>() - start) as f64 / 4.0;
    // Compare the counter Prometheus scraped with the bytes players read at about that time.
    let q = format!(
        "livecdn_net_sent_bytes_total{{protocol=\"http-flv\",instance=\"{}\"}}",
        edge.http
    );
    let mut matched = false;
    for _ in 0..20 {
        let before: u64 = players.iter().map(FlvReader::bytes).sum();
        let scraped = prom_query(port, &q).first().map(|(_, v)| *v).unwrap_or(0.0);
        let after: u64 = players.iter().map(FlvReader::bytes).sum();
        // What the fan-out writes to players directly is booked once a second, and the
        // scrape happened within the last second: the counter lies in
        // [before - 2 s of data, after] (with a margin either way).
        let lo = before as f64 - 2.5 * rate;
        let hi = after as f64 * 1.1;
        if scraped >= lo && scraped <= hi {
            matched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        matched,
        "bytes-sent counter does not match what players received (within 2.5 s of data)"
    );
    // The origin's one RTMP player is the edge's pull, written by the fan-out directly and
    // booked node-wide: what the origin counts as sent, the edge counts as received.
    let sent = format!(
        "increase(livecdn_net_sent_bytes_total{{protocol=\"rtmp\",instance=\"{}\"}}[10s])",
        origin.http
    );
    let received = format!(
        "increase(livecdn_net_received_bytes_total{{protocol=\"rtmp\",instance=\"{}\"}}[10s])",
        edge.http
    );
    let value = |q: &str| prom_query(port, q).first().map(|(_, v)| *v).unwrap_or(0.0);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, r) = (value(&sent), value(&received));
        if r > 50_000.0 && (s / r - 1.0).abs() < 0.25 {
            break;
        }
        assert!(
            Instant::now() < end,
            "origin's RTMP bytes sent over 10 s ({s}) do not match the edge's received ({r})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The origin serves exactly one upstream player (the edge).
    let q = format!(
        "livecdn_media_players{{protocol=\"rtmp\",instance=\"{}\"}}",
        origin.http
    );
    assert_eq!(prom_query(port, &q).first().map(|(_, v)| *v), Some(1.0));
    // Gauges return to zero when the load leaves.
    drop(players);
    wait_for("players gauge back to 0", Duration::from_secs(20), || {
        let q = format!(
            "livecdn_media_players{{protocol=\"http-flv\",instance=\"{}\"}}",
            edge.http
        );
        prom_query(port, &q).first().map(|(_, v)| *v) == Some(0.0)
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// `(status, body)` of `method path` on `addr` with an optional bearer token.
fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let r = harness::hls::fetch(addr, method, path, &headers);
    (r.status, r.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_calls_live_on_the_api_listener_and_changes_need_the_token() {
    let origin = NodeProc::start(&["--api-token", "s3cret"]);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/ctl"), StreamSpec::default());
    wait_for("the stream", Duration::from_secs(20), || {
        origin.api_get("/api/v1/streams/live/ctl").0 == 200
    });
    // The public port answers no control call, JSON or gRPC.
    for (method, path) in [
        ("GET", "/api/v1/streams"),
        ("GET", "/api/v1/clients"),
        ("POST", "/api/v1/drain?deadline=0"),
        ("DELETE", "/api/v1/clients/1"),
    ] {
        let (status, _) = call(origin.http, method, path, Some("s3cret"));
        assert!(
            status == 404 || status == 405,
            "{method} {path} on the public port: {status}"
        );
    }
    let public_grpc = ControlClient::connect(format!("http://{}", origin.http))
        .await
        .expect("connect")
        .list_streams(pb::ListStreamsRequest {})
        .await;
    assert!(public_grpc.is_err(), "gRPC answered on the public port");
    // /metrics stays public (aggregate series only) and is on the API listener too.
    assert_eq!(origin.http_get("/metrics").0, 200);
    assert_eq!(origin.api_get("/metrics").0, 200);

    // Reading needs no token; changing does.
    assert_eq!(call(origin.api, "GET", "/api/v1/clients", None).0, 200);
    for token in [None, Some("wrong"), Some("s3cret-but-longer")] {
        let (status, body) = call(origin.api, "POST", "/api/v1/drain?deadline=0", token);
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(
            call(origin.api, "DELETE", "/api/v1/clients/1", token).0,
            401
        );
    }
    assert_eq!(
        origin.http_get("/readyz").0,
        200,
        "a refused drain changed nothing"
    );

    let (status, body) = call(
        origin.api,
        "POST",
        "/api/v1/drain?deadline=0",
        Some("s3cret"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(origin.http_get("/readyz").0, 503);
    assert_eq!(origin.http_get("/live/ctl.flv").0, 503);
    assert_eq!(call(origin.api, "POST", "/api/v1/undrain", None).0, 401);
    assert_eq!(origin.http_get("/readyz").0, 503);
    let (status, body) = call(origin.api, "POST", "/api/v1/undrain", Some("s3cret"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        origin.http_get("/readyz").0,
        200,
        "undrain restores service"
    );
    // The drain (deadline 0) closed the publisher: a new one is accepted and plays.
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/ctl"), StreamSpec::default());
    wait_for("the republished stream", Duration::from_secs(20), || {
        origin.api_get("/api/v1/streams/live/ctl").0 == 200
    });
    let played = harness::ffmpeg_play(&origin.flv_url("live/ctl"), 2, Duration::from_secs(20));
    assert!(played.ok && played.video_frames >= 40, "{played:?}");

    // gRPC likewise: UNAUTHENTICATED without the token, done with it.
    let mut g = grpc(&origin).await;
    let refused = g
        .drain(pb::DrainRequest {
            deadline_seconds: 1,
        })
        .await;
    assert_eq!(
        refused.expect_err("refused").code(),
        tonic::Code::Unauthenticated
    );
    assert_eq!(origin.http_get("/readyz").0, 200);
    let mut req = tonic::Request::new(pb::DrainRequest {
        deadline_seconds: 1,
    });
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().expect("metadata"));
    g.drain(req).await.expect("drain with the token");
    assert_eq!(origin.http_get("/readyz").0, 503);
    let refused = g.undrain(pb::UndrainRequest {}).await;
    assert_eq!(
        refused.expect_err("refused").code(),
        tonic::Code::Unauthenticated
    );
    let mut req = tonic::Request::new(pb::UndrainRequest {});
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().expect("metadata"));
    g.undrain(req).await.expect("undrain with the token");
    assert_eq!(origin.http_get("/readyz").0, 200);
}

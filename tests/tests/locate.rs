//! Locate and pre-warm end to end: a real etcd, one origin, two regions of two edges each.
//! Players from a region are sent to an edge of that region (JSON and 302, followed by
//! ffmpeg); a stream stays on its edge until the bound, then spills; a killed edge leaves the
//! answers within the lease TTL, a draining one at once; a pre-warmed stream is pulled by the
//! chosen edge before any player comes.

use std::time::{Duration, Instant};

use harness::etcd::Etcd;
use harness::rtmp::{Watcher, first_video_frame, wait_playable};
use harness::{FfmpegPublisher, NodeProc, StreamSpec, ffmpeg_play, wait_for};

/// An origin and edges `a1`, `a2` (region a) and `b1`, `b2` (region b), `extra` flags on
/// every node.
struct Cluster {
    _etcd: Etcd,
    origin: NodeProc,
    edges: Vec<(String, NodeProc)>,
}

impl Cluster {
    fn start(origin_extra: &[&str], edge_extra: &[&str]) -> Cluster {
        let etcd = Etcd::start();
        let mut args = vec!["--region", "a"];
        args.extend_from_slice(origin_extra);
        let origin = etcd.node("origin", &args);
        let edges = ["a", "a", "b", "b"]
            .iter()
            .map(|region| {
                let mut args = vec!["--region", region, "--region-distance", "a:b=10"];
                args.extend_from_slice(edge_extra);
                (region.to_string(), etcd.node("edge", &args))
            })
            .collect();
        let c = Cluster {
            _etcd: etcd,
            origin,
            edges,
        };
        // Every node sees every edge before a test asks.
        wait_for(
            "all edges in the origin's view",
            Duration::from_secs(15),
            || {
                let (_, body) = c.origin.api_get("/api/v1/cluster/nodes");
                c.edges.iter().all(|(_, e)| body.contains(&e.node_id))
            },
        );
        c
    }

    fn edge(&self, node_id: &str) -> &NodeProc {
        &self
            .edges
            .iter()
            .find(|(_, e)| e.node_id == node_id)
            .unwrap_or_else(|| panic!("no edge {node_id}"))
            .1
    }

    fn region_of(&self, node_id: &str) -> &str {
        &self
            .edges
            .iter()
            .find(|(_, e)| e.node_id == node_id)
            .unwrap_or_else(|| panic!("no edge {node_id}"))
            .0
    }
}

/// The JSON locate answer of `node` for `key` (`app/name`) with `query`.
fn locate(node: &NodeProc, key: &str, query: &str) -> serde_json::Value {
    let (status, body) = node.http_get(&format!("/api/v1/locate/{key}?{query}"));
    assert_eq!(status, 200, "locate {key}?{query}: {body}");
    serde_json::from_str(&body).expect("locate JSON")
}

fn chosen(answer: &serde_json::Value) -> String {
    answer["edge"].as_str().expect("edge").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_are_sent_to_an_edge_of_their_region() {
    let c = Cluster::start(&[], &[]);
    let _publisher = FfmpegPublisher::start(&c.origin.rtmp_url("live/near"), StreamSpec::default());
    wait_playable(&c.origin, "live/near").await;

    // Every node reaches the same first answer from the same view (no answer given yet, so
    // no player counted as sent by any of them).
    let first: Vec<String> = [&c.origin, &c.edges[1].1, &c.edges[3].1]
        .iter()
        .map(|n| chosen(&locate(n, "live/near", "region=a")))
        .collect();
    assert!(first.iter().all(|e| *e == first[0]), "{first:?}");
    assert_eq!(c.region_of(&first[0]), "a");

    // Any node answers, from its own view: the origin, and an edge of the other region. An
    // answer counts as a player sent to that edge until its next load report, so repeated
    // asks may spill to the region's other edge, never out of the region.
    for asker in [&c.origin, &c.edges[2].1] {
        for region in ["a", "b"] {
            let answer = locate(
                asker,
                "live/near",
                &format!("region={region}&sign=x&expires=9"),
            );
            let edge = chosen(&answer);
            assert_eq!(c.region_of(&edge), region, "{answer}");
            assert_eq!(answer["region"], region);
            assert_eq!(answer["client_region"], region);
            assert!(
                answer["reason"] == "region_hit" || answer["reason"] == "spill",
                "{answer}"
            );
            let e = c.edge(&edge);
            // The play URLs point at the chosen edge and keep the token, not the override.
            assert_eq!(
                answer["urls"]["flv"],
                format!("http://{}/live/near.flv?sign=x&expires=9", e.http)
            );
            assert_eq!(
                answer["urls"]["hls"],
                format!("http://{}/live/near.m3u8?sign=x&expires=9", e.http)
            );
            assert_eq!(
                answer["urls"]["rtmp"],
                format!("rtmp://{}/live/near?sign=x&expires=9", e.rtmp)
            );
            let alts = answer["alternatives"].as_array().expect("alternatives");
            assert!(!alts.is_empty() && alts.iter().all(|a| a["edge"] != answer["edge"]));
        }
    }

    // 302 for FLV, HLS and the page to an edge of the region, with the query kept (less the
    // region override).
    let a_http: Vec<String> = c.edges[..2]
        .iter()
        .map(|(_, e)| format!("http://{}", e.http))
        .collect();
    for (path, want) in [
        ("/locate/live/near.flv?region=a&t=1", "/live/near.flv?t=1"),
        ("/locate/live/near.m3u8?region=a", "/live/near.m3u8"),
        ("/locate/live/near?t=1&region=a", "/live/near?t=1"),
    ] {
        let r = harness::hls::fetch(c.origin.http, "GET", path, &[]);
        assert_eq!(r.status, 302, "{path}: {:?}", r.headers);
        let to = r.header("location").unwrap_or_default().to_string();
        assert!(
            a_http.iter().any(|base| to == format!("{base}{want}")),
            "{path} -> {to}"
        );
    }

    // ffmpeg follows the redirects and decodes, over HTTP-FLV and HLS.
    for path in [
        "/locate/live/near.flv?region=b",
        "/locate/live/near.m3u8?region=b",
    ] {
        let url = format!("http://{}{path}", c.origin.http);
        let played =
            tokio::task::spawn_blocking(move || ffmpeg_play(&url, 3, Duration::from_secs(60)))
                .await
                .expect("join");
        assert!(
            played.ok && played.video_frames >= 50,
            "{path}: {}",
            played.stderr
        );
    }
    // Those players went to a region-b edge: one of them pulled the stream.
    assert!(
        c.edges[2..]
            .iter()
            .any(|(_, e)| e.metric("livecdn_edge_upstream_attempts_total", "") >= 1.0)
    );

    // Unknown stream names are answered too (an edge is chosen by hashing); bad names are 400.
    assert_eq!(c.origin.http_get("/api/v1/locate/live/a%2Fb").0, 400);
    // Decisions are counted by reason.
    let decisions = |reason: &str| {
        c.origin.metric(
            "livecdn_locate_decisions_total",
            &format!("reason=\"{reason}\""),
        )
    };
    assert!(decisions("region_hit") + decisions("spill") >= 7.0);

    // A burst of players between two load reports does not all land on one edge: each answer
    // counts on the answering node until the edge's next report (1 s here).
    let burst: Vec<String> = (0..10)
        .map(|_| chosen(&locate(&c.edges[0].1, "live/burst", "region=b")))
        .collect();
    let b_edges: Vec<&String> = c.edges[2..].iter().map(|(_, e)| &e.node_id).collect();
    assert!(burst.iter().all(|e| b_edges.contains(&e)), "{burst:?}");
    assert!(
        b_edges.iter().all(|id| burst.contains(id)),
        "both b edges share the burst: {burst:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_region_map_places_clients_and_foreign_clients_fall_back() {
    let etcd = Etcd::start();
    // Loopback clients are in region b for this node (no override).
    let asker = etcd.node(
        "origin",
        &[
            "--region",
            "a",
            "--region-map",
            "127.0.0.1/32=b,10.0.0.0/8=a",
        ],
    );
    let a = etcd.node(
        "edge",
        &["--region", "a", "--region-distance", "a:c=5,b:c=50"],
    );
    wait_for("edge a in the view", Duration::from_secs(15), || {
        asker
            .api_get("/api/v1/cluster/nodes")
            .1
            .contains(&a.node_id)
    });
    // No edge in b: the client falls back to a.
    let answer = locate(&asker, "live/x", "");
    assert_eq!(answer["client_region"], "b");
    assert_eq!(chosen(&answer), a.node_id);
    assert_eq!(answer["reason"], "fallback_region");
    let b = etcd.node("edge", &["--region", "b"]);
    wait_for("the b edge is chosen", Duration::from_secs(15), || {
        let answer = locate(&asker, "live/x", "");
        chosen(&answer) == b.node_id && answer["reason"] == "region_hit"
    });
    // An override still wins on loopback.
    assert_eq!(chosen(&locate(&asker, "live/x", "region=a")), a.node_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_stays_on_its_edge_until_the_bound_then_spills() {
    // epsilon 0.5, two edges in region a: the stream's first edge takes its players while it
    // is under its level for the stream, which lies between ceil(mean) and the bound
    // ceil(1.5 x mean), mean = (players + 1) / 2: it spills at 1, 2 or 3 players, never later.
    let c = Cluster::start(&[], &["--locate-epsilon", "0.5"]);
    let _publisher = FfmpegPublisher::start(&c.origin.rtmp_url("live/hot"), StreamSpec::default());
    wait_playable(&c.origin, "live/hot").await;
    let first = chosen(&locate(&c.origin, "live/hot", "region=a"));
    let e = c.edge(&first);
    let mut watchers = Vec::new();
    let mut spilled_at = None;
    for n in 1..=3u64 {
        watchers.push(Watcher::start(e.rtmp, "live/hot").await);
        // The origin's view hears the edge's load within the load interval.
        wait_for(
            "the edge's load in the view",
            Duration::from_secs(10),
            || {
                let (_, body) = c.origin.api_get("/api/v1/cluster/nodes");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                v["nodes"].as_array().is_some_and(|nodes| {
                    nodes.iter().any(|node| {
                        node["node_id"] == first.as_str() && node["load"]["players"] == n
                    })
                })
            },
        );
        let answer = locate(&c.origin, "live/hot", "region=a");
        let mean = (n + 1) as f64 / 2.0;
        if chosen(&answer) == first {
            assert_eq!(answer["reason"], "region_hit");
            assert!(
                (n as f64) < (1.5 * mean).ceil(),
                "{n} players: past the bound"
            );
        } else {
            assert!(
                n as f64 >= mean.ceil(),
                "{n} players: spilled under the mean"
            );
            assert_eq!(c.region_of(&chosen(&answer)), "a");
            assert_eq!(answer["reason"], "spill", "{answer}");
            spilled_at = Some(n);
            break;
        }
    }
    let n = spilled_at.expect("the stream spilled by the bound (3 players)");
    eprintln!("live/hot spilled to its next edge at {n} players");
    assert!(
        c.origin
            .metric("livecdn_locate_decisions_total", "reason=\"spill\"")
            >= 1.0
    );
    for w in watchers {
        let (frames, _) = w.finish().await;
        assert!(frames > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_draining_edges_leave_the_answers() {
    // A killed edge must be out of every answer within its lease TTL. etcd's expiry tick is
    // covered from 3 s up (the node asks etcd for a second less).
    const TTL: Duration = Duration::from_secs(3);
    let mut c = Cluster::start(&[], &["--etcd-lease-ttl", "3s"]);
    let victim = chosen(&locate(&c.origin, "live/k", "region=a"));
    let idx = c
        .edges
        .iter()
        .position(|(_, e)| e.node_id == victim)
        .expect("victim");
    let killed_at = Instant::now();
    c.edges[idx]
        .1
        .proc
        .signal_and_wait("KILL", Duration::from_secs(5));
    wait_for(
        "the killed edge out of every answer",
        Duration::from_secs(5),
        || {
            // Out of the view the locator reads (an answer alone could leave a live edge out
            // for being at its level), and so out of the answers.
            let (_, nodes) = c.origin.api_get("/api/v1/cluster/nodes");
            !nodes.contains(&victim)
                && !locate(&c.origin, "live/k", "region=a")
                    .to_string()
                    .contains(&victim)
        },
    );
    let gone_after = killed_at.elapsed();
    assert!(gone_after <= TTL, "out after {gone_after:?}, TTL {TTL:?}");
    eprintln!("killed edge out of the answers after {gone_after:?}");

    // A draining edge leaves at once (its record is refreshed when the drain starts).
    let now = chosen(&locate(&c.origin, "live/k", "region=a"));
    assert_ne!(now, victim);
    let drained = c.edge(&now);
    let (status, _) = harness::http_request(
        drained.api,
        "POST",
        "/api/v1/drain?deadline=60",
        Duration::from_secs(2),
    );
    let asked = Instant::now();
    assert!(status == 200 || status == 0, "drain: {status}");
    wait_for(
        "the draining edge out of the answers",
        Duration::from_secs(2),
        || {
            let (_, body) = c.origin.api_get("/api/v1/cluster/nodes");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let draining = v["nodes"].as_array().is_some_and(|nodes| {
                nodes
                    .iter()
                    .any(|n| n["node_id"] == now.as_str() && n["draining"] == true)
            });
            draining
                && !locate(&c.origin, "live/k", "region=a")
                    .to_string()
                    .contains(&now)
        },
    );
    eprintln!(
        "draining edge out of the answers after {:?}",
        asked.elapsed()
    );
    // Region a has no edge left: region b serves, by distance.
    let answer = locate(&c.origin, "live/k", "region=a");
    assert_eq!(answer["reason"], "fallback_region");
    assert_eq!(answer["region"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prewarmed_stream_is_pulled_before_any_player() {
    let c = Cluster::start(&["--prewarm", "hot=a"], &[]);
    // The locator's edge for hot/show in region a pulls it as soon as it is published.
    let chosen_a = chosen(&locate(&c.origin, "hot/show", "region=a"));
    let e = c.edge(&chosen_a);
    let _publisher = FfmpegPublisher::start(&c.origin.rtmp_url("hot/show"), StreamSpec::default());
    wait_for(
        "the chosen edge pre-warms hot/show",
        Duration::from_secs(20),
        || {
            let (_, body) = e.api_get("/api/v1/streams/hot/show");
            body.contains("\"prewarmed\":true")
                && e.metric("livecdn_edge_upstreams_active", "") == 1.0
        },
    );
    assert_eq!(e.metric("livecdn_edge_prewarmed_streams", ""), 1.0);
    // Nobody else pulls it: not the other edge of a, not region b (no rule there), and the
    // pre-warm hold is not counted as a player.
    for (_, other) in c.edges.iter().filter(|(_, o)| o.node_id != chosen_a) {
        assert_eq!(
            other.metric("livecdn_edge_upstream_attempts_total", ""),
            0.0
        );
    }
    assert_eq!(
        c.origin
            .metric("livecdn_media_players", "protocol=\"rtmp\""),
        1.0
    );
    let (_, body) = e.api_get("/api/v1/streams/hot/show");
    assert!(!body.contains("\"rtmp\":1"), "{body}");

    // The first player starts from the GOP cache, with no new upstream connect.
    let attempts = e.metric("livecdn_edge_upstream_attempts_total", "");
    let (first_frame, _) = first_video_frame(e.rtmp, "hot/show", Duration::from_secs(5)).await;
    assert_eq!(
        e.metric("livecdn_edge_upstream_attempts_total", ""),
        attempts
    );
    eprintln!("first frame on the pre-warmed edge after {first_frame:?}");
    assert!(first_frame < Duration::from_millis(500), "{first_frame:?}");

    // Streams of other apps are not pre-warmed by the rule (checked after two of the edges'
    // one-second re-evaluations)...
    let _other = FfmpegPublisher::start(&c.origin.rtmp_url("live/cold"), StreamSpec::default());
    wait_playable(&c.origin, "live/cold").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let prewarmed = |n: &NodeProc| n.metric("livecdn_edge_prewarmed_streams", "");
    assert_eq!(c.edges.iter().map(|(_, n)| prewarmed(n)).sum::<f64>(), 1.0);

    // ...until an operator marks one hot in region b on the origin's API.
    let chosen_b = chosen(&locate(&c.origin, "live/cold", "region=b"));
    let (status, body) = harness::http_request(
        c.origin.api,
        "POST",
        "/api/v1/streams/live/cold/prewarm?regions=b",
        Duration::from_secs(5),
    );
    assert_eq!(status, 200, "{body}");
    let b_edge = c.edge(&chosen_b);
    wait_for("the record says hot in b", Duration::from_secs(5), || {
        let (_, body) = b_edge.api_get("/api/v1/cluster/streams");
        body.contains("\"prewarm_regions\":[\"b\"]")
    });
    wait_for(
        "the chosen b edge pre-warms live/cold",
        Duration::from_secs(10),
        || {
            b_edge
                .api_get("/api/v1/streams/live/cold")
                .1
                .contains("\"prewarmed\":true")
        },
    );
    // Only the origin that publishes a stream marks it hot.
    let (status, _) = harness::http_request(
        b_edge.api,
        "POST",
        "/api/v1/streams/live/cold/prewarm?regions=a",
        Duration::from_secs(5),
    );
    assert_eq!(status, 404);
}

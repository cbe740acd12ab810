//! Edge tiers end to end, with a real etcd: leaf edges (tier 2) pull from a mid edge (tier 1)
//! the locator picks, so the origin holds one connection however many leaves serve a stream;
//! a parent killed under load is replaced by the next one without disconnecting players.

use std::time::Duration;

use harness::etcd::Etcd;
use harness::rtmp::{Watcher, wait_playable};
use harness::{FfmpegPublisher, NodeProc, StreamSpec, ffmpeg_play, wait_for};

fn upstream_of(edge: &NodeProc, key: &str) -> String {
    let (_, body) = edge.api_get(&format!("/api/v1/streams/{key}"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["upstream"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_pull_through_one_mid_edge() {
    let etcd = Etcd::start();
    let origin = etcd.node("origin", &[]);
    let mid = etcd.node("edge", &["--tier", "1"]);
    let leaves: Vec<NodeProc> = (0..4)
        .map(|_| etcd.node("edge", &["--tier", "2"]))
        .collect();
    wait_for("every edge in the view", Duration::from_secs(15), || {
        let (_, body) = origin.api_get("/api/v1/cluster/nodes");
        leaves.iter().all(|l| body.contains(&l.node_id)) && body.contains(&mid.node_id)
    });
    let (_, nodes) = origin.api_get("/api/v1/cluster/nodes");
    assert!(nodes.contains("\"tier\":2"), "{nodes}");
    // The locator sends players to the leaves, not to the mid edge that feeds them.
    for _ in 0..8 {
        let (status, body) = origin.http_get("/api/v1/locate/live/tree");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let edge = v["edge"].as_str().unwrap_or_default();
        assert!(leaves.iter().any(|l| l.node_id == edge), "{body}");
    }

    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/tree"), StreamSpec::default());
    wait_playable(&origin, "live/tree").await;
    let mut watchers = Vec::new();
    for leaf in &leaves {
        for _ in 0..3 {
            watchers.push(Watcher::start(leaf.rtmp, "live/tree").await);
        }
    }
    for w in &watchers {
        assert!(
            w.wait_beyond(25, Duration::from_secs(20)).await,
            "a leaf player plays"
        );
    }
    // Every leaf pulls from the mid edge; the origin serves one connection: the mid edge's.
    for leaf in &leaves {
        assert_eq!(upstream_of(leaf, "live/tree"), mid.rtmp.to_string());
    }
    assert_eq!(upstream_of(&mid, "live/tree"), origin.rtmp.to_string());
    assert_eq!(
        origin.metric("livecdn_media_players", "protocol=\"rtmp\""),
        1.0
    );
    assert_eq!(
        mid.metric("livecdn_media_players", "protocol=\"rtmp\""),
        4.0
    );

    // ffmpeg on a leaf decodes what the origin sends, HTTP-FLV too.
    let url = leaves[3].flv_url("live/tree");
    let played = tokio::task::spawn_blocking(move || ffmpeg_play(&url, 3, Duration::from_secs(30)))
        .await
        .expect("join");
    assert!(played.ok && played.video_frames >= 60, "{}", played.stderr);
    for w in watchers {
        let (frames, gap) = w.finish().await;
        assert!(
            frames > 25 && gap < 1000,
            "frames {frames}, longest gap {gap} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_parent_is_replaced_without_disconnecting_players() {
    let etcd = Etcd::start();
    let origin = etcd.node("origin", &[]);
    let mut mids: Vec<NodeProc> = (0..2)
        .map(|_| etcd.node("edge", &["--tier", "1"]))
        .collect();
    let leaf = etcd.node("edge", &["--tier", "2"]);
    wait_for(
        "every edge in the leaf's view",
        Duration::from_secs(15),
        || {
            let (_, body) = leaf.api_get("/api/v1/cluster/nodes");
            mids.iter().all(|m| body.contains(&m.node_id))
        },
    );
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/kp"), StreamSpec::default());
    wait_playable(&origin, "live/kp").await;
    let mut watchers = Vec::new();
    for _ in 0..4 {
        watchers.push(Watcher::start(leaf.rtmp, "live/kp").await);
    }
    for w in &watchers {
        assert!(w.wait_beyond(25, Duration::from_secs(20)).await);
    }
    let parent = upstream_of(&leaf, "live/kp");
    let idx = mids
        .iter()
        .position(|m| m.rtmp.to_string() == parent)
        .unwrap_or_else(|| panic!("the leaf pulls from a mid edge, not {parent}"));
    let before: Vec<usize> = watchers.iter().map(|w| w.frames()).collect();
    mids[idx]
        .proc
        .signal_and_wait("KILL", Duration::from_secs(5));
    let other = mids[1 - idx].rtmp.to_string();
    wait_for("the leaf re-parents", Duration::from_secs(10), || {
        upstream_of(&leaf, "live/kp") == other
    });
    // Players keep their connections and get frames again.
    for (w, b) in watchers.iter().zip(before) {
        assert!(
            w.wait_beyond(b + 50, Duration::from_secs(15)).await,
            "player resumed"
        );
    }
    for w in watchers {
        assert_eq!(w.backwards(), 0, "timestamps stay monotonic");
        let (_, gap) = w.finish().await;
        // Lease TTL (2 s) + 3 s.
        eprintln!("longest gap across the parent's death: {gap} ms");
        assert!(gap < 5000, "longest gap {gap} ms");
    }
    // The origin serves the surviving mid edge only.
    wait_for(
        "one connection on the origin",
        Duration::from_secs(10),
        || origin.metric("livecdn_media_players", "protocol=\"rtmp\"") == 1.0,
    );
}

//! The cluster end to end: real etcd, origins that claim streams, edges that pull each stream
//! once and serve many RTMP and HTTP-FLV players, failover, etcd outages, static upstreams.

use std::time::{Duration, Instant};

use common::cluster::{EtcdConfig, EtcdRegistry, Registry};
use common::rtmp::ClientEvent;
use harness::etcd::Etcd;
use harness::rtmp::{Client, Watcher, first_video_frame, wait_playable};
use harness::{FfmpegPublisher, NodeProc, StreamSpec, ffmpeg_play, wait_for};

fn origin(etcd: &Etcd, extra: &[&str]) -> NodeProc {
    etcd.node("origin", extra)
}

fn edge(etcd: &Etcd, extra: &[&str]) -> NodeProc {
    etcd.node("edge", extra)
}

async fn inspect(etcd: &Etcd) -> std::sync::Arc<EtcdRegistry> {
    let mut cfg = EtcdConfig::new(vec![etcd.endpoint.clone()]);
    cfg.lease_ttl = Duration::from_secs(2);
    EtcdRegistry::connect(cfg).await.expect("inspect registry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_pull_once_and_serve_many_players() {
    let etcd = Etcd::start();
    let a = origin(&etcd, &[]);
    let _b = origin(&etcd, &[]);
    let edges = [edge(&etcd, &[]), edge(&etcd, &[])];
    let _publisher = FfmpegPublisher::start(&a.rtmp_url("live/fan"), StreamSpec::default());
    wait_playable(&edges[0], "live/fan").await;

    let mut players = Vec::new();
    for e in &edges {
        for i in 0..6 {
            let url = if i % 2 == 0 {
                e.rtmp_url("live/fan")
            } else {
                e.flv_url("live/fan")
            };
            players.push((
                url.clone(),
                tokio::task::spawn_blocking(move || ffmpeg_play(&url, 4, Duration::from_secs(40))),
            ));
        }
    }
    // While they play, origin A serves exactly one upstream per edge.
    wait_for(
        "one upstream per edge on the origin",
        Duration::from_secs(15),
        || {
            a.metric("livecdn_media_players", "protocol=\"rtmp\"") == 2.0
                && edges
                    .iter()
                    .all(|e| e.metric("livecdn_media_players", "") >= 6.0)
        },
    );
    for (url, p) in players {
        let played = p.await.expect("join");
        assert!(played.ok, "{url}: {}", played.stderr);
        assert!(
            (98..=101).contains(&played.video_frames),
            "{url}: {} video frames",
            played.video_frames
        );
    }
    assert_eq!(a.metric("livecdn_media_players", "protocol=\"rtmp\""), 2.0);
    // The registry knows both edges and the stream's owner.
    let reg = inspect(&etcd).await;
    let owner = reg
        .lookup("live", "fan")
        .await
        .expect("lookup")
        .expect("claimed");
    assert_eq!(owner.origin_node_id, a.node_id);
    let nodes = reg.nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 4, "{nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_policy_refuses_a_second_origin() {
    let etcd = Etcd::start();
    let a = origin(&etcd, &["--on-conflict", "reject"]);
    let b = origin(&etcd, &["--on-conflict", "reject"]);
    let e = edge(&etcd, &[]);
    let _publisher = FfmpegPublisher::start(&a.rtmp_url("live/mine"), StreamSpec::default());
    wait_playable(&e, "live/mine").await;
    let watcher = Watcher::start(e.rtmp, "live/mine").await;

    let mut intruder = Client::connect(b.rtmp, "live").await.expect("connect");
    match intruder
        .publish("mine", Instant::now() + Duration::from_secs(5))
        .await
    {
        Err(ClientEvent::Status { code, .. }) => assert_eq!(code, "NetStream.Publish.BadName"),
        other => panic!("second origin accepted or failed oddly: {other:?}"),
    }
    let before = watcher.frames();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(watcher.frames() - before >= 40, "stream on A disturbed");
    let (_, gap) = watcher.finish().await;
    assert!(gap < 1000, "gap of {gap} ms");
    let reg = inspect(&etcd).await;
    let owner = reg
        .lookup("live", "mine")
        .await
        .expect("lookup")
        .expect("claimed");
    assert_eq!(owner.origin_node_id, a.node_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_moves_the_stream_and_players_follow() {
    let etcd = Etcd::start();
    let a = origin(&etcd, &[]);
    let b = origin(&etcd, &[]);
    let e = edge(&etcd, &[]);
    let _first = FfmpegPublisher::start(&a.rtmp_url("live/move"), StreamSpec::default());
    wait_playable(&e, "live/move").await;
    let watcher = Watcher::start(e.rtmp, "live/move").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let _second = FfmpegPublisher::start(&b.rtmp_url("live/move"), StreamSpec::default());
    // A drops its publisher; the edge now pulls from B.
    wait_for("A to drop its publisher", Duration::from_secs(15), || {
        a.metric("livecdn_media_publishers", "") == 0.0
    });
    wait_for("the edge to pull from B", Duration::from_secs(15), || {
        b.metric("livecdn_media_players", "protocol=\"rtmp\"") == 1.0
    });
    let before = watcher.frames();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        watcher.frames() - before >= 40,
        "player did not follow the stream to B"
    );
    assert_eq!(watcher.backwards(), 0, "timestamps went backwards");
    let reg = inspect(&etcd).await;
    let owner = reg
        .lookup("live", "move")
        .await
        .expect("lookup")
        .expect("claimed");
    assert_eq!(owner.origin_node_id, b.node_id);
    watcher.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_closes_after_the_grace() {
    let etcd = Etcd::start();
    let a = origin(&etcd, &[]);
    let e = edge(&etcd, &["--edge-idle-grace", "1s"]);
    let _publisher = FfmpegPublisher::start(&a.rtmp_url("live/idle"), StreamSpec::default());
    wait_playable(&e, "live/idle").await;
    // A player comes back within the grace: the same upstream is reused.
    let attempts = e.metric("livecdn_edge_upstream_attempts_total", "");
    first_video_frame(e.rtmp, "live/idle", Duration::from_secs(5)).await;
    assert_eq!(
        e.metric("livecdn_edge_upstream_attempts_total", ""),
        attempts
    );
    assert_eq!(a.metric("livecdn_media_players", "protocol=\"rtmp\""), 1.0);
    // Everyone left: the upstream goes after the grace and the origin sees it go.
    let left = Instant::now();
    wait_for(
        "the edge's upstream to close",
        Duration::from_secs(10),
        || a.metric("livecdn_media_players", "protocol=\"rtmp\"") == 0.0,
    );
    assert!(
        left.elapsed() >= Duration::from_millis(900),
        "closed before the grace"
    );
    assert_eq!(e.metric("livecdn_edge_upstreams_active", ""), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_stream_is_not_found_and_early_players_get_the_stream() {
    let etcd = Etcd::start();
    let a = origin(&etcd, &[]);
    let e = edge(&etcd, &["--media-play-wait", "1s"]);
    let mut c = Client::connect(e.rtmp, "live").await.expect("connect");
    match c
        .play("ghost", Instant::now() + Duration::from_secs(5))
        .await
    {
        Err(ClientEvent::Status { code, .. }) => assert_eq!(code, "NetStream.Play.StreamNotFound"),
        other => panic!("unexpected {other:?}"),
    }
    let (status, _) = e.http_get("/live/ghost.flv");
    assert_eq!(status, 404);

    let e2 = edge(&etcd, &["--media-play-wait", "10s"]);
    let url = e2.flv_url("live/early");
    let player = tokio::task::spawn_blocking(move || ffmpeg_play(&url, 3, Duration::from_secs(40)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _publisher = FfmpegPublisher::start(&a.rtmp_url("live/early"), StreamSpec::default());
    let played = player.await.expect("join");
    assert!(played.ok, "{}", played.stderr);
    assert!(played.video_frames >= 70, "{} frames", played.video_frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_killed_publisher_moves_and_players_resume() {
    let etcd = Etcd::start();
    let mut a = origin(&etcd, &[]);
    let b = origin(&etcd, &[]);
    let e = edge(&etcd, &[]);
    let first = FfmpegPublisher::start(&a.rtmp_url("live/fail"), StreamSpec::default());
    wait_playable(&e, "live/fail").await;
    let watcher = Watcher::start(e.rtmp, "live/fail").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    a.proc.signal_and_wait("KILL", Duration::from_secs(5));
    drop(first);
    let killed = Instant::now();
    let _second = FfmpegPublisher::start(&b.rtmp_url("live/fail"), StreamSpec::default());
    let before = watcher.frames();
    // Within the lease TTL plus a few seconds, frames flow again on the same connection.
    wait_for(
        "frames again after the failover",
        Duration::from_secs(12),
        || watcher.frames() >= before + 25,
    );
    let resumed = killed.elapsed();
    assert!(
        resumed < Duration::from_secs(10),
        "resumed after {resumed:?}"
    );
    assert_eq!(watcher.backwards(), 0, "timestamps went backwards");
    watcher.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage_does_not_interrupt_players_and_keys_return() {
    let mut etcd = Etcd::start();
    let a = origin(&etcd, &[]);
    let e = edge(&etcd, &[]);
    let _publisher = FfmpegPublisher::start(&a.rtmp_url("live/calm"), StreamSpec::default());
    wait_playable(&e, "live/calm").await;
    let watcher = Watcher::start(e.rtmp, "live/calm").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    etcd.stop();
    let before = watcher.frames();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = watcher.frames() - before;
    etcd.restart();
    assert!(
        during >= 230,
        "{during} video frames during the 10 s outage"
    );

    let reg = inspect(&etcd).await;
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let owner = reg.lookup("live", "calm").await.ok().flatten();
        let nodes = reg.nodes().await.unwrap_or_default();
        let ids: Vec<_> = nodes.iter().map(|n| n.node_id.clone()).collect();
        if owner.is_some_and(|o| o.origin_node_id == a.node_id)
            && ids.contains(&a.node_id)
            && ids.contains(&e.node_id)
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "keys did not come back: nodes {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, gap) = watcher.finish().await;
    assert!(gap < 1000, "players saw a {gap} ms gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_edge_pulls_from_a_listed_origin() {
    // No etcd: the origin runs alone, the edge fronts it with --origin (a dead one first).
    let a = NodeProc::start(&[]);
    let dead = format!("rtmp://127.0.0.1:{}", harness::free_port());
    let live = format!("rtmp://{}", a.rtmp);
    let e = NodeProc::edge(&["--origin", &dead, "--origin", &live]);
    let _publisher = FfmpegPublisher::start(&a.rtmp_url("live/static"), StreamSpec::default());
    let url = e.flv_url("live/static");
    let played = tokio::task::spawn_blocking(move || ffmpeg_play(&url, 3, Duration::from_secs(40)))
        .await
        .expect("join");
    assert!(played.ok, "{}", played.stderr);
    assert!(played.video_frames >= 70, "{} frames", played.video_frames);
}

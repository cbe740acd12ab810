//! Edge amplification: a hostile client asking an edge for thousands of names nobody publishes
//! (HTTP-FLV, HLS playlists, RTMP) costs the cluster no etcd work per request, is shed by the
//! edge's negative cache and caps, and leaves a real player of a real stream untouched. Bad
//! names are refused before anything else with 400 / BadName / StreamNotFound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::rtmp::ClientEvent;
use harness::etcd::Etcd;
use harness::rtmp::{Client, Watcher, wait_playable};
use harness::{FfmpegPublisher, NodeProc, StreamSpec, ffmpeg_play, http_get, rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The edge's limits in this test.
const MAX_INGESTS: usize = 64;
const MAX_PENDING_PER_IP: usize = 8;
/// Hostile HTTP requests and RTMP plays.
const HTTP_REQUESTS: usize = 2000;
const RTMP_PLAYS: usize = 300;
/// Source addresses the hostile HTTP client spreads over (127.0.0.0/8 is all loopback).
const SOURCES: u8 = 32;
/// Concurrent requests per source address (above the pending cap, so it is exercised).
const PER_SOURCE: usize = 10;
/// Edge RSS may grow at most this much under the flood.
const RSS_GROWTH_MAX_KIB: u64 = 96 * 1024;

/// etcd requests the edge made that a play could cause: lookups, watches and lists.
fn registry_reads(edge: &NodeProc) -> f64 {
    ["lookup", "watch", "list"]
        .iter()
        .map(|op| edge.metric("livecdn_registry_operations_total", &format!("op=\"{op}\"")))
        .sum()
}

/// One raw GET from `source`; the status (0: no answer).
async fn get_from(source: std::net::IpAddr, addr: std::net::SocketAddr, path: &str) -> u16 {
    let attempt = async {
        let sock = tokio::net::TcpSocket::new_v4().ok()?;
        sock.bind(std::net::SocketAddr::new(source, 0)).ok()?;
        let mut s = sock.connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 64];
        let mut got = 0;
        while got < 12 {
            let n = s.read(&mut head[got..]).await.ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        String::from_utf8_lossy(&head[..got])
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
    };
    tokio::time::timeout(Duration::from_secs(15), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

fn random_name(i: usize) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("r{:x}{i}", nanos ^ (i as u32).wrapping_mul(2_654_435_761))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_names_cost_no_etcd_work_and_real_players_keep_playing() {
    let etcd = Etcd::start();
    let origin = etcd.node("origin", &[]);
    let edge = etcd.node(
        "edge",
        &[
            "--media-play-wait",
            "1s",
            "--edge-max-ingests",
            &MAX_INGESTS.to_string(),
            "--edge-max-pending-per-ip",
            &MAX_PENDING_PER_IP.to_string(),
            "--edge-not-found-ttl",
            "3s",
            // The flood comes from loopback like every client here: loopback must not be a
            // trusted network (those are exempt from the pending cap), and without a
            // per-address connection cap, as before, so that the gate is what is tested.
            "--net-trusted-networks",
            "192.0.2.0/24",
            "--net-max-connections-per-ip",
            "0",
        ],
    );
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/real"), StreamSpec::default());
    wait_playable(&edge, "live/real").await;
    let watcher = Watcher::start(edge.rtmp, "live/real").await;
    assert!(watcher.wait_beyond(10, Duration::from_secs(10)).await);

    let reads_before = registry_reads(&edge);
    let rss_before = rss_kib(edge.proc.pid());
    let refused_before = edge.metric("livecdn_media_plays_refused_total", "");

    // Sample the ingests gauge and the RSS while the flood runs.
    let stop = Arc::new(AtomicBool::new(false));
    let max_ingests = Arc::new(AtomicUsize::new(0));
    let max_rss = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (stop, max_ingests, max_rss) = (stop.clone(), max_ingests.clone(), max_rss.clone());
        let (http, pid) = (edge.http, edge.proc.pid());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (_, body) = http_get(http, "/metrics");
                if let Some(v) = body
                    .lines()
                    .find(|l| l.starts_with("livecdn_edge_upstreams_active "))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                {
                    max_ingests.fetch_max(v as usize, Ordering::Relaxed);
                }
                max_rss.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // A real ffmpeg player of the real stream, decoding 8 s while the flood runs.
    let real_url = edge.flv_url("live/real");
    let real_player =
        tokio::task::spawn_blocking(move || ffmpeg_play(&real_url, 8, Duration::from_secs(40)));

    // The hostile HTTP client: random names over HTTP-FLV and HLS playlists, one in ten from
    // a small pool of repeated names (the negative cache answers those).
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let mut workers = Vec::new();
    for src in 0..SOURCES {
        for _ in 0..PER_SOURCE {
            let (next, statuses, addr) = (next.clone(), statuses.clone(), edge.http);
            let source = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, 10 + src));
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= HTTP_REQUESTS {
                        return;
                    }
                    let name = if i % 10 == 0 {
                        format!("ghost{}", i % 7)
                    } else {
                        random_name(i)
                    };
                    let path = if i % 3 == 0 {
                        format!("/live/{name}.m3u8")
                    } else {
                        format!("/live/{name}.flv")
                    };
                    let status = get_from(source, addr, &path).await;
                    *statuses
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(status)
                        .or_insert(0usize) += 1;
                }
            }));
        }
    }
    // The hostile RTMP client, alongside.
    let rtmp_next = Arc::new(AtomicUsize::new(0));
    let rtmp_refused = Arc::new(AtomicUsize::new(0));
    for _ in 0..30 {
        let (next, refused, addr) = (rtmp_next.clone(), rtmp_refused.clone(), edge.rtmp);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= RTMP_PLAYS {
                    return;
                }
                let Ok(mut c) = Client::connect(addr, "live").await else {
                    continue;
                };
                let r = c
                    .play(&random_name(i), Instant::now() + Duration::from_secs(10))
                    .await;
                if let Err(ClientEvent::Status { code, .. }) = r {
                    assert!(
                        code == "NetStream.Play.StreamNotFound" || code == "NetStream.Play.Failed",
                        "{code}"
                    );
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("hostile worker");
    }
    let flood_took = started.elapsed();

    // Bad names, every protocol: refused with 400 / StreamNotFound / BadName.
    let long = "x".repeat(200);
    for path in [
        "/live/.hidden.flv".to_string(),
        "/live/a%2Fb.flv".to_string(),
        "/live/a%20b.flv".to_string(),
        "/live/..m3u8".to_string(),
        format!("/live/{long}.flv"),
        format!("/live/{long}.m3u8"),
        "/live/a%00b.m3u8".to_string(),
        "/li%2Fve/cam.flv".to_string(),
    ] {
        assert_eq!(edge.http_get(&path).0, 400, "{path}");
    }
    let mut c = Client::connect(edge.rtmp, "live").await.expect("connect");
    match c.play("b/c", Instant::now() + Duration::from_secs(5)).await {
        Err(ClientEvent::Status { code, .. }) => assert_eq!(code, "NetStream.Play.StreamNotFound"),
        other => panic!("play of live + b/c: {other:?}"),
    }
    let mut c = Client::connect(edge.rtmp, "live/b").await.expect("connect");
    match c.play("c", Instant::now() + Duration::from_secs(5)).await {
        Err(ClientEvent::Status { code, .. }) => assert_eq!(code, "NetStream.Play.StreamNotFound"),
        other => panic!("play of live/b + c: {other:?}"),
    }
    let mut c = Client::connect(origin.rtmp, "a/b").await.expect("connect");
    match c
        .publish("c", Instant::now() + Duration::from_secs(5))
        .await
    {
        Err(ClientEvent::Status { code, .. }) => assert_eq!(code, "NetStream.Publish.BadName"),
        other => panic!("publish of a/b + c: {other:?}"),
    }

    let played = real_player.await.expect("join");
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let (frames, gap) = watcher.finish().await;

    let reads = registry_reads(&edge) - reads_before;
    let statuses = statuses.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let shed = |r: &str| edge.metric("livecdn_edge_plays_shed_total", &format!("reason=\"{r}\""));
    let refused = edge.metric("livecdn_media_plays_refused_total", "") - refused_before;
    let bad = edge.metric("livecdn_media_plays_refused_total", "reason=\"bad_name\"");
    let peak_ingests = max_ingests.load(Ordering::Relaxed);
    let rss_growth = max_rss.load(Ordering::Relaxed).saturating_sub(rss_before);
    eprintln!(
        "flood of {HTTP_REQUESTS} HTTP + {RTMP_PLAYS} RTMP plays took {flood_took:?}: \
         statuses {statuses:?}, rtmp refused {}, etcd reads (lookup+watch+list) {reads}, \
         shed not_found_cached {} ingest_limit {} pending_limit {}, refused {refused}, \
         bad_name {bad}, peak ingests {peak_ingests}, RSS +{rss_growth} KiB, \
         real player: {frames} frames, longest gap {gap} ms, ffmpeg {} video frames",
        rtmp_refused.load(Ordering::Relaxed),
        shed("not_found_cached"),
        shed("ingest_limit"),
        shed("pending_limit"),
        played.video_frames,
    );

    // No etcd work per request: the edge resolves owners from its one watch. A watch
    // re-established by chance costs one list and one watch.
    assert!(
        reads <= 2.0,
        "{reads} etcd reads for {} hostile plays",
        HTTP_REQUESTS + RTMP_PLAYS
    );
    // Nothing hostile was served; every request got an answer.
    assert_eq!(statuses.get(&200), None, "{statuses:?}");
    assert_eq!(statuses.get(&0), None, "unanswered requests: {statuses:?}");
    assert_eq!(rtmp_refused.load(Ordering::Relaxed), RTMP_PLAYS);
    // The limits and the negative cache all took part, and every refusal was counted.
    assert!(shed("not_found_cached") > 0.0);
    assert!(shed("ingest_limit") > 0.0);
    assert!(shed("pending_limit") > 0.0);
    assert!(refused >= (HTTP_REQUESTS - HTTP_REQUESTS / 3 + RTMP_PLAYS) as f64);
    assert!(bad >= 8.0, "bad names counted: {bad}");
    assert!(
        peak_ingests <= MAX_INGESTS,
        "{peak_ingests} ingests > {MAX_INGESTS}"
    );
    assert!(
        rss_growth < RSS_GROWTH_MAX_KIB,
        "edge RSS grew {rss_growth} KiB"
    );
    // The real players did not notice.
    assert!(played.ok, "ffmpeg player: {}", played.stderr);
    assert!(played.video_frames >= 150, "{}", played.video_frames);
    assert!(frames > 100, "watcher got {frames} frames");
    assert!(gap < 1000, "real player saw a {gap} ms gap");
    // The hostile names never reached the origin.
    assert_eq!(
        origin.metric("livecdn_media_plays_refused_total", "reason=\"not_found\""),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_upstreams_pull_an_unknown_name_once_per_ttl() {
    let origin = NodeProc::start(&["--media-play-wait", "1s"]);
    let upstream = format!("rtmp://{}", origin.rtmp);
    let edge = NodeProc::edge(&[
        "--origin",
        &upstream,
        "--media-play-wait",
        "1s",
        "--edge-not-found-ttl",
        "4s",
    ]);
    let attempts = || edge.metric("livecdn_edge_upstream_attempts_total", "");
    let t = Instant::now();
    assert_eq!(edge.http_get("/live/ghost.flv").0, 404);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let first = attempts();
    assert!(first >= 1.0);
    // Within the TTL the name is answered at once, with no new pull.
    let t = Instant::now();
    for _ in 0..50 {
        assert_eq!(edge.http_get("/live/ghost.flv").0, 404);
    }
    let mut c = Client::connect(edge.rtmp, "live").await.expect("connect");
    match c
        .play("ghost", Instant::now() + Duration::from_secs(5))
        .await
    {
        Err(ClientEvent::Status { code, .. }) => assert_eq!(code, "NetStream.Play.StreamNotFound"),
        other => panic!("cached play: {other:?}"),
    }
    let fast = t.elapsed();
    assert!(
        fast < Duration::from_secs(2),
        "51 cached refusals took {fast:?}"
    );
    assert!(
        attempts() - first <= 1.0,
        "pulls of a cached name: {}",
        attempts() - first
    );
    assert!(
        edge.metric(
            "livecdn_edge_plays_shed_total",
            "reason=\"not_found_cached\""
        ) >= 51.0
    );
    // Past the TTL the name is looked up again: published by now, it plays.
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/ghost"), StreamSpec::default());
    tokio::time::sleep(Duration::from_secs(4)).await;
    wait_playable(&edge, "live/ghost").await;
}

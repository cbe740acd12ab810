//! Trust end to end: publish authentication on origins (no, expired, forged or other-stream
//! tokens refused with `NetStream.Publish.Unauthorized`; both token forms and a second key
//! admitted; an unauthenticated takeover leaves the publisher and every viewer alone) and
//! signed play URLs on an edge and an origin, over RTMP, HTTP-FLV, HLS (playlist, segment,
//! part, init) and the player page, with edges pulling from origins on the cluster secret.
//! Real etcd, real binaries, real ffmpeg, on loopback.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::admission::{sign_hmac, sign_tencent};
use common::rtmp::ClientEvent;
use harness::etcd::Etcd;
use harness::hls::{get, resolve, wait_playlist};
use harness::rtmp::{Client, Watcher, try_publish, wait_playable};
use harness::{FfmpegPublisher, NodeProc, StreamSpec, binary, ffmpeg_play, wait_for};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// `livecdn-sign` as an operator runs it: the query to append.
fn livecdn_sign(args: &[&str]) -> String {
    let out = Command::new(binary("livecdn-sign"))
        .args(args)
        .output()
        .expect("run livecdn-sign");
    assert!(
        out.status.success(),
        "livecdn-sign {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Plays `name` (with its query) on `node`: Ok, or the refusing (code, description).
async fn try_play(node: &NodeProc, app: &str, name: &str) -> Result<(), (String, String)> {
    let mut c = Client::connect(node.rtmp, app).await.expect("connect");
    match c.play(name, Instant::now() + Duration::from_secs(10)).await {
        Ok(()) => Ok(()),
        Err(ClientEvent::Status {
            code, description, ..
        }) => Err((code, description)),
        Err(other) => panic!("play {app}/{name}: {other:?}"),
    }
}

/// Queries no valid token for `live/{name}`, with what each should say.
fn bad_queries(key: &str, name: &str) -> Vec<(&'static str, String, u16)> {
    vec![
        ("no token", String::new(), 401),
        ("malformed", "sign=xyz&expires=soon".to_string(), 401),
        ("expired", sign_hmac(key, "live", name, now() - 120), 403),
        (
            "forged",
            sign_hmac("not-the-key", "live", name, now() + 600),
            403,
        ),
        (
            "another stream",
            sign_hmac(key, "live", "another", now() + 600),
            403,
        ),
        (
            "forged tencent",
            sign_tencent("not-the-key", name, now() + 600),
            403,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_needs_a_valid_token_of_any_key_of_the_app() {
    let origin = NodeProc::start(&["--publish-key", "live=first-key,live=second-key"]);

    for (what, query, status) in bad_queries("first-key", "demo") {
        let name = if query.is_empty() {
            "demo".to_string()
        } else {
            format!("demo?{query}")
        };
        let (code, description) = try_publish(origin.rtmp, "live", &name, Duration::from_secs(5))
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: publish accepted"));
        assert_eq!(code, "NetStream.Publish.Unauthorized", "{what}");
        let expected = match (what, status) {
            ("expired", _) => "expired",
            (_, 403) => "does not match",
            ("no token", _) => "required",
            _ => "malformed",
        };
        assert!(description.contains(expected), "{what}: {description}");
    }
    // An app without a key is refused too (auth on fails closed).
    let q = sign_hmac("first-key", "other", "demo", now() + 600);
    let (code, _) = try_publish(
        origin.rtmp,
        "other",
        &format!("demo?{q}"),
        Duration::from_secs(5),
    )
    .await
    .err()
    .expect("app without a key refused");
    assert_eq!(code, "NetStream.Publish.Unauthorized");

    // ffmpeg without a token: refused, and says why.
    let mut refused = FfmpegPublisher::start(&origin.rtmp_url("live/demo"), StreamSpec::default());
    wait_for("ffmpeg to give up", Duration::from_secs(15), || {
        !refused.proc.is_running()
    });
    let status = refused.proc.child.wait().expect("status");
    assert!(!status.success(), "ffmpeg published without a token");
    let said = refused.proc.output();
    assert!(
        said.contains("token is required") || said.contains("Unauthorized"),
        "ffmpeg's stderr: {said}"
    );
    assert_eq!(origin.metric("livecdn_media_publishers", ""), 0.0);

    // A token of the second key (rotation), made by livecdn-sign, publishes with ffmpeg.
    let q = livecdn_sign(&[
        "--key",
        "second-key",
        "--app",
        "live",
        "--name",
        "demo",
        "--expires-in",
        "10m",
    ]);
    let _publisher = FfmpegPublisher::start(
        &origin.rtmp_url(&format!("live/demo?{q}")),
        StreamSpec::default(),
    );
    wait_playable(&origin, "live/demo").await;
    // The Tencent form of the first key, as the md5sum one-liner makes it.
    let q = livecdn_sign(&[
        "--key",
        "first-key",
        "--app",
        "live",
        "--name",
        "tx",
        "--form",
        "tencent",
    ]);
    assert!(q.starts_with("txSecret=") && q.contains("&txTime="), "{q}");
    assert!(
        try_publish(
            origin.rtmp,
            "live",
            &format!("tx?{q}"),
            Duration::from_secs(5)
        )
        .await
        .is_ok()
    );

    assert!(
        origin.metric(
            "livecdn_media_publishes_refused_total",
            "reason=\"unauthorized\""
        ) >= 3.0
    );
    assert!(
        origin.metric(
            "livecdn_media_publishes_refused_total",
            "reason=\"forbidden\""
        ) >= 4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_without_a_valid_token_leaves_publisher_and_viewers_alone() {
    let etcd = Etcd::start();
    let keys = ["--publish-key", "live=k"];
    let a = etcd.node("origin", &keys);
    let b = etcd.node("origin", &keys);
    let e = etcd.node("edge", &[]);
    let q = sign_hmac("k", "live", "mine", now() + 600);
    let _first = FfmpegPublisher::start(
        &a.rtmp_url(&format!("live/mine?{q}")),
        StreamSpec::default(),
    );
    wait_playable(&e, "live/mine").await;
    let watcher = Watcher::start(e.rtmp, "live/mine").await;

    for (what, query, _) in bad_queries("k", "mine") {
        let name = if query.is_empty() {
            "mine".to_string()
        } else {
            format!("mine?{query}")
        };
        let (code, _) = try_publish(b.rtmp, "live", &name, Duration::from_secs(5))
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: takeover accepted"));
        assert_eq!(code, "NetStream.Publish.Unauthorized", "{what}");
    }
    let mut intruder = FfmpegPublisher::start(&b.rtmp_url("live/mine"), StreamSpec::default());
    wait_for(
        "the intruder to be refused",
        Duration::from_secs(15),
        || !intruder.proc.is_running(),
    );

    let before = watcher.frames();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(watcher.frames() - before >= 40, "the viewer was disturbed");
    assert_eq!(watcher.backwards(), 0);
    assert_eq!(a.metric("livecdn_media_publishers", ""), 1.0);
    assert_eq!(b.metric("livecdn_media_publishers", ""), 0.0);
    // The edge still pulls from A.
    assert_eq!(a.metric("livecdn_media_players", "protocol=\"rtmp\""), 1.0);
    assert_eq!(b.metric("livecdn_media_players", "protocol=\"rtmp\""), 0.0);

    // An authenticated publisher may take the stream over; the viewer follows it.
    let _second = FfmpegPublisher::start(
        &b.rtmp_url(&format!("live/mine?{q}")),
        StreamSpec::default(),
    );
    wait_for("A to drop its publisher", Duration::from_secs(15), || {
        a.metric("livecdn_media_publishers", "") == 0.0
    });
    let before = watcher.frames();
    assert!(
        watcher
            .wait_beyond(before + 25, Duration::from_secs(10))
            .await,
        "the viewer did not follow the authenticated takeover"
    );
    let (_, gap) = watcher.finish().await;
    assert!(gap < 5000, "gap of {gap} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_play_urls_on_edge_and_origin_over_rtmp_flv_hls_and_the_page() {
    let etcd = Etcd::start();
    let auth = [
        "--play-key",
        "live=view-old,live=view-new",
        "--cluster-secret",
        "cluster-s3cret",
        "--media-play-wait",
        "3s",
    ];
    let origin = etcd.node("origin", &auth);
    let edge = etcd.node("edge", &auth);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/demo"), StreamSpec::default());
    let token = sign_hmac("view-new", "live", "demo", now() + 600);
    wait_playable(&edge, &format!("live/demo?{token}")).await;

    // Valid tokens play everywhere: RTMP and HTTP-FLV (ffmpeg), both forms, both keys.
    let tencent = sign_tencent("view-old", "demo", now() + 600);
    for url in [
        edge.rtmp_url(&format!("live/demo?{token}")),
        format!("{}?{tencent}", edge.flv_url("live/demo")),
        format!("{}?{token}", edge.flv_url("live/demo")),
    ] {
        let played = ffmpeg_play(&url, 2, Duration::from_secs(30));
        assert!(played.ok, "{url}: {}", played.stderr);
        assert!(played.video_frames >= 45, "{url}: {}", played.video_frames);
    }
    // HLS: the playlist's URIs (map, segments, parts, preload hint) carry the token and play.
    let path = format!("/live/demo.m3u8?{token}");
    let p = wait_playlist(
        edge.http,
        &path,
        "segments and parts",
        Duration::from_secs(30),
        |p| p.segments.len() >= 2 && !p.open_parts.is_empty() && p.preload_hint.is_some(),
    );
    let sign = token.split("sign=").nth(1).expect("sign");
    let mut uris: Vec<String> = p.segments.iter().map(|s| s.uri.clone()).collect();
    uris.extend(
        p.segments
            .iter()
            .flat_map(|s| s.parts.iter().map(|x| x.0.clone())),
    );
    uris.extend(p.open_parts.iter().map(|x| x.0.clone()));
    uris.extend(p.map.clone());
    uris.extend(p.preload_hint.clone());
    for uri in &uris {
        assert!(uri.ends_with(&format!("?{token}")), "{uri} lacks the token");
        assert!(uri.contains(sign));
    }
    let segment = resolve(&path, &p.segments[p.segments.len() - 1].uri);
    let part = resolve(&path, &p.open_parts[0].0);
    let init = resolve(&path, p.map.as_deref().expect("map"));
    for what in [&segment, &part, &init] {
        let r = get(edge.http, what);
        assert_eq!(r.status, 200, "GET {what}: {}", r.text());
        assert!(!r.body.is_empty());
    }
    // The player page takes its query to the URLs it plays.
    let (status, page) = edge.http_get(&format!("/live/demo?{token}"));
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(sign) && page.contains(".m3u8?expires="),
        "{page}"
    );

    // Everything else is refused on every protocol, on the edge and on the origin.
    let bare = |p: &str| p.split('?').next().unwrap_or(p).to_string();
    for (what, query, status) in bad_queries("view-new", "demo") {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        for n in [&edge, &origin] {
            let (code, description) = try_play(n, "live", &format!("demo{q}"))
                .await
                .err()
                .unwrap_or_else(|| panic!("{what}: RTMP play accepted on {}", n.node_id));
            assert_eq!(code, "NetStream.Play.Failed", "{what}");
            assert!(!description.is_empty());
            for (kind, path) in [
                ("flv", format!("/live/demo.flv{q}")),
                ("playlist", format!("/live/demo.m3u8{q}")),
                ("ts playlist", format!("/live/demo/ts.m3u8{q}")),
                ("page", format!("/live/demo{q}")),
            ] {
                let r = get(n.http, &path);
                assert_eq!(
                    r.status,
                    status,
                    "{what} {kind} on {}: {}",
                    n.node_id,
                    r.text()
                );
            }
        }
        for (kind, path) in [("segment", &segment), ("part", &part), ("init", &init)] {
            let r = get(edge.http, &format!("{}{q}", bare(path)));
            assert_eq!(r.status, status, "{what} {kind}: {}", r.text());
        }
    }
    let refused = ffmpeg_play(&edge.rtmp_url("live/demo"), 1, Duration::from_secs(20));
    assert!(!refused.ok, "ffmpeg played RTMP without a token");
    let refused = ffmpeg_play(&edge.flv_url("live/demo"), 1, Duration::from_secs(20));
    assert!(!refused.ok, "ffmpeg played HTTP-FLV without a token");
    for n in [&edge, &origin] {
        for reason in ["unauthorized", "forbidden"] {
            for protocol in ["rtmp", "http-flv", "hls", "page"] {
                let filter = format!("protocol=\"{protocol}\",reason=\"{reason}\"");
                let filter_rev = format!("reason=\"{reason}\",protocol=\"{protocol}\"");
                let count = n.metric("livecdn_media_plays_refused_total", &filter)
                    + n.metric("livecdn_media_plays_refused_total", &filter_rev);
                assert!(count >= 1.0, "{}: no {filter} refusal counted", n.node_id);
            }
        }
    }

    // The origin requires play tokens of everyone but the cluster: an edge with another
    // cluster secret cannot pull, even for a viewer with a valid token.
    let stranger = etcd.node(
        "edge",
        &[
            "--play-key",
            "live=view-new",
            "--cluster-secret",
            "wrong-secret",
            "--media-play-wait",
            "3s",
        ],
    );
    let refused_before = origin.metric("livecdn_media_plays_refused_total", "forbidden");
    let (code, _) = try_play(&stranger, "live", &format!("demo?{token}"))
        .await
        .expect_err("an edge without the cluster secret pulled");
    assert_eq!(code, "NetStream.Play.StreamNotFound");
    assert!(origin.metric("livecdn_media_plays_refused_total", "forbidden") > refused_before);
}

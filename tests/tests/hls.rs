//! HLS end to end: real etcd, origins and edges, ffmpeg publishing and playing. A cold edge
//! starts pulling on the first playlist request; two edges cut the same segments; LL-HLS
//! blocking reloads, preload hints and delta updates; the media sequence survives a failover.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use harness::etcd::Etcd;
use harness::hls::{Playlist, download, fetch, get, resolve, wait_playlist};
use harness::{FfmpegPublisher, NodeProc, StreamSpec, ffmpeg_play, require, wait_for};

/// (codec_type, dts seconds) of every packet ffprobe reads from `file`.
fn packets(file: &std::path::Path) -> Vec<(String, f64)> {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,dts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (kind, dts) = l.split_once(',')?;
            Some((kind.to_string(), dts.trim_end_matches(',').parse().ok()?))
        })
        .collect()
}

/// codec_name,width,height of each stream.
fn streams(file: &std::path::Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("livecdn-hls-{}-{name}", std::process::id()))
}

fn assert_decodes(addr: SocketAddr, path: &str, p: &Playlist, ext: &str) {
    // Two consecutive complete segments (plus the init segment for fMP4).
    let n = p.segments.len();
    assert!(n >= 2, "need two segments: {p:?}");
    let mut uris: Vec<&str> = Vec::new();
    if let Some(map) = &p.map {
        uris.push(map);
    }
    uris.push(&p.segments[n - 2].uri);
    uris.push(&p.segments[n - 1].uri);
    let file = tmp(&format!("two.{ext}"));
    download(addr, path, &uris, &file);
    let s = streams(&file);
    assert!(
        s.contains("h264,320,240") && s.contains("aac"),
        "streams: {s}"
    );
    let played = harness::ffmpeg_decode_file(&file);
    assert!(played.ok, "decode {ext}: {}", played.stderr);
    let seconds = p.segments[n - 2].duration + p.segments[n - 1].duration;
    let expected = (seconds * 25.0).round() as usize;
    assert!(
        played.video_frames + 1 >= expected,
        "{ext}: {} video frames decoded for {seconds} s",
        played.video_frames
    );
    let video: Vec<f64> = packets(&file)
        .into_iter()
        .filter(|(k, _)| k == "video")
        .map(|(_, d)| d)
        .collect();
    assert!(
        video.len() + 1 >= expected,
        "{ext}: {} video packets",
        video.len()
    );
    assert!(
        video.windows(2).all(|w| w[1] > w[0]),
        "{ext}: video dts not increasing: {video:?}"
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn cold_edge_serves_hls_that_ffmpeg_decodes_and_lets_the_upstream_go() {
    let etcd = Etcd::start();
    let origin = etcd.node("origin", &[]);
    let edge = etcd.node(
        "edge",
        &["--hls-idle-timeout", "2s", "--edge-idle-grace", "1s"],
    );
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/cold"), StreamSpec::default());
    wait_for(
        "the origin to have the stream",
        Duration::from_secs(20),
        || origin.api_get("/api/v1/streams/live/cold").0 == 200,
    );
    // Let the origin's GOP cache fill, then ask the cold edge.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(edge.metric("livecdn_edge_upstreams_active", ""), 0.0);
    let first = get(edge.http, "/live/cold.m3u8");
    assert_eq!(first.status, 200, "{}", first.text());
    // The GOP cache the pull starts with makes a complete first segment at once.
    assert!(
        first.elapsed < Duration::from_millis(1000),
        "first playlist took {:?}",
        first.elapsed
    );
    assert_eq!(
        first.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(first.header("access-control-allow-origin"), Some("*"));
    let p = Playlist::parse(&first.text());
    assert!(
        !p.segments.is_empty(),
        "no complete segment: {}",
        first.text()
    );
    assert!(
        p.open_parts
            .first()
            .is_none_or(|(_, independent)| *independent)
    );
    assert_eq!(edge.metric("livecdn_edge_upstreams_active", ""), 1.0);

    // fMP4 and TS both decode, with every frame and increasing timestamps.
    let p = wait_playlist(
        edge.http,
        "/live/cold.m3u8",
        "3 segments",
        Duration::from_secs(15),
        |p| p.segments.len() >= 3,
    );
    assert_decodes(edge.http, "/live/cold.m3u8", &p, "mp4");
    let ts = wait_playlist(
        edge.http,
        "/live/cold/ts.m3u8",
        "3 TS segments",
        Duration::from_secs(15),
        |p| p.segments.len() >= 3,
    );
    assert!(ts.map.is_none() && ts.segments.iter().all(|s| s.uri.ends_with(".ts")));
    assert_decodes(edge.http, "/live/cold/ts.m3u8", &ts, "ts");
    // ffmpeg follows the live TS playlist.
    let played = ffmpeg_play(
        &format!("http://{}/live/cold/ts.m3u8", edge.http),
        4,
        Duration::from_secs(30),
    );
    assert!(played.ok && played.video_frames >= 90, "{played:?}");

    // Segments: immutable, cacheable, ranges.
    let seg = resolve("/live/cold.m3u8", &p.segments[0].uri);
    let whole = get(edge.http, &seg);
    assert_eq!(whole.header("content-type"), Some("video/mp4"));
    assert!(
        whole
            .header("cache-control")
            .is_some_and(|c| c.contains("max-age"))
    );
    let part = fetch(edge.http, "GET", &seg, &[("Range", "bytes=10-19")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[10..20]);
    // Media went out with sendfile from memfds, not copied from user space (and decoded
    // above, byte for byte what the segmenter muxed).
    assert!(
        edge.metric("livecdn_net_sendfile_bytes_total", "") > 0.0,
        "segments are sent with sendfile"
    );
    let head = fetch(edge.http, "HEAD", &seg, &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(whole.body.len().to_string().as_str())
    );
    // HLS viewers count as players (distinct addresses: all of this test is one).
    wait_for(
        "an HLS player in the metrics",
        Duration::from_secs(3),
        || edge.metric("livecdn_media_players", "protocol=\"hls\"") == 1.0,
    );
    let (status, api) = edge.api_get("/api/v1/streams/live/cold");
    assert_eq!(status, 200, "{api}");
    let api: serde_json::Value = serde_json::from_str(&api).expect("json");
    assert_eq!(api["players"]["hls"], 1, "{api}");
    // An unknown stream: 404 after media.play_wait.
    assert_eq!(get(edge.http, "/live/nobody.m3u8").status, 404);

    // Nobody asks any more: packaging stops, then the edge lets the upstream go.
    wait_for(
        "the edge to drop the upstream",
        Duration::from_secs(15),
        || edge.metric("livecdn_edge_upstreams_active", "") == 0.0,
    );
    assert_eq!(edge.metric("livecdn_hls_packagers", ""), 0.0);
}

#[test]
fn two_edges_cut_identical_segments() {
    let etcd = Etcd::start();
    let origin = etcd.node("origin", &[]);
    let a = etcd.node("edge", &[]);
    let b = etcd.node("edge", &[]);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/same"), StreamSpec::default());
    wait_for(
        "the origin to have the stream",
        Duration::from_secs(20),
        || origin.api_get("/api/v1/streams/live/same").0 == 200,
    );
    // The edges start packaging at different moments.
    let _ = wait_playlist(
        a.http,
        "/live/same.m3u8",
        "edge A",
        Duration::from_secs(10),
        |_| true,
    );
    std::thread::sleep(Duration::from_millis(1300));
    let _ = wait_playlist(
        b.http,
        "/live/same.m3u8",
        "edge B",
        Duration::from_secs(10),
        |_| true,
    );
    let pb = wait_playlist(
        b.http,
        "/live/same.m3u8",
        "4 segments on B",
        Duration::from_secs(20),
        |p| p.segments.len() >= 4,
    );
    let pa = Playlist::parse(&get(a.http, "/live/same.m3u8").text());
    let common: Vec<_> = pb
        .segments
        .iter()
        .filter(|s| pa.segments.iter().any(|t| t.uri == s.uri))
        .collect();
    assert!(common.len() >= 2, "A: {pa:?}\nB: {pb:?}");
    for s in &common {
        let t = pa.segments.iter().find(|t| t.uri == s.uri).expect("common");
        assert_eq!(
            (s.msn, s.duration, &s.parts),
            (t.msn, t.duration, &t.parts),
            "{}",
            s.uri
        );
    }
    assert_eq!(pa.map, pb.map, "init segments differ");
    // A segment named in A's playlist, fetched from B, is the same bytes; so are its parts,
    // its TS form and the init segment.
    let last = common.last().expect("common");
    for uri in [
        Some(&last.uri),
        pa.map.as_ref(),
        last.parts.first().map(|p| &p.0),
    ]
    .into_iter()
    .flatten()
    {
        let path = resolve("/live/same.m3u8", uri);
        let (x, y) = (get(a.http, &path), get(b.http, &path));
        assert_eq!((x.status, y.status), (200, 200), "{path}");
        assert!(
            x.body == y.body,
            "{path}: {} vs {} bytes",
            x.body.len(),
            y.body.len()
        );
    }
    let ts = last.uri.replace(".m4s", ".ts");
    let path = resolve("/live/same.m3u8", &ts);
    let (x, y) = (get(a.http, &path), get(b.http, &path));
    assert_eq!((x.status, y.status), (200, 200), "{path}");
    assert!(x.body == y.body, "{path} differs");
    // The origin cuts the same segments too.
    let po = wait_playlist(
        origin.http,
        "/live/same.m3u8",
        "origin",
        Duration::from_secs(20),
        |p| p.segments.len() >= 3,
    );
    let pa = Playlist::parse(&get(a.http, "/live/same.m3u8").text());
    let shared: Vec<_> = po
        .segments
        .iter()
        .filter(|s| pa.segments.iter().any(|t| t.uri == s.uri))
        .collect();
    assert!(!shared.is_empty(), "origin: {po:?}\nA: {pa:?}");
    let path = resolve("/live/same.m3u8", &shared[shared.len() - 1].uri);
    assert!(
        get(origin.http, &path).body == get(a.http, &path).body,
        "{path}: origin and edge differ"
    );
}

#[test]
fn ll_hls_blocking_reload_preload_hint_and_delta_updates() {
    let origin = NodeProc::start(&["--hls-target-duration", "1s", "--hls-window-segments", "12"]);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/ll"), StreamSpec::default());
    let path = "/live/ll.m3u8";
    let p = wait_playlist(origin.http, path, "parts", Duration::from_secs(20), |p| {
        !p.segments.is_empty() && !p.open_parts.is_empty()
    });
    let text = get(origin.http, path).text();
    assert!(
        text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK="),
        "{text}"
    );
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.300"), "{text}");
    assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:20"), "{text}");

    // Ask for the part after the last one listed: the answer comes when it exists, with it.
    let msn = p.next_msn();
    let next_part = p.open_parts.len();
    let q = format!("{path}?_HLS_msn={msn}&_HLS_part={next_part}");
    let r = get(origin.http, &q);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = Playlist::parse(&r.text());
    let has_it = got.open_parts.len() > next_part && got.next_msn() == msn || got.next_msn() > msn;
    assert!(
        has_it,
        "blocking answer lacks part {msn}.{next_part}:\n{}",
        r.text()
    );
    assert!(
        r.elapsed < Duration::from_millis(1500),
        "took {:?}",
        r.elapsed
    );
    assert!(
        r.header("cache-control")
            .is_some_and(|c| c.contains("max-age"))
    );
    // Not before: a part two ahead takes at least one more part duration.
    let p = Playlist::parse(&get(origin.http, path).text());
    let ahead = format!(
        "{path}?_HLS_msn={}&_HLS_part={}",
        p.next_msn(),
        p.open_parts.len() + 1
    );
    let r = get(origin.http, &ahead);
    assert_eq!(r.status, 200);
    assert!(
        r.elapsed >= Duration::from_millis(150),
        "answered too soon: {:?}",
        r.elapsed
    );
    // Too far ahead: 400 at once.
    let r = get(
        origin.http,
        &format!("{path}?_HLS_msn={}", p.next_msn() + 5),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.elapsed < Duration::from_millis(500));

    // The preload hint: requested before it exists, answered when it does.
    let p = Playlist::parse(&get(origin.http, path).text());
    let hint = p.preload_hint.clone().expect("preload hint");
    let r = get(origin.http, &resolve(path, &hint));
    assert_eq!(r.status, 200, "hint {hint}: {}", r.text());
    assert!(r.body.windows(4).any(|w| w == b"moof"), "not a fragment");
    let later = Playlist::parse(&get(origin.http, path).text());
    let listed = later
        .segments
        .iter()
        .flat_map(|s| s.parts.iter())
        .chain(later.open_parts.iter())
        .any(|(u, _)| *u == hint);
    assert!(listed, "hinted {hint} never listed:\n{later:?}");

    // Delta update: old segments skipped, the rest identical to the full playlist.
    let full = wait_playlist(
        origin.http,
        path,
        "8 s of segments",
        Duration::from_secs(30),
        |p| p.segments.iter().map(|s| s.duration).sum::<f64>() >= 8.5,
    );
    let r = get(origin.http, &format!("{path}?_HLS_skip=YES"));
    let delta = Playlist::parse(&r.text());
    assert!(delta.skipped > 0, "no EXT-X-SKIP:\n{}", r.text());
    assert_eq!(delta.media_sequence, full.media_sequence);
    let tail: Vec<_> = full
        .segments
        .iter()
        .skip(delta.skipped as usize)
        .map(|s| (&s.uri, s.msn))
        .collect();
    let got: Vec<_> = delta.segments.iter().map(|s| (&s.uri, s.msn)).collect();
    assert_eq!(
        &got[..tail.len().min(got.len())],
        &tail[..tail.len().min(got.len())]
    );
    assert!(r.text().contains("#EXT-X-VERSION:9"));
}

#[test]
fn media_sequence_survives_failover_with_a_discontinuity() {
    let etcd = Etcd::start();
    let a = etcd.node("origin", &[]);
    let b = etcd.node("origin", &[]);
    let edge = etcd.node("edge", &[]);
    let mut publisher = FfmpegPublisher::start(&a.rtmp_url("live/fo"), StreamSpec::default());
    let path = "/live/fo.m3u8";
    let before = wait_playlist(
        edge.http,
        path,
        "3 segments",
        Duration::from_secs(20),
        |p| p.segments.len() >= 3,
    );
    // The encoder moves to origin B (as after a network drop or an origin failure).
    publisher
        .proc
        .signal_and_wait("KILL", Duration::from_secs(5));
    let _publisher = FfmpegPublisher::start(&b.rtmp_url("live/fo"), StreamSpec::default());
    let mut last_next = before.next_msn();
    let mut last_first = before.media_sequence;
    let after = wait_playlist(
        edge.http,
        path,
        "a discontinuity after the move",
        Duration::from_secs(30),
        |p| {
            assert!(
                p.media_sequence >= last_first,
                "media sequence went back: {} -> {}",
                last_first,
                p.media_sequence
            );
            assert!(p.next_msn() >= last_next, "next msn went back");
            last_first = p.media_sequence;
            last_next = p.next_msn();
            p.segments
                .iter()
                .any(|s| s.discontinuity && s.msn >= before.next_msn())
        },
    );
    assert!(after.next_msn() > before.next_msn());
    // The segments after the discontinuity play.
    let p = wait_playlist(
        edge.http,
        path,
        "2 segments after it",
        Duration::from_secs(20),
        |p| {
            let d = p
                .segments
                .iter()
                .position(|s| s.discontinuity)
                .unwrap_or(usize::MAX);
            p.segments.len() >= d.saturating_add(2)
        },
    );
    let d = p
        .segments
        .iter()
        .position(|s| s.discontinuity)
        .expect("discontinuity");
    let uris = [
        p.map.as_deref().expect("map"),
        &p.segments[d].uri,
        &p.segments[d + 1].uri,
    ];
    let file = tmp("after-failover.mp4");
    download(edge.http, path, &uris, &file);
    let played = harness::ffmpeg_decode_file(&file);
    assert!(played.ok && played.video_frames >= 25, "{played:?}");
}

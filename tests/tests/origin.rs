//! The origin end to end: real ffmpeg publishes, real ffmpeg/rtmpdump and our own client play.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::rtmp::ClientEvent;
use harness::rtmp::{Client, first_video_frame, wait_playable};
use harness::{FfmpegPublisher, Origin, StreamSpec, ffmpeg_decode_file, ffmpeg_play, require};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_plays_over_rtmp_http_flv_and_rtmpdump() {
    require("rtmpdump");
    let origin = Origin::start(&[]);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/cam"), StreamSpec::default());
    wait_playable(&origin, "live/cam").await;

    let rtmp_url = origin.rtmp_url("live/cam");
    let flv_url = origin.flv_url("live/cam");
    let rtmp =
        tokio::task::spawn_blocking(move || ffmpeg_play(&rtmp_url, 4, Duration::from_secs(20)));
    let flv =
        tokio::task::spawn_blocking(move || ffmpeg_play(&flv_url, 4, Duration::from_secs(20)));
    let dump = std::env::temp_dir().join(format!("livecdn-rtmpdump-{}.flv", origin.rtmp.port()));
    let dump_path = dump.clone();
    let url = origin.rtmp_url("live/cam");
    let rtmpdump = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args([
                "15", "rtmpdump", "--live", "--quiet", "--stop", "4", "-r", &url, "-o",
            ])
            .arg(&dump_path)
            .status()
    });
    for (name, played) in [
        ("rtmp", rtmp.await.expect("join")),
        ("http-flv", flv.await.expect("join")),
    ] {
        assert!(played.ok, "{name} player failed: {}", played.stderr);
        // 4 s at 25 fps, every frame decoded without error.
        assert!(
            (98..=101).contains(&played.video_frames),
            "{name}: {} video frames",
            played.video_frames
        );
        assert!(
            played.audio_frames > 150,
            "{name}: {} audio frames",
            played.audio_frames
        );
    }
    let _ = rtmpdump.await.expect("join");
    let decoded = ffmpeg_decode_file(&dump);
    let _ = std::fs::remove_file(&dump);
    assert!(
        decoded.ok,
        "rtmpdump output does not decode: {}",
        decoded.stderr
    );
    assert!(
        decoded.video_frames >= 75,
        "rtmpdump: {} video frames",
        decoded.video_frames
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_stream_player_starts_on_a_keyframe_within_200ms() {
    let origin = Origin::start(&[]);
    // A 2 s GOP: joining mid-GOP without a GOP cache would wait up to 2 s for a keyframe.
    let spec = StreamSpec {
        gop: 50,
        ..StreamSpec::default()
    };
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/gop"), spec);
    wait_playable(&origin, "live/gop").await;
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(370 + i * 130)).await;
        let (elapsed, frame) =
            first_video_frame(origin.rtmp, "live/gop", Duration::from_secs(5)).await;
        let info = frame.video_info().expect("video");
        assert!(
            info.keyframe,
            "join {i}: first video frame is not a keyframe"
        );
        assert!(
            elapsed < Duration::from_millis(200),
            "join {i}: first frame after {elapsed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_is_refused_and_first_keeps_going() {
    let origin = Origin::start(&[]);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/one"), StreamSpec::default());
    wait_playable(&origin, "live/one").await;

    // A player that watches throughout.
    let mut watcher = Client::connect(origin.rtmp, "live").await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(10);
    watcher.play("one", deadline).await.expect("play");

    let mut intruder = Client::connect(origin.rtmp, "live").await.expect("connect");
    let refused = intruder
        .publish("one", Instant::now() + Duration::from_secs(5))
        .await
        .expect_err("second publish must be refused");
    match refused {
        ClientEvent::Status { code, .. } => assert_eq!(code, "NetStream.Publish.BadName"),
        other => panic!("unexpected answer {other:?}"),
    }
    // The first stream is undisturbed: the watcher keeps getting video with no gap.
    let mut last = Instant::now();
    let mut frames = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let m = watcher
            .next_media(Instant::now() + Duration::from_secs(2))
            .await
            .expect("media keeps flowing");
        if m.is_video() {
            assert!(m.at - last < Duration::from_millis(500), "gap in video");
            last = m.at;
            frames += 1;
        }
    }
    assert!(frames >= 40, "{frames} video frames in 2 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_stream_is_not_found_after_the_wait() {
    let origin = Origin::start(&["--media-play-wait", "500ms"]);
    let start = Instant::now();
    let mut c = Client::connect(origin.rtmp, "live").await.expect("connect");
    let err = c
        .play("nothing", Instant::now() + Duration::from_secs(5))
        .await
        .expect_err("not found");
    match err {
        ClientEvent::Status { code, .. } => assert_eq!(code, "NetStream.Play.StreamNotFound"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(start.elapsed() >= Duration::from_millis(450));
    let (status, body) = origin.http_get("/live/nothing.flv");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"status\":404"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_that_starts_first_gets_the_stream() {
    let origin = Origin::start(&["--media-play-wait", "10s"]);
    let url = origin.rtmp_url("live/early");
    let player = tokio::task::spawn_blocking({
        let url = url.clone();
        move || ffmpeg_play(&url, 3, Duration::from_secs(30))
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let _publisher = FfmpegPublisher::start(&url, StreamSpec::default());
    let played = player.await.expect("join");
    assert!(played.ok, "{}", played.stderr);
    assert!(played.video_frames >= 70, "{} frames", played.video_frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_publisher_is_dropped() {
    let origin = Origin::start(&["--rtmp-publish-idle-timeout", "1s"]);
    let mut c = Client::connect(origin.rtmp, "live").await.expect("connect");
    c.publish("quiet", Instant::now() + Duration::from_secs(5))
        .await
        .expect("publish accepted");
    let start = Instant::now();
    // The server closes the connection: next_event ends.
    while c
        .next_event(Instant::now() + Duration::from_secs(5))
        .await
        .is_some()
    {}
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "dropped after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_players_cleanly_and_exits() {
    let mut origin = Origin::start(&["--shutdown-grace", "3s"]);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/bye"), StreamSpec::default());
    wait_playable(&origin, "live/bye").await;
    let mut player = Client::connect(origin.rtmp, "live").await.expect("connect");
    player
        .play("bye", Instant::now() + Duration::from_secs(5))
        .await
        .expect("play");
    // An HTTP-FLV player reading raw bytes until the body ends.
    let mut http = TcpStream::connect(origin.http).expect("http");
    write!(http, "GET /live/bye.flv HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    http.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match http.read(&mut buf) {
                Ok(0) => return (true, all),
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(_) => return (false, all),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = origin.proc.signal_and_wait("TERM", Duration::from_secs(6));
    assert!(took < Duration::from_secs(4), "exit took {took:?}");
    // The RTMP player was told: StreamEOF or a Play.Stop status before the close.
    let mut told = false;
    while let Some(e) = player
        .next_event(Instant::now() + Duration::from_secs(2))
        .await
    {
        match e {
            ClientEvent::StreamEof => told = true,
            ClientEvent::Status { code, .. } if code == "NetStream.Play.Stop" => told = true,
            _ => {}
        }
    }
    assert!(told, "player got no end-of-stream");
    let (clean, body) = reader.join().expect("join");
    assert!(clean, "HTTP-FLV connection did not end cleanly");
    // The play owns its connection (see tests/tests/http_flv.rs): the body runs until the
    // close, which comes after a whole last tag.
    let split = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&body[..split]).to_lowercase();
    assert!(head.contains("connection: close"), "{head}");
    let flv = &body[split + 4..];
    assert!(flv.starts_with(b"FLV\x01"), "no FLV header");
    let mut reader = common::flv::FlvReader::without_header(16 << 20);
    let mut rest = bytes::BytesMut::from(&flv[13..]);
    let mut tags = 0;
    while reader
        .decode(&mut rest)
        .expect("well-formed tags")
        .is_some()
    {
        tags += 1;
    }
    assert!(tags > 0, "no tag before the end");
    assert!(rest.is_empty(), "HTTP-FLV body ends in the middle of a tag");
}

/// A player whose socket is often full: the fan-out's direct writes stop part-way through a
/// frame and the player's own task finishes it before anything else goes out. Every message
/// must still arrive whole and in order, and nothing is dropped for a player that keeps up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_whose_socket_fills_gets_every_frame_whole() {
    let origin = Origin::start(&["--net-send-buffer", "4096"]);
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/tight"), StreamSpec::default());
    wait_playable(&origin, "live/tight").await;
    let mut c = Client::connect_slow_reader(origin.rtmp, "live", 4096, Duration::from_millis(5))
        .await
        .expect("connect");
    c.play("tight", Instant::now() + Duration::from_secs(10))
        .await
        .expect("play");
    let end = Instant::now() + Duration::from_secs(4);
    let (mut video, mut audio, mut last_ts) = (0, 0, None);
    while Instant::now() < end {
        let m = c
            .next_media(end + Duration::from_secs(5))
            .await
            .expect("the stream goes on, every message well-formed");
        if m.is_video() {
            let info = m.video_info().expect("a whole, parsable video tag");
            assert!(
                last_ts.is_none_or(|t| m.timestamp >= t),
                "video went backwards"
            );
            last_ts = Some(m.timestamp);
            video += usize::from(!info.sequence_header);
        } else {
            audio += 1;
        }
    }
    assert!(video >= 90, "{video} video frames in 4 s");
    assert!(audio >= 150, "{audio} audio frames in 4 s");
    let dropped = origin.metric("livecdn_media_frames_dropped_total", "");
    assert_eq!(dropped, 0.0, "frames dropped for a player that keeps up");
}

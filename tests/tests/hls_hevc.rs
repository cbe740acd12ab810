//! HEVC end to end: an Enhanced RTMP publisher (`hvc1` SequenceStart, CodedFrames and
//! CodedFramesX) plus legacy AAC into an origin; a cold edge pulls it through etcd and serves
//! it as LL-HLS fMP4 (`hvc1` sample entry) and MPEG-TS, both of which ffprobe identifies and
//! ffmpeg decodes without an error.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::etcd::Etcd;
use harness::hls::{Playlist, download, get, resolve, wait_playlist};
use harness::publish::{Program, Publisher, aac_tags_from_adts, hevc_tags};
use harness::{require, wait_for};

const FPS: u32 = 25;
const SECONDS: u32 = 6;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("livecdn-hls-hevc-{}-{name}", std::process::id()))
}

fn ffmpeg(args: &[&str], out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

/// 6 s of testsrc2 as HEVC (one IDR per second, no B-frames) and of a sine as AAC, as the
/// tags an Enhanced RTMP encoder would send, looping with continuing timestamps.
fn program() -> Program {
    let hevc = tmp("src.hevc");
    let rate = format!("testsrc2=size=320x240:rate={FPS}");
    let secs = SECONDS.to_string();
    let x265 = format!("keyint={FPS}:min-keyint={FPS}:bframes=0:scenecut=0:log-level=error");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            &rate,
            "-t",
            &secs,
            "-c:v",
            "libx265",
            "-x265-params",
            &x265,
            "-f",
            "hevc",
        ],
        &hevc,
    );
    let aac = tmp("src.aac");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            &secs,
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "adts",
        ],
        &aac,
    );
    let stream = harness::hevc::from_annex_b(&std::fs::read(&hevc).expect("read hevc"), FPS)
        .expect("parse the HEVC stream");
    let (aac_header, audio) =
        aac_tags_from_adts(&std::fs::read(&aac).expect("read aac")).expect("parse the ADTS");
    let _ = std::fs::remove_file(hevc);
    let _ = std::fs::remove_file(aac);
    assert_eq!((stream.track.width, stream.track.height), (320, 240));
    assert_eq!(stream.samples.len(), (FPS * SECONDS) as usize);
    assert!(stream.samples[0].keyframe && stream.samples[FPS as usize].keyframe);
    let (hevc_header, video) = hevc_tags(&stream);
    Program::new(
        vec![hevc_header, aac_header],
        vec![video, audio],
        SECONDS * 1000,
    )
}

/// ffprobe's `key=value` stream entries, one map per stream.
fn probe_streams(file: &Path) -> Vec<HashMap<String, String>> {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("stream=index,codec_type,codec_name,codec_tag_string,width,height")
        .args(["-of", "default=noprint_wrappers=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut streams = Vec::new();
    let mut current = HashMap::new();
    for line in text.lines() {
        match line.trim() {
            "[STREAM]" => current = HashMap::new(),
            "[/STREAM]" => streams.push(std::mem::take(&mut current)),
            l => {
                if let Some((k, v)) = l.split_once('=') {
                    current.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    streams
}

/// Downloads the init segment (fMP4) and the last two complete segments, checks what ffprobe
/// says about the video and that ffmpeg decodes every frame without an error.
fn check(addr: SocketAddr, path: &str, p: &Playlist, ext: &str, tag: Option<&str>) {
    let n = p.segments.len();
    assert!(n >= 2, "need two segments: {p:?}");
    let mut uris: Vec<&str> = p.map.iter().map(String::as_str).collect();
    uris.extend([p.segments[n - 2].uri.as_str(), &p.segments[n - 1].uri]);
    let file = tmp(&format!("two.{ext}"));
    download(addr, path, &uris, &file);

    let streams = probe_streams(&file);
    let video = streams
        .iter()
        .find(|s| s.get("codec_type").map(String::as_str) == Some("video"))
        .unwrap_or_else(|| panic!("{ext}: no video stream: {streams:?}"));
    let field = |k: &str| video.get(k).map(String::as_str);
    assert_eq!(field("codec_name"), Some("hevc"), "{ext}: {video:?}");
    if let Some(tag) = tag {
        assert_eq!(field("codec_tag_string"), Some(tag), "{ext}: {video:?}");
    }
    assert_eq!(
        (field("width"), field("height")),
        (Some("320"), Some("240")),
        "{ext}: {video:?}"
    );
    assert!(
        streams
            .iter()
            .any(|s| s.get("codec_name").map(String::as_str) == Some("aac")),
        "{ext}: no AAC stream: {streams:?}"
    );

    let played = harness::ffmpeg_decode_file(&file);
    assert!(played.ok, "{ext}: decode: {}", played.stderr);
    let seconds = p.segments[n - 2].duration + p.segments[n - 1].duration;
    let expected = (seconds * f64::from(FPS)).round() as usize;
    assert!(
        played.video_frames + 1 >= expected,
        "{ext}: {} video frames decoded for {seconds} s",
        played.video_frames
    );
    assert!(played.audio_frames > 0, "{ext}: no audio decoded");
    let _ = std::fs::remove_file(file);
}

#[test]
fn hevc_over_enhanced_rtmp_reaches_hls_as_hvc1_and_ts() {
    require("ffmpeg");
    let program = program();
    let etcd = Etcd::start();
    let origin = etcd.node("origin", &[]);
    let edge = etcd.node("edge", &[]);
    let mut publisher = Publisher::start(origin.rtmp, "live", "hevc", program);
    publisher.wait_publishing(Duration::from_secs(10));
    wait_for(
        "the origin to have the stream",
        Duration::from_secs(10),
        || origin.api_get("/api/v1/streams/live/hevc").0 == 200,
    );

    // LL-HLS fMP4 from the cold edge: an init segment named by its content, `hvc1` samples.
    let path = "/live/hevc.m3u8";
    let p = wait_playlist(
        edge.http,
        path,
        "2 segments on the edge",
        Duration::from_secs(30),
        |p| p.segments.len() >= 2,
    );
    let map = p.map.as_deref().expect("EXT-X-MAP");
    let init = map
        .strip_prefix("hevc/init-")
        .and_then(|m| m.strip_suffix(".mp4"))
        .unwrap_or_else(|| panic!("EXT-X-MAP URI {map}"));
    assert!(
        init.len() == 8 && init.chars().all(|c| c.is_ascii_hexdigit()),
        "EXT-X-MAP URI {map}"
    );
    assert!(p.segments.iter().all(|s| s.uri.ends_with(".m4s")), "{p:?}");
    let init_bytes = get(edge.http, &resolve(path, map)).body;
    assert!(
        init_bytes.windows(4).any(|w| w == b"hvc1") && init_bytes.windows(4).any(|w| w == b"hvcC"),
        "init segment lacks an hvc1 sample entry with hvcC"
    );
    check(edge.http, path, &p, "mp4", Some("hvc1"));

    // The MPEG-TS playlist of the same stream.
    let ts_path = "/live/hevc/ts.m3u8";
    let ts = wait_playlist(
        edge.http,
        ts_path,
        "2 TS segments on the edge",
        Duration::from_secs(20),
        |p| p.segments.len() >= 2,
    );
    assert!(ts.map.is_none() && ts.segments.iter().all(|s| s.uri.ends_with(".ts")));
    check(edge.http, ts_path, &ts, "ts", None);

    assert!(
        publisher
            .stats
            .video_tags
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    publisher.stop().expect("publisher");
}

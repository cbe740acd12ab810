//! The fMP4 muxer against real encoders and decoders: H.264 (with B-frames) + AAC from an FLV
//! that ffmpeg wrote, read with the project's FLV reader, muxed into an init segment and
//! LL-HLS-sized fragments, then probed and fully decoded by ffprobe/ffmpeg. Also video-only,
//! audio-only and HEVC (from an Annex-B stream via `harness::hevc`).

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::BytesMut;
use common::flv::{FlvReader, frame_from_message};
use common::fmp4;
use common::hls::{AudioTrack, Sample, TrackKind, Tracks, VideoTrack};
use common::media::MediaFrame;
use harness::{Scratch, require};
use serde_json::Value;

fn ffmpeg(args: &[&str]) {
    require("ffmpeg");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 4 s of 320x240 H.264 at 25 fps with B-frames (so composition offsets matter) + AAC.
fn h264_aac_flv(dir: &Scratch) -> PathBuf {
    let flv = dir.path("in.flv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "25",
        "-bf",
        "2",
        "-c:a",
        "aac",
        "-f",
        "flv",
        flv.to_str().expect("utf-8 path"),
    ]);
    flv
}

/// Every frame of an FLV file, through the project's reader.
fn read_flv(path: &Path) -> Vec<MediaFrame> {
    let mut buf = BytesMut::from(&std::fs::read(path).expect("read flv")[..]);
    let mut reader = FlvReader::default();
    let mut frames = Vec::new();
    while let Some(tag) = reader.decode(&mut buf).expect("valid flv") {
        frames.extend(frame_from_message(
            tag.tag_type,
            tag.timestamp_ms,
            tag.payload,
        ));
    }
    assert!(buf.is_empty(), "trailing bytes in the flv");
    frames
}

/// The tracks of the first sequence headers.
fn tracks_of(frames: &[MediaFrame]) -> (VideoTrack, AudioTrack) {
    let video = frames
        .iter()
        .find_map(VideoTrack::from_sequence_header)
        .expect("video sequence header");
    let audio = frames
        .iter()
        .find_map(AudioTrack::from_sequence_header)
        .expect("audio sequence header");
    (video, audio)
}

fn samples_of(frames: &[MediaFrame], tracks: &Tracks) -> Vec<Sample> {
    frames
        .iter()
        .filter_map(|f| Sample::from_frame(f, u64::from(f.timestamp_ms), tracks))
        .collect()
}

/// Init segment + one fragment per ~`part_ms` of decode time (LL-HLS parts: they need not
/// start on a keyframe), sequence numbers from 1. Returns the file and the fragment count.
fn mux(tracks: &Tracks, samples: &[Sample], part_ms: u64) -> (Vec<u8>, usize) {
    let mut out = fmp4::init_segment(tracks).to_vec();
    let mut parts = 0;
    let mut start = 0;
    for i in 1..=samples.len() {
        if i == samples.len() || samples[i].dts >= samples[start].dts + part_ms {
            parts += 1;
            let frag = fmp4::fragment(tracks, parts as u32, &samples[start..i]);
            assert!(!frag.is_empty());
            out.extend_from_slice(&frag);
            start = i;
        }
    }
    (out, parts)
}

/// Top-level box types of a file, checking that the sizes tile it.
fn top_level_boxes(file: &[u8]) -> Vec<String> {
    let mut kinds = Vec::new();
    let mut pos = 0;
    while pos < file.len() {
        let size = u32::from_be_bytes(file[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        assert!(
            size >= 8 && pos + size <= file.len(),
            "bad box size at {pos}"
        );
        kinds.push(String::from_utf8_lossy(&file[pos + 4..pos + 8]).to_string());
        pos += size;
    }
    kinds
}

/// ffprobe's streams, with every frame decoded and counted (`nb_read_frames`).
fn probe_streams(path: &Path) -> Vec<Value> {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .arg("stream=codec_type,codec_name,codec_tag_string,width,height,nb_read_frames")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    v["streams"].as_array().cloned().unwrap_or_default()
}

fn frames_read(stream: &Value) -> u64 {
    stream["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// (pts, dts) of the packets of `select` ("v:0", "a:0") in file order, in the stream's
/// timebase (the track's timescale).
fn packets(path: &Path, select: &str) -> Vec<(i64, i64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", select])
        .args(["-show_entries", "packet=pts,dts", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l
                .split(',')
                .map(|v| v.trim().parse::<i64>().expect("timestamp"));
            (it.next().expect("pts"), it.next().expect("dts"))
        })
        .collect()
}

/// What `ffmpeg -v error -i FILE -f null -` prints: empty for a clean decode.
fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn count(samples: &[Sample], kind: TrackKind) -> usize {
    samples.iter().filter(|s| s.track == kind).count()
}

#[test]
fn h264_aac_with_b_frames_plays_frame_exact() {
    let dir = Scratch::new("av");
    let frames = read_flv(&h264_aac_flv(&dir));
    let (video, audio) = tracks_of(&frames);
    assert_eq!((video.width, video.height), (320, 240));
    let tracks = Tracks {
        video: Some(video),
        audio: Some(audio),
    };
    let samples = samples_of(&frames, &tracks);
    let video_samples: Vec<_> = samples
        .iter()
        .filter(|s| s.track == TrackKind::Video)
        .collect();
    assert_eq!(video_samples.len(), 100);
    assert!(
        video_samples.iter().any(|s| s.cts > 0),
        "the encoder made no B-frames: the test would not exercise composition offsets"
    );
    let codecs = fmp4::codecs(&tracks);
    assert!(
        codecs.starts_with("avc1.64") && codecs.ends_with(",mp4a.40.2"),
        "{codecs}"
    );

    let (file, parts) = mux(&tracks, &samples, 300);
    assert!(parts >= 12, "{parts} parts for 4 s");
    let kinds = top_level_boxes(&file);
    assert_eq!(kinds[..2], ["ftyp", "moov"]);
    assert_eq!(kinds.iter().filter(|k| *k == "moof").count(), parts);
    let path = dir.path("out.mp4");
    std::fs::write(&path, &file).expect("write mp4");

    let streams = probe_streams(&path);
    assert_eq!(streams.len(), 2, "{streams:?}");
    let v = &streams[0];
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["codec_tag_string"], "avc1");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(frames_read(v), 100, "every video frame decodes");
    let a = &streams[1];
    assert_eq!(a["codec_name"], "aac");
    let audio_count = count(&samples, TrackKind::Audio);
    assert!(audio_count > 150, "{audio_count} AAC frames for 4 s");
    assert_eq!(frames_read(a) as usize, audio_count);
    let errors = decode_errors(&path);
    assert!(errors.is_empty(), "decode errors: {errors}");

    // Decode times are the FLV's, and presentation times are dts + cts, at 90 kHz: the
    // decoder saw the right composition offsets in every fragment, not just the first.
    let got = packets(&path, "v:0");
    let expected: Vec<(i64, i64)> = video_samples
        .iter()
        .map(|s| {
            let dts = s.dts as i64 * 90;
            (dts + i64::from(s.cts) * 90, dts)
        })
        .collect();
    assert_eq!(got, expected);
    assert!(got.windows(2).all(|w| w[0].1 < w[1].1), "dts increase");
    let mut pts: Vec<i64> = got.iter().map(|p| p.0).collect();
    pts.sort_unstable();
    assert!(
        pts.windows(2).all(|w| w[1] - w[0] == 3600),
        "one frame every 40 ms"
    );

    let audio_packets = packets(&path, "a:0");
    assert_eq!(audio_packets.len(), audio_count);
    assert!(audio_packets.windows(2).all(|w| w[0].1 < w[1].1));
    let first_audio = samples.iter().find(|s| s.track == TrackKind::Audio);
    let first_audio_dts = first_audio.map_or(0, |s| s.dts as i64);
    assert_eq!(audio_packets[0].1, (first_audio_dts * 44_100 + 500) / 1000);
}

#[test]
fn video_only_and_audio_only_play() {
    let dir = Scratch::new("single");
    let frames = read_flv(&h264_aac_flv(&dir));
    let (video, audio) = tracks_of(&frames);

    let video_only = Tracks {
        video: Some(video),
        audio: None,
    };
    let samples = samples_of(&frames, &video_only);
    assert_eq!(count(&samples, TrackKind::Audio), 0);
    assert!(fmp4::codecs(&video_only).starts_with("avc1."));
    let (file, _) = mux(&video_only, &samples, 300);
    let path = dir.path("video.mp4");
    std::fs::write(&path, &file).expect("write mp4");
    let streams = probe_streams(&path);
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0]["codec_name"], "h264");
    assert_eq!(frames_read(&streams[0]), 100);
    assert_eq!(decode_errors(&path), "");

    let audio_only = Tracks {
        video: None,
        audio: Some(audio),
    };
    let samples = samples_of(&frames, &audio_only);
    assert_eq!(fmp4::codecs(&audio_only), "mp4a.40.2");
    let (file, _) = mux(&audio_only, &samples, 300);
    let path = dir.path("audio.mp4");
    std::fs::write(&path, &file).expect("write mp4");
    let streams = probe_streams(&path);
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0]["codec_name"], "aac");
    assert_eq!(streams[0]["codec_type"], "audio");
    assert_eq!(frames_read(&streams[0]) as usize, samples.len());
    assert_eq!(decode_errors(&path), "");
}

#[test]
fn hevc_from_annex_b_plays_as_hvc1() {
    let dir = Scratch::new("hevc");
    let es = dir.path("in.hevc");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-t",
        "2",
        "-c:v",
        "libx265",
        "-pix_fmt",
        "yuv420p",
        "-bf",
        "0",
        "-g",
        "25",
        "-x265-params",
        "log-level=error",
        "-f",
        "hevc",
        es.to_str().expect("utf-8 path"),
    ]);
    let stream = harness::hevc::from_annex_b(&std::fs::read(&es).expect("read es"), 25)
        .expect("vps, sps, pps and pictures");
    assert_eq!(stream.samples.len(), 50);
    assert!(stream.samples[0].keyframe);
    assert_eq!(stream.samples.iter().filter(|s| s.keyframe).count(), 2);
    assert_eq!((stream.track.width, stream.track.height), (320, 240));
    let tracks = Tracks {
        video: Some(stream.track),
        audio: None,
    };
    let codecs = fmp4::codecs(&tracks);
    assert!(codecs.starts_with("hvc1.1.6.L"), "{codecs}");

    let (file, parts) = mux(&tracks, &stream.samples, 300);
    assert!(parts >= 6);
    let path = dir.path("out.mp4");
    std::fs::write(&path, &file).expect("write mp4");
    let streams = probe_streams(&path);
    assert_eq!(streams.len(), 1, "{streams:?}");
    let v = &streams[0];
    assert_eq!(v["codec_name"], "hevc");
    assert_eq!(v["codec_tag_string"], "hvc1");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(frames_read(v), 50, "every HEVC frame decodes");
    assert_eq!(decode_errors(&path), "");
    let got = packets(&path, "v:0");
    assert_eq!(got.len(), 50);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, p)| *p == (i as i64 * 3600, i as i64 * 3600))
    );
}

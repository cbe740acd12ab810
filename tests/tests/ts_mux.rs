//! The MPEG-TS muxer against real ffmpeg: FLV and raw HEVC from ffmpeg's encoders become
//! Tracks and Samples, are muxed into segments, and ffmpeg/ffprobe must read the segments
//! (alone and back to back) without errors and decode every frame.

use std::path::Path;
use std::process::{Command, Output};

use bytes::{Bytes, BytesMut};
use common::flv::{FlvReader, VideoCodec};
use common::hls::{AudioTrack, Sample, TrackKind, Tracks, VideoTrack};
use common::ts::mux_segment;
use harness::{Scratch, require};
use serde_json::Value;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs ffmpeg quietly with `args` (the encoders of the test inputs).
fn ffmpeg(args: &[&str], output: &Path) {
    run(Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .arg(output));
}

fn ffprobe_json(input: &str, args: &[&str]) -> Value {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(input));
    serde_json::from_slice(&out.stdout).expect("ffprobe json")
}

/// (codec_name, width, height) of each stream.
fn streams(input: &str) -> Vec<(String, u64, u64)> {
    let v = ffprobe_json(input, &["-show_entries", "stream=codec_name,width,height"]);
    v["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["codec_name"].as_str().unwrap_or_default().to_string(),
                s["width"].as_u64().unwrap_or(0),
                s["height"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// (pts, dts) of every packet of the first video stream, in file order.
fn video_packet_times(input: &str) -> Vec<(i64, i64)> {
    let v = ffprobe_json(
        input,
        &["-select_streams", "v:0", "-show_entries", "packet=pts,dts"],
    );
    v["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| {
            (
                p["pts"].as_i64().expect("pts"),
                p["dts"].as_i64().expect("dts"),
            )
        })
        .collect()
}

/// Tracks from the sequence headers and Samples of every coded frame of an FLV file.
fn read_flv(path: &Path) -> (Tracks, Vec<Sample>) {
    let mut buf = BytesMut::from(&std::fs::read(path).expect("read flv")[..]);
    let mut reader = FlvReader::default();
    let mut tracks = Tracks::default();
    let mut samples = Vec::new();
    while let Some(tag) = reader.decode(&mut buf).expect("flv") {
        let Some(frame) = tag.into_frame() else {
            continue;
        };
        if let Some(v) = VideoTrack::from_sequence_header(&frame) {
            tracks.video = Some(v);
        } else if let Some(a) = AudioTrack::from_sequence_header(&frame) {
            tracks.audio = Some(a);
        } else if let Some(s) = Sample::from_frame(&frame, u64::from(frame.timestamp_ms), &tracks) {
            samples.push(s);
        }
    }
    assert!(buf.is_empty(), "trailing bytes in the flv");
    (tracks, samples)
}

/// Index of the first video keyframe at or after `dts` ms.
fn keyframe_at(samples: &[Sample], dts: u64) -> usize {
    samples
        .iter()
        .position(|s| s.track == TrackKind::Video && s.keyframe && s.dts >= dts)
        .expect("a keyframe to cut at")
}

fn count(samples: &[Sample], kind: TrackKind) -> usize {
    samples.iter().filter(|s| s.track == kind).count()
}

/// Muxes each part and writes it as seg{i}.ts; returns the paths.
fn write_segments(dir: &Scratch, tracks: &Tracks, parts: &[&[Sample]]) -> Vec<String> {
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let path = dir.path(&format!("seg{i}.ts"));
            let ts = mux_segment(tracks, part);
            assert_eq!(ts.len() % 188, 0);
            std::fs::write(&path, &ts).expect("write segment");
            path.to_string_lossy().into_owned()
        })
        .collect()
}

fn concat(paths: &[String]) -> String {
    format!("concat:{}", paths.join("|"))
}

/// Decodes every stream of `input` completely, errors fatal: (success, frames per stream, stderr).
fn decode(input: &str) -> (bool, Vec<usize>, String) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-xerror", "-err_detect", "explode", "-i", input])
        .args(["-map", "0", "-f", "framemd5", "-"])
        .output()
        .expect("run ffmpeg");
    let mut frames = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(Ok(stream)) = (!line.starts_with('#'))
            .then(|| line.split(',').next())
            .flatten()
            .map(|s| s.trim().parse::<usize>())
        else {
            continue;
        };
        if frames.len() <= stream {
            frames.resize(stream + 1, 0);
        }
        frames[stream] += 1;
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), frames, stderr)
}

/// Reads `input` through ffmpeg's demuxer and decoders at debug level, errors fatal; returns
/// whether that succeeded and what it logged.
fn ffmpeg_read_debug(input: &str) -> (bool, String) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "debug", "-xerror"])
        .args(["-err_detect", "explode", "-i", input, "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Decoding with `-v error` prints nothing, and the demuxer sees no continuity errors.
fn assert_reads_cleanly(input: &str) {
    let out = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i", input])
        .args(["-f", "null", "-"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "ffmpeg errors on {input}: {stderr}"
    );
    let (ok, log) = ffmpeg_read_debug(input);
    assert!(ok, "ffmpeg -xerror failed on {input}");
    for bad in [
        "Continuity check failed",
        "corrupt",
        "Invalid",
        "PES packet size mismatch",
    ] {
        let hit = log.lines().find(|l| l.contains(bad));
        assert!(hit.is_none(), "{input}: {hit:?}");
    }
}

/// Clears every discontinuity_indicator in a segment (what a muxer without them would write).
fn without_discontinuity_flags(ts: &[u8]) -> Vec<u8> {
    let mut out = ts.to_vec();
    for p in out.chunks_mut(188) {
        if p[3] & 0x20 != 0 && p[4] > 0 {
            p[5] &= !0x80;
        }
    }
    out
}

#[test]
fn h264_aac_flv_to_segments() {
    require("ffmpeg");
    require("ffprobe");
    let dir = Scratch::new("avc");
    let flv = dir.path("in.flv");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-bf",
            "2",
            "-c:a",
            "aac",
            "-f",
            "flv",
        ],
        &flv,
    );
    let (tracks, samples) = read_flv(&flv);
    assert_eq!(
        tracks.video.as_ref().map(|v| v.codec),
        Some(VideoCodec::Avc)
    );
    assert!(tracks.audio.is_some());
    assert_eq!(count(&samples, TrackKind::Video), 100);
    assert!(
        samples.iter().any(|s| s.cts > 0),
        "B-frames: composition offsets matter"
    );
    let audio_frames = count(&samples, TrackKind::Audio);

    let cut = keyframe_at(&samples, 2000);
    let (first, second) = samples.split_at(cut);
    let segs = write_segments(&dir, &tracks, &[first, second]);

    for seg in &segs {
        let s = streams(seg);
        assert_eq!(
            s,
            [("h264".into(), 320, 240), ("aac".into(), 0, 0)],
            "{seg}"
        );
    }
    let all = concat(&segs);
    assert_reads_cleanly(&all);

    let (ok, frames, stderr) = decode(&all);
    assert!(ok, "decode failed: {stderr}");
    assert_eq!(frames, [100, audio_frames]);

    // The second segment decodes on its own: its keyframe carries SPS/PPS (which the FLV
    // keeps only in the sequence header).
    let (ok, frames, stderr) = decode(&segs[1]);
    assert!(ok, "segment 1 alone: {stderr}");
    assert_eq!(
        frames,
        [
            count(second, TrackKind::Video),
            count(second, TrackKind::Audio)
        ]
    );

    // DTS strictly increasing across the cut; PTS exactly the FLV's (ms) at 90 kHz.
    let times = video_packet_times(&all);
    assert_eq!(times.len(), 100);
    assert!(times.windows(2).all(|w| w[0].1 < w[1].1), "dts: {times:?}");
    let flv_times = video_packet_times(&flv.to_string_lossy());
    let expected: Vec<(i64, i64)> = flv_times.iter().map(|&(p, d)| (p * 90, d * 90)).collect();
    assert_eq!(times, expected);

    // Control: without the discontinuity flags the counter restart at the cut is an error,
    // so the clean read above is the flags' doing.
    let broken = dir.path("seg1-noflag.ts");
    let seg1 = std::fs::read(&segs[1]).expect("read");
    std::fs::write(&broken, without_discontinuity_flags(&seg1)).expect("write");
    let (_, log) = ffmpeg_read_debug(&concat(&[
        segs[0].clone(),
        broken.to_string_lossy().into_owned(),
    ]));
    assert!(
        log.contains("Continuity check failed"),
        "control case did not trip ffmpeg's continuity check"
    );
}

#[test]
fn audio_only_and_video_only() {
    require("ffmpeg");
    require("ffprobe");
    let dir = Scratch::new("single");

    let audio_flv = dir.path("a.flv");
    ffmpeg(
        &[
            "-f", "lavfi", "-i", "sine", "-t", "2", "-c:a", "aac", "-f", "flv",
        ],
        &audio_flv,
    );
    let (tracks, samples) = read_flv(&audio_flv);
    assert!(tracks.video.is_none());
    let half = samples.len() / 2;
    let segs = write_segments(&dir, &tracks, &[&samples[..half], &samples[half..]]);
    let all = concat(&segs);
    assert_eq!(streams(&all), [("aac".into(), 0, 0)]);
    assert_reads_cleanly(&all);
    let (ok, frames, stderr) = decode(&all);
    assert!(ok, "{stderr}");
    assert_eq!(frames, [samples.len()]);

    let video_flv = dir.path("v.flv");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-bf",
            "2",
            "-f",
            "flv",
        ],
        &video_flv,
    );
    let (tracks, samples) = read_flv(&video_flv);
    assert!(tracks.audio.is_none());
    let cut = keyframe_at(&samples, 1000);
    let dir2 = Scratch::new("video");
    let segs = write_segments(&dir2, &tracks, &[&samples[..cut], &samples[cut..]]);
    let all = concat(&segs);
    assert_eq!(streams(&all), [("h264".into(), 320, 240)]);
    assert_reads_cleanly(&all);
    let (ok, frames, stderr) = decode(&all);
    assert!(ok, "{stderr}");
    assert_eq!(frames, [50]);
}

/// Splits an Annex B stream into NAL units (without start codes).
fn annex_b_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
            // A 4-byte start code leaves a zero before the next 3-byte one.
            while end > s && data[end - 1] == 0 {
                end -= 1;
            }
            &data[s..end]
        })
        .collect()
}

fn hevc_type(nal: &[u8]) -> u8 {
    (nal[0] >> 1) & 0x3f
}

/// Access units of an HEVC stream: a new one starts at a parameter set, AUD or prefix SEI
/// after a picture, or at a picture whose first_slice_segment_in_pic_flag is set.
fn hevc_access_units(nals: Vec<&[u8]>) -> Vec<Vec<&[u8]>> {
    let mut aus: Vec<Vec<&[u8]>> = Vec::new();
    let mut has_picture = false;
    for nal in nals {
        let t = hevc_type(nal);
        let vcl = t < 32;
        let starts = if vcl {
            nal[2] & 0x80 != 0 && has_picture
        } else {
            matches!(t, 32..=35 | 39) && has_picture
        };
        if starts || aus.is_empty() {
            aus.push(Vec::new());
            has_picture = false;
        }
        has_picture |= vcl;
        aus.last_mut().expect("au").push(nal);
    }
    aus
}

/// Emulation prevention bytes removed.
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A minimal HEVCDecoderConfigurationRecord: profile/tier/level copied from the SPS, 4:2:0
/// 8-bit, 4-byte NAL lengths, and one array each of VPS, SPS and PPS.
fn hvcc(vps: &[u8], sps: &[u8], pps: &[u8]) -> Bytes {
    // SPS: 2-byte NAL header, 1 byte of ids, then general_profile_tier_level (12 bytes).
    let ptl = &rbsp(sps)[3..15];
    let mut r = vec![1];
    r.extend_from_slice(ptl);
    r.extend_from_slice(&[0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 3]);
    for (t, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        r.extend_from_slice(&[0x80 | t, 0, 1]);
        r.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        r.extend_from_slice(nal);
    }
    Bytes::from(r)
}

#[test]
fn hevc_annex_b_to_segments() {
    require("ffmpeg");
    require("ffprobe");
    let dir = Scratch::new("hevc");
    let raw = dir.path("in.hevc");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "2",
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error:keyint=25:min-keyint=25:scenecut=0:bframes=0:open-gop=0",
            "-f",
            "hevc",
        ],
        &raw,
    );
    let data = std::fs::read(&raw).expect("read hevc");
    let aus = hevc_access_units(annex_b_nals(&data));
    assert_eq!(aus.len(), 50);

    let find = |t: u8| {
        aus.iter()
            .flatten()
            .find(|n| hevc_type(n) == t)
            .copied()
            .expect("parameter set")
    };
    let record = hvcc(find(32), find(33), find(34));
    let tracks = Tracks {
        video: Some(VideoTrack {
            codec: VideoCodec::Hevc,
            record,
            width: 320,
            height: 240,
        }),
        audio: None,
    };
    // As FLV/MP4 carry them: parameter sets only in the record, 4-byte lengths.
    let samples: Vec<Sample> = aus
        .iter()
        .enumerate()
        .map(|(i, au)| {
            let mut out = Vec::new();
            for nal in au.iter().filter(|n| !matches!(hevc_type(n), 32..=35)) {
                out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                out.extend_from_slice(nal);
            }
            Sample {
                track: TrackKind::Video,
                dts: i as u64 * 40,
                cts: 0,
                keyframe: au.iter().any(|n| (16..=23).contains(&hevc_type(n))),
                data: Bytes::from(out),
            }
        })
        .collect();
    assert!(samples[0].keyframe && samples[25].keyframe && !samples[1].keyframe);

    let segs = write_segments(&dir, &tracks, &[&samples[..25], &samples[25..]]);
    let all = concat(&segs);
    assert_eq!(streams(&all), [("hevc".into(), 320, 240)]);
    assert_reads_cleanly(&all);
    let (ok, frames, stderr) = decode(&all);
    assert!(ok, "{stderr}");
    assert_eq!(frames, [50]);
    // Each segment decodes alone: the muxer put VPS/SPS/PPS on its first keyframe.
    let (ok, frames, stderr) = decode(&segs[1]);
    assert!(ok, "{stderr}");
    assert_eq!(frames, [25]);
    let times = video_packet_times(&all);
    let expected: Vec<(i64, i64)> = (0..50).map(|i| (i * 3600, i * 3600)).collect();
    assert_eq!(times, expected);
}

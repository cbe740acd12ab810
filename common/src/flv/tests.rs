//! Tests of the FLV module against real encoder output (x264, x265, libaom, ffmpeg aac; see
//! common/tests/data) and hand-built Enhanced RTMP variants. Test-only code.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::media::{FrameKind, MediaFrame};

macro_rules! vector {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/", $name)).as_slice()
    };
}

const AVC_720: &[u8] = vector!("avc_high_1280x720.bin");
const AVC_1080: &[u8] = vector!("avc_main_1920x1080.bin");
const AVC_444: &[u8] = vector!("avc_high444_cqm_330x250.bin");
const HEVC_LEGACY: &[u8] = vector!("hevc_main_426x240_legacy.bin");
const HEVC_ENHANCED: &[u8] = vector!("hevc_main10_1920x1080_enhanced.bin");
const AV1: &[u8] = vector!("av1_main_320x240_enhanced.bin");
const AAC_44_STEREO: &[u8] = vector!("aac_lc_44100_stereo.bin");
const AAC_48_MONO: &[u8] = vector!("aac_lc_48000_mono.bin");
const SMALL_FLV: &[u8] = vector!("small_160x120.flv");

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The configuration record of a legacy AVC/HEVC sequence header (after the 5-byte header).
fn record(legacy: &[u8]) -> &[u8] {
    &legacy[5..]
}

fn video(codec: VideoCodec, profile: &str, level: &str, w: u32, h: u32) -> VideoConfig {
    VideoConfig {
        codec: Some(codec),
        profile: Some(profile.to_owned()),
        level: Some(level.to_owned()),
        width: w,
        height: h,
    }
}

#[test]
fn avc_sequence_headers_from_x264() {
    for payload in [AVC_720, AVC_1080, AVC_444] {
        let info = inspect_video(payload).expect("info");
        assert_eq!(info.codec, VideoCodec::Avc);
        assert!(info.sequence_header && info.keyframe && !info.coded_frame);
        assert!(!info.enhanced && !info.end_of_sequence);
        assert_eq!(info.data_offset, 5);
    }
    let cases = [
        (AVC_720, video(VideoCodec::Avc, "High", "3.1", 1280, 720)),
        // 1080 lines are coded as 1088 with frame cropping.
        (AVC_1080, video(VideoCodec::Avc, "Main", "4.0", 1920, 1080)),
        // 4:4:4 with scaling matrices in the SPS and odd cropping.
        (
            AVC_444,
            video(VideoCodec::Avc, "High 4:4:4 Predictive", "1.3", 330, 250),
        ),
    ];
    for (payload, want) in cases {
        assert_eq!(parse_video_config(payload), Some(want.clone()));
        // Same record in an Enhanced RTMP avc1 SequenceStart.
        let enhanced = cat(&[&[0x90], b"avc1", record(payload)]);
        let info = inspect_video(&enhanced).expect("info");
        assert!(info.enhanced && info.sequence_header);
        assert_eq!(parse_video_config(&enhanced), Some(want));
    }
    let sps = avc::parse_sps(&AVC_1080[13..13 + usize::from(AVC_1080[12])]).expect("sps");
    assert_eq!(sps.chroma_format_idc, 1);
    assert_eq!(sps.bit_depth_luma, 8);
}

#[test]
fn hevc_legacy_and_enhanced_forms() {
    let main = video(VideoCodec::Hevc, "Main", "2.0", 426, 240);
    let main10 = video(VideoCodec::Hevc, "Main 10", "4.0", 1920, 1080);
    let hevc10_record = &HEVC_ENHANCED[5..];

    let info = inspect_video(HEVC_LEGACY).expect("info");
    assert_eq!(info.codec, VideoCodec::Hevc);
    assert!(info.sequence_header && !info.enhanced);
    assert_eq!(parse_video_config(HEVC_LEGACY), Some(main.clone()));

    let info = inspect_video(HEVC_ENHANCED).expect("info");
    assert_eq!(info.codec, VideoCodec::Hevc);
    assert!(info.sequence_header && info.enhanced && info.keyframe);
    assert_eq!(info.data_offset, 5);
    assert_eq!(parse_video_config(HEVC_ENHANCED), Some(main10.clone()));

    // And each in the other form.
    let enhanced = cat(&[&[0x90], b"hvc1", record(HEVC_LEGACY)]);
    assert_eq!(parse_video_config(&enhanced), Some(main));
    let legacy = cat(&[&[0x1c, 0, 0, 0, 0], hevc10_record]);
    assert_eq!(parse_video_config(&legacy), Some(main10));
}

#[test]
fn hevc_coded_frames() {
    let nal = [0, 0, 0, 3, 0x26, 0x01, 0xaf];
    // Legacy: key frame, NALU, composition time 40.
    let legacy = cat(&[&[0x1c, 1, 0, 0, 40], &nal]);
    let info = inspect_video(&legacy).expect("info");
    assert!(info.keyframe && info.coded_frame && !info.sequence_header);
    assert_eq!((info.composition_time, info.data_offset), (40, 5));
    // Enhanced CodedFrames carries a signed composition time; -33 here.
    let enhanced = cat(&[&[0x91], b"hvc1", &[0xff, 0xff, 0xdf], &nal]);
    let info = inspect_video(&enhanced).expect("info");
    assert!(info.keyframe && info.coded_frame && info.enhanced);
    assert_eq!(info.composition_time, -33);
    assert_eq!((info.data_offset, info.data_len), (8, nal.len()));
    assert_eq!(parse_video_config(&enhanced), None);
    // CodedFramesX: no composition time. Inter frame.
    let x = cat(&[&[0xa3], b"hvc1", &nal]);
    let info = inspect_video(&x).expect("info");
    assert!(!info.keyframe && info.coded_frame);
    assert_eq!((info.composition_time, info.data_offset), (0, 5));
    // AV1 coded frames have no composition time either.
    let av1 = cat(&[&[0x91], b"av01", &[0x12, 0x00]]);
    assert_eq!(inspect_video(&av1).map(|i| i.data_offset), Some(5));
}

#[test]
fn av1_codec_configuration_record() {
    let info = inspect_video(AV1).expect("info");
    assert_eq!(info.codec, VideoCodec::Av1);
    assert!(info.sequence_header && info.enhanced);
    assert_eq!(
        parse_video_config(AV1),
        Some(video(VideoCodec::Av1, "Main", "2.0", 320, 240))
    );
    // MPEG2TSSequenceStart: AV1 video descriptor (tag 0x80, length, 4 av1C bytes).
    let ts = cat(&[&[0x95], b"av01", &[0x80, 4], &AV1[5..9]]);
    let info = inspect_video(&ts).expect("info");
    assert!(info.sequence_header);
    let config = parse_video_config(&ts).expect("config");
    assert_eq!(config.profile.as_deref(), Some("Main"));
    assert_eq!((config.width, config.height), (0, 0));
}

#[test]
fn enhanced_video_special_packets() {
    // Sequence end, metadata, command frames.
    let eos = inspect_video(&cat(&[&[0x82], b"hvc1"])).expect("eos");
    assert!(eos.end_of_sequence && !eos.coded_frame);
    let legacy_eos = inspect_video(&[0x17, 2, 0, 0, 0]).expect("eos");
    assert!(legacy_eos.end_of_sequence && legacy_eos.codec == VideoCodec::Avc);
    let meta = inspect_video(&cat(&[&[0x94], b"av01", &[2, 0, 9]])).expect("meta");
    assert!(meta.metadata && !meta.keyframe && meta.codec == VideoCodec::Av1);
    let command = inspect_video(&[0xd1, 0]).expect("command");
    assert!(command.command && command.codec == VideoCodec::Other(0));
    let legacy_command = inspect_video(&[0x57, 1]).expect("command");
    assert!(legacy_command.command && !legacy_command.keyframe);
    // Unknown packet type, truncated FourCC, unknown FourCC.
    assert_eq!(inspect_video(&cat(&[&[0x98], b"hvc1"])), None);
    assert_eq!(inspect_video(&[0x90, b'h', b'v']), None);
    let other = inspect_video(&cat(&[&[0x91], b"xyz1", &[1]])).expect("other");
    assert_eq!(other.codec, VideoCodec::OtherFourCc(*b"xyz1"));
    // Legacy codecs without a packet type.
    let vp6 = inspect_video(&[0x24, 0, 1]).expect("vp6");
    assert!(vp6.coded_frame && vp6.codec == VideoCodec::Other(4) && !vp6.keyframe);
    assert_eq!(inspect_video(&[]), None);
    assert_eq!(inspect_video(&[0x17, 9, 0, 0, 0]), None);
}

#[test]
fn enhanced_multitrack_and_modex() {
    let rec = record(HEVC_LEGACY);
    let main = video(VideoCodec::Hevc, "Main", "2.0", 426, 240);
    // OneTrack: shared FourCC, track id, no size.
    let one = cat(&[&[0x96, 0x00], b"hvc1", &[0], rec]);
    let info = inspect_video(&one).expect("one");
    assert!(info.multitrack && info.sequence_header && info.codec == VideoCodec::Hevc);
    assert_eq!(parse_video_config(&one), Some(main.clone()));
    // ManyTracks: shared FourCC, then (track id, UI24 size, data) per track.
    let len = (rec.len() as u32).to_be_bytes();
    let many = cat(&[
        &[0x96, 0x10],
        b"hvc1",
        &[0],
        &len[1..],
        rec,
        &[1],
        &len[1..],
        rec,
    ]);
    assert_eq!(parse_video_config(&many), Some(main));
    // ManyTracksManyCodecs: a FourCC per track; coded frames of av01 then hvc1.
    let frames = cat(&[
        &[0x96, 0x21],
        b"av01",
        &[0, 0, 0, 2, 0x12, 0],
        b"hvc1",
        &[1, 0, 0, 4],
    ]);
    let info = inspect_video(&frames).expect("many codecs");
    assert!(info.multitrack && info.coded_frame && info.keyframe);
    assert_eq!(info.codec, VideoCodec::Av1);
    assert_eq!((info.data_offset, info.data_len), (10, 2));
    // Nested Multitrack is invalid.
    assert_eq!(inspect_video(&[0x96, 0x06, b'h', b'v', b'c', b'1']), None);
    // ModEx (timestamp offset nano, 3 bytes) in front of hvc1 CodedFrames.
    let modex = cat(&[&[0x97, 2, 0, 1, 2, 0x01], b"hvc1", &[0, 0, 0, 0x26]]);
    let info = inspect_video(&modex).expect("modex");
    assert!(info.coded_frame && info.keyframe && info.codec == VideoCodec::Hevc);
    assert_eq!(info.data_offset, 13);
    // 16-bit ModEx size (0xff then UI16 + 1).
    let mut long = vec![0x97, 0xff, 0x01, 0x00];
    long.extend_from_slice(&[7; 257]);
    long.push(0x00);
    long.extend_from_slice(b"av01");
    long.extend_from_slice(&AV1[5..]);
    assert_eq!(parse_video_config(&long), parse_video_config(AV1));
    // A ModEx chain that runs off the end.
    assert_eq!(inspect_video(&[0x97, 5, 1, 2]), None);
    assert_eq!(inspect_video(&[0x97, 0, 0, 0x07, 0, 0, 0x07]), None);
}

#[test]
fn aac_sequence_headers_from_ffmpeg() {
    let cases = [(AAC_44_STEREO, 44_100, 2), (AAC_48_MONO, 48_000, 1)];
    for (payload, rate, channels) in cases {
        let info = inspect_audio(payload).expect("info");
        assert_eq!(info.codec, AudioCodec::Aac);
        assert!(info.sequence_header && !info.enhanced);
        let want = AudioConfig {
            codec: Some(AudioCodec::Aac),
            profile: Some("LC".to_owned()),
            sample_rate: rate,
            channels,
        };
        assert_eq!(parse_audio_config(payload), Some(want.clone()));
        let enhanced = cat(&[&[0x90], b"mp4a", &payload[2..]]);
        let info = inspect_audio(&enhanced).expect("info");
        assert!(info.enhanced && info.sequence_header);
        assert_eq!(parse_audio_config(&enhanced), Some(want));
    }
    let raw = inspect_audio(&[0xaf, 1, 0x21]).expect("raw");
    assert!(!raw.sequence_header);
    assert_eq!(parse_audio_config(&[0xaf, 1, 0x21]), None);
    assert_eq!(inspect_audio(&[0xaf]), None);
    assert_eq!(inspect_audio(&[]), None);
}

#[test]
fn other_audio_formats() {
    let mut opus_head = b"OpusHead".to_vec();
    opus_head.extend_from_slice(&[1, 2, 0x38, 1, 0x80, 0xbb, 0, 0, 0, 0, 0]);
    let opus = cat(&[&[0x90], b"Opus", &opus_head]);
    let info = inspect_audio(&opus).expect("opus");
    assert!(info.sequence_header && info.codec == AudioCodec::Opus);
    let config = parse_audio_config(&opus).expect("config");
    assert_eq!((config.sample_rate, config.channels), (48_000, 2));
    let frames = inspect_audio(&cat(&[&[0x91], b"Opus", &[0xfc]])).expect("frames");
    assert!(!frames.sequence_header && frames.enhanced);
    for (fourcc, codec) in [
        (b"fLaC", AudioCodec::Flac),
        (b"ac-3", AudioCodec::Ac3),
        (b"ec-3", AudioCodec::Eac3),
        (b".mp3", AudioCodec::Mp3),
    ] {
        let info = inspect_audio(&cat(&[&[0x90], fourcc])).expect("seq");
        assert_eq!(info.codec, codec);
        assert!(info.sequence_header);
    }
    let end = inspect_audio(&cat(&[&[0x92], b"Opus"])).expect("end");
    assert!(end.end_of_sequence);
    // Multitrack OneTrack AAC sequence start.
    let mt = cat(&[&[0x95, 0x00], b"mp4a", &[0], &AAC_48_MONO[2..]]);
    let info = inspect_audio(&mt).expect("multitrack");
    assert!(info.multitrack && info.sequence_header);
    assert_eq!(parse_audio_config(&mt).map(|c| c.sample_rate), Some(48_000));
    // Legacy MP3 with a frame header; legacy flags for others.
    let mp3 = parse_audio_config(&[0x2f, 0xff, 0xfb, 0x90, 0x44]).expect("mp3");
    assert_eq!(
        (mp3.codec, mp3.sample_rate, mp3.channels),
        (Some(AudioCodec::Mp3), 44_100, 2)
    );
    let pcm = parse_audio_config(&[0x3e, 0, 0]).expect("pcm");
    assert_eq!((pcm.sample_rate, pcm.channels), (44_100, 1));
    assert_eq!(inspect_audio(&[0x93, b'O']), None);
}

/// Every prefix and every single-bit flip of real headers: no panic, and a size is either
/// unknown or the true one (truncation can only lose information).
#[test]
fn hostile_video_and_audio_headers() {
    let videos = [AVC_720, AVC_1080, AVC_444, HEVC_LEGACY, HEVC_ENHANCED, AV1];
    for payload in videos {
        let full = parse_video_config(payload).expect("full");
        for len in 0..payload.len() {
            let cut = &payload[..len];
            let _ = inspect_video(cut);
            if let Some(c) = parse_video_config(cut) {
                assert!(c.width == 0 || c.width == full.width, "len {len}");
                assert!(c.height == 0 || c.height == full.height, "len {len}");
            }
        }
        let mut flipped = payload.to_vec();
        for i in 0..flipped.len().min(200) {
            for bit in 0..8 {
                flipped[i] ^= 1 << bit;
                let _ = inspect_video(&flipped);
                let _ = parse_video_config(&flipped);
                flipped[i] ^= 1 << bit;
            }
        }
    }
    for payload in [AAC_44_STEREO, AAC_48_MONO] {
        for len in 0..payload.len() {
            let _ = inspect_audio(&payload[..len]);
            let _ = parse_audio_config(&payload[..len]);
        }
        let mut flipped = payload.to_vec();
        for i in 0..flipped.len() {
            for bit in 0..8 {
                flipped[i] ^= 1 << bit;
                let _ = parse_audio_config(&flipped);
                flipped[i] ^= 1 << bit;
            }
        }
    }
    // Exp-Golomb bombs: long zero runs where ue(v) values are expected.
    let mut bomb = vec![
        0x17, 0, 0, 0, 0, 1, 100, 0, 31, 0xff, 0xe1, 0, 20, 0x67, 100, 0, 31,
    ];
    bomb.extend_from_slice(&[0; 17]);
    assert!(parse_video_config(&bomb).is_some_and(|c| c.width == 0));
}

fn read_all(reader: &mut FlvReader, data: &[u8], chunk: usize) -> Vec<FlvTag> {
    let mut buf = BytesMut::new();
    let mut tags = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(tag) = reader.decode(&mut buf).expect("decode") {
            tags.push(tag);
        }
    }
    assert!(buf.is_empty());
    tags
}

#[test]
fn reader_round_trips_a_real_file() {
    let mut reader = FlvReader::default();
    let tags = read_all(&mut reader, SMALL_FLV, SMALL_FLV.len());
    let header = reader.header().expect("header");
    assert!(header.has_audio && header.has_video && header.version == 1);
    assert!(tags.len() > 30);
    assert_eq!(tags[0].tag_type, TAG_SCRIPT);
    assert!(tags[0].payload.starts_with(b"\x02\x00\x0aonMetaData"));

    // Re-encoding gives back the file byte for byte.
    let mut out = BytesMut::from(&file_header(true, true)[..]);
    for tag in &tags {
        tag.encode(&mut out);
    }
    assert_eq!(&out[..], SMALL_FLV);

    // Any chunking gives the same tags.
    for chunk in [1, 7, 11, 15, 4096] {
        assert_eq!(read_all(&mut FlvReader::default(), SMALL_FLV, chunk), tags);
    }

    // Frames: sequence headers first, a keyframe GOP, monotonic timestamps.
    let frames: Vec<MediaFrame> = tags
        .iter()
        .cloned()
        .filter_map(FlvTag::into_frame)
        .collect();
    assert_eq!(frames.len(), tags.len());
    let video_seq = frames
        .iter()
        .find(|f| f.is_video() && f.sequence_header)
        .expect("video seq");
    assert!(!video_seq.keyframe);
    assert_eq!(
        parse_video_config(&video_seq.payload),
        Some(video(VideoCodec::Avc, "High", "1.0", 160, 120))
    );
    let audio_seq = frames
        .iter()
        .find(|f| f.is_audio() && f.sequence_header)
        .expect("audio");
    let audio = parse_audio_config(&audio_seq.payload).expect("audio config");
    assert_eq!((audio.sample_rate, audio.channels), (22_050, 1));
    let keyframes = frames.iter().filter(|f| f.keyframe).count();
    assert!(keyframes >= 1, "keyframes {keyframes}");
    let first_picture = frames.iter().find(|f| f.is_video() && !f.sequence_header);
    assert!(first_picture.is_some_and(|f| f.keyframe));
    let mut last = 0;
    for f in frames.iter().filter(|f| f.is_video()) {
        assert!(f.timestamp_ms >= last);
        last = f.timestamp_ms;
        // flv_wire is what the reader reads back.
        let mut buf = BytesMut::from(&joined(f)[..]);
        let tag = FlvReader::without_header(1 << 20)
            .decode(&mut buf)
            .expect("tag");
        assert_eq!(tag.map(|t| t.payload), Some(f.payload.clone()));
    }
}

#[test]
fn reader_survives_every_truncation() {
    let full = read_all(&mut FlvReader::default(), SMALL_FLV, SMALL_FLV.len()).len();
    for len in (0..SMALL_FLV.len()).step_by(37).chain(0..64) {
        let mut reader = FlvReader::default();
        let mut buf = BytesMut::from(&SMALL_FLV[..len]);
        let mut n = 0;
        while let Some(_tag) = reader.decode(&mut buf).expect("no error on a prefix") {
            n += 1;
        }
        assert!(n < full);
    }
}

#[test]
fn encode_then_decode_is_identity() {
    let frames = [
        frame_from_message(TAG_VIDEO, 0x1234_5678, Bytes::from_static(AVC_720)),
        frame_from_message(TAG_AUDIO, 0xffff_ffff, Bytes::from_static(AAC_48_MONO)),
        frame_from_message(
            TAG_SCRIPT,
            0,
            Bytes::from_static(b"\x02\x00\x0aonMetaData\x05"),
        ),
        frame_from_message(TAG_VIDEO, 40, Bytes::from_static(&[0x27, 1, 0, 0, 0, 9])),
    ];
    let mut out = BytesMut::new();
    for f in frames.iter().flatten() {
        encode_tag(f, &mut out);
    }
    let tags = read_all(&mut FlvReader::without_header(1 << 20), &out, out.len());
    assert_eq!(tags.len(), 4);
    for (tag, f) in tags.iter().zip(frames.iter().flatten()) {
        let want = FlvTag {
            tag_type: tag::tag_type(f.kind),
            timestamp_ms: f.timestamp_ms,
            payload: f.payload.clone(),
        };
        assert_eq!(tag, &want);
        // The wire form is the encoded tag, its payload part the frame's own bytes.
        let mut one = BytesMut::new();
        encode_tag(f, &mut one);
        assert_eq!(joined(f), &one[..]);
        assert_eq!(flv_wire(f)[1].as_ptr(), f.payload.as_ptr());
    }
    let f = frames[0].as_ref().expect("frame");
    assert_eq!(&flv_wire(f)[0][..8], &[9, 0, 0, 52, 0x34, 0x56, 0x78, 0x12]);
    assert_eq!(flv_wire(f)[0].as_ptr(), flv_wire(f)[0].as_ptr());
}

#[test]
fn frames_from_messages() {
    let seq = frame_from_message(TAG_VIDEO, 0, Bytes::from_static(AVC_720)).expect("seq");
    assert!(seq.sequence_header && !seq.keyframe && seq.kind == FrameKind::Video);
    let key = frame_from_message(TAG_VIDEO, 0, Bytes::from_static(&[0x17, 1, 0, 0, 0, 1]));
    assert!(key.is_some_and(|f| f.keyframe && !f.sequence_header));
    let garbage = frame_from_message(TAG_VIDEO, 0, Bytes::from_static(&[0x97]));
    assert!(garbage.is_some_and(|f| !f.keyframe && !f.sequence_header));
    let aac = frame_from_message(TAG_AUDIO, 0, Bytes::from_static(AAC_44_STEREO));
    assert!(aac.is_some_and(|f| f.sequence_header && f.is_audio()));
    let data = frame_from_message(TAG_SCRIPT, 0, Bytes::from_static(b"\x02"));
    assert!(data.is_some_and(|f| f.kind == FrameKind::Data));
    assert!(frame_from_message(TAG_VIDEO, 0, Bytes::new()).is_none());
    assert!(frame_from_message(20, 0, Bytes::from_static(b"x")).is_none());
    assert!(frame_from_message(TAG_VIDEO, 0, Bytes::from(vec![0x27; 0x0100_0000])).is_none());
}

#[test]
fn reader_errors() {
    let decode = |data: &[u8], max: u32| {
        let mut buf = BytesMut::from(data);
        FlvReader::new(max).decode(&mut buf)
    };
    assert_eq!(decode(b"FLX", 100), Err(FlvError::BadSignature));
    assert_eq!(decode(b"G", 100), Err(FlvError::BadSignature));
    assert_eq!(decode(b"FL", 100), Ok(None));
    assert_eq!(
        decode(b"FLV\x02\x05\x00\x00\x00\x09", 100),
        Err(FlvError::UnsupportedVersion(2))
    );
    assert_eq!(
        decode(b"FLV\x01\x05\x00\x00\x00\x05", 100),
        Err(FlvError::BadHeaderSize(5))
    );
    assert_eq!(
        decode(b"FLV\x01\x05\xff\x00\x00\x09", 100),
        Err(FlvError::BadHeaderSize(0xff00_0009))
    );
    let mut bad_prev0 = file_header(true, true).to_vec();
    bad_prev0[12] = 1;
    assert_eq!(
        decode(&bad_prev0, 100),
        Err(FlvError::BadPreviousTagSize {
            expected: 0,
            found: 1
        })
    );
    let head = file_header(false, true);
    assert_eq!(decode(&cat(&[&head, &[9, 0, 1, 0]]), 100), Ok(None));
    assert_eq!(
        decode(&cat(&[&head, &[9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]]), 100),
        Err(FlvError::TagTooLarge(256))
    );
    assert_eq!(
        decode(&cat(&[&head, &[0x29, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]]), 100),
        Err(FlvError::Encrypted)
    );
    let mut reader = FlvReader::without_header(100);
    let mut buf = BytesMut::from(&[9, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x17, 0, 0, 0, 13][..]);
    let err = FlvError::BadPreviousTagSize {
        expected: 12,
        found: 13,
    };
    assert_eq!(reader.decode(&mut buf), Err(err.clone()));
    // The reader stays failed.
    assert_eq!(reader.decode(&mut BytesMut::new()), Err(err));
}

#[test]
fn file_header_bytes() {
    assert_eq!(
        file_header(true, true),
        [b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0]
    );
    assert_eq!(file_header(false, true)[4], 1);
    assert_eq!(file_header(true, false)[4], 4);
}

/// A frame's FLV wire parts in one buffer.
fn joined(f: &MediaFrame) -> Vec<u8> {
    flv_wire(f).iter().flat_map(|b| b.iter().copied()).collect()
}

//! Unit tests of the fMP4 muxer on byte vectors: a small box walker parses what the muxer wrote
//! and checks sizes, offsets, times and flags; malformed inputs must never panic.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;

use super::*;
use crate::flv::{AudioCodec, VideoCodec};
use crate::hls::{AudioTrack, Sample, TrackKind, Tracks, VideoTrack};

// ---------------------------------------------------------------- box walker

/// One parsed box: type, and its body (after the 8-byte header) with the body's offset in
/// the buffer the walk started from.
#[derive(Debug, Clone, Copy)]
struct Bx<'a> {
    kind: [u8; 4],
    offset: usize,
    body: &'a [u8],
}

/// Boxes whose body is only child boxes, and how many bytes precede the children in the
/// others that have children.
fn child_skip(kind: &[u8; 4]) -> Option<usize> {
    match kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"stbl" | b"mvex" | b"moof" | b"traf" => {
            Some(0)
        }
        b"stsd" | b"dref" => Some(8),
        b"avc1" | b"hvc1" | b"av01" => Some(78),
        b"mp4a" => Some(28),
        _ => None,
    }
}

/// Splits `buf` (at absolute `offset`) into boxes; asserts that sizes tile it exactly.
fn split(buf: &[u8], offset: usize) -> Vec<Bx<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        assert!(
            buf.len() - pos >= 8,
            "truncated box header at {}",
            offset + pos
        );
        let size = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = buf[pos + 4..pos + 8].try_into().unwrap();
        assert!(
            size >= 8 && pos + size <= buf.len(),
            "box {} at {} has size {size}, {} bytes left",
            String::from_utf8_lossy(&kind),
            offset + pos,
            buf.len() - pos
        );
        out.push(Bx {
            kind,
            offset: offset + pos + 8,
            body: &buf[pos + 8..pos + size],
        });
        pos += size;
    }
    out
}

/// Checks every container's children tile its body; returns all boxes, depth first.
fn walk(buf: &[u8]) -> Vec<Bx<'_>> {
    fn rec<'a>(b: Bx<'a>, out: &mut Vec<Bx<'a>>) {
        out.push(b);
        if let Some(skip) = child_skip(&b.kind) {
            assert!(b.body.len() >= skip);
            for c in split(&b.body[skip..], b.offset + skip) {
                rec(c, out);
            }
        }
    }
    let mut out = Vec::new();
    for b in split(buf, 0) {
        rec(b, &mut out);
    }
    out
}

fn find<'a>(boxes: &[Bx<'a>], kind: &[u8; 4]) -> Vec<Bx<'a>> {
    boxes.iter().filter(|b| &b.kind == kind).copied().collect()
}

fn one<'a>(boxes: &[Bx<'a>], kind: &[u8; 4]) -> Bx<'a> {
    let found = find(boxes, kind);
    assert_eq!(found.len(), 1, "{}", String::from_utf8_lossy(kind));
    found[0]
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    duration: u32,
    size: u32,
    flags: u32,
    cts: i32,
}

/// One parsed traf.
#[derive(Debug)]
struct Traf {
    track_id: u32,
    tfhd_flags: u32,
    decode_time: u64,
    trun_version: u8,
    data_offset: i32,
    entries: Vec<Entry>,
}

/// Parses a fragment: (mfhd sequence, trafs, mdat body offset and length).
fn parse_fragment(frag: &[u8]) -> (u32, Vec<Traf>, usize, usize) {
    let top = split(frag, 0);
    assert_eq!(top.len(), 2, "moof + mdat");
    assert_eq!(&top[0].kind, b"moof");
    assert_eq!(&top[1].kind, b"mdat");
    let boxes = walk(frag);
    let mfhd = one(&boxes, b"mfhd");
    let sequence = u32_at(mfhd.body, 4);
    let moof_children = split(top[0].body, 8);
    assert_eq!(&moof_children[0].kind, b"mfhd", "mfhd comes first");
    let mut trafs = Vec::new();
    for traf in moof_children.iter().filter(|b| &b.kind == b"traf") {
        let kids = split(traf.body, traf.offset);
        let kinds: Vec<_> = kids.iter().map(|k| k.kind).collect();
        assert_eq!(kinds, [*b"tfhd", *b"tfdt", *b"trun"]);
        let (tfhd, tfdt, trun) = (kids[0].body, kids[1].body, kids[2].body);
        assert_eq!(tfdt[0], 1, "tfdt version 1");
        assert_eq!(tfdt.len(), 12);
        let flags = u32_at(trun, 0) & 0xff_ffff;
        assert_eq!(flags, 0xf01, "data offset + all per-sample fields");
        let count = u32_at(trun, 4) as usize;
        assert_eq!(trun.len(), 12 + 16 * count, "trun size matches its count");
        let entries = (0..count)
            .map(|i| {
                let e = 12 + 16 * i;
                Entry {
                    duration: u32_at(trun, e),
                    size: u32_at(trun, e + 4),
                    flags: u32_at(trun, e + 8),
                    cts: u32_at(trun, e + 12) as i32,
                }
            })
            .collect();
        trafs.push(Traf {
            track_id: u32_at(tfhd, 4),
            tfhd_flags: u32_at(tfhd, 0) & 0xff_ffff,
            decode_time: u64_at(tfdt, 4),
            trun_version: trun[0],
            data_offset: u32_at(trun, 8) as i32,
            entries,
        });
    }
    (sequence, trafs, top[1].offset, top[1].body.len())
}

// ---------------------------------------------------------------- inputs

/// avcC of High@3.1 with a stand-in SPS and PPS.
const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02, 0x68,
    0xee,
];

/// hvcC header of Main@L3.1 (profile 1, compatibility flags 1 and 2, progressive + frame-only
/// constraint bits 0xB0), no arrays.
const HVCC: &[u8] = &[
    0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 93, 0xf0, 0x00, 0xfc,
    0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x00,
];

/// av1C: main profile, level 4 (3.0), main tier, 8-bit 4:2:0.
const AV1C: &[u8] = &[0x81, 0x04, 0x0c, 0x00];

fn video_track(codec: VideoCodec, record: &[u8], width: u32, height: u32) -> VideoTrack {
    VideoTrack {
        codec,
        record: Bytes::copy_from_slice(record),
        width,
        height,
    }
}

fn aac(asc: &[u8], sample_rate: u32) -> AudioTrack {
    AudioTrack {
        codec: AudioCodec::Aac,
        asc: Bytes::copy_from_slice(asc),
        sample_rate,
        channels: 2,
    }
}

fn av_tracks() -> Tracks {
    Tracks {
        video: Some(video_track(VideoCodec::Avc, AVCC, 1280, 720)),
        audio: Some(aac(&[0x12, 0x10], 44_100)),
    }
}

fn video(dts: u64, cts: i32, keyframe: bool, data: &[u8]) -> Sample {
    Sample {
        track: TrackKind::Video,
        dts,
        cts,
        keyframe,
        data: Bytes::copy_from_slice(data),
    }
}

fn audio(dts: u64, data: &[u8]) -> Sample {
    Sample {
        track: TrackKind::Audio,
        dts,
        cts: 0,
        keyframe: true,
        data: Bytes::copy_from_slice(data),
    }
}

/// Interleaved A/V in decode order with B-frame style composition offsets.
fn av_samples() -> Vec<Sample> {
    vec![
        video(1000, 80, true, b"I-frame-0"),
        audio(1000, b"aac0"),
        video(1040, 120, false, b"P1"),
        audio(1023, b"aac-1"),
        video(1080, 0, false, b"B2-longer"),
        audio(1046, b"aac2"),
        video(1120, 0, false, b"B3"),
    ]
}

// ---------------------------------------------------------------- init segment

#[test]
fn init_segment_boxes_tile_and_carry_the_tracks() {
    let init = init_segment(&av_tracks());
    let top = split(&init, 0);
    let kinds: Vec<_> = top.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [*b"ftyp", *b"moov"]);
    assert_eq!(&top[0].body[..4], b"iso6");
    assert!(top[0].body.chunks(4).any(|c| c == b"cmfc"));

    let boxes = walk(&init);
    let mvhd = one(&boxes, b"mvhd");
    assert_eq!(u32_at(mvhd.body, 4), 0, "no wall-clock creation time");
    assert_eq!(find(&boxes, b"trak").len(), 2);

    let tkhds = find(&boxes, b"tkhd");
    assert_eq!(u32_at(tkhds[0].body, 12), 1, "video is track 1");
    assert_eq!(u32_at(tkhds[1].body, 12), 2, "audio is track 2");
    assert_eq!(u32_at(tkhds[0].body, 76), 1280 << 16, "16.16 width");
    assert_eq!(u32_at(tkhds[0].body, 80), 720 << 16, "16.16 height");

    let mdhds = find(&boxes, b"mdhd");
    assert_eq!(u32_at(mdhds[0].body, 12), 90_000);
    assert_eq!(u32_at(mdhds[1].body, 12), 44_100);
    let hdlrs = find(&boxes, b"hdlr");
    assert_eq!(&hdlrs[0].body[8..12], b"vide");
    assert_eq!(&hdlrs[1].body[8..12], b"soun");

    let avc1 = one(&boxes, b"avc1");
    assert_eq!(u16_at(avc1.body, 24), 1280);
    assert_eq!(u16_at(avc1.body, 26), 720);
    assert_eq!(one(&boxes, b"avcC").body, AVCC, "record as-is");

    let mp4a = one(&boxes, b"mp4a");
    assert_eq!(u16_at(mp4a.body, 16), 2, "channels");
    assert_eq!(u32_at(mp4a.body, 24), 44_100 << 16, "16.16 rate");
    let esds = one(&boxes, b"esds").body;
    let dcd = esds.iter().position(|&b| b == 0x04).unwrap();
    assert_eq!(esds[dcd + 5], 0x40, "objectTypeIndication MPEG-4 audio");
    assert!(
        esds.windows(7)
            .any(|w| w == [0x05, 0x80, 0x80, 0x80, 2, 0x12, 0x10])
    );

    let trex_ids: Vec<_> = find(&boxes, b"trex")
        .iter()
        .map(|t| u32_at(t.body, 4))
        .collect();
    assert_eq!(trex_ids, [1, 2]);
}

#[test]
fn init_segment_sample_entries_per_codec() {
    for (codec, record, entry, config) in [
        (VideoCodec::Hevc, HVCC, b"hvc1", b"hvcC"),
        (VideoCodec::Av1, AV1C, b"av01", b"av1C"),
    ] {
        let tracks = Tracks {
            video: Some(video_track(codec, record, 0, 0)),
            audio: None,
        };
        let init = init_segment(&tracks);
        let boxes = walk(&init);
        let e = one(&boxes, entry);
        assert_eq!(
            (u16_at(e.body, 24), u16_at(e.body, 26)),
            (0, 0),
            "size 0 ok"
        );
        assert_eq!(one(&boxes, config).body, record);
        assert_eq!(find(&boxes, b"trak").len(), 1);
        assert!(find(&boxes, b"mp4a").is_empty());
    }
}

#[test]
fn init_segment_audio_only_and_empty() {
    let tracks = Tracks {
        video: None,
        audio: Some(aac(&[0x11, 0x90], 48_000)),
    };
    let init = init_segment(&tracks);
    let boxes = walk(&init);
    assert_eq!(find(&boxes, b"trak").len(), 1);
    assert_eq!(u32_at(one(&boxes, b"tkhd").body, 12), 2);
    assert_eq!(u32_at(one(&boxes, b"trex").body, 4), 2);

    let boxes_empty = init_segment(&Tracks::default());
    let boxes = walk(&boxes_empty);
    assert!(find(&boxes, b"trak").is_empty());
}

#[test]
fn huge_sizes_are_clamped_not_wrapped() {
    let tracks = Tracks {
        video: Some(video_track(VideoCodec::Avc, AVCC, 100_000, u32::MAX)),
        audio: Some(aac(&[0x13, 0x08], 96_000)),
    };
    let init = init_segment(&tracks);
    let boxes = walk(&init);
    let avc1 = one(&boxes, b"avc1");
    assert_eq!(
        (u16_at(avc1.body, 24), u16_at(avc1.body, 26)),
        (65535, 65535)
    );
    assert_eq!(
        u32_at(one(&boxes, b"mp4a").body, 24),
        0,
        "96 kHz does not fit 16.16"
    );
    assert_eq!(u32_at(find(&boxes, b"mdhd")[1].body, 12), 96_000);
}

// ---------------------------------------------------------------- fragments

#[test]
fn fragment_offsets_times_and_flags() {
    let samples = av_samples();
    let frag = fragment(&av_tracks(), 7, &samples);
    let (sequence, trafs, mdat_at, mdat_len) = parse_fragment(&frag);
    assert_eq!(sequence, 7);
    assert_eq!(trafs.len(), 2);
    let total: usize = samples.iter().map(|s| s.data.len()).sum();
    assert_eq!(mdat_len, total, "mdat holds exactly the samples");

    for traf in &trafs {
        assert_eq!(traf.tfhd_flags, 0x02_0000, "default-base-is-moof");
        assert_eq!(traf.trun_version, 1);
        // Each entry's bytes, walked from the data offset, are the sample it describes.
        let kind = if traf.track_id == 1 {
            TrackKind::Video
        } else {
            TrackKind::Audio
        };
        let mut at = traf.data_offset as usize;
        assert!(at >= mdat_at && at <= mdat_at + mdat_len);
        let expected: Vec<_> = samples.iter().filter(|s| s.track == kind).collect();
        assert_eq!(traf.entries.len(), expected.len());
        for (e, s) in traf.entries.iter().zip(&expected) {
            assert_eq!(&frag[at..at + e.size as usize], &s.data[..]);
            at += e.size as usize;
        }
    }

    let v = &trafs[0];
    assert_eq!(v.track_id, 1);
    assert_eq!(v.decode_time, 90_000, "1000 ms at 90 kHz");
    let durations: Vec<_> = v.entries.iter().map(|e| e.duration).collect();
    assert_eq!(
        durations,
        [3600, 3600, 3600, 3600],
        "last repeats the previous"
    );
    let cts: Vec<_> = v.entries.iter().map(|e| e.cts).collect();
    assert_eq!(cts, [7200, 10_800, 0, 0]);
    let flags: Vec<_> = v.entries.iter().map(|e| e.flags).collect();
    assert_eq!(flags, [0x0200_0000, 0x0101_0000, 0x0101_0000, 0x0101_0000]);

    let a = &trafs[1];
    assert_eq!(a.track_id, 2);
    assert_eq!(a.decode_time, 44_100);
    // 1000, 1023, 1046 ms at 44.1 kHz: 44100, 45114.3 -> 45114, 46128.6 -> 46129.
    let durations: Vec<_> = a.entries.iter().map(|e| e.duration).collect();
    assert_eq!(durations, [1014, 1015, 1015]);
    assert!(
        a.entries
            .iter()
            .all(|e| e.flags == 0x0200_0000 && e.cts == 0)
    );
    // Audio data follows all the video data.
    let video_bytes: u32 = v.entries.iter().map(|e| e.size).sum();
    assert_eq!(a.data_offset, v.data_offset + video_bytes as i32);
    assert_eq!(v.data_offset as usize, mdat_at);
}

#[test]
fn consecutive_fragments_have_exact_decode_times() {
    let tracks = av_tracks();
    let samples = av_samples();
    let (first, second) = samples.split_at(3);
    let (_, t1, _, _) = parse_fragment(&fragment(&tracks, 1, first));
    let (_, t2, _, _) = parse_fragment(&fragment(&tracks, 2, second));
    assert_eq!(t2[0].decode_time, 1080 * 90);
    assert_eq!(t1[0].entries[0].duration, 3600);
    // The lone audio sample of the first part gets the AAC frame default.
    assert_eq!(t1[1].entries.len(), 1);
    assert_eq!(t1[1].entries[0].duration, 1024);
    assert_eq!(t2[1].decode_time, 45_114);
}

#[test]
fn lone_sample_defaults() {
    let tracks = av_tracks();
    let (_, t, _, _) = parse_fragment(&fragment(&tracks, 1, &[video(0, 0, true, b"x")]));
    assert_eq!(t.len(), 1, "no traf for a track without samples");
    assert_eq!(t[0].entries[0].duration, 3000);

    // HE-AAC with explicit SBR: 24 kHz core, 48 kHz output: a frame is 2048 output samples.
    let he = Tracks {
        video: None,
        audio: Some(aac(&[0x2b, 0x11, 0x88], 48_000)),
    };
    assert_eq!(
        codecs::asc_core_rate(&he.audio.as_ref().unwrap().asc),
        Some(24_000)
    );
    let (_, t, _, _) = parse_fragment(&fragment(&he, 1, &[audio(0, b"x")]));
    assert_eq!(t[0].entries[0].duration, 2048);
}

#[test]
fn negative_composition_offsets_use_signed_trun() {
    let tracks = av_tracks();
    let samples = [
        video(0, 0, true, b"a"),
        video(40, -40, false, b"b"),
        video(80, -2, false, b"c"),
    ];
    let (_, t, _, _) = parse_fragment(&fragment(&tracks, 1, &samples));
    let cts: Vec<_> = t[0].entries.iter().map(|e| e.cts).collect();
    assert_eq!(cts, [0, -3600, -180]);
    assert_eq!(t[0].trun_version, 1);
}

#[test]
fn non_monotonic_and_extreme_times_do_not_wrap() {
    let tracks = av_tracks();
    let samples = [
        video(u64::MAX, i32::MAX, true, b"a"),
        video(5, i32::MIN, false, b"b"),
        video(10, 0, false, b"c"),
    ];
    let (_, t, _, _) = parse_fragment(&fragment(&tracks, 1, &samples));
    let e = &t[0].entries;
    assert_eq!(
        e[0].duration, 0,
        "a backwards step is 0, not a wrapped huge value"
    );
    assert_eq!(e[0].cts, i32::MAX);
    assert_eq!(e[1].cts, i32::MIN);
    assert_eq!((e[1].duration, e[2].duration), (450, 450));
}

#[test]
fn fragments_are_deterministic() {
    let a = fragment(&av_tracks(), 3, &av_samples());
    let b = fragment(&av_tracks().clone(), 3, &av_samples().clone());
    assert_eq!(a, b);
    assert_eq!(init_segment(&av_tracks()), init_segment(&av_tracks()));
    assert_ne!(a, fragment(&av_tracks(), 4, &av_samples()));
}

#[test]
fn empty_and_unpackaged_inputs_give_empty_fragments() {
    assert!(fragment(&av_tracks(), 1, &[]).is_empty());
    let video_only = Tracks {
        video: Some(video_track(VideoCodec::Avc, AVCC, 2, 2)),
        audio: None,
    };
    assert!(fragment(&video_only, 1, &[audio(0, b"a")]).is_empty());
    assert!(fragment(&Tracks::default(), 1, &av_samples()).is_empty());

    // A codec this muxer does not package is absent from all three outputs.
    let vp9 = Tracks {
        video: Some(video_track(VideoCodec::Vp9, b"vpcC", 2, 2)),
        audio: Some(aac(&[0x12, 0x10], 44_100)),
    };
    assert_eq!(codecs(&vp9), "mp4a.40.2");
    assert!(find(&walk(&init_segment(&vp9)), b"vp09").is_empty());
    let (_, t, _, _) = parse_fragment(&fragment(&vp9, 1, &av_samples()));
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].track_id, 2);

    let zero_rate = Tracks {
        video: None,
        audio: Some(aac(&[0x12, 0x10], 0)),
    };
    assert_eq!(codecs(&zero_rate), "");
    assert!(fragment(&zero_rate, 1, &av_samples()).is_empty());
}

#[test]
fn fragments_past_2_gib_are_refused() {
    use super::boxes::{Run, sizes};
    let run = |count, bytes| {
        let mut r = Run::new(Clock::video(), 1, 3000);
        (r.count, r.bytes) = (count, bytes);
        Some(r)
    };
    assert_eq!(
        sizes(&[run(1, 1), None]),
        Some((24 + 64 + 16, 24 + 64 + 16 + 8 + 1))
    );
    assert_eq!(sizes(&[None, None]), None, "nothing to mux");
    assert_eq!(sizes(&[run(0, 0), None]).map(|s| s.0), Some(24 + 64));
    // The last byte must stay addressable by trun's i32 data offset.
    let fits = i32::MAX as usize - (24 + 64 + 16 + 8);
    assert!(sizes(&[run(1, fits), None]).is_some());
    assert_eq!(sizes(&[run(1, fits + 1), None]), None);
    assert_eq!(sizes(&[run(1, usize::MAX), run(1, 1)]), None);
    assert_eq!(sizes(&[run(usize::MAX / 8, 0), None]), None);
}

#[test]
fn video_only_fragment() {
    let tracks = Tracks {
        video: Some(video_track(VideoCodec::Avc, AVCC, 320, 240)),
        audio: None,
    };
    let frag = fragment(&tracks, 9, &av_samples());
    let (_, t, _, mdat_len) = parse_fragment(&frag);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].entries.len(), 4);
    assert_eq!(mdat_len, 9 + 2 + 9 + 2);
}

#[test]
fn av1_samples_drop_a_leading_temporal_delimiter() {
    let tracks = Tracks {
        video: Some(video_track(VideoCodec::Av1, AV1C, 64, 64)),
        audio: None,
    };
    let frame = [0x32, 0x03, 1, 2, 3];
    let mut with_td = vec![0x12, 0x00];
    with_td.extend_from_slice(&frame);
    let frag = fragment(&tracks, 1, &[video(0, 0, true, &with_td)]);
    let (_, t, mdat_at, mdat_len) = parse_fragment(&frag);
    assert_eq!(t[0].entries[0].size, 5);
    assert_eq!(&frag[mdat_at..mdat_at + mdat_len], frame);
}

// ---------------------------------------------------------------- codecs

#[test]
fn codecs_strings_for_known_records() {
    assert_eq!(codecs(&av_tracks()), "avc1.64001f,mp4a.40.2");
    let hevc = Tracks {
        video: Some(video_track(VideoCodec::Hevc, HVCC, 0, 0)),
        audio: None,
    };
    assert_eq!(codecs(&hevc), "hvc1.1.6.L93.B0");
    // Main 10, high tier, level 5.1, profile space 1, constraint bytes with an inner zero.
    let mut main10 = HVCC.to_vec();
    main10[1] = 0x40 | 0x20 | 2;
    main10[2..6].copy_from_slice(&[0x20, 0, 0, 0]);
    main10[6..12].copy_from_slice(&[0x90, 0, 0x01, 0, 0, 0]);
    main10[12] = 153;
    let hevc = Tracks {
        video: Some(video_track(VideoCodec::Hevc, &main10, 0, 0)),
        audio: None,
    };
    assert_eq!(codecs(&hevc), "hvc1.A2.4.H153.90.00.01");

    let av1 = Tracks {
        video: Some(video_track(VideoCodec::Av1, AV1C, 0, 0)),
        audio: Some(aac(&[0x2b, 0x11, 0x88], 48_000)),
    };
    assert_eq!(codecs(&av1), "av01.0.04M.08,mp4a.40.5");
    let av1_10bit_high = Tracks {
        video: Some(video_track(VideoCodec::Av1, &[0x81, 0x2d, 0xc0, 0], 0, 0)),
        audio: None,
    };
    assert_eq!(codecs(&av1_10bit_high), "av01.1.13H.10");

    // Escaped object type: 31 -> 32 + 6 bits (ELD is 39).
    let eld = Tracks {
        video: None,
        audio: Some(aac(&[0xf8, 0xe0, 0x00], 48_000)),
    };
    assert_eq!(codecs(&eld), "mp4a.40.39");
}

#[test]
fn codecs_of_truncated_records_fall_back() {
    for (codec, name) in [
        (VideoCodec::Avc, "avc1"),
        (VideoCodec::Hevc, "hvc1"),
        (VideoCodec::Av1, "av01"),
    ] {
        let tracks = Tracks {
            video: Some(video_track(codec, &[0x01, 0x02], 0, 0)),
            audio: Some(aac(&[], 44_100)),
        };
        assert_eq!(codecs(&tracks), format!("{name},mp4a.40.2"));
    }
}

// ---------------------------------------------------------------- robustness

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, max: u64) -> Bytes {
        let len = self.below(max + 1) as usize;
        (0..len)
            .map(|_| self.next() as u8)
            .collect::<Vec<_>>()
            .into()
    }
}

#[test]
fn random_records_and_samples_never_panic_and_stay_well_formed() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let codecs_list = [
        VideoCodec::Avc,
        VideoCodec::Hevc,
        VideoCodec::Av1,
        VideoCodec::Vp9,
    ];
    for round in 0..400 {
        let video_track = (rng.below(4) != 0).then(|| VideoTrack {
            codec: codecs_list[rng.below(4) as usize],
            record: rng.bytes(40),
            width: rng.next() as u32,
            height: if round % 5 == 0 { 0 } else { rng.next() as u32 },
        });
        let audio_track = (rng.below(4) != 0).then(|| AudioTrack {
            codec: AudioCodec::Aac,
            asc: rng.bytes(6),
            sample_rate: [0, 8_000, 44_100, 96_000, u32::MAX][rng.below(5) as usize],
            channels: rng.next() as u8,
        });
        let tracks = Tracks {
            video: video_track,
            audio: audio_track,
        };
        let _ = codecs(&tracks);
        walk(&init_segment(&tracks));

        let n = rng.below(12);
        let mut dts = rng.below(1 << 40);
        let samples: Vec<_> = (0..n)
            .map(|_| {
                dts = if rng.below(8) == 0 {
                    rng.next()
                } else {
                    dts.wrapping_add(rng.below(100))
                };
                Sample {
                    track: if rng.below(2) == 0 {
                        TrackKind::Video
                    } else {
                        TrackKind::Audio
                    },
                    dts,
                    cts: rng.next() as i32,
                    keyframe: rng.below(2) == 0,
                    data: rng.bytes(24),
                }
            })
            .collect();
        let frag = fragment(&tracks, round, &samples);
        if frag.is_empty() {
            continue;
        }
        let (sequence, trafs, mdat_at, mdat_len) = parse_fragment(&frag);
        assert_eq!(sequence, round);
        let sizes: u32 = trafs.iter().flat_map(|t| &t.entries).map(|e| e.size).sum();
        assert_eq!(sizes as usize, mdat_len);
        for t in &trafs {
            let end =
                t.data_offset as usize + t.entries.iter().map(|e| e.size as usize).sum::<usize>();
            assert!(t.data_offset as usize >= mdat_at && end <= mdat_at + mdat_len);
        }
    }
}

// ---------------------------------------------------------------- shared payloads

#[test]
fn shared_payloads_are_slices_of_the_fragment_with_the_same_bytes() {
    let tracks = av_tracks();
    let original = av_samples();
    let frag = fragment(&tracks, 7, &original);
    let mut shared = original.clone();
    share_payloads(&tracks, &frag, &mut shared);
    let range = frag.as_ptr() as usize..frag.as_ptr() as usize + frag.len();
    for (a, b) in original.iter().zip(&shared) {
        assert_eq!(a, b);
        assert!(range.contains(&(b.data.as_ptr() as usize)));
    }
    // A fragment of other samples (or none) leaves them alone.
    let mut other = original.clone();
    share_payloads(&tracks, &fragment(&tracks, 7, &original[..3]), &mut other);
    share_payloads(&tracks, &Bytes::new(), &mut other);
    for (a, b) in original.iter().zip(&other) {
        assert_eq!(a, b);
        assert!(!range.contains(&(b.data.as_ptr() as usize)));
    }
}

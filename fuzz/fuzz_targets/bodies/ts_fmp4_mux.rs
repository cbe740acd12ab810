//! cargo-fuzz target for the MPEG-TS and fMP4 muxers: arbitrary Tracks (real or mangled
//! avcC/hvcC/av1C records and AudioSpecificConfigs, any sizes and sample rates) and Samples
//! (any times, composition offsets, flags and payloads) through `ts::mux_segment`,
//! `fmp4::init_segment`, `fmp4::fragment` and `fmp4::codecs`. Nothing may panic; the output
//! is whole TS packets, well-formed top-level boxes, and the same bytes when muxed twice.
//! Must not touch the network or filesystem.

use crate::media_input::{AV1C, AVCC, Cursor, HVCC};
use bytes::Bytes;
use common::flv::{AudioCodec, VideoCodec};
use common::hls::{AudioTrack, Sample, TrackKind, Tracks, VideoTrack};

const MAX_SAMPLES: usize = 200;

fn tracks(c: &mut Cursor<'_>) -> Tracks {
    let which = c.u8();
    let video = (which & 1 != 0).then(|| {
        let (codec, template) = match c.u8() % 6 {
            0 | 1 => (VideoCodec::Avc, AVCC),
            2 | 3 => (VideoCodec::Hevc, HVCC),
            4 => (VideoCodec::Av1, AV1C),
            _ => (VideoCodec::Vp9, AVCC),
        };
        VideoTrack {
            codec,
            record: c.record(template),
            width: u32::from(c.u16()),
            height: u32::from(c.u16()),
        }
    });
    let audio = (which & 2 != 0).then(|| {
        let codec = match c.u8() % 4 {
            0 => AudioCodec::Mp3,
            _ => AudioCodec::Aac,
        };
        let rate = c.u8();
        AudioTrack {
            codec,
            asc: c.asc(),
            sample_rate: match rate % 4 {
                0 => 44_100,
                1 => 48_000,
                2 => u32::from(rate >> 2),
                _ => c.u32(),
            },
            channels: c.u8(),
        }
    });
    Tracks { video, audio }
}

fn samples(c: &mut Cursor<'_>) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut dts: u64 = if c.bool() {
        c.u64()
    } else {
        u64::from(c.u16())
    };
    while !c.is_empty() && out.len() < MAX_SAMPLES {
        let flags = c.u8();
        let track = if flags & 1 != 0 {
            TrackKind::Video
        } else {
            TrackKind::Audio
        };
        dts = match (flags >> 1) & 3 {
            0 | 1 => dts.wrapping_add(u64::from(c.u8())),
            2 => dts.wrapping_sub(u64::from(c.u8())),
            _ => c.u64(),
        };
        let cts = match (flags >> 3) & 3 {
            0 => 0,
            1 => i32::from(c.u8()),
            2 => -i32::from(c.u8()),
            _ => c.u32() as i32,
        };
        let data = if track == TrackKind::Video && flags & 0x20 == 0 {
            c.nal_units()
        } else {
            Bytes::copy_from_slice(c.bytes(96))
        };
        out.push(Sample {
            track,
            dts,
            cts,
            keyframe: flags & 0x40 != 0,
            data,
        });
    }
    out
}

/// Top-level ISO BMFF boxes cover `data` exactly; returns their types.
fn boxes(data: &[u8]) -> Vec<[u8; 4]> {
    let mut types = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let head = data.get(at..at + 8).expect("box header");
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        assert!(
            size >= 8 && at + size <= data.len(),
            "box size {size} at {at}"
        );
        types.push([head[4], head[5], head[6], head[7]]);
        at += size;
    }
    types
}

/// The target: any input must pass without a panic.
pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let tracks = tracks(&mut c);
    let sequence = c.u32();
    let samples = samples(&mut c);

    let ts = common::ts::mux_segment(&tracks, &samples);
    assert_eq!(ts.len() % 188, 0);
    assert!(ts.len() >= 2 * 188, "PAT and PMT");
    assert!(ts.chunks(188).all(|p| p[0] == 0x47));
    assert_eq!(ts, common::ts::mux_segment(&tracks, &samples));

    let init = common::fmp4::init_segment(&tracks);
    let types = boxes(&init);
    assert_eq!(types.first(), Some(b"ftyp"));
    assert!(types.contains(b"moov"));

    let fragment = common::fmp4::fragment(&tracks, sequence, &samples);
    if !fragment.is_empty() {
        assert_eq!(boxes(&fragment), [*b"moof", *b"mdat"]);
    }
    assert_eq!(
        fragment,
        common::fmp4::fragment(&tracks, sequence, &samples)
    );

    let codecs = common::fmp4::codecs(&tracks);
    assert!(codecs.is_ascii() && !codecs.contains('"'), "{codecs}");
}

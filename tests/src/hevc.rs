//! HEVC elementary streams for tests: splits an Annex-B stream (what `ffmpeg -f hevc` writes)
//! into access units, builds the HEVCDecoderConfigurationRecord (`hvcC`) from its VPS/SPS/PPS
//! and turns the access units into length-prefixed `Sample`s, as an RTMP publisher would send
//! them. Test support only: assumes a well-formed encoder output, 4:2:0 8-bit.

use bytes::{BufMut, Bytes, BytesMut};
use common::flv::frame_from_message;
use common::hls::{Sample, TrackKind, VideoTrack};

pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
pub const NAL_AUD: u8 = 35;

/// The nal_unit_type of a NAL unit (with its two-byte header).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0xff, |b| (b >> 1) & 0x3f)
}

/// NAL units of an Annex-B stream, without start codes (3- or 4-byte) or trailing zeros.
pub fn nal_units(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &start) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(stream.len(), |next| next - 3);
        // Zero bytes before the next start code belong to it (4-byte start codes) or are
        // trailing_zero_8bits, never to this NAL unit.
        while end > start && stream[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            nals.push(&stream[start..end]);
        }
    }
    nals
}

/// Groups NAL units into access units (ITU-T H.265 7.4.2.4.4): a new one begins at an AUD,
/// a parameter set, a prefix SEI or the first slice of a picture, once the current access
/// unit has a picture.
pub fn access_units<'a>(nals: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut units: Vec<Vec<&'a [u8]>> = Vec::new();
    let mut current: Vec<&'a [u8]> = Vec::new();
    let mut has_picture = false;
    for &nal in nals {
        let t = nal_type(nal);
        let vcl = t < 32;
        let first_slice = vcl && nal.get(2).is_some_and(|b| b & 0x80 != 0);
        let starts_unit = matches!(t, 32..=35 | 39 | 41..=44 | 48..=55) || first_slice;
        if starts_unit && has_picture {
            units.push(std::mem::take(&mut current));
            has_picture = false;
        }
        current.push(nal);
        has_picture |= vcl;
    }
    if has_picture {
        units.push(current);
    }
    units
}

/// Removes emulation prevention bytes (00 00 03 -> 00 00).
fn rbsp(nal_payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal_payload.len());
    let mut zeros = 0;
    for &b in nal_payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// An HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1) with one array each for the
/// VPS, SPS and PPS (complete), 4-byte NAL lengths, and the general profile, tier, level and
/// constraint flags copied from the SPS's profile_tier_level. `None` if the SPS is too short.
pub fn decoder_config(vps: &[u8], sps: &[u8], pps: &[u8]) -> Option<Vec<u8>> {
    // SPS RBSP: vps id (4) + max_sub_layers_minus1 (3) + temporal_id_nesting (1) in one byte,
    // then profile_tier_level's 12 general bytes: space/tier/profile, 4 compatibility flag
    // bytes, 6 constraint bytes, level.
    let payload = rbsp(sps.get(2..)?);
    let general = payload.get(1..13)?;
    let mut r = Vec::with_capacity(23 + 15 + vps.len() + sps.len() + pps.len());
    r.push(1); // configurationVersion
    r.extend_from_slice(general);
    r.extend_from_slice(&[
        0xf0, 0x00, // reserved + min_spatial_segmentation_idc 0
        0xfc, // reserved + parallelismType 0 (unknown)
        0xfd, // reserved + chroma_format_idc 1 (4:2:0)
        0xf8, // reserved + bit_depth_luma_minus8 0
        0xf8, // reserved + bit_depth_chroma_minus8 0
        0x00, 0x00, // avgFrameRate: unspecified
        // constantFrameRate 0, numTemporalLayers 1, temporalIdNested 1, lengthSizeMinusOne 3
        0x0f, 3, // numOfArrays
    ]);
    for (t, nal) in [(NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps)] {
        r.push(0x80 | t); // array_completeness 1
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&u16::try_from(nal.len()).ok()?.to_be_bytes());
        r.extend_from_slice(nal);
    }
    Some(r)
}

/// A decoded elementary stream: the track (from an Enhanced RTMP sequence header carrying the
/// record, so its size comes from the project's own SPS parser) and one sample per access
/// unit at `fps`, in decode order (no B-frames: encode with `-bf 0`).
#[derive(Debug, Clone)]
pub struct HevcStream {
    pub track: VideoTrack,
    pub samples: Vec<Sample>,
}

/// Parses an Annex-B HEVC stream. Parameter sets become the record; samples carry the other
/// NAL units (parameter sets and AUDs dropped, as `hvc1` keeps them out of band). `None`
/// without a VPS, SPS and PPS or without pictures.
pub fn from_annex_b(stream: &[u8], fps: u32) -> Option<HevcStream> {
    let nals = nal_units(stream);
    let find = |t: u8| nals.iter().copied().find(|n| nal_type(n) == t);
    let record = decoder_config(find(NAL_VPS)?, find(NAL_SPS)?, find(NAL_PPS)?)?;

    let mut header = BytesMut::new();
    header.put_u8(0x90); // Enhanced RTMP: key frame, PacketTypeSequenceStart
    header.put_slice(b"hvc1");
    header.put_slice(&record);
    let frame = frame_from_message(9, 0, header.freeze())?;
    let track = VideoTrack::from_sequence_header(&frame)?;

    let frame_ms = 1000 / u64::from(fps.max(1));
    let samples: Vec<Sample> = access_units(&nals)
        .iter()
        .enumerate()
        .map(|(i, unit)| {
            let mut data = BytesMut::new();
            let mut keyframe = false;
            for nal in unit {
                let t = nal_type(nal);
                if matches!(t, NAL_VPS | NAL_SPS | NAL_PPS | NAL_AUD) {
                    continue;
                }
                keyframe |= (16..=23).contains(&t); // IRAP pictures
                data.put_u32(nal.len() as u32);
                data.put_slice(nal);
            }
            Sample {
                track: TrackKind::Video,
                dts: i as u64 * frame_ms,
                cts: 0,
                keyframe,
                data: Bytes::from(data),
            }
        })
        .collect();
    (!samples.is_empty()).then_some(HevcStream { track, samples })
}

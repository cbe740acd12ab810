//! RFC 6381 CODECS strings for the playlist, read from the decoder configuration records the
//! init segment carries. Must not panic on malformed records: a record too short to read
//! yields the bare sample entry name (e.g. `avc1`), which players treat as "some H.264".

use std::fmt::Write as _;

use crate::flv::VideoCodec;
use crate::flv::bits::BitReader;
use crate::hls::{AudioTrack, Tracks, VideoTrack};

/// RFC 6381 CODECS of the packaged tracks, video first, comma separated (e.g.
/// `avc1.64001f,mp4a.40.2`, `hvc1.1.6.L93.B0`, `av01.0.04M.08`). Empty with no packaged
/// track.
pub fn codecs_string(tracks: &Tracks) -> String {
    let mut out = String::new();
    if let Some(v) = super::video(tracks) {
        video_codec(&mut out, v);
    }
    if let Some(a) = super::audio(tracks) {
        if !out.is_empty() {
            out.push(',');
        }
        audio_codec(&mut out, a);
    }
    out
}

fn video_codec(out: &mut String, track: &VideoTrack) {
    let r = &track.record[..];
    match track.codec {
        VideoCodec::Hevc => hevc(out, r),
        VideoCodec::Av1 => av1(out, r),
        _ => avc(out, r),
    }
}

/// `avc1.PPCCLL`: profile_idc, constraint flags and level_idc, the record's bytes 1..4
/// (RFC 6381 3.3).
fn avc(out: &mut String, record: &[u8]) {
    out.push_str("avc1");
    if let Some([profile, constraints, level]) = record.get(1..4) {
        let _ = write!(out, ".{profile:02x}{constraints:02x}{level:02x}");
    }
}

/// `hvc1.[space]profile.compat.Ttier_level[.constraints]` (ISO/IEC 14496-15 annex E.3).
fn hevc(out: &mut String, record: &[u8]) {
    out.push_str("hvc1");
    let Some(h) = record.get(..13) else {
        return;
    };
    let space = ["", "A", "B", "C"][usize::from(h[1] >> 6)];
    let tier = if h[1] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = h[1] & 0x1f;
    // The 32 compatibility flags are printed with flag 0 as the least significant bit, i.e.
    // the record's bit order reversed.
    let compat = u32::from_be_bytes([h[2], h[3], h[4], h[5]]).reverse_bits();
    let level = h[12];
    let _ = write!(out, ".{space}{profile}.{compat:X}.{tier}{level}");
    // Six constraint bytes, trailing zero bytes omitted.
    let constraints = &h[6..12];
    let used = constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in &constraints[..used] {
        let _ = write!(out, ".{b:02X}");
    }
}

/// `av01.P.LLT.DD`: seq_profile, seq_level_idx_0 with seq_tier_0, bit depth (AV1 in ISOBMFF,
/// "Codecs Parameter String"). The optional colour fields are left to their defaults.
fn av1(out: &mut String, record: &[u8]) {
    out.push_str("av01");
    // Byte 0 is marker (1) + version (1): anything else is not an av1C.
    let Some(&[0x81, b1, b2]) = record.get(..3) else {
        return;
    };
    let profile = b1 >> 5;
    let level = b1 & 0x1f;
    let tier = if b2 & 0x80 != 0 { 'H' } else { 'M' };
    let depth = match (b2 & 0x40 != 0, b2 & 0x20 != 0) {
        (false, _) => 8,
        (true, false) => 10,
        (true, true) => 12,
    };
    let _ = write!(out, ".{profile}.{level:02}{tier}.{depth:02}");
}

/// `mp4a.40.<audio object type>`; AAC-LC (2) when the AudioSpecificConfig is unreadable,
/// since AAC is all this muxer packages and LC is what nearly every encoder sends.
fn audio_codec(out: &mut String, track: &AudioTrack) {
    let mut bits = BitReader::new(&track.asc);
    let aot = audio_object_type(&mut bits).unwrap_or(2);
    let _ = write!(out, "mp4a.40.{aot}");
}

/// The core coder's sampling rate from an AudioSpecificConfig (the first one it states;
/// with SBR the output rate is double). `None` if unreadable or a reserved index.
pub(super) fn asc_core_rate(asc: &[u8]) -> Option<u32> {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let mut bits = BitReader::new(asc);
    audio_object_type(&mut bits)?;
    match bits.u32_bits(4)? {
        15 => bits.u32_bits(24),
        index => RATES.get(index as usize).copied(),
    }
}

/// audioObjectType (ISO/IEC 14496-3 1.6.2.1): 5 bits, 31 escapes to 32 + 6 more bits.
fn audio_object_type(bits: &mut BitReader<'_>) -> Option<u32> {
    match bits.u32_bits(5)? {
        31 => Some(32 + bits.u32_bits(6)?),
        aot => Some(aot),
    }
}

//! AV1: AV1CodecConfigurationRecord and sequence header OBU parsing (profile, level, max size).
//! Must stay bounds-checked: hostile records yield `None`, never a panic or an unbounded loop.

use super::bits::{BitReader, ByteReader, leb128};
use super::codec::VideoConfig;

const OBU_SEQUENCE_HEADER: u8 = 1;

/// What a sequence header OBU says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Av1SequenceHeader {
    pub seq_profile: u8,
    pub seq_level_idx: u8,
    pub max_width: u32,
    pub max_height: u32,
}

/// Parses an AV1CodecConfigurationRecord (`av1C` body): four fixed bytes, then config OBUs.
/// `None` if the fixed part is unreadable; without a readable sequence header the size is 0.
pub(crate) fn parse_codec_config(record: &[u8]) -> Option<VideoConfig> {
    let mut r = ByteReader::new(record);
    let b0 = r.u8()?;
    if b0 & 0x80 == 0 {
        // marker bit must be 1
        return None;
    }
    let b1 = r.u8()?;
    let seq_profile = b1 >> 5;
    let seq_level_idx = b1 & 0x1f;
    r.skip(2)?;
    let mut config = VideoConfig {
        profile: Some(profile_name(seq_profile)),
        level: Some(level_name(seq_level_idx)),
        ..VideoConfig::default()
    };
    if let Some(seq) = find_sequence_header(r.rest()).and_then(parse_sequence_header) {
        config.profile = Some(profile_name(seq.seq_profile));
        config.level = Some(level_name(seq.seq_level_idx));
        config.width = seq.max_width;
        config.height = seq.max_height;
    }
    Some(config)
}

/// Finds the payload of the first sequence header OBU in a run of low-overhead OBUs.
pub(crate) fn find_sequence_header(obus: &[u8]) -> Option<&[u8]> {
    let mut r = ByteReader::new(obus);
    // Every OBU takes at least one byte, so this ends.
    while r.remaining() > 0 {
        let header = r.u8()?;
        if header & 0x80 != 0 {
            return None; // forbidden bit
        }
        let obu_type = (header >> 3) & 0x0f;
        if header & 0x04 != 0 {
            r.skip(1)?; // extension header
        }
        let size = if header & 0x02 != 0 {
            usize::try_from(leb128(&mut r)?).ok()?
        } else {
            r.remaining()
        };
        let payload = r.take(size)?;
        if obu_type == OBU_SEQUENCE_HEADER {
            return Some(payload);
        }
    }
    None
}

/// Parses a sequence_header_obu() payload up to max_frame_height_minus_1.
pub(crate) fn parse_sequence_header(obu: &[u8]) -> Option<Av1SequenceHeader> {
    let mut r = BitReader::new(obu);
    let seq_profile = r.bits(3)? as u8;
    let _still_picture = r.flag()?;
    let reduced_still_picture_header = r.flag()?;
    let seq_level_idx;
    if reduced_still_picture_header {
        seq_level_idx = r.bits(5)? as u8;
    } else {
        let mut decoder_model_info_present = false;
        let mut buffer_delay_length = 0;
        if r.flag()? {
            // timing_info()
            r.skip(64)?; // num_units_in_display_tick, time_scale
            if r.flag()? {
                let _num_ticks_per_picture_minus_1 = r.uvlc()?;
            }
            decoder_model_info_present = r.flag()?;
            if decoder_model_info_present {
                buffer_delay_length = r.bits(5)? as usize + 1;
                r.skip(32)?; // num_units_in_decoding_tick
                r.skip(10)?; // buffer_removal_time_length, frame_presentation_time_length
            }
        }
        let initial_display_delay_present = r.flag()?;
        let operating_points = r.bits(5)? as usize + 1;
        let mut first_level = None;
        for _ in 0..operating_points {
            let _operating_point_idc = r.bits(12)?;
            let level = r.bits(5)? as u8;
            first_level.get_or_insert(level);
            if level > 7 {
                let _seq_tier = r.flag()?;
            }
            if decoder_model_info_present && r.flag()? {
                // operating_parameters_info(): two delays and low_delay_mode_flag.
                r.skip(2 * buffer_delay_length + 1)?;
            }
            if initial_display_delay_present && r.flag()? {
                r.skip(4)?;
            }
        }
        seq_level_idx = first_level?;
    }
    let width_bits = r.bits(4)? as u32 + 1;
    let height_bits = r.bits(4)? as u32 + 1;
    let max_width = r.bits(width_bits)? + 1;
    let max_height = r.bits(height_bits)? + 1;
    Some(Av1SequenceHeader {
        seq_profile,
        seq_level_idx,
        max_width: u32::try_from(max_width).ok()?,
        max_height: u32::try_from(max_height).ok()?,
    })
}

pub(crate) fn profile_name(seq_profile: u8) -> String {
    match seq_profile {
        0 => "Main".to_owned(),
        1 => "High".to_owned(),
        2 => "Professional".to_owned(),
        p => format!("Profile {p}"),
    }
}

/// seq_level_idx 0 is level 2.0, 13 is 5.1; 31 means "no level constraint".
pub(crate) fn level_name(seq_level_idx: u8) -> String {
    if seq_level_idx == 31 {
        return "max".to_owned();
    }
    format!("{}.{}", 2 + (seq_level_idx >> 2), seq_level_idx & 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduced_still_picture_header() {
        // profile 0, still 1, reduced 1, level 8 (01000), width bits 15 (1110 -> 15),
        // height bits 15, width-1 = 1919, height-1 = 1079.
        let bits = format!(
            "000 1 1 01000 1110 1110 {:015b} {:015b} 0000000",
            1919, 1079
        );
        let bytes: Vec<u8> = bits
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<Vec<_>>()
            .chunks(8)
            .map(|c| {
                c.iter()
                    .fold(0u8, |acc, &b| (acc << 1) | u8::from(b == '1'))
            })
            .collect();
        let seq = parse_sequence_header(&bytes).expect("seq");
        assert_eq!((seq.max_width, seq.max_height), (1920, 1080));
        assert_eq!(level_name(seq.seq_level_idx), "4.0");
    }

    #[test]
    fn obu_walk_is_bounded() {
        assert_eq!(find_sequence_header(&[0x12, 0x00]), None); // temporal delimiter only
        assert_eq!(find_sequence_header(&[0x0a, 0xff]), None); // size runs past the end
        assert_eq!(find_sequence_header(&[0x0a, 0x01, 0xaa]), Some(&[0xaa][..]));
    }
}

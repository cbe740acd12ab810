//! H.264: AVCDecoderConfigurationRecord and SPS parsing (profile, level, cropped picture size).
//! Must stay bounds-checked: hostile records yield `None`, never a panic or an unbounded loop.

use super::bits::{BitReader, ByteReader, unescape_rbsp};
use super::codec::VideoConfig;

/// What the first SPS says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AvcSps {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub chroma_format_idc: u32,
    pub bit_depth_luma: u32,
    pub width: u32,
    pub height: u32,
}

/// Parses an AVCDecoderConfigurationRecord. `None` if the record header is unreadable; an
/// unreadable SPS leaves the size at 0 and takes profile/level from the record.
pub(crate) fn parse_decoder_config(record: &[u8]) -> Option<VideoConfig> {
    let mut r = ByteReader::new(record);
    let version = r.u8()?;
    if version != 1 {
        return None;
    }
    let profile = r.u8()?;
    let compat = r.u8()?;
    let level = r.u8()?;
    let _length_size = r.u8()?;
    let num_sps = r.u8()? & 0x1f;
    let mut first_sps = None;
    if num_sps > 0 {
        // A truncated SPS still leaves the record's own profile and level.
        first_sps = r.u16().and_then(|len| r.take(usize::from(len)));
    }
    let mut config = VideoConfig {
        profile: Some(profile_name(profile, compat)),
        level: Some(level_name(profile, compat, level)),
        ..VideoConfig::default()
    };
    if let Some(sps) = first_sps.and_then(parse_sps) {
        config.profile = Some(profile_name(sps.profile_idc, sps.constraint_flags));
        config.level = Some(level_name(
            sps.profile_idc,
            sps.constraint_flags,
            sps.level_idc,
        ));
        config.width = sps.width;
        config.height = sps.height;
    }
    Some(config)
}

/// Parses an SPS NAL unit (with its one-byte NAL header).
pub(crate) fn parse_sps(nal: &[u8]) -> Option<AvcSps> {
    let (&header, body) = nal.split_first()?;
    if header & 0x1f != 7 {
        return None;
    }
    let rbsp = unescape_rbsp(body);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    let _sps_id = r.ue()?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma = 8;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        bit_depth_luma = r.ue()?.checked_add(8)?;
        let _bit_depth_chroma = r.ue()?;
        let _qpprime_y_zero_transform_bypass = r.flag()?;
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    let _log2_max_frame_num = r.ue()?;
    match r.ue()? {
        0 => {
            let _log2_max_poc_lsb = r.ue()?;
        }
        1 => {
            let _delta_pic_order_always_zero = r.flag()?;
            let _offset_for_non_ref_pic = r.se()?;
            let _offset_for_top_to_bottom_field = r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                let _offset_for_ref_frame = r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    let _max_num_ref_frames = r.ue()?;
    let _gaps_in_frame_num_allowed = r.flag()?;
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        let _mb_adaptive_frame_field = r.flag()?;
    }
    let _direct_8x8_inference = r.flag()?;
    let (mut crop_left, mut crop_right, mut crop_top, mut crop_bottom) = (0u64, 0u64, 0u64, 0u64);
    if r.flag()? {
        crop_left = r.ue()?.into();
        crop_right = r.ue()?.into();
        crop_top = r.ue()?.into();
        crop_bottom = r.ue()?.into();
    }
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let coded_width = width_mbs * 16;
    let coded_height = height_map_units * 16 * field_factor;
    let width = coded_width.checked_sub(crop_unit_x * (crop_left + crop_right))?;
    let height = coded_height.checked_sub(crop_unit_y * (crop_top + crop_bottom))?;
    Some(AvcSps {
        profile_idc,
        constraint_flags,
        level_idc,
        chroma_format_idc,
        bit_depth_luma,
        width: u32::try_from(width).ok()?,
        height: u32::try_from(height).ok()?,
    })
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let mut last_scale: i32 = 8;
    let mut next_scale: i32 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            // delta_scale is -128..=127 in a valid stream, any i32 in a hostile one.
            let delta = r.se()?;
            next_scale = last_scale.wrapping_add(delta).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Some(())
}

/// Human profile name, as ffprobe prints it.
pub(crate) fn profile_name(profile_idc: u8, constraints: u8) -> String {
    let set1 = constraints & 0x40 != 0;
    let set3 = constraints & 0x10 != 0;
    let name = match profile_idc {
        66 if set1 => "Constrained Baseline",
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 if set3 => "High 10 Intra",
        110 => "High 10",
        122 if set3 => "High 4:2:2 Intra",
        122 => "High 4:2:2",
        244 if set3 => "High 4:4:4 Intra",
        244 => "High 4:4:4 Predictive",
        44 => "CAVLC 4:4:4 Intra",
        83 => "Scalable Baseline",
        86 => "Scalable High",
        118 => "Multiview High",
        128 => "Stereo High",
        other => return format!("Profile {other}"),
    };
    name.to_owned()
}

/// Level as "3.1"; level 1b is signalled by constraint_set3 at level_idc 11 (or idc 9).
pub(crate) fn level_name(profile_idc: u8, constraints: u8, level_idc: u8) -> String {
    let set3 = constraints & 0x10 != 0;
    if level_idc == 9 || (level_idc == 11 && set3 && matches!(profile_idc, 66 | 77 | 88)) {
        return "1b".to_owned();
    }
    format!("{}.{}", level_idc / 10, level_idc % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs a string of '0'/'1' (spaces ignored) into bytes, zero-padded.
    fn pack(bits: &str) -> Vec<u8> {
        let bits: Vec<u8> = bits
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| u8::from(c == '1'))
            .collect();
        bits.chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |acc, (i, b)| acc | (b << (7 - i)))
            })
            .collect()
    }

    #[test]
    fn hostile_scaling_list_delta_does_not_overflow() {
        // delta_scale = i32::MAX: se code k = 2^32 - 3, ue with 31 zeros, a one, then the 31
        // bits of k + 1 - 2^31 (30 ones and a zero); then deltas of 0 (a single 1 bit each).
        // `last_scale + delta` used to overflow.
        let bits = format!("{}1{}0{}", "0".repeat(31), "1".repeat(30), "1".repeat(64));
        let bytes = pack(&bits);
        let mut r = BitReader::new(&bytes);
        assert_eq!(skip_scaling_list(&mut r, 16), Some(()));
        // The same inside a whole High-profile SPS (scaling matrix present, list 0 present).
        let sps_bits = format!("1 1 1 1 0 0 1 1 {bits}");
        let mut nal = vec![0x67, 100, 0, 40];
        nal.extend(pack(&sps_bits));
        let _ = parse_sps(&nal);
    }

    #[test]
    fn level_names() {
        assert_eq!(level_name(100, 0, 31), "3.1");
        assert_eq!(level_name(100, 0, 40), "4.0");
        assert_eq!(level_name(66, 0x50, 11), "1b");
        assert_eq!(level_name(100, 0x10, 11), "1.1");
    }

    #[test]
    fn hand_built_sps() {
        // Baseline, level 3.0, 640x480: ue fields packed by hand.
        // sps_id=0 (1), log2_max_frame_num-4=0 (1), poc_type=2 (011), max_ref=1 (010),
        // gaps=0, width_mbs-1=39 (00000101000), height-1=29 (000011110), frame_mbs_only=1,
        // direct8x8=1, cropping=0, vui=0, stop bit.
        let bits = "1 1 011 010 0 00000101000 000011110 1 1 0 0 1";
        let mut bytes = vec![0x67, 66, 0xc0, 30];
        let mut acc = 0u8;
        let mut n = 0;
        for c in bits.chars().filter(|c| !c.is_whitespace()) {
            acc = (acc << 1) | u8::from(c == '1');
            n += 1;
            if n == 8 {
                bytes.push(acc);
                acc = 0;
                n = 0;
            }
        }
        if n > 0 {
            bytes.push(acc << (8 - n));
        }
        let sps = parse_sps(&bytes).expect("sps");
        assert_eq!((sps.width, sps.height), (640, 480));
        assert_eq!(
            profile_name(sps.profile_idc, sps.constraint_flags),
            "Constrained Baseline"
        );
        assert_eq!(level_name(66, 0xc0, 30), "3.0");
    }
}

//! H.265: HEVCDecoderConfigurationRecord and SPS parsing (profile_tier_level, conformance
//! window). Must stay bounds-checked: hostile records yield `None`, never a panic or a hang.

use super::bits::{BitReader, ByteReader, unescape_rbsp};
use super::codec::VideoConfig;

const NAL_SPS: u8 = 33;

/// What the SPS says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HevcSps {
    pub profile_idc: u8,
    pub compatibility: u32,
    pub tier: bool,
    pub level_idc: u8,
    pub chroma_format_idc: u32,
    pub width: u32,
    pub height: u32,
}

/// Parses an HEVCDecoderConfigurationRecord. `None` if the record header is unreadable; an
/// unreadable SPS leaves the size at 0 and takes profile/level from the record.
pub(crate) fn parse_decoder_config(record: &[u8]) -> Option<VideoConfig> {
    let mut r = ByteReader::new(record);
    let version = r.u8()?;
    if version != 1 {
        return None;
    }
    let b = r.u8()?;
    let profile_idc = b & 0x1f;
    let compatibility = u32::from(r.u16()?) << 16 | u32::from(r.u16()?);
    r.skip(6)?; // constraint indicator flags
    let level_idc = r.u8()?;
    let mut config = VideoConfig {
        profile: Some(profile_name(profile_idc, compatibility)),
        level: Some(level_name(level_idc)),
        ..VideoConfig::default()
    };
    if let Some(sps) = find_sps(&mut r).and_then(parse_sps) {
        config.profile = Some(profile_name(sps.profile_idc, sps.compatibility));
        config.level = Some(level_name(sps.level_idc));
        config.width = sps.width;
        config.height = sps.height;
    }
    Some(config)
}

/// Walks the NAL arrays after the fixed 13 header bytes already read.
fn find_sps<'a>(r: &mut ByteReader<'a>) -> Option<&'a [u8]> {
    // min_spatial_segmentation(2), parallelism(1), chroma(1), luma/chroma depth(2),
    // avg frame rate(2), constant rate/layers/nesting/length size(1).
    r.skip(9)?;
    let arrays = r.u8()?;
    for _ in 0..arrays {
        let nal_type = r.u8()? & 0x3f;
        let count = r.u16()?;
        for _ in 0..count {
            let len = usize::from(r.u16()?);
            let nal = r.take(len)?;
            if nal_type == NAL_SPS {
                return Some(nal);
            }
        }
    }
    None
}

/// Parses an SPS NAL unit (with its two-byte NAL header).
pub(crate) fn parse_sps(nal: &[u8]) -> Option<HevcSps> {
    let header = nal.get(..2)?;
    if (header[0] >> 1) & 0x3f != NAL_SPS {
        return None;
    }
    let rbsp = unescape_rbsp(&nal[2..]);
    let mut r = BitReader::new(&rbsp);
    let _vps_id = r.bits(4)?;
    let max_sub_layers_minus1 = r.bits(3)? as usize;
    let _temporal_id_nesting = r.flag()?;
    let ptl = parse_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    let _sps_id = r.ue()?;
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc > 3 {
        return None;
    }
    let separate_colour_plane = chroma_format_idc == 3 && r.flag()?;
    let pic_width = u64::from(r.ue()?);
    let pic_height = u64::from(r.ue()?);
    let (mut left, mut right, mut top, mut bottom) = (0u64, 0u64, 0u64, 0u64);
    if r.flag()? {
        left = r.ue()?.into();
        right = r.ue()?.into();
        top = r.ue()?.into();
        bottom = r.ue()?.into();
    }
    let (sub_width, sub_height) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let width = pic_width.checked_sub(sub_width * (left + right))?;
    let height = pic_height.checked_sub(sub_height * (top + bottom))?;
    Some(HevcSps {
        profile_idc: ptl.profile_idc,
        compatibility: ptl.compatibility,
        tier: ptl.tier,
        level_idc: ptl.level_idc,
        chroma_format_idc,
        width: u32::try_from(width).ok()?,
        height: u32::try_from(height).ok()?,
    })
}

struct ProfileTierLevel {
    profile_idc: u8,
    tier: bool,
    compatibility: u32,
    level_idc: u8,
}

fn parse_profile_tier_level(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: usize,
) -> Option<ProfileTierLevel> {
    let _profile_space = r.bits(2)?;
    let tier = r.flag()?;
    let profile_idc = r.bits(5)? as u8;
    let compatibility = r.u32_bits(32)?;
    // progressive, interlaced, non-packed, frame-only, 43 constraint bits, inbld/reserved.
    r.skip(48)?;
    let level_idc = r.bits(8)? as u8;
    let mut present = [(false, false); 8];
    for p in present.iter_mut().take(max_sub_layers_minus1) {
        *p = (r.flag()?, r.flag()?);
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1))?;
    }
    for &(profile_present, level_present) in present.iter().take(max_sub_layers_minus1) {
        if profile_present {
            r.skip(88)?;
        }
        if level_present {
            r.skip(8)?;
        }
    }
    Some(ProfileTierLevel {
        profile_idc,
        tier,
        compatibility,
        level_idc,
    })
}

/// Human profile name, as ffprobe prints it. A profile_idc of 0 falls back to the first
/// compatibility flag set.
pub(crate) fn profile_name(profile_idc: u8, compatibility: u32) -> String {
    let idc = if profile_idc == 0 {
        // Flag j is bit (31 - j).
        match compatibility.leading_zeros() {
            32 => 0,
            j => j as u8,
        }
    } else {
        profile_idc
    };
    let name = match idc {
        1 => "Main",
        2 => "Main 10",
        3 => "Main Still Picture",
        4 => "Rext",
        5 => "High Throughput 4:4:4",
        6 => "Multiview Main",
        7 => "Scalable Main",
        8 => "3D Main",
        9 => "Screen Extended",
        other => return format!("Profile {other}"),
    };
    name.to_owned()
}

/// general_level_idc is 30 times the level: 93 -> "3.1".
pub(crate) fn level_name(level_idc: u8) -> String {
    format!("{}.{}", level_idc / 30, (level_idc % 30) / 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(level_name(93), "3.1");
        assert_eq!(level_name(120), "4.0");
        assert_eq!(level_name(153), "5.1");
        assert_eq!(profile_name(2, 0), "Main 10");
        assert_eq!(profile_name(0, 0x4000_0000), "Main");
        assert_eq!(profile_name(0, 0), "Profile 0");
    }

    #[test]
    fn sub_layers_are_skipped() {
        // Header: vps_id=0, max_sub_layers_minus1=1, nesting=1 -> 0000 001 1
        let mut bits = String::from("00000011");
        // PTL: space 00, tier 0, profile 00001, compat flag 1 set, 48 zero bits, level 93.
        bits += "00000001";
        bits += "01000000000000000000000000000000";
        bits += &"0".repeat(48);
        bits += "01011101";
        // sub layer 0: profile present 1, level present 1; then 7 x reserved 2 bits.
        bits += "11";
        bits += &"0".repeat(14);
        bits += &"0".repeat(88);
        bits += "01011010";
        // sps_id 0, chroma 1 (010), width 64 (ue 0000001000001), height 32 (00000100001),
        // conformance window 1, offsets 0,1,0,1 -> 64-2 x 32-2.
        bits += "1";
        bits += "010";
        bits += "0000001000001";
        bits += "00000100001";
        bits += "1";
        bits += "1";
        bits += "010";
        bits += "1";
        bits += "010";
        bits += "1111"; // padding
        let mut nal = vec![NAL_SPS << 1, 1];
        for chunk in bits.as_bytes().chunks(8) {
            let mut b = 0u8;
            for (i, c) in chunk.iter().enumerate() {
                b |= u8::from(*c == b'1') << (7 - i);
            }
            nal.push(b);
        }
        let sps = parse_sps(&nal).expect("sps");
        assert_eq!((sps.width, sps.height), (62, 30));
        assert_eq!(sps.level_idc, 93);
        assert_eq!(sps.profile_idc, 1);
    }
}

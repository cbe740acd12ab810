//! Audio codec configuration parsing: AAC AudioSpecificConfig, OpusHead, FLAC STREAMINFO and
//! MP3 frame headers. Must stay bounds-checked: hostile input yields `None`, never a panic.

use super::bits::{BitReader, ByteReader};
use super::codec::AudioConfig;

const AAC_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

fn audio_object_type(r: &mut BitReader<'_>) -> Option<u32> {
    let aot = r.u32_bits(5)?;
    if aot == 31 {
        return Some(32 + r.u32_bits(6)?);
    }
    Some(aot)
}

fn sampling_frequency(r: &mut BitReader<'_>) -> Option<u32> {
    let index = r.u32_bits(4)?;
    if index == 15 {
        return r.u32_bits(24);
    }
    // 13 and 14 are reserved: unknown rate.
    Some(AAC_RATES.get(index as usize).copied().unwrap_or(0))
}

fn channels_for_config(config: u32) -> u8 {
    match config {
        1..=6 => config as u8,
        7 | 12 | 14 => 8,
        11 => 7,
        13 => 24,
        _ => 0,
    }
}

/// Object types whose config is a GASpecificConfig.
fn is_general_audio(aot: u32) -> bool {
    matches!(aot, 1..=4 | 6 | 7 | 17 | 19..=23)
}

/// Parses an MPEG-4 AudioSpecificConfig (explicit and implicit SBR/PS signalling included).
pub(crate) fn parse_audio_specific_config(asc: &[u8]) -> Option<AudioConfig> {
    let mut r = BitReader::new(asc);
    let mut aot = audio_object_type(&mut r)?;
    let rate = sampling_frequency(&mut r)?;
    let channel_config = r.u32_bits(4)?;
    let mut channels = channels_for_config(channel_config);
    let mut sbr = false;
    let mut ps = false;
    let mut ext_rate = None;
    if aot == 5 || aot == 29 {
        // Explicit hierarchical signalling: the underlying object type follows.
        sbr = true;
        ps = aot == 29;
        ext_rate = Some(sampling_frequency(&mut r)?);
        aot = audio_object_type(&mut r)?;
        if aot == 22 {
            let _extension_channel_configuration = r.bits(4)?;
        }
    }
    let base_profile = match aot {
        1 => "Main".to_owned(),
        2 => "LC".to_owned(),
        3 => "SSR".to_owned(),
        4 => "LTP".to_owned(),
        23 => "LD".to_owned(),
        39 => "ELD".to_owned(),
        42 => "USAC".to_owned(),
        other => format!("AOT {other}"),
    };
    // The GASpecificConfig and the backward-compatible sync extension are optional extras:
    // a config cut short after the channel configuration is still a valid summary.
    if is_general_audio(aot)
        && let Some(pce_channels) = skip_ga_specific_config(&mut r, aot, channel_config)
    {
        if let Some(n) = pce_channels {
            channels = n;
        }
        if !sbr && r.bits_left() >= 16 && r.bits(11) == Some(0x2b7) {
            let ext_aot = audio_object_type(&mut r);
            if ext_aot == Some(5) && r.flag() == Some(true) {
                sbr = true;
                ext_rate = sampling_frequency(&mut r);
                if r.bits_left() >= 12 && r.bits(11) == Some(0x548) {
                    ps = r.flag() == Some(true);
                }
            }
        }
    }
    let profile = if ps {
        "HE-AACv2".to_owned()
    } else if sbr {
        "HE-AAC".to_owned()
    } else {
        base_profile
    };
    if ps && channels == 1 {
        channels = 2;
    }
    Some(AudioConfig {
        codec: None,
        profile: Some(profile),
        sample_rate: ext_rate.filter(|_| sbr).unwrap_or(rate),
        channels,
    })
}

/// Skips GASpecificConfig; returns the channel count of a program config element if there is
/// one (channel configuration 0). `None` if truncated.
fn skip_ga_specific_config(
    r: &mut BitReader<'_>,
    aot: u32,
    channel_config: u32,
) -> Option<Option<u8>> {
    let _frame_length_flag = r.flag()?;
    if r.flag()? {
        r.skip(14)?; // core coder delay
    }
    let extension_flag = r.flag()?;
    let mut pce_channels = None;
    if channel_config == 0 {
        pce_channels = Some(program_config_channels(r)?);
        // What follows a PCE is byte aligned relative to the ASC start; we stop here.
        return Some(pce_channels);
    }
    if aot == 6 || aot == 20 {
        r.skip(3)?; // layerNr
    }
    if extension_flag {
        if aot == 22 {
            r.skip(16)?; // numOfSubFrame, layer_length
        }
        if matches!(aot, 17 | 19 | 20 | 23) {
            r.skip(3)?; // resilience flags
        }
        r.skip(1)?; // extensionFlag3
    }
    Some(pce_channels)
}

/// Counts the channels a program_config_element() declares.
fn program_config_channels(r: &mut BitReader<'_>) -> Option<u8> {
    r.skip(4 + 2 + 4)?; // element_instance_tag, object_type, sampling_frequency_index
    let front = r.bits(4)?;
    let side = r.bits(4)?;
    let back = r.bits(4)?;
    let lfe = r.bits(2)?;
    r.skip(3 + 4)?; // num_assoc_data_elements, num_valid_cc_elements
    for skip in [4, 4, 3] {
        // mono mixdown, stereo mixdown, matrix mixdown (index + pseudo surround)
        if r.flag()? {
            r.skip(skip)?;
        }
    }
    let mut channels: u64 = lfe;
    for _ in 0..(front + side + back) {
        let is_cpe = r.flag()?;
        r.skip(4)?;
        channels += if is_cpe { 2 } else { 1 };
    }
    u8::try_from(channels).ok()
}

/// Parses an Opus identification header ("OpusHead"). Opus always decodes at 48 kHz.
pub(crate) fn parse_opus_head(data: &[u8]) -> Option<AudioConfig> {
    let mut config = AudioConfig {
        sample_rate: 48_000,
        ..AudioConfig::default()
    };
    let mut r = ByteReader::new(data);
    if r.take(8) == Some(b"OpusHead") {
        let _version = r.u8()?;
        config.channels = r.u8()?;
    }
    Some(config)
}

/// Parses a FLAC STREAMINFO block, with or without the "fLaC" marker and block header.
pub(crate) fn parse_flac_streaminfo(data: &[u8]) -> Option<AudioConfig> {
    let mut data = data.strip_prefix(b"fLaC").unwrap_or(data);
    if data.len() >= 4 && data[0] & 0x7f == 0 && data[1..4] == [0, 0, 34] {
        data = &data[4..];
    }
    let mut r = BitReader::new(data);
    r.skip(16 + 16 + 24 + 24)?; // block sizes, frame sizes
    let sample_rate = r.u32_bits(20)?;
    let channels = r.bits(3)? as u8 + 1;
    Some(AudioConfig {
        sample_rate,
        channels,
        ..AudioConfig::default()
    })
}

/// Parses an MPEG audio frame header (the first four bytes of an MP3 tag's data).
pub(crate) fn parse_mp3_header(data: &[u8]) -> Option<AudioConfig> {
    let mut r = BitReader::new(data);
    if r.bits(11)? != 0x7ff {
        return None;
    }
    let version = r.bits(2)?;
    let layer = r.bits(2)?;
    let _protection = r.flag()?;
    let _bitrate = r.bits(4)?;
    let rate_index = r.bits(2)? as usize;
    let _padding_private = r.bits(2)?;
    let mode = r.bits(2)?;
    let base = [44_100, 48_000, 32_000].get(rate_index).copied()?;
    let sample_rate = match version {
        3 => base,
        2 => base / 2,
        0 => base / 4,
        _ => return None,
    };
    let profile = match layer {
        1 => "Layer 3",
        2 => "Layer 2",
        3 => "Layer 1",
        _ => return None,
    };
    Some(AudioConfig {
        codec: None,
        profile: Some(profile.to_owned()),
        sample_rate,
        channels: if mode == 3 { 1 } else { 2 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(bits: &str) -> Vec<u8> {
        let bits: Vec<u8> = bits.bytes().filter(|b| *b == b'0' || *b == b'1').collect();
        bits.chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |acc, (i, &b)| acc | (u8::from(b == b'1') << (7 - i)))
            })
            .collect()
    }

    #[test]
    fn explicit_he_aac() {
        // AOT 5, 24 kHz (6), stereo, ext 48 kHz (3), AOT 2, GA 000.
        let asc = pack("00101 0110 0010 0011 00010 000");
        let c = parse_audio_specific_config(&asc).expect("asc");
        assert_eq!(c.profile.as_deref(), Some("HE-AAC"));
        assert_eq!((c.sample_rate, c.channels), (48_000, 2));
    }

    #[test]
    fn explicit_he_aac_v2_is_stereo() {
        let asc = pack("11101 0110 0001 0011 00010 000");
        let c = parse_audio_specific_config(&asc).expect("asc");
        assert_eq!(c.profile.as_deref(), Some("HE-AACv2"));
        assert_eq!((c.sample_rate, c.channels), (48_000, 2));
    }

    #[test]
    fn escaped_object_type_and_explicit_rate() {
        // AOT 31 + 10 = 42 (USAC), index 15 + 24-bit 44100, 5.1 (6).
        let asc = pack(&format!("11111 001010 1111 {:024b} 0110", 44_100));
        let c = parse_audio_specific_config(&asc).expect("asc");
        assert_eq!(c.profile.as_deref(), Some("USAC"));
        assert_eq!((c.sample_rate, c.channels), (44_100, 6));
    }

    #[test]
    fn implicit_sbr_sync_extension() {
        // LC 24 kHz stereo, GA 000, sync 0x2b7, AOT 5, sbr present, ext 48 kHz.
        let asc = pack("00010 0110 0010 000 01010110111 00101 1 0011 000");
        let c = parse_audio_specific_config(&asc).expect("asc");
        assert_eq!(c.profile.as_deref(), Some("HE-AAC"));
        assert_eq!(c.sample_rate, 48_000);
    }

    #[test]
    fn other_headers() {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
        let c = parse_opus_head(&head).expect("opus");
        assert_eq!((c.sample_rate, c.channels), (48_000, 2));
        // MPEG-1 layer 3, 128 kbit/s, 44.1 kHz, joint stereo.
        let c = parse_mp3_header(&[0xff, 0xfb, 0x90, 0x44]).expect("mp3");
        assert_eq!((c.sample_rate, c.channels), (44_100, 2));
        assert_eq!(parse_mp3_header(&[0xff, 0xe0]), None);
        let mut flac = b"fLaC".to_vec();
        flac.extend_from_slice(&[0x80, 0, 0, 34]);
        flac.extend_from_slice(&[0x10, 0, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        // 48000 Hz = 0x0bb80 (20 bits), 2 channels (001), 16 bits (01111)
        flac.extend_from_slice(&pack(&format!("{:020b} 001 01111 0000", 48_000)));
        let c = parse_flac_streaminfo(&flac).expect("flac");
        assert_eq!((c.sample_rate, c.channels), (48_000, 2));
    }
}

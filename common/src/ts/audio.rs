//! AAC in TS: the ADTS header (ISO/IEC 14496-3 1.A.2) each raw access unit needs, derived from
//! the AudioSpecificConfig. Must stay bounds-checked: any config yields a header or `None`.

use crate::flv::AudioCodec;
use crate::flv::bits::BitReader;
use crate::hls::AudioTrack;

/// Bytes in an ADTS header without CRC (protection_absent = 1).
pub const ADTS_HEADER_LEN: usize = 7;
/// Largest ADTS frame (13-bit aac_frame_length, header included).
const MAX_ADTS_FRAME: usize = 0x1fff;

/// Sampling frequencies by sampling_frequency_index (0..=12).
const RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// What an ADTS header says about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsConfig {
    /// profile_ObjectType: audio object type - 1 (1 = AAC LC).
    pub profile: u8,
    pub sampling_index: u8,
    /// channel_configuration (0..=7).
    pub channel_config: u8,
}

impl AdtsConfig {
    /// The header fields for an AudioSpecificConfig. ADTS can only describe object types 1-4
    /// and the 13 table rates, so, like ffmpeg: HE-AAC (SBR/PS, object types 5 and 29) is
    /// signalled as its core (AAC-LC at the base rate; decoders find the SBR data in-band),
    /// other object types as AAC-LC, and an explicit rate (index 15) as the nearest table rate.
    /// `None` if the config is too short or its rate index is reserved.
    pub fn from_asc(asc: &[u8]) -> Option<Self> {
        let mut r = BitReader::new(asc);
        let mut aot = object_type(&mut r)?;
        let sampling_index = sampling_index(&mut r)?;
        let channel_config = r.u32_bits(4)? as u8;
        if aot == 5 || aot == 29 {
            // Explicit hierarchical signalling: the SBR output rate, then the core object type.
            sampling_index_or_skip(&mut r)?;
            aot = object_type(&mut r)?;
        }
        Some(Self {
            profile: if (1..=4).contains(&aot) {
                (aot - 1) as u8
            } else {
                1
            },
            sampling_index,
            channel_config: if channel_config <= 7 {
                channel_config
            } else {
                0
            },
        })
    }

    /// The header fields for a track: from its AudioSpecificConfig, else (an unreadable config)
    /// AAC-LC at the track's rate and channel count. `None` for non-AAC tracks and tracks
    /// without a usable rate.
    pub fn from_track(track: &AudioTrack) -> Option<Self> {
        if track.codec != AudioCodec::Aac {
            return None;
        }
        let mut config = Self::from_asc(&track.asc).or_else(|| {
            (track.sample_rate > 0).then(|| Self {
                profile: 1,
                sampling_index: nearest_rate_index(track.sample_rate),
                channel_config: 0,
            })
        })?;
        if config.channel_config == 0 {
            // Channel configuration 0 means "see the program_config_element" in the config,
            // which ADTS would have to carry in every frame; the channel count is the best
            // stand-in for the common layouts.
            config.channel_config = match track.channels {
                n @ 1..=6 => n,
                8 => 7,
                _ => 0,
            };
        }
        Some(config)
    }

    /// The 7-byte header of an ADTS frame carrying `payload_len` bytes of raw AAC; `None` when
    /// the frame is longer than the 13-bit length field allows.
    pub fn header(&self, payload_len: usize) -> Option<[u8; ADTS_HEADER_LEN]> {
        let len = payload_len.checked_add(ADTS_HEADER_LEN)?;
        if len > MAX_ADTS_FRAME {
            return None;
        }
        let len = len as u16;
        let ch = self.channel_config & 0x07;
        // Buffer fullness 0x7ff: variable bit rate. One raw data block per frame.
        Some([
            0xff,
            0xf1, // syncword low bits, MPEG-4, layer 0, protection_absent
            ((self.profile & 0x03) << 6) | ((self.sampling_index & 0x0f) << 2) | (ch >> 2),
            ((ch & 0x03) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len as u8 & 0x07) << 5) | 0x1f,
            0xfc,
        ])
    }
}

fn object_type(r: &mut BitReader<'_>) -> Option<u32> {
    match r.u32_bits(5)? {
        31 => Some(32 + r.u32_bits(6)?),
        aot => Some(aot),
    }
}

fn sampling_index(r: &mut BitReader<'_>) -> Option<u8> {
    match r.u32_bits(4)? {
        15 => Some(nearest_rate_index(r.u32_bits(24)?)),
        i if (i as usize) < RATES.len() => Some(i as u8),
        _ => None,
    }
}

fn sampling_index_or_skip(r: &mut BitReader<'_>) -> Option<()> {
    if r.u32_bits(4)? == 15 {
        r.u32_bits(24)?;
    }
    Some(())
}

/// The table index whose rate is closest to `rate` (the first of two equally close).
pub fn nearest_rate_index(rate: u32) -> u8 {
    let mut best = 0;
    for (i, &r) in RATES.iter().enumerate() {
        if r.abs_diff(rate) < RATES[best].abs_diff(rate) {
            best = i;
        }
    }
    best as u8
}

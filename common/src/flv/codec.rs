//! Codec inspection of FLV/RTMP audio and video tag bodies (legacy and Enhanced RTMP headers)
//! and the codec configuration summaries used for stats. Must not modify or copy payloads.

use super::bits::ByteReader;
use super::{audio, av1, avc, hevc};

/// Video codec of a tag, from the legacy codec id or the Enhanced RTMP FourCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    Avc,
    Hevc,
    Av1,
    Vp9,
    Vp8,
    /// A legacy codec id we do not interpret (2 = Sorenson H.263, 4 = VP6, ...). `Other(0)`
    /// stands for "not signalled" (an Enhanced RTMP command frame carries no FourCC).
    Other(u8),
    OtherFourCc([u8; 4]),
}

impl VideoCodec {
    pub fn from_fourcc(fourcc: [u8; 4]) -> Self {
        match &fourcc {
            b"avc1" => Self::Avc,
            b"hvc1" => Self::Hevc,
            b"av01" => Self::Av1,
            b"vp09" => Self::Vp9,
            b"vp08" => Self::Vp8,
            _ => Self::OtherFourCc(fourcc),
        }
    }

    /// The Enhanced RTMP FourCC, if the codec has one.
    pub fn fourcc(self) -> Option<[u8; 4]> {
        match self {
            Self::Avc => Some(*b"avc1"),
            Self::Hevc => Some(*b"hvc1"),
            Self::Av1 => Some(*b"av01"),
            Self::Vp9 => Some(*b"vp09"),
            Self::Vp8 => Some(*b"vp08"),
            Self::Other(_) => None,
            Self::OtherFourCc(f) => Some(f),
        }
    }

    /// Short lowercase name for stats and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avc => "h264",
            Self::Hevc => "hevc",
            Self::Av1 => "av1",
            Self::Vp9 => "vp9",
            Self::Vp8 => "vp8",
            Self::Other(2) => "h263",
            Self::Other(3) | Self::Other(6) => "screen",
            Self::Other(4) | Self::Other(5) => "vp6",
            Self::Other(_) | Self::OtherFourCc(_) => "other",
        }
    }
}

/// Audio codec of a tag, from the legacy SoundFormat or the Enhanced RTMP FourCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    Aac,
    Mp3,
    Opus,
    Flac,
    Ac3,
    Eac3,
    Speex,
    G711ALaw,
    G711MuLaw,
    /// A legacy SoundFormat we do not interpret (0/3 = LPCM, 1 = ADPCM, 4-6 = Nellymoser, ...).
    Other(u8),
    OtherFourCc([u8; 4]),
}

impl AudioCodec {
    pub fn from_fourcc(fourcc: [u8; 4]) -> Self {
        match &fourcc {
            b"mp4a" => Self::Aac,
            b".mp3" => Self::Mp3,
            b"Opus" => Self::Opus,
            b"fLaC" => Self::Flac,
            b"ac-3" => Self::Ac3,
            b"ec-3" => Self::Eac3,
            _ => Self::OtherFourCc(fourcc),
        }
    }

    /// Short lowercase name for stats and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aac => "aac",
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
            Self::Flac => "flac",
            Self::Ac3 => "ac3",
            Self::Eac3 => "eac3",
            Self::Speex => "speex",
            Self::G711ALaw => "pcm_alaw",
            Self::G711MuLaw => "pcm_mulaw",
            Self::Other(_) | Self::OtherFourCc(_) => "other",
        }
    }
}

/// What the header of a video tag body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTagInfo {
    pub codec: VideoCodec,
    /// Raw frame type: 1 key, 2 inter, 3 disposable inter, 4 generated key, 5 command.
    pub frame_type: u8,
    /// Frame type 1 (this is also set on sequence headers, which encoders send as "key").
    pub keyframe: bool,
    /// Decoder configuration (AVC/HEVC/AV1/VP9 record; Enhanced SequenceStart or
    /// MPEG2TSSequenceStart).
    pub sequence_header: bool,
    /// The tag carries coded pictures (NAL units / OBUs / VPx frames).
    pub coded_frame: bool,
    /// End of sequence (AVC packet type 2, Enhanced SequenceEnd).
    pub end_of_sequence: bool,
    /// Enhanced `Metadata` packet (AMF, e.g. colorInfo); frame type is meaningless then.
    pub metadata: bool,
    /// Video info/command frame (frame type 5): no picture.
    pub command: bool,
    /// Enhanced RTMP header (IsExHeader set).
    pub enhanced: bool,
    /// Enhanced Multitrack packet; the other fields describe its first track.
    pub multitrack: bool,
    /// Composition time offset in ms (pts - dts), 0 where the format has none.
    pub composition_time: i32,
    /// Offset in the payload where the codec data (configuration record or coded data) starts.
    pub data_offset: usize,
    /// Length of that codec data (up to the end of the first track for multitrack packets).
    pub data_len: usize,
}

/// What the header of an audio tag body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTagInfo {
    pub codec: AudioCodec,
    /// AAC AudioSpecificConfig or Enhanced SequenceStart.
    pub sequence_header: bool,
    /// Enhanced SequenceEnd.
    pub end_of_sequence: bool,
    /// Enhanced RTMP header (SoundFormat 9).
    pub enhanced: bool,
    /// Enhanced Multitrack packet; the other fields describe its first track.
    pub multitrack: bool,
    /// Offset in the payload where the codec data starts.
    pub data_offset: usize,
    pub data_len: usize,
}

const PT_SEQUENCE_START: u8 = 0;
const PT_CODED_FRAMES: u8 = 1;
const PT_SEQUENCE_END: u8 = 2;
const PT_CODED_FRAMES_X: u8 = 3;
const PT_METADATA: u8 = 4;
const PT_MPEG2TS_SEQUENCE_START: u8 = 5;
const PT_MULTITRACK: u8 = 6;
const PT_MOD_EX: u8 = 7;

const AUDIO_PT_MULTICHANNEL_CONFIG: u8 = 4;
const AUDIO_PT_MULTITRACK: u8 = 5;

const MULTITRACK_ONE_TRACK: u8 = 0;
const MULTITRACK_MANY_CODECS: u8 = 2;

/// Inspects a video tag body. `None` if empty or its header is truncated or unknown.
pub fn inspect_video(payload: &[u8]) -> Option<VideoTagInfo> {
    let b0 = *payload.first()?;
    if b0 & 0x80 != 0 {
        return inspect_enhanced_video(payload);
    }
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0f;
    let codec = match codec_id {
        7 => VideoCodec::Avc,
        12 => VideoCodec::Hevc,
        id => VideoCodec::Other(id),
    };
    let mut info = VideoTagInfo {
        codec,
        frame_type,
        keyframe: frame_type == 1,
        sequence_header: false,
        coded_frame: false,
        end_of_sequence: false,
        metadata: false,
        command: frame_type == 5,
        enhanced: false,
        multitrack: false,
        composition_time: 0,
        data_offset: 1,
        data_len: payload.len() - 1,
    };
    if info.command {
        return Some(info);
    }
    match codec {
        VideoCodec::Avc | VideoCodec::Hevc => {
            let mut r = ByteReader::new(payload);
            r.skip(1)?;
            let packet_type = r.u8()?;
            info.composition_time = r.i24()?;
            info.data_offset = r.position();
            info.data_len = r.remaining();
            match packet_type {
                0 => info.sequence_header = true,
                1 => info.coded_frame = true,
                2 => info.end_of_sequence = true,
                _ => return None,
            }
        }
        _ => info.coded_frame = true,
    }
    Some(info)
}

/// Skips ModEx prefixes; returns the packet type that follows them.
fn skip_mod_ex(r: &mut ByteReader<'_>, mut packet_type: u8) -> Option<u8> {
    // Each round consumes at least two bytes, so hostile input ends the loop.
    while packet_type == PT_MOD_EX {
        let mut size = usize::from(r.u8()?) + 1;
        if size == 256 {
            size = usize::from(r.u16()?) + 1;
        }
        r.skip(size)?;
        packet_type = r.u8()? & 0x0f;
    }
    Some(packet_type)
}

/// For a multitrack packet: reads the first track's header, returns (fourcc, track data length).
fn first_track(
    r: &mut ByteReader<'_>,
    multitrack_type: u8,
    mut fourcc: Option<[u8; 4]>,
) -> Option<([u8; 4], usize)> {
    if multitrack_type == MULTITRACK_MANY_CODECS {
        fourcc = Some(r.fourcc()?);
    }
    let _track_id = r.u8()?;
    let len = if multitrack_type == MULTITRACK_ONE_TRACK {
        r.remaining()
    } else {
        (r.u24()? as usize).min(r.remaining())
    };
    Some((fourcc?, len))
}

fn inspect_enhanced_video(payload: &[u8]) -> Option<VideoTagInfo> {
    let mut r = ByteReader::new(payload);
    let b0 = r.u8()?;
    let frame_type = (b0 >> 4) & 0x07;
    let mut packet_type = skip_mod_ex(&mut r, b0 & 0x0f)?;
    let mut info = VideoTagInfo {
        codec: VideoCodec::Other(0),
        frame_type,
        keyframe: frame_type == 1,
        sequence_header: false,
        coded_frame: false,
        end_of_sequence: false,
        metadata: false,
        command: false,
        enhanced: true,
        multitrack: false,
        composition_time: 0,
        data_offset: 0,
        data_len: 0,
    };
    if packet_type != PT_METADATA && frame_type == 5 {
        // Command frame: one command byte, no FourCC, no body.
        info.command = true;
        info.keyframe = false;
        info.data_offset = r.position();
        info.data_len = r.remaining();
        return Some(info);
    }
    let fourcc;
    let mut len;
    if packet_type == PT_MULTITRACK {
        let b = r.u8()?;
        let multitrack_type = b >> 4;
        packet_type = b & 0x0f;
        if packet_type == PT_MULTITRACK || multitrack_type > MULTITRACK_MANY_CODECS {
            return None;
        }
        let shared = if multitrack_type != MULTITRACK_MANY_CODECS {
            Some(r.fourcc()?)
        } else {
            None
        };
        (fourcc, len) = first_track(&mut r, multitrack_type, shared)?;
        info.multitrack = true;
    } else {
        fourcc = r.fourcc()?;
        len = r.remaining();
    }
    info.codec = VideoCodec::from_fourcc(fourcc);
    match packet_type {
        PT_SEQUENCE_START => info.sequence_header = true,
        PT_MPEG2TS_SEQUENCE_START => info.sequence_header = true,
        PT_CODED_FRAMES => {
            info.coded_frame = true;
            if matches!(info.codec, VideoCodec::Avc | VideoCodec::Hevc) {
                info.composition_time = r.i24()?;
                len = len.checked_sub(3)?;
            }
        }
        PT_CODED_FRAMES_X => info.coded_frame = true,
        PT_SEQUENCE_END => info.end_of_sequence = true,
        PT_METADATA => {
            info.metadata = true;
            info.keyframe = false;
        }
        _ => return None,
    }
    info.data_offset = r.position();
    info.data_len = len;
    Some(info)
}

/// Inspects an audio tag body. `None` if empty or its header is truncated or unknown.
pub fn inspect_audio(payload: &[u8]) -> Option<AudioTagInfo> {
    let b0 = *payload.first()?;
    let format = b0 >> 4;
    if format == 9 {
        return inspect_enhanced_audio(payload);
    }
    let codec = match format {
        10 => AudioCodec::Aac,
        2 | 14 => AudioCodec::Mp3,
        11 => AudioCodec::Speex,
        7 => AudioCodec::G711ALaw,
        8 => AudioCodec::G711MuLaw,
        f => AudioCodec::Other(f),
    };
    let mut info = AudioTagInfo {
        codec,
        sequence_header: false,
        end_of_sequence: false,
        enhanced: false,
        multitrack: false,
        data_offset: 1,
        data_len: payload.len() - 1,
    };
    if codec == AudioCodec::Aac {
        info.sequence_header = *payload.get(1)? == 0;
        info.data_offset = 2;
        info.data_len = payload.len() - 2;
    }
    Some(info)
}

fn inspect_enhanced_audio(payload: &[u8]) -> Option<AudioTagInfo> {
    let mut r = ByteReader::new(payload);
    let b0 = r.u8()?;
    let mut packet_type = skip_mod_ex(&mut r, b0 & 0x0f)?;
    let fourcc;
    let len;
    let mut multitrack = false;
    if packet_type == AUDIO_PT_MULTITRACK {
        let b = r.u8()?;
        let multitrack_type = b >> 4;
        packet_type = b & 0x0f;
        if packet_type == AUDIO_PT_MULTITRACK || multitrack_type > MULTITRACK_MANY_CODECS {
            return None;
        }
        let shared = if multitrack_type != MULTITRACK_MANY_CODECS {
            Some(r.fourcc()?)
        } else {
            None
        };
        (fourcc, len) = first_track(&mut r, multitrack_type, shared)?;
        multitrack = true;
    } else {
        fourcc = r.fourcc()?;
        len = r.remaining();
    }
    match packet_type {
        PT_SEQUENCE_START | PT_CODED_FRAMES | PT_SEQUENCE_END | AUDIO_PT_MULTICHANNEL_CONFIG => {}
        _ => return None,
    }
    Some(AudioTagInfo {
        codec: AudioCodec::from_fourcc(fourcc),
        sequence_header: packet_type == PT_SEQUENCE_START,
        end_of_sequence: packet_type == PT_SEQUENCE_END,
        enhanced: true,
        multitrack,
        data_offset: r.position(),
        data_len: len,
    })
}

/// Video stream summary from a sequence header, for stats and the cluster record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VideoConfig {
    pub codec: Option<VideoCodec>,
    /// e.g. "High", "Main", "Main 10".
    pub profile: Option<String>,
    /// e.g. "3.1".
    pub level: Option<String>,
    /// Display size after cropping; 0 when unknown.
    pub width: u32,
    pub height: u32,
}

/// Audio stream summary from a sequence header (or, for codecs without one, any tag).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AudioConfig {
    pub codec: Option<AudioCodec>,
    /// e.g. "LC", "HE-AAC".
    pub profile: Option<String>,
    /// Output sample rate in Hz; 0 when unknown.
    pub sample_rate: u32,
    /// 0 when unknown.
    pub channels: u8,
}

fn codec_data(payload: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    payload.get(offset..offset.checked_add(len)?)
}

/// Parses a video sequence header tag body. `None` if it is not one, or its configuration
/// record is unreadable. A record whose parameter sets cannot be parsed still yields the
/// codec and what the record itself says (profile/level), with a zero size.
pub fn parse_video_config(payload: &[u8]) -> Option<VideoConfig> {
    let info = inspect_video(payload)?;
    if !info.sequence_header {
        return None;
    }
    let data = codec_data(payload, info.data_offset, info.data_len)?;
    let mut config = match info.codec {
        VideoCodec::Avc => avc::parse_decoder_config(data)?,
        VideoCodec::Hevc => hevc::parse_decoder_config(data)?,
        VideoCodec::Av1 if is_mpeg2ts_sequence_start(payload) => {
            // AV1 video descriptor: tag, length, then the 4 fixed av1C bytes.
            av1::parse_codec_config(data.get(2..)?)?
        }
        VideoCodec::Av1 => av1::parse_codec_config(data)?,
        VideoCodec::Vp9 => parse_vpcc(data)?,
        _ => VideoConfig::default(),
    };
    config.codec = Some(info.codec);
    Some(config)
}

fn is_mpeg2ts_sequence_start(payload: &[u8]) -> bool {
    let mut r = ByteReader::new(payload);
    match r.u8() {
        Some(b0) if b0 & 0x80 != 0 => {
            let pt = skip_mod_ex(&mut r, b0 & 0x0f);
            match pt {
                Some(PT_MULTITRACK) => r.u8().map(|b| b & 0x0f) == Some(PT_MPEG2TS_SEQUENCE_START),
                pt => pt == Some(PT_MPEG2TS_SEQUENCE_START),
            }
        }
        _ => false,
    }
}

/// VPCodecConfigurationRecord (vpcC without the full-box header): profile and level only.
fn parse_vpcc(data: &[u8]) -> Option<VideoConfig> {
    let mut r = ByteReader::new(data);
    let profile = r.u8()?;
    let level = r.u8()?;
    Some(VideoConfig {
        profile: Some(format!("Profile {profile}")),
        level: Some(format!("{}.{}", level / 10, level % 10)),
        ..VideoConfig::default()
    })
}

/// Parses an audio tag body into a stream summary. For AAC (legacy and `mp4a`), Opus and FLAC
/// this needs the sequence header; MP3 is read from its frame header, other legacy formats
/// from the tag's rate/channel flags.
pub fn parse_audio_config(payload: &[u8]) -> Option<AudioConfig> {
    let info = inspect_audio(payload)?;
    let data = codec_data(payload, info.data_offset, info.data_len)?;
    let mut config = if info.enhanced {
        match info.codec {
            AudioCodec::Aac if info.sequence_header => audio::parse_audio_specific_config(data)?,
            AudioCodec::Opus if info.sequence_header => audio::parse_opus_head(data)?,
            AudioCodec::Flac if info.sequence_header => audio::parse_flac_streaminfo(data)?,
            AudioCodec::Mp3 if !info.sequence_header => audio::parse_mp3_header(data)?,
            _ if info.sequence_header => AudioConfig::default(),
            _ => return None,
        }
    } else {
        match info.codec {
            AudioCodec::Aac if info.sequence_header => audio::parse_audio_specific_config(data)?,
            AudioCodec::Aac => return None,
            AudioCodec::Mp3 => audio::parse_mp3_header(data)
                .unwrap_or_else(|| legacy_audio_flags(payload[0], info.codec)),
            _ => legacy_audio_flags(payload[0], info.codec),
        }
    };
    config.codec = Some(info.codec);
    Some(config)
}

fn legacy_audio_flags(b0: u8, codec: AudioCodec) -> AudioConfig {
    let sample_rate = match (codec, (b0 >> 2) & 3) {
        (AudioCodec::Other(4), _) => 16_000,
        (AudioCodec::Other(5), _) | (AudioCodec::G711ALaw | AudioCodec::G711MuLaw, _) => 8_000,
        (AudioCodec::Speex, _) => 16_000,
        (_, 0) => 5_512,
        (_, 1) => 11_025,
        (_, 2) => 22_050,
        _ => 44_100,
    };
    AudioConfig {
        codec: Some(codec),
        profile: None,
        sample_rate,
        channels: if b0 & 1 == 1 { 2 } else { 1 },
    }
}

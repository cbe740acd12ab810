//! Tracks and samples: a stream's codec configuration (from its sequence headers) and its access
//! units, sliced (never copied) from FLV/RTMP frame payloads. The input of the MPEG-TS and fMP4
//! muxers. Must not do I/O or read clocks: timestamps come with the frames.

use bytes::Bytes;

use crate::flv::{AudioCodec, VideoCodec, inspect_audio, inspect_video};
use crate::media::{FrameKind, MediaFrame};

/// The video track: H.264, HEVC or AV1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack {
    pub codec: VideoCodec,
    /// The decoder configuration record as carried by the sequence header: `avcC`
    /// (AVCDecoderConfigurationRecord), `hvcC` (HEVCDecoderConfigurationRecord) or `av1C`.
    pub record: Bytes,
    /// Display size; 0 when the record's parameter sets could not be parsed.
    pub width: u32,
    pub height: u32,
}

/// The audio track: AAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack {
    pub codec: AudioCodec,
    /// The AudioSpecificConfig.
    pub asc: Bytes,
    /// Output sample rate in Hz and channel count, from the AudioSpecificConfig.
    pub sample_rate: u32,
    pub channels: u8,
}

/// What a stream carries. Audio-only and video-only streams have one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracks {
    pub video: Option<VideoTrack>,
    pub audio: Option<AudioTrack>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

/// One access unit of one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub track: TrackKind,
    /// Decode time in milliseconds on the stream's unwrapped timeline (see `hls::Segmenter`).
    pub dts: u64,
    /// Presentation time minus decode time, in milliseconds (FLV composition time).
    pub cts: i32,
    /// A picture a decoder can start from (always true for audio).
    pub keyframe: bool,
    /// The codec payload: H.264/HEVC: NAL units, each prefixed by its length (the size the
    /// record gives, 4 bytes in practice); AV1: OBUs (low-overhead format); AAC: one raw
    /// access unit.
    pub data: Bytes,
}

/// Codecs the HLS muxers package.
fn packaged_video(codec: VideoCodec) -> bool {
    matches!(codec, VideoCodec::Avc | VideoCodec::Hevc | VideoCodec::Av1)
}

impl VideoTrack {
    /// The track a video sequence header describes; `None` for other frames and codecs.
    pub fn from_sequence_header(frame: &MediaFrame) -> Option<Self> {
        if frame.kind != FrameKind::Video || !frame.sequence_header {
            return None;
        }
        let info = inspect_video(&frame.payload)?;
        if !packaged_video(info.codec) || info.multitrack {
            return None;
        }
        let record = slice(&frame.payload, info.data_offset, info.data_len)?;
        let config = crate::flv::parse_video_config(&frame.payload).unwrap_or_default();
        Some(Self {
            codec: info.codec,
            record,
            width: config.width,
            height: config.height,
        })
    }
}

impl AudioTrack {
    /// The track an audio sequence header describes; `None` for other frames and codecs.
    pub fn from_sequence_header(frame: &MediaFrame) -> Option<Self> {
        if frame.kind != FrameKind::Audio || !frame.sequence_header {
            return None;
        }
        let info = inspect_audio(&frame.payload)?;
        if info.codec != AudioCodec::Aac || info.multitrack {
            return None;
        }
        let asc = slice(&frame.payload, info.data_offset, info.data_len)?;
        let config = crate::flv::parse_audio_config(&frame.payload)?;
        if config.sample_rate == 0 {
            return None;
        }
        Some(Self {
            codec: AudioCodec::Aac,
            asc,
            sample_rate: config.sample_rate,
            channels: config.channels,
        })
    }
}

impl Sample {
    /// The access unit a coded audio or video frame carries, at decode time `dts` (ms,
    /// unwrapped). `None` for sequence headers, metadata, commands, end-of-sequence and codecs
    /// other than the track's.
    pub fn from_frame(frame: &MediaFrame, dts: u64, tracks: &Tracks) -> Option<Self> {
        if frame.sequence_header {
            return None;
        }
        match frame.kind {
            FrameKind::Video => {
                let track = tracks.video.as_ref()?;
                let info = inspect_video(&frame.payload)?;
                if !info.coded_frame || info.codec != track.codec || info.multitrack {
                    return None;
                }
                Some(Self {
                    track: TrackKind::Video,
                    dts,
                    cts: info.composition_time,
                    keyframe: frame.keyframe,
                    data: slice(&frame.payload, info.data_offset, info.data_len)?,
                })
            }
            FrameKind::Audio => {
                let track = tracks.audio.as_ref()?;
                let info = inspect_audio(&frame.payload)?;
                if info.codec != track.codec || info.multitrack || info.end_of_sequence {
                    return None;
                }
                Some(Self {
                    track: TrackKind::Audio,
                    dts,
                    cts: 0,
                    keyframe: true,
                    data: slice(&frame.payload, info.data_offset, info.data_len)?,
                })
            }
            FrameKind::Data => None,
        }
    }
}

fn slice(payload: &Bytes, offset: usize, len: usize) -> Option<Bytes> {
    let end = offset.checked_add(len)?;
    (end <= payload.len() && len > 0).then(|| payload.slice(offset..end))
}

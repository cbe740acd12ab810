//! Sans-IO FLV: tags <-> `MediaFrame`, codec header parsing (AVC, HEVC, AV1, AAC, Enhanced RTMP).
//! No I/O, no clocks.

mod audio;
mod av1;
mod avc;
pub(crate) mod bits;
pub mod codec;
mod hevc;
pub mod tag;

#[cfg(test)]
mod tests;

pub use codec::{
    AudioCodec, AudioConfig, AudioTagInfo, VideoCodec, VideoConfig, VideoTagInfo, inspect_audio,
    inspect_video, parse_audio_config, parse_video_config,
};
pub use tag::{
    FlvError, FlvHeader, FlvReader, FlvTag, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, encode_tag,
    file_header, flv_wire, frame_from_message,
};

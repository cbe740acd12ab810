//! Sans-IO HLS: tracks and samples cut from frames, the segmenter (where segments and parts
//! begin, as a pure function of the stream's timeline) and playlist rendering (RFC 8216bis,
//! Low-Latency HLS). No I/O, no clocks: time is passed in.

pub mod playlist;
pub mod segmenter;
pub mod track;

#[cfg(test)]
mod tests;

pub use playlist::{Container, Render, render};
pub use segmenter::{Availability, HlsConfig, Init, Part, Segment, Segmenter};
pub use track::{AudioTrack, Sample, TrackKind, Tracks, VideoTrack};

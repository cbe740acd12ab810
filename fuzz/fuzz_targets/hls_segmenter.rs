//! cargo-fuzz target for the HLS segmenter: arbitrary bytes become a sequence of MediaFrames
//! (sequence headers of plausible AVC/HEVC/AV1/AAC shapes, coded frames, metadata, raw tags,
//! wrapping and jumping timestamps) pushed through `hls::Segmenter`, with new sessions and
//! ends in between. After every step both playlists render, the newest complete segment muxes
//! as MPEG-TS, and nothing panics. Must not touch the network or filesystem.
//! The body is `bodies/hls_segmenter.rs`, shared with the replay test (tests/tests/fuzz_replay.rs).

#![no_main]

mod media_input;
#[path = "bodies/hls_segmenter.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));

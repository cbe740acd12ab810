//! cargo-fuzz target for the MPEG-TS and fMP4 muxers: arbitrary Tracks (real or mangled
//! avcC/hvcC/av1C records and AudioSpecificConfigs, any sizes and sample rates) and Samples
//! (any times, composition offsets, flags and payloads) through `ts::mux_segment`,
//! `fmp4::init_segment`, `fmp4::fragment` and `fmp4::codecs`. Nothing may panic; the output
//! is whole TS packets, well-formed top-level boxes, and the same bytes when muxed twice.
//! Must not touch the network or filesystem.
//! The body is `bodies/ts_fmp4_mux.rs`, shared with the replay test (tests/tests/fuzz_replay.rs).

#![no_main]

mod media_input;
#[path = "bodies/ts_fmp4_mux.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));

//! cargo-fuzz target for FLV: arbitrary bytes through FlvReader (whole stream and bare tags, in
//! chunks) and the codec inspectors/config parsers must never panic; tags read back must
//! re-encode to the same tag. Must not touch the network or filesystem.
//! The body is `bodies/flv.rs`, shared with the replay test (tests/tests/fuzz_replay.rs).

#![no_main]

#[path = "bodies/flv.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));

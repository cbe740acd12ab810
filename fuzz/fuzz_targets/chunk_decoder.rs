//! cargo-fuzz target for the RTMP chunk decoder: arbitrary bytes in arbitrary splits must never panic, never stall with a full chunk buffered, and never exceed the decoder's limits. Must not touch the network or filesystem.
//! The body is `bodies/chunk_decoder.rs`, shared with the replay test (tests/tests/fuzz_replay.rs).

#![no_main]

#[path = "bodies/chunk_decoder.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));

//! cargo-fuzz target for AMF0: arbitrary bytes must decode or fail without panicking, and what
//! decodes must re-encode to bytes that decode to the same encoding. Must not touch the network
//! or filesystem.
//! The body is `bodies/amf0.rs`, shared with the replay test (tests/tests/fuzz_replay.rs).

#![no_main]

#[path = "bodies/amf0.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));

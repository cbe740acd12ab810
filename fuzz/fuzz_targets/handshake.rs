//! cargo-fuzz target for the RTMP handshakes: arbitrary bytes fed in arbitrary splits to a
//! server (and a client) must never panic, never consume more than offered, never consume after
//! completion and never recover from an error. Must not touch the network or filesystem.
//! The body is `bodies/handshake.rs`, shared with the replay test (tests/tests/fuzz_replay.rs).

#![no_main]

#[path = "bodies/handshake.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));

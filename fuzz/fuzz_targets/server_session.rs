//! cargo-fuzz target for a whole RTMP server conversation (`ServerSession`): bytes in, events
//! and bytes out. The body is `bodies/rtmp_session.rs`, shared with the replay test
//! (tests/tests/fuzz_replay.rs). Must not touch the network or filesystem.

#![no_main]

#[path = "bodies/rtmp_session.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::server(data));

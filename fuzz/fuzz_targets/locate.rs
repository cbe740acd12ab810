//! cargo-fuzz target for the locator's inputs and forward URLs; the body is `bodies/locate.rs`,
//! shared with the replay test (tests/tests/fuzz_replay.rs).

#![no_main]

#[path = "bodies/locate.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));

//! Sans-IO RTMP: AMF0, handshakes, chunk stream codec, messages, commands and the server and
//! client session state machines. Bytes in, bytes and events out: no tokio, no sockets, no clocks.

pub mod amf0;
pub mod chunk;
pub mod client;
pub mod command;
pub mod handshake;
pub mod message;
pub mod server;
#[cfg(test)]
mod session_tests;

pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use server::{STREAM_ID, ServerConfig, ServerEvent, ServerSession, SessionError};

/// Chunk stream ids of media sent to players: fixed so that one encoded message serves all.
pub const CSID_AUDIO: u32 = 4;
pub const CSID_DATA: u32 = 5;
pub const CSID_VIDEO: u32 = 6;

/// Frees a session's input buffer once everything in it is decoded. Between reads it then
/// holds only a partial chunk, if any: a pull or a player waiting for its next read holds no
/// buffer (the next read's bytes get an allocation of their own size), where a kept one
/// stayed at its largest read (~100 KiB per pull, 200 pulls: 22 MiB).
fn release_if_empty(input: &mut bytes::BytesMut) {
    if input.is_empty() && input.capacity() > 0 {
        *input = bytes::BytesMut::new();
    }
}

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

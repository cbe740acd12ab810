//! RTMP message type ids, protocol control and user control messages (parse and encode), and acknowledgement bookkeeping. Sans-IO: it must not do I/O, read clocks, or panic on peer input.

use bytes::BytesMut;

use super::chunk::{MAX_CHUNK_SIZE, encode_message};

/// Message type ids (RTMP spec 5.4, 7.1).
pub mod type_id {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// User control event types (RTMP spec 7.1.7).
pub mod event {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// Chunk stream id reserved for protocol control messages.
pub const CONTROL_CSID: u32 = 2;

/// Set Peer Bandwidth limit types.
pub const LIMIT_HARD: u8 = 0;
pub const LIMIT_SOFT: u8 = 1;
pub const LIMIT_DYNAMIC: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        buffer_ms: u32,
    },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    /// An event we do not interpret (e.g. Flash's SWF verification, BufferEmpty/BufferReady).
    Unknown {
        event: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMessage {
    SetChunkSize(u32),
    Abort(u32),
    Acknowledgement(u32),
    WindowAckSize(u32),
    SetPeerBandwidth { size: u32, limit_type: u8 },
    UserControl(UserControl),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("control message type {type_id} is truncated")]
    Truncated { type_id: u8 },
    #[error("invalid chunk size {0} (allowed 1..={MAX_CHUNK_SIZE})")]
    InvalidChunkSize(u32),
}

fn be32_at(payload: &[u8], at: usize, type_id: u8) -> Result<u32, MessageError> {
    match payload.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(MessageError::Truncated { type_id }),
    }
}

impl UserControl {
    pub fn event_type(&self) -> u16 {
        match self {
            UserControl::StreamBegin(_) => event::STREAM_BEGIN,
            UserControl::StreamEof(_) => event::STREAM_EOF,
            UserControl::StreamDry(_) => event::STREAM_DRY,
            UserControl::SetBufferLength { .. } => event::SET_BUFFER_LENGTH,
            UserControl::StreamIsRecorded(_) => event::STREAM_IS_RECORDED,
            UserControl::PingRequest(_) => event::PING_REQUEST,
            UserControl::PingResponse(_) => event::PING_RESPONSE,
            UserControl::Unknown { event } => *event,
        }
    }

    /// Parses a user control message payload (event type, then event data).
    pub fn parse(payload: &[u8]) -> Result<UserControl, MessageError> {
        let t = type_id::USER_CONTROL;
        let event = match payload {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => return Err(MessageError::Truncated { type_id: t }),
        };
        let value = || be32_at(payload, 2, t);
        Ok(match event {
            event::STREAM_BEGIN => UserControl::StreamBegin(value()?),
            event::STREAM_EOF => UserControl::StreamEof(value()?),
            event::STREAM_DRY => UserControl::StreamDry(value()?),
            event::SET_BUFFER_LENGTH => UserControl::SetBufferLength {
                stream_id: value()?,
                buffer_ms: be32_at(payload, 6, t)?,
            },
            event::STREAM_IS_RECORDED => UserControl::StreamIsRecorded(value()?),
            event::PING_REQUEST => UserControl::PingRequest(value()?),
            event::PING_RESPONSE => UserControl::PingResponse(value()?),
            event => UserControl::Unknown { event },
        })
    }

    /// Writes the payload into `out`; returns its length.
    fn write_payload(&self, out: &mut [u8; 10]) -> usize {
        out[..2].copy_from_slice(&self.event_type().to_be_bytes());
        let value = match self {
            UserControl::StreamBegin(v)
            | UserControl::StreamEof(v)
            | UserControl::StreamDry(v)
            | UserControl::StreamIsRecorded(v)
            | UserControl::PingRequest(v)
            | UserControl::PingResponse(v) => *v,
            UserControl::SetBufferLength {
                stream_id,
                buffer_ms,
            } => {
                out[2..6].copy_from_slice(&stream_id.to_be_bytes());
                out[6..10].copy_from_slice(&buffer_ms.to_be_bytes());
                return 10;
            }
            UserControl::Unknown { .. } => return 2,
        };
        out[2..6].copy_from_slice(&value.to_be_bytes());
        6
    }
}

impl ControlMessage {
    pub fn type_id(&self) -> u8 {
        match self {
            ControlMessage::SetChunkSize(_) => type_id::SET_CHUNK_SIZE,
            ControlMessage::Abort(_) => type_id::ABORT,
            ControlMessage::Acknowledgement(_) => type_id::ACKNOWLEDGEMENT,
            ControlMessage::WindowAckSize(_) => type_id::WINDOW_ACK_SIZE,
            ControlMessage::SetPeerBandwidth { .. } => type_id::SET_PEER_BANDWIDTH,
            ControlMessage::UserControl(_) => type_id::USER_CONTROL,
        }
    }

    /// Parses a protocol control (1, 2, 3, 5, 6) or user control (4) message. `Ok(None)` if
    /// `type_id` is not one of those. Trailing bytes are ignored; a Set Peer Bandwidth without
    /// its limit type byte (sent by some clients, accepted by ffmpeg) means dynamic.
    pub fn parse(type_id: u8, payload: &[u8]) -> Result<Option<ControlMessage>, MessageError> {
        let value = || be32_at(payload, 0, type_id);
        Ok(Some(match type_id {
            type_id::SET_CHUNK_SIZE => {
                let size = value()?;
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(MessageError::InvalidChunkSize(size));
                }
                ControlMessage::SetChunkSize(size)
            }
            type_id::ABORT => ControlMessage::Abort(value()?),
            type_id::ACKNOWLEDGEMENT => ControlMessage::Acknowledgement(value()?),
            type_id::USER_CONTROL => ControlMessage::UserControl(UserControl::parse(payload)?),
            type_id::WINDOW_ACK_SIZE => ControlMessage::WindowAckSize(value()?),
            type_id::SET_PEER_BANDWIDTH => ControlMessage::SetPeerBandwidth {
                size: value()?,
                limit_type: payload.get(4).copied().unwrap_or(LIMIT_DYNAMIC),
            },
            _ => return Ok(None),
        }))
    }

    /// Appends the encoded message (chunked, csid 2, stream 0, timestamp 0) with the given
    /// outbound chunk size.
    pub fn encode(&self, chunk_size: u32, out: &mut BytesMut) {
        let mut payload = [0u8; 10];
        let len = match self {
            ControlMessage::SetChunkSize(v)
            | ControlMessage::Abort(v)
            | ControlMessage::Acknowledgement(v)
            | ControlMessage::WindowAckSize(v) => {
                payload[..4].copy_from_slice(&v.to_be_bytes());
                4
            }
            ControlMessage::SetPeerBandwidth { size, limit_type } => {
                payload[..4].copy_from_slice(&size.to_be_bytes());
                payload[4] = *limit_type;
                5
            }
            ControlMessage::UserControl(uc) => uc.write_payload(&mut payload),
        };
        encode_message(
            chunk_size,
            CONTROL_CSID,
            0,
            self.type_id(),
            0,
            &payload[..len],
            out,
        );
    }
}

/// Tracks bytes received and tells when an Acknowledgement is due (peer's window size).
#[derive(Debug, Clone, Default)]
pub struct AckTracker {
    /// 0 until the peer sends Window Acknowledgement Size: no acknowledgements before that.
    window: u32,
    last_ack: u64,
}

impl AckTracker {
    pub fn new() -> Self {
        AckTracker::default()
    }

    pub fn set_window(&mut self, size: u32) {
        self.window = size;
    }

    pub fn window(&self) -> u32 {
        self.window
    }

    /// Returns `Some(sequence number to ack)` when `total_bytes` (all bytes received on the
    /// connection, handshake included if the caller counts it) has reached the last
    /// acknowledged total plus the window. The sequence number is that total modulo 2^32.
    pub fn on_received(&mut self, total_bytes: u64) -> Option<u32> {
        if self.window == 0 || total_bytes.saturating_sub(self.last_ack) < u64::from(self.window) {
            return None;
        }
        self.last_ack = total_bytes;
        Some(total_bytes as u32)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::ChunkDecoder;

    fn round_trip(msg: ControlMessage, chunk_size: u32) {
        let mut out = BytesMut::new();
        msg.encode(chunk_size, &mut out);
        let mut d = ChunkDecoder::default();
        d.set_chunk_size(chunk_size).unwrap();
        let raw = d.decode(&mut out).unwrap().unwrap();
        assert!(out.is_empty());
        assert_eq!((raw.csid, raw.stream_id, raw.timestamp), (2, 0, 0));
        assert_eq!(raw.type_id, msg.type_id());
        assert_eq!(
            ControlMessage::parse(raw.type_id, &raw.payload),
            Ok(Some(msg))
        );
    }

    const ALL: [ControlMessage; 14] = [
        ControlMessage::SetChunkSize(4096),
        ControlMessage::Abort(5),
        ControlMessage::Acknowledgement(0xDEAD_BEEF),
        ControlMessage::WindowAckSize(2_500_000),
        ControlMessage::SetPeerBandwidth {
            size: 2_500_000,
            limit_type: LIMIT_DYNAMIC,
        },
        ControlMessage::SetPeerBandwidth {
            size: 1,
            limit_type: LIMIT_HARD,
        },
        ControlMessage::UserControl(UserControl::StreamBegin(1)),
        ControlMessage::UserControl(UserControl::StreamEof(1)),
        ControlMessage::UserControl(UserControl::StreamDry(2)),
        ControlMessage::UserControl(UserControl::SetBufferLength {
            stream_id: 1,
            buffer_ms: 3000,
        }),
        ControlMessage::UserControl(UserControl::StreamIsRecorded(1)),
        ControlMessage::UserControl(UserControl::PingRequest(123_456)),
        ControlMessage::UserControl(UserControl::PingResponse(u32::MAX)),
        ControlMessage::UserControl(UserControl::Unknown { event: 31 }),
    ];

    #[test]
    fn every_control_message_round_trips() {
        for msg in ALL {
            for chunk_size in [1, 4, 128, 4096] {
                round_trip(msg, chunk_size);
            }
        }
    }

    #[test]
    fn wire_bytes_match_the_spec() {
        let mut out = BytesMut::new();
        ControlMessage::SetChunkSize(4096).encode(128, &mut out);
        assert_eq!(
            &out[..],
            &[2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0][..]
        );
        out.clear();
        ControlMessage::UserControl(UserControl::StreamBegin(1)).encode(128, &mut out);
        assert_eq!(
            &out[..],
            &[2, 0, 0, 0, 0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..]
        );
        out.clear();
        ControlMessage::SetPeerBandwidth {
            size: 0x0102_0304,
            limit_type: 2,
        }
        .encode(128, &mut out);
        assert_eq!(&out[12..], &[1, 2, 3, 4, 2][..]);
    }

    #[test]
    fn non_control_types_are_not_parsed() {
        for t in [
            type_id::AUDIO,
            type_id::VIDEO,
            type_id::DATA_AMF0,
            type_id::COMMAND_AMF0,
            type_id::COMMAND_AMF3,
            type_id::AGGREGATE,
            0,
            7,
        ] {
            assert_eq!(ControlMessage::parse(t, &[0; 8]), Ok(None));
        }
    }

    #[test]
    fn truncated_payloads() {
        for t in [1, 2, 3, 5, 6] {
            assert_eq!(
                ControlMessage::parse(t, &[0, 0, 1]),
                Err(MessageError::Truncated { type_id: t })
            );
        }
        for payload in [
            &[][..],
            &[0],
            &[0, 0, 0, 0, 1],
            &[0, 3, 0, 0, 0, 1, 0, 0, 1],
        ] {
            assert_eq!(
                ControlMessage::parse(4, payload),
                Err(MessageError::Truncated { type_id: 4 })
            );
        }
        // Unknown events carry no data we need.
        assert_eq!(
            ControlMessage::parse(4, &[0, 26]),
            Ok(Some(ControlMessage::UserControl(UserControl::Unknown {
                event: 26
            })))
        );
    }

    #[test]
    fn lenient_parsing() {
        assert_eq!(
            ControlMessage::parse(6, &[0, 0, 1, 0]),
            Ok(Some(ControlMessage::SetPeerBandwidth {
                size: 256,
                limit_type: LIMIT_DYNAMIC
            }))
        );
        assert_eq!(
            ControlMessage::parse(5, &[0, 0, 1, 0, 9, 9]),
            Ok(Some(ControlMessage::WindowAckSize(256)))
        );
    }

    #[test]
    fn invalid_chunk_size() {
        for bad in [0u32, MAX_CHUNK_SIZE + 1, 0x8000_0000 | 128] {
            assert_eq!(
                ControlMessage::parse(1, &bad.to_be_bytes()),
                Err(MessageError::InvalidChunkSize(bad))
            );
        }
    }

    #[test]
    fn ack_tracker_waits_for_a_window() {
        let mut t = AckTracker::new();
        assert_eq!(t.on_received(10_000_000), None);
        t.set_window(1000);
        assert_eq!(t.on_received(10_000_000), Some(10_000_000));
        assert_eq!(t.on_received(10_000_999), None);
        assert_eq!(t.on_received(10_001_000), Some(10_001_000));
        assert_eq!(t.on_received(10_001_500), None);
        t.set_window(0);
        assert_eq!(t.on_received(20_000_000), None);
    }

    #[test]
    fn ack_sequence_number_wraps() {
        let mut t = AckTracker::new();
        t.set_window(2_500_000);
        let near = u64::from(u32::MAX) - 1_000_000;
        assert_eq!(t.on_received(near), Some(near as u32));
        let past = near + 2_500_000;
        assert_eq!(t.on_received(past), Some(1_499_999));
        assert_eq!(t.on_received(past + 2_499_999), None);
        assert_eq!(t.on_received(past + 2_500_000), Some(3_999_999));
    }
}

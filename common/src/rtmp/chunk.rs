//! RTMP chunk stream codec: reassembles a peer's chunks into messages and encodes messages as chunk bytes that many players can share. Sans-IO: it must not do I/O, read clocks, panic on peer input, or allocate beyond its `DecoderLimits`.
//!
//! Decoding is incremental: `ChunkDecoder::decode` only consumes whole chunks from the caller's
//! buffer, so a read buffer of `ChunkDecoder::input_bound()` bytes always suffices. Encoding is
//! stateless (always a type-0 header, then type-3 continuations) so the bytes of one message are
//! identical for every player with the same outbound chunk size and can be shared as one `Bytes`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Chunk size every RTMP peer starts with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size accepted from a peer (and used by the encoder).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Largest message length the 24-bit length field can carry.
pub const MAX_MESSAGE_LEN: u32 = 0xFF_FFFF;
/// Default `DecoderLimits::max_command_size`.
pub const DEFAULT_MAX_COMMAND_SIZE: u32 = 256 * 1024;
/// Longest chunk header: 3-byte basic header, 11-byte type-0 header, 4-byte extended timestamp.
pub const MAX_CHUNK_HEADER_LEN: usize = 18;
/// Smallest chunk stream id (0 and 1 select the 2- and 3-byte basic header forms).
pub const MIN_CSID: u32 = 2;
/// Largest chunk stream id (3-byte basic header form).
pub const MAX_CSID: u32 = 65599;

/// Timestamp field value that means "the real value is in the 4-byte extended timestamp".
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// The first allocation for a multi-chunk message is this many times its first chunk (capped
/// by the message length), so typical frames need no reallocation while a peer that only
/// announces a large message cannot make us allocate much more than it actually sent.
const INITIAL_GROWTH: usize = 8;

/// One complete message as it came off the chunk stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    pub csid: u32,
    pub timestamp: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

/// Chunk stream errors. All of them are fatal for the connection: the decoder's view of the
/// peer's chunk streams can no longer be trusted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChunkError {
    #[error("invalid chunk size {0} (allowed 1..={MAX_CHUNK_SIZE})")]
    InvalidChunkSize(u32),
    #[error("chunk stream {0} continued without a type-0 header")]
    UnknownChunkStream(u32),
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge { len: u32, max: u32 },
    /// A command, data (metadata) or control message larger than `max_command_size`:
    /// refused from its header, before any of it is buffered.
    #[error("message type {type_id} of {len} bytes exceeds the limit of {max}")]
    CommandTooLarge { type_id: u8, len: u32, max: u32 },
    #[error("too many chunk streams")]
    TooManyChunkStreams,
    #[error("partial messages exceed the buffer limit")]
    BufferLimit,
    #[error("malformed control message type {type_id} ({len} bytes)")]
    MalformedControl { type_id: u8, len: usize },
}

/// Bounds on what a peer can make the decoder hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest message accepted (default: the 24-bit field maximum, 16 MiB - 1).
    pub max_message_size: u32,
    /// Largest message of any type but audio, video and aggregate: commands, metadata and
    /// control messages are decoded into values (AMF0), so they get a much smaller bound
    /// (default 256 KiB; real ones are a few hundred bytes, `onMetaData` a few KiB).
    pub max_command_size: u32,
    /// Distinct chunk stream ids a peer may use over the connection (default 64).
    pub max_chunk_streams: usize,
    /// Bytes allocated for partial messages across all chunk streams (default 32 MiB).
    pub max_buffered_bytes: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_message_size: MAX_MESSAGE_LEN,
            max_command_size: DEFAULT_MAX_COMMAND_SIZE,
            max_chunk_streams: 64,
            max_buffered_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The header of the message in progress (or last seen) on one chunk stream.
#[derive(Debug, Clone, Copy, Default)]
struct MessageHeader {
    timestamp: u32,
    /// Raw timestamp field (24-bit or extended) of the last message header: a delta, or the
    /// absolute timestamp after a type-0 header. A type-3 header that starts a new message
    /// adds it again, as the spec (and ffmpeg, librtmp, SRS) do.
    ts_field: u32,
    /// Whether that field was extended, so type-3 headers carry 4 more bytes.
    extended: bool,
    msg_len: u32,
    type_id: u8,
    stream_id: u32,
}

#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    header: MessageHeader,
    /// Payload received so far of a message spanning several chunks; empty when none is in
    /// progress (a message is only buffered after its first, non-empty chunk).
    partial: BytesMut,
}

impl ChunkStream {
    fn in_progress(&self) -> bool {
        !self.partial.is_empty()
    }
}

/// What the next chunk in the buffer is, worked out without touching any state.
struct ChunkPlan {
    csid: u32,
    index: Option<usize>,
    header_len: usize,
    payload_len: usize,
    /// Set when this chunk starts a new message.
    start: Option<MessageHeader>,
    /// Capacity the partial buffer needs after this chunk; `None` when the whole message is in
    /// this chunk and is handed out without copying.
    buffer_to: Option<usize>,
}

/// Reassembles messages from a peer's chunk stream.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: DecoderLimits,
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    /// Sum of the capacities of all `partial` buffers.
    buffered: usize,
    bytes_received: u64,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        ChunkDecoder::new(DecoderLimits::default())
    }
}

impl ChunkDecoder {
    pub fn new(limits: DecoderLimits) -> Self {
        ChunkDecoder {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            buffered: 0,
            bytes_received: 0,
        }
    }

    /// Decodes at most one complete message from the front of `buf`, consuming the bytes it
    /// used (partial chunks are left in `buf` untouched until complete). `Ok(None)`: need more
    /// bytes. Set Chunk Size and Abort messages are applied here and still returned.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some(plan) = self.plan(buf)? else {
                return Ok(None);
            };
            if let Some(message) = self.commit(plan, buf) {
                self.apply_control(&message)?;
                return Ok(Some(message));
            }
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Sets the peer's chunk size (normally done by `decode` on a Set Chunk Size message).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Drops the partial message on `csid`; its next type-3 chunk starts a new message.
    pub fn abort(&mut self, csid: u32) {
        if let Some(stream) = self.streams.iter_mut().find(|s| s.csid == csid) {
            self.buffered = self.buffered.saturating_sub(stream.partial.capacity());
            stream.partial = BytesMut::new();
        }
    }

    /// Total bytes consumed from the peer, for acknowledgements.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Bytes currently allocated for partial messages (never above `max_buffered_bytes`).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// The most bytes `decode` can need in its input to make progress: one whole chunk at the
    /// current chunk size plus the longest header. A read buffer never needs to grow past it.
    pub fn input_bound(&self) -> usize {
        self.chunk_size as usize + MAX_CHUNK_HEADER_LEN
    }

    pub fn limits(&self) -> DecoderLimits {
        self.limits
    }

    /// Changes the limits for messages that start from now on (a server widens them once the
    /// peer has connected). Messages in progress keep what they have buffered.
    pub fn set_limits(&mut self, limits: DecoderLimits) {
        self.limits = limits;
    }

    fn plan(&self, buf: &[u8]) -> Result<Option<ChunkPlan>, ChunkError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + (u32::from(b2) << 8), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };

        let index = self.streams.iter().position(|s| s.csid == csid);
        let prev = index.and_then(|i| self.streams.get(i));
        match prev {
            None if fmt != 0 => return Err(ChunkError::UnknownChunkStream(csid)),
            None if self.streams.len() >= self.limits.max_chunk_streams => {
                return Err(ChunkError::TooManyChunkStreams);
            }
            _ => {}
        }
        let prev_header = prev.map(|s| s.header).unwrap_or_default();
        let continuing = fmt == 3 && prev.is_some_and(ChunkStream::in_progress);

        let header_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(mh) = buf.get(pos..pos + header_len) else {
            return Ok(None);
        };
        pos += header_len;

        let ts_field = if fmt < 3 { be24(mh) } else { 0 };
        let extended = if fmt < 3 {
            ts_field == EXTENDED_TIMESTAMP
        } else {
            prev_header.extended
        };
        let mut ext_value = None;
        if extended {
            let Some(ext) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            let ext = be32(ext);
            if !continuing {
                ext_value = Some(ext);
                pos += 4;
            } else if ext == prev_header.ts_field {
                // ffmpeg and librtmp repeat the extended timestamp in continuation chunks;
                // some encoders do not, and then these 4 bytes are payload.
                pos += 4;
            }
        }

        let start = if continuing {
            None
        } else {
            let field = ext_value.unwrap_or(if fmt < 3 {
                ts_field
            } else {
                prev_header.ts_field
            });
            let (msg_len, type_id) = match (fmt, mh.get(3..6), mh.get(6)) {
                (0 | 1, Some(len), Some(&type_id)) => (be24(len), type_id),
                _ => (prev_header.msg_len, prev_header.type_id),
            };
            let stream_id = match (fmt, mh.get(7..11)) {
                (0, Some(sid)) => u32::from_le_bytes([sid[0], sid[1], sid[2], sid[3]]),
                _ => prev_header.stream_id,
            };
            let timestamp = if fmt == 0 {
                field
            } else {
                prev_header.timestamp.wrapping_add(field)
            };
            if msg_len > self.limits.max_message_size {
                return Err(ChunkError::MessageTooLarge {
                    len: msg_len,
                    max: self.limits.max_message_size,
                });
            }
            if !is_media(type_id) && msg_len > self.limits.max_command_size {
                return Err(ChunkError::CommandTooLarge {
                    type_id,
                    len: msg_len,
                    max: self.limits.max_command_size,
                });
            }
            Some(MessageHeader {
                timestamp,
                ts_field: field,
                extended,
                msg_len,
                type_id,
                stream_id,
            })
        };

        let (msg_len, received, old_cap) = match (start, prev) {
            (Some(h), _) => (h.msg_len as usize, 0, 0),
            (None, Some(s)) => (
                s.header.msg_len as usize,
                s.partial.len(),
                s.partial.capacity(),
            ),
            (None, None) => return Err(ChunkError::UnknownChunkStream(csid)),
        };
        let remaining = msg_len.saturating_sub(received);
        let payload_len = remaining.min(self.chunk_size as usize);

        let buffer_to = if start.is_some() && payload_len == remaining {
            None
        } else {
            let need = received + payload_len;
            let others = self
                .buffered
                .saturating_sub(prev.map_or(0, |s| s.partial.capacity()));
            let max = self.limits.max_buffered_bytes;
            let target = if old_cap >= need {
                old_cap
            } else {
                let want = if old_cap == 0 {
                    need.saturating_mul(INITIAL_GROWTH)
                } else {
                    old_cap.saturating_mul(2)
                }
                .clamp(need, msg_len.max(need));
                if others.saturating_add(want) <= max {
                    want
                } else if others.saturating_add(need) <= max {
                    need
                } else {
                    return Err(ChunkError::BufferLimit);
                }
            };
            Some(target)
        };

        if buf.len() < pos + payload_len {
            return Ok(None);
        }
        Ok(Some(ChunkPlan {
            csid,
            index,
            header_len: pos,
            payload_len,
            start,
            buffer_to,
        }))
    }

    /// Consumes the planned chunk; returns the message it completes, if any.
    fn commit(&mut self, plan: ChunkPlan, buf: &mut BytesMut) -> Option<RawMessage> {
        buf.advance(plan.header_len);
        let data = buf.split_to(plan.payload_len);
        self.bytes_received += (plan.header_len + plan.payload_len) as u64;

        let index = match plan.index {
            Some(i) => i,
            None => {
                self.streams.push(ChunkStream {
                    csid: plan.csid,
                    header: MessageHeader::default(),
                    partial: BytesMut::new(),
                });
                self.streams.len() - 1
            }
        };
        let stream = self.streams.get_mut(index)?;
        if let Some(header) = plan.start {
            // A new header while a message is in progress abandons that message.
            self.buffered = self.buffered.saturating_sub(stream.partial.capacity());
            stream.partial = BytesMut::new();
            stream.header = header;
        }

        let payload = match plan.buffer_to {
            // Copied, not sliced: a slice would keep the whole input buffer it came from
            // alive for as long as the message lives (a GOP cache holds thousands of them).
            None => Bytes::copy_from_slice(&data),
            Some(capacity) => {
                if stream.partial.capacity() < capacity {
                    // Exact-size reallocation (BytesMut::reserve could double past the limits).
                    let mut grown = BytesMut::with_capacity(capacity);
                    grown.extend_from_slice(&stream.partial);
                    self.buffered =
                        self.buffered.saturating_sub(stream.partial.capacity()) + grown.capacity();
                    stream.partial = grown;
                }
                stream.partial.extend_from_slice(&data);
                if stream.partial.len() < stream.header.msg_len as usize {
                    return None;
                }
                self.buffered = self.buffered.saturating_sub(stream.partial.capacity());
                std::mem::take(&mut stream.partial).freeze()
            }
        };
        Some(RawMessage {
            csid: stream.csid,
            timestamp: stream.header.timestamp,
            type_id: stream.header.type_id,
            stream_id: stream.header.stream_id,
            payload,
        })
    }

    fn apply_control(&mut self, message: &RawMessage) -> Result<(), ChunkError> {
        // Applied whatever csid/stream carried it: the peer's encoder has switched either way.
        let value = || match message.payload.get(..4) {
            Some(v) => Ok(be32(v)),
            None => Err(ChunkError::MalformedControl {
                type_id: message.type_id,
                len: message.payload.len(),
            }),
        };
        match message.type_id {
            1 => self.set_chunk_size(value()?),
            2 => {
                self.abort(value()?);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Audio, video and aggregate (a run of audio/video tags): the only types that may be large.
fn is_media(type_id: u8) -> bool {
    matches!(type_id, 8 | 9 | 22)
}

fn be24(b: &[u8]) -> u32 {
    match b {
        [a, b, c, ..] => u32::from_be_bytes([0, *a, *b, *c]),
        _ => 0,
    }
}

fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

fn put_basic_header(out: &mut impl BufMut, fmt: u8, csid: u32) {
    match csid {
        0..=63 => out.put_u8(fmt << 6 | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            out.put_u8(fmt << 6 | 1);
            out.put_u16_le((csid - 64) as u16);
        }
    }
}

/// Appends `payload` as one message: a type-0 header (absolute timestamp) then type-3
/// continuations every `chunk_size` bytes; the extended timestamp (if ts >= 0xFFFFFF) is
/// repeated in every continuation.
///
/// Arguments outside the protocol's range are clamped rather than rejected: `chunk_size` to
/// 1..=`MAX_CHUNK_SIZE`, `csid` to `MIN_CSID..=MAX_CSID`, and the payload is cut to
/// `MAX_MESSAGE_LEN` bytes. Callers own these values and must keep them valid.
pub fn encode_message(
    chunk_size: u32,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    out: &mut BytesMut,
) {
    let chunk_size = chunk_size.clamp(1, MAX_CHUNK_SIZE);
    let csid = csid.clamp(MIN_CSID, MAX_CSID);
    let payload = payload.get(..MAX_MESSAGE_LEN as usize).unwrap_or(payload);
    let extended = timestamp >= EXTENDED_TIMESTAMP;
    out.reserve(encoded_len(chunk_size, csid, timestamp, payload.len()));
    encode_first_header(csid, timestamp, type_id, stream_id, payload.len(), out);
    let mut chunks = payload.chunks(chunk_size as usize);
    if let Some(first) = chunks.next() {
        out.put_slice(first);
    }
    for chunk in chunks {
        put_basic_header(out, 3, csid);
        if extended {
            out.put_u32(timestamp);
        }
        out.put_slice(chunk);
    }
}

/// The type-0 chunk header that starts a message of `payload_len` bytes (clamped like
/// `encode_message`): followed by the payload, it is the whole message when the payload fits
/// one chunk. At most `FIRST_HEADER_MAX` bytes.
pub fn encode_first_header(
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload_len: usize,
    out: &mut impl BufMut,
) {
    let csid = csid.clamp(MIN_CSID, MAX_CSID);
    put_basic_header(out, 0, csid);
    out.put_uint(u64::from(timestamp.min(EXTENDED_TIMESTAMP)), 3);
    out.put_uint(payload_len.min(MAX_MESSAGE_LEN as usize) as u64, 3);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if timestamp >= EXTENDED_TIMESTAMP {
        out.put_u32(timestamp);
    }
}

/// Longest header `encode_first_header` writes: a 3-byte basic header, 11 bytes of message
/// header and an extended timestamp.
pub const FIRST_HEADER_MAX: usize = 18;

/// Exact number of bytes `encode_message` appends for these arguments (same clamping).
pub fn encoded_len(chunk_size: u32, csid: u32, timestamp: u32, payload_len: usize) -> usize {
    let chunk_size = chunk_size.clamp(1, MAX_CHUNK_SIZE) as usize;
    let basic = basic_header_len(csid.clamp(MIN_CSID, MAX_CSID));
    let ext = if timestamp >= EXTENDED_TIMESTAMP {
        4
    } else {
        0
    };
    let len = payload_len.min(MAX_MESSAGE_LEN as usize);
    let continuations = len.saturating_sub(1) / chunk_size;
    basic + 11 + ext + len + continuations * (basic + ext)
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;

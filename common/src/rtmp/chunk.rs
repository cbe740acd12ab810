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
    /// Distinct chunk stream ids a peer may use over the connection (default 64).
    pub max_chunk_streams: usize,
    /// Bytes allocated for partial messages across all chunk streams (default 32 MiB).
    pub max_buffered_bytes: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_message_size: MAX_MESSAGE_LEN,
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
            None => data.freeze(),
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

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
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

    put_basic_header(out, 0, csid);
    out.put_uint(u64::from(timestamp.min(EXTENDED_TIMESTAMP)), 3);
    out.put_uint(payload.len() as u64, 3);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp);
    }
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CHUNK_SIZES: [u32; 5] = [1, 128, 1000, 4096, 65536];
    const TIMESTAMPS: [u32; 5] = [0, 0xFF_FFFE, 0xFF_FFFF, 0x100_0000, u32::MAX];
    const CSIDS: [u32; 6] = [2, 63, 64, 319, 320, 65599];

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn lengths(cs: usize) -> Vec<usize> {
        vec![0, 1, cs - 1, cs, cs + 1, 3 * cs + 7]
    }

    fn decoder(chunk_size: u32) -> ChunkDecoder {
        let mut d = ChunkDecoder::default();
        d.set_chunk_size(chunk_size).unwrap();
        d
    }

    fn encode(cs: u32, csid: u32, ts: u32, type_id: u8, sid: u32, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_message(cs, csid, ts, type_id, sid, payload, &mut out);
        assert_eq!(out.len(), encoded_len(cs, csid, ts, payload.len()));
        out
    }

    /// Decodes everything in `buf`, asserting the decoder's bounds after every call.
    fn drain(d: &mut ChunkDecoder, buf: &mut BytesMut) -> Vec<RawMessage> {
        let mut out = Vec::new();
        while let Some(m) = d.decode(buf).unwrap() {
            out.push(m);
        }
        assert!(buf.len() < d.input_bound());
        out
    }

    fn feed_bytewise(d: &mut ChunkDecoder, input: &[u8]) -> Vec<RawMessage> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input {
            buf.put_u8(b);
            out.extend(drain(d, &mut buf));
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn round_trip_matrix() {
        for cs in CHUNK_SIZES {
            for ts in TIMESTAMPS {
                for csid in CSIDS {
                    for len in lengths(cs as usize) {
                        let payload = pattern(len, csid as u8);
                        let mut buf = encode(cs, csid, ts, 9, 1, &payload);
                        let total = buf.len() as u64;
                        let mut d = decoder(cs);
                        let got = drain(&mut d, &mut buf);
                        let want = RawMessage {
                            csid,
                            timestamp: ts,
                            type_id: 9,
                            stream_id: 1,
                            payload: Bytes::from(payload),
                        };
                        assert_eq!(got, vec![want], "cs {cs} ts {ts} csid {csid} len {len}");
                        assert!(buf.is_empty());
                        assert_eq!(d.bytes_received(), total);
                        assert_eq!(d.buffered_bytes(), 0);
                    }
                }
            }
        }
    }

    #[test]
    fn byte_at_a_time_matches_whole_buffer() {
        for cs in [1, 128, 1000] {
            let mut input = BytesMut::new();
            let mut n = 0;
            for ts in TIMESTAMPS {
                for csid in CSIDS {
                    for len in lengths(cs as usize) {
                        let p = pattern(len, n as u8);
                        encode_message(cs, csid, ts, 8, 7, &p, &mut input);
                        n += 1;
                    }
                }
            }
            let whole = drain(&mut decoder(cs), &mut input.clone());
            assert_eq!(whole.len(), n);
            let bytewise = feed_bytewise(&mut decoder(cs), &input);
            assert_eq!(whole, bytewise);
        }
    }

    #[test]
    fn interleaved_chunk_streams() {
        let a = pattern(300, 1);
        let b = pattern(300, 2);
        let ea = encode(128, 4, 1000, 9, 1, &a);
        let eb = encode(128, 6, 2000, 8, 1, &b);
        // Both: 12+128, 1+128, 1+44 bytes per chunk (1-byte basic headers, no extended ts).
        let cuts = [(0, 140), (140, 269), (269, 314)];
        let mut input = BytesMut::new();
        for (from, to) in cuts {
            input.extend_from_slice(&ea[from..to]);
            input.extend_from_slice(&eb[from..to]);
        }
        let mut d = ChunkDecoder::default();
        let got = drain(&mut d, &mut input);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].csid, got[0].timestamp, &got[0].payload[..]),
            (4, 1000, &a[..])
        );
        assert_eq!(
            (got[1].csid, got[1].timestamp, &got[1].payload[..]),
            (6, 2000, &b[..])
        );
    }

    #[test]
    fn header_types_accumulate_deltas() {
        let mut v: Vec<u8> = Vec::new();
        // fmt 0, csid 3: ts 1000, len 3, type 8, stream 1
        v.extend([0x03, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x03, 0x08, 1, 0, 0, 0]);
        v.extend(b"abc");
        // fmt 1: delta 20, len 2, type 9
        v.extend([0x43, 0x00, 0x00, 0x14, 0x00, 0x00, 0x02, 0x09]);
        v.extend(b"de");
        // fmt 2: delta 30
        v.extend([0x83, 0x00, 0x00, 0x1E]);
        v.extend(b"fg");
        // fmt 3: new message, same delta
        v.extend([0xC3]);
        v.extend(b"hi");
        // fmt 1 with an extended delta, then fmt 3 reusing it (4 bytes read again)
        v.extend([
            0x43, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00,
        ]);
        v.extend(b"j");
        v.extend([0xC3, 0x01, 0x00, 0x00, 0x00]);
        v.extend(b"k");
        for split_bytewise in [false, true] {
            let mut d = ChunkDecoder::default();
            let got = if split_bytewise {
                feed_bytewise(&mut d, &v)
            } else {
                drain(&mut d, &mut BytesMut::from(&v[..]))
            };
            let summary: Vec<(u32, u8, u32, &[u8])> = got
                .iter()
                .map(|m| (m.timestamp, m.type_id, m.stream_id, &m.payload[..]))
                .collect();
            let j = 1080 + 0x100_0000;
            assert_eq!(
                summary,
                vec![
                    (1000, 8, 1, &b"abc"[..]),
                    (1020, 9, 1, &b"de"[..]),
                    (1050, 9, 1, &b"fg"[..]),
                    (1080, 9, 1, &b"hi"[..]),
                    (j, 8, 1, &b"j"[..]),
                    (j + 0x100_0000, 8, 1, &b"k"[..]),
                ]
            );
        }
    }

    #[test]
    fn type3_after_type0_adds_the_absolute_timestamp_again() {
        let mut v = vec![
            0x03, 0x00, 0x00, 0x64, 0x00, 0x00, 0x01, 0x08, 0, 0, 0, 0, b'a',
        ];
        v.extend([0xC3, b'b']);
        let got = drain(&mut ChunkDecoder::default(), &mut BytesMut::from(&v[..]));
        assert_eq!(got[0].timestamp, 100);
        assert_eq!(got[1].timestamp, 200);
    }

    #[test]
    fn timestamps_wrap() {
        let mut v = vec![0x03, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 0];
        v.extend(u32::MAX.to_be_bytes());
        v.extend([0x83, 0x00, 0x00, 0x05]);
        let got = drain(&mut ChunkDecoder::default(), &mut BytesMut::from(&v[..]));
        assert_eq!(got[0].timestamp, u32::MAX);
        assert_eq!(got[1].timestamp, 4);
        assert!(got[1].payload.is_empty());
    }

    #[test]
    fn continuation_without_repeated_extended_timestamp() {
        // Some encoders omit the extended timestamp in type-3 continuations.
        let ts = 0x0123_4567u32;
        let payload = pattern(200, 9);
        let mut v = vec![0x04, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 200, 0x09, 1, 0, 0, 0];
        v.extend(ts.to_be_bytes());
        v.extend(&payload[..128]);
        v.push(0xC4);
        v.extend(&payload[128..]);
        let got = feed_bytewise(&mut ChunkDecoder::default(), &v);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].timestamp, ts);
        assert_eq!(&got[0].payload[..], &payload[..]);
    }

    #[test]
    fn set_chunk_size_changes_how_following_chunks_are_read() {
        let mut input = encode(128, 2, 0, 1, 0, &4096u32.to_be_bytes());
        let big = pattern(10_000, 3);
        input.extend_from_slice(&encode(4096, 6, 40, 9, 1, &big));
        let mut d = ChunkDecoder::default();
        let got = drain(&mut d, &mut input);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].type_id, &got[0].payload[..]),
            (1, &4096u32.to_be_bytes()[..])
        );
        assert_eq!(&got[1].payload[..], &big[..]);
        assert_eq!(d.chunk_size(), 4096);
    }

    #[test]
    fn abort_drops_partial_message() {
        let mut input = encode(128, 5, 10, 9, 1, &pattern(300, 1));
        input.truncate(140); // first chunk only
        input.extend_from_slice(&encode(128, 2, 0, 2, 0, &5u32.to_be_bytes()));
        input.extend_from_slice(&[0xC5]); // type 3: now a new 300-byte message at ts 20
        input.extend_from_slice(&pattern(128, 2));
        let mut d = ChunkDecoder::default();
        let got = drain(&mut d, &mut input);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].type_id, 2);
        assert!(d.buffered_bytes() > 0);
        d.abort(5);
        assert_eq!(d.buffered_bytes(), 0);
    }

    #[test]
    fn invalid_chunk_sizes() {
        let mut d = ChunkDecoder::default();
        assert_eq!(d.set_chunk_size(0), Err(ChunkError::InvalidChunkSize(0)));
        assert_eq!(
            d.set_chunk_size(MAX_CHUNK_SIZE + 1),
            Err(ChunkError::InvalidChunkSize(MAX_CHUNK_SIZE + 1))
        );
        assert_eq!(d.set_chunk_size(MAX_CHUNK_SIZE), Ok(()));
        for bad in [0u32, MAX_CHUNK_SIZE + 1, 0x8000_0080] {
            let mut input = encode(128, 2, 0, 1, 0, &bad.to_be_bytes());
            let r = ChunkDecoder::default().decode(&mut input);
            assert_eq!(r, Err(ChunkError::InvalidChunkSize(bad)));
        }
        let mut input = encode(128, 2, 0, 1, 0, &[0, 1]);
        assert_eq!(
            ChunkDecoder::default().decode(&mut input),
            Err(ChunkError::MalformedControl { type_id: 1, len: 2 })
        );
    }

    #[test]
    fn header_without_type0_is_rejected() {
        for first in [0xC3u8, 0x83, 0x43] {
            let mut input = BytesMut::from(&[first, 0, 0, 0, 0, 0, 0, 0][..]);
            assert_eq!(
                ChunkDecoder::default().decode(&mut input),
                Err(ChunkError::UnknownChunkStream(3))
            );
        }
    }

    #[test]
    fn message_above_max_is_rejected() {
        let limits = DecoderLimits {
            max_message_size: 1000,
            ..DecoderLimits::default()
        };
        let mut input = encode(128, 3, 0, 9, 1, &pattern(1001, 0));
        input.truncate(12); // the header alone is enough to reject it
        assert_eq!(
            ChunkDecoder::new(limits).decode(&mut input),
            Err(ChunkError::MessageTooLarge {
                len: 1001,
                max: 1000
            })
        );
        let mut ok = encode(128, 3, 0, 9, 1, &pattern(1000, 0));
        assert_eq!(drain(&mut ChunkDecoder::new(limits), &mut ok).len(), 1);
    }

    #[test]
    fn too_many_chunk_streams() {
        let limits = DecoderLimits {
            max_chunk_streams: 2,
            ..DecoderLimits::default()
        };
        let mut d = ChunkDecoder::new(limits);
        let mut input = encode(128, 3, 0, 9, 1, b"x");
        input.extend_from_slice(&encode(128, 4, 0, 9, 1, b"y"));
        input.extend_from_slice(&encode(128, 3, 0, 9, 1, b"z"));
        assert_eq!(drain(&mut d, &mut input).len(), 3);
        let mut input = encode(128, 5, 0, 9, 1, b"w");
        assert_eq!(d.decode(&mut input), Err(ChunkError::TooManyChunkStreams));
    }

    #[test]
    fn buffer_limit() {
        let limits = DecoderLimits {
            max_buffered_bytes: 1000,
            ..DecoderLimits::default()
        };
        let mut d = ChunkDecoder::new(limits);
        let mut input = BytesMut::new();
        for csid in 3..15 {
            let e = encode(128, csid, 0, 9, 1, &pattern(5000, 0));
            input.extend_from_slice(&e[..140]);
        }
        // One call consumes chunks until a message completes (none can here) or an error.
        assert_eq!(d.decode(&mut input), Err(ChunkError::BufferLimit));
        assert!(d.buffered_bytes() <= 1000);
    }

    #[test]
    fn partial_buffer_never_exceeds_the_message_length() {
        let payload = pattern(100_000, 5);
        let input = encode(4096, 6, 0, 9, 1, &payload);
        let mut d = decoder(4096);
        let mut buf = BytesMut::new();
        let mut peak = 0;
        let mut got = Vec::new();
        for piece in input.chunks(1000) {
            buf.extend_from_slice(piece);
            got.extend(drain(&mut d, &mut buf));
            peak = peak.max(d.buffered_bytes());
        }
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].payload[..], &payload[..]);
        assert!(peak > 50_000 && peak <= 100_000, "peak {peak}");
        assert_eq!(d.buffered_bytes(), 0);
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn hostile(input: &[u8], rng: &mut XorShift, limits: DecoderLimits) -> usize {
        let mut d = ChunkDecoder::new(limits);
        let mut buf = BytesMut::new();
        let mut pos = 0;
        let mut messages = 0;
        while pos < input.len() {
            let take = (rng.next() % 64 + 1) as usize;
            let end = (pos + take).min(input.len());
            buf.extend_from_slice(&input[pos..end]);
            pos = end;
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(m)) => {
                        messages += 1;
                        assert!(m.payload.len() <= limits.max_message_size as usize);
                    }
                    Ok(None) => {
                        assert!(buf.len() < d.input_bound());
                        break;
                    }
                    Err(_) => {
                        // The connection would close; start over on the rest of the input.
                        d = ChunkDecoder::new(limits);
                        buf.clear();
                        break;
                    }
                }
                assert!(d.buffered_bytes() <= limits.max_buffered_bytes);
                assert!(d.streams.len() <= limits.max_chunk_streams);
            }
        }
        messages
    }

    #[test]
    fn hostile_input_never_panics_and_stays_bounded() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let random: Vec<u8> = (0..100_000).map(|_| rng.next() as u8).collect();
        let small = DecoderLimits {
            max_message_size: 70_000,
            max_chunk_streams: 8,
            max_buffered_bytes: 100_000,
        };
        hostile(&random, &mut rng, DecoderLimits::default());
        hostile(&random, &mut rng, small);

        // Valid traffic with random corruption reaches deeper states than pure noise.
        let mut valid = BytesMut::new();
        for i in 0..200u32 {
            let len = (rng.next() % 3000) as usize;
            let ts = if i % 7 == 0 { 0xFF_FFFF + i } else { i * 40 };
            encode_message(128, 3 + i % 5, ts, 9, 1, &pattern(len, i as u8), &mut valid);
        }
        let mut total = 0;
        for _ in 0..50 {
            let mut v = valid.to_vec();
            for _ in 0..(rng.next() % 8) {
                let at = (rng.next() as usize) % v.len();
                v[at] = rng.next() as u8;
            }
            total += hostile(&v, &mut rng, small);
            total += hostile(&v, &mut rng, DecoderLimits::default());
        }
        assert!(total > 0);
    }

    #[test]
    fn encoder_clamps_out_of_range_arguments() {
        let mut out = BytesMut::new();
        encode_message(0, 0, 5, 9, 1, b"abc", &mut out);
        assert_eq!(out.len(), encoded_len(0, 0, 5, 3));
        let got = drain(&mut decoder(1), &mut out);
        assert_eq!((got[0].csid, &got[0].payload[..]), (2, &b"abc"[..]));
    }
}

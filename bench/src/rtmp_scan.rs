//! A lean RTMP chunk stream scanner for load-generating players: follows chunk headers like
//! `common::rtmp::chunk::ChunkDecoder` does, but keeps only the first bytes of each audio/video
//! message and skips the rest in place (no reassembly, no copy, no allocation per message).
//! Control and command messages, which are small, are kept whole. Sans-IO.

use common::rtmp::message::type_id;

/// Bytes kept of each audio, video or data message.
pub const PREFIX: usize = 24;
/// Largest control/command message accepted.
const MAX_BODY: u32 = 1 << 20;
const MAX_CHUNK_STREAMS: usize = 64;
const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// Longest chunk header: 3-byte basic header, 11-byte type-0 header, 4-byte extended timestamp.
const MAX_HEADER: usize = 18;

/// One complete message: for audio, video and data only the first [`PREFIX`] bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub type_id: u8,
    pub timestamp: u32,
    pub stream_id: u32,
    /// Full length of the message.
    pub len: u32,
    /// The prefix (media/data) or the whole body (control/command).
    pub data: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    UnknownChunkStream(u32),
    TooManyChunkStreams,
    MessageTooLarge(u32),
    BadChunkSize(u32),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Debug, Default)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    ts_field: u32,
    extended: bool,
    msg_len: u32,
    type_id: u8,
    stream_id: u32,
    /// Bytes of the current message still to come; 0 when none is in progress.
    remaining: u32,
    prefix: [u8; PREFIX],
    prefix_len: usize,
    body: Vec<u8>,
}

fn keeps_body(type_id: u8) -> bool {
    !matches!(
        type_id,
        type_id::AUDIO
            | type_id::VIDEO
            | type_id::DATA_AMF0
            | type_id::DATA_AMF3
            | type_id::AGGREGATE
    )
}

/// A new message's header, or a continuation.
struct Parsed {
    header_len: usize,
    csid: u32,
    index: Option<usize>,
    start: Option<Start>,
}

struct Start {
    timestamp: u32,
    ts_field: u32,
    extended: bool,
    msg_len: u32,
    type_id: u8,
    stream_id: u32,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    /// Inside the payload of one chunk of stream `index`, `left` bytes to go.
    Payload {
        index: usize,
        left: usize,
    },
}

/// Incremental chunk scanner; feed it the bytes after the handshake, in any split.
#[derive(Debug)]
pub struct ChunkScanner {
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    header: [u8; MAX_HEADER],
    header_len: usize,
    state: State,
    bytes: u64,
}

impl Default for ChunkScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkScanner {
    pub fn new() -> Self {
        ChunkScanner {
            chunk_size: 128,
            streams: Vec::new(),
            header: [0; MAX_HEADER],
            header_len: 0,
            state: State::Header,
            bytes: 0,
        }
    }

    /// Bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Scans `data`, calling `on_message` for every message it completes. Set Chunk Size and
    /// Abort are applied here (and still reported).
    pub fn feed(
        &mut self,
        data: &[u8],
        on_message: &mut impl FnMut(Message<'_>),
    ) -> Result<(), ScanError> {
        self.bytes += data.len() as u64;
        self.scan(data, on_message)
    }

    fn scan(
        &mut self,
        mut data: &[u8],
        on_message: &mut impl FnMut(Message<'_>),
    ) -> Result<(), ScanError> {
        while !data.is_empty() {
            match self.state {
                State::Header => {
                    let old = self.header_len;
                    let take = (MAX_HEADER - old).min(data.len());
                    self.header[old..old + take].copy_from_slice(&data[..take]);
                    let avail = old + take;
                    let Some(parsed) = self.parse(&self.header[..avail])? else {
                        // Not enough for a header yet: everything was copied.
                        self.header_len = avail;
                        data = &data[take..];
                        continue;
                    };
                    self.header_len = 0;
                    let used = parsed.header_len;
                    self.begin(parsed, on_message)?;
                    if used >= old {
                        data = &data[used - old..];
                    } else {
                        // Bytes held from an earlier feed turned out to be payload (a type-3
                        // continuation without the repeated extended timestamp): scan them
                        // first (they hold no further held bytes, so this recurses once).
                        let held = self.header;
                        self.scan(&held[used..old], on_message)?;
                    }
                }
                State::Payload { index, .. } => {
                    let used = self.payload(data, index, on_message)?;
                    data = &data[used..];
                }
            }
        }
        Ok(())
    }

    fn parse(&self, buf: &[u8]) -> Result<Option<Parsed>, ScanError> {
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
        if prev.is_none() && fmt != 0 {
            return Err(ScanError::UnknownChunkStream(csid));
        }
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(mh) = buf.get(pos..pos + header_len) else {
            return Ok(None);
        };
        pos += header_len;
        let continuing = fmt == 3 && prev.is_some_and(|s| s.remaining > 0);
        let ts_field = if fmt < 3 { be24(mh) } else { 0 };
        let extended = if fmt < 3 {
            ts_field == EXTENDED_TIMESTAMP
        } else {
            prev.is_some_and(|s| s.extended)
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
            } else if prev.is_some_and(|s| s.ts_field == ext) {
                pos += 4;
            }
        }
        let start = if continuing {
            None
        } else {
            let (p_ts, p_field, p_len, p_type, p_sid) = prev.map_or((0, 0, 0, 0, 0), |s| {
                (s.timestamp, s.ts_field, s.msg_len, s.type_id, s.stream_id)
            });
            let field = ext_value.unwrap_or(if fmt < 3 { ts_field } else { p_field });
            let (msg_len, type_id) = if fmt <= 1 {
                (be24(&mh[3..6]), mh[6])
            } else {
                (p_len, p_type)
            };
            let stream_id = if fmt == 0 {
                u32::from_le_bytes([mh[7], mh[8], mh[9], mh[10]])
            } else {
                p_sid
            };
            let timestamp = if fmt == 0 {
                field
            } else {
                p_ts.wrapping_add(field)
            };
            if keeps_body(type_id) && msg_len > MAX_BODY {
                return Err(ScanError::MessageTooLarge(msg_len));
            }
            Some(Start {
                timestamp,
                ts_field: field,
                extended,
                msg_len,
                type_id,
                stream_id,
            })
        };
        Ok(Some(Parsed {
            header_len: pos,
            csid,
            index,
            start,
        }))
    }

    /// Applies a parsed header: the chunk's payload follows (an empty message is reported at
    /// once).
    fn begin(
        &mut self,
        parsed: Parsed,
        on_message: &mut impl FnMut(Message<'_>),
    ) -> Result<(), ScanError> {
        let index = match parsed.index {
            Some(i) => i,
            None => {
                if self.streams.len() >= MAX_CHUNK_STREAMS {
                    return Err(ScanError::TooManyChunkStreams);
                }
                self.streams.push(ChunkStream {
                    csid: parsed.csid,
                    ..ChunkStream::default()
                });
                self.streams.len() - 1
            }
        };
        let chunk_size = self.chunk_size as usize;
        let Some(s) = self.streams.get_mut(index) else {
            return Err(ScanError::UnknownChunkStream(parsed.csid));
        };
        if let Some(h) = parsed.start {
            s.timestamp = h.timestamp;
            s.ts_field = h.ts_field;
            s.extended = h.extended;
            s.msg_len = h.msg_len;
            s.type_id = h.type_id;
            s.stream_id = h.stream_id;
            s.remaining = h.msg_len;
            s.prefix_len = 0;
            s.body.clear();
            if h.msg_len == 0 {
                self.state = State::Header;
                return self.complete(index, on_message);
            }
        }
        let left = (s.remaining as usize).min(chunk_size);
        self.state = State::Payload { index, left };
        Ok(())
    }

    /// Consumes payload bytes of the current chunk; returns how many.
    fn payload(
        &mut self,
        data: &[u8],
        index: usize,
        on_message: &mut impl FnMut(Message<'_>),
    ) -> Result<usize, ScanError> {
        let State::Payload { left, .. } = self.state else {
            return Ok(0);
        };
        let Some(s) = self.streams.get_mut(index) else {
            return Ok(data.len());
        };
        let k = left.min(data.len());
        let bytes = &data[..k];
        if keeps_body(s.type_id) {
            s.body.extend_from_slice(bytes);
        } else if s.prefix_len < PREFIX {
            let n = (PREFIX - s.prefix_len).min(k);
            s.prefix[s.prefix_len..s.prefix_len + n].copy_from_slice(&bytes[..n]);
            s.prefix_len += n;
        }
        s.remaining -= k as u32;
        let left = left - k;
        let done = s.remaining == 0;
        if left == 0 {
            self.state = State::Header;
            if done {
                self.complete(index, on_message)?;
            }
        } else {
            self.state = State::Payload { index, left };
        }
        Ok(k)
    }

    fn complete(
        &mut self,
        index: usize,
        on_message: &mut impl FnMut(Message<'_>),
    ) -> Result<(), ScanError> {
        let Some(s) = self.streams.get_mut(index) else {
            return Ok(());
        };
        let (type_id, timestamp, stream_id, len) = (s.type_id, s.timestamp, s.stream_id, s.msg_len);
        if !keeps_body(type_id) {
            let prefix = s.prefix;
            let n = s.prefix_len;
            on_message(Message {
                type_id,
                timestamp,
                stream_id,
                len,
                data: &prefix[..n],
            });
            return Ok(());
        }
        let body = std::mem::take(&mut s.body);
        let control = body.get(..4).map(be32);
        on_message(Message {
            type_id,
            timestamp,
            stream_id,
            len,
            data: &body,
        });
        if let Some(s) = self.streams.get_mut(index) {
            s.body = body;
            s.body.clear();
        }
        match (type_id, control) {
            (type_id::SET_CHUNK_SIZE, Some(v)) => {
                let size = v & 0x7fff_ffff;
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(ScanError::BadChunkSize(size));
                }
                self.chunk_size = size;
            }
            (type_id::ABORT, Some(csid)) => {
                if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid) {
                    s.remaining = 0;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use common::rtmp::chunk::{ChunkDecoder, encode_message};
    use common::rtmp::message::ControlMessage;

    /// (type, timestamp, len, kept bytes) of every message.
    fn scan(bytes: &[u8], split: usize) -> Vec<(u8, u32, u32, Vec<u8>)> {
        let mut s = ChunkScanner::new();
        let mut out = Vec::new();
        for part in bytes.chunks(split) {
            s.feed(part, &mut |m| {
                out.push((m.type_id, m.timestamp, m.len, m.data.to_vec()))
            })
            .unwrap();
        }
        out
    }

    fn reference(bytes: &[u8]) -> Vec<(u8, u32, u32, Vec<u8>)> {
        let mut d = ChunkDecoder::default();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.decode(&mut buf).unwrap() {
            let keep = if keeps_body(m.type_id) {
                m.payload.len()
            } else {
                PREFIX.min(m.payload.len())
            };
            out.push((
                m.type_id,
                m.timestamp,
                m.payload.len() as u32,
                m.payload[..keep].to_vec(),
            ));
        }
        out
    }

    fn stream() -> Vec<u8> {
        let mut out = BytesMut::new();
        let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        encode_message(128, 3, 0, type_id::COMMAND_AMF0, 0, &big[..300], &mut out);
        ControlMessage::SetChunkSize(4096).encode(128, &mut out);
        for i in 0..20u32 {
            let len = [0, 1, 24, 4096, 4097, 20_000][i as usize % 6];
            encode_message(4096, 6, i * 40, type_id::VIDEO, 1, &big[..len], &mut out);
            encode_message(4096, 4, i * 23, type_id::AUDIO, 1, &big[..10], &mut out);
        }
        // Extended timestamps, repeated in continuation chunks.
        encode_message(
            4096,
            6,
            0x0100_0000,
            type_id::VIDEO,
            1,
            &big[..9000],
            &mut out,
        );
        out.to_vec()
    }

    #[test]
    fn agrees_with_the_chunk_decoder_in_any_split() {
        let bytes = stream();
        let want = reference(&bytes);
        assert_eq!(want.len(), 43);
        for split in [1, 2, 3, 7, 17, 100, 4096, 5000, 1 << 20] {
            assert_eq!(scan(&bytes, split), want, "split {split}");
        }
    }

    #[test]
    fn compressed_headers_use_deltas() {
        // fmt 0, then fmt 1 (delta 40, new length), fmt 2 (delta 40), fmt 3 (delta again).
        let mut b = vec![0x06, 0, 0, 10, 0, 0, 3, 9, 1, 0, 0, 0, 0x17, 1, 2];
        b.extend_from_slice(&[0x46, 0, 0, 40, 0, 0, 2, 9, 0x27, 1]);
        b.extend_from_slice(&[0x86, 0, 0, 40, 0x27, 2]);
        b.extend_from_slice(&[0xc6, 0x27, 3]);
        let got = scan(&b, 1);
        let ts: Vec<u32> = got.iter().map(|m| m.1).collect();
        assert_eq!(ts, vec![10, 50, 90, 130]);
        assert_eq!(got, reference(&b));
    }

    #[test]
    fn unknown_chunk_stream_is_an_error() {
        let mut s = ChunkScanner::new();
        assert_eq!(
            s.feed(&[0xc7, 1, 2], &mut |_| {}),
            Err(ScanError::UnknownChunkStream(7))
        );
    }
}

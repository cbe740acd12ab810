//! FLV file header and tags: `MediaFrame` <-> tag bytes, and an incremental, bounded FLV reader.
//! Must not do I/O or keep unbounded buffers: callers own the bytes and feed them in.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::codec::{inspect_audio, inspect_video};
use crate::media::{FrameKind, MediaFrame, WireSlot};

pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

/// Bytes in a tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Largest body a tag can describe (24-bit size field).
pub const MAX_TAG_BODY: usize = 0x00ff_ffff;
/// Default bound on a tag body accepted by [`FlvReader`].
pub const DEFAULT_MAX_TAG_SIZE: u32 = 16 * 1024 * 1024;
/// Largest header (data offset) accepted; real files use 9.
const MAX_HEADER_LEN: u32 = 1024;

/// FLV file header (signature, version 1, audio+video flags, header size 9) followed by
/// PreviousTagSize0 = 0: 13 bytes.
pub const fn file_header(has_audio: bool, has_video: bool) -> [u8; 13] {
    let flags = ((has_audio as u8) << 2) | has_video as u8;
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Builds a MediaFrame from an RTMP/FLV message: type 8 -> Audio, 9 -> Video, 18 -> Data.
/// Returns None for other types, empty payloads and payloads too large for a tag.
///
/// `keyframe` is set only on video tags carrying a coded key picture (frame type 1 and coded
/// data): sequence headers, end-of-sequence, metadata and command tags are not keyframes, so
/// a GOP starts at the first picture a decoder can start from. Payloads whose header cannot be
/// parsed are passed through with both flags false.
pub fn frame_from_message(type_id: u8, timestamp_ms: u32, payload: Bytes) -> Option<MediaFrame> {
    if payload.is_empty() || payload.len() > MAX_TAG_BODY {
        return None;
    }
    let (kind, keyframe, sequence_header) = match type_id {
        TAG_AUDIO => {
            let seq = inspect_audio(&payload).is_some_and(|i| i.sequence_header);
            (FrameKind::Audio, false, seq)
        }
        TAG_VIDEO => match inspect_video(&payload) {
            Some(i) => (
                FrameKind::Video,
                i.keyframe && i.coded_frame,
                i.sequence_header,
            ),
            None => (FrameKind::Video, false, false),
        },
        TAG_SCRIPT => (FrameKind::Data, false, false),
        _ => return None,
    };
    Some(MediaFrame::new(
        kind,
        timestamp_ms,
        keyframe,
        sequence_header,
        payload,
    ))
}

/// The FLV tag type for a frame kind.
pub fn tag_type(kind: FrameKind) -> u8 {
    match kind {
        FrameKind::Audio => TAG_AUDIO,
        FrameKind::Video => TAG_VIDEO,
        FrameKind::Data => TAG_SCRIPT,
    }
}

/// The FLV tag for a frame: 11-byte tag header (type, 24-bit size, 24-bit timestamp + 8-bit
/// extension, stream id 0) + payload + 4-byte PreviousTagSize. A payload larger than a tag
/// can describe (never produced by [`frame_from_message`]) writes nothing.
pub fn encode_tag(frame: &MediaFrame, out: &mut BytesMut) {
    write_tag(
        tag_type(frame.kind),
        frame.timestamp_ms,
        &frame.payload,
        out,
    );
}

fn write_tag(tag_type: u8, timestamp_ms: u32, payload: &[u8], out: &mut BytesMut) {
    if payload.len() > MAX_TAG_BODY {
        return;
    }
    let size = payload.len() as u32;
    out.reserve(TAG_HEADER_LEN + payload.len() + 4);
    put_tag_header(tag_type, timestamp_ms, size, out);
    out.put_slice(payload);
    out.put_u32(size + TAG_HEADER_LEN as u32);
}

/// Type, 24-bit size, 24-bit timestamp + 8-bit extension, stream id 0.
fn put_tag_header(tag_type: u8, timestamp_ms: u32, size: u32, out: &mut BytesMut) {
    out.put_u8(tag_type);
    out.put_slice(&size.to_be_bytes()[1..]);
    out.put_slice(&timestamp_ms.to_be_bytes()[1..]);
    out.put_u8((timestamp_ms >> 24) as u8);
    out.put_slice(&[0, 0, 0]);
}

impl FlvTag {
    /// This tag's bytes (header, body, PreviousTagSize), e.g. to write a file or test a reader.
    pub fn encode(&self, out: &mut BytesMut) {
        write_tag(self.tag_type, self.timestamp_ms, &self.payload, out);
    }

    /// The frame this tag carries (see [`frame_from_message`]).
    pub fn into_frame(self) -> Option<MediaFrame> {
        frame_from_message(self.tag_type, self.timestamp_ms, self.payload)
    }
}

/// A frame's FLV tag for every HTTP-FLV player, in three parts: the tag header, the frame's
/// own payload (no copy) and the PreviousTagSize after it. The two small parts are built once
/// per frame (the frame's wire slots) and shared.
pub fn flv_wire(frame: &MediaFrame) -> [&[u8]; 3] {
    let size = frame.payload.len().min(MAX_TAG_BODY) as u32;
    let header = frame.wire(WireSlot::FlvHeader, |f| {
        let mut out = BytesMut::with_capacity(TAG_HEADER_LEN);
        put_tag_header(tag_type(f.kind), f.timestamp_ms, size, &mut out);
        out.freeze()
    });
    let trailer = frame.wire(WireSlot::FlvTrailer, |_| {
        Bytes::copy_from_slice(&(size + TAG_HEADER_LEN as u32).to_be_bytes())
    });
    [header, &frame.payload, trailer]
}

/// One tag read from an FLV stream.
#[derive(Debug, Clone, PartialEq)]
pub struct FlvTag {
    pub tag_type: u8,
    /// 32-bit timestamp (24 bits + extension byte).
    pub timestamp_ms: u32,
    pub payload: Bytes,
}

/// The FLV file header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    pub version: u8,
    pub has_audio: bool,
    pub has_video: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    #[error("not an flv stream (bad signature)")]
    BadSignature,
    #[error("unsupported flv version {0}")]
    UnsupportedVersion(u8),
    #[error("bad flv header size {0}")]
    BadHeaderSize(u32),
    #[error("flv tag of {0} bytes exceeds the limit")]
    TagTooLarge(u32),
    #[error("encrypted flv tags are not supported")]
    Encrypted,
    #[error("previous tag size {found}, expected {expected}")]
    BadPreviousTagSize { expected: u32, found: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Tags,
}

/// Incremental FLV stream reader (for tests, tools and pulling HTTP-FLV): feed bytes, get the
/// header then tags. Tag bodies are bounded by `max_tag_size`; after an error the reader
/// keeps returning that error.
#[derive(Debug, Clone)]
pub struct FlvReader {
    max_tag_size: u32,
    state: State,
    header: Option<FlvHeader>,
    failed: Option<FlvError>,
}

impl Default for FlvReader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TAG_SIZE)
    }
}

impl FlvReader {
    /// A reader for a whole FLV stream: file header, PreviousTagSize0, then tags.
    pub fn new(max_tag_size: u32) -> Self {
        Self {
            max_tag_size,
            state: State::Header,
            header: None,
            failed: None,
        }
    }

    /// A reader for bare tags (each followed by its PreviousTagSize), as [`encode_tag`] writes.
    pub fn without_header(max_tag_size: u32) -> Self {
        Self {
            state: State::Tags,
            ..Self::new(max_tag_size)
        }
    }

    /// The file header, once read.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Consumes complete items from `buf`. `Ok(None)` means more bytes are needed (nothing of a
    /// partial tag is consumed). The buffer never needs to grow past one tag plus 15 bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<FlvTag>, FlvError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode_inner(buf);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<FlvTag>, FlvError> {
        if self.state == State::Header {
            if !self.decode_header(buf)? {
                return Ok(None);
            }
            self.state = State::Tags;
        }
        if buf.len() < TAG_HEADER_LEN {
            return Ok(None);
        }
        let b0 = buf[0];
        if b0 & 0x20 != 0 {
            return Err(FlvError::Encrypted);
        }
        let size = u32::from_be_bytes([0, buf[1], buf[2], buf[3]]);
        if size > self.max_tag_size {
            return Err(FlvError::TagTooLarge(size));
        }
        let timestamp_ms = u32::from_be_bytes([buf[7], buf[4], buf[5], buf[6]]);
        let body = size as usize;
        let total = TAG_HEADER_LEN + body + 4;
        if buf.len() < total {
            return Ok(None);
        }
        let end = TAG_HEADER_LEN + body;
        let found = u32::from_be_bytes([buf[end], buf[end + 1], buf[end + 2], buf[end + 3]]);
        let expected = size + TAG_HEADER_LEN as u32;
        if found != expected {
            return Err(FlvError::BadPreviousTagSize { expected, found });
        }
        buf.advance(TAG_HEADER_LEN);
        let payload = buf.split_to(body).freeze();
        buf.advance(4);
        Ok(Some(FlvTag {
            tag_type: b0 & 0x1f,
            timestamp_ms,
            payload,
        }))
    }

    /// Reads the file header and PreviousTagSize0; `false` if more bytes are needed.
    fn decode_header(&mut self, buf: &mut BytesMut) -> Result<bool, FlvError> {
        // Check the signature as soon as the bytes are there, so garbage fails fast.
        let sig_len = buf.len().min(3);
        if buf[..sig_len] != b"FLV"[..sig_len] {
            return Err(FlvError::BadSignature);
        }
        if buf.len() < 9 {
            return Ok(false);
        }
        let version = buf[3];
        if version != 1 {
            return Err(FlvError::UnsupportedVersion(version));
        }
        let flags = buf[4];
        let header_len = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
        if !(9..=MAX_HEADER_LEN).contains(&header_len) {
            return Err(FlvError::BadHeaderSize(header_len));
        }
        let header_len = header_len as usize;
        if buf.len() < header_len + 4 {
            return Ok(false);
        }
        let prev = u32::from_be_bytes([
            buf[header_len],
            buf[header_len + 1],
            buf[header_len + 2],
            buf[header_len + 3],
        ]);
        if prev != 0 {
            return Err(FlvError::BadPreviousTagSize {
                expected: 0,
                found: prev,
            });
        }
        buf.advance(header_len + 4);
        self.header = Some(FlvHeader {
            version,
            has_audio: flags & 0x04 != 0,
            has_video: flags & 0x01 != 0,
        });
        Ok(true)
    }
}

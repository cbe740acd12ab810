//! `MediaFrame`: one audio, video or data message, immutable and shared by every subscriber.
//! Must not know how wire forms are built: protocol adapters fill the slots.

use std::sync::OnceLock;

use once_cell::race::OnceBox;

use bytes::Bytes;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Audio,
    Video,
    /// Script data (onMetaData).
    Data,
}

/// Slots for serialized forms of a frame, each built at most once and shared by every player
/// of that format. The adapter owning a slot decides its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireSlot {
    /// RTMP chunked message of a frame too large for one chunk.
    Rtmp = 0,
    /// FLV tag header (the payload follows it unchanged).
    FlvHeader = 1,
    /// FLV PreviousTagSize after the payload.
    FlvTrailer = 2,
}

const WIRE_SLOTS: usize = 3;

/// Longest header `MediaFrame::head` keeps inline (an RTMP chunk header is at most 18 bytes).
pub const HEAD_MAX: usize = 19;

/// One media message. `payload` is the FLV/RTMP message body (tag header byte(s) included),
/// passed through untouched.
///
/// A GOP cache holds tens of thousands of these, so a frame is kept to 72 bytes (one 96-byte
/// heap chunk with its `Arc`): the head of the wire form most players use sits inline, with no
/// allocation of its own, and the other forms' slots sit behind one box made on first use.
#[derive(Debug)]
pub struct MediaFrame {
    pub kind: FrameKind,
    /// Milliseconds, 32-bit like RTMP and FLV; compare with wrapping arithmetic.
    pub timestamp_ms: u32,
    /// A video frame a decoder can start from.
    pub keyframe: bool,
    /// Codec configuration (AVC/HEVC decoder configuration record, AAC AudioSpecificConfig).
    pub sequence_header: bool,
    pub payload: Bytes,
    head: OnceLock<(u8, [u8; HEAD_MAX])>,
    /// One pointer until a format needs a slot (racing first users may each build a box;
    /// one is kept).
    wire: OnceBox<[OnceLock<Bytes>; WIRE_SLOTS]>,
}

impl MediaFrame {
    pub fn new(
        kind: FrameKind,
        timestamp_ms: u32,
        keyframe: bool,
        sequence_header: bool,
        payload: Bytes,
    ) -> Self {
        Self {
            kind,
            timestamp_ms,
            keyframe,
            sequence_header,
            payload,
            head: OnceLock::new(),
            wire: OnceBox::new(),
        }
    }

    /// Same frame at another timestamp (used when an ingest rebases timestamps).
    pub fn with_timestamp(&self, timestamp_ms: u32) -> Self {
        Self::new(
            self.kind,
            timestamp_ms,
            self.keyframe,
            self.sequence_header,
            self.payload.clone(),
        )
    }

    /// The serialized form for `slot`, built by `build` the first time anyone asks.
    pub fn wire(&self, slot: WireSlot, build: impl FnOnce(&MediaFrame) -> Bytes) -> &Bytes {
        self.wire.get_or_init(Box::default)[slot as usize].get_or_init(|| build(self))
    }

    /// A short header (at most `HEAD_MAX` bytes) kept inline, written by `build` into the
    /// buffer it is given (returning the length) the first time anyone asks. One per frame:
    /// it belongs to the format most players use (RTMP).
    pub fn head(&self, build: impl FnOnce(&MediaFrame, &mut [u8]) -> usize) -> &[u8] {
        let (len, buf) = self.head.get_or_init(|| {
            let mut buf = [0; HEAD_MAX];
            let len = build(self, &mut buf).min(HEAD_MAX);
            (len as u8, buf)
        });
        &buf[..usize::from(*len)]
    }

    /// `part` of this frame's wire form (as a wire function returned it) as `Bytes`: shared
    /// with the payload or a slot it lies in, else (the inline head) a copy.
    pub fn wire_bytes(&self, part: &[u8]) -> Bytes {
        let within = |b: &Bytes| {
            let range = b.as_ptr_range();
            !part.is_empty() && range.start <= part.as_ptr() && part.as_ptr_range().end <= range.end
        };
        if within(&self.payload) {
            return self.payload.slice_ref(part);
        }
        let slots = self.wire.get().into_iter().flat_map(|s| s.iter());
        match slots.filter_map(OnceLock::get).find(|b| within(b)) {
            Some(b) => b.slice_ref(part),
            None => Bytes::copy_from_slice(part),
        }
    }

    pub fn is_video(&self) -> bool {
        self.kind == FrameKind::Video
    }

    pub fn is_audio(&self) -> bool {
        self.kind == FrameKind::Audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_small_until_a_second_format_asks() {
        // What a GOP cache of many streams multiplies (with the Arc's two counts: 88 bytes,
        // a 96-byte heap chunk).
        assert!(std::mem::size_of::<MediaFrame>() <= 72);
        let f = MediaFrame::new(FrameKind::Audio, 0, false, false, Bytes::from_static(b"a"));
        for slot in [WireSlot::Rtmp, WireSlot::FlvHeader, WireSlot::FlvTrailer] {
            let built = f.wire(slot, |_| Bytes::from(vec![slot as u8])).clone();
            assert_eq!(f.wire(slot, |_| unreachable!()), &built);
            assert_eq!(built[0], slot as u8);
        }
    }

    #[test]
    fn head_is_built_once_and_kept_inline() {
        let f = MediaFrame::new(FrameKind::Video, 7, true, false, Bytes::from_static(b"xyz"));
        let head = f.head(|f, out| {
            out[..4].copy_from_slice(&f.timestamp_ms.to_be_bytes());
            4
        });
        assert_eq!(head, &[0, 0, 0, 7]);
        assert_eq!(f.head(|_, _| unreachable!()).as_ptr(), head.as_ptr());
        // A build claiming more than fits is cut, not trusted.
        let g = MediaFrame::new(FrameKind::Audio, 0, false, false, Bytes::new());
        assert_eq!(g.head(|_, _| 1000).len(), HEAD_MAX);
    }

    #[test]
    fn wire_bytes_shares_what_it_can_and_copies_the_inline_head() {
        let f = MediaFrame::new(FrameKind::Video, 0, true, false, Bytes::from(vec![1u8; 64]));
        let slot = f
            .wire(WireSlot::FlvHeader, |_| Bytes::from(vec![2u8; 11]))
            .clone();
        let head = f.head(|_, out| {
            out[..3].fill(3);
            3
        });
        let payload_part = f.wire_bytes(&f.payload[10..20]);
        assert_eq!(payload_part.as_ptr(), f.payload[10..].as_ptr());
        assert_eq!(f.wire_bytes(&slot[1..]).as_ptr(), slot[1..].as_ptr());
        let copied = f.wire_bytes(&head[1..]);
        assert_eq!(&copied[..], &[3, 3]);
        assert_ne!(copied.as_ptr(), head[1..].as_ptr());
        assert!(f.wire_bytes(&[]).is_empty());
    }

    #[test]
    fn wire_form_is_built_once() {
        let f = MediaFrame::new(FrameKind::Video, 40, true, false, Bytes::from_static(b"x"));
        let mut calls = 0;
        let a = f
            .wire(WireSlot::FlvHeader, |_| {
                calls += 1;
                Bytes::from_static(b"tag")
            })
            .clone();
        let b = f.wire(WireSlot::FlvHeader, |_| unreachable!()).clone();
        assert_eq!(calls, 1);
        assert_eq!(a, b);
        assert_eq!(a.as_ptr(), b.as_ptr());
    }
}

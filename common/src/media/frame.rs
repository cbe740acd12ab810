//! `MediaFrame`: one audio, video or data message, immutable and shared by every subscriber.
//! Must not know how wire forms are built: protocol adapters fill the slots.

use std::sync::OnceLock;

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
    /// RTMP chunked message as sent to players (fixed chunk size and chunk stream ids).
    Rtmp = 0,
    /// FLV tag header (the payload follows it unchanged).
    FlvHeader = 1,
    /// FLV PreviousTagSize after the payload.
    FlvTrailer = 2,
}

/// Slots after the first (`Rtmp`), kept out of line: a node whose players all speak RTMP pays
/// one pointer per frame for them, not two empty `Bytes` (a GOP cache holds tens of thousands
/// of frames).
const MORE_SLOTS: usize = 2;

/// One media message. `payload` is the FLV/RTMP message body (tag header byte(s) included),
/// passed through untouched.
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
    wire: OnceLock<Bytes>,
    more_wire: OnceLock<Box<[OnceLock<Bytes>; MORE_SLOTS]>>,
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
            wire: OnceLock::new(),
            more_wire: OnceLock::new(),
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
        let cell = match slot as usize {
            0 => &self.wire,
            n => &self.more_wire.get_or_init(Default::default)[n - 1],
        };
        cell.get_or_init(|| build(self))
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
        // Two cache lines' worth per cached frame (with the Arc's counts) is what a GOP cache
        // of many streams multiplies.
        assert!(std::mem::size_of::<MediaFrame>() <= 96);
        let f = MediaFrame::new(FrameKind::Audio, 0, false, false, Bytes::from_static(b"a"));
        for slot in [WireSlot::Rtmp, WireSlot::FlvHeader, WireSlot::FlvTrailer] {
            let built = f.wire(slot, |_| Bytes::from(vec![slot as u8])).clone();
            assert_eq!(f.wire(slot, |_| unreachable!()), &built);
            assert_eq!(built[0], slot as u8);
        }
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

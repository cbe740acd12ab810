//! The synthetic stream: FLV-valid AVC + AAC tag bodies whose video frames carry their send
//! instant, and the shared clock that instant is measured on. No I/O, no encoder.
//!
//! Video tag body layout (every coded frame):
//! `[0..5]` AVC tag header (frame type key/inter, codec 7, packet type 1, cts 0),
//! `[5..9]` AVCC NALU length, `[9]` NAL header (5 = IDR, 1 = non-IDR slice),
//! `[10..18]` send instant in ns since [`epoch`] (big endian), `[18..22]` the magic `LCDN`,
//! then filler up to the frame size. The timestamp sits inside a well-formed NALU so servers
//! that walk NAL units (HLS muxers) see valid framing; a decoder would see a corrupt slice.

use std::sync::OnceLock;
use std::time::Instant;

/// A real AVC decoder configuration record (High, 1280x720) as an FLV video tag body.
pub const AVC_SEQUENCE_HEADER: &[u8] = &[
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00,
    0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00,
    0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0,
    0xfd, 0xf8, 0xf8, 0x00,
];
/// AAC-LC 44.1 kHz stereo AudioSpecificConfig as an FLV audio tag body.
pub const AAC_SEQUENCE_HEADER: &[u8] = &[0xaf, 0x00, 0x12, 0x10, 0x56, 0xe5, 0x00];

pub const STAMP_OFFSET: usize = 10;
pub const MAGIC_OFFSET: usize = 18;
pub const MAGIC: [u8; 4] = *b"LCDN";
/// Bytes of a video tag body a player must see to read the header and the send instant.
pub const PREFIX_LEN: usize = MAGIC_OFFSET + 4;

/// AAC frames per second at 44.1 kHz (1024 samples per frame).
pub const AUDIO_FPS: f64 = 44_100.0 / 1024.0;
/// Audio bit rate of the synthetic stream (counted in `--bitrate`).
pub const AUDIO_BPS: u64 = 64_000;
/// A keyframe is this many times the size of an inter frame.
pub const KEYFRAME_RATIO: u64 = 5;

/// The process-wide epoch of send and receive instants (publishers and players share it).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `at` in ns since [`epoch`].
pub fn ns_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Bitrate, frame rate and GOP of the synthetic stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// Total bit rate (video + 64 kbit/s audio), bits per second.
    pub bitrate: u64,
    pub fps: u32,
    /// Keyframe interval in frames.
    pub gop: u32,
}

impl StreamSpec {
    /// (keyframe bytes, inter frame bytes) of the video tag bodies, so that one GOP averages
    /// the video bit rate.
    pub fn frame_sizes(&self) -> (usize, usize) {
        let video_bps = self.bitrate.saturating_sub(AUDIO_BPS).max(8 * 1000);
        let fps = u64::from(self.fps.max(1));
        let gop = u64::from(self.gop.max(1));
        let avg = video_bps / 8 / fps;
        let inter = (gop * avg / (KEYFRAME_RATIO + gop - 1)).max(PREFIX_LEN as u64);
        let key = (inter * KEYFRAME_RATIO).max(PREFIX_LEN as u64);
        (key as usize, inter as usize)
    }

    /// Audio tag body size that gives [`AUDIO_BPS`].
    pub fn audio_size(&self) -> usize {
        (AUDIO_BPS as f64 / 8.0 / AUDIO_FPS) as usize
    }
}

/// Builds video and audio tag bodies into reusable buffers (no allocation per frame).
pub struct FrameBuilder {
    spec: StreamSpec,
    video: Vec<u8>,
    audio: Vec<u8>,
}

impl FrameBuilder {
    pub fn new(spec: StreamSpec) -> Self {
        let (key, _) = spec.frame_sizes();
        let mut audio = vec![0x21; spec.audio_size().max(2)];
        audio[0] = 0xaf;
        audio[1] = 0x01;
        FrameBuilder {
            spec,
            video: vec![0x5a; key.max(PREFIX_LEN)],
            audio,
        }
    }

    /// The body of video frame `index` (a keyframe every GOP), stamped with `send_ns`.
    pub fn video(&mut self, index: u64, send_ns: u64) -> &[u8] {
        let key = index.is_multiple_of(u64::from(self.spec.gop.max(1)));
        let (key_len, inter_len) = self.spec.frame_sizes();
        let len = if key { key_len } else { inter_len };
        let body = &mut self.video[..len];
        body[0] = if key { 0x17 } else { 0x27 };
        body[1] = 0x01;
        body[2..5].fill(0);
        let nalu_len = (len - 9) as u32;
        body[5..9].copy_from_slice(&nalu_len.to_be_bytes());
        body[9] = if key { 0x65 } else { 0x41 };
        body[STAMP_OFFSET..MAGIC_OFFSET].copy_from_slice(&send_ns.to_be_bytes());
        body[MAGIC_OFFSET..PREFIX_LEN].copy_from_slice(&MAGIC);
        body
    }

    /// The body of one AAC raw frame.
    pub fn audio(&self) -> &[u8] {
        &self.audio
    }
}

/// The send instant (ns since [`epoch`]) embedded in a video tag body, from its first
/// [`PREFIX_LEN`] bytes; `None` for frames not made by [`FrameBuilder`].
pub fn send_stamp(prefix: &[u8]) -> Option<u64> {
    let magic = prefix.get(MAGIC_OFFSET..PREFIX_LEN)?;
    if magic != MAGIC || prefix.first()? & 0x0f != 7 || *prefix.get(1)? != 1 {
        return None;
    }
    let raw: [u8; 8] = prefix.get(STAMP_OFFSET..MAGIC_OFFSET)?.try_into().ok()?;
    Some(u64::from_be_bytes(raw))
}

/// The send instant (ns since [`epoch`]) and NAL header byte of a coded video frame made by
/// [`FrameBuilder`], found in the first bytes of its elementary stream as a muxer carries it:
/// length-prefixed (fMP4) or Annex B after an AUD and parameter sets (MPEG-TS). `None` if the
/// magic is not there.
pub fn find_stamp(es: &[u8]) -> Option<(u64, u8)> {
    let m = es.windows(MAGIC.len()).position(|w| w == MAGIC)?;
    let nal = *es.get(m.checked_sub(9)?)?;
    let raw: [u8; 8] = es.get(m - 8..m)?.try_into().ok()?;
    Some((u64::from_be_bytes(raw), nal))
}

/// Whether a NAL header byte is an H.264 IDR slice.
pub fn is_idr(nal_header: u8) -> bool {
    nal_header & 0x1f == 5
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::flv::inspect_video;

    #[test]
    fn frames_hit_the_bitrate_and_carry_the_stamp() {
        let spec = StreamSpec {
            bitrate: 2_000_000,
            fps: 25,
            gop: 50,
        };
        let mut b = FrameBuilder::new(spec);
        let total: usize = (0..50).map(|i| b.video(i, 7).len()).sum();
        let video_bps = total as u64 * 8 / 2;
        assert!((1_900_000..=1_950_000).contains(&video_bps), "{video_bps}");
        let key = b.video(0, 123_456_789).to_vec();
        let info = inspect_video(&key).expect("valid avc tag");
        assert!(info.keyframe && info.coded_frame && !info.sequence_header);
        assert_eq!(send_stamp(&key[..PREFIX_LEN]), Some(123_456_789));
        let nalu = u32::from_be_bytes([key[5], key[6], key[7], key[8]]) as usize;
        assert_eq!(nalu + 9, key.len());
        let inter = b.video(1, 5).to_vec();
        assert!(!inspect_video(&inter).expect("valid").keyframe);
        let seq = inspect_video(AVC_SEQUENCE_HEADER).expect("seq");
        assert!(seq.sequence_header);
        assert_eq!(send_stamp(AVC_SEQUENCE_HEADER), None);
        // As muxers carry it: after the 5-byte tag header, or with an AUD in front.
        assert_eq!(find_stamp(&key[5..]), Some((123_456_789, 0x65)));
        let mut annex_b = vec![0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1];
        annex_b.extend_from_slice(&inter[9..40]);
        assert_eq!(find_stamp(&annex_b), Some((5, 0x41)));
        assert!(is_idr(0x65) && !is_idr(0x41));
        assert_eq!(find_stamp(&key[..20]), None);
    }
}

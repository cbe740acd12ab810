//! Sans-IO fragmented MP4 (CMAF) muxer: the init segment, moof+mdat fragments (LL-HLS parts or
//! whole segments) and the RFC 6381 CODECS string, as pure functions of `hls::Tracks` and
//! `hls::Sample`s. Must not do I/O, read clocks, keep state or panic on any input: two edges
//! muxing the same samples must produce the same bytes.
//!
//! Layout (ISO/IEC 14496-12, CMAF): video is track 1 at 90 kHz, audio (AAC) track 2 at its
//! sample rate. A fragment has one `traf` per track with samples (`tfhd` default-base-is-moof,
//! `tfdt` v1, `trun` v1 with signed composition offsets) and one `mdat` holding the video
//! samples' bytes, then the audio samples' bytes.
//!
//! Tracks this module cannot package are left out of all three functions alike, so the
//! playlist's CODECS never names a track the init segment lacks: video codecs other than
//! H.264/HEVC/AV1, audio other than AAC, an audio sample rate of 0, and configuration records
//! larger than [`MAX_RECORD`].

mod boxes;
mod codecs;

#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::flv::{AudioCodec, VideoCodec};
use crate::hls::{AudioTrack, Sample, TrackKind, Tracks, VideoTrack};

pub use codecs::codecs_string as codecs;

/// Track id of the video track.
pub const VIDEO_TRACK_ID: u32 = 1;
/// Track id of the audio track.
pub const AUDIO_TRACK_ID: u32 = 2;
/// Timescale of the video track (the MPEG 90 kHz clock, so milliseconds convert exactly).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Largest decoder configuration record (avcC/hvcC/av1C/AudioSpecificConfig) packaged. Real
/// ones are a few hundred bytes; the bound keeps every box size and esds length in range.
pub const MAX_RECORD: usize = 1 << 20;

/// Duration given to a lone video sample: the next fragment's `tfdt` corrects any error.
const DEFAULT_VIDEO_DURATION: u32 = VIDEO_TIMESCALE / 30;

/// The initialization segment: `ftyp` + `moov` (`mvhd`, one `trak` per packaged track,
/// `mvex`/`trex`). Creation times are 0, so the bytes depend on `tracks` only. With no
/// packageable track the `moov` has no `trak`.
pub fn init_segment(tracks: &Tracks) -> Bytes {
    boxes::write_init(video(tracks), audio(tracks))
}

/// One CMAF fragment: `moof` (`mfhd` with `sequence`, one `traf` per track that has samples
/// here) + `mdat`. `samples` are in decode order, both tracks interleaved; samples of tracks
/// not packaged are ignored.
///
/// Returns an empty `Bytes` when there is nothing to mux (no samples of a packaged track), and
/// also when the fragment would exceed 2 GiB, which `trun`'s 32-bit signed data offsets cannot
/// address.
///
/// Each sample lasts until the next sample of its track in this fragment; the last one lasts
/// as long as the one before it (a lone sample: 1024 AAC frames' samples or 1/30 s), which
/// never accumulates because every fragment's `tfdt` is exact.
pub fn fragment(tracks: &Tracks, sequence: u32, samples: &[Sample]) -> Bytes {
    boxes::write_fragment(video(tracks), audio(tracks), sequence, samples)
}

/// Points each sample's `data` at its copy in `fragment`'s `mdat`, so samples kept after
/// muxing (for the MPEG-TS form) share the fragment's memory instead of holding on to the
/// frames they were cut from. `fragment` must be what [`fragment`] returned for `tracks` and
/// `samples`; otherwise (the empty result included) samples stop being re-pointed where the
/// bytes differ, so no sample's content ever changes, except that an AV1 sample loses the
/// temporal delimiter the fragment left out. Samples of tracks not packaged keep their bytes.
pub fn share_payloads(tracks: &Tracks, fragment: &Bytes, samples: &mut [Sample]) {
    let (video, audio) = (video(tracks), audio(tracks));
    let codec = video.map(|v| v.codec);
    let packaged = |s: &Sample| match s.track {
        TrackKind::Video => video.is_some(),
        TrackKind::Audio => audio.is_some(),
    };
    let total = samples.iter().filter(|s| packaged(s)).fold(0usize, |n, s| {
        n.saturating_add(sample_payload(codec, s).len())
    });
    let Some(mut at) = fragment.len().checked_sub(total) else {
        return;
    };
    if at < 8 || fragment.get(at - 4..at) != Some(b"mdat".as_slice()) {
        return;
    }
    // The mdat holds the video run, then the audio run (see `boxes::write_fragment`).
    for kind in [TrackKind::Video, TrackKind::Audio] {
        for sample in samples
            .iter_mut()
            .filter(|s| s.track == kind && packaged(s))
        {
            let len = sample_payload(codec, sample).len();
            let Some(copy) = fragment.get(at..at + len) else {
                return;
            };
            if copy != sample_payload(codec, sample) {
                return;
            }
            sample.data = fragment.slice(at..at + len);
            at += len;
        }
    }
}

/// The video track if this module packages it.
fn video(tracks: &Tracks) -> Option<&VideoTrack> {
    tracks.video.as_ref().filter(|v| {
        matches!(
            v.codec,
            VideoCodec::Avc | VideoCodec::Hevc | VideoCodec::Av1
        ) && v.record.len() <= MAX_RECORD
    })
}

/// The audio track if this module packages it.
fn audio(tracks: &Tracks) -> Option<&AudioTrack> {
    tracks
        .audio
        .as_ref()
        .filter(|a| a.codec == AudioCodec::Aac && a.sample_rate > 0 && a.asc.len() <= MAX_RECORD)
}

/// The timescale and conversions of one packaged track.
#[derive(Debug, Clone, Copy)]
struct Clock {
    kind: TrackKind,
    timescale: u32,
}

impl Clock {
    fn video() -> Self {
        Self {
            kind: TrackKind::Video,
            timescale: VIDEO_TIMESCALE,
        }
    }

    fn audio(track: &AudioTrack) -> Self {
        Self {
            kind: TrackKind::Audio,
            timescale: track.sample_rate,
        }
    }

    /// Decode time in this track's timescale: `ms * timescale / 1000` rounded to nearest
    /// (exact for video). In u128 so no input overflows; a result past u64 wraps, which is
    /// still deterministic and unreachable for real timelines (585 million years at 1 kHz).
    fn decode_time(self, ms: u64) -> u64 {
        let scaled = (u128::from(ms) * u128::from(self.timescale) + 500) / 1000;
        scaled as u64
    }

    /// Composition offset in this track's timescale, rounded to nearest (half up) and
    /// clamped to what `trun` v1's signed 32-bit field holds.
    fn composition_offset(self, cts_ms: i32) -> i32 {
        let scaled = (i128::from(cts_ms) * i128::from(self.timescale) + 500).div_euclid(1000);
        scaled.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32
    }
}

/// The bytes of a sample as stored in the `mdat`. AV1 samples drop a leading temporal
/// delimiter OBU: AV1-in-ISOBMFF says samples should not carry them (the sample is the
/// temporal unit), and encoders feeding FLV often leave one in. A slice, not a copy.
fn sample_payload(video_codec: Option<VideoCodec>, sample: &Sample) -> &[u8] {
    let data = &sample.data[..];
    if sample.track == TrackKind::Video && video_codec == Some(VideoCodec::Av1) {
        // OBU header: type 2 (temporal delimiter), has_size_field, no extension; size 0.
        if let Some(rest) = data.strip_prefix(&[0x12, 0x00]) {
            return rest;
        }
    }
    data
}

/// Default duration of a lone audio sample: one AAC frame, 1024 samples of the core coder.
/// With SBR (HE-AAC) the track's rate is the doubled output rate, so a frame spans 2048.
fn default_audio_duration(track: &AudioTrack) -> u32 {
    match codecs::asc_core_rate(&track.asc) {
        Some(core) if u64::from(core) * 2 == u64::from(track.sample_rate) => 2048,
        _ => 1024,
    }
}

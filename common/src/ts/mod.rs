//! Sans-IO MPEG-TS muxer (ISO/IEC 13818-1): HLS segments from [`Tracks`] and [`Sample`]s.
//! Must not do I/O, read clocks, keep state between segments or panic on any input: a segment
//! is a pure function of its samples, so every edge serves byte-identical segments.
//!
//! Layout of a segment: PAT (PID 0), PMT (PID 0x1000, program 1), then one PES per sample in
//! the order given: H.264/HEVC on PID 0x100 (Annex B, AUD first, parameter sets on keyframes),
//! AAC on PID 0x101 (ADTS). The PCR rides on the video PID, or the audio PID without video.

mod audio;
mod packet;
mod pes;
mod psi;
mod video;

#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

pub use audio::{ADTS_HEADER_LEN, AdtsConfig, nearest_rate_index};
pub use packet::{PACKET_LEN, SYNC_BYTE};
pub use pes::{STREAM_ID_AUDIO, STREAM_ID_VIDEO, read_timestamp, timestamp_90k};
pub use psi::crc32_mpeg2;
pub use video::{STREAM_TYPE_H264, STREAM_TYPE_HEVC};

use crate::hls::{Sample, TrackKind, Tracks};
use packet::{PidWriter, UnitStart};
use pes::{MAX_PES_HEADER, pes_header};
use psi::EsInfo;
use video::VideoStream;

pub const PAT_PID: u16 = 0x0000;
pub const PMT_PID: u16 = 0x1000;
pub const VIDEO_PID: u16 = 0x0100;
pub const AUDIO_PID: u16 = 0x0101;
/// PCR_PID of a program without streams.
pub const NO_PCR_PID: u16 = 0x1fff;
pub const PROGRAM_NUMBER: u16 = 1;
/// stream_type of AAC with ADTS transport (ISO/IEC 13818-7).
pub const STREAM_TYPE_AAC: u8 = 0x0f;
/// PTS, DTS and PCR base are 33-bit counters of a 90 kHz clock.
pub const TIMESTAMP_MASK: u64 = (1 << 33) - 1;
/// How far the PCR runs behind the DTS of the access unit it arrives with (0.7 s, the
/// customary T-STD delay): a decoder's clock must not pass a picture's decode time before the
/// picture has arrived.
const PCR_DELAY_90K: u64 = 63_000;

/// One HLS MPEG-TS segment: PAT, PMT, then the samples as PES packets, all in 188-byte packets.
///
/// Continuity counters start at 0 on every PID and the first packet of each PID sets the
/// discontinuity_indicator, so segments need no state from their predecessors. Samples of a
/// track the segment does not carry (no such track, AV1 video, non-AAC audio), video samples
/// without a NAL unit and AAC frames too long for ADTS are left out.
pub fn mux_segment(tracks: &Tracks, samples: &[Sample]) -> Bytes {
    let video = tracks.video.as_ref().and_then(VideoStream::new);
    let audio = tracks.audio.as_ref().and_then(AdtsConfig::from_track);
    let mut out = BytesMut::with_capacity(estimate_len(video.as_ref(), samples));

    let mut streams = [EsInfo {
        stream_type: 0,
        pid: 0,
    }; 2];
    let mut count = 0;
    if let Some(v) = &video {
        streams[count] = EsInfo {
            stream_type: v.stream_type(),
            pid: VIDEO_PID,
        };
        count += 1;
    }
    if audio.is_some() {
        streams[count] = EsInfo {
            stream_type: STREAM_TYPE_AAC,
            pid: AUDIO_PID,
        };
        count += 1;
    }
    let pcr_pid = streams[..count].first().map_or(NO_PCR_PID, |es| es.pid);

    let mut section = [0; psi::MAX_SECTION];
    let len = psi::pat(&mut section);
    PidWriter::new(PAT_PID).write_unit(&mut out, UnitStart::default(), &section[..len], &[]);
    let len = psi::pmt(&mut section, pcr_pid, &streams[..count]);
    PidWriter::new(PMT_PID).write_unit(&mut out, UnitStart::default(), &section[..len], &[]);

    let mut video_pid = PidWriter::new(VIDEO_PID);
    let mut audio_pid = PidWriter::new(AUDIO_PID);
    // Reused for every sample: the Annex B pieces of one access unit.
    let mut body: Vec<&[u8]> = Vec::with_capacity(64);
    let mut head_buf = [0u8; MAX_PES_HEADER + MAX_AUD_OR_ADTS];
    let mut pes_buf = [0u8; MAX_PES_HEADER];

    for sample in samples {
        let dts = timestamp_90k(sample.dts);
        let pcr = pcr_for(sample.dts);
        match sample.track {
            TrackKind::Video => {
                let Some(v) = &video else { continue };
                body.clear();
                if !v.annex_b(&sample.data, sample.keyframe, &mut body) {
                    continue;
                }
                let aud = v.aud();
                let es_len = body
                    .iter()
                    .fold(aud.len(), |n, b| n.saturating_add(b.len()));
                let pts = timestamp_90k(sample.dts.wrapping_add_signed(i64::from(sample.cts)));
                let n = pes_header(&mut pes_buf, STREAM_ID_VIDEO, pts, Some(dts), es_len);
                let head = join(&mut head_buf, &pes_buf[..n], aud);
                let start = UnitStart {
                    random_access: sample.keyframe,
                    pcr: (pcr_pid == VIDEO_PID).then_some(pcr),
                };
                video_pid.write_unit(&mut out, start, head, &body);
            }
            TrackKind::Audio => {
                let Some(adts) = &audio else { continue };
                if sample.data.is_empty() {
                    continue;
                }
                let Some(adts) = adts.header(sample.data.len()) else {
                    continue;
                };
                let es_len = ADTS_HEADER_LEN + sample.data.len();
                let n = pes_header(&mut pes_buf, STREAM_ID_AUDIO, dts, None, es_len);
                let head = join(&mut head_buf, &pes_buf[..n], &adts);
                // Every AAC frame is a random access point.
                let start = UnitStart {
                    random_access: true,
                    pcr: (pcr_pid == AUDIO_PID).then_some(pcr),
                };
                audio_pid.write_unit(&mut out, start, head, &[&sample.data]);
            }
        }
    }
    out.freeze()
}

/// Room after the PES header for the AUD or the ADTS header.
const MAX_AUD_OR_ADTS: usize = if video::MAX_AUD > ADTS_HEADER_LEN {
    video::MAX_AUD
} else {
    ADTS_HEADER_LEN
};

/// `a` then `b` in `buf` (both always fit: see the sizes above).
fn join<'b>(buf: &'b mut [u8], a: &[u8], b: &[u8]) -> &'b [u8] {
    let mut n = 0;
    for (dst, &src) in buf.iter_mut().zip(a.iter().chain(b)) {
        *dst = src;
        n += 1;
    }
    &buf[..n]
}

/// The PCR sent with an access unit decoded at `dts_ms`: [`PCR_DELAY_90K`] earlier, held at 0
/// at the very start of a stream rather than wrapping to a time far in the future.
fn pcr_for(dts_ms: u64) -> u64 {
    dts_ms.saturating_mul(90).saturating_sub(PCR_DELAY_90K) & TIMESTAMP_MASK
}

/// An estimate of the segment size, so the output is allocated once in the common case: each
/// sample's data, what is added to it (PES header, AUD or ADTS, start codes, parameter sets on
/// keyframes), spread over 184-byte packet bodies plus a partly used last packet.
fn estimate_len(video: Option<&VideoStream<'_>>, samples: &[Sample]) -> usize {
    let params = video.map_or(0, VideoStream::params_len);
    let packets = samples.iter().fold(2usize, |n, s| {
        let extra = if s.keyframe && s.track == TrackKind::Video {
            params
        } else {
            0
        };
        let es = s.data.len().saturating_add(extra).saturating_add(48);
        n.saturating_add(es / 184 + 1)
    });
    packets.saturating_mul(PACKET_LEN)
}

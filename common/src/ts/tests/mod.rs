//! Byte-level tests of the TS muxer: packets, PSI, PES, ADTS, Annex B, determinism, and
//! hostile input. The segments are read back by a small demuxer written here from the spec.

use bytes::{Bytes, BytesMut};

mod codec;
mod demux;
mod hostile;

use super::packet::{PidWriter, UnitStart};
use super::*;
use crate::flv::{AudioCodec, VideoCodec};
use crate::hls::{AudioTrack, Sample, TrackKind, Tracks, VideoTrack};
use demux::{packets, pes, section, units};

// ---- inputs ----

const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];
const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33];
const SLICE: &[u8] = &[0x41, 0x9a, 0x02];
const SEI: &[u8] = &[0x06, 0x05, 0x01, 0x80];

fn avcc(length_size: u8, sps: &[&[u8]], pps: &[&[u8]]) -> Bytes {
    let mut r = vec![
        1,
        0x64,
        0,
        0x1f,
        0xfc | (length_size - 1),
        0xe0 | sps.len() as u8,
    ];
    for s in sps {
        r.extend_from_slice(&(s.len() as u16).to_be_bytes());
        r.extend_from_slice(s);
    }
    r.push(pps.len() as u8);
    for p in pps {
        r.extend_from_slice(&(p.len() as u16).to_be_bytes());
        r.extend_from_slice(p);
    }
    Bytes::from(r)
}

fn hvcc(arrays: &[(u8, &[u8])]) -> Bytes {
    let mut r = vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5d];
    r.extend_from_slice(&[
        0xf0,
        0,
        0xfc,
        0xfd,
        0xf8,
        0xf8,
        0,
        0,
        0x0f,
        arrays.len() as u8,
    ]);
    for (t, nal) in arrays {
        r.extend_from_slice(&[0x80 | t, 0, 1]);
        r.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        r.extend_from_slice(nal);
    }
    Bytes::from(r)
}

/// NAL units with `size`-byte length prefixes.
fn lp(size: usize, nals: &[&[u8]]) -> Bytes {
    let mut out = Vec::new();
    for n in nals {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes()[4 - size..]);
        out.extend_from_slice(n);
    }
    Bytes::from(out)
}

fn video_track(codec: VideoCodec, record: Bytes) -> VideoTrack {
    VideoTrack {
        codec,
        record,
        width: 320,
        height: 240,
    }
}

fn aac_track(asc: &[u8]) -> AudioTrack {
    AudioTrack {
        codec: AudioCodec::Aac,
        asc: Bytes::copy_from_slice(asc),
        sample_rate: 44_100,
        channels: 2,
    }
}

fn av_tracks() -> Tracks {
    Tracks {
        video: Some(video_track(VideoCodec::Avc, avcc(4, &[SPS], &[PPS]))),
        audio: Some(aac_track(&[0x12, 0x10])),
    }
}

fn video(dts: u64, cts: i32, keyframe: bool, data: Bytes) -> Sample {
    Sample {
        track: TrackKind::Video,
        dts,
        cts,
        keyframe,
        data,
    }
}

fn audio(dts: u64, data: &[u8]) -> Sample {
    Sample {
        track: TrackKind::Audio,
        dts,
        cts: 0,
        keyframe: true,
        data: Bytes::copy_from_slice(data),
    }
}

fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
    nals.iter()
        .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
        .collect()
}

const AUD: &[u8] = &[0x09, 0xf0];

/// A short A/V segment: keyframe, two B-frame-reordered pictures, audio interleaved.
fn av_samples() -> Vec<Sample> {
    vec![
        video(1000, 80, true, lp(4, &[SEI, IDR])),
        audio(1000, &[0x21; 300]),
        video(1040, 120, false, lp(4, &[SLICE])),
        audio(1023, &[0x22; 5]),
        video(1080, 0, false, lp(4, &[&[0x41; 1000]])),
    ]
}

/// The elementary stream of every video PES of a segment.
fn video_es(tracks: &Tracks, samples: &[Sample]) -> Vec<Vec<u8>> {
    units(&mux_segment(tracks, samples))
        .iter()
        .filter(|u| u.pid == VIDEO_PID)
        .map(|u| pes(u).payload)
        .collect()
}

// ---- tests ----

#[test]
fn crc32_mpeg2_check_value() {
    // The catalogued check value of CRC-32/MPEG-2.
    assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    assert_eq!(crc32_mpeg2(b""), 0xffff_ffff);
}

#[test]
fn empty_segment_is_pat_and_pmt() {
    let ts = mux_segment(&av_tracks(), &[]);
    assert_eq!(ts.len(), 2 * PACKET_LEN);
    let u = units(&ts);
    assert_eq!(u.len(), 2);
    assert_eq!(u[0].pid, PAT_PID);
    assert_eq!(u[1].pid, PMT_PID);

    let pat = section(&u[0]);
    assert_eq!(pat[0], 0x00, "table_id");
    assert_eq!(pat[1] & 0xc0, 0x80, "section_syntax_indicator");
    assert_eq!(&pat[3..8], &[0, 1, 0xc1, 0, 0]);
    assert_eq!(
        &pat[8..12],
        &[0, 1, 0xf0, 0x00],
        "program 1 -> PMT PID 0x1000"
    );

    let pmt = section(&u[1]);
    assert_eq!(pmt[0], 0x02);
    assert_eq!(&pmt[3..5], &[0, 1], "program_number");
    assert_eq!(&pmt[8..10], &[0xe1, 0x00], "PCR on the video PID");
    assert_eq!(&pmt[10..12], &[0xf0, 0x00]);
    assert_eq!(
        &pmt[12..17],
        &[0x1b, 0xe1, 0x00, 0xf0, 0x00],
        "h264 on 0x100"
    );
    assert_eq!(
        &pmt[17..22],
        &[0x0f, 0xe1, 0x01, 0xf0, 0x00],
        "aac on 0x101"
    );
    assert_eq!(pmt.len(), 26);
}

/// (stream_type, pid) entries and PCR_PID of a segment's PMT.
fn pmt_streams(ts: &[u8]) -> (u16, Vec<(u8, u16)>) {
    let pmt = section(&units(ts)[1]);
    let pcr = u16::from_be_bytes([pmt[8], pmt[9]]) & 0x1fff;
    let streams = pmt[12..pmt.len() - 4]
        .chunks(5)
        .map(|e| (e[0], u16::from_be_bytes([e[1], e[2]]) & 0x1fff))
        .collect();
    (pcr, streams)
}

#[test]
fn pmt_follows_the_tracks() {
    let mut t = av_tracks();
    t.video = None;
    assert_eq!(
        pmt_streams(&mux_segment(&t, &[])),
        (0x101, vec![(0x0f, 0x101)])
    );

    let mut t = av_tracks();
    t.audio = None;
    assert_eq!(
        pmt_streams(&mux_segment(&t, &[])),
        (0x100, vec![(0x1b, 0x100)])
    );

    let mut t = av_tracks();
    t.video = Some(video_track(VideoCodec::Hevc, hvcc(&[])));
    assert_eq!(
        pmt_streams(&mux_segment(&t, &[])),
        (0x100, vec![(0x24, 0x100), (0x0f, 0x101)])
    );

    // AV1 is not carried: the segment is audio-only, with the PCR on audio.
    let mut t = av_tracks();
    t.video = Some(video_track(
        VideoCodec::Av1,
        Bytes::from_static(&[0x81, 0, 0, 0]),
    ));
    assert_eq!(
        pmt_streams(&mux_segment(&t, &[])),
        (0x101, vec![(0x0f, 0x101)])
    );
    let ts = mux_segment(&t, &[video(0, 0, true, lp(4, &[IDR])), audio(0, &[1, 2])]);
    assert!(units(&ts).iter().all(|u| u.pid != VIDEO_PID));

    t.audio = None;
    assert_eq!(pmt_streams(&mux_segment(&t, &[])), (NO_PCR_PID, vec![]));
    assert_eq!(mux_segment(&Tracks::default(), &av_samples()).len(), 376);
}

#[test]
fn av_segment_layout() {
    let ts = mux_segment(&av_tracks(), &av_samples());
    let u = units(&ts);
    let pids: Vec<u16> = u.iter().map(|u| u.pid).collect();
    assert_eq!(pids, [0, 0x1000, 0x100, 0x101, 0x100, 0x101, 0x100]);

    // Keyframe: random access + PCR 0.7 s before its DTS; AUD, then SPS/PPS, then its NALs.
    let key = &u[2];
    let af = key.first.af.clone().expect("adaptation field");
    assert!(af.random_access && af.discontinuity);
    assert_eq!(af.pcr, Some(1000 * 90 - 63_000));
    let p = pes(key);
    assert_eq!(p.stream_id, 0xe0);
    assert_eq!((p.pts, p.dts), (1080 * 90, Some(1000 * 90)));
    assert_eq!(p.payload, annex_b(&[AUD, SPS, PPS, SEI, IDR]));
    assert_eq!(usize::from(p.packet_length), key.data.len() - 6);

    // Inter picture: no random access, PCR still on every video PES, no parameter sets.
    let inter = &u[4];
    let af = inter
        .first
        .af
        .clone()
        .expect("adaptation field for the PCR");
    assert!(!af.random_access && !af.discontinuity);
    assert_eq!(af.pcr, Some(1040 * 90 - 63_000));
    let p = pes(inter);
    assert_eq!((p.pts, p.dts), (1160 * 90, Some(1040 * 90)));
    assert_eq!(p.payload, annex_b(&[AUD, SLICE]));

    // PTS == DTS: PTS alone.
    let p = pes(&u[6]);
    assert_eq!((p.pts, p.dts), (1080 * 90, None));
    assert_eq!(p.payload.len(), 6 + 4 + 1000);

    // Audio: PTS only, ADTS + the raw frame, random access, no PCR.
    let a = &u[3];
    let af = a.first.af.clone().expect("adaptation field");
    assert!(af.random_access && af.discontinuity && af.pcr.is_none());
    let p = pes(a);
    assert_eq!(p.stream_id, 0xc0);
    assert_eq!((p.pts, p.dts), (1000 * 90, None));
    assert_eq!(&p.payload[..2], &[0xff, 0xf1]);
    assert_eq!(&p.payload[7..], &[0x21; 300]);
    assert_eq!(pes(&u[5]).payload.len(), 7 + 5);
}

#[test]
fn output_buffer_is_sized_once() {
    let tracks = av_tracks();
    let samples: Vec<Sample> = (0..50)
        .flat_map(|i| {
            let size = (i * 997) % 5000;
            [
                video(
                    i * 40,
                    80,
                    i % 25 == 0,
                    lp(4, &[SEI, &vec![0x41; size as usize]]),
                ),
                audio(i * 40, &vec![0x21; (size % 700) as usize + 1]),
            ]
        })
        .collect();
    for n in [0, 1, 2, 7, 100] {
        let part = &samples[..n];
        let video = tracks.video.as_ref().and_then(video::VideoStream::new);
        let estimate = estimate_len(video.as_ref(), part);
        let ts = mux_segment(&tracks, part);
        assert!(
            estimate >= ts.len(),
            "{n} samples: {estimate} < {}",
            ts.len()
        );
        assert!(
            estimate <= ts.len() + 188 * (n + 2),
            "{n} samples: {estimate} too large"
        );
    }
}

#[test]
fn continuity_counters_count_from_zero_per_pid() {
    // 40 video PES of ~1 KB: more than 16 packets, so the counter wraps.
    let samples: Vec<Sample> = (0..40)
        .map(|i| video(i * 40, 0, i % 10 == 0, lp(4, &[&[0x41; 1000]])))
        .collect();
    let ts = mux_segment(&av_tracks(), &samples);
    let pk = packets(&ts);
    let video_ccs: Vec<u8> = pk.iter().filter(|p| p.pid == 0x100).map(|p| p.cc).collect();
    assert!(video_ccs.len() > 16);
    for (i, cc) in video_ccs.iter().enumerate() {
        assert_eq!(usize::from(*cc), i % 16);
    }
    assert_eq!(pk[0].cc, 0);
    assert_eq!(pk[1].cc, 0);
    // units() checks the counters and discontinuity flags of every PID.
    assert_eq!(units(&ts).len(), 42);
}

#[test]
fn last_packet_is_padded_with_adaptation_stuffing() {
    // Unit sizes around every boundary: 1-byte and 2-byte adaptation fields, exact fits, and
    // with and without a PCR in the first packet.
    for pcr in [None, Some(12345)] {
        for len in (1..=400).chain([183, 184, 185, 366, 367, 368, 369]) {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = BytesMut::new();
            let mut w = PidWriter::new(0x100);
            let start = UnitStart {
                random_access: true,
                pcr,
            };
            let (head, body) = data.split_at(len.min(10));
            w.write_unit(&mut out, start, head, &[body]);
            w.write_unit(&mut out, UnitStart::default(), &data, &[]);
            let u = units(&out);
            assert_eq!(u.len(), 2);
            assert_eq!(u[0].data, data, "len {len}");
            assert_eq!(u[1].data, data, "len {len}");
            assert_eq!(u[0].first.af.clone().and_then(|a| a.pcr), pcr);
            // No bytes beyond the unit: the payload never carries padding.
            let min_packets = len.div_ceil(184);
            assert!(out.len() / 188 <= 2 * (min_packets + 1));
        }
    }
}

#[test]
fn empty_unit_writes_nothing() {
    let mut out = BytesMut::new();
    PidWriter::new(0x100).write_unit(&mut out, UnitStart::default(), &[], &[&[], &[]]);
    assert!(out.is_empty());
}

#[test]
fn pes_timestamps_encode_and_wrap() {
    let mut buf = [0; 19];
    let n = pes::pes_header(&mut buf, 0xe0, 0, None, 10);
    assert_eq!(
        &buf[..n],
        &[0, 0, 1, 0xe0, 0, 18, 0x84, 0x80, 5, 0x21, 0, 1, 0, 1]
    );
    let n = pes::pes_header(&mut buf, 0xe0, TIMESTAMP_MASK, Some(1), 10);
    assert_eq!(
        &buf[..n],
        &[
            0, 0, 1, 0xe0, 0, 23, 0x84, 0xc0, 10, 0x3f, 0xff, 0xff, 0xff, 0xff, 0x11, 0, 1, 0, 3
        ]
    );
    let n = pes::pes_header(&mut buf, 0xe0, 7, Some(7), 70_000);
    assert_eq!(n, 14, "dts equal to pts is left out");
    assert_eq!(&buf[4..6], &[0, 0], "unbounded length past 65535");

    for ts in [0, 1, 0x1_2345_6789 & TIMESTAMP_MASK, TIMESTAMP_MASK] {
        pes::pes_header(&mut buf, 0xc0, ts, None, 0);
        assert_eq!(read_timestamp(&buf[9..]), Some(ts));
    }
    assert_eq!(timestamp_90k(1000), 90_000);
    // 2^33 / 90 ms is about 26.5 hours: the clock wraps.
    assert_eq!(
        timestamp_90k(95_443_718),
        (95_443_718 * 90) & TIMESTAMP_MASK
    );
    assert!(timestamp_90k(95_443_718) < 90);
    // A negative presentation time (dts + cts < 0) wraps to just below 2^33.
    assert_eq!(timestamp_90k(0u64.wrapping_sub(1)), (1 << 33) - 90);
    assert_eq!(
        timestamp_90k(u64::MAX / 2),
        (u64::MAX / 2).wrapping_mul(90) & TIMESTAMP_MASK
    );
}

#[test]
fn video_timestamps_in_segment() {
    let ts = mux_segment(
        &av_tracks(),
        &[
            video(10, -20, true, lp(4, &[IDR])),
            video(95_443_718, 0, false, lp(4, &[SLICE])),
        ],
    );
    let u = units(&ts);
    let p = pes(&u[2]);
    assert_eq!(p.pts, (1 << 33) - 900);
    assert_eq!(p.dts, Some(900));
    assert_eq!(
        u[2].first.af.clone().and_then(|a| a.pcr),
        Some(0),
        "held at 0"
    );
    assert_eq!(pes(&u[3]).pts, (95_443_718 * 90) & TIMESTAMP_MASK);
}

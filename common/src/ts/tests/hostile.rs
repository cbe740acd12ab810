//! Determinism and hostile input: malformed samples and records, and pseudo-random input.

use super::*;

#[test]
fn output_is_deterministic() {
    let a = mux_segment(&av_tracks(), &av_samples());
    // Equal input held in different buffers.
    let samples: Vec<Sample> = av_samples()
        .into_iter()
        .map(|mut s| {
            s.data = Bytes::from(s.data.to_vec());
            s
        })
        .collect();
    let b = mux_segment(&av_tracks(), &samples);
    assert_eq!(a, b);
    // A segment does not depend on what was muxed before it.
    let _ = mux_segment(&av_tracks(), &av_samples()[2..]);
    assert_eq!(mux_segment(&av_tracks(), &av_samples()), a);
}

#[test]
fn malformed_video_never_panics() {
    let tracks = av_tracks();
    let cases: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from_static(&[0]),
        Bytes::from_static(&[0, 0, 0]),
        Bytes::from_static(&[0, 0, 0, 0]),          // one empty NAL
        Bytes::from_static(&[0, 0, 0, 9, 0x65, 1]), // length past the end
        Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x65]), // absurd length
        Bytes::from_static(&[0, 0, 0, 1, 0x09]),    // only an AUD
        Bytes::from_static(&[0, 0, 0, 2, 0x65, 1, 0, 0]), // truncated second length
    ];
    for data in &cases {
        for keyframe in [true, false] {
            let ts = mux_segment(&tracks, &[video(0, 0, keyframe, data.clone())]);
            // Nothing decodable in these samples but the last: no video PES at all.
            assert!(units(&ts).len() <= 3);
        }
    }
    // The part before a bad length is kept.
    let es = video_es(&tracks, &[video(0, 0, false, cases[7].clone())]);
    assert_eq!(es, vec![annex_b(&[AUD, &[0x65, 1]])]);

    // Records: empty, too short for a length size, counts past the end, zero-length sets.
    let records: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from_static(&[1, 0x64]),
        Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe1]),
        Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0, 1, 0, 0]),
        Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe3, 0, 0xff, 0x67]),
    ];
    for record in records {
        for codec in [VideoCodec::Avc, VideoCodec::Hevc] {
            let t = Tracks {
                video: Some(video_track(codec, record.clone())),
                audio: None,
            };
            let es = video_es(&t, &[video(0, 0, true, lp(4, &[IDR]))]);
            assert_eq!(es.len(), 1);
            assert!(es[0].ends_with(&annex_b(&[IDR])));
        }
    }
}

/// xorshift64: reproducible pseudo-random input without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True one time in `n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    fn bytes(&mut self, max: usize) -> Bytes {
        let len = (self.next() as usize) % (max + 1);
        Bytes::from((0..len).map(|_| self.next() as u8).collect::<Vec<u8>>())
    }

    /// Mostly well-formed length-prefixed NALs with random contents, sometimes raw garbage.
    fn sample_data(&mut self) -> Bytes {
        if self.one_in(4) {
            return self.bytes(600);
        }
        let mut out = Vec::new();
        for _ in 0..self.next() % 4 {
            let nal = self.bytes(400);
            let len = if self.one_in(8) {
                self.next() as u32
            } else {
                nal.len() as u32
            };
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&nal);
        }
        Bytes::from(out)
    }
}

#[test]
fn arbitrary_input_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let codecs = [
        VideoCodec::Avc,
        VideoCodec::Hevc,
        VideoCodec::Av1,
        VideoCodec::Vp9,
    ];
    let mut pes_written = 0;
    for round in 0..400 {
        let codec = codecs[round % codecs.len()];
        let record = if rng.one_in(2) {
            rng.bytes(64)
        } else if codec == VideoCodec::Hevc {
            hvcc(&[(33, &rng.bytes(20)[..]), (34, &rng.bytes(4)[..])])
        } else {
            avcc(
                1 + (rng.next() % 4) as u8,
                &[&rng.bytes(20)[..]],
                &[&rng.bytes(4)[..]],
            )
        };
        let tracks = Tracks {
            video: (!rng.one_in(4)).then(|| VideoTrack {
                codec,
                record,
                width: 0,
                height: 0,
            }),
            audio: (!rng.one_in(4)).then(|| AudioTrack {
                codec: AudioCodec::Aac,
                asc: rng.bytes(6),
                sample_rate: (rng.next() % 100_000) as u32,
                channels: rng.next() as u8,
            }),
        };
        let samples: Vec<Sample> = (0..rng.next() % 12)
            .map(|_| Sample {
                track: if rng.one_in(2) {
                    TrackKind::Video
                } else {
                    TrackKind::Audio
                },
                dts: if rng.one_in(8) {
                    rng.next()
                } else {
                    rng.next() % 100_000
                },
                cts: rng.next() as i32,
                keyframe: rng.one_in(2),
                data: rng.sample_data(),
            })
            .collect();
        let ts = mux_segment(&tracks, &samples);
        assert!(ts.len() >= 2 * PACKET_LEN);
        let u = units(&ts);
        for unit in u.iter().skip(2) {
            let p = pes(unit);
            assert!(!p.payload.is_empty());
            pes_written += 1;
        }
        assert_eq!(ts, mux_segment(&tracks, &samples), "deterministic");
    }
    // The generator reaches the muxing paths, not only the early rejections.
    assert!(pes_written > 300, "{pes_written} PES");
}

//! ADTS headers and Annex B conversion of AVC/HEVC samples, read back from muxed segments.

use super::*;

struct BitWriter(Vec<u8>, u32);

impl BitWriter {
    fn put(&mut self, bits: u32, v: u32) {
        for i in (0..bits).rev() {
            if self.1.is_multiple_of(8) {
                self.0.push(0);
            }
            let last = self.0.last_mut().expect("byte");
            *last |= (((v >> i) & 1) as u8) << (7 - self.1 % 8);
            self.1 += 1;
        }
    }
}

fn asc(fields: &[(u32, u32)]) -> Vec<u8> {
    let mut w = BitWriter(Vec::new(), 0);
    for &(bits, v) in fields {
        w.put(bits, v);
    }
    w.0
}

#[test]
fn adts_header_fields() {
    let c = AdtsConfig::from_asc(&[0x12, 0x10]).expect("LC 44.1 kHz stereo");
    assert_eq!(
        c,
        AdtsConfig {
            profile: 1,
            sampling_index: 4,
            channel_config: 2
        }
    );
    let h = c.header(100).expect("header");
    assert_eq!(h, [0xff, 0xf1, 0x50, 0x80, 0x0d, 0x7f, 0xfc]);
    let frame_len = (u32::from(h[3] & 3) << 11) | (u32::from(h[4]) << 3) | u32::from(h[5] >> 5);
    assert_eq!(frame_len, 107);
    assert_eq!(c.header(0x1fff - 7).map(|h| h[4]), Some(0xff));
    assert_eq!(c.header(0x1fff - 6), None, "13-bit frame length");

    // HE-AAC v1 with explicit signalling: core AAC-LC at 24 kHz (index 6), SBR to 48 kHz.
    let he = asc(&[(5, 5), (4, 6), (4, 2), (4, 3), (5, 2), (3, 0)]);
    assert_eq!(
        AdtsConfig::from_asc(&he),
        Some(AdtsConfig {
            profile: 1,
            sampling_index: 6,
            channel_config: 2
        })
    );
    // HE-AAC v2 (PS, object type 29), mono core, explicit extension rate.
    let hev2 = asc(&[
        (5, 29),
        (4, 8),
        (4, 1),
        (4, 15),
        (24, 32_000),
        (5, 2),
        (3, 0),
    ]);
    let c = AdtsConfig::from_asc(&hev2).expect("he-aac v2");
    assert_eq!((c.profile, c.sampling_index, c.channel_config), (1, 8, 1));
    // Explicit frequency escape: the nearest table rate.
    let explicit = asc(&[(5, 2), (4, 15), (24, 44_100), (4, 2), (3, 0)]);
    assert_eq!(
        AdtsConfig::from_asc(&explicit).map(|c| c.sampling_index),
        Some(4)
    );
    let odd = asc(&[(5, 2), (4, 15), (24, 47_000), (4, 1), (3, 0)]);
    assert_eq!(
        AdtsConfig::from_asc(&odd).map(|c| c.sampling_index),
        Some(3)
    );
    assert_eq!(nearest_rate_index(0), 12);
    assert_eq!(nearest_rate_index(u32::MAX), 0);
    // AAC Main keeps its profile; escaped object types (ER AAC ELD, 39) fall back to LC.
    let main = asc(&[(5, 1), (4, 3), (4, 6)]);
    assert_eq!(AdtsConfig::from_asc(&main).map(|c| c.profile), Some(0));
    let eld = asc(&[(5, 31), (6, 7), (4, 3), (4, 1)]);
    assert_eq!(AdtsConfig::from_asc(&eld).map(|c| c.profile), Some(1));
    // Truncated and reserved.
    assert_eq!(AdtsConfig::from_asc(&[]), None);
    assert_eq!(AdtsConfig::from_asc(&[0x12]), None);
    assert_eq!(AdtsConfig::from_asc(&asc(&[(5, 2), (4, 13), (4, 2)])), None);

    // A track with an unreadable config falls back to its rate and channels.
    let c = AdtsConfig::from_track(&aac_track(&[])).expect("fallback");
    assert_eq!((c.profile, c.sampling_index, c.channel_config), (1, 4, 2));
    // Channel configuration 0 (PCE): the channel count stands in.
    let pce = aac_track(&asc(&[(5, 2), (4, 3), (4, 0), (3, 0)]));
    assert_eq!(
        AdtsConfig::from_track(&pce).map(|c| c.channel_config),
        Some(2)
    );
    let mut mp3 = aac_track(&[0x12, 0x10]);
    mp3.codec = AudioCodec::Mp3;
    assert_eq!(AdtsConfig::from_track(&mp3), None);
}

#[test]
fn oversized_aac_frames_are_left_out() {
    let mut t = av_tracks();
    t.video = None;
    let ts = mux_segment(
        &t,
        &[audio(0, &[0; 9000]), audio(23, &[]), audio(46, &[1; 8184])],
    );
    let u = units(&ts);
    assert_eq!(u.len(), 3);
    assert_eq!(pes(&u[2]).payload.len(), 8191);
}

#[test]
fn avcc_to_annex_b() {
    let tracks = av_tracks();
    // Parameter sets already in the keyframe: not repeated. AUDs in the sample: replaced.
    let es = video_es(
        &tracks,
        &[
            video(0, 0, true, lp(4, &[AUD, SPS, PPS, IDR])),
            video(40, 0, false, lp(4, &[AUD, SLICE, SLICE])),
        ],
    );
    assert_eq!(es[0], annex_b(&[AUD, SPS, PPS, IDR]));
    assert_eq!(es[1], annex_b(&[AUD, SLICE, SLICE]));

    // Only an SPS in the sample: the record's sets are inserted (a PPS was missing).
    let es = video_es(&tracks, &[video(0, 0, true, lp(4, &[SPS, IDR]))]);
    assert_eq!(es[0], annex_b(&[AUD, SPS, PPS, SPS, IDR]));

    // 2-byte and 1-byte NAL lengths, several SPS/PPS in the record.
    for size in [1u8, 2, 3] {
        let pps2: &[u8] = &[0x68, 0x01];
        let t = Tracks {
            video: Some(video_track(
                VideoCodec::Avc,
                avcc(size, &[SPS], &[PPS, pps2]),
            )),
            audio: None,
        };
        let es = video_es(&t, &[video(0, 0, true, lp(usize::from(size), &[IDR, IDR]))]);
        assert_eq!(
            es[0],
            annex_b(&[AUD, SPS, PPS, pps2, IDR, IDR]),
            "size {size}"
        );
    }
}

#[test]
fn hvcc_to_annex_b() {
    let vps: &[u8] = &[0x40, 0x01, 0x0c];
    let sps: &[u8] = &[0x42, 0x01, 0x01];
    let pps: &[u8] = &[0x44, 0x01, 0xc1];
    let sei: &[u8] = &[0x4e, 0x01, 0x05];
    let idr: &[u8] = &[0x26, 0x01, 0xaf];
    let trail: &[u8] = &[0x02, 0x01, 0xd0];
    let aud: &[u8] = &[0x46, 0x01, 0x50];
    // Arrays out of order, and an SEI array the muxer leaves out.
    let record = hvcc(&[(34, pps), (39, sei), (32, vps), (33, sps)]);
    let t = Tracks {
        video: Some(video_track(VideoCodec::Hevc, record)),
        audio: None,
    };
    let es = video_es(
        &t,
        &[
            video(0, 0, true, lp(4, &[sei, idr])),
            video(40, 0, false, lp(4, &[aud, trail])),
            video(80, 0, true, lp(4, &[vps, sps, pps, idr])),
        ],
    );
    assert_eq!(es[0], annex_b(&[aud, vps, sps, pps, sei, idr]));
    assert_eq!(es[1], annex_b(&[aud, trail]));
    assert_eq!(es[2], annex_b(&[aud, vps, sps, pps, idr]));
}

#[test]
fn large_access_unit_has_unbounded_length() {
    let big = vec![0x41; 70_000];
    let ts = mux_segment(&av_tracks(), &[video(0, 0, false, lp(4, &[&big]))]);
    let u = units(&ts);
    let p = pes(&u[2]);
    assert_eq!(p.packet_length, 0);
    assert_eq!(p.payload.len(), 6 + 4 + 70_000);
}

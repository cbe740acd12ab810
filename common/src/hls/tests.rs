//! Deterministic tests of the segmenter and playlists on synthetic H.264 + AAC frames.

use bytes::{BufMut, BytesMut};

use super::*;
use crate::media::{FrameKind, MediaFrame};

const AVCC: &[u8] = &[
    1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02, 0x68,
    0xee,
];
const ASC: &[u8] = &[0x12, 0x10];

fn video_header() -> MediaFrame {
    let mut p = BytesMut::from(&[0x17u8, 0, 0, 0, 0][..]);
    p.put_slice(AVCC);
    MediaFrame::new(FrameKind::Video, 0, false, true, p.freeze())
}

fn audio_header() -> MediaFrame {
    let mut p = BytesMut::from(&[0xafu8, 0][..]);
    p.put_slice(ASC);
    MediaFrame::new(FrameKind::Audio, 0, false, true, p.freeze())
}

/// A coded H.264 frame: one NAL unit whose bytes derive from the timestamp.
fn video(ts: u32, key: bool) -> MediaFrame {
    let mut p = BytesMut::from(&[if key { 0x17u8 } else { 0x27 }, 1, 0, 0, 0][..]);
    let nal: Vec<u8> = (0..40u32)
        .map(|i| (ts.wrapping_add(i) % 251) as u8)
        .collect();
    p.put_u32(nal.len() as u32 + 1);
    p.put_u8(if key { 0x65 } else { 0x41 });
    p.put_slice(&nal);
    MediaFrame::new(FrameKind::Video, ts, key, false, p.freeze())
}

fn audio(ts: u32) -> MediaFrame {
    let mut p = BytesMut::from(&[0xafu8, 1][..]);
    p.put_slice(&[0x21, 0x10, (ts % 256) as u8, 7, 7, 7]);
    MediaFrame::new(FrameKind::Audio, ts, false, false, p.freeze())
}

/// Frames of an A/V stream at 25 fps with a keyframe every `gop` frames and AAC every ~23 ms,
/// from `from_ms` to `to_ms` (the first video frame at or after `from_ms` must be a keyframe
/// for the stream to start there, as a GOP cache would deliver it).
fn stream(from_ms: u32, to_ms: u32, gop: u32) -> Vec<MediaFrame> {
    let mut out = vec![video_header(), audio_header()];
    let mut a = from_ms.div_ceil(23) * 23;
    let mut v = from_ms.div_ceil(40) * 40;
    while v < to_ms {
        while a <= v {
            out.push(audio(a));
            a += 23;
        }
        out.push(video(v, (v / 40).is_multiple_of(gop)));
        v += 40;
    }
    out
}

fn fmp4(s: &Segment) -> Vec<u8> {
    s.fmp4().flat_map(|b| b.to_vec()).collect()
}

fn config(target_ms: u32) -> HlsConfig {
    HlsConfig {
        target_ms,
        part_ms: 300,
        window_segments: 100,
        window_bytes: 1 << 30,
    }
}

fn feed(seg: &mut Segmenter, frames: &[MediaFrame]) {
    for f in frames {
        seg.push(f, 1_700_000_000_000 + u64::from(f.timestamp_ms));
    }
}

fn cut(from_ms: u32, to_ms: u32, gop: u32, target_ms: u32) -> Segmenter {
    let mut seg = Segmenter::new(config(target_ms));
    feed(&mut seg, &stream(from_ms, to_ms, gop));
    seg
}

fn names(seg: &Segmenter) -> Vec<(u64, String, u32)> {
    seg.segments()
        .iter()
        .map(|s| (s.msn, s.name.clone(), s.duration_ms))
        .collect()
}

#[test]
fn segments_start_at_the_first_keyframe_of_each_window() {
    let seg = cut(0, 10_000, 25, 2000);
    assert_eq!(
        names(&seg),
        vec![
            (0, "0_0".to_string(), 2000),
            (1, "1".into(), 2000),
            (2, "2".into(), 2000),
            (3, "3".into(), 2000),
        ]
    );
    // The open segment is the fifth window's.
    assert_eq!(seg.open().map(|o| o.msn), Some(4));
}

#[test]
fn nodes_that_join_at_different_moments_cut_the_same_segments() {
    let a = cut(0, 14_000, 25, 2000);
    // B joins at the keyframe at 3 s (mid-segment): its first segment is its own.
    let b = cut(3000, 14_000, 25, 2000);
    assert_eq!(b.segments()[0].name, "1_3000");
    let common: Vec<_> = b.segments().iter().skip(1).collect();
    assert!(common.len() >= 4);
    for s in common {
        let t = a.segment(&s.name).expect("A has B's segment");
        assert_eq!(
            (t.msn, t.start_ms, t.duration_ms),
            (s.msn, s.start_ms, s.duration_ms)
        );
        assert_eq!(fmp4(&t), fmp4(s), "fMP4 of {}", s.name);
        assert_eq!(t.ts(), s.ts(), "TS of {}", s.name);
        let (tp, sp): (Vec<_>, Vec<_>) = (
            t.parts
                .iter()
                .map(|p| (p.duration_ms, p.data.clone()))
                .collect(),
            s.parts
                .iter()
                .map(|p| (p.duration_ms, p.data.clone()))
                .collect(),
        );
        assert_eq!(tp, sp, "parts of {}", s.name);
    }
    assert_eq!(a.init().map(|i| &i.name), b.init().map(|i| &i.name));
}

#[test]
fn a_gop_longer_than_the_target_makes_longer_segments_numbered_without_gaps() {
    let seg = cut(0, 16_000, 75, 2000);
    let got = names(&seg);
    assert_eq!(got.len(), 5, "{got:?}");
    for (i, (msn, _, d)) in got.iter().enumerate() {
        assert_eq!(*msn, i as u64);
        assert_eq!(*d, 3000);
    }
}

#[test]
fn parts_stay_within_the_part_target_and_make_up_the_segment() {
    let seg = cut(0, 8000, 25, 2000);
    for s in seg.segments() {
        assert!(s.parts.first().is_some_and(|p| p.independent));
        assert!(
            s.parts.iter().all(|p| p.duration_ms <= 300),
            "{:?}",
            s.parts
        );
        let sum: u32 = s.parts.iter().map(|p| p.duration_ms).sum();
        assert_eq!(sum, s.duration_ms);
        let concat: Vec<u8> = s.parts.iter().flat_map(|p| p.data.to_vec()).collect();
        assert_eq!(concat, fmp4(s));
        assert_eq!(concat.len(), s.fmp4_len());
        // The part holding the mid-segment keyframe (at 1 s) is independent too.
        let independent = s.parts.iter().filter(|p| p.independent).count();
        assert_eq!(independent, 2, "{}", s.name);
    }
    assert_eq!(seg.part_target_ms(), 300);
}

#[test]
fn a_new_session_continues_the_numbering_after_a_discontinuity() {
    let mut seg = cut(0, 5000, 25, 2000);
    let before = seg.open().map(|o| o.msn).expect("open");
    seg.new_session();
    // The new publisher starts again at timestamp 0.
    feed(&mut seg, &stream(0, 6000, 25));
    let after: Vec<_> = seg.segments().iter().filter(|s| s.msn >= before).collect();
    assert!(after.len() >= 3);
    assert!(
        after
            .windows(2)
            .all(|w| w[1].msn == w[0].msn + 1 && w[1].start_ms > w[0].start_ms)
    );
    let first_new = after
        .iter()
        .find(|s| s.discontinuity)
        .expect("discontinuity");
    assert_eq!(first_new.msn, before + 1);
    assert_eq!(after.iter().filter(|s| s.discontinuity).count(), 1);
}

#[test]
fn headers_resent_mid_stream_mark_a_discontinuity_but_duplicates_before_media_do_not() {
    let mut seg = Segmenter::new(config(2000));
    // Priming sends the headers; a duplicate before any media changes nothing.
    feed(&mut seg, &[video_header(), audio_header(), video_header()]);
    feed(&mut seg, &stream(0, 3000, 25)[2..]);
    // An edge re-pulling from a new origin re-sends them, timestamps continuing.
    feed(&mut seg, &stream(3000, 7000, 25));
    let d: Vec<_> = seg
        .segments()
        .iter()
        .map(|s| (s.msn, s.discontinuity))
        .collect();
    assert_eq!(d[0], (0, false));
    assert!(d.contains(&(2, true)), "{d:?}");
    assert_eq!(d.iter().filter(|x| x.1).count(), 1, "{d:?}");
}

#[test]
fn audio_only_and_video_only_streams_are_packaged() {
    let mut audio_only = Segmenter::new(config(2000));
    let mut frames = vec![audio_header()];
    frames.extend((0..300).map(|i| audio(i * 23)));
    feed(&mut audio_only, &frames);
    let got = names(&audio_only);
    assert!(got.len() >= 2, "{got:?}");
    assert!(audio_only.init().is_some_and(|i| i.codecs == "mp4a.40.2"));
    assert!(!audio_only.segments()[1].ts().is_empty());

    let mut video_only = Segmenter::new(config(2000));
    let frames: Vec<_> = stream(0, 7000, 25)
        .into_iter()
        .filter(|f| f.is_video())
        .collect();
    feed(&mut video_only, &frames);
    assert_eq!(names(&video_only).len(), 3);
    assert!(
        video_only
            .init()
            .is_some_and(|i| i.codecs.starts_with("avc1.64001f"))
    );
}

#[test]
fn the_window_is_bounded_by_segments_and_bytes() {
    let mut seg = Segmenter::new(HlsConfig {
        window_segments: 3,
        ..config(1000)
    });
    feed(&mut seg, &stream(0, 20_000, 25));
    assert_eq!(seg.segments().len(), 3);
    assert_eq!(seg.segments()[0].msn, 16);
    // The MPEG-TS form counts once muxed; the samples kept for it share the parts' bytes.
    let one = seg.bytes();
    let ts: usize = seg.segments().iter().map(|s| s.ts().len()).sum();
    assert_eq!(seg.bytes(), one + ts);
    // A byte bound below the window's size drops the oldest segments (when one completes:
    // the open segment's parts come on top).
    let mut small = Segmenter::new(HlsConfig {
        window_bytes: one / 2,
        ..config(1000)
    });
    feed(&mut small, &stream(0, 20_000, 25));
    let open: usize = small
        .open()
        .map_or(0, |o| o.parts.iter().map(|p| p.data.len()).sum());
    let complete = small.bytes() - open;
    assert!(complete <= one / 2, "{complete} > {}", one / 2);
    assert!(small.segments().len() < 3);
    assert!(!small.segments().is_empty());
}

#[test]
fn blocking_requests_know_what_exists_and_what_is_too_far() {
    let seg = cut(0, 5100, 25, 2000);
    // Segments 0 and 1 are complete; 2 is open with some parts.
    let open = seg.open().expect("open");
    assert_eq!(open.msn, 2);
    let parts = open.parts.len() as u64;
    assert!(parts >= 2);
    assert_eq!(seg.availability(1, None), Availability::Ready);
    assert_eq!(seg.availability(1, Some(40)), Availability::Ready);
    assert_eq!(seg.availability(2, Some(parts - 1)), Availability::Ready);
    assert_eq!(seg.availability(2, Some(parts)), Availability::Pending);
    assert_eq!(seg.availability(2, None), Availability::Pending);
    assert_eq!(seg.availability(3, Some(0)), Availability::Pending);
    assert_eq!(seg.availability(4, None), Availability::TooFar);
    assert!(seg.part_pending(open.name, parts as usize));
    assert!(!seg.part_pending(open.name, parts as usize + 1));
}

#[test]
fn ll_playlist_has_parts_a_preload_hint_and_skips_old_segments_on_request() {
    let seg = cut(0, 20_400, 25, 1000);
    let full = render(
        &seg,
        &Render {
            container: Container::Fmp4,
            skip: false,
            base: "s/",
            query: "?t=1",
        },
    )
    .expect("playlist");
    assert!(full.starts_with("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n"));
    assert!(full.contains(
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.900,CAN-SKIP-UNTIL=6\n"
    ));
    assert!(full.contains("#EXT-X-PART-INF:PART-TARGET=0.300\n"));
    assert!(full.contains("#EXT-X-MAP:URI=\"s/init-"));
    assert!(full.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    assert!(full.contains("#EXTINF:1.000,\ns/1.m4s?t=1\n"), "{full}");
    assert!(full.contains("#EXT-X-PART:DURATION=0.280,URI=\"s/20.0.m4s?t=1\",INDEPENDENT=YES\n"));
    assert!(
        full.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s/20.1.m4s?t=1\"\n"),
        "{full}"
    );
    // Parts are listed only near the end.
    assert!(!full.contains("URI=\"s/2.0.m4s"));
    assert!(
        full.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n"),
        "{full}"
    );

    let delta = render(
        &seg,
        &Render {
            container: Container::Fmp4,
            skip: true,
            base: "s/",
            query: "",
        },
    )
    .expect("delta");
    // 20 complete 1 s segments; those ending 6 s or more before the end are skipped.
    assert!(
        delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=14\n"),
        "{delta}"
    );
    assert!(delta.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    assert!(!delta.contains("s/13.m4s\n") && delta.contains("s/14.m4s\n"));

    let ts = render(
        &seg,
        &Render {
            container: Container::Ts,
            skip: true,
            base: "",
            query: "",
        },
    )
    .expect("ts");
    assert!(
        ts.contains("#EXT-X-VERSION:3\n") && ts.contains("\n0_0.ts\n") && ts.contains("\n19.ts\n")
    );
    for tag in [
        "#EXT-X-PART",
        "#EXT-X-MAP",
        "#EXT-X-SKIP",
        "#EXT-X-PRELOAD-HINT",
        "SERVER-CONTROL",
    ] {
        assert!(!ts.contains(tag), "{tag} in TS playlist");
    }
}

#[test]
fn nothing_to_list_before_the_first_part() {
    let mut seg = Segmenter::new(config(2000));
    feed(&mut seg, &[video_header(), audio_header(), video(0, true)]);
    let r = Render {
        container: Container::Fmp4,
        skip: false,
        base: "",
        query: "",
    };
    assert!(render(&seg, &r).is_none());
    // Frames before the first keyframe are not packaged.
    let mut late = Segmenter::new(config(2000));
    feed(
        &mut late,
        &[video_header(), video(40, false), video(80, false)],
    );
    assert!(late.open().is_none());
}

#[test]
fn timestamps_that_wrap_keep_the_timeline_increasing() {
    let start = u32::MAX - 3000;
    let mut seg = Segmenter::new(config(2000));
    let mut frames = vec![video_header(), audio_header()];
    let mut t = start;
    for i in 0..200u32 {
        frames.push(video(t, i.is_multiple_of(25)));
        t = t.wrapping_add(40);
    }
    feed(&mut seg, &frames);
    let s: Vec<_> = seg.segments().iter().collect();
    assert!(s.len() >= 3);
    assert!(
        s.windows(2)
            .all(|w| w[1].msn == w[0].msn + 1 && w[1].start_ms > w[0].start_ms)
    );
    assert!(s.last().is_some_and(|l| l.start_ms > u64::from(u32::MAX)));
}

#[test]
fn dates_are_rfc3339_utc() {
    assert_eq!(playlist::date(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(playlist::date(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(playlist::date(1796123751500), "2026-12-01T11:15:51.500Z");
}

#[test]
fn a_publisher_clock_jump_is_a_discontinuity_not_a_week_long_part() {
    let mut seg = cut(0, 5000, 25, 2000);
    // The publisher's clock jumps ~2^31 ms ahead, then goes on normally.
    let jump = 1u32 << 31;
    let frames: Vec<_> = stream(0, 5000, 25)
        .into_iter()
        .map(|f| f.with_timestamp(f.timestamp_ms.wrapping_add(jump)))
        .collect();
    feed(&mut seg, &frames);
    let all: Vec<_> = seg.segments().iter().collect();
    assert!(
        all.iter().all(|s| s.duration_ms <= 2100),
        "{:?}",
        names(&seg)
    );
    assert!(all.windows(2).all(|w| w[1].msn == w[0].msn + 1));
    assert_eq!(all.iter().filter(|s| s.discontinuity).count(), 1);
    assert_eq!(seg.part_target_ms(), 300);
}

#[test]
fn a_primed_first_segment_completes_at_once_and_the_next_window_is_aligned() {
    let full = cut(0, 12_000, 25, 2000);
    let mut cold = Segmenter::new(config(2000));
    // Joins at the keyframe at 3 s; its GOP cache (to 3.5 s) arrives at once.
    let frames = stream(3000, 12_000, 25);
    let burst = frames.iter().take_while(|f| f.timestamp_ms < 3500).count();
    feed(&mut cold, &frames[..burst]);
    assert!(cold.primed());
    feed(&mut cold, &frames[burst..burst + 3]);
    let first = cold
        .segments()
        .front()
        .cloned()
        .expect("a complete segment at once");
    assert_eq!((first.msn, first.start_ms), (0, 3000));
    assert_eq!(first.name, "0_3000");
    feed(&mut cold, &frames[burst + 3..]);
    let got = names(&cold);
    // The rest of window 1 (mid-GOP), then window 2 onwards as every node cuts them.
    assert_eq!(got[1].0, 1);
    assert!(got[1].1.starts_with("1_"), "{got:?}");
    assert!(!cold.segments()[1].parts[0].independent);
    for s in cold.segments().iter().skip(2) {
        let t = full.segment(&s.name).expect("aligned with a full node");
        assert_eq!((t.msn, fmp4(&t)), (s.msn, fmp4(s)));
    }
    assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1));
}

#[test]
fn a_playlist_changes_only_with_the_generation() {
    let mut seg = Segmenter::new(config(2000));
    let render_all = |seg: &Segmenter| {
        [Container::Fmp4, Container::Ts].map(|container| {
            render(
                seg,
                &Render {
                    container,
                    skip: false,
                    base: "",
                    query: "",
                },
            )
        })
    };
    let mut last = (seg.generation(), render_all(&seg));
    let mut check = |seg: &Segmenter| {
        let now = (seg.generation(), render_all(seg));
        if now.0 == last.0 {
            assert_eq!(
                now.1, last.1,
                "generation {} rendered twice differently",
                now.0
            );
        }
        last = now;
    };
    let mut frames = stream(0, 9000, 25);
    // Headers again mid-stream (a new encoder session), then a new session with a jump.
    frames.insert(120, video_header());
    frames.insert(121, audio_header());
    for (i, f) in frames.iter().enumerate() {
        if i == 200 {
            seg.new_session();
            check(&seg);
        }
        seg.push(f, 1_700_000_000_000 + u64::from(f.timestamp_ms));
        check(&seg);
    }
    seg.end();
    check(&seg);
}

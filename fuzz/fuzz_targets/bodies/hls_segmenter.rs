//! cargo-fuzz target for the HLS segmenter: arbitrary bytes become a sequence of MediaFrames
//! (sequence headers of plausible AVC/HEVC/AV1/AAC shapes, coded frames, metadata, raw tags,
//! wrapping and jumping timestamps) pushed through `hls::Segmenter`, with new sessions and
//! ends in between. After every step both playlists render, the newest complete segment muxes
//! as MPEG-TS, and nothing panics. Must not touch the network or filesystem.

use crate::media_input::{AV1C, AVCC, Cursor, HVCC};
use bytes::{BufMut, Bytes, BytesMut};
use common::flv::frame_from_message;
use common::hls::{Container, HlsConfig, Render, Segmenter, render};
use common::media::{FrameKind, MediaFrame};

/// At most this many steps per input, so every run stays fast.
const MAX_STEPS: usize = 400;

fn video_header(c: &mut Cursor<'_>) -> Bytes {
    let mut b = BytesMut::new();
    match c.u8() % 4 {
        0 => {
            b.put_slice(&[0x17, 0, 0, 0, 0]);
            b.put_slice(&c.record(AVCC));
        }
        1 => {
            b.put_slice(&[0x90]);
            b.put_slice(b"hvc1");
            b.put_slice(&c.record(HVCC));
        }
        2 => {
            b.put_slice(&[0x1c, 0, 0, 0, 0]);
            b.put_slice(&c.record(HVCC));
        }
        _ => {
            b.put_slice(&[0x90]);
            b.put_slice(b"av01");
            b.put_slice(&c.record(AV1C));
        }
    }
    b.freeze()
}

fn video_frame(c: &mut Cursor<'_>, key: bool) -> Bytes {
    let mut b = BytesMut::new();
    let cts = c.u32().to_be_bytes();
    match c.u8() % 5 {
        0 => {
            b.put_u8(if key { 0x17 } else { 0x27 });
            b.put_u8(1);
            b.put_slice(&cts[1..]);
        }
        1 => {
            b.put_u8(if key { 0x91 } else { 0xa1 });
            b.put_slice(b"hvc1");
            b.put_slice(&cts[1..]);
        }
        2 => {
            b.put_u8(if key { 0x93 } else { 0xa3 });
            b.put_slice(b"hvc1");
        }
        3 => {
            b.put_u8(if key { 0x1c } else { 0x2c });
            b.put_u8(1);
            b.put_slice(&cts[1..]);
        }
        _ => {
            b.put_u8(if key { 0x91 } else { 0xa1 });
            b.put_slice(b"av01");
        }
    }
    b.put_slice(&c.nal_units());
    b.freeze()
}

fn audio_header(c: &mut Cursor<'_>) -> Bytes {
    let mut b = BytesMut::new();
    b.put_slice(&[0xaf, 0]);
    b.put_slice(&c.asc());
    b.freeze()
}

fn audio_frame(c: &mut Cursor<'_>) -> Bytes {
    let mut b = BytesMut::new();
    b.put_slice(&[0xaf, 1]);
    b.put_slice(c.bytes(64));
    b.freeze()
}

/// The next frame: mostly as an RTMP message would arrive (flags from the tag header), now
/// and then with arbitrary flags.
fn frame(c: &mut Cursor<'_>, op: u8, timestamp: u32) -> Option<MediaFrame> {
    let (type_id, payload) = match op % 8 {
        0 => (9, video_header(c)),
        1 | 2 => (9, video_frame(c, true)),
        3 => (9, video_frame(c, false)),
        4 => (8, audio_header(c)),
        5 => (8, audio_frame(c)),
        6 => (18, Bytes::copy_from_slice(c.bytes(16))),
        _ => {
            let t = [8, 9, 18][usize::from(c.u8() % 3)];
            (t, Bytes::copy_from_slice(c.bytes(64)))
        }
    };
    if op & 0x80 != 0 {
        let kind = match type_id {
            8 => FrameKind::Audio,
            9 => FrameKind::Video,
            _ => FrameKind::Data,
        };
        let flags = c.u8();
        return Some(MediaFrame::new(
            kind,
            timestamp,
            flags & 1 != 0,
            flags & 2 != 0,
            payload,
        ));
    }
    frame_from_message(type_id, timestamp, payload)
}

fn check(seg: &Segmenter, query: &str) {
    // Listed segments: strictly increasing sequence numbers, the open one after them.
    let segments = seg.segments();
    for w in segments.iter().zip(segments.iter().skip(1)) {
        assert!(w.0.msn < w.1.msn, "msn {} then {}", w.0.msn, w.1.msn);
    }
    if let (Some(last), Some(open)) = (segments.back(), seg.open()) {
        assert!(open.msn > last.msn, "open {} after {}", open.msn, last.msn);
    }
    for (container, skip) in [
        (Container::Fmp4, false),
        (Container::Fmp4, true),
        (Container::Ts, false),
    ] {
        let r = Render {
            container,
            skip,
            base: "s/",
            query,
        };
        if let Some(text) = render(seg, &r) {
            assert!(text.starts_with("#EXTM3U\n"), "{text}");
            // The playlist's own numbering agrees with the window.
            let first = text
                .lines()
                .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
                .and_then(|n| n.parse::<u64>().ok())
                .expect("media sequence");
            if let Some(s) = segments.front() {
                assert_eq!(first, s.msn);
            }
            let listed = text.lines().filter(|l| l.starts_with("#EXTINF:")).count();
            let skipped = text
                .lines()
                .find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            assert_eq!(listed + skipped, segments.len(), "{text}");
        }
    }
    if let Some(s) = segments.back() {
        let ts = s.ts();
        assert_eq!(ts.len() % 188, 0);
        assert!(ts.chunks(188).all(|p| p[0] == 0x47));
        let _ = seg.segment(&s.name);
        let _ = seg.part(&s.name, 0);
        let _ = seg.availability(s.msn + 1, Some(0));
    }
}

/// The target: any input must pass without a panic.
pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let cfg = c.u8();
    let config = HlsConfig {
        target_ms: [1, 40, 1000, 2000][usize::from(cfg & 3)],
        part_ms: [1, 33, 300, 5000][usize::from((cfg >> 2) & 3)],
        window_segments: usize::from((cfg >> 4) & 3) + 1,
        window_bytes: if cfg & 0x40 != 0 { 2048 } else { 1 << 20 },
    };
    let query = if cfg & 0x80 != 0 { "?t=1" } else { "" };
    let mut seg = Segmenter::new(config);
    let mut ts: u32 = c.u32();
    let mut wall: u64 = 1_700_000_000_000;
    for _ in 0..MAX_STEPS {
        if c.is_empty() {
            break;
        }
        let op = c.u8();
        // Time moves by a small step most of the time; sometimes it jumps, wraps or goes back.
        let step = c.u8();
        ts = match step >> 6 {
            0 | 1 => ts.wrapping_add(u32::from(step & 0x3f) * 10),
            2 => ts.wrapping_sub(u32::from(step & 0x3f)),
            _ => c.u32(),
        };
        wall = wall.wrapping_add(u64::from(step));
        match op % 32 {
            30 => seg.new_session(),
            31 => seg.end(),
            _ => {
                if let Some(f) = frame(&mut c, op, ts) {
                    seg.push(&f, wall);
                }
            }
        }
        check(&seg, query);
    }
    seg.end();
    check(&seg, query);
}

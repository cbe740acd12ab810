//! A lean fragmented-MP4 scanner for LL-HLS load-generating clients: learns the video track
//! from the init segment (`moov`: `tkhd` track id, `hdlr` type `vide`), then walks each
//! `moof` (`tfhd`, `trun` sample sizes and flags) and streams through the `mdat`, keeping the
//! first bytes of each video sample to read the send instant the synthetic stream stamps in
//! it. One frame is reported per video sample, when its last byte arrived. Sans-IO.

use std::collections::VecDeque;

use crate::stream::{find_stamp, is_idr};
use crate::ts_scan::Frame;

/// Bytes kept of each video sample.
const KEEP: usize = 32;
/// Largest `moof`/`moov` buffered.
const MAX_META: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mp4Error {
    BadBoxSize,
    MetaTooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A box header (8 bytes, or 16 with a 64-bit size) in `head`.
    Header,
    /// Buffering a `moof` or `moov` (whose header started at `start`) into `meta`.
    Meta { moof: bool, start: u64, end: u64 },
    /// In an `mdat` that ends at `end`.
    Mdat { end: u64 },
    /// Skipping a box up to `end`.
    Skip { end: u64 },
}

#[derive(Debug)]
struct Sample {
    start: u64,
    size: u64,
    keyframe: bool,
    kept: usize,
    prefix: [u8; KEEP],
}

/// Incremental scanner; [`Mp4Scanner::finish`] at the end of each response.
#[derive(Debug)]
pub struct Mp4Scanner {
    video_track: Option<u32>,
    /// Offset in the current response body.
    pos: u64,
    state: State,
    head: [u8; 16],
    head_len: usize,
    meta: Vec<u8>,
    samples: VecDeque<Sample>,
    pub fragments: u64,
}

impl Default for Mp4Scanner {
    fn default() -> Self {
        Self::new()
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The child boxes of a box body: (type, body).
fn children(mut b: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size = be32(b, 0)? as usize;
        let kind: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        let (hdr, size) = match size {
            1 => (16, usize::try_from(be64(b, 8)?).ok()?),
            0 => (8, b.len()),
            n => (8, n),
        };
        if size < hdr || size > b.len() {
            return None;
        }
        let body = &b[hdr..size];
        b = &b[size..];
        Some((kind, body))
    })
}

impl Mp4Scanner {
    pub fn new() -> Self {
        Mp4Scanner {
            video_track: None,
            pos: 0,
            state: State::Header,
            head: [0; 16],
            head_len: 0,
            meta: Vec::new(),
            samples: VecDeque::new(),
            fragments: 0,
        }
    }

    /// The video track id learned from an init segment.
    pub fn video_track(&self) -> Option<u32> {
        self.video_track
    }

    /// The end of one response: the next one starts with a box header.
    pub fn finish(&mut self) {
        self.pos = 0;
        self.state = State::Header;
        self.head_len = 0;
        self.meta.clear();
        self.samples.clear();
    }

    /// Takes bytes received at `at`; `on_frame` gets each video sample once complete.
    pub fn feed<T: Copy>(
        &mut self,
        mut data: &[u8],
        at: T,
        on_frame: &mut impl FnMut(Frame, T),
    ) -> Result<(), Mp4Error> {
        while !data.is_empty() {
            match self.state {
                State::Header => {
                    let want = if self.head_len >= 8 && be32(&self.head, 0) == Some(1) {
                        16
                    } else {
                        8
                    };
                    let k = (want - self.head_len).min(data.len());
                    self.head[self.head_len..self.head_len + k].copy_from_slice(&data[..k]);
                    self.head_len += k;
                    self.advance(&mut data, k);
                    if self.head_len < 8 || (self.head_len < 16 && be32(&self.head, 0) == Some(1)) {
                        continue;
                    }
                    let start = self.pos - self.head_len as u64;
                    let size = match be32(&self.head, 0).unwrap_or(0) {
                        0 => u64::MAX - start,
                        1 => be64(&self.head, 8).unwrap_or(0),
                        n => u64::from(n),
                    };
                    if size < self.head_len as u64 {
                        return Err(Mp4Error::BadBoxSize);
                    }
                    let end = start.saturating_add(size);
                    let kind = [self.head[4], self.head[5], self.head[6], self.head[7]];
                    self.head_len = 0;
                    self.state = match &kind {
                        b"moof" | b"moov" => {
                            if size > MAX_META {
                                return Err(Mp4Error::MetaTooLarge);
                            }
                            self.meta.clear();
                            State::Meta {
                                moof: &kind == b"moof",
                                start,
                                end,
                            }
                        }
                        b"mdat" => State::Mdat { end },
                        _ => State::Skip { end },
                    };
                    if self.pos == end {
                        // An empty box.
                        self.state = State::Header;
                    }
                }
                State::Meta { moof, start, end } => {
                    let k = ((end - self.pos) as usize).min(data.len());
                    self.meta.extend_from_slice(&data[..k]);
                    self.advance(&mut data, k);
                    if self.pos == end {
                        let meta = std::mem::take(&mut self.meta);
                        if moof {
                            self.moof(&meta, start);
                        } else {
                            self.moov(&meta);
                        }
                        self.meta = meta;
                        self.state = State::Header;
                    }
                }
                State::Mdat { end } => {
                    let k = ((end - self.pos).min(data.len() as u64)) as usize;
                    self.mdat(&data[..k], at, on_frame);
                    self.advance(&mut data, k);
                    if self.pos == end {
                        self.samples.clear();
                        self.state = State::Header;
                    }
                }
                State::Skip { end } => {
                    let k = ((end - self.pos).min(data.len() as u64)) as usize;
                    self.advance(&mut data, k);
                    if self.pos == end {
                        self.state = State::Header;
                    }
                }
            }
        }
        Ok(())
    }

    fn advance(&mut self, data: &mut &[u8], k: usize) {
        *data = &data[k..];
        self.pos += k as u64;
    }

    fn moov(&mut self, moov: &[u8]) {
        for (kind, trak) in children(moov) {
            if &kind != b"trak" {
                continue;
            }
            let mut id = None;
            let mut video = false;
            for (kind, body) in children(trak) {
                match &kind {
                    b"tkhd" => {
                        let at = if body.first() == Some(&1) { 20 } else { 12 };
                        id = be32(body, at);
                    }
                    b"mdia" => {
                        for (kind, body) in children(body) {
                            if &kind == b"hdlr" && body.get(8..12) == Some(b"vide") {
                                video = true;
                            }
                        }
                    }
                    _ => {}
                }
            }
            if video && id.is_some() {
                self.video_track = id;
            }
        }
    }

    fn moof(&mut self, moof: &[u8], moof_start: u64) {
        self.fragments += 1;
        self.samples.clear();
        let video = self.video_track.unwrap_or(1);
        for (kind, traf) in children(moof) {
            if &kind != b"traf" {
                continue;
            }
            let mut track = None;
            let mut base = moof_start;
            let mut default_size = 0u64;
            let mut default_flags = 0u32;
            for (kind, b) in children(traf) {
                match &kind {
                    b"tfhd" => {
                        let flags = be32(b, 0).unwrap_or(0) & 0xff_ffff;
                        track = be32(b, 4);
                        let mut at = 8;
                        if flags & 0x1 != 0 {
                            base = be64(b, at).unwrap_or(base);
                            at += 8;
                        }
                        if flags & 0x2 != 0 {
                            at += 4;
                        }
                        if flags & 0x8 != 0 {
                            at += 4;
                        }
                        if flags & 0x10 != 0 {
                            default_size = u64::from(be32(b, at).unwrap_or(0));
                            at += 4;
                        }
                        if flags & 0x20 != 0 {
                            default_flags = be32(b, at).unwrap_or(0);
                        }
                    }
                    b"trun" if track == Some(video) => {
                        self.trun(b, base, default_size, default_flags);
                    }
                    _ => {}
                }
            }
        }
        self.samples.make_contiguous().sort_by_key(|s| s.start);
    }

    fn trun(&mut self, b: &[u8], base: u64, default_size: u64, default_flags: u32) {
        let flags = be32(b, 0).unwrap_or(0) & 0xff_ffff;
        let count = be32(b, 4).unwrap_or(0);
        let mut at = 8;
        let mut offset = base;
        if flags & 0x1 != 0 {
            let d = be32(b, at).unwrap_or(0) as i32;
            offset = base.saturating_add_signed(i64::from(d));
            at += 4;
        }
        let mut first_flags = None;
        if flags & 0x4 != 0 {
            first_flags = be32(b, at);
            at += 4;
        }
        for i in 0..count {
            if flags & 0x100 != 0 {
                at += 4;
            }
            let mut size = default_size;
            if flags & 0x200 != 0 {
                let Some(s) = be32(b, at) else { return };
                size = u64::from(s);
                at += 4;
            }
            let mut sflags = if i == 0 {
                first_flags.unwrap_or(default_flags)
            } else {
                default_flags
            };
            if flags & 0x400 != 0 {
                sflags = be32(b, at).unwrap_or(0);
                at += 4;
            }
            if flags & 0x800 != 0 {
                at += 4;
            }
            // sample_is_non_sync_sample.
            let keyframe = sflags & 0x1_0000 == 0;
            if size > 0 {
                self.samples.push_back(Sample {
                    start: offset,
                    size,
                    keyframe,
                    kept: 0,
                    prefix: [0; KEEP],
                });
            }
            offset = offset.saturating_add(size);
        }
    }

    /// `chunk` of an mdat, starting at `self.pos`.
    fn mdat<T: Copy>(&mut self, chunk: &[u8], at: T, on_frame: &mut impl FnMut(Frame, T)) {
        let (from, to) = (self.pos, self.pos + chunk.len() as u64);
        while let Some(s) = self.samples.front_mut() {
            if s.start >= to {
                break;
            }
            let keep_end = s.start + s.size.min(KEEP as u64);
            let have = s.start + s.kept as u64;
            if have < keep_end && have >= from {
                let end = keep_end.min(to);
                let src = &chunk[(have - from) as usize..(end - from) as usize];
                s.prefix[s.kept..s.kept + src.len()].copy_from_slice(src);
                s.kept += src.len();
            }
            if s.start + s.size > to {
                break;
            }
            let frame = match find_stamp(&s.prefix[..s.kept]) {
                Some((stamp, nal)) => Frame {
                    keyframe: is_idr(nal),
                    stamp: Some(stamp),
                },
                None => Frame {
                    keyframe: s.keyframe,
                    stamp: None,
                },
            };
            on_frame(frame, at);
            self.samples.pop_front();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ts_scan::tests::segmenter;

    #[test]
    fn finds_video_samples_in_parts_and_segments_on_any_split() {
        let (seg, sent) = segmenter(7, 25);
        let init = seg.init().unwrap().data.clone();
        let s = &seg.segments()[1];
        let first = (s.start_ms / 40) as usize;
        let n = (s.duration_ms / 40) as usize;
        let want: Vec<_> = sent[first..first + n]
            .iter()
            .map(|&(st, k)| (Some(st), k))
            .collect();
        assert!(s.parts.len() > 3);
        for step in [1usize, 5, 100, 4096, 1 << 20] {
            let mut sc = Mp4Scanner::new();
            let mut got = Vec::new();
            let mut on = |f: Frame, _: ()| got.push((f.stamp, f.keyframe));
            for c in init.chunks(step) {
                sc.feed(c, (), &mut on).unwrap();
            }
            sc.finish();
            // The whole segment, then each of its parts as its own response.
            let whole: Vec<u8> = s.fmp4().flat_map(|b| b.iter().copied()).collect();
            for c in whole.chunks(step) {
                sc.feed(c, (), &mut on).unwrap();
            }
            sc.finish();
            for p in &s.parts {
                for c in p.data.chunks(step) {
                    sc.feed(c, (), &mut on).unwrap();
                }
                sc.finish();
            }
            assert_eq!(sc.video_track(), Some(1));
            let mut twice = want.clone();
            twice.extend_from_slice(&want);
            assert_eq!(got, twice, "step {step}");
        }
        let mut sc = Mp4Scanner::new();
        let bad = [0, 0, 0, 4, b'f', b'r', b'e', b'e'];
        assert_eq!(
            sc.feed(&bad, (), &mut |_, _: ()| {}),
            Err(Mp4Error::BadBoxSize)
        );
    }
}

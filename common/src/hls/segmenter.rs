//! The segmenter: cuts a stream's frames into HLS segments and LL-HLS parts and keeps a bounded
//! window of them, muxed (fMP4 parts at once, MPEG-TS segments on first request). A segment's
//! fMP4 bytes exist once, as its parts; the samples kept for the MPEG-TS form are slices of
//! them, so the frames they were cut from are freed as soon as a part is muxed. Where
//! segments begin, their numbers and names are a pure function of the stream's timeline, so
//! every node pulling the same stream cuts the same segments. Must not do I/O or read clocks:
//! wall time comes in with each frame (it only dates segments).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::track::{AudioTrack, Sample, TrackKind, Tracks, VideoTrack};
use crate::media::{FrameKind, MediaFrame};

/// Segment and part sizes and the window's bounds.
#[derive(Debug, Clone)]
pub struct HlsConfig {
    /// Target segment duration; a segment starts at the first keyframe of each window of this
    /// length (a longer GOP makes a longer segment).
    pub target_ms: u32,
    /// LL-HLS part duration.
    pub part_ms: u32,
    /// Complete segments kept (and listed).
    pub window_segments: usize,
    /// Bytes kept per stream: fMP4 parts (which are the fMP4 segments) and MPEG-TS segments
    /// once muxed. The oldest segments go first when it is exceeded.
    pub window_bytes: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            target_ms: 2000,
            part_ms: 300,
            window_segments: 10,
            window_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One LL-HLS part: a CMAF fragment.
#[derive(Debug)]
pub struct Part {
    pub duration_ms: u32,
    /// Starts with a keyframe (or is audio only).
    pub independent: bool,
    pub data: Bytes,
}

/// A complete segment.
#[derive(Debug)]
pub struct Segment {
    pub msn: u64,
    /// The URI stem: the media sequence number, plus `_<start>` for the first segment this
    /// node cut (it may have joined the stream mid-segment: a different name keeps caches from
    /// mixing it up with the full segment another node cut).
    pub name: String,
    pub start_ms: u64,
    pub duration_ms: u32,
    /// Follows a change of encoder session, codec parameters or timeline.
    pub discontinuity: bool,
    /// Wall-clock time of the first sample, ms since the Unix epoch (EXT-X-PROGRAM-DATE-TIME).
    pub date_ms: u64,
    /// The fMP4 initialization segment this segment needs.
    pub init: Arc<Init>,
    /// Its parts: back to back, they are the segment as fMP4. Listed in the LL-HLS playlist
    /// while the segment is recent (see `playlist`), kept as long as the segment.
    pub parts: Vec<Arc<Part>>,
    /// The samples, for the MPEG-TS form: slices of the parts' bytes (see `unshared`).
    samples: Vec<Sample>,
    /// Bytes of samples that are not slices of the parts (tracks fMP4 does not package).
    unshared: usize,
    ts: OnceLock<Bytes>,
    /// Where the MPEG-TS form is kept once muxed (see `Segmenter::set_store`).
    store: Option<Store>,
}

/// Moves a muxed buffer to where it will be served from (e.g. a memfd that `sendfile` can
/// send without a copy); the bytes must stay the same.
pub type Store = fn(Bytes) -> Bytes;

impl Segment {
    /// The segment as MPEG-TS, muxed on first request and then shared.
    pub fn ts(&self) -> &Bytes {
        self.ts.get_or_init(|| {
            let ts = crate::ts::mux_segment(&self.init.tracks, &self.samples);
            match self.store {
                Some(store) => store(ts),
                None => ts,
            }
        })
    }

    /// The segment as fMP4: its parts' bytes, in order (shared, not copied).
    pub fn fmp4(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter().map(|p| &p.data)
    }

    /// Length of the segment as fMP4.
    pub fn fmp4_len(&self) -> usize {
        self.parts.iter().map(|p| p.data.len()).sum()
    }

    /// Bytes the segment holds: its parts, the MPEG-TS form once muxed, unshared samples.
    fn bytes(&self) -> usize {
        self.fmp4_len() + self.ts.get().map_or(0, Bytes::len) + self.unshared
    }
}

/// An fMP4 initialization segment, named by a hash of the tracks it describes.
#[derive(Debug)]
pub struct Init {
    pub name: String,
    pub tracks: Tracks,
    pub data: Bytes,
    /// RFC 6381 codecs of the tracks.
    pub codecs: String,
}

/// The segment being cut.
#[derive(Debug)]
struct Open {
    msn: u64,
    name: String,
    start_ms: u64,
    discontinuity: bool,
    date_ms: u64,
    init: Arc<Init>,
    parts: Vec<Arc<Part>>,
    samples: Vec<Sample>,
    /// Index in `samples` where the current part begins, and its start time.
    part_first: usize,
    part_start_ms: u64,
    /// Bytes of muxed samples that are not slices of the parts.
    unshared: usize,
}

/// Whether something is (or will soon be) there, for blocking requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Ready,
    /// Expected soon: wait for the next change.
    Pending,
    /// Too far ahead to wait for (HTTP 400).
    TooFar,
}

/// Unwraps 32-bit millisecond timestamps into one non-decreasing-start timeline.
#[derive(Debug, Default)]
struct Timeline {
    last_raw: Option<u32>,
    last: u64,
    max: u64,
    /// The next timestamp starts a new session: place it just after everything so far.
    rebase: bool,
}

/// A step between two timestamps larger than this (either way) is a jump of the publisher's
/// clock, not media: the timeline continues just after what came before, with a discontinuity.
/// A publisher controls its timestamps; without this one jump would make a part or segment
/// last weeks.
const MAX_STEP_MS: i64 = 10_000;

impl Timeline {
    /// The unwrapped time of `raw`, and whether the timeline had to jump to place it.
    fn map(&mut self, raw: u32) -> (u64, bool) {
        let (t, jumped) = match self.last_raw {
            None => (u64::from(raw), false),
            Some(_) if self.rebase => (self.max + 1, false),
            Some(prev) => {
                let d = i64::from(raw.wrapping_sub(prev) as i32);
                if d.abs() > MAX_STEP_MS {
                    (self.max + 1, true)
                } else {
                    (self.last.saturating_add_signed(d), false)
                }
            }
        };
        self.rebase = false;
        self.last_raw = Some(raw);
        self.last = t;
        self.max = self.max.max(t);
        (t, jumped)
    }
}

/// The per-stream segmenter.
#[derive(Debug)]
pub struct Segmenter {
    config: HlsConfig,
    tracks: Tracks,
    init: Option<Arc<Init>>,
    timeline: Timeline,
    segments: VecDeque<Arc<Segment>>,
    open: Option<Open>,
    /// Window index of the keyframe (or, audio only, the sample) that last started or
    /// continued a segment.
    last_window: Option<u64>,
    next_msn: Option<u64>,
    /// The next segment follows a discontinuity.
    discontinuity: bool,
    /// Discontinuities that slid out of the window (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuity_sequence: u64,
    /// Wall clock anchor: (timeline ms, wall ms) of the first sample.
    anchor: Option<(u64, u64)>,
    /// Longest part so far (PART-TARGET may not be below it).
    max_part_ms: u32,
    /// A sample was taken since the last sequence header.
    samples_since_header: bool,
    /// Decode time of the last sample of the lead track (video, else audio).
    last_lead_dts: Option<u64>,
    /// The next lead sample ends the node's first segment (see `primed`).
    split_first: bool,
    /// Where muxed parts and TS segments are moved (see `set_store`).
    store: Option<Store>,
    /// Bumped whenever what a playlist lists may have changed (see `generation`).
    generation: u64,
}

impl Segmenter {
    pub fn new(config: HlsConfig) -> Self {
        Self {
            config,
            tracks: Tracks::default(),
            init: None,
            timeline: Timeline::default(),
            segments: VecDeque::new(),
            open: None,
            last_window: None,
            next_msn: None,
            discontinuity: false,
            discontinuity_sequence: 0,
            anchor: None,
            max_part_ms: 0,
            samples_since_header: false,
            last_lead_dts: None,
            split_first: false,
            store: None,
            generation: 0,
        }
    }

    /// Every part and MPEG-TS segment muxed from now on goes through `store` (the serving
    /// layer's allocator; the segmenter stays free of I/O).
    pub fn set_store(&mut self, store: Store) {
        self.store = Some(store);
    }

    pub fn config(&self) -> &HlsConfig {
        &self.config
    }

    /// The frames that follow come from a new publisher or upstream: their timestamps are
    /// unrelated to what came before. Closes the open segment and marks a discontinuity.
    pub fn new_session(&mut self) {
        self.close_segment(None);
        self.timeline.rebase = true;
        self.last_lead_dts = None;
        if self.next_msn.is_some() {
            self.discontinuity = true;
        }
        self.last_window = None;
    }

    /// What the stream had cached (its last GOP) has been pushed. If the open segment is the
    /// first this node cuts, the next lead-track sample ends it (unless that sample starts a
    /// new window anyway): a first playlist need not wait up to a target duration for the
    /// window's end. Returns whether it applies (the first segment has samples).
    pub fn primed(&mut self) -> bool {
        let first = self
            .open
            .as_ref()
            .is_some_and(|o| !o.samples.is_empty() && self.next_msn.is_none());
        self.split_first = first;
        first
    }

    /// The stream ended: the open segment is complete.
    pub fn end(&mut self) {
        self.close_segment(None);
    }

    /// Takes one frame. Returns whether a part or segment was completed (waiters may wake).
    pub fn push(&mut self, frame: &MediaFrame, wall_ms: u64) -> bool {
        if frame.sequence_header {
            self.header(frame);
            return false;
        }
        if frame.kind == FrameKind::Data {
            return false;
        }
        let (dts, jumped) = self.timeline.map(frame.timestamp_ms);
        let mut changed = false;
        if jumped {
            changed |= self.close_segment(None);
            self.discontinuity |= self.next_msn.is_some();
            self.last_window = None;
            self.last_lead_dts = None;
        }
        let Some(init) = self.init.clone() else {
            return changed;
        };
        let Some(sample) = Sample::from_frame(frame, dts, &self.tracks) else {
            return changed;
        };
        let lead = if self.tracks.video.is_some() {
            TrackKind::Video
        } else {
            TrackKind::Audio
        };
        let starts_gop = sample.track == lead && sample.keyframe;
        let target = u64::from(self.config.target_ms.max(1));
        let mut mid_gop = false;
        if starts_gop && self.last_window != Some(dts / target) {
            changed |= self.close_segment(Some(dts));
            self.last_window = Some(dts / target);
            self.split_first = false;
        } else if sample.track == lead && std::mem::take(&mut self.split_first) {
            // The GOP cache is packaged: end the node's first segment here, so that there is
            // a complete segment at once, numbered one below its window; the rest of that
            // window (from this sample, mid-GOP) takes the window's own number, and the next
            // window starts aligned with every other node.
            if let Some(open) = &mut self.open
                && open.start_ms / target > 0
            {
                open.msn = open.start_ms / target - 1;
                open.name = format!("{}_{}", open.msn, open.start_ms);
                changed |= self.close_segment(Some(dts));
                mid_gop = true;
            }
        }
        if self.open.is_none() {
            if !starts_gop && !mid_gop {
                // A segment starts on a keyframe.
                return changed;
            }
            let first = self.anchor.is_none();
            let (anchor_dts, anchor_wall) = *self.anchor.get_or_insert((dts, wall_ms));
            let window = dts / u64::from(self.config.target_ms.max(1));
            let msn = match self.next_msn {
                Some(n) => n,
                None => window,
            };
            let name = if first || mid_gop {
                format!("{msn}_{dts}")
            } else {
                msn.to_string()
            };
            self.generation += 1;
            self.open = Some(Open {
                msn,
                name,
                start_ms: dts,
                discontinuity: std::mem::take(&mut self.discontinuity),
                date_ms: anchor_wall.saturating_add(dts.saturating_sub(anchor_dts)),
                init,
                parts: Vec::new(),
                samples: Vec::new(),
                part_first: 0,
                part_start_ms: dts,
                unshared: 0,
            });
        }
        // A part ends before the lead sample that would take it past the part duration, the
        // next sample assumed one gap away: parts stay within PART-TARGET.
        let part_end = self
            .open
            .as_ref()
            .map(|o| o.part_start_ms + u64::from(self.config.part_ms.max(1)));
        let gap = match self.last_lead_dts {
            Some(prev) if sample.track == lead => dts.saturating_sub(prev),
            _ => 0,
        };
        if sample.track == lead {
            self.last_lead_dts = Some(dts);
        }
        if let (Some(end), Some(open)) = (part_end, &self.open)
            && sample.track == lead
            && dts + gap > end
            && open.samples.len() > open.part_first
        {
            changed |= self.close_part(dts);
        }
        if let Some(open) = &mut self.open {
            open.samples.push(sample);
            self.samples_since_header = true;
        }
        changed
    }

    fn header(&mut self, frame: &MediaFrame) {
        let mut tracks = self.tracks.clone();
        match frame.kind {
            FrameKind::Video => tracks.video = VideoTrack::from_sequence_header(frame),
            FrameKind::Audio => tracks.audio = AudioTrack::from_sequence_header(frame),
            FrameKind::Data => return,
        }
        // The same headers again before any media: a duplicate. After media: a new encoder
        // session (an edge re-pulling from a new origin re-sends them), like new parameters.
        let again = std::mem::take(&mut self.samples_since_header);
        if tracks == self.tracks && !again {
            return;
        }
        // The next segment starts afresh, on a keyframe, after a discontinuity.
        if self.close_segment(None) || self.next_msn.is_some() {
            self.discontinuity = true;
        }
        self.last_window = None;
        self.tracks = tracks;
        self.init = (self.tracks.video.is_some() || self.tracks.audio.is_some()).then(|| {
            let data = crate::fmp4::init_segment(&self.tracks);
            Arc::new(Init {
                name: format!("init-{:08x}", fnv1a(&data)),
                codecs: crate::fmp4::codecs(&self.tracks),
                tracks: self.tracks.clone(),
                data,
            })
        });
    }

    /// Completes the current part at `end_ms` (the next part's first sample).
    fn close_part(&mut self, end_ms: u64) -> bool {
        let Some(open) = &mut self.open else {
            return false;
        };
        let samples = &mut open.samples[open.part_first..];
        if samples.is_empty() {
            return false;
        }
        let index = open.parts.len() as u64;
        let sequence = (open.msn.wrapping_mul(1000).wrapping_add(index)) as u32;
        let data = crate::fmp4::fragment(&open.init.tracks, sequence, samples);
        let data = match self.store {
            Some(store) => store(data),
            None => data,
        };
        crate::fmp4::share_payloads(&open.init.tracks, &data, samples);
        open.unshared += samples
            .iter()
            .filter(|s| !within(&s.data, &data))
            .map(|s| s.data.len())
            .sum::<usize>();
        self.generation += 1;
        let independent = match open.init.tracks.video {
            Some(_) => samples
                .iter()
                .any(|s| s.track == TrackKind::Video && s.keyframe),
            None => true,
        };
        let duration_ms = end_ms
            .saturating_sub(open.part_start_ms)
            .min(u64::from(u32::MAX)) as u32;
        self.max_part_ms = self.max_part_ms.max(duration_ms);
        open.parts.push(Arc::new(Part {
            duration_ms,
            independent,
            data,
        }));
        open.part_first = open.samples.len();
        open.part_start_ms = end_ms;
        true
    }

    /// Completes the open segment (if it has samples) at `end` (the next segment's first
    /// sample), or, when the stream stops, one typical sample gap after its last sample.
    /// Returns whether one was completed.
    fn close_segment(&mut self, end: Option<u64>) -> bool {
        if self.open.is_some() {
            self.generation += 1;
        }
        let Some(last) = self.open.as_ref().and_then(|o| o.samples.last()) else {
            self.open = None;
            return false;
        };
        let end = end.unwrap_or_else(|| last.dts + self.sample_gap(last.track));
        self.close_part(end);
        let Some(mut open) = self.open.take() else {
            return false;
        };
        open.samples.shrink_to_fit();
        let segment = Segment {
            msn: open.msn,
            name: open.name,
            start_ms: open.start_ms,
            duration_ms: end.saturating_sub(open.start_ms).min(u64::from(u32::MAX)) as u32,
            discontinuity: open.discontinuity,
            date_ms: open.date_ms,
            init: open.init,
            parts: open.parts,
            samples: open.samples,
            unshared: open.unshared,
            ts: OnceLock::new(),
            store: self.store,
        };
        self.next_msn = Some(segment.msn + 1);
        self.segments.push_back(Arc::new(segment));
        self.trim();
        true
    }

    /// Typical gap between two samples of `track` in the open segment (ms).
    fn sample_gap(&self, track: TrackKind) -> u64 {
        let Some(open) = &self.open else {
            return 0;
        };
        let mut it = open.samples.iter().rev().filter(|s| s.track == track);
        match (it.next(), it.next()) {
            (Some(a), Some(b)) => a.dts.saturating_sub(b.dts),
            _ => 0,
        }
    }

    /// Keeps the window within its bounds.
    fn trim(&mut self) {
        while self.segments.len() > 1
            && (self.segments.len() > self.config.window_segments
                || self.bytes() > self.config.window_bytes)
        {
            if let Some(old) = self.segments.pop_front()
                && old.discontinuity
            {
                self.discontinuity_sequence += 1;
            }
        }
    }

    /// Complete segments in the window, oldest first.
    pub fn segments(&self) -> &VecDeque<Arc<Segment>> {
        &self.segments
    }

    /// The segment being cut: its sequence number, name, discontinuity flag, date, init and
    /// the parts completed so far.
    pub fn open(&self) -> Option<OpenView<'_>> {
        self.open.as_ref().map(|o| OpenView {
            msn: o.msn,
            name: &o.name,
            discontinuity: o.discontinuity,
            date_ms: o.date_ms,
            init: &o.init,
            parts: &o.parts,
        })
    }

    /// Changes whenever a rendered playlist may change (a part, a segment, a new open
    /// segment, the window sliding): a playlist rendered at one generation can be reused until
    /// the next.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// The part target duration to announce: the configured one, or the longest part so far.
    pub fn part_target_ms(&self) -> u32 {
        self.config.part_ms.max(self.max_part_ms)
    }

    /// The current init segment.
    pub fn init(&self) -> Option<&Arc<Init>> {
        self.init.as_ref()
    }

    /// Bytes held by the window: complete segments and the open segment's parts.
    pub fn bytes(&self) -> usize {
        let open = self.open.as_ref().map_or(0, |o| {
            o.parts.iter().map(|p| p.data.len()).sum::<usize>() + o.unshared
        });
        open + self.segments.iter().map(|s| s.bytes()).sum::<usize>()
    }

    /// Whether a playlist with segment `msn` complete (`part: None`) or with part `part` of
    /// segment `msn` can be rendered now (RFC 8216bis blocking playlist reload).
    pub fn availability(&self, msn: u64, part: Option<u64>) -> Availability {
        let next = match (&self.open, self.segments.back()) {
            (Some(o), _) => o.msn,
            (None, Some(s)) => s.msn + 1,
            (None, None) => return Availability::Pending,
        };
        if msn > next + 1 {
            return Availability::TooFar;
        }
        if msn < next {
            return Availability::Ready;
        }
        match (&self.open, part) {
            (Some(o), Some(p)) if msn == o.msn && (o.parts.len() as u64) > p => Availability::Ready,
            _ => Availability::Pending,
        }
    }

    /// A segment of the window by name.
    pub fn segment(&self, name: &str) -> Option<Arc<Segment>> {
        self.segments.iter().rev().find(|s| s.name == name).cloned()
    }

    /// A part by segment name and index, in the open segment or a recent one.
    pub fn part(&self, name: &str, index: usize) -> Option<Arc<Part>> {
        if let Some(o) = &self.open
            && o.name == name
        {
            return o.parts.get(index).cloned();
        }
        self.segment(name)?.parts.get(index).cloned()
    }

    /// Whether part `index` of segment `name` may still appear (a preload hint's target).
    pub fn part_pending(&self, name: &str, index: usize) -> bool {
        self.open
            .as_ref()
            .is_some_and(|o| o.name == name && o.parts.len() == index)
    }
}

/// A borrowed view of the open segment.
#[derive(Debug)]
pub struct OpenView<'a> {
    pub msn: u64,
    pub name: &'a str,
    pub discontinuity: bool,
    pub date_ms: u64,
    pub init: &'a Arc<Init>,
    pub parts: &'a [Arc<Part>],
}

/// Whether `part` is a slice of `whole`'s memory.
fn within(part: &Bytes, whole: &Bytes) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

/// FNV-1a: a stable, dependency-free name for an init segment's content.
fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

//! ISO BMFF box writers of the fMP4 muxer: the init segment (`ftyp` + `moov`) and fragments
//! (`moof` + `mdat`). Must not allocate per sample, read clocks or panic: every field is a
//! function of the tracks and samples passed in.

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    AUDIO_TRACK_ID, Clock, DEFAULT_VIDEO_DURATION, VIDEO_TIMESCALE, VIDEO_TRACK_ID,
    default_audio_duration, sample_payload,
};
use crate::flv::VideoCodec;
use crate::hls::{AudioTrack, Sample, TrackKind, VideoTrack};

/// Identity transform of `tkhd`/`mvhd` (16.16 and 2.30 fixed point).
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// `tfhd` flag: sample data offsets count from the start of the `moof` (CMAF requires it, and
/// it makes a fragment self-contained, whatever precedes it in a file or a response).
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: data offset, and per-sample duration, size, flags and composition offset.
const TRUN_FLAGS: u32 = 0x0000_0001 | 0x0000_0100 | 0x0000_0200 | 0x0000_0400 | 0x0000_0800;

/// Sample flags (ISO/IEC 14496-12 8.8.3.1): a sync sample that depends on no other
/// (sample_depends_on = 2).
const FLAGS_SYNC: u32 = 0x0200_0000;
/// A non-sync sample that depends on others (sample_depends_on = 1, sample_is_non_sync_sample).
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// Bytes of the fixed boxes of a fragment.
const MOOF_HEADER: usize = 8;
const MFHD: usize = 16;
const MDAT_HEADER: usize = 8;
/// `traf` header + `tfhd` (track id only) + `tfdt` v1 + `trun` header with data offset.
const TRAF_FIXED: usize = 8 + 16 + 20 + 20;
/// One `trun` v1 entry: duration, size, flags, composition offset.
const TRUN_ENTRY: usize = 16;

/// Starts a box: a size placeholder and the type. Returns where it starts, for [`end`].
fn begin(out: &mut BytesMut, kind: &[u8; 4]) -> usize {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    start
}

/// Starts a full box (version and 24-bit flags after the type).
fn begin_full(out: &mut BytesMut, kind: &[u8; 4], version: u8, flags: u32) -> usize {
    let start = begin(out, kind);
    out.put_u32(u32::from(version) << 24 | (flags & 0x00ff_ffff));
    start
}

/// Patches the size of the box begun at `start`. Records are bounded by `MAX_RECORD`, so an
/// init segment never nears 4 GiB; saturating keeps that a non-panicking invariant.
fn end(out: &mut BytesMut, start: usize) {
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&size.to_be_bytes());
    }
}

fn put_matrix(out: &mut BytesMut) {
    for v in MATRIX {
        out.put_u32(v);
    }
}

/// Sizes of a visual sample entry hold 16 bits; larger (bogus) sizes are clamped.
fn dimension(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// What one `trak` describes.
enum Media<'a> {
    Video(&'a VideoTrack),
    Audio(&'a AudioTrack),
}

pub(super) fn write_init(video: Option<&VideoTrack>, audio: Option<&AudioTrack>) -> Bytes {
    let records = video.map_or(0, |v| v.record.len()) + audio.map_or(0, |a| a.asc.len());
    let mut out = BytesMut::with_capacity(1536 + records);

    // CMAF (cmfc) on ISO BMFF edition 6 (iso6: tfdt v1, trun v1 signed offsets); mp41 for
    // older parsers that look for a brand they know.
    let ftyp = begin(&mut out, b"ftyp");
    out.put_slice(b"iso6");
    out.put_u32(0);
    for brand in [b"iso6", b"cmfc", b"mp41"] {
        out.put_slice(brand);
    }
    end(&mut out, ftyp);

    let moov = begin(&mut out, b"moov");
    write_mvhd(&mut out);
    if let Some(v) = video {
        write_trak(&mut out, VIDEO_TRACK_ID, VIDEO_TIMESCALE, &Media::Video(v));
    }
    if let Some(a) = audio {
        write_trak(&mut out, AUDIO_TRACK_ID, a.sample_rate, &Media::Audio(a));
    }
    let mvex = begin(&mut out, b"mvex");
    let ids = [video.map(|_| VIDEO_TRACK_ID), audio.map(|_| AUDIO_TRACK_ID)];
    for id in ids.into_iter().flatten() {
        // Defaults are all zero: every fragment's trun states each sample's values.
        let trex = begin_full(&mut out, b"trex", 0, 0);
        out.put_u32(id);
        out.put_u32(1); // sample description index
        out.put_u32(0); // duration
        out.put_u32(0); // size
        out.put_u32(0); // flags
        end(&mut out, trex);
    }
    end(&mut out, mvex);
    end(&mut out, moov);
    out.freeze()
}

fn write_mvhd(out: &mut BytesMut) {
    let mvhd = begin_full(out, b"mvhd", 0, 0);
    out.put_u32(0); // creation time: 0, not the wall clock, so edges agree byte for byte
    out.put_u32(0); // modification time
    out.put_u32(1000); // timescale
    out.put_u32(0); // duration: unknown (live, fragmented)
    out.put_u32(0x0001_0000); // rate 1.0
    out.put_u16(0x0100); // volume 1.0
    out.put_bytes(0, 2 + 8); // reserved
    put_matrix(out);
    out.put_bytes(0, 24); // pre_defined
    out.put_u32(AUDIO_TRACK_ID + 1); // next track id
    end(out, mvhd);
}

fn write_trak(out: &mut BytesMut, id: u32, timescale: u32, media: &Media<'_>) {
    let trak = begin(out, b"trak");

    // Flags: track enabled, in movie.
    let tkhd = begin_full(out, b"tkhd", 0, 0x0000_0003);
    out.put_u32(0); // creation time
    out.put_u32(0); // modification time
    out.put_u32(id);
    out.put_u32(0); // reserved
    out.put_u32(0); // duration
    out.put_bytes(0, 8); // reserved
    out.put_u16(0); // layer
    out.put_u16(0); // alternate group
    out.put_u16(if matches!(media, Media::Audio(_)) {
        0x0100
    } else {
        0
    }); // volume
    out.put_u16(0); // reserved
    put_matrix(out);
    let (width, height) = match media {
        Media::Video(v) => (dimension(v.width), dimension(v.height)),
        Media::Audio(_) => (0, 0),
    };
    out.put_u32(u32::from(width) << 16); // 16.16 fixed point
    out.put_u32(u32::from(height) << 16);
    end(out, tkhd);

    let mdia = begin(out, b"mdia");
    let mdhd = begin_full(out, b"mdhd", 0, 0);
    out.put_u32(0); // creation time
    out.put_u32(0); // modification time
    out.put_u32(timescale);
    out.put_u32(0); // duration
    out.put_u16(0x55c4); // language "und" (ISO 639-2/T, 5 bits per letter)
    out.put_u16(0); // pre_defined
    end(out, mdhd);

    let (handler, name): (&[u8; 4], &[u8]) = match media {
        Media::Video(_) => (b"vide", b"VideoHandler\0"),
        Media::Audio(_) => (b"soun", b"SoundHandler\0"),
    };
    let hdlr = begin_full(out, b"hdlr", 0, 0);
    out.put_u32(0); // pre_defined
    out.put_slice(handler);
    out.put_bytes(0, 12); // reserved
    out.put_slice(name);
    end(out, hdlr);

    let minf = begin(out, b"minf");
    match media {
        Media::Video(_) => {
            let vmhd = begin_full(out, b"vmhd", 0, 1);
            out.put_bytes(0, 8); // graphics mode + opcolor
            end(out, vmhd);
        }
        Media::Audio(_) => {
            let smhd = begin_full(out, b"smhd", 0, 0);
            out.put_u32(0); // balance + reserved
            end(out, smhd);
        }
    }
    let dinf = begin(out, b"dinf");
    let dref = begin_full(out, b"dref", 0, 0);
    out.put_u32(1);
    // Flag 1: the media data is in this file.
    let url = begin_full(out, b"url ", 0, 1);
    end(out, url);
    end(out, dref);
    end(out, dinf);

    let stbl = begin(out, b"stbl");
    let stsd = begin_full(out, b"stsd", 0, 0);
    out.put_u32(1);
    match media {
        Media::Video(v) => write_visual_entry(out, v),
        Media::Audio(a) => write_audio_entry(out, a),
    }
    end(out, stsd);
    // Empty sample tables: the samples are all in fragments.
    for kind in [b"stts", b"stsc", b"stco"] {
        let b = begin_full(out, kind, 0, 0);
        out.put_u32(0);
        end(out, b);
    }
    let stsz = begin_full(out, b"stsz", 0, 0);
    out.put_u32(0); // sample size
    out.put_u32(0); // sample count
    end(out, stsz);
    end(out, stbl);

    end(out, minf);
    end(out, mdia);
    end(out, trak);
}

fn write_visual_entry(out: &mut BytesMut, track: &VideoTrack) {
    // `hvc1` (not `hev1`): parameter sets live in the record, as HLS requires for fMP4.
    let (entry, config): (&[u8; 4], &[u8; 4]) = match track.codec {
        VideoCodec::Hevc => (b"hvc1", b"hvcC"),
        VideoCodec::Av1 => (b"av01", b"av1C"),
        _ => (b"avc1", b"avcC"),
    };
    let start = begin(out, entry);
    out.put_bytes(0, 6); // reserved
    out.put_u16(1); // data reference index
    out.put_bytes(0, 16); // pre_defined, reserved
    out.put_u16(dimension(track.width));
    out.put_u16(dimension(track.height));
    out.put_u32(0x0048_0000); // 72 dpi
    out.put_u32(0x0048_0000);
    out.put_u32(0); // reserved
    out.put_u16(1); // frame count
    out.put_bytes(0, 32); // compressor name
    out.put_u16(0x0018); // depth: colour, no alpha
    out.put_i16(-1); // pre_defined
    let cfg = begin(out, config);
    out.put_slice(&track.record);
    end(out, cfg);
    end(out, start);
}

fn write_audio_entry(out: &mut BytesMut, track: &AudioTrack) {
    let start = begin(out, b"mp4a");
    out.put_bytes(0, 6); // reserved
    out.put_u16(1); // data reference index
    out.put_bytes(0, 8); // reserved
    // A PCE-configured stream reports 0 channels; the ASC is what decoders trust anyway.
    out.put_u16(if track.channels == 0 {
        2
    } else {
        u16::from(track.channels)
    });
    out.put_u16(16); // sample size
    out.put_u32(0); // pre_defined, reserved
    // 16.16 fixed point; rates above 65535 Hz do not fit and are left to the ASC.
    let rate = u16::try_from(track.sample_rate).unwrap_or(0);
    out.put_u32(u32::from(rate) << 16);

    // esds (ISO/IEC 14496-1 descriptors). Lengths are written in the 4-byte form; the ASC is
    // at most MAX_RECORD (1 MiB), well inside its 28 bits.
    let asc = track.asc.len();
    let dsi = 5 + asc;
    let dcd = 13 + dsi;
    let es = 3 + 5 + dcd + 5 + 1;
    let esds = begin_full(out, b"esds", 0, 0);
    put_descriptor(out, 0x03, es); // ES_Descriptor
    out.put_u16(0); // ES_ID: 0 inside an MP4 file
    out.put_u8(0); // no dependency, URL or OCR stream
    put_descriptor(out, 0x04, dcd); // DecoderConfigDescriptor
    out.put_u8(0x40); // objectTypeIndication: MPEG-4 Audio
    out.put_u8(0x15); // streamType 5 (audio) << 2 | upStream 0 | reserved 1
    out.put_uint(0, 3); // bufferSizeDB
    out.put_u32(0); // maxBitrate
    out.put_u32(0); // avgBitrate
    put_descriptor(out, 0x05, asc); // DecoderSpecificInfo
    out.put_slice(&track.asc);
    put_descriptor(out, 0x06, 1); // SLConfigDescriptor
    out.put_u8(0x02); // predefined: MP4
    end(out, esds);
    end(out, start);
}

/// A descriptor tag and its length, 7 bits per byte over 4 bytes (sizeOfInstance).
fn put_descriptor(out: &mut BytesMut, tag: u8, len: usize) {
    out.put_u8(tag);
    for shift in [21, 14, 7] {
        out.put_u8(0x80 | ((len >> shift) & 0x7f) as u8);
    }
    out.put_u8((len & 0x7f) as u8);
}

/// One track's share of a fragment, counted before anything is written.
pub(super) struct Run {
    clock: Clock,
    id: u32,
    default_duration: u32,
    pub(super) count: usize,
    pub(super) bytes: usize,
    first_dts: u64,
}

impl Run {
    pub(super) fn new(clock: Clock, id: u32, default_duration: u32) -> Self {
        Self {
            clock,
            id,
            default_duration,
            count: 0,
            bytes: 0,
            first_dts: 0,
        }
    }

    /// Bytes of this run's `traf`, if it fits in memory arithmetic.
    fn traf_size(&self) -> Option<usize> {
        self.count.checked_mul(TRUN_ENTRY)?.checked_add(TRAF_FIXED)
    }
}

pub(super) fn write_fragment(
    video: Option<&VideoTrack>,
    audio: Option<&AudioTrack>,
    sequence: u32,
    samples: &[Sample],
) -> Bytes {
    let video_codec = video.map(|v| v.codec);
    let mut runs = [
        video.map(|_| Run::new(Clock::video(), VIDEO_TRACK_ID, DEFAULT_VIDEO_DURATION)),
        audio.map(|a| Run::new(Clock::audio(a), AUDIO_TRACK_ID, default_audio_duration(a))),
    ];
    for sample in samples {
        let slot = match sample.track {
            TrackKind::Video => &mut runs[0],
            TrackKind::Audio => &mut runs[1],
        };
        if let Some(run) = slot {
            if run.count == 0 {
                run.first_dts = sample.dts;
            }
            run.count += 1;
            run.bytes = run
                .bytes
                .saturating_add(sample_payload(video_codec, sample).len());
        }
    }
    // Tracks without samples here get no traf.
    let runs = runs.map(|r| r.filter(|r| r.count > 0));
    let Some((moof_size, total)) = sizes(&runs) else {
        return Bytes::new();
    };

    let mut out = BytesMut::with_capacity(total);
    out.put_u32(moof_size as u32);
    out.put_slice(b"moof");
    let mfhd = begin_full(&mut out, b"mfhd", 0, 0);
    out.put_u32(sequence);
    end(&mut out, mfhd);

    // Sample data follows the mdat header, one run after the other in traf order.
    let mut data_offset = moof_size + MDAT_HEADER;
    for run in runs.iter().flatten() {
        write_traf(&mut out, run, data_offset, video_codec, samples);
        data_offset += run.bytes;
    }

    out.put_u32((total - moof_size) as u32);
    out.put_slice(b"mdat");
    for run in runs.iter().flatten() {
        for sample in samples.iter().filter(|s| s.track == run.clock.kind) {
            out.put_slice(sample_payload(video_codec, sample));
        }
    }
    out.freeze()
}

/// (moof size, fragment size), or `None` if there is nothing to mux or the fragment is too
/// large for `trun`'s signed 32-bit data offsets (which also keeps every box size in u32).
pub(super) fn sizes(runs: &[Option<Run>; 2]) -> Option<(usize, usize)> {
    let mut moof = MOOF_HEADER + MFHD;
    let mut data = 0usize;
    let mut any = false;
    for run in runs.iter().flatten() {
        any = true;
        moof = moof.checked_add(run.traf_size()?)?;
        data = data.checked_add(run.bytes)?;
    }
    let total = moof.checked_add(MDAT_HEADER)?.checked_add(data)?;
    (any && total <= i32::MAX as usize).then_some((moof, total))
}

fn write_traf(
    out: &mut BytesMut,
    run: &Run,
    data_offset: usize,
    video_codec: Option<VideoCodec>,
    samples: &[Sample],
) {
    let clock = run.clock;
    // `sizes` bounded the fragment by i32::MAX, so these casts are exact.
    let trun_size = 20 + run.count * TRUN_ENTRY;
    out.put_u32((TRAF_FIXED - 20 + trun_size) as u32);
    out.put_slice(b"traf");

    let tfhd = begin_full(out, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF);
    out.put_u32(run.id);
    end(out, tfhd);

    let tfdt = begin_full(out, b"tfdt", 1, 0);
    out.put_u64(clock.decode_time(run.first_dts));
    end(out, tfdt);

    out.put_u32(trun_size as u32);
    out.put_slice(b"trun");
    // Version 1: composition offsets are signed, so B-frames may present before they decode.
    out.put_u32(1 << 24 | TRUN_FLAGS);
    out.put_u32(run.count as u32);
    out.put_i32(data_offset as i32);

    // Each sample's duration is known once the next sample of its track is seen, so entries
    // are written one step behind; the last repeats the previous duration.
    let mut previous: Option<&Sample> = None;
    let mut last_duration = run.default_duration;
    for sample in samples.iter().filter(|s| s.track == clock.kind) {
        if let Some(prev) = previous {
            let duration = clock
                .decode_time(sample.dts)
                .saturating_sub(clock.decode_time(prev.dts));
            last_duration = u32::try_from(duration).unwrap_or(u32::MAX);
            put_entry(out, clock, prev, last_duration, video_codec);
        }
        previous = Some(sample);
    }
    if let Some(prev) = previous {
        put_entry(out, clock, prev, last_duration, video_codec);
    }
}

fn put_entry(
    out: &mut BytesMut,
    clock: Clock,
    sample: &Sample,
    duration: u32,
    video_codec: Option<VideoCodec>,
) {
    let flags = match clock.kind {
        TrackKind::Video if !sample.keyframe => FLAGS_NON_SYNC,
        _ => FLAGS_SYNC,
    };
    out.put_u32(duration);
    out.put_u32(sample_payload(video_codec, sample).len() as u32);
    out.put_u32(flags);
    out.put_i32(clock.composition_offset(sample.cts));
}

//! Media playlists (RFC 8216bis): the LL-HLS fMP4 playlist (parts, server control, preload
//! hint, delta updates) and the plain MPEG-TS one, rendered from a segmenter's window. Must not
//! do I/O or read clocks: dates come from the segments.

use std::fmt::Write;

use super::segmenter::{Segment, Segmenter};

/// Which playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// CMAF segments with LL-HLS parts.
    Fmp4,
    /// MPEG-TS segments, no parts.
    Ts,
}

/// How to render one playlist response.
#[derive(Debug, Clone, Copy)]
pub struct Render<'a> {
    pub container: Container,
    /// `_HLS_skip=YES`: a delta update that skips old segments.
    pub skip: bool,
    /// Prefix of every URI (relative to the playlist's own URL), e.g. `demo/`.
    pub base: &'a str,
    /// Appended to every URI: the playlist request's query (without `_HLS_*`), so tokens reach
    /// segments and parts; empty or starting with `?`.
    pub query: &'a str,
}

/// Skipped segments end at least this many target durations before the playlist's end.
pub const SKIP_TARGETS: u32 = 6;

/// The playlist, or `None` while there is nothing to list yet.
pub fn render(seg: &Segmenter, r: &Render<'_>) -> Option<String> {
    let open = seg.open();
    let segments = seg.segments();
    let ll = r.container == Container::Fmp4;
    let has_parts = ll && open.as_ref().is_some_and(|o| !o.parts.is_empty());
    if segments.is_empty() && !has_parts {
        return None;
    }
    let config = seg.config();
    let target_s = segments
        .iter()
        .map(|s| s.duration_ms.div_ceil(1000))
        .max()
        .unwrap_or(0)
        .max(config.target_ms.div_ceil(1000))
        .max(1);
    let part_target = seg.part_target_ms();
    let first_msn = segments
        .front()
        .map(|s| s.msn)
        .or_else(|| open.as_ref().map(|o| o.msn))
        .unwrap_or(0);

    let mut out = String::with_capacity(256 + 160 * segments.len());
    out.push_str("#EXTM3U\n");
    let ext = match r.container {
        Container::Fmp4 => "m4s",
        Container::Ts => "ts",
    };
    let _ = writeln!(out, "#EXT-X-VERSION:{}", if ll { 9 } else { 3 });
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target_s}");
    if ll {
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}",
            secs(part_target.saturating_mul(3)),
            SKIP_TARGETS * target_s
        );
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={}", secs(part_target));
    }
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
    let _ = writeln!(
        out,
        "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
        seg.discontinuity_sequence()
    );

    // A delta update leaves out the segments that end SKIP_TARGETS target durations or more
    // before the end of the playlist.
    let end_ms = playlist_end_ms(seg);
    let skip_until = u64::from(SKIP_TARGETS * target_s) * 1000;
    let skipped = if ll && r.skip {
        segments
            .iter()
            .take_while(|s| {
                end_ms.saturating_sub(s.start_ms + u64::from(s.duration_ms)) >= skip_until
            })
            .count()
    } else {
        0
    };
    if skipped > 0 {
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }

    // Parts are listed for the segments within three target durations of the end.
    let parts_from_ms = end_ms.saturating_sub(3 * u64::from(target_s) * 1000);
    let mut map: Option<&str> = None;
    for s in segments.iter().skip(skipped) {
        if s.discontinuity && map.is_some() {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if ll && map != Some(s.init.name.as_str()) {
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{}{}.mp4{}\"",
                r.base, s.init.name, r.query
            );
        }
        map = Some(s.init.name.as_str());
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", date(s.date_ms));
        if ll && s.start_ms + u64::from(s.duration_ms) > parts_from_ms {
            write_parts(&mut out, r, s.name.as_str(), &s.parts);
        }
        let _ = writeln!(out, "#EXTINF:{},", secs(s.duration_ms));
        let _ = writeln!(out, "{}{}.{ext}{}", r.base, s.name, r.query);
    }
    if ll && let Some(o) = &open {
        if o.discontinuity && map.is_some() {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(o.init.name.as_str()) {
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{}{}.mp4{}\"",
                r.base, o.init.name, r.query
            );
        }
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", date(o.date_ms));
        write_parts(&mut out, r, o.name, o.parts);
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}{}.{}.m4s{}\"",
            r.base,
            o.name,
            o.parts.len(),
            r.query
        );
    }
    Some(out)
}

fn write_parts(
    out: &mut String,
    r: &Render<'_>,
    name: &str,
    parts: &[std::sync::Arc<super::Part>],
) {
    for (i, p) in parts.iter().enumerate() {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={},URI=\"{}{name}.{i}.m4s{}\"",
            secs(p.duration_ms),
            r.base,
            r.query
        );
        out.push_str(if p.independent {
            ",INDEPENDENT=YES\n"
        } else {
            "\n"
        });
    }
}

/// Where the listed media ends: the last part of the open segment, or the last segment.
fn playlist_end_ms(seg: &Segmenter) -> u64 {
    let last: Option<&Segment> = seg.segments().back().map(|s| s.as_ref());
    let seg_end = last.map_or(0, |s| s.start_ms + u64::from(s.duration_ms));
    let open_parts: u64 = seg.open().map_or(0, |o| {
        o.parts.iter().map(|p| u64::from(p.duration_ms)).sum()
    });
    seg_end.max(seg_end + open_parts)
}

/// Milliseconds as decimal seconds with three places.
fn secs(ms: u32) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC date with milliseconds.
pub fn date(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let rem = ms % 86_400_000;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

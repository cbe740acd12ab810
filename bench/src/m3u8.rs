//! A lean HLS media playlist parser for load-generating clients (RFC 8216bis): segments with
//! their media sequence numbers, LL-HLS parts, the preload hint, server control (blocking
//! reload, delta updates) and the init map. Sans-IO; tolerant: unknown tags are ignored.

/// One part (`EXT-X-PART`).
#[derive(Debug, Clone, PartialEq)]
pub struct PartEntry {
    pub uri: String,
    pub independent: bool,
}

/// One complete segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentEntry {
    pub msn: u64,
    pub uri: String,
    pub duration_s: f64,
    /// Its parts, when the playlist lists them (recent segments of an LL-HLS playlist).
    pub parts: Vec<PartEntry>,
}

/// A parsed media playlist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaPlaylist {
    pub target_duration_s: f64,
    pub media_sequence: u64,
    /// Segments left out by a delta update (`EXT-X-SKIP`).
    pub skipped: u64,
    /// `EXT-X-PART-INF:PART-TARGET`.
    pub part_target_s: Option<f64>,
    pub can_block_reload: bool,
    /// `CAN-SKIP-UNTIL` present: `_HLS_skip=YES` may be asked.
    pub can_skip: bool,
    /// The last `EXT-X-MAP` URI.
    pub map: Option<String>,
    pub segments: Vec<SegmentEntry>,
    /// Parts after the last complete segment (of the segment being cut).
    pub open_parts: Vec<PartEntry>,
    pub preload_hint: Option<String>,
    pub endlist: bool,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = line;
    loop {
        let at = rest.find(name)?;
        let before = rest[..at].chars().last();
        let after = &rest[at + name.len()..];
        if matches!(before, None | Some(':' | ',')) && after.starts_with('=') {
            let v = &after[1..];
            return Some(match v.strip_prefix('"') {
                Some(q) => q.split('"').next().unwrap_or(""),
                None => v.split(',').next().unwrap_or(""),
            });
        }
        rest = after;
    }
}

impl MediaPlaylist {
    /// Parses `text`; `None` if it is not a playlist (no `#EXTM3U`).
    pub fn parse(text: &str) -> Option<MediaPlaylist> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next()? != "#EXTM3U" {
            return None;
        }
        let mut p = MediaPlaylist::default();
        let mut parts = Vec::new();
        let mut duration = 0.0;
        for line in lines {
            let Some(tag) = line.strip_prefix("#EXT") else {
                if !line.starts_with('#') {
                    p.segments.push(SegmentEntry {
                        msn: p.media_sequence + p.skipped + p.segments.len() as u64,
                        uri: line.to_string(),
                        duration_s: std::mem::take(&mut duration),
                        parts: std::mem::take(&mut parts),
                    });
                }
                continue;
            };
            if let Some(v) = tag.strip_prefix("INF:") {
                duration = v
                    .split(',')
                    .next()
                    .and_then(|d| d.trim().parse().ok())
                    .unwrap_or(0.0);
            } else if let Some(v) = tag.strip_prefix("-X-PART:") {
                if let Some(uri) = attr(v, "URI") {
                    parts.push(PartEntry {
                        uri: uri.to_string(),
                        independent: attr(v, "INDEPENDENT") == Some("YES"),
                    });
                }
            } else if let Some(v) = tag.strip_prefix("-X-TARGETDURATION:") {
                p.target_duration_s = v.trim().parse().unwrap_or(0.0);
            } else if let Some(v) = tag.strip_prefix("-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = tag.strip_prefix("-X-SKIP:") {
                p.skipped = attr(v, "SKIPPED-SEGMENTS")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            } else if let Some(v) = tag.strip_prefix("-X-PART-INF:") {
                p.part_target_s = attr(v, "PART-TARGET").and_then(|t| t.parse().ok());
            } else if let Some(v) = tag.strip_prefix("-X-SERVER-CONTROL:") {
                p.can_block_reload = attr(v, "CAN-BLOCK-RELOAD") == Some("YES");
                p.can_skip = attr(v, "CAN-SKIP-UNTIL").is_some();
            } else if let Some(v) = tag.strip_prefix("-X-MAP:") {
                p.map = attr(v, "URI").map(str::to_string);
            } else if let Some(v) = tag.strip_prefix("-X-PRELOAD-HINT:") {
                if attr(v, "TYPE") == Some("PART") {
                    p.preload_hint = attr(v, "URI").map(str::to_string);
                }
            } else if tag == "-X-ENDLIST" {
                p.endlist = true;
            }
        }
        p.open_parts = parts;
        Some(p)
    }

    /// Media sequence number of the segment after the last complete one (the one being cut).
    pub fn next_msn(&self) -> u64 {
        self.media_sequence + self.skipped + self.segments.len() as u64
    }

    /// Something to play: a complete segment, or (LL-HLS) a part.
    pub fn playable(&self) -> bool {
        !self.segments.is_empty() || !self.open_parts.is_empty()
    }

    /// Every listed part in order with its (msn, index): the listed parts of complete
    /// segments, then the open segment's.
    pub fn parts(&self) -> impl Iterator<Item = (u64, usize, &PartEntry)> {
        let open = self.next_msn();
        self.segments
            .iter()
            .flat_map(|s| s.parts.iter().enumerate().map(move |(i, p)| (s.msn, i, p)))
            .chain(
                self.open_parts
                    .iter()
                    .enumerate()
                    .map(move |(i, p)| (open, i, p)),
            )
    }
}

/// Resolves `uri` (as written in a playlist) against the playlist's request path.
pub fn resolve(playlist_path: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        return uri.to_string();
    }
    if let Some(rest) = uri.split_once("://").map(|(_, r)| r) {
        // An absolute URL: keep its path (the client stays on its own connection).
        return rest
            .find('/')
            .map_or_else(|| "/".to_string(), |i| rest[i..].to_string());
    }
    let path = playlist_path.split('?').next().unwrap_or(playlist_path);
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{dir}/{uri}")
}

/// `path` with `query` (`k=v&...`) appended to its query string.
pub fn with_query(path: &str, query: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.900,CAN-SKIP-UNTIL=12
#EXT-X-PART-INF:PART-TARGET=0.300
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-SKIP:SKIPPED-SEGMENTS=2
#EXT-X-MAP:URI=\"s/init-0a0b0c0d.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00.000Z
#EXT-X-PART:DURATION=0.300,URI=\"s/9.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.300,URI=\"s/9.1.m4s\"
#EXTINF:2.000,
s/9.m4s
#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:02.000Z
#EXT-X-PART:DURATION=0.300,URI=\"s/10.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"s/10.1.m4s\"
";

    #[test]
    fn ll_playlist() {
        let p = MediaPlaylist::parse(LL).unwrap();
        assert_eq!(p.target_duration_s, 2.0);
        assert_eq!(p.part_target_s, Some(0.3));
        assert!(p.can_block_reload && p.can_skip && !p.endlist);
        assert_eq!(p.map.as_deref(), Some("s/init-0a0b0c0d.mp4"));
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].msn, 9);
        assert_eq!(p.segments[0].duration_s, 2.0);
        assert_eq!(p.next_msn(), 10);
        assert_eq!(p.preload_hint.as_deref(), Some("s/10.1.m4s"));
        let parts: Vec<_> = p
            .parts()
            .map(|(m, i, e)| (m, i, e.uri.as_str(), e.independent))
            .collect();
        assert_eq!(
            parts,
            vec![
                (9, 0, "s/9.0.m4s", true),
                (9, 1, "s/9.1.m4s", false),
                (10, 0, "s/10.0.m4s", true)
            ]
        );
        assert!(p.playable());
    }

    #[test]
    fn plain_playlist_and_urls() {
        let p = MediaPlaylist::parse(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-TARGETDURATION:2\n\
             #EXTINF:2.0,\ns-5.ts\n#EXTINF:2.1,\ns-6.ts\n#EXT-X-ENDLIST\n",
        )
        .unwrap();
        assert_eq!(
            p.segments
                .iter()
                .map(|s| (s.msn, s.uri.as_str()))
                .collect::<Vec<_>>(),
            vec![(5, "s-5.ts"), (6, "s-6.ts")]
        );
        assert!(p.endlist && !p.can_block_reload && p.part_target_s.is_none());
        assert!(MediaPlaylist::parse("<html>").is_none());
        assert!(!MediaPlaylist::parse("#EXTM3U\n").unwrap().playable());
        assert_eq!(resolve("/live/s.m3u8?t=1", "s/1.m4s"), "/live/s/1.m4s");
        assert_eq!(resolve("/hls/s.m3u8", "/x/1.ts"), "/x/1.ts");
        assert_eq!(resolve("/hls/s.m3u8", "http://h:1/y/2.ts"), "/y/2.ts");
        assert_eq!(with_query("/a.m3u8", "_HLS_msn=1"), "/a.m3u8?_HLS_msn=1");
        assert_eq!(with_query("/a.m3u8?t=1", "x=2"), "/a.m3u8?t=1&x=2");
    }
}

//! HLS test helpers: a binary-safe HTTP GET and a media playlist parser, enough to follow a
//! livecdn playlist, fetch its segments and parts, and compare what two nodes serve.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An HTTP response: status, lowercased header names, body bytes, and how long it took.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// `method path` with `extra` request headers (Connection: close). Status 0 if nothing listens.
pub fn fetch(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Fetched {
    let start = Instant::now();
    let Ok(mut s) = TcpStream::connect(addr) else {
        return Fetched {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            elapsed: start.elapsed(),
        };
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write request");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let elapsed = start.elapsed();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let body = buf.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Fetched {
        status,
        headers,
        body,
        elapsed,
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Fetched {
    fetch(addr, "GET", path, &[])
}

/// One segment of a media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub msn: u64,
    pub uri: String,
    pub duration: f64,
    pub discontinuity: bool,
    /// URIs of its parts, with their INDEPENDENT flag.
    pub parts: Vec<(String, bool)>,
}

/// A parsed media playlist.
#[derive(Debug, Clone, Default)]
pub struct Playlist {
    pub media_sequence: u64,
    pub skipped: u64,
    pub map: Option<String>,
    pub segments: Vec<Entry>,
    /// Parts after the last complete segment (the open one).
    pub open_parts: Vec<(String, bool)>,
    pub preload_hint: Option<String>,
    pub tags: Vec<String>,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[at..];
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next()
    } else {
        rest.split(',').next()
    }
}

impl Playlist {
    pub fn parse(text: &str) -> Playlist {
        let mut p = Playlist::default();
        let mut pending_parts = Vec::new();
        let mut duration = None;
        let mut discontinuity = false;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(tag) = line.strip_prefix('#') {
                p.tags
                    .push(tag.split(':').next().unwrap_or(tag).to_string());
            }
            if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.parse().expect("media sequence");
            } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
                p.skipped = attr(v, "SKIPPED-SEGMENTS")
                    .and_then(|n| n.parse().ok())
                    .expect("skipped");
            } else if line.starts_with("#EXT-X-MAP:") {
                p.map = attr(line, "URI").map(str::to_string);
            } else if line.starts_with("#EXT-X-DISCONTINUITY") && !line.contains("SEQUENCE") {
                discontinuity = true;
            } else if line.starts_with("#EXT-X-PART:") {
                let uri = attr(line, "URI").expect("part uri").to_string();
                pending_parts.push((uri, line.contains("INDEPENDENT=YES")));
            } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
                p.preload_hint = attr(line, "URI").map(str::to_string);
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                duration = v.split(',').next().and_then(|d| d.parse().ok());
            } else if !line.starts_with('#') {
                let msn = p.media_sequence + p.skipped + p.segments.len() as u64;
                p.segments.push(Entry {
                    msn,
                    uri: line.to_string(),
                    duration: duration.take().unwrap_or(0.0),
                    discontinuity: std::mem::take(&mut discontinuity),
                    parts: std::mem::take(&mut pending_parts),
                });
            }
        }
        p.open_parts = pending_parts;
        p
    }

    /// The segment with `msn`.
    pub fn segment(&self, msn: u64) -> Option<&Entry> {
        self.segments.iter().find(|e| e.msn == msn)
    }

    /// Media sequence number of the open segment (the one being cut).
    pub fn next_msn(&self) -> u64 {
        self.media_sequence + self.skipped + self.segments.len() as u64
    }
}

/// Resolves `uri` (relative, as in the playlist) against the playlist's path.
pub fn resolve(playlist_path: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        return uri.to_string();
    }
    let path = playlist_path.split('?').next().unwrap_or(playlist_path);
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{dir}/{uri}")
}

/// GETs a playlist until `cond` holds (every 100 ms) or `deadline`; panics with `what`.
pub fn wait_playlist(
    addr: SocketAddr,
    path: &str,
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut(&Playlist) -> bool,
) -> Playlist {
    let end = Instant::now() + deadline;
    let mut last = String::new();
    while Instant::now() < end {
        let r = get(addr, path);
        if r.status == 200 {
            let p = Playlist::parse(&r.text());
            if cond(&p) {
                return p;
            }
            last = r.text();
        } else {
            last = format!("status {}: {}", r.status, r.text());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what} at {addr}{path}; last answer:\n{last}");
}

/// Downloads `uris` (resolved against the playlist path `playlist`) back to back into `file`,
/// asserting each answers 200; returns the bytes.
pub fn download(
    addr: SocketAddr,
    playlist: &str,
    uris: &[&str],
    file: &std::path::Path,
) -> Vec<u8> {
    let mut all = Vec::new();
    for uri in uris {
        let r = get(addr, &resolve(playlist, uri));
        assert_eq!(r.status, 200, "GET {uri}: {}", r.text());
        all.extend_from_slice(&r.body);
    }
    std::fs::write(file, &all).expect("write");
    all
}

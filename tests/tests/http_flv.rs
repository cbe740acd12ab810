//! HTTP-FLV's two paths on a real origin with ffmpeg publishing: a first `.flv` request takes
//! its connection over (head written by the node, body until the close, frames written by the
//! fan-out), a later request on a kept-alive connection streams through hyper (chunked); both
//! carry whole FLV tags, and a kicked player's stream ends on a tag boundary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::flv::FlvReader;
use common::media::FrameKind;
use harness::rtmp::wait_playable;
use harness::{FfmpegPublisher, Origin, StreamSpec, http_request};

/// Reads a response head (up to the blank line) and returns it lowercased, and what followed.
fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..i]).to_lowercase();
            return (head, got[i + 4..].to_vec());
        }
        assert!(Instant::now() < end, "no response head");
        let n = s.read(&mut buf).expect("read head");
        assert!(
            n > 0,
            "closed before the head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// The video tags of an FLV body (after its 13-byte file header): (keyframe, timestamp) each,
/// and the bytes left after the last whole tag.
fn video_tags(body: &[u8]) -> (Vec<(bool, u32)>, usize) {
    assert!(body.len() >= 13, "no FLV header");
    assert_eq!(&body[..4], b"FLV\x01");
    let mut reader = FlvReader::without_header(16 << 20);
    let mut buf = BytesMut::from(&body[13..]);
    let mut tags = Vec::new();
    while let Some(tag) = reader.decode(&mut buf).expect("well-formed tags") {
        if let Some(f) = tag.into_frame()
            && f.kind == FrameKind::Video
            && !f.sequence_header
        {
            tags.push((f.keyframe, f.timestamp_ms));
        }
    }
    (tags, buf.len())
}

fn publish(origin: &Origin, key: &str) -> FfmpegPublisher {
    FfmpegPublisher::start(&origin.rtmp_url(key), StreamSpec::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_flv_request_owns_its_connection_and_ends_on_a_whole_tag() {
    let origin = Origin::start(&[]);
    let _publisher = publish(&origin, "live/own");
    wait_playable(&origin, "live/own").await;

    let mut s = TcpStream::connect(origin.http).expect("connect");
    write!(s, "GET /live/own.flv HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let (head, mut body) = read_head(&mut s);
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    assert!(head.contains("content-type: video/x-flv"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    // Not hyper's chunked body: this connection is the player's, and its close ends the body.
    assert!(head.contains("connection: close"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(!head.contains("content-length"), "{head}");

    // Two seconds of media: a keyframe first, timestamps never going back, every tag whole.
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut buf = vec![0u8; 65536];
    let mut tags = Vec::new();
    let end = Instant::now() + Duration::from_secs(15);
    while tags.last().map_or(0, |&(_, ts)| ts) < tags.first().map_or(0, |&(_, ts)| ts) + 2000
        || tags.len() < 10
    {
        assert!(Instant::now() < end, "{} video tags in 15 s", tags.len());
        if let Ok(n) = s.read(&mut buf) {
            assert!(n > 0, "closed while playing");
            body.extend_from_slice(&buf[..n]);
        }
        tags = video_tags(&body).0;
    }
    assert!(tags[0].0, "the first picture is a keyframe");
    assert!(tags.windows(2).all(|w| w[1].1 >= w[0].1), "{tags:?}");
    assert_eq!(
        origin.metric("livecdn_media_players", "protocol=\"http-flv\""),
        1.0
    );

    // Kicked: the node closes the connection, after a whole last tag.
    let (_, clients) = origin.api_get("/api/v1/clients");
    let v: serde_json::Value = serde_json::from_str(&clients).expect("json");
    let id = v["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["protocol"] == "http-flv")
        .and_then(|c| c["id"].as_u64())
        .expect("the http-flv player");
    let (status, reply) = http_request(
        origin.api,
        "DELETE",
        &format!("/api/v1/clients/{id}"),
        Duration::from_secs(10),
    );
    assert_eq!(status, 200, "{reply}");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < end, "kicked player still open");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("kicked player reset instead of closed: {e}"),
        }
    }
    let (tags, partial) = video_tags(&body);
    assert!(tags.len() >= 10);
    assert_eq!(partial, 0, "the last tag was cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_request_on_a_kept_alive_connection_streams_through_hyper() {
    let origin = Origin::start(&[]);
    let _publisher = publish(&origin, "live/kept");
    wait_playable(&origin, "live/kept").await;

    let mut s = TcpStream::connect(origin.http).expect("connect");
    write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let (head, rest) = read_head(&mut s);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a sized answer");
    let mut left = len - rest.len();
    let mut buf = vec![0u8; 65536];
    while left > 0 {
        left -= s.read(&mut buf[..left]).expect("read");
    }

    write!(s, "GET /live/kept.flv HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let (head, mut body) = read_head(&mut s);
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    assert!(head.contains("content-type: video/x-flv"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    // Chunks until a few whole video tags are in.
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let flv = dechunk(&body);
        if flv.len() >= 13 && video_tags(&flv).0.len() >= 5 {
            assert!(video_tags(&flv).0[0].0, "the first picture is a keyframe");
            break;
        }
        assert!(Instant::now() < end, "no media through hyper");
        if let Ok(n) = s.read(&mut buf) {
            assert!(n > 0, "closed while playing");
            body.extend_from_slice(&buf[..n]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_flv_request_gets_a_whole_answer() {
    let origin = Origin::start(&["--media-play-wait", "300ms"]);
    let mut s = TcpStream::connect(origin.http).expect("connect");
    write!(s, "GET /live/none.flv HTTP/1.0\r\n\r\n").expect("write");
    let mut all = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.read_to_end(&mut all).expect("the answer, then the close");
    let text = String::from_utf8_lossy(&all).to_lowercase();
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON error");
    assert_eq!(v["status"], 404);
}

/// The data of a chunked body's whole chunks.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .expect("a chunk size");
        let start = i + 2;
        if body.len() < start + size + 2 {
            break;
        }
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    out
}

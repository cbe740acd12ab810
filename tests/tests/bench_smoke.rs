//! Smoke test of the load generator (bench/): the built `loadgen` binary publishes its
//! synthetic stream to a real origin and plays it back with a few RTMP, HTTP-FLV and HLS
//! (plain and LL-HLS) players for a few seconds; its JSON report must show frames, measured
//! latency and first-frame times, and every player ok.

use std::path::PathBuf;
use std::process::Command;

use harness::{NodeProc, binary};

/// Runs loadgen against `origin` with `extra` flags; returns its parsed JSON report.
fn loadgen(origin: &NodeProc, name: &str, extra: &[&str]) -> Json {
    let timing = ["--lead", "1", "--warmup", "1.5", "--duration", "3"];
    loadgen_timed(origin, name, &timing, extra)
}

/// [`loadgen`] with the lead, warm-up and window given in `timing`.
fn loadgen_timed(origin: &NodeProc, name: &str, timing: &[&str], extra: &[&str]) -> Json {
    let json: PathBuf = std::env::temp_dir().join(format!(
        "livecdn-loadgen-{}-{name}.json",
        std::process::id()
    ));
    let key = format!("live/{name}");
    let out = Command::new(binary("loadgen"))
        .args(["--publish", &origin.rtmp_url(&key)])
        .args(timing)
        .args(["--ramp", "0"])
        .args(["--pid", &format!("origin={}", origin.proc.pid())])
        .arg("--json")
        .arg(&json)
        .args(extra)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("loadgen wrote its JSON report");
    let _ = std::fs::remove_file(&json);
    let report = Json::parse(&text).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{text}"));
    eprintln!("{stdout}");
    report
}

/// What every run must show: all players ok, video at the published rate, latency and
/// first-frame times measured and plausible on loopback.
fn check(r: &Json, players: f64) {
    let n = |path: &str| r.num(path);
    assert_eq!(n("players.started"), players, "players started");
    assert_eq!(n("players.ok"), players, "every player ok: {r:?}");
    assert_eq!(n("players.failed"), 0.0);
    assert!(r.get("errors").is_some_and(Json::is_empty), "errors: {r:?}");
    assert!(n("fps.mean") > 20.0, "video frames received at ~25 fps");
    assert!(n("bitrate_kbps.mean") > 1000.0, "~2 Mbit/s per player");
    assert!(
        n("latency_ms.n") > players * 50.0,
        "latency measured on every frame"
    );
    let (p50, p99) = (n("latency_ms.p50"), n("latency_ms.p99"));
    assert!(
        p50 > 0.0 && p99 >= p50 && p99 < 1000.0,
        "latency p50 {p50} p99 {p99}"
    );
    assert_eq!(
        n("ttff_ms.n"),
        players,
        "every player timed its first frame"
    );
    let ttff = n("ttff_ms.p99");
    assert!(ttff > 0.0 && ttff < 2000.0, "first frame p99 {ttff} ms");
    // The origin primes players from its GOP cache.
    assert_eq!(n("first_frame_keyframe_share"), 1.0);
    assert_eq!(n("gaps_over_1s"), 0.0);
    assert_eq!(n("publishers.publishing"), 1.0);
    let origin = r
        .get("processes")
        .and_then(|p| p.index(0))
        .expect("origin process measured");
    assert!(origin.num("rss_mib_end") > 1.0);
    assert!(origin.num("cpu_pct") > 0.0);
}

#[test]
fn loadgen_measures_rtmp_and_http_flv_players() {
    let origin = NodeProc::start(&[]);
    let rtmp = origin.rtmp_url("live/smoke");
    let flv = origin.flv_url("live/smoke");
    let r = loadgen(
        &origin,
        "smoke",
        &["--players", "6", "--play", &rtmp, "--play", &flv],
    );
    check(&r, 6.0);
    let groups = r.get("groups").expect("groups");
    for i in 0..2 {
        let g = groups.index(i).expect("a group per play URL");
        assert_eq!(g.num("ok"), 3.0, "3 players per URL: {g:?}");
        assert!(g.num("latency_ms.n") > 0.0);
    }
}

#[test]
fn loadgen_plays_over_rtmps_and_https_verifying_the_certificate() {
    // rcgen's self-signed certificate for 127.0.0.1, given to loadgen as its CA.
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("rcgen");
    let dir = harness::Scratch::new("loadgen-tls");
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    let (rtmps, https) = (harness::free_port(), harness::free_port());
    let origin = NodeProc::start(&[
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
        "--rtmps-listen",
        &format!("127.0.0.1:{rtmps}"),
        "--https-listen",
        &format!("127.0.0.1:{https}"),
    ]);
    harness::wait_for("tls listeners", std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", rtmps)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
    });
    let r = loadgen(
        &origin,
        "smoketls",
        &[
            "--players",
            "4",
            "--ca",
            cert.to_str().expect("path"),
            "--play",
            &format!("rtmps://127.0.0.1:{rtmps}/live/smoketls"),
            "--play",
            &format!("https://127.0.0.1:{https}/live/smoketls.flv"),
        ],
    );
    check(&r, 4.0);
    let groups = r.get("groups").expect("groups");
    for i in 0..2 {
        let g = groups.index(i).expect("a group per play URL");
        assert_eq!(g.num("ok"), 2.0, "2 players per TLS URL: {g:?}");
    }
    // The players came in through the TLS listeners (the wait_for probes above count too).
    for proto in ["rtmps", "https"] {
        let accepted = origin.metric(
            "livecdn_net_connections_accepted_total",
            &format!("protocol=\"{proto}\""),
        );
        assert!(accepted >= 2.0, "{proto}: {accepted} connections");
    }
}

#[test]
fn loadgen_session_decoder_and_a_stalled_player() {
    let origin = NodeProc::start(&[]);
    let rtmp = origin.rtmp_url("live/smoke2");
    let r = loadgen(
        &origin,
        "smoke2",
        &[
            "--players",
            "4",
            "--play",
            &rtmp,
            "--decoder",
            "session",
            "--stalled",
            "1",
        ],
    );
    check(&r, 4.0);
    let stalled = r
        .get("stalled")
        .and_then(|s| s.index(0))
        .expect("stalled player reported");
    assert_eq!(stalled.get("played"), Some(&Json::Bool(true)));
}

#[test]
fn loadgen_measures_plain_and_low_latency_hls_clients() {
    let origin = NodeProc::start(&[]);
    let ll = format!("http://{}/live/hsmoke.m3u8", origin.http);
    let plain = format!("http://{}/live/hsmoke/ts.m3u8", origin.http);
    // A keyframe every second; the first playlist waits for a complete 2 s segment, and plain
    // clients get a segment every 2 s: a longer warm-up and window than the others.
    let timing = ["--lead", "1", "--warmup", "3", "--duration", "8"];
    let r = loadgen_timed(
        &origin,
        "hsmoke",
        &timing,
        &[
            "--players",
            "4",
            "--gop",
            "25",
            "--play",
            &ll,
            "--play",
            &plain,
        ],
    );
    let n = |path: &str| r.num(path);
    assert_eq!(n("players.started"), 4.0);
    assert_eq!(n("players.ok"), 4.0, "every client ok: {r:?}");
    assert!(r.get("errors").is_some_and(Json::is_empty), "errors: {r:?}");
    assert_eq!(n("hls.players"), 4.0);
    assert_eq!(n("hls.low_latency"), 2.0, "the .m3u8 playlist is LL-HLS");
    assert_eq!(n("hls.plain"), 2.0, "ts.m3u8 is plain HLS");
    assert!(
        n("hls.parts_per_s") > 4.0,
        "LL clients fetch ~3 parts/s each"
    );
    assert!(
        n("hls.segments_per_s") > 0.5,
        "plain clients fetch a segment/2 s each"
    );
    assert!(
        n("hls.blocking_reloads_per_s") > 4.0,
        "LL clients block on reloads"
    );
    assert!(
        r.get("hls")
            .and_then(|h| h.get("errors"))
            .is_some_and(Json::is_empty),
        "no failed request: {r:?}"
    );
    assert_eq!(n("hls.first_playlist_ms.n"), 4.0);
    let first = n("hls.first_playlist_ms.p99");
    assert!(first > 0.0 && first < 5000.0, "first playlist {first} ms");
    assert_eq!(
        n("first_frame_keyframe_share"),
        1.0,
        "segments start on keyframes"
    );
    let groups = r.get("groups").expect("groups");
    let (ll, plain) = (
        groups.index(0).expect("ll"),
        groups.index(1).expect("plain"),
    );
    // Every frame found in the media: parts follow the stream; plain clients get a segment
    // (50 frames) every 2 s.
    assert!(ll.num("fps.mean") > 22.0, "LL-HLS frames: {ll:?}");
    assert!(plain.num("fps.mean") > 15.0, "plain HLS frames: {plain:?}");
    // Latency on every frame: a part's worth for LL-HLS, up to a segment for plain HLS.
    assert!(ll.num("latency_ms.n") > 100.0 && plain.num("latency_ms.n") > 100.0);
    let (ll50, plain50) = (ll.num("latency_ms.p50"), plain.num("latency_ms.p50"));
    assert!(ll50 > 0.0 && ll50 < 1000.0, "LL-HLS latency p50 {ll50} ms");
    assert!(
        plain50 > ll50 && plain50 < 3000.0,
        "plain HLS latency p50 {plain50} ms (LL {ll50})"
    );
}

/// A minimal JSON value and parser (the test crate has no JSON dependency).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing bytes at {}", p.i));
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn index(&self, i: usize) -> Option<&Json> {
        match self {
            Json::Arr(items) => items.get(i),
            _ => None,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Json::Obj(f) => f.is_empty(),
            Json::Arr(a) => a.is_empty(),
            _ => false,
        }
    }

    /// The number at a dotted path; panics if absent.
    fn num(&self, path: &str) -> f64 {
        let mut v = self;
        for part in path.split('.') {
            v = v
                .get(part)
                .unwrap_or_else(|| panic!("no {path} in the report"));
        }
        match v {
            Json::Num(n) => *n,
            other => panic!("{path} is not a number: {other:?}"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value()? else {
                        return Err(format!("object key expected at {}", self.i));
                    };
                    self.eat(b':')?;
                    fields.push((k, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.i)),
                    }
                }
            }
            Some(b'"') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    match self.s.get(self.i) {
                        Some(b'"') => {
                            self.i += 1;
                            return Ok(Json::Str(out));
                        }
                        Some(b'\\') => {
                            let esc = self.s.get(self.i + 1).copied();
                            self.i += 2;
                            match esc {
                                Some(b'n') => out.push('\n'),
                                Some(b't') => out.push('\t'),
                                Some(b'u') => {
                                    let hex = self
                                        .s
                                        .get(self.i..self.i + 4)
                                        .and_then(|h| std::str::from_utf8(h).ok())
                                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                                        .ok_or("bad \\u escape")?;
                                    out.push(char::from_u32(hex).unwrap_or('?'));
                                    self.i += 4;
                                }
                                Some(c) => out.push(c as char),
                                None => return Err("unterminated string".into()),
                            }
                        }
                        Some(_) => {
                            let start = self.i;
                            while self
                                .s
                                .get(self.i)
                                .is_some_and(|c| *c != b'"' && *c != b'\\')
                            {
                                self.i += 1;
                            }
                            out.push_str(&String::from_utf8_lossy(&self.s[start..self.i]));
                        }
                        None => return Err("unterminated string".into()),
                    }
                }
            }
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(_) => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                {
                    self.i += 1;
                }
                std::str::from_utf8(&self.s[start..self.i])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Json::Num)
                    .ok_or_else(|| format!("bad value at {start}"))
            }
            None => Err("unexpected end".into()),
        }
    }
}

#[test]
fn the_json_parser_reads_what_loadgen_writes() {
    let v = Json::parse(
        r#"{"a": {"b": [1, 2.5e0, -3]}, "s": "x\"y\u0041", "t": true, "n": null, "e": {}}"#,
    )
    .expect("parse");
    assert_eq!(
        v.get("a").and_then(|a| a.get("b")).and_then(|b| b.index(1)),
        Some(&Json::Num(2.5))
    );
    assert_eq!(v.get("s"), Some(&Json::Str("x\"yA".into())));
    assert!(v.get("e").is_some_and(Json::is_empty));
    assert_eq!(v.get("n"), Some(&Json::Null));
    assert!(Json::parse("{\"a\": }").is_err());
}

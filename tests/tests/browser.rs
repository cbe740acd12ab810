//! The player page in a real browser: etcd, an origin and an edge; ffmpeg publishes to the
//! origin and headless Chromium (Debian's) opens the edge's page, which plays LL-HLS with
//! hls.js and then HTTP-FLV with mpegts.js. The scripts come from tests/web/node_modules
//! (`npm ci --prefix tests/web`, which tests/run.sh does), served by a loopback server here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use harness::etcd::Etcd;
use harness::rtmp::wait_playable;
use harness::{FfmpegPublisher, NodeProc, Proc, StreamSpec, require, wait_for};
use serde_json::Value;

/// Seconds of real playback each player must show, and how long it gets to show them.
const HLS_MIN_PLAYED: f64 = 5.0;
const FLV_MIN_PLAYED: f64 = 3.0;
const PLAY_DEADLINE_S: u64 = 40;

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// A file of tests/web/node_modules, or a clear failure saying how to get it.
fn module_file(rel: &str) -> Vec<u8> {
    let path = web_dir().join("node_modules").join(rel);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run `npm ci --prefix tests/web` (tests/run.sh does)",
            path.display()
        )
    })
}

/// A static HTTP server on loopback for the player's scripts, with CORS, counting requests.
struct ScriptServer {
    addr: SocketAddr,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptServer {
    fn start(files: Vec<(&'static str, Vec<u8>)>) -> ScriptServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind script server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &files, &h),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        ScriptServer {
            addr,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one request (Connection: close), every read and write bounded in time and size.
fn serve(
    mut conn: TcpStream,
    files: &[(&'static str, Vec<u8>)],
    hits: &Mutex<BTreeMap<String, usize>>,
) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    *hits
        .lock()
        .expect("hits")
        .entry(path.to_string())
        .or_default() += 1;
    let found = files.iter().find(|(p, _)| *p == path);
    let (status, body): (&str, &[u8]) = match found {
        Some((_, body)) => ("200 OK", body),
        None => ("404 Not Found", b"not found\n"),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/javascript\r\n\
         Access-Control-Allow-Origin: *\r\nCache-Control: no-store\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        let _ = conn.write_all(body);
    }
}

/// What tests/web/play.mjs saw, with the raw output for failure messages.
struct Run {
    result: Value,
    output: String,
}

impl Run {
    fn f64(&self, key: &str) -> f64 {
        self.result[key].as_f64().unwrap_or(0.0)
    }

    fn frames_decoded(&self) -> i64 {
        let f = &self.result["frames"];
        f["last"].as_i64().unwrap_or(0) - f["first"].as_i64().unwrap_or(0)
    }

    /// One line for the test's output: how soon it started and how much it played.
    fn summary(&self) -> String {
        let samples = self.result["samples"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let t = |s: &Value| s["t"].as_f64().unwrap_or(0.0);
        let started = samples.iter().find(|s| s["ct"].as_f64() > Some(0.0)).map(t);
        format!(
            "{}: playing after {:?} s, played {} s in {:?} s, {} frames, player errors {}",
            self.result["url"].as_str().unwrap_or(""),
            started,
            self.f64("played"),
            samples.last().map(t),
            self.frames_decoded(),
            self.result["livecdn"]["errors"]
        )
    }

    /// Everything worth reading when an assertion fails: the browser's view of the page,
    /// its console, the failed requests and the last samples of the <video>.
    fn report(&self) -> String {
        let mut r = self.result.clone();
        if let Some(samples) = r.get_mut("samples").and_then(Value::as_array_mut) {
            let skip = samples.len().saturating_sub(6);
            samples.drain(..skip);
        }
        format!(
            "browser run:\n{}\n--- play.mjs output ---\n{}",
            serde_json::to_string_pretty(&r).unwrap_or_default(),
            self.output
        )
    }
}

/// Opens `url` in headless Chromium through tests/web/play.mjs until `min_played` seconds
/// played or the deadline passed.
fn play(url: &str, min_played: f64) -> Run {
    let mut cmd = Command::new("node");
    cmd.current_dir(web_dir())
        .arg("play.mjs")
        .arg(url)
        .args(["--min", &min_played.to_string()])
        .args(["--deadline", &PLAY_DEADLINE_S.to_string()]);
    let mut proc = Proc::spawn("chromium-player", &mut cmd);
    // The script's own deadline plus browser start and shutdown.
    wait_for(
        "the browser run to end",
        Duration::from_secs(PLAY_DEADLINE_S + 60),
        || !proc.is_running(),
    );
    let output = proc.output();
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"url\""))
        .unwrap_or_else(|| panic!("play.mjs printed no result:\n{output}"));
    let result: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("play.mjs result is not JSON ({e}):\n{output}"));
    Run { result, output }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_page_on_an_edge_plays_hls_with_hlsjs_and_flv_with_mpegtsjs() {
    require("node");
    require("chromium");
    let scripts = ScriptServer::start(vec![
        ("/hls.min.js", module_file("hls.js/dist/hls.min.js")),
        ("/mpegts.js", module_file("mpegts.js/dist/mpegts.js")),
    ]);
    assert!(
        web_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core missing: run `npm ci --prefix tests/web` (tests/run.sh does)"
    );
    let hlsjs = scripts.url("/hls.min.js");
    let mpegtsjs = scripts.url("/mpegts.js");
    let etcd = Etcd::start();
    let node = |binary: &str| {
        NodeProc::spawn(
            binary,
            &[
                "--etcd",
                &etcd.endpoint,
                "--etcd-lease-ttl",
                "2s",
                "--hls-player-hlsjs-url",
                &hlsjs,
                "--hls-player-mpegtsjs-url",
                &mpegtsjs,
            ],
        )
    };
    let origin = node("origin");
    let edge = node("edge");
    let spec = StreamSpec {
        fps: 25,
        gop: 25,
        seconds: 180,
    };
    let _publisher = FfmpegPublisher::start(&origin.rtmp_url("live/page"), spec);
    wait_playable(&edge, "live/page").await;

    let page = format!("http://{}/live/page", edge.http);
    let hls = play(&page, HLS_MIN_PLAYED);
    eprintln!("{}", hls.summary());
    let report = hls.report();
    assert!(hls.result["error"].is_null(), "browser failed\n{report}");
    assert!(
        hls.result["livecdn"]["fatal"].is_null(),
        "fatal player error\n{report}"
    );
    assert_eq!(hls.result["mode"], "hls", "{report}");
    // hls.js, not the browser's own HLS: hls.js loaded and supported, and the <video> is fed
    // through Media Source Extensions (a blob: URL) rather than given the playlist's URL.
    assert_eq!(hls.result["hlsjs"], true, "hls.js not active\n{report}");
    assert!(
        hls.result["src"]
            .as_str()
            .is_some_and(|s| s.starts_with("blob:")),
        "video not fed by hls.js\n{report}"
    );
    assert!(
        hls.f64("played") >= HLS_MIN_PLAYED,
        "HLS played {} s, wanted {HLS_MIN_PLAYED}\n{report}",
        hls.f64("played")
    );
    assert!(
        hls.frames_decoded() >= 60,
        "{} video frames decoded\n{report}",
        hls.frames_decoded()
    );
    assert!(scripts.hits("/hls.min.js") >= 1, "hls.js never fetched");

    let flv = play(&format!("{page}?player=flv"), FLV_MIN_PLAYED);
    eprintln!("{}", flv.summary());
    let report = flv.report();
    assert!(flv.result["error"].is_null(), "browser failed\n{report}");
    assert!(
        flv.result["livecdn"]["fatal"].is_null(),
        "fatal player error\n{report}"
    );
    assert_eq!(flv.result["mode"], "flv", "{report}");
    assert!(
        flv.f64("played") >= FLV_MIN_PLAYED,
        "HTTP-FLV played {} s, wanted {FLV_MIN_PLAYED}\n{report}",
        flv.f64("played")
    );
    assert!(
        flv.frames_decoded() >= 40,
        "{} video frames decoded\n{report}",
        flv.frames_decoded()
    );
    assert!(scripts.hits("/mpegts.js") >= 1, "mpegts.js never fetched");
}

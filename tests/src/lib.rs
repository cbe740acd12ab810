//! Test harness: starts real livecdn binaries on free loopback ports and drives them with
//! real ffmpeg/ffprobe/rtmpdump and with the project's own RTMP client. Every wait has a
//! deadline; every child process is killed on drop.

pub mod attack;
pub mod etcd;
pub mod hevc;
pub mod hls;
pub mod loadgen;
pub mod netns;
pub mod publish;
pub mod rtmp;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Fails the test with a clear message if a tool the suite needs is missing.
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run the README's test command (tests/run.sh), which installs it"
    );
}

/// A loopback port that was free a moment ago and that nothing else in this run will pick.
///
/// Ports come from 20000-32767, below the kernel's ephemeral range (32768-60999 on Linux), so
/// an outgoing connection of a concurrent test (ffmpeg, etcd, a node pulling) can never take
/// one between this check and the node's bind, which is what `bind(":0")` allowed. Each test
/// process walks the range from its own pid-derived start (cargo runs test binaries one after
/// another), and never hands the same port out twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_768;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 977) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
}

/// A number no other call in this process returns (for file and directory names).
fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Path of a workspace binary built next to the test executable (target/<profile>/NAME).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace` first (tests/run.sh does)",
        path.display()
    );
    path
}

/// Polls `cond` every 20 ms until it holds or `deadline` passes; panics with `what`.
pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    log: Option<PathBuf>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let (pid, n) = (std::process::id(), unique());
        let log = std::env::temp_dir().join(format!("livecdn-{name}-{pid}-{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
            log: Some(log),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal (e.g. "TERM") and waits for exit within `deadline`; returns the time taken.
    pub fn signal_and_wait(&mut self, sig: &str, deadline: Duration) -> Duration {
        let start = Instant::now();
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
        wait_for(
            &format!("{} to exit after SIG{sig}", self.name),
            deadline,
            || !self.is_running(),
        );
        start.elapsed()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}", self.name, self.output());
        }
        if let Some(p) = self.log.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A running `origin` or `edge` binary on free loopback ports.
pub struct NodeProc {
    pub proc: Proc,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// The control API listener (JSON `/api/v1`, gRPC, `/metrics`).
    pub api: SocketAddr,
    pub node_id: String,
}

/// The origin binary (kept as its own name for readability in tests).
pub type Origin = NodeProc;

impl NodeProc {
    /// Starts `origin` with `extra` flags.
    pub fn start(extra: &[&str]) -> NodeProc {
        Self::spawn("origin", extra)
    }

    /// Starts `edge` with `extra` flags.
    pub fn edge(extra: &[&str]) -> NodeProc {
        Self::spawn("edge", extra)
    }

    pub fn spawn(binary_name: &str, extra: &[&str]) -> NodeProc {
        Self::spawn_in(binary_name, [127, 0, 0, 1].into(), &[], extra)
    }

    /// Starts `binary_name` with its listeners on `bind` (free ports), run through `prefix`
    /// when it is not empty (e.g. `ip netns exec NS`, which execs the binary: the process
    /// killed on drop is the node itself). The address must be reachable from here.
    pub fn spawn_in(
        binary_name: &str,
        bind: std::net::IpAddr,
        prefix: &[&str],
        extra: &[&str],
    ) -> NodeProc {
        // A port taken between `free_port()` and the node's bind (by a process outside this
        // run) costs a retry on new ports, not the test.
        for _ in 0..3 {
            if let Some(node) = Self::try_spawn_in(binary_name, bind, prefix, extra) {
                return node;
            }
        }
        panic!("{binary_name} lost its ports three times: Address already in use");
    }

    fn try_spawn_in(
        binary_name: &str,
        bind: std::net::IpAddr,
        prefix: &[&str],
        extra: &[&str],
    ) -> Option<NodeProc> {
        let rtmp = SocketAddr::new(bind, free_port());
        let http = SocketAddr::new(bind, free_port());
        let api = SocketAddr::new(bind, free_port());
        let node_id = format!("{binary_name}-{}", rtmp.port());
        let mut cmd = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary(binary_name));
                c
            }
            None => Command::new(binary(binary_name)),
        };
        cmd.arg("--rtmp-listen")
            .arg(rtmp.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("--api-listen")
            .arg(api.to_string())
            .arg("--node-id")
            .arg(&node_id)
            .args(extra)
            .env("RUST_LOG", "info");
        if !bind.is_loopback() {
            // A control API off loopback needs a token (reads need none).
            cmd.args(["--api-token", "livecdn-test-token"]);
        }
        let proc = Proc::spawn(binary_name, &mut cmd);
        let mut o = NodeProc {
            proc,
            rtmp,
            http,
            api,
            node_id,
        };
        let running = &mut o.proc;
        let mut lost_port = false;
        wait_for(
            &format!("{binary_name} to listen"),
            Duration::from_secs(15),
            || {
                if !running.is_running() {
                    let output = running.output();
                    lost_port = output.contains("Address already in use");
                    assert!(lost_port, "{binary_name} exited: {output}");
                    return true;
                }
                TcpStream::connect(http).is_ok()
                    && TcpStream::connect(rtmp).is_ok()
                    && TcpStream::connect(api).is_ok()
            },
        );
        (!lost_port).then_some(o)
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/{}", self.rtmp, key)
    }

    pub fn flv_url(&self, key: &str) -> String {
        format!("http://{}/{}.flv", self.http, key)
    }

    /// GET `path` on the HTTP listener: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    /// GET `path` on the control API listener: (status, body).
    pub fn api_get(&self, path: &str) -> (u16, String) {
        http_get(self.api, path)
    }

    /// Sum of every sample of the Prometheus metric `name` whose line contains `filter`.
    pub fn metric(&self, name: &str, filter: &str) -> f64 {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
            .filter(|l| l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// A minimal HTTP/1.1 GET (Connection: close), enough for JSON APIs and health checks.
/// Status 0 if nothing listens there.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, Duration::from_secs(10))
}

/// A minimal HTTP/1.1 request without a body (Connection: close), waiting at most
/// `read_timeout` for the response. Status 0 if nothing listens there.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    read_timeout: Duration,
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(read_timeout)).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// An ffmpeg publisher of a synthetic H.264 + AAC stream (testsrc2 + sine) in real time.
pub struct FfmpegPublisher {
    pub proc: Proc,
}

/// Settings of the synthetic stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    pub fps: u32,
    /// Keyframe interval in frames.
    pub gop: u32,
    /// Seconds to publish (then ffmpeg exits).
    pub seconds: u32,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            fps: 25,
            gop: 25,
            seconds: 60,
        }
    }
}

impl FfmpegPublisher {
    pub fn start(url: &str, spec: StreamSpec) -> FfmpegPublisher {
        require("ffmpeg");
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "warning", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size=320x240:rate={}", spec.fps))
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-t", &spec.seconds.to_string()])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args([
                "-g",
                &spec.gop.to_string(),
                "-keyint_min",
                &spec.gop.to_string(),
            ])
            .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"])
            .args(["-f", "flv", url]);
        FfmpegPublisher {
            proc: Proc::spawn("ffmpeg-publish", &mut cmd),
        }
    }
}

/// What a player decoded.
#[derive(Debug)]
pub struct Played {
    pub ok: bool,
    pub video_frames: usize,
    pub audio_frames: usize,
    pub stderr: String,
}

/// Plays `url` with ffmpeg for `seconds` of media, decoding every frame with errors fatal,
/// and counts the decoded frames per stream.
pub fn ffmpeg_play(url: &str, seconds: u32, timeout: Duration) -> Played {
    require("ffmpeg");
    let mut cmd = Command::new("timeout");
    cmd.arg(format!("{}", timeout.as_secs().max(1)))
        .args(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-xerror", "-err_detect", "explode", "-i", url])
        .args(["-t", &seconds.to_string(), "-map", "0:v", "-map", "0:a?"])
        .args(["-f", "framemd5", "-"]);
    decode_counts(cmd.output().expect("run ffmpeg"))
}

/// Decodes a local media file completely (errors fatal) and counts frames.
pub fn ffmpeg_decode_file(path: &std::path::Path) -> Played {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-xerror", "-err_detect", "explode", "-i"])
        .arg(path)
        .args(["-map", "0:v", "-map", "0:a?", "-f", "framemd5", "-"])
        .output()
        .expect("run ffmpeg");
    decode_counts(out)
}

fn decode_counts(out: Output) -> Played {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut video = 0;
    let mut audio = 0;
    for line in stdout.lines().filter(|l| !l.starts_with('#')) {
        match line.split(',').next().map(str::trim) {
            Some("0") => video += 1,
            Some("1") => audio += 1,
            _ => {}
        }
    }
    Played {
        ok: out.status.success(),
        video_frames: video,
        audio_frames: audio,
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A new, empty directory whose name includes `name`, the process id and a unique number.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "livecdn-{name}-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// VmRSS of `pid` in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch now (the clock loadgen's reports use).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

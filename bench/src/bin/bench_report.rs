//! `bench-report`: writes BENCHMARKS.md from the results directory of `bench/run.sh` (one JSON
//! report per loadgen run, `meta.env`, `commands.txt`, optional perf listings).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bench::report::{ProcReport, Report};
use clap::Parser;

#[path = "bench_report/hls.rs"]
mod hls;
#[path = "bench_report/targets.rs"]
mod targets;
#[path = "bench_report/tls.rs"]
mod tls;

#[derive(Debug, Parser)]
#[command(name = "bench-report")]
struct Args {
    /// Directory with the run's results.
    #[arg(long)]
    results: PathBuf,
    /// Markdown file to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Hand-kept markdown appended in order (repeatable): the cluster figures of the
    /// separate scripts (bench/cluster.md), the log of what was tried (bench/tried.md).
    #[arg(long)]
    tried: Vec<PathBuf>,
}

struct Results {
    runs: BTreeMap<String, Report>,
    meta: BTreeMap<String, String>,
    dir: PathBuf,
    server_cpus: Vec<usize>,
    loadgen_cpus: Vec<usize>,
}

impl Results {
    fn load(dir: &Path) -> anyhow::Result<Results> {
        let mut runs = BTreeMap::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path)?;
                let r: Report = serde_json::from_str(&text)
                    .with_context(|| format!("parse {}", path.display()))?;
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default();
                runs.insert(name, r);
            }
        }
        let meta: BTreeMap<String, String> = std::fs::read_to_string(dir.join("meta.env"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let meta: BTreeMap<String, String> = meta;
        let server_cpus = cpu_list(meta.get("server_cpus").map_or("1", String::as_str));
        let loadgen_cpus = cpu_list(meta.get("loadgen_cpus").map_or("0", String::as_str));
        Ok(Results {
            runs,
            meta,
            dir: dir.to_path_buf(),
            server_cpus,
            loadgen_cpus,
        })
    }

    fn meta(&self, k: &str) -> &str {
        self.meta.get(k).map(String::as_str).unwrap_or("?")
    }

    fn get(&self, name: &str) -> Option<&Report> {
        self.runs.get(name)
    }

    fn text(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .filter(|s| !s.trim().is_empty())
    }

    /// Runs `name`, `name-r2`, `name-r3`, ...: repeats of one configuration, in run order.
    fn repeats(&self, name: &str) -> Vec<&Report> {
        let mut v: Vec<&Report> = self.get(name).into_iter().collect();
        for k in 2.. {
            match self.get(&format!("{name}-r{k}")) {
                Some(r) => v.push(r),
                None => break,
            }
        }
        v
    }

    /// Player counts N of runs named `{prefix}{N}`, ascending.
    fn sizes(&self, prefix: &str) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .runs
            .keys()
            .filter_map(|k| k.strip_prefix(prefix)?.parse().ok())
            .collect();
        v.sort_unstable();
        v
    }
}

fn proc<'a>(r: &'a Report, name: &str) -> Option<&'a ProcReport> {
    r.processes.iter().find(|p| p.name == name)
}

fn edge_cpu(r: &Report) -> f64 {
    proc(r, "edge").map_or(f64::NAN, |p| p.cpu_pct)
}

/// The edge's busy threads' CPU (% of one core each), busiest first: one stream's fan-out on
/// one thread or spread over the workers.
fn edge_threads(r: &Report) -> String {
    proc(r, "edge").map_or("-".into(), |p| {
        let t: Vec<String> = p.threads_cpu_pct.iter().map(|&c| f1(c)).collect();
        if t.is_empty() {
            "-".into()
        } else {
            t.join(" / ")
        }
    })
}

/// Edge CPU (% of one core) per delivered Gbit/s.
fn cpu_per_gbps(r: &Report) -> f64 {
    if r.delivered_gbps <= 0.0 {
        return f64::NAN;
    }
    edge_cpu(r) / r.delivered_gbps
}

/// Edge RSS growth per player, KiB.
fn rss_per_player(r: &Report) -> f64 {
    let Some(p) = proc(r, "edge") else {
        return f64::NAN;
    };
    let n = r.players.started.max(1) as f64;
    (p.rss_mib_end - p.rss_mib_before) * 1024.0 / n
}

/// CPUs listed like taskset's `-c` (`1`, `0,1`, `0-3`).
fn cpu_list(spec: &str) -> Vec<usize> {
    spec.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) => (a..=b).collect(),
                _ => Vec::new(),
            },
            None => part.trim().parse().ok().into_iter().collect(),
        })
        .collect()
}

/// Busy % (of one core) of `cpus` over the window: processes plus the interrupt and softirq
/// work (loopback TCP delivery) the kernel charges to no process.
fn core_busy(r: &Report, cpus: &[usize]) -> f64 {
    if r.cpu_busy_pct.is_empty() {
        return f64::NAN;
    }
    cpus.iter().filter_map(|c| r.cpu_busy_pct.get(*c)).sum()
}

/// The edge's CPU including the kernel's deferred softirq work on the servers' CPUs
/// (`ksoftirqd/N`, charged to no server process), % of one core. Softirq work done inline
/// in the edge's own syscalls is already in the edge's process time.
fn edge_total(r: &Report, server_cpus: &[usize]) -> f64 {
    let ksoftirqd: f64 = r
        .processes
        .iter()
        .filter(|p| {
            p.name
                .strip_prefix("ksoftirqd/")
                .and_then(|c| c.parse::<usize>().ok())
                .is_some_and(|c| server_cpus.contains(&c))
        })
        .map(|p| p.cpu_pct)
        .sum();
    edge_cpu(r) + ksoftirqd
}

fn per_gbps(cpu: f64, r: &Report) -> f64 {
    if r.delivered_gbps <= 0.0 {
        f64::NAN
    } else {
        cpu / r.delivered_gbps
    }
}

/// The median of the finite values (NaN if none).
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn f1(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-".into()
    }
}

fn f2(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        let r = a / b;
        if r < 0.1 {
            format!("{r:.4}x")
        } else {
            format!("{r:.2}x")
        }
    } else {
        "-".into()
    }
}

fn errors(r: &Report) -> String {
    if r.errors.is_empty() {
        return "none".into();
    }
    r.errors
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// The GOP caches' payload high-water mark of round `round` (0-based) of `name`, in MiB.
fn many_gop_peak_mib(res: &Results, name: &str, round: usize) -> Option<f64> {
    let sfx = if round == 0 {
        String::new()
    } else {
        format!("-r{}", round + 1)
    };
    res.text(&format!("{name}{sfx}-gop.txt"))
        .and_then(|t| t.trim().parse::<f64>().ok())
        .map(|b| b / (1024.0 * 1024.0))
}

fn server_name(name: &str) -> &'static str {
    if name.contains("nginx") {
        "nginx-rtmp"
    } else {
        "livecdn"
    }
}

fn fanout_row(o: &mut String, res: &Results, name: &str, r: &Report) {
    let edge = proc(r, "edge");
    let proto = if name.contains("-flv-") {
        "HTTP-FLV"
    } else {
        "RTMP"
    };
    let core = edge_total(r, &res.server_cpus);
    let _ = writeln!(
        o,
        "| {} | {proto} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} | {} / {} | {} | {} | {} | {} | {} |",
        server_name(name),
        r.config.players,
        r.players.ok,
        r.players.started,
        f2(r.delivered_gbps),
        f1(edge_cpu(r)),
        f1(core),
        f1(cpu_per_gbps(r)),
        f1(per_gbps(core, r)),
        edge.map_or("-".into(), |p| f1(p.rss_mib_end)),
        f1(rss_per_player(r)),
        f1(r.latency_ms.p50),
        f1(r.latency_ms.p95),
        f1(r.latency_ms.p99),
        f1(r.latency_ms.max),
        f1(r.ttff_ms.p50),
        f1(r.ttff_ms.p99),
        pct(r.first_frame_keyframe_share),
        r.gaps_over_1s,
        errors(r),
        f1(core_busy(r, &res.loadgen_cpus)),
        f1(r.unattributed_cpu_pct),
    );
}

const FANOUT_HEAD: &str = "| server | protocol | players | ok/started | delivered Gbit/s | edge process CPU % | edge CPU % incl. softirq | edge process CPU % per Gbit/s | edge CPU % incl. softirq per Gbit/s | edge RSS MiB | RSS KiB per player | latency ms p50 / p95 / p99 / max | first frame ms p50 / p99 | keyframe first | gaps > 1 s | errors | load generator core busy % | CPU % of other programs |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn render(res: &Results) -> String {
    let mut o = String::new();
    let m = |k: &str| res.meta(k).to_string();
    let _ = writeln!(o, "# livecdn benchmarks\n");
    let _ = writeln!(
        o,
        "Written by `{}` on {} (the whole run took {} s). Re-run it to reproduce: it \
         installs nginx, libnginx-mod-rtmp and etcd-server if missing, builds the release \
         binaries, runs every scenario below against livecdn and nginx-rtmp, and rewrites this \
         file. Everything runs on loopback on one machine.{}\n",
        res.meta
            .get("invocation")
            .map_or("bench/run.sh", String::as_str),
        m("date"),
        m("duration_s"),
        if m("quick") == "1" {
            " **This is a QUICK=1 run: tiny loads, not representative.**"
        } else {
            ""
        }
    );

    // Headline.
    let headline_at = o.len();
    let sizes_ours = res.sizes("fanout-ours-rtmp-");
    let sizes_both: Vec<usize> = sizes_ours
        .iter()
        .copied()
        .filter(|n| res.get(&format!("fanout-nginx-rtmp-{n}")).is_some())
        .collect();
    let pick = |target: usize| {
        sizes_both
            .iter()
            .copied()
            .min_by_key(|n| n.abs_diff(target))
    };
    let _ = writeln!(o, "## Headline: livecdn vs nginx-rtmp\n");
    if let Some(n) = pick(1000) {
        let max_n = sizes_both.last().copied().unwrap_or(n);
        let ours = res.get(&format!("fanout-ours-rtmp-{n}"));
        let theirs = res.get(&format!("fanout-nginx-rtmp-{n}"));
        let ours_max = res.get(&format!("fanout-ours-rtmp-{max_n}"));
        let theirs_max = res.get(&format!("fanout-nginx-rtmp-{max_n}"));
        if let (Some(a), Some(b), Some(am), Some(bm)) = (ours, theirs, ours_max, theirs_max) {
            let _ = writeln!(
                o,
                "One edge, RTMP players, {} kbit/s; the edge pinned to one core (see Method). \
                 Ratios are livecdn / nginx-rtmp: below 1 means livecdn uses less or is faster.\n",
                a.config.bitrate_kbps
            );
            let _ = writeln!(
                o,
                "| figure | livecdn | nginx-rtmp | ratio |\n|---|---|---|---|"
            );
            let row = |o: &mut String, what: String, x: f64, y: f64, unit: &str| {
                let _ = writeln!(
                    o,
                    "| {what} | {} {unit} | {} {unit} | {} |",
                    f2(x),
                    f2(y),
                    ratio(x, y)
                );
            };
            let sc = &res.server_cpus;
            let mut points = vec![n];
            if max_n != n {
                points.push(max_n);
            }
            let mut repeats = String::new();
            for k in points {
                let ours = res.repeats(&format!("fanout-ours-rtmp-{k}"));
                let theirs = res.repeats(&format!("fanout-nginx-rtmp-{k}"));
                let runs = if ours.len() > 1 || theirs.len() > 1 {
                    format!(", median of {} / {} runs", ours.len(), theirs.len())
                } else {
                    String::new()
                };
                let total = |r: &&Report| per_gbps(edge_total(r, sc), r);
                let process = |r: &&Report| cpu_per_gbps(r);
                let ours_total = median(ours.iter().map(total).collect());
                row(
                    &mut o,
                    format!(
                        "edge CPU per delivered Gbit/s, incl. kernel softirq ({k} players{runs})"
                    ),
                    ours_total,
                    median(theirs.iter().map(total).collect()),
                    "% of a core",
                );
                row(
                    &mut o,
                    format!("edge CPU per delivered Gbit/s, edge process only ({k} players{runs})"),
                    median(ours.iter().map(process).collect()),
                    median(theirs.iter().map(process).collect()),
                    "% of a core",
                );
                let tuned = res.repeats(&format!("fanout-nginx60000-rtmp-{k}"));
                if !tuned.is_empty() {
                    row(
                        &mut o,
                        format!(
                            "edge CPU per delivered Gbit/s, incl. kernel softirq, vs nginx-rtmp \
                             with `chunk_size 60000` like livecdn ({k} players, median of {} / \
                             {} runs)",
                            ours.len(),
                            tuned.len()
                        ),
                        ours_total,
                        median(tuned.iter().map(total).collect()),
                        "% of a core",
                    );
                }
                if !runs.is_empty() {
                    let list = |v: &[&Report]| {
                        v.iter()
                            .map(|r| f2(total(r)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let _ = write!(
                        repeats,
                        "{k} players: livecdn {}; nginx-rtmp {}",
                        list(&ours),
                        list(&theirs)
                    );
                    if !tuned.is_empty() {
                        let _ =
                            write!(repeats, "; nginx-rtmp at chunk_size 60000 {}", list(&tuned));
                    }
                    repeats.push_str(". ");
                }
            }
            row(
                &mut o,
                format!("edge RSS per player ({max_n} players)"),
                rss_per_player(am),
                rss_per_player(bm),
                "KiB",
            );
            row(
                &mut o,
                format!("latency p50 ({n} players)"),
                a.latency_ms.p50,
                b.latency_ms.p50,
                "ms",
            );
            row(
                &mut o,
                format!("latency p99 ({n} players)"),
                a.latency_ms.p99,
                b.latency_ms.p99,
                "ms",
            );
            row(
                &mut o,
                format!("first frame p50 ({n} players, stream already on the edge)"),
                a.ttff_ms.p50,
                b.ttff_ms.p50,
                "ms",
            );
            row(
                &mut o,
                format!("first frame p99 ({n} players, stream already on the edge)"),
                a.ttff_ms.p99,
                b.ttff_ms.p99,
                "ms",
            );
            if let (Some(c), Some(d)) = (res.get("cold-ours"), res.get("cold-nginx")) {
                row(
                    &mut o,
                    "first frame p50, cold edge (pull on first play)".into(),
                    c.ttff_ms.p50,
                    d.ttff_ms.p50,
                    "ms",
                );
                row(
                    &mut o,
                    "first frame p99, cold edge".into(),
                    c.ttff_ms.p99,
                    d.ttff_ms.p99,
                    "ms",
                );
            }
            let _ = writeln!(
                o,
                "| players whose first video frame is a keyframe ({n} players) | {} | {} | |",
                pct(a.first_frame_keyframe_share),
                pct(b.first_frame_keyframe_share)
            );
            let _ = writeln!(
                o,
                "| {max_n} players: ok / started, edge CPU, latency p99 | {}/{}, {} %, {} ms | {}/{}, {} %, {} ms | |",
                am.players.ok,
                am.players.started,
                f1(edge_cpu(am)),
                f1(am.latency_ms.p99),
                bm.players.ok,
                bm.players.started,
                f1(edge_cpu(bm)),
                f1(bm.latency_ms.p99),
            );
            if let (Some(s), Some(t)) = (res.get("stall-ours"), res.get("stall-nginx")) {
                let _ = writeln!(
                    o,
                    "| one stalled player among {}: others ok, latency p99, stalled one closed by the server | {}/{}, {} ms, {} | {}/{}, {} ms, {} | |",
                    s.config.players,
                    s.players.ok,
                    s.players.started,
                    f1(s.latency_ms.p99),
                    stall_fate(s),
                    t.players.ok,
                    t.players.started,
                    f1(t.latency_ms.p99),
                    stall_fate(t),
                );
            }
            let _ = writeln!(o);
            if !repeats.is_empty() {
                let _ = writeln!(
                    o,
                    "Edge CPU per delivered Gbit/s (incl. softirq, % of a core) in every run, in \
                     the order run, the servers alternating: {}The medians above smooth out \
                     this shared machine's drift; the other rows come from the first run.\n",
                    repeats
                );
            }
        }
    } else if sizes_ours.is_empty() {
        // A run of other scenarios only (e.g. SCENARIOS=hls): no RTMP headline.
        o.truncate(headline_at);
    } else {
        let _ = writeln!(o, "(no fan-out run against both servers)\n");
    }
    if let (Some(w1), Some(w2)) = (
        res.runs
            .iter()
            .find(|(k, _)| k.starts_with("workers-ours-") && k.ends_with("-1")),
        res.runs
            .iter()
            .find(|(k, _)| k.starts_with("workers-ours-") && k.ends_with("-2")),
    ) {
        let (a, b) = (w1.1, w2.1);
        let _ = writeln!(
            o,
            "livecdn edge with 1 vs 2 runtime worker threads at {} players (edge free to use both \
             cores): ok {}/{} vs {}/{}, edge CPU {} % vs {} %, latency p99 {} ms vs {} ms.\n",
            a.config.players,
            a.players.ok,
            a.players.started,
            b.players.ok,
            b.players.started,
            f1(edge_cpu(a)),
            f1(edge_cpu(b)),
            f1(a.latency_ms.p99),
            f1(b.latency_ms.p99),
        );
    }

    targets::render(&mut o, res);

    // Machine.
    let _ = writeln!(o, "## Machine and versions\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    for (k, label) in [
        ("nproc", "CPUs (nproc)"),
        ("cpu_model", "CPU model"),
        ("virtualization", "hypervisor"),
        ("kernel", "kernel"),
        ("ram", "RAM"),
        ("rustc", "rustc"),
        ("livecdn", "livecdn git rev"),
        ("nginx", "nginx"),
        ("nginx_rtmp", "libnginx-mod-rtmp (Debian)"),
        ("etcd", "etcd"),
        ("ulimit_n", "open files limit"),
    ] {
        let _ = writeln!(o, "| {label} | {} |", m(k));
    }
    let _ = writeln!(o);

    // Method.
    let _ = writeln!(o, "## Method\n");
    let _ = writeln!(
        o,
        "- **Clusters.** livecdn: etcd, one `origin`, one `edge --etcd` (release build, default \
         settings). nginx-rtmp: an origin (`live on`) and an edge (`live on; pull \
         rtmp://origin/live`), one worker each (`worker_processes 1`, `daemon off`), \
         everything else default (so `chunk_size` is nginx-rtmp's 4096; livecdn's players get \
         60000). At the repeated fan-out sizes an nginx-rtmp with `chunk_size 60000` runs too \
         (it costs nginx-rtmp less CPU), and the headline gives both. All on 127.0.0.1; \
         servers are restarted for every run.\n\
         - **CPU pinning.** This machine has {} CPUs and the load generator needs one of them. \
         Servers (etcd, origins, edges) run with `taskset -c {}`, the load generator with \
         `taskset -c {}`, so a server never competes with the load generator and the edge of \
         either server gets exactly one core. livecdn's `#[tokio::main]` runtime sizes itself to \
         the CPUs it may use, so the pinned edge runs one worker thread, like nginx's one worker. \
         Only scenario (f) lets the livecdn edge use both cores (and then competes with the load \
         generator, whose CPU use is in every table).\n\
         - **Stream.** Synthetic H.264 + AAC from `loadgen` itself: `--bitrate {}` in total ({} fps, \
         keyframe every {} frames, keyframes 5x the size of inter frames, 64 kbit/s of AAC at \
         ~43 frames/s), a real AVC and AAC sequence header, FLV-valid AVC NAL unit framing. \
         Every video frame carries its send instant (ns, monotonic clock) after the NAL header.\n\
         - **Players.** `loadgen` runs every player in one process on a tokio runtime: real \
         RTMP clients (the project's handshake, connect/createStream/play, acknowledgements; \
         chunk headers parsed, payloads skipped) and HTTP/1.1 HTTP-FLV clients (chunked \
         transfer decoded). Players start at 500 per second; measuring starts {} s after the \
         last one started and lasts {} s.\n\
         - **Figures.** *latency*: receive instant minus the embedded send instant, every video \
         frame of every player in the window (publisher -> origin -> edge -> player, plus the \
         load generator's own scheduling delay). *first frame*: TCP connect start to the first \
         coded video frame. *keyframe first*: players whose first coded video frame was a \
         keyframe. *ok*: still playing at the end, >= 90% of the published frame rate through \
         the window and no gap over 1 s. *edge process CPU %*: utime+stime of the edge from \
         /proc/PID/stat over the window (100% = one core). *edge CPU % incl. softirq*: that plus the CPU of the \
         kernel's softirq threads (`ksoftirqd/N`) of the servers' CPU: on loopback the \
         receiving half of every TCP segment the edge sends is processed in softirq on the \
         edge's CPU, inline in the edge's syscalls (already in its process time) or, under \
         load, deferred to ksoftirqd (charged to no server process). The headline gives both. \
         *CPU % of other programs*: machine busy time (/proc/stat) that no measured process \
         (servers, ksoftirqd, load generator) accounts for; `run.sh` waits for a quiet machine \
         before each run and repeats a run when this exceeds 15% (see below). *per Gbit/s*: divided by \
         the Gbit/s the players received. *RSS per player*: (edge VmRSS at the end of the \
         window - VmRSS before the first player) / players. For nginx-rtmp the edge process is its worker \
         (its master is idle and not counted).\n\
         - **Caveats.** 2 CPUs: the load generator's CPU use is in each table; where it nears \
         100% the figures are limited by the load generator, not the server. Loopback has no \
         NIC, no loss and a 64 KiB MTU. nginx-rtmp has no GOP cache: a player waits for the \
         next keyframe (up to one GOP, {} frames), and `wait_key` is off by default, so its \
         first frame may not be a keyframe. nginx-rtmp has no HTTP-FLV, so HTTP-FLV runs are \
         livecdn only.\n",
        m("nproc"),
        m("server_cpus"),
        m("loadgen_cpus"),
        m("bitrate"),
        m("fps"),
        m("gop"),
        m("warmup_s"),
        m("window_s"),
        m("gop"),
    );

    // (a)
    let section_at = o.len();
    let section_has_runs = res.runs.keys().any(|k| k.starts_with("fanout-"));
    let _ = writeln!(o, "## (a) Fan-out: one stream, one edge, N players\n");
    let _ = writeln!(o, "{FANOUT_HEAD}");
    for n in &sizes_ours {
        for name in [
            format!("fanout-ours-rtmp-{n}"),
            format!("fanout-nginx-rtmp-{n}"),
            format!("fanout-ours-flv-{n}"),
        ] {
            if let Some(r) = res.get(&name) {
                fanout_row(&mut o, res, &name, r);
            }
        }
    }
    for n in res.sizes("fanout-ours-flv-") {
        if !sizes_ours.contains(&n) {
            let name = format!("fanout-ours-flv-{n}");
            if let Some(r) = res.get(&name) {
                fanout_row(&mut o, res, &name, r);
            }
        }
    }
    let _ = writeln!(o);

    if !section_has_runs {
        o.truncate(section_at);
    }

    // (b)
    let section_at = o.len();
    let section_has_runs = res.runs.keys().any(|k| k.starts_with("relay-"));
    let _ = writeln!(
        o,
        "## (b) Relay-added latency: the same stream on the origin and on the edge\n"
    );
    let _ = writeln!(
        o,
        "| server | played from | players | ok | latency ms p50 / p95 / p99 / max | first frame ms p50 / p99 | keyframe first |\n|---|---|---|---|---|---|---|"
    );
    for name in ["relay-ours", "relay-nginx"] {
        if let Some(r) = res.get(name) {
            for (i, g) in r.groups.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} / {} / {} / {} | {} / {} | {} |",
                    server_name(name),
                    if i == 0 { "origin" } else { "edge" },
                    g.players,
                    g.ok,
                    f1(g.latency_ms.p50),
                    f1(g.latency_ms.p95),
                    f1(g.latency_ms.p99),
                    f1(g.latency_ms.max),
                    f1(g.ttff_ms.p50),
                    f1(g.ttff_ms.p99),
                    pct(g.first_frame_keyframe_share),
                );
            }
            if let [a, b] = &r.groups[..] {
                let _ = writeln!(
                    o,
                    "| {} | edge - origin | | | {} / {} / {} ms added | | |",
                    server_name(name),
                    f1(b.latency_ms.p50 - a.latency_ms.p50),
                    f1(b.latency_ms.p95 - a.latency_ms.p95),
                    f1(b.latency_ms.p99 - a.latency_ms.p99),
                );
            }
        }
    }
    let _ = writeln!(o);

    if !section_has_runs {
        o.truncate(section_at);
    }

    // (c)
    let section_at = o.len();
    let section_has_runs = ["cold-ours", "cold-nginx"]
        .iter()
        .any(|k| res.get(k).is_some());
    let _ = writeln!(
        o,
        "## (c) Cold start: the first player of a stream on an edge that does not pull it yet\n"
    );
    let _ = writeln!(
        o,
        "One player per stream, each stream already published to the origin for 3 s; the \
         edge must find the owner (livecdn: etcd lookup; nginx-rtmp: static `pull`), connect \
         upstream, and get a keyframe.\n"
    );
    let _ = writeln!(
        o,
        "| server | streams = players | ok | first frame ms p50 / p95 / p99 / max | keyframe first | errors |\n|---|---|---|---|---|---|"
    );
    for name in ["cold-ours", "cold-nginx"] {
        if let Some(r) = res.get(name) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} / {} / {} / {} | {} | {} |",
                server_name(name),
                r.config.players,
                r.players.ok,
                f1(r.ttff_ms.p50),
                f1(r.ttff_ms.p95),
                f1(r.ttff_ms.p99),
                f1(r.ttff_ms.max),
                pct(r.first_frame_keyframe_share),
                errors(r),
            );
        }
    }
    let _ = writeln!(o);

    if !section_has_runs {
        o.truncate(section_at);
    }

    // (d)
    let section_at = o.len();
    let section_has_runs = ["many-ours", "many-nginx"]
        .iter()
        .any(|k| res.get(k).is_some());
    let _ = writeln!(o, "## (d) Many streams: streams x 5 players on one edge\n");
    let _ = writeln!(
        o,
        "Rounds alternate the servers; the targets table compares medians.\n\n\
         | server | run | streams | players | ok/started | delivered Gbit/s | edge process CPU % | origin process CPU % | edge CPU % incl. softirq | edge process CPU % per Gbit/s | edge RSS MiB | GOP caches' peak MiB | latency ms p50 / p99 / max | first frame ms p50 / p99 | keyframe first | gaps > 1 s | errors | load generator core busy % | CPU % of other programs |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let ours = res.repeats("many-ours");
    let theirs = res.repeats("many-nginx");
    for round in 0..ours.len().max(theirs.len()) {
        for (name, runs) in [("many-ours", &ours), ("many-nginx", &theirs)] {
            let Some(r) = runs.get(round) else {
                continue;
            };
            let gop = many_gop_peak_mib(res, name, round);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} / {} | {} | {} | {} | {} | {} |",
                server_name(name),
                round + 1,
                r.config.streams,
                r.config.players,
                r.players.ok,
                r.players.started,
                f2(r.delivered_gbps),
                f1(edge_cpu(r)),
                proc(r, "origin").map_or("-".into(), |p| f1(p.cpu_pct)),
                f1(edge_total(r, &res.server_cpus)),
                f1(cpu_per_gbps(r)),
                proc(r, "edge").map_or("-".into(), |p| f1(p.rss_mib_end)),
                gop.map_or("-".into(), f1),
                f1(r.latency_ms.p50),
                f1(r.latency_ms.p99),
                f1(r.latency_ms.max),
                f1(r.ttff_ms.p50),
                f1(r.ttff_ms.p99),
                pct(r.first_frame_keyframe_share),
                r.gaps_over_1s,
                errors(r),
                f1(core_busy(r, &res.loadgen_cpus)),
                f1(r.unattributed_cpu_pct),
            );
        }
    }
    let _ = writeln!(
        o,
        "\nThe GOP caches' peak is the edge's own high-water gauge \
         (`livecdn_media_gop_cache_peak_bytes`, polled until the edge stopped): the payload its \
         RSS must hold at least. nginx-rtmp keeps no GOP.\n"
    );

    if !section_has_runs {
        o.truncate(section_at);
    }

    // (e)
    let section_at = o.len();
    let section_has_runs = res.runs.keys().any(|k| k.starts_with("stall-"));
    let _ = writeln!(
        o,
        "## (e) One stalled player among many\n\nThe stalled player plays, then never reads \
         again; the window is {} s. After it, the stalled player drains its socket for 3 s: \
         end of stream or a reset means the server had closed it.\n",
        m("stall_window_s")
    );
    let _ = writeln!(
        o,
        "| server | players (+1 stalled) | ok/started | latency ms p50 / p99 / max | gaps > 1 s | edge RSS MiB before / peak / end | stalled player closed by the server | drained | same load without a stalled player: latency p99, RSS end |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (name, base) in [
        ("stall-ours", "fanout-ours-rtmp-"),
        ("stall-nginx", "fanout-nginx-rtmp-"),
    ] {
        if let Some(r) = res.get(name) {
            let edge = proc(r, "edge");
            let baseline = res.get(&format!("{base}{}", r.config.players));
            let _ = writeln!(
                o,
                "| {} | {} | {}/{} | {} / {} / {} | {} | {} / {} / {} | {} | {} KiB | {} |",
                server_name(name),
                r.config.players,
                r.players.ok,
                r.players.started,
                f1(r.latency_ms.p50),
                f1(r.latency_ms.p99),
                f1(r.latency_ms.max),
                r.gaps_over_1s,
                edge.map_or("-".into(), |p| f1(p.rss_mib_before)),
                edge.map_or("-".into(), |p| f1(p.rss_mib_peak)),
                edge.map_or("-".into(), |p| f1(p.rss_mib_end)),
                stall_fate(r),
                r.stalled.first().map_or(0, |s| s.drained_bytes / 1024),
                baseline.map_or("-".into(), |b| format!(
                    "{} ms, {} MiB",
                    f1(b.latency_ms.p99),
                    proc(b, "edge").map_or("-".into(), |p| f1(p.rss_mib_end))
                )),
            );
        }
    }
    if let Some(t) = res.text("stall-ours-edge-log.txt") {
        let _ = writeln!(
            o,
            "\nWhat the livecdn edge logged about it:\n\n```\n{}```",
            t
        );
    }
    let _ = writeln!(o);

    if !section_has_runs {
        o.truncate(section_at);
    }

    // (f)
    let section_at = o.len();
    let section_has_runs = res.runs.keys().any(|k| k.starts_with("workers-"));
    let _ = writeln!(
        o,
        "## (f) livecdn edge with 1 vs 2 runtime worker threads\n\n`TOKIO_WORKER_THREADS=1` \
         and `=2`, the edge allowed on both CPUs (`taskset -c 0,1`); the load generator stays on \
         CPU {} and the origin and etcd on CPU {}, so the second worker competes with them.\n",
        m("loadgen_cpus"),
        m("server_cpus")
    );
    let _ = writeln!(
        o,
        "| workers | players | ok/started | delivered Gbit/s | edge CPU % | edge threads over 1 %: CPU % each | edge CPU % per Gbit/s | latency ms p50 / p99 / max | first frame ms p50 / p99 | gaps > 1 s | errors | loadgen process CPU % | machine busy % (both CPUs, of one core) | CPU % of other programs |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for w in [1, 2] {
        if let Some((_, r)) = res
            .runs
            .iter()
            .find(|(k, _)| k.starts_with("workers-ours-") && k.ends_with(&format!("-{w}")))
        {
            let _ = writeln!(
                o,
                "| {w} | {} | {}/{} | {} | {} | {} | {} | {} / {} / {} | {} / {} | {} | {} | {} | {} | {} |",
                r.config.players,
                r.players.ok,
                r.players.started,
                f2(r.delivered_gbps),
                f1(edge_cpu(r)),
                edge_threads(r),
                f1(cpu_per_gbps(r)),
                f1(r.latency_ms.p50),
                f1(r.latency_ms.p99),
                f1(r.latency_ms.max),
                f1(r.ttff_ms.p50),
                f1(r.ttff_ms.p99),
                r.gaps_over_1s,
                errors(r),
                f1(r.loadgen.cpu_pct),
                f1(r.machine_cpu_pct),
                f1(r.unattributed_cpu_pct),
            );
        }
    }
    let _ = writeln!(o);

    if !section_has_runs {
        o.truncate(section_at);
    }

    // (g)
    let mut g_title = false;
    for (proto, label) in [("rtmp", "RTMP"), ("flv", "HTTP-FLV")] {
        let Some(sym) = res.text(&format!("profile-{proto}-symbols.txt")) else {
            continue;
        };
        if !g_title {
            g_title = true;
            let _ = writeln!(
                o,
                "## (g) Where the livecdn edge spends its CPU\n\n`perf record -e cpu-clock -g` \
                 on the edge for {} s of a fan-out (software clock sampling: this VM has no \
                 hardware counters). Self time is where the samples landed; \"including callees\" \
                 is the share of samples under a function.\n",
                res.meta("window_s")
                    .parse::<u64>()
                    .map_or(0, |w| w.saturating_sub(2)),
            );
        }
        let prof = res
            .runs
            .iter()
            .find(|(k, _)| k.starts_with(&format!("profile-ours-{proto}-")));
        let _ = writeln!(
            o,
            "### {label}{}\n\nSelf time by shared object:\n\n```\n{}```\n\nSelf time by symbol \
             (top entries):\n\n```\n{sym}```\n",
            prof.map_or(String::new(), |(_, r)| format!(
                ": {} players, {} Gbit/s, edge process CPU {} % ({} % incl. softirq), latency p99 {} ms",
                r.config.players,
                f2(r.delivered_gbps),
                f1(edge_cpu(r)),
                f1(edge_total(r, &res.server_cpus)),
                f1(r.latency_ms.p99)
            )),
            res.text(&format!("profile-{proto}-dso.txt")).unwrap_or_default(),
        );
        if let Some(ch) = res.text(&format!("profile-{proto}-children.txt")) {
            let _ = writeln!(o, "Including callees:\n\n```\n{ch}```\n");
        }
    }

    // (h)
    hls::render(&mut o, res);

    // (i)
    tls::render(&mut o, res);

    // nginx configuration.
    if let (Some(a), Some(b)) = (res.text("nginx-origin.conf"), res.text("nginx-edge.conf")) {
        let _ = writeln!(
            o,
            "## nginx-rtmp configuration\n\nOrigin (generated by `run.sh`):\n\n```nginx\n{a}```\n\nEdge:\n\n```nginx\n{b}```\n"
        );
    }

    // Commands.
    let _ = writeln!(o, "## Exact commands\n");
    let _ = writeln!(
        o,
        "In the order run (ports from `BASE`; temporary directories vary):\n\n```"
    );
    let _ = write!(o, "{}", res.text("commands.txt").unwrap_or_default());
    let _ = writeln!(o, "```\n");
    if let Some(f) = res.text("retries.txt") {
        let _ = writeln!(
            o,
            "## Runs repeated because other programs used the CPU\n\n```\n{f}```\n"
        );
    }
    if let Some(f) = res.text("failures.txt") {
        let _ = writeln!(o, "## Failed runs\n\n```\n{f}```\n");
    }
    o
}

fn stall_fate(r: &Report) -> String {
    match r.stalled.first() {
        None => "-".into(),
        Some(s) if !s.played => format!(
            "never played ({})",
            s.error.clone().unwrap_or_else(|| "?".into())
        ),
        Some(s) => match s.closed_by_server {
            Some(true) => "yes".into(),
            Some(false) => "no".into(),
            None => "unknown".into(),
        },
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let res = Results::load(&args.results)?;
    if res.runs.is_empty() {
        anyhow::bail!("no results in {}", args.results.display());
    }
    let mut md = render(&res);
    for path in &args.tried {
        let log =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        md.push_str(&log);
    }
    if let Some(dir) = args.out.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, md).with_context(|| format!("write {}", args.out.display()))?;
    Ok(())
}

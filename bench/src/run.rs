//! One load run: publishers on their own thread, players on a multi-thread runtime, a warm-up,
//! a measuring window, and the [`Report`] of that window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::hist::{HistSnapshot, Histogram, summarize};
use crate::hls_player::HlsMode;
use crate::player::{
    DONE, Decoder, FAILED, MEASURING, PLAYING, PlayerStats, STALLED, Shared, run_player,
    run_player_failover,
};
use crate::procstat;
use crate::publisher::{PubStats, publish};
use crate::report::{
    DirReport, GroupReport, HlsReport, PlayerCounts, PlayerDetail, ProcReport, PublisherReport,
    Report, RunConfig, StalledReport,
};
use crate::stream::{StreamSpec, epoch, ns_since_epoch};
use crate::target::Target;

/// Everything a run needs (the CLI fills it).
#[derive(Debug, Clone)]
pub struct Config {
    pub label: String,
    pub argv: Vec<String>,
    /// Publish URL template (`{n}`: stream index); none: someone else publishes.
    pub publish: Option<String>,
    /// Where a publisher publishes again when its publish fails (and back, round robin).
    pub publish_backup: Option<String>,
    /// Players play again from their next URL this long after their connection ends (none:
    /// a player that loses its connection has failed).
    pub reconnect: Option<Duration>,
    /// Put every player's figures in the report (`per_player`).
    pub per_player: bool,
    pub streams: usize,
    /// Play URL templates; player i plays stream i % streams from URL (i / streams) % len.
    pub play: Vec<String>,
    pub players: usize,
    /// Extra players (stream 0, first URL) that stop reading once play starts.
    pub stalled: usize,
    pub spec: StreamSpec,
    /// Players started per second.
    pub ramp: f64,
    /// Publishing time before the first player.
    pub lead: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    /// Server processes to measure: (name, pid).
    pub pids: Vec<(String, String)>,
    pub decoder: Decoder,
    pub threads: Option<usize>,
    pub silence: Duration,
    pub connect_timeout: Duration,
    pub hls_mode: HlsMode,
    /// Plain HLS reload interval (none: half the playlist's target duration).
    pub hls_poll: Option<Duration>,
    /// Directories whose size is reported at the end of the window: (name, path).
    pub dirs: Vec<(String, String)>,
    /// PEM bundle `rtmps://` and `https://` players verify the server with (none: any
    /// certificate).
    pub tls_ca: Option<std::path::PathBuf>,
}

struct PidWatch {
    name: String,
    pid: String,
    rss_before: f64,
    cpu_start: f64,
    /// Per thread, to tell one busy thread from work spread over several.
    threads_start: Vec<(String, f64)>,
    peak: f64,
}

/// CPU % of one core of each thread that used at least 1% over the window, busiest first.
fn busy_threads(start: &[(String, f64)], end: &[(String, f64)], window: f64) -> Vec<f64> {
    let mut pct: Vec<f64> = end
        .iter()
        .map(|(tid, t)| {
            let t0 = start
                .iter()
                .find(|(s, _)| s == tid)
                .map_or(0.0, |(_, t0)| *t0);
            (t - t0).max(0.0) / window * 100.0
        })
        .filter(|p| *p >= 1.0)
        .collect();
    pct.sort_by(|a, b| b.total_cmp(a));
    pct
}

/// Runs the load and returns its report.
pub fn run(cfg: Config) -> anyhow::Result<Report> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cfg.threads {
        builder.worker_threads(n.max(1));
    }
    let rt = builder.enable_all().build()?;
    let threads = cfg.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let report = rt.block_on(drive(&cfg, threads))?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(report)
}

fn start_publishers(
    cfg: &Config,
    stats: Arc<Vec<PubStats>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    let Some(url) = cfg.publish.clone() else {
        return Ok(None);
    };
    let urls: Vec<String> = std::iter::once(url)
        .chain(cfg.publish_backup.clone())
        .collect();
    let targets = (0..cfg.streams)
        .map(|n| urls.iter().map(|u| Target::parse(u, n)).collect())
        .collect::<Result<Vec<Vec<_>>, _>>()
        .map_err(anyhow::Error::msg)?;
    let spec = cfg.spec;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = std::thread::Builder::new()
        .name("publishers".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for (i, t) in targets.into_iter().enumerate() {
                    let (stats, stop) = (stats.clone(), stop.clone());
                    tasks.spawn(async move {
                        if let Some(st) = stats.get(i) {
                            publish(t, spec, st, &stop).await;
                        }
                    });
                }
                let ended = async { while tasks.join_next().await.is_some() {} };
                let stopped = async {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    // Give publishers a moment to unpublish cleanly.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                };
                tokio::select! {
                    _ = ended => {}
                    _ = stopped => {}
                }
            });
        })?;
    Ok(Some(handle))
}

async fn drive(cfg: &Config, threads: usize) -> anyhow::Result<Report> {
    epoch();
    if cfg.play.is_empty() {
        anyhow::bail!("no --play URL");
    }
    let streams = cfg.streams.max(1);
    let mut watches: Vec<PidWatch> = cfg
        .pids
        .iter()
        .cloned()
        .chain(procstat::ksoftirqd())
        .map(|(name, pid)| PidWatch {
            name: name.clone(),
            pid: pid.clone(),
            rss_before: procstat::rss_mib(&pid).unwrap_or(0.0),
            cpu_start: 0.0,
            threads_start: Vec::new(),
            peak: 0.0,
        })
        .collect();

    // Publishers first, on their own thread so a busy player runtime cannot delay them.
    let pub_stats: Arc<Vec<PubStats>> = Arc::new(
        (0..if cfg.publish.is_some() { streams } else { 0 })
            .map(|_| PubStats::default())
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let pub_thread = start_publishers(cfg, pub_stats.clone(), stop.clone())?;
    if pub_thread.is_some() {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until
            && pub_stats
                .iter()
                .any(|p| !p.publishing.load(Ordering::Relaxed) && p.error.get().is_none())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(cfg.lead).await;
    }

    // Players: stalled ones first, then the rest at the ramp rate.
    let shared = Arc::new(Shared {
        phase: std::sync::atomic::AtomicU8::new(crate::player::WARMUP),
        connect_timeout: cfg.connect_timeout,
        decoder: cfg.decoder,
        drain: Duration::from_secs(3),
        hls_mode: cfg.hls_mode,
        hls_poll: cfg.hls_poll,
        hls_errors: Default::default(),
        tls: if cfg
            .play
            .iter()
            .any(|u| u.starts_with("rtmps://") || u.starts_with("https://"))
        {
            Some(crate::tls::connector(cfg.tls_ca.as_deref())?)
        } else {
            None
        },
    });
    let hists: Arc<Vec<Histogram>> = Arc::new(cfg.play.iter().map(|_| Histogram::new()).collect());
    let mut plan = Vec::new();
    for _ in 0..cfg.stalled {
        plan.push((0usize, 0usize, true));
    }
    for i in 0..cfg.players {
        plan.push((i % streams, (i / streams) % cfg.play.len(), false));
    }
    let reconnect = cfg.reconnect;
    let mut stats = Vec::with_capacity(plan.len());
    let mut aborts = Vec::with_capacity(plan.len());
    let mut tasks = tokio::task::JoinSet::new();
    let ramp_start = Instant::now();
    for (k, (stream, group, stalled)) in plan.into_iter().enumerate() {
        // Its own URL first, then the others in order (the fallbacks of a reconnecting player).
        let targets = (0..cfg.play.len())
            .map(|k| Target::parse(&cfg.play[(group + k) % cfg.play.len()], stream))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let st = Arc::new(PlayerStats::new(group, stalled));
        stats.push(st.clone());
        let (shared, hists) = (shared.clone(), hists.clone());
        aborts.push(tasks.spawn(async move {
            let Some(h) = hists.get(st.group) else {
                return;
            };
            match reconnect {
                Some(delay) if !st.stalled => {
                    run_player_failover(&shared, &st, h, &targets, delay).await;
                }
                _ => {
                    if let Some(target) = targets.first() {
                        run_player(&shared, &st, h, target).await;
                    }
                }
            }
        }));
        if cfg.ramp > 0.0 {
            let due = ramp_start + Duration::from_secs_f64((k + 1) as f64 / cfg.ramp);
            if due > Instant::now() + Duration::from_millis(5) {
                tokio::time::sleep_until(due.into()).await;
            }
        }
    }

    // The watchdog: a player that received nothing for `silence` fails (cheaper than a timer
    // on every read).
    let watchdog = {
        let (stats, shared) = (stats.clone(), shared.clone());
        let silence = cfg.silence.as_nanos() as u64;
        tokio::spawn(async move {
            while shared.phase.load(Ordering::Relaxed) != DONE {
                let now = ns_since_epoch(Instant::now());
                for (s, abort) in stats.iter().zip(&aborts) {
                    let state = s.state.load(Ordering::Relaxed);
                    if state != FAILED
                        && state != STALLED
                        && now.saturating_sub(s.last_rx_ns.load(Ordering::Relaxed)) > silence
                    {
                        s.fail("silence_timeout".into());
                        abort.abort();
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Warm-up, then the window. RSS is sampled through both for the peak.
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let pids: Vec<String> = watches.iter().map(|w| w.pid.clone()).collect();
        let stop = sampler_stop.clone();
        tokio::spawn(async move {
            let mut peaks = vec![0.0f64; pids.len()];
            while !stop.load(Ordering::Relaxed) {
                for (p, pid) in peaks.iter_mut().zip(&pids) {
                    *p = p.max(procstat::rss_mib(pid).unwrap_or(0.0));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peaks
        })
    };
    tokio::time::sleep(cfg.warmup).await;

    let snap = |stats: &[Arc<PlayerStats>]| -> Vec<(u64, u64, u64)> {
        stats
            .iter()
            .map(|s| {
                (
                    s.bytes.load(Ordering::Relaxed),
                    s.video.load(Ordering::Relaxed),
                    s.reads.load(Ordering::Relaxed),
                )
            })
            .collect()
    };
    // HLS requests: playlists, blocking reloads, segments, parts (all players summed).
    let hls_snap = |stats: &[Arc<PlayerStats>]| -> [u64; 4] {
        let mut v = [0u64; 4];
        for s in stats {
            let h = &s.hls;
            v[0] += h.playlists.load(Ordering::Relaxed);
            v[1] += h.blocking.load(Ordering::Relaxed);
            v[2] += h.segments.load(Ordering::Relaxed);
            v[3] += h.parts.load(Ordering::Relaxed);
        }
        v
    };
    for w in &mut watches {
        w.cpu_start = procstat::cpu_seconds(&w.pid).unwrap_or(0.0);
        w.threads_start = procstat::thread_cpu_seconds(&w.pid);
    }
    let self_cpu_start = procstat::cpu_seconds("self").unwrap_or(0.0);
    let cpus_start = procstat::cpu_times();
    let before = snap(&stats);
    let hls_before = hls_snap(&stats);
    let t0 = Instant::now();
    shared.phase.store(MEASURING, Ordering::Relaxed);
    // For whoever drives a run from outside (tests/tests/chaos.rs waits for this line).
    eprintln!("loadgen: measuring from unix_ms={}", unix_ms(t0));
    tokio::time::sleep(cfg.duration).await;
    let after = snap(&stats);
    let hls_after = hls_snap(&stats);
    let t1 = Instant::now();
    let dirs: Vec<DirReport> = cfg
        .dirs
        .iter()
        .map(|(name, path)| {
            let (bytes, files) = procstat::dir_size(path).unwrap_or((0, 0));
            DirReport {
                name: name.clone(),
                path: path.clone(),
                bytes,
                files,
            }
        })
        .collect();
    let self_cpu_end = procstat::cpu_seconds("self").unwrap_or(0.0);
    let cpus_end = procstat::cpu_times();
    let cpu_end: Vec<f64> = watches
        .iter()
        .map(|w| procstat::cpu_seconds(&w.pid).unwrap_or(0.0))
        .collect();
    let threads_end: Vec<Vec<(String, f64)>> = watches
        .iter()
        .map(|w| procstat::thread_cpu_seconds(&w.pid))
        .collect();
    let rss_end: Vec<f64> = watches
        .iter()
        .map(|w| procstat::rss_mib(&w.pid).unwrap_or(0.0))
        .collect();
    let snapshots: Vec<HistSnapshot> = hists.iter().map(Histogram::snapshot).collect();
    shared.phase.store(DONE, Ordering::Relaxed);
    let window = (t1 - t0).as_secs_f64();
    let end_ns = ns_since_epoch(t1);

    watchdog.abort();
    sampler_stop.store(true, Ordering::Relaxed);
    let peaks = sampler.await.unwrap_or_default();
    for (w, p) in watches.iter_mut().zip(peaks) {
        w.peak = p;
    }

    // Stalled players drain their sockets now (bounded by Shared::drain).
    let drain_until = Instant::now() + shared.drain + Duration::from_millis(500);
    while Instant::now() < drain_until
        && stats.iter().any(|s| {
            s.stalled && s.state.load(Ordering::Relaxed) == STALLED && s.stall.get().is_none()
        })
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = pub_thread {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }

    // The report.
    let fps_target = f64::from(cfg.spec.fps);
    let mut counts = PlayerCounts::default();
    let mut errors = BTreeMap::new();
    let mut all_rate = Vec::new();
    let mut all_fps = Vec::new();
    let mut all_ttff = Vec::new();
    let (mut key_first, mut with_first) = (0u64, 0u64);
    let (mut gaps, mut players_with_gaps) = (0u64, 0u64);
    let mut delivered_bits = 0.0;
    let mut reads = 0u64;
    let mut groups: Vec<GroupAcc> = cfg.play.iter().map(|_| GroupAcc::default()).collect();
    let mut stalled = Vec::new();
    let mut per_player = Vec::new();
    let (mut disconnects, mut players_disconnected, mut max_gap_us) = (0u64, 0u64, 0u64);
    let mut hls = HlsReport::default();
    let mut all_first_playlist = Vec::new();
    for (i, s) in stats.iter().enumerate() {
        let state = s.state.load(Ordering::Relaxed);
        let error = s.error.get().cloned();
        if s.stalled {
            let outcome = s.stall.get();
            stalled.push(StalledReport {
                url: cfg.play[s.group].clone(),
                played: state == STALLED,
                closed_by_server: outcome.map(|o| o.closed_by_server),
                drained_bytes: outcome.map_or(0, |o| o.drained_bytes),
                error,
            });
            continue;
        }
        counts.started += 1;
        let g = &mut groups[s.group];
        g.players += 1;
        let soft_errors = s.hls.errors.load(Ordering::Relaxed);
        match s.hls.mode.load(Ordering::Relaxed) {
            0 => {}
            mode => {
                hls.players += 1;
                if mode == 2 {
                    hls.low_latency += 1;
                } else {
                    hls.plain += 1;
                }
                hls.inits += s.hls.inits.load(Ordering::Relaxed);
                hls.reconnects += s.hls.reconnects.load(Ordering::Relaxed);
            }
        }
        let first_playlist = s.hls.first_playlist_us.load(Ordering::Relaxed);
        if first_playlist != 0 {
            all_first_playlist.push(first_playlist as f64 / 1000.0);
            g.first_playlist.push(first_playlist as f64 / 1000.0);
        }
        // Media that arrives in bursts (HLS segments and parts) gets that much slack.
        let burst_s = s.burst_us.load(Ordering::Relaxed) as f64 / 1e6;
        if let Some(e) = &error {
            *errors.entry(e.clone()).or_insert(0u64) += 1;
        }
        if state == FAILED {
            counts.failed += 1;
        }
        let bytes = after[i].0.saturating_sub(before[i].0);
        delivered_bits += bytes as f64 * 8.0;
        reads += after[i].2.saturating_sub(before[i].2);
        let video = after[i].1.saturating_sub(before[i].1);
        let ttff = s.ttff_us.load(Ordering::Relaxed);
        let first = s.first_key.load(Ordering::Relaxed);
        if first != 0 {
            with_first += 1;
            g.with_first += 1;
            if first == 1 {
                key_first += 1;
                g.key_first += 1;
            }
            all_ttff.push(ttff as f64 / 1000.0);
            g.ttff.push(ttff as f64 / 1000.0);
        }
        let mut player_gaps = s.gaps.load(Ordering::Relaxed);
        let last = s.last_video_ns.load(Ordering::Relaxed);
        if first != 0
            && state != FAILED
            && end_ns.saturating_sub(last) > 1_000_000_000 + (burst_s * 1e9) as u64
        {
            // Stuck at the end of the window: a gap that has not closed yet.
            player_gaps += 1;
        }
        gaps += player_gaps;
        g.gaps += player_gaps;
        if player_gaps > 0 {
            players_with_gaps += 1;
        }
        let player_disconnects = s.disconnects.load(Ordering::Relaxed);
        disconnects += player_disconnects;
        players_disconnected += u64::from(player_disconnects > 0);
        let player_max_gap = s.max_gap_us.load(Ordering::Relaxed);
        max_gap_us = max_gap_us.max(player_max_gap);
        if cfg.per_player {
            let at_unix = |ns: u64| (ns != 0).then(|| unix_ms(epoch() + Duration::from_nanos(ns)));
            per_player.push(PlayerDetail {
                group: s.group,
                disconnects: player_disconnects,
                max_gap_ms: player_max_gap as f64 / 1000.0,
                max_gap_end_unix_ms: at_unix(s.max_gap_end_ns.load(Ordering::Relaxed)),
                last_video_unix_ms: at_unix(last),
                video_frames: after[i].1.saturating_sub(before[i].1),
                failed: state == FAILED,
                error: error.clone(),
            });
        }
        if first == 0 {
            continue;
        }
        counts.playing += 1;
        let rate = bytes as f64 * 8.0 / window / 1000.0;
        let fps = video as f64 / window;
        all_rate.push(rate);
        all_fps.push(fps);
        g.rate.push(rate);
        g.fps.push(fps);
        if state == PLAYING
            && video as f64 >= 0.9 * fps_target * (window - burst_s).max(0.0)
            && player_gaps == 0
            && soft_errors == 0
            && player_disconnects == 0
        {
            counts.ok += 1;
            g.ok += 1;
        }
    }
    let mut total_latency = HistSnapshot::default();
    for s in &snapshots {
        total_latency.merge(s);
    }
    let share = |k: u64, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    let group_reports = groups
        .iter_mut()
        .zip(&snapshots)
        .zip(&cfg.play)
        .map(|((g, h), url)| GroupReport {
            url: url.clone(),
            players: g.players,
            ok: g.ok,
            bitrate_kbps: summarize(&mut g.rate),
            fps: summarize(&mut g.fps),
            latency_ms: h.summary_ms(),
            ttff_ms: summarize(&mut g.ttff),
            first_frame_keyframe_share: share(g.key_first, g.with_first),
            gaps_over_1s: g.gaps,
            first_playlist_ms: summarize(&mut g.first_playlist),
        })
        .collect();
    let processes = watches
        .iter()
        .zip(cpu_end.iter().zip(&rss_end).zip(&threads_end))
        .map(|(w, ((cpu, rss), threads))| ProcReport {
            name: w.name.clone(),
            pid: w.pid.clone(),
            cpu_pct: (cpu - w.cpu_start).max(0.0) / window * 100.0,
            threads_cpu_pct: busy_threads(&w.threads_start, threads, window),
            rss_mib_before: w.rss_before,
            rss_mib_end: *rss,
            rss_mib_peak: w.peak.max(*rss),
        })
        .collect();
    let self_rss = procstat::rss_mib("self").unwrap_or(0.0);
    let mut pub_errors = BTreeMap::new();
    for p in pub_stats.iter() {
        if let Some(e) = p.error.get() {
            *pub_errors.entry(e.clone()).or_insert(0u64) += 1;
        }
    }
    let mut report = Report {
        label: cfg.label.clone(),
        argv: cfg.argv.clone(),
        config: RunConfig {
            publish: cfg.publish.clone(),
            play: cfg.play.clone(),
            streams,
            players: cfg.players,
            stalled: cfg.stalled,
            bitrate_kbps: cfg.spec.bitrate / 1000,
            fps: cfg.spec.fps,
            gop: cfg.spec.gop,
            warmup_s: cfg.warmup.as_secs_f64(),
            duration_s: cfg.duration.as_secs_f64(),
            ramp_per_s: cfg.ramp,
            decoder: match cfg.decoder {
                Decoder::Lean => "lean".into(),
                Decoder::Session => "session".into(),
            },
            threads,
            hls_mode: format!("{:?}", cfg.hls_mode).to_lowercase(),
            hls_poll_s: cfg.hls_poll.map(|d| d.as_secs_f64()),
        },
        window_s: window,
        players: counts,
        bitrate_kbps: summarize(&mut all_rate),
        fps: summarize(&mut all_fps),
        delivered_gbps: delivered_bits / window / 1e9,
        reads_per_s: reads as f64 / window,
        bytes_per_read: if reads == 0 {
            0.0
        } else {
            delivered_bits / 8.0 / reads as f64
        },
        latency_ms: total_latency.summary_ms(),
        ttff_ms: summarize(&mut all_ttff),
        first_frame_keyframe_share: share(key_first, with_first),
        gaps_over_1s: gaps,
        players_with_gaps,
        max_gap_ms: max_gap_us as f64 / 1000.0,
        disconnects,
        players_disconnected,
        window_unix_ms: [unix_ms(t0), unix_ms(t1)],
        per_player,
        errors,
        groups: group_reports,
        stalled,
        processes,
        loadgen: ProcReport {
            name: "loadgen".into(),
            pid: std::process::id().to_string(),
            cpu_pct: (self_cpu_end - self_cpu_start).max(0.0) / window * 100.0,
            threads_cpu_pct: Vec::new(),
            rss_mib_before: 0.0,
            rss_mib_end: self_rss,
            rss_mib_peak: self_rss,
        },
        unattributed_cpu_pct: 0.0,
        machine_cpu_pct: cpus_end
            .first()
            .zip(cpus_start.first())
            .map_or(0.0, |(e, s)| (e.0 - s.0).max(0.0) / window * 100.0),
        cpu_busy_pct: cpus_end
            .iter()
            .zip(&cpus_start)
            .skip(1)
            .map(|(e, s)| {
                let total = e.1 - s.1;
                if total > 0.0 {
                    (e.0 - s.0).max(0.0) / total * 100.0
                } else {
                    0.0
                }
            })
            .collect(),
        publishers: PublisherReport {
            started: pub_stats.len(),
            publishing: pub_stats
                .iter()
                .filter(|p| p.publishing.load(Ordering::Relaxed))
                .count(),
            video_frames: pub_stats
                .iter()
                .map(|p| p.video_frames.load(Ordering::Relaxed))
                .sum(),
            bytes: pub_stats
                .iter()
                .map(|p| p.bytes.load(Ordering::Relaxed))
                .sum(),
            errors: pub_errors,
            reconnects: pub_stats
                .iter()
                .map(|p| p.reconnects.load(Ordering::Relaxed))
                .sum(),
        },
        hls: (hls.players > 0).then(|| {
            let rate = |i: usize| hls_after[i].saturating_sub(hls_before[i]) as f64 / window;
            HlsReport {
                playlists_per_s: rate(0),
                blocking_reloads_per_s: rate(1),
                segments_per_s: rate(2),
                parts_per_s: rate(3),
                errors: shared
                    .hls_errors
                    .lock()
                    .map(|m| m.clone())
                    .unwrap_or_default(),
                first_playlist_ms: summarize(&mut all_first_playlist),
                ..hls
            }
        }),
        dirs,
    };
    let known: f64 =
        report.processes.iter().map(|p| p.cpu_pct).sum::<f64>() + report.loadgen.cpu_pct;
    report.unattributed_cpu_pct = (report.machine_cpu_pct - known).max(0.0);
    Ok(report)
}

/// `at` as milliseconds since the Unix epoch (the wall clock an outside driver shares).
fn unix_ms(at: Instant) -> u64 {
    let now = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let wall = if at <= now {
        wall.saturating_sub(now - at)
    } else {
        wall + (at - now)
    };
    wall.as_millis() as u64
}

#[derive(Default)]
struct GroupAcc {
    players: usize,
    ok: usize,
    rate: Vec<f64>,
    fps: Vec<f64>,
    ttff: Vec<f64>,
    key_first: u64,
    with_first: u64,
    gaps: u64,
    first_playlist: Vec<f64>,
}

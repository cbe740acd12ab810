//! The load generator's result: JSON (serde) and a plain-text table.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::hist::Summary;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    /// The exact command line.
    pub argv: Vec<String>,
    pub config: RunConfig,
    /// Length of the measuring window, seconds.
    pub window_s: f64,
    pub players: PlayerCounts,
    /// Per player, over players that received video (stalled players excluded).
    pub bitrate_kbps: Summary,
    pub fps: Summary,
    /// Sum over all players.
    pub delivered_gbps: f64,
    /// Player socket reads that returned data, per second, all players (load generator cost).
    #[serde(default)]
    pub reads_per_s: f64,
    #[serde(default)]
    pub bytes_per_read: f64,
    /// Receive instant minus the send instant embedded in each video frame, in the window.
    pub latency_ms: Summary,
    /// Connect start to the first coded video frame, per player.
    pub ttff_ms: Summary,
    /// Share of players (with a first frame) whose first coded video frame was a keyframe.
    pub first_frame_keyframe_share: f64,
    /// Gaps of more than 1 s between video frames in the window (and players stuck at its
    /// end), summed over players.
    pub gaps_over_1s: u64,
    pub players_with_gaps: u64,
    /// The longest gap between two video frames of one player in the window (across its
    /// reconnections), ms.
    #[serde(default)]
    pub max_gap_ms: f64,
    /// Player connections that ended or failed before the end of the run (with
    /// `--reconnect`, each is followed by a new play from the player's next URL).
    #[serde(default)]
    pub disconnects: u64,
    /// Players with at least one disconnect.
    #[serde(default)]
    pub players_disconnected: u64,
    /// Start and end of the window, ms since the Unix epoch (to place outside events in it).
    #[serde(default)]
    pub window_unix_ms: [u64; 2],
    /// Every player's figures (with `--per-player`; stalled players excluded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_player: Vec<PlayerDetail>,
    pub errors: BTreeMap<String, u64>,
    pub groups: Vec<GroupReport>,
    pub stalled: Vec<StalledReport>,
    pub processes: Vec<ProcReport>,
    pub loadgen: ProcReport,
    /// Busy CPU of the whole machine over the window, percent of one core (all CPUs summed):
    /// what is not servers + loadgen is someone else.
    #[serde(default)]
    pub machine_cpu_pct: f64,
    /// Machine busy time not in any measured process (servers, ksoftirqd, the load
    /// generator): interrupts, and other programs competing with the benchmark.
    #[serde(default)]
    pub unattributed_cpu_pct: f64,
    /// Busy share of each CPU over the window (cpu0, cpu1, ...), percent; includes interrupt
    /// and softirq time (loopback TCP delivery) that no process is charged for.
    #[serde(default)]
    pub cpu_busy_pct: Vec<f64>,
    pub publishers: PublisherReport,
    /// HLS players' figures (absent when no player played HLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls: Option<HlsReport>,
    /// Sizes of the directories given with `--du`, at the end of the window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirReport>,
}

/// What the HLS players did. Rates are over the window, all HLS players together.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HlsReport {
    pub players: usize,
    /// Players that followed the playlist with parts and blocking reloads.
    pub low_latency: usize,
    /// Players that fetched whole segments.
    pub plain: usize,
    pub playlists_per_s: f64,
    /// Playlist requests with `_HLS_msn` (blocking reloads), per second.
    pub blocking_reloads_per_s: f64,
    pub segments_per_s: f64,
    pub parts_per_s: f64,
    /// Init segments fetched over the whole run.
    pub inits: u64,
    /// Failed requests the players carried on after, whole run, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Connections reopened after the server closed a keep-alive connection, whole run.
    pub reconnects: u64,
    /// Player start to the first playlist with something to play (a segment, or a part).
    pub first_playlist_ms: Summary,
}

/// A directory's size (e.g. nginx-rtmp's HLS fragments on tmpfs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DirReport {
    pub name: String,
    pub path: String,
    pub bytes: u64,
    pub files: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunConfig {
    pub publish: Option<String>,
    pub play: Vec<String>,
    pub streams: usize,
    pub players: usize,
    pub stalled: usize,
    pub bitrate_kbps: u64,
    pub fps: u32,
    pub gop: u32,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub ramp_per_s: f64,
    pub decoder: String,
    pub threads: usize,
    #[serde(default)]
    pub hls_mode: String,
    /// Plain HLS reload interval, seconds (none: half the target duration).
    #[serde(default)]
    pub hls_poll_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlayerCounts {
    pub started: usize,
    /// Playing at the end of the window, first frame received, video at >= 90% of the
    /// published frame rate through the window, no gap over 1 s, never disconnected.
    pub ok: usize,
    /// Received video (whatever the rate).
    pub playing: usize,
    pub failed: usize,
}

/// The players of one play URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupReport {
    pub url: String,
    pub players: usize,
    pub ok: usize,
    pub bitrate_kbps: Summary,
    pub fps: Summary,
    pub latency_ms: Summary,
    pub ttff_ms: Summary,
    pub first_frame_keyframe_share: f64,
    pub gaps_over_1s: u64,
    /// HLS players: start to the first playable playlist.
    #[serde(default)]
    pub first_playlist_ms: Summary,
}

/// One player's figures (`--per-player`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlayerDetail {
    /// Index of its first play URL.
    pub group: usize,
    pub disconnects: u64,
    /// Its longest gap between video frames in the window, ms.
    pub max_gap_ms: f64,
    /// When the frame that ended that gap arrived, ms since the Unix epoch.
    pub max_gap_end_unix_ms: Option<u64>,
    /// When its last video frame arrived, ms since the Unix epoch.
    pub last_video_unix_ms: Option<u64>,
    /// Video frames received in the window.
    pub video_frames: u64,
    pub failed: bool,
    /// Why it failed, or why its first connection ended.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StalledReport {
    pub url: String,
    /// Reached play start (then stopped reading).
    pub played: bool,
    pub closed_by_server: Option<bool>,
    pub drained_bytes: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcReport {
    pub name: String,
    pub pid: String,
    /// CPU time over the window / window length, percent of one core.
    pub cpu_pct: f64,
    /// The same per thread, for threads over 1%, busiest first.
    #[serde(default)]
    pub threads_cpu_pct: Vec<f64>,
    /// Before any player connected.
    pub rss_mib_before: f64,
    pub rss_mib_end: f64,
    pub rss_mib_peak: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PublisherReport {
    pub started: usize,
    pub publishing: usize,
    pub video_frames: u64,
    pub bytes: u64,
    pub errors: BTreeMap<String, u64>,
    /// Publishes started again after a failure (on the backup URL, round robin).
    #[serde(default)]
    pub reconnects: u64,
}

fn summary_row(out: &mut String, name: &str, s: &Summary, unit: &str) {
    let _ = writeln!(
        out,
        "  {name:<22} n={:<8} mean={:>9.1} p50={:>9.1} p95={:>9.1} p99={:>9.1} max={:>9.1} {unit}",
        s.n, s.mean, s.p50, s.p95, s.p99, s.max
    );
}

impl Report {
    /// A human-readable table of the figures.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let c = &self.config;
        let _ = writeln!(
            o,
            "== {} ==\n  {} players (+{} stalled) over {} stream(s), {} kbit/s {} fps gop {}, window {:.1} s, {} decoder, {} thread(s)",
            if self.label.is_empty() {
                "loadgen"
            } else {
                &self.label
            },
            c.players,
            c.stalled,
            c.streams,
            c.bitrate_kbps,
            c.fps,
            c.gop,
            self.window_s,
            c.decoder,
            c.threads,
        );
        let p = &self.players;
        let _ = writeln!(
            o,
            "  players: started {} ok {} playing {} failed {}; delivered {:.3} Gbit/s in {:.0} reads/s ({:.0} bytes per read)",
            p.started,
            p.ok,
            p.playing,
            p.failed,
            self.delivered_gbps,
            self.reads_per_s,
            self.bytes_per_read
        );
        summary_row(&mut o, "bitrate per player", &self.bitrate_kbps, "kbit/s");
        summary_row(&mut o, "fps per player", &self.fps, "fps");
        summary_row(&mut o, "latency", &self.latency_ms, "ms");
        summary_row(&mut o, "time to first frame", &self.ttff_ms, "ms");
        let _ = writeln!(
            o,
            "  first frame keyframe: {:.1}%   gaps > 1 s: {} (in {} players), longest {:.0} ms   disconnects: {} (in {} players)",
            self.first_frame_keyframe_share * 100.0,
            self.gaps_over_1s,
            self.players_with_gaps,
            self.max_gap_ms,
            self.disconnects,
            self.players_disconnected
        );
        if !self.errors.is_empty() {
            let _ = writeln!(o, "  errors: {:?}", self.errors);
        }
        if let Some(h) = &self.hls {
            let _ = writeln!(
                o,
                "  hls: {} players ({} LL-HLS, {} plain); per second: {:.1} playlists ({:.1} blocking), {:.1} segments, {:.1} parts; {} inits, {} reconnects, errors {:?}",
                h.players,
                h.low_latency,
                h.plain,
                h.playlists_per_s,
                h.blocking_reloads_per_s,
                h.segments_per_s,
                h.parts_per_s,
                h.inits,
                h.reconnects,
                h.errors
            );
            summary_row(&mut o, "first playlist", &h.first_playlist_ms, "ms");
        }
        for d in &self.dirs {
            let _ = writeln!(
                o,
                "  dir {} [{}]: {:.1} MiB in {} files",
                d.name,
                d.path,
                d.bytes as f64 / 1048576.0,
                d.files
            );
        }
        if self.groups.len() > 1 {
            for g in &self.groups {
                let _ = writeln!(
                    o,
                    "  [{}] players {} ok {}: latency p50 {:.1} p99 {:.1} ms, first frame p50 {:.1} p99 {:.1} ms, keyframe-first {:.0}%",
                    g.url,
                    g.players,
                    g.ok,
                    g.latency_ms.p50,
                    g.latency_ms.p99,
                    g.ttff_ms.p50,
                    g.ttff_ms.p99,
                    g.first_frame_keyframe_share * 100.0
                );
            }
        }
        for s in &self.stalled {
            let _ = writeln!(
                o,
                "  stalled player [{}]: played {} closed by server {:?} drained {} bytes{}",
                s.url,
                s.played,
                s.closed_by_server,
                s.drained_bytes,
                s.error
                    .as_ref()
                    .map(|e| format!(" error {e}"))
                    .unwrap_or_default()
            );
        }
        for pr in self
            .processes
            .iter()
            .filter(|p| !p.name.starts_with("ksoftirqd/") || p.cpu_pct >= 0.5)
            .chain(std::iter::once(&self.loadgen))
        {
            let _ = writeln!(
                o,
                "  process {:<12} pid {:<8} cpu {:>6.1}%  rss {:>8.1} MiB (before {:.1}, peak {:.1})",
                pr.name, pr.pid, pr.cpu_pct, pr.rss_mib_end, pr.rss_mib_before, pr.rss_mib_peak
            );
            if pr.threads_cpu_pct.len() > 1 {
                let t: Vec<String> = pr
                    .threads_cpu_pct
                    .iter()
                    .map(|p| format!("{p:.1}"))
                    .collect();
                let _ = writeln!(o, "    threads over 1% of a core: {} %", t.join(" / "));
            }
        }
        let _ = writeln!(
            o,
            "  machine busy: {:.1}% of one core ({:.1}% in no measured process); per CPU: {}",
            self.machine_cpu_pct,
            self.unattributed_cpu_pct,
            self.cpu_busy_pct
                .iter()
                .enumerate()
                .map(|(i, b)| format!("cpu{i} {b:.1}%"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let pb = &self.publishers;
        let _ = writeln!(
            o,
            "  publishers: {} started, {} publishing, {} video frames sent, {} republished{}",
            pb.started,
            pb.publishing,
            pb.video_frames,
            pb.reconnects,
            if pb.errors.is_empty() {
                String::new()
            } else {
                format!(", errors {:?}", pb.errors)
            }
        );
        o
    }
}

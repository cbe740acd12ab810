//! `loadgen`: publishes a synthetic stream and plays it with many players, then prints a table
//! and (with `--json`) writes the report. See `loadgen --help` and bench/README.md.

use std::time::Duration;

use anyhow::Context;
use bench::hls_player::HlsMode;
use bench::player::Decoder;
use bench::run::{Config, run};
use bench::stream::StreamSpec;
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DecoderArg {
    /// Project handshake and commands, media through a header-only chunk scanner (cheap).
    Lean,
    /// Everything through common::rtmp::ClientSession (reassembles every message).
    Session,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HlsModeArg {
    /// LL-HLS (parts, blocking reload) when the playlist offers it, else plain.
    Auto,
    /// Whole segments, the playlist reloaded every half target duration.
    Plain,
    /// Parts and blocking playlist reloads.
    Ll,
}

/// Live-streaming load generator (RTMP publish; RTMP, HTTP-FLV and HLS play).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Args {
    /// Publish URL, rtmp://host:port/app/name; `{n}` is replaced by the stream index.
    /// Without it the stream must already be published (no latency is measured then).
    #[arg(long)]
    publish: Option<String>,
    /// Backup publish URL: a publish that fails is started again there (and back to
    /// `--publish` if that fails too), the stream's timestamps continuing, as an encoder
    /// with a backup URL does.
    #[arg(long, requires = "publish")]
    publish_backup: Option<String>,
    /// Players whose connection ends play again after this many seconds from their next
    /// `--play` URL (round robin from their own), as a player given several edges does; the
    /// report counts the disconnects. Without it a player that loses its connection fails.
    #[arg(long)]
    reconnect: Option<f64>,
    /// Put every player's figures (gaps, disconnects, last frame) in the JSON report.
    #[arg(long)]
    per_player: bool,
    /// Play URL (rtmp://host:port/app/name, http://host:port/app/name.flv or an HLS playlist
    /// http://host:port/.../name.m3u8), repeatable; `{n}` is the stream index. Player i plays stream i % streams from URL
    /// (i / streams) % number of URLs.
    #[arg(long, required = true)]
    play: Vec<String>,
    /// Number of streams (publishers).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Number of players.
    #[arg(long, default_value_t = 10)]
    players: usize,
    /// Extra players on stream 0 of the first URL that stop reading once play starts.
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Total bit rate per stream (video + 64 kbit/s audio), e.g. 2000k, 2m, 500000.
    #[arg(long, default_value = "2m", value_parser = parse_rate)]
    bitrate: u64,
    #[arg(long, default_value_t = 25)]
    fps: u32,
    /// Keyframe interval in frames.
    #[arg(long, default_value_t = 50)]
    gop: u32,
    /// Players started per second (0: all at once).
    #[arg(long, default_value_t = 500.0)]
    ramp: f64,
    /// Seconds of publishing before the first player starts.
    #[arg(long, default_value_t = 2.0)]
    lead: f64,
    /// Seconds after the last player started before measuring.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Length of the measuring window, seconds.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// A server process to measure (CPU, RSS): NAME=PID, repeatable.
    #[arg(long = "pid")]
    pids: Vec<String>,
    /// RTMP player implementation.
    #[arg(long, value_enum, default_value_t = DecoderArg::Lean)]
    decoder: DecoderArg,
    /// Player runtime worker threads (default: the CPUs this process may use).
    #[arg(long)]
    threads: Option<usize>,
    /// A player receiving nothing this long fails (silence_timeout), seconds.
    #[arg(long, default_value_t = 10.0)]
    silence_timeout: f64,
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// How HLS players follow a playlist.
    #[arg(long, value_enum, default_value_t = HlsModeArg::Auto)]
    hls_mode: HlsModeArg,
    /// Plain HLS clients reload the playlist this often, seconds (default: half the
    /// playlist's target duration).
    #[arg(long)]
    hls_poll: Option<f64>,
    /// A directory whose size to report at the end of the window: NAME=PATH, repeatable.
    #[arg(long = "du")]
    dirs: Vec<String>,
    /// PEM CA bundle `rtmps://` and `https://` players verify the server against (default:
    /// they accept any certificate).
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Name of this run in the report.
    #[arg(long, default_value = "")]
    label: String,
    /// Write the report as JSON to this file ("-": stdout, instead of the table).
    #[arg(long)]
    json: Option<String>,
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1_000.0),
        Some('m') => (&s[..s.len() - 1], 1_000_000.0),
        _ => (&s[..], 1.0),
    };
    let v: f64 = num.parse().map_err(|_| format!("bad bit rate {s}"))?;
    if v <= 0.0 {
        return Err(format!("bad bit rate {s}"));
    }
    Ok((v * mult) as u64)
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pairs = |flag: &str, v: &[String]| {
        v.iter()
            .map(|p| {
                p.split_once('=')
                    .map(|(n, p)| (n.to_string(), p.to_string()))
                    .with_context(|| format!("--{flag} {p}: expected NAME=VALUE"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    let pids = pairs("pid", &args.pids)?;
    let dirs = pairs("du", &args.dirs)?;
    let cfg = Config {
        label: args.label.clone(),
        argv: std::env::args().collect(),
        publish: args.publish.clone(),
        publish_backup: args.publish_backup.clone(),
        reconnect: args.reconnect.map(secs),
        per_player: args.per_player,
        streams: args.streams.max(1),
        play: args.play.clone(),
        players: args.players,
        stalled: args.stalled,
        spec: StreamSpec {
            bitrate: args.bitrate,
            fps: args.fps.max(1),
            gop: args.gop.max(1),
        },
        ramp: args.ramp,
        lead: secs(args.lead),
        warmup: secs(args.warmup),
        duration: secs(args.duration.max(0.5)),
        pids,
        decoder: match args.decoder {
            DecoderArg::Lean => Decoder::Lean,
            DecoderArg::Session => Decoder::Session,
        },
        threads: args.threads,
        silence: secs(args.silence_timeout),
        connect_timeout: secs(args.connect_timeout),
        hls_mode: match args.hls_mode {
            HlsModeArg::Auto => HlsMode::Auto,
            HlsModeArg::Plain => HlsMode::Plain,
            HlsModeArg::Ll => HlsMode::Ll,
        },
        hls_poll: args.hls_poll.map(|s| secs(s.max(0.05))),
        dirs,
        tls_ca: args.ca.clone(),
    };
    let report = run(cfg)?;
    let json = serde_json::to_string_pretty(&report)?;
    match args.json.as_deref() {
        Some("-") => println!("{json}"),
        Some(path) => {
            std::fs::write(path, json + "\n").with_context(|| format!("write {path}"))?;
            print!("{}", report.table());
        }
        None => print!("{}", report.table()),
    }
    Ok(())
}

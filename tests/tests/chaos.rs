//! Chaos, measured: a 3-member etcd cluster, 2 origins, 2 edges, loadgen's publisher (with
//! the second origin as its backup URL, as an encoder has) and its players spread over both
//! edges over RTMP and HTTP-FLV, each player falling back to the other edge when its
//! connection ends. Each test breaks one thing while the players watch and asserts the
//! target: (a) SIGKILL of the origin that owns the stream: no player disconnects, all back
//! within the lease TTL + 3 s; (b) SIGKILL of an edge: its players (only those) resume on
//! the other edge; (c) the etcd leader killed: no player notices, no lease is lost;
//! (d) an edge cut off etcd and its origin for 10 s (network namespace): its players recover
//! within 5 s of the heal; (e) a hostile flood of an edge: every real player stays ok, RSS
//! under a bound, no panic.
//!
//! Small in CI (20 players). `bench/chaos.sh` runs the same tests at 500 players
//! (`LIVECDN_CHAOS_PLAYERS`) and collects the rows each writes to `LIVECDN_CHAOS_OUT`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{EtcdConfig, EtcdRegistry, Registry};
use harness::attack::{Flood, FloodSpec};
use harness::etcd::EtcdCluster;
use harness::loadgen::Loadgen;
use harness::netns::Netns;
use harness::{NodeProc, unix_ms, wait_for};
use serde_json::Value;

/// The nodes' lease TTL (`EtcdCluster::node` gives every node `--etcd-lease-ttl 2s`).
const LEASE_TTL: Duration = Duration::from_secs(2);
/// A reconnecting player waits this long before playing from its next URL.
const RECONNECT_DELAY_S: &str = "0.2";
/// Target: an edge serving real players through the flood stays under this RSS.
const EDGE_RSS_BOUND_MIB: f64 = 256.0;
const LOOPBACK: [u8; 4] = [127, 0, 0, 1];

/// How big a run is: small in CI, `LIVECDN_CHAOS_PLAYERS=500` for the benchmark.
#[derive(Clone)]
struct Scale {
    players: usize,
    bitrate: String,
    out: Option<PathBuf>,
}

fn scale() -> Scale {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Scale {
        players: var("LIVECDN_CHAOS_PLAYERS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
        bitrate: var("LIVECDN_CHAOS_BITRATE").unwrap_or_else(|| "500k".into()),
        out: var("LIVECDN_CHAOS_OUT").map(PathBuf::from),
    }
}

impl Scale {
    /// Players are started at this rate (per second).
    fn ramp(&self) -> usize {
        self.players.clamp(50, 250)
    }

    /// How long loadgen may take to open its window.
    fn startup(&self) -> Duration {
        Duration::from_secs(20 + (self.players / self.ramp()) as u64)
    }
}

/// Blocks until the wall clock reaches `unix` ms (events are placed in loadgen's window).
fn sleep_until_unix(unix: u64) {
    let now = unix_ms();
    if unix > now {
        std::thread::sleep(Duration::from_millis(unix - now));
    }
}

struct Cluster {
    etcd: EtcdCluster,
    origins: Vec<NodeProc>,
    edges: Vec<NodeProc>,
}

impl Cluster {
    /// etcd, origins and edge 1 listening on `ip`; edge 0 too, or inside `netns` (on its
    /// address) when given. `edge_extra`: flags of both edges.
    fn start(ip: IpAddr, netns: Option<&Netns>, edge_extra: &[&str]) -> Cluster {
        let etcd = EtcdCluster::start_on(ip);
        let origins = vec![
            etcd.node_in("origin", ip, &[], &[]),
            etcd.node_in("origin", ip, &[], &[]),
        ];
        let first = match netns {
            Some(ns) => etcd.node_in("edge", ns.ns_ip.into(), &ns.exec_prefix(), edge_extra),
            None => etcd.node_in("edge", ip, &[], edge_extra),
        };
        let edges = vec![first, etcd.node_in("edge", ip, &[], edge_extra)];
        Cluster {
            etcd,
            origins,
            edges,
        }
    }

    fn nodes(&self) -> impl Iterator<Item = &NodeProc> {
        self.origins.iter().chain(&self.edges)
    }

    /// `--pid NAME=PID` of every node, for loadgen's CPU and RSS figures.
    fn pid_args(&self) -> Vec<String> {
        let named = [("origin-a", 0), ("origin-b", 1)]
            .iter()
            .map(|(n, i)| (*n, &self.origins[*i]))
            .chain([("edge-1", &self.edges[0]), ("edge-2", &self.edges[1])]);
        named
            .flat_map(|(name, node)| ["--pid".to_string(), format!("{name}={}", node.proc.pid())])
            .collect()
    }

    /// Play URLs: edge 1 RTMP, edge 2 RTMP, edge 1 HTTP-FLV, edge 2 HTTP-FLV. Player i
    /// starts on URL i % 4 and falls back to the next one: the other edge.
    fn play_urls(&self, key: &str) -> Vec<String> {
        let (e1, e2) = (&self.edges[0], &self.edges[1]);
        vec![
            e1.rtmp_url(key),
            e2.rtmp_url(key),
            e1.flv_url(key),
            e2.flv_url(key),
        ]
    }

    /// A registry client on the etcd members still running.
    async fn inspect(&self) -> Arc<EtcdRegistry> {
        let mut cfg = EtcdConfig::new(self.etcd.endpoint_list());
        cfg.lease_ttl = LEASE_TTL;
        EtcdRegistry::connect(cfg).await.expect("inspect registry")
    }

    /// No node panicked (killed nodes included: their logs are read while they still exist).
    fn assert_no_panic(&self) {
        for n in self.nodes() {
            let out = n.proc.output();
            assert!(!out.contains("panicked"), "{} panicked:\n{out}", n.node_id);
        }
    }
}

/// loadgen's flags for `players` on `play`, publishing `key` to origin A with origin B as the
/// backup (when `publish`), a window of `duration` seconds.
fn loadgen_args(
    s: &Scale,
    c: &Cluster,
    key: &str,
    publish: bool,
    play: &[String],
    duration: u32,
) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if publish {
        args.extend([
            "--publish".into(),
            c.origins[0].rtmp_url(key),
            "--publish-backup".into(),
            c.origins[1].rtmp_url(key),
        ]);
        args.extend(c.pid_args());
    }
    for url in play {
        args.extend(["--play".into(), url.clone()]);
    }
    let flags = [
        ("--players", s.players.to_string()),
        ("--bitrate", s.bitrate.clone()),
        ("--fps", "25".into()),
        ("--gop", "25".into()),
        ("--ramp", s.ramp().to_string()),
        ("--lead", "1".into()),
        ("--warmup", "2".into()),
        ("--duration", duration.to_string()),
        ("--reconnect", RECONNECT_DELAY_S.into()),
        // A partitioned player hears nothing for 10 s: only give up well after that.
        ("--silence-timeout", "30".into()),
        ("--connect-timeout", "5".into()),
        ("--threads", "2".into()),
    ];
    for (k, v) in flags {
        args.extend([k.to_string(), v]);
    }
    args.push("--per-player".into());
    args
}

/// One player's figures from loadgen's `per_player`.
#[derive(Debug, Clone)]
struct Player {
    group: usize,
    disconnects: u64,
    max_gap_ms: f64,
    max_gap_end: Option<u64>,
    last_video: Option<u64>,
    failed: bool,
}

fn players(r: &Value) -> Vec<Player> {
    let list = r["per_player"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|p| Player {
            group: p["group"].as_u64().unwrap_or(0) as usize,
            disconnects: p["disconnects"].as_u64().unwrap_or(0),
            max_gap_ms: p["max_gap_ms"].as_f64().unwrap_or(0.0),
            max_gap_end: p["max_gap_end_unix_ms"].as_u64(),
            last_video: p["last_video_unix_ms"].as_u64(),
            failed: p["failed"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// How long after `event` (Unix ms) the players whose longest gap spans it got video again:
/// the latest end of such a gap. `None`: no player's longest gap spans the event.
fn recovery_ms(players: &[&Player], event: u64) -> Option<u64> {
    players
        .iter()
        .filter_map(|p| {
            let end = p.max_gap_end?;
            let start = end.saturating_sub(p.max_gap_ms as u64);
            (start <= event + 100 && end >= event).then(|| end - event)
        })
        .max()
}

/// Players whose last video frame is more than 1.5 s older than the end of the window.
fn stuck(r: &Value, players: &[&Player]) -> usize {
    let end = r["window_unix_ms"][1].as_u64().unwrap_or(0);
    players
        .iter()
        .filter(|p| p.last_video.is_none_or(|t| t + 1500 < end))
        .count()
}

/// Peak RSS (MiB) of the nodes loadgen measured, as "name peak" pairs.
fn rss_peaks(r: &Value) -> Vec<(String, f64)> {
    r["processes"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    let name = p["name"].as_str()?;
                    (name.starts_with("origin") || name.starts_with("edge"))
                        .then(|| (name.to_string(), p["rss_mib_peak"].as_f64().unwrap_or(0.0)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One row of the chaos table.
struct Row {
    players: usize,
    lost: u64,
    longest_gap_ms: f64,
    recovery: String,
    rss: Vec<(String, f64)>,
}

/// Prints the row and, for `bench/chaos.sh`, writes it to `$LIVECDN_CHAOS_OUT/{id}.md`
/// (before the test's assertions, so that a missed target is still reported).
fn record(s: &Scale, id: &str, scenario: &str, row: &Row) {
    let rss = row
        .rss
        .iter()
        .map(|(n, v)| format!("{n} {v:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    let line = format!(
        "| {scenario} | {} | {} | {:.0} ms | {} | {rss} |",
        row.players, row.lost, row.longest_gap_ms, row.recovery
    );
    eprintln!("chaos {id}: {line}");
    if let Some(dir) = &s.out {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join(format!("{id}.md")), line + "\n");
    }
}

fn fmt_recovery(ms: Option<u64>, what: &str) -> String {
    match ms {
        Some(ms) => format!("{:.1} s after {what}", ms as f64 / 1000.0),
        None => "no interruption".into(),
    }
}

/// Waits until the registry names `origin` as the owner of `key`.
async fn wait_owner(reg: &EtcdRegistry, key: &str, origin: &str, within: Duration) {
    let (app, name) = key.split_once('/').expect("app/name");
    let end = Instant::now() + within;
    loop {
        let owner = reg.lookup(app, name).await.ok().flatten();
        if owner.as_ref().is_some_and(|o| o.origin_node_id == origin) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{key} not owned by {origin} after {within:?}: {owner:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_sigkill_players_stay_connected_and_resume_within_ttl_plus_3s() {
    let s = scale();
    let mut c = Cluster::start(LOOPBACK.into(), None, &[]);
    let key = "live/chaos-origin";
    let args = loadgen_args(&s, &c, key, true, &c.play_urls(key), 10);
    let mut lg = Loadgen::start(&[], &args);
    let window = lg.wait_measuring(s.startup());
    let reg = c.inspect().await;
    wait_owner(&reg, key, &c.origins[0].node_id, Duration::from_secs(5)).await;
    sleep_until_unix(window + 1000);

    let killed = unix_ms();
    c.origins[0]
        .proc
        .signal_and_wait("KILL", Duration::from_secs(5));
    // The publisher moved to its backup URL; origin B owns the stream.
    let b = c.origins[1].node_id.clone();
    wait_owner(&reg, key, &b, LEASE_TTL + Duration::from_secs(3)).await;
    let r = lg.finish(Duration::from_secs(60));

    let all = players(&r);
    let refs: Vec<&Player> = all.iter().collect();
    let recovery = recovery_ms(&refs, killed);
    let row = Row {
        players: all.len(),
        lost: r["players_disconnected"].as_u64().unwrap_or(u64::MAX),
        longest_gap_ms: r["max_gap_ms"].as_f64().unwrap_or(f64::MAX),
        recovery: fmt_recovery(recovery, "the kill"),
        rss: rss_peaks(&r),
    };
    record(&s, "a", "(a) origin SIGKILL, publisher to backup", &row);

    assert_eq!(all.len(), s.players, "every player reported");
    assert!(
        r["publishers"]["reconnects"].as_u64() >= Some(1),
        "the publisher republished to its backup: {}",
        r["publishers"]
    );
    assert_eq!(row.lost, 0, "players disconnected: {:?}", r["errors"]);
    let target = (LEASE_TTL + Duration::from_secs(3)).as_millis() as f64;
    assert!(
        row.longest_gap_ms < target,
        "longest gap {} ms (target: lease TTL + 3 s)",
        row.longest_gap_ms
    );
    assert!(recovery.is_none_or(|ms| (ms as f64) < target));
    assert_eq!(stuck(&r, &refs), 0, "players without video at the end");
    c.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_sigkill_its_players_resume_on_the_other_edge_and_no_one_else_notices() {
    let s = scale();
    let mut c = Cluster::start(LOOPBACK.into(), None, &[]);
    let key = "live/chaos-edge";
    let args = loadgen_args(&s, &c, key, true, &c.play_urls(key), 6);
    let mut lg = Loadgen::start(&[], &args);
    let window = lg.wait_measuring(s.startup());
    sleep_until_unix(window + 1000);

    let killed = unix_ms();
    c.edges[0]
        .proc
        .signal_and_wait("KILL", Duration::from_secs(5));
    let r = lg.finish(Duration::from_secs(60));

    // Groups 0 and 2 started on edge 1 (RTMP, HTTP-FLV), 1 and 3 on edge 2.
    let all = players(&r);
    let (on_killed, on_other): (Vec<&Player>, Vec<&Player>) =
        all.iter().partition(|p| p.group % 2 == 0);
    let lost = on_killed.iter().filter(|p| p.disconnects > 0).count();
    let recovery = recovery_ms(&on_killed, killed);
    let row = Row {
        players: all.len(),
        lost: r["players_disconnected"].as_u64().unwrap_or(u64::MAX),
        longest_gap_ms: r["max_gap_ms"].as_f64().unwrap_or(f64::MAX),
        recovery: fmt_recovery(recovery, "the kill (reconnected to the other edge)"),
        rss: rss_peaks(&r),
    };
    record(&s, "b", "(b) edge SIGKILL, players reconnect", &row);

    assert_eq!(all.len(), s.players, "every player reported");
    assert_eq!(
        lost,
        on_killed.len(),
        "every player of the killed edge lost its connection"
    );
    assert_eq!(row.lost as usize, lost, "only the killed edge's players");
    for p in &on_other {
        assert!(
            p.disconnects == 0 && p.max_gap_ms < 1000.0,
            "a player of the other edge noticed: {p:?}"
        );
    }
    let ms = recovery.expect("the killed edge's players had a gap");
    assert!(
        ms < 3000,
        "resumed on the other edge {ms} ms after the kill"
    );
    assert_eq!(stuck(&r, &on_killed), 0, "players that did not resume");
    assert!(on_killed.iter().all(|p| !p.failed));
    c.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leader_killed_no_player_notices_and_no_lease_is_lost() {
    let s = scale();
    let mut c = Cluster::start(LOOPBACK.into(), None, &[]);
    let key = "live/chaos-leader";
    let (app, name) = key.split_once('/').expect("key");
    let args = loadgen_args(&s, &c, key, true, &c.play_urls(key), 10);
    let mut lg = Loadgen::start(&[], &args);
    let window = lg.wait_measuring(s.startup());
    let mut leader = None;
    wait_for("an etcd leader", Duration::from_secs(5), || {
        leader = c.etcd.leader();
        leader.is_some()
    });
    let old = leader.expect("leader");
    sleep_until_unix(window + 1000);

    let killed = unix_ms();
    c.etcd.kill(old);
    wait_for("a new etcd leader", Duration::from_secs(5), || {
        c.etcd.leader().is_some_and(|l| l != old)
    });
    // For three lease TTLs, every node stays registered and the stream keeps its owner: the
    // nodes' keepalives reached the new leader.
    let reg = c.inspect().await;
    let ids: Vec<String> = c.nodes().map(|n| n.node_id.clone()).collect();
    let until = Instant::now() + 3 * LEASE_TTL;
    let mut checks = 0;
    while Instant::now() < until {
        let (nodes, owner) = (reg.nodes().await, reg.lookup(app, name).await);
        if let (Ok(nodes), Ok(owner)) = (nodes, owner) {
            let present: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
            assert!(
                ids.iter().all(|id| present.contains(&id.as_str())),
                "a node's lease was lost after the leader change: {present:?}"
            );
            assert_eq!(
                owner.map(|o| o.origin_node_id),
                Some(c.origins[0].node_id.clone()),
                "the stream lost its owner"
            );
            checks += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(checks >= 10, "only {checks} registry reads succeeded");
    let r = lg.finish(Duration::from_secs(60));

    let all = players(&r);
    let refs: Vec<&Player> = all.iter().collect();
    let row = Row {
        players: all.len(),
        lost: r["players_disconnected"].as_u64().unwrap_or(u64::MAX),
        longest_gap_ms: r["max_gap_ms"].as_f64().unwrap_or(f64::MAX),
        // A frame interval that happens to span the kill is not an interruption.
        recovery: fmt_recovery(
            recovery_ms(&refs, killed).filter(|&ms| ms > 1000),
            "the kill",
        ),
        rss: rss_peaks(&r),
    };
    record(&s, "c", "(c) etcd leader killed", &row);

    assert_eq!(all.len(), s.players, "every player reported");
    assert_eq!(row.lost, 0, "players disconnected: {:?}", r["errors"]);
    assert_eq!(r["gaps_over_1s"].as_u64(), Some(0), "players saw gaps");
    assert!(row.longest_gap_ms < 1000.0);
    assert_eq!(stuck(&r, &refs), 0);
    c.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_edge_recovers_within_5s_of_the_heal() {
    let s = scale();
    // Declared first, dropped last: every process inside is gone before the namespace.
    let ns = Netns::create();
    let host: IpAddr = ns.host_ip.into();
    // Every player here comes from one of the link's two addresses: trust the link, as
    // loopback is trusted in the other scenarios (else the per-address limit refuses
    // players beyond 100: a load generator's artifact, not the partition's effect).
    let link = std::net::Ipv4Addr::from(u32::from(ns.host_ip) - 1);
    let trusted = format!("127.0.0.0/8,{link}/30");
    let c = Cluster::start(host, Some(&ns), &["--net-trusted-networks", &trusted]);
    let key = "live/chaos-partition";
    // Edge 1 and its players inside the namespace; the publisher and edge 2's players here.
    let (e1, e2) = (&c.edges[0], &c.edges[1]);
    let inside = [e1.rtmp_url(key), e1.flv_url(key)];
    let outside = [e2.rtmp_url(key), e2.flv_url(key)];
    let partition = Duration::from_secs(10);
    // Half the players on each edge, as in the other scenarios.
    let half = Scale {
        players: s.players / 2,
        ..s.clone()
    };
    let mut host_lg = Loadgen::start(&[], &loadgen_args(&half, &c, key, true, &outside, 26));
    host_lg.wait_measuring(s.startup());
    let mut ns_lg = Loadgen::start(
        &ns.exec_prefix(),
        &loadgen_args(&half, &c, key, false, &inside, 18),
    );
    let window = ns_lg.wait_measuring(s.startup());
    sleep_until_unix(window + 1000);

    let cut = unix_ms();
    ns.cut();
    sleep_until_unix(cut + partition.as_millis() as u64);
    ns.heal();
    let healed = unix_ms();
    // The edge comes back into the cluster: its node record is there again.
    let reg = c.inspect().await;
    let end = Instant::now() + Duration::from_secs(10);
    let registered = loop {
        let nodes = reg.nodes().await.unwrap_or_default();
        if nodes.iter().any(|n| n.node_id == e1.node_id) {
            break Some(unix_ms() - healed);
        }
        if Instant::now() >= end {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let r = ns_lg.finish(Duration::from_secs(60));
    let rh = host_lg.finish(Duration::from_secs(60));

    let inner = players(&r);
    let refs: Vec<&Player> = inner.iter().collect();
    let recovery = recovery_ms(&refs, healed);
    let row = Row {
        players: inner.len() + players(&rh).len(),
        lost: r["players_disconnected"].as_u64().unwrap_or(u64::MAX)
            + rh["players_disconnected"].as_u64().unwrap_or(u64::MAX),
        longest_gap_ms: r["max_gap_ms"].as_f64().unwrap_or(f64::MAX),
        recovery: fmt_recovery(recovery, "the heal"),
        rss: rss_peaks(&rh),
    };
    record(&s, "d", "(d) edge partitioned 10 s", &row);

    assert_eq!(
        inner.len(),
        half.players,
        "every partitioned player reported"
    );
    let ms = recovery.expect("the partitioned players had a gap across the heal");
    assert!(ms < 5000, "players recovered {ms} ms after the heal");
    assert_eq!(
        stuck(&r, &refs),
        0,
        "partitioned players without video at the end"
    );
    assert!(
        inner.iter().all(|p| !p.failed),
        "a partitioned player gave up"
    );
    assert_eq!(
        rh["players_disconnected"].as_u64(),
        Some(0),
        "the other edge's players disconnected"
    );
    assert_eq!(
        rh["gaps_over_1s"].as_u64(),
        Some(0),
        "the other edge's players saw gaps"
    );
    let back = registered.expect("the partitioned edge registered again within 10 s of the heal");
    eprintln!("edge registered again {back} ms after the heal");
    c.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooded_edge_keeps_every_real_player_ok_with_bounded_memory() {
    let s = scale();
    // A short header timeout, so that slowloris connections are reaped within the flood.
    let c = Cluster::start(LOOPBACK.into(), None, &["--http-header-timeout", "2s"]);
    let key = "live/chaos-flood";
    let args = loadgen_args(&s, &c, key, true, &c.play_urls(key), 9);
    let mut lg = Loadgen::start(&[], &args);
    let window = lg.wait_measuring(s.startup());
    sleep_until_unix(window + 1000);

    let target = &c.edges[0];
    let flood = Flood::start(target.http, target.rtmp, FloodSpec::default());
    sleep_until_unix(window + 7000);
    let attacks = flood.stop();
    let r = lg.finish(Duration::from_secs(60));

    let all = players(&r);
    let rss = rss_peaks(&r);
    let edge_peak = rss
        .iter()
        .find(|(n, _)| n == "edge-1")
        .map_or(f64::MAX, |(_, v)| *v);
    let row = Row {
        players: all.len(),
        lost: r["players_disconnected"].as_u64().unwrap_or(u64::MAX),
        longest_gap_ms: r["max_gap_ms"].as_f64().unwrap_or(f64::MAX),
        recovery: "no interruption allowed".into(),
        rss,
    };
    record(
        &s,
        "e",
        "(e) edge flooded (slowloris, junk RTMP, random names)",
        &row,
    );
    eprintln!("flood: {attacks:?}");

    assert!(
        attacks.slowloris_opened >= 200 && attacks.slowloris_closed > 0,
        "slowloris connections held and reaped: {attacks:?}"
    );
    assert!(
        attacks.junk_rtmp >= 10 && attacks.junk_rtmp_closed * 10 >= attacks.junk_rtmp * 9,
        "junk RTMP connections closed: {attacks:?}"
    );
    assert!(
        attacks.random_plays >= 50 && attacks.random_plays_refused * 10 >= attacks.random_plays * 9,
        "random names refused: {attacks:?}"
    );
    assert_eq!(all.len(), s.players, "every player reported");
    assert_eq!(
        r["players"]["ok"].as_u64(),
        Some(s.players as u64),
        "every real player ok: {:?} gaps, {:?} disconnects, errors {:?}",
        r["gaps_over_1s"],
        r["disconnects"],
        r["errors"]
    );
    assert!(
        edge_peak < EDGE_RSS_BOUND_MIB,
        "edge RSS peak {edge_peak} MiB (bound {EDGE_RSS_BOUND_MIB})"
    );
    c.assert_no_panic();
}

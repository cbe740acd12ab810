//! `registry-sim`: issue 15's registry at scale, measured. Starts a real 3-member etcd cluster
//! on loopback and drives it with what N edges and M streams do: a lease per node kept alive
//! every TTL/3, `nodes/{id}` rewritten every `load_interval`, one watch of the whole prefix per
//! node (the `ClusterView`), origins claiming `streams/{app}/{name}`, claims and lookups probed
//! while the load runs, and failovers timed to the last edge that sees them. Prints a markdown
//! table and writes it to `target/bench-registry/REGISTRY.md`.
//!
//! Origins, a sample of edges and the prober are real `common::cluster::EtcdRegistry`
//! instances (own connection each); the other edges are raw `etcd-client` calls with the same
//! keys, values, TTLs and intervals, sharing a few connections (one process cannot afford
//! 1,000+ HTTP/2 connections and their tasks on 2 cores). etcd processes are killed on exit,
//! on panic and on SIGINT/SIGTERM (the `Cluster` guard).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bench::hist::{HistSnapshot, Histogram};
use bench::procstat;
use clap::Parser;
use common::cluster::{
    Claim, EtcdConfig, EtcdRegistry, NodeLoad, NodeRecord, PublicUrls, Registry, Role, StreamEvent,
    StreamRecord,
};
use common::locate::sim::SplitMix64;
use etcd_client::{
    Client, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchOptions,
    WatchResponse,
};
use futures::StreamExt;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{MissedTickBehavior, sleep, timeout};
use tokio_util::sync::CancellationToken;

#[path = "registry_sim/cluster.rs"]
mod cluster;
#[path = "registry_sim/nodes.rs"]
mod nodes;
#[path = "registry_sim/report.rs"]
mod report;

use cluster::{Cluster, etcd_version, hwm_mib, scrape};
use nodes::*;
use report::{ConfigResult, report, row};

const PREFIX: &str = "/livecdn/v1";
/// Bound of every raw etcd call, like `etcd.timeout`.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// One node event in this many is decoded by a raw watcher to measure delivery lag.
const LAG_SAMPLE: u64 = 64;
/// How long a failover may take before it is reported as incomplete.
const FAILOVER_WAIT: Duration = Duration::from_secs(30);
/// Claims in flight per origin while the streams are set up.
const CLAIM_CONCURRENCY: usize = 16;
/// Raw nodes set up at once.
const SETUP_CONCURRENCY: usize = 64;
/// Attempts of a raw node's lease grant and first put.
const SETUP_ATTEMPTS: usize = 5;

#[derive(Debug, Parser)]
#[command(name = "registry-sim")]
struct Args {
    /// Edge counts to run, one configuration each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    edges: Vec<usize>,
    /// Streams claimed before the window (M).
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// Origins claiming the streams (real EtcdRegistry instances).
    #[arg(long, default_value_t = 20)]
    origins: usize,
    /// Edges that are real EtcdRegistry instances; the rest are raw etcd-client calls.
    #[arg(long, default_value_t = 10)]
    real_edges: usize,
    /// Connections shared by the raw edges (spread over the 3 members).
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Measured window per configuration, seconds (after setup).
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// `load_interval`: how often every node rewrites its record, seconds.
    #[arg(long, default_value_t = 3.0)]
    load_interval: f64,
    /// `etcd.lease_ttl`, whole seconds; keep-alives every TTL/3.
    #[arg(long, default_value_t = 5)]
    lease_ttl: u64,
    /// Claims per second and lookups per second of the prober during the window.
    #[arg(long, default_value_t = 10.0)]
    probe_rate: f64,
    /// Failovers during the window (delete + re-create of a stream key by another origin).
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// A configuration whose raw edges are not all set up within this many seconds fails
    /// (past what the machine carries, setup slows down quadratically).
    #[arg(long, default_value_t = 240)]
    setup_limit: u64,
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Where the etcd data directories go (a fresh one per configuration, removed after).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_root: PathBuf,
    #[arg(long, default_value = "target/bench-registry/REGISTRY.md")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.edges.iter().any(|&n| n < args.real_edges.max(1)) {
        bail!("every --edges value must be at least --real-edges and 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        tokio::select! {
            r = run_all(&args) => r,
            _ = shutdown_signal() => bail!("interrupted; etcd stopped"),
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run_all(args: &Args) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for &n in &args.edges {
        eprintln!("registry-sim: N = {n} edges, M = {} streams", args.streams);
        // A configuration past what this machine carries fails alone; the others still report.
        match run_config(args, n).await {
            Ok(r) => {
                eprintln!("{}", row(&r));
                results.push(Ok(r));
            }
            Err(e) => {
                eprintln!("registry-sim: N = {n} failed: {e:#}");
                results.push(Err((n, format!("{e:#}"))));
            }
        }
        sleep(Duration::from_secs(1)).await;
    }
    let md = report(args, &results);
    println!("{md}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&args.out, &md).with_context(|| format!("write {}", args.out.display()))?;
    eprintln!("registry-sim: wrote {}", args.out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sampling

/// What etcd and this process looked like at one instant.
struct Sample {
    at: Instant,
    metrics: Vec<HashMap<String, f64>>,
    etcd_cpu: f64,
    sim_cpu: f64,
    /// Busy CPU seconds of the whole machine (other users' work included).
    machine_busy: f64,
    counters: [u64; COUNTERS],
}

async fn sample(cluster: &Cluster, sh: &Shared) -> Sample {
    let metrics = futures::future::join_all(cluster.endpoints.iter().map(|e| scrape(e))).await;
    Sample {
        at: Instant::now(),
        metrics,
        etcd_cpu: cluster
            .pids()
            .iter()
            .filter_map(|p| procstat::cpu_seconds(p))
            .sum(),
        sim_cpu: procstat::cpu_seconds("self").unwrap_or(0.0),
        machine_busy: procstat::cpu_times().first().map_or(0.0, |t| t.0),
        counters: sh.c.get(),
    }
}

// ---------------------------------------------------------------------------------------------
// The prober: claims and lookups timed on their own thread and runtime

struct ProbeResult {
    claims: HistSnapshot,
    lookups: HistSnapshot,
    errors: u64,
}

fn probe_thread(endpoints: Vec<String>, args: (u64, f64, usize, Duration)) -> ProbeResult {
    let (ttl, rate, streams, window) = args;
    let claims = Histogram::new();
    let lookups = Histogram::new();
    let mut errors = 0;
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ProbeResult {
            claims: claims.snapshot(),
            lookups: lookups.snapshot(),
            errors: 1,
        };
    };
    rt.block_on(async {
        let Ok(reg) = connect_real(&endpoints, ttl).await else {
            errors += 1;
            return;
        };
        let probe_origin = 99;
        let _ = reg
            .register(node_record(
                &origin_id(probe_origin),
                Role::Origin,
                probe_origin,
            ))
            .await;
        let mut rng = SplitMix64::new(15);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let end = Instant::now() + window;
        let mut i = 0usize;
        while Instant::now() < end {
            tick.tick().await;
            let name = format!("p{i}");
            i += 1;
            let t = Instant::now();
            match reg
                .claim(stream_record("probe", &name, probe_origin), false)
                .await
            {
                Ok(Claim::Owned) => claims.record(t.elapsed().as_micros() as u64),
                _ => errors += 1,
            }
            let t = Instant::now();
            let s = format!("s{:05}", rng.below(streams.max(1)));
            match reg.lookup("live", &s).await {
                Ok(Some(_)) => lookups.record(t.elapsed().as_micros() as u64),
                _ => errors += 1,
            }
            // Unpublish: churn like a real origin, and M stays where it was.
            if reg.release("probe", &name).await.is_err() {
                errors += 1;
            }
        }
        let _ = reg.close().await;
    });
    ProbeResult {
        claims: claims.snapshot(),
        lookups: lookups.snapshot(),
        errors,
    }
}

// ---------------------------------------------------------------------------------------------
// One configuration

async fn run_config(args: &Args, n_edges: usize) -> anyhow::Result<ConfigResult> {
    let cluster = Cluster::start(&args.etcd, &args.data_root, n_edges)?;
    cluster.wait_ready().await?;
    let eps = cluster.endpoints.clone();
    let load_interval = Duration::from_secs_f64(args.load_interval);
    let sh = Arc::new(Shared {
        load_interval,
        ttl: args.lease_ttl as i64,
        cancel: CancellationToken::new(),
        c: Counters::default(),
        failovers: (0..args.failovers)
            .map(|k| Failover {
                name: format!("f{k}"),
                new_origin: origin_id(1),
                start: OnceLock::new(),
                seen: AtomicUsize::new(0),
                last_us: AtomicU64::new(0),
            })
            .collect(),
        fo_prefix: format!("{PREFIX}/streams/fo/").into_bytes(),
        nodes_prefix: format!("{PREFIX}/nodes/").into_bytes(),
        lag: Histogram::new(),
        watchers_up: AtomicUsize::new(0),
    });
    // Stops every task of this configuration however it ends (before the cluster goes).
    let _stop = sh.cancel.clone().drop_guard();
    let mut rng = SplitMix64::new(n_edges as u64);
    let mut phase =
        || Duration::from_secs_f64(args.load_interval * rng.below(1_000_000) as f64 / 1e6);

    // Origins register and claim the M streams (and the failover keys, on origin 0).
    let origins: Vec<Arc<EtcdRegistry>> = futures::future::try_join_all(
        (0..args.origins.max(2)).map(|_| connect_real(&eps, args.lease_ttl)),
    )
    .await?;
    for (i, reg) in origins.iter().enumerate() {
        let rec = node_record(&origin_id(i), Role::Origin, 60_000 + i);
        reg.register(rec.clone())
            .await
            .map_err(|e| anyhow::anyhow!("register origin: {e}"))?;
        tokio::spawn(real_load_loop(
            sh.clone(),
            reg.clone(),
            rec,
            60_000 + i,
            phase(),
        ));
    }
    let t = Instant::now();
    let n_origins = origins.len();
    let claimed = futures::future::join_all(origins.iter().enumerate().map(|(o, reg)| {
        let names: Vec<usize> = (o..args.streams).step_by(n_origins).collect();
        async move {
            futures::stream::iter(names)
                .map(|s| reg.claim(stream_record("live", &format!("s{s:05}"), o), false))
                .buffer_unordered(CLAIM_CONCURRENCY)
                .filter(|r| std::future::ready(matches!(r, Ok(Claim::Owned))))
                .count()
                .await
        }
    }))
    .await
    .into_iter()
    .sum::<usize>();
    let claim_setup_s = t.elapsed().as_secs_f64();
    if claimed != args.streams {
        bail!("only {claimed} of {} streams claimed", args.streams);
    }
    for f in &sh.failovers {
        let r = origins[0]
            .claim(stream_record("fo", &f.name, 0), false)
            .await;
        if !matches!(r, Ok(Claim::Owned)) {
            bail!("failover key {} not claimed: {r:?}", f.name);
        }
    }
    eprintln!("  {claimed} streams claimed by {n_origins} origins in {claim_setup_s:.1} s");

    // What a node's initial list costs (every real node does one at start).
    let mut lc = Client::connect([eps[0].as_str()], None)
        .await
        .context("list client")?;
    let t = Instant::now();
    let listed = bounded(lc.get(format!("{PREFIX}/"), Some(GetOptions::new().with_prefix())))
        .await
        .map_err(|e| anyhow::anyhow!("list: {e}"))?;
    let list_ms = t.elapsed().as_secs_f64() * 1000.0;
    let list_keys = listed.kvs().len();
    let list_mib = listed
        .kvs()
        .iter()
        .map(|kv| kv.key().len() + kv.value().len())
        .sum::<usize>() as f64
        / 1048576.0;

    // Real edges: register, refresh, follow the failover keys in their view.
    let mut real = Vec::new();
    for i in 0..args.real_edges {
        let reg = connect_real(&eps, args.lease_ttl).await?;
        let rec = node_record(&edge_id(i), Role::Edge, i);
        reg.register(rec.clone())
            .await
            .map_err(|e| anyhow::anyhow!("register edge: {e}"))?;
        tokio::spawn(real_load_loop(sh.clone(), reg.clone(), rec, i, phase()));
        for k in 0..sh.failovers.len() {
            tokio::spawn(real_failover_watch(sh.clone(), reg.clone(), k));
        }
        real.push(reg);
    }

    // Raw edges on shared connections, one per member in turn.
    let mut clients = Vec::new();
    for k in 0..args.clients.max(1) {
        let ep = &eps[k % eps.len()];
        clients.push(
            Client::connect([ep.as_str()], None)
                .await
                .context("raw client")?,
        );
    }
    let raw: Vec<(usize, Duration)> = (args.real_edges..n_edges).map(|i| (i, phase())).collect();
    let t = Instant::now();
    let started = &AtomicUsize::new(0);
    let setup = futures::stream::iter(raw)
        .map(|(i, ph)| {
            let sh = sh.clone();
            let mut client = clients[i % clients.len()].clone();
            async move {
                // Under load a grant or put can miss OP_TIMEOUT: retry like a starting node.
                let mut lease = None;
                for _ in 0..SETUP_ATTEMPTS {
                    match raw_setup(&sh, &mut client, i).await {
                        Ok(l) => {
                            lease = Some(l);
                            break;
                        }
                        Err(_) => sleep(Duration::from_millis(500)).await,
                    }
                }
                let lease = lease?;
                started.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(raw_watch_loop(sh.clone(), client.clone()));
                tokio::spawn(raw_lease_loop(sh, client, i, lease, ph));
                Some(())
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .filter(|r| std::future::ready(r.is_some()))
        .count();
    let n_raw = n_edges - args.real_edges;
    let limit = Duration::from_secs(args.setup_limit);
    let Ok(set_up) = timeout(limit, setup).await else {
        bail!(
            "setup did not fit in {} s: {} of {n_raw} raw edges started, {} watching; etcd RSS {:.0} MiB (3 members)",
            limit.as_secs(),
            started.load(Ordering::Relaxed),
            sh.watchers_up.load(Ordering::Relaxed),
            cluster
                .pids()
                .iter()
                .filter_map(|p| procstat::rss_mib(p))
                .sum::<f64>()
        );
    };
    while sh.watchers_up.load(Ordering::Relaxed) < set_up && t.elapsed() < Duration::from_secs(120)
    {
        sleep(Duration::from_millis(100)).await;
    }
    for reg in &real {
        reg.view().wait_synced(Duration::from_secs(60)).await;
    }
    eprintln!(
        "  {set_up}/{n_raw} raw edges up ({} watching) + {} real edges in {:.1} s",
        sh.watchers_up.load(Ordering::Relaxed),
        real.len(),
        t.elapsed().as_secs_f64()
    );
    if set_up * 10 < n_raw * 9 {
        bail!("only {set_up} of {n_raw} raw edges could be set up");
    }
    let edges_up = set_up + real.len();
    let edge_setup_s = t.elapsed().as_secs_f64();
    // One load_interval for every node's refresh loop to be in its steady state.
    sleep(load_interval + Duration::from_secs(1)).await;

    // The window: load runs, the prober probes, failovers happen at even intervals.
    let window = Duration::from_secs(args.window);
    let s0 = sample(&cluster, &sh).await;
    let probe = {
        let eps = eps.clone();
        let a = (args.lease_ttl, args.probe_rate, args.streams, window);
        tokio::task::spawn_blocking(move || probe_thread(eps, a))
    };
    let mut fo_results = Vec::new();
    let mut fo_tasks = Vec::new();
    for k in 0..sh.failovers.len() {
        let at = window.mul_f64((k + 1) as f64 / (sh.failovers.len() + 1) as f64);
        let (sh, from, to) = (sh.clone(), origins[0].clone(), origins[1].clone());
        fo_tasks.push(tokio::spawn(async move {
            sleep(at).await;
            failover(&sh, k, &from, &to, edges_up).await
        }));
    }
    sleep(window).await;
    let s1 = sample(&cluster, &sh).await;
    let etcd_rss: Vec<f64> = cluster
        .pids()
        .iter()
        .filter_map(|p| procstat::rss_mib(p))
        .collect();
    let etcd_hwm: Vec<f64> = cluster.pids().iter().filter_map(|p| hwm_mib(p)).collect();
    let sim_rss = procstat::rss_mib("self").unwrap_or(0.0);
    for t in fo_tasks {
        fo_results.push(t.await.unwrap_or((0.0, 0, f64::NAN)));
    }
    let probe = probe.await.unwrap_or(ProbeResult {
        claims: HistSnapshot::default(),
        lookups: HistSnapshot::default(),
        errors: 1,
    });
    sh.cancel.cancel();

    let secs = s1.at.duration_since(s0.at).as_secs_f64().max(0.001);
    let d = |i: usize| s1.counters[i].saturating_sub(s0.counters[i]);
    let m = |name: &str, member: usize| -> f64 {
        let a = s0
            .metrics
            .get(member)
            .and_then(|m| m.get(name))
            .copied()
            .unwrap_or(0.0);
        let b = s1
            .metrics
            .get(member)
            .and_then(|m| m.get(name))
            .copied()
            .unwrap_or(0.0);
        b - a
    };
    let sum_m = |name: &str| (0..3).map(|i| m(name, i)).sum::<f64>();
    let gauge = |name: &str| s1.metrics.iter().filter_map(|m| m.get(name)).sum::<f64>();
    let watchers = edges_up + n_origins + 1;
    let node_puts_s = d(0) as f64 / secs;
    // The prober's claim (a put) and release (a delete) reach every watcher too.
    let stream_events_s = 2.0 * args.probe_rate;
    let errors = format!(
        "put {} · keep-alive {} · regrant {} · watch break {} / open {} / canceled {}",
        d(1),
        d(3),
        d(4),
        d(7),
        d(8),
        d(9)
    );
    drop(real);
    drop(origins);
    Ok(ConfigResult {
        edges: n_edges,
        edges_up,
        watchers,
        window: secs,
        claim_setup_s,
        edge_setup_s,
        list_keys,
        list_mib,
        list_ms,
        node_puts_s,
        put_errors: d(1),
        keepalives_s: d(2) as f64 / secs,
        etcd_puts_s: m("etcd_mvcc_put_total", 0) / secs,
        etcd_deletes_s: m("etcd_mvcc_delete_total", 0) / secs,
        etcd_events_s: sum_m("etcd_debugging_mvcc_events_total") / secs,
        expected_events_s: watchers as f64 * (node_puts_s + stream_events_s),
        recv_events_s: d(5) as f64 / secs,
        recv_per_watcher_s: d(5) as f64 / secs / set_up.max(1) as f64,
        events_per_msg: d(5) as f64 / d(6).max(1) as f64,
        lag: sh.lag.snapshot(),
        slow_watchers: gauge("etcd_debugging_mvcc_slow_watcher_total"),
        etcd_cpu: (s1.etcd_cpu - s0.etcd_cpu) / secs,
        etcd_rss,
        etcd_hwm,
        sim_cpu: (s1.sim_cpu - s0.sim_cpu) / secs,
        machine_busy: (s1.machine_busy - s0.machine_busy) / secs,
        sim_rss,
        claims: probe.claims,
        lookups: probe.lookups,
        probe_errors: probe.errors,
        failovers: fo_results,
        errors,
    })
}

/// Origin `from` releases a failover key, origin `to` claims it; returns (claim ms, edges
/// that saw the new owner, ms from the claim's start to the last of them).
async fn failover(
    sh: &Shared,
    k: usize,
    from: &EtcdRegistry,
    to: &EtcdRegistry,
    n_edges: usize,
) -> (f64, usize, f64) {
    let Some(f) = sh.failovers.get(k) else {
        return (f64::NAN, 0, f64::NAN);
    };
    if from.release("fo", &f.name).await.is_err() {
        return (f64::NAN, 0, f64::NAN);
    }
    let start = Instant::now();
    let _ = f.start.set(start);
    let claimed = to.claim(stream_record("fo", &f.name, 1), false).await;
    let claim_ms = start.elapsed().as_secs_f64() * 1000.0;
    if !matches!(claimed, Ok(Claim::Owned)) {
        return (claim_ms, 0, f64::NAN);
    }
    while f.seen.load(Ordering::Relaxed) < n_edges && start.elapsed() < FAILOVER_WAIT {
        sleep(Duration::from_millis(5)).await;
    }
    let seen = f.seen.load(Ordering::Relaxed);
    (
        claim_ms,
        seen,
        f.last_us.load(Ordering::Relaxed) as f64 / 1000.0,
    )
}

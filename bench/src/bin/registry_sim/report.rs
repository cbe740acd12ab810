//! registry-sim's results and their markdown. No I/O.

use super::*;

pub(crate) struct ConfigResult {
    pub(crate) edges: usize,
    /// Edges actually running (real + raw set up).
    pub(crate) edges_up: usize,
    pub(crate) watchers: usize,
    pub(crate) window: f64,
    pub(crate) claim_setup_s: f64,
    /// Time to start every edge (lease, record, watch).
    pub(crate) edge_setup_s: f64,
    pub(crate) list_keys: usize,
    pub(crate) list_mib: f64,
    pub(crate) list_ms: f64,
    pub(crate) node_puts_s: f64,
    pub(crate) put_errors: u64,
    pub(crate) keepalives_s: f64,
    /// Member 0's applied puts and deletes per second (those of transactions included).
    pub(crate) etcd_puts_s: f64,
    pub(crate) etcd_deletes_s: f64,
    /// Events sent to watchers per second, summed over the members.
    pub(crate) etcd_events_s: f64,
    pub(crate) expected_events_s: f64,
    /// Events received per second by the raw watchers, and per raw watcher.
    pub(crate) recv_events_s: f64,
    pub(crate) recv_per_watcher_s: f64,
    pub(crate) events_per_msg: f64,
    pub(crate) lag: HistSnapshot,
    pub(crate) slow_watchers: f64,
    pub(crate) etcd_cpu: f64,
    pub(crate) etcd_rss: Vec<f64>,
    pub(crate) etcd_hwm: Vec<f64>,
    pub(crate) sim_cpu: f64,
    pub(crate) sim_rss: f64,
    pub(crate) machine_busy: f64,
    pub(crate) claims: HistSnapshot,
    pub(crate) lookups: HistSnapshot,
    pub(crate) probe_errors: u64,
    /// (claim ms, edges that saw it, all-seen ms).
    pub(crate) failovers: Vec<(f64, usize, f64)>,
    pub(crate) errors: String,
}

pub(crate) fn ms(h: &HistSnapshot, q: f64) -> f64 {
    h.quantile(q) as f64 / 1000.0
}

pub(crate) fn row(r: &ConfigResult) -> String {
    let fo_max = r.failovers.iter().map(|f| f.2).fold(f64::NAN, f64::max);
    let fo_seen = r.failovers.iter().map(|f| f.1).min().unwrap_or(0);
    let fo_list = r
        .failovers
        .iter()
        .map(|f| format!("{:.0}", f.2))
        .collect::<Vec<_>>()
        .join(" / ");
    format!(
        "| {} | {} | {:.0} | {:.0} / {:.0} | {:.0} | {:.0} | {:.0} | {:.0} ({:.0}/watcher, {:.1}/msg) | {:.0} / {:.0} | {:.2} | {:.0} / {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {} ({}/{} edges) | {:.2} / {:.0} |",
        r.edges,
        r.watchers,
        r.node_puts_s,
        r.etcd_puts_s,
        r.etcd_deletes_s,
        r.keepalives_s,
        r.expected_events_s,
        r.etcd_events_s,
        r.recv_events_s,
        r.recv_per_watcher_s,
        r.events_per_msg,
        ms(&r.lag, 0.5),
        ms(&r.lag, 0.99),
        r.etcd_cpu,
        r.etcd_rss.iter().copied().fold(0.0, f64::max),
        r.etcd_hwm.iter().copied().fold(0.0, f64::max),
        ms(&r.claims, 0.5),
        ms(&r.claims, 0.99),
        ms(&r.lookups, 0.5),
        ms(&r.lookups, 0.99),
        if fo_list.is_empty() {
            "-".to_string()
        } else {
            format!("{fo_list} ms, max {fo_max:.0}")
        },
        fo_seen,
        r.edges_up,
        r.sim_cpu,
        r.sim_rss,
    )
}

pub(crate) fn report(args: &Args, all: &[Result<ConfigResult, (usize, String)>]) -> String {
    let results: Vec<&ConfigResult> = all.iter().filter_map(|r| r.as_ref().ok()).collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Registry at scale (registry-sim)\n\n3-member etcd ({}) on loopback, data in {}; \
         M = {} streams claimed by {} origins; lease TTL {} s (keep-alive every TTL/3), \
         load_interval {} s; {} edges per configuration are real `EtcdRegistry` instances, the \
         rest raw etcd-client calls on {} shared connections; prober: {} claim + lookup + \
         release per second; {} failovers per window; window {} s after setup. 2 shared cores: \
         etcd, the simulator and other builds compete, so figures are noisy.\n",
        etcd_version(&args.etcd),
        args.data_root.display(),
        args.streams,
        args.origins,
        args.lease_ttl,
        args.load_interval,
        args.real_edges,
        args.clients,
        args.probe_rate,
        args.failovers,
        args.window,
    );
    let _ = writeln!(
        s,
        "| edges N | watchers | node puts/s sent | etcd puts / deletes per s (member 0, txns included) | keep-alives/s (raw edges) | watch events/s expected | events/s sent by etcd (3 members) | events/s received by raw watchers | node-record lag p50 / p99 ms | etcd CPU (cores, 3 members) | etcd RSS now / peak MiB (largest member) | claim p50 / p99 ms | lookup p50 / p99 ms | failover: last edge sees new owner | simulator CPU cores / RSS MiB |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in &results {
        let _ = writeln!(s, "{}", row(r));
    }
    let _ = writeln!(s, "\nPer configuration:\n");
    for (n, e) in all.iter().filter_map(|r| r.as_ref().err()) {
        let _ = writeln!(s, "- N = {n}: failed: {e}");
    }
    for r in &results {
        let _ = writeln!(
            s,
            "- N = {}: {} edges up; {:.1} s window; machine busy {:.2} of {} cores (etcd, the \
             simulator and everyone else); {} streams claimed in {:.1} s; edges started in {:.1} s; a node's initial list: {} \
             keys, {:.2} MiB, {:.0} ms; slow watchers at the end {:.0}; claims {} / lookups {} \
             probed ({} errors), claim max {:.1} ms, lookup max {:.1} ms; failover claims {} ms; \
             put errors {}; errors: {}.",
            r.edges,
            r.edges_up,
            r.window,
            r.machine_busy,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            args.streams,
            r.claim_setup_s,
            r.edge_setup_s,
            r.list_keys,
            r.list_mib,
            r.list_ms,
            r.slow_watchers,
            r.claims.count(),
            r.lookups.count(),
            r.probe_errors,
            ms(&r.claims, 1.0),
            ms(&r.lookups, 1.0),
            r.failovers
                .iter()
                .map(|f| format!("{:.1}", f.0))
                .collect::<Vec<_>>()
                .join(" / "),
            r.put_errors,
            r.errors,
        );
    }
    let _ = writeln!(
        s,
        "\nwatchers = edges + origins + the prober, each with one watch of the whole prefix \
         (what `ClusterView` holds). Expected events/s = watchers x writes/s under the prefix \
         (node puts + the prober's claim and delete). Node-record lag: now - `load.updated_at` \
         of one node event in {LAG_SAMPLE} received by a raw watcher. Failover: from the start of \
         the new origin's claim (after the old one's release) to the moment the last edge \
         (raw watchers and real edges' views) sees the new owner; `x/N edges` is how many saw it \
         within {} s.",
        FAILOVER_WAIT.as_secs()
    );
    s
}

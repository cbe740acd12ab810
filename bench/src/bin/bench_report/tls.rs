//! The TLS section of BENCHMARKS.md (runs `tls-ours-{rtmp,rtmps,flv,https}-N` of
//! `bench/run.sh`): the same players on one edge over RTMP, RTMPS, HTTP-FLV and HTTPS-FLV, and
//! what a TLS player costs against a plaintext one.

use std::fmt::Write;

use super::{
    Results, core_busy, cpu_per_gbps, edge_cpu, edge_total, errors, f1, f2, per_gbps, proc, ratio,
};

/// (run protocol, label, the plaintext protocol it is compared with).
const PROTOCOLS: [(&str, &str, &str); 4] = [
    ("rtmp", "RTMP", "rtmp"),
    ("rtmps", "RTMPS", "rtmp"),
    ("flv", "HTTP-FLV", "flv"),
    ("https", "HTTPS-FLV", "flv"),
];

pub fn render(o: &mut String, res: &Results) {
    let sizes = res.sizes("tls-ours-rtmp-");
    if !res.runs.keys().any(|k| k.starts_with("tls-ours-")) {
        return;
    }
    let _ = writeln!(
        o,
        "## (i) What a TLS player costs\n\nOne livecdn edge with RTMPS and HTTPS listeners \
         (a self-signed ECDSA P-256 certificate made by `run.sh`; the load generator verifies \
         it with `--ca`), N players of one stream over each protocol, one run each with fresh \
         servers. CPU is the edge process's own CPU time over the window (from /proc/PID/stat: \
         per process, so other programs on a shared machine do not count in it, though they do \
         slow it down); \"per Gbit/s\" divides it by the media delivered to the players. The \
         ratio is TLS / plaintext of that figure (RTMPS / RTMP, HTTPS-FLV / HTTP-FLV). The TLS \
         handshakes happen during the ramp, before the window: the window measures the \
         steady state (encryption and the queued write path).\n"
    );
    let _ = writeln!(
        o,
        "| players | protocol | ok/started | delivered Gbit/s | edge process CPU % | edge CPU % incl. softirq | edge process CPU % per Gbit/s | TLS / plain | edge RSS MiB end | latency ms p50 / p99 | first frame ms p50 / p99 | errors | load generator core busy % | CPU % of other programs |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut ratios = Vec::new();
    for n in &sizes {
        for (proto, label, plain) in PROTOCOLS {
            let Some(r) = res.get(&format!("tls-ours-{proto}-{n}")) else {
                continue;
            };
            let vs = if proto == plain {
                "-".to_string()
            } else {
                match res.get(&format!("tls-ours-{plain}-{n}")) {
                    Some(p) => {
                        ratios.push((*n, label, cpu_per_gbps(r) / cpu_per_gbps(p)));
                        ratio(cpu_per_gbps(r), cpu_per_gbps(p))
                    }
                    None => "-".to_string(),
                }
            };
            let _ = writeln!(
                o,
                "| {n} | {label} | {}/{} | {} | {} | {} | {} | {vs} | {} | {} / {} | {} / {} | {} | {} | {} |",
                r.players.ok,
                r.players.started,
                f2(r.delivered_gbps),
                f1(edge_cpu(r)),
                f1(edge_total(r, &res.server_cpus)),
                f1(per_gbps(edge_cpu(r), r)),
                proc(r, "edge").map_or("-".into(), |p| f1(p.rss_mib_end)),
                f1(r.latency_ms.p50),
                f1(r.latency_ms.p99),
                f1(r.ttff_ms.p50),
                f1(r.ttff_ms.p99),
                errors(r),
                f1(core_busy(r, &res.loadgen_cpus)),
                f1(r.unattributed_cpu_pct),
            );
        }
    }
    let _ = writeln!(o);
    if !ratios.is_empty() {
        let said: Vec<String> = ratios
            .iter()
            .filter(|(_, _, x)| x.is_finite())
            .map(|(n, label, x)| format!("{label} at {n} players: {x:.2}x"))
            .collect();
        let _ = writeln!(
            o,
            "Edge CPU per delivered Gbit/s, TLS against plaintext: {}.\n",
            said.join("; ")
        );
    }
}

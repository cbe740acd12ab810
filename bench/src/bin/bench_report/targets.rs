//! The performance targets table of BENCHMARKS.md: HTTP-FLV against RTMP in the same run, the
//! headline ratio with servers unpinned beside the pinned one (runs `unpinned-*` of
//! `bench/run.sh`), against the moonshot; many streams' memory and latency tail (runs
//! `many-*`).

use std::fmt::Write;

use super::{
    Report, Results, cpu_per_gbps, edge_total, f1, f2, many_gop_peak_mib, median, per_gbps, proc,
};

/// The moonshot: edge CPU per delivered Gbit/s at most this fraction of nginx-rtmp's.
const MOONSHOT: f64 = 0.3;
/// HTTP-FLV's edge CPU per delivered Gbit/s at most this multiple of RTMP's.
const FLV_MAX: f64 = 1.1;
/// Many streams: the edge's RSS at most this multiple of its GOP caches' peak payload.
const MANY_RSS_MAX: f64 = 1.25;

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "no" }
}

pub fn render(o: &mut String, res: &Results) {
    let pinned = res.sizes("fanout-ours-flv-");
    let unpinned = res.sizes("unpinned-ours-rtmp-");
    let many = res.repeats("many-ours");
    if pinned.is_empty() && unpinned.is_empty() && many.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "## Performance targets\n\n*Pinned*: the edge on one core, the load generator on the \
         other (the headline's method; CPU includes the kernel's deferred softirq on the \
         edge's core). *Unpinned*: no `taskset` for any server or the load generator, as an \
         operator who pins nothing runs them; CPU is the edge process's own (softirq deferred \
         to `ksoftirqd` then lands on either core and is charged to no server). CPU is % of a \
         core per delivered Gbit/s. Medians of the runs listed.\n\n| target | measured | ratio \
         | met |\n|---|---|---|---|"
    );
    let sc = &res.server_cpus;
    let pinned_cost = |r: &&Report| per_gbps(edge_total(r, sc), r);
    let process_cost = |r: &&Report| cpu_per_gbps(r);
    let costs = |name: String, f: &dyn Fn(&&Report) -> f64| -> (f64, Vec<f64>) {
        let v: Vec<f64> = res.repeats(&name).iter().map(f).collect();
        (median(v.clone()), v)
    };
    for n in &pinned {
        let flv = costs(format!("fanout-ours-flv-{n}"), &pinned_cost);
        let rtmp = costs(format!("fanout-ours-rtmp-{n}"), &pinned_cost);
        target_row(
            o,
            &format!("HTTP-FLV within {FLV_MAX}x of RTMP, {n} players, pinned"),
            ("HTTP-FLV", flv),
            ("RTMP", rtmp),
            FLV_MAX,
        );
    }
    for n in &unpinned {
        let flv = costs(format!("unpinned-ours-flv-{n}"), &process_cost);
        let rtmp = costs(format!("unpinned-ours-rtmp-{n}"), &process_cost);
        if !flv.1.is_empty() {
            target_row(
                o,
                &format!("HTTP-FLV within {FLV_MAX}x of RTMP, {n} players, unpinned"),
                ("HTTP-FLV", flv),
                ("RTMP", rtmp),
                FLV_MAX,
            );
        }
    }
    for n in res.sizes("fanout-nginx-rtmp-") {
        let (ours, ov) = costs(format!("fanout-ours-rtmp-{n}"), &pinned_cost);
        let (theirs, tv) = costs(format!("fanout-nginx-rtmp-{n}"), &pinned_cost);
        if ov.len() > 1 {
            moonshot_row(o, n, "pinned", (ours, ov), (theirs, tv));
        }
    }
    for n in &unpinned {
        let (ours, ov) = costs(format!("unpinned-ours-rtmp-{n}"), &process_cost);
        let (theirs, tv) = costs(format!("unpinned-nginx-rtmp-{n}"), &process_cost);
        if !tv.is_empty() {
            moonshot_row(o, *n, "unpinned", (ours, ov), (theirs, tv));
        }
    }
    if !many.is_empty() {
        many_rows(o, res, &many);
    }
    let _ = writeln!(o);
    for n in &unpinned {
        let Some(flv) = res.get(&format!("unpinned-ours-flv-{n}")) else {
            continue;
        };
        let Some(rtmp) = res.get(&format!("unpinned-ours-rtmp-{n}")) else {
            continue;
        };
        let _ = writeln!(
            o,
            "Unpinned, {n} players, first run of each: HTTP-FLV latency p50 / p99 {} / {} ms and \
             first frame p50 / p99 {} / {} ms; RTMP {} / {} ms and {} / {} ms; ok {}/{} and \
             {}/{}.\n",
            f1(flv.latency_ms.p50),
            f1(flv.latency_ms.p99),
            f1(flv.ttff_ms.p50),
            f1(flv.ttff_ms.p99),
            f1(rtmp.latency_ms.p50),
            f1(rtmp.latency_ms.p99),
            f1(rtmp.ttff_ms.p50),
            f1(rtmp.ttff_ms.p99),
            flv.players.ok,
            flv.players.started,
            rtmp.players.ok,
            rtmp.players.started,
        );
    }
}

/// Many streams (pinned, like the headline): the edge's RSS against its GOP caches' peak
/// payload, and the latency p99 against nginx-rtmp's in the same rounds.
fn many_rows(o: &mut String, res: &Results, ours: &[&Report]) {
    let streams = ours[0].config.streams;
    let players = ours[0].config.players;
    let rss: Vec<f64> = ours
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let gop = many_gop_peak_mib(res, "many-ours", i)?;
            Some(proc(r, "edge")?.rss_mib_peak / gop)
        })
        .collect();
    if !rss.is_empty() {
        let m = median(rss.clone());
        let list = rss.iter().map(|x| f2(*x)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            o,
            "| many streams ({streams} x {}): edge RSS at most {MANY_RSS_MAX}x its GOP caches' \
             peak payload, pinned | RSS / GOP peak {} ({list}) | {}x | {} |",
            players / streams.max(1),
            f2(m),
            f2(m),
            met(m <= MANY_RSS_MAX)
        );
    }
    let theirs = res.repeats("many-nginx");
    if !theirs.is_empty() {
        let p99 = |runs: &[&Report]| -> (f64, Vec<f64>) {
            let v: Vec<f64> = runs.iter().map(|r| r.latency_ms.p99).collect();
            (median(v.clone()), v)
        };
        target_row(
            o,
            &format!(
                "many streams ({streams} x {}): latency p99 (ms) at most nginx-rtmp's, pinned",
                players / streams.max(1)
            ),
            ("livecdn", p99(ours)),
            ("nginx-rtmp", p99(&theirs)),
            1.0,
        );
    }
}

fn moonshot_row(
    o: &mut String,
    n: usize,
    how: &str,
    ours: (f64, Vec<f64>),
    theirs: (f64, Vec<f64>),
) {
    let what = format!("moonshot: RTMP edge at most {MOONSHOT}x nginx-rtmp, {n} players, {how}");
    target_row(
        o,
        &what,
        ("livecdn", ours),
        ("nginx-rtmp", theirs),
        MOONSHOT,
    );
}

/// One row: `a`'s median cost against `b`'s (each with its runs), met if the ratio is at most
/// `max`.
fn target_row(
    o: &mut String,
    what: &str,
    a: (&str, (f64, Vec<f64>)),
    b: (&str, (f64, Vec<f64>)),
    max: f64,
) {
    let list = |v: &[f64]| v.iter().map(|x| f2(*x)).collect::<Vec<_>>().join(", ");
    let ((an, (am, av)), (bn, (bm, bv))) = (a, b);
    let r = am / bm;
    let _ = writeln!(
        o,
        "| {what} | {an} {} ({}) vs {bn} {} ({}) | {}x | {} |",
        f2(am),
        list(&av),
        f2(bm),
        list(&bv),
        f2(r),
        met(r <= max)
    );
}

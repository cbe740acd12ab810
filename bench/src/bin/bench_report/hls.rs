//! The HLS section of BENCHMARKS.md: the livecdn edge's plain HLS and LL-HLS against
//! nginx-rtmp's own HLS served by nginx (runs `hls-*` of `bench/run.sh`), a headline with
//! the targets, the runs in detail, a cold edge, and memory per stream.

use std::fmt::Write;

use bench::report::Report;

use super::{Results, core_busy, edge_cpu, edge_total, errors, f1, f2, per_gbps, proc, ratio};

/// Edge CPU incl. softirq per delivered Gbit/s.
fn total_per_gbps(res: &Results, r: &Report) -> f64 {
    per_gbps(edge_total(r, &res.server_cpus), r)
}

fn soft_errors(r: &Report) -> String {
    match &r.hls {
        Some(h) if !h.errors.is_empty() => h
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".into(),
    }
}

fn mode(name: &str) -> &'static str {
    if name.contains("-ll") {
        "LL-HLS (fMP4 parts)"
    } else {
        "plain HLS (MPEG-TS)"
    }
}

fn server(name: &str) -> &'static str {
    if name.contains("nginx") {
        "nginx-rtmp + nginx"
    } else {
        "livecdn"
    }
}

/// Edge RSS growth per stream, MiB.
fn rss_per_stream(r: &Report) -> f64 {
    let Some(p) = proc(r, "edge") else {
        return f64::NAN;
    };
    (p.rss_mib_end - p.rss_mib_before) / r.config.streams.max(1) as f64
}

/// Bytes of files in the `--du` directories, MiB.
fn dir_mib(r: &Report) -> f64 {
    if r.dirs.is_empty() {
        return f64::NAN;
    }
    r.dirs.iter().map(|d| d.bytes as f64).sum::<f64>() / 1048576.0
}

fn ok(r: Option<&Report>) -> String {
    r.map_or("-".into(), |r| {
        format!("{}/{}", r.players.ok, r.players.started)
    })
}

pub(super) fn render(o: &mut String, res: &Results) {
    if !res.runs.keys().any(|k| k.starts_with("hls-")) {
        return;
    }
    let sizes = res.sizes("hls-ours-ts-");
    let gop = res
        .runs
        .iter()
        .find(|(k, _)| k.starts_with("hls-"))
        .map_or(0, |(_, r)| r.config.gop);
    let fps = res
        .runs
        .iter()
        .find(|(k, _)| k.starts_with("hls-"))
        .map_or(25, |(_, r)| r.config.fps.max(1));
    let _ = writeln!(
        o,
        "## (h) HLS: the livecdn edge vs nginx-rtmp's HLS served by nginx\n\n\
         livecdn: the edge pulls the stream from the origin and packages it in memory; clients \
         of `/live/NAME/ts.m3u8` (plain HLS, MPEG-TS segments) or `/live/NAME.m3u8` (LL-HLS, \
         fMP4 parts of 300 ms, blocking playlist reloads with `_HLS_msn`/`_HLS_part` and \
         `_HLS_skip=YES`). nginx-rtmp: the origin pushes the stream to an edge nginx whose \
         `application` has `hls on` (2 s fragments, 20 s playlist, on tmpfs) and whose `http` \
         block serves them (`sendfile on`); plain clients (nginx-rtmp has no LL-HLS). One \
         worker each, both pinned to the servers' core like every run here. A keyframe every \
         {gop} frames ({:.1} s) on both, so both cut 2 s segments. Every client is `loadgen`'s \
         HLS client on a keep-alive HTTP/1.1 connection: plain clients start at the newest \
         segment and reload the playlist every second (half the 2 s fragments; the first \
         reload at a random point of that second), fetching each new segment once; LL-HLS clients start at the newest independent part and fetch each new \
         part after a blocking reload.\n\n\
         *Latency* here is glass-to-glass as a client sees it: the send instant stamped in each \
         video frame to the instant the client has received that frame (the end of the frame's \
         PES or fMP4 sample in the response), every frame of every client in the window; a \
         player's hold-back (3 segments, or 3 parts for LL-HLS) would add to it. *Serving CPU* \
         is the edge process (livecdn's edge; nginx's edge worker, which also muxes the \
         segments), plus softirq on its core as in (a). *ok*: no failed request, no gap over \
         1 s plus the segment (plain) or part (LL) duration, and at least 90% of the frame \
         rate over the window less one segment (media arrives a segment at a time).\n",
        f64::from(gop) / f64::from(fps),
    );

    // Headline with the targets.
    let _ = writeln!(
        o,
        "| figure | livecdn | nginx-rtmp + nginx | ratio | target |\n|---|---|---|---|---|"
    );
    let row = |o: &mut String, what: String, x: f64, y: f64, unit: &str, target: &str| {
        let fmt = |v: f64| {
            if v.is_finite() {
                format!("{} {unit}", f2(v))
            } else {
                "-".into()
            }
        };
        let _ = writeln!(
            o,
            "| {what} | {} | {} | {} | {target} |",
            fmt(x),
            fmt(y),
            ratio(x, y)
        );
    };
    for &n in &sizes {
        let ours = res.get(&format!("hls-ours-ts-{n}"));
        let ll = res.get(&format!("hls-ours-ll-{n}"));
        let theirs = res.get(&format!("hls-nginx-ts-{n}"));
        let tot = |r: Option<&Report>| r.map_or(f64::NAN, |r| total_per_gbps(res, r));
        let own = |r: Option<&Report>| r.map_or(f64::NAN, |r| per_gbps(edge_cpu(r), r));
        row(
            o,
            format!("serving CPU per delivered Gbit/s, incl. softirq, plain HLS, {n} clients"),
            tot(ours),
            tot(theirs),
            "% of a core",
            "0.8x",
        );
        row(
            o,
            format!("serving CPU per delivered Gbit/s, process only, plain HLS, {n} clients"),
            own(ours),
            own(theirs),
            "% of a core",
            "",
        );
        row(
            o,
            format!(
                "serving CPU per delivered Gbit/s, incl. softirq, livecdn LL-HLS vs nginx plain, {n} clients"
            ),
            tot(ll),
            tot(theirs),
            "% of a core",
            "",
        );
        let _ = writeln!(
            o,
            "| clients ok / started, {n} clients | plain {}, LL-HLS {} | {} | | all ok (1000) |",
            ok(ours),
            ok(ll),
            ok(theirs)
        );
        let lat = |r: Option<&Report>, p99: bool| {
            r.map_or(f64::NAN, |r| {
                if p99 {
                    r.latency_ms.p99
                } else {
                    r.latency_ms.p50
                }
            })
        };
        row(
            o,
            format!("plain HLS latency p50, {n} clients"),
            lat(ours, false),
            lat(theirs, false),
            "ms",
            "<= nginx-rtmp's",
        );
        row(
            o,
            format!("plain HLS latency p99, {n} clients"),
            lat(ours, true),
            lat(theirs, true),
            "ms",
            "",
        );
        row(
            o,
            format!("LL-HLS latency p50, {n} clients"),
            lat(ll, false),
            f64::NAN,
            "ms",
            "p50 <= 1500 ms",
        );
        row(
            o,
            format!("LL-HLS latency p99, {n} clients"),
            lat(ll, true),
            f64::NAN,
            "ms",
            "",
        );
    }
    for (name, what) in [
        ("hls-cold-ours-ll", "LL-HLS"),
        ("hls-cold-ours-ts", "plain HLS"),
    ] {
        if let Some(r) = res.get(name) {
            let fp = r.hls.as_ref().map(|h| h.first_playlist_ms);
            row(
                o,
                format!(
                    "cold edge: first playable playlist p50, {what} ({} streams)",
                    r.config.streams
                ),
                fp.map_or(f64::NAN, |s| s.p50),
                f64::NAN,
                "ms",
                "",
            );
            row(
                o,
                format!("cold edge: first playable playlist p99, {what}"),
                fp.map_or(f64::NAN, |s| s.p99),
                f64::NAN,
                "ms",
                "p99 <= 500 ms",
            );
        }
    }
    if let Some(a) = res.get("hls-many-ours") {
        let b = res.get("hls-many-nginx");
        row(
            o,
            format!(
                "memory per stream: edge RSS growth, {} streams",
                a.config.streams
            ),
            rss_per_stream(a),
            b.map_or(f64::NAN, rss_per_stream),
            "MiB",
            "bounded",
        );
        if let Some(b) = b {
            let n = b.config.streams.max(1) as f64;
            row(
                o,
                "memory per stream incl. nginx-rtmp's fragments on tmpfs".into(),
                rss_per_stream(a),
                rss_per_stream(b) + dir_mib(b) / n,
                "MiB",
                "",
            );
        }
    }
    let _ = writeln!(o);

    // The runs.
    let _ = writeln!(
        o,
        "### HLS runs\n\n| server | mode | clients | ok/started | delivered Gbit/s | serving process CPU % | incl. softirq | process CPU % per Gbit/s | incl. softirq per Gbit/s | edge RSS MiB | latency ms p50 / p95 / p99 / max | first playlist ms p50 / p99 | first frame ms p50 / p99 | playlists/s (blocking) | segments/s | parts/s | gaps | errors | failed requests | load generator core busy % | CPU % of other programs |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for &n in &sizes {
        for name in [
            format!("hls-ours-ts-{n}"),
            format!("hls-nginx-ts-{n}"),
            format!("hls-ours-ll-{n}"),
        ] {
            let Some(r) = res.get(&name) else { continue };
            let h = r.hls.clone().unwrap_or_default();
            let core = edge_total(r, &res.server_cpus);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} | {} / {} | {} / {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
                server(&name),
                mode(&name),
                r.config.players,
                r.players.ok,
                r.players.started,
                f2(r.delivered_gbps),
                f1(edge_cpu(r)),
                f1(core),
                f1(per_gbps(edge_cpu(r), r)),
                f1(per_gbps(core, r)),
                proc(r, "edge").map_or("-".into(), |p| f1(p.rss_mib_end)),
                f1(r.latency_ms.p50),
                f1(r.latency_ms.p95),
                f1(r.latency_ms.p99),
                f1(r.latency_ms.max),
                f1(h.first_playlist_ms.p50),
                f1(h.first_playlist_ms.p99),
                f1(r.ttff_ms.p50),
                f1(r.ttff_ms.p99),
                f1(h.playlists_per_s),
                f1(h.blocking_reloads_per_s),
                f1(h.segments_per_s),
                f1(h.parts_per_s),
                r.gaps_over_1s,
                errors(r),
                soft_errors(r),
                f1(core_busy(r, &res.loadgen_cpus)),
                f1(r.unattributed_cpu_pct),
            );
        }
    }
    let _ = writeln!(o);

    // Cold edge.
    let cold: Vec<_> = ["hls-cold-ours-ll", "hls-cold-ours-ts"]
        .iter()
        .filter_map(|k| res.get(k).map(|r| (*k, r)))
        .collect();
    if !cold.is_empty() {
        let _ = writeln!(
            o,
            "### HLS on a cold edge\n\nOne client per stream on an edge that has never \
             pulled it (each stream published to the origin 3 s before): the first playlist \
             request makes the edge look the stream up, pull it, and package it; the \
             playlist is answered once it lists a complete segment (a request without \
             `_HLS_msn` waits for one, for players that treat a playlist of parts only as \
             empty). nginx-rtmp has no equivalent (its HLS exists only where the stream is \
             published or pushed).\n\n| mode | streams = clients | ok | first playable \
             playlist ms p50 / p95 / p99 / max | first frame ms p50 / p99 | errors |\n|---|---|---|---|---|---|"
        );
        for (name, r) in cold {
            let fp = r.hls.clone().unwrap_or_default().first_playlist_ms;
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} / {} / {} / {} | {} / {} | {}; {} |",
                mode(name),
                r.config.players,
                r.players.ok,
                f1(fp.p50),
                f1(fp.p95),
                f1(fp.p99),
                f1(fp.max),
                f1(r.ttff_ms.p50),
                f1(r.ttff_ms.p99),
                errors(r),
                soft_errors(r),
            );
        }
        let _ = writeln!(o);
    }

    // Memory.
    let many: Vec<_> = ["hls-many-ours", "hls-many-nginx"]
        .iter()
        .filter_map(|k| res.get(k).map(|r| (*k, r)))
        .collect();
    if !many.is_empty() {
        let _ = writeln!(
            o,
            "### HLS memory per stream\n\nN streams on one edge, each with clients for {} s \
             before the end of the window (livecdn's window is 10 segments of 2 s, so it is \
             full): livecdn with one LL-HLS and one plain client per stream (both the fMP4 \
             and the MPEG-TS forms are kept); nginx-rtmp with one plain client per stream. \
             RSS growth is the edge's VmRSS at the end less before the first client (livecdn's \
             edge had not pulled the streams yet; nginx's edge was already packaging them), \
             per stream; nginx-rtmp's fragments live on tmpfs, outside its RSS.\n\n| server | \
             streams | clients ok/started | edge RSS MiB before / peak / end | RSS growth per \
             stream MiB | HLS files on tmpfs MiB (files) | per stream incl. tmpfs MiB | errors |\n|---|---|---|---|---|---|---|---|",
            res.get("hls-many-ours")
                .or(res.get("hls-many-nginx"))
                .map_or(0.0, |r| r.config.warmup_s + r.config.duration_s),
        );
        for (name, r) in many {
            let edge = proc(r, "edge");
            let n = r.config.streams.max(1) as f64;
            let tmpfs = dir_mib(r);
            let files: u64 = r.dirs.iter().map(|d| d.files).sum();
            let _ = writeln!(
                o,
                "| {} | {} | {}/{} | {} / {} / {} | {} | {} | {} | {}; {} |",
                server(name),
                r.config.streams,
                r.players.ok,
                r.players.started,
                edge.map_or("-".into(), |p| f1(p.rss_mib_before)),
                edge.map_or("-".into(), |p| f1(p.rss_mib_peak)),
                edge.map_or("-".into(), |p| f1(p.rss_mib_end)),
                f2(rss_per_stream(r)),
                if tmpfs.is_finite() {
                    format!("{} ({files})", f1(tmpfs))
                } else {
                    "-".into()
                },
                f2(rss_per_stream(r) + if tmpfs.is_finite() { tmpfs / n } else { 0.0 }),
                errors(r),
                soft_errors(r),
            );
        }
        let _ = writeln!(o);
    }

    if let (Some(a), Some(b)) = (
        res.text("nginx-hls-origin.conf"),
        res.text("nginx-hls-edge.conf"),
    ) {
        let _ = writeln!(
            o,
            "nginx-rtmp HLS configuration (generated by `run.sh`), origin:\n\n```nginx\n{a}```\n\nEdge (packages and serves):\n\n```nginx\n{b}```\n"
        );
    }
}

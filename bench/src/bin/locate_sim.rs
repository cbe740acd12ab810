//! `locate-sim`: issue 14's target, measured by simulation. 3 regions x 3 edges, 100 streams
//! with Zipf (s = 1) audiences, 20,000 players arriving one by one in a random order from random
//! regions; each placed by the locator with the loads so far, and, on the same arrivals, by
//! round robin per region and by plain bounded loads. Prints a markdown table (upstream pulls,
//! max/mean load, decisions by reason), then what one `choose` call costs for 9 and 100 edges.
//! Deterministic: a seeded PRNG (`--seed`), no clock in the simulation itself.

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use common::cluster::{NodeLoad, stream_key};
use common::locate::sim::{self, Outcome, Placement, Spec, SplitMix64};
use common::locate::{LocateConfig, Reason, choose};

#[derive(Debug, Parser)]
#[command(name = "locate-sim")]
struct Args {
    #[arg(long, default_value_t = Spec::issue_14().seed)]
    seed: u64,
    #[arg(long, default_value_t = Spec::issue_14().players)]
    players: u64,
    #[arg(long, default_value_t = Spec::issue_14().streams)]
    streams: usize,
    /// Skip the timing of `choose` (the table alone is deterministic).
    #[arg(long)]
    no_timing: bool,
}

fn main() {
    let args = Args::parse();
    let spec = Spec {
        seed: args.seed,
        players: args.players,
        streams: args.streams,
        ..Spec::issue_14()
    };
    println!(
        "## Locate simulation\n\n{} regions x {} edges, {} streams (Zipf s = 1), {} players, \
         seed {}; regions 10 apart on a line; players never leave. Pulls: distinct (edge, \
         stream) pairs. max/mean: busiest edge over the mean, worst region (what the bound \
         controls) and over all edges (adds the regions' random share of players).\n",
        spec.regions, spec.edges_per_region, spec.streams, spec.players, spec.seed
    );
    let rr = sim::run(&spec, Placement::RoundRobin);
    println!(
        "| placement | epsilon | pulls | pulls / round robin | max/mean (region) | max/mean (all) \
         | region_hit | spill | fallback_region | no_edge |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    row("round robin per region", None, &rr, &rr);
    for epsilon in [0.1, 0.25, 0.5] {
        row(
            "locate",
            Some(epsilon),
            &sim::run(&spec, Placement::Locate { epsilon }),
            &rr,
        );
        row(
            "plain bounded loads",
            Some(epsilon),
            &sim::run(&spec, Placement::PlainBoundedLoads { epsilon }),
            &rr,
        );
    }
    println!(
        "\nTarget: pulls <= 0.5 x round robin's, max/mean (region) <= 1 + epsilon (+ one player: \
         the bound is rounded up to a whole player)."
    );
    if !args.no_timing {
        println!("\n| edges | list length | ns per `choose` |\n|---|---|---|");
        for (regions, per_region) in [(3, 3), (4, 25)] {
            for max in [1, 4] {
                let ns = time_choose(regions, per_region, max);
                println!("| {} | {max} | {ns:.0} |", regions * per_region);
            }
        }
    }
}

fn row(name: &str, epsilon: Option<f64>, got: &Outcome, rr: &Outcome) {
    let eps = epsilon.map_or("-".to_string(), |e| e.to_string());
    let ratio = got.pulls as f64 / rr.pulls.max(1) as f64;
    let count = |r| {
        if name.starts_with("round robin") {
            "-".to_string()
        } else {
            got.count(r).to_string()
        }
    };
    println!(
        "| {name} | {eps} | {} | {ratio:.2} | {:.3} | {:.3} | {} | {} | {} | {} |",
        got.pulls,
        got.region_max_over_mean,
        got.max_over_mean(),
        count(Reason::RegionHit),
        count(Reason::SpillOverBound),
        count(Reason::FallbackRegion),
        count(Reason::NoEdge),
    );
}

/// Mean ns of one `choose` over a cluster of `regions x per_region` edges with random loads and
/// 1,000 stream keys, clients from every region in turn.
fn time_choose(regions: usize, per_region: usize, max: usize) -> f64 {
    let mut rng = SplitMix64::new(1);
    let mut nodes = sim::cluster(regions, per_region);
    for n in &mut nodes {
        n.load = Some(NodeLoad {
            players: 1000 + rng.below(500) as u64,
            ..Default::default()
        });
    }
    let cfg = LocateConfig {
        distances: sim::distances(regions),
        ..Default::default()
    };
    let keys: Vec<String> = (0..1000)
        .map(|i| stream_key("live", &format!("s{i}")))
        .collect();
    let client_regions: Vec<String> = (0..regions).map(sim::region_name).collect();
    // A fraction of a second per figure; the best of three passes, since the machine may be
    // shared (the first pass also warms the caches).
    let calls = 1_000_000 / (regions * per_region);
    let mut spent = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        for i in 0..calls {
            let region = &client_regions[i % regions];
            let key = &keys[i % keys.len()];
            black_box(choose(black_box(region), key, black_box(&nodes), &cfg, max));
        }
        spent = spent.min(start.elapsed().as_nanos() as f64);
    }
    spent / calls as f64
}

//! A deterministic simulation of the locator against round robin on the same players (issue
//! 14's target: upstream pulls and load spread). Used by the `locate-sim` bench binary, which
//! prints the figures, and by a unit test that asserts them on a smaller population. Pure: a
//! seeded PRNG, no clock, no I/O.

use std::collections::HashMap;

use super::{Filter, LocateConfig, Reason, RegionDistances, Shedding, choose_shedding, mix64};
use crate::cluster::{NodeLoad, NodeRecord, Role, stream_key};

/// splitmix64 (Steele, Lea, Flood 2014): tiny, seedable and the same everywhere, which is all a
/// reproducible simulation needs.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-32 for the sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The simulated cluster and audience.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub regions: usize,
    pub edges_per_region: usize,
    pub streams: usize,
    /// Players over all streams, split by a Zipf law (s = 1) over the streams.
    pub players: u64,
    pub seed: u64,
}

impl Spec {
    /// The issue's setting: 3 regions x 3 edges, 100 streams, 20,000 players.
    pub fn issue_14() -> Self {
        Self {
            regions: 3,
            edges_per_region: 3,
            streams: 100,
            players: 20_000,
            seed: 14,
        }
    }
}

/// How each arriving player is placed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Placement {
    /// `choose` with the loads so far.
    Locate { epsilon: f64 },
    /// `choose` as plain bounded loads would (one level for every stream, `Shedding::Uniform`),
    /// to show what shedding by stream saves.
    PlainBoundedLoads { epsilon: f64 },
    /// The next edge of the player's region, whatever the stream (the baseline).
    RoundRobin,
}

/// What a run ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub players: u64,
    /// Distinct (edge, stream) pairs: how many upstream pulls the edges hold.
    pub pulls: usize,
    pub max_load: u64,
    /// Over every edge of every region.
    pub mean_load: f64,
    /// The worst region's busiest edge over that region's mean: what the bound controls (the
    /// locator keeps a region's players in that region, so a region that draws more players
    /// than another has busier edges whatever the choice inside it).
    pub region_max_over_mean: f64,
    /// Decisions per reason, indexed as `Reason::ALL` (round robin counts none).
    pub reasons: [u64; 4],
}

impl Outcome {
    pub fn max_over_mean(&self) -> f64 {
        if self.mean_load > 0.0 {
            self.max_load as f64 / self.mean_load
        } else {
            0.0
        }
    }

    pub fn count(&self, reason: Reason) -> u64 {
        Reason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.reasons[i])
    }
}

/// Audiences of `streams` streams under a Zipf law with s = 1 (stream r gets a share 1/r),
/// rounded by largest remainder so they add up to exactly `players`.
pub fn zipf_audiences(streams: usize, players: u64) -> Vec<u64> {
    if streams == 0 {
        return Vec::new();
    }
    let h: f64 = (1..=streams).map(|r| 1.0 / r as f64).sum();
    let exact: Vec<f64> = (1..=streams)
        .map(|r| players as f64 / (r as f64 * h))
        .collect();
    let mut out: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut left = players.saturating_sub(out.iter().sum());
    let mut by_remainder: Vec<usize> = (0..streams).collect();
    by_remainder.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    for i in by_remainder.into_iter().cycle() {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

pub fn region_name(i: usize) -> String {
    format!("r{i}")
}

pub fn node_id(region: usize, edge: usize) -> String {
    format!("r{region}-e{edge}")
}

/// `regions x edges_per_region` idle tier-1 edges, no capacity limit, region-major order.
pub fn cluster(regions: usize, edges_per_region: usize) -> Vec<NodeRecord> {
    let mut nodes = Vec::with_capacity(regions * edges_per_region);
    for r in 0..regions {
        for e in 0..edges_per_region {
            nodes.push(NodeRecord {
                node_id: node_id(r, e),
                role: Role::Edge as i32,
                region: region_name(r),
                rtmp_address: format!("10.{r}.0.{e}:1935"),
                http_address: format!("10.{r}.0.{e}:8080"),
                load: Some(NodeLoad::default()),
                tier: 1,
                ..Default::default()
            });
        }
    }
    nodes
}

/// Regions on a line, 10 apart.
pub fn distances(regions: usize) -> RegionDistances {
    let mut specs = Vec::new();
    for a in 0..regions {
        for b in a + 1..regions {
            specs.push(format!("r{a}:r{b}={}", (b - a) * 10));
        }
    }
    // The names and numbers above are always valid.
    RegionDistances::parse(&specs).unwrap_or_default()
}

/// The arrivals of a spec: (stream, region) per player, in a random order, from random regions.
/// The same for every placement, so they are compared on the same input.
pub fn arrivals(spec: &Spec) -> Vec<(usize, usize)> {
    let mut rng = SplitMix64::new(spec.seed);
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (stream, n) in zipf_audiences(spec.streams, spec.players)
        .into_iter()
        .enumerate()
    {
        for _ in 0..n {
            out.push((stream, rng.below(spec.regions.max(1))));
        }
    }
    // Fisher-Yates.
    for i in (1..out.len()).rev() {
        let j = rng.below(i + 1);
        out.swap(i, j);
    }
    out
}

/// Places every player of `spec` one by one (players never leave) and measures the end state.
pub fn run(spec: &Spec, placement: Placement) -> Outcome {
    let mut nodes = cluster(spec.regions, spec.edges_per_region);
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.node_id.clone(), i))
        .collect();
    let keys: Vec<String> = (0..spec.streams)
        .map(|s| stream_key("live", &format!("s{s}")))
        .collect();
    let regions: Vec<String> = (0..spec.regions).map(region_name).collect();
    let cfg = match placement {
        Placement::Locate { epsilon } | Placement::PlainBoundedLoads { epsilon } => LocateConfig {
            epsilon,
            distances: distances(spec.regions),
        },
        Placement::RoundRobin => LocateConfig::default(),
    };
    let mut pulled = vec![false; nodes.len() * spec.streams];
    let mut round_robin = vec![0usize; spec.regions];
    let mut reasons = [0u64; 4];
    for (stream, region) in arrivals(spec) {
        let edge = match placement {
            Placement::Locate { .. } | Placement::PlainBoundedLoads { .. } => {
                let shedding = match placement {
                    Placement::PlainBoundedLoads { .. } => Shedding::Uniform,
                    _ => Shedding::ByStream,
                };
                let (region, key) = (&regions[region], &keys[stream]);
                let choice =
                    choose_shedding(shedding, Filter::default(), region, key, &nodes, &cfg, 1);
                let reason = Reason::of(&choice);
                if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
                    reasons[i] += 1;
                }
                choice.first().and_then(|c| index.get(&c.node_id).copied())
            }
            Placement::RoundRobin => {
                let next = &mut round_robin[region];
                let edge = region * spec.edges_per_region + *next;
                *next = (*next + 1) % spec.edges_per_region.max(1);
                Some(edge)
            }
        };
        let Some(edge) = edge else { continue };
        if let Some(load) = nodes.get_mut(edge).and_then(|n| n.load.as_mut()) {
            load.players += 1;
        }
        if let Some(p) = pulled.get_mut(edge * spec.streams + stream) {
            *p = true;
        }
    }
    let loads: Vec<u64> = nodes
        .iter()
        .map(|n| n.load.map_or(0, |l| l.players))
        .collect();
    let total: u64 = loads.iter().sum();
    let region_max_over_mean = loads
        .chunks(spec.edges_per_region.max(1))
        .map(|region| {
            let sum: u64 = region.iter().sum();
            let max = region.iter().copied().max().unwrap_or(0);
            if sum == 0 {
                0.0
            } else {
                max as f64 * region.len() as f64 / sum as f64
            }
        })
        .fold(0.0, f64::max);
    Outcome {
        region_max_over_mean,
        players: total,
        pulls: pulled.iter().filter(|p| **p).count(),
        max_load: loads.iter().copied().max().unwrap_or(0),
        mean_load: total as f64 / loads.len().max(1) as f64,
        reasons,
    }
}

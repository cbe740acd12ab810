//! The locator: which edge a player of a stream should use, as a pure function of (client
//! region, stream key, cluster view). No I/O, no clock, no randomness: every node must reach the
//! same answer from the same view, and the tests pin it.
//!
//! Edges of the client's region come first, then other regions by a configured distance. Inside
//! a region, *consistent hashing with bounded loads* (Mirrokni, Thorup, Zadimoghaddam 2018) over
//! rendezvous hashing: a stream's players stay on the edge the stream hashes to until that edge
//! is loaded above the region's mean, then go to the stream's next edge; no edge goes past
//! (1 + epsilon) x the mean. A stream is thus pulled from upstream by as few edges as its
//! audience needs. An edge over the mean sheds whole streams rather than a slice of each (see
//! `Shedding`), which is what keeps the pulls low when epsilon is small.

mod region;
pub mod sim;
#[cfg(test)]
mod tests;

pub use region::{RegionDistances, RegionMap, UNKNOWN_DISTANCE, client_ip};

use crate::cluster::{NodeRecord, Role};

/// How edges are chosen (`--locate-epsilon`, `--region-distance`).
#[derive(Debug, Clone, PartialEq)]
pub struct LocateConfig {
    /// How far above its region's mean load an edge may go, as a fraction of the mean; between
    /// the mean and that bound it sheds streams to their next edges. Small: even loads, more
    /// edges pull each popular stream; large: fewer pulls, less even loads. Negative or not
    /// finite counts as 0.
    pub epsilon: f64,
    pub distances: RegionDistances,
}

impl LocateConfig {
    pub const DEFAULT_EPSILON: f64 = 0.25;

    /// A config whose `epsilon` is checked (finite, >= 0), for config loading.
    pub fn new(epsilon: f64, distances: RegionDistances) -> Result<Self, String> {
        if !epsilon.is_finite() || epsilon < 0.0 {
            return Err(format!(
                "locate epsilon must be a finite number >= 0, not {epsilon}"
            ));
        }
        Ok(Self { epsilon, distances })
    }
}

impl Default for LocateConfig {
    fn default() -> Self {
        Self {
            epsilon: Self::DEFAULT_EPSILON,
            distances: RegionDistances::default(),
        }
    }
}

/// Why an edge was chosen (the `reason` label of the locate metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The stream's first edge in the client's region.
    RegionHit,
    /// An edge of another region: the client's region has no eligible edge.
    FallbackRegion,
    /// A later edge of the client's region: the stream's earlier edges there are at their
    /// level for it (at most the bound, see `Shedding`).
    SpillOverBound,
    /// No eligible edge anywhere (`choose` returns nothing; the caller renders it).
    NoEdge,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::RegionHit,
        Reason::FallbackRegion,
        Reason::SpillOverBound,
        Reason::NoEdge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RegionHit => "region_hit",
            Reason::FallbackRegion => "fallback_region",
            Reason::SpillOverBound => "spill",
            Reason::NoEdge => "no_edge",
        }
    }

    /// The reason of a whole answer: its first choice's, or `NoEdge` when it is empty.
    pub fn of(choices: &[Choice]) -> Reason {
        choices.first().map_or(Reason::NoEdge, |c| c.reason)
    }
}

/// One edge of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub node_id: String,
    pub region: String,
    /// Why this edge, at its place in the list.
    pub reason: Reason,
}

/// Which edges may be chosen besides the rules every choice obeys (role edge, not draining,
/// not full).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only edges of this tier (a tier-n edge picks its parent among tier n-1 with the same
    /// hashing, so a stream enters each tier through as few edges as possible). `None`: any.
    pub tier: Option<u32>,
}

impl Filter {
    pub fn tier(tier: u32) -> Self {
        Self { tier: Some(tier) }
    }
}

/// Edges for a player of `stream_key` (see `cluster::stream_key`) from `client_region`, ordered
/// best-first, at most `max` entries; empty when no edge is eligible. Any eligible edge, any
/// tier; see [`choose_in`].
pub fn choose(
    client_region: &str,
    stream_key: &str,
    nodes: &[NodeRecord],
    cfg: &LocateConfig,
    max: usize,
) -> Vec<Choice> {
    choose_in(
        Filter::default(),
        client_region,
        stream_key,
        nodes,
        cfg,
        max,
    )
}

/// Where players go: [`choose`] among the edges of the outermost tier (the highest tier number
/// of any edge in `nodes`: with tiers, players belong on the leaves and the inner tiers feed
/// them), or among every edge when none of that tier is eligible.
pub fn choose_for_players(
    client_region: &str,
    stream_key: &str,
    nodes: &[NodeRecord],
    cfg: &LocateConfig,
    max: usize,
) -> Vec<Choice> {
    let outer = nodes
        .iter()
        .filter(|n| n.role == Role::Edge as i32)
        .map(|n| n.tier)
        .max();
    if let Some(tier) = outer {
        let leaves = choose_in(
            Filter::tier(tier),
            client_region,
            stream_key,
            nodes,
            cfg,
            max,
        );
        if !leaves.is_empty() {
            return leaves;
        }
    }
    choose(client_region, stream_key, nodes, cfg, max)
}

/// [`choose`] among the edges `filter` lets through (a tier-n edge looking for its parent in
/// tier n-1 uses the same hashing, so a stream enters each tier through few edges).
///
/// Regions are taken by (distance from `client_region`, name). In a region, edges are ranked by
/// the rendezvous score of (stream key, node id), and each edge whose players are under its
/// admission level for this stream (see `Shedding`) is listed, in that order. The list after
/// the first entry is where a client fails over to. Edges at or over their level are left out:
/// the level never exceeds the bound `ceil((1 + epsilon) * mean)`, the promise that no edge
/// takes more than its share, and never falls below `ceil(mean)`, so a region with an eligible
/// edge always has one under it and the client's region is left only when it has none at all.
pub fn choose_in(
    filter: Filter,
    client_region: &str,
    stream_key: &str,
    nodes: &[NodeRecord],
    cfg: &LocateConfig,
    max: usize,
) -> Vec<Choice> {
    choose_shedding(
        Shedding::ByStream,
        filter,
        client_region,
        stream_key,
        nodes,
        cfg,
        max,
    )
}

/// How an edge above its region's mean load turns players away.
///
/// Plain bounded loads (Mirrokni, Thorup, Zadimoghaddam) admit every stream up to one bound,
/// `ceil((1 + epsilon) * mean)`. An edge that many streams hash to then sits at the bound and
/// sends a slice of *every* one of its streams to their next edge, and each of those becomes
/// one more upstream pull. `ByStream` gives each (stream, edge) pair its own level, hashed
/// uniformly between `ceil(mean)` and the bound: an edge over the mean keeps the streams whose
/// level it has not reached and sheds the others whole, so the same load moves with far fewer
/// streams (the `locate-sim` bench measures both). The bound, the eligibility and the ranking
/// are the same in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shedding {
    /// One level for all streams: the bound (plain bounded loads; kept for comparison).
    Uniform,
    /// A hashed level per (stream, edge) between the mean and the bound.
    ByStream,
}

pub(crate) fn choose_shedding(
    shedding: Shedding,
    filter: Filter,
    client_region: &str,
    stream_key: &str,
    nodes: &[NodeRecord],
    cfg: &LocateConfig,
    max: usize,
) -> Vec<Choice> {
    let mut out = Vec::new();
    if max == 0 {
        return out;
    }
    let key = hash_key(stream_key);
    // Regions of the eligible edges, nearest first. There are few, so a linear scan beats a
    // map, and the sort below compares small integers rather than region names.
    let mut regions: Vec<(u32, &str)> = Vec::new();
    let mut ranked: Vec<Ranked<'_>> = Vec::with_capacity(nodes.len());
    for n in nodes.iter().filter(|n| eligible(n, filter)) {
        if !regions.iter().any(|(_, r)| *r == n.region) {
            regions.push((cfg.distances.distance(client_region, &n.region), &n.region));
        }
        ranked.push(Ranked {
            node: n,
            group: 0,
            score: score(key, &n.node_id),
        });
    }
    regions.sort_unstable();
    for r in &mut ranked {
        r.group = regions
            .iter()
            .position(|(_, name)| *name == r.node.region)
            .unwrap_or(usize::MAX);
    }
    // Ties broken by node id so the order of `nodes` never matters.
    ranked.sort_unstable_by(|a, b| {
        a.group
            .cmp(&b.group)
            .then(b.score.cmp(&a.score))
            .then(a.node.node_id.cmp(&b.node.node_id))
    });
    let epsilon = if cfg.epsilon.is_finite() && cfg.epsilon > 0.0 {
        cfg.epsilon
    } else {
        0.0
    };
    for group in ranked.chunk_by(|a, b| a.group == b.group) {
        let home = group[0].node.region == client_region;
        // The mean counts the player being placed (+1), as in Mirrokni et al.
        let sum = group
            .iter()
            .fold(1u64, |acc, r| acc.saturating_add(players(r.node)));
        let mean = sum as f64 / group.len() as f64;
        for (rank, r) in group.iter().enumerate() {
            let share = match shedding {
                Shedding::Uniform => 1.0,
                Shedding::ByStream => 1.0 - unit(level_hash(r.score)),
            };
            if players(r.node) >= level(mean, epsilon, share) {
                continue;
            }
            let reason = match (home, rank) {
                (true, 0) => Reason::RegionHit,
                (true, _) => Reason::SpillOverBound,
                (false, _) => Reason::FallbackRegion,
            };
            out.push(Choice {
                node_id: r.node.node_id.clone(),
                region: r.node.region.clone(),
                reason,
            });
            if out.len() == max {
                return out;
            }
        }
    }
    out
}

struct Ranked<'a> {
    node: &'a NodeRecord,
    /// Index of the node's region in the order regions are tried.
    group: usize,
    score: u64,
}

fn players(n: &NodeRecord) -> u64 {
    n.load.map_or(0, |l| l.players)
}

/// Role edge, not draining, not full, of the wanted tier. Dead edges are not in the view at all
/// (their lease is gone).
fn eligible(n: &NodeRecord, filter: Filter) -> bool {
    n.role == Role::Edge as i32
        && !n.draining
        && !(n.capacity_players > 0 && players(n) >= n.capacity_players)
        && filter.tier.is_none_or(|t| t == n.tier)
}

/// Players an edge may have before it takes no new one of a stream: `ceil((1 + epsilon *
/// share) * mean)`, `share` in 0..=1 (1: the bound). Rounded up, so it is at least the mean and
/// some edge of the region is always under it.
fn level(mean: f64, epsilon: f64, share: f64) -> u64 {
    ((1.0 + epsilon * share.clamp(0.0, 1.0)) * mean).ceil() as u64
}

/// `[0, 1)` from the top 53 bits.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The hash behind a (stream, edge) pair's admission level: derived from its score but
/// independent of it, so an edge's favourite streams are not also the ones it keeps longest.
fn level_hash(score: u64) -> u64 {
    mix64(score ^ 0x6c65_7665_6c00_0000)
}

// The score must be the same on every node and in every version (nodes compute the same
// answer independently, and a change moves every stream), hence a hash written out here and
// pinned by a test rather than std's seeded `DefaultHasher`.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// FNV state after the stream key and a separator byte that cannot occur in UTF-8 (so "a" +
/// "bc" and "ab" + "c" differ); computed once per call, then continued per node.
fn hash_key(stream_key: &str) -> u64 {
    fnv1a(fnv1a(FNV_OFFSET, stream_key.as_bytes()), &[0xff])
}

/// Rendezvous score of (stream key, node). FNV-1a mixes its last bytes poorly, so the result
/// goes through the splitmix64 finaliser: node ids differing in one trailing digit must still
/// rank independently.
fn score(key_state: u64, node_id: &str) -> u64 {
    mix64(fnv1a(key_state, node_id.as_bytes()))
}

/// The splitmix64 finaliser (Steele, Lea, Flood 2014).
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where a player reaches a stream on one node, per protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayUrls {
    pub rtmp: String,
    pub flv: String,
    pub hls: String,
}

/// Play URLs of `app/name` on `node`: its public base URLs, or `rtmp://ADDR` / `http://ADDR`
/// from its listen addresses when it published none. `query` (the token and the rest) is kept
/// as given, a leading `?` tolerated; app and name are used as given (the caller took them from
/// a request path it already checked).
pub fn play_urls(node: &NodeRecord, app: &str, name: &str, query: &str) -> PlayUrls {
    let rtmp = public_rtmp(node);
    let http = public_http(node);
    let query = query.strip_prefix('?').unwrap_or(query);
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    PlayUrls {
        rtmp: format!("{rtmp}/{app}/{name}{q}"),
        flv: format!("{http}/{app}/{name}.flv{q}"),
        hls: format!("{http}/{app}/{name}.m3u8{q}"),
    }
}

/// The node's RTMP base URL (no path, no trailing `/`): the one it published, else
/// `rtmp://` + its RTMP listen address.
pub fn public_rtmp(node: &NodeRecord) -> String {
    let published = node.public_urls.as_ref().map(|p| p.rtmp.as_str());
    base_url(published, "rtmp", &node.rtmp_address)
}

/// The node's HTTP(S) base URL (no path, no trailing `/`): the one it published, else
/// `http://` + its HTTP listen address.
pub fn public_http(node: &NodeRecord) -> String {
    let published = node.public_urls.as_ref().map(|p| p.http.as_str());
    base_url(published, "http", &node.http_address)
}

fn base_url(published: Option<&str>, scheme: &str, addr: &str) -> String {
    match published.map(|u| u.trim().trim_end_matches('/')) {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => format!("{scheme}://{addr}"),
    }
}

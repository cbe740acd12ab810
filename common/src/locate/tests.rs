//! Unit tests of the locator: the choice, the region lookups and the simulated targets.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use super::sim::{self, Placement, Spec};
use super::*;
use crate::cluster::{NodeLoad, NodeRecord, Role};
use crate::net::limit::Cidr;

fn edge(id: &str, region: &str, players: u64) -> NodeRecord {
    NodeRecord {
        node_id: id.to_string(),
        role: Role::Edge as i32,
        region: region.to_string(),
        rtmp_address: format!("{id}:1935"),
        http_address: format!("{id}:8080"),
        load: Some(NodeLoad {
            players,
            ..Default::default()
        }),
        tier: 1,
        ..Default::default()
    }
}

fn strings(specs: &[&str]) -> Vec<String> {
    specs.iter().map(|s| s.to_string()).collect()
}

fn cfg(distances: &[&str]) -> LocateConfig {
    LocateConfig {
        distances: RegionDistances::parse(&strings(distances)).unwrap(),
        ..Default::default()
    }
}

fn ids(choices: &[Choice]) -> Vec<&str> {
    choices.iter().map(|c| c.node_id.as_str()).collect()
}

fn regions(choices: &[Choice]) -> Vec<&str> {
    choices.iter().map(|c| c.region.as_str()).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The stream's first edge in `region` among idle edges (its rendezvous favourite).
fn favourite(key: &str, nodes: &[NodeRecord], region: &str) -> String {
    choose(region, key, nodes, &LocateConfig::default(), 1)[0]
        .node_id
        .clone()
}

#[test]
fn regions_are_taken_by_distance_then_name() {
    let nodes = vec![
        edge("far", "eu", 0),
        edge("near", "us-west", 0),
        edge("home", "us-east", 0),
        edge("unknown-b", "zz", 0),
        edge("unknown-a", "ap", 0),
    ];
    let cfg = cfg(&["us-east:us-west=10", "eu:us-east=40"]);
    let got = choose("us-east", "live/a", &nodes, &cfg, 10);
    // ap and zz are at the unknown distance: after every known one, by name.
    assert_eq!(regions(&got), ["us-east", "us-west", "eu", "ap", "zz"]);
    assert_eq!(got[0].reason, Reason::RegionHit);
    assert!(got[1..].iter().all(|c| c.reason == Reason::FallbackRegion));
    // Symmetric: from eu, us-east (40) comes before us-west (unknown).
    let got = choose("eu", "live/a", &nodes, &cfg, 10);
    assert_eq!(regions(&got), ["eu", "us-east", "ap", "us-west", "zz"]);
}

#[test]
fn same_key_same_edge_whatever_the_order_of_nodes() {
    let mut nodes: Vec<NodeRecord> = (0..6)
        .map(|i| edge(&format!("e{i}"), if i < 3 { "a" } else { "b" }, 2))
        .collect();
    let cfg = cfg(&["a:b=5"]);
    let first = choose("a", "live/stream", &nodes, &cfg, 6);
    assert_eq!(first.len(), 6);
    for _ in 0..3 {
        assert_eq!(choose("a", "live/stream", &nodes, &cfg, 6), first);
    }
    nodes.reverse();
    assert_eq!(choose("a", "live/stream", &nodes, &cfg, 6), first);
    nodes.rotate_left(2);
    assert_eq!(choose("a", "live/stream", &nodes, &cfg, 6), first);
}

#[test]
fn different_keys_spread_over_the_edges() {
    let nodes: Vec<NodeRecord> = (0..3).map(|i| edge(&format!("e{i}"), "a", 0)).collect();
    let mut hits = [0usize; 3];
    for k in 0..300 {
        let c = favourite(&format!("live/s{k}"), &nodes, "a");
        hits[nodes.iter().position(|n| n.node_id == c).unwrap()] += 1;
    }
    // 100 expected each; a fair hash stays well inside 60..140 for 300 keys.
    assert!(hits.iter().all(|h| (60..=140).contains(h)), "{hits:?}");
}

/// The score is part of the cluster's contract: every node and every version must rank alike.
#[test]
fn the_rendezvous_hash_is_pinned() {
    let key = hash_key("live/s0");
    assert_eq!(score(key, "r0-e0"), 0xbf81_6444_6fd3_6973);
    assert_eq!(score(key, "edge-1"), 0x2766_8a9d_8034_0059);
    assert_eq!(level_hash(0xbf81_6444_6fd3_6973), 0xa8a9_f0d3_9703_2a63);
    // The separator keeps (key, node) pairs apart.
    assert_ne!(score(hash_key("ab"), "c"), score(hash_key("a"), "bc"));
}

#[test]
fn an_edge_at_the_bound_is_skipped_and_the_stream_spills() {
    let key = "live/hot";
    let mut nodes = vec![edge("a1", "a", 2), edge("a2", "a", 2), edge("a3", "a", 2)];
    let fav = favourite(key, &nodes, "a");
    let set = |nodes: &mut Vec<NodeRecord>, players: u64| {
        for n in nodes.iter_mut().filter(|n| n.node_id == fav) {
            n.load = Some(NodeLoad {
                players,
                ..Default::default()
            });
        }
    };
    let cfg = LocateConfig::default();
    // All at 2: the mean is (6 + 1) / 3 = 2.33, every level is at least 3.
    set(&mut nodes, 2);
    let got = choose("a", key, &nodes, &cfg, 3);
    assert_eq!(got[0].node_id, fav);
    assert_eq!(got[0].reason, Reason::RegionHit);
    assert_eq!(Reason::of(&got), Reason::RegionHit);
    assert_eq!(got[1].reason, Reason::SpillOverBound);
    // Favourite at 4, others at 2: bound = ceil(1.25 * (8 + 1) / 3) = 4, it is at the bound.
    set(&mut nodes, 4);
    let got = choose("a", key, &nodes, &cfg, 3);
    assert!(!ids(&got).contains(&fav.as_str()), "{got:?}");
    assert_eq!(got.len(), 2);
    assert_eq!(Reason::of(&got), Reason::SpillOverBound);
    // A larger epsilon lifts the bound: ceil(1.5 * 3) = 5 > 4 (plain bounded loads, so that
    // the stream's own level does not matter).
    let loose = LocateConfig {
        epsilon: 0.5,
        ..Default::default()
    };
    let plain = |cfg: &LocateConfig| {
        choose_shedding(
            Shedding::Uniform,
            Filter::default(),
            "a",
            key,
            &nodes,
            cfg,
            1,
        )
    };
    assert_eq!(plain(&loose)[0].node_id, fav);
    assert_ne!(plain(&cfg)[0].node_id, fav);
}

#[test]
fn an_edge_over_the_mean_sheds_whole_streams() {
    let idle = vec![edge("e0", "a", 0), edge("e1", "a", 0), edge("e2", "a", 0)];
    let keys: Vec<String> = (0..3000)
        .map(|k| format!("live/{k}"))
        .filter(|k| favourite(k, &idle, "a") == "e0")
        .collect();
    // e0 at 12, the others at 9: mean (30 + 1) / 3 = 10.33, bound ceil(1.25 * 10.33) = 13. A
    // stream's level on e0 is ceil((1 + 0.25 * s) * 10.33), s uniform in [0, 1): above 12 (e0
    // keeps the stream) when s > 0.65, about a third of the streams.
    let busy = vec![edge("e0", "a", 12), edge("e1", "a", 9), edge("e2", "a", 9)];
    let cfg = LocateConfig::default();
    let mut kept = 0;
    for key in &keys {
        let got = choose("a", key, &busy, &cfg, 1);
        if got[0].node_id == "e0" {
            kept += 1;
            assert_eq!(got[0].reason, Reason::RegionHit);
        } else {
            assert_eq!(got[0].reason, Reason::SpillOverBound);
        }
        // Plain bounded loads keeps every stream until the bound.
        let plain = choose_shedding(
            Shedding::Uniform,
            Filter::default(),
            "a",
            key,
            &busy,
            &cfg,
            1,
        );
        assert_eq!(plain[0].node_id, "e0");
    }
    let share = kept as f64 / keys.len() as f64;
    assert!(
        (0.25..0.45).contains(&share),
        "{kept} of {} kept",
        keys.len()
    );
    // At the bound, every stream goes: e0 at 14, mean (32 + 1) / 3 = 11, bound ceil(13.75).
    let full = vec![edge("e0", "a", 14), edge("e1", "a", 9), edge("e2", "a", 9)];
    assert!(
        keys.iter()
            .all(|k| choose("a", k, &full, &cfg, 1)[0].node_id != "e0")
    );
}

#[test]
fn draining_full_and_origins_are_never_chosen() {
    let mut draining = edge("draining", "a", 0);
    draining.draining = true;
    let mut full = edge("full", "a", 10);
    full.capacity_players = 10;
    let mut origin = edge("origin", "a", 0);
    origin.role = Role::Origin as i32;
    origin.tier = 0;
    let mut unspecified = edge("unspecified", "a", 0);
    unspecified.role = Role::Unspecified as i32;
    let mut roomy = edge("roomy", "a", 9);
    roomy.capacity_players = 10;
    let nodes = vec![
        draining,
        full,
        origin,
        unspecified,
        roomy,
        edge("ok", "a", 9),
    ];
    for k in 0..50 {
        let got = choose(
            "a",
            &format!("live/{k}"),
            &nodes,
            &LocateConfig::default(),
            10,
        );
        let mut got = ids(&got);
        got.sort_unstable();
        assert_eq!(got, ["ok", "roomy"]);
    }
}

#[test]
fn a_tier_filter_keeps_one_tier() {
    let mut t2 = edge("t2", "a", 0);
    t2.tier = 2;
    let nodes = vec![edge("t1", "a", 0), t2];
    let cfg = LocateConfig::default();
    let got = choose_in(Filter::tier(1), "a", "live/x", &nodes, &cfg, 5);
    assert_eq!(ids(&got), ["t1"]);
    let got = choose_in(Filter::tier(2), "a", "live/x", &nodes, &cfg, 5);
    assert_eq!(ids(&got), ["t2"]);
    assert_eq!(choose("a", "live/x", &nodes, &cfg, 5).len(), 2);
    assert!(choose_in(Filter::tier(3), "a", "live/x", &nodes, &cfg, 5).is_empty());
}

#[test]
fn players_go_to_the_outermost_tier_while_it_has_room() {
    let mut leaf = edge("leaf", "a", 0);
    leaf.tier = 2;
    let nodes = vec![edge("mid", "a", 0), leaf.clone()];
    let cfg = LocateConfig::default();
    assert_eq!(
        ids(&choose_for_players("a", "live/x", &nodes, &cfg, 5)),
        ["leaf"]
    );
    // The leaf full (or draining): players go to the mid edge rather than nowhere.
    leaf.capacity_players = 1;
    leaf.load = Some(crate::cluster::NodeLoad {
        players: 1,
        ..Default::default()
    });
    let nodes = vec![edge("mid", "a", 0), leaf];
    assert_eq!(
        ids(&choose_for_players("a", "live/x", &nodes, &cfg, 5)),
        ["mid"]
    );
    // Without tiers it is `choose`.
    let flat = vec![edge("e1", "a", 0), edge("e2", "a", 0)];
    assert_eq!(
        choose_for_players("a", "live/x", &flat, &cfg, 5),
        choose("a", "live/x", &flat, &cfg, 5)
    );
}

#[test]
fn a_region_without_eligible_edges_falls_back_to_the_nearest() {
    let mut gone = edge("a1", "a", 0);
    gone.draining = true;
    let nodes = vec![
        gone,
        edge("c1", "c", 0),
        edge("b1", "b", 0),
        edge("b2", "b", 0),
    ];
    let cfg = cfg(&["a:b=10", "a:c=20"]);
    let got = choose("a", "live/x", &nodes, &cfg, 10);
    assert_eq!(regions(&got), ["b", "b", "c"]);
    assert!(got.iter().all(|c| c.reason == Reason::FallbackRegion));
    // A client of an unmapped region (empty) is a fallback everywhere, by name.
    let got = choose("", "live/x", &nodes, &cfg, 10);
    assert_eq!(regions(&got), ["b", "b", "c"]);
}

#[test]
fn no_eligible_edge_is_an_empty_answer() {
    let cfg = LocateConfig::default();
    assert!(choose("a", "live/x", &[], &cfg, 3).is_empty());
    let mut d = edge("d", "a", 0);
    d.draining = true;
    let got = choose("a", "live/x", &[d], &cfg, 3);
    assert!(got.is_empty());
    assert_eq!(Reason::of(&got), Reason::NoEdge);
    // max 0 asks for nothing.
    assert!(choose("a", "live/x", &[edge("e", "a", 0)], &cfg, 0).is_empty());
}

#[test]
fn the_list_is_the_failover_order_and_stops_at_max() {
    let nodes: Vec<NodeRecord> = ["a1", "a2", "a3", "b1", "b2"]
        .iter()
        .map(|id| edge(id, &id[..1], 0))
        .collect();
    let cfg = cfg(&["a:b=1"]);
    let all = choose("a", "live/x", &nodes, &cfg, 10);
    assert_eq!(regions(&all), ["a", "a", "a", "b", "b"]);
    let two = choose("a", "live/x", &nodes, &cfg, 2);
    assert_eq!(two, all[..2]);
    // The alternatives of a region are its next rendezvous choices: remove the first edge and
    // the second becomes the choice.
    let rest: Vec<NodeRecord> = nodes
        .iter()
        .filter(|n| n.node_id != all[0].node_id)
        .cloned()
        .collect();
    assert_eq!(
        choose("a", "live/x", &rest, &cfg, 1)[0].node_id,
        all[1].node_id
    );
}

#[test]
fn reasons_have_metric_labels() {
    let labels: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        ["region_hit", "fallback_region", "spill", "no_edge"]
    );
}

#[test]
fn config_rejects_bad_epsilon() {
    assert!(LocateConfig::new(0.1, RegionDistances::default()).is_ok());
    assert!(LocateConfig::new(-0.1, RegionDistances::default()).is_err());
    assert!(LocateConfig::new(f64::NAN, RegionDistances::default()).is_err());
    assert_eq!(LocateConfig::default().epsilon, 0.25);
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_hops() {
    let trusted = vec![
        Cidr::parse("10.0.0.0/8").unwrap(),
        Cidr::parse("fd00::/8").unwrap(),
    ];
    let proxy = ip("10.0.0.1");
    // No header, or an untrusted peer: the peer.
    assert_eq!(client_ip(proxy, None, &trusted), proxy);
    let stranger = ip("203.0.113.9");
    assert_eq!(
        client_ip(stranger, Some("198.51.100.1"), &trusted),
        stranger
    );
    // Trusted peer: the rightmost untrusted entry; what the client sent left of it is ignored.
    assert_eq!(
        client_ip(proxy, Some("1.1.1.1, 198.51.100.7, 10.2.3.4"), &trusted),
        ip("198.51.100.7")
    );
    // Every hop trusted: the leftmost.
    assert_eq!(
        client_ip(proxy, Some("10.9.9.9,10.2.3.4"), &trusted),
        ip("10.9.9.9")
    );
    // Ports, brackets, IPv6, empty entries.
    assert_eq!(
        client_ip(ip("fd00::1"), Some("[2001:db8::5]:443 , ,"), &trusted),
        ip("2001:db8::5")
    );
    assert_eq!(
        client_ip(proxy, Some("198.51.100.7:5555"), &trusted),
        ip("198.51.100.7")
    );
    // Garbage stops the walk at the last trusted hop.
    assert_eq!(
        client_ip(proxy, Some("198.51.100.7, unknown"), &trusted),
        proxy
    );
    // An IPv4-mapped peer is its IPv4 address.
    assert_eq!(
        client_ip(ip("::ffff:10.0.0.1"), Some("198.51.100.7"), &trusted),
        ip("198.51.100.7")
    );
    // Nothing trusted: the header never counts.
    assert_eq!(client_ip(proxy, Some("198.51.100.7"), &[]), proxy);
}

#[test]
fn the_region_map_takes_the_longest_prefix() {
    let map = RegionMap::parse(&strings(&[
        "0.0.0.0/0=default",
        "10.0.0.0/8=dc",
        "10.1.0.0/16=dc-east",
        "10.1.2.3=one",
        "2001:db8::/32=v6",
        "2001:db8:1::/48=v6-east",
    ]))
    .unwrap();
    assert_eq!(map.region_of(ip("10.2.0.1")), Some("dc"));
    assert_eq!(map.region_of(ip("10.1.9.9")), Some("dc-east"));
    assert_eq!(map.region_of(ip("10.1.2.3")), Some("one"));
    assert_eq!(map.region_of(ip("192.0.2.1")), Some("default"));
    assert_eq!(map.region_of(ip("::ffff:10.1.9.9")), Some("dc-east"));
    assert_eq!(map.region_of(ip("2001:db8::1")), Some("v6"));
    assert_eq!(map.region_of(ip("2001:db8:1::1")), Some("v6-east"));
    assert_eq!(map.region_of(ip("2001:db9::1")), None);
    let empty = RegionMap::parse(&[]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.region_of(ip("10.0.0.1")), None);
}

#[test]
fn bad_specs_are_refused_with_the_spec_named() {
    for bad in [
        "a:b",
        "a=3",
        "a:b=x",
        "a:b=-1",
        ":b=1",
        "a:=1",
        "a:a=3",
        "a:b=4294967295",
    ] {
        let err = RegionDistances::parse(&strings(&[bad])).unwrap_err();
        assert!(err.contains(bad), "{err}");
    }
    assert!(RegionDistances::parse(&strings(&["a:b=1", "b:a=2"])).is_err());
    // The same pair twice with the same distance, or a region at 0 from itself, is harmless.
    let d = RegionDistances::parse(&strings(&["a:b=1", "b:a=1", "c:c=0"])).unwrap();
    assert_eq!((d.distance("b", "a"), d.distance("c", "c")), (1, 0));
    assert_eq!(d.distance("a", "c"), UNKNOWN_DISTANCE);

    for bad in [
        "10.0.0.0/8",
        "10.0.0.0/33=a",
        "nonsense=a",
        "10.0.0.0/8=",
        "::/0=a b",
    ] {
        let err = RegionMap::parse(&strings(&[bad])).unwrap_err();
        assert!(err.contains(bad), "{err}");
    }
    // The same block twice (host bits aside) has no winner.
    assert!(RegionMap::parse(&strings(&["10.0.0.0/8=a", "10.9.0.0/8=b"])).is_err());
    assert!(RegionMap::parse(&strings(&["10.0.0.0/8=a", "10.0.0.0/9=b"])).is_ok());
}

#[test]
fn play_urls_use_public_urls_or_listen_addresses() {
    let mut n = edge("e1", "a", 0);
    n.rtmp_address = "192.0.2.1:1935".into();
    n.http_address = "192.0.2.1:8080".into();
    let u = play_urls(&n, "live", "cam", "");
    assert_eq!(u.rtmp, "rtmp://192.0.2.1:1935/live/cam");
    assert_eq!(u.flv, "http://192.0.2.1:8080/live/cam.flv");
    assert_eq!(u.hls, "http://192.0.2.1:8080/live/cam.m3u8");
    n.public_urls = Some(crate::cluster::PublicUrls {
        rtmp: "rtmp://edge1.example.com".into(),
        http: "https://edge1.example.com/".into(),
    });
    let u = play_urls(&n, "live", "cam", "txSecret=ab&txTime=5F");
    assert_eq!(
        u.rtmp,
        "rtmp://edge1.example.com/live/cam?txSecret=ab&txTime=5F"
    );
    assert_eq!(
        u.flv,
        "https://edge1.example.com/live/cam.flv?txSecret=ab&txTime=5F"
    );
    assert_eq!(
        play_urls(&n, "live", "cam", "?t=1").hls,
        "https://edge1.example.com/live/cam.m3u8?t=1"
    );
    // One protocol published, the other derived.
    n.public_urls = Some(crate::cluster::PublicUrls {
        rtmp: String::new(),
        http: "https://cdn.example.com".into(),
    });
    assert_eq!(
        play_urls(&n, "a", "b", "").rtmp,
        "rtmp://192.0.2.1:1935/a/b"
    );
}

#[test]
fn zipf_audiences_add_up_and_fall_as_one_over_rank() {
    let a = sim::zipf_audiences(100, 20_000);
    assert_eq!(a.iter().sum::<u64>(), 20_000);
    // H_100 = 5.187: the first stream has 3,856, the second half of that.
    assert_eq!(a[0], 3856);
    assert!(a[1].abs_diff(a[0] / 2) <= 1);
    assert!(a.windows(2).all(|w| w[0] >= w[1]));
    assert!(sim::zipf_audiences(0, 10).is_empty());
}

/// Issue 14's targets on its own setting (3 regions x 3 edges, 100 streams, 20,000 Zipf
/// players; a few hundred milliseconds): the locator holds at most half of round robin's
/// upstream pulls, and its busiest edge is within (1 + epsilon) of the mean, plus one player of
/// slack: the bound is rounded up to a whole player and the mean it is computed from counts
/// the player being placed. The mean is the region's: a region that draws more players than
/// another has busier edges whatever the choice inside it (the bench prints both).
#[test]
fn simulated_targets_hold_against_round_robin() {
    let spec = Spec::issue_14();
    let rr = sim::run(&spec, Placement::RoundRobin);
    assert_eq!(rr.players, spec.players);
    for epsilon in [0.1, 0.25, 0.5] {
        let got = sim::run(&spec, Placement::Locate { epsilon });
        assert_eq!(got.players, spec.players);
        assert!(
            got.pulls * 2 <= rr.pulls,
            "epsilon {epsilon}: {} pulls, round robin {}",
            got.pulls,
            rr.pulls
        );
        let slack = 1.0 / got.mean_load;
        assert!(
            got.region_max_over_mean <= 1.0 + epsilon + slack,
            "epsilon {epsilon}: max/mean {}",
            got.region_max_over_mean
        );
        assert_eq!(got.count(Reason::NoEdge), 0);
        assert_eq!(got.count(Reason::FallbackRegion), 0);
        assert_eq!(
            got.count(Reason::RegionHit) + got.count(Reason::SpillOverBound),
            spec.players
        );
        // Shedding by stream is what keeps the pulls down; plain bounded loads never does
        // better here.
        let plain = sim::run(&spec, Placement::PlainBoundedLoads { epsilon });
        assert!(plain.region_max_over_mean <= 1.0 + epsilon + slack);
        assert!(got.region_max_over_mean <= plain.region_max_over_mean);
    }
    // A smaller population with another seed holds the balance too.
    let small = Spec {
        streams: 30,
        players: 3000,
        seed: 7,
        ..spec
    };
    let got = sim::run(&small, Placement::Locate { epsilon: 0.25 });
    assert!(got.region_max_over_mean <= 1.25 + 1.0 / got.mean_load);
    // Deterministic: the same spec gives the same outcome.
    assert_eq!(got, sim::run(&small, Placement::Locate { epsilon: 0.25 }));
}

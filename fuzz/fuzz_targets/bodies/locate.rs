//! cargo-fuzz target for what the locator and the forward rules read from outside: arbitrary
//! `X-Forwarded-For` values and peers through `client_ip`, region-map and distance specs,
//! stream keys and regions through `choose` (every answer well-formed, at most `max` entries,
//! no node twice, never a draining or full edge), and forward destination URLs. Must not touch
//! the network or filesystem.

use common::cluster::{NodeLoad, NodeRecord, Role};
use common::locate::{self, LocateConfig, RegionDistances, RegionMap};
use common::net::limit::Cidr;

fn nodes(seed: &[u8]) -> Vec<NodeRecord> {
    seed.iter()
        .take(12)
        .enumerate()
        .map(|(i, b)| NodeRecord {
            node_id: format!("n{i}"),
            role: if b & 1 == 0 { Role::Edge } else { Role::Origin } as i32,
            region: format!("r{}", (b >> 1) % 3),
            draining: b & 0x10 != 0,
            capacity_players: u64::from(b >> 6),
            tier: u32::from((b >> 3) & 1) + 1,
            load: Some(NodeLoad {
                players: u64::from(*b) * 7,
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// The target: any input must pass without a panic.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{0}');
    let xff = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    let region = parts.next().unwrap_or_default();
    let specs: Vec<String> = parts
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let url = parts.next().unwrap_or_default();

    let trusted = [
        Cidr::parse("127.0.0.0/8").expect("cidr"),
        Cidr::parse("::1/128").expect("cidr"),
    ];
    for peer in ["127.0.0.1", "10.1.2.3", "::1"] {
        let peer = peer.parse().expect("ip");
        let ip = locate::client_ip(peer, Some(xff), &trusted);
        // An untrusted peer is never replaced by what it claims.
        if !peer.is_loopback() {
            assert_eq!(ip, peer);
        }
        if let Ok(map) = RegionMap::parse(&specs) {
            let _ = map.region_of(ip);
        }
    }
    let distances = RegionDistances::parse(&specs).unwrap_or_default();
    let _ = distances.distance(region, key);
    let nodes = nodes(data);
    let cfg = LocateConfig {
        epsilon: f64::from(data.first().copied().unwrap_or(0)) / 64.0,
        distances,
    };
    let max = usize::from(data.last().copied().unwrap_or(0) % 6);
    let choices = locate::choose(region, key, &nodes, &cfg, max);
    assert!(choices.len() <= max);
    for (i, c) in choices.iter().enumerate() {
        let n = nodes
            .iter()
            .find(|n| n.node_id == c.node_id)
            .expect("a known node");
        assert_eq!(n.role, Role::Edge as i32);
        assert!(!n.draining);
        assert!(n.capacity_players == 0 || n.load.map_or(0, |l| l.players) < n.capacity_players);
        assert!(choices[..i].iter().all(|o| o.node_id != c.node_id));
    }
    let _ = common::net::forward::Destination::parse(url);
}

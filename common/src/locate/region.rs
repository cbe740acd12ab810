//! Where a client is (CIDR -> region, `X-Forwarded-For` through trusted proxies) and how far
//! regions are from each other. Parsed once from config; lookups only, no I/O.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::net::limit::Cidr;

/// Distance of two regions no `--region-distance` relates: after every configured one, and
/// far from overflowing when compared or added.
pub const UNKNOWN_DISTANCE: u32 = u32::MAX / 2;

/// Symmetric distances between regions (`--region-distance A:B=N`, repeatable). A region is at 0
/// from itself; a pair not given is at [`UNKNOWN_DISTANCE`], and the locator then orders such
/// regions by name so every node ranks them alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionDistances {
    /// Keyed by the pair in name order, so (A, B) and (B, A) are one entry.
    pairs: BTreeMap<(String, String), u32>,
}

impl RegionDistances {
    /// Parses `A:B=N` specs. A pair given twice with different distances is an error (which
    /// one was meant?), as is a region at a non-zero distance from itself.
    pub fn parse(specs: &[String]) -> Result<Self, String> {
        let mut pairs = BTreeMap::new();
        for spec in specs {
            let bad = || format!("region distance `{spec}`: expected A:B=N (N a whole number)");
            let (regions, n) = spec.split_once('=').ok_or_else(bad)?;
            let (a, b) = regions.split_once(':').ok_or_else(bad)?;
            let (a, b) = (a.trim(), b.trim());
            if !valid_region(a) || !valid_region(b) {
                return Err(bad());
            }
            let n: u32 = n.trim().parse().map_err(|_| bad())?;
            if n >= UNKNOWN_DISTANCE {
                return Err(format!(
                    "region distance `{spec}`: N must be under {UNKNOWN_DISTANCE}"
                ));
            }
            if a == b {
                if n != 0 {
                    return Err(format!(
                        "region distance `{spec}`: a region is at 0 from itself"
                    ));
                }
                continue;
            }
            let key = ordered(a, b);
            if let Some(old) = pairs.insert(key, n)
                && old != n
            {
                return Err(format!(
                    "region distance `{spec}`: {a}:{b} is already given as {old}"
                ));
            }
        }
        Ok(Self { pairs })
    }

    pub fn distance(&self, a: &str, b: &str) -> u32 {
        if a == b {
            return 0;
        }
        // Looked up without allocating: the map is small and this runs per edge per request.
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        self.pairs
            .iter()
            .find(|((p, q), _)| p == x && q == y)
            .map_or(UNKNOWN_DISTANCE, |(_, n)| *n)
    }
}

fn ordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// A region name is what `--region` accepts: non-empty, without the separators of the specs.
fn valid_region(r: &str) -> bool {
    !r.is_empty() && !r.contains([':', '=', ',', ' '])
}

/// Client address -> region (`--region-map CIDR=REGION`, repeatable); the longest prefix that
/// contains the address wins, so a specific block can override the one it sits in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionMap {
    /// Longest prefix first; `region_of` returns the first that contains the address.
    entries: Vec<(Cidr, String)>,
}

impl RegionMap {
    /// Parses `CIDR=REGION` specs. The same block given twice is an error: with equal prefixes
    /// no rule would say which region wins.
    pub fn parse(specs: &[String]) -> Result<Self, String> {
        let mut entries: Vec<(Cidr, String)> = Vec::with_capacity(specs.len());
        for spec in specs {
            let bad = |why: &str| format!("region map `{spec}`: {why}");
            let (cidr, region) = spec
                .split_once('=')
                .ok_or_else(|| bad("expected CIDR=REGION"))?;
            let text = cidr;
            let cidr = Cidr::parse(text).map_err(|e| bad(&e))?;
            let region = region.trim();
            if !valid_region(region) {
                return Err(bad("expected CIDR=REGION with a region name"));
            }
            // Same block: same prefix and both in each other (addresses differ in host bits).
            if entries.iter().any(|(c, _)| {
                c.prefix_len() == cidr.prefix_len()
                    && block_address(text).is_some_and(|ip| c.contains(ip))
            }) {
                return Err(bad("this block is already mapped"));
            }
            entries.push((cidr, region.to_string()));
        }
        // Stable: the order of specs is kept among different blocks of one length.
        entries.sort_by_key(|(c, _)| std::cmp::Reverse(c.prefix_len()));
        Ok(Self { entries })
    }

    pub fn region_of(&self, ip: IpAddr) -> Option<&str> {
        self.entries
            .iter()
            .find(|(c, _)| c.contains(ip))
            .map(|(_, r)| r.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The address part of a block that `Cidr::parse` accepted (inside the block), to tell whether
/// another block of the same length is the same block.
fn block_address(text: &str) -> Option<IpAddr> {
    text.trim().split('/').next()?.parse().ok()
}

/// The client's address for a request that came from `peer` with this `X-Forwarded-For`
/// (several headers joined with `,`). The header is walked from the right while the hop that
/// wrote it is trusted: the rightmost entry was written by our peer, the next by the hop before
/// it, and so on; the first address written by an untrusted hop is the client (anything left
/// of it is whatever the client chose to send). An untrusted peer's header is ignored. An
/// entry that is not an address (`unknown`, garbage) stops the walk at the last trusted hop.
pub fn client_ip(peer: IpAddr, x_forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer.to_canonical();
    let Some(xff) = x_forwarded_for else {
        return client;
    };
    for hop in xff.rsplit(',').map(str::trim).filter(|h| !h.is_empty()) {
        if !is_trusted(client) {
            break;
        }
        match parse_hop(hop) {
            Some(ip) => client = ip.to_canonical(),
            None => break,
        }
    }
    client
}

/// `1.2.3.4`, `::1`, `1.2.3.4:5678` or `[::1]:5678` (some proxies append the port).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

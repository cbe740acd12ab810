//! What an edge lets through before a play may cost an ingest: a short negative cache of
//! names just found unpublished, a cap on concurrent ingests, and a cap on plays waiting for
//! an owner per client address. Pure state: time is passed in; no I/O, no clocks, no locks.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::net::limit::Cidr;

/// Entries of the negative cache at most (a flood of random names cannot grow it further:
/// past this, new names are simply not remembered).
const NOT_FOUND_MAX: usize = 65_536;

/// The edge's limits.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// A name found unpublished is answered 404 at once for this long (0: no cache).
    pub not_found_ttl: Duration,
    /// Concurrent ingests (streams pulled or being looked up) at most.
    pub max_ingests: usize,
    /// Plays waiting for a stream that is not flowing yet, per client address, at most.
    pub max_pending_per_ip: usize,
    /// Addresses without that cap (`net.trusted_networks`: cluster peers, a proxy on the
    /// host, a load generator), like the connection budget's per-address limit.
    pub trusted: Vec<Cidr>,
}

/// Why a play is refused before it reaches an ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The name was found unpublished moments ago.
    NotFoundCached,
    /// The edge runs `max_ingests` ingests already.
    IngestLimit,
    /// This client already has `max_pending_per_ip` plays waiting.
    PendingLimit,
}

impl Shed {
    /// Metrics label.
    pub fn reason(self) -> &'static str {
        match self {
            Shed::NotFoundCached => "not_found_cached",
            Shed::IngestLimit => "ingest_limit",
            Shed::PendingLimit => "pending_limit",
        }
    }
}

#[derive(Debug)]
pub struct Gate {
    config: GateConfig,
    /// Key -> until when it is known missing.
    not_found: HashMap<String, Instant>,
    /// The same entries in insertion order (= expiry order: the TTL is fixed).
    expiries: VecDeque<(Instant, String)>,
    pending: HashMap<IpAddr, usize>,
}

impl Gate {
    pub fn new(config: GateConfig) -> Gate {
        Gate {
            config,
            not_found: HashMap::new(),
            expiries: VecDeque::new(),
            pending: HashMap::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((until, _)) = self.expiries.front() {
            if *until > now {
                break;
            }
            if let Some((until, key)) = self.expiries.pop_front()
                && self.not_found.get(&key) == Some(&until)
            {
                self.not_found.remove(&key);
            }
        }
    }

    /// Whether `key` was found unpublished less than the TTL ago.
    pub fn known_missing(&mut self, key: &str, now: Instant) -> bool {
        self.expire(now);
        self.not_found.contains_key(key)
    }

    /// `key` was looked up (or waited for) and has no owner.
    pub fn note_missing(&mut self, key: &str, now: Instant) {
        if self.config.not_found_ttl.is_zero() {
            return;
        }
        self.expire(now);
        if self.not_found.len() >= NOT_FOUND_MAX && !self.not_found.contains_key(key) {
            return;
        }
        let until = now + self.config.not_found_ttl;
        self.not_found.insert(key.to_string(), until);
        self.expiries.push_back((until, key.to_string()));
    }

    /// `key` has an owner now: stop answering 404 for it.
    pub fn forget_missing(&mut self, key: &str) {
        self.not_found.remove(key);
    }

    /// Entries of the negative cache (bounded by `NOT_FOUND_MAX`).
    pub fn missing_len(&self) -> usize {
        self.not_found.len()
    }

    /// Counts one more waiting play of `ip`, unless it has too many already (and is not
    /// trusted).
    pub fn begin_pending(&mut self, ip: IpAddr) -> Result<(), Shed> {
        let trusted = self.config.trusted.iter().any(|c| c.contains(ip));
        let n = self.pending.entry(ip).or_insert(0);
        if *n >= self.config.max_pending_per_ip && !trusted {
            if *n == 0 {
                self.pending.remove(&ip);
            }
            return Err(Shed::PendingLimit);
        }
        *n += 1;
        Ok(())
    }

    pub fn end_pending(&mut self, ip: IpAddr) {
        if let Some(n) = self.pending.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pending.remove(&ip);
            }
        }
    }

    /// Plays waiting now, over every address.
    pub fn pending(&self) -> usize {
        self.pending.values().sum()
    }

    /// Whether one more ingest may start while `running` run.
    pub fn may_start_ingest(&self, running: usize) -> Result<(), Shed> {
        if running >= self.config.max_ingests {
            Err(Shed::IngestLimit)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(GateConfig {
            not_found_ttl: Duration::from_secs(2),
            max_ingests: 3,
            max_pending_per_ip: 2,
            trusted: vec![Cidr::parse("10.9.0.0/16").expect("cidr")],
        })
    }

    #[test]
    fn not_found_is_remembered_for_the_ttl_only() {
        let mut g = gate();
        let t0 = Instant::now();
        assert!(!g.known_missing("live/x", t0));
        g.note_missing("live/x", t0);
        assert!(g.known_missing("live/x", t0 + Duration::from_millis(1999)));
        assert!(!g.known_missing("live/y", t0));
        assert!(!g.known_missing("live/x", t0 + Duration::from_secs(2)));
        assert_eq!(g.missing_len(), 0);
        // A re-noted key lives from its latest note; its stale queue entry does not evict it.
        g.note_missing("live/x", t0);
        g.note_missing("live/x", t0 + Duration::from_secs(1));
        assert!(g.known_missing("live/x", t0 + Duration::from_millis(2500)));
        // An owner appearing clears the entry at once.
        g.forget_missing("live/x");
        assert!(!g.known_missing("live/x", t0 + Duration::from_millis(2500)));
    }

    #[test]
    fn not_found_cache_is_bounded() {
        let mut g = gate();
        let t0 = Instant::now();
        for i in 0..NOT_FOUND_MAX + 1000 {
            g.note_missing(&format!("live/{i}"), t0);
        }
        assert_eq!(g.missing_len(), NOT_FOUND_MAX);
        // Expired entries make room again.
        g.note_missing("live/new", t0 + Duration::from_secs(3));
        assert_eq!(g.missing_len(), 1);
        let mut off = Gate::new(GateConfig {
            not_found_ttl: Duration::ZERO,
            ..gate().config
        });
        off.note_missing("live/x", t0);
        assert!(!off.known_missing("live/x", t0));
    }

    #[test]
    fn pending_plays_are_capped_per_address() {
        let mut g = gate();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        assert_eq!(g.begin_pending(a), Ok(()));
        assert_eq!(g.begin_pending(a), Ok(()));
        assert_eq!(g.begin_pending(a), Err(Shed::PendingLimit));
        assert_eq!(g.begin_pending(b), Ok(()));
        assert_eq!(g.pending(), 3);
        g.end_pending(a);
        assert_eq!(g.begin_pending(a), Ok(()));
        for _ in 0..5 {
            g.end_pending(a);
            g.end_pending(b);
        }
        assert_eq!(g.pending(), 0);
        assert!(g.pending.is_empty(), "no entry left per address");
        // A trusted address (one proxy or load generator for many players) is counted, not
        // capped.
        let t: IpAddr = "10.9.1.1".parse().expect("ip");
        for _ in 0..10 {
            assert_eq!(g.begin_pending(t), Ok(()));
        }
        assert_eq!(g.pending(), 10);
    }

    #[test]
    fn ingests_are_capped() {
        let g = gate();
        assert_eq!(g.may_start_ingest(2), Ok(()));
        assert_eq!(g.may_start_ingest(3), Err(Shed::IngestLimit));
    }
}

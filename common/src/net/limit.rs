//! The connection budget of a node's public listeners (RTMP, RTMPS, HTTP, HTTPS): one total
//! and one per client address, taken at accept and given back when the connection ends.
//! Must not do I/O: listeners ask it and close what it refuses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was refused (the metrics' `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The node's total (`net.max_connections`) is reached.
    Limit,
    /// This client address has `net.max_connections_per_ip` open.
    PerIp,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Limit => "limit",
            Refused::PerIp => "per_ip",
        }
    }
}

/// An address block (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or `ADDR`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = s.trim().split_once('/').unwrap_or((s.trim(), ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{s}` is not an address or ADDR/PREFIX"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0..={max}"))?
        };
        Ok(Self { addr, prefix })
    }

    /// Bits of the prefix (32 or 128 for one address); longest-prefix matching ranks by it.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - prefix)
            }
        }
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n).into(), self.prefix, 32)
                    == masked(u32::from(a).into(), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(n.into(), self.prefix, 128) == masked(a.into(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// Open connections of a node's public listeners, in total and per address.
#[derive(Debug)]
pub struct ConnBudget {
    max: usize,
    max_per_ip: usize,
    /// Addresses the per-address limit does not apply to (cluster peers, proxies).
    trusted: Vec<Cidr>,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct ConnPermit {
    budget: Arc<ConnBudget>,
    ip: IpAddr,
    /// Counted per address.
    limited: bool,
}

impl ConnBudget {
    /// `max_per_ip` 0: no per-address limit; `trusted` addresses have none either.
    pub fn new(max: usize, max_per_ip: usize, trusted: Vec<Cidr>) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_ip,
            trusted,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Open connections counted.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// A place for a connection from `ip`, or why not.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        // IPv4-mapped IPv6 and IPv4 are one client.
        let ip = ip.to_canonical();
        let taken = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Refused::Limit);
        }
        let limited = self.max_per_ip > 0 && !self.trusted.iter().any(|c| c.contains(ip));
        if limited {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(per_ip);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        metrics::gauge!(crate::telemetry::metric::CONNECTIONS_OPEN).increment(1.0);
        Ok(ConnPermit {
            budget: self.clone(),
            ip,
            limited,
        })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let b = &self.budget;
        if self.limited {
            let mut per_ip = b.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        b.total.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(crate::telemetry::metric::CONNECTIONS_OPEN).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_address_limits_and_release() {
        let b = ConnBudget::new(3, 2, Vec::new());
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let c: IpAddr = "10.0.0.2".parse().expect("ip");
        let p1 = b.try_acquire(a).expect("first");
        let _p2 = b.try_acquire(a).expect("second");
        assert_eq!(b.try_acquire(a).err(), Some(Refused::PerIp));
        let _p3 = b.try_acquire(c).expect("other address");
        assert_eq!(b.try_acquire(c).err(), Some(Refused::Limit));
        assert_eq!(b.open(), 3);
        drop(p1);
        assert_eq!(b.open(), 2);
        let _p4 = b.try_acquire(a).expect("freed place");
        // v4-mapped v6 is the same client.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        drop(_p3);
        assert_eq!(b.try_acquire(mapped).err(), Some(Refused::PerIp));
    }

    #[test]
    fn trusted_networks_have_no_per_address_limit() {
        let trusted = ["127.0.0.0/8", "10.1.0.0/16", "::1"].map(|c| Cidr::parse(c).expect("cidr"));
        let b = ConnBudget::new(100, 1, trusted.to_vec());
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        let held: Vec<_> = [
            "127.0.0.1",
            "127.0.0.1",
            "10.1.2.3",
            "10.1.9.9",
            "::1",
            "::1",
        ]
        .iter()
        .map(|a| b.try_acquire(ip(a)).expect("trusted"))
        .collect();
        let _one = b.try_acquire(ip("10.2.0.1")).expect("first");
        assert_eq!(b.try_acquire(ip("10.2.0.1")).err(), Some(Refused::PerIp));
        assert_eq!(b.open(), held.len() + 1);
        drop(held);
        assert_eq!(b.open(), 1);
        assert!(
            Cidr::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("8.8.8.8"))
        );
        assert!(!Cidr::parse("0.0.0.0/0").expect("all").contains(ip("::2")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn zero_per_ip_means_no_per_address_limit() {
        let b = ConnBudget::new(2, 0, Vec::new());
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let _x = b.try_acquire(a).expect("1");
        let _y = b.try_acquire(a).expect("2");
        assert_eq!(b.try_acquire(a).err(), Some(Refused::Limit));
    }
}

//! A lock-free log-linear histogram of microsecond values (about 1.6% resolution), shared by
//! every player of a group, and exact percentiles of small sample sets.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Up to 2^40 us (12 days): plenty.
const BUCKETS: usize = ((40 - SUB_BITS as usize) + 1) * SUB as usize;

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let m = (v >> (e - SUB_BITS)) & (SUB - 1);
    (((e - SUB_BITS + 1) as u64 * SUB + m) as usize).min(BUCKETS - 1)
}

/// Midpoint of bucket `i`.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let e = i / SUB + u64::from(SUB_BITS) - 1;
    let m = i % SUB;
    let low = (SUB + m) << (e - u64::from(SUB_BITS));
    let width = 1u64 << (e - u64::from(SUB_BITS));
    low + width / 2
}

pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
    sum: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    pub fn record(&self, us: u64) {
        if let Some(b) = self.buckets.get(index(us)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.max.fetch_max(us, Ordering::Relaxed);
        self.sum.fetch_add(us, Ordering::Relaxed);
    }

    /// A copy of the counts, for summaries and merging.
    pub fn snapshot(&self) -> HistSnapshot {
        HistSnapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            max: self.max.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct HistSnapshot {
    counts: Vec<u64>,
    max: u64,
    sum: u64,
}

impl HistSnapshot {
    pub fn merge(&mut self, other: &HistSnapshot) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Value (us) at quantile `q` in 0..=1.
    pub fn quantile(&self, q: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        if rank == n {
            return self.max;
        }
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    /// Summary in milliseconds.
    pub fn summary_ms(&self) -> Summary {
        let n = self.count();
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            n,
            mean: if n == 0 {
                0.0
            } else {
                self.sum as f64 / n as f64 / 1000.0
            },
            p50: ms(self.quantile(0.50)),
            p95: ms(self.quantile(0.95)),
            p99: ms(self.quantile(0.99)),
            max: ms(self.max),
        }
    }
}

/// Count, mean, percentiles and max of a distribution (unit given by the field's name).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub n: u64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Exact summary of a sample set (nearest-rank percentiles).
pub fn summarize(values: &mut [f64]) -> Summary {
    if values.is_empty() {
        return Summary::default();
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let at = |q: f64| values[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Summary {
        n: n as u64,
        mean: values.iter().sum::<f64>() / n as f64,
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: values[n - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_two_percent() {
        let h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 100_000);
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.01, 1_000.0)] {
            let got = s.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(s.quantile(1.0), 100_000);
        for v in [0u64, 1, 63, 64, 65, 1000, 1 << 30] {
            let mid = value(index(v)) as f64;
            assert!(
                (mid - v as f64).abs() <= (v as f64 / 60.0).max(0.5),
                "{v} -> {mid}"
            );
        }
    }

    #[test]
    fn exact_summary() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&mut v);
        assert_eq!(
            (s.p50, s.p95, s.p99, s.max, s.n),
            (50.0, 95.0, 99.0, 100.0, 100)
        );
    }
}

//! Backend selection: a closed set of algorithms that choose among the candidates they are
//! given. Pure: no IO, no clock, no allocation per pick. Eligibility is decided elsewhere; the
//! caller passes a `selectable` test, and the balancer only skips candidates failing it.

mod gradient;
mod hashing;
mod least_conn;
mod least_latency;
mod retry;
mod ring;
pub mod slow_start;
mod wrr;

pub use gradient::Gradient;
pub use hashing::HashTable;
pub use least_conn::{LeastConnections, lighter};
pub use least_latency::{Latency, LeastLatency, PENALTY_CAP_NANOS, median_estimate};
pub use wrr::SmoothWeightedRoundRobin;

use crate::config::{Algorithm, HashLayout};
use std::sync::Arc;

/// What a balancer needs to know about a backend.
pub trait Candidate {
    /// Relative share of traffic, at least 1.
    fn weight(&self) -> u32;
    /// Requests currently in flight.
    fn in_flight(&self) -> u32;
    /// Its latency estimate (read by least-latency pools only).
    fn latency(&self) -> &Latency;
}

impl<T: Candidate> Candidate for Arc<T> {
    fn weight(&self) -> u32 {
        (**self).weight()
    }
    fn in_flight(&self) -> u32 {
        (**self).in_flight()
    }
    fn latency(&self) -> &Latency {
        (**self).latency()
    }
}

/// A pool's balancer, built for a fixed list of candidates.
#[derive(Debug)]
pub enum Balancer {
    /// Smooth weighted round-robin.
    WeightedRoundRobin(SmoothWeightedRoundRobin),
    /// Weighted least-connections.
    LeastConnections(LeastConnections),
    /// Consistent hashing (weighted round-robin without a key).
    Hash(HashTable),
    /// Power of two choices by peak-EWMA latency.
    LeastLatency(LeastLatency),
}

impl Balancer {
    /// Builds the balancer for candidates with these names and weights (same order as passed
    /// to `pick`); a hashing one lays its table out as `layout`.
    pub fn new(algorithm: Algorithm, layout: HashLayout, names: &[&str], weights: &[u32]) -> Self {
        match algorithm {
            Algorithm::WeightedRoundRobin => {
                Self::WeightedRoundRobin(SmoothWeightedRoundRobin::new(weights))
            }
            Algorithm::LeastConnections => Self::LeastConnections(LeastConnections::new()),
            Algorithm::Hash => Self::Hash(HashTable::new(layout, names, weights)),
            Algorithm::LeastLatency => {
                Self::LeastLatency(LeastLatency::new(10_000_000_000, 1_000_000.0))
            }
        }
    }

    /// Index of the chosen candidate, or `None` when none is selectable.
    pub fn pick<C: Candidate>(
        &self,
        candidates: &[C],
        selectable: impl Fn(&C) -> bool,
    ) -> Option<usize> {
        match self {
            Self::WeightedRoundRobin(wrr) => wrr.pick(candidates, selectable),
            Self::LeastConnections(lc) => lc.pick(candidates, selectable),
            Self::Hash(maglev) => maglev.pick_unkeyed(candidates, selectable),
            // Without the time: as at its last sample.
            Self::LeastLatency(ll) => ll.pick(candidates, selectable, 0),
        }
    }

    /// Index of the chosen candidate at `now` (nanoseconds on the latency clock, read by the
    /// caller for least-latency pools only).
    pub fn pick_at<C: Candidate>(
        &self,
        now: u64,
        candidates: &[C],
        selectable: impl Fn(&C) -> bool,
    ) -> Option<usize> {
        match self {
            Self::LeastLatency(ll) => ll.pick(candidates, selectable, now),
            _ => self.pick(candidates, selectable),
        }
    }

    /// A hashing balancer's table.
    pub fn table(&self) -> Option<&HashTable> {
        match self {
            Self::Hash(table) => Some(table),
            _ => None,
        }
    }

    /// Index of the candidate for a request whose key hashes to `key`: by the table for a
    /// hashing balancer (within `factor`% of its share when set), as `pick` otherwise.
    pub fn pick_keyed<C: Candidate>(
        &self,
        key: u64,
        factor: Option<std::num::NonZeroU16>,
        candidates: &[C],
        selectable: impl Fn(&C) -> bool,
    ) -> Option<usize> {
        match self {
            Self::Hash(maglev) => maglev.pick(key, factor, candidates, selectable),
            _ => self.pick(candidates, selectable),
        }
    }
}

/// First selectable candidate scanning from `start`, wrapping around.
fn first_selectable_from<C>(
    candidates: &[C],
    start: usize,
    selectable: impl Fn(&C) -> bool,
) -> Option<usize> {
    let n = candidates.len();
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| selectable(&candidates[i]))
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Candidate;
    use std::cell::Cell;

    /// A candidate whose load and availability a test sets directly.
    #[derive(Debug, Clone)]
    pub struct Fake {
        pub weight: u32,
        pub in_flight: Cell<u32>,
        pub selectable: Cell<bool>,
        pub latency: super::Latency,
    }

    impl Fake {
        pub fn new(weight: u32) -> Self {
            Self {
                weight,
                in_flight: Cell::new(0),
                selectable: Cell::new(true),
                latency: super::Latency::default(),
            }
        }
    }

    impl Candidate for Fake {
        fn weight(&self) -> u32 {
            self.weight
        }
        fn in_flight(&self) -> u32 {
            self.in_flight.get()
        }
        fn latency(&self) -> &super::Latency {
            &self.latency
        }
    }

    /// The `selectable` test for fakes.
    pub fn open(f: &Fake) -> bool {
        f.selectable.get()
    }

    pub fn fakes(weights: &[u32]) -> Vec<Fake> {
        weights.iter().map(|&w| Fake::new(w)).collect()
    }
}

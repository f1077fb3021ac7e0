//! Consistent hashing. By default a Maglev table (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016): 65,537 entries, each naming a backend, filled
//! from per-backend permutations taken from the backend's *name*, so every replica with the
//! same backends and weights builds the same table whatever order its config lists them in. A
//! key hashes to an entry; removing a backend moves little more than its own keys. Or a ketama
//! ring (`ring.rs`): removing a backend moves exactly its keys, at the cost of a less even
//! spread and a binary search per pick.
//!
//! Maglev weights: each filling round gives every backend its weight in credit, and a backend
//! takes an entry each time its credit reaches the largest weight, so entries follow weights.
//!
//! Bounded load (consistent hashing with bounded loads, Mirrokni et al. 2018, as Envoy's
//! `hash_balance_factor` and HAProxy's `hash-balance-factor`): a backend takes a keyed request
//! only while its in-flight count stays within `factor`% of its weighted share of the pool's
//! in-flight requests (this one included), rounded up; otherwise the walk goes on to the next
//! entries, which name other backends in an order fixed by the key.

use super::{Candidate, SmoothWeightedRoundRobin, ring};
use crate::config::HashLayout as Layout;
use std::num::NonZeroU16;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Entries in a table: a prime, so every skip walks all of them.
pub const TABLE_SIZE: usize = 65_537;

/// Entries a keyed pick walks before it gives up on the table's order and scans the pool.
const WALK: usize = 64;

/// A pool's consistent-hashing table, with weighted round-robin for requests without a key.
#[derive(Debug)]
pub struct HashTable {
    /// For each entry, the index of its backend among the candidates.
    table: Box<[u32]>,
    /// A ring's points, in order: where each entry sits (empty for Maglev).
    points: Box<[u64]>,
    /// Sum of the weights the table was built with.
    total_weight: u64,
    /// For requests that carry no key.
    fallback: SmoothWeightedRoundRobin,
}

impl HashTable {
    /// The table for backends with these names and weights (in the order `pick` gets them).
    /// A backend of weight 0 takes no entry.
    pub fn new(layout: Layout, names: &[&str], weights: &[u32]) -> Self {
        let (points, table) = match layout {
            Layout::Maglev => (Box::default(), fill(names, weights)),
            Layout::Ring => ring::fill(names, weights),
        };
        Self {
            table,
            points,
            total_weight: weights.iter().map(|&w| u64::from(w)).sum(),
            fallback: SmoothWeightedRoundRobin::new(weights),
        }
    }

    /// The candidate for a request whose key hashes to `key`: the backend of its entry, or of
    /// the next entries when that one is not selectable or (with `factor`) over its bound.
    pub fn pick<C: Candidate>(
        &self,
        key: u64,
        factor: Option<NonZeroU16>,
        candidates: &[C],
        selectable: impl Fn(&C) -> bool,
    ) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let size = self.table.len();
        let start = self.entry_of(key);
        // The pool's in-flight total, read only when a bound is to be checked.
        let mut in_flight = None;
        let mut fits = |candidate: &C| match factor {
            None => true,
            Some(_) if candidate.in_flight() == 0 => true,
            Some(factor) => {
                let total = *in_flight.get_or_insert_with(|| {
                    candidates.iter().map(|c| u64::from(c.in_flight())).sum()
                });
                within_bound(candidate, factor, total, self.total_weight)
            }
        };
        for step in 0..WALK.min(size) {
            let index = self.table[(start + step) % size] as usize;
            let candidate = candidates.get(index)?;
            if selectable(candidate) && fits(candidate) {
                return Some(index);
            }
        }
        // Few backends selectable or within bound: the first that is, from the key's own.
        let first = self.table[start] as usize;
        let n = candidates.len();
        (0..n)
            .map(|k| (first + k) % n)
            .find(|&i| selectable(&candidates[i]) && fits(&candidates[i]))
    }

    /// The entry a key hashes to (the table must not be empty).
    fn entry_of(&self, key: u64) -> usize {
        let size = self.table.len();
        if self.points.is_empty() {
            (key % size as u64) as usize
        } else {
            // The first point at or after the key, round the ring.
            self.points.partition_point(|&point| point < key) % size
        }
    }

    /// The candidate `key` belongs to, whatever the candidates' state.
    pub fn owner(&self, key: u64) -> Option<u32> {
        (!self.table.is_empty()).then(|| self.table[self.entry_of(key)])
    }

    /// The candidate for a request without a key: weighted round-robin.
    pub fn pick_unkeyed<C: Candidate>(
        &self,
        candidates: &[C],
        selectable: impl Fn(&C) -> bool,
    ) -> Option<usize> {
        self.fallback.pick(candidates, selectable)
    }

    /// The candidate index of each entry (in ring order for a ring), for gauges and tests.
    pub fn entries(&self) -> &[u32] {
        &self.table
    }
}

/// Whether `candidate` may take one more request: its in-flight count stays within `factor`%
/// of its weighted share of `total` + 1, rounded up.
fn within_bound<C: Candidate>(candidate: &C, factor: NonZeroU16, total: u64, weights: u64) -> bool {
    // in_flight + 1 <= ceil(factor/100 × (total+1) × weight/weights)
    //   ⇔ in_flight × 100 × weights < factor × (total+1) × weight. u128: no overflow.
    let load = u128::from(candidate.in_flight()) * 100 * u128::from(weights.max(1));
    let bound = u128::from(factor.get()) * u128::from(total + 1) * u128::from(candidate.weight());
    load < bound
}

/// The table for these backends: each takes, in turn and in proportion to its weight, the
/// next free entry of its own permutation. Backends are taken in the order of their names,
/// so the table does not depend on the order they were given in.
fn fill(names: &[&str], weights: &[u32]) -> Box<[u32]> {
    let mut order: Vec<usize> = (0..names.len()).filter(|&i| weights[i] > 0).collect();
    if order.is_empty() {
        return Box::new([]);
    }
    order.sort_by_key(|&i| names[i]);
    let size = TABLE_SIZE as u64;
    // Each backend's permutation: entry k is (offset + k × skip) mod size.
    let permutations: Vec<(u64, u64)> = order
        .iter()
        .map(|&i| {
            let name = names[i].as_bytes();
            let offset = xxh3_64_with_seed(name, 0) % size;
            let skip = xxh3_64_with_seed(name, 1) % (size - 1) + 1;
            (offset, skip)
        })
        .collect();
    let most = order
        .iter()
        .map(|&i| u64::from(weights[i]))
        .max()
        .unwrap_or(1);
    let mut next = vec![0u64; order.len()];
    let mut credit = vec![0u64; order.len()];
    let mut table = vec![u32::MAX; TABLE_SIZE];
    let mut filled = 0;
    while filled < TABLE_SIZE {
        for (k, &i) in order.iter().enumerate() {
            credit[k] += u64::from(weights[i]);
            if credit[k] < most {
                continue;
            }
            credit[k] -= most;
            let (offset, skip) = permutations[k];
            // A permutation visits every entry once, so a free one is always found.
            loop {
                let entry = ((offset + next[k] * skip) % size) as usize;
                next[k] += 1;
                if table[entry] == u32::MAX {
                    table[entry] = i as u32;
                    filled += 1;
                    break;
                }
            }
            if filled == TABLE_SIZE {
                break;
            }
        }
    }
    table.into_boxed_slice()
}

#[cfg(test)]
#[path = "hashing_tests.rs"]
mod tests;

//! A rule's table: a GCRA cell per key, read and changed by requests without lock or guard.

use super::{Decision, Gcra};
use portable_atomic::AtomicU128;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;

/// Buckets in the first level; each level has twice the one before.
const FIRST_LEVEL: usize = 256;
/// Levels at most: 256 × (2¹¹ − 1) buckets of 4 keys, some 2.1 million keys in 32 MiB.
const LEVELS: usize = 11;
/// Buckets a key may use in each level, from the one its hash names: a level is three
/// quarters full or more before a key finds no room in it.
const PROBED: usize = 4;

/// Four keys in one cache line: a slot is a key's 64-bit fingerprint and its TAT, changed
/// together by one 16-byte compare-and-swap, so a slot can pass from one key to another while
/// requests of both race on it. An all-zero slot has never been used.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Bucket([AtomicU128; 4]);

/// One rule's state: GCRA cells by key. Survives reloads that keep the rule.
///
/// Levels of buckets, each allocated when the ones before it have no room for a key and
/// never freed while the table lives, so a request reads them with no guard or reference
/// count. A key lives in the first level whose bucket had a free slot when it came; a slot
/// whose TAT has passed is free (its key is as good as new), so idle keys are evicted by the
/// next key that needs the room, and no sweep is needed.
#[derive(Debug, Default)]
pub struct Table {
    levels: [OnceLock<Box<[Bucket]>>; LEVELS],
    /// Random per table: a client cannot predict where its keys land.
    seeds: Seeds,
}

impl Table {
    /// Admits or refuses one request of `key` at `now` (nanoseconds on the limiter clock).
    ///
    /// Two first requests of a new key may race into two cells when a cell passes its TAT
    /// between them; the second copy is never found again and expires, so the key is charged
    /// at most one request less, once.
    pub fn admit(&self, gcra: &Gcra, key: u128, now: u64) -> Decision {
        // Never zero: zero marks a cell never used.
        let fingerprint = self.seeds.fingerprint(key);
        loop {
            match self.find(fingerprint, now) {
                Found::Key(slot, seen) => {
                    if let Some(decision) = spend(slot, seen, gcra, now) {
                        return decision;
                    }
                }
                Found::Free(slot, seen) => {
                    let (decision, next) = gcra.decide(0, now);
                    let Some(next) = next else { return decision };
                    let cell = (u128::from(fingerprint) << 64) | u128::from(next);
                    if slot.compare_exchange(seen, cell, Relaxed, Relaxed).is_ok() {
                        return decision;
                    }
                }
                Found::Full(levels) => {
                    if !self.grow(levels) {
                        // Every level full of live keys: decided as new, not remembered.
                        return gcra.decide(0, now).0;
                    }
                }
            }
            // Another request changed the cell first: look again.
        }
    }

    /// Where the key with `fingerprint` is, or the first cell free for it.
    fn find(&self, fingerprint: u64, now: u64) -> Found<'_> {
        let mut free = None;
        let mut levels = 0;
        for level in &self.levels {
            let Some(buckets) = level.get() else { break };
            levels += 1;
            // Levels are powers of two long; bit 0 is the same in every fingerprint.
            let mask = buckets.len() - 1;
            let first = (fingerprint >> 1) as usize;
            for n in 0..PROBED {
                for slot in &buckets[first.wrapping_add(n) & mask].0 {
                    // Relaxed: the cell is the whole state; no other memory is published
                    // through it.
                    let seen = slot.load(Relaxed);
                    if seen == 0 {
                        // A key takes the first free cell it meets and cells are never
                        // emptied, so it can be in no cell past one never used.
                        let (slot, seen) = free.unwrap_or((slot, 0));
                        return Found::Free(slot, seen);
                    }
                    if (seen >> 64) as u64 == fingerprint {
                        return Found::Key(slot, seen);
                    }
                    if free.is_none() && seen as u64 <= now {
                        free = Some((slot, seen));
                    }
                }
            }
        }
        match free {
            Some((slot, seen)) => Found::Free(slot, seen),
            None => Found::Full(levels),
        }
    }

    /// Adds the level after the first `levels`, unless another request did; false when there
    /// is none left to add. Allocated on the request that needs it, once per level: the
    /// largest is 16 MiB.
    fn grow(&self, levels: usize) -> bool {
        let Some(level) = self.levels.get(levels) else {
            return false;
        };
        if level.get().is_none() {
            let buckets = (0..FIRST_LEVEL << levels)
                .map(|_| Bucket::default())
                .collect();
            // Set by another request meanwhile: that one stands and ours is dropped.
            let _ = level.set(buckets);
        }
        true
    }

    /// Cells allocated (four per bucket).
    pub fn capacity(&self) -> usize {
        self.levels
            .iter()
            .map_while(OnceLock::get)
            .map(|buckets| buckets.len() * 4)
            .sum()
    }

    /// Keys whose TAT has not passed at `now` (the keeper's gauge; the table needs no sweep).
    pub fn held(&self, now: u64) -> usize {
        self.levels
            .iter()
            .map_while(OnceLock::get)
            .flat_map(|buckets| buckets.iter().flat_map(|bucket| &bucket.0))
            .filter(|slot| {
                let seen = slot.load(Relaxed);
                seen != 0 && seen as u64 > now
            })
            .count()
    }
}

/// The seeds of a table's fingerprints.
#[derive(Debug)]
struct Seeds([u64; 4]);

impl Default for Seeds {
    fn default() -> Self {
        let random = std::hash::RandomState::new();
        Self([0u8, 1, 2, 3].map(|n| random.hash_one(n)))
    }
}

impl Seeds {
    /// A key's fingerprint, never zero: two folded multiplies (the step foldhash and wyhash are
    /// built on), without a `Hasher`'s plumbing, which cost four times as much per request.
    fn fingerprint(&self, key: u128) -> u64 {
        let [a, b, c, d] = self.0;
        let mixed = folded_multiply(key as u64 ^ a, (key >> 64) as u64 ^ b);
        folded_multiply(mixed ^ c, d | 1) | 1
    }
}

fn folded_multiply(x: u64, y: u64) -> u64 {
    let product = u128::from(x) * u128::from(y);
    product as u64 ^ (product >> 64) as u64
}

/// What a search of the table found.
enum Found<'a> {
    /// The key's cell, as seen.
    Key(&'a AtomicU128, u128),
    /// No cell of the key; the first free one, as seen.
    Free(&'a AtomicU128, u128),
    /// Neither, in this many levels.
    Full(usize),
}

/// Spends a request of the key in `slot` (seen as `seen`): the decision, or `None` when the
/// cell passed to another key meanwhile.
fn spend(slot: &AtomicU128, mut seen: u128, gcra: &Gcra, now: u64) -> Option<Decision> {
    loop {
        let (decision, next) = gcra.decide(seen as u64, now);
        let Some(next) = next else {
            return Some(decision);
        };
        let cell = (seen >> 64 << 64) | u128::from(next);
        match slot.compare_exchange_weak(seen, cell, Relaxed, Relaxed) {
            Ok(_) => return Some(decision),
            Err(now_seen) if now_seen >> 64 == seen >> 64 => seen = now_seen,
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::access::limit::tests::{MS, gcra};

    #[test]
    fn a_burst_then_the_steady_rate() {
        let table = Table::default();
        let g = gcra(50, 10);
        let now = 1_000 * MS;
        let admitted = (0..20).filter(|_| table.admit(&g, 7, now).admitted).count();
        assert_eq!(admitted, 11, "one plus the burst at once");
        // 20 ms later one more interval has passed: exactly one more.
        assert!(table.admit(&g, 7, now + 20 * MS).admitted);
        assert!(!table.admit(&g, 7, now + 20 * MS).admitted);
        // Another key is untouched.
        assert!(table.admit(&g, 8, now).admitted);
    }

    #[test]
    fn over_ten_seconds_the_rate_plus_the_burst() {
        let table = Table::default();
        let g = gcra(50, 10);
        let mut admitted = 0;
        // 10 clients sharing one key, each every 5 ms, for 10 s.
        for step in 0..2_000u64 {
            for _ in 0..10 {
                admitted += usize::from(table.admit(&g, 1, step * 5 * MS).admitted);
            }
        }
        assert_eq!(admitted, 500 + 10);
    }

    #[test]
    fn idle_keys_are_not_counted() {
        let table = Table::default();
        let g = gcra(1, 0);
        table.admit(&g, 1, 0);
        table.admit(&g, 2, 500 * MS);
        assert_eq!(table.held(1_000 * MS), 1, "key 1's TAT has passed");
        assert_eq!(table.held(1_500 * MS), 0);
    }

    #[test]
    fn idle_keys_give_their_cells_to_new_ones() {
        let table = Table::default();
        let g = gcra(1, 0);
        for key in 0..50_000 {
            assert!(table.admit(&g, key, 0).admitted);
        }
        assert_eq!(table.held(0), 50_000);
        let grown = table.capacity();
        assert!((50_000..=4 * 50_000).contains(&grown), "{grown} cells");
        // A second later they are idle: as many new keys take their cells, and the old keys
        // are as good as new.
        for key in 50_000..100_000 {
            assert!(table.admit(&g, key, 2_000 * MS).admitted);
        }
        assert_eq!(table.capacity(), grown, "no level added");
        assert_eq!(table.held(2_000 * MS), 50_000);
        assert!(table.admit(&g, 7, 2_000 * MS).admitted);
        assert!(
            !table.admit(&g, 50_007, 2_000 * MS).admitted,
            "still remembered"
        );
    }

    #[test]
    fn requests_racing_on_keys_spend_exactly_their_burst() {
        let table = Table::default();
        let g = gcra(1, 9);
        // Four threads, each sending 20 requests of each of 3,000 keys at one instant, the
        // table growing under them: every key admits exactly its burst plus one.
        let admitted: usize = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut admitted = 0;
                        for _ in 0..20 {
                            for key in 0..3_000 {
                                admitted += usize::from(table.admit(&g, key, 5_000 * MS).admitted);
                            }
                        }
                        admitted
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(admitted, 3_000 * 10);
        assert_eq!(table.held(5_000 * MS), 3_000);
    }
}

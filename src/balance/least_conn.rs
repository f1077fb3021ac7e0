//! Weighted least-connections: the candidate with the fewest in-flight requests per unit of
//! weight. Small pools are scanned whole from a rotating start, so ties do not always fall to
//! the first backend; large pools use power-of-two-choices (Mitzenmacher, "The Power of Two
//! Choices in Randomized Load Balancing"), which keeps a pick O(1).

use super::{Candidate, first_selectable_from};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pools larger than this pick by power-of-two-choices instead of a full scan.
const FULL_SCAN_LIMIT: usize = 16;

/// The least-connections picker; its only state is the rotating scan start.
#[derive(Debug, Default)]
pub struct LeastConnections {
    cursor: AtomicUsize,
}

impl LeastConnections {
    /// Creates a picker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The least-loaded selectable candidate.
    pub fn pick<C: Candidate>(
        &self,
        candidates: &[C],
        selectable: impl Fn(&C) -> bool,
    ) -> Option<usize> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        if n > FULL_SCAN_LIMIT {
            let a = fastrand::usize(..n);
            // A second, distinct index: offset by 1..n so it never equals `a`.
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            return match (selectable(&candidates[a]), selectable(&candidates[b])) {
                (true, true) => Some(if lighter(&candidates[b], &candidates[a]) {
                    b
                } else {
                    a
                }),
                (true, false) => Some(a),
                (false, true) => Some(b),
                (false, false) => self.scan(candidates, selectable),
            };
        }
        self.scan(candidates, selectable)
    }

    fn scan<C: Candidate>(
        &self,
        candidates: &[C],
        selectable: impl Fn(&C) -> bool,
    ) -> Option<usize> {
        let n = candidates.len();
        // Relaxed: the cursor only rotates the tie-break; no other memory is ordered by it.
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = first_selectable_from(candidates, start, &selectable)?;
        let mut i = best;
        for _ in 1..n {
            i += 1;
            if i == n {
                i = 0;
            }
            if i == start {
                break;
            }
            if selectable(&candidates[i]) && lighter(&candidates[i], &candidates[best]) {
                best = i;
            }
        }
        Some(best)
    }
}

/// Whether `a` carries strictly less load per weight than `b`, counting the request about to be
/// sent: `(in_flight + 1) / weight`, so that an idle heavy backend beats an idle light one.
pub fn lighter<C: Candidate>(a: &C, b: &C) -> bool {
    let load_a = (u64::from(a.in_flight()) + 1) * u64::from(b.weight());
    let load_b = (u64::from(b.in_flight()) + 1) * u64::from(a.weight());
    load_a < load_b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{fakes, open};

    #[test]
    fn picks_the_backend_with_fewest_requests_in_flight() {
        let c = fakes(&[1, 1, 1]);
        c[0].in_flight.set(3);
        c[1].in_flight.set(1);
        c[2].in_flight.set(2);
        let lc = LeastConnections::new();
        for _ in 0..10 {
            assert_eq!(lc.pick(&c, open), Some(1));
        }
    }

    #[test]
    fn ties_rotate_instead_of_favouring_the_first() {
        let c = fakes(&[1, 1, 1]);
        let lc = LeastConnections::new();
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[lc.pick(&c, open).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn load_is_compared_per_unit_of_weight() {
        let c = fakes(&[4, 1]);
        c[0].in_flight.set(3); // (3+1)/4 = 1 per weight
        c[1].in_flight.set(1); // (1+1)/1 = 2 per weight
        assert_eq!(LeastConnections::new().pick(&c, open), Some(0));
    }

    #[test]
    fn large_pools_avoid_loaded_and_unselectable_backends() {
        let c = fakes(&[1; 64]);
        for (i, f) in c.iter().enumerate() {
            f.in_flight.set(if i == 7 { 0 } else { 100 });
            f.selectable.set(i % 2 == 1);
        }
        let lc = LeastConnections::new();
        for _ in 0..1000 {
            let i = lc.pick(&c, open).unwrap();
            assert!(c[i].selectable.get());
        }
        for f in &c {
            f.selectable.set(false);
        }
        assert_eq!(lc.pick(&c, open), None);
    }
}

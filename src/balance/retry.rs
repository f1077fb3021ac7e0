//! Choosing the backend for a retry. The caller passes over the backends already tried; the
//! pick never moves the balancer, so retries do not shift the rotation of first attempts.
//! Round-robin and hashing pools draw one at random by weight (retries spread like first
//! attempts, not all onto the backend after the failed one); least-connections pools take the
//! least loaded.

use super::{Balancer, Candidate, lighter};

impl Balancer {
    /// Index of the candidate a retry goes to, among those `usable` accepts.
    pub fn pick_other<C: Candidate>(
        &self,
        candidates: &[C],
        usable: impl Fn(&C) -> bool,
    ) -> Option<usize> {
        match self {
            Self::WeightedRoundRobin(_) | Self::Hash(_) => {
                let total: u64 = weights(candidates, &usable).sum();
                if total == 0 {
                    return None;
                }
                by_weight(candidates, &usable, fastrand::u64(..total))
            }
            Self::LeastConnections(_) | Self::LeastLatency(_) => (0..candidates.len())
                .filter(|&i| usable(&candidates[i]))
                .reduce(|best, i| {
                    if lighter(&candidates[i], &candidates[best]) {
                        i
                    } else {
                        best
                    }
                }),
        }
    }
}

fn weights<'a, C: Candidate>(
    candidates: &'a [C],
    usable: &'a impl Fn(&C) -> bool,
) -> impl Iterator<Item = u64> + 'a {
    candidates
        .iter()
        .filter(move |c| usable(c))
        .map(|c| u64::from(c.weight()))
}

/// The usable candidate that `draw` (below the usable candidates' total weight) falls on,
/// each owning a stretch as long as its weight.
fn by_weight<C: Candidate>(
    candidates: &[C],
    usable: &impl Fn(&C) -> bool,
    mut draw: u64,
) -> Option<usize> {
    candidates.iter().position(|c| {
        if !usable(c) {
            return false;
        }
        let weight = u64::from(c.weight());
        if draw < weight {
            return true;
        }
        draw -= weight;
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{Fake, fakes, open};
    use crate::config::{Algorithm, HashLayout};

    #[test]
    fn each_usable_candidate_owns_a_stretch_of_draws_as_long_as_its_weight() {
        let c = fakes(&[3, 1, 2]);
        c[1].selectable.set(false);
        let owners: Vec<_> = (0..5).map(|draw| by_weight(&c, &open, draw)).collect();
        assert_eq!(owners, [Some(0), Some(0), Some(0), Some(2), Some(2)]);
    }

    #[test]
    fn a_retry_never_goes_to_a_candidate_the_caller_passed_over() {
        for algorithm in [
            Algorithm::WeightedRoundRobin,
            Algorithm::LeastConnections,
            Algorithm::Hash,
        ] {
            let c = fakes(&[1, 5, 1]);
            c[1].selectable.set(false);
            let balancer =
                Balancer::new(algorithm, HashLayout::Maglev, &["a", "b", "c"], &[1, 5, 1]);
            for _ in 0..200 {
                let pick = balancer.pick_other(&c, open);
                assert!(matches!(pick, Some(0 | 2)), "{algorithm:?} picked {pick:?}");
            }
            c[0].selectable.set(false);
            c[2].selectable.set(false);
            assert_eq!(balancer.pick_other(&c, open), None);
        }
    }

    #[test]
    fn least_connections_retries_on_the_least_loaded_candidate() {
        let c = fakes(&[1, 1, 2]);
        c[0].in_flight.set(1);
        c[1].in_flight.set(3);
        c[2].in_flight.set(2);
        let balancer = Balancer::new(
            Algorithm::LeastConnections,
            HashLayout::Maglev,
            &["a", "b", "c"],
            &[1, 1, 2],
        );
        // 2 in flight on weight 2 weighs less than 1 on weight 1.
        assert_eq!(balancer.pick_other(&c, open), Some(2));
    }

    #[test]
    fn retries_leave_the_round_robin_rotation_where_it_was() {
        let c: Vec<Fake> = fakes(&[1, 1, 1]);
        let with_retries = Balancer::new(
            Algorithm::WeightedRoundRobin,
            HashLayout::Maglev,
            &["a", "b", "c"],
            &[1, 1, 1],
        );
        let first = with_retries.pick(&c, open).expect("a pick");
        for _ in 0..10 {
            with_retries.pick_other(&c, open);
        }
        // The schedule walks 0, 1, 2 in order from wherever it starts.
        assert_eq!(with_retries.pick(&c, open), Some((first + 1) % 3));
    }
}

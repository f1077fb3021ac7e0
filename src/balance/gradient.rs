//! Adaptive concurrency limits, after Netflix's Gradient2: a backend's limit follows the ratio
//! of its long-term average response time to the latest one. While responses come as fast as
//! they usually do the limit grows (by a queue allowance per sample); when they slow down, it
//! shrinks in proportion, at most by half per sample, smoothed. The long-term average drifts
//! towards a lasting change, so there are no minimum-RTT probe windows that shed healthy
//! traffic while they measure (envoy#8582, #38338).
//!
//! Pure arithmetic on atomics: samples from concurrent responses may interleave, and the last
//! writer wins, as for the latency estimate; each result stays within `1..=ceiling`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The limit before the first sample (Netflix's initial limit), if the ceiling allows.
const INITIAL: f64 = 20.0;
/// Samples averaged plainly before the long-term average becomes exponential.
const WARMUP: u32 = 10;
/// The long-term average's window, in samples.
const LONG_WINDOW: f64 = 600.0;
/// How much slower than usual a response may be before the limit shrinks.
const TOLERANCE: f64 = 1.5;
/// What the limit may grow by per sample while latency holds: requests that may queue at the
/// backend.
const QUEUE: f64 = 4.0;
/// How far each sample moves the limit towards its new target.
const SMOOTHING: f64 = 0.2;

/// One backend's adaptive limit.
#[derive(Debug, Default)]
pub struct Gradient {
    /// The limit, as `f64` bits; 0 before the first sample.
    limit: AtomicU64,
    /// The long-term average response time in nanoseconds, as `f64` bits.
    long: AtomicU64,
    samples: AtomicU32,
}

impl Gradient {
    /// Takes a response that took `nanos`, seen with `in_flight` requests in flight (itself
    /// included), and returns the backend's new limit, within `1..=ceiling`.
    pub fn sample(&self, nanos: u64, in_flight: u32, ceiling: u32) -> u32 {
        // Relaxed throughout: an estimate, nothing else is published through it.
        let short = nanos.max(1) as f64;
        let n = self
            .samples
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let mut long = f64::from_bits(self.long.load(Ordering::Relaxed));
        long += if n <= WARMUP {
            (short - long) / f64::from(n)
        } else {
            (short - long) * 2.0 / (LONG_WINDOW + 1.0)
        };
        // Far above the latest: let the average come down faster than its window would.
        if long / short > 2.0 {
            long *= 0.95;
        }
        self.long.store(long.to_bits(), Ordering::Relaxed);
        let ceiling = f64::from(ceiling.max(1));
        let limit = match self.limit.load(Ordering::Relaxed) {
            0 => INITIAL.min(ceiling),
            bits => f64::from_bits(bits).min(ceiling),
        };
        // Far from the limit, the sample says nothing about it.
        let next = if f64::from(in_flight) < limit / 2.0 {
            limit
        } else {
            let gradient = (TOLERANCE * long / short).clamp(0.5, 1.0);
            let target = limit * gradient + QUEUE;
            (limit * (1.0 - SMOOTHING) + target * SMOOTHING).clamp(1.0, ceiling)
        };
        self.limit.store(next.to_bits(), Ordering::Relaxed);
        next as u32
    }

    /// Starts over (the pool's settings changed).
    pub fn reset(&self) {
        self.limit.store(0, Ordering::Relaxed);
        self.long.store(0, Ordering::Relaxed);
        self.samples.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// `n` samples of `nanos` at `in_flight` (or at the limit itself when `None`).
    fn run(g: &Gradient, n: usize, nanos: u64, in_flight: Option<u32>, ceiling: u32) -> u32 {
        let mut limit = g.sample(nanos, in_flight.unwrap_or(20), ceiling);
        for _ in 1..n {
            limit = g.sample(nanos, in_flight.unwrap_or(limit), ceiling);
        }
        limit
    }

    #[test]
    fn a_backend_as_fast_as_usual_under_load_earns_a_higher_limit_up_to_its_ceiling() {
        let g = Gradient::default();
        let after_50 = run(&g, 50, 10 * MS, None, 1000);
        assert!(after_50 > 40, "{after_50}");
        assert_eq!(run(&g, 2000, 10 * MS, None, 1000), 1000);
        assert_eq!(run(&g, 10, 10 * MS, None, 64), 64);
    }

    #[test]
    fn a_backend_slowing_under_load_has_its_limit_cut() {
        let g = Gradient::default();
        let before = run(&g, 200, 10 * MS, None, 1000);
        // Queueing at the backend: four times slower.
        let after = run(&g, 30, 40 * MS, None, 1000);
        assert!(after * 2 < before, "{before} -> {after}");
        assert!(after >= 1);
    }

    #[test]
    fn samples_far_below_the_limit_leave_it_alone() {
        let g = Gradient::default();
        let limit = run(&g, 5, 10 * MS, Some(1), 1000);
        assert_eq!(limit, 20);
        assert_eq!(run(&g, 50, 100 * MS, Some(2), 1000), 20);
    }

    #[test]
    fn a_lasting_change_of_latency_becomes_the_norm_and_the_limit_grows_again() {
        let g = Gradient::default();
        run(&g, 200, 10 * MS, None, 1000);
        let cut = run(&g, 20, 30 * MS, None, 1000);
        let later = run(&g, 3000, 30 * MS, None, 1000);
        assert!(later > cut, "{cut} -> {later}");
    }

    #[test]
    fn the_limit_never_leaves_one_to_ceiling() {
        let g = Gradient::default();
        for (nanos, in_flight) in [(1, 0), (u64::MAX, u32::MAX), (0, 7), (5 * MS, 1)] {
            let limit = g.sample(nanos, in_flight, 3);
            assert!((1..=3).contains(&limit), "{limit}");
        }
        g.reset();
        assert_eq!(g.sample(MS, 1, 0), 1);
    }
}

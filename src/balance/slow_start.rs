//! Slow start: a new or recovered backend's weight ramps linearly from a small share to its full
//! weight over a window (HAProxy's `slowstart`, Envoy's slow start with aggression 1).
//! Weights handed to balancers are in units of `1 / SCALE` so that even a weight-1 backend can
//! ramp in steps; the round-robin schedule divides the common factor out again.

use std::time::Duration;

/// Balancer weight units per configured weight unit.
pub const SCALE: u32 = 16;

/// A ramping backend starts at this share of its weight (Envoy's `min_weight_percent`).
pub const MIN_SHARE: f64 = 0.1;

/// Balancer weight of a backend of configured `weight`, `elapsed` into a ramp of `window`.
pub fn ramped_weight(weight: u32, elapsed: Duration, window: Duration) -> u32 {
    let full = weight * SCALE;
    if elapsed >= window || window.is_zero() {
        return full;
    }
    // Linear from MIN_SHARE at the start to the full weight at the window's end.
    let share = MIN_SHARE + (1.0 - MIN_SHARE) * (elapsed.as_secs_f64() / window.as_secs_f64());
    ((f64::from(full) * share).round() as u32).clamp(1, full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{fakes, open};
    use crate::balance::{LeastConnections, SmoothWeightedRoundRobin};

    const WINDOW: Duration = Duration::from_secs(10);

    #[test]
    fn ramp_starts_at_the_minimum_share_and_ends_at_full_weight() {
        assert_eq!(ramped_weight(1, Duration::ZERO, WINDOW), 2); // 10% of 16, rounded
        assert_eq!(ramped_weight(1, Duration::from_secs(1), WINDOW), 3); // 19%
        assert_eq!(ramped_weight(1, Duration::from_secs(5), WINDOW), 9); // 55%
        assert_eq!(ramped_weight(1, WINDOW, WINDOW), SCALE);
        assert_eq!(
            ramped_weight(10, Duration::from_secs(25), WINDOW),
            10 * SCALE
        );
    }

    /// Share of the ramping backend (index 1) over a full round-robin cycle.
    fn wrr_share(elapsed: Duration) -> f64 {
        let weights = [SCALE, ramped_weight(1, elapsed, WINDOW)];
        let wrr = SmoothWeightedRoundRobin::new(&weights);
        let candidates = fakes(&weights);
        let n = wrr.cycle().len();
        let picked = (0..n)
            .filter(|_| wrr.pick(&candidates, open) == Some(1))
            .count();
        picked as f64 / n as f64
    }

    #[test]
    fn round_robin_share_of_a_ramping_backend_follows_the_ramp() {
        // Against one full-weight peer of the same configured weight: 2/18, 3/19, 9/25, 12/28,
        // then 1/2: climbing from the first second on, not flat at 10% for a tenth of the window.
        assert!((wrr_share(Duration::ZERO) - 2.0 / 18.0).abs() < 1e-9);
        assert!((wrr_share(Duration::from_secs(1)) - 3.0 / 19.0).abs() < 1e-9);
        assert!((wrr_share(Duration::from_secs(5)) - 9.0 / 25.0).abs() < 1e-9);
        assert!((wrr_share(Duration::from_millis(7500)) - 12.0 / 28.0).abs() < 1e-9);
        assert!((wrr_share(WINDOW) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn least_connections_load_of_a_ramping_backend_follows_the_ramp() {
        // With requests that never finish, least-connections fills backends in proportion to
        // their weights, so the ramping backend's share tracks its ramped weight.
        for (elapsed, expected) in [
            (Duration::ZERO, 2.0 / 18.0),
            (Duration::from_secs(5), 9.0 / 25.0),
            (WINDOW, 0.5),
        ] {
            let candidates = fakes(&[SCALE, ramped_weight(1, elapsed, WINDOW)]);
            let lc = LeastConnections::new();
            let total = 720;
            for _ in 0..total {
                let i = lc.pick(&candidates, open).expect("a candidate");
                candidates[i]
                    .in_flight
                    .set(candidates[i].in_flight.get() + 1);
            }
            let share = f64::from(candidates[1].in_flight.get()) / total as f64;
            assert!(
                (share - expected).abs() < 0.01,
                "at {elapsed:?}: share {share}, expected {expected}"
            );
        }
    }
}

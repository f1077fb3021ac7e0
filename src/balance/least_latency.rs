//! Least latency: power of two choices (two random candidates, the cheaper wins) where a
//! candidate's cost is its peak-EWMA latency × (in flight + 1) / weight — the rule of tower's
//! and linkerd2-proxy's `PeakEwma`. The estimate jumps to a sample above it (the peak) and
//! moves towards one below it as time passes (a sample `decay` after the last weighs 63 %);
//! read, it decays towards zero while no sample comes, so a backend left alone because it was
//! slow is tried again rather than starved. A backend with no sample yet costs the pool's
//! median estimate, never nothing; one penalised (a 429 or 503 with `Retry-After`) loses to
//! any other until the penalty ends. Pure: the caller passes the time.

use super::Candidate;
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest a `Retry-After` penalises a backend.
pub const PENALTY_CAP_NANOS: u64 = 10_000_000_000;

/// Candidates a pool scans whole below this size (two choices out of two or three is a scan).
const SCAN_BELOW: usize = 4;

/// A backend's latency estimate, changed by responses and read by picks, lock-free.
#[derive(Debug, Default)]
pub struct Latency {
    /// The estimate in nanoseconds, as `f64` bits; 0: no sample yet.
    estimate: AtomicU64,
    /// When it was last changed (nanoseconds on the caller's clock).
    stamp: AtomicU64,
    /// Until when the backend is penalised.
    penalty_until: AtomicU64,
}

impl Latency {
    /// Takes a response's latency (`rtt` nanoseconds) at `now`. Two responses at once may
    /// both read the old estimate; one update wins, as a lost sample costs little.
    pub fn observe(&self, rtt: u64, now: u64, decay: u64) {
        // Relaxed: the estimate is its own fact; nothing else is published through it.
        let before = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        let stamp = self.stamp.load(Ordering::Relaxed);
        let next = peak_ewma(before, now.saturating_sub(stamp), rtt as f64, decay);
        self.estimate.store(next.to_bits(), Ordering::Relaxed);
        self.stamp.store(now, Ordering::Relaxed);
    }

    /// The estimate at `now`, decayed since its last sample; `None` before any sample.
    pub fn estimate(&self, now: u64, decay: u64) -> Option<f64> {
        self.estimate_per(now, 1.0 / decay.max(1) as f64)
    }

    /// `estimate` with the decay given as its inverse (a pick multiplies rather than divides).
    fn estimate_per(&self, now: u64, per_decay: f64) -> Option<f64> {
        let estimate = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        (estimate > 0.0).then(|| {
            let idle = now.saturating_sub(self.stamp.load(Ordering::Relaxed));
            estimate * share_of_past(idle as f64 * per_decay)
        })
    }

    /// Penalises the backend for `nanos` from `now` (at most `PENALTY_CAP_NANOS`).
    pub fn penalise(&self, now: u64, nanos: u64) {
        let until = now.saturating_add(nanos.min(PENALTY_CAP_NANOS));
        self.penalty_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether a penalty holds at `now`.
    pub fn penalised(&self, now: u64) -> bool {
        self.penalty_until.load(Ordering::Relaxed) > now
    }
}

impl Clone for Latency {
    fn clone(&self) -> Self {
        let copy = |value: &AtomicU64| AtomicU64::new(value.load(Ordering::Relaxed));
        Self {
            estimate: copy(&self.estimate),
            stamp: copy(&self.stamp),
            penalty_until: copy(&self.penalty_until),
        }
    }
}

/// How much of the past an estimate keeps after `elapsed`: `exp(-elapsed / decay)`. Under load
/// samples come far more often than `decay`: there the first-order term is exact to 1e-4 and
/// spares a picked pair their two `exp` calls.
fn weight_of_past(elapsed: u64, decay: u64) -> f64 {
    share_of_past(elapsed as f64 / decay.max(1) as f64)
}

/// `exp(-x)`, or `1 - x` where that is exact to 1e-4.
fn share_of_past(x: f64) -> f64 {
    if x < 1.0 / 64.0 { 1.0 - x } else { (-x).exp() }
}

/// The estimate after a sample `rtt`, `elapsed` after the last: the sample itself when it is
/// higher, else a mix weighted by how long ago the last one was.
pub fn peak_ewma(before: f64, elapsed: u64, rtt: f64, decay: u64) -> f64 {
    if rtt >= before {
        return rtt;
    }
    let past = weight_of_past(elapsed, decay);
    before * past + rtt * (1.0 - past)
}

/// The least-latency picker: the decay and the cost of a backend without a sample.
#[derive(Debug)]
pub struct LeastLatency {
    /// Nanoseconds over which an old estimate gives way.
    decay: u64,
    /// `1 / decay`: a pick multiplies rather than divides.
    per_decay: f64,
    /// The pool's median estimate when it was built (nanoseconds), for backends without one.
    pub seed: f64,
}

impl LeastLatency {
    /// A picker whose estimates give way over `decay` nanoseconds, a backend without a sample
    /// costing `seed`.
    pub fn new(decay: u64, seed: f64) -> Self {
        Self {
            decay,
            per_decay: 1.0 / decay.max(1) as f64,
            seed,
        }
    }

    /// Nanoseconds over which an old estimate gives way.
    pub fn decay(&self) -> u64 {
        self.decay
    }

    /// The cheaper of two random selectable candidates at `now` (all of them in a small pool).
    pub fn pick<C: Candidate>(
        &self,
        candidates: &[C],
        selectable: impl Fn(&C) -> bool,
        now: u64,
    ) -> Option<usize> {
        let n = candidates.len();
        if n >= SCAN_BELOW {
            // Both indices from one random draw, each half scaled to its range; the second
            // is offset by 1..n so it never equals the first.
            let draw = fastrand::u64(..);
            let scaled = |bits: u64, range: usize| ((bits * range as u64) >> 32) as usize;
            let a = scaled(draw & 0xffff_ffff, n);
            // At most 2n - 2: one subtraction wraps it, where `%` would divide.
            let b = a + 1 + scaled(draw >> 32, n - 1);
            let b = if b >= n { b - n } else { b };
            match (selectable(&candidates[a]), selectable(&candidates[b])) {
                (true, true) => return Some(self.cheaper(candidates, a, b, now)),
                (true, false) => return Some(a),
                (false, true) => return Some(b),
                (false, false) => {}
            }
        }
        (0..n)
            .filter(|&i| selectable(&candidates[i]))
            .reduce(|best, i| self.cheaper(candidates, best, i, now))
    }

    fn cheaper<C: Candidate>(&self, candidates: &[C], a: usize, b: usize, now: u64) -> usize {
        let (penalised_a, load_a, weight_a) = self.cost(&candidates[a], now);
        let (penalised_b, load_b, weight_b) = self.cost(&candidates[b], now);
        // load / weight compared without dividing.
        let b_wins = match (penalised_a, penalised_b) {
            (false, true) => false,
            (true, false) => true,
            _ => load_b * weight_a < load_a * weight_b,
        };
        if b_wins { b } else { a }
    }

    /// (penalised, latency × (in flight + 1), weight): a penalised candidate loses to any
    /// other, and otherwise the lower latency × load per unit of weight wins.
    fn cost<C: Candidate>(&self, candidate: &C, now: u64) -> (bool, f64, f64) {
        let latency = candidate.latency();
        let estimate = latency
            .estimate_per(now, self.per_decay)
            .unwrap_or(self.seed)
            .max(1.0);
        let load = f64::from(candidate.in_flight()) + 1.0;
        (
            latency.penalised(now),
            estimate * load,
            f64::from(candidate.weight().max(1)),
        )
    }
}

/// The median of the estimates among `candidates` that have one at `now` (nanoseconds), or 1
/// ms when none has: what a new backend is taken to cost.
pub fn median_estimate<C: Candidate>(candidates: &[C], now: u64, decay: u64) -> f64 {
    let mut estimates: Vec<f64> = candidates
        .iter()
        .filter_map(|c| c.latency().estimate(now, decay))
        .collect();
    if estimates.is_empty() {
        return 1_000_000.0;
    }
    estimates.sort_by(f64::total_cmp);
    estimates[estimates.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{fakes, open};

    const MS: u64 = 1_000_000;
    const DECAY: u64 = 10_000 * MS;

    #[test]
    fn a_higher_sample_replaces_the_estimate_a_lower_one_decays_in() {
        assert_eq!(
            peak_ewma(5.0 * MS as f64, 0, 50.0 * MS as f64, DECAY),
            50.0 * MS as f64
        );
        // A lower sample right after the last barely moves it; one a decay later weighs 63 %.
        let soon = peak_ewma(50.0, 1, 5.0, DECAY);
        assert!(soon > 49.9, "{soon}");
        let later = peak_ewma(50.0, DECAY, 5.0, DECAY);
        assert!((later - (50.0 * (-1.0f64).exp() + 5.0 * (1.0 - (-1.0f64).exp()))).abs() < 1e-9);
    }

    #[test]
    fn an_idle_estimate_decays_towards_zero() {
        let latency = Latency::default();
        assert_eq!(latency.estimate(0, DECAY), None);
        latency.observe(50 * MS, 1_000 * MS, DECAY);
        assert_eq!(latency.estimate(1_000 * MS, DECAY), Some(50.0 * MS as f64));
        let idle = latency.estimate(1_000 * MS + 3 * DECAY, DECAY).unwrap();
        assert!(idle < 2.5 * MS as f64, "after three decays: {idle}");
    }

    #[test]
    fn two_choices_go_to_the_faster_and_spare_a_slow_backend() {
        let c = fakes(&[1, 1, 1, 1]);
        let now = 1_000 * MS;
        for (i, fake) in c.iter().enumerate() {
            let rtt = if i == 2 { 50 * MS } else { 5 * MS };
            fake.latency.observe(rtt, now, DECAY);
        }
        let picker = LeastLatency::new(DECAY, 5.0 * MS as f64);
        let slow = (0..1_000)
            .filter(|_| picker.pick(&c, open, now) == Some(2))
            .count();
        assert_eq!(slow, 0, "the slow backend never wins a pair");
        // Loaded enough, the fast ones cost more than the idle slow one.
        for (i, fake) in c.iter().enumerate() {
            fake.in_flight.set(if i == 2 { 0 } else { 20 });
        }
        assert!((0..200).any(|_| picker.pick(&c, open, now) == Some(2)));
    }

    #[test]
    fn a_backend_without_a_sample_costs_the_median_and_a_penalised_one_loses() {
        let c = fakes(&[1, 1]);
        let now = 1_000 * MS;
        c[0].latency.observe(20 * MS, now, DECAY);
        let picker = LeastLatency::new(DECAY, median_estimate(&c, now, DECAY));
        assert_eq!(picker.seed, 20.0 * MS as f64);
        c[1].latency.observe(10 * MS, now, DECAY);
        assert_eq!(picker.pick(&c, open, now), Some(1));
        c[1].latency.penalise(now, 2_000 * MS);
        assert_eq!(picker.pick(&c, open, now), Some(0));
        assert_eq!(
            picker.pick(&c, open, now + 2_001 * MS),
            Some(1),
            "penalty over"
        );
        c[1].latency.penalise(now, 3_600_000 * MS);
        assert!(c[1].latency.penalised(now + PENALTY_CAP_NANOS - 1));
        assert!(!c[1].latency.penalised(now + PENALTY_CAP_NANOS), "capped");
    }
}

//! Slow start of one backend as pure timing: a ramp starts when a backend is added or returns
//! to service, its weight is recomputed in steps, and it ends once the window has passed. No IO,
//! no clock: the caller passes `now`.

use crate::balance::slow_start::{self, SCALE};
use std::time::Duration;
use tokio::time::Instant;

/// One backend's slow-start ramp, if one is running.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Ramp {
    started: Option<Instant>,
}

impl Ramp {
    /// Starts (or restarts) a ramp at `now`, when the pool has a slow-start `window`.
    pub fn start(&mut self, now: Instant, window: Option<Duration>) {
        if window.is_some() {
            self.started = Some(now);
        }
    }

    /// Whether a ramp is running.
    pub fn is_running(&self) -> bool {
        self.started.is_some()
    }

    /// The balancer weight of a backend of weight `base` at `now` (in `SCALE` units).
    pub fn weight(&self, base: u32, now: Instant, window: Option<Duration>) -> u32 {
        match (self.started, window) {
            (Some(started), Some(window)) => {
                slow_start::ramped_weight(base, now.duration_since(started), window)
            }
            _ => base * SCALE,
        }
    }

    /// Ends the ramp once `window` has passed (or the pool has no slow start any more).
    /// Returns whether it ended.
    pub fn finish_if_done(&mut self, now: Instant, window: Option<Duration>) -> bool {
        let done = match (self.started, window) {
            (Some(started), Some(window)) => now.duration_since(started) >= window,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if done {
            self.started = None;
        }
        done
    }

    /// When the weight next changes: the next step of a running ramp.
    pub fn next_step(&self, now: Instant, window: Option<Duration>) -> Option<Instant> {
        let (started, window) = (self.started?, window?);
        let step = step(window);
        let steps_done = now.duration_since(started).as_nanos() / step.as_nanos();
        Some(started + step * u32::try_from(steps_done + 1).unwrap_or(u32::MAX))
    }
}

/// How often a ramping weight is recomputed: often enough for smooth steps, rarely enough to
/// keep snapshot rebuilds cheap.
fn step(window: Duration) -> Duration {
    (window / SCALE).max(Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Option<Duration> = Some(Duration::from_secs(16));

    #[test]
    fn a_ramp_climbs_in_steps_to_full_weight_and_ends_after_its_window() {
        let now = Instant::now();
        let mut ramp = Ramp::default();
        assert_eq!(ramp.weight(2, now, WINDOW), 2 * SCALE, "no ramp: full");
        ramp.start(now, WINDOW);
        assert!(ramp.weight(2, now, WINDOW) < 2 * SCALE / 4);
        let half = now + Duration::from_secs(8);
        assert_eq!(
            ramp.weight(2, half, WINDOW),
            18,
            "halfway: 10% + 45% of 2 × SCALE"
        );
        assert_eq!(
            ramp.next_step(half, WINDOW),
            Some(now + Duration::from_secs(9)),
            "one step is a sixteenth of the window"
        );
        assert!(!ramp.finish_if_done(half, WINDOW));
        let end = now + Duration::from_secs(16);
        assert!(ramp.finish_if_done(end, WINDOW));
        assert!(!ramp.is_running());
        assert_eq!(ramp.next_step(end, WINDOW), None);
    }

    #[test]
    fn a_pool_without_slow_start_never_ramps() {
        let now = Instant::now();
        let mut ramp = Ramp::default();
        ramp.start(now, None);
        assert!(!ramp.is_running());
        assert_eq!(ramp.weight(3, now, None), 3 * SCALE);
    }

    #[test]
    fn short_windows_step_no_faster_than_every_50ms() {
        let now = Instant::now();
        let mut ramp = Ramp::default();
        let window = Some(Duration::from_millis(160));
        ramp.start(now, window);
        assert_eq!(
            ramp.next_step(now, window),
            Some(now + Duration::from_millis(50))
        );
    }
}

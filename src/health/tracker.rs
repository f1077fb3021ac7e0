//! The rise/fall decision: pure, no IO, no clock. It sees pass/fail results one at a time and
//! says when the backend changes state.

use crate::config::HealthCheckConfig;

/// A change of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Back in service.
    Healthy,
    /// Out of service.
    Unhealthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Healthy by assumption: the first failure takes it down (HAProxy's `init-state up`).
    Assumed,
    /// Not yet proven: the first pass brings it up.
    Pending,
    /// Healthy, with failures seen in a row.
    Up { failures: u32 },
    /// Unhealthy, with passes seen in a row.
    Down { passes: u32 },
}

/// Rise/fall state for one backend.
#[derive(Debug, Clone)]
pub struct Tracker {
    state: State,
    rise: u32,
    fall: u32,
    last: Option<bool>,
    streak: u32,
}

impl Tracker {
    /// A tracker for a backend that is healthy or not right now (for a new backend, that is
    /// its configured initial state).
    pub fn new(check: &HealthCheckConfig, healthy: bool) -> Self {
        Self {
            state: if healthy {
                State::Assumed
            } else {
                State::Pending
            },
            rise: check.healthy_threshold.get(),
            fall: check.unhealthy_threshold.get(),
            last: None,
            streak: 0,
        }
    }

    /// A tracker continuing a backend's history under new settings: a healthy one goes down
    /// after `unhealthy_threshold` failures in a row, an unhealthy one comes back after
    /// `healthy_threshold` passes in a row (no initial-state shortcut either way).
    pub fn resume(check: &HealthCheckConfig, healthy: bool) -> Self {
        Self {
            state: if healthy {
                State::Up { failures: 0 }
            } else {
                State::Down { passes: 0 }
            },
            ..Self::new(check, healthy)
        }
    }

    /// Whether the backend counts as healthy now.
    pub fn is_healthy(&self) -> bool {
        matches!(self.state, State::Assumed | State::Up { .. })
    }

    /// Consecutive results equal to the last one.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Takes one probe result; returns the new verdict when the state flips.
    pub fn observe(&mut self, passed: bool) -> Option<Verdict> {
        let was_healthy = self.is_healthy();
        self.streak = if self.last == Some(passed) {
            self.streak + 1
        } else {
            1
        };
        self.last = Some(passed);
        self.state = match (self.state, passed) {
            (State::Assumed, true) => State::Up { failures: 0 },
            (State::Assumed, false) => State::Down { passes: 0 },
            (State::Pending, true) => State::Up { failures: 0 },
            (State::Pending, false) => State::Pending,
            (State::Up { .. }, true) => State::Up { failures: 0 },
            (State::Up { failures }, false) if failures + 1 >= self.fall => {
                State::Down { passes: 0 }
            }
            (State::Up { failures }, false) => State::Up {
                failures: failures + 1,
            },
            (State::Down { passes }, true) if passes + 1 >= self.rise => State::Up { failures: 0 },
            (State::Down { passes }, true) => State::Down { passes: passes + 1 },
            (State::Down { .. }, false) => State::Down { passes: 0 },
        };
        match (was_healthy, self.is_healthy()) {
            (true, false) => Some(Verdict::Unhealthy),
            (false, true) => Some(Verdict::Healthy),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InitialState, Probe};
    use std::num::NonZeroU32;
    use std::time::Duration;

    fn check(rise: u32, fall: u32, initial: InitialState) -> HealthCheckConfig {
        HealthCheckConfig {
            probe: Probe::Tcp,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_threshold: NonZeroU32::new(rise).unwrap(),
            unhealthy_threshold: NonZeroU32::new(fall).unwrap(),
            initial_state: initial,
        }
    }

    fn tracker(rise: u32, fall: u32, initial: InitialState) -> Tracker {
        Tracker::new(
            &check(rise, fall, initial),
            initial == InitialState::Healthy,
        )
    }

    fn run(t: &mut Tracker, results: &str) -> Vec<Option<Verdict>> {
        results.chars().map(|c| t.observe(c == '+')).collect()
    }

    #[test]
    fn healthy_backend_falls_after_the_unhealthy_threshold_of_failures_in_a_row() {
        let mut t = tracker(2, 3, InitialState::Healthy);
        let v = run(&mut t, "+--+---");
        assert_eq!(v[..6], [None; 6]);
        assert_eq!(v[6], Some(Verdict::Unhealthy));
    }

    #[test]
    fn unhealthy_backend_rises_after_the_healthy_threshold_of_passes_in_a_row() {
        let mut t = tracker(2, 3, InitialState::Healthy);
        run(&mut t, "+---");
        assert!(!t.is_healthy());
        let v = run(&mut t, "+-++");
        assert_eq!(v, [None, None, None, Some(Verdict::Healthy)]);
        assert_eq!(t.streak(), 2);
    }

    #[test]
    fn assumed_healthy_backend_goes_down_on_its_first_failure() {
        let mut t = tracker(2, 3, InitialState::Healthy);
        assert!(t.is_healthy());
        assert_eq!(t.observe(false), Some(Verdict::Unhealthy));
    }

    #[test]
    fn initially_unhealthy_backend_waits_for_its_first_pass() {
        let mut t = tracker(2, 3, InitialState::Unhealthy);
        assert!(!t.is_healthy());
        assert_eq!(run(&mut t, "--+"), [None, None, Some(Verdict::Healthy)]);
    }

    #[test]
    fn a_resumed_tracker_keeps_both_thresholds() {
        let checks = check(2, 3, InitialState::Healthy);
        let mut up = Tracker::resume(&checks, true);
        assert_eq!((up.rise, up.fall), (2, 3));
        assert_eq!(
            run(&mut up, "--"),
            [None, None],
            "one failure is not enough"
        );
        assert_eq!(up.observe(false), Some(Verdict::Unhealthy));
        let mut down = Tracker::resume(&checks, false);
        assert_eq!(down.observe(true), None, "one pass is not enough");
        assert_eq!(down.observe(true), Some(Verdict::Healthy));
    }

    #[test]
    fn thresholds_of_one_flip_on_every_change() {
        let mut t = tracker(1, 1, InitialState::Healthy);
        assert_eq!(
            run(&mut t, "+-+-"),
            [
                None,
                Some(Verdict::Unhealthy),
                Some(Verdict::Healthy),
                Some(Verdict::Unhealthy)
            ]
        );
    }
}

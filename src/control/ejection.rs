//! Passive ejection of one backend as a pure state machine: a report of consecutive failures
//! ejects it for a time that doubles with each ejection up to a ceiling, unless the pool's
//! `max_ejection_percent` is reached; the time running out, or a passing probe, ends it. No IO,
//! no clock: the caller passes `now`.

use crate::config::OutlierConfig;
use std::time::Duration;
use tokio::time::Instant;

/// One backend's ejection history.
#[derive(Debug, Default, Clone)]
pub(super) struct Ejection {
    /// While ejected: when the ejection ends.
    until: Option<Instant>,
    /// When the last ejection ended; the doubling restarts after a quiet `max_ejection_time`.
    last_end: Option<Instant>,
    /// Ejections so far, as counted for the doubling.
    count: u32,
    /// Ejections so far, for operators (never reset).
    total: u32,
    /// Whether "max_ejection_percent reached" was said since the last ejection.
    capped: bool,
}

/// What a report of consecutive failures leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Ejected for `duration`; the `count`th ejection.
    Eject {
        /// Ejections so far, this one included.
        count: u32,
        /// How long this one lasts.
        duration: Duration,
    },
    /// Not ejected: the pool has as many ejected backends as it may. `first` is true only the
    /// first time since the last ejection, so it is said once.
    Capped {
        /// Whether to say so.
        first: bool,
    },
    /// Already ejected: nothing changes.
    AlreadyEjected,
}

impl Ejection {
    /// Decides on a report, with `ejected` of the pool's `pool_size` backends ejected now.
    pub fn consider(
        &mut self,
        now: Instant,
        outlier: &OutlierConfig,
        ejected: usize,
        pool_size: usize,
    ) -> Decision {
        if self.until.is_some() {
            return Decision::AlreadyEjected;
        }
        let allowed = pool_size * usize::from(outlier.max_ejection_percent) / 100;
        if ejected + 1 > allowed {
            let first = !self.capped;
            self.capped = true;
            return Decision::Capped { first };
        }
        self.capped = false;
        if self
            .last_end
            .is_some_and(|end| now.duration_since(end) >= outlier.max_ejection_time)
        {
            self.count = 0; // quiet for long enough: start the doubling again
        }
        self.count += 1;
        self.total += 1;
        let duration = outlier
            .base_ejection_time
            .saturating_mul(1 << (self.count - 1).min(16))
            .min(outlier.max_ejection_time);
        self.until = Some(now + duration); // durations from the config are at most a year
        Decision::Eject {
            count: self.total,
            duration,
        }
    }

    /// Ends an ejection early or on time; returns whether there was one.
    pub fn end(&mut self, now: Instant) -> bool {
        let ended = self.until.take().is_some();
        if ended {
            self.last_end = Some(now);
        }
        ended
    }

    /// When the current ejection ends, if ejected.
    pub fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Whether the current ejection is over at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| until <= now)
    }

    /// Ejections so far.
    pub fn total(&self) -> u32 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outlier() -> OutlierConfig {
        OutlierConfig {
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
            ..OutlierConfig::default()
        }
    }

    fn eject(e: &mut Ejection, now: Instant) -> Duration {
        match e.consider(now, &outlier(), 0, 4) {
            Decision::Eject { duration, .. } => duration,
            other => panic!("not ejected: {other:?}"),
        }
    }

    #[test]
    fn each_ejection_lasts_twice_the_last_up_to_the_ceiling() {
        let mut e = Ejection::default();
        let mut now = Instant::now();
        let mut lengths = Vec::new();
        for _ in 0..6 {
            let length = eject(&mut e, now);
            lengths.push(length.as_secs());
            now += length;
            assert!(e.is_due(now));
            assert!(e.end(now));
            now += Duration::from_secs(1); // fails again soon after
        }
        assert_eq!(lengths, [30, 60, 120, 240, 300, 300]);
        assert_eq!(e.total(), 6);
    }

    #[test]
    fn a_quiet_spell_as_long_as_the_ceiling_restarts_the_doubling() {
        let mut e = Ejection::default();
        let now = Instant::now();
        assert_eq!(eject(&mut e, now).as_secs(), 30);
        e.end(now + Duration::from_secs(30));
        let later = now + Duration::from_secs(30 + 300);
        assert_eq!(eject(&mut e, later).as_secs(), 30);
        assert_eq!(e.total(), 2, "operators still see both");
    }

    #[test]
    fn the_cap_refuses_past_max_ejection_percent_and_says_so_once() {
        let mut e = Ejection::default();
        let now = Instant::now();
        // 2 of 4 may be ejected at 50 %: with 2 already out, a third is refused.
        assert_eq!(
            e.consider(now, &outlier(), 2, 4),
            Decision::Capped { first: true }
        );
        assert_eq!(
            e.consider(now, &outlier(), 2, 4),
            Decision::Capped { first: false }
        );
        assert!(matches!(
            e.consider(now, &outlier(), 1, 4),
            Decision::Eject { count: 1, .. }
        ));
        assert_eq!(e.consider(now, &outlier(), 1, 4), Decision::AlreadyEjected);
    }

    #[test]
    fn an_ejection_ends_early_once_and_not_before_its_time_on_its_own() {
        let mut e = Ejection::default();
        let now = Instant::now();
        eject(&mut e, now);
        assert!(!e.is_due(now + Duration::from_secs(29)));
        assert_eq!(e.until(), Some(now + Duration::from_secs(30)));
        assert!(
            e.end(now + Duration::from_secs(5)),
            "a passing probe ends it"
        );
        assert!(!e.end(now + Duration::from_secs(6)), "only once");
        assert_eq!(e.until(), None);
    }
}

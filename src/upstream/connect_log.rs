//! How often one backend's connect failures are logged: the first, then at most one line every
//! `INTERVAL`, which says how many were left out. A failing backend is explained without a flood.

use super::clock::millis_now;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// How often connect failures of one backend are logged at most.
const INTERVAL: Duration = Duration::from_secs(10);

/// One backend's log throttle; touched on the failure path only.
#[derive(Debug, Default)]
pub struct ConnectFailureLog {
    /// When (`millis_now` units, 0: never) a failure was last logged.
    logged_at: AtomicU64,
    /// Failures not logged since.
    unlogged: AtomicU32,
}

impl ConnectFailureLog {
    /// Whether a connect failure, just seen, is to be logged; `Some(n)` counts those left out
    /// since the last line.
    pub fn to_log(&self) -> Option<u32> {
        self.to_log_at(millis_now())
    }

    fn to_log_at(&self, now: u64) -> Option<u32> {
        // Relaxed: a log throttle; two racing failures may both log, or both not, harmlessly.
        let last = self.logged_at.load(Ordering::Relaxed);
        let interval = INTERVAL.as_millis() as u64;
        if last != 0 && now < last.saturating_add(interval) {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.logged_at.store(now.max(1), Ordering::Relaxed);
        Some(self.unlogged.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_logged_first_then_counted_until_the_interval_passes() {
        let log = ConnectFailureLog::default();
        let start = 5_000;
        assert_eq!(log.to_log_at(start), Some(0));
        assert_eq!(log.to_log_at(start + 1), None);
        assert_eq!(log.to_log_at(start + 9_999), None);
        // The next line, once the interval has passed, carries the two left out.
        assert_eq!(log.to_log_at(start + 10_000), Some(2));
        assert_eq!(log.to_log_at(start + 10_001), None);
    }
}

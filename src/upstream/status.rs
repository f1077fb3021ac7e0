//! One vocabulary for a backend's state, as the admin API, the event stream, logs and metrics
//! all say it: the state itself is derived from the backend's flags (see
//! `BackendState::state`), never stored; what is stored is why each flag was set.

use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest drain deadline accepted, from the admin API or from the fleet: 30 days. A drain
/// meant to last longer is a drain without a deadline.
pub const MAX_DRAIN_DEADLINE: Duration = Duration::from_secs(30 * 86_400);

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LAST_WRITABLE_SECOND: u64 = 253_402_300_799;

/// A backend's state as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Receives its full share of traffic.
    Healthy,
    /// Back in service, its weight still ramping up.
    SlowStart,
    /// Failed active probes.
    Unhealthy,
    /// Ejected by passive outlier detection until its ejection ends.
    Ejected,
    /// Drained by an operator, requests still in flight.
    Draining,
    /// Drained by an operator, none in flight (or its drain deadline has passed).
    Drained,
}

impl State {
    /// Every state, in the order metrics list them.
    pub const ALL: [Self; 6] = [
        Self::Healthy,
        Self::SlowStart,
        Self::Unhealthy,
        Self::Ejected,
        Self::Draining,
        Self::Drained,
    ];

    /// The position of this state in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The state's name everywhere: API, events, logs, metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::SlowStart => "slow_start",
            Self::Unhealthy => "unhealthy",
            Self::Ejected => "ejected",
            Self::Draining => "draining",
            Self::Drained => "drained",
        }
    }

    /// Whether the backend is out of service because something failed (logged as a warning).
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Unhealthy | Self::Ejected)
    }
}

/// Why a backend's flags are set, and since when its state holds.
#[derive(Debug, Clone)]
pub struct BackendStatus {
    /// The probe detail that took it out, while unhealthy.
    pub unhealthy: Option<String>,
    /// The failures that ejected it, and for how long, while ejected.
    pub ejected: Option<String>,
    /// The failures that would have ejected it, while the ejection cap holds it in service.
    pub held_in: Option<String>,
    /// The operator's drain, while draining.
    pub drain: Option<Drain>,
    /// When its current state began.
    pub since: SystemTime,
}

/// A drain: asked by an operator, or a discovered backend leaving.
#[derive(Debug, Clone)]
pub struct Drain {
    /// When it was asked for.
    pub since: SystemTime,
    /// When remaining connections are closed, if a deadline was given.
    pub deadline: Option<SystemTime>,
    /// Who asked for it, or why.
    pub reason: String,
}

impl BackendStatus {
    /// The status of a new backend; `unhealthy` when it waits for its first passing probe.
    pub fn initial(unhealthy: bool) -> Self {
        Self {
            unhealthy: unhealthy.then(|| "waiting for a first passing probe".to_owned()),
            ejected: None,
            held_in: None,
            drain: None,
            since: SystemTime::now(),
        }
    }
}

/// `time` as RFC 3339 with seconds precision, as the admin API, events and logs show times.
/// A time RFC 3339 cannot write (before 1970 or after 9999) is written as the nearest it can.
pub fn timestamp(time: SystemTime) -> String {
    let last = UNIX_EPOCH + Duration::from_secs(LAST_WRITABLE_SECOND);
    humantime::format_rfc3339_seconds(time.clamp(UNIX_EPOCH, last)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_outside_what_rfc3339_writes_are_clamped() {
        let far = UNIX_EPOCH + Duration::from_secs(LAST_WRITABLE_SECOND * 4);
        assert_eq!(timestamp(far), "9999-12-31T23:59:59Z");
        let early = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(timestamp(early), "1970-01-01T00:00:00Z");
    }
}

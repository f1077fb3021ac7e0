//! What the control plane last decided about a backend, and why: for logs and the admin API.

use std::time::{Duration, SystemTime};

/// A backend's condition as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Receives traffic.
    Healthy,
    /// Failed active probes.
    Unhealthy,
    /// Ejected by passive outlier detection until its ejection ends.
    Ejected,
}

impl Condition {
    /// Lower-case name used in logs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Ejected => "ejected",
        }
    }
}

/// The last decision, with its reason and time.
#[derive(Debug, Clone)]
pub struct BackendStatus {
    /// Current condition.
    pub condition: Condition,
    /// Why it is in that condition (probe detail, error counts).
    pub reason: String,
    /// When it entered that condition.
    pub since: SystemTime,
    /// Passive ejections so far; each one lasts twice as long as the last, up to the maximum.
    pub ejections: u32,
    /// Length of the current or last ejection.
    pub last_ejection: Option<Duration>,
}

impl BackendStatus {
    /// The status of a backend that has not been judged yet.
    pub fn initial(condition: Condition) -> Self {
        Self {
            condition,
            reason: "initial state".to_owned(),
            since: SystemTime::now(),
            ejections: 0,
            last_ejection: None,
        }
    }
}

/// `time` as RFC 3339 with seconds precision, as the admin API, events and logs show times.
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

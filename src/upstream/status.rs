//! One vocabulary for a backend's state, as the admin API, the event stream, logs and metrics
//! all say it: the state itself is derived from the backend's flags (see
//! `BackendState::state`), never stored; what is stored is why each flag was set.

use std::time::{Duration, SystemTime};

/// The longest drain deadline accepted, from the admin API or from the fleet: 30 days. A drain
/// meant to last longer is a drain without a deadline.
pub const MAX_DRAIN_DEADLINE: Duration = Duration::from_secs(30 * 86_400);

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

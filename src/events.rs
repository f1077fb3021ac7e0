//! The event vocabulary: what a backend's state is called, what the control plane announces,
//! and the numbered log that the event stream, webhooks and the fleet read. Words only: no
//! part of the proxy is imported here.
//!
//! Longer than most files on purpose: every event type with a documented field per line, read
//! as the event stream's reference, beside the log that numbers them.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

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

/// What a reload changed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Config generation now in force (1 for the config the proxy started with).
    pub generation: u64,
    /// Pools that did not exist before.
    pub pools_added: Vec<String>,
    /// Pools that are gone.
    pub pools_removed: Vec<String>,
    /// `pool/backend` pairs added.
    pub backends_added: Vec<String>,
    /// `pool/backend` pairs removed; their in-flight requests finish.
    pub backends_removed: Vec<String>,
    /// `pool/backend` pairs whose configured weight changed.
    pub backends_reweighted: Vec<String>,
    /// Listeners bound by this reload.
    pub listeners_added: Vec<String>,
    /// Listeners that stopped accepting and are draining.
    pub listeners_removed: Vec<String>,
    /// Other settings that changed and now apply: `timeouts`, `limits`, `routes`,
    /// `listeners.NAME`, `pools.NAME.retries`, `pools.NAME.health_check`, ...
    pub settings_changed: Vec<String>,
    /// Settings that changed but cannot apply until a restart, and why.
    pub not_applied: Vec<NotApplied>,
}

/// A changed setting a reload cannot apply.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotApplied {
    /// The setting (`admin`, `reload`, `access_log`).
    pub setting: String,
    /// Why it does not apply.
    pub reason: String,
}

/// An event for logs and the admin API's event stream.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A backend changed state.
    Backend {
        /// Pool name.
        pool: String,
        /// Backend name.
        backend: String,
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: String,
        /// When (RFC 3339).
        time: String,
    },
    /// An operator changed a backend's weight.
    Weight {
        /// Pool name.
        pool: String,
        /// Backend name.
        backend: String,
        /// The override now in force, or `None` when the file's weight is back.
        weight: Option<u32>,
        /// When (RFC 3339).
        time: String,
    },
    /// A pool entered or left panic mode (too few usable backends: health is ignored).
    Panic {
        /// Pool name.
        pool: String,
        /// Whether it is in panic mode now.
        active: bool,
        /// Backends the balancer chooses among now.
        eligible: usize,
        /// When (RFC 3339).
        time: String,
    },
    /// A discovery source added a backend to a pool, or one that left it was removed.
    Membership {
        /// Pool name.
        pool: String,
        /// Backend name (its address).
        backend: String,
        /// `added` or `removed`.
        change: Membership,
        /// When (RFC 3339).
        time: String,
    },
    /// A certificate was obtained by ACME for names that had none from it.
    CertificateObtained {
        /// The certificate's names.
        names: Vec<String>,
        /// When it expires (RFC 3339).
        not_after: String,
        /// When (RFC 3339).
        time: String,
    },
    /// An ACME certificate was replaced by a newer one.
    CertificateRenewed {
        /// The certificate's names.
        names: Vec<String>,
        /// When the new one expires (RFC 3339).
        not_after: String,
        /// When (RFC 3339).
        time: String,
    },
    /// Obtaining or renewing an ACME certificate failed; the one served (if any) stays.
    CertificateFailed {
        /// The certificate's names.
        names: Vec<String>,
        /// What went wrong: the CA's problem document when it sent one.
        error: String,
        /// When the next attempt is made (RFC 3339).
        retry_at: String,
        /// When (RFC 3339).
        time: String,
    },
    /// A reload was attempted.
    Reload {
        /// `applied` or `rejected`.
        result: ReloadResult,
        /// What changed, on success.
        changes: Option<ReloadSummary>,
        /// Every problem (`file:line:col: message`), on failure.
        problems: Vec<String>,
        /// When (RFC 3339).
        time: String,
    },
}

/// How a pool's membership changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Membership {
    /// A discovered backend joined.
    Added,
    /// A discovered backend that left has finished draining and is gone.
    Removed,
}

impl Event {
    /// The event's `type`, as its JSON says it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Backend { .. } => "backend",
            Self::Weight { .. } => "weight",
            Self::Panic { .. } => "panic",
            Self::Membership { .. } => "membership",
            Self::Reload { .. } => "reload",
            Self::CertificateObtained { .. } => "certificate_obtained",
            Self::CertificateRenewed { .. } => "certificate_renewed",
            Self::CertificateFailed { .. } => "certificate_failed",
        }
    }
}

/// How a reload ended, named alike in the API, the events and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// The new config is in force.
    Applied,
    /// The old config is still in force.
    Rejected,
}

impl ReloadResult {
    /// The result's name everywhere.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Rejected => "rejected",
        }
    }
}

/// Events kept for subscribers that reconnect with `Last-Event-ID`.
const HISTORY: usize = 256;

/// An event with its number on the stream.
#[derive(Debug, Clone, Serialize)]
pub struct Numbered {
    /// Increases by one per event, from 1.
    pub id: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// The event stream: numbers events, keeps the latest, and broadcasts them. Written by the
/// control task and the reloader, read by event-stream subscribers; never on the request path.
#[derive(Debug)]
pub struct EventLog {
    /// The last id given and the latest events, under one lock so that ids, history and
    /// broadcast order agree, and a subscriber can join without a gap or a repeat.
    inner: Mutex<(u64, VecDeque<Numbered>)>,
    sender: broadcast::Sender<Numbered>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            inner: Mutex::new((0, VecDeque::with_capacity(HISTORY))),
            sender: broadcast::channel(1024).0,
        }
    }
}

impl EventLog {
    /// Numbers `event`, keeps it, and sends it to current subscribers.
    pub fn publish(&self, event: Event) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.0 += 1;
        let numbered = Numbered { id: inner.0, event };
        if inner.1.len() == HISTORY {
            inner.1.pop_front();
        }
        inner.1.push_back(numbered.clone());
        let _no_subscribers = self.sender.send(numbered);
    }

    /// Subscribes; with `after` (a `Last-Event-ID`), first the kept events numbered after it,
    /// and how many newer ones are no longer kept.
    pub fn subscribe(
        &self,
        after: Option<u64>,
    ) -> (Vec<Numbered>, u64, broadcast::Receiver<Numbered>) {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let receiver = self.sender.subscribe();
        let Some(after) = after else {
            return (Vec::new(), 0, receiver);
        };
        let replay: Vec<Numbered> = inner.1.iter().filter(|e| e.id > after).cloned().collect();
        // Ids between the one seen and the oldest still kept (or the next to come) are gone.
        let oldest_kept = replay.first().map_or(inner.0 + 1, |e| e.id);
        let lost = oldest_kept.saturating_sub(after + 1);
        (replay, lost, receiver)
    }
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LAST_WRITABLE_SECOND: u64 = 253_402_300_799;

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

    fn weight(n: u32) -> Event {
        Event::Weight {
            pool: "p".into(),
            backend: "b".into(),
            weight: Some(n),
            time: String::new(),
        }
    }

    fn ids(events: &[Numbered]) -> Vec<u64> {
        events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn a_subscriber_resuming_after_an_id_gets_what_followed_then_the_live_stream() {
        let log = EventLog::default();
        for n in 1..=3 {
            log.publish(weight(n));
        }
        let (replay, lost, mut live) = log.subscribe(Some(1));
        assert_eq!((ids(&replay), lost), (vec![2, 3], 0));
        log.publish(weight(4));
        assert_eq!(live.try_recv().unwrap().id, 4);
        let (replay, _, _) = log.subscribe(None);
        assert!(replay.is_empty(), "a new subscriber starts from now");
    }

    #[test]
    fn events_older_than_the_history_are_counted_as_lost() {
        let log = EventLog::default();
        for n in 0..HISTORY as u32 + 10 {
            log.publish(weight(n));
        }
        let (replay, lost, _) = log.subscribe(Some(5));
        assert_eq!(replay.len(), HISTORY);
        assert_eq!(replay[0].id, 11);
        assert_eq!(lost, 5, "ids 6 to 10 are gone");
        let (replay, lost, _) = log.subscribe(Some(HISTORY as u64 + 10));
        assert_eq!((replay.len(), lost), (0, 0), "up to date");
    }
}

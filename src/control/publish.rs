//! What the single writer tells the rest of the proxy: it stores each new snapshot, and
//! announces each state change once — in the log, on the event stream (numbered, with a short
//! history so a reconnecting subscriber misses nothing) and in the metrics.

use super::views::Event;
use crate::snapshot::{Pool, Snapshot};
use crate::upstream::{BackendState, State, timestamp};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::broadcast;

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

/// Stores snapshots and announces changes.
#[derive(Debug)]
pub(super) struct Publisher {
    snapshot: Arc<ArcSwap<Snapshot>>,
    events: Arc<EventLog>,
}

impl Publisher {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, events: Arc<EventLog>) -> Self {
        Self { snapshot, events }
    }

    /// The snapshot the data plane reads now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in `snapshot`.
    pub fn store(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Publishes an event.
    pub fn emit(&self, event: Event) {
        self.events.publish(event);
    }

    /// Announces a backend's state change: logged (a warning when a failure took it out) and
    /// published. (The caller counts it.)
    pub fn backend_changed(
        &self,
        backend: &BackendState,
        (from, to): (State, State),
        reason: &str,
        time: SystemTime,
    ) {
        let (pool, name) = (&*backend.pool, &*backend.name);
        let (from_name, to_name) = (from.as_str(), to.as_str());
        if to.is_failure() {
            tracing::warn!(pool, backend = name, from = from_name, to = to_name, %reason, "backend state changed");
        } else {
            tracing::info!(pool, backend = name, from = from_name, to = to_name, %reason, "backend state changed");
        }
        self.emit(Event::Backend {
            pool: pool.to_owned(),
            backend: name.to_owned(),
            from,
            to,
            reason: reason.to_owned(),
            time: timestamp(time),
        });
    }

    /// Announces a rebuilt pool entering or leaving panic mode (`was_panic` before), and says
    /// when nothing in it is eligible.
    pub fn pool_rebuilt(&self, pool: &Pool, was_panic: bool) {
        let eligible = pool.eligible_count();
        if pool.panic != was_panic {
            if pool.panic {
                tracing::warn!(pool = %pool.name, eligible, "pool entered panic mode: ignoring health");
            } else {
                tracing::info!(pool = %pool.name, eligible, "pool left panic mode");
            }
            self.emit(Event::Panic {
                pool: pool.name.to_string(),
                active: pool.panic,
                eligible,
                time: timestamp(SystemTime::now()),
            });
        }
        if eligible == 0 {
            tracing::error!(pool = %pool.name, "no backend is eligible: requests get 503");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

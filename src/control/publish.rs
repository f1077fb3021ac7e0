//! What the single writer tells the rest of the proxy: it stores each new snapshot, and
//! announces each state change once — in the log, on the event stream (numbered, with a short
//! history so a reconnecting subscriber misses nothing) and in the metrics.

use crate::events::{Event, EventLog};
use crate::snapshot::{Pool, Snapshot};
use crate::upstream::{BackendState, State, timestamp};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::SystemTime;

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

    /// Announces a rebuilt pool entering or leaving panic mode (`was_panic` before) at `time`,
    /// and says when nothing in it is eligible.
    pub fn pool_rebuilt(&self, pool: &Pool, was_panic: bool, time: SystemTime) {
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
                time: timestamp(time),
            });
        }
        if eligible == 0 {
            tracing::error!(pool = %pool.name, "no backend is eligible: requests get 503");
        }
    }
}

//! What the single writer tells the rest of the proxy: it stores each new snapshot, and
//! announces each state change once, in the log and on the event stream.

use super::views::Event;
use crate::snapshot::{Pool, Snapshot};
use crate::upstream::BackendState;
use crate::upstream::timestamp;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::broadcast;

/// Stores snapshots and emits events.
#[derive(Debug)]
pub(super) struct Publisher {
    snapshot: Arc<ArcSwap<Snapshot>>,
    events: broadcast::Sender<Event>,
}

impl Publisher {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, events: broadcast::Sender<Event>) -> Self {
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

    /// Publishes an event; having no subscriber is normal.
    pub fn emit(&self, event: Event) {
        let _no_subscribers = self.events.send(event);
    }

    /// Logs a backend's state change (as a warning when `failure` took it out of service) and
    /// publishes it.
    pub fn backend_changed(
        &self,
        state: &BackendState,
        (from, to): (&'static str, &'static str),
        reason: &str,
        failure: bool,
        time: SystemTime,
    ) {
        if failure {
            tracing::warn!(pool = %state.pool, backend = %state.name, from, to, %reason, "backend state changed");
        } else {
            tracing::info!(pool = %state.pool, backend = %state.name, from, to, %reason, "backend state changed");
        }
        self.emit(Event::Backend {
            pool: state.pool.to_string(),
            backend: state.name.to_string(),
            from,
            to,
            reason: reason.to_owned(),
            time: timestamp(time),
        });
    }

    /// Says when a rebuilt pool enters or leaves panic mode (`was_panic` before), and when
    /// nothing in it is eligible.
    pub fn pool_rebuilt(&self, pool: &Pool, was_panic: bool) {
        if pool.panic != was_panic {
            if pool.panic {
                tracing::warn!(pool = %pool.name, eligible = pool.eligible_count(), "pool entered panic mode: ignoring health");
            } else {
                tracing::info!(pool = %pool.name, "pool left panic mode");
            }
        }
        if pool.eligible_count() == 0 {
            tracing::error!(pool = %pool.name, "no backend is eligible: requests get 503");
        }
    }
}

//! How the rest of the proxy talks to the control plane: commands with a reply, and the
//! handles it shares (the snapshot, the passive-failure channel, the event stream).

use super::views::{BackendView, PoolView};
use crate::config::Config;
use crate::events::EventLog;
use crate::events::ReloadSummary;
use crate::snapshot::Snapshot;
use crate::upstream::OutlierReport;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::oneshot;

/// Why a command could not find its target.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    /// No such pool.
    #[error("no pool named {0:?}")]
    Pool(String),
    /// No such backend in the pool.
    #[error("pool {0:?} has no backend named {1:?}")]
    Backend(String, String),
}

type Reply<T> = oneshot::Sender<Result<T, LookupError>>;

/// What the admin API and the reloader ask of the control plane.
#[derive(Debug)]
pub enum Command {
    /// Views of every pool, or of one.
    Describe {
        /// `None` for all pools.
        pool: Option<String>,
        /// The answer.
        reply: Reply<Vec<PoolView>>,
    },
    /// Change one backend, or only look at it.
    Backend {
        /// Pool name.
        pool: String,
        /// Backend name.
        backend: String,
        /// What to change.
        change: BackendChange,
        /// The backend afterwards.
        reply: Reply<BackendView>,
    },
    /// Apply a new, validated config (and announce the reload).
    Apply {
        /// The config.
        config: Box<Config>,
        /// What changed.
        reply: oneshot::Sender<ReloadSummary>,
    },
    /// Give the fleet's sticky cookies a new key (the current one stays accepted); answers
    /// whether this replica is in a fleet.
    RotateStickyKey {
        /// The answer.
        reply: oneshot::Sender<bool>,
    },
    /// Announce a reload that was rejected before it reached the control plane.
    Rejected {
        /// Every problem, as reported.
        problems: Vec<String>,
    },
}

/// What an operator changes about one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChange {
    /// Nothing: only its view.
    Nothing,
    /// Stop sending it new requests; after the deadline, if given, close what remains.
    Drain(Option<std::time::Duration>),
    /// Resume sending it new requests.
    Undrain,
    /// Override its weight (`None`: back to the file's).
    Weight(Option<u32>),
}

/// Handles the rest of the proxy needs from the control plane.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    /// The snapshot the data plane reads.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Where the data plane reports passive failures past a threshold.
    pub outliers: UnboundedSender<OutlierReport>,
    /// Commands from the admin API and the reloader.
    pub commands: mpsc::Sender<Command>,
    /// Every state change and reload, numbered, for the event stream.
    pub events: Arc<EventLog>,
}

impl ControlHandle {
    /// Sends `command` built around a reply channel and waits for the answer; `None` if the
    /// control plane has stopped.
    pub async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }
}

//! What the control plane tells the outside: JSON views of pools and backends for the admin
//! API, and the events streamed to subscribers.

use super::registry::{BackendRuntime, PoolRuntime};
use crate::balance::slow_start;
use crate::config::Algorithm;
use crate::health::ProbeRecord;
use crate::upstream::{BackendState, Condition, Exclusion, timestamp};
use serde::Serialize;
use std::sync::Arc;

/// A pool as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PoolView {
    /// The pool's name.
    pub name: String,
    /// `weighted_round_robin` or `least_connections`.
    pub algorithm: &'static str,
    /// Whether the pool is ignoring health because too few backends are usable.
    pub panic: bool,
    /// Backends the balancer currently chooses among.
    pub eligible: usize,
    /// Every backend.
    pub backends: Vec<BackendView>,
}

/// A backend as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BackendView {
    /// Unique within its pool.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// `healthy`, `unhealthy`, `ejected`, `draining` or `drained`.
    pub state: &'static str,
    /// Why it is in that state.
    pub reason: String,
    /// When it entered its health condition (RFC 3339).
    pub since: String,
    /// Configured, overridden and effective weight.
    pub weight: WeightView,
    /// Requests in flight right now.
    pub in_flight: u32,
    /// Passive ejections so far.
    pub ejections: u32,
    /// The most recent active probe, if probes run.
    pub last_probe: Option<ProbeRecord>,
}

/// Which weight is in force and why.
#[derive(Debug, Clone, Serialize)]
pub struct WeightView {
    /// From the config file.
    pub configured: u32,
    /// Set through the admin API; survives reloads that do not change this backend.
    #[serde(rename = "override")]
    pub override_weight: Option<u32>,
    /// `file` or `override`.
    pub in_force: &'static str,
    /// What the balancer uses now, in configured-weight units (lower while slow-starting).
    pub effective: f64,
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
        from: &'static str,
        /// New state.
        to: &'static str,
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
    /// A reload was attempted.
    Reload {
        /// `ok` or `failed`.
        result: &'static str,
        /// What changed, on success.
        changes: Option<ReloadSummary>,
        /// Every problem (`file:line:col: message`), on failure.
        problems: Vec<String>,
        /// When (RFC 3339).
        time: String,
    },
}

/// A backend's state name: drains first, then health.
pub fn state_name(state: &BackendState) -> &'static str {
    if state.is(Exclusion::Draining) {
        if state.in_flight() == 0 {
            "drained"
        } else {
            "draining"
        }
    } else {
        match state.status().condition {
            Condition::Healthy if state.is(Exclusion::Unhealthy) => "unhealthy",
            Condition::Healthy if state.is(Exclusion::Ejected) => "ejected",
            condition => condition.as_str(),
        }
    }
}

impl super::Control {
    /// A pool as the admin API shows it.
    pub(super) fn pool_view(&self, pool: &PoolRuntime) -> PoolView {
        let eligible = self
            .publisher
            .current()
            .pools
            .iter()
            .find(|p| Arc::ptr_eq(&p.name, &pool.name))
            .map_or(0, |p| p.eligible_count());
        PoolView {
            name: pool.config.name.clone(),
            algorithm: match pool.config.algorithm {
                Algorithm::WeightedRoundRobin => "weighted_round_robin",
                Algorithm::LeastConnections => "least_connections",
            },
            panic: pool.panic,
            eligible,
            backends: pool.backends.iter().map(backend_view).collect(),
        }
    }
}

/// A backend as the admin API shows it.
pub(super) fn backend_view(runtime: &BackendRuntime) -> BackendView {
    let state = &runtime.state;
    let status = state.status();
    BackendView {
        name: runtime.config.name.clone(),
        address: runtime.config.address.to_string(),
        state: state_name(state),
        reason: if state.is(Exclusion::Draining) {
            DRAINED.to_owned()
        } else {
            status.reason.clone()
        },
        since: timestamp(status.since),
        weight: WeightView {
            configured: runtime.config.weight.get(),
            override_weight: runtime.weight_override,
            in_force: if runtime.weight_override.is_some() {
                "override"
            } else {
                "file"
            },
            effective: f64::from(state.effective_weight()) / f64::from(slow_start::SCALE),
        },
        in_flight: state.in_flight(),
        ejections: runtime.ejection.total(),
        last_probe: runtime.last_probe.load_full().map(|p| (*p).clone()),
    }
}

/// The reason given for an operator's drain, and for its end.
pub(super) const DRAINED: &str = "drained through the admin API";
pub(super) const UNDRAINED: &str = "undrained through the admin API";

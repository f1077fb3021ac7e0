//! What the control plane tells the outside: JSON views of pools and backends for the admin
//! API, and the events streamed to subscribers.

use super::registry::{BackendRuntime, PoolRuntime};
use crate::balance::slow_start;
use crate::health::ProbeRecord;
use crate::upstream::{BackendState, BackendStatus, Exclusion, Mark, State, timestamp};
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
    /// What operators see: healthy, slow_start, unhealthy, ejected, draining or drained.
    pub state: State,
    /// Every reason that applies now, most important first (empty when healthy).
    pub reasons: Vec<Reason>,
    /// When it entered its state (RFC 3339).
    pub since: String,
    /// Configured, overridden and effective weight.
    pub weight: WeightView,
    /// Requests in flight right now.
    pub in_flight: u32,
    /// Passive ejections so far.
    pub ejections: u32,
    /// The operator's drain, while draining: since when, and its deadline.
    pub drain: Option<DrainView>,
    /// The most recent active probe, if probes run.
    pub last_probe: Option<ProbeRecord>,
}

/// One reason a backend is not plainly healthy.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reason {
    /// The state this reason alone would give.
    pub state: State,
    /// What happened.
    pub detail: String,
}

/// A drain in progress.
#[derive(Debug, Clone, Serialize)]
pub struct DrainView {
    /// When it was asked for (RFC 3339).
    pub since: String,
    /// When remaining connections are closed (RFC 3339), if a deadline was given.
    pub deadline: Option<String>,
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

impl super::Control {
    /// A pool as the admin API shows it.
    pub(super) fn pool_view(&self, pool: &PoolRuntime) -> PoolView {
        let snapshot = self.publisher.current();
        let live = snapshot
            .pools
            .iter()
            .find(|p| Arc::ptr_eq(&p.name, &pool.name));
        PoolView {
            name: pool.config.name.clone(),
            algorithm: pool.config.algorithm.as_str(),
            panic: live.is_some_and(|p| p.panic),
            eligible: live.map_or(0, |p| p.eligible_count()),
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
        state: state.state(),
        reasons: reasons(state, &status),
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
        drain: status
            .drain
            .as_ref()
            .filter(|_| state.is(Exclusion::Draining))
            .map(|drain| DrainView {
                since: timestamp(drain.since),
                deadline: drain.deadline.map(timestamp),
            }),
        last_probe: runtime.last_probe.load_full().map(|p| (*p).clone()),
    }
}

/// The reasons that apply, read from the flags (the one source of the state) and annotated
/// with what the status recorded when each was set.
pub(super) fn reasons(state: &BackendState, status: &BackendStatus) -> Vec<Reason> {
    let detail =
        |text: &Option<String>, fallback: &str| text.clone().unwrap_or_else(|| fallback.to_owned());
    let mut reasons = Vec::new();
    if state.is(Exclusion::Draining) {
        let asked = status.drain.as_ref().map_or(DRAINED, |d| d.reason.as_str());
        let detail = if state.has(Mark::DrainCut) {
            format!("{asked}; its deadline closed the remaining connections")
        } else {
            asked.to_owned()
        };
        reasons.push(Reason {
            state: if state.state() == State::Drained {
                State::Drained
            } else {
                State::Draining
            },
            detail,
        });
    }
    if state.is(Exclusion::Unhealthy) {
        reasons.push(Reason {
            state: State::Unhealthy,
            detail: detail(&status.unhealthy, "failed active probes"),
        });
    }
    if state.is(Exclusion::Ejected) {
        reasons.push(Reason {
            state: State::Ejected,
            detail: detail(&status.ejected, "ejected by outlier detection"),
        });
    }
    if state.has(Mark::HeldIn) {
        reasons.push(Reason {
            state: State::Ejected,
            detail: detail(
                &status.held_in,
                "failing; held in service by the ejection cap",
            ),
        });
    }
    if state.has(Mark::SlowStart) {
        reasons.push(Reason {
            state: State::SlowStart,
            detail: "weight ramping up after returning to service".to_owned(),
        });
    }
    reasons
}

/// The reason given for an operator's drain, and for its end.
pub(super) const DRAINED: &str = "drained through the admin API";
pub(super) const UNDRAINED: &str = "undrained through the admin API";

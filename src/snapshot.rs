//! The immutable view of routes and pools that the data plane reads, rebuilt and swapped whole
//! by the control plane. Unchanged parts (the router, untouched pools) are shared by `Arc`.

use crate::balance::Balancer;
use crate::config::{Algorithm, OutlierConfig, Timeouts};
use crate::route::Router;
use crate::upstream::{BackendState, Exclusion, RetryBudget};
use std::sync::Arc;

/// Everything one request needs to be routed and balanced.
#[derive(Debug)]
pub struct Snapshot {
    /// Host and path to pool.
    pub router: Arc<Router>,
    /// Pools, indexed by `Route::pool`.
    pub pools: Vec<Arc<Pool>>,
    /// Timeouts in force.
    pub timeouts: Timeouts,
}

/// A pool's failure-handling settings, as the data plane needs them.
#[derive(Debug, Clone)]
pub struct PoolPolicy {
    /// How the pool balances.
    pub algorithm: Algorithm,
    /// Further attempts after a retryable failure.
    pub retries: u32,
    /// Passive ejection thresholds.
    pub outlier: OutlierConfig,
    /// Below this percentage of usable backends, ignore health (0: never).
    pub panic_threshold: u8,
    /// Shared by every snapshot of this pool.
    pub retry_budget: Arc<RetryBudget>,
}

/// A pool of backends and the balancer built for its eligible ones.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: Arc<str>,
    /// Every backend, in config order.
    pub backends: Vec<Arc<BackendState>>,
    /// The backends the balancer chooses among.
    eligible: Vec<Arc<BackendState>>,
    balancer: Balancer,
    /// The exclusions a pick honours: all of them, or only drains in panic mode.
    mask: u8,
    /// Whether too few backends are usable and health is being ignored.
    pub panic: bool,
    /// Retry and ejection settings.
    pub policy: PoolPolicy,
}

impl Pool {
    /// Builds the pool from its backends' current exclusions and effective weights.
    pub fn build(name: Arc<str>, backends: Vec<Arc<BackendState>>, policy: PoolPolicy) -> Self {
        let usable = backends.iter().filter(|b| b.exclusions() == 0).count();
        let panic = policy.panic_threshold > 0
            && !backends.is_empty()
            && usable * 100 < usize::from(policy.panic_threshold) * backends.len();
        let mask = if panic {
            Exclusion::PANIC
        } else {
            Exclusion::ALL
        };
        let eligible: Vec<Arc<BackendState>> = backends
            .iter()
            .filter(|b| b.exclusions() & mask == 0)
            .cloned()
            .collect();
        let weights: Vec<u32> = eligible.iter().map(|b| b.effective_weight()).collect();
        Self {
            name,
            balancer: Balancer::new(policy.algorithm, &weights),
            backends,
            eligible,
            mask,
            panic,
            policy,
        }
    }

    /// How many backends the balancer chooses among.
    pub fn eligible_count(&self) -> usize {
        self.eligible.len()
    }

    /// The backend for the next request, if any can take it.
    pub fn pick(&self) -> Option<&Arc<BackendState>> {
        self.balancer
            .pick(&self.eligible, |b| b.accepts(self.mask))
            .map(|i| &self.eligible[i])
    }

    /// A backend for a retry: never one already tried.
    pub fn pick_other(&self, tried: &[Arc<BackendState>]) -> Option<&Arc<BackendState>> {
        self.balancer
            .pick(&self.eligible, |b| {
                b.accepts(self.mask) && !tried.iter().any(|t| Arc::ptr_eq(t, b))
            })
            .map(|i| &self.eligible[i])
    }
}

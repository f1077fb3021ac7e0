//! What the control plane builds for a pool's snapshot besides its backends: the request
//! metrics it counts into and the policy the data plane follows (balancing, sticky sessions,
//! admission, retries, outlier thresholds), rebuilt whenever the pool's config changes.

use super::registry::BackendRuntime;
use crate::config::{Config, PoolConfig};
use crate::metrics::{Metrics, PoolTraffic};
use crate::snapshot::PoolPolicy;
use crate::upstream::RetryBudget;
use crate::upstream::pool::Upstream;
use crate::upstream::sticky_keys::FleetKeys;
use std::sync::Arc;

/// Request metrics for the pool: one cell per route reaching it (in config order, as the
/// router numbers them) and backend.
pub(super) fn traffic(
    config: &PoolConfig,
    backends: &[BackendRuntime],
    all: &Config,
    metrics: &Metrics,
) -> Arc<PoolTraffic> {
    let routes: Vec<&str> = all
        .routes
        .iter()
        .filter(|r| r.pool() == Some(config.name.as_str()))
        .map(|r| r.name.as_str())
        .collect();
    let backends: Vec<&str> = backends.iter().map(|b| b.config.name.as_str()).collect();
    Arc::new(PoolTraffic::new(metrics, &config.name, &routes, &backends))
}

pub(super) fn policy(
    config: &PoolConfig,
    budget: Option<Arc<RetryBudget>>,
    upstream: Option<Arc<Upstream>>,
    traffic: Arc<PoolTraffic>,
    metrics: &Metrics,
    sticky_keys: &Arc<FleetKeys>,
) -> PoolPolicy {
    PoolPolicy {
        upstream: upstream.unwrap_or_else(|| Arc::new(Upstream::new(config.upstream.clone()))),
        traffic,
        algorithm: config.algorithm,
        hash: config.hash.clone().map(Arc::new),
        latency_decay: config.latency_decay,
        sticky: config.sticky.as_ref().map(|sticky| {
            Arc::new(crate::upstream::sticky::Sticky::new(
                sticky,
                &config.name,
                metrics,
                sticky_keys,
            ))
        }),
        admission: config.admission.as_ref().map(|settings| {
            Arc::new(crate::upstream::admission::Admission::new(
                settings,
                &config.name,
                metrics,
            ))
        }),
        retries: config.retries,
        retry_on: config.retry_on,
        outlier: config.outlier,
        panic_threshold: config.panic_threshold,
        retry_budget: budget.unwrap_or_else(|| Arc::new(RetryBudget::new(config.retry_budget))),
    }
}

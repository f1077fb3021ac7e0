//! The control plane's own bookkeeping per pool and backend: configs, runtime overrides,
//! ejection and ramp timers, probe tasks. Only the control task touches it.

use super::ejection::Ejection;
use super::pool_policy::{policy, traffic};
use super::ramp::Ramp;
use crate::config::{BackendConfig, Config, InitialState, PoolConfig};
use crate::health::ProbeRecord;
use crate::metrics::{self, BackendMetrics, Metrics};
use crate::snapshot::{Pool, PoolPolicy};
use crate::upstream::sticky_keys::FleetKeys;
use crate::upstream::{BackendKey, BackendState, Failure, State};
use ::metrics::Counter;
use arc_swap::ArcSwapOption;
use indexmap::IndexMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One backend's state plus what only the control plane needs.
#[derive(Debug)]
pub(super) struct BackendRuntime {
    pub state: Arc<BackendState>,
    pub config: BackendConfig,
    /// Set through the admin API; cleared when the file changes this backend.
    pub weight_override: Option<u32>,
    pub ejection: Ejection,
    /// While failing but held in service by the ejection cap: until when it shows so, unless
    /// another threshold's worth of failures renews it.
    pub held_in_until: Option<Instant>,
    pub ramp: Ramp,
    /// The state last announced: a change is announced when the derived state differs.
    pub announced: State,
    /// When a drain with a deadline closes what remains.
    pub drain_deadline: Option<Instant>,
    pub prober: Option<CancellationToken>,
    /// Written by the probe task, read by the admin API.
    pub last_probe: Arc<ArcSwapOption<ProbeRecord>>,
    /// The control plane's counters of this backend, registered (at zero) with it.
    pub counters: ControlCounters,
    /// Found by the pool's discovery source rather than named in the file.
    pub discovered: bool,
    /// A discovered backend its source no longer names: draining, then removed.
    pub leaving: bool,
    /// When (unix ms) the operator state (drain, weight) last changed, here or on another
    /// replica: a shared change older than that is stale.
    pub override_at: u64,
}

/// `switchyard_ejections_total` by reason and `switchyard_backend_state_changes_total` by
/// state, indexed as `Failure::ALL` and `State::ALL`.
#[derive(Debug)]
pub(super) struct ControlCounters {
    pub ejections: [Counter; 4],
    pub state_changes: [Counter; 6],
}

impl ControlCounters {
    fn new(metrics: &Metrics, pool: &str, backend: &str) -> Self {
        let labels = |key, value| [("pool", pool), ("backend", backend), (key, value)];
        Self {
            ejections: Failure::ALL.map(|failure| {
                metrics.counter(metrics::EJECTIONS, &labels("reason", failure.as_str()))
            }),
            state_changes: State::ALL.map(|state| {
                metrics.counter(
                    metrics::BACKEND_STATE_CHANGES,
                    &labels("state", state.as_str()),
                )
            }),
        }
    }
}

impl BackendRuntime {
    pub fn new(pool: &Arc<str>, config: &BackendConfig, healthy: bool, metrics: &Metrics) -> Self {
        let counters = BackendMetrics::new(metrics, pool, &config.name);
        Self {
            state: Arc::new(BackendState::new(
                Arc::clone(pool),
                config,
                healthy,
                counters,
            )),
            config: config.clone(),
            weight_override: None,
            ejection: Ejection::default(),
            ramp: Ramp::default(),
            announced: if healthy {
                State::Healthy
            } else {
                State::Unhealthy
            },
            held_in_until: None,
            drain_deadline: None,
            prober: None,
            last_probe: Arc::new(ArcSwapOption::empty()),
            counters: ControlCounters::new(metrics, pool, &config.name),
            discovered: false,
            leaving: false,
            override_at: 0,
        }
    }

    /// The weight in force: the operator's override, else the file's.
    pub fn base_weight(&self) -> u32 {
        self.weight_override.unwrap_or(self.config.weight.get())
    }

    /// Recomputes the balancer weight from the weight in force and any slow-start ramp.
    /// Returns whether it changed.
    pub fn refresh_weight(&self, now: Instant, window: Option<Duration>) -> bool {
        let weight = self.ramp.weight(self.base_weight(), now, window);
        let changed = weight != self.state.effective_weight();
        self.state.set_effective_weight(weight);
        changed
    }

    pub fn stop_prober(&mut self) {
        if let Some(stop) = self.prober.take() {
            stop.cancel();
        }
    }
}

/// One pool's config, policy and backends.
#[derive(Debug)]
pub(super) struct PoolRuntime {
    pub config: PoolConfig,
    pub name: Arc<str>,
    pub policy: PoolPolicy,
    pub backends: Vec<BackendRuntime>,
    /// The discovery source's latest set (empty without discovery).
    pub discovered: Vec<BackendConfig>,
    /// The discovery task's epoch and stop signal, while one runs.
    pub discovery: Option<(u64, CancellationToken)>,
}

impl PoolRuntime {
    pub fn new(
        config: &PoolConfig,
        all: &Config,
        metrics: &Metrics,
        sticky_keys: &Arc<FleetKeys>,
    ) -> Self {
        let name: Arc<str> = config.name.as_str().into();
        let healthy = starts_healthy(config);
        let backends: Vec<BackendRuntime> = config
            .backends
            .iter()
            .map(|b| BackendRuntime::new(&name, b, healthy, metrics))
            .collect();
        let traffic = traffic(config, &backends, all, metrics);
        Self {
            backends,
            policy: policy(config, None, None, traffic, metrics, sticky_keys),
            config: config.clone(),
            name,
            discovered: Vec::new(),
            discovery: None,
        }
    }

    /// Takes a reloaded config of the same pool (its backends already reconciled); the retry
    /// budget carries over when unchanged.
    pub fn update_config(
        &mut self,
        config: &PoolConfig,
        all: &Config,
        metrics: &Metrics,
        sticky_keys: &Arc<FleetKeys>,
    ) {
        let budget = (self.config.retry_budget == config.retry_budget)
            .then(|| Arc::clone(&self.policy.retry_budget));
        let upstream =
            (self.config.upstream == config.upstream).then(|| Arc::clone(&self.policy.upstream));
        let traffic = traffic(config, &self.backends, all, metrics);
        let admission = self.policy.admission.take();
        self.policy = policy(config, budget, upstream, traffic, metrics, sticky_keys);
        if self.config.admission == config.admission {
            // Its waiters stay where the requests that end will wake them.
            self.policy.admission = admission;
        } else {
            // Adaptive limits start over, or give way to the configured ones.
            for backend in &self.backends {
                backend.state.update_limits(&backend.config);
            }
        }
        self.config = config.clone();
    }

    /// Registers request metrics for the current backends (after the set changed).
    pub fn refresh_traffic(&mut self, all: &Config, metrics: &Metrics) {
        self.policy.traffic = traffic(&self.config, &self.backends, all, metrics);
    }

    /// The immutable pool for the next snapshot.
    pub fn build(&self) -> Pool {
        Pool::build(
            Arc::clone(&self.name),
            self.backends.iter().map(|b| Arc::clone(&b.state)).collect(),
            self.policy.clone(),
        )
    }

    /// Stops the pool's discovery task, if one runs.
    pub fn stop_discovery(&mut self) {
        if let Some((_, stop)) = self.discovery.take() {
            stop.cancel();
        }
    }

    /// Stops every task of the pool: its backends' probes and its discovery.
    pub fn stop_tasks(&mut self) {
        for backend in &mut self.backends {
            backend.stop_prober();
        }
        self.stop_discovery();
    }

    /// The backend named `backend` that is not leaving, if any (else the one leaving).
    pub fn find(&self, backend: &str) -> Option<&BackendRuntime> {
        self.backends.iter().find(|b| b.config.name == backend)
    }

    /// The backend with this serial, while it is in the pool.
    pub fn backend_mut(&mut self, serial: u64) -> Option<&mut BackendRuntime> {
        self.backends.iter_mut().find(|b| b.state.serial == serial)
    }

    /// The key of backend `serial` of this pool.
    pub fn key(&self, serial: u64) -> BackendKey {
        BackendKey {
            pool: Arc::clone(&self.name),
            serial,
        }
    }
}

/// Every pool, keyed by name, in the config's order (the order the router and the snapshot
/// number them in).
#[derive(Debug, Default)]
pub(super) struct Pools(IndexMap<Arc<str>, PoolRuntime>);

impl Pools {
    /// The pool named `name`.
    pub fn get(&self, name: &str) -> Option<&PoolRuntime> {
        self.0.get(name)
    }

    /// The pool named `name`, to change.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut PoolRuntime> {
        self.0.get_mut(name)
    }

    /// Where pool `name` sits in the snapshot.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.0.get_index_of(name)
    }

    /// The backend `key` names, while it exists.
    pub fn backend(&self, key: &BackendKey) -> Option<&BackendRuntime> {
        let pool = self.get(&key.pool)?;
        pool.backends.iter().find(|b| b.state.serial == key.serial)
    }

    /// The backend `key` names, to change.
    pub fn backend_mut(&mut self, key: &BackendKey) -> Option<&mut BackendRuntime> {
        self.get_mut(&key.pool)?.backend_mut(key.serial)
    }

    /// Every backend's key, for handling each in turn.
    pub fn keys(&self) -> Vec<BackendKey> {
        self.iter()
            .flat_map(|pool| pool.backends.iter().map(|b| pool.key(b.state.serial)))
            .collect()
    }

    /// Every pool's name.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.0.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PoolRuntime> {
        self.0.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut PoolRuntime> {
        self.0.values_mut()
    }

    /// Takes pool `name` out, to be put back (or not) by `insert`.
    pub fn remove(&mut self, name: &str) -> Option<PoolRuntime> {
        self.0.shift_remove(name)
    }

    /// Adds a pool after the others.
    pub fn insert(&mut self, pool: PoolRuntime) {
        self.0.insert(Arc::clone(&pool.name), pool);
    }

    /// Every pool, taken out.
    pub fn into_values(self) -> impl Iterator<Item = PoolRuntime> {
        self.0.into_values()
    }
}

impl FromIterator<PoolRuntime> for Pools {
    fn from_iter<T: IntoIterator<Item = PoolRuntime>>(pools: T) -> Self {
        let mut all = Self::default();
        for pool in pools {
            all.insert(pool);
        }
        all
    }
}

/// Whether a new backend of this pool starts in service.
pub(super) fn starts_healthy(config: &PoolConfig) -> bool {
    config
        .health_check
        .as_ref()
        .is_none_or(|check| check.initial_state == InitialState::Healthy)
}

//! The single writer applying a new config (following the `reconcile` plan), running probe
//! tasks, and rebuilding pools into new snapshots.

use super::Control;
use super::membership;
use super::registry::{PoolRuntime, Pools};
use super::runtime::update_status;
use crate::config::Config;
use crate::events::ReloadSummary;
use crate::health::{self, ProbeTarget};
use crate::metrics;
use crate::snapshot::{Pool, Snapshot};
use crate::upstream::{BackendKey, Exclusion};
use std::sync::Arc;

impl Control {
    /// Reconciles the registry with a new config. Backends keep their state when pool, name and
    /// address are unchanged; their runtime overrides survive unless the file changed them.
    pub(super) fn apply_config(&mut self, config: Config) -> ReloadSummary {
        let now = self.now;
        // What changed is worked out from the two configs alone (as `check --diff` does); this
        // function only carries it out.
        let mut summary = super::diff::diff(&self.config, &config);
        let mut old = std::mem::take(&mut self.pools);
        // New backends' probers start from the configured initial state; those restarted for
        // new probe settings resume from the backend's current health.
        let mut needs_prober: Vec<BackendKey> = Vec::new();
        let mut resumed_prober: Vec<BackendKey> = Vec::new();
        let mut rediscover: Vec<Arc<str>> = Vec::new();
        let mut override_cleared: Vec<BackendKey> = Vec::new();
        let mut pools = Pools::default();
        for pool_config in &config.pools {
            let Some(mut runtime) = old.remove(&pool_config.name) else {
                let runtime =
                    PoolRuntime::new(pool_config, &config, &self.metrics, &self.sticky_keys);
                needs_prober.extend(runtime.backends.iter().map(|b| runtime.key(b.state.serial)));
                rediscover.push(Arc::clone(&runtime.name));
                pools.insert(runtime);
                continue;
            };
            // Probes speak the pool's protocol: new connection settings restart them too.
            let probes_changed = runtime.config.health_check != pool_config.health_check
                || runtime.config.upstream != pool_config.upstream;
            if runtime.config.discovery != pool_config.discovery {
                rediscover.push(Arc::clone(&runtime.name));
            }
            // The discovered set stays until a changed source reports its own.
            if pool_config.discovery.is_none() {
                runtime.discovered.clear();
            }
            let grace = config.timeouts.shutdown;
            let taken = membership::take_set(&mut runtime, pool_config, &self.metrics, now, grace);
            let keys =
                |serials: &[u64]| serials.iter().map(|&s| runtime.key(s)).collect::<Vec<_>>();
            needs_prober.extend(keys(&taken.added));
            override_cleared.extend(keys(&taken.override_cleared));
            if probes_changed {
                resumed_prober.extend(keys(&taken.kept));
            }
            runtime.update_config(pool_config, &config, &self.metrics, &self.sticky_keys);
            if pool_config.health_check.is_none() {
                for backend in &mut runtime.backends {
                    // Nothing would ever bring an unhealthy backend back without probes.
                    backend.stop_prober();
                    backend.state.set(Exclusion::Unhealthy, false);
                    update_status(&backend.state, |s| s.unhealthy = None);
                }
            }
            for backend in &runtime.backends {
                backend.refresh_weight(now.at, pool_config.slow_start);
            }
            pools.insert(runtime);
        }
        for mut removed in old.into_values() {
            removed.stop_tasks();
        }
        self.pools = pools;
        self.router = super::router(&config, &self.pools, &self.metrics, &self.shelf);
        self.certificates = crate::snapshot::CertificateExpiry::of(&config);
        if config.webhooks != self.config.webhooks {
            self.notifier.apply(&config.webhooks);
        }
        for setting in &summary.not_applied {
            tracing::warn!(setting = %setting.setting, reason = %setting.reason, "changed setting not applied");
        }
        self.config = config;
        self.generation += 1;
        summary.generation = self.generation;
        for key in needs_prober {
            self.apply_shared_override(&key);
            self.start_prober(&key, false);
        }
        for key in resumed_prober {
            self.start_prober(&key, true);
        }
        for pool in rediscover {
            self.follow_discovery(&pool);
        }
        self.swap_all();
        for key in self.pools.keys() {
            let reason = self
                .pools
                .backend(&key)
                .and_then(membership::leaving_reason)
                .unwrap_or("config reloaded");
            self.announce(&key, reason);
        }
        for key in override_cleared {
            self.weight_changed(&key);
        }
        self.remove_departed(now.at);
        summary
    }

    /// Starts (or restarts) the probe task of a backend, if its pool has health checks; with
    /// `resume`, its rise/fall counting starts from the backend's current health rather than
    /// from the configured initial state.
    pub(super) fn start_prober(&mut self, key: &BackendKey, resume: bool) {
        let dial = crate::upstream::pool::Dial::from(&self.config.timeouts);
        let Some(pool) = self.pools.get_mut(&key.pool) else {
            return;
        };
        let Some(check) = pool.config.health_check.clone() else {
            return;
        };
        let stop = self.shutdown.child_token();
        let target = ProbeTarget {
            upstream: Arc::clone(&pool.policy.upstream),
            dial,
        };
        let Some(runtime) = pool.backend_mut(key.serial) else {
            return;
        };
        runtime.stop_prober();
        runtime.prober = Some(stop.clone());
        let labels = |result| {
            [
                ("pool", &*runtime.state.pool),
                ("backend", &*runtime.state.name),
                ("result", result),
            ]
        };
        let counters = health::ProbeCounters {
            passed: self
                .metrics
                .counter(metrics::HEALTH_CHECKS, &labels("pass")),
            failed: self
                .metrics
                .counter(metrics::HEALTH_CHECKS, &labels("fail")),
        };
        let prober = health::Prober {
            backend: Arc::clone(&runtime.state),
            check,
            target,
            last_probe: Arc::clone(&runtime.last_probe),
            counters,
            resume,
        };
        let reports = self.inbox.reports_tx.clone();
        self.tasks.spawn(health::probe_loop(prober, reports, stop));
    }

    /// Rebuilds pool `name` and swaps in a snapshot that shares everything else.
    pub(super) fn rebuild(&mut self, name: &str) {
        let (Some(i), Some(pool)) = (self.pools.position(name), self.pools.get(name)) else {
            return;
        };
        let mut pools = self.publisher.current().pools.clone();
        pools[i] = self.build_pool(pool);
        self.store(pools);
    }

    /// Rebuilds every pool and the router (after a reload).
    fn swap_all(&mut self) {
        let pools = self.pools.iter().map(|p| self.build_pool(p)).collect();
        self.store(pools);
    }

    fn build_pool(&self, runtime: &PoolRuntime) -> Arc<Pool> {
        let mut pool = runtime.build();
        let current = self.publisher.current();
        let before = current.pools.iter().find(|old| old.name == pool.name);
        if let Some(before) = before {
            pool.count_moved(before);
        }
        // Panic mode as the data plane saw it until now: the snapshot is the one record of it.
        let was_panic = before.is_some_and(|old| old.panic);
        let pool = Arc::new(pool);
        self.publisher.pool_rebuilt(&pool, was_panic, self.now.wall);
        pool
    }

    /// Swaps in the snapshot of `pools` with the current router and timeouts.
    fn store(&self, pools: Vec<Arc<Pool>>) {
        self.publisher.store(Snapshot {
            router: Arc::clone(&self.router),
            pools,
            timeouts: Arc::new(self.config.timeouts),
            limits: self.config.limits,
            certificates: Arc::clone(&self.certificates),
        });
    }
}

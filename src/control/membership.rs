//! A pool taking a new set of backends, from a reload or from its discovery source: backends
//! that stay keep their state (the `reconcile` plan), new ones start fresh, and a backend that
//! leaves (no longer named by the file, or by the discovery source) is drained first and removed
//! only once its requests have ended, or its deadline has passed: the source's `drain_timeout`,
//! or `timeouts.shutdown` for the file's. Also runs each pool's discovery task.

use super::Control;
use super::Now;
use super::reconcile::{self, Changed, Step};
use super::registry::{self, BackendRuntime, PoolRuntime};
use super::runtime::update_status;
use crate::config::{BackendConfig, PoolConfig};
use crate::discovery::{self, Discovered};
use crate::events::{Event, Membership};
use crate::metrics::Metrics;
use crate::upstream::{BackendKey, Drain, Exclusion, Mark, timestamp};
use std::sync::Arc;
use tokio::time::Instant;

/// Why a discovered backend is draining.
const LEFT: &str = "no longer named by the discovery source";
/// Why a backend of the file is draining.
const REMOVED: &str = "removed from the config";

/// Why a backend is draining because it is leaving, if it is.
pub(super) fn leaving_reason(backend: &BackendRuntime) -> Option<&'static str> {
    backend
        .leaving
        .then_some(if backend.discovered { LEFT } else { REMOVED })
}

/// What taking a set did, for the caller to follow up: the serial of each backend that needs a
/// probe task started, and of each kept one.
#[derive(Debug, Default)]
pub(super) struct Taken {
    pub added: Vec<u64>,
    pub kept: Vec<u64>,
    /// Kept backends whose weight override the file's change cleared.
    pub override_cleared: Vec<u64>,
}

/// The backends a pool should have: the file's, then the discovered ones the file does not
/// already name by address (with the pool's `admission.max_in_flight`).
pub(super) fn desired(config: &PoolConfig, discovered: &[BackendConfig]) -> Vec<BackendConfig> {
    let mut all = config.backends.clone();
    let limit = config.admission.and_then(|a| a.max_in_flight);
    all.extend(
        discovered
            .iter()
            .filter(|d| !config.backends.iter().any(|b| b.address == d.address))
            .map(|d| BackendConfig {
                max_in_flight: d.max_in_flight.or(limit),
                ..d.clone()
            }),
    );
    all
}

/// Gives `runtime` the backends of `config` plus its discovered ones; one that leaves drains
/// within the source's `drain_timeout`, or `grace` (`timeouts.shutdown`).
pub(super) fn take_set(
    runtime: &mut PoolRuntime,
    config: &PoolConfig,
    metrics: &Metrics,
    now: Now,
    grace: std::time::Duration,
) -> Taken {
    let desired = desired(config, &runtime.discovered);
    let statics = config.backends.len();
    let previous = std::mem::take(&mut runtime.backends);
    let plan = reconcile::plan(
        &previous.iter().map(|r| &r.config).collect::<Vec<_>>(),
        &desired,
    );
    let mut previous: Vec<Option<BackendRuntime>> = previous.into_iter().map(Some).collect();
    let mut taken = Taken::default();
    for (b, step) in plan.backends.into_iter().enumerate() {
        let backend_config = &desired[b];
        let discovered = b >= statics;
        match step {
            Step::Keep(i, changed) => {
                let mut kept = previous[i].take().expect("each old backend kept once");
                if std::mem::take(&mut kept.leaving) {
                    clear_drain(&kept);
                }
                if changed != Changed::No {
                    if discovered {
                        // The source's weight or limits: operator overrides stay.
                        kept.state.update_limits(backend_config);
                        kept.config = backend_config.clone();
                    } else {
                        if kept.weight_override.is_some() {
                            taken.override_cleared.push(kept.state.serial);
                        }
                        file_changed_backend(&mut kept, backend_config);
                    }
                }
                kept.discovered = discovered;
                taken.kept.push(kept.state.serial);
                runtime.backends.push(kept);
            }
            Step::Add(_) => {
                let healthy = registry::starts_healthy(config);
                let mut added =
                    BackendRuntime::new(&runtime.name, backend_config, healthy, metrics);
                added.discovered = discovered;
                added.ramp.start(now.at, config.slow_start);
                added.state.mark(Mark::SlowStart, added.ramp.is_running());
                taken.added.push(added.state.serial);
                runtime.backends.push(added);
            }
        }
    }
    let drain_timeout = config.discovery.as_ref().map_or(grace, |d| d.drain_timeout);
    for mut gone in previous.into_iter().flatten() {
        gone.stop_prober();
        if !gone.leaving {
            gone.leaving = true;
            let timeout = if gone.discovered {
                drain_timeout
            } else {
                grace
            };
            gone.drain_deadline = now.at.checked_add(timeout);
            let reason = leaving_reason(&gone).unwrap_or(LEFT);
            let since = now.wall;
            update_status(&gone.state, |s| {
                s.drain = Some(Drain {
                    since,
                    deadline: since.checked_add(timeout),
                    reason: reason.to_owned(),
                });
            });
            gone.state.set(Exclusion::Draining, true);
        }
        runtime.backends.push(gone);
    }
    taken
}

/// Ends a drain (the backend is wanted again).
fn clear_drain(runtime: &BackendRuntime) {
    runtime.state.set(Exclusion::Draining, false);
    runtime.state.mark(Mark::DrainCut, false);
    update_status(&runtime.state, |s| s.drain = None);
}

/// The file now says something new about a kept backend: it wins over runtime overrides.
fn file_changed_backend(kept: &mut BackendRuntime, config: &BackendConfig) {
    kept.weight_override = None;
    kept.drain_deadline = None;
    clear_drain(kept);
    kept.state.update_limits(config);
    kept.config = config.clone();
}

impl Control {
    /// Takes a set found by pool `name`'s discovery task.
    pub(super) fn apply_discovered(&mut self, found: Discovered) {
        let Some(pool) = self.pools.get_mut(&found.pool) else {
            return;
        };
        if pool.discovery.as_ref().map(|d| d.0) != Some(found.epoch) {
            return; // from a task since replaced
        }
        pool.discovered = found.backends;
        let name = Arc::clone(&pool.name);
        self.retake(&name);
    }

    /// Gives pool `name` the file's backends plus its discovered ones, and announces the result.
    pub(super) fn retake(&mut self, name: &str) {
        let now = self.now;
        let grace = self.config.timeouts.shutdown;
        let Some(runtime) = self.pools.get_mut(name) else {
            return;
        };
        let config = runtime.config.clone();
        let taken = take_set(runtime, &config, &self.metrics, now, grace);
        runtime.refresh_traffic(&self.config, &self.metrics);
        for backend in &runtime.backends {
            backend.refresh_weight(now.at, config.slow_start);
        }
        let added: Vec<(BackendKey, String)> = taken
            .added
            .iter()
            .filter_map(|&serial| {
                let name = runtime.backend_mut(serial)?.config.name.clone();
                Some((runtime.key(serial), name))
            })
            .collect();
        for (key, backend) in added {
            tracing::info!(pool = %config.name, %backend, "backend discovered");
            self.membership(&config.name, &backend, Membership::Added);
            self.apply_shared_override(&key);
            self.start_prober(&key, false);
        }
        self.rebuild(name);
        for key in self.pools.keys().into_iter().filter(|k| &*k.pool == name) {
            let reason = self
                .pools
                .backend(&key)
                .and_then(leaving_reason)
                .unwrap_or("discovered");
            self.announce(&key, reason);
        }
        self.remove_departed(now.at);
    }

    /// Removes backends that left and have no request in flight any more, or whose drain
    /// deadline has passed (what remained was closed when it did).
    pub(super) fn remove_departed(&mut self, now: Instant) {
        for name in self.pools.names() {
            let done = |b: &BackendRuntime| {
                b.leaving
                    && (b.state.in_flight() == 0 || b.drain_deadline.is_none_or(|at| at <= now))
            };
            let Some(pool) = self.pools.get_mut(&name) else {
                continue;
            };
            if !pool.backends.iter().any(done) {
                continue;
            }
            let (gone, stay): (Vec<BackendRuntime>, Vec<BackendRuntime>) =
                std::mem::take(&mut pool.backends)
                    .into_iter()
                    .partition(done);
            pool.backends = stay;
            pool.refresh_traffic(&self.config, &self.metrics);
            self.rebuild(&name);
            for backend in gone {
                tracing::info!(pool = %backend.state.pool, backend = %backend.config.name, "departed backend removed");
                self.membership(&name, &backend.config.name, Membership::Removed);
            }
        }
    }

    fn membership(&self, pool: &str, backend: &str, change: Membership) {
        self.publisher.emit(Event::Membership {
            pool: pool.to_owned(),
            backend: backend.to_owned(),
            change,
            time: timestamp(self.now.wall),
        });
    }

    /// Starts, restarts or stops pool `name`'s discovery task to match its config; a restarted
    /// task's set replaces the last one only when it reports.
    pub(super) fn follow_discovery(&mut self, name: &str) {
        let Some(pool) = self.pools.get_mut(name) else {
            return;
        };
        pool.stop_discovery();
        let Some(config) = pool.config.discovery.clone() else {
            pool.discovered.clear();
            return;
        };
        self.discovery_epoch += 1;
        let stop = self.shutdown.child_token();
        discovery::spawn(
            Arc::clone(&pool.name),
            self.discovery_epoch,
            &config,
            self.inbox.discovered_tx.clone(),
            &self.metrics,
            &self.tasks,
            stop.clone(),
        );
        pool.discovery = Some((self.discovery_epoch, stop));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_backends_come_first_and_a_discovered_duplicate_address_is_ignored() {
        let text = "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n[[routes]]\nname = \"r\"\npool = \"p\"\n\
                    [[pools]]\nname = \"p\"\n[[pools.backends]]\nname = \"static\"\naddress = \"127.0.0.1:1\"\n";
        let config = crate::config::parse(text, "t.toml").unwrap();
        let pool = &config.pools[0];
        let found = |address: &str| crate::config::BackendConfig {
            name: address.to_owned(),
            address: address.parse().unwrap(),
            ..pool.backends[0].clone()
        };
        let all = desired(pool, &[found("127.0.0.1:2"), found("127.0.0.1:1")]);
        let names: Vec<&str> = all.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["static", "127.0.0.1:2"]);
    }
}

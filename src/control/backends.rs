//! The single writer's handlers for what happens to individual backends: probe reports,
//! passive failure reports, timers, drains and weights. Each finds the backend by its key,
//! has `runtime` carry the decision out at the event's instant, announces the resulting state
//! once and rebuilds the pool's snapshot when the data plane must see it.

use super::Control;
use crate::events::Event;
use crate::health::{Report, ReportKind, Verdict};
use crate::upstream::{BackendKey, OutlierReport, State, timestamp};
use std::time::Duration;
use tokio::time::Instant;

/// How often a drain is checked for its last request ending.
const DRAIN_CHECK: Duration = Duration::from_millis(100);

impl Control {
    pub(super) fn apply_report(&mut self, report: Report) {
        let now = self.now.at;
        let Some(pool) = self.pools.get_mut(&report.backend.pool) else {
            return;
        };
        let (window, uneject_on_probe) =
            (pool.config.slow_start, pool.config.outlier.uneject_on_probe);
        let Some(runtime) = pool.backend_mut(report.backend.serial) else {
            return; // a report about a backend since removed
        };
        let reason = match report.kind {
            ReportKind::Verdict {
                verdict: Verdict::Unhealthy,
                detail,
            } => {
                runtime.probes_failed(&detail);
                detail
            }
            ReportKind::Verdict {
                verdict: Verdict::Healthy,
                detail,
            } => {
                runtime.probes_passed(now, window);
                detail
            }
            ReportKind::PassedWhileEjected => {
                // Probes that never failed prove little about real traffic (a backend may fail
                // every POST and answer its GET probe): only where asked do they end an
                // ejection early.
                if !uneject_on_probe || !runtime.end_ejection(now) {
                    return;
                }
                runtime.start_ramp(now, window);
                "active probe passed during ejection".to_owned()
            }
        };
        // The backend's change first, then what it does to the pool (panic mode).
        self.announce(&report.backend, &reason);
        self.rebuild(&report.backend.pool);
    }

    pub(super) fn apply_outlier(&mut self, report: OutlierReport) {
        let Some(pool) = self.pools.get_mut(&report.backend.pool) else {
            return;
        };
        if let Some(reason) = pool.consider_outlier(&report, self.now.at) {
            self.announce(&report.backend, &reason);
            self.rebuild(&report.backend.pool);
        }
    }

    /// The next time something is due: an ejection ending, a ramp stepping, a drain's deadline,
    /// or a look at whether a drain's last request has ended.
    pub(super) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        // Drain checks fall on a fixed 100 ms grid: were they `now + 100 ms`, a stream of
        // commands (an admin client polling) would push them back for ever.
        let since_origin = now.saturating_duration_since(self.origin);
        let into_tick = Duration::from_nanos(
            u64::try_from(since_origin.as_nanos() % DRAIN_CHECK.as_nanos()).unwrap_or(0),
        );
        let drain_check = now + (DRAIN_CHECK - into_tick);
        self.pools
            .iter()
            .flat_map(|pool| {
                let window = pool.config.slow_start;
                pool.backends.iter().flat_map(move |b| {
                    let waiting_for_drain = b.announced == State::Draining || b.leaving;
                    b.ejection
                        .until()
                        .into_iter()
                        .chain(b.ramp.next_step(now, window))
                        .chain(b.drain_deadline)
                        .chain(b.held_in_until)
                        .chain(waiting_for_drain.then_some(drain_check))
                })
            })
            .min()
    }

    pub(super) fn apply_timers(&mut self, now: Instant) {
        for key in self.pools.keys() {
            let Some(pool) = self.pools.get_mut(&key.pool) else {
                continue;
            };
            let window = pool.config.slow_start;
            let Some(runtime) = pool.backend_mut(key.serial) else {
                continue;
            };
            let timed = runtime.on_timers(now, window);
            let reason = timed.reason.as_deref().unwrap_or("no request in flight");
            self.announce(&key, reason);
            if timed.rebuild {
                self.rebuild(&key.pool);
            }
        }
        self.remove_departed(now);
    }

    /// Announces backend `key`'s state if it differs from the one last announced.
    pub(super) fn announce(&mut self, key: &BackendKey, reason: &str) {
        if let Some(runtime) = self.pools.backend_mut(key) {
            runtime.announce(&self.publisher, self.now.wall, reason);
        }
    }

    /// Stops new requests to backend `key`; with a deadline, closes what remains once it
    /// passes. Draining again replaces the deadline.
    pub(super) fn drain(&mut self, key: &BackendKey, deadline: Option<Duration>, reason: &str) {
        let Some(runtime) = self.pools.backend_mut(key) else {
            return;
        };
        let already = runtime.drain(self.now, deadline, reason);
        self.announce(key, reason);
        if !already {
            self.rebuild(&key.pool);
        }
    }

    /// Sends new requests to a drained backend again.
    pub(super) fn undrain(&mut self, key: &BackendKey, reason: &str) {
        if self.pools.backend_mut(key).is_some_and(|b| b.undrain()) {
            self.announce(key, reason);
            self.rebuild(&key.pool);
        }
    }

    pub(super) fn set_weight(&mut self, key: &BackendKey, weight: Option<u32>) {
        let now = self.now.at;
        let Some(pool) = self.pools.get_mut(&key.pool) else {
            return;
        };
        let window = pool.config.slow_start;
        let Some(runtime) = pool.backend_mut(key.serial) else {
            return;
        };
        runtime.set_weight(now, window, weight);
        self.rebuild(&key.pool);
        self.weight_changed(key);
    }

    /// Logs and announces backend `key`'s weight override (or its end).
    pub(super) fn weight_changed(&self, key: &BackendKey) {
        let Some(runtime) = self.pools.backend(key) else {
            return;
        };
        let (pool, backend) = (
            runtime.state.pool.to_string(),
            runtime.state.name.to_string(),
        );
        let configured = runtime.config.weight.get();
        match runtime.weight_override {
            Some(weight) => {
                tracing::info!(%pool, %backend, weight, configured, "backend weight override set");
            }
            None => {
                tracing::info!(%pool, %backend, configured, "backend weight override cleared: the file's weight applies");
            }
        }
        self.publisher.emit(Event::Weight {
            pool,
            backend,
            weight: runtime.weight_override,
            time: timestamp(self.now.wall),
        });
    }
}

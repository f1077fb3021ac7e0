//! The single writer's decisions about individual backends, carried out on the registry:
//! probe verdicts, passive ejections and their end, slow-start steps, drains and weights.
//! What to decide comes from the pure `ejection` and `ramp` machines; this file applies it.

use super::Control;
use super::ejection::Decision;
use super::views::{DRAINED, Event, UNDRAINED, state_name};
use crate::health::{Report, ReportKind, Verdict};
use crate::metrics;
use crate::upstream::{BackendStatus, Condition, Exclusion, OutlierReport, timestamp};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

impl Control {
    pub(super) fn apply_report(&mut self, report: Report) {
        let Some((p, b)) = self.find_state(&report.backend) else {
            return;
        };
        let backend = &report.backend;
        match report.kind {
            ReportKind::Verdict { verdict, detail } => {
                let unhealthy = verdict == Verdict::Unhealthy;
                backend.set(Exclusion::Unhealthy, unhealthy);
                if !unhealthy {
                    // Passing probes also end a passive ejection early (Envoy's default).
                    self.end_ejection(p, b);
                    self.start_ramp(p, b);
                }
                self.set_condition(p, b, detail, None);
                self.rebuild(p);
            }
            ReportKind::PassedWhileEjected => {
                if backend.is(Exclusion::Ejected) {
                    self.end_ejection(p, b);
                    self.start_ramp(p, b);
                    let reason = "active probe passed during ejection".to_owned();
                    self.set_condition(p, b, reason, None);
                    self.rebuild(p);
                }
            }
        }
    }

    pub(super) fn apply_outlier(&mut self, report: OutlierReport) {
        let Some((p, b)) = self.find_state(&report.backend) else {
            return;
        };
        let backend = &report.backend;
        backend.reset_failure_counts();
        let pool = &self.pools[p];
        let outlier = pool.config.outlier;
        let ejected = pool
            .backends
            .iter()
            .filter(|b| b.state.is(Exclusion::Ejected))
            .count();
        let size = pool.backends.len();
        let reason = format!(
            "{} consecutive {}s",
            report.consecutive,
            report.failure.as_str()
        );
        let runtime = &mut self.pools[p].backends[b];
        let (count, duration) =
            match runtime
                .ejection
                .consider(Instant::now(), &outlier, ejected, size)
            {
                Decision::Eject { count, duration } => (count, duration),
                Decision::AlreadyEjected | Decision::Capped { first: false } => return,
                Decision::Capped { first: true } => {
                    let allowed = size * usize::from(outlier.max_ejection_percent) / 100;
                    tracing::warn!(
                        pool = %backend.pool, backend = %backend.name, %reason, ejected, allowed,
                        "not ejecting: max_ejection_percent reached"
                    );
                    return;
                }
            };
        backend.set(Exclusion::Ejected, true);
        let reason_label = match report.failure {
            crate::upstream::Failure::Connect => "connect_failure",
            crate::upstream::Failure::Timeout => "timeout",
            crate::upstream::Failure::Reset => "reset",
            crate::upstream::Failure::Status5xx => "5xx",
        };
        self.metrics
            .counter(
                metrics::EJECTIONS,
                &[
                    ("pool", &backend.pool),
                    ("backend", &backend.name),
                    ("reason", reason_label),
                ],
            )
            .increment(1);
        self.set_condition(
            p,
            b,
            format!("{reason}; ejected for {duration:?}"),
            Some((count, duration)),
        );
        self.rebuild(p);
    }

    fn end_ejection(&mut self, p: usize, b: usize) {
        let runtime = &mut self.pools[p].backends[b];
        if runtime.ejection.end(Instant::now()) {
            runtime.state.set(Exclusion::Ejected, false);
        }
    }

    pub(super) fn start_ramp(&mut self, p: usize, b: usize) {
        let window = self.pools[p].config.slow_start;
        let runtime = &mut self.pools[p].backends[b];
        let now = Instant::now();
        runtime.ramp.start(now, window);
        runtime.refresh_weight(now, window);
    }

    /// The next time something is due: an ejection ending, a ramp stepping.
    pub(super) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.pools
            .iter()
            .flat_map(|pool| {
                let window = pool.config.slow_start;
                pool.backends.iter().flat_map(move |b| {
                    b.ejection
                        .until()
                        .into_iter()
                        .chain(b.ramp.next_step(now, window))
                })
            })
            .min()
    }

    pub(super) fn apply_timers(&mut self, now: Instant) {
        for p in 0..self.pools.len() {
            let mut changed = false;
            let window = self.pools[p].config.slow_start;
            for b in 0..self.pools[p].backends.len() {
                if self.pools[p].backends[b].ejection.is_due(now) {
                    self.end_ejection(p, b);
                    self.start_ramp(p, b);
                    self.set_condition(p, b, "ejection time over".to_owned(), None);
                    changed = true;
                }
                let runtime = &mut self.pools[p].backends[b];
                if runtime.ramp.is_running() {
                    changed |= runtime.refresh_weight(now, window);
                    runtime.ramp.finish_if_done(now, window);
                }
            }
            if changed {
                self.rebuild(p);
            }
        }
    }

    /// Recomputes a backend's condition from its exclusions; logs and publishes a change once.
    /// `ejection` records a new ejection (count, length) in the same status.
    pub(super) fn set_condition(
        &mut self,
        p: usize,
        b: usize,
        reason: String,
        ejection: Option<(u32, Duration)>,
    ) {
        let state = &self.pools[p].backends[b].state;
        let condition = if state.is(Exclusion::Unhealthy) {
            Condition::Unhealthy
        } else if state.is(Exclusion::Ejected) {
            Condition::Ejected
        } else {
            Condition::Healthy
        };
        let old = state.status();
        if old.condition == condition && ejection.is_none() {
            return;
        }
        let since = SystemTime::now();
        self.publisher.backend_changed(
            state,
            (old.condition.as_str(), condition.as_str()),
            &reason,
            condition != Condition::Healthy,
            since,
        );
        state.set_status(BackendStatus {
            condition,
            reason,
            since,
            ejections: ejection.map_or(old.ejections, |(count, _)| count),
            last_ejection: ejection.map(|(_, length)| length).or(old.last_ejection),
        });
    }

    pub(super) fn set_drain(&mut self, p: usize, b: usize, drain: bool) {
        let state = Arc::clone(&self.pools[p].backends[b].state);
        if state.is(Exclusion::Draining) == drain {
            return;
        }
        let from = state_name(&state);
        state.set(Exclusion::Draining, drain);
        self.rebuild(p);
        let reason = if drain { DRAINED } else { UNDRAINED };
        let to = state_name(&state);
        self.publisher
            .backend_changed(&state, (from, to), reason, false, SystemTime::now());
    }

    pub(super) fn set_weight(&mut self, p: usize, b: usize, weight: Option<u32>) {
        let window = self.pools[p].config.slow_start;
        let runtime = &mut self.pools[p].backends[b];
        runtime.weight_override = weight;
        runtime.refresh_weight(Instant::now(), window);
        let (pool, backend) = (
            runtime.state.pool.to_string(),
            runtime.state.name.to_string(),
        );
        tracing::info!(%pool, %backend, weight = ?weight, configured = runtime.config.weight.get(), "backend weight override changed");
        self.rebuild(p);
        self.publisher.emit(Event::Weight {
            pool,
            backend,
            weight,
            time: timestamp(SystemTime::now()),
        });
    }
}

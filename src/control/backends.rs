//! The single writer's decisions about individual backends, carried out on the registry:
//! probe verdicts, passive ejections and their end, slow-start steps, drains and weights.
//! What to decide comes from the pure `ejection` and `ramp` machines; this file applies it and
//! announces each resulting change of state once (`announce`).

use super::Control;
use super::ejection::Decision;
use super::registry::BackendRuntime;
use crate::events::Event;
use crate::health::{Report, ReportKind, Verdict};
use crate::upstream::{BackendState, BackendStatus, Drain, Exclusion, Mark, OutlierReport};
use crate::upstream::{State, timestamp};
use std::time::Duration;
use tokio::time::Instant;

/// How often a drain is checked for its last request ending.
const DRAIN_CHECK: Duration = Duration::from_millis(100);

impl Control {
    pub(super) fn apply_report(&mut self, report: Report) {
        let Some((p, b)) = self.find_state(&report.backend) else {
            return;
        };
        let backend = &report.backend;
        let reason = match report.kind {
            ReportKind::Verdict {
                verdict: Verdict::Unhealthy,
                detail,
            } => {
                backend.set(Exclusion::Unhealthy, true);
                update_status(backend, |s| s.unhealthy = Some(detail.clone()));
                detail
            }
            ReportKind::Verdict {
                verdict: Verdict::Healthy,
                detail,
            } => {
                backend.set(Exclusion::Unhealthy, false);
                update_status(backend, |s| s.unhealthy = None);
                // The probes saw the failure and then the recovery: that ends an ejection too.
                self.end_ejection(p, b);
                self.start_ramp(p, b);
                detail
            }
            ReportKind::PassedWhileEjected => {
                // Probes that never failed prove little about real traffic (a backend may fail
                // every POST and answer its GET probe): only where asked do they end an
                // ejection early.
                if !self.pools[p].config.outlier.uneject_on_probe || !self.end_ejection(p, b) {
                    return;
                }
                self.start_ramp(p, b);
                "active probe passed during ejection".to_owned()
            }
        };
        // The backend's change first, then what it does to the pool (panic mode).
        self.announce(p, b, &reason);
        self.rebuild(p);
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
        let failure = report.failure.as_str();
        let reason = format!("{} consecutive failures ({failure})", report.consecutive);
        let now = self.now.at;
        let runtime = &mut self.pools[p].backends[b];
        let duration = match runtime.ejection.consider(now, &outlier, ejected, size) {
            Decision::Eject { duration, .. } => duration,
            Decision::AlreadyEjected => return,
            Decision::Capped { first } => {
                if first {
                    let allowed = size * usize::from(outlier.max_ejection_percent) / 100;
                    tracing::warn!(
                        pool = %backend.pool, backend = %backend.name, %reason, ejected, allowed,
                        "not ejecting: max_ejection_percent reached"
                    );
                }
                // Shown as failing for as long as an ejection would have lasted, renewed by
                // each further threshold's worth of failures.
                runtime.held_in_until = Some(now + outlier.base_ejection_time);
                backend.mark(Mark::HeldIn, true);
                let detail = format!("{reason}; held in service: max_ejection_percent reached");
                update_status(backend, |s| s.held_in = Some(detail));
                return;
            }
        };
        clear_held_in(runtime);
        backend.set(Exclusion::Ejected, true);
        let reason = format!("{reason}; ejected for {duration:?}");
        update_status(backend, |s| s.ejected = Some(reason.clone()));
        runtime.counters.ejections[report.failure.index()].increment(1);
        self.announce(p, b, &reason);
        self.rebuild(p);
    }

    /// Ends a passive ejection; returns whether there was one.
    fn end_ejection(&mut self, p: usize, b: usize) -> bool {
        let now = self.now.at;
        let runtime = &mut self.pools[p].backends[b];
        let ended = runtime.ejection.end(now);
        if ended {
            runtime.state.set(Exclusion::Ejected, false);
            update_status(&runtime.state, |s| s.ejected = None);
        }
        ended
    }

    /// Starts a slow-start ramp, if the pool has slow start.
    pub(super) fn start_ramp(&mut self, p: usize, b: usize) {
        let window = self.pools[p].config.slow_start;
        let now = self.now.at;
        let runtime = &mut self.pools[p].backends[b];
        runtime.ramp.start(now, window);
        runtime
            .state
            .mark(Mark::SlowStart, runtime.ramp.is_running());
        runtime.refresh_weight(now, window);
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
        for p in 0..self.pools.len() {
            let window = self.pools[p].config.slow_start;
            for b in 0..self.pools[p].backends.len() {
                let mut reason = None;
                let mut rebuild = false;
                if self.pools[p].backends[b].ejection.is_due(now) {
                    self.end_ejection(p, b);
                    self.start_ramp(p, b);
                    reason = Some("ejection time over".to_owned());
                    rebuild = true;
                }
                let runtime = &mut self.pools[p].backends[b];
                if runtime.held_in_until.is_some_and(|until| until <= now) {
                    clear_held_in(runtime);
                }
                if runtime.ramp.is_running() {
                    rebuild |= runtime.refresh_weight(now, window);
                    if runtime.ramp.finish_if_done(now, window) {
                        runtime.state.mark(Mark::SlowStart, false);
                        reason.get_or_insert_with(|| "slow start finished".to_owned());
                    }
                }
                if runtime.drain_deadline.is_some_and(|at| at <= now) {
                    runtime.drain_deadline = None;
                    let cut = runtime.state.in_flight();
                    runtime.state.mark(Mark::DrainCut, true);
                    runtime.state.cut_connections();
                    reason = Some(format!(
                        "drain deadline reached: {cut} requests or tunnels still open were closed"
                    ));
                }
                let reason = reason.unwrap_or_else(|| "no request in flight".to_owned());
                self.announce(p, b, &reason);
                if rebuild {
                    self.rebuild(p);
                }
            }
        }
        self.remove_departed(now);
    }

    /// Announces backend `b`'s state if it differs from the one last announced: once, in the
    /// log, on the event stream and in the metrics, and from then on the state's `since`.
    pub(super) fn announce(&mut self, p: usize, b: usize, reason: &str) {
        let runtime = &mut self.pools[p].backends[b];
        let state = runtime.state.state();
        if state == runtime.announced {
            return;
        }
        let time = self.now.wall;
        let change = (runtime.announced, state);
        runtime.announced = state;
        runtime.counters.state_changes[state.index()].increment(1);
        update_status(&runtime.state, |s| s.since = time);
        self.publisher
            .backend_changed(&runtime.state, change, reason, time);
    }

    /// Stops new requests to a backend; with a deadline, closes what remains once it passes.
    /// Draining again replaces the deadline.
    pub(super) fn drain(&mut self, p: usize, b: usize, deadline: Option<Duration>, reason: &str) {
        let runtime = &mut self.pools[p].backends[b];
        let already = runtime.state.is(Exclusion::Draining);
        // Checked: a deadline the clock cannot reach is no deadline (inputs are bounded first).
        runtime.drain_deadline = deadline.and_then(|after| self.now.at.checked_add(after));
        let now = self.now.wall;
        update_status(&runtime.state, |s| {
            s.drain = Some(Drain {
                since: s
                    .drain
                    .as_ref()
                    .filter(|_| already)
                    .map_or(now, |d| d.since),
                reason: reason.to_owned(),
                deadline: deadline.and_then(|after| now.checked_add(after)),
            });
        });
        runtime.state.set(Exclusion::Draining, true);
        self.announce(p, b, reason);
        if !already {
            self.rebuild(p);
        }
    }

    /// Sends new requests to a drained backend again.
    pub(super) fn undrain(&mut self, p: usize, b: usize, reason: &str) {
        let runtime = &mut self.pools[p].backends[b];
        if !runtime.state.is(Exclusion::Draining) {
            return;
        }
        runtime.drain_deadline = None;
        runtime.state.set(Exclusion::Draining, false);
        runtime.state.mark(Mark::DrainCut, false);
        update_status(&runtime.state, |s| s.drain = None);
        self.announce(p, b, reason);
        self.rebuild(p);
    }

    pub(super) fn set_weight(&mut self, p: usize, b: usize, weight: Option<u32>) {
        let window = self.pools[p].config.slow_start;
        let runtime = &mut self.pools[p].backends[b];
        runtime.weight_override = weight;
        runtime.refresh_weight(self.now.at, window);
        self.rebuild(p);
        self.weight_changed(p, b);
    }

    /// Logs and announces backend `b`'s weight override (or its end).
    pub(super) fn weight_changed(&self, p: usize, b: usize) {
        let runtime = &self.pools[p].backends[b];
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

/// Ends a backend's showing as held in service by the ejection cap.
fn clear_held_in(runtime: &mut BackendRuntime) {
    if runtime.held_in_until.take().is_some() {
        runtime.state.mark(Mark::HeldIn, false);
        update_status(&runtime.state, |s| s.held_in = None);
    }
}

/// Changes the recorded reasons of a backend. Control plane only.
pub(super) fn update_status(backend: &BackendState, change: impl FnOnce(&mut BackendStatus)) {
    let mut status = BackendStatus::clone(&backend.status());
    change(&mut status);
    backend.set_status(status);
}

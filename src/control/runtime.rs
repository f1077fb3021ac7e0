//! The control plane's decisions carried out on one backend, or one pool, at the instant of the
//! event that led to them: probe verdicts, passive ejections and their end, slow-start steps,
//! drains, weights, and the announcement of each resulting state. What to decide comes from the
//! pure `ejection` and `ramp` machines; the time is always the caller's, never read here.

use super::Now;
use super::ejection::Decision;
use super::publish::Publisher;
use super::registry::{BackendRuntime, PoolRuntime};
use crate::upstream::{BackendState, BackendStatus, Drain, Exclusion, Mark, OutlierReport};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// What the timers due at one instant did to a backend.
#[derive(Debug, Default)]
pub(super) struct Timed {
    /// Why its state may have changed, if something happened to it.
    pub reason: Option<String>,
    /// Whether its pool needs a new snapshot.
    pub rebuild: bool,
}

impl BackendRuntime {
    /// Probes found it failing.
    pub fn probes_failed(&mut self, detail: &str) {
        self.state.set(Exclusion::Unhealthy, true);
        update_status(&self.state, |s| s.unhealthy = Some(detail.to_owned()));
    }

    /// Probes found it healthy again: after they saw it fail, that ends an ejection too.
    pub fn probes_passed(&mut self, now: Instant, window: Option<Duration>) {
        self.state.set(Exclusion::Unhealthy, false);
        update_status(&self.state, |s| s.unhealthy = None);
        self.end_ejection(now);
        self.start_ramp(now, window);
    }

    /// Ends a passive ejection; returns whether there was one.
    pub fn end_ejection(&mut self, now: Instant) -> bool {
        let ended = self.ejection.end(now);
        if ended {
            self.state.set(Exclusion::Ejected, false);
            update_status(&self.state, |s| s.ejected = None);
        }
        ended
    }

    /// Starts a slow-start ramp, if the pool has slow start (`window`).
    pub fn start_ramp(&mut self, now: Instant, window: Option<Duration>) {
        self.ramp.start(now, window);
        self.state.mark(Mark::SlowStart, self.ramp.is_running());
        self.refresh_weight(now, window);
    }

    /// Carries out what is due at `now`: an ejection ending, the cap's hold ending, a ramp
    /// step, a drain deadline.
    pub fn on_timers(&mut self, now: Instant, window: Option<Duration>) -> Timed {
        let mut timed = Timed::default();
        if self.ejection.is_due(now) {
            self.end_ejection(now);
            self.start_ramp(now, window);
            timed.reason = Some("ejection time over".to_owned());
            timed.rebuild = true;
        }
        if self.held_in_until.is_some_and(|until| until <= now) {
            self.clear_held_in();
        }
        if self.ramp.is_running() {
            timed.rebuild |= self.refresh_weight(now, window);
            if self.ramp.finish_if_done(now, window) {
                self.state.mark(Mark::SlowStart, false);
                timed
                    .reason
                    .get_or_insert_with(|| "slow start finished".to_owned());
            }
        }
        if self.drain_deadline.is_some_and(|at| at <= now) {
            self.drain_deadline = None;
            let cut = self.state.in_flight();
            self.state.mark(Mark::DrainCut, true);
            self.state.cut_connections();
            timed.reason = Some(format!(
                "drain deadline reached: {cut} requests or tunnels still open were closed"
            ));
        }
        timed
    }

    /// Announces its state if it differs from the one last announced: once, in the log, on the
    /// event stream and in the metrics, and from then on the state's `since`.
    pub fn announce(&mut self, publisher: &Publisher, time: SystemTime, reason: &str) {
        let state = self.state.state();
        if state == self.announced {
            return;
        }
        let change = (self.announced, state);
        self.announced = state;
        self.counters.state_changes[state.index()].increment(1);
        update_status(&self.state, |s| s.since = time);
        publisher.backend_changed(&self.state, change, reason, time);
    }

    /// Stops new requests to it; with a deadline, what remains is closed once it passes.
    /// Draining again replaces the deadline. Returns whether it was draining already.
    pub fn drain(&mut self, now: Now, deadline: Option<Duration>, reason: &str) -> bool {
        let already = self.state.is(Exclusion::Draining);
        // Checked: a deadline the clock cannot reach is no deadline (inputs are bounded first).
        self.drain_deadline = deadline.and_then(|after| now.at.checked_add(after));
        update_status(&self.state, |s| {
            s.drain = Some(Drain {
                since: s
                    .drain
                    .as_ref()
                    .filter(|_| already)
                    .map_or(now.wall, |d| d.since),
                reason: reason.to_owned(),
                deadline: deadline.and_then(|after| now.wall.checked_add(after)),
            });
        });
        self.state.set(Exclusion::Draining, true);
        already
    }

    /// Sends new requests to it again; returns whether it was draining.
    pub fn undrain(&mut self) -> bool {
        if !self.state.is(Exclusion::Draining) {
            return false;
        }
        self.drain_deadline = None;
        self.state.set(Exclusion::Draining, false);
        self.state.mark(Mark::DrainCut, false);
        update_status(&self.state, |s| s.drain = None);
        true
    }

    /// Sets (or, with `None`, clears) the operator's weight.
    pub fn set_weight(&mut self, now: Instant, window: Option<Duration>, weight: Option<u32>) {
        self.weight_override = weight;
        self.refresh_weight(now, window);
    }

    /// Ends its showing as held in service by the ejection cap.
    fn clear_held_in(&mut self) {
        if self.held_in_until.take().is_some() {
            self.state.mark(Mark::HeldIn, false);
            update_status(&self.state, |s| s.held_in = None);
        }
    }
}

impl PoolRuntime {
    /// A backend of this pool crossed a passive failure threshold: ejects it, holds it in
    /// service when the pool's `max_ejection_percent` is reached, or (already ejected) does
    /// nothing. Returns why, when it was ejected.
    pub fn consider_outlier(&mut self, report: &OutlierReport, now: Instant) -> Option<String> {
        let outlier = self.config.outlier;
        let ejected = self
            .backends
            .iter()
            .filter(|b| b.state.is(Exclusion::Ejected))
            .count();
        let size = self.backends.len();
        let runtime = self.backend_mut(report.backend.serial)?;
        let backend = std::sync::Arc::clone(&runtime.state);
        backend.reset_failure_counts();
        let failure = report.failure.as_str();
        let reason = format!("{} consecutive failures ({failure})", report.consecutive);
        let duration = match runtime.ejection.consider(now, &outlier, ejected, size) {
            Decision::Eject { duration, .. } => duration,
            Decision::AlreadyEjected => return None,
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
                update_status(&backend, |s| s.held_in = Some(detail));
                return None;
            }
        };
        runtime.clear_held_in();
        backend.set(Exclusion::Ejected, true);
        let reason = format!("{reason}; ejected for {duration:?}");
        update_status(&backend, |s| s.ejected = Some(reason.clone()));
        runtime.counters.ejections[report.failure.index()].increment(1);
        Some(reason)
    }
}

/// Changes the recorded reasons of a backend. Control plane only.
pub(super) fn update_status(backend: &BackendState, change: impl FnOnce(&mut BackendStatus)) {
    let mut status = BackendStatus::clone(&backend.status());
    change(&mut status);
    backend.set_status(status);
}

//! The control plane's single writer: it owns every backend's state decisions (health,
//! ejection, slow start, drains, weights, reloads) and is the only code that stores a new
//! `Snapshot`. Probers, the data plane and the admin API send it events and commands; it applies
//! them, logs and publishes each state change once, and swaps.

mod registry;
mod views;

pub use views::{
    BackendView, Event, PoolView, ProbeRecord, ReloadSummary, WeightView, state_name, timestamp,
};

use crate::balance::slow_start;
use crate::config::{Algorithm, BackendConfig, Config};
use crate::health::{self, ProbeTarget, Verdict};
use crate::metrics::{self, Metrics};
use crate::route::Router;
use crate::snapshot::{CertificateExpiry, Snapshot};
use crate::upstream::{BackendStatus, Condition, Exclusion, OutlierReport};
use arc_swap::ArcSwap;
use registry::{BackendRuntime, PoolRuntime};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::{broadcast, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What probe tasks report.
#[derive(Debug)]
pub enum ControlEvent {
    /// Active probes flipped a backend's health.
    HealthVerdict {
        /// The backend.
        backend: Arc<crate::upstream::BackendState>,
        /// Its new health.
        verdict: Verdict,
        /// Probe detail for logs and the API.
        detail: String,
    },
    /// A probe passed while the backend is ejected: it may return early.
    ProbePassed {
        /// The backend.
        backend: Arc<crate::upstream::BackendState>,
    },
}

/// Why a command could not find its target.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    /// No such pool.
    #[error("no pool named {0:?}")]
    Pool(String),
    /// No such backend in the pool.
    #[error("pool {0:?} has no backend named {1:?}")]
    Backend(String, String),
}

type Reply<T> = oneshot::Sender<Result<T, LookupError>>;

/// What the admin API and the reloader ask of the control plane.
#[derive(Debug)]
pub enum Command {
    /// Views of every pool, or of one.
    Describe {
        /// `None` for all pools.
        pool: Option<String>,
        /// The answer.
        reply: Reply<Vec<PoolView>>,
    },
    /// Change one backend, or only look at it.
    Backend {
        /// Pool name.
        pool: String,
        /// Backend name.
        backend: String,
        /// What to change.
        change: BackendChange,
        /// The backend afterwards.
        reply: Reply<BackendView>,
    },
    /// Apply a new, validated config.
    Apply {
        /// The config.
        config: Box<Config>,
        /// What changed.
        reply: oneshot::Sender<ReloadSummary>,
    },
}

/// What an operator changes about one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChange {
    /// Nothing: only its view.
    Nothing,
    /// Stop (`true`) or resume (`false`) sending it new requests.
    Drain(bool),
    /// Override its weight (`None`: back to the file's).
    Weight(Option<u32>),
}

/// Handles the rest of the proxy needs from the control plane.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    /// The snapshot the data plane reads.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Where the data plane reports passive failures past a threshold.
    pub outliers: UnboundedSender<OutlierReport>,
    /// Commands from the admin API and the reloader.
    pub commands: mpsc::Sender<Command>,
    /// Every state change and reload, for the event stream.
    pub events: broadcast::Sender<Event>,
}

impl ControlHandle {
    /// Sends `command` built around a reply channel and waits for the answer; `None` if the
    /// control plane has stopped.
    pub async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Publishes an event; having no subscriber is normal.
    pub fn publish(&self, event: Event) {
        let _no_subscribers = self.events.send(event);
    }
}

/// The single writer. Build with `Control::new`, then `run` it as a task.
#[derive(Debug)]
pub struct Control {
    pools: Vec<PoolRuntime>,
    router: Arc<Router>,
    /// The served certificates' expiries, derived once per config rather than per rebuild.
    certificates: Arc<[CertificateExpiry]>,
    config: Config,
    generation: u64,
    handle: ControlHandle,
    probe_events_tx: UnboundedSender<ControlEvent>,
    probe_events: UnboundedReceiver<ControlEvent>,
    outliers: UnboundedReceiver<OutlierReport>,
    commands: mpsc::Receiver<Command>,
    metrics: Metrics,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Control {
    /// Builds backend state and the first snapshot from `config`.
    pub fn new(
        config: &Config,
        metrics: &Metrics,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> (Self, ControlHandle) {
        let pools: Vec<PoolRuntime> = config
            .pools
            .iter()
            .map(|p| PoolRuntime::new(p, config, metrics))
            .collect();
        let router = router(config, &pools);
        let certificates = CertificateExpiry::of(config);
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot {
            router: Arc::clone(&router),
            pools: pools.iter().map(|p| Arc::new(p.build())).collect(),
            timeouts: config.timeouts,
            limits: config.limits,
            certificates: Arc::clone(&certificates),
        }));
        let (probe_events_tx, probe_events) = mpsc::unbounded_channel();
        let (outliers_tx, outliers) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::channel(64);
        let handle = ControlHandle {
            snapshot,
            outliers: outliers_tx,
            commands: commands_tx,
            events: broadcast::channel(1024).0,
        };
        let control = Self {
            pools,
            router,
            certificates,
            config: config.clone(),
            generation: 1,
            handle: handle.clone(),
            probe_events_tx,
            probe_events,
            outliers,
            commands,
            metrics: metrics.clone(),
            tasks,
            shutdown,
        };
        (control, handle)
    }

    /// Applies events and commands until shutdown.
    pub async fn run(mut self) {
        for pool in 0..self.pools.len() {
            for backend in 0..self.pools[pool].backends.len() {
                self.start_prober(pool, backend);
            }
        }
        let mut refill = tokio::time::interval(Duration::from_secs(1));
        refill.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                Some(event) = self.probe_events.recv() => self.apply_event(event),
                Some(report) = self.outliers.recv() => self.apply_outlier(report),
                Some(command) = self.commands.recv() => self.apply_command(command),
                () = sleep_until(deadline) => self.apply_timers(Instant::now()),
                _ = refill.tick() => {
                    for pool in &self.pools {
                        pool.policy.retry_budget.refill();
                    }
                }
                () = self.shutdown.cancelled() => break,
            }
        }
        for pool in &mut self.pools {
            for backend in &mut pool.backends {
                backend.stop_prober();
            }
        }
    }

    fn start_prober(&mut self, pool: usize, backend: usize) {
        let Some(check) = self.pools[pool].config.health_check.clone() else {
            return;
        };
        let stop = self.shutdown.child_token();
        let target = ProbeTarget {
            upstream: Arc::clone(&self.pools[pool].policy.upstream),
            dial: crate::upstream::pool::Dial::from(&self.config.timeouts),
        };
        let runtime = &mut self.pools[pool].backends[backend];
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
        self.tasks.spawn(health::probe_loop(
            Arc::clone(&runtime.state),
            check,
            target,
            Arc::clone(&runtime.last_probe),
            counters,
            self.probe_events_tx.clone(),
            stop,
        ));
    }

    fn find_state(&self, backend: &Arc<crate::upstream::BackendState>) -> Option<(usize, usize)> {
        self.pools.iter().enumerate().find_map(|(p, pool)| {
            pool.backends
                .iter()
                .position(|b| Arc::ptr_eq(&b.state, backend))
                .map(|b| (p, b))
        })
    }

    fn find(&self, pool: &str, backend: &str) -> Result<(usize, usize), LookupError> {
        let p = self
            .pools
            .iter()
            .position(|p| p.config.name == pool)
            .ok_or_else(|| LookupError::Pool(pool.to_owned()))?;
        let b = self.pools[p]
            .find(backend)
            .ok_or_else(|| LookupError::Backend(pool.to_owned(), backend.to_owned()))?;
        Ok((p, b))
    }

    fn apply_event(&mut self, event: ControlEvent) {
        match event {
            ControlEvent::HealthVerdict {
                backend,
                verdict,
                detail,
            } => {
                let Some((p, b)) = self.find_state(&backend) else {
                    return;
                };
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
            ControlEvent::ProbePassed { backend } => {
                let Some((p, b)) = self.find_state(&backend) else {
                    return;
                };
                if backend.is(Exclusion::Ejected) {
                    self.end_ejection(p, b);
                    self.start_ramp(p, b);
                    self.set_condition(
                        p,
                        b,
                        "active probe passed during ejection".to_owned(),
                        None,
                    );
                    self.rebuild(p);
                }
            }
        }
    }

    fn apply_command(&mut self, command: Command) {
        match command {
            Command::Describe { pool, reply } => {
                let views = match pool {
                    None => Ok(self.pools.iter().map(|p| self.pool_view(p)).collect()),
                    Some(name) => self
                        .pools
                        .iter()
                        .find(|p| p.config.name == name)
                        .map(|p| vec![self.pool_view(p)])
                        .ok_or(LookupError::Pool(name)),
                };
                respond(reply, views);
            }
            Command::Backend {
                pool,
                backend,
                change,
                reply,
            } => respond(reply, self.change_backend(&pool, &backend, change)),
            Command::Apply { config, reply } => {
                let summary = self.apply_config(*config);
                respond(reply, summary);
            }
        }
    }

    /// Finds a backend, applies `change` to it, and returns its view afterwards.
    fn change_backend(
        &mut self,
        pool: &str,
        backend: &str,
        change: BackendChange,
    ) -> Result<BackendView, LookupError> {
        let (p, b) = self.find(pool, backend)?;
        match change {
            BackendChange::Nothing => {}
            BackendChange::Drain(drain) => self.set_drain(p, b, drain),
            BackendChange::Weight(weight) => self.set_weight(p, b, weight),
        }
        Ok(backend_view(&self.pools[p].backends[b]))
    }

    fn set_drain(&mut self, p: usize, b: usize, drain: bool) {
        let state = Arc::clone(&self.pools[p].backends[b].state);
        if state.is(Exclusion::Draining) == drain {
            return;
        }
        let from = state_name(&state);
        state.set(Exclusion::Draining, drain);
        self.rebuild(p);
        let reason = if drain { DRAINED } else { UNDRAINED };
        let to = state_name(&state);
        self.announce(&state, (from, to), reason, false, SystemTime::now());
    }

    /// Logs a backend's state change (as a warning when `failure` took it out of service) and
    /// publishes it on the event stream.
    fn announce(
        &self,
        state: &crate::upstream::BackendState,
        (from, to): (&'static str, &'static str),
        reason: &str,
        failure: bool,
        time: SystemTime,
    ) {
        if failure {
            tracing::warn!(pool = %state.pool, backend = %state.name, from, to, %reason, "backend state changed");
        } else {
            tracing::info!(pool = %state.pool, backend = %state.name, from, to, %reason, "backend state changed");
        }
        self.handle.publish(Event::Backend {
            pool: state.pool.to_string(),
            backend: state.name.to_string(),
            from,
            to,
            reason: reason.to_owned(),
            time: timestamp(time),
        });
    }

    fn set_weight(&mut self, p: usize, b: usize, weight: Option<u32>) {
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
        self.handle.publish(Event::Weight {
            pool,
            backend,
            weight,
            time: timestamp(SystemTime::now()),
        });
    }

    /// Reconciles the registry with a new config. Backends keep their state when pool, name and
    /// address are unchanged; their runtime overrides survive unless the file changed them.
    fn apply_config(&mut self, config: Config) -> ReloadSummary {
        let now = Instant::now();
        let mut summary = ReloadSummary::default();
        let mut old: HashMap<String, PoolRuntime> = self
            .pools
            .drain(..)
            .map(|p| (p.config.name.clone(), p))
            .collect();
        let mut needs_prober: Vec<(usize, usize)> = Vec::new();
        let mut pools = Vec::new();
        for pool_config in &config.pools {
            let p = pools.len();
            let Some(mut runtime) = old.remove(&pool_config.name) else {
                summary.pools_added.push(pool_config.name.clone());
                let runtime = PoolRuntime::new(pool_config, &config, &self.metrics);
                needs_prober.extend((0..runtime.backends.len()).map(|b| (p, b)));
                pools.push(runtime);
                continue;
            };
            // Probes speak the pool's protocol: new connection settings restart them too.
            let probes_changed = runtime.config.health_check != pool_config.health_check
                || runtime.config.upstream != pool_config.upstream;
            let mut previous = std::mem::take(&mut runtime.backends);
            for backend_config in &pool_config.backends {
                let label = format!("{}/{}", pool_config.name, backend_config.name);
                let b = runtime.backends.len();
                match previous
                    .iter()
                    .position(|r| r.is_same_backend(backend_config))
                {
                    Some(i) => {
                        let mut kept = previous.swap_remove(i);
                        if kept.config != *backend_config {
                            self.file_changed_backend(
                                &mut kept,
                                backend_config,
                                &label,
                                &mut summary,
                            );
                        }
                        if probes_changed {
                            needs_prober.push((p, b));
                        }
                        runtime.backends.push(kept);
                    }
                    None => {
                        summary.backends_added.push(label);
                        let healthy = registry::starts_healthy(pool_config);
                        let mut added = BackendRuntime::new(
                            &runtime.name,
                            backend_config,
                            healthy,
                            &self.metrics,
                        );
                        if pool_config.slow_start.is_some() {
                            added.ramp_started = Some(now);
                        }
                        needs_prober.push((p, b));
                        runtime.backends.push(added);
                    }
                }
            }
            for mut removed in previous {
                removed.stop_prober();
                summary
                    .backends_removed
                    .push(format!("{}/{}", pool_config.name, removed.config.name));
            }
            runtime.update_config(pool_config, &config, &self.metrics);
            if pool_config.health_check.is_none() {
                for backend in &mut runtime.backends {
                    // Nothing would ever bring an unhealthy backend back without probes.
                    backend.stop_prober();
                    backend.state.set(Exclusion::Unhealthy, false);
                }
            }
            for backend in &runtime.backends {
                backend.refresh_weight(now, pool_config.slow_start);
            }
            pools.push(runtime);
        }
        for (name, mut removed) in old {
            for backend in &mut removed.backends {
                backend.stop_prober();
            }
            summary.pools_removed.push(name);
        }
        self.pools = pools;
        self.router = router(&config, &self.pools);
        self.certificates = CertificateExpiry::of(&config);
        self.config = config;
        self.generation += 1;
        summary.generation = self.generation;
        for (p, b) in needs_prober {
            self.start_prober(p, b);
        }
        for p in 0..self.pools.len() {
            for b in 0..self.pools[p].backends.len() {
                self.set_condition(p, b, "config reloaded".to_owned(), None);
            }
        }
        self.swap_all();
        summary
    }

    fn file_changed_backend(
        &self,
        kept: &mut BackendRuntime,
        config: &BackendConfig,
        label: &str,
        summary: &mut ReloadSummary,
    ) {
        if kept.config.weight != config.weight {
            summary.backends_reweighted.push(label.to_owned());
        }
        // The file now says something new about this backend: it wins over runtime overrides.
        kept.weight_override = None;
        kept.state.set(Exclusion::Draining, false);
        kept.state.update_limits(config);
        kept.config = config.clone();
    }

    fn apply_outlier(&mut self, report: OutlierReport) {
        let Some((p, b)) = self.find_state(&report.backend) else {
            return;
        };
        let backend = &report.backend;
        backend.reset_failure_counts();
        if backend.is(Exclusion::Ejected) {
            return;
        }
        let pool = &self.pools[p];
        let outlier = pool.config.outlier;
        let ejected = pool
            .backends
            .iter()
            .filter(|b| b.state.is(Exclusion::Ejected))
            .count();
        let allowed = pool.backends.len() * usize::from(outlier.max_ejection_percent) / 100;
        let reason = format!(
            "{} consecutive {}s",
            report.consecutive,
            report.failure.as_str()
        );
        if ejected + 1 > allowed {
            // Said once per backend until an ejection goes through, not at every threshold.
            let runtime = &mut self.pools[p].backends[b];
            if !runtime.ejection_capped {
                runtime.ejection_capped = true;
                let pool = &self.pools[p];
                tracing::warn!(
                    pool = %pool.name, backend = %backend.name, %reason, ejected, allowed,
                    "not ejecting: max_ejection_percent reached"
                );
            }
            return;
        }
        self.pools[p].backends[b].ejection_capped = false;
        let now = Instant::now();
        let runtime = &mut self.pools[p].backends[b];
        let mut ejections = backend.status().ejections;
        if runtime
            .last_ejection_end
            .is_some_and(|end| now.duration_since(end) >= outlier.max_ejection_time)
        {
            ejections = 0; // quiet for long enough: start the doubling again
        }
        ejections += 1;
        let duration = outlier
            .base_ejection_time
            .saturating_mul(1 << (ejections - 1).min(16))
            .min(outlier.max_ejection_time);
        runtime.ejected_until = Some(now + duration);
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
            Some((ejections, duration)),
        );
        self.rebuild(p);
    }

    fn end_ejection(&mut self, p: usize, b: usize) {
        let runtime = &mut self.pools[p].backends[b];
        if runtime.ejected_until.take().is_some() {
            runtime.last_ejection_end = Some(Instant::now());
            runtime.state.set(Exclusion::Ejected, false);
        }
    }

    fn start_ramp(&mut self, p: usize, b: usize) {
        let window = self.pools[p].config.slow_start;
        if window.is_none() {
            return;
        }
        let runtime = &mut self.pools[p].backends[b];
        let now = Instant::now();
        runtime.ramp_started = Some(now);
        runtime.refresh_weight(now, window);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pools
            .iter()
            .flat_map(|pool| {
                let step = pool.config.slow_start.map(ramp_step);
                pool.backends.iter().flat_map(move |b| {
                    let ramp = b.ramp_started.zip(step).map(|(started, step)| {
                        let steps_done = started.elapsed().as_nanos() / step.as_nanos();
                        started + step * u32::try_from(steps_done + 1).unwrap_or(u32::MAX)
                    });
                    b.ejected_until.into_iter().chain(ramp)
                })
            })
            .min()
    }

    fn apply_timers(&mut self, now: Instant) {
        for p in 0..self.pools.len() {
            let mut changed = false;
            for b in 0..self.pools[p].backends.len() {
                if self.pools[p].backends[b]
                    .ejected_until
                    .is_some_and(|until| until <= now)
                {
                    self.end_ejection(p, b);
                    self.start_ramp(p, b);
                    self.set_condition(p, b, "ejection time over".to_owned(), None);
                    changed = true;
                }
                let window = self.pools[p].config.slow_start;
                let runtime = &mut self.pools[p].backends[b];
                if let (Some(started), Some(window)) = (runtime.ramp_started, window) {
                    changed |= runtime.refresh_weight(now, Some(window));
                    if now.duration_since(started) >= window {
                        runtime.ramp_started = None;
                    }
                }
            }
            if changed {
                self.rebuild(p);
            }
        }
    }

    /// Recomputes a backend's condition from its exclusions; logs and publishes a change once.
    /// `ejection` records a new ejection (count, length) in the same status.
    fn set_condition(
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
        self.announce(
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

    /// Rebuilds pool `p` and swaps in a snapshot that shares everything else.
    fn rebuild(&mut self, p: usize) {
        let mut pools = self.handle.snapshot.load().pools.clone();
        pools[p] = self.build_pool(p);
        self.store(pools);
    }

    /// Rebuilds every pool and the router (after a reload).
    fn swap_all(&mut self) {
        let pools = (0..self.pools.len()).map(|p| self.build_pool(p)).collect();
        self.store(pools);
    }

    fn build_pool(&mut self, p: usize) -> Arc<crate::snapshot::Pool> {
        let pool = Arc::new(self.pools[p].build());
        self.note_pool(p, &pool);
        pool
    }

    /// Swaps in the snapshot of `pools` with the current router and timeouts.
    fn store(&self, pools: Vec<Arc<crate::snapshot::Pool>>) {
        self.handle.snapshot.store(Arc::new(Snapshot {
            router: Arc::clone(&self.router),
            pools,
            timeouts: self.config.timeouts,
            limits: self.config.limits,
            certificates: Arc::clone(&self.certificates),
        }));
    }

    /// Logs panic-mode changes and empty pools.
    fn note_pool(&mut self, p: usize, pool: &crate::snapshot::Pool) {
        let runtime = &mut self.pools[p];
        if pool.panic != runtime.panic {
            runtime.panic = pool.panic;
            if pool.panic {
                tracing::warn!(pool = %runtime.name, eligible = pool.eligible_count(), "pool entered panic mode: ignoring health");
            } else {
                tracing::info!(pool = %runtime.name, "pool left panic mode");
            }
        }
        if pool.eligible_count() == 0 {
            tracing::error!(pool = %runtime.name, "no backend is eligible: requests get 503");
        }
    }

    fn pool_view(&self, pool: &PoolRuntime) -> PoolView {
        let live = self.handle.snapshot.load();
        let eligible = live
            .pools
            .iter()
            .find(|p| Arc::ptr_eq(&p.name, &pool.name))
            .map_or(0, |p| p.eligible_count());
        PoolView {
            name: pool.config.name.clone(),
            algorithm: match pool.config.algorithm {
                Algorithm::WeightedRoundRobin => "weighted_round_robin",
                Algorithm::LeastConnections => "least_connections",
            },
            panic: pool.panic,
            eligible,
            backends: pool.backends.iter().map(backend_view).collect(),
        }
    }
}

fn backend_view(runtime: &BackendRuntime) -> BackendView {
    let state = &runtime.state;
    let status = state.status();
    BackendView {
        name: runtime.config.name.clone(),
        address: runtime.config.address.to_string(),
        state: state_name(state),
        reason: if state.is(Exclusion::Draining) {
            DRAINED.to_owned()
        } else {
            status.reason.clone()
        },
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
        ejections: status.ejections,
        last_probe: runtime.last_probe.load_full().map(|p| (*p).clone()),
    }
}

/// The reason given for an operator's drain, and for its end.
const DRAINED: &str = "drained through the admin API";
const UNDRAINED: &str = "undrained through the admin API";

/// Answers a command; an asker that has gone away (a closed admin connection) is not an error.
fn respond<T>(reply: oneshot::Sender<T>, value: T) {
    if reply.send(value).is_err() {
        tracing::debug!("command answered after its asker went away");
    }
}

fn router(config: &Config, pools: &[PoolRuntime]) -> Arc<Router> {
    let index: HashMap<&str, usize> = pools
        .iter()
        .enumerate()
        .map(|(i, p)| (&*p.name, i))
        .collect();
    Arc::new(Router::new(&config.routes, |name| index.get(name).copied()))
}

/// How often a ramping weight is recomputed: often enough for smooth steps, rarely enough to
/// keep snapshot rebuilds cheap.
fn ramp_step(window: Duration) -> Duration {
    (window / slow_start::SCALE).max(Duration::from_millis(50))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

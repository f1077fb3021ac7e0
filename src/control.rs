//! The control plane's single writer: it owns every backend's state decisions (health,
//! ejection, slow start) and is the only code that stores a new `Snapshot`. Probers and the data
//! plane send it events; it applies them, logs each state change once, and swaps.

use crate::balance::slow_start;
use crate::config::{Config, InitialState, PoolConfig};
use crate::health::{self, ProbeClient, Verdict};
use crate::route::Router;
use crate::snapshot::{Pool, PoolPolicy, Snapshot};
use crate::upstream::{
    BackendState, BackendStatus, Condition, Exclusion, OutlierReport, RetryBudget,
};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Something the control plane must act on.
#[derive(Debug)]
pub enum ControlEvent {
    /// Active probes flipped a backend's health.
    HealthVerdict {
        /// The backend.
        backend: Arc<BackendState>,
        /// Its new health.
        verdict: Verdict,
        /// Probe detail for logs and the API.
        detail: String,
    },
    /// A probe passed while the backend is ejected: it may return early.
    ProbePassed {
        /// The backend.
        backend: Arc<BackendState>,
    },
}

/// Handles the rest of the proxy needs from the control plane.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    /// The snapshot the data plane reads.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Where the data plane reports passive failures past a threshold.
    pub outliers: UnboundedSender<OutlierReport>,
}

/// Per-backend bookkeeping only the control plane needs.
#[derive(Debug)]
struct BackendRuntime {
    state: Arc<BackendState>,
    ejected_until: Option<Instant>,
    /// When the last ejection ended; the doubling resets after a quiet `max_ejection_time`.
    last_ejection_end: Option<Instant>,
    ramp_started: Option<Instant>,
    prober: Option<CancellationToken>,
}

#[derive(Debug)]
struct PoolRuntime {
    config: PoolConfig,
    name: Arc<str>,
    policy: PoolPolicy,
    backends: Vec<BackendRuntime>,
    panic: bool,
}

/// The single writer. Build with `Control::new`, then `run` it as a task.
#[derive(Debug)]
pub struct Control {
    pools: Vec<PoolRuntime>,
    router: Arc<Router>,
    config: Config,
    snapshot: Arc<ArcSwap<Snapshot>>,
    events_tx: UnboundedSender<ControlEvent>,
    events: UnboundedReceiver<ControlEvent>,
    outliers: UnboundedReceiver<OutlierReport>,
    probe_client: ProbeClient,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Control {
    /// Builds backend state and the first snapshot from `config`.
    pub fn new(
        config: &Config,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> (Self, ControlHandle) {
        let pools: Vec<PoolRuntime> = config.pools.iter().map(pool_runtime).collect();
        let pool_index: HashMap<&str, usize> = pools
            .iter()
            .enumerate()
            .map(|(i, p)| (&*p.name, i))
            .collect();
        let router = Arc::new(Router::new(&config.routes, |name| {
            pool_index.get(name).copied()
        }));
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot {
            router: Arc::clone(&router),
            pools: pools.iter().map(|p| Arc::new(build_pool(p))).collect(),
            timeouts: config.timeouts,
        }));
        let (events_tx, events) = mpsc::unbounded_channel();
        let (outliers_tx, outliers) = mpsc::unbounded_channel();
        let control = Self {
            pools,
            router,
            config: config.clone(),
            snapshot: Arc::clone(&snapshot),
            events_tx,
            events,
            outliers,
            probe_client: health::probe_client(),
            tasks,
            shutdown,
        };
        (
            control,
            ControlHandle {
                snapshot,
                outliers: outliers_tx,
            },
        )
    }

    /// Applies events until shutdown.
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
                Some(event) = self.events.recv() => self.apply_event(event),
                Some(report) = self.outliers.recv() => self.apply_outlier(report),
                () = sleep_until(deadline) => self.apply_timers(Instant::now()),
                _ = refill.tick() => {
                    for pool in &self.pools {
                        pool.policy.retry_budget.refill();
                    }
                }
                () = self.shutdown.cancelled() => break,
            }
        }
        for pool in &self.pools {
            for backend in &pool.backends {
                if let Some(stop) = &backend.prober {
                    stop.cancel();
                }
            }
        }
    }

    fn start_prober(&mut self, pool: usize, backend: usize) {
        let Some(check) = self.pools[pool].config.health_check.clone() else {
            return;
        };
        let stop = self.shutdown.child_token();
        let runtime = &mut self.pools[pool].backends[backend];
        runtime.prober = Some(stop.clone());
        self.tasks.spawn(health::probe_loop(
            Arc::clone(&runtime.state),
            check,
            self.probe_client.clone(),
            self.events_tx.clone(),
            stop,
        ));
    }

    fn find(&self, backend: &Arc<BackendState>) -> Option<(usize, usize)> {
        self.pools.iter().enumerate().find_map(|(p, pool)| {
            pool.backends
                .iter()
                .position(|b| Arc::ptr_eq(&b.state, backend))
                .map(|b| (p, b))
        })
    }

    fn apply_event(&mut self, event: ControlEvent) {
        match event {
            ControlEvent::HealthVerdict {
                backend,
                verdict,
                detail,
            } => {
                let Some((p, b)) = self.find(&backend) else {
                    return;
                };
                let unhealthy = verdict == Verdict::Unhealthy;
                backend.set(Exclusion::Unhealthy, unhealthy);
                if !unhealthy {
                    // Passing probes also end a passive ejection early (Envoy's default).
                    self.end_ejection(p, b);
                    self.start_ramp(p, b);
                }
                self.set_condition(p, b, detail);
                self.rebuild(p);
            }
            ControlEvent::ProbePassed { backend } => {
                let Some((p, b)) = self.find(&backend) else {
                    return;
                };
                if backend.is(Exclusion::Ejected) {
                    self.end_ejection(p, b);
                    self.start_ramp(p, b);
                    self.set_condition(p, b, "active probe passed during ejection".to_owned());
                    self.rebuild(p);
                }
            }
        }
    }

    fn apply_outlier(&mut self, report: OutlierReport) {
        let Some((p, b)) = self.find(&report.backend) else {
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
            tracing::warn!(
                pool = %pool.name, backend = %backend.name, %reason, ejected, allowed,
                "not ejecting: max_ejection_percent reached"
            );
            return;
        }
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
        self.record_condition(
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
        let Some(window) = self.pools[p].config.slow_start else {
            return;
        };
        let runtime = &mut self.pools[p].backends[b];
        runtime.ramp_started = Some(Instant::now());
        let state = &runtime.state;
        state.set_effective_weight(slow_start::ramped_weight(
            state.weight,
            Duration::ZERO,
            window,
        ));
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pools
            .iter()
            .flat_map(|pool| {
                let ramp_step = pool.config.slow_start.map(ramp_step);
                pool.backends.iter().flat_map(move |b| {
                    let ramp = b.ramp_started.zip(ramp_step).map(|(s, step)| {
                        let elapsed = s.elapsed();
                        s + (elapsed.as_nanos() / step.as_nanos() + 1) as u32 * step
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
                    self.set_condition(p, b, "ejection time over".to_owned());
                    changed = true;
                }
                let window = self.pools[p].config.slow_start;
                let runtime = &mut self.pools[p].backends[b];
                if let (Some(started), Some(window)) = (runtime.ramp_started, window) {
                    let elapsed = now.duration_since(started);
                    let weight = slow_start::ramped_weight(runtime.state.weight, elapsed, window);
                    if weight != runtime.state.effective_weight() {
                        runtime.state.set_effective_weight(weight);
                        changed = true;
                    }
                    if elapsed >= window {
                        runtime.ramp_started = None;
                    }
                }
            }
            if changed {
                self.rebuild(p);
            }
        }
    }

    /// Recomputes a backend's condition from its exclusions and logs the change, once.
    fn set_condition(&mut self, p: usize, b: usize, reason: String) {
        self.record_condition(p, b, reason, None);
    }

    /// `set_condition`, also recording a new ejection (count, length) in the same status.
    fn record_condition(
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
        match condition {
            Condition::Healthy => tracing::info!(
                pool = %state.pool, backend = %state.name, from = old.condition.as_str(),
                to = condition.as_str(), %reason, "backend state changed"
            ),
            Condition::Unhealthy | Condition::Ejected => tracing::warn!(
                pool = %state.pool, backend = %state.name, from = old.condition.as_str(),
                to = condition.as_str(), %reason, "backend state changed"
            ),
        }
        state.set_status(BackendStatus {
            condition,
            reason,
            since: SystemTime::now(),
            ejections: ejection.map_or(old.ejections, |(count, _)| count),
            last_ejection: ejection.map(|(_, length)| length).or(old.last_ejection),
        });
    }

    /// Rebuilds pool `p` and swaps in a snapshot that shares everything else.
    fn rebuild(&mut self, p: usize) {
        let pool = Arc::new(build_pool(&self.pools[p]));
        let runtime = &mut self.pools[p];
        if pool.panic != runtime.panic {
            runtime.panic = pool.panic;
            tracing::warn!(
                pool = %runtime.name, panic = pool.panic, eligible = pool.eligible_count(),
                "pool panic mode {}", if pool.panic { "entered: ignoring health" } else { "left" }
            );
        }
        if pool.eligible_count() == 0 {
            tracing::error!(pool = %runtime.name, "no backend is eligible: requests get 503");
        }
        let current = self.snapshot.load();
        let mut pools = current.pools.clone();
        pools[p] = pool;
        self.snapshot.store(Arc::new(Snapshot {
            router: Arc::clone(&self.router),
            pools,
            timeouts: self.config.timeouts,
        }));
    }
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

fn pool_runtime(config: &PoolConfig) -> PoolRuntime {
    let name: Arc<str> = config.name.as_str().into();
    let healthy = config
        .health_check
        .as_ref()
        .is_none_or(|check| check.initial_state == InitialState::Healthy);
    PoolRuntime {
        backends: config
            .backends
            .iter()
            .map(|b| BackendRuntime {
                state: Arc::new(BackendState::new(Arc::clone(&name), b, healthy)),
                ejected_until: None,
                last_ejection_end: None,
                ramp_started: None,
                prober: None,
            })
            .collect(),
        policy: PoolPolicy {
            algorithm: config.algorithm,
            retries: config.retries,
            outlier: config.outlier,
            panic_threshold: config.panic_threshold,
            retry_budget: Arc::new(RetryBudget::new(config.retry_budget)),
        },
        config: config.clone(),
        name,
        panic: false,
    }
}

fn build_pool(runtime: &PoolRuntime) -> Pool {
    Pool::build(
        Arc::clone(&runtime.name),
        runtime
            .backends
            .iter()
            .map(|b| Arc::clone(&b.state))
            .collect(),
        runtime.policy.clone(),
    )
}

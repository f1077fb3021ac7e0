//! The control plane's single writer: it owns every backend's state decisions (health,
//! ejection, slow start, drains, weights, reloads) and is the only code that stores a new
//! `Snapshot`. Probers, the data plane and the admin API send it reports and commands; this
//! file is its event loop. The decisions themselves are pure and live apart: `ejection`,
//! `ramp` and `reconcile`; `backends` and `apply` carry them out on the registry; `publish`
//! stores snapshots and announces changes; `views` is what the outside reads.

mod apply;
mod backends;
mod diff;
mod ejection;
mod handle;
mod membership;
mod publish;
mod ramp;
mod reconcile;
mod registry;
mod shared;
mod views;

pub use crate::events::{
    Event, EventLog, Membership, NotApplied, Numbered, ReloadResult, ReloadSummary,
};
pub use diff::diff;
pub use handle::{BackendChange, Command, ControlHandle, LookupError};
pub use views::{BackendView, DrainView, PoolView, Reason, WeightView};

use crate::config::Config;
use crate::discovery::Discovered;
use crate::fleet::Override;
use crate::health::Report;
use crate::metrics::Metrics;
use crate::route::Router;
use crate::snapshot::{CertificateExpiry, Snapshot};
use crate::upstream::{OutlierReport, State};
use arc_swap::ArcSwap;
use publish::Publisher;
use registry::PoolRuntime;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The single writer. Build with `Control::new`, then `run` it as a task.
#[derive(Debug)]
pub struct Control {
    pools: Vec<PoolRuntime>,
    router: Arc<Router>,
    /// The served certificates' expiries, derived once per config rather than per rebuild.
    certificates: Arc<[CertificateExpiry]>,
    config: Config,
    generation: u64,
    publisher: Publisher,
    notifier: crate::notify::Notifier,
    reports_tx: UnboundedSender<Report>,
    reports: UnboundedReceiver<Report>,
    outliers: UnboundedReceiver<OutlierReport>,
    commands: mpsc::Receiver<Command>,
    discovered_tx: UnboundedSender<Discovered>,
    discovered: UnboundedReceiver<Discovered>,
    /// Numbers discovery tasks, so that a replaced task's late report is ignored.
    discovery_epoch: u64,
    /// Where operator changes go to be shared, in fleet mode.
    fleet: Option<UnboundedSender<Override>>,
    /// Changes stored by the fleet.
    shared_rx: UnboundedReceiver<Override>,
    /// The latest shared change of each (pool, backend), also for backends not (yet) here.
    shared: HashMap<(String, String), Override>,
    /// This replica's name in shared changes.
    replica: String,
    /// Where periodic checks' grid starts.
    origin: Instant,
    /// The time of the event being handled, read once when it arrives: every decision it
    /// leads to sees the same instant, and no handler reads the clock itself.
    now: Now,
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
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (outliers_tx, outliers) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::channel(64);
        let handle = ControlHandle {
            snapshot,
            outliers: outliers_tx,
            commands: commands_tx,
            events: Arc::default(),
        };
        let notifier = crate::notify::Notifier::new(
            &config.webhooks,
            Arc::clone(&handle.events),
            metrics.clone(),
            tasks.clone(),
            shutdown.clone(),
        );
        let (discovered_tx, discovered) = mpsc::unbounded_channel();
        let (shared_tx, shared_rx) = mpsc::unbounded_channel();
        let fleet = config.fleet.as_ref().map(|fleet| {
            let (_, _, events) = handle.events.subscribe(None);
            crate::fleet::spawn(fleet, shared_tx, events, metrics, &tasks, shutdown.clone())
        });
        let replica = config
            .fleet
            .as_ref()
            .map_or_else(String::new, |f| f.replica.clone());
        let control = Self {
            notifier,
            discovered_tx,
            discovered,
            discovery_epoch: 0,
            fleet,
            shared_rx,
            shared: HashMap::new(),
            replica,
            origin: Instant::now(),
            now: Now::read(),
            pools,
            router,
            certificates,
            config: config.clone(),
            generation: 1,
            publisher: Publisher::new(Arc::clone(&handle.snapshot), Arc::clone(&handle.events)),
            reports_tx,
            reports,
            outliers,
            commands,
            metrics: metrics.clone(),
            tasks,
            shutdown,
        };
        (control, handle)
    }

    /// Applies reports and commands until shutdown.
    pub async fn run(mut self) {
        for pool in &self.pools {
            let in_service = pool
                .backends
                .iter()
                .filter(|b| matches!(b.state.state(), State::Healthy | State::SlowStart))
                .count();
            tracing::info!(
                pool = %pool.config.name,
                algorithm = pool.config.algorithm.as_str(),
                backends = pool.backends.len(),
                in_service,
                probes = pool.config.health_check.is_some(),
                discovery = pool.config.discovery.is_some(),
                "pool ready"
            );
        }
        for pool in 0..self.pools.len() {
            for backend in 0..self.pools[pool].backends.len() {
                self.start_prober(pool, backend, false);
            }
            self.follow_discovery(pool);
        }
        let mut refill = tokio::time::interval(Duration::from_secs(1));
        refill.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let deadline = self.next_deadline(Instant::now());
            tokio::select! {
                Some(report) = self.reports.recv() => self.at_now().apply_report(report),
                Some(report) = self.outliers.recv() => self.at_now().apply_outlier(report),
                Some(command) = self.commands.recv() => self.at_now().apply_command(command),
                Some(found) = self.discovered.recv() => self.at_now().apply_discovered(found),
                Some(change) = self.shared_rx.recv() => self.at_now().apply_shared(change),
                () = sleep_until(deadline) => {
                    let now = self.at_now().now.at;
                    self.apply_timers(now);
                }
                _ = refill.tick() => {
                    for pool in &self.pools {
                        pool.policy.retry_budget.refill();
                    }
                }
                () = self.shutdown.cancelled() => break,
            }
        }
        for pool in &mut self.pools {
            pool.stop_tasks();
        }
    }

    /// Stamps the event about to be handled with the time.
    fn at_now(&mut self) -> &mut Self {
        self.now = Now::read();
        self
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
                self.publisher.emit(Event::Reload {
                    result: ReloadResult::Applied,
                    problems: Vec::new(),
                    time: crate::events::timestamp(self.now.wall),
                    changes: Some(summary.clone()),
                });
                respond(reply, summary);
            }
            Command::Rejected { problems } => self.publisher.emit(Event::Reload {
                result: ReloadResult::Rejected,
                problems,
                time: crate::events::timestamp(self.now.wall),
                changes: None,
            }),
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
            BackendChange::Drain(deadline) => self.drain(p, b, deadline, views::DRAINED),
            BackendChange::Undrain => self.undrain(p, b, views::UNDRAINED),
            BackendChange::Weight(weight) => self.set_weight(p, b, weight),
        }
        if change != BackendChange::Nothing {
            self.share(p, b);
        }
        Ok(views::backend_view(&self.pools[p].backends[b]))
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
}

/// The time of one event, on both clocks: the monotonic one for deadlines and durations, the
/// wall clock for what is shown and shared.
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    /// Monotonic.
    pub at: Instant,
    /// Wall clock.
    pub wall: SystemTime,
}

impl Now {
    fn read() -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

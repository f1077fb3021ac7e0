//! The control plane's single writer: it owns every backend's state decisions (health,
//! ejection, slow start, drains, weights, reloads) and is the only code that stores a new
//! `Snapshot`. Probers, the data plane and the admin API send it reports and commands; this
//! file is its event loop. The decisions themselves are pure and live apart: `ejection`,
//! `ramp` and `reconcile`. The registry (`registry`) holds pools keyed by name and backends
//! known by `BackendKey`, which every report and command carries; `runtime` carries decisions
//! out on one backend or pool at the event's instant; `backends`, `apply`, `membership` and
//! `shared` are the handlers that find the backend and call it; `publish` stores snapshots and
//! announces changes; `views` is what the outside reads.
//!
//! Longer than most files on purpose: the control task's state, its construction and its event
//! loop read together; the handlers live in the sibling files.

mod apply;
mod backends;
mod diff;
mod ejection;
mod handle;
mod membership;
mod pool_policy;
mod publish;
mod ramp;
mod reconcile;
mod registry;
mod runtime;
mod shared;
#[cfg(test)]
mod timing_tests;
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
use crate::route::access::Shelf;
use crate::snapshot::{CertificateExpiry, Snapshot};
use crate::upstream::sticky_keys::FleetKeys;
use crate::upstream::{BackendKey, OutlierReport, State};
use arc_swap::ArcSwap;
use publish::Publisher;
use registry::{PoolRuntime, Pools};
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
    pools: Pools,
    router: Arc<Router>,
    /// The served certificates' expiries, derived once per config rather than per rebuild.
    certificates: Arc<[CertificateExpiry]>,
    config: Config,
    generation: u64,
    publisher: Publisher,
    notifier: crate::notify::Notifier,
    inbox: Inbox,
    /// Numbers discovery tasks, so that a replaced task's late report is ignored.
    discovery_epoch: u64,
    fleet: FleetLink,
    /// Where periodic checks' grid starts.
    origin: Instant,
    /// The time of the event being handled, read once when it arrives: every decision it
    /// leads to sees the same instant, and no handler reads the clock itself.
    now: Now,
    metrics: Metrics,
    /// Access policies' state that outlives a config.
    shelf: Arc<Shelf>,
    /// The fleet's sticky-cookie keys, for pools whose secret is the fleet's.
    sticky_keys: Arc<FleetKeys>,
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
        let sticky_keys = Arc::new(FleetKeys::default());
        let pools: Pools = config
            .pools
            .iter()
            .map(|p| PoolRuntime::new(p, config, metrics, &sticky_keys))
            .collect();
        let (wants, wanted) = mpsc::unbounded_channel();
        let shelf = Arc::new(Shelf::new(wants));
        let router = router(config, &pools, metrics, &shelf);
        crate::keeper::spawn(
            Arc::clone(&shelf),
            metrics.clone(),
            &tasks,
            shutdown.clone(),
        );
        if let Some(fleet) = &config.fleet {
            crate::fleet_limits::spawn(fleet, Arc::clone(&shelf), wanted, &tasks, shutdown.clone());
            crate::fleet_sticky::spawn(fleet, Arc::clone(&sticky_keys), &tasks, shutdown.clone());
        }
        let certificates = CertificateExpiry::of(config);
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot {
            router: Arc::clone(&router),
            pools: pools.iter().map(|p| Arc::new(p.build())).collect(),
            timeouts: Arc::new(config.timeouts),
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
            inbox: Inbox {
                reports_tx,
                reports,
                outliers,
                commands,
                discovered_tx,
                discovered,
                shared: shared_rx,
            },
            discovery_epoch: 0,
            fleet: FleetLink {
                sender: fleet,
                latest: HashMap::new(),
                replica,
            },
            origin: Instant::now(),
            now: Now::read(),
            pools,
            router,
            certificates,
            config: config.clone(),
            generation: 1,
            publisher: Publisher::new(Arc::clone(&handle.snapshot), Arc::clone(&handle.events)),
            metrics: metrics.clone(),
            shelf,
            sticky_keys,
            tasks,
            shutdown,
        };
        (control, handle)
    }

    /// Applies reports and commands until shutdown.
    pub async fn run(mut self) {
        for warning in &self.config.warnings {
            tracing::warn!(%warning, "config warning");
        }
        for pool in self.pools.iter() {
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
        for key in self.pools.keys() {
            self.start_prober(&key, false);
        }
        for pool in self.pools.names() {
            self.follow_discovery(&pool);
        }
        let mut refill = tokio::time::interval(Duration::from_secs(1));
        refill.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut deadline = self.next_deadline(Instant::now());
        loop {
            tokio::select! {
                Some(report) = self.inbox.reports.recv() => self.at_now().apply_report(report),
                Some(report) = self.inbox.outliers.recv() => self.at_now().apply_outlier(report),
                Some(command) = self.inbox.commands.recv() => self.at_now().apply_command(command),
                Some(found) = self.inbox.discovered.recv() => self.at_now().apply_discovered(found),
                Some(change) = self.inbox.shared.recv() => self.at_now().apply_shared(change),
                () = sleep_until(deadline) => {
                    let now = self.at_now().now.at;
                    self.apply_timers(now);
                    deadline = None;
                }
                _ = refill.tick() => {
                    for pool in self.pools.iter() {
                        pool.policy.retry_budget.refill();
                    }
                }
                () = self.shutdown.cancelled() => break,
            }
            // Another event may have won the race at the very instant a timer was due; the
            // next deadline, reckoned from now, would step over it (a ramp's last step, say).
            if deadline.is_some_and(|due| due <= Instant::now()) {
                let now = self.at_now().now.at;
                self.apply_timers(now);
            }
            deadline = self.next_deadline(Instant::now());
        }
        for pool in self.pools.iter_mut() {
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
                        .get(&name)
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
            Command::RotateStickyKey { reply } => {
                // Only the fleet's key rotates here; files rotate with previous_secret_file.
                let fleet = self.config.fleet.is_some();
                if fleet {
                    self.sticky_keys.request_rotation();
                }
                respond(reply, fleet);
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
        let key = self.find(pool, backend)?;
        match change {
            BackendChange::Nothing => {}
            BackendChange::Drain(deadline) => self.drain(&key, deadline, views::DRAINED),
            BackendChange::Undrain => self.undrain(&key, views::UNDRAINED),
            BackendChange::Weight(weight) => self.set_weight(&key, weight),
        }
        if change != BackendChange::Nothing {
            self.share(&key);
        }
        let runtime = self.pools.backend(&key);
        Ok(views::backend_view(
            runtime.expect("found above; changes remove no backend"),
        ))
    }

    /// The key of backend `backend` of pool `pool`.
    fn find(&self, pool: &str, backend: &str) -> Result<BackendKey, LookupError> {
        let runtime = self
            .pools
            .get(pool)
            .ok_or_else(|| LookupError::Pool(pool.to_owned()))?;
        let found = runtime
            .find(backend)
            .ok_or_else(|| LookupError::Backend(pool.to_owned(), backend.to_owned()))?;
        Ok(runtime.key(found.state.serial))
    }
}

/// Where reports, commands and shared changes arrive, and the senders handed to the tasks the
/// control plane starts (probers, discovery).
#[derive(Debug)]
struct Inbox {
    reports_tx: UnboundedSender<Report>,
    reports: UnboundedReceiver<Report>,
    outliers: UnboundedReceiver<OutlierReport>,
    commands: mpsc::Receiver<Command>,
    discovered_tx: UnboundedSender<Discovered>,
    discovered: UnboundedReceiver<Discovered>,
    /// Changes stored by the fleet.
    shared: UnboundedReceiver<Override>,
}

/// This replica's part in the fleet.
#[derive(Debug)]
struct FleetLink {
    /// Where operator changes go to be shared, in fleet mode.
    sender: Option<UnboundedSender<Override>>,
    /// The latest shared change of each (pool, backend), also for backends not (yet) here.
    latest: HashMap<(String, String), Override>,
    /// This replica's name in shared changes.
    replica: String,
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

fn router(config: &Config, pools: &Pools, metrics: &Metrics, shelf: &Shelf) -> Arc<Router> {
    let router = Router::new(
        &config.routes,
        &config.pools,
        |name| pools.position(name),
        metrics,
        shelf,
    );
    shelf.settle();
    Arc::new(router)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

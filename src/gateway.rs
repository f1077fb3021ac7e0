//! Assembles a running proxy: control plane, data plane, listeners, admin API and reloads, and
//! the shutdown that drains them.
//!
//! Longer than most files on purpose: the start order of every part, and the shutdown order
//! that mirrors it, read best in one place.

use crate::access_log::AccessLog;
use crate::admin::{self, AdminState, Token, TokenError};
use crate::config::Config;
use crate::control::{Control, ControlHandle};
use crate::listeners::Listeners;
use crate::metrics::Metrics;
use crate::proxy::{Proxy, Tunnels};
use crate::reload::Reloader;
use crate::server::{self, BindError};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The admin token could not be read.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The access log file could not be opened.
    #[error("access_log.path: cannot open the access log: {0}")]
    AccessLog(#[source] std::io::Error),
    /// The admin API would be reachable from the network without a token.
    #[error(
        "admin.bind {0} is not a loopback address and no admin token is set: set the token's environment variable or admin.token_file, or bind the admin API to 127.0.0.1"
    )]
    AdminWithoutToken(SocketAddr),
    /// A read-only admin token without the token that may change things.
    #[error(
        "admin: a read-only token is set but no admin token: set the token's environment variable or admin.token_file too"
    )]
    ReadTokenAlone,
}

impl StartError {
    /// Whether the config (with the environment it names, such as a token's variable) is what
    /// is wrong, rather than the machine: `check` finds these too, and both exit 1.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Token(_) | Self::AdminWithoutToken(_) | Self::ReadTokenAlone
        )
    }
}

/// The admin API's tokens (the one that may change things, the read-only one), read from where
/// the config says; refused where the API would be reachable from the network without one.
pub fn admin_tokens(config: &Config) -> Result<(Option<Token>, Option<Token>), StartError> {
    let Some(admin) = &config.admin else {
        return Ok((None, None));
    };
    let token = admin::load_token(&admin.token)?;
    if token.is_none() && !admin.bind.ip().is_loopback() {
        return Err(StartError::AdminWithoutToken(admin.bind));
    }
    let read_token = match &admin.read_token {
        Some(source) => admin::load_token(source)?,
        None => None,
    };
    if read_token.is_some() && token.is_none() {
        return Err(StartError::ReadTokenAlone);
    }
    Ok((token, read_token))
}

/// Where the running config came from, so reloads can read it again.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file.
    pub path: PathBuf,
    /// Its text when it was loaded.
    pub text: String,
}

/// A running proxy: its bound addresses and the handles to stop it.
#[derive(Debug)]
pub struct Gateway {
    local_addrs: Vec<(String, SocketAddr)>,
    admin_addr: Option<SocketAddr>,
    control: ControlHandle,
    access_log_done: Option<tokio::sync::oneshot::Receiver<()>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Set in lame-duck mode: `/healthz` answers 503 while traffic is still served.
    lame_duck: Arc<AtomicBool>,
    /// Fires if the control task ever ends before shutdown: `/healthz` answers 503 and the
    /// process is to drain and exit non-zero, rather than serve on with no one to change state.
    control_failed: CancellationToken,
    /// The admin API outlives the drain: it stops only when the proxy is about to exit.
    admin_stop: CancellationToken,
    admin_tasks: TaskTracker,
}

impl Gateway {
    /// Starts serving `config`, which did not come from a file (reloads are not possible).
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        Self::start_with(config, None).await
    }

    /// Starts the control plane, binds every listener and the admin API, and starts serving.
    pub async fn start_with(
        config: &Config,
        source: Option<ConfigSource>,
    ) -> Result<Self, StartError> {
        let (token, read_token) = admin_tokens(config)?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let metrics = Metrics::new();
        let (access_log, access_log_done) = match &config.access_log {
            Some(log) => {
                let dropped = metrics.counter(crate::metrics::ACCESS_LOG_DROPPED, &[]);
                let (access_log, done) =
                    AccessLog::start(log, dropped).map_err(StartError::AccessLog)?;
                (access_log, Some(done))
            }
            None => (AccessLog::disabled(), None),
        };
        let rotated_log = access_log.clone();
        let (control, handle) = Control::new(config, &metrics, tasks.clone(), shutdown.clone());
        let proxy = Arc::new(Proxy::new(
            Arc::clone(&handle.snapshot),
            Tunnels {
                shutdown: shutdown.clone(),
                tasks: tasks.clone(),
            },
            handle.outliers.clone(),
            access_log,
            &metrics,
        ));
        let live = Arc::new(crate::live_certs::LiveCerts::default());
        let mut listeners = Listeners::new(
            proxy,
            Arc::clone(&live),
            metrics.clone(),
            shutdown.clone(),
            tasks.clone(),
        );
        let prepared = listeners
            .prepare(&config.listeners, &config.timeouts)
            .await?;
        let admin_listener = match &config.admin {
            Some(admin) => {
                let listener =
                    server::bind(&crate::config::ListenerConfig::plain("admin", admin.bind))
                        .await?;
                Some(listener)
            }
            None => None,
        };
        let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());

        // Serve only once everything is bound, so a failed start leaves nothing running.
        let control_failed = CancellationToken::new();
        tasks.spawn(crate::shutdown::watch_control(
            tokio::spawn(control.run()),
            shutdown.clone(),
            control_failed.clone(),
        ));
        tasks.spawn(crate::shutdown::reopen_access_log_on_sigusr1(
            rotated_log,
            shutdown.clone(),
        ));
        tasks.spawn(upkeep(
            metrics.clone(),
            Arc::clone(&handle.snapshot),
            shutdown.clone(),
        ));
        listeners.commit(prepared);
        tasks.spawn(crate::ocsp::run(
            Arc::clone(&live),
            metrics.clone(),
            shutdown.clone(),
        ));
        // Read at start, like [fleet]: the certificates every listener asks ACME for.
        if let Some(acme) = &config.acme {
            let wanted = config
                .listeners
                .iter()
                .filter_map(|l| Some((&l.name, l.tls.as_ref()?)))
                .flat_map(|(name, tls)| tls.acme.iter().map(|c| (name.clone(), c.clone())))
                .collect();
            tasks.spawn(crate::acme::start(
                acme.clone(),
                config.fleet.clone(),
                wanted,
                Arc::clone(&live),
                Arc::clone(&handle.events),
                crate::acme::OrderCounters::new(&metrics),
                shutdown.clone(),
            ));
        }
        let local_addrs = listeners.addrs();
        let (path, text) = source.map(|s| (s.path, s.text)).unzip();
        let (reloader, reload, running) = Reloader::new(
            path,
            config,
            text,
            handle.clone(),
            listeners,
            &metrics,
            shutdown.clone(),
        );
        tasks.spawn(reloader.run());
        let lame_duck = Arc::new(AtomicBool::new(false));
        let admin_stop = CancellationToken::new();
        let admin_tasks = TaskTracker::new();
        if let (Some(listener), Some(addr)) = (admin_listener, admin_addr) {
            tracing::info!(%addr, auth = token.is_some(), "admin API listening");
            admin::serve(
                listener,
                AdminState {
                    control: handle.clone(),
                    reload: reload.clone(),
                    running,
                    token,
                    read_token,
                    addr,
                    shutdown: admin_stop.clone(),
                    metrics: metrics.clone(),
                    lame_duck: Arc::clone(&lame_duck),
                    control_failed: control_failed.clone(),
                    live,
                },
                &admin_tasks,
            );
        }
        Ok(Self {
            local_addrs,
            admin_addr,
            control: handle,
            access_log_done,
            shutdown,
            tasks,
            lame_duck,
            control_failed,
            admin_stop,
            admin_tasks,
        })
    }

    /// The bound address of the first listener.
    pub fn first_addr(&self) -> SocketAddr {
        self.local_addrs
            .first()
            .map(|(_, addr)| *addr)
            .expect("validation requires at least one listener")
    }

    /// The bound address of the listener named `name`.
    pub fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.local_addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
    }

    /// The admin API's bound address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The control plane's handle: what the admin API asks and reads.
    pub fn control(&self) -> &ControlHandle {
        &self.control
    }

    /// The snapshot the data plane reads.
    pub fn snapshot(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.control.snapshot
    }

    /// The shutdown grace period of the config in force.
    pub fn shutdown_timeout(&self) -> Duration {
        self.control.snapshot.load().timeouts.shutdown
    }

    /// How long to stay in lame-duck mode before shutting down (`timeouts.shutdown_delay`).
    pub fn shutdown_delay(&self) -> Duration {
        self.control.snapshot.load().timeouts.shutdown_delay
    }

    /// Enters lame-duck mode: `/healthz` answers 503, requests are still served.
    pub fn enter_lame_duck(&self) {
        // Relaxed: a flag read by health checks; nothing else is published through it.
        self.lame_duck.store(true, Ordering::Relaxed);
    }

    /// Resolves if the control task has ended before shutdown (a bug): the caller should drain
    /// and exit non-zero so that a supervisor restarts the proxy.
    pub async fn control_failed(&self) {
        self.control_failed.cancelled().await;
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then closes the rest.
    /// Returns whether everything finished within `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        self.shutdown.cancel();
        self.tasks.close();
        let drained = tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                ?grace,
                "connections still open after the shutdown grace period; closing them"
            );
        }
        if let Some(done) = self.access_log_done {
            // The writer flushes once the last request's handle is gone; give it what is left
            // of the grace period, and at least a moment.
            let flush_by = deadline.max(tokio::time::Instant::now() + Duration::from_secs(1));
            if tokio::time::timeout_at(flush_by, done).await.is_err() {
                tracing::warn!("access log writer did not finish in time; lines may be lost");
            }
        }
        self.admin_stop.cancel();
        self.admin_tasks.close();
        if tokio::time::timeout(Duration::from_secs(1), self.admin_tasks.wait())
            .await
            .is_err()
        {
            tracing::debug!("admin connections still open at exit");
        }
        drained
    }
}

/// Every second, closes upstream connections idle past `timeouts.upstream_idle`; every five,
/// folds histogram samples into buckets, so memory stays flat between scrapes.
async fn upkeep(metrics: Metrics, snapshot: Arc<ArcSwap<Snapshot>>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        crate::upstream::pool::tick();
        let snapshot = snapshot.load_full();
        for pool in &snapshot.pools {
            for backend in &pool.backends {
                backend
                    .connections
                    .sweep(&pool.policy.upstream, snapshot.timeouts.upstream_idle);
            }
        }
        if n % 5 == 0 {
            metrics.run_upkeep();
        }
    }
}

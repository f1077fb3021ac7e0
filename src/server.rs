//! Listeners and client connections: accept, `TCP_NODELAY`, serve HTTP/1.1 and h2c through
//! hyper-util's auto builder with timeouts, close idle connections, drain on shutdown.

use crate::config::{Config, ListenerConfig, Timeouts};
use crate::proxy::{Downstream, Proxy, forward};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener's address could not be bound.
    #[error("listener {name}: cannot bind {bind}: {source}")]
    Bind {
        /// The listener's name.
        name: String,
        /// The address.
        bind: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A running proxy: its bound addresses and the handles to stop it.
#[derive(Debug)]
pub struct Gateway {
    local_addrs: Vec<(String, SocketAddr)>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Gateway {
    /// Binds every listener and starts serving `config`.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::build(config)));
        let proxy = Arc::new(Proxy::new(
            Arc::clone(&snapshot),
            forward::client(&config.timeouts),
        ));
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut local_addrs = Vec::new();
        for listener in &config.listeners {
            let bound = bind(listener).await?;
            let addr = bound.local_addr().map_err(|source| StartError::Bind {
                name: listener.name.clone(),
                bind: listener.bind,
                source,
            })?;
            tracing::info!(listener = %listener.name, %addr, "listening");
            local_addrs.push((listener.name.clone(), addr));
            tasks.spawn(accept_loop(
                bound,
                Arc::clone(&proxy),
                config.timeouts,
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        Ok(Self {
            local_addrs,
            snapshot,
            shutdown,
            tasks,
        })
    }

    /// The address each listener is bound to, by listener name (useful with port 0).
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.local_addrs
    }

    /// The bound address of the first listener.
    pub fn first_addr(&self) -> SocketAddr {
        self.local_addrs
            .first()
            .map(|(_, addr)| *addr)
            .expect("validation requires at least one listener")
    }

    /// The snapshot the data plane reads.
    pub fn snapshot(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.snapshot
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then closes the rest.
    /// Returns whether everything finished within `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tasks.close();
        let drained = tokio::time::timeout(grace, self.tasks.wait()).await.is_ok();
        if !drained {
            tracing::warn!(
                ?grace,
                "connections still open after the shutdown grace period; closing them"
            );
        }
        drained
    }
}

async fn bind(listener: &ListenerConfig) -> Result<TcpListener, StartError> {
    TcpListener::bind(listener.bind)
        .await
        .map_err(|source| StartError::Bind {
            name: listener.name.clone(),
            bind: listener.bind,
            source,
        })
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    timeouts: Timeouts,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.request_header);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                tasks.spawn(serve_connection(
                    stream,
                    peer,
                    Arc::clone(&proxy),
                    Arc::clone(&builder),
                    timeouts.idle,
                    shutdown.clone(),
                ));
            }
            Err(err) => {
                // Usually EMFILE or ECONNABORTED: log, back off briefly so a full fd table does
                // not spin the loop, and keep accepting.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Requests started on one connection and how many are still running, so the idle timer can
/// tell a quiet connection from a slow response.
#[derive(Debug, Default)]
struct ConnActivity {
    started: AtomicU64,
    finished: AtomicU64,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    idle: Duration,
    shutdown: CancellationToken,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, %peer, "cannot set TCP_NODELAY");
    }
    let downstream = Downstream { peer, tls: false };
    let activity = Arc::new(ConnActivity::default());
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            let proxy = Arc::clone(&proxy);
            let activity = Arc::clone(&activity);
            // Relaxed: these counters are only compared by this connection's idle timer.
            activity.started.fetch_add(1, Ordering::Relaxed);
            async move {
                let response = proxy.handle(req, downstream).await;
                activity.finished.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);

    // HTTP/1 connections are also bounded by hyper's header-read timeout, which starts as soon
    // as a connection waits for its next request. This timer covers HTTP/2 and longer waits.
    let mut tick = tokio::time::interval(idle / 4);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_seen = (0, 0);
    let mut quiet_since = Instant::now();
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "client connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            now = tick.tick(), if !closing => {
                let seen = (
                    activity.started.load(Ordering::Relaxed),
                    activity.finished.load(Ordering::Relaxed),
                );
                if seen != last_seen || seen.0 != seen.1 {
                    last_seen = seen;
                    quiet_since = now;
                } else if now.duration_since(quiet_since) >= idle {
                    tracing::debug!(%peer, "closing idle client connection");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

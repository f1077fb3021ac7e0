//! Listeners and client connections: accept, `TCP_NODELAY`, serve HTTP/1.1 and h2c through
//! hyper-util's auto builder with timeouts, close idle connections, drain on shutdown.

use crate::config::{ListenerConfig, Timeouts};
use crate::proxy::{Downstream, Proxy};
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

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
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

/// Binds a listener's socket.
pub async fn bind(listener: &ListenerConfig) -> Result<TcpListener, BindError> {
    TcpListener::bind(listener.bind)
        .await
        .map_err(|source| BindError::Bind {
            name: listener.name.clone(),
            bind: listener.bind,
            source,
        })
}

/// Accepts and serves client connections on `listener` until `stop`, which also drains its
/// open connections; every connection task joins `tasks` so shutdown can wait for in-flight
/// requests.
pub fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(accept_loop(listener, proxy, stop, tasks.clone()));
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Timeouts as of this connection's start, so a reload applies to new connections.
                let timeouts = proxy.timeouts();
                tasks.spawn(serve_connection(
                    stream,
                    peer,
                    Arc::clone(&proxy),
                    connection_builder(&timeouts),
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

fn connection_builder(timeouts: &Timeouts) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.request_header);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Counts a client connection as open until dropped.
struct OpenConnection(metrics::Gauge);

impl OpenConnection {
    fn count(gauge: &metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// What the requests of one client connection share.
#[derive(Debug)]
struct ConnShared {
    proxy: Arc<Proxy>,
    downstream: Downstream,
    activity: ConnActivity,
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
    builder: auto::Builder<TokioExecutor>,
    idle: Duration,
    shutdown: CancellationToken,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, %peer, "cannot set TCP_NODELAY");
    }
    proxy.connections_total.increment(1);
    let _open = OpenConnection::count(&proxy.connections_open);
    // Everything a request of this connection needs, behind one `Arc`: one clone per request.
    let shared = Arc::new(ConnShared {
        proxy,
        downstream: Downstream::new(peer, false),
        activity: ConnActivity::default(),
    });
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |req| {
            let shared = Arc::clone(&shared);
            // Relaxed: these counters are only compared by this connection's idle timer.
            shared.activity.started.fetch_add(1, Ordering::Relaxed);
            async move {
                let response = shared.proxy.handle(req, &shared.downstream).await;
                shared.activity.finished.fetch_add(1, Ordering::Relaxed);
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
                    shared.activity.started.load(Ordering::Relaxed),
                    shared.activity.finished.load(Ordering::Relaxed),
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

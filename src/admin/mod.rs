//! The admin API on its own listener: pool and backend inspection, drain, weights, reload, the
//! running config, and a Server-Sent Events stream. `/api/*` requires the bearer token when one
//! is configured.

mod api;
mod auth;
mod body;
mod certificates;
mod events;
mod exposition;
mod guard;
mod input;
mod page;
mod reply;
mod routes;

pub use auth::{Token, TokenError, load_token};

use crate::control::ControlHandle;
use crate::reload::{ReloadRequest, RunningConfig};
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the admin handlers work with.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Commands and events of the control plane.
    pub control: ControlHandle,
    /// Where reload requests go.
    pub reload: mpsc::Sender<ReloadRequest>,
    /// The config in force.
    pub running: Arc<ArcSwap<RunningConfig>>,
    /// The bearer token `/api/*` and `/metrics` require, if any; it may do everything.
    pub token: Option<Token>,
    /// A token that may only read (GET and HEAD), if any.
    pub read_token: Option<Token>,
    /// The admin listener's own address, which `Host` and `Origin` must name when no token
    /// protects the API.
    pub addr: std::net::SocketAddr,
    /// Ends event streams and the admin listener, when the proxy exits.
    pub shutdown: CancellationToken,
    /// The proxy's metrics, served at `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Lame-duck mode: `/healthz` answers 503 while requests are still served.
    pub lame_duck: Arc<std::sync::atomic::AtomicBool>,
    /// Fired if the control plane has stopped: `/healthz` answers 503.
    pub control_failed: CancellationToken,
    /// ACME certificates' state, and where renewals are asked for.
    pub live: Arc<crate::live_certs::LiveCerts>,
}

/// Serves the admin API on `listener` until shutdown.
pub fn serve(listener: TcpListener, state: AdminState, tasks: &TaskTracker) {
    let connections = tasks.clone();
    tasks.spawn(async move {
        let state = Arc::new(state);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(%err, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = state.shutdown.cancelled() => return,
            };
            let state = Arc::clone(&state);
            connections.spawn(async move {
                let shutdown = state.shutdown.clone();
                let service = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(api::handle(req, &state).await) }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10));
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(err) = result {
                            tracing::debug!(%peer, error = %err, "admin connection ended with an error");
                        }
                    }
                    () = shutdown.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        if let Err(err) = connection.await {
                            tracing::debug!(%peer, error = %err, "admin connection ended with an error");
                        }
                    }
                }
            });
        }
    });
}

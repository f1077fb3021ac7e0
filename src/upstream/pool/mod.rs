//! Connections to one backend, owned with its `BackendState` so they survive reloads and close
//! when the backend is removed. HTTP/1.1 connections wait in a lock-free stack, newest first;
//! HTTP/2 connections are shared, each up to the backend's stream limit. Each connection is
//! driven by a task of its own; the request path only pops, sends and pushes back.

mod connect;
mod h1;
mod h2;
mod idle;
pub mod proxy_header;

pub use connect::Pings;
pub use h1::{H1Connection, H1Lease};
pub use h2::{H2Connection, H2Stream};

use super::BackendState;
use crate::body::UpstreamBody;
use crate::config::UpstreamConfig;
use arc_swap::ArcSwap;
use connect::OpenGuard;
use futures_util::future::Either;
use http::{Request, Response};
use hyper::body::Incoming;
use idle::IdleStack;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// A pool's connection settings in force, with the generation its connections are tagged
/// with: a reload that changes them retires the connections opened under the old ones.
#[derive(Debug)]
pub struct Upstream {
    /// Protocol, TLS, idle bound.
    pub config: UpstreamConfig,
    /// Tags connections opened under these settings.
    pub generation: u64,
}

impl Upstream {
    /// Settings with a generation of their own.
    pub fn new(config: UpstreamConfig) -> Self {
        static GENERATION: AtomicU64 = AtomicU64::new(1);
        Self {
            config,
            // Relaxed: a unique number, nothing published through it.
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// What opening a connection needs besides the pool's settings (from `[timeouts]`).
#[derive(Debug, Clone, Copy)]
pub struct Dial {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive PINGs.
    pub pings: Pings,
}

impl From<&crate::config::Timeouts> for Dial {
    fn from(timeouts: &crate::config::Timeouts) -> Self {
        Self {
            connect_timeout: timeouts.connect,
            pings: Pings {
                interval: timeouts.http2_ping_interval,
                timeout: timeouts.http2_ping_timeout,
            },
        }
    }
}

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, TLS refused): nothing was sent.
    #[error("connect: {0}")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection was not made within the connect timeout: nothing was sent.
    #[error("connect timed out")]
    ConnectTimeout,
    /// Every connection allowed by `max_connections` stayed busy: nothing was sent.
    #[error("every allowed connection stayed busy")]
    Saturated,
    /// The request was (perhaps partly) sent, and no usable response came back.
    #[error("request failed")]
    Protocol(#[source] hyper::Error),
}

/// A connection lent to one request until its response ends. Dropped as is, it closes (an
/// HTTP/1.1 connection) or ends its stream (HTTP/2); `release` after a clean end returns an
/// HTTP/1.1 connection to its pool for the next request.
#[derive(Debug)]
pub enum Lease {
    /// An HTTP/1.1 connection.
    H1(H1Lease),
    /// A stream on a shared HTTP/2 connection, ended when dropped.
    H2(H2Stream),
}

impl Lease {
    /// The exchange ended cleanly: the connection may serve another request.
    pub fn release(self) {
        if let Self::H1(mut lease) = self {
            lease.reusable = true;
        }
    }
}

/// One backend's connections.
#[derive(Debug)]
pub struct ConnectionPool {
    idle: IdleStack<H1Connection>,
    h2: ArcSwap<Vec<Arc<H2Connection>>>,
    /// Set while one request opens an HTTP/2 connection the others will share.
    opening_h2: AtomicBool,
    h2_opened: Notify,
    /// Connections open now.
    open: Arc<AtomicU32>,
    /// `max_connections`, or `u32::MAX`.
    max_connections: AtomicU32,
    /// Signalled when a connection comes back, for requests waiting under `max_connections`.
    returned: Notify,
}

impl ConnectionPool {
    /// An empty pool allowing `max_connections` at once.
    pub fn new(max_connections: Option<u32>) -> Self {
        Self {
            idle: IdleStack::new(UpstreamConfig::MAX_IDLE_LIMIT),
            h2: ArcSwap::from_pointee(Vec::new()),
            opening_h2: AtomicBool::new(false),
            h2_opened: Notify::new(),
            open: Arc::new(AtomicU32::new(0)),
            max_connections: AtomicU32::new(max_connections.unwrap_or(u32::MAX)),
            returned: Notify::new(),
        }
    }

    /// Changes the connection limit (a reload). Control plane only.
    pub fn set_max_connections(&self, max: Option<u32>) {
        self.max_connections
            .store(max.unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// Closes connections idle for `idle`, closed by the backend, or opened under settings
    /// other than `upstream`'s. Called about once a second.
    pub fn sweep(&self, upstream: &Upstream, idle: Duration) {
        let now = ticks();
        let idle = idle.as_secs().max(1);
        self.idle.retain(|c| {
            c.generation == upstream.generation
                && !c.sender.is_closed()
                && now.saturating_sub(c.idle_since) < idle
        });
        if !self.h2.load().is_empty() {
            h2::retain(self, |c| {
                !c.idle_for(now, idle) && (c.generation == upstream.generation || c.active() > 0)
            });
        }
    }

    /// Counts a connection about to open, unless `max_connections` are open already.
    fn reserve(&self, backend: &BackendState) -> Option<OpenGuard> {
        // Relaxed: a count; concurrent openers may overshoot the limit by none, since each
        // takes its own increment before comparing.
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before >= self.max_connections.load(Ordering::Relaxed) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        backend.metrics.connections_opened.increment(1);
        Some(OpenGuard::new(
            Arc::clone(&self.open),
            backend.metrics.connections_open.clone(),
            backend.cut_signal(),
        ))
    }
}

/// Sends `request` to `backend` on a pooled connection, opening one if needed. A pooled
/// connection that turns out closed before the request left is replaced transparently.
///
/// Not an `async fn`: the request moves straight into the protocol's future, rather than
/// being held here as well while that future runs (the request's future carries each copy).
pub fn send<'a>(
    backend: &'a BackendState,
    upstream: &'a Upstream,
    dial: &'a Dial,
    request: Request<UpstreamBody>,
) -> impl Future<Output = Result<(Response<Incoming>, Lease), SendError>> + Send + 'a {
    if upstream.config.protocol.is_h2() {
        // Boxed: HTTP/1.1 pools, the common case, keep their requests' futures small.
        Either::Left(Box::pin(h2::send(backend, upstream, dial, request)))
    } else {
        Either::Right(h1::send(backend, upstream, dial, request))
    }
}

/// What a failed send left: the request, unsent, to try on another connection when `resend`
/// allows; otherwise the failure, a connect failure if nothing left (the connection was closed
/// before the request could go), a protocol failure if it (perhaps partly) did.
fn unsent(
    mut err: hyper::client::conn::TrySendError<Request<UpstreamBody>>,
    resend: bool,
) -> Result<Request<UpstreamBody>, SendError> {
    match err.take_message() {
        Some(request) if resend => Ok(request),
        Some(_) => Err(SendError::Connect(Box::new(err.into_error()))),
        None => Err(SendError::Protocol(err.into_error())),
    }
}

/// Sends one request on a connection of its own, closed afterwards (health probes).
pub async fn send_alone(
    authority: &http::uri::Authority,
    upstream: &Upstream,
    dial: &Dial,
    request: Request<UpstreamBody>,
) -> Result<Response<Incoming>, SendError> {
    // A probe's connection names no client.
    let preface = upstream
        .config
        .send_proxy_protocol
        .map(|version| proxy_header::header(version, None));
    let stream = connect::open(
        authority,
        upstream,
        dial.connect_timeout,
        preface.as_deref(),
    )
    .await?;
    let open = OpenGuard::new(
        Arc::new(AtomicU32::new(1)),
        metrics::Gauge::noop(),
        tokio_util::sync::CancellationToken::new(),
    );
    if upstream.config.protocol.is_h2() {
        let connection = h2::handshake(stream, open, dial.pings, upstream.generation).await?;
        let stream = connection.try_stream(true).expect("forced");
        stream
            .sender()
            .send_request(request)
            .await
            .map_err(SendError::Protocol)
    } else {
        let mut sender = connect::http1(stream, open).await?;
        sender
            .send_request(request)
            .await
            .map_err(SendError::Protocol)
    }
}

/// A coarse clock in seconds for idle bookkeeping, so returning a connection reads an atomic
/// rather than the system clock; advanced by `tick`, which the pool sweeper calls.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

static TICKS: AtomicU64 = AtomicU64::new(0);

/// Advances `ticks` to the seconds of the backends' own clock (`millis_now`).
pub fn tick() {
    TICKS.store(super::clock::millis_now() / 1000, Ordering::Relaxed);
}

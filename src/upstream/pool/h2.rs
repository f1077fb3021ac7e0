//! HTTP/2 connections to one backend: each multiplexes streams up to the limit the backend
//! announced (`SETTINGS_MAX_CONCURRENT_STREAMS`); a request finding every connection full makes
//! the pool open another.

use super::connect::{self, OpenGuard, Pings, Stream};
use super::{ConnectionPool, Dial, Lease, SendError, Upstream};
use crate::body::UpstreamBody;
use crate::dormant::Dormant;
use crate::upstream::BackendState;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One HTTP/2 connection and its stream count.
#[derive(Debug)]
pub struct H2Connection {
    sender: SendRequest<UpstreamBody>,
    /// Streams open on it now (ours: requests whose response has not ended).
    active: AtomicUsize,
    /// The backend's current limit, kept up to date by the task driving the connection.
    limit: Arc<StreamLimit>,
    /// The pool settings it was opened under.
    pub generation: u64,
    /// Coarse time (`super::ticks`) its last stream ended.
    last_used: AtomicU64,
}

impl H2Connection {
    /// A connection whose driver publishes the backend's stream limit in `limit`.
    pub fn new(
        sender: SendRequest<UpstreamBody>,
        limit: Arc<StreamLimit>,
        generation: u64,
    ) -> Self {
        Self {
            sender,
            active: AtomicUsize::new(0),
            limit,
            generation,
            last_used: AtomicU64::new(super::ticks()),
        }
    }

    /// Whether the connection is gone (closed by either side, or dead on a PING timeout).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Takes a stream if one is free; `force` takes one even past the limit (the connection
    /// then queues the request until a stream ends).
    pub fn try_stream(self: &Arc<Self>, force: bool) -> Option<H2Stream> {
        // Relaxed: a count; the HTTP/2 layer enforces the real limit.
        let active = self.active.fetch_add(1, Ordering::Relaxed);
        if !force && active >= self.limit.max.load(Ordering::Relaxed) {
            self.active.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(H2Stream(Arc::clone(self)))
    }

    /// Streams open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether no stream is open and none ended for `idle` ticks.
    pub fn idle_for(&self, now: u64, idle: u64) -> bool {
        self.active() == 0 && now.saturating_sub(self.last_used.load(Ordering::Relaxed)) >= idle
    }
}

/// One stream on an HTTP/2 connection, held until the response ends.
#[derive(Debug)]
pub struct H2Stream(Arc<H2Connection>);

impl H2Stream {
    /// A handle to send the request with.
    pub fn sender(&self) -> SendRequest<UpstreamBody> {
        self.0.sender.clone()
    }

    /// The connection the stream is on.
    pub fn connection(&self) -> &Arc<H2Connection> {
        &self.0
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        self.0.last_used.store(super::ticks(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
        self.0.limit.refresh.notify_one();
    }
}

/// Sends `request` on a stream of a shared connection, opening a connection when all are full.
pub(super) async fn send(
    backend: &BackendState,
    upstream: &Upstream,
    dial: &Dial,
    mut request: Request<UpstreamBody>,
) -> Result<(Response<Incoming>, Lease), SendError> {
    let pool = &backend.connections;
    let mut replaced = 0;
    loop {
        if let Some(stream) = pick_stream(pool, upstream.generation) {
            match stream.sender().try_send_request(request).await {
                Ok(response) => return Ok((response, Lease::H2(stream))),
                // The connection went away before the request left: another one.
                Err(err) => {
                    request = super::unsent(err, replaced < 2)?;
                    replaced += 1;
                    retain(pool, |_| true);
                    continue;
                }
            }
        }
        // Every connection is full, or there is none: one request opens the next while the
        // others wait for it rather than each opening their own.
        let opened = pool.h2_opened.notified();
        tokio::pin!(opened);
        opened.as_mut().enable();
        if pool.opening_h2.swap(true, Ordering::AcqRel) {
            tokio::time::timeout(dial.connect_timeout, opened)
                .await
                .map_err(|_| SendError::ConnectTimeout)?;
            continue;
        }
        let opening = Opening(pool);
        let Some(open) = pool.reserve(backend) else {
            drop(opening);
            // At max_connections: queue on the least busy connection instead.
            let connections = pool.h2.load();
            let least = connections
                .iter()
                .filter(|c| !c.is_closed() && c.generation == upstream.generation)
                .min_by_key(|c| c.active());
            let Some(stream) = least.map(|c| c.try_stream(true).expect("forced")) else {
                return Err(SendError::Saturated);
            };
            return match stream.sender().send_request(request).await {
                Ok(response) => Ok((response, Lease::H2(stream))),
                Err(err) => Err(SendError::Protocol(err)),
            };
        };
        // Boxed, as for HTTP/1.1: only the rare request that connects pays for the space.
        let connection = Box::pin(async {
            let stream =
                connect::open(&backend.authority, upstream, dial.connect_timeout, None).await?;
            handshake(stream, open, dial.pings, upstream.generation).await
        })
        .await?;
        pool.h2.rcu(|list| {
            let mut list = live(list, |_| true);
            list.push(Arc::clone(&connection));
            list
        });
        drop(opening);
    }
}

/// A free stream on a live connection of this generation, if any.
fn pick_stream(pool: &ConnectionPool, generation: u64) -> Option<H2Stream> {
    pool.h2
        .load()
        .iter()
        .filter(|c| c.generation == generation && !c.is_closed())
        .find_map(|c| c.try_stream(false))
}

/// Keeps the pool's live connections that `keep` accepts; closed ones always go.
pub(super) fn retain(pool: &ConnectionPool, keep: impl Fn(&H2Connection) -> bool) {
    pool.h2.rcu(|list| live(list, &keep));
}

fn live(
    list: &[Arc<H2Connection>],
    keep: impl Fn(&H2Connection) -> bool,
) -> Vec<Arc<H2Connection>> {
    list.iter()
        .filter(|c| !c.is_closed() && keep(c))
        .cloned()
        .collect()
}

/// Marks an HTTP/2 connection as being opened; when dropped (opened, failed or cancelled) the
/// waiting requests are woken to look again.
struct Opening<'a>(&'a ConnectionPool);

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.opening_h2.store(false, Ordering::Release);
        self.0.h2_opened.notify_waiters();
    }
}

/// The backend's `SETTINGS_MAX_CONCURRENT_STREAMS` as last read, and the signal to read it again.
#[derive(Debug)]
pub struct StreamLimit {
    /// Streams the backend allows at once on the connection.
    pub max: AtomicUsize,
    /// Wakes the connection's task to read the limit again.
    pub refresh: tokio::sync::Notify,
}

/// An HTTP/2 handshake with keep-alive PINGs; the connection is driven by its own task, which
/// also keeps the backend's stream limit up to date.
pub async fn handshake(
    stream: Stream,
    open: OpenGuard,
    pings: Pings,
    generation: u64,
) -> Result<Arc<H2Connection>, SendError> {
    let (sender, mut connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(pings.interval)
        .keep_alive_timeout(pings.timeout)
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|err| SendError::Connect(Box::new(err)))?;
    let limits = Arc::new(StreamLimit {
        max: AtomicUsize::new(connection.current_max_send_streams()),
        refresh: tokio::sync::Notify::new(),
    });
    let limit = Arc::clone(&limits);
    tokio::spawn(async move {
        let token = open.cut.clone();
        let mut cut = std::pin::pin!(Dormant::new(token.cancelled()));
        // The task that drives the connection is not woken by what the backend sends (hyper
        // reads in a task of its own), so the limit is read again whenever a stream ends.
        let result = loop {
            tokio::select! {
                result = &mut connection => break result,
                () = limit.refresh.notified() => {}
                () = cut.as_mut() => break Ok(()),
            }
            // Relaxed: a limit read by pickers, refreshed as streams end.
            limit
                .max
                .store(connection.current_max_send_streams(), Ordering::Relaxed);
        };
        if let Err(err) = result {
            tracing::debug!(error = %crate::error::chain(&err), "upstream HTTP/2 connection ended");
        }
        drop(open);
    });
    Ok(Arc::new(H2Connection::new(sender, limits, generation)))
}

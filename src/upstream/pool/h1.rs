//! HTTP/1.1 connections to one backend: one request at a time each, lent from the pool's idle
//! stack (newest first) or opened, and returned by their lease after a clean end.

use super::connect;
use super::{ConnectionPool, Dial, Lease, SendError, Upstream, ticks, unsent};
use crate::body::UpstreamBody;
use crate::upstream::BackendState;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// An HTTP/1.1 connection lent out, with the pool it returns to.
#[derive(Debug)]
pub struct H1Lease {
    connection: Option<Box<H1Connection>>,
    pool: Arc<ConnectionPool>,
    /// `max_idle_per_backend` when it was lent.
    idle_limit: usize,
    pub(super) reusable: bool,
}

impl Drop for H1Lease {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take().filter(|_| self.reusable) {
            self.pool.check_in(connection, self.idle_limit);
        }
    }
}

/// An HTTP/1.1 connection between requests.
#[derive(Debug)]
pub struct H1Connection {
    pub(super) sender: http1::SendRequest<UpstreamBody>,
    pub(super) generation: u64,
    /// `ticks()` when it was last returned.
    pub(super) idle_since: u64,
}

/// Waiting this long for a returned connection to finish its last exchange is plenty: it is
/// either about to be ready or about to close.
const SETTLE: Duration = Duration::from_millis(50);

impl ConnectionPool {
    /// Takes a connection back after its response ended cleanly.
    fn check_in(&self, mut connection: Box<H1Connection>, idle_limit: usize) {
        if connection.sender.is_closed() {
            return;
        }
        connection.idle_since = ticks();
        // Past the bound the connection is dropped, which closes it.
        let _ = self.idle.push(connection, idle_limit);
        if self.max_connections.load(Ordering::Relaxed) != u32::MAX {
            self.returned.notify_one();
        }
    }
}

/// Sends `request` on a pooled HTTP/1.1 connection of `backend`, opening one if none is idle.
pub(super) async fn send(
    backend: &BackendState,
    upstream: &Upstream,
    dial: &Dial,
    mut request: Request<UpstreamBody>,
) -> Result<(Response<Incoming>, Lease), SendError> {
    let pool = &backend.connections;
    // A connection that starts with a PROXY header belongs to its client: never reused.
    let preface = upstream.config.send_proxy_protocol.map(|version| {
        let client = request
            .extensions()
            .get::<super::proxy_header::ClientAddresses>();
        super::proxy_header::header(version, client)
    });
    loop {
        let idle = if preface.is_none() {
            pool.idle.pop()
        } else {
            None
        };
        let (mut connection, reused) = match idle {
            Some(mut connection) => {
                if connection.generation != upstream.generation || connection.sender.is_closed() {
                    continue;
                }
                if !connection.sender.is_ready()
                    && !matches!(
                        tokio::time::timeout(SETTLE, connection.sender.ready()).await,
                        Ok(Ok(()))
                    )
                {
                    continue;
                }
                (connection, true)
            }
            None => {
                let Some(open) = pool.reserve(backend) else {
                    wait_for_return(pool, dial.connect_timeout).await?;
                    continue;
                };
                // Boxed: connecting (DNS, TCP, TLS) is a large future, and keeping it inline
                // would make every request's future that much larger to move around.
                let sender = Box::pin(async {
                    let stream = connect::open(
                        &backend.authority,
                        upstream,
                        dial.connect_timeout,
                        preface.as_deref(),
                    )
                    .await?;
                    connect::http1(stream, open).await
                })
                .await?;
                let connection = Box::new(H1Connection {
                    sender,
                    generation: upstream.generation,
                    idle_since: 0,
                });
                (connection, false)
            }
        };
        match connection.sender.try_send_request(request).await {
            Ok(response) => {
                let lease = Lease::H1(H1Lease {
                    connection: Some(connection),
                    pool: Arc::clone(pool),
                    idle_limit: if preface.is_none() {
                        upstream.config.max_idle_per_backend
                    } else {
                        0
                    },
                    reusable: false,
                });
                return Ok((response, lease));
            }
            // The backend had closed the pooled connection: nothing left, try a fresh one.
            Err(err) => request = unsent(err, reused)?,
        }
    }
}

/// Waits until a connection comes back to a pool at its `max_connections`.
async fn wait_for_return(pool: &ConnectionPool, timeout: Duration) -> Result<(), SendError> {
    tokio::time::timeout(timeout, pool.returned.notified())
        .await
        .map_err(|_| SendError::Saturated)
}

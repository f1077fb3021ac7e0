//! Serving HTTP on one client connection: HTTP/1.1 or HTTP/2 as ALPN or the first bytes say,
//! with the connection's closing conditions.

use super::ListenerSettings;
use super::closing::{Closing, until_closing};
use crate::config::{Limits, Timeouts};
use crate::dormant::Dormant;
use crate::proxy::{ConnActivity, Downstream, Proxy, redirect};
use crate::tls::TlsInfo;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// hyper's own limit on HTTP/1 header fields.
const DEFAULT_MAX_HEADERS: usize = 100;

fn connection_builder(
    timeouts: &Timeouts,
    limits: &Limits,
    tls: Option<&TlsInfo>,
) -> auto::Builder<StreamExecutor> {
    let mut builder = auto::Builder::new(StreamExecutor);
    let mut http1 = builder.http1();
    // A head that does not fit, or has too many fields, is answered 431 by hyper. Its own
    // field limit is 100; setting one, even 100, makes it size its parse arrays at run time
    // (~2.5k instructions per request), so only another value is set.
    if limits.max_headers != DEFAULT_MAX_HEADERS {
        http1.max_headers(limits.max_headers);
    }
    // No timer for HTTP/1: hyper's header-read timer is a timer per request (~600 instructions);
    // `closing::until_closing` bounds slow and missing request heads per connection instead.
    http1
        .max_buf_size(limits.max_header_bytes)
        // Copy bodies into the header buffer and write once, instead of queueing buffers for a
        // vectored write: cheaper for the small responses that dominate gateway traffic, and
        // still one system call.
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        // PINGs find peers that vanished without closing; one unanswered in time closes the
        // connection.
        .keep_alive_interval(timeouts.http2_ping_interval)
        .keep_alive_timeout(timeouts.http2_ping_timeout)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    // Over TLS, ALPN has already chosen the protocol; without it, the preface tells.
    match tls.map(|tls| tls.alpn) {
        Some(Some("h2")) => builder.http2_only(),
        Some(Some(_)) => builder.http1_only(),
        _ => builder,
    }
}

/// Runs hyper's HTTP/2 streams, each a task holding the request's future: boxed, as that future
/// is a few KiB and a task moves what it runs several times (into the task, through its stages
/// as it finishes), while a box moves as a pointer. HTTP/1.1 runs its requests in place and
/// never comes here.
#[derive(Clone, Copy, Debug)]
struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        tokio::spawn(Box::pin(stream));
    }
}

/// What the requests of one client connection share.
#[derive(Debug)]
struct ConnShared {
    proxy: Arc<Proxy>,
    downstream: Downstream,
    redirect_to_https: Option<u16>,
    activity: Arc<ConnActivity>,
}

/// Serves HTTP on one client connection, plain or TLS: the one serving path of every listener.
pub(super) async fn serve_http<S>(
    io: TokioIo<S>,
    downstream: Downstream,
    settings: &ListenerSettings,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Timeouts and limits as of this connection's start, so a reload applies to new connections.
    let (timeouts, limits) = proxy.connection_settings();
    let builder = connection_builder(&timeouts, &limits, downstream.tls.as_deref());
    let peer = downstream.peer;
    // Everything a request of this connection needs, behind one `Arc`: one clone per request.
    let shared = Arc::new(ConnShared {
        proxy,
        downstream,
        redirect_to_https: settings.redirect_to_https,
        activity: Arc::default(),
    });
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |req| {
            let shared = Arc::clone(&shared);
            let active = shared.activity.begin(req.version());
            async move {
                let response = match shared.redirect_to_https {
                    Some(port) => redirect::to_https(&req, port),
                    None => shared.proxy.handle(req, &shared.downstream).await,
                };
                Ok::<_, Infallible>(response.map(|body| body.counted(active)))
            }
        })
    };
    // With upgrades: a WebSocket handshake hands the connection over to a tunnel.
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    // The closing conditions are polled only when one of them wakes, not on each of the several
    // wake-ups every request causes.
    let closing = Dormant::new(until_closing(&shared.activity, &timeouts, &shutdown, peer));
    let reason = tokio::select! {
        biased;
        result = connection.as_mut() => return log_end(result, peer),
        reason = closing => reason,
    };
    if reason == Closing::NoRequest {
        return; // nothing in progress: dropping the connection closes it
    }
    connection.as_mut().graceful_shutdown();
    if reason == Closing::Shutdown {
        // In-flight requests finish within the shutdown grace period, bounded by the gateway.
        return log_end(connection.await, peer);
    }
    // Idle: HTTP/2 sends GOAWAY and waits for the peer; one that never answers is closed anyway.
    match tokio::time::timeout(timeouts.request_header, connection).await {
        Ok(result) => log_end(result, peer),
        Err(_) => tracing::debug!(%peer, "idle client connection did not close after GOAWAY"),
    }
}

fn log_end(result: Result<(), Box<dyn std::error::Error + Send + Sync>>, peer: SocketAddr) {
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "client connection ended with an error");
    }
}

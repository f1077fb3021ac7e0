//! Listeners and client connections: accept, `TCP_NODELAY`, terminate TLS where the listener has
//! it, serve HTTP/1.1 and HTTP/2 through hyper-util's auto builder with timeouts, close idle
//! connections, drain on shutdown.

use crate::config::{Limits, ListenerConfig, Timeouts};
use crate::dormant::Dormant;
use crate::proxy::{ConnActivity, Downstream, Proxy, redirect};
use crate::tls::{Terminator, TlsInfo};
use arc_swap::ArcSwap;
use closing::{Closing, until_closing};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod closing;
pub mod proxy_protocol;

/// A listener that could not be bound or set up.
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
    /// A listener's TLS settings could not be turned into a rustls config.
    #[error("listener {name}: cannot set up TLS: {source}")]
    Tls {
        /// The listener's name.
        name: String,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

/// Binds a listener's socket.
pub async fn bind(listener: &ListenerConfig) -> Result<TcpListener, BindError> {
    let addr = listener.bind;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    socket
        .and_then(|socket| {
            // As std and mio bind: a restarted proxy rebinds while old connections linger.
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(listener.backlog.unwrap_or_else(default_backlog))
        })
        .map_err(|source| BindError::Bind {
            name: listener.name.clone(),
            bind: addr,
            source,
        })
}

/// 1024, or the kernel's `net.core.somaxconn` if lower (NGINX's and HAProxy's sizing): a burst
/// of reconnecting clients queues instead of having its SYNs dropped and retried a second later.
fn default_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .map_or(1024, |somaxconn| somaxconn.clamp(1, 1024))
}

/// What a reload may change on a listener without touching its socket; read once per accepted
/// connection, so established connections keep the settings they started with.
#[derive(Debug)]
pub struct ListenerSettings {
    /// TLS termination, if the listener speaks HTTPS.
    pub tls: Option<Terminator>,
    /// Answer every request with a 308 to HTTPS on this port.
    pub redirect_to_https: Option<u16>,
    /// `Strict-Transport-Security` for every response, on a TLS listener that asks for it.
    pub hsts: Option<http::HeaderValue>,
    /// Proxies whose forwarding headers name the client.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// Whether connections start with a PROXY protocol header naming the client.
    pub proxy_protocol: Option<crate::config::ProxyProtocol>,
}

/// Accepts and serves client connections on `listener` until `stop`, which also drains its
/// open connections; every connection task joins `tasks` so shutdown can wait for in-flight
/// requests.
pub fn serve(
    listener: TcpListener,
    settings: Arc<ArcSwap<ListenerSettings>>,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(accept_loop(listener, settings, proxy, stop, tasks.clone()));
}

async fn accept_loop(
    listener: TcpListener,
    settings: Arc<ArcSwap<ListenerSettings>>,
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
                let (settings, proxy) = (settings.load_full(), Arc::clone(&proxy));
                // Two kinds of task: a TLS connection's state (the handshake, then rustls'
                // session and its serving future) is several KiB more than a plain one's, and
                // one kind of task would give every plain connection room for it.
                if settings.tls.is_some() {
                    tasks.spawn(tls_connection(
                        stream,
                        peer,
                        settings,
                        proxy,
                        shutdown.clone(),
                    ));
                } else {
                    tasks.spawn(connection(stream, peer, settings, proxy, shutdown.clone()));
                }
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

/// A plain client connection.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<ListenerSettings>,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) {
    let Some((stream, peer, local, _open)) =
        accepted(stream, peer, &settings, &proxy, &shutdown).await
    else {
        return;
    };
    let downstream = downstream(peer, local, None, &settings);
    serve_http(TokioIo::new(stream), downstream, &settings, proxy, shutdown).await;
}

/// A client connection on a TLS listener: the handshake, then HTTP.
async fn tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<ListenerSettings>,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) {
    let Some(tls) = &settings.tls else { return };
    let Some((stream, peer, local, _open)) =
        accepted(stream, peer, &settings, &proxy, &shutdown).await
    else {
        return;
    };
    let handshake = tokio::select! {
        handshake = tls.accept(stream) => handshake,
        () = shutdown.cancelled() => return,
    };
    match handshake {
        Ok((stream, info)) => {
            let downstream = downstream(peer, local, Some(Arc::new(info)), &settings);
            serve_http(TokioIo::new(stream), downstream, &settings, proxy, shutdown).await;
        }
        Err(failure) => tracing::debug!(%peer, %failure, "TLS handshake failed"),
    }
}

/// What every client connection does first: `TCP_NODELAY`, the PROXY header if the listener
/// takes one, counting it open. Returns the stream, the client, where it connected and the
/// open count's guard; `None` when the connection ended or the proxy is shutting down.
async fn accepted(
    mut stream: TcpStream,
    mut peer: SocketAddr,
    settings: &ListenerSettings,
    proxy: &Proxy,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr, Option<SocketAddr>, OpenConnection)> {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, %peer, "cannot set TCP_NODELAY");
    }
    // Where the client connected: the PROXY header's destination, else the socket's own
    // address (one getsockname per connection), for pools that send the PROXY protocol.
    let mut local = None;
    if let Some(mode) = settings.proxy_protocol {
        // Before anything else: the client the balancer in front accepted becomes the peer.
        let header = tokio::select! {
            header = proxy_protocol::read(&mut stream, mode) => header,
            () = shutdown.cancelled() => return None,
        };
        match header {
            Ok(Some((client, destination))) => {
                peer = client;
                local = Some(destination);
            }
            Ok(None) => {}
            Err(err) => {
                tracing::debug!(%peer, %err, "connection closed");
                return None;
            }
        }
    }
    proxy.connections_total.increment(1);
    let open = OpenConnection::count(&proxy.connections_open);
    let local = local.or_else(|| stream.local_addr().ok());
    Some((stream, peer, local, open))
}

/// A connection from `peer` to `local` as its requests see it, under the listener's
/// `settings`.
fn downstream(
    peer: SocketAddr,
    local: Option<SocketAddr>,
    tls: Option<Arc<TlsInfo>>,
    settings: &ListenerSettings,
) -> Downstream {
    let mut downstream = Downstream::new(peer, tls).trusting(&settings.trusted_proxies);
    downstream.hsts = settings.hsts.clone();
    downstream.local = local;
    downstream
}

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
    redirect_to_https: Option<u16>,
    activity: Arc<ConnActivity>,
}

/// Serves HTTP on one client connection, plain or TLS: the one serving path of every listener.
async fn serve_http<S>(
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

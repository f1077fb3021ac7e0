//! Listeners and client connections: accept, `TCP_NODELAY`, terminate TLS where the listener has
//! it, read a PROXY protocol header where it comes first, then serve HTTP (`serving`).

use crate::config::ListenerConfig;
use crate::proxy::{Downstream, Proxy};
use crate::tls::{Terminator, TlsInfo};
use arc_swap::ArcSwap;
use serving::serve_http;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod builders;
mod closing;
pub mod http3;
mod prefixed;
pub mod proxy_protocol;
mod serving;

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
    /// Where ACME http-01 answers are, on a plain listener while some certificate uses it.
    pub acme_http01: Option<Arc<crate::live_certs::LiveCerts>>,
    /// HTTP/3 beside this TLS listener, if on.
    pub http3: Option<http3::Http3Settings>,
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
    serve_http(stream, downstream, &settings, proxy, shutdown).await;
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
    // Boxed: the handshake's state (rustls' connection inside) would otherwise be room kept in
    // the task for the connection's whole life.
    let handshake = tokio::select! {
        handshake = Box::pin(tls.accept(stream)) => handshake,
        () = shutdown.cancelled() => return,
    };
    match handshake {
        Ok((stream, info)) => {
            let downstream = downstream(peer, local, Some(Arc::new(info)), &settings);
            serve_http(stream, downstream, &settings, proxy, shutdown).await;
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
) -> Option<(TcpStream, SocketAddr, Option<SocketAddr>, Counted)> {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, %peer, "cannot set TCP_NODELAY");
    }
    // Where the client connected: the PROXY header's destination, else the socket's own
    // address (one getsockname per connection), for pools that send the PROXY protocol.
    let mut local = None;
    if let Some(mode) = settings.proxy_protocol {
        // Before anything else: the client the balancer in front accepted becomes the peer.
        // Boxed: its 1 KiB buffer would otherwise be room kept in every connection's task.
        let header = tokio::select! {
            header = Box::pin(proxy_protocol::read(&mut stream, mode)) => header,
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
    let open = Counted::count(&proxy.connections_open);
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
    downstream.alt_svc = settings.http3.as_ref().map(|h3| h3.alt_svc.clone());
    downstream.local = local;
    downstream
}

/// Counts a client connection in a gauge (open, parked) until dropped.
struct Counted(metrics::Gauge);

impl Counted {
    fn count(gauge: &metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

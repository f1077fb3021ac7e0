//! HTTP/3 on a TLS listener: a QUIC endpoint on a UDP socket beside the TCP one, with the
//! listener's certificates, SNI and session tickets. Each request goes through the same phases
//! as over HTTP/1.1 and HTTP/2 (`Proxy::handle`); only reading the request and writing the
//! response are HTTP/3's own. A stop sends GOAWAY and lets the requests in flight finish.
//!
//! `settings` builds a listener's QUIC config, `request` serves one request stream.

mod request;
mod settings;

pub use settings::Http3Settings;

use super::ListenerSettings;
use crate::proxy::{Downstream, Proxy};
use crate::tls::{HandshakeFailure, TlsInfo};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Above this many handshakes in progress, a client whose address is not yet validated is sent
/// a Retry first (RFC 9000 §8.1): a flood of spoofed Initials then costs one stateless packet
/// each, not a handshake's state.
const HANDSHAKES_BEFORE_RETRY: usize = 64;

/// Binds the UDP socket of a listener's HTTP/3 and makes its endpoint.
pub fn endpoint(addr: SocketAddr, settings: &Http3Settings) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(settings.server_config.clone()),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Accepts and serves QUIC connections on `endpoint` until `stop`; every connection and request
/// joins `tasks`, so shutdown waits for requests in flight.
pub fn serve(
    endpoint: quinn::Endpoint,
    settings: Arc<ArcSwap<ListenerSettings>>,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(accept_loop(endpoint, settings, proxy, stop, tasks.clone()));
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    settings: Arc<ArcSwap<ListenerSettings>>,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let handshaking = Arc::new(AtomicUsize::new(0));
    let connections = TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = stop.cancelled() => break,
        };
        let Some(incoming) = incoming else { break };
        let settings = settings.load_full();
        let Some(http3) = &settings.http3 else {
            incoming.refuse();
            continue;
        };
        let busy = handshaking.load(Ordering::Relaxed) >= HANDSHAKES_BEFORE_RETRY;
        if (busy || http3.always_retry)
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            http3.metrics.retries.increment(1);
            let _ = incoming.retry();
            continue;
        }
        // Counted from here, so a burst of first packets is seen before its tasks run.
        let counted = Handshaking::begin(&handshaking, &http3.metrics.in_progress);
        let connection = connection(
            incoming,
            Arc::clone(&settings),
            Arc::clone(&proxy),
            stop.clone(),
            counted,
            tasks.clone(),
        );
        tasks.spawn(connections.track_future(connection));
    }
    // Every connection has been told GOAWAY (they watch `stop` too): wait for them, then for
    // their closing frames to go out.
    connections.close();
    connections.wait().await;
    endpoint.wait_idle().await;
}

/// Counts a handshake in progress, in the listener's count and gauge, until dropped.
struct Handshaking(Arc<AtomicUsize>, ::metrics::Gauge);

impl Handshaking {
    fn begin(count: &Arc<AtomicUsize>, gauge: &::metrics::Gauge) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        gauge.increment(1.0);
        Self(Arc::clone(count), gauge.clone())
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.decrement(1.0);
    }
}

/// One QUIC connection: the handshake, then its requests, each in a task of its own.
async fn connection(
    incoming: quinn::Incoming,
    settings: Arc<ListenerSettings>,
    proxy: Arc<Proxy>,
    stop: CancellationToken,
    counted: Handshaking,
    tasks: TaskTracker,
) {
    let Some(http3) = &settings.http3 else { return };
    let peer = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        // The client's first flight is read here: a handshake it cannot complete (no `h3` in
        // its ALPN, no shared cipher) fails at once.
        Err(err) => {
            tracing::debug!(%peer, %err, "QUIC handshake failed");
            http3.metrics.failures[failure(&err) as usize].increment(1);
            return;
        }
    };
    // With 0-RTT on, requests may come before the handshake ends; until `pending` resolves,
    // they came in early data.
    let early = if http3.early_data {
        connecting.into_0rtt()
    } else {
        Err(connecting)
    };
    let (conn, pending) = match early {
        Ok((conn, accepted)) => (conn, Some((accepted, counted))),
        Err(connecting) => {
            let conn = handshake(connecting, http3).await;
            // The handshake is over, however it ended.
            drop(counted);
            match conn {
                Some(conn) => (conn, None),
                None => return,
            }
        }
    };
    let quic = &http3.metrics;
    if pending.is_none() {
        quic.handshakes.increment(1);
    }
    quic.connections.increment(1.0);
    let downstream = Arc::new(downstream(&conn, &settings, http3.port));
    let served = Connection {
        conn: &conn,
        settings: &settings,
        proxy: &proxy,
        downstream: &downstream,
        tasks: &tasks,
    }
    .serve(pending, &stop)
    .await;
    quic.connections.decrement(1.0);
    quic.lost_packets.increment(conn.stats().path.lost_packets);
    if let Err(err) = served {
        tracing::debug!(%peer, %err, "HTTP/3 connection ended");
    }
}

/// The handshake within the listener's timeout, counted; `None` if it failed.
async fn handshake(
    connecting: quinn::Connecting,
    http3: &Http3Settings,
) -> Option<quinn::Connection> {
    let failure = match tokio::time::timeout(http3.handshake_timeout, connecting).await {
        Ok(Ok(conn)) => return Some(conn),
        Ok(Err(err)) => failure(&err),
        Err(_) => HandshakeFailure::Timeout,
    };
    http3.metrics.failures[failure as usize].increment(1);
    None
}

/// Why a QUIC handshake failed, in the TLS handshake's terms: a TLS alert travels as a QUIC
/// `CRYPTO_ERROR`, 0x100 plus the alert's number (RFC 9001 §4.8).
fn failure(err: &quinn::ConnectionError) -> HandshakeFailure {
    use quinn::ConnectionError as E;
    let alert = |code: u64| match code.checked_sub(0x100) {
        Some(70) => HandshakeFailure::ProtocolVersion,
        Some(40 | 71) => HandshakeFailure::NoSharedParameters,
        Some(112) => HandshakeFailure::UnknownServerName,
        Some(120) => HandshakeFailure::NoApplicationProtocol,
        _ => HandshakeFailure::BadMessage,
    };
    match err {
        E::TimedOut => HandshakeFailure::Timeout,
        E::TransportError(err) => alert(u64::from(err.code)),
        E::ConnectionClosed(close) if u64::from(close.error_code) >= 0x100 => {
            HandshakeFailure::ClientAlert
        }
        _ => HandshakeFailure::ClientClosed,
    }
}

/// How the requests of a connection to UDP port `port` see it.
fn downstream(conn: &quinn::Connection, settings: &ListenerSettings, port: u16) -> Downstream {
    let sni = conn
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.server_name)
        .map(Box::from);
    let info = TlsInfo {
        version: "TLSv1.3",
        // quinn does not say which suite it negotiated.
        cipher: "-",
        sni,
        alpn: Some("h3"),
    };
    let peer = unmapped(conn.remote_address());
    let mut downstream = super::downstream(peer, None, Some(Arc::new(info)), settings);
    downstream.local = conn.local_ip().map(|ip| SocketAddr::new(ip, port));
    // HTTP/3 clients are where `Alt-Svc` sends them already.
    downstream.alt_svc = None;
    downstream
}

/// An IPv4 client of a dual-stack socket, seen as `::ffff:a.b.c.d`, as itself.
fn unmapped(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map_or(peer, |v4| SocketAddr::new(v4.into(), v6.port())),
        SocketAddr::V4(_) => peer,
    }
}

/// What the requests of one connection share.
struct Connection<'a> {
    conn: &'a quinn::Connection,
    settings: &'a ListenerSettings,
    proxy: &'a Arc<Proxy>,
    downstream: &'a Arc<Downstream>,
    tasks: &'a TaskTracker,
}

/// The handshake of a 0-RTT connection, still to be confirmed, and its place in the count.
type Pending = (quinn::ZeroRttAccepted, Handshaking);

impl Connection<'_> {
    /// Serves requests until the client closes, or `stop`: then GOAWAY, the requests in flight
    /// finish, and the connection closes.
    async fn serve(
        self,
        mut pending: Option<Pending>,
        stop: &CancellationToken,
    ) -> Result<(), h3::error::ConnectionError> {
        let Some(http3) = &self.settings.http3 else {
            return Ok(());
        };
        let limits = self.proxy.connection_settings().1;
        let mut h3 = h3::server::builder()
            .max_field_section_size(limits.max_header_bytes as u64)
            .build(h3_quinn::Connection::new(self.conn.clone()))
            .await?;
        let requests = TaskTracker::new();
        let mut closing = false;
        // A 0-RTT handshake still has the listener's time to finish.
        let handshake_deadline = tokio::time::Instant::now() + http3.handshake_timeout;
        loop {
            tokio::select! {
                // The handshake's end first: a request that comes with it is not early data.
                biased;
                _ = async { pending.as_mut().map(|(accepted, _)| accepted).expect("guarded").await },
                    if pending.is_some() =>
                {
                    pending = None;
                    http3.metrics.handshakes.increment(1);
                }
                () = tokio::time::sleep_until(handshake_deadline), if pending.is_some() => {
                    http3.metrics.failures[HandshakeFailure::Timeout as usize].increment(1);
                    self.conn.close(0u32.into(), b"handshake timeout");
                    return Ok(());
                }
                () = stop.cancelled(), if !closing => {
                    closing = true;
                    // The requests accepted so far are served; later ones the client retries.
                    h3.shutdown(1).await?;
                    requests.close();
                }
                () = requests.wait(), if closing => break,
                accepted = h3.accept() => match accepted? {
                    Some(resolver) => {
                        http3.metrics.streams.increment(1);
                        let request = request::serve(
                            resolver,
                            pending.is_some(),
                            Arc::clone(self.proxy),
                            Arc::clone(self.downstream),
                        );
                        self.tasks.spawn(requests.track_future(request));
                    }
                    None => break,
                },
            }
        }
        requests.close();
        requests.wait().await;
        // The last responses may still be in quinn's buffers, and a close discards them: the
        // client closes first, or gets ten round trips (a second at least) to acknowledge them.
        let linger = (self.conn.rtt() * 10).max(Duration::from_secs(1));
        if tokio::time::timeout(linger, self.conn.closed())
            .await
            .is_err()
        {
            // H3_NO_ERROR: a graceful close.
            self.conn.close(0x100u32.into(), b"");
        }
        Ok(())
    }
}

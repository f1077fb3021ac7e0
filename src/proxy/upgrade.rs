//! WebSocket (HTTP/1.1 `Upgrade`): the request's `Upgrade` and `Connection: upgrade` pass to
//! the backend; after its `101` both connections are handed over (the backend's by hyper, the
//! client's by the connection that served the handshake: `ClientUpgrade`) and bytes are copied
//! both ways (`tunnel`, with no buffer held while idle) until either side closes, the tunnel
//! idles out, or shutdown's grace ends. The tunnel holds the request's in-flight guard, so
//! least-connections and drain see it.

use crate::upstream::InFlightGuard;
use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where tunnels learn about shutdown, and are counted so shutdown waits for them.
#[derive(Debug, Clone)]
pub struct Tunnels {
    /// Cancelled when the proxy begins to shut down.
    pub shutdown: CancellationToken,
    /// The gateway's tasks.
    pub tasks: TaskTracker,
}

/// How long a tunnel may idle, and how long it outlives the start of shutdown.
#[derive(Debug, Clone, Copy)]
pub struct TunnelLimits {
    /// No byte either way for this long closes it.
    pub idle: Duration,
    /// After shutdown begins it is closed this much later.
    pub drain: Duration,
}

/// A client connection as a tunnel takes it over.
pub trait ClientIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ClientIo for T {}

/// The client's side of an upgrade: the connection, once the `101` has been written to it.
/// The server attaches one to every HTTP/1.1 request that asks to upgrade and hands the
/// connection over through it when hyper lets go of it; dropped unused, nothing is handed.
/// (Shared only because request extensions must be `Clone`; it is never cloned.)
#[derive(Debug, Clone)]
pub struct ClientUpgrade(Arc<oneshot::Receiver<Box<dyn ClientIo>>>);

impl ClientUpgrade {
    /// The client's side of an upgrade that comes through `receiver`.
    pub fn new(receiver: oneshot::Receiver<Box<dyn ClientIo>>) -> Self {
        Self(Arc::new(receiver))
    }
}

impl std::fmt::Debug for dyn ClientIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIo")
    }
}

/// The client's side of the upgrade, taken from `req`, if it is a WebSocket handshake.
pub fn handshake<B>(req: &mut http::Request<B>) -> Option<ClientUpgrade> {
    // Only HTTP/1.1 requests carrying `Upgrade` have one: every other request is settled by
    // one look at the extensions.
    req.extensions().get::<ClientUpgrade>()?;
    if websocket(req.headers()) {
        req.extensions_mut().remove::<ClientUpgrade>()
    } else {
        None
    }
}

/// Whether `headers` are a WebSocket handshake's. Whatever else the client's `Upgrade` lists,
/// only `websocket` is sent on (`restore`): `websocket, h2c` must not open an h2c tunnel past
/// routing and limits on a lax backend.
fn websocket(headers: &HeaderMap) -> bool {
    let wants_websocket = headers
        .get(header::UPGRADE)
        .and_then(|upgrade| upgrade.to_str().ok())
        .is_some_and(|upgrade| {
            upgrade
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case(WEBSOCKET))
        });
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    wants_websocket && connection_upgrade
}

/// The one protocol a route's upgrade may switch to.
const WEBSOCKET: &str = "websocket";

/// Whether a `101`'s `Upgrade` names the protocol asked for, and nothing else.
pub fn switches_to_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    let first = values.next();
    values.next().is_none()
        && first.is_some_and(|v| {
            v.as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(WEBSOCKET.as_bytes())
        })
}

/// Puts back the upgrade headers that hop-by-hop stripping removed: `websocket`, the one
/// protocol asked for and (checked on the `101`) switched to.
pub fn restore(headers: &mut HeaderMap) {
    headers.insert(header::UPGRADE, HeaderValue::from_static(WEBSOCKET));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// The client's answer to the backend's `101`: its headers (with the upgrade ones put back) and
/// no body; the tunnel starts once both sides have switched.
pub fn switch(
    mut response: http::Response<hyper::body::Incoming>,
    client: ClientUpgrade,
    in_flight: InFlightGuard,
    limits: TunnelLimits,
    tunnels: &Tunnels,
) -> http::Response<super::ProxyBody> {
    let upstream = hyper::upgrade::on(&mut response);
    spawn(client, upstream, in_flight, limits, tunnels);
    let (mut parts, _) = response.into_parts();
    super::headers::prepare_response(&mut parts.headers, parts.version);
    // `checked_response` let only a `101` to websocket through.
    restore(&mut parts.headers);
    http::Response::from_parts(parts, super::ProxyBody::local(bytes::Bytes::new()))
}

/// Copies between the two upgraded connections in a task of its own.
fn spawn(
    client: ClientUpgrade,
    upstream: OnUpgrade,
    in_flight: InFlightGuard,
    limits: TunnelLimits,
    tunnels: &Tunnels,
) {
    let shutdown = tunnels.shutdown.clone();
    let cut = in_flight.backend().cut_signal();
    tunnels.tasks.spawn(async move {
        let Some(client) = Arc::into_inner(client.0) else {
            return;
        };
        let (client, upstream) = match tokio::join!(client, upstream) {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (Err(_), _) => {
                tracing::debug!("upgrade did not complete: the client connection ended");
                return;
            }
            (_, Err(err)) => {
                tracing::debug!(error = %err, "upgrade did not complete");
                return;
            }
        };
        let activity = Activity::new();
        let mut client = Tracked(client, Arc::clone(&activity));
        let mut upstream = Tracked(TokioIo::new(upstream), Arc::clone(&activity));
        let draining = async {
            shutdown.cancelled().await;
            tokio::time::sleep(limits.drain).await;
        };
        tokio::select! {
            result = super::tunnel::both_ways(&mut client, &mut upstream) => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "tunnel ended");
                }
            }
            () = activity.idle(limits.idle) => tracing::debug!("tunnel closed after idling"),
            () = draining => tracing::debug!("tunnel closed at shutdown"),
            () = cut.cancelled() => tracing::debug!("tunnel closed by its backend's drain deadline"),
        }
        drop(in_flight);
    });
}

/// When bytes last moved through a tunnel, in milliseconds since it opened.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        // Relaxed: a timestamp read by the idle check in the same task.
        self.last
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let deadline = self.opened + last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that notes every byte read from it.
struct Tracked<S>(S, Arc<Activity>);

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.0).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.1.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_a_websocket_handshake() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(websocket(&headers));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!websocket(&headers), "Connection must name upgrade");
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!websocket(&headers), "only WebSocket upgrades pass");
    }

    #[tokio::test(start_paused = true)]
    async fn idles_out_only_after_a_quiet_period() {
        let activity = Activity::new();
        let idle = Duration::from_secs(10);
        tokio::time::advance(Duration::from_secs(6)).await;
        activity.touch();
        let started = Instant::now();
        activity.idle(idle).await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}

//! Serving HTTP on one client connection: HTTP/2 when ALPN or the first bytes say so, else
//! HTTP/1.1, with the connection's closing conditions (`closing`).
//!
//! An HTTP/1.1 connection quiet for a while is parked: hyper's connection, with its read and
//! write buffers (8 KiB each, kept for a connection's life), is taken apart, the socket alone is
//! waited on, and a fresh one serves the next request with whatever bytes were already read. A
//! WebSocket handshake's connection is taken apart the same way and handed to its tunnel.

use super::ListenerSettings;
use super::builders::{http1_builder, http2_builder};
use super::closing::{Closing, Watch};
use super::prefixed::{Prefixed, Socket};
use crate::body::{ClientRequest, Inbound};
use crate::config::Timeouts;
use crate::dormant::Dormant;
use crate::proxy::upgrade::ClientIo;
use crate::proxy::{ClientUpgrade, ConnActivity, Downstream, Proxy, ProxyBody, redirect};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// What the requests of one client connection share.
#[derive(Debug)]
struct ConnShared {
    proxy: Arc<Proxy>,
    downstream: Downstream,
    redirect_to_https: Option<u16>,
    acme_http01: Option<Arc<crate::live_certs::LiveCerts>>,
    activity: Arc<ConnActivity>,
    timeouts: Arc<Timeouts>,
    limits: crate::config::Limits,
}

impl ConnShared {
    /// The response to `req`, counted as in progress until its body ends.
    fn respond(
        self: Arc<Self>,
        req: ClientRequest,
    ) -> impl Future<Output = Result<http::Response<ProxyBody>, Infallible>> + Send + 'static {
        let active = self.activity.begin(req.version());
        async move {
            let acme = self.acme_http01.as_ref();
            let response = match acme.and_then(|live| redirect::acme_http01(&req, live)) {
                Some(answer) => answer,
                None => match self.redirect_to_https {
                    Some(port) => redirect::to_https(&req, port),
                    None => self.proxy.handle(req, &self.downstream).await,
                },
            };
            Ok(response.map(|body| body.counted(active)))
        }
    }
}

/// The future of one HTTP/1.1 request, boxed: hyper takes a connection apart only when its
/// requests' futures can move, and a boxed one moves as a pointer. (hyper boxes it in any case;
/// then the box it keeps for the connection's life is a pointer, not the future's few KiB.)
type Http1Response =
    Pin<Box<dyn Future<Output = Result<http::Response<ProxyBody>, Infallible>> + Send>>;

/// The requests of an HTTP/1.1 connection, and where the connection goes if the last one that
/// asked to upgrade it is answered `101`. Given back with the connection when hyper lets go of
/// it, so the one task that serves the connection reads what its requests left here.
struct Http1Service {
    shared: Arc<ConnShared>,
    tunnel: Cell<Option<oneshot::Sender<Box<dyn ClientIo>>>>,
}

impl Http1Service {
    /// The tunnel waiting for this connection, if its last upgrade request was answered `101`.
    fn waiting_tunnel(self) -> Option<oneshot::Sender<Box<dyn ClientIo>>> {
        self.tunnel
            .into_inner()
            .filter(|tunnel| !tunnel.is_closed())
    }
}

impl hyper::service::Service<http::Request<Incoming>> for Http1Service {
    type Response = http::Response<ProxyBody>;
    type Error = Infallible;
    type Future = Http1Response;

    fn call(&self, mut req: http::Request<Incoming>) -> Http1Response {
        // hyper marks the requests asking to upgrade: the connection is handed over through
        // this if the answer is a `101` (an earlier offer, never taken, is dropped).
        if req.extensions().get::<OnUpgrade>().is_some() {
            let (sender, receiver) = oneshot::channel();
            self.tunnel.set(Some(sender));
            req.extensions_mut().insert(ClientUpgrade::new(receiver));
        }
        Box::pin(Arc::clone(&self.shared).respond(req.map(Inbound::Hyper)))
    }
}

/// Serves HTTP on one client connection, plain or TLS: the one serving path of every listener.
pub(super) fn serve_http<S>(
    io: S,
    downstream: Downstream,
    settings: &ListenerSettings,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + 'static
where
    S: Socket + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Timeouts and limits as of this connection's start, so a reload applies to new connections.
    let (timeouts, limits) = proxy.connection_settings();
    // Everything a request of this connection needs, behind one `Arc`: one clone per request.
    // Made before the connection's future, which then holds a pointer, not a copy of each
    // part beside its argument's (the future lives as long as the connection, parked too).
    let shared = Arc::new(ConnShared {
        proxy,
        downstream,
        redirect_to_https: settings.redirect_to_https,
        acme_http01: settings.acme_http01.clone(),
        activity: Arc::default(),
        timeouts,
        limits,
    });
    serve(Prefixed::new(io), shared, shutdown)
}

/// The connection's future. A plain function returning an `async` block, here and in
/// `serve_http1`: an `async fn` keeps its arguments in its future beside the copies its body
/// moves them into, and this future is the room an idle connection keeps.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn serve<S>(
    mut io: Prefixed<S>,
    shared: Arc<ConnShared>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + 'static
where
    S: Socket + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let (timeouts, limits) = (&shared.timeouts, &shared.limits);
        let peer = shared.downstream.peer;
        let alpn = shared.downstream.tls.as_ref().and_then(|tls| tls.alpn);
        let mut watch = Watch::new(&shared.activity, timeouts, &shutdown, peer);
        // Over TLS, ALPN has already chosen the protocol; without it, the preface tells.
        let http2 = match alpn {
            Some(alpn) => alpn == "h2",
            _ => {
                let sniffed = tokio::select! {
                    sniffed = io.sniff_http2() => sniffed,
                    _ = watch.serving() => return,
                };
                match sniffed {
                    Ok(http2) => http2,
                    Err(err) => return tracing::debug!(%peer, %err, "client connection ended"),
                }
            }
        };
        if http2 {
            let service = {
                let shared = Arc::clone(&shared);
                service_fn(move |req: http::Request<Incoming>| {
                    Arc::clone(&shared).respond(req.map(Inbound::Hyper))
                })
            };
            // Boxed: h2's connection state is several KiB, and inline it would size every
            // connection's task, HTTP/1.1 and idle ones too, to it.
            let mut connection = Box::pin(
                http2_builder(timeouts, limits).serve_connection(TokioIo::new(io), service),
            );
            // The closing conditions are polled only when one of them wakes, not on each of the
            // several wake-ups every request causes.
            let reason = tokio::select! {
                biased;
                result = connection.as_mut() => return log_end(result, peer),
                reason = Dormant::new(watch.serving()) => reason,
            };
            if reason == Closing::NoRequest {
                return; // nothing in progress: dropping the connection closes it
            }
            connection.as_mut().graceful_shutdown();
            if reason == Closing::Shutdown {
                // In-flight requests finish within the shutdown grace period, bounded by the
                // gateway.
                return log_end(connection.await, peer);
            }
            // Idle: GOAWAY, then wait for the peer; one that never answers is closed anyway.
            match tokio::time::timeout(timeouts.request_header, connection).await {
                Ok(result) => log_end(result, peer),
                Err(_) => {
                    tracing::debug!(%peer, "idle client connection did not close after GOAWAY")
                }
            }
        } else {
            let service = Http1Service {
                shared: Arc::clone(&shared),
                tunnel: Cell::new(None),
            };
            serve_http1(io, service, &shared, &mut watch).await;
        }
    }
}

/// What stopped an HTTP/1.1 connection's hyper.
enum Stopped {
    /// hyper finished: the client closed, asked to close, or upgraded.
    Finished(hyper::Result<()>),
    /// A closing condition.
    Closing(Closing),
}

/// HTTP/1.1 on one connection: hyper serves it until it is quiet, then it is parked until the
/// client sends again, as many times as it takes, until it closes or is upgraded.
#[allow(clippy::manual_async_fn)] // on purpose: see `serve`
fn serve_http1<'a, S>(
    mut io: Prefixed<S>,
    mut service: Http1Service,
    shared: &'a ConnShared,
    watch: &'a mut Watch<'_>,
) -> impl Future<Output = ()> + 'a
where
    S: Socket + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let (peer, timeouts) = (shared.downstream.peer, &*shared.timeouts);
        loop {
            // Boxed, so a parked connection's task does not keep room for hyper's connection
            // state (freed when it is taken apart). The builder is made here rather than kept:
            // it is a hundred bytes, and a few instructions per connection and wake-up.
            let builder = http1_builder(&shared.limits);
            let mut connection = Box::new(builder.serve_connection(TokioIo::new(io), service));
            let stopped = {
                let serving = poll_fn(|cx| connection.poll_without_shutdown(cx));
                // As for HTTP/2: the closing conditions are polled only when one of them wakes.
                let closing = Dormant::new(watch.serving());
                tokio::select! {
                    biased;
                    result = serving => Stopped::Finished(result),
                    reason = closing => Stopped::Closing(reason),
                }
            };
            let finished = match stopped {
                Stopped::Finished(result) => result,
                Stopped::Closing(Closing::NoRequest) => return,
                Stopped::Closing(reason) => {
                    Pin::new(&mut *connection).graceful_shutdown();
                    let at_once = poll_fn(|cx| Poll::Ready(connection.poll_without_shutdown(cx)));
                    match (reason, at_once.await) {
                        // Quiet and idle: hyper stopped at once, and the connection is parked.
                        (Closing::Quiet, Poll::Ready(Ok(()))) => {
                            (io, service) = take_apart(connection);
                            if io.has_unread() || park(&io, watch, shared).await {
                                continue;
                            }
                            return close(io, timeouts, peer).await;
                        }
                        (_, Poll::Ready(result)) => result,
                        // In-flight requests finish within the shutdown grace period, bounded by
                        // the gateway.
                        (Closing::Shutdown, Poll::Pending) => {
                            poll_fn(|cx| connection.poll_without_shutdown(cx)).await
                        }
                        // Idle, or quiet but busy after all (a next head begun on a connection
                        // fresh from parking, or a request still arriving after its response went
                        // out): left to finish within the header timeout.
                        (_, Poll::Pending) => {
                            let finishing = poll_fn(|cx| connection.poll_without_shutdown(cx));
                            match tokio::time::timeout(timeouts.request_header, finishing).await {
                                Ok(result) => result,
                                Err(_) => return,
                            }
                        }
                    }
                }
            };
            if let Err(err) = finished {
                return log_end(Err(err), peer);
            }
            let (io, service) = take_apart(connection);
            if let Some(tunnel) = service.waiting_tunnel() {
                // The `101` is out: the rest of the connection is the tunnel's.
                let _ = tunnel.send(Box::new(io));
                return;
            }
            return close(io, timeouts, peer).await;
        }
    }
}

/// The connection under a finished hyper one, with what hyper had read and not used put back,
/// and the service; the rest (hyper's buffers, and the box itself, which a caller moving out of
/// it would keep until its scope ends: through a whole parking) is freed here.
#[allow(clippy::boxed_local)] // on purpose: see above
fn take_apart<S>(
    connection: Box<http1::Connection<TokioIo<Prefixed<S>>, Http1Service>>,
) -> (Prefixed<S>, Http1Service)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let parts = (*connection).into_parts();
    let mut io = parts.io.into_inner();
    io.unread(&parts.read_buf);
    (io, parts.service)
}

/// Waits, holding nothing but the socket, until the client sends again (`true`) or the
/// connection should close (`false`). The socket's readiness is polled, not awaited: its
/// future would be room kept in every parked connection.
async fn park<S: Socket>(io: &Prefixed<S>, watch: &mut Watch<'_>, shared: &ConnShared) -> bool {
    let _parked = super::Counted::count(&shared.proxy.connections_parked);
    let mut closing = std::pin::pin!(watch.parked());
    poll_fn(|cx| {
        if let Poll::Ready(ready) = io.get_ref().tcp().poll_read_ready(cx) {
            return Poll::Ready(ready.is_ok());
        }
        closing.as_mut().poll(cx).map(|_| false)
    })
    .await
}

/// Closes a connection hyper has finished with: TLS's `close_notify`, then the TCP FIN, given
/// at most the header timeout to go out.
async fn close<S: AsyncWrite + Unpin>(mut io: Prefixed<S>, timeouts: &Timeouts, peer: SocketAddr) {
    let closed = tokio::time::timeout(timeouts.request_header, io.shutdown()).await;
    if let Ok(Err(err)) = closed {
        tracing::debug!(%peer, %err, "client connection did not close cleanly");
    }
}

fn log_end(result: hyper::Result<()>, peer: SocketAddr) {
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "client connection ended with an error");
    }
}

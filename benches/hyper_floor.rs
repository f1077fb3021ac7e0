//! The floor under Switchyard's per-request cost: the smallest proxy built from the same
//! pieces (hyper's HTTP/1.1 server, hyper's client connection API with one task per upstream
//! connection, a current-thread tokio runtime, the same allocator), with round-robin over fixed
//! upstreams and a keep-alive pool reduced to a thread-local list of connections, and nothing
//! else: no routing, no header rewriting, no timeouts, metrics or logs.
//! `benches/instructions.sh` runs it next to Switchyard, NGINX and HAProxy. With `--h2` it
//! serves clients HTTP/2 (h2c, prior knowledge) with hyper's HTTP/2 server instead: the
//! `h2-floor` row, what hyper and h2 cost per request before anything of ours.
//!
//! With `--h2-direct` it serves h2c with the h2 crate itself (hyper's HTTP/2 server is a layer
//! over it), each connection's streams polled inside the connection's task rather than a task
//! spawned per stream, relaying GETs (no request bodies): what hyper's per-stream tasks and
//! body adapters cost on top of h2.
//!
//! Usage: `hyper_floor [--h2 | --h2-direct] LISTEN UPSTREAM...` (addresses as `host:port`). Run without
//! addresses (as `cargo bench` does) it measures nothing and exits.

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::thread::LocalKey;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let h2 = std::env::args().any(|arg| arg == "--h2");
    let direct = std::env::args().any(|arg| arg == "--h2-direct");
    let addresses: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let Some((listen, upstreams)) = addresses.split_first().filter(|(_, up)| !up.is_empty()) else {
        println!(
            "hyper_floor: run by benches/instructions.sh with LISTEN UPSTREAM...; nothing to do"
        );
        return;
    };
    let upstreams: Arc<Vec<http::uri::Authority>> = Arc::new(
        upstreams
            .iter()
            .map(|a| a.parse().expect("an upstream address as host:port"))
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if direct {
        runtime.block_on(serve_h2_direct(listen.clone(), upstreams));
    } else {
        runtime.block_on(serve(listen.clone(), upstreams, h2));
    }
}

thread_local! {
    /// Idle connections per upstream (the runtime has one thread, so no lock is needed).
    static IDLE: RefCell<Vec<Vec<SendRequest<Incoming>>>> = const { RefCell::new(Vec::new()) };
    static NEXT: Cell<usize> = const { Cell::new(0) };
    /// The same for `--h2-direct`, whose upstream requests have no body.
    static IDLE_EMPTY: RefCell<Vec<Vec<SendRequest<Empty<Bytes>>>>> = const { RefCell::new(Vec::new()) };
}

/// Idle connections per upstream, for requests with bodies of type `B`.
type Idle<B> = LocalKey<RefCell<Vec<Vec<SendRequest<B>>>>>;

/// Binds `listen` and hands each client connection accepted there to `serve`, once `idle` has
/// a list for each of `upstreams`.
async fn accept_each<B>(
    listen: &str,
    idle: &'static Idle<B>,
    upstreams: &[http::uri::Authority],
    mut serve: impl FnMut(tokio::net::TcpStream),
) {
    idle.with(|idle| *idle.borrow_mut() = upstreams.iter().map(|_| Vec::new()).collect());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .expect("bind the listen address");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        stream.set_nodelay(true).ok();
        serve(stream);
    }
}

/// A ready idle connection to upstream `n`, taken from `idle`.
fn take_ready<B>(idle: &'static Idle<B>, n: usize) -> Option<SendRequest<B>> {
    idle.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = &mut idle[n];
        let ready = list.iter().rposition(SendRequest::is_ready)?;
        Some(list.swap_remove(ready))
    })
}

/// `req` made an HTTP/1.1 request: `Host` from the authority (HTTP/2's `:authority`) when it
/// has none, the target in origin form.
fn origin_form<B>(req: &mut http::Request<B>) -> std::io::Result<()> {
    if let Some(authority) = req.uri().authority() {
        if !req.headers().contains_key(http::header::HOST) {
            let host =
                http::HeaderValue::from_str(authority.as_str()).map_err(std::io::Error::other)?;
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
    *req.uri_mut() = req
        .uri()
        .path_and_query()
        .cloned()
        .map_or_else(|| http::Uri::from_static("/"), http::Uri::from);
    Ok(())
}

/// The next upstream in round-robin order.
fn next_upstream(count: usize) -> usize {
    NEXT.with(|next| {
        let n = next.get();
        next.set(n + 1);
        n % count
    })
}

async fn serve(listen: String, upstreams: Arc<Vec<http::uri::Authority>>, h2: bool) {
    accept_each(&listen, &IDLE, &upstreams, |stream| {
        let upstreams = Arc::clone(&upstreams);
        let service = service_fn(move |mut req: http::Request<Incoming>| {
            let upstreams = Arc::clone(&upstreams);
            async move {
                let n = next_upstream(upstreams.len());
                let mut sender = match take_ready(&IDLE, n) {
                    Some(sender) => sender,
                    None => connect(&upstreams[n]).await?,
                };
                origin_form(&mut req)?;
                let response = sender.send_request(req).await;
                // Back in the list at once: it is ready again when its response has been read.
                IDLE.with(|idle| idle.borrow_mut()[n].push(sender));
                response.map_err(std::io::Error::other)
            }
        });
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            if h2 {
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await
                    .ok();
            } else {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await
                    .ok();
            }
        });
    })
    .await;
}

/// `--h2-direct`: h2's server API, every stream of a connection polled by the connection's task.
async fn serve_h2_direct(listen: String, upstreams: Arc<Vec<http::uri::Authority>>) {
    accept_each(&listen, &IDLE_EMPTY, &upstreams, |stream| {
        let upstreams = Arc::clone(&upstreams);
        tokio::spawn(async move {
            let Ok(mut connection) = h2::server::handshake(stream).await else {
                return;
            };
            let mut streams = FuturesUnordered::new();
            loop {
                tokio::select! {
                    accepted = connection.accept() => match accepted {
                        Some(Ok((req, respond))) => {
                            streams.push(relay_h2(req, respond, Arc::clone(&upstreams)));
                        }
                        _ => break,
                    },
                    Some(_) = streams.next(), if !streams.is_empty() => {}
                }
            }
        });
    })
    .await;
}

/// One HTTP/2 GET relayed to an HTTP/1.1 upstream, its response body sent frame by frame.
async fn relay_h2(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    upstreams: Arc<Vec<http::uri::Authority>>,
) -> std::io::Result<()> {
    let n = next_upstream(upstreams.len());
    let mut sender = match take_ready(&IDLE_EMPTY, n) {
        Some(sender) => sender,
        None => connect(&upstreams[n]).await?,
    };
    let (parts, _) = req.into_parts();
    let mut upstream = http::Request::new(Empty::<Bytes>::new());
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = parts.uri;
    *upstream.headers_mut() = parts.headers;
    origin_form(&mut upstream)?;
    let response = sender.send_request(upstream).await;
    IDLE_EMPTY.with(|idle| idle.borrow_mut()[n].push(sender));
    let (mut head, mut body) = response.map_err(std::io::Error::other)?.into_parts();
    // HTTP/2 forbids connection-specific fields; nginx sends `Connection: keep-alive`.
    head.headers.remove(http::header::CONNECTION);
    let end = body.is_end_stream();
    let mut send = respond
        .send_response(http::Response::from_parts(head, ()), end)
        .map_err(std::io::Error::other)?;
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame.map_err(std::io::Error::other)?.into_data() {
            send.send_data(data, body.is_end_stream())
                .map_err(std::io::Error::other)?;
        }
    }
    Ok(())
}

async fn connect<B>(upstream: &http::uri::Authority) -> std::io::Result<SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(upstream.as_str()).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    Ok(sender)
}

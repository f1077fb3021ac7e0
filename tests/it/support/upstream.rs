//! Fixture upstreams. `Upstream::start(name)` answers with its name in `x-upstream` and serves a
//! few test paths:
//! - `/headers`: the request headers, one `name: value` per line;
//! - `/hold`: waits until `release_held()` is called;
//! - `/sink`: reads the request body as a stream and answers with its length;
//! - `/big?bytes=N`: streams N bytes back;
//! - `/pattern?bytes=N`: N bytes of `pattern(N)`, whose order matters (a swapped or lost chunk
//!   shows in its hash);
//! - `/sha256`: answers with the hex SHA-256 of the request body;
//! - `/held-body?bytes=N`: `/pattern` whose second half waits for `release_held()`;
//! - `/hop`: answers with hop-by-hop headers that a proxy must remove;
//! - `/health`: answers with the status set by `set_health_status` (200 at first);
//! - anything else: answers with the status set by `set_status` (200 at first).
//!
//! `stop()` closes the listener and every open connection; `restart()` listens again on the
//! same port.
//!
//! Longer than most files on purpose: every fixture server the tests start (the echoing
//! upstream, hung, raw and scripted ones, small services), so each behaves alike.
//!
//! Longer than most files on purpose: this is the one fixture upstream every test uses, with
//! all its paths.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, Infallible>;

/// A running fixture upstream.
pub struct Upstream {
    pub name: &'static str,
    pub addr: SocketAddr,
    state: Arc<State>,
    running: Mutex<CancellationToken>,
}

/// How a fixture upstream serves, beyond the defaults (plain HTTP/1.1 or h2c by preface).
#[derive(Clone, Default)]
pub struct Options {
    /// Serve TLS with this config (its ALPN decides HTTP/2 or HTTP/1.1).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub max_concurrent_streams: Option<u32>,
    /// Close a connection after this long without a request in progress.
    pub idle_close: Option<std::time::Duration>,
    /// Listen here rather than on an ephemeral port of 127.0.0.1.
    pub bind: Option<SocketAddr>,
}

struct State {
    options: Options,
    connections: AtomicUsize,
    /// Connections open now (accepted, not yet closed).
    open: AtomicUsize,
    /// Connections closed by this side after `idle_close`.
    idle_closed: AtomicUsize,
    name: &'static str,
    requests: AtomicUsize,
    health_probes: AtomicUsize,
    held: AtomicUsize,
    release: watch::Sender<bool>,
    status: AtomicU16,
    health_status: AtomicU16,
    /// Milliseconds every ordinary answer waits.
    delay_ms: AtomicU64,
    /// Seconds of `Retry-After` on ordinary answers (0: none).
    retry_after: AtomicU64,
}

impl Upstream {
    /// Starts a fixture upstream on an ephemeral port.
    pub async fn start(name: &'static str) -> Self {
        Self::start_with(name, Options::default()).await
    }

    /// Fixture upstreams named `names`, started one after the other.
    pub async fn start_all<const N: usize>(names: [&'static str; N]) -> [Self; N] {
        let mut started = Vec::with_capacity(N);
        for name in names {
            started.push(Self::start(name).await);
        }
        started.try_into().ok().expect("one upstream per name")
    }

    /// Starts a fixture upstream with `options`.
    pub async fn start_with(name: &'static str, options: Options) -> Self {
        let bind = options
            .bind
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(bind).await.expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let state = Arc::new(State {
            options,
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            idle_closed: AtomicUsize::new(0),
            name,
            requests: AtomicUsize::new(0),
            health_probes: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            release: watch::channel(false).0,
            status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            retry_after: AtomicU64::new(0),
        });
        let running = CancellationToken::new();
        serve(listener, Arc::clone(&state), running.clone());
        Self {
            name,
            addr,
            state,
            running: Mutex::new(running),
        }
    }

    /// Closes the listener and every open connection, as a crashed process would.
    pub fn stop(&self) {
        self.running.lock().unwrap().cancel();
    }

    /// Listens again on the same address.
    pub async fn restart(&self) {
        // The stopped accept loop drops its listener asynchronously: retry until it has.
        let listener = super::poll_until(
            super::DEADLINE,
            "the upstream's address free again",
            || async { TcpListener::bind(self.addr).await.ok() },
        )
        .await;
        let running = CancellationToken::new();
        serve(listener, Arc::clone(&self.state), running.clone());
        *self.running.lock().unwrap() = running;
    }

    /// The status of every ordinary answer from now on.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// `Retry-After: <seconds>` on every ordinary answer from now on (0: none).
    pub fn set_retry_after(&self, seconds: u64) {
        self.state.retry_after.store(seconds, Ordering::SeqCst);
    }

    /// How long every ordinary answer waits from now on.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// The status of `/health` answers from now on.
    pub fn set_health_status(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }

    /// `/health` requests received so far.
    pub fn health_probes(&self) -> usize {
        self.state.health_probes.load(Ordering::SeqCst)
    }

    /// Requests received so far, health probes excluded.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    /// Connections open now: after `stop`, 0 once every one is closed.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Connections this backend closed for idling past `Options::idle_close`.
    pub fn idle_closed(&self) -> usize {
        self.state.idle_closed.load(Ordering::SeqCst)
    }

    /// Requests currently waiting in `/hold`.
    pub fn held(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Lets every current and future `/hold` request answer.
    pub fn release_held(&self) {
        self.state.release.send_replace(true);
    }
}

fn serve(listener: TcpListener, state: Arc<State>, running: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                () = running.cancelled() => return,
            };
            state.connections.fetch_add(1, Ordering::SeqCst);
            state.open.fetch_add(1, Ordering::SeqCst);
            let state = Arc::clone(&state);
            let running = running.clone();
            tokio::spawn(async move {
                let _open = Open(Arc::clone(&state));
                match state.options.tls.clone() {
                    None => serve_connection(stream, state, running).await,
                    Some(tls) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await
                        else {
                            return;
                        };
                        serve_connection(stream, state, running).await;
                    }
                }
            });
        }
    });
}

/// Counts a connection as open until dropped.
struct Open(Arc<State>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection<S>(stream: S, state: Arc<State>, running: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Requests in progress on this connection, and when the last one ended (for idle_close).
    let activity = Arc::new((AtomicUsize::new(0), Mutex::new(std::time::Instant::now())));
    let service = {
        let activity = Arc::clone(&activity);
        let state = Arc::clone(&state);
        service_fn(move |req| {
            let state = Arc::clone(&state);
            let activity = Arc::clone(&activity);
            async move {
                activity.0.fetch_add(1, Ordering::SeqCst);
                let response = answer(req, state).await;
                *activity.1.lock().unwrap() = std::time::Instant::now();
                activity.0.fetch_sub(1, Ordering::SeqCst);
                response
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if let Some(max) = state.options.max_concurrent_streams {
        builder.http2().max_concurrent_streams(max);
    }
    let mut connection =
        Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
    let idle = async {
        let Some(limit) = state.options.idle_close else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let quiet = activity.1.lock().unwrap().elapsed();
            if activity.0.load(Ordering::SeqCst) == 0 && quiet >= limit {
                return;
            }
        }
    };
    let idled = tokio::select! {
        _ = connection.as_mut() => false,
        () = idle => true,
        () = running.cancelled() => false,
    };
    drop(connection); // closes the socket, before an idle close is counted
    if idled {
        state.idle_closed.fetch_add(1, Ordering::SeqCst);
    }
}

async fn answer(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == "/health" {
        state.health_probes.fetch_add(1, Ordering::SeqCst);
        let code = StatusCode::from_u16(state.health_status.load(Ordering::SeqCst)).unwrap();
        return Ok(status(code));
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let mut response = match req.uri().path() {
        "/headers" => {
            let mut text = String::new();
            for (name, value) in req.headers() {
                text += &format!("{name}: {}\n", value.to_str().unwrap_or("<binary>"));
            }
            full(text)
        }
        "/hold" => {
            let mut release = state.release.subscribe();
            state.held.fetch_add(1, Ordering::SeqCst);
            let _ = release.wait_for(|released| *released).await;
            state.held.fetch_sub(1, Ordering::SeqCst);
            full("released")
        }
        "/sink" => {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => total += frame.data_ref().map_or(0, |d| d.len()),
                    Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
                }
            }
            full(total.to_string())
        }
        "/big" => Response::new(repeat_body(query_bytes(&req))),
        "/pattern" => full_bytes(pattern(query_bytes(&req))),
        "/held-body" => {
            let len = query_bytes(&req);
            let mut data = Bytes::from(pattern(len));
            let first = data.split_to(data.len() / 2);
            let (mut sender, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
            let mut release = state.release.subscribe();
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let _ = sender.send_data(first).await;
                state.held.fetch_add(1, Ordering::SeqCst);
                let _ = release.wait_for(|released| *released).await;
                state.held.fetch_sub(1, Ordering::SeqCst);
                let _ = sender.send_data(data).await;
            });
            let mut response = Response::new(body.boxed());
            response.headers_mut().insert("content-length", len.into());
            response
        }
        "/sha256" => match req.into_body().collect().await {
            Ok(body) => full(sha256_hex(&body.to_bytes())),
            Err(_) => status(StatusCode::BAD_REQUEST),
        },
        "/hop" => {
            let mut response = full("hop");
            let h = response.headers_mut();
            h.insert("connection", "x-private".parse().unwrap());
            h.insert("x-private", "secret".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("proxy-connection", "keep-alive".parse().unwrap());
            h.insert("x-kept", "yes".parse().unwrap());
            response
        }
        _ => {
            let delay = state.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            let code = StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap();
            let mut response = full(state.name);
            *response.status_mut() = code;
            let retry_after = state.retry_after.load(Ordering::SeqCst);
            if retry_after > 0 {
                response
                    .headers_mut()
                    .insert("retry-after", retry_after.into());
            }
            response
        }
    };
    response
        .headers_mut()
        .insert("x-upstream", state.name.parse().unwrap());
    Ok(response)
}

/// The `N` of a `?bytes=N` query; 0 if none.
fn query_bytes<B>(req: &Request<B>) -> usize {
    req.uri()
        .query()
        .and_then(|q| q.strip_prefix("bytes="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `len` bytes no two 251-byte stretches of which are alike.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ ((i / 251) % 256) as u8)
        .collect()
}

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn full_bytes(bytes: Vec<u8>) -> Response<Body> {
    Response::new(Full::new(Bytes::from(bytes)).boxed())
}

fn full(text: impl Into<String>) -> Response<Body> {
    Response::new(Full::new(Bytes::from(text.into())).boxed())
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = full(code.as_str());
    *response.status_mut() = code;
    response
}

const CHUNK: usize = 64 * 1024;
static ZEROES: [u8; CHUNK] = [0; CHUNK];

/// `bytes` zero bytes in 64 KiB chunks that share one static buffer: nothing is buffered.
pub fn repeat_body(bytes: usize) -> Body {
    RepeatBody { remaining: bytes }.boxed()
}

/// Yields `remaining` zero bytes, one static 64 KiB slice at a time.
pub struct RepeatBody {
    pub remaining: usize,
}

impl hyper::body::Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let len = CHUNK.min(self.remaining);
        self.remaining -= len;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROES[..len])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining as u64)
    }
}

/// A TCP server that accepts connections and never answers (reads and discards).
pub async fn start_hung() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind hung upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// A TCP server that reads once, answers every connection with `reply` bytes and closes;
/// returns its address and a count of connections it accepted.
pub async fn start_raw(reply: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    start_scripted(move |_| reply, false).await
}

/// A TCP server that reads once from its `n`-th connection (from 0) and answers `reply(n)`;
/// then closes it, or with `keep_open` reads on until the peer closes. Returns its address and
/// a count of connections it accepted.
pub async fn start_scripted(
    reply: impl Fn(usize) -> &'static [u8] + Send + Sync + 'static,
    keep_open: bool,
) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw upstream");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let reply = Arc::clone(&reply);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(reply(n)).await;
                if keep_open {
                    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                } else {
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    (addr, connections)
}

/// An HTTP/1.1 server on an ephemeral port answering every request with `answer` (a small
/// service of the test's own: an auth service, a JWKS endpoint); counts the requests.
pub async fn serve_fn(
    answer: impl Fn(&Request<hyper::body::Incoming>) -> Response<http_body_util::Full<Bytes>>
    + Send
    + Sync
    + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&asked);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (counted, answer) = (Arc::clone(&counted), Arc::clone(&answer));
            let service = hyper::service::service_fn(move |req| {
                counted.fetch_add(1, Ordering::SeqCst);
                let response = answer(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (addr, asked)
}

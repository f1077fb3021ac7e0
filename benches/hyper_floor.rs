//! The floor under Switchyard's per-request cost: the smallest proxy built from the same
//! pieces (hyper's HTTP/1.1 server, hyper's client connection API with one task per upstream
//! connection, a current-thread tokio runtime, the same allocator), with round-robin over fixed
//! upstreams and a keep-alive pool reduced to a thread-local list of connections, and nothing
//! else: no routing, no header rewriting, no timeouts, metrics or logs.
//! `benches/instructions.sh` runs it next to Switchyard, NGINX and HAProxy. With `--h2` it
//! serves clients HTTP/2 (h2c, prior knowledge) with hyper's HTTP/2 server instead: the
//! `h2-floor` row, what hyper and h2 cost per request before anything of ours.
//!
//! Usage: `hyper_floor [--h2] LISTEN UPSTREAM...` (addresses as `host:port`). Run without
//! addresses (as `cargo bench` does) it measures nothing and exits.

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::cell::{Cell, RefCell};
use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let h2 = std::env::args().any(|arg| arg == "--h2");
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
    runtime.block_on(serve(listen.clone(), upstreams, h2));
}

thread_local! {
    /// Idle connections per upstream (the runtime has one thread, so no lock is needed).
    static IDLE: RefCell<Vec<Vec<SendRequest<Incoming>>>> = const { RefCell::new(Vec::new()) };
    static NEXT: Cell<usize> = const { Cell::new(0) };
}

async fn serve(listen: String, upstreams: Arc<Vec<http::uri::Authority>>, h2: bool) {
    IDLE.with(|idle| *idle.borrow_mut() = upstreams.iter().map(|_| Vec::new()).collect());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bind the listen address");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        stream.set_nodelay(true).ok();
        let upstreams = Arc::clone(&upstreams);
        let service = service_fn(move |mut req: http::Request<Incoming>| {
            let upstreams = Arc::clone(&upstreams);
            async move {
                let n = NEXT.with(|next| {
                    let n = next.get();
                    next.set(n + 1);
                    n % upstreams.len()
                });
                let pooled = IDLE.with(|idle| {
                    let mut idle = idle.borrow_mut();
                    let list = &mut idle[n];
                    let ready = list.iter().rposition(SendRequest::is_ready)?;
                    Some(list.swap_remove(ready))
                });
                let mut sender = match pooled {
                    Some(sender) => sender,
                    None => connect(&upstreams[n]).await?,
                };
                // HTTP/2 carries the host as `:authority`; an HTTP/1.1 upstream needs `Host`.
                if let Some(authority) = req.uri().authority() {
                    if !req.headers().contains_key(http::header::HOST) {
                        let host = http::HeaderValue::from_str(authority.as_str())
                            .map_err(std::io::Error::other)?;
                        req.headers_mut().insert(http::header::HOST, host);
                    }
                }
                *req.uri_mut() = req
                    .uri()
                    .path_and_query()
                    .cloned()
                    .map_or_else(|| http::Uri::from_static("/"), http::Uri::from);
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
    }
}

async fn connect(upstream: &http::uri::Authority) -> std::io::Result<SendRequest<Incoming>> {
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

//! The floor under Switchyard's per-request cost: the smallest proxy built from the same
//! pieces (hyper's HTTP/1.1 server, hyper-util's pooled client, a current-thread tokio runtime,
//! the same allocator), with round-robin over fixed upstreams and nothing else: no routing, no
//! header rewriting, no timeouts, metrics or logs. `benches/instructions.sh` runs it next to
//! Switchyard, NGINX and HAProxy.
//!
//! Usage: `hyper_floor LISTEN UPSTREAM...` (addresses as `host:port`). Run without addresses
//! (as `cargo bench` does) it measures nothing and exits.

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
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
    runtime.block_on(serve(listen.clone(), upstreams));
}

async fn serve(listen: String, upstreams: Arc<Vec<http::uri::Authority>>) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .build(connector);
    let next = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bind the listen address");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        stream.set_nodelay(true).ok();
        let (client, upstreams, next) = (client.clone(), upstreams.clone(), next.clone());
        let service = service_fn(move |mut req: http::Request<Incoming>| {
            let upstream = &upstreams[next.fetch_add(1, Ordering::Relaxed) % upstreams.len()];
            let path = req.uri().path_and_query().cloned();
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(http::uri::Scheme::HTTP);
            uri.authority = Some(upstream.clone());
            uri.path_and_query = path;
            *req.uri_mut() = http::Uri::from_parts(uri).expect("scheme, authority and path");
            client.request(req)
        });
        tokio::spawn(async move {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
                .ok();
        });
    }
}

//! An HTTP/3 load client for `benches/compare.sh` (h2load has no HTTP/3 in Debian 12): quinn and
//! h3, certificates not verified, one thread.
//!
//! - `requests`: CONNS connections, each with STREAMS requests in flight, GET `PATH` again and
//!   again for SECONDS; prints the responses completed and the failures.
//! - `handshakes`: CONNS clients, each opening a new connection (a full handshake: no
//!   resumption), sending one GET and closing, again and again for SECONDS; prints the
//!   handshakes completed and the failures.
//!
//! Usage: `h3_load requests|handshakes ADDR AUTHORITY PATH CONNS STREAMS SECONDS`. Run without
//! arguments (as `cargo bench` does) it measures nothing and exits.

use bytes::{Buf, Bytes};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a run counted.
#[derive(Default)]
struct Counts {
    done: AtomicU64,
    failed: AtomicU64,
}

struct Load {
    addr: SocketAddr,
    authority: String,
    path: String,
    conns: usize,
    streams: usize,
    until: Instant,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [mode, addr, authority, path, conns, streams, seconds] = args.as_slice() else {
        println!("h3_load: run by benches/compare.sh; nothing to do");
        return;
    };
    let seconds: u64 = seconds.parse().expect("SECONDS");
    let load = Arc::new(Load {
        addr: addr.parse().expect("ADDR as ip:port"),
        authority: authority.clone(),
        path: path.clone(),
        conns: conns.parse().expect("CONNS"),
        streams: streams.parse().expect("STREAMS"),
        until: Instant::now() + Duration::from_secs(seconds),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let counts = Arc::new(Counts::default());
    let handshakes = mode == "handshakes";
    runtime.block_on(async {
        let endpoint = client_endpoint(handshakes);
        let mut tasks = Vec::new();
        for _ in 0..load.conns {
            let (endpoint, load, counts) = (endpoint.clone(), load.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
                if handshakes {
                    handshake_loop(&endpoint, &load, &counts).await;
                } else {
                    request_loop(&endpoint, &load, &counts).await;
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
        endpoint.wait_idle().await;
    });
    let what = if handshakes { "handshakes" } else { "requests" };
    println!(
        "{what}={} failed={}",
        counts.done.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed)
    );
}

fn client_endpoint(full_handshakes: bool) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(switchyard::config::SkipVerify(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    if full_handshakes {
        tls.resumption = rustls::client::Resumption::disabled();
    }
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("a UDP socket");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    endpoint
}

/// One connection, `streams` requests in flight on it until the time is up.
async fn request_loop(endpoint: &quinn::Endpoint, load: &Load, counts: &Arc<Counts>) {
    let Some((sender, driver)) = connect(endpoint, load).await else {
        counts.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut streams = Vec::new();
    for _ in 0..load.streams {
        let (mut sender, counts) = (sender.clone(), counts.clone());
        let (uri, until) = (uri(load), load.until);
        streams.push(tokio::spawn(async move {
            while Instant::now() < until {
                let counter = if get(&mut sender, &uri).await {
                    &counts.done
                } else {
                    &counts.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for stream in streams {
        let _ = stream.await;
    }
    drop(sender);
    driver.abort();
}

/// A new connection, one request, closed, until the time is up.
async fn handshake_loop(endpoint: &quinn::Endpoint, load: &Load, counts: &Arc<Counts>) {
    let uri = uri(load);
    while Instant::now() < load.until {
        let ok = match connect(endpoint, load).await {
            Some((mut sender, driver)) => {
                let ok = get(&mut sender, &uri).await;
                drop(sender);
                driver.abort();
                ok
            }
            None => false,
        };
        let counter = if ok { &counts.done } else { &counts.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

async fn connect(
    endpoint: &quinn::Endpoint,
    load: &Load,
) -> Option<(Sender, tokio::task::JoinHandle<()>)> {
    let host = load.authority.split(':').next().unwrap_or("localhost");
    let conn = endpoint.connect(load.addr, host).ok()?.await.ok()?;
    let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .ok()?;
    let driver = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Some((sender, driver))
}

fn uri(load: &Load) -> http::Uri {
    format!("https://{}{}", load.authority, load.path)
        .parse()
        .expect("a valid URI")
}

/// One GET, its body read; whether it came back 200.
async fn get(sender: &mut Sender, uri: &http::Uri) -> bool {
    let request = http::Request::get(uri.clone()).body(()).expect("a request");
    let Ok(mut stream) = sender.send_request(request).await else {
        return false;
    };
    if stream.finish().await.is_err() {
        return false;
    }
    let Ok(response) = stream.recv_response().await else {
        return false;
    };
    while let Ok(Some(mut chunk)) = stream.recv_data().await {
        chunk.advance(chunk.remaining());
    }
    response.status() == 200
}

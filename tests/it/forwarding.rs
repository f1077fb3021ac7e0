//! Forwarding through the real proxy: header rewriting both ways, HTTP/2 cleartext, every
//! error status triggered for real, client timeouts, and malformed input.

use crate::support::config::ConfigBuilder;
use crate::support::upstream::{start_hung, start_raw};
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy with one route to one pool of these backend addresses, plus extra TOML.
/// The proxy over one round-robin pool of `backends`, with `settings` (dotted paths) set.
async fn proxy_to(backends: &[SocketAddr], settings: &[(&str, &str)]) -> TestProxy {
    let list: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, a)| (["b0", "b1", "b2"][i], *a, 1))
        .collect();
    let config = settings.iter().fold(
        ConfigBuilder::single_pool(&list),
        |config, (path, value)| config.set(path, *value),
    );
    TestProxy::start(&config.toml()).await
}

/// Writes raw bytes and reads until the proxy closes or 10s pass.
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect to proxy");
    stream.write_all(request).await.expect("write request");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_added_both_ways() {
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&[upstream.addr], &[]).await;
    let client = client();

    let request = Request::get(proxy.url("/headers"))
        .header("host", "shop.example.com")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must not pass")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-end-to-end", "kept")
        .body(Full::default())
        .unwrap();
    let seen = send(&client, request).await;
    assert_eq!(seen.status, 200);
    let seen = seen.body.to_ascii_lowercase();
    for absent in [
        "x-hop:",
        "keep-alive:",
        "proxy-connection:",
        "te:",
        "upgrade:",
    ] {
        assert!(
            !seen.lines().any(|l| l.starts_with(absent)),
            "{absent} reached the upstream:\n{seen}"
        );
    }
    for present in [
        "host: shop.example.com",
        "x-end-to-end: kept",
        "x-forwarded-for: 203.0.113.9, 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: shop.example.com",
        "via: 1.1 switchyard",
    ] {
        assert!(
            seen.lines().any(|l| l == present),
            "missing {present:?} upstream:\n{seen}"
        );
    }

    let answer = get(&client, &proxy.url("/hop"), None).await;
    assert_eq!(answer.status, 200);
    for absent in ["x-private", "keep-alive", "proxy-connection"] {
        assert!(
            !answer.headers.contains_key(absent),
            "{absent} reached the client: {:?}",
            answer.headers
        );
    }
    assert_eq!(answer.headers["x-kept"], "yes");
    assert_eq!(answer.headers["via"], "1.1 switchyard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_clients_are_served_and_keep_their_authority() {
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&[upstream.addr], &[]).await;
    // The request names another host than the one we connect to, as through a DNS name.
    let request = Request::get(format!(
        "http://h2.example.com:{}/headers",
        proxy.addr.port()
    ))
    .body(Full::<Bytes>::default())
    .unwrap();
    let (mut sender, _conn) = h2c(proxy.addr).await;
    let response = sender.send_request(request).await.expect("h2 request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen = String::from_utf8_lossy(&body).to_ascii_lowercase();
    let expected_host = format!("host: h2.example.com:{}", proxy.addr.port());
    assert!(seen.lines().any(|l| l == expected_host), "{seen}");
    assert!(seen.lines().any(|l| l == "via: 2 switchyard"), "{seen}");
}

/// What HTTP/2 allows and HTTP/1.1 does not is settled before an HTTP/1.1 backend: cookie
/// fields are joined into one (RFC 9113 §8.2.3), and `:path *` with GET is a 400 as HTTP/1.1's
/// `GET *` is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cookies_are_joined_and_an_asterisk_get_is_refused() {
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&[upstream.addr], &[]).await;
    let (mut sender, _conn) = h2c(proxy.addr).await;
    let request = Request::get(format!("http://a.test:{}/headers", proxy.addr.port()))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = sender.send_request(request).await.expect("h2 request");
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen = String::from_utf8_lossy(&body).to_ascii_lowercase();
    let cookies: Vec<_> = seen.lines().filter(|l| l.starts_with("cookie:")).collect();
    assert_eq!(cookies, ["cookie: a=1; b=2"], "{seen}");

    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(format!("a.test:{}", proxy.addr.port()).parse().unwrap());
    uri.path_and_query = Some(http::uri::PathAndQuery::from_static("*"));
    let asterisk = http::Uri::from_parts(uri).unwrap();
    for (method, expected) in [(http::Method::GET, 400), (http::Method::OPTIONS, 200)] {
        let request = Request::builder()
            .method(method.clone())
            .uri(asterisk.clone())
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = sender.send_request(request).await.expect("h2 request");
        assert_eq!(response.status(), expected, "{method} *");
    }
    let requests_seen = upstream.requests();
    assert_eq!(requests_seen, 2, "GET * must not reach the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_upstream_port_gives_502() {
    let proxy = proxy_to(&[closed_port()], &[]).await;
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.body, "upstream connection failed\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_speaking_garbage_gives_502() {
    let (garbage, _) = start_raw(b"THIS IS NOT HTTP\r\n\r\n").await;
    let proxy = proxy_to(&[garbage], &[]).await;
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_upstream_gives_504_after_the_response_header_timeout() {
    let hung = start_hung().await;
    let proxy = proxy_to(&[hung], &[("timeouts.response_header", "200ms")]).await;
    let started = tokio::time::Instant::now();
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 504);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "answered before the timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backends_give_503_with_retry_after() {
    let upstream = Upstream::start("up").await;
    let toml = ConfigBuilder::single_pool(&[("only", upstream.addr, 1)])
        .with_pool(|pool| pool.set_backend("max_in_flight", 1))
        .toml();
    let proxy = TestProxy::start(&toml).await;
    let url = proxy.url("/hold");
    let held = tokio::spawn(async move { get(&client(), &url, None).await });
    eventually(Duration::from_secs(10), "the held request", || {
        upstream.held() == 1
    })
    .await;

    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers["retry-after"], "2");
    assert_eq!(upstream.requests(), 1, "a 503 never reaches a backend");

    upstream.release_held();
    assert_eq!(held.await.unwrap().status, 200);
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_the_proxy_keeps_serving() {
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&[upstream.addr], &[]).await;
    let bad_inputs: [&[u8]; 7] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n", // HTTP/1.1 without Host
        b"GET / HTTP/9.9\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"\x00\xff\xfe\r\n\r\n",
    ];
    for input in bad_inputs {
        let reply = raw_exchange(proxy.addr, input).await;
        assert!(
            reply.starts_with("HTTP/1.1 400") || reply.starts_with("HTTP/1.0 400"),
            "{:?} got {reply:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(
        upstream.requests(),
        0,
        "no malformed request reached the backend"
    );
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_headers_are_cut_off_by_the_header_timeout() {
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&[upstream.addr], &[("timeouts.request_header", "300ms")]).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    // The default header timeout is 30s; seeing the close well before that proves ours applies.
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(
        closed.is_ok(),
        "connection still open after 10s with incomplete headers"
    );
    assert_eq!(upstream.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed() {
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&[upstream.addr], &[("timeouts.idle", "400ms")]).await;
    let (mut sender, conn) = h2c(proxy.addr).await;
    let response = sender
        .send_request(
            Request::get(format!("http://{}/", proxy.addr))
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    // The connection future ends when the proxy sends GOAWAY and closes; the default idle
    // timeout is 60s, so ending well before that proves the configured one applies.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "idle h2 connection still open after 10s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_closed_by_the_backend_are_replaced_without_failing_a_request() {
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&[upstream.addr], &[]).await;
    let client = client();
    assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    // The backend restarts: every idle connection in the proxy's pool is now closed.
    upstream.stop();
    eventually(DEADLINE, "the backend's connections closed", || {
        upstream.open_connections() == 0
    })
    .await;
    upstream.restart().await;
    let post = Request::post(proxy.url("/sink"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let answer = send(&client, post).await;
    assert_eq!((answer.status.as_u16(), answer.body.as_str()), (200, "7"));
    assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_take_the_proxy_down() {
    // A panic in a connection task would not stop the process (tokio contains it), so count
    // panics directly: those raised in the proxy's own code (`src/`), not in another test
    // running beside this one in the same process.
    static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .location()
            .is_some_and(|at| at.file().starts_with("src/"))
        {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        default_hook(info);
    }));
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&[upstream.addr], &[("timeouts.request_header", "200ms")]).await;
    let mut rng = fastrand::Rng::with_seed(0x5157_7c4a);
    let fragments: [&[u8]; 8] = [
        b"GET / HTTP/1.1\r\n",
        b"Host: a\r\n",
        b"Content-Length: 5\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\xff\x00",
    ];
    for _ in 0..150 {
        // Mixtures of valid fragments and random bytes, in random order and length.
        let mut input = Vec::new();
        for _ in 0..rng.usize(1..8) {
            if rng.bool() {
                input.extend_from_slice(fragments[rng.usize(..fragments.len())]);
            } else {
                input.extend((0..rng.usize(1..64)).map(|_| rng.u8(..)));
            }
        }
        let mut stream = TcpStream::connect(proxy.addr).await.expect("proxy accepts");
        let _ = stream.write_all(&input).await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
    }
    assert_eq!(
        get(&client(), &proxy.url("/"), None).await.status,
        200,
        "the proxy stopped serving"
    );
    assert_eq!(
        PANICS.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a task panicked"
    );
}

//! Idle HTTP/1.1 client connections are parked (hyper's buffers let go, the socket alone waited
//! on) and woken by their next request: over plain TCP and TLS, with bytes read before the park
//! kept, a WebSocket handshake after one, and the idle limit still closing them.

use crate::support::config::ConfigBuilder;
use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A header timeout of 400 ms: the closing conditions are checked every 100 ms, so a connection
/// is parked 100 to 200 ms after its last request, and closed 400 to 500 ms after it.
const REQUEST_HEADER: &str = "400ms";

/// `config` with a header timeout of `request_header`, and an idle one long enough that the
/// header timeout is what bounds an HTTP/1.1 connection's quiet.
fn with_header_timeout(config: ConfigBuilder, request_header: &str) -> ConfigBuilder {
    config
        .set("timeouts.request_header", request_header)
        .set("timeouts.idle", "60s")
}

/// A proxy to one upstream, `a`, with a header timeout of `request_header`.
async fn proxy_to_a(request_header: &str) -> (Upstream, TestProxy) {
    let a = Upstream::start("a").await;
    let config = ConfigBuilder::single_pool(&[("a", a.addr, 1)]);
    let proxy = TestProxy::start(&with_header_timeout(config, request_header).toml()).await;
    (a, proxy)
}

async fn parked(proxy: &TestProxy) -> f64 {
    metric(proxy, "switchyard_downstream_connections_parked")
        .await
        .unwrap_or(0.0)
}

async fn wait_parked(proxy: &TestProxy, count: f64) {
    poll_until(DEADLINE, "the connection to be parked", || async {
        (parked(proxy).await == count).then_some(())
    })
    .await;
}

/// Two GETs on one client connection over `stream`, the connection parked between them.
async fn two_requests_with_a_park_between<S>(proxy: &TestProxy, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let get = || {
        http::Request::get("/first")
            .header("host", "a")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let first = sender.send_request(get()).await.expect("first request");
    assert_eq!(first.status(), 200);
    first.into_body().collect().await.expect("first body");
    wait_parked(proxy, 1.0).await;
    sender
        .ready()
        .await
        .expect("the parked connection is still open");
    let second = sender.send_request(get()).await.expect("second request");
    assert_eq!(second.status(), 200);
    let body = second.into_body().collect().await.expect("second body");
    assert!(!body.to_bytes().is_empty());
    assert_eq!(
        metric(proxy, "switchyard_downstream_connections_total").await,
        Some(1.0),
        "both requests went over the one connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_connection_is_parked_and_its_next_request_wakes_it() {
    let (_a, proxy) = proxy_to_a(REQUEST_HEADER).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    two_requests_with_a_park_between(&proxy, stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tls_connection_is_parked_and_its_next_request_wakes_it() {
    let a = Upstream::start("a").await;
    let pki = tls::Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let config = with_header_timeout(tls::tls_config(a.addr, &[&leaf]), REQUEST_HEADER);
    let proxy = TestProxy::start(&config.toml()).await;
    let client = tls::client_config(rustls::ALL_VERSIONS, &["http/1.1"]);
    let stream = tls::connect(proxy.addr, Some("localhost"), &client)
        .await
        .expect("TLS handshake");
    two_requests_with_a_park_between(&proxy, stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_begun_before_the_quiet_check_and_finished_after_it_is_served_whole() {
    // 1 s: checked every 250 ms, so the connection's hyper is taken apart, holding half a head,
    // before the rest comes 700 ms later, and the 1 s limit on a head has not yet run out.
    let (_a, proxy) = proxy_to_a("1s").await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // The scenario itself: a client pausing inside its second head.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stream
        .write_all(b"st: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = raw::read_to_close(&mut stream).await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_closes_at_the_idle_limit() {
    let (_a, proxy) = proxy_to_a(REQUEST_HEADER).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    wait_parked(&proxy, 1.0).await;
    let answer = raw::read_to_close(&mut stream).await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 1, "{answer}");
    wait_parked(&proxy, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_handshake_on_a_connection_woken_from_parking_opens_its_tunnel() {
    let echo = crate::websocket::start_echo().await;
    let config = ConfigBuilder::single_pool(&[("ws", echo, 1)]).push_route("plain", |r| {
        r.set("path_prefix", "/plain").set("respond.body", "plain")
    });
    let proxy = TestProxy::start(&with_header_timeout(config, REQUEST_HEADER).toml()).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /plain HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    // The fixed answer: its head, then its five-byte body.
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n\r\nplain") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("the answer in time")
            .unwrap();
        assert!(
            n > 0,
            "closed early: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    wait_parked(&proxy, 1.0).await;
    let (mut ws, response) = tokio_tungstenite::client_async("ws://a/chat", stream)
        .await
        .expect("WebSocket handshake on the woken connection");
    assert_eq!(response.status(), 101);
    ws.send(Message::text("after parking")).await.unwrap();
    let echoed = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("the echo in time")
        .expect("a message")
        .expect("no error");
    assert_eq!(echoed, Message::text("after parking"));
    ws.close(None).await.expect("close");
}

//! WebSocket through the proxy against a real tokio-tungstenite echo server, over HTTP/1.1 and
//! over TLS: the tunnel counts as in flight on its backend, a drain waits for it, an idle
//! tunnel and shutdown close it, and a route can refuse upgrades.

use crate::support::config::ConfigBuilder;
use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket server echoing every message until the client closes.
pub(crate) async fn start_echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn backend_view(proxy: &TestProxy) -> serde_json::Value {
    proxy
        .admin("GET", "/api/pools/pool/backends/ws", None, None)
        .await
        .1
}

async fn wait_in_flight(proxy: &TestProxy, n: u64) {
    poll_until(DEADLINE, &format!("{n} in flight"), || async {
        (backend_view(proxy).await["in_flight"] == n).then_some(())
    })
    .await;
}

async fn echo_once<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.expect("send");
    let echoed = ws.next().await.expect("an answer").expect("a message");
    assert_eq!(echoed.into_text().expect("text"), text);
}

/// Whether the server side ended the connection within the deadline.
async fn closed_by_proxy<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A WebSocket handshake through `proxy`.
async fn open(
    proxy: &TestProxy,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.addr))
        .await
        .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status(), 101);
    ws
}

async fn proxy_to_echo(change: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> TestProxy {
    let echo = start_echo().await;
    let config = ConfigBuilder::single_pool(&[("ws", echo, 1)])
        .with_pool(|pool| pool.set("algorithm", "least_connections"));
    TestProxy::start(&change(config).toml()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_through_the_proxy_and_counts_in_flight_until_closed() {
    let proxy = proxy_to_echo(|c| c).await;
    let mut ws = open(&proxy).await;
    for text in ["hello", "again", &"x".repeat(100_000)] {
        echo_once(&mut ws, text).await;
    }
    assert_eq!(
        backend_view(&proxy).await["in_flight"],
        1,
        "the open tunnel counts"
    );
    ws.close(None).await.expect("close");
    drop(ws);
    wait_in_flight(&proxy, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_over_a_tls_listener() {
    let echo = start_echo().await;
    let pki = crate::support::tls::Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let proxy = TestProxy::start(&crate::support::tls::tls_config(echo, &[&leaf]).toml()).await;
    let client = crate::support::tls::client_config(rustls::ALL_VERSIONS, &["http/1.1"]);
    let stream = crate::support::tls::connect(proxy.addr, Some("localhost"), &client)
        .await
        .expect("TLS handshake");
    let (mut ws, response) = tokio_tungstenite::client_async("wss://localhost/chat", stream)
        .await
        .expect("WebSocket handshake over TLS");
    assert_eq!(response.status(), 101);
    echo_once(&mut ws, "over tls").await;
    ws.close(None).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_waits_for_an_open_tunnel() {
    let proxy = proxy_to_echo(|c| c).await;
    let mut ws = open(&proxy).await;
    echo_once(&mut ws, "before").await;
    let (status, view) = proxy
        .admin("POST", "/api/pools/pool/backends/ws/drain", None, None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "draining", "{view}");
    echo_once(&mut ws, "while draining").await;
    assert_eq!(backend_view(&proxy).await["state"], "draining");
    ws.close(None).await.expect("close");
    drop(ws);
    poll_until(DEADLINE, "drained", || async {
        (backend_view(&proxy).await["state"] == "drained").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed_after_tunnel_idle() {
    let proxy = proxy_to_echo(|c| c.set("timeouts.tunnel_idle", "300ms")).await;
    let mut ws = open(&proxy).await;
    echo_once(&mut ws, "one").await;
    assert!(
        closed_by_proxy(&mut ws).await,
        "the idle tunnel was not closed"
    );
    wait_in_flight(&proxy, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_tunnels_after_the_drain_timeout() {
    let proxy = proxy_to_echo(|c| c.set("timeouts.shutdown", "1s")).await;
    let mut ws = open(&proxy).await;
    echo_once(&mut ws, "before shutdown").await;
    let shutdown = tokio::spawn(proxy.gateway.shutdown(Duration::from_secs(10)));
    // Within the drain timeout the tunnel still works...
    echo_once(&mut ws, "during the drain").await;
    // ...and then it is closed, so shutdown completes well within its grace.
    assert!(
        closed_by_proxy(&mut ws).await,
        "the tunnel outlived shutdown"
    );
    assert!(
        shutdown.await.expect("shutdown task"),
        "shutdown waited for the tunnel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_can_refuse_upgrades() {
    let proxy = proxy_to_echo(|c| c.with_route(|r| r.set("websocket", false))).await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.addr)).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("the handshake passed: {refused:?}");
    };
    // The backend saw a plain GET without the upgrade headers: the echo server drops such a
    // connection, which the client sees as a bad gateway rather than a 101.
    assert_eq!(response.status(), 502);
}

/// `Upgrade: websocket, h2c` reaches the backend as `Upgrade: websocket` alone: no other
/// protocol is offered past the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_websocket_is_offered_to_the_backend() {
    let recorder = crate::support::raw::Recorder::start().await;
    let proxy =
        TestProxy::start(&ConfigBuilder::single_pool(&[("a", recorder.addr, 1)]).toml()).await;
    let request = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket, h2c\r\n\
        Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
        Connection: close\r\n\r\n";
    let answer = crate::support::raw::exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(crate::support::raw::status(&answer), 200, "{answer}");
    let received = recorder.received().to_ascii_lowercase();
    assert!(received.contains("upgrade: websocket\r\n"), "{received}");
    assert!(!received.contains("h2c"), "{received}");
    assert!(!received.contains("http2-settings"), "{received}");
}

/// A backend switching to another protocol than the one asked for gets its client a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_to_another_protocol_is_a_502() {
    let (backend, _) = crate::support::upstream::start_raw(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    let proxy = TestProxy::start(
        &ConfigBuilder::single_pool(&[("a", backend, 1)])
            .with_pool(|pool| pool.set("retries", 0))
            .toml(),
    )
    .await;
    let request = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let answer = crate::support::raw::exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(crate::support::raw::status(&answer), 502, "{answer}");
}

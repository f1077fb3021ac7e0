//! Edge safety through the real proxy with raw-bytes clients: a client's broken or abandoned
//! request body is the client's fault (never a backend's), and a stalled body is cut off.

use crate::support::config::ConfigBuilder;
use crate::support::raw;
use crate::support::{DEADLINE, TestProxy, Upstream, poll_until};
use std::net::SocketAddr;
use switchyard::upstream::State;
use tokio::io::AsyncWriteExt;

/// Two backends with the default passive ejection (5 consecutive failures), `timeouts` set
/// (`(key, value)` of `[timeouts]`).
async fn two_backends(timeouts: &[(&str, &str)]) -> (Upstream, Upstream, TestProxy) {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let mut config = ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 1)]);
    for (key, value) in timeouts {
        config = config.set(&format!("timeouts.{key}"), *value);
    }
    let proxy = TestProxy::start(&config.toml()).await;
    (a, b, proxy)
}

async fn assert_no_backend_failure(proxy: &TestProxy) {
    for name in ["a", "b"] {
        let view = crate::support::backend_view(proxy, "pool", name).await;
        assert_eq!(view.state, State::Healthy, "backend {name} was taken out");
        assert_eq!(view.ejections, 0, "backend {name} was ejected");
    }
}

#[tokio::test]
async fn malformed_chunked_bodies_get_400_and_never_count_against_a_backend() {
    let (_a, _b, proxy) = two_backends(&[]).await;
    // Small (replayable) and streamed bodies both: a bad chunk size, then a bad chunk end.
    for i in 0..12 {
        let body = if i % 2 == 0 {
            "zz\r\nhello\r\n0\r\n\r\n"
        } else {
            "5\r\nhelloXX0\r\n\r\n"
        };
        let request =
            format!("POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let answer = raw::exchange(proxy.addr, request.as_bytes()).await;
        assert_eq!(raw::status(&answer), 400, "request {i}: {answer}");
    }
    assert_no_backend_failure(&proxy).await;
    let ok = raw::exchange(
        proxy.addr,
        b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(raw::status(&ok), 200, "{ok}");
}

#[tokio::test]
async fn abandoned_uploads_are_logged_499_and_never_count_against_a_backend() {
    let log = crate::support::temp_dir().join("access.log");
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let config = ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 1)])
        .set("access_log.enabled", true)
        .set("access_log.path", log.display().to_string())
        .toml();
    let proxy = TestProxy::start(&config).await;
    for declared in [100, 1_000_000] {
        for _ in 0..12 {
            let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
            let head = format!(
                "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n0123456789"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            drop(stream);
        }
    }
    let lines = poll_until(DEADLINE, "24 access log lines", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        (lines.len() >= 24).then_some(lines)
    })
    .await;
    for line in &lines {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["status"], 499, "{line}");
    }
    assert_no_backend_failure(&proxy).await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_after_the_body_timeout() {
    let (_a, _b, proxy) = two_backends(&[("request_body", "300ms")]).await;
    let addr: SocketAddr = proxy.addr;
    for declared in [100, 1_000_000] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n0123456789"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = raw::read_to_close(&mut stream).await;
        assert_eq!(raw::status(&answer), 408, "declared {declared}: {answer}");
    }
    assert_no_backend_failure(&proxy).await;
}

#[tokio::test]
async fn connections_that_never_start_a_request_are_closed_after_the_header_timeout() {
    let (_a, _b, proxy) = two_backends(&[("request_header", "300ms"), ("idle", "60s")]).await;
    for (sent, what) in [
        (&b""[..], "sends nothing"),
        (
            &b"PRI * HTTP/2.0\r\n"[..],
            "stops inside the HTTP/2 preface",
        ),
        (
            &b"GET / HTTP/1.1\r\nHost: a\r\n"[..],
            "stops inside its headers",
        ),
    ] {
        let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        // read_to_close fails the test if the proxy keeps the connection for DEADLINE.
        let answer = raw::read_to_close(&mut stream).await;
        assert!(!answer.contains("200 OK"), "a client that {what}: {answer}");
    }
}

#[tokio::test]
async fn an_idle_http2_connection_whose_peer_never_answers_is_closed() {
    let (_a, _b, proxy) = two_backends(&[
        ("request_header", "300ms"),
        ("idle", "400ms"),
        ("http2_ping_interval", "200ms"),
        ("http2_ping_timeout", "200ms"),
    ])
    .await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    // The client preface and an empty SETTINGS frame, then silence: no ACK, no PING answer.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    stream
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let answer = raw::read_to_close(&mut stream).await;
    assert!(!answer.is_empty(), "the proxy sent no frame at all");
}

#[tokio::test]
async fn a_kept_alive_connection_that_stalls_inside_its_next_head_is_closed() {
    let (_a, _b, proxy) = two_backends(&[("request_header", "300ms"), ("idle", "60s")]).await;
    // One complete request, then the start of another that never ends.
    let answer = raw::exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n",
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 1, "{answer}");
}

#[tokio::test]
async fn a_response_streaming_longer_than_the_header_timeout_keeps_its_connection() {
    use http_body_util::{BodyExt, Empty};
    let (_a, _b, proxy) = two_backends(&[("request_header", "300ms"), ("idle", "60s")]).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let get = |path: &str| {
        http::Request::get(path)
            .header("host", "a")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let response = sender
        .send_request(get("/big?bytes=16777216"))
        .await
        .unwrap();
    // A slow reader: far more than socket buffers hold is still to come when it starts, so the
    // body streams for over a second, four times the header timeout.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 16 << 20);
    sender.ready().await.expect("the connection is still open");
    let again = sender.send_request(get("/")).await.unwrap();
    assert_eq!(again.status(), 200);
}

/// The kernel's accept queue of a listening socket on 127.0.0.1:`port`, as `ss` reports it.
fn accept_queue(port: u16) -> u32 {
    let output = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss runs (Debian package iproute2)");
    let text = String::from_utf8_lossy(&output.stdout);
    // State, Recv-Q, Send-Q (the backlog of a listening socket), ...
    text.split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no listening socket on port {port}: {text:?}"))
}

/// A burst of connecting clients queues: the accept queue is 1024 (or the kernel's
/// `net.core.somaxconn` if lower), not the 128 a plain bind gives, and `backlog` sets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_queue_a_burst_of_connections() {
    let a = Upstream::start("a").await;
    let config = ConfigBuilder::single_pool(&[("a", a.addr, 1)]);
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let proxy = TestProxy::start(&config.toml()).await;
    assert_eq!(accept_queue(proxy.addr.port()), somaxconn.min(1024));
    let config = config.with_listener(|listener| {
        listener.insert("backlog".into(), 37.into());
    });
    let proxy = TestProxy::start(&config.toml()).await;
    assert_eq!(accept_queue(proxy.addr.port()), 37);
}

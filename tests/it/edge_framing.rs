//! Only unambiguous requests reach a backend, framed canonically, within the limits; and only
//! sound responses reach the client. A raw-bytes client sends what no library would, and a
//! byte-recording backend shows exactly what was forwarded.

use crate::support::TestProxy;
use crate::support::config::ConfigBuilder;
use crate::support::raw::{self, Recorder};
use crate::support::upstream::start_raw;

async fn recorded_proxy(
    change: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (Recorder, TestProxy) {
    let recorder = Recorder::start().await;
    let config = change(ConfigBuilder::single_pool(&[("r", recorder.addr, 1)]));
    (recorder, TestProxy::start(&config.toml()).await)
}

/// Sends `request` (closing after it) and returns the status and the whole answer.
async fn send(proxy: &TestProxy, request: &str) -> (u16, String) {
    let answer = raw::exchange(proxy.addr, request.as_bytes()).await;
    (raw::status(&answer), answer)
}

#[tokio::test]
async fn ambiguous_targets_and_hosts_are_refused_and_never_forwarded() {
    let (recorder, proxy) = recorded_proxy(|c| c).await;
    for (request, expected) in [
        (
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            400,
        ),
        ("GET / HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n", 400),
        ("GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n", 400),
        (
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
            405,
        ),
        ("CONNECT /path HTTP/1.1\r\nHost: a.test\r\n\r\n", 405),
        ("GET a.test:80 HTTP/1.1\r\nHost: a.test:80\r\n\r\n", 400),
        ("GET * HTTP/1.1\r\nHost: a.test\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
    ] {
        let (status, answer) = send(&proxy, request).await;
        assert_eq!(status, expected, "{request:?} got {answer}");
    }
    assert_eq!(
        recorder.received(),
        "",
        "a refused request reached the backend"
    );
    let (status, _) = send(
        &proxy,
        "GET http://a.test/ok HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        recorder.received().starts_with("GET /ok HTTP/1.1\r\n"),
        "{}",
        recorder.received()
    );
    let (status, answer) = send(
        &proxy,
        "OPTIONS * HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        recorder.received().contains("OPTIONS * HTTP/1.1\r\n"),
        "{}",
        recorder.received()
    );
}

#[tokio::test]
async fn framing_is_forwarded_canonically() {
    let (recorder, proxy) = recorded_proxy(|c| c).await;
    for request in [
        "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 010\r\nConnection: close\r\n\r\n0123456789",
        "POST /b HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent_Length: 3\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        "GET /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        assert_eq!(send(&proxy, request).await.0, 200, "{request:?}");
    }
    let seen = recorder.received().to_ascii_lowercase();
    assert!(seen.contains("content-length: 10\r\n"), "{seen}");
    assert!(!seen.contains("content-length: 010"), "{seen}");
    assert!(
        !seen.contains("transfer_encoding") && !seen.contains("content_length"),
        "{seen}"
    );
    let get = &seen[seen.find("get /c").expect("the GET was forwarded")..];
    assert!(
        get.contains("transfer-encoding: chunked\r\n") && get.ends_with("5\r\nhello\r\n0\r\n\r\n"),
        "{get}"
    );
}

#[tokio::test]
async fn underscore_aliases_can_be_refused() {
    let (recorder, proxy) = recorded_proxy(|c| c.set("limits.underscore_headers", "reject")).await;
    let (status, _) = send(
        &proxy,
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(
        &proxy,
        "GET / HTTP/1.1\r\nHost: a\r\nX_Custom: 1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "other underscore names pass");
    assert!(recorder.received().contains("x_custom: 1"));
}

#[tokio::test]
async fn limits_answer_with_the_anchors_statuses() {
    let (recorder, proxy) =
        recorded_proxy(|c| c.with_route(|r| r.set("max_body_bytes", 100))).await;
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    assert_eq!(send(&proxy, &big_header).await.0, 431);
    let many: String = (0..101).map(|i| format!("X-H{i}: 1\r\n")).collect();
    assert_eq!(
        send(&proxy, &format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n"))
            .await
            .0,
        431
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9 * 1024));
    assert_eq!(send(&proxy, &long_uri).await.0, 414);
    let (status, answer) = send(
        &proxy,
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    let chunk = format!("c8\r\n{}\r\n0\r\n\r\n", "b".repeat(200));
    let (status, answer) = send(
        &proxy,
        &format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}"),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        !recorder.received().contains("Content-Length: 1000"),
        "{}",
        recorder.received()
    );
    let at_limit = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{}",
        "x".repeat(100)
    );
    let (status, _) = send(&proxy, &at_limit).await;
    assert_eq!(status, 200, "a body at the limit passes");
}

#[tokio::test]
async fn unsound_upstream_responses_are_refused_or_reframed() {
    for (reply, expected_status, expected_body) in [
        (&b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"[..], 502, None),
        (&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc"[..], 502, None),
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"[..],
            200,
            Some("ok"),
        ),
    ] {
        let (upstream, _) = start_raw(reply).await;
        let config = ConfigBuilder::single_pool(&[("raw", upstream, 1)])
            .with_pool(|pool| pool.set("retries", 0));
        let proxy = TestProxy::start_config(&config).await;
        let answer = crate::support::get(&crate::support::client(), &proxy.url("/"), None).await;
        assert_eq!(answer.status, expected_status, "{}", String::from_utf8_lossy(reply));
        if let Some(body) = expected_body {
            assert_eq!(answer.body, body);
            assert_ne!(
                answer.headers.get("content-length").map(|v| v.to_str().unwrap()),
                Some("30"),
                "the upstream's Content-Length was passed on"
            );
        }
    }
}

#[tokio::test]
async fn http2_requests_get_the_same_limits() {
    let (_recorder, proxy) = recorded_proxy(|c| c).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let mut status = |req: http::Request<http_body_util::Full<bytes::Bytes>>| {
        let response = sender.send_request(req);
        async move { response.await.map(|r| r.status().as_u16()) }
    };
    let mut many = http::Request::get("http://a.test/");
    for i in 0..101 {
        many = many.header(format!("x-h{i}"), "1");
    }
    assert_eq!(
        status(many.body(Default::default()).unwrap()).await.ok(),
        Some(431)
    );
    let long = http::Request::get(format!("http://a.test/{}", "a".repeat(9 * 1024)));
    assert_eq!(
        status(long.body(Default::default()).unwrap()).await.ok(),
        Some(414)
    );
    let connect = http::Request::connect("http://a.test:443");
    let refused = status(connect.body(Default::default()).unwrap()).await;
    assert!(matches!(refused, Ok(405) | Err(_)), "{refused:?}");
}

//! The per-backend connection pools: HTTP/1.1 keep-alive reuse, stale connections replaced,
//! no reuse after a broken body, `max_connections`, and HTTP/2 (h2c) multiplexing within the
//! backend's stream limit. Every backend counts the connections it accepted.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::upstream::{Options, start_scripted};
use crate::support::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn proxy_to(
    upstream: &Upstream,
    change: impl FnOnce(PoolBuilder) -> PoolBuilder,
) -> TestProxy {
    let toml = ConfigBuilder::single_pool(&[("up", upstream.addr, 1)])
        .with_pool(change)
        .toml();
    TestProxy::start(&toml).await
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&upstream, |p| p).await;
    let client = client();
    for _ in 0..20 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    }
    assert_eq!(upstream.requests(), 20);
    assert_eq!(
        upstream.connections(),
        1,
        "every request reused the first connection"
    );
}

#[tokio::test]
async fn a_backend_closing_idle_connections_fails_no_request() {
    let upstream = Upstream::start_with(
        "up",
        Options {
            idle_close: Some(Duration::from_secs(1)),
            ..Options::default()
        },
    )
    .await;
    let proxy = proxy_to(&upstream, |p| p).await;
    let client = client();
    for closed in 1..=3 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
        // The backend closes the pooled connection once it has idled for a second.
        eventually(DEADLINE, "the backend closed the idle connection", || {
            upstream.idle_closed() == closed
        })
        .await;
    }
    assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    assert_eq!(upstream.requests(), 4);
    assert_eq!(
        upstream.connections(),
        4,
        "each closed connection was replaced"
    );
}

#[tokio::test]
async fn a_connection_whose_response_body_broke_is_not_reused() {
    // The first connection gets a broken chunked body and is then left open, so only a pool
    // that reused it would send it another request.
    let (addr, accepted) = start_scripted(
        |n| match n {
            0 => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n",
            _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        },
        true,
    )
    .await;
    let config =
        ConfigBuilder::single_pool(&[("up", addr, 1)]).with_pool(|pool| pool.set("retries", 0));
    let proxy = TestProxy::start_config(&config).await;
    let broken = client()
        .get(proxy.url("/").parse().expect("uri"))
        .await
        .expect("response head");
    use http_body_util::BodyExt;
    assert!(
        broken.into_body().collect().await.is_err(),
        "the body broke"
    );
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "ok");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a fresh connection served the second request"
    );
}

#[tokio::test]
async fn max_connections_makes_requests_wait_for_a_free_connection() {
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&upstream, |p| p.set_backend("max_connections", 2)).await;
    let requests = spawn_gets(5, proxy.url("/hold"));
    eventually(DEADLINE, "two requests held", || upstream.held() == 2).await;
    assert_eq!(upstream.connections(), 2);
    upstream.release_held();
    let answers = requests.await.expect("requests finish");
    assert!(
        answers.iter().all(|a| a.status == 200),
        "every request waited and was answered"
    );
    assert_eq!(upstream.connections(), 2, "never more than max_connections");
}

#[tokio::test]
async fn h2c_multiplexes_100_concurrent_requests_over_at_most_two_connections() {
    let upstream = Upstream::start("up").await;
    let proxy = proxy_to(&upstream, |p| p.set("protocol", "h2c")).await;
    multiplex_100_held_requests(&proxy, &upstream).await;
}

#[tokio::test]
async fn reaching_the_backends_stream_limit_opens_a_second_connection() {
    let upstream = Upstream::start_with(
        "up",
        Options {
            max_concurrent_streams: Some(10),
            ..Options::default()
        },
    )
    .await;
    let proxy = proxy_to(&upstream, |p| p.set("protocol", "h2c")).await;
    let client = client();
    // One exchange first, so the connection has the backend's SETTINGS (its limit of 10).
    assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    let requests = spawn_gets(15, proxy.url("/hold"));
    eventually(DEADLINE, "15 requests held", || upstream.held() == 15).await;
    assert_eq!(
        upstream.connections(),
        2,
        "10 streams on the first, 5 on a second"
    );
    upstream.release_held();
    let answers = requests.await.expect("requests finish");
    assert!(answers.iter().all(|a| a.status == 200));
}

#[tokio::test]
async fn connections_survive_a_reload_unless_the_connection_settings_change() {
    let upstream = Upstream::start("up").await;
    let config = |change: fn(PoolBuilder) -> PoolBuilder| {
        ConfigBuilder::single_pool(&[("up", upstream.addr, 1)])
            .with_pool(change)
            .toml()
    };
    let path = temp_config(&config(|p| p.set("retries", 1)));
    let proxy = TestProxy::start_file(&path).await;
    let client = client();
    let reload = |text: String| {
        std::fs::write(&path, text).expect("write config");
        async {
            let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
            assert_eq!(status, 200, "{outcome}");
        }
    };
    assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    // A reload that leaves the connection settings alone keeps the pooled connection...
    reload(config(|p| p.set("retries", 2))).await;
    assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    assert_eq!(
        upstream.connections(),
        1,
        "the connection outlived the reload"
    );
    // ...and one that changes them (here to HTTP/2 without TLS) retires it.
    reload(config(|p| p.set("retries", 2).set("protocol", "h2c"))).await;
    assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    assert_eq!(
        upstream.connections(),
        2,
        "a new connection for the new protocol"
    );
}

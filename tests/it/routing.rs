//! Routing precedence through the real proxy: exact host, wildcard host, longest path prefix,
//! the default route, and 404 without one.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_host_then_longest_prefix_precedence() {
    let names = ["api", "api-v2", "tenant", "default", "static"];
    let mut upstreams = Vec::new();
    for name in names {
        upstreams.push(Upstream::start(name).await);
    }
    let mut config = ConfigBuilder::new()
        .route("api", Some("api.example.com"), "/", "api")
        .route("api-v2", Some("api.example.com"), "/v2", "api-v2")
        .route("tenant", Some("*.apps.example.com"), "/", "tenant")
        .route("default", None, "/", "default")
        .route("static", None, "/static", "static");
    for u in &upstreams {
        config = config.pool(PoolBuilder::new(u.name).backend(u.name, u.addr, 1));
    }
    let toml = config.toml();
    let proxy = TestProxy::start(&toml).await;
    let client = client();

    let cases = [
        ("api.example.com", "/users", "api"),
        ("API.example.com:8080", "/v2/users", "api-v2"),
        ("a.apps.example.com", "/static/x", "tenant"),
        ("a.b.apps.example.com", "/", "tenant"),
        ("apps.example.com", "/", "default"),
        ("unknown.example.org", "/static/logo.png", "static"),
        ("unknown.example.org", "/other", "default"),
    ];
    for (host, path, expected) in cases {
        let answer = get(&client, &proxy.url(path), Some(host)).await;
        assert_eq!(answer.status, 200, "{host}{path}");
        assert_eq!(answer.upstream(), expected, "{host}{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_default_route_unmatched_requests_get_404() {
    let upstream = Upstream::start("api").await;
    let toml = ConfigBuilder::new()
        .route("api", Some("api.example.com"), "/api", "api")
        .pool(PoolBuilder::new("api").backend("api", upstream.addr, 1))
        .toml();
    let proxy = TestProxy::start(&toml).await;
    let client = client();
    for (host, path) in [("other.example.com", "/api"), ("api.example.com", "/")] {
        let answer = get(&client, &proxy.url(path), Some(host)).await;
        assert_eq!(answer.status, 404, "{host}{path}");
        assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    }
    assert_eq!(
        get(&client, &proxy.url("/api/x"), Some("api.example.com"))
            .await
            .status,
        200
    );
    assert_eq!(upstream.requests(), 1, "404s never reach a backend");
}

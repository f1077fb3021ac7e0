//! Routing through the real proxy: host and path precedence, the default route and 404
//! without one; routes chosen by method, header, query, exact path and regex (over HTTP/1.1
//! and HTTP/2); routes that answer themselves (fixed responses, redirects a real curl
//! follows); and the admin API's "which route would this take?".

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

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

/// Pools `a` and `b` (one upstream each, answering with their name) and the routes `routes`
/// adds, with `a` for everything else.
async fn two_pools(
    routes: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (Upstream, Upstream, TestProxy) {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let config = ConfigBuilder::new()
        .pool(PoolBuilder::new("a").backend("a", a.addr, 1))
        .pool(PoolBuilder::new("b").backend("b", b.addr, 1))
        .route("rest", None, "/", "a");
    let proxy = TestProxy::start(&routes(config).toml()).await;
    (a, b, proxy)
}

/// Which upstream answered `method target` with `headers`, over HTTP/1.1 and over HTTP/2
/// (h2c), which must agree; the status when no upstream did.
async fn answered_by(
    proxy: &TestProxy,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> String {
    let request = |uri: String| {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(Full::new(Bytes::new())).expect("a request")
    };
    let who = |response: &http::Response<hyper::body::Incoming>| {
        response.headers().get("x-upstream").map_or_else(
            || response.status().as_str().to_owned(),
            |v| v.to_str().unwrap().to_owned(),
        )
    };
    let one = client()
        .request(request(proxy.url(target)))
        .await
        .expect("an HTTP/1.1 answer");
    let (mut h2, _connection) = h2c(proxy.addr).await;
    let two = h2
        .send_request(request(format!("http://{}{target}", proxy.addr)))
        .await
        .expect("an HTTP/2 answer");
    assert_eq!(
        who(&one),
        who(&two),
        "HTTP/1.1 and HTTP/2 differ on {method} {target}"
    );
    who(&one)
}

/// A request (method, target, headers) and the upstream that should answer it.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_choose_by_method_header_query_exact_path_and_regex() {
    let (_a, _b, proxy) = two_pools(|config| {
        config
            .push_route("posts", |r| {
                r.set("methods", vec!["POST", "PUT"]).set("pool", "b")
            })
            .push_route("canary", |r| {
                r.header("x-canary", "exact", "1").set("pool", "b")
            })
            .push_route("beta", |r| r.query("beta", Some("on")).set("pool", "b"))
            .push_route("health", |r| r.set("path", "/status").set("pool", "b"))
            .push_route("users", |r| {
                r.set("path_regex", "/users/[0-9]+").set("pool", "b")
            })
    })
    .await;
    let cases: [Case; 10] = [
        ("GET", "/", &[], "a"),
        ("POST", "/", &[], "b"),
        ("PUT", "/x", &[], "b"),
        ("GET", "/", &[("x-canary", "1")], "b"),
        ("GET", "/", &[("x-canary", "0")], "a"),
        ("GET", "/?x=1&beta=on", &[], "b"),
        ("GET", "/?beta=off", &[], "a"),
        ("GET", "/status", &[], "b"),
        ("GET", "/users/42", &[], "b"),
        ("GET", "/users/me", &[], "a"),
    ];
    for (method, target, headers, expected) in cases {
        assert_eq!(
            answered_by(&proxy, method, target, headers).await,
            expected,
            "{method} {target} {headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_answers_with_a_fixed_response_and_counts_it_under_its_name() {
    let (a, _b, proxy) = two_pools(|config| {
        config
            .push_route("robots", |r| {
                r.set("path", "/robots.txt")
                    .set("respond.body", "User-agent: *\nDisallow: /\n")
                    .set("respond.content_type", "text/plain")
            })
            .push_route("maintenance", |r| {
                r.set("path_prefix", "/billing").set("respond.status", 503)
            })
    })
    .await;
    let answer = get(&client(), &proxy.url("/robots.txt"), None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "User-agent: *\nDisallow: /\n");
    assert_eq!(answer.headers["content-type"], "text/plain");
    assert_eq!(
        get(&client(), &proxy.url("/billing/x"), None).await.status,
        503
    );
    assert_eq!(a.requests(), 0, "no backend was asked");
    let scrape = metric(
        &proxy,
        "switchyard_requests_total{route=\"robots\",pool=\"\",backend=\"\",code=\"200\"}",
    )
    .await;
    assert_eq!(scrape, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_keep_what_they_do_not_replace_and_curl_follows_them() {
    let (_a, _b, proxy) = two_pools(|config| {
        config
            .push_route("old", |r| {
                r.set("path_prefix", "/old/")
                    .set("redirect.status", 301)
                    .set("redirect.prefix", "/new/")
            })
            .push_route("elsewhere", |r| {
                r.set("path", "/away")
                    .set("redirect.scheme", "https")
                    .set("redirect.host", "example.com")
                    .set("redirect.query", "")
            })
    })
    .await;
    let answer = get(&client(), &proxy.url("/old/page?x=1"), None).await;
    assert_eq!(answer.status, 301);
    let port = proxy.addr.port();
    assert_eq!(
        answer.headers["location"],
        format!("http://127.0.0.1:{port}/new/page?x=1").as_str()
    );
    let away = get(&client(), &proxy.url("/away?drop=me"), None).await;
    assert_eq!(away.status, 302);
    assert_eq!(away.headers["location"], "https://example.com/away");
    // A real client follows the redirect to the pool behind it.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-L",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{url_effective}",
        ])
        .arg(proxy.url("/old/page"))
        .output()
        .expect("curl runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("200 http://127.0.0.1:{port}/new/page")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_says_which_route_a_sample_request_takes() {
    let (_a, _b, proxy) = two_pools(|config| {
        config.push_route("posts", |r| r.set("methods", vec!["POST"]).set("pool", "b"))
    })
    .await;
    let (status, answer) = proxy
        .admin("GET", "/api/routes?path=/x&method=POST", None, None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["route"], "posts");
    assert_eq!(answer["goes_to"]["pool"], "b");
    let (_, answer) = proxy.admin("GET", "/api/routes?path=/x", None, None).await;
    assert_eq!(answer["route"], "rest");
    let (_, listing) = proxy.admin("GET", "/api/routes", None, None).await;
    let names: Vec<&str> = listing["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["posts", "rest"], "in precedence order");
    let (status, _) = proxy.admin("GET", "/api/routes?path=x", None, None).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_removed_before_routing_so_no_route_is_stepped_around() {
    let recorder = crate::support::raw::Recorder::start().await;
    let config = ConfigBuilder::new()
        .pool(PoolBuilder::new("admin").backend("admin", recorder.addr, 1))
        .push_route("public", |r| {
            r.set("path_prefix", "/public/")
                .set("respond.body", "public\n")
        })
        .route("admin", None, "/admin", "admin");
    let proxy = TestProxy::start(&config.toml()).await;
    for target in ["/public/../admin/x", "/public/%2E%2e/admin/x"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let answer = crate::support::raw::exchange(proxy.addr, request.as_bytes()).await;
        assert_eq!(crate::support::raw::status(&answer), 200, "{answer}");
        assert!(
            !answer.contains("public"),
            "{target} was answered by the public route"
        );
    }
    assert!(
        recorder.received().starts_with("GET /admin/x HTTP/1.1\r\n"),
        "{}",
        recorder.received()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_routes_answer_themselves_as_over_http1() {
    let (_a, _b, proxy) = two_pools(|config| {
        config
            .push_route("old", |r| {
                r.set("path_prefix", "/old/")
                    .set("redirect.status", 308)
                    .set("redirect.prefix", "/new/")
            })
            .push_route("robots", |r| {
                r.set("path", "/robots.txt").set("respond.body", "no\n")
            })
    })
    .await;
    let (mut h2, _connection) = h2c(proxy.addr).await;
    let get = |path: &str| {
        http::Request::get(format!("http://{}{path}", proxy.addr))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let redirect = h2.send_request(get("/old/x?y=1")).await.unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(
        redirect.headers()["location"],
        format!("http://{}/new/x?y=1", proxy.addr).as_str()
    );
    let robots = h2.send_request(get("/robots.txt")).await.unwrap();
    assert_eq!(robots.status(), 200);
    let body = robots.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "no\n");
}

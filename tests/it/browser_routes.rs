//! What a real browser (headless Chromium) does with what routes answer: it follows 307 and
//! 308 redirects of a POST with its body, and a page of another origin calls a CORS route
//! after a preflight the proxy answers itself. The page is served by the proxy too, by a
//! `respond` route on another host name (another origin).

use crate::support::browser::{Browser, Page};
use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::*;

const PAGE: &str = "<!doctype html><title>origin</title><p>a page of another origin</p>";

/// A proxy over one upstream, with a page at `http://localhost:PORT/page` and `routes` added.
async fn proxy_with_page(
    routes: impl FnOnce(ConfigBuilder, u16) -> ConfigBuilder,
) -> (Upstream, TestProxy) {
    let up = Upstream::start("up").await;
    // The port is the proxy's, known only once it listens: routes name it, so bind it first.
    let port = closed_port().port();
    let config = ConfigBuilder::new()
        .with_listener(|l| {
            l.insert("bind".into(), format!("127.0.0.1:{port}").into());
        })
        .pool(PoolBuilder::new("p").backend("up", up.addr, 1))
        .push_route("page", |r| {
            r.set("path", "/page")
                .set("respond.body", PAGE)
                .set("respond.content_type", "text/html")
        });
    let proxy = TestProxy::start(&routes(config, port).toml()).await;
    (up, proxy)
}

/// Runs `script` (an async function body returning a string) in the page and waits for it.
async fn run(page: &mut Page, script: &str) -> String {
    page.eval(&format!(
        "window.result = undefined; (async () => {{ {script} }})().then(r => window.result = String(r), e => window.result = 'error: ' + e)"
    ))
    .await;
    page.wait_for("the script's result", "String(window.result)", |v| {
        v != "undefined"
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_follows_307_and_308_with_the_post_body() {
    let (up, proxy) = proxy_with_page(|config, _| {
        config
            .push_route("r307", |r| {
                r.set("path", "/r307")
                    .set("redirect.status", 307)
                    .set("redirect.path", "/sink")
            })
            .push_route("r308", |r| {
                r.set("path", "/r308")
                    .set("redirect.status", 308)
                    .set("redirect.path", "/sink")
            })
            .route("rest", None, "/", "p")
    })
    .await;
    let browser = Browser::open(&format!("http://localhost:{}/page", proxy.addr.port()));
    let mut page = Page::attach(&browser).await;
    page.wait_for("the page", "document.title", |t| t == "origin")
        .await;
    for path in ["/r307", "/r308"] {
        let answer = run(
            &mut page,
            &format!("const r = await fetch('{path}', {{ method: 'POST', body: 'hello browser' }}); return r.status + ' ' + r.redirected + ' ' + (await r.text());"),
        )
        .await;
        // The sink answers with the length of the body it read: the body came along.
        assert_eq!(answer, "200 true 13", "{path}");
    }
    assert!(up.requests() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_origin_calls_a_cors_route_after_a_preflight_the_proxy_answers() {
    let (up, proxy) = proxy_with_page(|config, port| {
        config.push_route("api", |r| {
            r.set("host", "127.0.0.1")
                .set("pool", "p")
                .set(
                    "cors.allow_origins",
                    vec![format!("http://localhost:{port}")],
                )
                .set("cors.allow_methods", vec!["GET", "PUT"])
                .set("cors.allow_headers", vec!["x-custom"])
                .set("cors.expose_headers", vec!["x-upstream"])
                .set("cors.max_age", "10m")
        })
    })
    .await;
    let port = proxy.addr.port();
    let browser = Browser::open(&format!("http://localhost:{port}/page"));
    let mut page = Page::attach(&browser).await;
    page.wait_for("the page", "document.title", |t| t == "origin")
        .await;
    let answer = run(
        &mut page,
        &format!("const r = await fetch('http://127.0.0.1:{port}/x', {{ method: 'PUT', headers: {{ 'x-custom': '1' }}, body: 'b' }}); return r.status + ' ' + r.headers.get('x-upstream');"),
    )
    .await;
    assert_eq!(answer, "200 up");
    assert_eq!(
        up.requests(),
        1,
        "the preflight was answered by the proxy, the PUT went on"
    );
    // Not allowed: another header than those listed.
    let refused = run(
        &mut page,
        &format!("const r = await fetch('http://127.0.0.1:{port}/x', {{ method: 'PUT', headers: {{ 'x-other': '1' }} }}); return r.status;"),
    )
    .await;
    assert!(refused.starts_with("error: TypeError"), "{refused}");
    assert_eq!(up.requests(), 1, "the browser never sent it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_go_to_allowed_origins_only_and_other_preflights_reach_the_backend() {
    let up = Upstream::start("up").await;
    let config = ConfigBuilder::new()
        .pool(PoolBuilder::new("p").backend("up", up.addr, 1))
        .push_route("api", |r| {
            r.set("pool", "p")
                .set("cors.allow_origins", vec!["https://app.test"])
                .set("cors.allow_credentials", true)
        });
    let proxy = TestProxy::start(&config.toml()).await;
    let send = |method: &str, origin: &str, preflight: bool| {
        let mut req = http::Request::builder()
            .method(method)
            .uri(proxy.url("/x"))
            .header("origin", origin);
        if preflight {
            req = req.header("access-control-request-method", "POST");
        }
        client().request(
            req.body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
    };
    let preflight = send("OPTIONS", "https://app.test", true).await.unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.test"
    );
    assert_eq!(
        preflight.headers()["access-control-allow-credentials"],
        "true"
    );
    assert_eq!(
        preflight.headers()["access-control-allow-methods"],
        "GET, HEAD, POST"
    );
    assert_eq!(up.requests(), 0);
    let other = send("OPTIONS", "https://evil.test", true).await.unwrap();
    assert_eq!(other.headers().get("access-control-allow-origin"), None);
    assert_eq!(up.requests(), 1, "not the proxy's to answer: the backend's");
    let allowed = send("GET", "https://APP.test", false).await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://APP.test"
    );
    assert_eq!(allowed.headers()["vary"], "Origin");
    let refused = send("GET", "https://evil.test", false).await.unwrap();
    assert_eq!(refused.headers().get("access-control-allow-origin"), None);
    assert_eq!(refused.headers()["vary"], "Origin");
    // The same preflight over HTTP/2.
    let (mut h2, _connection) = h2c(proxy.addr).await;
    let preflight = http::Request::builder()
        .method("OPTIONS")
        .uri(format!("http://{}/x", proxy.addr))
        .header("origin", "https://app.test")
        .header("access-control-request-method", "POST")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let answer = h2.send_request(preflight).await.unwrap();
    assert_eq!(answer.status(), 204);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://app.test"
    );
    assert_eq!(
        up.requests(),
        3,
        "the HTTP/2 preflight did not reach the backend either"
    );
}

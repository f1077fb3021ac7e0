//! The admin API cannot be driven from a browser when it has no token, the bearer scheme is
//! matched in any case, and a read-only token reads but cannot change anything.

use crate::support::config::ConfigBuilder;
use crate::support::{TestProxy, Upstream};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

async fn proxy_with(change: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> (Upstream, TestProxy) {
    let upstream = Upstream::start("a").await;
    let config = change(ConfigBuilder::single_pool(&[("a", upstream.addr, 1)]));
    (upstream, TestProxy::start(&config.toml()).await)
}

/// Sends `method path` to the admin API with `headers` (a `host` among them replaces the
/// listener's own); returns the status.
async fn admin(
    proxy: &TestProxy,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> StatusCode {
    let addr = proxy.gateway.admin_addr().unwrap();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    crate::support::send(
        &crate::support::client(),
        req.body(Full::new(Bytes::new())).unwrap(),
    )
    .await
    .status
}

async fn drained(proxy: &TestProxy) -> bool {
    crate::support::backend_view(proxy, "pool", "a")
        .await
        .drain
        .is_some()
}

#[tokio::test]
async fn without_a_token_browsers_cannot_drive_the_api() {
    let (_upstream, proxy) = proxy_with(|c| c).await;
    let drain = "/api/pools/pool/backends/a/drain";
    for (headers, expected) in [
        (
            &[("content-type", "application/x-www-form-urlencoded")][..],
            415,
        ),
        (&[("content-type", "text/plain;charset=UTF-8")][..], 415),
        (&[("origin", "http://evil.example")][..], 403),
        (&[("origin", "null")][..], 403),
        (&[("sec-fetch-site", "cross-site")][..], 403),
        (&[("host", "evil.example")][..], 403),
        (&[("host", "evil.example:9901")][..], 403),
    ] {
        assert_eq!(
            admin(&proxy, "POST", drain, headers).await,
            expected,
            "{headers:?}"
        );
        assert!(!drained(&proxy).await, "{headers:?} drained the backend");
    }
    // DNS rebinding: reads are refused too under a foreign Host.
    assert_eq!(
        admin(&proxy, "GET", "/api/pools", &[("host", "evil.example")]).await,
        403
    );
    let own = format!("http://{}", proxy.gateway.admin_addr().unwrap());
    assert_eq!(admin(&proxy, "POST", drain, &[("origin", &own)]).await, 200);
    assert!(drained(&proxy).await);
    assert_eq!(
        admin(&proxy, "POST", "/api/pools/pool/backends/a/undrain", &[]).await,
        200
    );
    let localhost = format!("localhost:{}", proxy.gateway.admin_addr().unwrap().port());
    assert_eq!(
        admin(&proxy, "GET", "/api/pools", &[("host", &localhost)]).await,
        200
    );
}

#[tokio::test]
async fn the_read_only_token_reads_and_the_admin_token_in_any_case_changes() {
    let dir = crate::support::temp_dir();
    let (full, read) = (dir.join("admin-token"), dir.join("read-token"));
    std::fs::write(&full, "full-secret\n").unwrap();
    std::fs::write(&read, "read-secret\n").unwrap();
    let (_upstream, proxy) = proxy_with(|c| {
        c.set("admin.token_file", full.display().to_string())
            .set("admin.read_token_file", read.display().to_string())
    })
    .await;
    let drain = "/api/pools/pool/backends/a/drain";
    let reader = [("authorization", "Bearer read-secret")];
    assert_eq!(admin(&proxy, "GET", "/api/pools", &reader).await, 200);
    assert_eq!(admin(&proxy, "GET", "/metrics", &reader).await, 200);
    assert_eq!(admin(&proxy, "POST", drain, &reader).await, 403);
    assert_eq!(admin(&proxy, "POST", drain, &[]).await, 401);
    assert!(!drained(&proxy).await);
    assert_eq!(
        admin(
            &proxy,
            "POST",
            drain,
            &[("authorization", "bearer full-secret")]
        )
        .await,
        200
    );
    assert!(drained(&proxy).await);
    // With a token, Host and Origin are not the defence: the token is.
    let remote = [
        ("authorization", "BEARER full-secret"),
        ("host", "admin.internal"),
    ];
    assert_eq!(admin(&proxy, "GET", "/api/pools", &remote).await, 200);
}

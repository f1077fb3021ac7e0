//! TLS to backends: verified against a configured CA (the repository's `certs/` CA), refused
//! (502) under the wrong CA, HTTP/2 negotiated by ALPN, and a client certificate presented to a
//! backend that demands one.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::tls::{Pki, repo_cert, server_config};
use crate::support::upstream::Options;
use crate::support::*;

async fn tls_upstream(config: std::sync::Arc<rustls::ServerConfig>) -> Upstream {
    Upstream::start_with(
        "tls",
        Options {
            tls: Some(config),
            ..Options::default()
        },
    )
    .await
}

fn localhost_upstream_config() -> std::sync::Arc<rustls::ServerConfig> {
    server_config(
        &repo_cert("localhost.pem"),
        &repo_cert("localhost-key.pem"),
        None,
    )
}

/// One pool without retries over the TLS `upstream`, `change` applied to it.
fn over_tls(upstream: &Upstream, change: impl FnOnce(PoolBuilder) -> PoolBuilder) -> ConfigBuilder {
    ConfigBuilder::single_pool(&[("tls", upstream.addr, 1)])
        .with_pool(|pool| change(pool.set("retries", 0)))
}

async fn proxy_over_tls(
    upstream: &Upstream,
    change: impl FnOnce(PoolBuilder) -> PoolBuilder,
) -> TestProxy {
    TestProxy::start(&over_tls(upstream, change).toml()).await
}

/// Backends verified by the CA in `ca`.
fn ca(pool: PoolBuilder, ca: &std::path::Path) -> PoolBuilder {
    pool.set("tls.ca", ca.display().to_string())
}

#[tokio::test]
async fn reaches_a_tls_backend_verified_by_the_repository_ca() {
    let upstream = tls_upstream(localhost_upstream_config()).await;
    let proxy = proxy_over_tls(&upstream, |p| ca(p, &repo_cert("ca.pem"))).await;
    let client = client();
    for _ in 0..3 {
        let answer = get(&client, &proxy.url("/"), None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.upstream(), "tls");
    }
    assert_eq!(
        upstream.connections(),
        1,
        "the TLS connection is kept alive and reused"
    );
}

#[tokio::test]
async fn names_the_backend_by_server_name_when_its_address_is_not_in_the_certificate() {
    let upstream = tls_upstream(localhost_upstream_config()).await;
    // The certificate names localhost and 127.0.0.1; asking for another name must fail...
    let wrong = proxy_over_tls(&upstream, |p| {
        ca(p, &repo_cert("ca.pem")).set("tls.server_name", "a.test")
    })
    .await;
    assert_eq!(get(&client(), &wrong.url("/"), None).await.status, 502);
    // ...and the name the certificate holds must pass.
    let right = proxy_over_tls(&upstream, |p| {
        ca(p, &repo_cert("ca.pem")).set("tls.server_name", "localhost")
    })
    .await;
    assert_eq!(get(&client(), &right.url("/"), None).await.status, 200);
}

#[tokio::test]
async fn a_backend_certificate_from_another_ca_gets_502_and_counts_as_a_connect_failure() {
    let upstream = tls_upstream(localhost_upstream_config()).await;
    let other = Pki::new();
    let other_ca = other.ca_file("other-ca.pem");
    let proxy = proxy_over_tls(&upstream, |p| ca(p, &other_ca)).await;
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 502);
    assert_eq!(
        upstream.requests(),
        0,
        "nothing was sent over an unverified connection"
    );
    let metrics = get(
        &client(),
        &format!(
            "http://{}/metrics",
            proxy.gateway.admin_addr().expect("admin")
        ),
        None,
    )
    .await
    .body;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("switchyard_upstream_connect_errors_total{") && l.ends_with(" 1")
        ),
        "{metrics}"
    );
}

/// Why a backend failed is in the access log: a certificate no configured CA vouches for is a
/// `tls_handshake` error, not a bare 502.
#[tokio::test]
async fn the_access_log_names_a_failed_tls_handshake() {
    let upstream = tls_upstream(localhost_upstream_config()).await;
    let other = Pki::new();
    let other_ca = other.ca_file("other-ca.pem");
    let log = other.dir.join("access.log");
    let config = over_tls(&upstream, |p| ca(p, &other_ca))
        .set("access_log.enabled", true)
        .set("access_log.format", "json")
        .set("access_log.path", log.display().to_string());
    let proxy = TestProxy::start(&config.toml()).await;
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 502);
    let line = poll_until(DEADLINE, "the access log line", || async {
        std::fs::read_to_string(&log)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
    })
    .await;
    let record: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(record["upstream_error"], "tls_handshake", "{line}");
    assert_eq!(record["status"], 502, "{line}");
}

#[tokio::test]
async fn h2_over_tls_multiplexes_concurrent_requests() {
    let upstream = tls_upstream(localhost_upstream_config()).await;
    let proxy = proxy_over_tls(&upstream, |p| {
        ca(p, &repo_cert("ca.pem")).set("protocol", "h2")
    })
    .await;
    multiplex_100_held_requests(&proxy, &upstream).await;
}

#[tokio::test]
async fn presents_a_client_certificate_to_a_backend_that_demands_one() {
    let clients = Pki::new();
    let proxy_leaf = clients.leaf("proxy-client", &["switchyard.test"]);
    let upstream = tls_upstream(server_config(
        &repo_cert("localhost.pem"),
        &repo_cert("localhost-key.pem"),
        Some(&clients.ca),
    ))
    .await;
    let without = proxy_over_tls(&upstream, |p| ca(p, &repo_cert("ca.pem"))).await;
    assert_eq!(
        get(&client(), &without.url("/"), None).await.status,
        502,
        "no client certificate, no connection"
    );
    let with = proxy_over_tls(&upstream, |p| {
        ca(p, &repo_cert("ca.pem"))
            .set("tls.cert", proxy_leaf.cert.display().to_string())
            .set("tls.key", proxy_leaf.key.display().to_string())
    })
    .await;
    let answer = get(&client(), &with.url("/"), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn insecure_skip_verify_reaches_a_backend_no_ca_vouches_for() {
    let unknown = Pki::new();
    let leaf = unknown.leaf("self-made", &["backend.internal"]);
    let upstream = tls_upstream(server_config(&leaf.cert, &leaf.key, None)).await;
    let proxy = proxy_over_tls(&upstream, |p| p.set("tls.insecure_skip_verify", true)).await;
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
}

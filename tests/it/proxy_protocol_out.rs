//! `send_proxy_protocol`: Switchyard in front of a real HAProxy (`accept-proxy`, v2) and a real
//! NGINX (`listen ... proxy_protocol`, v1). Each backend connection starts with a header naming
//! the client it was opened for, so two clients never share one; health probes through the
//! same peers send a header naming no client, which both accept.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::peer::Peer;
use crate::support::*;
use std::net::SocketAddr;

/// A proxy whose pool's one backend is `peer`, sending PROXY protocol `version`, probed.
async fn proxy_to(peer: SocketAddr, version: &str) -> TestProxy {
    let config = ConfigBuilder::new()
        .set("reload.watch", false)
        .pool(
            PoolBuilder::new("p")
                .backend("peer", peer, 1)
                .set("send_proxy_protocol", version)
                .set("health_check.path", "/")
                .set("health_check.interval", "200ms"),
        )
        .push_route("r", |r| r.set("pool", "p"));
    TestProxy::start(&config.toml()).await
}

/// GET `/headers` over a connection of its own from loopback address `from`; the body.
async fn headers_seen_from(from: &str, to: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(to).await.expect("connect");
    stream
        .write_all(b"GET /headers HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_lowercase()
}

/// The backend's view of the client address the PROXY header named (`X-Proxy-Src`).
fn proxy_src(seen: &str) -> &str {
    seen.lines()
        .find_map(|line| line.strip_prefix("x-proxy-src: "))
        .unwrap_or("")
        .trim()
}

async fn clients_are_named_through(peer: &Peer, version: &str) {
    let proxy = proxy_to(peer.addr, version).await;
    for from in ["127.0.0.5", "127.0.0.6", "127.0.0.5"] {
        let seen = headers_seen_from(from, proxy.addr).await;
        assert!(seen.starts_with("http/1.1 200"), "{seen}");
        assert!(
            proxy_src(&seen).starts_with(&format!("{from}:")),
            "{version}: the peer saw {:?} for {from}",
            proxy_src(&seen)
        );
    }
    // The probes, through the peer with a header naming no client, keep the backend up.
    let backend = [("pool", "p"), ("backend", "peer")];
    let passed = [("pool", "p"), ("backend", "peer"), ("result", "pass")];
    poll_until(DEADLINE, "two successful probes", || async {
        let probes = sample(&proxy, "switchyard_health_checks_total", &passed).await;
        (probes.unwrap_or(0.0) >= 2.0).then_some(())
    })
    .await;
    assert_eq!(
        sample(&proxy, "switchyard_backend_up", &backend).await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_haproxy_behind_gets_each_client_by_proxy_protocol_v2() {
    let up = Upstream::start("up").await;
    let haproxy = Peer::haproxy_accepting_proxy(up.addr).await;
    clients_are_named_through(&haproxy, "v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_nginx_behind_gets_each_client_by_proxy_protocol_v1() {
    let up = Upstream::start("up").await;
    let nginx = Peer::nginx_accepting_proxy(up.addr).await;
    clients_are_named_through(&nginx, "v1").await;
}

#[tokio::test]
async fn proxy_protocol_to_an_http2_pool_is_refused_at_check() {
    let config = ConfigBuilder::new()
        .pool(
            PoolBuilder::new("p")
                .backend("b", closed_port(), 1)
                .set("protocol", "h2c")
                .set("send_proxy_protocol", "v2"),
        )
        .push_route("r", |r| r.set("pool", "p"));
    let err = switchyard::config::parse(&config.toml(), "switchyard.toml").expect_err("refused");
    assert!(
        err.to_string().contains("pools[0].send_proxy_protocol"),
        "{err}"
    );
}

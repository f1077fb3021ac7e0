//! Who the client is and whether a route lets it in: `ip_rules` on real connections over IPv4
//! and IPv6, `trusted_proxies` naming the client from `X-Forwarded-For` and `Forwarded`, and a
//! spoofed header from an untrusted peer ignored, in the rules and the access log alike.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::peer::Peer;
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::path::PathBuf;

/// The config of a proxy over one backend, its route with `rules`, its listener (bound to
/// `bind`) trusting `trusted`, its JSON access log at the returned path.
fn config(up: &Upstream, bind: &str, rules: &[&str], trusted: &[&str]) -> (ConfigBuilder, PathBuf) {
    let log = temp_dir().join("access.log");
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let config = ConfigBuilder::new()
        .set("reload.watch", false)
        .set("access_log.enabled", true)
        .set("access_log.path", log.display().to_string())
        .set_listener("bind", bind)
        .set_listener("trusted_proxies", strings(trusted))
        .pool(PoolBuilder::new("p").backend("up", up.addr, 1))
        .push_route("r", |r| r.set("pool", "p").set("ip_rules", strings(rules)));
    (config, log)
}

/// That proxy, started.
async fn proxy(
    up: &Upstream,
    bind: &str,
    rules: &[&str],
    trusted: &[&str],
) -> (TestProxy, PathBuf) {
    let (config, log) = config(up, bind, rules, trusted);
    (TestProxy::start(&config.toml()).await, log)
}

/// A proxy whose route lets in only 127.0.0.2, its listener taking PROXY protocol headers as
/// `mode` says (`set_listener` pairs).
async fn proxy_protocol_proxy(up: &Upstream, mode: &[(&str, &str)]) -> (TestProxy, PathBuf) {
    let (config, log) = config(up, "127.0.0.1:0", &["allow 127.0.0.2", "deny all"], &[]);
    let config = mode.iter().fold(config, |config, (key, value)| {
        config.set_listener(key, *value)
    });
    (TestProxy::start(&config.toml()).await, log)
}

/// GET `/` with `headers`; the status.
async fn status(proxy: &TestProxy, headers: &[(&str, &str)]) -> u16 {
    let mut request = Request::get(proxy.url("/"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(&client(), request.body(Full::<Bytes>::default()).unwrap())
        .await
        .status
        .as_u16()
}

/// The `client` of each line of the access log at `log`, once it has `count` lines.
async fn logged_clients(log: &PathBuf, count: usize) -> Vec<String> {
    poll_until(DEADLINE, "access log lines", || async {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let clients: Vec<String> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|line| line["client"].as_str().map(str::to_owned))
            .collect();
        (clients.len() >= count).then_some(clients)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_matching_rule_decides_and_a_refusal_is_a_403_never_sent_upstream() {
    let up = Upstream::start("up").await;
    let (proxy, _) = proxy(
        &up,
        "127.0.0.1:0",
        &["deny 127.0.0.2", "allow 127.0.0.0/8", "deny all"],
        &[],
    )
    .await;
    assert_eq!(status(&proxy, &[]).await, 200);
    let before = up.requests();
    let (denied, _) = proxy_denying_loopback(&up).await;
    let answer = get(&client(), &denied.url("/"), None).await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.body, "forbidden\n");
    assert_eq!(
        up.requests(),
        before,
        "a refused request reached the backend"
    );
}

/// A proxy whose route refuses every loopback client.
async fn proxy_denying_loopback(up: &Upstream) -> (TestProxy, PathBuf) {
    proxy(up, "127.0.0.1:0", &["deny 127.0.0.0/8", "allow all"], &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_hold_for_ipv6_clients_too() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let up = Upstream::start("up").await;
    let (allowed, _) = proxy(&up, "[::1]:0", &["allow ::1/128", "deny all"], &[]).await;
    assert_eq!(status(&allowed, &[]).await, 200);
    let (denied, _) = proxy(&up, "[::1]:0", &["allow 127.0.0.0/8", "deny ::/0"], &[]).await;
    assert_eq!(status(&denied, &[]).await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_forwarding_header_from_an_untrusted_peer_is_ignored() {
    let up = Upstream::start("up").await;
    let (proxy, log) = proxy(
        &up,
        "127.0.0.1:0",
        &["allow 203.0.113.0/24", "deny all"],
        &[],
    )
    .await;
    let spoofed = [("x-forwarded-for", "203.0.113.9")];
    assert_eq!(status(&proxy, &spoofed).await, 403);
    assert_eq!(
        status(&proxy, &[("forwarded", "for=203.0.113.9")]).await,
        403
    );
    assert_eq!(logged_clients(&log, 2).await, ["127.0.0.1", "127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_trusted_proxies_the_first_untrusted_hop_is_the_client() {
    let up = Upstream::start("up").await;
    let (proxy, log) = proxy(
        &up,
        "127.0.0.1:0",
        &["allow 203.0.113.0/24", "deny all"],
        &["127.0.0.0/8", "10.0.0.0/8"],
    )
    .await;
    // The leftmost entry is whatever the client claimed: never believed past an untrusted hop.
    let chain = [("x-forwarded-for", "203.0.113.9, 198.51.100.1, 10.0.0.7")];
    assert_eq!(status(&proxy, &chain).await, 403);
    let chain = [("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.7")];
    assert_eq!(status(&proxy, &chain).await, 200);
    let forwarded = [("forwarded", "for=198.51.100.1, for=\"203.0.113.10:443\"")];
    assert_eq!(status(&proxy, &forwarded).await, 200);
    // Naming nobody, the request's client is the trusted peer itself.
    assert_eq!(status(&proxy, &[]).await, 403);
    assert_eq!(
        logged_clients(&log, 4).await,
        ["198.51.100.1", "203.0.113.9", "203.0.113.10", "127.0.0.1"]
    );
}

/// GET `/` over a connection from `from` (a loopback address) to `to`; the status line, or
/// what came back.
pub(crate) async fn get_from(from: &str, to: std::net::SocketAddr) -> String {
    get_path_from(from, to, "/").await
}

/// GET `path` over a connection from `from` to `to`; the status line.
async fn get_path_from(from: &str, to: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(to).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines().next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_a_real_haproxy_sends_by_proxy_protocol_is_the_client() {
    let up = Upstream::start("up").await;
    let (proxy, log) = proxy_protocol_proxy(&up, &[("proxy_protocol", "required")]).await;
    let v2 = Peer::haproxy_tcp(proxy.addr, "send-proxy-v2").await;
    let v1 = Peer::haproxy_tcp(proxy.addr, "send-proxy").await;
    // HAProxy connects from 127.0.0.1; the clients from 127.0.0.2 and 127.0.0.3.
    assert_eq!(get_from("127.0.0.2", v2.addr).await, "HTTP/1.1 200 OK");
    assert_eq!(
        get_from("127.0.0.3", v1.addr).await,
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(get_from("127.0.0.2", v1.addr).await, "HTTP/1.1 200 OK");
    assert_eq!(
        logged_clients(&log, 3).await,
        ["127.0.0.2", "127.0.0.3", "127.0.0.2"]
    );
    // Straight to the proxy, without a header, on a listener that requires one: closed.
    assert_eq!(get_from("127.0.0.2", proxy.addr).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_header_may_be_left_out() {
    let up = Upstream::start("up").await;
    let mode = [
        ("proxy_protocol", "optional"),
        ("proxy_protocol_timeout", "2s"),
    ];
    let (proxy, _) = proxy_protocol_proxy(&up, &mode).await;
    let v2 = Peer::haproxy_tcp(proxy.addr, "send-proxy-v2").await;
    assert_eq!(get_from("127.0.0.2", v2.addr).await, "HTTP/1.1 200 OK");
    // Without a header the peer is the client: 127.0.0.3 is refused, 127.0.0.2 let in.
    assert_eq!(
        get_from("127.0.0.3", proxy.addr).await,
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(get_from("127.0.0.2", proxy.addr).await, "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_count_the_client_the_balancer_names_not_the_balancer() {
    let up = Upstream::start("up").await;
    let mut rule = toml::Table::new();
    rule.insert("rate".into(), "1/m".into());
    let (config, _) = config(&up, "127.0.0.1:0", &[], &[]);
    let config = config
        .set_listener("proxy_protocol", "required")
        .push_route("limited", |r| {
            r.set("pool", "p").set("path_prefix", "/limited").set(
                "rate_limit",
                toml::Value::Array(vec![toml::Value::Table(rule)]),
            )
        });
    let proxy = TestProxy::start(&config.toml()).await;
    let haproxy = Peer::haproxy_tcp(proxy.addr, "send-proxy-v2").await;
    let status = |from: &'static str| {
        let to = haproxy.addr;
        async move { get_path_from(from, to, "/limited").await }
    };
    // Every connection comes from HAProxy; each client has its own allowance of one.
    assert_eq!(status("127.0.0.2").await, "HTTP/1.1 200 OK");
    assert_eq!(status("127.0.0.3").await, "HTTP/1.1 200 OK");
    assert_eq!(status("127.0.0.2").await, "HTTP/1.1 429 Too Many Requests");
}

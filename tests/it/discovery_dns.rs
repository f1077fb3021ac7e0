//! DNS discovery against an in-process DNS server: addresses become backends, changes are
//! followed (a vanished address drains before it goes, the others keep their state), a failed
//! resolution keeps the last set, and SRV weights become weights.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::dns::DnsServer;
use crate::support::upstream::Options;
use crate::support::{
    DEADLINE, TestProxy, Upstream, backend_names, backend_view, client, eventually, get, metric,
    poll_until,
};
use std::net::{IpAddr, SocketAddr};
use switchyard::upstream::State;

/// Upstreams named `names` on 127.0.0.1, 127.0.0.2, ... all on one port, as DNS discovery
/// needs (one port for every address).
async fn upstreams_on_one_port(names: &[&'static str]) -> Vec<Upstream> {
    let first = Upstream::start(names[0]).await;
    let port = first.addr.port();
    let mut all = vec![first];
    for (i, name) in names.iter().enumerate().skip(1) {
        let bind = SocketAddr::from(([127, 0, 0, 1 + i as u8], port));
        let options = Options {
            bind: Some(bind),
            ..Options::default()
        };
        all.push(Upstream::start_with(name, options).await);
    }
    all
}

fn ip(upstream: &Upstream) -> IpAddr {
    upstream.addr.ip()
}

/// One pool whose backends come from DNS name `name` (type `kind`) as `resolver` answers it,
/// `change` applied to the pool.
fn discovering_pool(
    kind: &str,
    name: &str,
    resolver: SocketAddr,
    change: impl FnOnce(PoolBuilder) -> PoolBuilder,
) -> String {
    let pool = PoolBuilder::new("pool")
        .set("discovery.type", kind)
        .set("discovery.name", name)
        .set("discovery.resolver", resolver.to_string());
    ConfigBuilder::new()
        .pool(change(pool))
        .route("all", None, "/", "pool")
        .toml()
}

#[tokio::test]
async fn dns_addresses_become_backends_and_changes_drain_before_removal() {
    let ups = upstreams_on_one_port(&["a", "b", "c"]).await;
    let (a, b, c) = (&ups[0], &ups[1], &ups[2]);
    let port = a.addr.port();
    let dns = DnsServer::start().await;
    dns.set_addresses("api.test", &[ip(a), ip(b)], 1);
    // `refresh` is long: only the records' 1 s TTL makes the proxy look again.
    let proxy = TestProxy::start(&discovering_pool("dns", "api.test", dns.addr, |p| {
        p.set("discovery.port", i64::from(port))
            .set("discovery.refresh", "60s")
    }))
    .await;
    let (name_a, name_b, name_c) = (a.addr.to_string(), b.addr.to_string(), c.addr.to_string());
    poll_until(DEADLINE, "both addresses as backends", || async {
        (backend_names(&proxy, "pool").await == [name_a.clone(), name_b.clone()]).then_some(())
    })
    .await;
    let client = client();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let answer = get(&client, &proxy.url("/"), None).await;
        assert_eq!(answer.status, 200);
        seen.insert(answer.upstream().to_owned());
    }
    assert_eq!(seen, ["a", "b"].map(str::to_owned).into());
    let since_b = backend_view(&proxy, "pool", &name_b).await.since;

    // A request in flight on `a` when `a` leaves DNS (round-robin puts one of two on each).
    let held = crate::support::spawn_gets(2, proxy.url("/hold"));
    eventually(DEADLINE, "a request held on a and on b", || {
        a.held() == 1 && b.held() == 1
    })
    .await;
    b.release_held();
    dns.set_addresses("api.test", &[ip(b), ip(c)], 1);
    let view = poll_until(DEADLINE, "a draining, c added", || async {
        let names = backend_names(&proxy, "pool").await;
        let a_view = backend_view(&proxy, "pool", &name_a).await;
        (names.contains(&name_c) && a_view.state == State::Draining).then_some(a_view)
    })
    .await;
    assert_eq!(view.in_flight, 1);
    for _ in 0..10 {
        let answer = get(&client, &proxy.url("/"), None).await;
        assert_eq!(answer.status, 200);
        assert_ne!(
            answer.upstream(),
            "a",
            "no new request for a leaving backend"
        );
    }
    a.release_held();
    let answers = held.await.expect("held requests");
    assert!(
        answers.iter().all(|a| a.status == 200),
        "the requests in flight finished"
    );
    poll_until(DEADLINE, "a removed once its request ended", || async {
        (backend_names(&proxy, "pool").await == [name_b.clone(), name_c.clone()]).then_some(())
    })
    .await;
    assert_eq!(
        backend_view(&proxy, "pool", &name_b).await.since,
        since_b,
        "b stayed, with its state"
    );

    // The DNS server failing keeps the last set.
    dns.set_failing(true);
    poll_until(DEADLINE, "a failed resolution counted", || async {
        metric(&proxy, "switchyard_discovery_errors_total{pool=\"pool\"}")
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(backend_names(&proxy, "pool").await, [name_b, name_c]);
    for _ in 0..4 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    }
}

#[tokio::test]
async fn srv_records_give_addresses_ports_and_weights_of_the_preferred_priority() {
    let ups = upstreams_on_one_port(&["one", "two", "backup"]).await;
    let port = ups[0].addr.port();
    let dns = DnsServer::start().await;
    dns.set_srv(
        "_http._tcp.api.test",
        &[
            (10, 3, port, "one.test"),
            (10, 1, port, "two.test"),
            (20, 5, port, "backup.test"),
        ],
        30,
    );
    dns.set_addresses("one.test", &[ip(&ups[0])], 30);
    dns.set_addresses("two.test", &[ip(&ups[1])], 30);
    dns.set_addresses("backup.test", &[ip(&ups[2])], 30);
    let proxy = TestProxy::start(&discovering_pool(
        "dns_srv",
        "_http._tcp.api.test",
        dns.addr,
        |p| p,
    ))
    .await;
    let (one, two) = (ups[0].addr.to_string(), ups[1].addr.to_string());
    poll_until(DEADLINE, "the SRV targets as backends", || async {
        (backend_names(&proxy, "pool").await == [one.clone(), two.clone()]).then_some(())
    })
    .await;
    assert_eq!(
        backend_view(&proxy, "pool", &one).await.weight.configured,
        3
    );
    assert_eq!(
        backend_view(&proxy, "pool", &two).await.weight.configured,
        1
    );
    let client = client();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..8 {
        let answer = get(&client, &proxy.url("/"), None).await;
        *counts.entry(answer.upstream().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(
        counts.get("one"),
        Some(&6),
        "weights 3:1 over 8 requests: {counts:?}"
    );
    assert_eq!(counts.get("two"), Some(&2));
}

#[tokio::test]
async fn a_pool_waiting_for_its_first_answer_says_503_and_a_bad_discovery_table_is_rejected() {
    let dns = DnsServer::start().await;
    let proxy = TestProxy::start(&discovering_pool("dns", "nothing.test", dns.addr, |p| {
        p.set("discovery.port", 80)
    }))
    .await;
    poll_until(DEADLINE, "a query answered", || async {
        (dns.queries() > 0).then_some(())
    })
    .await;
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 503);

    let bad = discovering_pool("dns", "api.test", dns.addr, |p| {
        p.set("discovery.service", "x")
    });
    let err = switchyard::config::parse(&bad, "bad.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("pools[0].discovery.port: required"), "{err}");
    assert!(
        err.contains("pools[0].discovery.service: does not apply"),
        "{err}"
    );
}

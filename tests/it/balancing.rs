//! Balancing through the real proxy: smooth weighted round-robin shares and order, and
//! least-connections steering away from a backend holding slow requests.

use crate::support::config::ConfigBuilder;
use crate::support::*;
use std::collections::HashMap;
use std::time::Duration;

async fn wrr_proxy(backends: &[(&Upstream, u32)], algorithm: &str) -> TestProxy {
    let list: Vec<_> = backends.iter().map(|(u, w)| (u.name, u.addr, *w)).collect();
    let config = ConfigBuilder::single_pool(&list).with_pool(|p| p.set("algorithm", algorithm));
    TestProxy::start(&config.toml()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_shares_match_weights_over_10000_requests() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let proxy = wrr_proxy(&[(&a, 5), (&b, 3), (&c, 2)], "weighted_round_robin").await;

    const TOTAL: usize = 10_000;
    const CLIENTS: usize = 4;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let url = proxy.url("/");
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut seen: HashMap<String, usize> = HashMap::new();
            for _ in 0..TOTAL / CLIENTS {
                let answer = get(&client, &url, None).await;
                assert_eq!(answer.status, 200);
                *seen.entry(answer.upstream().to_owned()).or_default() += 1;
            }
            seen
        }));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        for (name, n) in task.await.expect("client task") {
            *counts.entry(name).or_default() += n;
        }
    }
    for (name, weight) in [("a", 5.0), ("b", 3.0), ("c", 2.0)] {
        let share = counts.get(name).copied().unwrap_or(0) as f64 / TOTAL as f64;
        let expected = weight / 10.0;
        println!(
            "backend {name}: share {:.4} (expected {expected:.4})",
            share
        );
        assert!(
            (share - expected).abs() <= 0.01,
            "backend {name} got share {share}, expected {expected} ± 0.01: {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_5_1_1_answer_in_the_smooth_order_without_bursts() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let proxy = wrr_proxy(&[(&a, 5), (&b, 1), (&c, 1)], "weighted_round_robin").await;
    let client = client();
    let mut order = String::new();
    for _ in 0..21 {
        order += get(&client, &proxy.url("/"), None).await.upstream();
    }
    // The cycle starts at a random point (so replicas do not move in step); it must be a
    // rotation of NGINX's smooth sequence, repeated.
    let cycle = "aabacaa";
    let offset = (0..7)
        .find(|&k| order.starts_with(&format!("{}{}", &cycle[k..], &cycle[..k])[..7]))
        .unwrap_or_else(|| panic!("{order} does not start with a rotation of {cycle}"));
    let rotated = format!("{}{}", &cycle[offset..], &cycle[..offset]);
    assert_eq!(order, rotated.repeat(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_sends_new_requests_away_from_a_backend_holding_slow_ones() {
    let upstreams = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let proxy = wrr_proxy(
        &[(&upstreams[0], 1), (&upstreams[1], 1), (&upstreams[2], 1)],
        "least_connections",
    )
    .await;

    // Two slow requests land on two different backends (each pick avoids the busy one).
    let mut slow = Vec::new();
    for _ in 0..2 {
        let url = proxy.url("/hold");
        slow.push(tokio::spawn(
            async move { get(&client(), &url, None).await },
        ));
    }
    let held = || upstreams.iter().map(Upstream::held).sum::<usize>();
    eventually(Duration::from_secs(10), "two held requests", || held() == 2).await;
    let idle = upstreams
        .iter()
        .find(|u| u.held() == 0)
        .expect("one backend holds nothing");

    let client = client();
    for _ in 0..20 {
        let answer = get(&client, &proxy.url("/"), None).await;
        assert_eq!(
            answer.upstream(),
            idle.name,
            "fast request went to a busy backend"
        );
    }

    for u in &upstreams {
        u.release_held();
    }
    for request in slow {
        assert_eq!(request.await.expect("slow request task").status, 200);
    }
    // Once the slow requests finish (body included), load evens out again.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        *counts
            .entry(
                get(&client, &proxy.url("/"), None)
                    .await
                    .upstream()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "idle backends share ties: {counts:?}");
}

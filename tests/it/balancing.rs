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
    let upstreams = Upstream::start_all(["a", "b", "c"]).await;
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

/// Responses per backend among those answered between `from` and `to`.
fn shares(
    answers: &[(std::time::Instant, String)],
    from: std::time::Instant,
    to: std::time::Instant,
) -> HashMap<String, f64> {
    let window: Vec<_> = answers
        .iter()
        .filter(|(at, _)| *at > from && *at <= to)
        .collect();
    let mut counts: HashMap<String, f64> = HashMap::new();
    for (_, name) in &window {
        *counts.entry(name.clone()).or_default() += 1.0 / window.len() as f64;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_latency_spares_a_backend_slowed_tenfold_and_comes_back_to_it() {
    let upstreams = Upstream::start_all(["a", "b", "c", "d"]).await;
    for upstream in &upstreams {
        upstream.set_delay(Duration::from_millis(5));
    }
    let list: Vec<_> = upstreams.iter().map(|u| (u.name, u.addr, 1)).collect();
    let config = ConfigBuilder::single_pool(&list).with_pool(|pool| {
        pool.set("algorithm", "least_latency")
            .set("latency_decay", "1s")
    });
    let proxy = TestProxy::start(&config.toml()).await;

    // Eight clients, back to back, for the whole test: when each answer came, and from where.
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (answers, stop, url) = (answers.clone(), stop.clone(), proxy.url("/"));
        clients.push(tokio::spawn(async move {
            let client = client();
            while !stop.is_cancelled() {
                let answer = get(&client, &url, None).await;
                assert_eq!(answer.status, 200);
                let at = std::time::Instant::now();
                answers
                    .lock()
                    .unwrap()
                    .push((at, answer.upstream().to_owned()));
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let slowed = std::time::Instant::now();
    upstreams[2].set_delay(Duration::from_millis(50));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recovered = std::time::Instant::now();
    upstreams[2].set_delay(Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.cancel();
    for client in clients {
        client.await.unwrap();
    }
    let answers = answers.lock().unwrap();
    let second = Duration::from_secs(1);
    let before = shares(&answers, slowed - second, slowed);
    let slow = shares(&answers, slowed + second, slowed + 2 * second);
    let back = shares(&answers, recovered + 3 * second, recovered + 4 * second);
    println!("c's share: {before:?} before, {slow:?} slowed, {back:?} recovered");
    let of_c = |shares: &HashMap<String, f64>| shares.get("c").copied().unwrap_or(0.0);
    assert!(of_c(&before) > 0.10, "before: {before:?}");
    assert!(
        of_c(&slow) < 0.05,
        "in the second second of the slowdown: {slow:?}"
    );
    assert!(of_c(&back) > 0.10, "three seconds after recovery: {back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_latency_keeps_away_from_a_backend_that_said_retry_after() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let proxy = wrr_proxy(&[(&a, 1), (&b, 1)], "least_latency").await;
    b.set_status(503);
    b.set_retry_after(3);
    let client = client();
    // Until b has answered one request with its 503 (passed on: a 503 with a body is an answer).
    poll_until(DEADLINE, "b's 503", || async {
        (get(&client, &proxy.url("/"), None).await.status == 503).then_some(())
    })
    .await;
    b.set_status(200);
    b.set_retry_after(0);
    for _ in 0..20 {
        let answer = get(&client, &proxy.url("/"), None).await;
        assert_eq!(answer.upstream(), "a", "b is penalised for 3 s");
    }
    // Once the penalty is over, b takes requests again.
    poll_until(DEADLINE, "b again", || async {
        (get(&client, &proxy.url("/"), None).await.upstream() == "b").then_some(())
    })
    .await;
}

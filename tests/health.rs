//! Failure handling through the real proxy: active probes, passive ejection with backoff,
//! retries on another backend, the all-down answer and panic mode, and what is never retried.
//! Every wait polls with a deadline; bounds are generous for a noisy 2-core machine.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::upstream::{start_hung, start_raw};
use support::*;
use switchyard::upstream::{Condition, Exclusion};
use tokio::time::Instant;

/// A proxy over one pool of weight-1 `backends`; `settings` are the pool's keys, then its
/// sub-tables; `top` is top-level TOML such as `[timeouts]`.
async fn proxy(backends: &[(&str, SocketAddr)], settings: &str, top: &str) -> TestProxy {
    let list: Vec<_> = backends.iter().map(|(n, a)| (*n, *a, 1)).collect();
    TestProxy::start(&single_pool_toml(
        "weighted_round_robin",
        &list,
        top,
        settings,
    ))
    .await
}

/// Kills one of two backends under steady GET load and brings it back; returns how long the
/// dead backend stayed eligible (kept receiving attempts) and how long until probes marked it
/// unhealthy.
async fn kill_and_revive(pool_settings: &str) -> (Duration, Duration) {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let extra = format!(
        "{pool_settings}\n[pools.health_check]\ntype = \"http\"\npath = \"/health\"\ninterval = \"1s\"\ntimeout = \"500ms\"\nunhealthy_threshold = 2\nhealthy_threshold = 2\n\n"
    );
    let proxy = proxy(&[("a", a.addr), ("b", b.addr)], &extra, "").await;
    let state = backend(&proxy, "pool", "b");

    let stop = Arc::new(AtomicBool::new(false));
    let load = get_load(proxy.url("/"), 2, None, Arc::clone(&stop));
    eventually(DEADLINE, "traffic on b", || b.requests() > 50).await;
    // A probe has passed, so b is confirmed healthy and takes `unhealthy_threshold` failures.
    eventually(DEADLINE, "b probed", || b.health_probes() >= 1).await;

    b.stop();
    let killed = Instant::now();
    eventually(DEADLINE, "b excluded", || state.exclusions() != 0).await;
    let excluded_after = killed.elapsed();
    eventually(DEADLINE, "b unhealthy", || {
        state.status().condition == Condition::Unhealthy
    })
    .await;
    let unhealthy_after = killed.elapsed();

    let probes_before = b.health_probes();
    b.restart().await;
    eventually(DEADLINE, "b healthy again", || state.exclusions() == 0).await;
    assert!(
        b.health_probes() >= probes_before + 2,
        "rejoined after fewer than healthy_threshold passes"
    );
    assert_eq!(state.status().condition, Condition::Healthy);
    assert!(
        state
            .status()
            .reason
            .contains("2 consecutive probes passed"),
        "{:?}",
        state.status()
    );
    let served = b.requests();
    eventually(DEADLINE, "traffic on b again", || {
        b.requests() > served + 20
    })
    .await;

    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = load.await.unwrap();
    println!(
        "{ok} requests answered, {failed} failed; b excluded {excluded_after:?} after the kill, unhealthy after {unhealthy_after:?}"
    );
    assert_eq!(failed, 0, "client requests failed while a backend died");
    assert!(a.requests() > 0);
    (excluded_after, unhealthy_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_costs_no_get_and_rejoins_after_the_healthy_threshold() {
    // Default passive ejection: five consecutive connect failures eject before probes notice.
    kill_and_revive("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_alone_mark_a_killed_backend_unhealthy() {
    // Without passive ejection the probes are what excludes it, after `fall` failed probes; half
    // the requests meet the dead backend until then, so the budget must allow a retry each.
    let (excluded, unhealthy) = kill_and_revive(
        "retry_budget_percent = 100\n[pools.outlier_detection]\nconsecutive_failures = 0\n",
    )
    .await;
    assert!(
        excluded >= Duration::from_millis(500),
        "excluded before two probes could run: {excluded:?}"
    );
    assert!(unhealthy >= excluded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answering_500s_is_ejected_with_doubling_backoff() {
    let upstreams = [Upstream::start("u0").await, Upstream::start("u1").await];
    let settings = "retries = 0\n[pools.outlier_detection]\nconsecutive_5xx = 3\nbase_ejection_time = \"300ms\"\nmax_ejection_time = \"10s\"\nmax_ejection_percent = 50\n\n";
    let backends = [("u0", upstreams[0].addr), ("u1", upstreams[1].addr)];
    let proxy = proxy(&backends, settings, "").await;
    let client = client();
    let u0 = backend(&proxy, "pool", "u0");

    upstreams[0].set_status(500);
    let mut fives = 0;
    while !u0.is(Exclusion::Ejected) {
        if get(&client, &proxy.url("/"), None).await.status == 500 {
            fives += 1;
        }
        assert!(fives <= 3, "not ejected after three 500s");
    }
    assert_eq!(fives, 3);
    eventually(DEADLINE, "ejection recorded", || {
        u0.status().condition == Condition::Ejected
    })
    .await;
    let status = u0.status();
    assert_eq!(
        (status.condition, status.ejections, status.last_ejection),
        (Condition::Ejected, 1, Some(Duration::from_millis(300)))
    );
    assert!(
        status.reason.contains("3 consecutive 5xx responses"),
        "{status:?}"
    );

    let seen = upstreams[0].requests();
    for _ in 0..10 {
        assert_eq!(
            get(&client, &proxy.url("/"), None).await.status,
            200,
            "request reached the ejected backend"
        );
    }
    assert_eq!(upstreams[0].requests(), seen);

    // The ejection ends; still failing, it is ejected again for twice as long.
    eventually(DEADLINE, "ejection over", || !u0.is(Exclusion::Ejected)).await;
    let deadline = Instant::now() + DEADLINE;
    while u0.status().ejections < 2 {
        get(&client, &proxy.url("/"), None).await;
        assert!(Instant::now() < deadline, "not ejected a second time");
    }
    assert_eq!(u0.status().last_ejection, Some(Duration::from_millis(600)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejection_percent_keeps_part_of_a_failing_pool_in_service() {
    let mut upstreams = Vec::new();
    for name in ["u0", "u1", "u2", "u3"] {
        upstreams.push(Upstream::start(name).await);
    }
    let list: Vec<_> = upstreams.iter().map(|u| (u.name, u.addr)).collect();
    let settings = "retries = 0\n[pools.outlier_detection]\nconsecutive_5xx = 2\nbase_ejection_time = \"30s\"\nmax_ejection_percent = 50\n\n";
    let proxy = proxy(&list, settings, "").await;
    let states: Vec<_> = upstreams
        .iter()
        .map(|u| backend(&proxy, "pool", u.name))
        .collect();
    for u in &upstreams {
        u.set_status(500);
    }
    let ejected = || states.iter().filter(|s| s.is(Exclusion::Ejected)).count();
    let client = client();
    for _ in 0..200 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 500);
        assert!(ejected() <= 2, "more than half of the pool ejected");
    }
    assert_eq!(ejected(), 2, "two of four backends ejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_backend_gives_504_then_is_ejected_and_avoided() {
    let hung = start_hung().await;
    let good = Upstream::start("good").await;
    let proxy = proxy(
        &[("hung", hung), ("good", good.addr)],
        "[pools.outlier_detection]\nconsecutive_failures = 1\n\n",
        "[timeouts]\nresponse_header = \"300ms\"\n",
    )
    .await;
    let client = client();

    let mut statuses = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let answer = get(&client, &proxy.url("/"), None).await;
        if answer.status == 504 {
            assert!(started.elapsed() >= Duration::from_millis(300));
        }
        statuses.push(answer.status.as_u16());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 504],
        "round-robin reaches both: one times out, one answers"
    );
    let state = backend(&proxy, "pool", "hung");
    eventually(DEADLINE, "hung backend ejected", || {
        state.is(Exclusion::Ejected)
    })
    .await;
    for _ in 0..10 {
        let answer = get(&client, &proxy.url("/"), None).await;
        assert_eq!((answer.status.as_u16(), answer.upstream()), (200, "good"));
    }
}

async fn failing_probes_pool(panic_threshold: u8) -> (TestProxy, [Upstream; 2]) {
    let upstreams = [Upstream::start("u0").await, Upstream::start("u1").await];
    for u in &upstreams {
        u.set_health_status(503);
    }
    let settings = format!(
        "panic_threshold = {panic_threshold}\n[pools.health_check]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nunhealthy_threshold = 1\n\n"
    );
    let backends = [("u0", upstreams[0].addr), ("u1", upstreams[1].addr)];
    let proxy = proxy(&backends, &settings, "").await;
    let states = [backend(&proxy, "pool", "u0"), backend(&proxy, "pool", "u1")];
    eventually(DEADLINE, "both unhealthy", || {
        states.iter().all(|s| s.is(Exclusion::Unhealthy))
    })
    .await;
    (proxy, upstreams)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_gives_503_without_touching_them() {
    let (proxy, upstreams) = failing_probes_pool(0).await;
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers["retry-after"], "2");
    assert_eq!(upstreams.iter().map(Upstream::requests).sum::<usize>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_mode_sends_traffic_to_every_backend_when_too_few_are_healthy() {
    let (proxy, upstreams) = failing_probes_pool(50).await;
    let client = client();
    for _ in 0..10 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    }
    assert!(
        upstreams.iter().all(|u| u.requests() == 5),
        "panic mode uses all backends evenly"
    );
    assert!(proxy.gateway.snapshot().load().pools[0].panic);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_post_is_never_replayed_but_reset_get_is() {
    let (resetter, connections) = start_raw(b"").await;
    let good = Upstream::start("good").await;
    // Half the GETs meet the resetting backend: give the budget room for a retry each.
    let proxy = proxy(
        &[("resetter", resetter), ("good", good.addr)],
        "retries = 2\nretry_budget_percent = 100\n[pools.outlier_detection]\nconsecutive_failures = 0\n\n",
        "",
    )
    .await;
    let client = client();

    let mut reset_posts = 0;
    for _ in 0..10 {
        let before = (connections.load(Ordering::SeqCst), good.requests());
        let post = Request::post(proxy.url("/orders"))
            .body(Full::new(Bytes::from_static(b"{\"item\": 1}")))
            .unwrap();
        let answer = send(&client, post).await;
        let after = (connections.load(Ordering::SeqCst), good.requests());
        if answer.status == 502 {
            reset_posts += 1;
            assert_eq!(
                after.1, before.1,
                "a POST that reached a backend was replayed elsewhere"
            );
            assert_eq!(after.0, before.0 + 1);
        } else {
            assert_eq!(answer.status, 200);
        }
    }
    assert!(
        reset_posts >= 4,
        "round-robin sends about half the POSTs to the resetting backend"
    );

    for _ in 0..10 {
        assert_eq!(
            get(&client, &proxy.url("/items"), None).await.status,
            200,
            "reset GET was not retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_backend_ramps_up_over_the_slow_start_window() {
    let upstreams = [Upstream::start("u0").await, Upstream::start("u1").await];
    let proxy = proxy(
        &[("u0", upstreams[0].addr), ("u1", upstreams[1].addr)],
        "retries = 0\nslow_start = \"3s\"\n[pools.outlier_detection]\nconsecutive_5xx = 1\nbase_ejection_time = \"100ms\"\n\n",
        "",
    )
    .await;
    let u0 = backend(&proxy, "pool", "u0");
    let full = u0.effective_weight();

    upstreams[0].set_status(500);
    let client = client();
    while !u0.is(Exclusion::Ejected) {
        get(&client, &proxy.url("/"), None).await;
    }
    upstreams[0].set_status(200);
    eventually(DEADLINE, "ejection over", || !u0.is(Exclusion::Ejected)).await;
    let start = u0.effective_weight();
    assert!(
        start < full / 4,
        "recovered at weight {start} of {full}, not ramping"
    );
    eventually(DEADLINE, "weight rising", || u0.effective_weight() > start).await;
    eventually(DEADLINE, "full weight", || u0.effective_weight() == full).await;
}

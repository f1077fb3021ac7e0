//! Failure handling through the real proxy: active probes, passive ejection with backoff,
//! retries on another backend, the all-down answer and panic mode, and what is never retried.
//! Every wait polls with a deadline; bounds are generous for a noisy 2-core machine.
//!
//! Longer than most files on purpose: each failure scenario keeps its backends, waits and
//! checks together.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::upstream::{start_hung, start_raw};
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchyard::control::Event;
use switchyard::upstream::State;
use tokio::time::Instant;

/// A proxy over one pool `pool` of weight-1 `backends`, with `settings` applied to the pool
/// and `top` to the whole config.
async fn proxy(
    backends: &[(&str, SocketAddr)],
    settings: impl FnOnce(PoolBuilder) -> PoolBuilder,
    top: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> TestProxy {
    let list: Vec<_> = backends.iter().map(|(n, a)| (*n, *a, 1)).collect();
    let config = top(ConfigBuilder::single_pool(&list).with_pool(settings));
    TestProxy::start(&config.toml()).await
}

/// No change.
fn same<T>(builder: T) -> T {
    builder
}

/// Kills one of two backends under steady GET load and brings it back; returns how long the
/// dead backend stayed eligible (kept receiving attempts) and how long until probes marked it
/// unhealthy.
async fn kill_and_revive(pool_settings: fn(PoolBuilder) -> PoolBuilder) -> (Duration, Duration) {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let settings = |pool: PoolBuilder| {
        pool_settings(pool)
            .http_checks("1s", 2, 2)
            .set("health_check.timeout", "500ms")
    };
    let proxy = proxy(&[("a", a.addr), ("b", b.addr)], settings, same).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = get_load(proxy.url("/"), 2, None, Arc::clone(&stop));
    eventually(DEADLINE, "traffic on b", || b.requests() > 50).await;
    // A probe has passed, so b is confirmed healthy and takes `unhealthy_threshold` failures.
    eventually(DEADLINE, "b probed", || b.health_probes() >= 1).await;

    b.stop();
    let killed = Instant::now();
    poll_until(DEADLINE, "b excluded", || async {
        (backend_view(&proxy, "pool", "b").await.state != State::Healthy).then_some(())
    })
    .await;
    let excluded_after = killed.elapsed();
    wait_for_state(&proxy, "pool", "b", State::Unhealthy).await;
    let unhealthy_after = killed.elapsed();

    let probes_before = b.health_probes();
    b.restart().await;
    let view = wait_for_state(&proxy, "pool", "b", State::Healthy).await;
    assert!(
        b.health_probes() >= probes_before + 2,
        "rejoined after fewer than healthy_threshold passes"
    );
    assert!(view.reasons.is_empty(), "{view:?}");
    let announced = proxy.gateway.control().events.subscribe(Some(0)).0;
    let last = announced
        .iter()
        .rev()
        .find_map(|e| match &e.event {
            Event::Backend {
                backend,
                to,
                reason,
                ..
            } if backend == "b" => Some((*to, reason)),
            _ => None,
        })
        .expect("b's return was announced");
    assert_eq!(last.0, State::Healthy);
    assert!(last.1.contains("2 consecutive probes passed"), "{last:?}");
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
    kill_and_revive(same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_alone_mark_a_killed_backend_unhealthy() {
    // Without passive ejection the probes are what excludes it, after `fall` failed probes; half
    // the requests meet the dead backend until then, so the budget must allow a retry each.
    let (excluded, unhealthy) = kill_and_revive(|pool| {
        pool.set("retry_budget_percent", 100)
            .set("outlier_detection.consecutive_failures", 0)
    })
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
    let settings = |pool: PoolBuilder| {
        pool.set("retries", 0)
            .set("outlier_detection.consecutive_5xx", 3)
            .set("outlier_detection.base_ejection_time", "300ms")
            .set("outlier_detection.max_ejection_time", "10s")
            .set("outlier_detection.max_ejection_percent", 50)
    };
    let backends = [("u0", upstreams[0].addr), ("u1", upstreams[1].addr)];
    let proxy = proxy(&backends, settings, same).await;
    let client = client();

    upstreams[0].set_status(500);
    let mut fives = 0;
    while backend_view(&proxy, "pool", "u0").await.state != State::Ejected {
        if get(&client, &proxy.url("/"), None).await.status == 500 {
            fives += 1;
        }
        assert!(fives <= 3, "not ejected after three 500s");
    }
    assert_eq!(fives, 3);
    let view = backend_view(&proxy, "pool", "u0").await;
    assert_eq!(view.ejections, 1);
    assert_eq!(
        view.reasons[0].detail,
        "3 consecutive failures (5xx); ejected for 300ms"
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
    wait_for_state(&proxy, "pool", "u0", State::Healthy).await;
    let view = poll_until(DEADLINE, "a second ejection", || async {
        let view = backend_view(&proxy, "pool", "u0").await;
        if view.ejections >= 2 {
            return Some(view);
        }
        get(&client, &proxy.url("/"), None).await;
        None
    })
    .await;
    assert!(
        view.reasons[0].detail.ends_with("ejected for 600ms"),
        "{view:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejection_percent_keeps_part_of_a_failing_pool_in_service() {
    let mut upstreams = Vec::new();
    for name in ["u0", "u1", "u2", "u3"] {
        upstreams.push(Upstream::start(name).await);
    }
    let list: Vec<_> = upstreams.iter().map(|u| (u.name, u.addr)).collect();
    let settings = |pool: PoolBuilder| {
        pool.set("retries", 0)
            .set("outlier_detection.consecutive_5xx", 2)
            .set("outlier_detection.base_ejection_time", "30s")
            .set("outlier_detection.max_ejection_percent", 50)
    };
    let proxy = proxy(&list, settings, same).await;
    for u in &upstreams {
        u.set_status(500);
    }
    let ejected = || async {
        let mut count = 0;
        for u in &upstreams {
            count +=
                usize::from(backend_view(&proxy, "pool", u.name).await.state == State::Ejected);
        }
        count
    };
    let client = client();
    for _ in 0..200 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 500);
        assert!(ejected().await <= 2, "more than half of the pool ejected");
    }
    assert_eq!(ejected().await, 2, "two of four backends ejected");
    // The two the cap holds in service show why, not as plainly healthy.
    for u in &upstreams {
        let view = backend_view(&proxy, "pool", u.name).await;
        if view.state == State::Healthy {
            let detail = &view.reasons.first().expect("a reason").detail;
            assert!(
                detail.ends_with("held in service: max_ejection_percent reached"),
                "{view:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_backend_gives_504_then_is_ejected_and_avoided() {
    let hung = start_hung().await;
    let good = Upstream::start("good").await;
    let proxy = proxy(
        &[("hung", hung), ("good", good.addr)],
        // Timeouts not retried, so that the client sees the hung backend's 504.
        |pool| {
            pool.set("outlier_detection.consecutive_failures", 1)
                .set("retry_on", vec!["connect-failure", "reset"])
        },
        |config| config.set("timeouts.response_header", "300ms"),
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
    wait_for_state(&proxy, "pool", "hung", State::Ejected).await;
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
    let settings = |pool: PoolBuilder| {
        pool.set("panic_threshold", i64::from(panic_threshold))
            .http_checks("100ms", 1, 2)
    };
    let backends = [("u0", upstreams[0].addr), ("u1", upstreams[1].addr)];
    let proxy = proxy(&backends, settings, same).await;
    for name in ["u0", "u1"] {
        wait_for_state(&proxy, "pool", name, State::Unhealthy).await;
    }
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
    // As an operator sees it: the pool's view says so.
    let (_, view) = proxy.admin("GET", "/api/pools/pool", None, None).await;
    assert_eq!(view["panic"], true, "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_post_is_never_replayed_but_reset_get_is() {
    let (resetter, connections) = start_raw(b"").await;
    let good = Upstream::start("good").await;
    // Half the GETs meet the resetting backend: give the budget room for a retry each.
    let proxy = proxy(
        &[("resetter", resetter), ("good", good.addr)],
        |pool| {
            pool.set("retries", 2)
                .set("retry_budget_percent", 100)
                .set("outlier_detection.consecutive_failures", 0)
        },
        same,
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
        |pool| {
            pool.set("retries", 0)
                .set("slow_start", "3s")
                .set("outlier_detection.consecutive_5xx", 1)
                .set("outlier_detection.base_ejection_time", "100ms")
        },
        same,
    )
    .await;
    let weight = || async { backend_view(&proxy, "pool", "u0").await.weight.effective };
    let full = weight().await;

    upstreams[0].set_status(500);
    send_until_state(&proxy, "pool", "u0", State::Ejected).await;
    upstreams[0].set_status(200);
    let view = wait_for_state(&proxy, "pool", "u0", State::SlowStart).await;
    let start = view.weight.effective;
    assert!(
        start < full / 4.0,
        "recovered at weight {start} of {full}, not ramping"
    );
    poll_until(DEADLINE, "weight rising", || async {
        (weight().await > start).then_some(())
    })
    .await;
    let view = wait_for_state(&proxy, "pool", "u0", State::Healthy).await;
    assert_eq!(view.weight.effective, full);
}

/// The demo's upstreams have a switch: `POST /fail` makes one fail its probes until
/// `POST /recover`, so the demo shows a backend leaving the rotation and coming back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_upstream_told_to_fail_leaves_the_rotation_and_comes_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(switchyard::demo::serve(
        listener,
        switchyard::demo::UPSTREAMS[1],
        stop.clone(),
    ));
    let config = ConfigBuilder::single_pool(&[("beta", addr, 1)])
        .with_pool(|pool| pool.http_checks("100ms", 2, 2));
    let proxy = TestProxy::start(&config.toml()).await;
    wait_for_state(&proxy, "pool", "beta", State::Healthy).await;
    let switch = |path: &'static str| {
        let client = client();
        async move {
            let req = http::Request::post(format!("http://{addr}{path}"))
                .body(http_body_util::Full::<bytes::Bytes>::default())
                .unwrap();
            send(&client, req).await
        }
    };
    assert_eq!(switch("/fail").await.status, 200);
    wait_for_state(&proxy, "pool", "beta", State::Unhealthy).await;
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 503);
    assert_eq!(switch("/recover").await.status, 200);
    wait_for_state(&proxy, "pool", "beta", State::Healthy).await;
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
    stop.cancel();
}

/// An ejection runs its time while probes pass (a backend failing real traffic may well answer
/// its probe), unless `uneject_on_probe` asks a passing probe to end it early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_probes_end_an_ejection_early_only_with_uneject_on_probe() {
    for uneject_on_probe in [false, true] {
        let upstreams = [Upstream::start("u0").await, Upstream::start("u1").await];
        let settings = |pool: PoolBuilder| {
            pool.set("retries", 0)
                .set("outlier_detection.consecutive_5xx", 1)
                .set("outlier_detection.base_ejection_time", "20s")
                .set("outlier_detection.uneject_on_probe", uneject_on_probe)
                .http_checks("50ms", 2, 1)
        };
        let backends = [("u0", upstreams[0].addr), ("u1", upstreams[1].addr)];
        let proxy = proxy(&backends, settings, same).await;
        upstreams[0].set_status(500);
        send_until_state(&proxy, "pool", "u0", State::Ejected).await;
        // Its probes go on passing (`/health` answers 200).
        let probes = upstreams[0].health_probes();
        eventually(DEADLINE, "five more probes", || {
            upstreams[0].health_probes() >= probes + 5
        })
        .await;
        let state = backend_view(&proxy, "pool", "u0").await.state;
        let expected = if uneject_on_probe {
            State::Healthy
        } else {
            State::Ejected
        };
        assert_eq!(state, expected, "uneject_on_probe = {uneject_on_probe}");
    }
}

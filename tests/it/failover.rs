//! Backends dying under load cost clients nothing, and retries leave the balance alone: two of
//! three backends killed under steady GET load fail no request, a dead backend is tried only a
//! few times per second, and a failing backend still gets only its share of first attempts.

use crate::support::config::ConfigBuilder;
use crate::support::upstream::start_raw;
use crate::support::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn connect_errors(metrics: &str, backend: &str) -> f64 {
    let prefix =
        format!("switchyard_upstream_connect_errors_total{{pool=\"pool\",backend=\"{backend}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_backends_killed_under_load_fail_no_get() {
    let backends = Upstream::start_all(["a", "b", "c"]).await;
    let list: Vec<_> = ["a", "b", "c"]
        .iter()
        .zip(&backends)
        .map(|(name, u)| (*name, u.addr, 1))
        .collect();
    let proxy = TestProxy::start_config(&ConfigBuilder::single_pool(&list).with_pool(|pool| {
        pool.set("health_check.type", "http")
            .set("health_check.path", "/health")
            .set("health_check.interval", "1s")
            .set("health_check.timeout", "500ms")
            .set("health_check.unhealthy_threshold", 2)
    }))
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = get_load(
        proxy.url("/"),
        4,
        Some(Duration::from_millis(10)),
        Arc::clone(&stop),
    );
    eventually(DEADLINE, "traffic on every backend", || {
        backends.iter().all(|b| b.requests() > 20)
    })
    .await;

    backends[1].stop();
    backends[2].stop();
    let killed = tokio::time::Instant::now();
    // Past the probes' verdict (2 failed probes at 1 s) and a while beyond.
    let served = backends[0].requests();
    eventually(DEADLINE, "3 s of traffic after the kill", || {
        killed.elapsed() > Duration::from_secs(3) && backends[0].requests() > served + 500
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let elapsed = killed.elapsed().as_secs_f64();
    let (ok, failed) = load.await.unwrap();
    let metrics = get(
        &client(),
        &format!("http://{}/metrics", proxy.gateway.admin_addr().unwrap()),
        None,
    )
    .await
    .body;
    let refused = connect_errors(&metrics, "b") + connect_errors(&metrics, "c");
    println!(
        "{ok} GETs answered, {failed} failed; {refused} refused connects to the dead backends in {elapsed:.1} s"
    );
    assert_eq!(failed, 0, "GETs failed while two of three backends died");
    // Without the back-off each dead backend would meet about a third of ~400 requests/s.
    assert!(
        refused / elapsed < 20.0,
        "dead backends were tried {:.1} times per second",
        refused / elapsed
    );
}

#[tokio::test]
async fn retries_do_not_shift_the_rotation_of_first_attempts() {
    let a = Upstream::start("a").await;
    let c = Upstream::start("c").await;
    // b closes every connection without answering: each attempt on it fails and is retried.
    let (b, b_attempts) = start_raw(b"").await;
    let proxy = TestProxy::start_config(
        &ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b, 1), ("c", c.addr, 1)]).with_pool(
            |pool| {
                pool.set("retry_budget_percent", 100)
                    .set("outlier_detection.consecutive_failures", 0)
            },
        ),
    )
    .await;
    let client = client();
    let failed = AtomicUsize::new(0);
    for _ in 0..300 {
        if get(&client, &proxy.url("/"), None).await.status != 200 {
            failed.fetch_add(1, Ordering::SeqCst);
        }
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    let first_attempts_on_b = b_attempts.load(Ordering::SeqCst);
    println!(
        "first attempts on the failing backend: {first_attempts_on_b} of 300; a served {}, c served {}",
        a.requests(),
        c.requests()
    );
    assert!(
        (95..=105).contains(&first_attempts_on_b),
        "b got {first_attempts_on_b} of 300 first attempts, not its third"
    );
    // b's 100 retries spread over a and c (by weight, at random), not all onto one of them.
    for served in [a.requests(), c.requests()] {
        assert!(
            (110..=190).contains(&served),
            "a {} / c {}",
            a.requests(),
            c.requests()
        );
    }
}

/// A pool over a hung backend and a healthy one, with the whole retry budget, no passive
/// ejection, a 300 ms response timeout and `retry_on` as given (`None`: the default).
async fn hung_and_healthy(retry_on: Option<&[&str]>) -> (Upstream, TestProxy) {
    let healthy = Upstream::start("ok").await;
    let hung = crate::support::upstream::start_hung().await;
    let config = ConfigBuilder::single_pool(&[("hung", hung, 1), ("ok", healthy.addr, 1)])
        .set("timeouts.response_header", "300ms")
        .with_pool(|pool| {
            let pool = pool
                .set("retry_budget_percent", 100)
                .set("outlier_detection.consecutive_failures", 0);
            match retry_on {
                Some(conditions) => pool.set("retry_on", conditions.to_vec()),
                None => pool,
            }
        });
    (healthy, TestProxy::start_config(&config).await)
}

/// By default (NGINX's `proxy_next_upstream error timeout`) a hung backend that still accepts
/// connections costs GETs nothing; a POST is never replayed.
#[tokio::test]
async fn by_default_a_hung_backend_costs_gets_nothing_and_posts_still_time_out() {
    let (healthy, proxy) = hung_and_healthy(None).await;
    let client = client();
    for i in 0..6 {
        let answer = get(&client, &proxy.url("/"), None).await;
        assert_eq!(answer.status, 200, "GET {i}");
    }
    assert_eq!(healthy.requests(), 6);
    // A POST is not idempotent: its timeout is answered, never replayed.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let req = http::Request::post(proxy.url("/"))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
            .unwrap();
        statuses.push(send(&client, req).await.status.as_u16());
    }
    assert!(statuses.contains(&504), "{statuses:?}");

    // Without `timeout` in retry_on the GETs that meet the hung backend get 504.
    let (_healthy, proxy) = hung_and_healthy(Some(&["connect-failure", "reset"])).await;
    let mut timed_out = 0;
    for _ in 0..6 {
        if get(&client, &proxy.url("/"), None).await.status == 504 {
            timed_out += 1;
        }
    }
    assert_eq!(
        timed_out, 3,
        "round-robin sends every other GET to the hung backend"
    );
}

#[tokio::test]
async fn with_retry_on_5xx_an_erroring_backend_is_skipped_and_a_pool_of_them_passes_the_5xx_on() {
    let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
    bad.set_status(503);
    let proxy = TestProxy::start_config(
        &ConfigBuilder::single_pool(&[("bad", bad.addr, 1), ("good", good.addr, 1)]).with_pool(
            |pool| {
                pool.set("retry_on", vec!["5xx"])
                    .set("retry_budget_percent", 100)
            },
        ),
    )
    .await;
    let client = client();
    for i in 0..6 {
        assert_eq!(
            get(&client, &proxy.url("/"), None).await.status,
            200,
            "GET {i}"
        );
    }
    assert_eq!(
        bad.requests(),
        3,
        "the 5xx backend kept its share of first attempts"
    );
    good.set_status(500);
    let answer = get(&client, &proxy.url("/"), None).await;
    assert!(
        matches!(answer.status.as_u16(), 500 | 503),
        "the last 5xx is passed on, not turned into 502: {}",
        answer.status
    );
}

#[tokio::test]
async fn the_request_deadline_bounds_every_attempt_together() {
    let hung: Vec<_> = [
        crate::support::upstream::start_hung().await,
        crate::support::upstream::start_hung().await,
        crate::support::upstream::start_hung().await,
    ]
    .into();
    let proxy = TestProxy::start_config(
        &ConfigBuilder::single_pool(&[("a", hung[0], 1), ("b", hung[1], 1), ("c", hung[2], 1)])
            .set("timeouts.response_header", "2s")
            .set("timeouts.request", "300ms")
            .with_pool(|pool| {
                pool.set("retry_on", vec!["timeout"])
                    .set("retry_budget_percent", 100)
                    .set("outlier_detection.consecutive_failures", 0)
            }),
    )
    .await;
    let started = tokio::time::Instant::now();
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 504);
    // Three attempts of 2 s each would take 6 s; the deadline ends them after 300 ms.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A client that stops sending its upload is the client's fault: 408, while the backend, which
/// waited for the body all along, is neither blamed nor ejected, however many do it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stalling_their_uploads_get_408_and_never_eject_the_backend() {
    let a = Upstream::start("a").await;
    let config = ConfigBuilder::single_pool(&[("a", a.addr, 1)])
        .set("timeouts.response_header", "1s")
        .set("timeouts.request_body", "2s");
    let proxy = TestProxy::start(&config.toml()).await;
    // More stalled uploads than `outlier_detection.consecutive_failures` (5).
    let request =
        b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n0123456789".as_slice();
    let stalled: Vec<_> = (0..8)
        .map(|_| tokio::spawn(crate::support::raw::exchange(proxy.addr, request)))
        .collect();
    for answer in stalled {
        let answer = answer.await.expect("client task");
        assert_eq!(crate::support::raw::status(&answer), 408, "{answer}");
    }
    let view = backend_view(&proxy, "pool", "a").await;
    assert_eq!(view.state, switchyard::upstream::State::Healthy, "{view:?}");
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 200);
}

/// The response-header timeout measures the backend's silence only: an upload that arrives
/// slowly, in pieces further apart than that timeout, still gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_not_a_silent_backend() {
    use tokio::io::AsyncWriteExt;
    let a = Upstream::start("a").await;
    let config = ConfigBuilder::single_pool(&[("a", a.addr, 1)])
        .set("timeouts.response_header", "300ms")
        .set("timeouts.request_body", "10s");
    let proxy = TestProxy::start(&config.toml()).await;
    let length = 128 * 1024; // streamed, not buffered: past what the proxy reads whole
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!(
        "POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let piece = vec![b'x'; length / 4];
    for _ in 0..4 {
        // Paused between pieces for longer than the response-header timeout.
        tokio::time::sleep(Duration::from_millis(700)).await;
        stream.write_all(&piece).await.unwrap();
    }
    let answer = crate::support::raw::read_to_close(&mut stream).await;
    assert_eq!(crate::support::raw::status(&answer), 200, "{answer}");
    assert!(answer.ends_with(&length.to_string()), "{answer}");
}

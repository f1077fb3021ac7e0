//! The control plane as an operator watches it: one event stream shows every state change once,
//! with the right from and to, in order, and resumes with Last-Event-ID. Drains, reloads and the
//! admin API have modules of their own.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::events::{EventStream, summary};
use crate::support::*;
use switchyard::upstream::State;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_stream_shows_drain_ejection_and_panic_each_once() {
    let [a, b, c] = Upstream::start_all(["a", "b", "c"]).await;
    // Three backends; with one drained and one ejected, one usable of three is under 50 %.
    let pool = PoolBuilder::new("pool")
        .backend("a", a.addr, 1)
        .backend("b", b.addr, 1)
        .backend("c", c.addr, 1)
        .set("retries", 0)
        .set("panic_threshold", 50)
        .set("outlier_detection.consecutive_5xx", 1)
        .set("outlier_detection.base_ejection_time", "500ms")
        .set("outlier_detection.max_ejection_percent", 50);
    let proxy = TestProxy::start_config(
        &ConfigBuilder::new()
            .pool(pool)
            .route("all", None, "/", "pool"),
    )
    .await;
    let admin = proxy.gateway.admin_addr().unwrap();
    let mut events = EventStream::open(admin, None).await;

    let mut seen = Vec::new();
    let mut expect = async |wanted: &[&str]| {
        for want in wanted {
            let event = events.next().await;
            seen.push((event["id"].as_u64().expect("numbered"), summary(&event)));
            assert_eq!(seen.last().unwrap().1, *want, "events so far: {seen:?}");
        }
    };

    // A request held on a, then a drain: draining until it ends, then drained.
    let held = spawn_gets(3, proxy.url("/hold"));
    eventually(DEADLINE, "a request held on a", || a.held() == 1).await;
    let (status, view) = proxy
        .admin("POST", "/api/pools/pool/backends/a/drain", None, None)
        .await;
    assert_eq!(
        (status.as_u16(), view["state"].as_str()),
        (200, Some("draining"))
    );
    expect(&["backend a healthy->draining"]).await;
    for upstream in [&a, &b, &c] {
        upstream.release_held();
    }
    let answers = held.await.unwrap();
    assert!(answers.iter().all(|answer| answer.status == 200));
    expect(&["backend a draining->drained"]).await;

    // b fails once: ejected, which leaves one usable backend of three: panic mode.
    b.set_status(500);
    send_until_state(&proxy, "pool", "b", State::Ejected).await;
    b.set_status(200);
    expect(&["backend b healthy->ejected", "panic pool on"]).await;
    // The ejection ends on its own: b is healthy again and the pool leaves panic mode.
    expect(&["backend b ejected->healthy", "panic pool off"]).await;
    let first_id = seen[0].0;
    let seen: Vec<String> = seen.into_iter().map(|(_, summary)| summary).collect();
    let view = backend_view(&proxy, "pool", "b").await;
    assert_eq!((view.state, view.ejections), (State::Healthy, 1));

    // A subscriber reconnecting after the first event gets the rest again, in order.
    let mut resumed = EventStream::open(admin, Some(first_id)).await;
    let mut replayed = Vec::new();
    for _ in 0..5 {
        replayed.push(summary(&resumed.next().await));
    }
    assert_eq!(replayed, seen[1..]);
    let (status, _) = proxy
        .admin("POST", "/api/pools/pool/backends/a/undrain", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(summary(&events.next().await), "backend a drained->healthy");
    assert_eq!(summary(&resumed.next().await), "backend a drained->healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_reports_drains_and_health_transitions() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let config = ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 1)])
        .with_pool(|pool| pool.quick_probes());
    let proxy = TestProxy::start_config(&config).await;

    let mut events = EventStream::open(proxy.gateway.admin_addr().unwrap(), None).await;

    proxy
        .admin("POST", "/api/pools/pool/backends/a/drain", None, None)
        .await;
    let event = events
        .next_matching(|e| e["type"] == "backend" && e["backend"] == "a")
        .await;
    assert_eq!(
        (event["from"].as_str(), event["to"].as_str()),
        (Some("healthy"), Some("drained"))
    );

    b.set_health_status(500);
    let event = events
        .next_matching(|e| e["type"] == "backend" && e["backend"] == "b")
        .await;
    assert_eq!(event["to"], "unhealthy");
    assert!(
        event["reason"].as_str().unwrap().contains("status 500"),
        "{event}"
    );
}

//! The control plane as an operator watches it: one event stream shows every state change once
//! with the right from and to, resumes with Last-Event-ID, drains meet their deadlines, and
//! probe settings can be reloaded without losing a backend's health history.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::events::{EventStream, summary};
use crate::support::*;
use serde_json::Value;
use switchyard::upstream::State;

/// Starts the proxy on a typed config.
async fn start(config: &ConfigBuilder) -> TestProxy {
    TestProxy::start(&config.toml()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_stream_shows_drain_ejection_and_panic_each_once() {
    let [a, b, c] = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
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
    let proxy = start(
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
    let client = client();
    while backend_view(&proxy, "pool", "b").await.state != State::Ejected {
        get(&client, &proxy.url("/"), None).await;
    }
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
async fn a_drain_deadline_closes_what_remains_and_announces_drained() {
    let a = Upstream::start("a").await;
    let proxy = start(&ConfigBuilder::single_pool(&[("a", a.addr, 1)])).await;
    let mut events = EventStream::open(proxy.gateway.admin_addr().unwrap(), None).await;
    let held = spawn_gets(1, proxy.url("/hold"));
    eventually(DEADLINE, "a request held on a", || a.held() == 1).await;

    let (status, view) = proxy
        .admin(
            "POST",
            "/api/pools/pool/backends/a/drain",
            Some(r#"{"deadline": "500ms"}"#),
            None,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "draining");
    assert_eq!(view["in_flight"], 1);
    assert!(view["drain"]["since"].is_string(), "{view}");
    assert!(view["drain"]["deadline"].is_string(), "{view}");

    let drained = events.next_matching(|e| e["to"] == "drained").await;
    assert_eq!(drained["from"], "draining");
    assert!(
        drained["reason"]
            .as_str()
            .unwrap()
            .starts_with("drain deadline reached"),
        "{drained}"
    );
    // The request the deadline cut short failed cleanly; nothing else of a remains.
    let answers = held.await.unwrap();
    assert_eq!(answers[0].status, 502, "{:?}", answers[0].body);
    let view = wait_for_state(&proxy, "pool", "a", State::Drained).await;
    assert_eq!(view.in_flight, 0);
    assert!(view.reasons[0].detail.contains("deadline"), "{view:?}");
    a.release_held();
}

/// A request cut by a drain deadline may have run on its backend: it is never run again on
/// another, whatever `retry_on` says (the default retries resets of idempotent requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_by_a_drain_deadline_is_not_retried() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let proxy = start(&ConfigBuilder::single_pool(&[
        ("a", a.addr, 1),
        ("b", b.addr, 1),
    ]))
    .await;
    let held = spawn_gets(1, proxy.url("/hold"));
    eventually(DEADLINE, "a request held", || a.held() + b.held() == 1).await;
    let (name, other) = if a.held() == 1 { ("a", &b) } else { ("b", &a) };
    let (status, view) = proxy
        .admin(
            "POST",
            &format!("/api/pools/pool/backends/{name}/drain"),
            Some(r#"{"deadline": "200ms"}"#),
            None,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    // Were it retried, the other backend would hold it too.
    let answers = tokio::time::timeout(DEADLINE, held).await;
    assert_eq!(
        other.requests(),
        0,
        "the cut request ran again on the other backend"
    );
    let answers = answers.expect("an answer").unwrap();
    assert_eq!(answers[0].status, 502, "{:?}", answers[0].body);
    a.release_held();
    b.release_held();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_drain_deadline_is_refused() {
    let a = Upstream::start("a").await;
    let proxy = start(&ConfigBuilder::single_pool(&[("a", a.addr, 1)])).await;
    let (status, answer) = proxy
        .admin(
            "POST",
            "/api/pools/pool/backends/a/drain?deadline=soon",
            None,
            None,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        backend_view(&proxy, "pool", "a").await.state,
        State::Healthy
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_deadline_past_thirty_days_is_refused_and_the_control_plane_lives_on() {
    let a = Upstream::start("a").await;
    let proxy = start(&ConfigBuilder::single_pool(&[("a", a.addr, 1)])).await;
    let drain = "/api/pools/pool/backends/a/drain";
    for (query, body) in [
        ("?deadline=8000years", None),
        ("?deadline=9223372036854775807s", None),
        ("", Some(r#"{"deadline": "10000years"}"#)),
    ] {
        let (status, answer) = proxy
            .admin("POST", &format!("{drain}{query}"), body, None)
            .await;
        assert_eq!(status, 400, "{query} {body:?}: {answer}");
        assert!(answer.to_string().contains("30 days"), "{answer}");
    }
    assert_eq!(
        backend_view(&proxy, "pool", "a").await.state,
        State::Healthy
    );
    // The longest deadline is taken and shown; the control plane still answers an undrain.
    let (status, view) = proxy
        .admin("POST", &format!("{drain}?deadline=30d"), None, None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert!(view["drain"]["deadline"].is_string(), "{view}");
    let (status, _) = proxy
        .admin("POST", "/api/pools/pool/backends/a/undrain", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        backend_view(&proxy, "pool", "a").await.state,
        State::Healthy
    );
    let (status, _) = proxy.admin("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
}

/// Arbitrary text and numbers in every admin input: each answer is 2xx or 4xx, and the proxy
/// still serves and changes state afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_admin_input_never_gets_a_5xx_or_stops_the_control_plane() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let a = Upstream::start("a").await;
    let proxy = start(&ConfigBuilder::single_pool(&[("a", a.addr, 1)])).await;
    let mut runner = TestRunner::deterministic();
    let text = "[ -~]{0,24}";
    let inputs = (
        text,
        any::<u64>(),
        any::<i64>(),
        any::<f64>(),
        "(s|ms|d|y|years|h)",
    );
    for _ in 0..64 {
        let (text, big, signed, float, unit) =
            inputs.new_tree(&mut runner).expect("a value").current();
        let escaped = serde_json::to_string(&text).expect("a string serializes");
        let queries = [
            format!("/api/pools/pool/backends/a/drain?deadline={big}{unit}"),
            format!(
                "/api/pools/pool/backends/a/drain?deadline={}",
                text.replace(['&', '#', ' '], "")
            ),
        ];
        for path in &queries {
            if path.parse::<http::Uri>().is_err() {
                continue;
            }
            let (status, answer) = proxy.admin("POST", path, None, None).await;
            assert!(status.as_u16() < 500, "{path}: {status} {answer}");
        }
        let bodies = [
            ("drain", format!(r#"{{"deadline": "{signed}{unit}"}}"#)),
            ("drain", format!(r#"{{"deadline": {escaped}}}"#)),
            ("drain", format!(r#"{{"deadline": {float}}}"#)),
            ("drain", text.clone()),
            ("weight", format!(r#"{{"weight": {signed}}}"#)),
            ("weight", format!(r#"{{"weight": {float}}}"#)),
            ("weight", format!(r#"{{"weight": {big}}}"#)),
            ("weight", format!(r#"{{"weight": {escaped}}}"#)),
            ("weight", text.clone()),
        ];
        for (action, body) in &bodies {
            let path = format!("/api/pools/pool/backends/a/{action}");
            let method = if *action == "weight" { "PUT" } else { "POST" };
            let (status, answer) = proxy.admin(method, &path, Some(body), None).await;
            assert!(status.as_u16() < 500, "{path} {body}: {status} {answer}");
        }
    }
    let (status, _) = proxy
        .admin("POST", "/api/pools/pool/backends/a/undrain", None, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = proxy.admin("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// A proxy reloadable from its file, over `a` and `b` with probes every 100 ms and the given
/// thresholds; returns it and the config, to be written again with other probe settings.
async fn probed(
    a: &Upstream,
    b: &Upstream,
    fall: i64,
    rise: i64,
) -> (TestProxy, ConfigBuilder, std::path::PathBuf) {
    let config = ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 1)])
        .set("reload.watch", false)
        .with_pool(|pool| pool.http_checks("100ms", fall, rise));
    let path = temp_config(&config.toml());
    (TestProxy::start_file(&path).await, config, path)
}

/// Writes `config` with another probe interval and reloads it.
async fn reload_probe_settings(proxy: &TestProxy, config: ConfigBuilder, path: &std::path::Path) {
    let changed = config.with_pool(|pool| pool.set("health_check.interval", "120ms"));
    std::fs::write(path, changed.toml()).unwrap();
    let (status, outcome): (_, Value) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_backend_still_needs_its_healthy_threshold_after_a_probe_reload() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let (proxy, config, path) = probed(&a, &b, 1, 3).await;
    b.set_health_status(503);
    wait_for_state(&proxy, "pool", "b", State::Unhealthy).await;

    reload_probe_settings(&proxy, config, &path).await;
    let before = b.health_probes();
    b.set_health_status(200);
    wait_for_state(&proxy, "pool", "b", State::Healthy).await;
    let passes = b.health_probes() - before;
    assert!(
        passes >= 3,
        "back after {passes} passing probes; healthy_threshold is 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_backend_still_needs_its_unhealthy_threshold_after_a_probe_reload() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let (proxy, config, path) = probed(&a, &b, 3, 1).await;
    eventually(DEADLINE, "b probed", || b.health_probes() >= 1).await;

    reload_probe_settings(&proxy, config, &path).await;
    let before = b.health_probes();
    b.set_health_status(503);
    wait_for_state(&proxy, "pool", "b", State::Unhealthy).await;
    let failures = b.health_probes() - before;
    assert!(
        failures >= 3,
        "down after {failures} failed probes; unhealthy_threshold is 3"
    );
}

/// A backend a reload removes drains like any other: `draining` while its requests run, then
/// `drained` and removed, each announced, so a deploy script can wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_removed_by_a_reload_drains_before_it_goes() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let both = ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 1)])
        .set("reload.watch", false);
    let path = temp_config(&both.toml());
    let proxy = TestProxy::start_file(&path).await;
    let mut events = EventStream::open(proxy.gateway.admin_addr().unwrap(), None).await;
    let held = spawn_gets(1, proxy.url("/hold"));
    eventually(DEADLINE, "a request held", || a.held() + b.held() == 1).await;
    let (gone, stays, upstream) = if b.held() == 1 {
        ("b", ("a", a.addr), &b)
    } else {
        ("a", ("b", b.addr), &a)
    };
    let one = ConfigBuilder::single_pool(&[(stays.0, stays.1, 1)]).set("reload.watch", false);
    std::fs::write(&path, one.toml()).unwrap();
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");

    let draining = events.next_matching(|e| e["backend"] == gone).await;
    assert_eq!(
        summary(&draining),
        format!("backend {gone} healthy->draining")
    );
    assert_eq!(draining["reason"], "removed from the config", "{draining}");
    let view = backend_view(&proxy, "pool", gone).await;
    assert_eq!((view.state, view.in_flight), (State::Draining, 1));

    upstream.release_held();
    let drained = events.next_matching(|e| e["backend"] == gone).await;
    assert_eq!(
        summary(&drained),
        format!("backend {gone} draining->drained")
    );
    let removed = events.next_matching(|e| e["type"] == "membership").await;
    assert_eq!(removed["backend"], gone, "{removed}");
    assert_eq!(held.await.unwrap()[0].status, 200);
}

/// A reload that changes a backend's weight in the file ends its weight override, and says so
/// on the event stream as the API's own change does; before any reload, GET /api/reload says
/// there was none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_change_that_ends_a_weight_override_is_announced() {
    let a = Upstream::start("a").await;
    let config = |weight: i64| {
        ConfigBuilder::new()
            .set("reload.watch", false)
            .pool(PoolBuilder::new("pool").backend("a", a.addr, weight as u32))
            .route("all", None, "/", "pool")
    };
    let path = temp_config(&config(1).toml());
    let proxy = TestProxy::start_file(&path).await;
    let (status, last) = proxy.admin("GET", "/api/reload", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(last["result"], "none", "{last}");
    assert_eq!(last["generation"], 1, "{last}");

    let mut events = EventStream::open(proxy.gateway.admin_addr().unwrap(), None).await;
    let (status, _) = proxy
        .admin(
            "PUT",
            "/api/pools/pool/backends/a/weight",
            Some(r#"{"weight": 7}"#),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let set = events.next_matching(|e| e["type"] == "weight").await;
    assert_eq!(set["weight"], 7, "{set}");
    std::fs::write(&path, config(3).toml()).unwrap();
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");
    let cleared = events.next_matching(|e| e["type"] == "weight").await;
    assert!(cleared["weight"].is_null(), "{cleared}");
    assert_eq!(cleared["backend"], "a", "{cleared}");
}

//! Draining a backend through the real proxy: in-flight requests finish and no new ones come,
//! a deadline closes what remains (never retried elsewhere), bad deadlines are refused, and a
//! backend a reload removes drains before it goes.

use crate::support::config::ConfigBuilder;
use crate::support::events::{EventStream, summary};
use crate::support::*;
use switchyard::upstream::State;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_backend_finishes_its_slow_request_and_takes_no_new_ones() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let proxy = TestProxy::start_config(&ConfigBuilder::single_pool(&[
        ("a", a.addr, 1),
        ("b", b.addr, 1),
    ]))
    .await;

    let url = proxy.url("/hold");
    let slow = tokio::spawn(async move { get(&client(), &url, None).await });
    eventually(DEADLINE, "a held request", || a.held() + b.held() == 1).await;
    let (busy, other) = if a.held() == 1 { (&a, &b) } else { (&b, &a) };

    let backend_path = format!("/api/pools/pool/backends/{}", busy.name);
    let (status, view) = proxy
        .admin("POST", &format!("{backend_path}/drain"), None, None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["state"].as_str(), view["in_flight"].as_u64()),
        (Some("draining"), Some(1))
    );

    let client = client();
    for _ in 0..10 {
        assert_eq!(
            get(&client, &proxy.url("/"), None).await.upstream(),
            other.name
        );
    }
    busy.release_held();
    assert_eq!(
        slow.await.unwrap().status,
        200,
        "the in-flight request on the drained backend failed"
    );
    let view = poll_until(DEADLINE, "the backend drained", || async {
        let (_, view) = proxy.admin("GET", &backend_path, None, None).await;
        (view["state"] == "drained").then_some(view)
    })
    .await;
    assert_eq!(view["in_flight"], 0);

    let (status, view) = proxy
        .admin("POST", &format!("{backend_path}/undrain"), None, None)
        .await;
    assert_eq!(
        (status.as_u16(), view["state"].as_str()),
        (200, Some("healthy"))
    );
    let served = busy.requests();
    for _ in 0..4 {
        get(&client, &proxy.url("/"), None).await;
    }
    assert!(
        busy.requests() > served,
        "undrained backend gets traffic again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_deadline_closes_what_remains_and_announces_drained() {
    let a = Upstream::start("a").await;
    let proxy = TestProxy::start_config(&ConfigBuilder::single_pool(&[("a", a.addr, 1)])).await;
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
    let proxy = TestProxy::start_config(&ConfigBuilder::single_pool(&[
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
    let proxy = TestProxy::start_config(&ConfigBuilder::single_pool(&[("a", a.addr, 1)])).await;
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
    let proxy = TestProxy::start_config(&ConfigBuilder::single_pool(&[("a", a.addr, 1)])).await;
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

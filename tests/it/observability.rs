//! Metrics and access logs through the real proxy: exposition values after scripted traffic
//! (parsed with an independent parser), state gauges following health and drains, series of
//! removed backends gone after reload, access log lines with every field, and a full log buffer
//! that drops lines instead of blocking requests.
//!
//! Longer than most files on purpose: each scenario keeps its traffic and the exposition or
//! log lines it expects together.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::*;
use prometheus_parse::{Sample, Scrape, Value};
use switchyard::upstream::State;

async fn scrape(proxy: &TestProxy) -> Vec<Sample> {
    let addr = proxy.gateway.admin_addr().unwrap();
    let answer = get(&client(), &format!("http://{addr}/metrics"), None).await;
    assert_eq!(answer.status, 200);
    let lines = answer.body.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines).expect("exposition parses").samples
}

/// Sum of the samples of `metric` whose labels include every pair of `labels`.
fn sum(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

async fn eventually_metric(
    proxy: &TestProxy,
    what: &str,
    check: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    poll_until(DEADLINE, what, || async {
        let samples = scrape(proxy).await;
        check(&samples).then_some(samples)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_histograms_and_gauges_match_scripted_traffic() {
    let (ok1, ok2, down) = (
        Upstream::start("ok1").await,
        Upstream::start("ok2").await,
        Upstream::start("down").await,
    );
    down.set_health_status(503);
    let pool = |name: &str, backends: &[(&str, std::net::SocketAddr)]| {
        backends
            .iter()
            .fold(PoolBuilder::new(name), |pool, (backend, addr)| {
                pool.backend(backend, *addr, 1)
            })
    };
    let toml = ConfigBuilder::new()
        .route("web", None, "/", "web")
        .route("broken", None, "/broken", "broken")
        .route("down", None, "/down", "down")
        .route("retry", None, "/retry", "retry")
        .pool(pool("web", &[("ok1", ok1.addr), ("ok2", ok2.addr)]))
        .pool(pool("broken", &[("dead", closed_port())]))
        .pool(pool("down", &[("down", down.addr)]).http_checks("100ms", 1, 2))
        .pool(
            pool("retry", &[("dead", closed_port()), ("ok1", ok1.addr)])
                .set("outlier_detection.consecutive_failures", 0),
        )
        .toml();
    let proxy = TestProxy::start(&toml).await;
    let client = client();
    wait_for_state(&proxy, "down", "down", State::Unhealthy).await;

    for _ in 0..10 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    }
    assert_eq!(get(&client, &proxy.url("/broken"), None).await.status, 502);
    assert_eq!(get(&client, &proxy.url("/down"), None).await.status, 503);
    for _ in 0..2 {
        assert_eq!(get(&client, &proxy.url("/retry"), None).await.status, 200);
    }

    // Durations are recorded when each response body ends, just after the client has it.
    let samples = eventually_metric(&proxy, "10 durations", |s| {
        sum(
            s,
            "switchyard_request_duration_seconds",
            &[("route", "web")],
        ) == 10.0
    })
    .await;
    let requests = "switchyard_requests_total";
    assert_eq!(
        sum(&samples, requests, &[("route", "web"), ("code", "200")]),
        10.0
    );
    assert_eq!(
        sum(&samples, requests, &[("route", "web"), ("backend", "ok1")]),
        5.0
    );
    assert_eq!(
        sum(
            &samples,
            requests,
            &[("route", "broken"), ("backend", "dead"), ("code", "502")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &samples,
            requests,
            &[("route", "down"), ("backend", ""), ("code", "503")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &samples,
            "switchyard_pool_no_backend_total",
            &[("pool", "down")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &samples,
            "switchyard_upstream_connect_errors_total",
            &[("pool", "broken")]
        ),
        1.0
    );
    // Round-robin over [dead, ok1] (retries move the cursor too): every meeting with the dead
    // backend is one connect error and one retry, and at least one of the two requests met it.
    let retry_labels = [("pool", "retry"), ("backend", "dead")];
    let retries = sum(&samples, "switchyard_retries_total", &retry_labels);
    assert!(retries >= 1.0);
    assert_eq!(
        retries,
        sum(
            &samples,
            "switchyard_upstream_connect_errors_total",
            &retry_labels
        )
    );
    assert_eq!(
        sum(
            &samples,
            requests,
            &[("route", "retry"), ("backend", "ok1"), ("code", "200")]
        ),
        2.0
    );
    assert_eq!(
        sum(&samples, "switchyard_backend_up", &[("pool", "web")]),
        2.0
    );
    assert_eq!(
        sum(&samples, "switchyard_backend_up", &[("pool", "down")]),
        0.0
    );
    assert_eq!(sum(&samples, "switchyard_backend_in_flight", &[]), 0.0);
    assert_eq!(
        sum(
            &samples,
            "switchyard_backend_weight",
            &[("pool", "web"), ("backend", "ok1")]
        ),
        1.0
    );
    assert!(
        sum(
            &samples,
            "switchyard_health_checks_total",
            &[("pool", "down"), ("result", "fail")]
        ) >= 1.0
    );
    assert!(sum(&samples, "switchyard_downstream_connections_total", &[]) >= 1.0);
    assert_eq!(
        sum(
            &samples,
            "switchyard_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(sum(&samples, "switchyard_config_generation", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_gauges_follow_a_health_transition_and_a_drain() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let config = ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 1)])
        .with_pool(|pool| pool.quick_probes().set("health_check.healthy_threshold", 1));
    let proxy = TestProxy::start_config(&config).await;
    let state = |s: &[Sample], backend: &str, state: &str| {
        sum(
            s,
            "switchyard_backend_state",
            &[("backend", backend), ("state", state)],
        )
    };

    b.set_health_status(500);
    // The state gauge reads the backend's state and `up` the published snapshot, which follows
    // a moment later: a scrape in between sees the one before the other, so wait for both.
    let up = |s: &[Sample]| sum(s, "switchyard_backend_up", &[("backend", "b")]);
    let samples = eventually_metric(&proxy, "b unhealthy and down", |s| {
        state(s, "b", "unhealthy") == 1.0 && up(s) == 0.0
    })
    .await;
    assert_eq!(state(&samples, "b", "healthy"), 0.0);
    b.set_health_status(200);
    eventually_metric(&proxy, "b healthy", |s| state(s, "b", "healthy") == 1.0).await;

    proxy
        .admin("POST", "/api/pools/pool/backends/a/drain", None, None)
        .await;
    let samples = scrape(&proxy).await;
    assert_eq!(state(&samples, "a", "drained"), 1.0);
    assert_eq!(state(&samples, "a", "healthy"), 0.0);
    assert_eq!(
        sum(&samples, "switchyard_backend_up", &[("backend", "a")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_a_removed_backend_are_gone_after_reload() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let text = |backends: &[(&str, std::net::SocketAddr, u32)]| {
        ConfigBuilder::single_pool(backends)
            .set("reload.watch", false)
            .toml()
    };
    let path = temp_config(&text(&[("a", a.addr, 1), ("b", b.addr, 1)]));
    let proxy = TestProxy::start_file(&path).await;
    let client = client();
    for _ in 0..4 {
        get(&client, &proxy.url("/"), None).await;
    }
    let samples = scrape(&proxy).await;
    assert!(samples.iter().any(|s| s.labels.get("backend") == Some("b")));

    std::fs::write(&path, text(&[("a", a.addr, 1)])).unwrap();
    assert_eq!(proxy.admin("POST", "/api/reload", None, None).await.0, 200);
    let samples = scrape(&proxy).await;
    let left: Vec<_> = samples
        .iter()
        .filter(|s| s.labels.get("backend") == Some("b"))
        .collect();
    assert!(
        left.is_empty(),
        "series of the removed backend remain: {left:?}"
    );
    assert!(sum(&samples, "switchyard_requests_total", &[("backend", "a")]) >= 2.0);
    assert_eq!(
        sum(
            &samples,
            "switchyard_config_reloads_total",
            &[("result", "applied")]
        ),
        1.0
    );
    assert_eq!(sum(&samples, "switchyard_config_generation", &[]), 2.0);
}

/// One pool over `up`, logging to `path`.
fn access_log_config(up: &Upstream, path: &std::path::Path) -> ConfigBuilder {
    ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .set("access_log.enabled", true)
        .set("access_log.path", path.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_line_has_every_field() {
    let up = Upstream::start("up").await;
    let log = temp_config("").with_file_name("access.log");
    let proxy = TestProxy::start(&access_log_config(&up, &log).toml()).await;
    let request = http::Request::post(proxy.url("/sink?secret=1"))
        .header("x-request-id", "req-42")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"hello",
        )))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(
        (
            answer.status.as_u16(),
            answer.headers["x-request-id"].to_str().unwrap()
        ),
        (200, "req-42")
    );

    let line = poll_until(DEADLINE, "an access log line", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        std::future::ready(text.lines().next().map(str::to_owned))
    })
    .await;
    let entry: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    for field in [
        "time",
        "client",
        "method",
        "path",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream_ms",
        "route",
        "pool",
        "backend",
        "retries",
        "request_id",
    ] {
        assert!(
            entry.get(field).is_some_and(|v| !v.is_null()),
            "{field} missing in {line}"
        );
    }
    assert_eq!(entry["method"], "POST");
    assert_eq!(entry["path"], "/sink", "the query is not logged");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["bytes_in"], 5);
    assert_eq!(
        entry["bytes_out"], 1,
        "the upstream answers the byte count \"5\""
    );
    assert_eq!(
        (
            entry["route"].as_str(),
            entry["pool"].as_str(),
            entry["backend"].as_str()
        ),
        (Some("all"), Some("pool"), Some("up"))
    );
    assert_eq!(entry["request_id"], "req-42");
    assert_eq!(entry["client"], "127.0.0.1");

    // Without an incoming id, one is generated, forwarded upstream and returned.
    let seen = get(&client(), &proxy.url("/headers"), None).await;
    let id = seen.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(
        seen.body.contains(&format!("x-request-id: {id}")),
        "{}",
        seen.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_access_log_buffer_drops_lines_instead_of_blocking_requests() {
    let up = Upstream::start("up").await;
    // A FIFO that is opened for reading but never read: once the pipe buffer fills, the writer
    // blocks, and the one-line buffer in front of it fills at once.
    let fifo = temp_config("").with_file_name("access.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    let reader_path = fifo.clone();
    // Opening for reading blocks until the proxy opens it for writing, so on a thread of its own;
    // the test then holds the reader, unread, until it ends.
    let (opened_tx, opened) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reader = std::fs::File::open(reader_path).expect("open the FIFO for reading");
        opened_tx.send(reader).ok();
    });
    let proxy = TestProxy::start(
        &access_log_config(&up, &fifo)
            .set("access_log.buffer", 1)
            .toml(),
    )
    .await;
    let _reader = opened
        .recv_timeout(DEADLINE)
        .expect("the proxy opened the FIFO");

    let client = client();
    for i in 0..1500 {
        let answer = tokio::time::timeout(DEADLINE, get(&client, &proxy.url("/"), None))
            .await
            .unwrap_or_else(|_| panic!("request {i} stalled behind the access log"));
        assert_eq!(answer.status, 200);
    }
    let samples = scrape(&proxy).await;
    let dropped = sum(&samples, "switchyard_access_log_dropped_total", &[]);
    assert!(
        dropped > 0.0,
        "nothing was dropped, so the buffer never filled"
    );
    println!("{dropped} access log lines dropped of 1500");
}

/// Whether a sample of `metric` with exactly these label values exists.
fn has(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> bool {
    samples
        .iter()
        .any(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_alerts_rely_on_exist_at_zero_before_the_first_event() {
    let a = Upstream::start("a").await;
    let config = ConfigBuilder::single_pool(&[("a", a.addr, 1)])
        .with_pool(|pool| pool.http_checks("1s", 3, 2));
    let proxy = TestProxy::start(&config.toml()).await;
    let samples = scrape(&proxy).await;
    let cell = |code| [("route", "all"), ("backend", "a"), ("code", code)];
    for code in ["200", "500", "502", "503", "504", "5xx"] {
        assert!(
            has(&samples, "switchyard_requests_total", &cell(code)),
            "code {code}"
        );
    }
    let no_backend = [("route", "all"), ("backend", ""), ("code", "503")];
    assert!(has(&samples, "switchyard_requests_total", &no_backend));
    for reason in ["connect_failure", "timeout", "reset", "5xx"] {
        let labels = [("backend", "a"), ("reason", reason)];
        assert!(
            has(&samples, "switchyard_ejections_total", &labels),
            "{reason}"
        );
    }
    for state in [
        "healthy",
        "slow_start",
        "unhealthy",
        "ejected",
        "draining",
        "drained",
    ] {
        let labels = [("backend", "a"), ("state", state)];
        assert!(
            has(&samples, "switchyard_backend_state_changes_total", &labels),
            "{state}"
        );
    }
    for (metric, labels) in [
        ("switchyard_retries_total", &[("backend", "a")][..]),
        (
            "switchyard_retry_budget_exhausted_total",
            &[("backend", "a")],
        ),
        (
            "switchyard_health_checks_total",
            &[("backend", "a"), ("result", "fail")],
        ),
        ("switchyard_pool_no_backend_total", &[("pool", "pool")]),
        ("switchyard_config_reloads_total", &[("result", "rejected")]),
    ] {
        assert!(has(&samples, metric, labels), "{metric}");
        assert_eq!(sum(&samples, metric, labels), 0.0, "{metric}");
    }

    // A drained pool answers 503s: the series was there at 0, so the increase counts them all.
    let (status, _) = proxy
        .admin("POST", "/api/pools/pool/backends/a/drain", None, None)
        .await;
    assert_eq!(status, 200);
    let client = client();
    for _ in 0..5 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 503);
    }
    let samples = scrape(&proxy).await;
    assert_eq!(sum(&samples, "switchyard_requests_total", &no_backend), 5.0);
}

//! Live changes through the real proxy: reloads under load, rejected configs, drains, weight
//! overrides, state kept across reloads, admin authentication, and the event stream.

use crate::support::events::EventStream;
use crate::support::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use switchyard::upstream::State;
use tokio::time::Instant;

/// A config with one round-robin pool over `backends` (name, address, weight); `extra` is
/// top-level TOML, `pool_extra` goes into the pool table.
fn config(backends: &[(&str, SocketAddr, u32)], extra: &str, pool_extra: &str) -> String {
    single_pool_toml("weighted_round_robin", backends, extra, pool_extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_storm_drops_no_request_and_weights_follow_each_reload() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let version = |i: usize| {
        if i % 2 == 0 {
            config(
                &[("a", a.addr, 1), ("b", b.addr, 3), ("c", c.addr, 2)],
                "[reload]\nwatch = false\n",
                "",
            )
        } else {
            config(
                &[("a", a.addr, 3), ("b", b.addr, 1)],
                "[reload]\nwatch = false\n",
                "",
            )
        }
    };
    let path = temp_config(&version(1));
    let proxy = TestProxy::start_file(&path).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (url, stop, answered, failed) = (
            proxy.url("/"),
            stop.clone(),
            answered.clone(),
            failed.clone(),
        );
        load.push(tokio::spawn(async move {
            let client = client();
            while !stop.load(Ordering::SeqCst) {
                let counter = if get(&client, &url, None).await.status == 200 {
                    &answered
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    let checker = client();
    let mut latencies = Vec::new();
    for i in 0..100 {
        std::fs::write(&path, version(i)).unwrap();
        let started = Instant::now();
        let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
        latencies.push(started.elapsed());
        assert_eq!(status, 200, "reload {i}: {outcome}");
        assert_eq!(outcome["changes"]["generation"], i as u64 + 2);

        // Every pick after the swap follows the new schedule, whichever client made it; only
        // the requests already in flight at the swap (at most two) may land on old weights.
        let before = [a.requests(), b.requests(), c.requests()];
        for _ in 0..48 {
            assert_eq!(get(&checker, &proxy.url("/"), None).await.status, 200);
        }
        let after = [a.requests(), b.requests(), c.requests()];
        let delta: Vec<f64> = (0..3).map(|k| (after[k] - before[k]) as f64).collect();
        let total: f64 = delta.iter().sum();
        let expected: [f64; 3] = if i % 2 == 0 {
            [1.0 / 6.0, 3.0 / 6.0, 2.0 / 6.0]
        } else {
            [0.75, 0.25, 0.0]
        };
        for k in 0..3 {
            assert!(
                (delta[k] - expected[k] * total).abs() <= 4.0,
                "reload {i}: backend {k} got {} of {total}, expected share {}",
                delta[k],
                expected[k]
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    latencies.sort();
    println!(
        "100 reloads under load: {} requests answered, {} failed; reload API round trip min {:?} median {:?} max {:?}",
        answered.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst),
        latencies[0],
        latencies[50],
        latencies[99]
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(answered.load(Ordering::SeqCst) > 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_rejected_with_line_and_column_and_the_old_one_keeps_serving() {
    let up = Upstream::start("up").await;
    let good = config(
        &[("up", up.addr, 1)],
        "[reload]\nwatch = true\ndebounce = \"50ms\"\n",
        "",
    );
    let path = temp_config(&good);
    let proxy = TestProxy::start_file(&path).await;
    let client = client();

    let syntax_error = good.replace("[[routes]]", "[[routes]\n");
    let semantic_error = good.replace("weight = 1", "weight = 0");
    for (bad, needle) in [
        (&syntax_error, "unclosed array table"),
        (&semantic_error, "weight: must be between 1 and 256"),
    ] {
        // Through the API: a 400 with every problem.
        std::fs::write(&path, bad).unwrap();
        let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
        assert_eq!(status, 400, "{outcome}");
        let problem = outcome["problems"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let located = format!("{}:", path.display());
        assert!(
            problem.starts_with(&located) && problem.contains(needle),
            "{problem}"
        );
        let position: Vec<&str> = problem[located.len()..].splitn(3, ':').collect();
        assert!(
            position[0].parse::<u32>().is_ok() && position[1].parse::<u32>().is_ok(),
            "no line:col in {problem}"
        );
        assert_eq!(
            get(&client, &proxy.url("/"), None).await.status,
            200,
            "old config stopped serving"
        );

        // Through the file watcher: the same problems show up as the last reload.
        std::fs::write(&path, &good).unwrap();
        let (status, _) = proxy.admin("POST", "/api/reload", None, None).await;
        assert_eq!(status, 200);
        std::fs::write(&path, bad).unwrap();
        let last = poll_until(
            DEADLINE,
            "a reload triggered by the file change",
            || async {
                let (_, last) = proxy.admin("GET", "/api/reload", None, None).await;
                (last["trigger"] == "file").then_some(last)
            },
        )
        .await;
        assert_eq!(last["result"], "rejected");
        assert!(
            last["problems"][0].as_str().unwrap().contains(needle),
            "{last}"
        );
        assert_eq!(
            get(&client, &proxy.url("/"), None).await.status,
            200,
            "old config stopped serving"
        );
        std::fs::write(&path, &good).unwrap();
        proxy.admin("POST", "/api/reload", None, None).await;
    }
    // At least two rejections per kind of error, through the API and through the file watcher
    // (the watcher also sees the files written for the API attempts).
    let admin = proxy.gateway.admin_addr().unwrap();
    let metrics = get(&client, &format!("http://{admin}/metrics"), None).await;
    let failures: f64 = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_config_reloads_total{result=\"rejected\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(failures >= 4.0, "failure counter is {failures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_backend_finishes_its_slow_request_and_takes_no_new_ones() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let proxy = TestProxy::start(&config(&[("a", a.addr, 1), ("b", b.addr, 1)], "", "")).await;

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
async fn weight_override_applies_live_and_survives_a_reload_that_does_not_touch_it() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let text = config(
        &[("a", a.addr, 1), ("b", b.addr, 1)],
        "[reload]\nwatch = false\n",
        "",
    );
    let path = temp_config(&text);
    let proxy = TestProxy::start_file(&path).await;

    let (status, view) = proxy
        .admin(
            "PUT",
            "/api/pools/pool/backends/a/weight",
            Some(r#"{"weight": 3}"#),
            None,
        )
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (
            view["weight"]["override"].as_u64(),
            view["weight"]["in_force"].as_str()
        ),
        (Some(3), Some("override"))
    );
    let client = client();
    let before = a.requests();
    for _ in 0..40 {
        get(&client, &proxy.url("/"), None).await;
    }
    assert!(
        (a.requests() - before).abs_diff(30) <= 1,
        "a got {} of 40",
        a.requests() - before
    );

    // A reload that changes only b keeps a's override; b's file weight wins for b.
    let reweighted = config(
        &[("a", a.addr, 1), ("b", b.addr, 2)],
        "[reload]\nwatch = false\n",
        "",
    );
    assert_ne!(reweighted, text);
    std::fs::write(&path, reweighted).unwrap();
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(
        outcome["changes"]["backends_reweighted"],
        serde_json::json!(["pool/b"])
    );
    let (_, view) = proxy
        .admin("GET", "/api/pools/pool/backends/a", None, None)
        .await;
    assert_eq!(view["weight"]["in_force"], "override");

    for body in [
        r#"{"weight": 0}"#,
        r#"{"weight": "x"}"#,
        r#"{"wait": 3}"#,
        "not json",
    ] {
        let (status, answer) = proxy
            .admin("PUT", "/api/pools/pool/backends/a/weight", Some(body), None)
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_state_survives_a_reload_that_does_not_touch_the_backend() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let check = "[pools.health_check]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nunhealthy_threshold = 1\nhealthy_threshold = 100\n\n";
    let text = config(
        &[("a", a.addr, 1), ("b", b.addr, 1)],
        "[reload]\nwatch = false\n",
        check,
    );
    let path = temp_config(&text);
    let proxy = TestProxy::start_file(&path).await;

    b.set_health_status(503);
    wait_for_state(&proxy, "pool", "b", State::Unhealthy).await;
    b.set_health_status(200); // it would need 100 passes (10 s) to come back
    let (_, before) = proxy
        .admin("GET", "/api/pools/pool/backends/b", None, None)
        .await;

    let reweighted = config(
        &[("a", a.addr, 2), ("b", b.addr, 1)],
        "[reload]\nwatch = false\n",
        check,
    );
    assert_ne!(reweighted, text);
    std::fs::write(&path, reweighted).unwrap();
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");
    let (_, view) = proxy
        .admin("GET", "/api/pools/pool/backends/b", None, None)
        .await;
    assert_eq!(view["state"], "unhealthy", "{view}");
    // The same state, not a new one that happens to agree: it changed at the same instant.
    assert_eq!(
        view["since"], before["since"],
        "b's state was rebuilt: {view}"
    );
    let served = b.requests();
    let client = client();
    for _ in 0..10 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.upstream(), "a");
    }
    assert_eq!(b.requests(), served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_requires_the_token_and_answers_unknown_routes_and_methods() {
    let up = Upstream::start("up").await;
    let token_path = temp_config("").with_file_name("token");
    std::fs::write(&token_path, "s3cret-token\n").unwrap();
    let admin = format!("token_file = \"{}\"\n", token_path.display());
    let toml = config(&[("up", up.addr, 1)], &format!("[admin]\n{admin}"), "");
    let proxy = TestProxy::start(&toml).await;

    for (method, path, token, expected) in [
        ("GET", "/api/pools", None, 401),
        ("GET", "/api/pools", Some("wrong"), 401),
        (
            "POST",
            "/api/pools/pool/backends/up/drain",
            Some("s3cret-tok"),
            401,
        ),
    ] {
        let status = proxy.admin(method, path, None, token).await.0;
        assert_eq!(status, expected, "{method} {path} with {token:?}");
    }
    let (status, pools) = proxy
        .admin("GET", "/api/pools", None, Some("s3cret-token"))
        .await;
    assert_eq!(
        (status.as_u16(), pools[0]["name"].as_str()),
        (200, Some("pool"))
    );
    assert_eq!(
        proxy.admin("GET", "/healthz", None, None).await.0,
        200,
        "health check needs no token"
    );
    for (method, path, expected) in [
        ("GET", "/api/nothing", 404),
        ("GET", "/api/pools/none", 404),
        ("GET", "/api/pools/pool/backends/none", 404),
        ("DELETE", "/api/pools", 405),
        ("GET", "/api/pools/pool/backends/up/drain", 405),
    ] {
        let status = proxy
            .admin(method, path, None, Some("s3cret-token"))
            .await
            .0;
        assert_eq!(status, expected, "{method} {path}");
    }
    let (status, config) = proxy
        .admin("GET", "/api/config", None, Some("s3cret-token"))
        .await;
    assert_eq!(status, 200);
    assert!(config.get("config").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_on_a_public_address_without_a_token_refuses_to_start() {
    let toml = config(
        &[("up", closed_port(), 1)],
        "[admin]\nbind = \"0.0.0.0:0\"\ntoken_env = \"SWITCHYARD_TEST_TOKEN_THAT_IS_NEVER_SET\"",
        "",
    );
    let config = switchyard::config::parse(&toml, "test.toml").unwrap();
    let err = switchyard::gateway::Gateway::start(&config)
        .await
        .expect_err("must refuse to start");
    assert!(
        matches!(err, switchyard::gateway::StartError::AdminWithoutToken(_)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_reports_drains_and_health_transitions() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let check = "[pools.health_check]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nunhealthy_threshold = 1\n\n";
    let proxy = TestProxy::start(&config(&[("a", a.addr, 1), ("b", b.addr, 1)], "", check)).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lame_duck_through_the_api_fails_healthz_but_keeps_serving() {
    let up = Upstream::start("up").await;
    let proxy = TestProxy::start(&config(&[("up", up.addr, 1)], "", "")).await;
    let client = client();
    let healthz = format!("http://{}/healthz", proxy.gateway.admin_addr().unwrap());
    let (status, answer) = proxy.admin("POST", "/api/lameduck", None, None).await;
    assert_eq!((status.as_u16(), &answer["lame_duck"]), (200, &true.into()));
    let health = get(&client, &healthz, None).await;
    assert_eq!(
        (health.status.as_u16(), health.body.as_str()),
        (503, "lame duck\n")
    );
    assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    let (_, answer) = proxy.admin("DELETE", "/api/lameduck", None, None).await;
    assert_eq!(answer["lame_duck"], false);
    assert_eq!(get(&client, &healthz, None).await.status, 200);
}

/// `switchyard_config_reloads_total{result="rejected"}` now.
async fn rejections(proxy: &TestProxy) -> f64 {
    let admin = proxy.gateway.admin_addr().unwrap();
    get(&client(), &format!("http://{admin}/metrics"), None)
        .await
        .body
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_config_reloads_total{result=\"rejected\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_left_on_disk_is_reported_once_per_content() {
    let up = Upstream::start("up").await;
    let config = crate::support::config::ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .set("reload.watch", true)
        .set("reload.debounce", "50ms");
    let path = temp_config(&config.toml());
    let proxy = TestProxy::start_file(&path).await;
    std::fs::write(&path, format!("{}\nbroken = [", config.toml())).unwrap();
    poll_until(DEADLINE, "the broken file rejected", || async {
        (rejections(&proxy).await == 1.0).then_some(())
    })
    .await;
    // Touched again and again with the same text (as a tool rewriting it, or other files in
    // its directory changing, make the watcher fire), it is not tried again.
    let broken = std::fs::read(&path).unwrap();
    for _ in 0..8 {
        std::fs::write(&path, &broken).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(rejections(&proxy).await, 1.0);
    // Another broken content is news: reported once more.
    std::fs::write(&path, format!("{}\nbroken = {{", config.toml())).unwrap();
    poll_until(DEADLINE, "the new content rejected", || async {
        (rejections(&proxy).await == 2.0).then_some(())
    })
    .await;
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_names_changed_pool_settings_and_what_waits_for_a_restart() {
    let up = Upstream::start("up").await;
    let config = crate::support::config::ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .set("reload.watch", false);
    let path = temp_config(&config.toml());
    let proxy = TestProxy::start_file(&path).await;
    let changed = config.set("access_log.enabled", true).with_pool(|pool| {
        pool.set("retries", 0)
            .set("outlier_detection.consecutive_5xx", 3)
    });
    std::fs::write(&path, changed.toml()).unwrap();
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["result"], "applied");
    assert_eq!(
        outcome["changes"]["settings_changed"],
        serde_json::json!(["pools.pool.retries", "pools.pool.outlier_detection"])
    );
    assert_eq!(
        outcome["changes"]["not_applied"],
        serde_json::json!([{
            "setting": "access_log",
            "reason": "read at start: takes effect when the proxy restarts"
        }])
    );
}

/// `path` relative to the working directory, as an operator types `--config conf/x.toml`.
fn relative_to_cwd(path: &std::path::Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().expect("a working directory");
    let mut relative = std::path::PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.join(path.strip_prefix("/").expect("an absolute path"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_given_by_a_relative_path_is_watched_too() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let config = |backend: std::net::SocketAddr| {
        crate::support::config::ConfigBuilder::single_pool(&[("up", backend, 1)])
            .set("reload.watch", true)
            .set("reload.debounce", "50ms")
            .toml()
    };
    let path = relative_to_cwd(&temp_config(&config(a.addr)));
    assert!(path.is_relative());
    let proxy = TestProxy::start_file(&path).await;
    let client = client();
    assert_eq!(get(&client, &proxy.url("/"), None).await.body, "a");
    std::fs::write(&path, config(b.addr)).unwrap();
    poll_until(DEADLINE, "the edited file applied", || async {
        (get(&client, &proxy.url("/"), None).await.body == "b").then_some(())
    })
    .await;
}

//! Config reloads through the real proxy: reloads under load lose no request, rejected configs
//! are reported with line and column while the old one serves, runtime state (weights, health,
//! probe counts) survives reloads that do not touch it, a broken file is reported once per
//! content, and the summary names what changed and what waits for a restart.
//!
//! Longer than most files on purpose: each reload scenario keeps its configs, traffic and checks
//! together.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::events::EventStream;
use crate::support::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use switchyard::upstream::State;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_storm_drops_no_request_and_weights_follow_each_reload() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let version = |i: usize| {
        if i % 2 == 0 {
            ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 3), ("c", c.addr, 2)])
                .set("reload.watch", false)
                .toml()
        } else {
            ConfigBuilder::single_pool(&[("a", a.addr, 3), ("b", b.addr, 1)])
                .set("reload.watch", false)
                .toml()
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
    let good = ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .set("reload.watch", true)
        .set("reload.debounce", "50ms")
        .toml();
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
async fn weight_override_applies_live_and_survives_a_reload_that_does_not_touch_it() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let text = ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 1)])
        .set("reload.watch", false)
        .toml();
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
    let reweighted = ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 2)])
        .set("reload.watch", false)
        .toml();
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
    let config = |backends: &[(&str, std::net::SocketAddr, u32)]| {
        ConfigBuilder::single_pool(backends)
            .set("reload.watch", false)
            .with_pool(|pool| {
                pool.quick_probes()
                    .set("health_check.healthy_threshold", 100)
            })
            .toml()
    };
    let text = config(&[("a", a.addr, 1), ("b", b.addr, 1)]);
    let path = temp_config(&text);
    let proxy = TestProxy::start_file(&path).await;

    b.set_health_status(503);
    wait_for_state(&proxy, "pool", "b", State::Unhealthy).await;
    b.set_health_status(200); // it would need 100 passes (10 s) to come back
    let (_, before) = proxy
        .admin("GET", "/api/pools/pool/backends/b", None, None)
        .await;

    let reweighted = config(&[("a", a.addr, 2), ("b", b.addr, 1)]);
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

/// `switchyard_config_reloads_total{result="rejected"}` now.
async fn rejections(proxy: &TestProxy) -> f64 {
    sample(
        proxy,
        "switchyard_config_reloads_total{result=\"rejected\"} ",
    )
    .await
}

/// The value of the series `prefix` (name and labels, then a space) in a scrape; 0 if absent.
async fn sample(proxy: &TestProxy, prefix: &str) -> f64 {
    let admin = proxy.gateway.admin_addr().unwrap();
    get(&client(), &format!("http://{admin}/metrics"), None)
        .await
        .body
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_left_on_disk_is_reported_once_per_content() {
    let up = Upstream::start("up").await;
    let config = ConfigBuilder::single_pool(&[("up", up.addr, 1)])
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
    for touch in 1..=3 {
        let skipped = sample(&proxy, "switchyard_config_watch_skipped_total ").await;
        std::fs::write(&path, &broken).unwrap();
        poll_until(DEADLINE, "the touch seen and skipped", || async {
            (sample(&proxy, "switchyard_config_watch_skipped_total ").await > skipped).then_some(())
        })
        .await;
        assert_eq!(rejections(&proxy).await, 1.0, "touch {touch}");
    }
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
    let config = ConfigBuilder::single_pool(&[("up", up.addr, 1)]).set("reload.watch", false);
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
        ConfigBuilder::single_pool(&[("up", backend, 1)])
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

/// Each reload, applied or rejected, is one `reload` event on the stream: an applied one with
/// its summary and generation, a rejected one with its problems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reload_is_one_event_applied_with_its_summary_or_rejected_with_its_problems() {
    let up = Upstream::start("up").await;
    let config = ConfigBuilder::single_pool(&[("up", up.addr, 1)]).set("reload.watch", false);
    let path = temp_config(&config.toml());
    let proxy = TestProxy::start_file(&path).await;
    let mut events = EventStream::open(proxy.gateway.admin_addr().unwrap(), None).await;

    std::fs::write(&path, config.clone().set("timeouts.connect", "2s").toml()).unwrap();
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");
    let applied = events.next_matching(|e| e["type"] == "reload").await;
    assert_eq!(applied["result"], "applied", "{applied}");
    assert_eq!(applied["changes"]["generation"], 2, "{applied}");
    assert_eq!(
        applied["changes"]["settings_changed"][0], "timeouts",
        "{applied}"
    );

    std::fs::write(&path, format!("{}\nbroken = [", config.toml())).unwrap();
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 400, "{outcome}");
    let rejected = events.next_matching(|e| e["type"] == "reload").await;
    assert_eq!(rejected["result"], "rejected", "{rejected}");
    assert!(
        rejected["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains(":")),
        "{rejected}"
    );
}

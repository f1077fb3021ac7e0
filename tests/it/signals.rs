//! The real binary under signals: SIGTERM drains in-flight requests and refuses new
//! connections, a second signal exits at once, SIGHUP reloads (and rejects a bad config).

use crate::support::config::ConfigBuilder;
use crate::support::process::Running;
use crate::support::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The last reload's result, from the admin API.
async fn last_reload(proxy: &Running) -> serde_json::Value {
    let answer = get(
        &client(),
        &format!("http://{}/api/reload", proxy.admin),
        None,
    )
    .await;
    serde_json::from_str(&answer.body).unwrap_or_default()
}

fn config_for(up: &Upstream) -> String {
    ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .set("reload.watch", false)
        .toml()
}

/// Starts the binary, holds one request in flight on `up`, sends SIGTERM and waits until new
/// connections are refused; returns the proxy and the request in flight.
async fn terminate_with_a_request_in_flight(
    up: &Upstream,
) -> (Running, tokio::task::JoinHandle<Answer>) {
    let proxy = Running::start(&temp_config(&config_for(up)));
    let url = format!("http://{}/hold", proxy.addr);
    let in_flight = tokio::spawn(async move { get(&client(), &url, None).await });
    eventually(DEADLINE, "the held request", || up.held() == 1).await;
    proxy.signal("TERM");
    poll_until(DEADLINE, "connections refused after SIGTERM", || async {
        tokio::net::TcpStream::connect(proxy.addr).await.err()
    })
    .await;
    (proxy, in_flight)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_and_refuses_new_connections() {
    let up = Upstream::start("up").await;
    let (mut proxy, in_flight) = terminate_with_a_request_in_flight(&up).await;
    up.release_held();
    let answer = in_flight.await.unwrap();
    assert_eq!(
        (answer.status.as_u16(), answer.body.as_str()),
        (200, "released")
    );
    assert!(proxy.exit().await, "exit status after a graceful shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_without_waiting_for_requests_in_flight() {
    let up = Upstream::start("up").await;
    let (mut proxy, _in_flight) = terminate_with_a_request_in_flight(&up).await;
    proxy.signal("INT");
    proxy.exit().await; // within the deadline, though the held request never finished
    assert_eq!(up.held(), 1);
    up.release_held();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_rejects_a_bad_config_with_its_location() {
    let (up, second) = (Upstream::start("up").await, Upstream::start("second").await);
    let good = config_for(&up);
    let path = temp_config(&good);
    let proxy = Running::start(&path);
    let client = client();
    let url = format!("http://{}/", proxy.addr);

    let negative = ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .set("reload.watch", false)
        .with_pool(|pool| pool.set_backend("weight", -1))
        .toml();
    std::fs::write(&path, &negative).unwrap();
    let weight_line = negative
        .lines()
        .position(|line| line.starts_with("weight = -1"))
        .expect("the weight line")
        + 1;
    proxy.signal("HUP");
    let last = poll_until(DEADLINE, "a reload on SIGHUP", || async {
        let last = last_reload(&proxy).await;
        (last["result"] != "none").then_some(last)
    })
    .await;
    assert_eq!(
        (last["trigger"].as_str(), last["result"].as_str()),
        (Some("signal"), Some("rejected"))
    );
    let problem = last["problems"][0].as_str().unwrap();
    assert!(
        problem.starts_with(&format!("{}:", path.display()))
            && problem.contains(&format!(":{weight_line}:10: pools[0].backends[0].weight")),
        "{problem}"
    );
    assert_eq!(
        get(&client, &url, None).await.upstream(),
        "up",
        "old config stopped serving"
    );

    let with_second = ConfigBuilder::single_pool(&[("up", up.addr, 1), ("second", second.addr, 1)])
        .set("reload.watch", false)
        .toml();
    std::fs::write(&path, with_second).unwrap();
    proxy.signal("HUP");
    poll_until(DEADLINE, "the valid config applied on SIGHUP", || async {
        (last_reload(&proxy).await["result"] == "applied").then_some(())
    })
    .await;
    for _ in 0..4 {
        get(&client, &url, None).await;
    }
    assert!(
        second.requests() >= 1,
        "the backend added by the reload gets traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_shutdown_delay_serves_as_a_lame_duck_first_and_keeps_the_admin_api_to_the_end()
 {
    let up = Upstream::start("up").await;
    let config = ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .set("reload.watch", false)
        .set("timeouts.shutdown_delay", "1s");
    let mut proxy = Running::start(&temp_config(&config.toml()));
    let client = client();
    let healthz = format!("http://{}/healthz", proxy.admin);
    assert_eq!(get(&client, &healthz, None).await.status, 200);
    let url = format!("http://{}/hold", proxy.addr);
    let in_flight = tokio::spawn(async move { get(&crate::support::client(), &url, None).await });
    eventually(DEADLINE, "the held request", || up.held() == 1).await;

    proxy.signal("TERM");
    poll_until(DEADLINE, "/healthz 503", || async {
        (get(&client, &healthz, None).await.status == 503).then_some(())
    })
    .await;
    // Still serving during the delay: a balancer that has not noticed yet loses nothing.
    let served = get(&client, &format!("http://{}/", proxy.addr), None).await;
    assert_eq!(served.status, 200);
    // Then the listener stops accepting; the admin API stays up while the drain goes on.
    poll_until(DEADLINE, "connections refused after the delay", || async {
        tokio::net::TcpStream::connect(proxy.addr).await.err()
    })
    .await;
    assert_eq!(
        get(&crate::support::client(), &healthz, None).await.status,
        503
    );
    up.release_held();
    assert_eq!(in_flight.await.unwrap().status, 200);
    assert!(proxy.exit().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_operational_logs_go_to_stderr_one_object_per_line() {
    let up = Upstream::start("up").await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--log-format", "json", "--config"])
        .arg(temp_config(&config_for(&up)))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the switchyard binary");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let line = stderr
        .lines()
        .map_while(Result::ok)
        .find(|line| line.contains("admin API listening"))
        .expect("the admin API start is logged");
    let _ = child.kill();
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(event["level"], "INFO", "{event}");
    assert_eq!(event["message"], "admin API listening", "{event}");
    assert!(event["addr"].is_string(), "{event}");
    child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(stdout, "", "stdout carries only the access log (off here)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_access_log_after_a_rotation() {
    let up = Upstream::start("up").await;
    let dir = temp_dir();
    let log = dir.join("access.log");
    let config = ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .set("reload.watch", false)
        .set("access_log.enabled", true)
        .set("access_log.path", log.display().to_string());
    let proxy = Running::start(&temp_config(&config.toml()));
    let client = client();
    let url = |path: &str| format!("http://{}{path}", proxy.addr);
    assert_eq!(get(&client, &url("/before"), None).await.status, 200);
    eventually(DEADLINE, "the first line", || {
        std::fs::read_to_string(&log).is_ok_and(|text| text.contains("/before"))
    })
    .await;

    // logrotate: move the file away, then signal.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    proxy.signal("USR1");
    poll_until(DEADLINE, "lines in a new file at the old path", || async {
        get(&client, &url("/after"), None).await;
        std::fs::read_to_string(&log)
            .is_ok_and(|text| text.contains("/after"))
            .then_some(())
    })
    .await;
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/before"), "{old}");
    assert_eq!(get(&client, &url("/still-up"), None).await.status, 200);
}

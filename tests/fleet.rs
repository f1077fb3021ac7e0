//! Fleet mode with real processes: replicas of the real binary share one real `redis-server`.
//! A drain, undrain or weight change made on one replica's admin API reaches the others (and a
//! replica started later), and every replica's events arrive on `switchyard:events`.

mod support;

use futures_util::StreamExt;
use std::time::{Duration, Instant};
use support::config::ConfigBuilder;
use support::process::Running;
use support::redis::RedisServer;
use support::{DEADLINE, Upstream, client, poll_until, send, temp_config};

fn replica_config(redis: &RedisServer, replica: &str, a: &Upstream, b: &Upstream) -> String {
    ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 1)])
        .set("reload.watch", false)
        .set("fleet.redis", redis.url())
        .set("fleet.replica", replica)
        .toml()
}

/// Backend `name`'s view on `replica`'s admin API.
async fn view(replica: &Running, name: &str) -> serde_json::Value {
    let url = format!("http://{}/api/pools/pool/backends/{name}", replica.admin);
    let answer = support::get(&client(), &url, None).await;
    serde_json::from_str(&answer.body).unwrap_or_default()
}

async fn admin(replica: &Running, method: &str, path: &str, body: &str) -> serde_json::Value {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", replica.admin))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .expect("request");
    let answer = send(&client(), request).await;
    assert!(answer.status.is_success(), "{path}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap_or_default()
}

async fn wait_for(
    replica: &Running,
    name: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> Duration {
    let start = Instant::now();
    poll_until(DEADLINE, what, || async {
        check(&view(replica, name).await).then_some(())
    })
    .await;
    start.elapsed()
}

fn out_of_rotation(view: &serde_json::Value) -> bool {
    matches!(view["state"].as_str(), Some("draining" | "drained"))
}

#[tokio::test]
async fn operator_changes_on_one_replica_reach_every_replica_and_events_reach_redis() {
    let redis = RedisServer::start().await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let one = Running::start(&temp_config(&replica_config(&redis, "one", &a, &b)));
    let two = Running::start(&temp_config(&replica_config(&redis, "two", &a, &b)));

    let mut events = redis::Client::open(redis.url())
        .expect("url")
        .get_async_pubsub()
        .await
        .expect("subscribe");
    events
        .subscribe("switchyard:events")
        .await
        .expect("subscribe");
    let mut events = events.into_on_message();

    // Both replicas have connected to the fleet before the change (a restart would too).
    for replica in [&one, &two] {
        let url = format!("http://{}/metrics", replica.admin);
        poll_until(DEADLINE, "fleet connected", || async {
            let text = support::get(&client(), &url, None).await.body;
            text.contains("switchyard_fleet_connected 1").then_some(())
        })
        .await;
    }

    admin(&one, "POST", "/api/pools/pool/backends/a/drain", "").await;
    let took = wait_for(&two, "a", "a drained on replica two", out_of_rotation).await;
    println!("MEASURED drain on one -> seen on two: {took:?}");
    assert!(took < Duration::from_secs(1), "within a second: {took:?}");
    let reasons = view(&two, "a").await["reasons"].to_string();
    assert!(reasons.contains("replica one"), "{reasons}");

    // Each replica announced its own change on the shared channel.
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while seen.len() < 2 {
        let message = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("events from both replicas")
            .expect("subscription open");
        let event: serde_json::Value =
            serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
        if event["type"] == "backend" && event["backend"] == "a" {
            seen.insert(event["replica"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, ["one", "two"].map(str::to_owned).into());

    // A weight set on two reaches one; an undrain on two reaches one.
    admin(
        &two,
        "PUT",
        "/api/pools/pool/backends/b/weight",
        r#"{"weight": 7}"#,
    )
    .await;
    wait_for(&one, "b", "b's weight on replica one", |v| {
        v["weight"]["override"] == 7
    })
    .await;
    admin(&two, "POST", "/api/pools/pool/backends/a/undrain", "").await;
    wait_for(&one, "a", "a back on replica one", |v| {
        v["state"] == "healthy"
    })
    .await;

    // A replica started later takes the fleet's state.
    admin(&one, "POST", "/api/pools/pool/backends/b/drain", "").await;
    let three = Running::start(&temp_config(&replica_config(&redis, "three", &a, &b)));
    wait_for(
        &three,
        "b",
        "b drained on the late replica",
        out_of_rotation,
    )
    .await;
    wait_for(&three, "b", "b's weight on the late replica", |v| {
        v["weight"]["override"] == 7
    })
    .await;
    assert_eq!(view(&three, "a").await["state"], "healthy");
}

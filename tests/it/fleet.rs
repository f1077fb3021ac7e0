//! Fleet mode with real processes: replicas of the real binary share one real `redis-server`.
//! A drain, undrain or weight change made on one replica's admin API reaches the others (and a
//! replica started later), and every replica's events arrive on `switchyard:events`.

use crate::support::config::ConfigBuilder;
use crate::support::process::Running;
use crate::support::redis::RedisServer;
use crate::support::{DEADLINE, Upstream, client, poll_until, send, temp_config};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

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
    let answer = crate::support::get(&client(), &url, None).await;
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
            let text = crate::support::get(&client(), &url, None).await.body;
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

/// Records another replica could have stored, or anyone with access to Redis: a drain deadline
/// thousands of years away (it panicked every replica's control plane, again after each
/// restart), a date past the end of time, a weight out of range, garbage. Each is ignored; the
/// replica keeps serving and keeps taking valid changes.
#[tokio::test]
async fn invalid_records_in_redis_are_ignored_and_every_replica_lives_on() {
    use redis::AsyncCommands;
    let redis = RedisServer::start().await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let mut conn = redis.connection().await;
    let year_10000_ms: u64 = 253_402_300_800_000 * 10;
    let records = [
        format!(
            r#"{{"pool":"pool","backend":"a","drain":{{"deadline":{year_10000_ms}}},"weight":null,"at":1,"by":"evil"}}"#
        ),
        r#"{"pool":"pool","backend":"b","drain":null,"weight":100000,"at":2,"by":"evil"}"#
            .to_owned(),
        format!(
            r#"{{"pool":"pool","backend":"b","drain":null,"weight":2,"at":{},"by":"evil"}}"#,
            u64::MAX
        ),
        "not json".to_owned(),
    ];
    for (i, record) in records.iter().enumerate() {
        let field = if i == 0 { "pool/a" } else { "pool/b" };
        let (): () = conn
            .hset("switchyard:fleet:overrides", field, record)
            .await
            .unwrap();
        // Read at start, and announced to a replica that is already running.
        let _: i64 = conn
            .publish("switchyard:fleet:overrides", field)
            .await
            .unwrap();
    }
    let one = Running::start(&temp_config(&replica_config(&redis, "one", &a, &b)));
    let url = format!("http://{}/metrics", one.admin);
    poll_until(DEADLINE, "fleet connected", || async {
        let text = crate::support::get(&client(), &url, None).await.body;
        text.contains("switchyard_fleet_connected 1").then_some(())
    })
    .await;
    for record in &records {
        let (): () = conn
            .hset("switchyard:fleet:overrides", "pool/a", record)
            .await
            .unwrap();
        let _: i64 = conn
            .publish("switchyard:fleet:overrides", "pool/a")
            .await
            .unwrap();
    }
    // A valid change after them is still applied: the control plane lives.
    let two = Running::start(&temp_config(&replica_config(&redis, "two", &a, &b)));
    admin(&two, "POST", "/api/pools/pool/backends/a/drain", "").await;
    wait_for(&one, "a", "a drained on replica one", out_of_rotation).await;
    assert_eq!(view(&one, "b").await["state"], "healthy");
    assert!(view(&one, "b").await["weight"]["override"].is_null());
    let healthz =
        crate::support::get(&client(), &format!("http://{}/healthz", one.admin), None).await;
    assert_eq!(healthz.status, 200);
}

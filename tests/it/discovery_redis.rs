//! Redis registry discovery against a real `redis-server`: instances registered by the real
//! `switchyard register` or written by the test are discovered, leave when deregistered or when
//! their TTL runs out (after their requests in flight), a hundred at once are all found, a
//! malformed entry is skipped, and a Redis crash under load fails no request.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::redis::RedisServer;
use crate::support::upstream::Options;
use crate::support::{
    DEADLINE, TestProxy, Upstream, backend_names, backend_view, client, eventually, get, get_load,
    metric, poll_until,
};
use redis::AsyncCommands;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchyard::upstream::State;

const SERVICE: &str = "api";

fn registry_pool(redis: &RedisServer) -> String {
    ConfigBuilder::new()
        .pool(
            PoolBuilder::new("pool")
                .set("discovery.type", "redis")
                .set("discovery.url", redis.url())
                .set("discovery.service", SERVICE)
                .set("discovery.refresh", "2s")
                .set("discovery.drain_timeout", "30s"),
        )
        .route("all", None, "/", "pool")
        .toml()
}

/// Registers `address` the way `switchyard register` does (see the README's key layout).
async fn register(redis: &RedisServer, address: &str, ttl: Duration, entry: Option<&str>) {
    let mut conn = redis.connection().await;
    let key = format!("switchyard:registry:{SERVICE}:{address}");
    let value = entry.map_or_else(
        || format!(r#"{{"address":"{address}","weight":1}}"#),
        str::to_owned,
    );
    let (): () = redis::pipe()
        .set_options(
            &key,
            value,
            redis::SetOptions::default()
                .with_expiration(redis::SetExpiry::PX(ttl.as_millis() as u64)),
        )
        .ignore()
        .sadd(format!("switchyard:registry:{SERVICE}"), address)
        .ignore()
        .publish(format!("switchyard:registry:{SERVICE}"), address)
        .ignore()
        .query_async(&mut conn)
        .await
        .expect("register");
}

async fn first_200(proxy: &TestProxy) {
    let client = client();
    poll_until(
        DEADLINE,
        "a request answered by a registered instance",
        || async { (get(&client, &proxy.url("/"), None).await.status == 200).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_register_command_registers_until_sigterm_and_the_pool_follows() {
    let redis = RedisServer::start().await;
    let up = Upstream::start("up").await;
    let proxy = TestProxy::start(&registry_pool(&redis)).await;
    assert_eq!(
        get(&client(), &proxy.url("/"), None).await.status,
        503,
        "empty until registered"
    );

    let mut sidecar = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["register", "--redis", &redis.url(), "--service", SERVICE])
        .args([
            "--address",
            &up.addr.to_string(),
            "--weight",
            "3",
            "--ttl",
            "3s",
        ])
        .args(["--meta", "zone=a"])
        .spawn()
        .expect("start switchyard register");
    first_200(&proxy).await;
    let view = backend_view(&proxy, "pool", &up.addr.to_string()).await;
    assert_eq!(view.weight.configured, 3);
    let mut conn = redis.connection().await;
    let stored: String = conn
        .get(format!("switchyard:registry:{SERVICE}:{}", up.addr))
        .await
        .expect("the registration");
    assert!(stored.contains(r#""zone":"a""#), "{stored}");
    // The scenario, not synchronisation: outlive the 3 s TTL; the heartbeats keep it registered.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(backend_names(&proxy, "pool").await, [up.addr.to_string()]);

    let status = std::process::Command::new("kill")
        .args(["-TERM", &sidecar.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = poll_until(DEADLINE, "register to exit", || {
        std::future::ready(sidecar.try_wait().expect("wait"))
    })
    .await;
    assert!(exit.success(), "deregistered cleanly: {exit:?}");
    let exists: bool = conn
        .exists(format!("switchyard:registry:{SERVICE}:{}", up.addr))
        .await
        .expect("exists");
    assert!(!exists, "the key is deleted at once");
    poll_until(DEADLINE, "the instance removed", || async {
        backend_names(&proxy, "pool").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 503);
}

#[tokio::test]
async fn an_expired_registration_drains_its_requests_then_goes_and_times_are_measured() {
    let redis = RedisServer::start().await;
    let (held_up, idle_up) = (Upstream::start("held").await, Upstream::start("idle").await);
    let proxy = TestProxy::start(&registry_pool(&redis)).await;

    // Registration to first traffic.
    let registered = Instant::now();
    register(
        &redis,
        &held_up.addr.to_string(),
        Duration::from_secs(60),
        None,
    )
    .await;
    first_200(&proxy).await;
    println!(
        "MEASURED registration -> first traffic: {:?}",
        registered.elapsed()
    );

    // A request in flight on an instance whose registration then expires.
    let ttl = Duration::from_millis(1500);
    register(&redis, &held_up.addr.to_string(), ttl, None).await;
    let expires = Instant::now() + ttl;
    let held = crate::support::spawn_gets(1, proxy.url("/hold"));
    eventually(DEADLINE, "the request held", || held_up.held() == 1).await;
    let name = held_up.addr.to_string();
    let view = poll_until(DEADLINE, "the expired instance draining", || async {
        let view = backend_view(&proxy, "pool", &name).await;
        (view.state == State::Draining).then_some(view)
    })
    .await;
    println!(
        "MEASURED TTL expiry -> draining: {:?}",
        Instant::now().saturating_duration_since(expires)
    );
    assert_eq!(view.in_flight, 1);
    assert_eq!(
        backend_names(&proxy, "pool").await,
        std::slice::from_ref(&name),
        "kept while its request runs"
    );
    held_up.release_held();
    assert_eq!(
        held.await.expect("held")[0].status,
        200,
        "the request in flight finished"
    );
    poll_until(DEADLINE, "the instance removed", || async {
        backend_names(&proxy, "pool").await.is_empty().then_some(())
    })
    .await;

    // An idle instance: from expiry to removal.
    register(&redis, &idle_up.addr.to_string(), ttl, None).await;
    let expires = Instant::now() + ttl;
    first_200(&proxy).await;
    poll_until(DEADLINE, "the idle instance removed", || async {
        backend_names(&proxy, "pool").await.is_empty().then_some(())
    })
    .await;
    println!(
        "MEASURED TTL expiry -> removal (idle): {:?}",
        Instant::now().saturating_duration_since(expires)
    );
}

#[tokio::test]
async fn a_hundred_instances_register_at_once_and_a_malformed_entry_is_skipped() {
    let redis = RedisServer::start().await;
    // One upstream on every 127.0.1.x address of one port.
    let up = Upstream::start_with(
        "any",
        Options {
            bind: Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            ..Options::default()
        },
    )
    .await;
    let port = up.addr.port();
    let proxy = TestProxy::start(&registry_pool(&redis)).await;
    let addresses: Vec<String> = (1..=100).map(|i| format!("127.0.1.{i}:{port}")).collect();
    let mut conn = redis.connection().await;
    let mut pipe = redis::pipe();
    for address in &addresses {
        let key = format!("switchyard:registry:{SERVICE}:{address}");
        pipe.set_ex(&key, format!(r#"{{"address":"{address}","weight":2}}"#), 60)
            .ignore()
            .sadd(format!("switchyard:registry:{SERVICE}"), address)
            .ignore()
            .publish(format!("switchyard:registry:{SERVICE}"), address)
            .ignore();
    }
    let started = Instant::now();
    let (): () = pipe.query_async(&mut conn).await.expect("register 100");
    // Malformed: not JSON; a weight out of range; an address that differs from its key.
    register(
        &redis,
        "127.0.2.1:1",
        Duration::from_secs(60),
        Some("{not json"),
    )
    .await;
    register(
        &redis,
        "127.0.2.2:1",
        Duration::from_secs(60),
        Some(r#"{"address":"127.0.2.2:1","weight":0}"#),
    )
    .await;
    register(
        &redis,
        "127.0.2.3:1",
        Duration::from_secs(60),
        Some(r#"{"address":"127.0.9.9:1"}"#),
    )
    .await;
    let mut expected = addresses.clone();
    expected.sort();
    poll_until(DEADLINE, "all 100 instances", || async {
        (backend_names(&proxy, "pool").await == expected).then_some(())
    })
    .await;
    println!(
        "MEASURED 100 registrations -> all in the pool: {:?}",
        started.elapsed()
    );
    let client = client();
    for _ in 0..200 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    }
    assert_eq!(
        metric(&proxy, "switchyard_discovery_backends{pool=\"pool\"}").await,
        Some(100.0)
    );
}

#[tokio::test]
async fn redis_killed_and_restarted_under_load_fails_no_request_and_changes_are_picked_up() {
    let redis = RedisServer::start().await;
    let ups = Upstream::start_all(["a", "b", "c"]).await;
    for up in &ups[..2] {
        register(&redis, &up.addr.to_string(), Duration::from_secs(120), None).await;
    }
    let proxy = TestProxy::start(&registry_pool(&redis)).await;
    let two = {
        let mut names = vec![ups[0].addr.to_string(), ups[1].addr.to_string()];
        names.sort();
        names
    };
    poll_until(DEADLINE, "both instances", || async {
        (backend_names(&proxy, "pool").await == two).then_some(())
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = get_load(
        proxy.url("/"),
        4,
        Some(Duration::from_millis(5)),
        Arc::clone(&stop),
    );

    redis.kill();
    poll_until(DEADLINE, "the outage noticed", || async {
        metric(&proxy, "switchyard_discovery_errors_total{pool=\"pool\"}")
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(
        backend_names(&proxy, "pool").await,
        two,
        "the pool keeps its set"
    );

    redis.restart().await;
    // A change made after Redis returns, before the proxy has reconnected.
    register(
        &redis,
        &ups[2].addr.to_string(),
        Duration::from_secs(120),
        None,
    )
    .await;
    let mut three = two.clone();
    three.push(ups[2].addr.to_string());
    three.sort();
    poll_until(DEADLINE, "the new instance picked up", || async {
        (backend_names(&proxy, "pool").await == three).then_some(())
    })
    .await;
    eventually(DEADLINE, "traffic on the new instance", || {
        ups[2].requests() > 0
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = load.await.expect("load");
    println!("load during the outage: {ok} answered, {failed} failed");
    assert!(ok > 0);
    assert_eq!(failed, 0, "no request failed while Redis was away");
}

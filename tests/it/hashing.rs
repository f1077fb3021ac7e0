//! Consistent hashing through the real proxy: a key keeps its backend, keys spread, requests
//! without a key go round-robin, a drained backend moves little more than its own keys, two
//! replicas listing backends in another order agree on every key, and a hot key spills past
//! the load bound.

use crate::support::config::ConfigBuilder;
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::collections::{HashMap, HashSet};

/// A proxy whose pool hashes by `X-Key` over `backends` (in this order).
async fn hashing_proxy(backends: &[&Upstream], hash: &[(&str, toml::Value)]) -> TestProxy {
    let list: Vec<_> = backends.iter().map(|u| (u.name, u.addr, 1)).collect();
    let config = ConfigBuilder::single_pool(&list).with_pool(|pool| {
        hash.iter().fold(
            pool.set("algorithm", "hash")
                .set("hash.key", "header:X-Key"),
            |pool, (path, value)| pool.set(&format!("hash.{path}"), value.clone()),
        )
    });
    TestProxy::start(&config.toml()).await
}

/// Which backend answered a GET of `url` with `X-Key: key`.
async fn backend_of(client: &TestClient, url: &str, key: &str) -> String {
    let req = Request::get(url)
        .header("x-key", key)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(client, req).await;
    assert_eq!(answer.status, 200);
    answer.upstream().to_owned()
}

async fn mapping(proxy: &TestProxy, keys: usize) -> Vec<String> {
    let client = client();
    let mut owners = Vec::new();
    for k in 0..keys {
        owners.push(backend_of(&client, &proxy.url("/"), &format!("user-{k}")).await);
    }
    owners
}

async fn four() -> [Upstream; 4] {
    Upstream::start_all(["a", "b", "c", "d"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_keeps_its_backend_keys_spread_and_requests_without_one_go_round_robin() {
    let u = four().await;
    let proxy = hashing_proxy(&[&u[0], &u[1], &u[2], &u[3]], &[]).await;
    let first = mapping(&proxy, 200).await;
    assert_eq!(
        mapping(&proxy, 200).await,
        first,
        "every key kept its backend"
    );
    let mut per_backend: HashMap<&str, usize> = HashMap::new();
    for owner in &first {
        *per_backend.entry(owner).or_default() += 1;
    }
    assert_eq!(per_backend.len(), 4, "{per_backend:?}");
    assert!(per_backend.values().all(|&n| n >= 25), "{per_backend:?}");

    let client = client();
    let mut seen = HashSet::new();
    for _ in 0..8 {
        seen.insert(
            get(&client, &proxy.url("/"), None)
                .await
                .upstream()
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 4, "without a key: round-robin, {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_one_of_four_moves_little_more_than_its_keys_and_undraining_moves_them_back() {
    let u = four().await;
    let proxy = hashing_proxy(&[&u[0], &u[1], &u[2], &u[3]], &[]).await;
    let before = mapping(&proxy, 400).await;
    let (status, view) = proxy
        .admin("POST", "/api/pools/pool/backends/d/drain", None, None)
        .await;
    assert_eq!(status, 200, "{view}");
    let during = mapping(&proxy, 400).await;
    assert!(during.iter().all(|owner| owner != "d"));
    let moved = before.iter().zip(&during).filter(|(b, d)| b != d).count();
    let of_d = before.iter().filter(|owner| *owner == "d").count();
    let others_moved = moved - of_d;
    println!("drain d: {moved} of 400 keys moved, {of_d} of them d's");
    assert!(moved <= 120, "{moved} of 400 keys moved (at most 30 %)");
    assert!(
        others_moved <= 20,
        "{others_moved} keys of the other backends moved"
    );
    // The gauges say the same: d holds no entry, and about a quarter of the keys moved.
    let entries = |backend: &str| {
        format!("switchyard_hash_table_entries{{pool=\"pool\",backend=\"{backend}\"}}")
    };
    assert_eq!(metric(&proxy, &entries("d")).await, Some(0.0));
    let a = metric(&proxy, &entries("a")).await.unwrap();
    assert!(
        (19_000.0..25_000.0).contains(&a),
        "a has {a} entries of 65,537"
    );
    let ratio = metric(&proxy, "switchyard_hash_keys_moved_ratio{pool=\"pool\"}")
        .await
        .unwrap();
    assert!((0.24..0.30).contains(&ratio), "{ratio} of the keys moved");

    let (status, _) = proxy
        .admin("POST", "/api/pools/pool/backends/d/undrain", None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        mapping(&proxy, 400).await,
        before,
        "every key back where it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_ring_draining_one_of_four_moves_exactly_its_keys() {
    let u = four().await;
    let ring = [("table", toml::Value::from("ring"))];
    let proxy = hashing_proxy(&[&u[0], &u[1], &u[2], &u[3]], &ring).await;
    let before = mapping(&proxy, 400).await;
    let (status, _) = proxy
        .admin("POST", "/api/pools/pool/backends/b/drain", None, None)
        .await;
    assert_eq!(status, 200);
    let during = mapping(&proxy, 400).await;
    for (was, now) in before.iter().zip(&during) {
        if was == "b" {
            assert_ne!(now, "b");
        } else {
            assert_eq!(was, now, "a key of {was} moved");
        }
    }
    let of_b = before.iter().filter(|owner| *owner == "b").count();
    println!("ring: draining b moved its {of_b} keys of 400, no other");
    // Another replica, backends in another order, agrees.
    let other = hashing_proxy(&[&u[2], &u[3], &u[0], &u[1]], &ring).await;
    assert_eq!(mapping(&other, 400).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_listing_the_backends_in_another_order_agree_on_every_key() {
    let u = four().await;
    let one = hashing_proxy(&[&u[0], &u[1], &u[2], &u[3]], &[]).await;
    let other = hashing_proxy(&[&u[3], &u[1], &u[0], &u[2]], &[]).await;
    assert_eq!(mapping(&one, 300).await, mapping(&other, 300).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_spills_past_the_load_bound() {
    let u = four().await;
    let proxy = hashing_proxy(
        &[&u[0], &u[1], &u[2], &u[3]],
        &[("balance_factor", toml::Value::Integer(125))],
    )
    .await;
    // Twelve requests of one key held at once: with a bound of 125 % of the mean, no backend
    // holds more than ceil(1.25 × 12 / 4) = 4.
    let mut held = Vec::new();
    for n in 1..=12 {
        let url = proxy.url("/hold");
        held.push(tokio::spawn(async move {
            backend_of(&client(), &url, "hot").await
        }));
        let total = || u.iter().map(Upstream::held).sum::<usize>();
        eventually(DEADLINE, "the request held", || total() == n).await;
    }
    let most = u.iter().map(Upstream::held).max().unwrap();
    println!(
        "held per backend: {:?}",
        u.iter().map(Upstream::held).collect::<Vec<_>>()
    );
    assert!(most <= 4, "a backend holds {most} of 12");
    assert!(most >= 3, "the key's own backend takes its share first");
    for upstream in &u {
        upstream.release_held();
    }
    for request in held {
        request.await.unwrap();
    }
}

/// Four real Varnish caches behind a pool hashing by path, the paths drawn from a Zipf
/// distribution (200 items, s = 1.1): once warm, the fleet answers at least 95 % from cache, as
/// each item is cached once; draining one cache moves only its items, each missing once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_varnish_caches_behind_a_hashing_pool_answer_from_cache() {
    let origin = Upstream::start("origin").await;
    let mut caches = Vec::new();
    for _ in 0..4 {
        caches.push(crate::support::peer::Peer::varnish(origin.addr).await);
    }
    let names = ["v0", "v1", "v2", "v3"];
    let list: Vec<_> = names
        .iter()
        .zip(&caches)
        .map(|(name, cache)| (*name, cache.addr, 1))
        .collect();
    let config = ConfigBuilder::single_pool(&list)
        .with_pool(|pool| pool.set("algorithm", "hash").set("hash.key", "path"));
    let proxy = TestProxy::start(&config.toml()).await;

    // The inverse of the Zipf distribution's cumulative weights.
    let weights: Vec<f64> = (1..=200).map(|k| 1.0 / f64::from(k).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::new();
    let mut sum = 0.0;
    for weight in &weights {
        sum += weight / total;
        cumulative.push(sum);
    }
    let mut rng = fastrand::Rng::with_seed(7);
    let client = client();
    let mut pass = async |requests: usize| {
        let mut hits = 0;
        for _ in 0..requests {
            let draw = rng.f64();
            let item = cumulative.partition_point(|&c| c < draw);
            let answer = get(&client, &proxy.url(&format!("/item/{item}")), None).await;
            assert_eq!(answer.status, 200);
            let varnish = answer.headers["x-varnish"].to_str().unwrap();
            hits += usize::from(varnish.contains(' '));
        }
        hits as f64 / requests as f64
    };
    let warming = pass(2_000).await;
    let warm = pass(2_000).await;
    println!("hit ratio: {warming:.3} warming up, {warm:.3} warm");
    assert!(warm >= 0.95, "warm hit ratio {warm}");

    let (status, _) = proxy
        .admin("POST", "/api/pools/pool/backends/v3/drain", None, None)
        .await;
    assert_eq!(status, 200);
    let drained = pass(2_000).await;
    println!("hit ratio after draining one of four: {drained:.3}");
    // At most its share of the 200 items miss, once each.
    assert!(drained >= 0.93, "hit ratio {drained} after the drain");
}

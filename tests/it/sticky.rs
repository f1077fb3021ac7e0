//! Sticky sessions through the real proxy: the inserted cookie (its flags, its backend kept),
//! forged cookies ignored and counted, a down backend's sessions moved, a draining backend
//! keeping its sessions while taking no new ones (drained once they stop coming, moved at its
//! deadline), and replicas honouring each other's cookies, also across a rotation: with one
//! secret file, or with the fleet's key in a real Redis.

use crate::support::config::ConfigBuilder;
use crate::support::*;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use switchyard::upstream::State;

const SECRET: &str = "0123456789abcdef0123456789abcdef-sticky";
const NEXT_SECRET: &str = "fedcba9876543210fedcba9876543210-sticky";

/// A secret file holding `secret`.
fn secret_file(secret: &str) -> String {
    let path = temp_dir().join("sticky.key");
    std::fs::write(&path, secret).unwrap();
    path.display().to_string()
}

/// A proxy over `backends` with sticky sessions signed by `secrets` (current first).
async fn sticky_proxy(backends: &[&Upstream], secrets: &[&str]) -> TestProxy {
    let list: Vec<_> = backends.iter().map(|u| (u.name, u.addr, 1)).collect();
    let config = ConfigBuilder::single_pool(&list).with_pool(|pool| {
        let pool = pool.set("sticky.secret_file", secret_file(secrets[0]));
        match secrets.get(1) {
            Some(previous) => pool.set("sticky.previous_secret_file", secret_file(previous)),
            None => pool,
        }
    });
    TestProxy::start(&config.toml()).await
}

/// GET `/` with `cookie`, if any: the status, the backend, and the cookie the response set,
/// if any.
async fn ask(proxy: &TestProxy, cookie: Option<&str>) -> (StatusCode, String, Option<String>) {
    let mut req = Request::get(proxy.url("/"));
    if let Some(cookie) = cookie {
        req = req.header("cookie", format!("other=1; {cookie}"));
    }
    let answer = send(&client(), req.body(Full::new(Bytes::new())).unwrap()).await;
    let set = answer
        .headers
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (answer.status, answer.upstream().to_owned(), set)
}

/// `ask`, answered 200: the backend, and the cookie the response set, if any.
async fn visit(proxy: &TestProxy, cookie: Option<&str>) -> (String, Option<String>) {
    let (status, backend, set) = ask(proxy, cookie).await;
    assert_eq!(status, 200);
    (backend, set)
}

/// `name=value` of a `Set-Cookie`.
fn pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

async fn three() -> [Upstream; 3] {
    Upstream::start_all(["a", "b", "c"]).await
}

/// Three upstreams and a proxy with sticky sessions over them, `setting` (a `[pools.sticky]`
/// field) set to `value`.
async fn three_sticky(setting: &str, value: &str) -> ([Upstream; 3], TestProxy) {
    let u = three().await;
    let list: Vec<_> = u.iter().map(|u| (u.name, u.addr, 1)).collect();
    let config = ConfigBuilder::single_pool(&list).with_pool(|pool| {
        pool.set("sticky.secret_file", secret_file(SECRET))
            .set(&format!("sticky.{setting}"), value)
    });
    (u, TestProxy::start_config(&config).await)
}

async fn counted(proxy: &TestProxy, result: &str) -> f64 {
    let series = format!("switchyard_sticky_sessions_total{{pool=\"pool\",result=\"{result}\"}}");
    metric(proxy, &series).await.unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_its_backend_and_a_forged_cookie_is_ignored() {
    let u = three().await;
    let proxy = sticky_proxy(&[&u[0], &u[1], &u[2]], &[SECRET]).await;
    let (first, set) = visit(&proxy, None).await;
    let set = set.expect("a new session gets a cookie");
    assert!(set.starts_with("sy_backend="), "{set}");
    assert!(
        set.ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure"),
        "{set}"
    );
    assert!(!set.contains("127.0.0.1"), "never an address: {set}");
    let cookie = pair(&set).to_owned();
    for _ in 0..20 {
        let (backend, again) = visit(&proxy, Some(&cookie)).await;
        assert_eq!(backend, first);
        assert_eq!(
            again, None,
            "a valid session without max_idle is not re-sent"
        );
    }
    assert_eq!(counted(&proxy, "pinned").await, 20.0);

    // A byte of the signature changed: ignored, a new session begun.
    let mut forged = cookie.clone().into_bytes();
    let at = forged.len() - 5;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let (_, set) = visit(&proxy, Some(&forged)).await;
    assert!(set.is_some(), "a forged cookie gets a new session");
    assert_eq!(counted(&proxy, "invalid").await, 1.0);
    assert_eq!(counted(&proxy, "new").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_backend_keeps_its_sessions_and_takes_no_new_ones_a_stopped_one_moves_them() {
    let u = three().await;
    let proxy = sticky_proxy(&[&u[0], &u[1], &u[2]], &[SECRET]).await;
    let (bound, set) = visit(&proxy, None).await;
    let cookie = pair(&set.unwrap()).to_owned();
    let (status, _) = proxy
        .admin(
            "POST",
            &format!("/api/pools/pool/backends/{bound}/drain"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    for _ in 0..10 {
        assert_eq!(
            visit(&proxy, Some(&cookie)).await.0,
            bound,
            "its session stays"
        );
        assert_ne!(
            visit(&proxy, None).await.0,
            bound,
            "no new session goes there"
        );
    }
    let (status, _) = proxy
        .admin(
            "POST",
            &format!("/api/pools/pool/backends/{bound}/undrain"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);

    // Stopped: the next request fails over (connect refused, retried elsewhere) and is bound
    // to the backend that answered.
    let stopped = u.iter().find(|up| up.name == bound).unwrap();
    stopped.stop();
    let (moved_to, set) = visit(&proxy, Some(&cookie)).await;
    assert_ne!(moved_to, bound);
    let moved = pair(&set.expect("re-bound")).to_owned();
    for _ in 0..5 {
        assert_eq!(visit(&proxy, Some(&moved)).await.0, moved_to);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_one_secret_honour_each_others_cookies_also_across_a_rotation() {
    let u = three().await;
    let one = sticky_proxy(&[&u[0], &u[1], &u[2]], &[SECRET]).await;
    // Another replica listing the backends in another order.
    let other = sticky_proxy(&[&u[2], &u[0], &u[1]], &[SECRET]).await;
    let mut cookies = Vec::new();
    for _ in 0..6 {
        let (backend, set) = visit(&one, None).await;
        cookies.push((backend, pair(&set.unwrap()).to_owned()));
    }
    for (backend, cookie) in &cookies {
        assert_eq!(&visit(&other, Some(cookie)).await.0, backend);
    }
    // A replica rotated to a new secret, the old one kept as previous: the old cookies hold,
    // and each is re-signed with the new secret.
    let rotated = sticky_proxy(&[&u[0], &u[1], &u[2]], &[NEXT_SECRET, SECRET]).await;
    for (backend, cookie) in &cookies {
        let (answered, set) = visit(&rotated, Some(cookie)).await;
        assert_eq!(&answered, backend);
        let resigned = pair(&set.expect("re-signed")).to_owned();
        assert_ne!(&resigned, cookie);
        assert_eq!(&visit(&rotated, Some(&resigned)).await.0, backend);
        // A replica that knows only the old secret refuses the new cookie.
        let (_, fresh) = visit(&one, Some(&resigned)).await;
        assert!(fresh.is_some(), "unknown key: a new session");
    }
}

/// The key id a cookie (`name=value`) was signed with.
fn key_id(cookie: &str) -> &str {
    cookie.split_once('=').unwrap().1.split('.').next().unwrap()
}

/// A cookie of `from` that `to` honours: fresh ones until `to` has the key they are signed
/// with (keys arrive from Redis in the background).
async fn honoured(from: &TestProxy, to: &TestProxy) -> (String, String) {
    poll_until(DEADLINE, "a cookie the other replica honours", || async {
        let (backend, set) = visit(from, None).await;
        let cookie = pair(&set?).to_owned();
        let (answered, again) = visit(to, Some(&cookie)).await;
        (answered == backend && again.is_none()).then_some((backend, cookie))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_in_a_fleet_share_the_key_kept_in_redis_and_a_rotation_keeps_old_cookies() {
    let redis = crate::support::redis::RedisServer::start().await;
    let u = three().await;
    let replica = |name: &str, order: [&Upstream; 3]| {
        let list: Vec<_> = order.iter().map(|u| (u.name, u.addr, 1)).collect();
        ConfigBuilder::single_pool(&list)
            .set("fleet.redis", redis.url())
            .set("fleet.replica", name)
            .with_pool(|pool| pool.set("sticky.fleet_secret", true))
    };
    let one = TestProxy::start_config(&replica("r1", [&u[0], &u[1], &u[2]])).await;
    let other = TestProxy::start_config(&replica("r2", [&u[2], &u[0], &u[1]])).await;
    let (backend, old) = honoured(&one, &other).await;
    honoured(&other, &one).await;
    let mut conn = redis.connection().await;
    let stored: String = ::redis::AsyncCommands::get(&mut conn, "switchyard:fleet:sticky")
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["secrets"].as_array().unwrap().len(), 1);

    // A rotation asked of one replica: new cookies on every replica carry the new key, and
    // the old ones hold everywhere (re-signed as they are used).
    let (status, _) = one.admin("POST", "/api/sticky/rotate", None, None).await;
    assert_eq!(status, 202);
    let (_, new) = poll_until(DEADLINE, "cookies signed with the new key", || async {
        let (backend, set) = visit(&one, None).await;
        let cookie = pair(&set?).to_owned();
        (key_id(&cookie) != key_id(&old)).then_some((backend, cookie))
    })
    .await;
    honoured(&one, &other).await;
    for replica in [&one, &other] {
        let (answered, resigned) = visit(replica, Some(&old)).await;
        assert_eq!(answered, backend);
        let resigned = pair(&resigned.expect("re-signed with the new key")).to_owned();
        assert_eq!(key_id(&resigned), key_id(&new));
    }
    // Without a fleet, there is nothing to rotate.
    let alone = sticky_proxy(&[&u[0]], &[SECRET]).await;
    assert_eq!(
        alone
            .admin("POST", "/api/sticky/rotate", None, None)
            .await
            .0,
        409
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_completes_once_its_sessions_stop_coming_or_at_its_deadline_which_moves_them() {
    let (_u, proxy) = three_sticky("max_idle", "3s").await;
    let state = |name: String| {
        let proxy = &proxy;
        async move { backend_view(proxy, "pool", &name).await.state }
    };
    let (bound, set) = visit(&proxy, None).await;
    let cookie = pair(&set.unwrap()).to_owned();
    let drain = format!("/api/pools/pool/backends/{bound}/drain");
    assert_eq!(proxy.admin("POST", &drain, None, None).await.0, 200);
    // Nothing in flight, but its session has just used it: still draining.
    assert_eq!(visit(&proxy, Some(&cookie)).await.0, bound);
    assert_eq!(state(bound.clone()).await, State::Draining);
    // The session quiet for its max_idle: the drain is complete.
    poll_until(DEADLINE, "drained", || async {
        (state(bound.clone()).await == State::Drained).then_some(())
    })
    .await;

    // Again with a deadline and a session that keeps coming (its cookie refreshed as it is
    // used): bound until the deadline, then moved to another backend.
    let undrain = format!("/api/pools/pool/backends/{bound}/undrain");
    assert_eq!(proxy.admin("POST", &undrain, None, None).await.0, 200);
    let (bound, set) = visit(&proxy, None).await;
    let mut cookie = pair(&set.unwrap()).to_owned();
    let drain = format!("/api/pools/pool/backends/{bound}/drain");
    let body = r#"{"deadline": "2s"}"#;
    assert_eq!(proxy.admin("POST", &drain, Some(body), None).await.0, 200);
    let started = tokio::time::Instant::now();
    let moved = loop {
        assert!(started.elapsed() < DEADLINE, "the session never moved");
        let (status, answered, set) = ask(&proxy, Some(&cookie)).await;
        if status == 502 {
            // In flight on its connection as the deadline closed it: what a deadline does.
            assert!(started.elapsed() >= std::time::Duration::from_secs(2));
            continue;
        }
        assert_eq!(status, 200);
        if answered != bound {
            break set.expect("bound anew");
        }
        // Draining until the deadline, drained from it on: it may strike between the answer
        // and this look.
        let seen = state(bound.clone()).await;
        assert!(
            seen == State::Draining
                || (seen == State::Drained
                    && started.elapsed() >= std::time::Duration::from_secs(2)),
            "{seen:?} before the deadline"
        );
        if let Some(set) = set {
            cookie = pair(&set).to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(state(bound.clone()).await, State::Drained);
    let moved = pair(&moved).to_owned();
    let to = visit(&proxy, Some(&moved)).await.0;
    assert_ne!(to, bound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_cookie_is_ignored_counted_and_its_client_bound_anew() {
    let (_u, proxy) = three_sticky("max_life", "1s").await;
    let (_, set) = visit(&proxy, None).await;
    let set = set.unwrap();
    assert!(set.contains("; Max-Age=1"), "{set}");
    let cookie = pair(&set).to_owned();
    // Honoured while it lives, refused once its second is over: a new session then.
    let fresh = poll_until(DEADLINE, "the cookie expired", || async {
        visit(&proxy, Some(&cookie)).await.1
    })
    .await;
    assert_ne!(pair(&fresh), cookie);
    assert_eq!(counted(&proxy, "invalid").await, 1.0);
}

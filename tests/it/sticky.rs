//! Sticky sessions through the real proxy: the inserted cookie (its flags, its backend kept),
//! forged cookies ignored and counted, a down backend's sessions moved, a draining backend
//! keeping its sessions while taking no new ones, and two replicas with one secret honouring
//! each other's cookies, also across a rotation.

use crate::support::config::ConfigBuilder;
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

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

/// GET `/` with `cookie`, if any: the backend, and the cookie the response set, if any.
async fn visit(proxy: &TestProxy, cookie: Option<&str>) -> (String, Option<String>) {
    let mut req = Request::get(proxy.url("/"));
    if let Some(cookie) = cookie {
        req = req.header("cookie", format!("other=1; {cookie}"));
    }
    let answer = send(&client(), req.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(answer.status, 200);
    let set = answer
        .headers
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (answer.upstream().to_owned(), set)
}

/// `name=value` of a `Set-Cookie`.
fn pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

async fn three() -> [Upstream; 3] {
    [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ]
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

//! A route's access policies on real connections: basic auth with a users file made by
//! Debian's `htpasswd -B`, forward auth against an auth service started here (allow, deny,
//! redirect, timeout, down, remembered answers), and a reload that reads the users file again
//! while rate-limit state survives it. Rate limits under load: `rate_limits.rs`.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use toml::Value;

/// A proxy over `up` whose route `r` has `build`'s settings.
pub(crate) async fn proxy_with(
    up: &Upstream,
    extra: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    build: impl FnOnce(config::RouteBuilder) -> config::RouteBuilder,
) -> TestProxy {
    let config = ConfigBuilder::new()
        .set("reload.watch", false)
        .pool(PoolBuilder::new("p").backend("up", up.addr, 1))
        .push_route("r", |r| build(r.set("pool", "p")));
    TestProxy::start(&extra(config).toml()).await
}

/// GET `path` with `headers`; the whole answer.
pub(crate) async fn get_with(proxy: &TestProxy, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::get(proxy.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(&client(), request.body(Full::<Bytes>::default()).unwrap()).await
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A users file made by `htpasswd` with `flag` (`-B`: bcrypt, `-m`: MD5-crypt).
fn htpasswd(flag: &str, users: &[(&str, &str)]) -> std::path::PathBuf {
    let path = temp_dir().join("users.htpasswd");
    for (n, (user, password)) in users.iter().enumerate() {
        let mut command = std::process::Command::new("htpasswd");
        command.arg("-b");
        if n == 0 {
            command.arg("-c");
        }
        let status = command
            .args(
                [flag, "-C", "5"]
                    .iter()
                    .filter(|a| flag == "-B" || **a == flag),
            )
            .arg(&path)
            .args([user, password])
            .status()
            .expect("htpasswd runs (apache2-utils)");
        assert!(status.success());
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_an_htpasswd_b_file_lets_in_only_its_users() {
    let up = Upstream::start("up").await;
    let users = htpasswd("-B", &[("alice", "wonder land"), ("bob", "builder")]);
    let proxy = proxy_with(
        &up,
        |c| c,
        |r| {
            r.set("basic_auth.users_file", users.display().to_string())
                .set("basic_auth.realm", "staff")
        },
    )
    .await;
    let missing = get_with(&proxy, "/", &[]).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers["www-authenticate"],
        "Basic realm=\"staff\", charset=\"UTF-8\""
    );
    for _ in 0..2 {
        // The second time from the remembered digest.
        let ok = get_with(
            &proxy,
            "/",
            &[("authorization", &basic("alice", "wonder land"))],
        )
        .await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let bob = get_with(&proxy, "/", &[("authorization", &basic("bob", "builder"))]).await;
    assert_eq!(bob.status, StatusCode::OK);
    for (user, password) in [("alice", "wonderland"), ("mallory", "builder"), ("bob", "")] {
        let refused = get_with(&proxy, "/", &[("authorization", &basic(user, password))]).await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "{user}:{password}"
        );
    }
    assert_eq!(up.requests(), 3, "no refused request reached the backend");
    let failed = |reason| [("route", "r"), ("kind", "basic"), ("reason", reason)];
    let failures = "switchyard_auth_failures_total";
    assert_eq!(
        sample(&proxy, failures, &failed("invalid")).await,
        Some(3.0)
    );
    assert_eq!(
        sample(&proxy, failures, &failed("missing")).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn an_md5_users_file_is_a_config_error_naming_the_field() {
    let users = htpasswd("-m", &[("alice", "secret")]);
    let config = ConfigBuilder::new()
        .pool(PoolBuilder::new("p").backend("up", closed_port(), 1))
        .push_route("r", |r| {
            r.set("pool", "p")
                .set("basic_auth.users_file", users.display().to_string())
        });
    let err = switchyard::config::parse(&config.toml(), "switchyard.toml")
        .expect_err("an MD5 file is refused");
    let text = err.to_string();
    assert!(text.contains("routes[0].basic_auth.users_file"), "{text}");
    assert!(text.contains("MD5-crypt"), "{text}");
    assert!(text.contains("htpasswd -B"), "{text}");
}

/// An auth service: `Bearer good` → 200 with `X-User: alice`; `Bearer login` → 302 to a
/// login page; anything else → 401 with a body of its own. Counts what it is asked.
async fn auth_service() -> (SocketAddr, Arc<AtomicUsize>) {
    crate::support::upstream::serve_fn(|req| {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let response = match header("authorization").as_str() {
            "Bearer good" => Response::builder()
                .status(200)
                .header("x-user", "alice")
                .header("x-seen-uri", header("x-forwarded-uri"))
                .body(Full::new(Bytes::new())),
            "Bearer login" => Response::builder()
                .status(302)
                .header("location", "https://login.example/?next=/")
                .body(Full::new(Bytes::new())),
            _ => Response::builder()
                .status(401)
                .header("www-authenticate", "Bearer realm=\"corp\"")
                .body(Full::new(Bytes::from_static(b"who are you?\n"))),
        };
        response.unwrap()
    })
    .await
}

/// A proxy whose route asks the auth pool (one backend at `auth`), remembering for `cache`.
async fn forward_proxy(up: &Upstream, auth: SocketAddr, cache: &str) -> TestProxy {
    proxy_with(
        up,
        |c| {
            c.pool(PoolBuilder::new("auth").backend("auth", auth, 1))
                .set("timeouts.connect", "1s")
        },
        |r| {
            r.set("forward_auth.pool", "auth")
                .set("forward_auth.copy_headers", vec!["X-User".to_owned()])
                .set("forward_auth.timeout", "1s")
                .set("forward_auth.cache", cache)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_allows_copies_headers_and_returns_refusals_as_they_are() {
    let up = Upstream::start("up").await;
    let (auth, asked) = auth_service().await;
    let proxy = forward_proxy(&up, auth, "0s").await;
    // Allowed: the auth service's X-User replaces the client's own.
    let ok = get_with(
        &proxy,
        "/headers?q=1",
        &[("authorization", "Bearer good"), ("x-user", "root")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.body.contains("x-user: alice"), "{}", ok.body);
    assert!(!ok.body.contains("x-user: root"), "{}", ok.body);
    // Denied: the auth service's own 401, body and challenge included.
    let denied = get_with(&proxy, "/", &[("authorization", "Bearer bad")]).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(denied.body, "who are you?\n");
    assert_eq!(denied.headers["www-authenticate"], "Bearer realm=\"corp\"");
    // Redirected to a login page.
    let login = get_with(&proxy, "/", &[("authorization", "Bearer login")]).await;
    assert_eq!(login.status, StatusCode::FOUND);
    assert_eq!(login.headers["location"], "https://login.example/?next=/");
    assert_eq!(up.requests(), 1, "refusals never reach the backend");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        3,
        "no cache: every request asks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_remembers_an_allowed_answer_per_credential() {
    let up = Upstream::start("up").await;
    let (auth, asked) = auth_service().await;
    let proxy = forward_proxy(&up, auth, "30s").await;
    for _ in 0..5 {
        let ok = get_with(&proxy, "/headers", &[("authorization", "Bearer good")]).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert!(ok.body.contains("x-user: alice"), "{}", ok.body);
    }
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "one answer for five requests"
    );
    // Other credentials are asked about afresh, and refusals are never remembered.
    for _ in 0..2 {
        let denied = get_with(&proxy, "/", &[("authorization", "Bearer bad")]).await;
        assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(asked.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_fails_closed_when_the_service_hangs_or_is_down() {
    let up = Upstream::start("up").await;
    let hung = crate::support::upstream::start_hung().await;
    let proxy = forward_proxy(&up, hung, "0s").await;
    let timed_out = get_with(&proxy, "/", &[("authorization", "Bearer good")]).await;
    assert_eq!(timed_out.status, StatusCode::SERVICE_UNAVAILABLE);
    let down = forward_proxy(&up, closed_port(), "0s").await;
    let refused = get_with(&down, "/", &[("authorization", "Bearer good")]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.requests(), 0, "nothing passes without an answer");
    let errors = [("route", "r"), ("result", "error")];
    let name = "switchyard_forward_auth_requests_total";
    assert_eq!(sample(&proxy, name, &errors).await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reads_the_users_file_again_and_keeps_rate_limit_state() {
    let up = Upstream::start("up").await;
    let users = htpasswd("-B", &[("alice", "one")]);
    let mut limit = toml::Table::new();
    limit.insert("rate".into(), "1/m".into());
    let config = ConfigBuilder::new()
        .set("reload.watch", false)
        .pool(PoolBuilder::new("p").backend("up", up.addr, 1))
        .push_route("r", |r| {
            r.set("pool", "p")
                .set("basic_auth.users_file", users.display().to_string())
                .set("rate_limit", Value::Array(vec![Value::Table(limit)]))
        });
    let path = temp_config(&config.toml());
    let proxy = TestProxy::start_file(&path).await;
    let alice = basic("alice", "one");
    let bob = basic("bob", "two");
    assert_eq!(
        get_with(&proxy, "/", &[("authorization", &alice)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&proxy, "/", &[("authorization", &bob)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Bob joins the file; the reload reads it, and the limit's state (alice's one request a
    // minute, spent) survives the reload.
    let status = std::process::Command::new("htpasswd")
        .args(["-b", "-B", "-C", "5"])
        .arg(&users)
        .args(["bob", "two"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        proxy.admin("POST", "/api/reload", None, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get_with(&proxy, "/", &[("authorization", &bob)])
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS,
        "bob is let in by the new file, and the one request a minute was spent before the reload"
    );
}

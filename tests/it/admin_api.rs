//! The admin API as an operator and an attacker use it: tokens, unknown routes and methods, a
//! public address without a token refused at start, lame duck, and arbitrary input that never
//! gets a 5xx or stops the control plane.

use crate::support::config::ConfigBuilder;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_requires_the_token_and_answers_unknown_routes_and_methods() {
    let up = Upstream::start("up").await;
    let token_path = temp_config("").with_file_name("token");
    std::fs::write(&token_path, "s3cret-token\n").unwrap();
    let config = ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .set("admin.token_file", token_path.display().to_string());
    let proxy = TestProxy::start_config(&config).await;

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
    let toml = ConfigBuilder::single_pool(&[("up", closed_port(), 1)])
        .set("admin.bind", "0.0.0.0:0")
        .set("admin.token_env", "SWITCHYARD_TEST_TOKEN_THAT_IS_NEVER_SET")
        .toml();
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
async fn lame_duck_through_the_api_fails_healthz_but_keeps_serving() {
    let up = Upstream::start("up").await;
    let proxy = TestProxy::start_config(&ConfigBuilder::single_pool(&[("up", up.addr, 1)])).await;
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

/// Arbitrary text and numbers in every admin input: each answer is 2xx or 4xx, and the proxy
/// still serves and changes state afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_admin_input_never_gets_a_5xx_or_stops_the_control_plane() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let a = Upstream::start("a").await;
    let proxy = TestProxy::start_config(&ConfigBuilder::single_pool(&[("a", a.addr, 1)])).await;
    let mut runner = TestRunner::deterministic();
    let text = "[ -~]{0,24}";
    let inputs = (
        text,
        any::<u64>(),
        any::<i64>(),
        any::<f64>(),
        "(s|ms|d|y|years|h)",
    );
    for _ in 0..64 {
        let (text, big, signed, float, unit) =
            inputs.new_tree(&mut runner).expect("a value").current();
        let escaped = serde_json::to_string(&text).expect("a string serializes");
        let queries = [
            format!("/api/pools/pool/backends/a/drain?deadline={big}{unit}"),
            format!(
                "/api/pools/pool/backends/a/drain?deadline={}",
                text.replace(['&', '#', ' '], "")
            ),
        ];
        for path in &queries {
            if path.parse::<http::Uri>().is_err() {
                continue;
            }
            let (status, answer) = proxy.admin("POST", path, None, None).await;
            assert!(status.as_u16() < 500, "{path}: {status} {answer}");
        }
        let bodies = [
            ("drain", format!(r#"{{"deadline": "{signed}{unit}"}}"#)),
            ("drain", format!(r#"{{"deadline": {escaped}}}"#)),
            ("drain", format!(r#"{{"deadline": {float}}}"#)),
            ("drain", text.clone()),
            ("weight", format!(r#"{{"weight": {signed}}}"#)),
            ("weight", format!(r#"{{"weight": {float}}}"#)),
            ("weight", format!(r#"{{"weight": {big}}}"#)),
            ("weight", format!(r#"{{"weight": {escaped}}}"#)),
            ("weight", text.clone()),
        ];
        for (action, body) in &bodies {
            let path = format!("/api/pools/pool/backends/a/{action}");
            let method = if *action == "weight" { "PUT" } else { "POST" };
            let (status, answer) = proxy.admin(method, &path, Some(body), None).await;
            assert!(status.as_u16() < 500, "{path} {body}: {status} {answer}");
        }
    }
    let (status, _) = proxy
        .admin("POST", "/api/pools/pool/backends/a/undrain", None, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = proxy.admin("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

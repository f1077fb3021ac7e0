//! What a route does to the requests it forwards and to their responses, through the real
//! proxy: prefixes stripped and added, regex rewrites (never decoding `%2F`), host rewrites,
//! and header rules with variables, per route and per pool, over HTTP/1.1 and HTTP/2. A
//! recording backend shows the exact bytes it was sent.

use crate::support::config::{ConfigBuilder, PoolBuilder, RouteBuilder};
use crate::support::raw::Recorder;
use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// A proxy whose route `r` (built by `route`) forwards to a recording backend in pool `p`
/// (built by `pool`).
async fn recorded(
    pool: impl FnOnce(PoolBuilder) -> PoolBuilder,
    route: impl FnOnce(RouteBuilder) -> RouteBuilder,
) -> (Recorder, TestProxy) {
    let recorder = Recorder::start().await;
    let config = ConfigBuilder::new()
        .pool(pool(PoolBuilder::new("p").backend("rec", recorder.addr, 1)))
        .push_route("r", |r| route(r.set("pool", "p")));
    (recorder, TestProxy::start(&config.toml()).await)
}

/// Sends `GET target` over HTTP/1.1 and then over HTTP/2; returns the two request heads the
/// backend received.
async fn heads(proxy: &TestProxy, recorder: &Recorder, target: &str) -> Vec<String> {
    let before = recorder.received().len();
    let req = |uri: String| {
        http::Request::get(uri)
            .header("x-remove-me", "1")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let one = client().request(req(proxy.url(target))).await.unwrap();
    assert_eq!(one.status(), 200);
    one.into_body().collect().await.unwrap();
    let (mut h2, _conn) = h2c(proxy.addr).await;
    let two = h2
        .send_request(req(format!("http://{}{target}", proxy.addr)))
        .await
        .unwrap();
    assert_eq!(two.status(), 200);
    two.into_body().collect().await.unwrap();
    let text = recorder.received()[before..].to_owned();
    let heads: Vec<String> = text
        .split("\r\n\r\n")
        .filter(|h| !h.is_empty())
        .map(|h| format!("{}\r\n", h.to_ascii_lowercase()))
        .collect();
    assert_eq!(heads.len(), 2, "{text}");
    heads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripped_prefix_is_said_in_x_forwarded_prefix_and_an_added_one_goes_first() {
    let (recorder, proxy) = recorded(
        |p| p,
        |r| {
            r.set("path_prefix", "/api/")
                .set("strip_prefix", true)
                .set("add_prefix", "/v2")
        },
    )
    .await;
    for head in heads(&proxy, &recorder, "/api/users/a%2Fb?x=1").await {
        assert!(
            head.starts_with("get /v2/users/a%2fb?x=1 http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nx-forwarded-prefix: /api\r\n"), "{head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_rewrite_fills_in_its_captures_and_keeps_the_query() {
    let (recorder, proxy) = recorded(
        |p| p,
        |r| {
            r.set("path_prefix", "/old/")
                .set("rewrite.regex", "^/old/([^/]+)/(.*)$")
                .set("rewrite.replace", "/new/$2/$1")
        },
    )
    .await;
    for head in heads(&proxy, &recorder, "/old/a%2Fb/c/d?q=%2F").await {
        assert!(
            head.starts_with("get /new/c/d/a%2fb?q=%2f http/1.1\r\n"),
            "{head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_is_rewritten_to_a_fixed_one_or_the_backends_address() {
    let (recorder, proxy) = recorded(|p| p, |r| r.set("host_rewrite", "internal.test:8080")).await;
    for head in heads(&proxy, &recorder, "/").await {
        assert!(head.contains("\r\nhost: internal.test:8080\r\n"), "{head}");
        let host = format!("127.0.0.1:{}", proxy.addr.port());
        assert!(
            head.contains(&format!("\r\nx-forwarded-host: {host}\r\n")),
            "{head}"
        );
    }
    let (recorder, proxy) = recorded(|p| p, |r| r.set("auto_host_rewrite", true)).await;
    for head in heads(&proxy, &recorder, "/").await {
        assert!(
            head.contains(&format!("\r\nhost: {}\r\n", recorder.addr)),
            "{head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_header_rules_of_pool_and_route_fill_in_variables() {
    let (recorder, proxy) = recorded(
        |p| p.set("request_headers.set.x-pool", "pool-{route}"),
        |r| {
            r.set("request_headers.set.x-client", "{client_ip} via {scheme}")
                .set("request_headers.add.x-ids", "{request_id}")
                .set("request_headers.set.x-pool", "route wins")
                .set("request_headers.remove", vec!["x-remove-me"])
        },
    )
    .await;
    for head in heads(&proxy, &recorder, "/").await {
        assert!(
            head.contains("\r\nx-client: 127.0.0.1 via http\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nx-pool: route wins\r\n"), "{head}");
        assert!(!head.contains("x-remove-me"), "{head}");
        let id = head
            .split("\r\nx-ids: ")
            .nth(1)
            .map(|rest| rest.split("\r\n").next().unwrap());
        assert!(id.is_some_and(|id| id.len() == 32), "{head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_header_rules_name_the_backend_and_remove_what_leaks() {
    let up = Upstream::start("up").await;
    let config = ConfigBuilder::new()
        .pool(
            PoolBuilder::new("p")
                .backend("b1", up.addr, 1)
                .set("response_headers.set.x-served-by", "{backend}"),
        )
        .push_route("r", |r| {
            r.set("pool", "p")
                .set("response_headers.remove", vec!["x-upstream"])
                .set("response_headers.add.x-route", "{route}")
        });
    let proxy = TestProxy::start(&config.toml()).await;
    let answer = get(&client(), &proxy.url("/"), None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-served-by"], "b1");
    assert_eq!(answer.headers["x-route"], "r");
    assert!(!answer.headers.contains_key("x-upstream"));
}

/// A rewrite of a `/a` prefix route: strip the prefix, the prefix added, a regex and its
/// replacement.
type Rewrite = (
    bool,
    Option<&'static str>,
    Option<(&'static str, &'static str)>,
);

/// The rewrites the property below draws from.
const REWRITES: [Rewrite; 8] = [
    (true, None, None),
    (false, Some("/v2"), None),
    (false, Some("/v2/.."), None),
    (true, Some("/x/./y/%2E%2e"), None),
    (true, Some("/x/"), None),
    (false, None, Some(("^/a/(.*)$", "/b/$1"))),
    (true, None, Some(("^(.*)/([^/]*)$", "/$2/..$1/.."))),
    (false, Some("/p"), Some(("a", "/$0/../%2e%2E/$0"))),
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

    /// Whatever the path and the rewrite, what is forwarded is a target the request check
    /// accepts, with no dot segment, or nothing at all (a clean 500).
    #[test]
    fn rewrites_never_make_a_target_the_request_check_would_refuse(
        segments in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("a".to_owned()),
                proptest::strategy::Just("%2F".to_owned()),
                proptest::strategy::Just(".".to_owned()),
                proptest::strategy::Just("..".to_owned()),
                proptest::strategy::Just("%2e".to_owned()),
                proptest::strategy::Just(String::new()),
                "[a-zA-Z0-9_~!$&'()*+,;=:@-]{1,6}",
            ],
            0..8,
        ),
        query in proptest::option::of("[a-z0-9=&%/?]{0,10}"),
        which in 0..REWRITES.len(),
    ) {
        let (strip, add, regex) = REWRITES[which];
        let mut route = format!("[[routes]]\nname = \"r\"\npath_prefix = \"/a\"\npool = \"p\"\nstrip_prefix = {strip}\n");
        if let Some(add) = add {
            route += &format!("add_prefix = {add:?}\n");
        }
        if let Some((regex, replace)) = regex {
            route += &format!("rewrite = {{ regex = {regex:?}, replace = {replace:?} }}\n");
        }
        let text = format!(
            "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n{route}\
             [[pools]]\nname = \"p\"\n[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n"
        );
        let config = switchyard::config::parse(&text, "t.toml").unwrap();
        let policies = switchyard::route::Policies::of(&config.routes[0], None, &switchyard::metrics::Metrics::new())
            .unwrap();
        let rewrite = policies.rewrite.as_ref().unwrap();
        let mut target = format!("/a/{}", segments.join("/"));
        if let Some(query) = &query {
            target += "?";
            target += query;
        }
        let Ok(uri) = target.parse::<http::Uri>() else {
            return Ok(()); // not a target a client could send
        };
        // As the proxy does before routing.
        let uri = switchyard::route::normalize::without_dot_segments(&uri).unwrap_or(uri);
        if let Some(rewritten) = rewrite.apply(&uri) {
            let forwarded: http::Uri = rewritten.target.as_str().parse().unwrap();
            proptest::prop_assert!(
                switchyard::route::normalize::without_dot_segments(&forwarded).is_none(),
                "{} has dot segments", forwarded
            );
            proptest::prop_assert_eq!(forwarded.query(), uri.query());
            let request = http::Request::get(forwarded.clone())
                .header("host", "h")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let limits = switchyard::config::Limits::default();
            proptest::prop_assert!(
                switchyard::proxy::request_check::check(&request, &limits).is_ok(),
                "{} refused", forwarded
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_a_routes_policies_like_everything_else() {
    let up = Upstream::start("up").await;
    let config = |tag: &str| {
        ConfigBuilder::new()
            .set("reload.watch", false)
            .pool(PoolBuilder::new("p").backend("up", up.addr, 1))
            .push_route("r", |r| {
                r.set("pool", "p")
                    .set("response_headers.set.x-version", tag.to_owned())
            })
            .toml()
    };
    let path = temp_config(&config("one"));
    let proxy = TestProxy::start_file(&path).await;
    let version =
        || async { get(&client(), &proxy.url("/"), None).await.headers["x-version"].clone() };
    assert_eq!(version().await, "one");
    std::fs::write(&path, config("two")).unwrap();
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(version().await, "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_gets_the_request_rules_anew_naming_its_own_backend() {
    let recorder = Recorder::start().await;
    let config = ConfigBuilder::new()
        .pool(
            PoolBuilder::new("p")
                .backend("dead", closed_port(), 1)
                .backend("rec", recorder.addr, 1)
                // Never ejected: half the requests try `dead` first and are retried.
                .set("outlier_detection.consecutive_failures", 0),
        )
        .push_route("r", |r| {
            r.set("pool", "p")
                .set("request_headers.set.x-backend", "{backend}")
                .set("request_headers.add.x-once", "1")
        });
    let proxy = TestProxy::start(&config.toml()).await;
    let client = client();
    for _ in 0..4 {
        assert_eq!(get(&client, &proxy.url("/"), None).await.status, 200);
    }
    // Round-robin over [dead, rec], retries moving the cursor too: at least one request met
    // the dead backend first (each meeting is counted before its retry is sent).
    let retries = sample(&proxy, "switchyard_retries_total", &[("backend", "dead")]).await;
    assert!(retries >= Some(1.0), "{retries:?}");
    let text = recorder.received().to_ascii_lowercase();
    let heads: Vec<&str> = text.split("\r\n\r\n").filter(|h| !h.is_empty()).collect();
    assert_eq!(heads.len(), 4, "{text}");
    for head in heads {
        assert!(head.contains("\r\nx-backend: rec"), "{head}");
        assert_eq!(head.matches("\r\nx-once: 1").count(), 1, "{head}");
    }
}

//! The precedence rule and the conditions, through configs as an operator writes them.

use super::{Asked, Router, Target};
use crate::metrics::Metrics;
use http::{HeaderMap, HeaderValue, Method};

/// A router over `routes` (TOML `[[routes]]` tables, each naming pool `p`, or answering).
fn router(routes: &str) -> Router {
    let text = format!(
        "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n{routes}\n\
         [[pools]]\nname = \"p\"\n[[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n"
    );
    let config = crate::config::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    Router::new(
        &config.routes,
        &config.pools,
        |_| Some(0),
        &Metrics::new(),
        &Default::default(),
    )
}

fn take(
    router: &Router,
    method: &Method,
    path: &str,
    headers: &[(&str, &str)],
    query: Option<&str>,
) -> Option<String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let asked = Asked {
        method,
        headers: &map,
        query,
    };
    router
        .find(Some("any.test"), path, &asked)
        .map(|r| r.name.to_string())
}

fn get(router: &Router, path: &str) -> Option<String> {
    take(router, &Method::GET, path, &[], None)
}

#[test]
fn exact_paths_come_first_then_regular_expressions_then_the_longest_prefix() {
    let r = router(
        "[[routes]]\nname = \"all\"\npool = \"p\"\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"p\"\n\
         [[routes]]\nname = \"users\"\npath_regex = \"/api/users/[0-9]+\"\npool = \"p\"\n\
         [[routes]]\nname = \"health\"\npath = \"/api/health\"\npool = \"p\"\n",
    );
    assert_eq!(get(&r, "/api/health").as_deref(), Some("health"));
    assert_eq!(
        get(&r, "/api/health/x").as_deref(),
        Some("api"),
        "exact means exact"
    );
    assert_eq!(get(&r, "/api/users/42").as_deref(), Some("users"));
    assert_eq!(
        get(&r, "/api/users/42/x").as_deref(),
        Some("api"),
        "the whole path must match"
    );
    assert_eq!(get(&r, "/api/users/me").as_deref(), Some("api"));
    assert_eq!(get(&r, "/other").as_deref(), Some("all"));
}

#[test]
fn among_equal_paths_more_conditions_win_then_file_order() {
    let r = router(
        "[[routes]]\nname = \"plain\"\npath_prefix = \"/\"\npool = \"p\"\n\
         [[routes]]\nname = \"posts\"\nmethods = [\"POST\"]\npool = \"p\"\n\
         [[routes]]\nname = \"canary-posts\"\nmethods = [\"POST\"]\npool = \"p\"\n\
         headers = [{ name = \"x-canary\", exact = \"1\" }]\n\
         [[routes]]\nname = \"beta\"\npool = \"p\"\nquery = [{ name = \"beta\", present = true }]\n",
    );
    assert_eq!(get(&r, "/").as_deref(), Some("plain"));
    assert_eq!(
        take(&r, &Method::POST, "/", &[], None).as_deref(),
        Some("posts")
    );
    let canary = [("x-canary", "1")];
    assert_eq!(
        take(&r, &Method::POST, "/", &canary, None).as_deref(),
        Some("canary-posts")
    );
    assert_eq!(
        take(&r, &Method::GET, "/", &canary, None).as_deref(),
        Some("plain")
    );
    assert_eq!(
        take(&r, &Method::GET, "/", &[], Some("a=1&beta")).as_deref(),
        Some("beta")
    );
    // Two routes with one condition each: the first in the file.
    assert_eq!(
        take(&r, &Method::POST, "/", &[], Some("beta=")).as_deref(),
        Some("posts")
    );
}

#[test]
fn header_tests_look_at_every_value_and_query_values_are_decoded() {
    let r = router(
        "[[routes]]\nname = \"plain\"\npool = \"p\"\n\
         [[routes]]\nname = \"prefix\"\npool = \"p\"\nheaders = [{ name = \"accept\", prefix = \"application/\" }]\n\
         [[routes]]\nname = \"regex\"\npool = \"p\"\nheaders = [{ name = \"x-v\", regex = \"v[0-9]+\" }, { name = \"x-w\", present = true }]\n\
         [[routes]]\nname = \"absent\"\npool = \"p\"\nheaders = [{ name = \"cookie\", present = false }]\n\
         [[routes]]\nname = \"query\"\npool = \"p\"\nquery = [{ name = \"q k\", exact = \"a/b\" }]\n\
         [[routes]]\nname = \"bypass\"\npool = \"p\"\npath = \"/x\"\n",
    );
    let with = |headers: &[(&str, &str)]| take(&r, &Method::GET, "/", headers, None);
    assert_eq!(
        with(&[("accept", "text/html"), ("accept", "application/json")]).as_deref(),
        Some("prefix")
    );
    assert_eq!(
        with(&[("x-v", "v12"), ("x-w", ""), ("cookie", "a")]).as_deref(),
        Some("regex")
    );
    assert_eq!(
        with(&[("x-v", "v12x"), ("x-w", ""), ("cookie", "a")]).as_deref(),
        Some("plain"),
        "the whole value must match"
    );
    assert_eq!(with(&[]).as_deref(), Some("absent"));
    assert_eq!(with(&[("cookie", "a")]).as_deref(), Some("plain"));
    let query = |q| take(&r, &Method::GET, "/", &[("cookie", "a")], Some(q));
    assert_eq!(query("q+k=a%2Fb").as_deref(), Some("query"));
    assert_eq!(query("q%20k=a/b").as_deref(), Some("query"));
    assert_eq!(query("q+k=a%2Fc").as_deref(), Some("plain"));
}

#[test]
fn a_route_that_answers_itself_needs_no_pool() {
    let r = router(
        "[[routes]]\nname = \"robots\"\npath = \"/robots.txt\"\nrespond = { body = \"User-agent: *\\nDisallow: /\\n\" }\n\
         [[routes]]\nname = \"old\"\npath_prefix = \"/old\"\nredirect = { status = 301, prefix = \"/new\" }\n",
    );
    let route = |path| {
        let asked = Asked {
            method: &Method::GET,
            headers: &HeaderMap::new(),
            query: None,
        };
        r.find(None, path, &asked)
            .map(|r| matches!(r.target, Target::Answer(_)))
    };
    assert_eq!(route("/robots.txt"), Some(true));
    assert_eq!(route("/old/page"), Some(true));
    assert_eq!(route("/"), None);
}

//! Host and prefix precedence: exact host, longest wildcard, the default virtual host.

use super::*;

fn route(name: &str, host: Option<&str>, prefix: &str) -> RouteConfig {
    let host = host.map(|h| match h.strip_prefix('*') {
        Some(suffix) => HostPattern::Suffix(suffix.into()),
        None => HostPattern::Exact(h.into()),
    });
    RouteConfig::to_pool(name, host, prefix, "p")
}

fn router() -> Router {
    Router::new(
        &[
            route("default", None, "/"),
            route("default-static", None, "/static"),
            route("api", Some("api.example.com"), "/"),
            route("api-v2", Some("api.example.com"), "/v2"),
            route("wild", Some("*.example.com"), "/"),
            route("deep-wild", Some("*.eu.example.com"), "/only"),
        ],
        &[],
        |_| Some(0),
        &Metrics::new(),
        &Default::default(),
    )
}

fn name(router: &Router, host: Option<&str>, path: &str) -> Option<String> {
    let asked = Asked {
        method: &http::Method::GET,
        headers: &http::HeaderMap::new(),
        query: None,
    };
    router.find(host, path, &asked).map(|r| r.name.to_string())
}

#[test]
fn exact_host_beats_wildcard_and_longest_prefix_wins() {
    let r = router();
    assert_eq!(
        name(&r, Some("api.example.com"), "/v2/users").as_deref(),
        Some("api-v2")
    );
    assert_eq!(
        name(&r, Some("API.Example.com:8443"), "/v1").as_deref(),
        Some("api")
    );
    assert_eq!(
        name(&r, Some("www.example.com"), "/x").as_deref(),
        Some("wild")
    );
}

#[test]
fn longest_wildcard_suffix_wins_and_does_not_fall_back() {
    let r = router();
    assert_eq!(
        name(&r, Some("a.eu.example.com"), "/only/x").as_deref(),
        Some("deep-wild")
    );
    // The host picked its virtual host; no path there matches, so no route (as in Envoy).
    assert_eq!(name(&r, Some("a.eu.example.com"), "/other"), None);
}

#[test]
fn wildcard_needs_a_label_before_the_suffix() {
    let r = router();
    assert_eq!(
        name(&r, Some("example.com"), "/static/a").as_deref(),
        Some("default-static")
    );
}

#[test]
fn unknown_or_missing_host_uses_the_default_virtual_host() {
    let r = router();
    assert_eq!(name(&r, Some("other.org"), "/").as_deref(), Some("default"));
    assert_eq!(
        name(&r, None, "/static/x").as_deref(),
        Some("default-static")
    );
    assert_eq!(
        name(&r, Some("[::1]:8080"), "/").as_deref(),
        Some("default")
    );
}

#[test]
fn no_default_route_means_no_match() {
    let r = Router::new(
        &[route("api", Some("api.example.com"), "/api")],
        &[],
        |_| Some(0),
        &Metrics::new(),
        &Default::default(),
    );
    assert_eq!(name(&r, Some("other.org"), "/api"), None);
    assert_eq!(name(&r, Some("api.example.com"), "/"), None);
}

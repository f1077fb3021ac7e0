//! Routing: host (exact, then longest `*.suffix`, then the default virtual host), then the
//! longest matching path prefix within that host, as Envoy and NGINX choose.

use crate::config::{HostPattern, RouteConfig};
use std::collections::HashMap;
use std::sync::Arc;

/// A matched route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's configured name (bounded: safe as a metric label).
    pub name: Arc<str>,
    /// Index of the pool in the snapshot.
    pub pool: usize,
    /// Index of this route among the routes to the same pool, in config order.
    pub slot: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: Option<u64>,
    /// Whether WebSocket upgrades pass.
    pub websocket: bool,
    prefix: Box<str>,
}

/// Routes grouped by host pattern, each group sorted by descending prefix length.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<Box<str>, Vec<Route>>,
    /// `(".example.com", routes)`, longest suffix first.
    suffix: Vec<(Box<str>, Vec<Route>)>,
    any_host: Vec<Route>,
}

impl Router {
    /// Builds the router; `pool_index` maps a pool name to its index in the snapshot.
    pub fn new(routes: &[RouteConfig], pool_index: impl Fn(&str) -> Option<usize>) -> Self {
        let mut router = Router::default();
        let mut slots: HashMap<usize, usize> = HashMap::new();
        for config in routes {
            let Some(pool) = pool_index(&config.pool) else {
                continue; // validation guarantees the pool exists
            };
            let slot = slots.entry(pool).or_default();
            let route = Route {
                name: config.name.as_str().into(),
                pool,
                slot: *slot,
                max_body_bytes: config.max_body_bytes,
                websocket: config.websocket,
                prefix: config.path_prefix.as_str().into(),
            };
            *slot += 1;
            let group = match &config.host {
                None => &mut router.any_host,
                Some(HostPattern::Exact(host)) => {
                    router.exact.entry(host.as_str().into()).or_default()
                }
                Some(HostPattern::Suffix(suffix)) => {
                    match router.suffix.iter().position(|(s, _)| **s == **suffix) {
                        Some(i) => &mut router.suffix[i].1,
                        None => {
                            router.suffix.push((suffix.as_str().into(), Vec::new()));
                            &mut router.suffix.last_mut().expect("just pushed").1
                        }
                    }
                }
            };
            group.push(route);
        }
        let by_longest_prefix = |routes: &mut Vec<Route>| {
            routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        };
        router.exact.values_mut().for_each(by_longest_prefix);
        router
            .suffix
            .iter_mut()
            .for_each(|(_, r)| by_longest_prefix(r));
        by_longest_prefix(&mut router.any_host);
        router
            .suffix
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        router
    }

    /// The route for a request. `host` is the raw `Host` header or URI authority (a port and
    /// upper case are allowed); `path` is the request path.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        let group = host
            .map(normalize_host)
            .and_then(|host| self.host_group(&host))
            .unwrap_or(&self.any_host);
        group.iter().find(|r| path.starts_with(&*r.prefix))
    }

    fn host_group(&self, host: &str) -> Option<&Vec<Route>> {
        if let Some(routes) = self.exact.get(host) {
            return Some(routes);
        }
        self.suffix
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(&**suffix))
            .map(|(_, routes)| routes)
    }
}

/// Strips the port and a trailing dot; lower-cases only when needed, so the usual lower-case
/// host costs no allocation.
fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        raw.rsplit_once(':').map_or(raw, |(host, _)| host)
    };
    let host = without_port.strip_suffix('.').unwrap_or(without_port);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: Option<&str>, prefix: &str) -> RouteConfig {
        RouteConfig {
            max_body_bytes: None,
            websocket: true,
            name: name.into(),
            host: host.map(|h| match h.strip_prefix('*') {
                Some(suffix) => HostPattern::Suffix(suffix.into()),
                None => HostPattern::Exact(h.into()),
            }),
            path_prefix: prefix.into(),
            pool: "p".into(),
        }
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
            |_| Some(0),
        )
    }

    fn name(router: &Router, host: Option<&str>, path: &str) -> Option<String> {
        router.find(host, path).map(|r| r.name.to_string())
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
        let r = Router::new(&[route("api", Some("api.example.com"), "/api")], |_| {
            Some(0)
        });
        assert_eq!(name(&r, Some("other.org"), "/api"), None);
        assert_eq!(name(&r, Some("api.example.com"), "/"), None);
    }
}

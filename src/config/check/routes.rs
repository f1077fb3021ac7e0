//! Routes: host patterns, how the path is matched, what the route does (a pool, a redirect, a
//! fixed response), and routes that can never match (a warning: allowed, rarely meant).

use super::Checker;
use super::values::is_dns_name;
use crate::config::file::RouteFile;
use crate::config::model::{HostPattern, PathMatch, Pattern, RouteAction, RouteConfig, ValueTest};
use std::collections::HashSet;
use toml::Spanned;

impl Checker {
    pub(super) fn routes(
        &mut self,
        routes: &[Spanned<RouteFile>],
        pools: &HashSet<&str>,
    ) -> Vec<RouteConfig> {
        self.unique_names(routes.iter().map(|r| &r.get_ref().name), "routes", "route");
        // Each checked route with its index in the file, its place, and whether it was read
        // without a problem (only those are compared with each other).
        let mut out: Vec<Checked> = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let problems_before = self.problem_count();
            let span = route.span();
            let route = route.get_ref();
            self.name(&route.name, &format!("routes[{i}].name"));
            let host = route.host.as_ref().and_then(|h| self.host(h, i));
            let Some(path) = self.path_match(route, i) else {
                continue;
            };
            let Some(action) = self.action(route, i, pools, &path, span.clone()) else {
                continue;
            };
            let max_body_bytes = route.max_body_bytes.as_ref().map(|_| {
                self.int(
                    &route.max_body_bytes,
                    &format!("routes[{i}].max_body_bytes"),
                    0..=i64::MAX,
                    0,
                )
            });
            let rewrite = self.rewrite(route, i, &path, &action);
            let host_rewrite = self.host_rewrite(route, i);
            let request_headers = self.header_rules(
                &route.request_headers,
                &format!("routes[{i}].request_headers"),
            );
            let response_headers = self.header_rules(
                &route.response_headers,
                &format!("routes[{i}].response_headers"),
            );
            let cors = route.cors.as_ref().and_then(|cors| {
                if !matches!(action, RouteAction::Pool(_)) {
                    self.report(
                        cors.span(),
                        format!("routes[{i}].cors: applies to a route that forwards to a pool"),
                    );
                }
                self.cors(cors, i)
            });
            let compress = self.compression(route, i);
            if compress.is_some() && !matches!(action, RouteAction::Pool(_)) {
                self.report(
                    span.clone(),
                    format!("routes[{i}].compress: applies to a route that forwards to a pool"),
                );
            }
            let config = RouteConfig {
                compress,
                cors,
                name: route.name.get_ref().clone(),
                host,
                rewrite,
                host_rewrite,
                request_headers,
                response_headers,
                path,
                methods: self.methods(&route.methods, i),
                headers: self.header_matches(&route.headers, i),
                query: self.query_matches(&route.query, i),
                action,
                max_body_bytes,
                websocket: route.websocket.unwrap_or(true),
                ip_rules: self.ip_rules(&route.ip_rules, i),
                access: self.access(route, i, pools),
            };
            let clean = self.problem_count() == problems_before;
            out.push(Checked {
                index: i,
                span,
                clean,
                route: config,
            });
        }
        let clean: Vec<&Checked> = out.iter().filter(|c| c.clean).collect();
        self.unreachable_routes(&clean);
        out.into_iter().map(|checked| checked.route).collect()
    }

    /// One of `path_prefix`, `path` and `path_regex`; `/` as a prefix when none is given.
    fn path_match(&mut self, route: &RouteFile, i: usize) -> Option<PathMatch> {
        let given = [&route.path_prefix, &route.path, &route.path_regex];
        if given.iter().filter(|p| p.is_some()).count() > 1 {
            let span = given
                .iter()
                .rev()
                .find_map(|p| p.as_ref())
                .map(Spanned::span);
            self.report(
                span.unwrap_or_default(),
                format!("routes[{i}]: give one of path_prefix, path and path_regex"),
            );
            return None;
        }
        let literal = |this: &mut Self, path: &Spanned<String>, field: &str| {
            let text = path.get_ref();
            if text.starts_with('/') && !text.contains(['?', '#']) {
                Some(text.clone())
            } else {
                this.report(
                    path.span(),
                    format!(
                        "routes[{i}].{field}: {text:?} must start with '/' and hold no '?' or '#'"
                    ),
                );
                None
            }
        };
        if let Some(prefix) = &route.path_prefix {
            return literal(self, prefix, "path_prefix").map(PathMatch::Prefix);
        }
        if let Some(path) = &route.path {
            return literal(self, path, "path").map(PathMatch::Exact);
        }
        match &route.path_regex {
            Some(regex) => self
                .pattern(regex, &format!("routes[{i}].path_regex"))
                .map(PathMatch::Regex),
            None => Some(PathMatch::Prefix("/".to_owned())),
        }
    }

    /// A regular expression matching a whole value, compiled once.
    pub(super) fn pattern(&mut self, source: &Spanned<String>, field: &str) -> Option<Pattern> {
        self.pattern_at(source.get_ref(), source.span(), field)
    }

    /// `pattern` for a source that is part of a value, reported at `span`.
    pub(super) fn pattern_at(
        &mut self,
        source: &str,
        span: std::ops::Range<usize>,
        field: &str,
    ) -> Option<Pattern> {
        match regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(1 << 20)
            .build()
        {
            Ok(regex) => Some(Pattern(regex)),
            Err(err) => {
                let reason = err.to_string();
                let reason = reason.lines().last().unwrap_or("invalid").trim();
                self.report(span, format!("{field}: not a regular expression: {reason}"));
                None
            }
        }
    }

    /// Exactly one of `pool`, `redirect` and `respond`.
    fn action(
        &mut self,
        route: &RouteFile,
        i: usize,
        pools: &HashSet<&str>,
        path: &PathMatch,
        span: std::ops::Range<usize>,
    ) -> Option<RouteAction> {
        match (&route.pool, &route.redirect, &route.respond) {
            (Some(pool), None, None) => {
                if !pools.contains(pool.get_ref().as_str()) {
                    self.report(
                        pool.span(),
                        format!("routes[{i}].pool: no pool named {:?}", pool.get_ref()),
                    );
                }
                Some(RouteAction::Pool(pool.get_ref().clone()))
            }
            (None, Some(redirect), None) => self
                .route_redirect(redirect, i, path)
                .map(RouteAction::Redirect),
            (None, None, Some(respond)) => Some(RouteAction::Respond(self.respond(respond, i))),
            _ => {
                self.report(
                    span,
                    format!(
                        "routes[{i}]: give one of pool, redirect and respond (what the route does)"
                    ),
                );
                None
            }
        }
    }

    /// Warns of a route that can never match, and refuses two that match the same requests.
    fn unreachable_routes(&mut self, routes: &[&Checked]) {
        let order = precedence(routes.iter().map(|c| &c.route));
        for (later, &b) in order.iter().enumerate() {
            let checked = routes[b];
            let (route, i) = (&checked.route, checked.index);
            let Some(&a) = order[..later]
                .iter()
                .find(|&&a| covers(&routes[a].route, route))
            else {
                continue;
            };
            let first = &routes[a].route;
            if covers(route, first) {
                self.report(
                    checked.span.clone(),
                    format!(
                        "routes[{i}]: route {:?} matches the same requests as route {:?}",
                        route.name, first.name
                    ),
                );
            } else {
                self.warn(
                    checked.span.clone(),
                    format!(
                        "routes[{i}]: route {:?} can never match: route {:?} comes first and matches every request it would",
                        route.name, first.name
                    ),
                );
            }
        }
    }

    pub(super) fn host(&mut self, host: &Spanned<String>, i: usize) -> Option<HostPattern> {
        let raw = host.get_ref().trim_end_matches('.').to_ascii_lowercase();
        let (pattern, name) = match raw.strip_prefix("*.") {
            Some(suffix) => (HostPattern::Suffix(format!(".{suffix}")), suffix),
            None => (HostPattern::Exact(raw.clone()), raw.as_str()),
        };
        if is_dns_name(name) {
            Some(pattern)
        } else {
            self.report(
                host.span(),
                format!(
                    "routes[{i}].host: {:?} is not a host name or a \"*.suffix\" wildcard",
                    host.get_ref()
                ),
            );
            None
        }
    }
}

/// A route as read, for the comparisons between routes.
struct Checked {
    index: usize,
    span: std::ops::Range<usize>,
    clean: bool,
    route: RouteConfig,
}

/// The routes' indices in the order a virtual host tries them (see `RouteConfig::rank`).
fn precedence<'a>(routes: impl Iterator<Item = &'a RouteConfig>) -> Vec<usize> {
    let mut order: Vec<(usize, _)> = routes.map(RouteConfig::rank).enumerate().collect();
    order.sort_by_key(|(i, rank)| (*rank, *i));
    order.into_iter().map(|(i, _)| i).collect()
}

/// Whether route `a` matches every request route `b` matches. (Since a route with more
/// conditions comes first, this happens to two routes of the same path and as many
/// conditions, `a` first in the file, whose conditions are wider: `[GET, POST]` before
/// `[GET]`, a header `present` before one `exact`.)
fn covers(a: &RouteConfig, b: &RouteConfig) -> bool {
    let path = match (&a.path, &b.path) {
        (PathMatch::Prefix(p), PathMatch::Prefix(q) | PathMatch::Exact(q)) => q.starts_with(p),
        (PathMatch::Prefix(p), PathMatch::Regex(_)) => p == "/",
        (PathMatch::Exact(p), PathMatch::Exact(q)) => p == q,
        (PathMatch::Regex(p), PathMatch::Regex(q)) => p == q,
        _ => false,
    };
    let methods = a.methods.is_empty()
        || (!b.methods.is_empty() && b.methods.iter().all(|m| a.methods.contains(m)));
    let headers = a.headers.iter().all(|wide| {
        b.headers
            .iter()
            .any(|narrow| wide.name == narrow.name && test_covers(&wide.test, &narrow.test))
    });
    let query = a.query.iter().all(|wide| {
        b.query.iter().any(|narrow| {
            wide.name == narrow.name && (wide.exact.is_none() || wide.exact == narrow.exact)
        })
    });
    path && a.host == b.host && methods && headers && query
}

/// Whether every value passing `narrow` passes `wide`.
fn test_covers(wide: &ValueTest, narrow: &ValueTest) -> bool {
    match (wide, narrow) {
        (ValueTest::Present, ValueTest::Absent) => false,
        (ValueTest::Present, _) => true,
        (ValueTest::Prefix(p), ValueTest::Exact(v) | ValueTest::Prefix(v)) => {
            v.starts_with(p.as_str())
        }
        (wide, narrow) => wide == narrow,
    }
}

//! Routes: host patterns, path prefixes, the pool each names.

use super::Checker;
use super::values::is_dns_name;
use crate::config::file::RouteFile;
use crate::config::model::{HostPattern, RouteConfig};
use std::collections::HashSet;
use toml::Spanned;

impl Checker {
    pub(super) fn routes(
        &mut self,
        routes: &[Spanned<RouteFile>],
        pools: &HashSet<&str>,
    ) -> Vec<RouteConfig> {
        self.unique_names(routes.iter().map(|r| &r.get_ref().name), "routes", "route");
        let mut matches = HashSet::new();
        let mut out = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let span = route.span();
            let route = route.get_ref();
            self.name(&route.name, &format!("routes[{i}].name"));
            let host = route.host.as_ref().and_then(|h| self.host(h, i));
            let path_prefix = match &route.path_prefix {
                None => "/".to_owned(),
                Some(p) if p.get_ref().starts_with('/') && !p.get_ref().contains(['?', '#']) => {
                    p.get_ref().clone()
                }
                Some(p) => {
                    self.report(
                        p.span(),
                        format!(
                            "routes[{i}].path_prefix: {:?} must start with '/' and hold no '?' or '#'",
                            p.get_ref()
                        ),
                    );
                    continue;
                }
            };
            if !pools.contains(route.pool.get_ref().as_str()) {
                self.report(
                    route.pool.span(),
                    format!("routes[{i}].pool: no pool named {:?}", route.pool.get_ref()),
                );
            }
            if !matches.insert((host.clone(), path_prefix.clone())) {
                self.report(
                    span.clone(),
                    format!(
                        "routes[{i}]: another route already matches the same host and path_prefix {path_prefix:?}"
                    ),
                );
            }
            let max_body_bytes = route.max_body_bytes.as_ref().map(|_| {
                self.int(
                    &route.max_body_bytes,
                    &format!("routes[{i}].max_body_bytes"),
                    0..=i64::MAX,
                    0,
                )
            });
            out.push(RouteConfig {
                name: route.name.get_ref().clone(),
                host,
                path_prefix,
                pool: route.pool.get_ref().clone(),
                max_body_bytes,
                websocket: route.websocket.unwrap_or(true),
            });
        }
        out
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

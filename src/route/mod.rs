//! Routing: host (exact, then longest `*.suffix`, then the default virtual host), then, within
//! that host, the first route in precedence order whose path and conditions match (exact
//! paths, then regular expressions, then prefixes longest first; more conditions first among
//! equals; then file order: `RouteConfig::rank`). A route sends the request to a pool or
//! answers it itself (a redirect, a fixed response).

pub mod access;
pub mod client;
mod cors;
mod header_rules;
mod matching;
pub mod normalize;
mod policies;
#[cfg(test)]
mod precedence_tests;
mod scratch;

pub use cors::CorsPolicy;
pub use header_rules::{HeaderEdits, Vars};
pub use matching::Asked;
pub use policies::{CompressPolicy, HostRewriteTo, PathRewrite, Policies, Rewritten};

use crate::config::{HostPattern, PoolConfig, Redirect, RouteAction, RouteConfig};
use crate::metrics::{Metrics, RequestMetrics};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use matching::{Conditions, PathRule};
use std::collections::HashMap;
use std::sync::Arc;

/// A matched route.
#[derive(Debug)]
pub struct Route {
    /// The route's configured name (bounded: safe as a metric label).
    pub name: Arc<str>,
    /// Where its requests go.
    pub target: Target,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: Option<u64>,
    /// Whether WebSocket upgrades pass.
    pub websocket: bool,
    /// Rewrites and header edits; `None` for a route (and pool) without any.
    pub policies: Option<Arc<Policies>>,
    /// Who may use the route, by address; `None`: anyone.
    pub ip_rules: Option<Box<[crate::config::IpRule]>>,
    /// Auth and rate limits; `None`: none.
    pub gate: Option<Arc<access::Gate>>,
    path: PathRule,
    conditions: Option<Box<Conditions>>,
}

/// What a route does with a request.
#[derive(Debug)]
pub enum Target {
    /// Sends it to a pool.
    Pool {
        /// Index of the pool in the snapshot.
        pool: usize,
        /// Index of this route among the routes to the same pool, in config order.
        slot: usize,
    },
    /// Answers it.
    Answer(Arc<Answer>),
}

/// A response a route gives itself, built when the config is applied.
#[derive(Debug)]
pub struct Answer {
    /// What it answers.
    pub kind: AnswerKind,
    /// The route's request metrics (no pool, no backend).
    pub metrics: Arc<RequestMetrics>,
    /// The route's path prefix, which a redirect's `prefix` replaces.
    pub prefix: Option<Box<str>>,
}

/// A redirect or a fixed response.
#[derive(Debug)]
pub enum AnswerKind {
    /// A redirect; what it does not replace is the request's own.
    Redirect(Redirect),
    /// A fixed response.
    Respond {
        /// Its status.
        status: StatusCode,
        /// Its `Content-Type`.
        content_type: HeaderValue,
        /// Its body.
        body: Bytes,
    },
}

impl std::fmt::Display for AnswerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redirect(redirect) => write!(f, "redirect {}", redirect.status.as_u16()),
            Self::Respond { status, .. } => write!(f, "respond {}", status.as_u16()),
        }
    }
}

/// Routes grouped by host pattern, each group in precedence order.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<Box<str>, Vec<Route>>,
    /// `(".example.com", routes)`, longest suffix first.
    suffix: Vec<(Box<str>, Vec<Route>)>,
    any_host: Vec<Route>,
    /// Every route as the admin API lists it, in precedence order.
    listing: Vec<Listed>,
}

/// A route as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// What it matches and does, in one line.
    pub summary: String,
}

impl Router {
    /// Builds the router; `pool_index` maps a pool name to its index in the snapshot, routes
    /// that answer themselves get their request metrics from `metrics`, and access policies
    /// their lasting state from `shelf`.
    pub fn new(
        routes: &[RouteConfig],
        pools: &[PoolConfig],
        pool_index: impl Fn(&str) -> Option<usize>,
        metrics: &Metrics,
        shelf: &access::Shelf,
    ) -> Self {
        let mut router = Router::default();
        let mut order: Vec<(usize, &RouteConfig)> = routes.iter().enumerate().collect();
        order.sort_by_key(|(i, route)| (route.rank(), *i));
        // Slots number a pool's routes in config order, as the pool's metrics expect.
        let mut slot_of: HashMap<&str, usize> = HashMap::new();
        let mut next: HashMap<usize, usize> = HashMap::new();
        for config in routes {
            if let Some(pool) = config.pool().and_then(&pool_index) {
                let slot = next.entry(pool).or_default();
                slot_of.insert(&config.name, *slot);
                *slot += 1;
            }
        }
        router.listing = order
            .iter()
            .map(|(_, config)| Listed {
                name: config.name.clone(),
                summary: config.to_string(),
            })
            .collect();
        for (_, config) in order {
            let target = match &config.action {
                RouteAction::Pool(name) => {
                    let Some(pool) = pool_index(name) else {
                        continue; // validation guarantees the pool exists
                    };
                    let slot = slot_of.get(config.name.as_str()).copied().unwrap_or(0);
                    Target::Pool { pool, slot }
                }
                RouteAction::Redirect(redirect) => {
                    let kind = AnswerKind::Redirect(redirect.clone());
                    Target::Answer(Arc::new(Answer::new(config, kind, metrics)))
                }
                RouteAction::Respond(respond) => {
                    let kind = AnswerKind::Respond {
                        status: respond.status,
                        // Checked as a header value when the config was read.
                        content_type: HeaderValue::from_str(&respond.content_type)
                            .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8")),
                        body: Bytes::from(respond.body.clone()),
                    };
                    Target::Answer(Arc::new(Answer::new(config, kind, metrics)))
                }
            };
            let route = Route {
                name: config.name.as_str().into(),
                target,
                max_body_bytes: config.max_body_bytes,
                websocket: config.websocket,
                policies: Policies::of(
                    config,
                    pools
                        .iter()
                        .find(|p| Some(p.name.as_str()) == config.pool()),
                    metrics,
                )
                .map(Arc::new),
                ip_rules: (!config.ip_rules.is_empty()).then(|| config.ip_rules.clone().into()),
                gate: access::Gate::of(config, &pool_index, metrics, shelf).map(Arc::new),
                path: PathRule::new(&config.path),
                conditions: Conditions::of(config),
            };
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
        router
            .suffix
            .sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        router
    }

    /// The route for a request. `host` is the raw `Host` header or URI authority (a port and
    /// upper case are allowed); `path` is the request path; `asked` what conditions look at.
    #[inline]
    pub fn find(&self, host: Option<&str>, path: &str, asked: &Asked<'_>) -> Option<&Route> {
        // Without virtual hosts, every request tries the same routes: the host is not read.
        let virtual_hosts = !self.exact.is_empty() || !self.suffix.is_empty();
        let group = host
            .filter(|_| virtual_hosts)
            .map(normalize_host)
            .and_then(|host| self.host_group(&host))
            .unwrap_or(&self.any_host);
        group
            .iter()
            .find(|r| r.path.matches(path) && r.conditions.as_ref().is_none_or(|c| c.hold(asked)))
    }

    /// Every route, in precedence order (virtual hosts apart, as each tries its own).
    pub fn listing(&self) -> &[Listed] {
        &self.listing
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

impl Answer {
    fn new(config: &RouteConfig, kind: AnswerKind, metrics: &Metrics) -> Self {
        Self {
            kind,
            metrics: Arc::new(RequestMetrics::new(metrics, &config.name, "", "")),
            prefix: PathRule::new(&config.path).prefix().map(Into::into),
        }
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
mod host_tests;

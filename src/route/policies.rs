//! What a route does to the requests it forwards and to their responses, compiled when the
//! config is applied: path and host rewrites, and header edits (the pool's, then the
//! route's). A route with none holds no `Policies` at all, so it pays nothing for them.

use super::header_rules::{HeaderEdits, Vars};
use super::scratch;
use crate::config::lasting;
use crate::config::{HeaderRules, HostRewrite, PoolConfig, RouteConfig};
use crate::metrics::Metrics;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Uri};

/// A route's policies.
#[derive(Debug)]
pub struct Policies {
    /// How the path is rewritten; `None`: forwarded as received.
    pub rewrite: Option<PathRewrite>,
    /// What the backend is told the host is.
    pub host: HostRewriteTo,
    /// Edits of the forwarded request's headers.
    pub request_headers: Option<HeaderEdits>,
    /// Edits of the response's headers.
    pub response_headers: Option<HeaderEdits>,
    /// Cross-origin requests from browsers.
    pub cors: Option<super::CorsPolicy>,
    /// Response compression.
    pub compress: Option<CompressPolicy>,
}

/// A route's compression, with its byte counters per encoding (in, out).
#[derive(Debug)]
pub struct CompressPolicy {
    /// What and how to compress.
    pub config: crate::config::Compression,
    /// `switchyard_compression_bytes_{in,out}_total` of the route, indexed by `Encoding`.
    pub counters: [(metrics::Counter, metrics::Counter); 3],
}

/// The host a backend is told, compiled.
#[derive(Debug)]
pub enum HostRewriteTo {
    /// The client's.
    Keep,
    /// This one.
    To(HeaderValue),
    /// The backend's own address, per attempt.
    Backend,
}

impl Policies {
    /// The policies of `route` to a pool configured as `pool`, or `None` when there are none.
    pub fn of(route: &RouteConfig, pool: Option<&PoolConfig>, metrics: &Metrics) -> Option<Self> {
        let edits = |first: Option<&HeaderRules>, then: &HeaderRules| {
            let rules = first.into_iter().chain([then]);
            HeaderEdits::of(rules, &route.name)
        };
        let policies = Self {
            rewrite: (!route.rewrite.is_none()).then(|| PathRewrite::new(route)),
            host: match &route.host_rewrite {
                HostRewrite::Keep => HostRewriteTo::Keep,
                // Checked as `host[:port]` when the config was read.
                HostRewrite::To(host) => HeaderValue::from_str(host)
                    .map_or(HostRewriteTo::Keep, |v| {
                        HostRewriteTo::To(lasting::value(&v))
                    }),
                HostRewrite::Backend => HostRewriteTo::Backend,
            },
            request_headers: edits(pool.map(|p| &p.request_headers), &route.request_headers),
            response_headers: edits(pool.map(|p| &p.response_headers), &route.response_headers),
            cors: route.cors.as_ref().map(super::CorsPolicy::new),
            compress: route.compress.as_ref().map(|config| CompressPolicy {
                config: config.clone(),
                counters: crate::config::Encoding::ALL.map(|encoding| {
                    let labels = [
                        ("route", route.name.as_str()),
                        ("encoding", encoding.as_str()),
                    ];
                    (
                        metrics.counter(crate::metrics::COMPRESSED_IN, &labels),
                        metrics.counter(crate::metrics::COMPRESSED_OUT, &labels),
                    )
                }),
            }),
        };
        let none = policies.rewrite.is_none()
            && matches!(policies.host, HostRewriteTo::Keep)
            && policies.request_headers.is_none()
            && policies.response_headers.is_none()
            && policies.cors.is_none()
            && policies.compress.is_none();
        (!none).then_some(policies)
    }
}

impl Policies {
    /// The response policies: header edits, then the CORS headers for a request from `origin`.
    pub fn respond(&self, headers: &mut HeaderMap, vars: &Vars<'_>, origin: Option<&HeaderValue>) {
        if let Some(edits) = &self.response_headers {
            edits.apply(headers, vars);
        }
        if let Some(cors) = &self.cors {
            cors.respond(origin, headers);
        }
    }
}

/// A path rewrite: the matched prefix stripped, a prefix added, a regex replacement.
#[derive(Debug)]
pub struct PathRewrite {
    /// The prefix to strip, and its `X-Forwarded-Prefix` value (none for `/`), built once.
    strip: Option<(String, Option<HeaderValue>)>,
    add: Option<String>,
    regex: Option<(regex::Regex, String)>,
    /// Whether the result may hold a dot segment though the request path did not: a regex
    /// replacement, or a strip that ends inside a segment (`/api` from `/api../x`).
    may_make_dots: bool,
}

/// What a rewrite made of a request target.
#[derive(Debug)]
pub struct Rewritten {
    /// The new target (path and query).
    pub target: PathAndQuery,
    /// The prefix stripped, for `X-Forwarded-Prefix`.
    pub stripped: Option<HeaderValue>,
}

impl PathRewrite {
    fn new(route: &RouteConfig) -> Self {
        let strip = match (&route.path, route.rewrite.strip_prefix) {
            (crate::config::PathMatch::Prefix(prefix), true) => {
                let shown = prefix.trim_end_matches('/');
                let header = (!shown.is_empty()).then(|| {
                    HeaderValue::from_str(shown)
                        .ok()
                        .map(|v| lasting::value(&v))
                });
                Some((prefix.clone(), header.flatten()))
            }
            _ => None,
        };
        // The added prefix's own dot segments are resolved once: `/v1/..` + `/x` is `/x`.
        let add = route.rewrite.add_prefix.as_ref().map(|add| {
            if super::normalize::has_dot_segment(add) {
                super::normalize::remove_dot_segments(add)
                    .trim_end_matches('/')
                    .to_owned()
            } else {
                add.clone()
            }
        });
        let regex = route
            .rewrite
            .regex
            .as_ref()
            .map(|(p, r)| (p.0.clone(), r.clone()));
        let may_make_dots = regex.is_some()
            || strip
                .as_ref()
                .is_some_and(|(prefix, _)| !prefix.ends_with('/'));
        Self {
            strip,
            add,
            regex,
            may_make_dots,
        }
    }

    /// The rewritten target of `uri`, its query kept; `None` when the result is not a valid
    /// target (a clean 500 for the client: the config's fault, not the backend's). The path is
    /// never percent-decoded; dot segments a replacement makes are removed again.
    pub fn apply(&self, uri: &Uri) -> Option<Rewritten> {
        let mut path = uri.path();
        let mut stripped = None;
        if let Some((prefix, header)) = &self.strip {
            if let Some(rest) = path.strip_prefix(prefix.as_str()) {
                path = rest;
                stripped = header.clone();
            }
        }
        // The added prefix, a `/` if stripping left none, the rest, then the query.
        let mut add = self.add.as_deref().unwrap_or("");
        let mut slash = !path.starts_with('/');
        let reshaped;
        if self.regex.is_some() || self.may_make_dots {
            let joined = [add, if slash { "/" } else { "" }, path].concat();
            reshaped = self.reshape(joined)?;
            (add, slash, path) = ("", false, reshaped.as_str());
        }
        let query = uri.query();
        let room = add.len() + 1 + path.len() + query.map_or(0, |q| q.len() + 1);
        let target = scratch::cut(room, |out| {
            out.extend_from_slice(add.as_bytes());
            if slash {
                out.extend_from_slice(b"/");
            }
            out.extend_from_slice(path.as_bytes());
            if let Some(query) = query {
                out.extend_from_slice(b"?");
                out.extend_from_slice(query.as_bytes());
            }
        });
        let target = PathAndQuery::from_maybe_shared(target).ok()?;
        Some(Rewritten { target, stripped })
    }

    /// `path` with the regex replacement made and the dot segments it may have made removed.
    fn reshape(&self, mut path: String) -> Option<String> {
        if let Some((regex, replacement)) = &self.regex {
            if let Some(captures) = regex.captures(&path) {
                let mut replaced = String::with_capacity(path.len());
                captures.expand(replacement, &mut replaced);
                path = replaced;
            }
            if !path.starts_with('/') {
                return None;
            }
        }
        if self.may_make_dots && super::normalize::has_dot_segment(&path) {
            path = super::normalize::remove_dot_segments(&path);
        }
        Some(path)
    }
}

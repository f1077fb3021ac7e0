//! What a route does to the requests it forwards and to their responses, compiled when the
//! config is applied: path and host rewrites, and header edits (the pool's, then the
//! route's). A route with none holds no `Policies` at all, so it pays nothing for them.

use crate::config::lasting;
use crate::config::{HeaderRules, HostRewrite, Piece, PoolConfig, RouteConfig, Variable};
use crate::metrics::Metrics;
use bytes::BytesMut;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

/// What templates are filled from: the request's facts.
#[derive(Debug)]
pub struct Vars<'a> {
    /// The client's address.
    pub client_ip: &'a HeaderValue,
    /// The request's `X-Request-Id`.
    pub request_id: &'a HeaderValue,
    /// The host the client asked for.
    pub host: Option<&'a HeaderValue>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The route's name.
    pub route: &'a str,
    /// The backend's name, once chosen.
    pub backend: Option<&'a str>,
}

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
        // One buffer: the added prefix, a `/` if stripping left none, the rest, the query.
        let query = uri.query();
        let capacity = path.len()
            + self.add.as_ref().map_or(0, String::len)
            + 1
            + query.map_or(0, |q| q.len() + 1);
        let mut target = String::with_capacity(capacity);
        if let Some(prefix) = &self.add {
            target.push_str(prefix);
        }
        if !path.starts_with('/') {
            target.push('/');
        }
        target.push_str(path);
        if let Some((regex, replacement)) = &self.regex {
            if let Some(captures) = regex.captures(&target) {
                let mut replaced = String::with_capacity(capacity);
                captures.expand(replacement, &mut replaced);
                target = replaced;
            }
            if !target.starts_with('/') {
                return None;
            }
        }
        if self.may_make_dots && super::normalize::has_dot_segment(&target) {
            target = super::normalize::remove_dot_segments(&target);
        }
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        let target = PathAndQuery::try_from(target).ok()?;
        Some(Rewritten { target, stripped })
    }
}

/// Header edits: set, add, remove, in that order.
#[derive(Debug)]
pub struct HeaderEdits {
    set: Box<[(HeaderName, Value)]>,
    add: Box<[(HeaderName, Value)]>,
    remove: Box<[HeaderName]>,
}

/// A header value: fixed, one variable, or text and variables filled in per request.
#[derive(Debug)]
enum Value {
    Fixed(HeaderValue),
    Var(Variable),
    Template(Box<[Piece]>),
}

impl HeaderEdits {
    /// The edits of `rules`, one after the other, for route `route`; `None` when there is
    /// none.
    fn of<'a>(rules: impl Iterator<Item = &'a HeaderRules>, route: &str) -> Option<Self> {
        let (mut set, mut add, mut remove) = (Vec::new(), Vec::new(), Vec::new());
        let value = |pieces: &[Piece]| Value::of(pieces, route);
        for rules in rules {
            set.extend(
                rules
                    .set
                    .iter()
                    .map(|(n, t)| (lasting::name(n), value(&t.0))),
            );
            add.extend(
                rules
                    .add
                    .iter()
                    .map(|(n, t)| (lasting::name(n), value(&t.0))),
            );
            remove.extend(rules.remove.iter().cloned());
        }
        let none = set.is_empty() && add.is_empty() && remove.is_empty();
        (!none).then(|| Self {
            set: set.into(),
            add: add.into(),
            remove: remove.into(),
        })
    }

    /// Applies the edits to `headers`, filling templates from `vars`.
    pub fn apply(&self, headers: &mut HeaderMap, vars: &Vars<'_>) {
        for (name, value) in &self.set {
            if let Some(value) = value.fill(vars) {
                headers.insert(name.clone(), value);
            }
        }
        for (name, value) in &self.add {
            if let Some(value) = value.fill(vars) {
                headers.append(name.clone(), value);
            }
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

impl Value {
    /// The value of `pieces` on route `route`: `{route}` is known already, and what is then
    /// all text is fixed once.
    fn of(pieces: &[Piece], route: &str) -> Self {
        let mut known: Vec<Piece> = Vec::new();
        for piece in pieces {
            let piece = match piece {
                Piece::Var(Variable::Route) => Piece::Text(route.to_owned()),
                other => other.clone(),
            };
            match (known.last_mut(), piece) {
                (Some(Piece::Text(before)), Piece::Text(text)) => before.push_str(&text),
                (_, piece) => known.push(piece),
            }
        }
        match known.as_slice() {
            [] => Self::Fixed(HeaderValue::from_static("")),
            // Checked as a header value when the config was read (a route name is one too).
            [Piece::Text(text)] => HeaderValue::from_str(text).map_or_else(
                |_| Self::Template(known.clone().into()),
                |value| Self::Fixed(lasting::value(&value)),
            ),
            [Piece::Var(variable)] => Self::Var(*variable),
            _ => Self::Template(known.into()),
        }
    }

    /// The value for this request; `None` if a variable makes it invalid (a header is then
    /// left out rather than sent broken).
    fn fill(&self, vars: &Vars<'_>) -> Option<HeaderValue> {
        let pieces = match self {
            Self::Fixed(value) => return Some(value.clone()),
            Self::Var(variable) => return vars.value(*variable),
            Self::Template(pieces) => pieces,
        };
        let mut out = BytesMut::new();
        for piece in pieces.iter() {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Var(variable) => out.extend_from_slice(vars.get(*variable)),
            }
        }
        HeaderValue::from_maybe_shared(out.freeze()).ok()
    }
}

impl Vars<'_> {
    /// One variable as a whole header value: the request's own values are shared, not copied.
    fn value(&self, variable: Variable) -> Option<HeaderValue> {
        match variable {
            Variable::ClientIp => Some(self.client_ip.clone()),
            Variable::RequestId => Some(self.request_id.clone()),
            Variable::Host => self.host.cloned(),
            Variable::Scheme => Some(HeaderValue::from_static(self.scheme)),
            Variable::Route => HeaderValue::from_str(self.route).ok(),
            Variable::Backend => self.backend.and_then(|b| HeaderValue::from_str(b).ok()),
        }
    }

    fn get(&self, variable: Variable) -> &[u8] {
        match variable {
            Variable::ClientIp => self.client_ip.as_bytes(),
            Variable::RequestId => self.request_id.as_bytes(),
            Variable::Host => self.host.map_or(&b""[..], HeaderValue::as_bytes),
            Variable::Scheme => self.scheme.as_bytes(),
            Variable::Route => self.route.as_bytes(),
            Variable::Backend => self.backend.map_or(&b""[..], str::as_bytes),
        }
    }
}

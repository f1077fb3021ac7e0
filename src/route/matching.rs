//! What a route asks of a request besides its host: the path (a prefix, exactly, or a regular
//! expression) and, only for routes that have them, conditions on the method, headers and
//! query. A route without conditions holds `None` and pays nothing for them.

use crate::config::{HeaderMatch, PathMatch, QueryMatch, RouteConfig, ValueTest};
use http::{HeaderMap, Method};

/// The parts of a request a route may look at besides host and path.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// Its query, without `?`.
    pub query: Option<&'a str>,
}

/// How a route matches the path.
#[derive(Debug)]
pub(super) enum PathRule {
    Prefix(Box<str>),
    Exact(Box<str>),
    Regex(regex::Regex),
}

impl PathRule {
    pub fn new(path: &PathMatch) -> Self {
        match path {
            PathMatch::Prefix(prefix) => Self::Prefix(prefix.as_str().into()),
            PathMatch::Exact(path) => Self::Exact(path.as_str().into()),
            PathMatch::Regex(pattern) => Self::Regex(pattern.0.clone()),
        }
    }

    #[inline]
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Prefix(prefix) => path.starts_with(&**prefix),
            Self::Exact(exact) => path == &**exact,
            Self::Regex(regex) => regex.is_match(path),
        }
    }

    /// The prefix matched, for a prefix route.
    pub fn prefix(&self) -> Option<&str> {
        match self {
            Self::Prefix(prefix) => Some(prefix),
            Self::Exact(_) | Self::Regex(_) => None,
        }
    }
}

/// A route's conditions on method, headers and query: all must hold.
#[derive(Debug)]
pub(super) struct Conditions {
    methods: Box<[Method]>,
    headers: Box<[HeaderMatch]>,
    query: Box<[QueryMatch]>,
}

impl Conditions {
    /// The route's conditions, or `None` when it has none.
    pub fn of(route: &RouteConfig) -> Option<Box<Self>> {
        (route.conditions() > 0).then(|| {
            Box::new(Self {
                methods: route.methods.clone().into(),
                headers: route.headers.clone().into(),
                query: route.query.clone().into(),
            })
        })
    }

    pub fn hold(&self, asked: &Asked<'_>) -> bool {
        (self.methods.is_empty() || self.methods.contains(asked.method))
            && self.headers.iter().all(|h| header_holds(h, asked.headers))
            && self.query.iter().all(|q| query_holds(q, asked.query))
    }
}

/// Whether one of the header's values passes the test (for `Absent`: none is there).
fn header_holds(condition: &HeaderMatch, headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(&condition.name).iter();
    let passes = |value: &http::HeaderValue| match &condition.test {
        ValueTest::Exact(exact) => value.as_bytes() == exact.as_bytes(),
        ValueTest::Prefix(prefix) => value.as_bytes().starts_with(prefix.as_bytes()),
        ValueTest::Regex(pattern) => value.to_str().is_ok_and(|v| pattern.0.is_match(v)),
        ValueTest::Present => true,
        ValueTest::Absent => false,
    };
    match condition.test {
        ValueTest::Absent => values.next().is_none(),
        _ => values.any(passes),
    }
}

/// Whether the query has the parameter (with the value, when one is asked for); names and
/// values are compared percent-decoded, `+` as a space.
fn query_holds(condition: &QueryMatch, query: Option<&str>) -> bool {
    let Some(query) = query else { return false };
    form_urlencoded::parse(query.as_bytes()).any(|(name, value)| {
        name == condition.name.as_str()
            && condition
                .exact
                .as_deref()
                .is_none_or(|exact| value == exact)
    })
}

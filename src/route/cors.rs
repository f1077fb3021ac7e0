//! A route's CORS policy (the Fetch standard): preflights from allowed origins answered by the
//! proxy, and the `Access-Control-*` headers on the responses to allowed origins. Header values
//! are built once, when the config is applied.

use crate::config::Cors;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method};

/// A route's CORS policy, compiled.
#[derive(Debug)]
pub struct CorsPolicy {
    /// `None`: any origin.
    origins: Option<Box<[HeaderValue]>>,
    credentials: bool,
    methods: HeaderValue,
    headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
}

impl CorsPolicy {
    /// The compiled `cors`.
    pub fn new(cors: &Cors) -> Self {
        let list = |items: Vec<&str>| {
            (!items.is_empty())
                .then(|| HeaderValue::from_str(&items.join(", ")).ok())
                .flatten()
        };
        Self {
            origins: cors.origins.as_ref().map(|origins| {
                origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok())
                    .collect()
            }),
            credentials: cors.credentials,
            methods: list(cors.methods.iter().map(Method::as_str).collect())
                .unwrap_or(HeaderValue::from_static("GET, HEAD, POST")),
            headers: list(cors.headers.iter().map(|h| h.as_str()).collect()),
            expose: list(cors.expose.iter().map(|h| h.as_str()).collect()),
            max_age: cors.max_age.map(|age| HeaderValue::from(age.as_secs())),
        }
    }

    /// The `Access-Control-Allow-Origin` for a request from `origin`, if it is allowed.
    fn allowed(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.origins {
            None if !self.credentials => Some(HeaderValue::from_static("*")),
            None => Some(origin.clone()),
            Some(origins) => origins
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
                .then(|| origin.clone()),
        }
    }

    /// The headers of the proxy's own answer to a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) from an allowed origin; `None` for anything else, which
    /// goes on to the backend.
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<HeaderMap> {
        if method != Method::OPTIONS || !headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
            return None;
        }
        let allowed = self.allowed(headers.get(ORIGIN)?)?;
        let mut answer = HeaderMap::new();
        answer.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        answer.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        if let Some(allowed) = &self.headers {
            answer.insert(ACCESS_CONTROL_ALLOW_HEADERS, allowed.clone());
        }
        if let Some(age) = &self.max_age {
            answer.insert(ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        if self.credentials {
            answer.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        answer.insert(
            VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        Some(answer)
    }

    /// Adds the CORS headers to a response for a request from `origin` (none for others); a
    /// backend's own `Access-Control-*` answers are replaced.
    pub fn respond(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if self.origins.is_some() {
            headers.append(VARY, HeaderValue::from_static("Origin"));
        }
        let Some(allowed) = origin.and_then(|origin| self.allowed(origin)) else {
            return;
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

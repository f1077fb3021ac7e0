//! Routes as the config states them: what a route matches (host, path, methods, headers,
//! query) and what it does with a request (send it to a pool, redirect it, or answer it).
//!
//! Longer than most files on purpose: a route's whole vocabulary (matching, actions, rewrites,
//! header rules) in one place, each type small.

use http::{HeaderName, Method, StatusCode};
use std::cmp::Reverse;

/// Which hosts a route answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// One host name, lower-case, no port.
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Suffix(String),
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// `None` matches any host (the default virtual host).
    pub host: Option<HostPattern>,
    /// How the request path is matched.
    pub path: PathMatch,
    /// Methods matched; empty: any.
    pub methods: Vec<Method>,
    /// Header conditions, all of which must hold.
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions, all of which must hold.
    pub query: Vec<QueryMatch>,
    /// What the route does with a request it matches.
    pub action: RouteAction,
    /// How the path is rewritten before it is forwarded.
    pub rewrite: Rewrite,
    /// What the backend is told the host is.
    pub host_rewrite: HostRewrite,
    /// Header rules for the request forwarded (after the pool's).
    pub request_headers: HeaderRules,
    /// Header rules for the response returned (after the pool's).
    pub response_headers: HeaderRules,
    /// Cross-origin requests from browsers, if the route allows any.
    pub cors: Option<Cors>,
    /// Response compression, if the route compresses.
    pub compress: Option<Compression>,
    /// Largest request body accepted, in bytes (413 beyond); `None`: no limit.
    pub max_body_bytes: Option<u64>,
    /// Whether `Upgrade: websocket` requests are passed through.
    pub websocket: bool,
    /// Who may use the route, by client address: the first rule that covers it decides.
    pub ip_rules: Vec<super::IpRule>,
    /// Auth and rate limits.
    pub access: super::AccessConfig,
}

impl RouteConfig {
    /// A route named `name` from `host` (any, when `None`) and path prefix `prefix` to pool
    /// `pool`, with nothing else: what code that builds routes itself starts from.
    pub fn to_pool(name: &str, host: Option<HostPattern>, prefix: &str, pool: &str) -> Self {
        Self {
            name: name.to_owned(),
            host,
            path: PathMatch::Prefix(prefix.to_owned()),
            methods: Vec::new(),
            headers: Vec::new(),
            query: Vec::new(),
            action: RouteAction::Pool(pool.to_owned()),
            rewrite: Rewrite::default(),
            host_rewrite: HostRewrite::Keep,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            cors: None,
            compress: None,
            max_body_bytes: None,
            websocket: true,
            ip_rules: Vec::new(),
            access: super::AccessConfig::default(),
        }
    }

    /// The pool the route sends requests to, if it does.
    pub fn pool(&self) -> Option<&str> {
        match &self.action {
            RouteAction::Pool(pool) => Some(pool),
            RouteAction::Redirect(_) | RouteAction::Respond(_) => None,
        }
    }

    /// How many conditions besides host and path the route has (more is more specific).
    pub fn conditions(&self) -> usize {
        usize::from(!self.methods.is_empty()) + self.headers.len() + self.query.len()
    }

    /// Where the route stands among those of its virtual host, lowest first: exact paths,
    /// then regular expressions, then prefixes, longest first; among equals, the route with
    /// more conditions first. Ties go to file order.
    pub fn rank(&self) -> (u8, Reverse<usize>, Reverse<usize>) {
        let (kind, length) = match &self.path {
            PathMatch::Exact(_) => (0, 0),
            PathMatch::Regex(_) => (1, 0),
            PathMatch::Prefix(prefix) => (2, prefix.len()),
        };
        (kind, Reverse(length), Reverse(self.conditions()))
    }
}

impl std::fmt::Display for RouteConfig {
    /// One line: what it matches, then what it does (`api.test/v1 [GET] -> pool api`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            None => f.write_str("*")?,
            Some(HostPattern::Exact(host)) => f.write_str(host)?,
            Some(HostPattern::Suffix(suffix)) => write!(f, "*{suffix}")?,
        }
        match &self.path {
            PathMatch::Prefix(prefix) => write!(f, "{prefix}")?,
            PathMatch::Exact(path) => write!(f, "{path} (exact)")?,
            PathMatch::Regex(regex) => write!(f, " ~{}", regex.0.as_str())?,
        }
        if !self.methods.is_empty() {
            let methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
            write!(f, " [{}]", methods.join(","))?;
        }
        for header in &self.headers {
            write!(f, " [{}]", header.name)?;
        }
        for parameter in &self.query {
            write!(f, " ?{}", parameter.name)?;
        }
        let access = &self.access;
        let guards = [
            (access.basic_auth.is_some(), "basic auth"),
            (access.jwt.is_some(), "jwt"),
            (access.forward_auth.is_some(), "forward auth"),
            (!access.rate_limits.is_empty(), "rate limit"),
        ];
        let guards: Vec<&str> = guards
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        if !guards.is_empty() {
            write!(f, " ({})", guards.join(", "))?;
        }
        match &self.action {
            RouteAction::Pool(pool) => write!(f, " -> {pool}"),
            RouteAction::Redirect(redirect) => {
                write!(f, " -> redirect {}", redirect.status.as_u16())
            }
            RouteAction::Respond(respond) => write!(f, " -> respond {}", respond.status.as_u16()),
        }
    }
}

/// How a route matches the request path (after the request check normalised it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path starts with this; `/` matches every path.
    Prefix(String),
    /// The path is exactly this.
    Exact(String),
    /// The whole path matches this regular expression.
    Regex(Pattern),
}

/// A compiled regular expression (linear time: the `regex` crate), equal to another when
/// their sources are.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

/// A condition on a request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// The header.
    pub name: HeaderName,
    /// What its value must be.
    pub test: ValueTest,
}

/// What a header's value must be. With several values of one name, any one may satisfy it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueTest {
    /// Exactly this.
    Exact(String),
    /// Starting with this.
    Prefix(String),
    /// Matching this regular expression (the whole value).
    Regex(Pattern),
    /// Present, whatever its value.
    Present,
    /// Absent.
    Absent,
}

/// A condition on a query parameter (names and values compared percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryMatch {
    /// The parameter's name.
    pub name: String,
    /// Its value, or `None`: present with any value.
    pub exact: Option<String>,
}

/// What a route does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Send it to the pool of this name.
    Pool(String),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed response.
    Respond(Respond),
}

/// `redirect`: each part of the target is the request's own unless replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// The host (without port).
    pub host: Option<String>,
    /// The port; `None` keeps the request's, the scheme's default leaves it out.
    pub port: Option<u16>,
    /// The whole path.
    pub path: Option<String>,
    /// Replaces the route's matched path prefix (a prefix route only).
    pub prefix: Option<String>,
    /// The query (without `?`); `Some("")` drops it.
    pub query: Option<String>,
}

/// `respond`: a fixed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: String,
    /// Its `Content-Type`.
    pub content_type: String,
}

/// How a route rewrites the path it forwards, in this order: the matched prefix stripped,
/// a prefix added, a regular expression's replacement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Remove the route's `path_prefix` (and say so in `X-Forwarded-Prefix`).
    pub strip_prefix: bool,
    /// Put this before the path.
    pub add_prefix: Option<String>,
    /// When the path matches the expression, it becomes the replacement, `$1` and `${name}`
    /// standing for the captured groups.
    pub regex: Option<(Pattern, String)>,
}

impl Rewrite {
    /// Whether the path is forwarded as received.
    pub fn is_none(&self) -> bool {
        !self.strip_prefix && self.add_prefix.is_none() && self.regex.is_none()
    }
}

/// What the backend is told the host is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostRewrite {
    /// The client's (default).
    #[default]
    Keep,
    /// This one (`host` or `host:port`).
    To(String),
    /// The backend's own address.
    Backend,
}

/// Headers set, added and removed, in that order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    /// Replaced (or added) with this value.
    pub set: Vec<(HeaderName, Template)>,
    /// Added beside any already there.
    pub add: Vec<(HeaderName, Template)>,
    /// Removed.
    pub remove: Vec<HeaderName>,
}

/// A header value, text with `{variable}`s in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// As written.
    Text(String),
    /// Filled in per request.
    Var(Variable),
}

/// What a template may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    /// `{client_ip}`: the client's address.
    ClientIp,
    /// `{request_id}`: the request's `X-Request-Id`.
    RequestId,
    /// `{host}`: the host the client asked for.
    Host,
    /// `{scheme}`: `http` or `https`, as the client connected.
    Scheme,
    /// `{route}`: the route's name.
    Route,
    /// `{backend}`: the name of the backend the request is sent to (on a retry, the next one).
    Backend,
}

impl Variable {
    /// Every variable with its name.
    pub const ALL: [(&'static str, Variable); 6] = [
        ("client_ip", Self::ClientIp),
        ("request_id", Self::RequestId),
        ("host", Self::Host),
        ("scheme", Self::Scheme),
        ("route", Self::Route),
        ("backend", Self::Backend),
    ];
}

/// `cors`: which other origins' pages may call the route, and how (the Fetch standard's CORS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Origins allowed (`https://app.example.com`); `None`: any (`*`).
    pub origins: Option<Vec<String>>,
    /// Methods a preflight allows.
    pub methods: Vec<Method>,
    /// Request headers a preflight allows.
    pub headers: Vec<HeaderName>,
    /// Response headers the page may read.
    pub expose: Vec<HeaderName>,
    /// Whether cookies and credentials may come along.
    pub credentials: bool,
    /// How long a browser may keep a preflight's answer.
    pub max_age: Option<std::time::Duration>,
}

/// `compress`: responses compressed for clients that accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// The encodings offered, the route's preference first (for equal q-values).
    pub encodings: Vec<Encoding>,
    /// Responses whose `Content-Length` is below this are sent as they are.
    pub min_bytes: u64,
    /// Media types compressed (`text/html`, or `text/*`).
    pub types: Vec<String>,
    /// Levels for gzip (0..9), br (0..11), zstd (1..22).
    pub levels: [u32; 3],
}

impl Compression {
    /// Below this, compression rarely pays for its framing (Traefik's and Caddy's choice).
    pub const DEFAULT_MIN_BYTES: u64 = 1024;
    /// Text and the structured text types that compress well.
    pub const DEFAULT_TYPES: [&'static str; 10] = [
        "text/*",
        "application/json",
        "application/javascript",
        "application/xml",
        "application/xhtml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "application/manifest+json",
        "application/wasm",
        "image/svg+xml",
    ];
    /// gzip 6 (zlib's own default), br 4 and zstd 3: good ratios at streaming speed.
    pub const DEFAULT_LEVELS: [u32; 3] = [6, 4, 3];

    /// The level for `encoding`.
    pub fn level(&self, encoding: Encoding) -> u32 {
        self.levels[encoding as usize]
    }
}

/// A content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `gzip`.
    Gzip = 0,
    /// `br` (Brotli).
    Brotli = 1,
    /// `zstd`.
    Zstd = 2,
}

impl Encoding {
    /// Every coding, in level order.
    pub const ALL: [Encoding; 3] = [Self::Gzip, Self::Brotli, Self::Zstd];

    /// Its name in `Accept-Encoding` and `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Brotli => "br",
            Self::Zstd => "zstd",
        }
    }
}

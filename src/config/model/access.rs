//! Who may use a route and how often: basic auth, JWT, forward auth and rate limits, as the
//! config states them. Compiled into the route's gate when the config is applied.

use http::{HeaderName, StatusCode};
use std::path::PathBuf;
use std::time::Duration;

/// A route's access policies; all off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessConfig {
    /// `basic_auth`: users and password hashes from an htpasswd file.
    pub basic_auth: Option<BasicAuthConfig>,
    /// `jwt`: bearer tokens checked against a key set.
    pub jwt: Option<JwtConfig>,
    /// `forward_auth`: a subrequest to an auth service decides.
    pub forward_auth: Option<ForwardAuthConfig>,
    /// `[[routes.rate_limit]]`: every rule must admit the request.
    pub rate_limits: Vec<RateLimitConfig>,
}

impl AccessConfig {
    /// Whether the route has no access policy at all.
    pub fn is_empty(&self) -> bool {
        self.basic_auth.is_none()
            && self.jwt.is_none()
            && self.forward_auth.is_none()
            && self.rate_limits.is_empty()
    }
}

/// `basic_auth`: the users of an htpasswd file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuthConfig {
    /// Shown by browsers in the login prompt.
    pub realm: String,
    /// `(user, hash)` in file order; every hash is bcrypt or argon2 (checked when read).
    pub users: Vec<(String, String)>,
    /// Where they were read from.
    pub file: PathBuf,
}

/// `jwt`: which tokens are let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Where the verifying keys come from.
    pub keys: JwtKeys,
    /// The `iss` a token must carry, if set.
    pub issuer: Option<String>,
    /// One of these must be in the token's `aud`, if any are set.
    pub audience: Vec<String>,
    /// The signature algorithms accepted (never `none`).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The cookie the token may come in, besides `Authorization: Bearer`.
    pub cookie: Option<String>,
    /// Claims copied to the forwarded request: `(claim, header)`.
    pub claims_to_headers: Vec<(String, HeaderName)>,
    /// How often a JWKS URL is fetched again.
    pub refresh: Duration,
}

/// Where a JWT policy's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeys {
    /// A JWKS document fetched in the background.
    Url(http::Uri),
    /// A JWKS document or a PEM public key, read with the config.
    File {
        /// The file.
        path: PathBuf,
        /// Its text, as read.
        text: String,
    },
}

/// `forward_auth`: an auth service asked before each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    /// The pool the auth service's backends are in.
    pub pool: String,
    /// The path asked; `None`: the request's own path and query.
    pub path: Option<http::uri::PathAndQuery>,
    /// How long the auth service may take to answer.
    pub timeout: Duration,
    /// Headers of a 2xx answer copied to the forwarded request.
    pub copy_headers: Vec<HeaderName>,
    /// The status sent when the auth service cannot answer (fail closed).
    pub on_error: StatusCode,
    /// How long an answer is reused for the same credentials; zero: never.
    pub cache: Duration,
}

/// One `[[routes.rate_limit]]` rule: GCRA with a rate and a burst, per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// What requests are counted by.
    pub key: LimitKey,
    /// Requests admitted per `period` in the long run.
    pub count: u32,
    /// The period `count` is per.
    pub period: Duration,
    /// Requests admitted at once beyond the steady rate.
    pub burst: u32,
    /// Whether the count is this replica's or the fleet's.
    pub scope: LimitScope,
    /// What a fleet limit does while its store cannot be reached.
    pub on_store_error: OnStoreError,
    /// Count and report, but never refuse.
    pub dry_run: bool,
    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    pub legacy_headers: bool,
}

impl RateLimitConfig {
    /// Time between two admissions at the steady rate.
    pub fn interval(&self) -> Duration {
        self.period / self.count.max(1)
    }
}

/// What a rate limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's address, cut to a network: `/32` and `/64` by default, so that rotating
    /// through an IPv6 prefix does not dodge the limit.
    ClientIp {
        /// Prefix length for IPv4 clients.
        v4_prefix: u8,
        /// Prefix length for IPv6 clients.
        v6_prefix: u8,
    },
    /// A request header's value; requests without it share one key.
    Header(HeaderName),
    /// A cookie's value; requests without it share one key.
    Cookie(String),
    /// A claim of the request's JWT (the route's `jwt` policy verified it).
    Claim(String),
    /// One key for the whole route.
    Route,
}

/// Whose count a rate limit keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// This replica's alone.
    Local,
    /// The fleet's, shared through Redis.
    Fleet,
}

/// What a fleet limit does while Redis is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Each replica limits alone, to its share of the rate.
    Local,
    /// Admit everything.
    Allow,
    /// Refuse everything (429).
    Deny,
}

//! Requests bound to backends by a key: `algorithm = "hash"` (what a request is hashed by and
//! how far a backend may be loaded) and sticky sessions.

use super::route::Pattern;
use http::HeaderName;
use std::num::NonZeroU16;

/// A hashing pool's settings (`[pools.hash]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashConfig {
    /// What a request is hashed by; a request without it goes by weighted round-robin.
    pub key: HashKey,
    /// A backend takes a keyed request only while its in-flight count stays within this
    /// percentage of its weighted share of the pool's (HAProxy's `hash-balance-factor`);
    /// `None`: unbounded.
    pub balance_factor: Option<NonZeroU16>,
    /// How the table keys are looked up in is laid out.
    pub layout: HashLayout,
}

/// How a hashing pool's table is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashLayout {
    /// A Maglev table of 65,537 entries: an even spread, one lookup per pick.
    #[default]
    Maglev,
    /// A ketama ring: removing a backend moves exactly its keys.
    Ring,
}

/// What a hashing pool hashes a request by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address cut to a network.
    ClientIp {
        /// Prefix length for IPv4 clients.
        v4_prefix: u8,
        /// Prefix length for IPv6 clients.
        v6_prefix: u8,
    },
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's value (as sent, not decoded).
    Query(String),
    /// The path.
    Path,
    /// The first capture group of this expression matched against the path.
    PathRegex(Pattern),
}

/// Session affinity by an inserted cookie (`[pools.sticky]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    /// The cookie's name.
    pub cookie: String,
    /// The secrets tokens are signed with: the current one first, then the previous one,
    /// still accepted during a rotation.
    pub secrets: Vec<Vec<u8>>,
    /// A session ends this long after it began.
    pub max_life: Option<std::time::Duration>,
    /// A session ends after this long without a request.
    pub max_idle: Option<std::time::Duration>,
    /// The cookie's `Path`.
    pub path: String,
    /// The cookie's `Domain`, if any.
    pub domain: Option<String>,
    /// Whether the cookie carries `Secure`.
    pub secure: bool,
    /// The secrets are the fleet's, from Redis (`secrets` is then empty).
    pub fleet_secret: bool,
}

/// A pool's admission control (`[pools.admission]`): per-backend limits and a queue in front
/// of them, as HAProxy's `maxconn` and `timeout queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// `max_in_flight` of every backend that does not set its own.
    pub max_in_flight: Option<std::num::NonZeroU32>,
    /// Requests that may wait for a place (0: a full pool sheds at once).
    pub queue: u32,
    /// How long a request may wait.
    pub queue_timeout: std::time::Duration,
    /// `Retry-After` seconds of a shed request's 503.
    pub retry_after: u32,
    /// A hashing or sticky request whose backend is full takes another one (counted) rather
    /// than waiting for its own.
    pub spill: bool,
    /// Each backend's limit follows its latency (Gradient2), up to its `max_in_flight`.
    pub adaptive: bool,
}

impl AdmissionConfig {
    /// Queue size when the file says nothing.
    pub const DEFAULT_QUEUE: u32 = 1000;
    /// Queue timeout when the file says nothing (a common HAProxy `timeout queue`).
    pub const DEFAULT_QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
    /// `Retry-After` when the file says nothing: as for any other 503.
    pub const DEFAULT_RETRY_AFTER: u32 = 2;
    /// The ceiling of an adaptive limit for a backend without `max_in_flight`.
    pub const ADAPTIVE_CEILING: u32 = 1000;
}

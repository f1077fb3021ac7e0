//! The typed runtime configuration: durations, socket addresses and non-zero weights, no serde.

use http::uri::Authority;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// A validated configuration, ready to build a snapshot from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the proxy accepts client connections.
    pub listeners: Vec<ListenerConfig>,
    /// Timeouts applied to every listener and pool.
    pub timeouts: Timeouts,
    /// Routes in file order; precedence is decided by the router, not by order.
    pub routes: Vec<RouteConfig>,
    /// Upstream pools in file order.
    pub pools: Vec<PoolConfig>,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Unique name, used in logs.
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
}

/// Timeouts, with defaults modelled on HAProxy's and NGINX's usual production settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect to an upstream.
    pub connect: Duration,
    /// From sending the request to receiving the upstream's response headers.
    pub response_header: Duration,
    /// For a client to send complete request headers.
    pub request_header: Duration,
    /// A client connection with no request in progress is closed after this long.
    pub idle: Duration,
    /// A pooled upstream connection unused for this long is closed.
    pub upstream_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response_header: Duration::from_secs(60),
            request_header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            upstream_idle: Duration::from_secs(90),
        }
    }
}

/// Which hosts a route answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// One host name, lower-case, no port.
    Exact(String),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Suffix(String),
}

/// A route from host and path prefix to a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// `None` matches any host (the default virtual host).
    pub host: Option<HostPattern>,
    /// Matched against the start of the request path; `/` matches every path.
    pub path_prefix: String,
    /// Name of an existing pool.
    pub pool: String,
}

/// The balancing algorithm of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// NGINX's smooth weighted round-robin.
    WeightedRoundRobin,
    /// Fewest in-flight requests relative to weight.
    LeastConnections,
}

/// An upstream pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Unique name.
    pub name: String,
    /// How requests are spread over the backends.
    pub algorithm: Algorithm,
    /// At least one backend.
    pub backends: Vec<BackendConfig>,
}

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Unique within its pool.
    pub name: String,
    /// `host:port`; the host may be an IP address or a DNS name.
    pub address: Authority,
    /// Relative share of traffic, 1 to `MAX_WEIGHT`.
    pub weight: NonZeroU32,
    /// Requests in flight at once before the backend stops being picked (a circuit breaker).
    pub max_requests: Option<NonZeroU32>,
}

impl BackendConfig {
    /// The largest weight accepted, as in HAProxy; it also bounds the round-robin schedule.
    pub const MAX_WEIGHT: u32 = 256;
}

//! The typed runtime configuration: durations, socket addresses and non-zero weights, no serde.
//!
//! Longer than most files on purpose: one struct per section, each field documented, so the
//! whole runtime config reads in one place.

mod access;
mod client;
mod hash;
mod route;
mod tls;
mod upstream;

pub use access::{
    AccessConfig, BasicAuthConfig, ForwardAuthConfig, JwtConfig, JwtKeys, LimitKey, LimitScope,
    OnStoreError, RateLimitConfig,
};
pub use client::{IpRule, ProxyProtocol};
pub use hash::{AdmissionConfig, HashConfig, HashKey, HashLayout, StickyConfig};
use http::uri::Authority;
pub use route::{
    Compression, Cors, Encoding, HeaderMatch, HeaderRules, HostPattern, HostRewrite, PathMatch,
    Pattern, Piece, QueryMatch, Redirect, Respond, Rewrite, RouteAction, RouteConfig, Template,
    ValueTest, Variable,
};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
pub use tls::{
    AcmeCertificate, AcmeConfig, AcmeStorage, Certificate, Challenge, Eab, KeyType, ListenerTls,
    TlsVersion, crypto_provider,
};
pub(in crate::config) use upstream::system_roots;
pub use upstream::{Protocol, ProxyVersion, SkipVerify, UpstreamConfig, UpstreamTls};

/// A validated configuration, ready to build a snapshot from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the proxy accepts client connections.
    pub listeners: Vec<ListenerConfig>,
    /// Timeouts applied to every listener and pool.
    pub timeouts: Timeouts,
    /// What a client request may hold.
    pub limits: Limits,
    /// Routes in file order; precedence is decided by the router, not by order.
    pub routes: Vec<RouteConfig>,
    /// Upstream pools in file order.
    pub pools: Vec<PoolConfig>,
    /// The admin API listener, if enabled.
    pub admin: Option<AdminConfig>,
    /// Config file watching.
    pub reload: ReloadConfig,
    /// The access log, if enabled.
    pub access_log: Option<AccessLogConfig>,
    /// Webhooks told of state changes.
    pub webhooks: Vec<WebhookConfig>,
    /// Operator state shared with other replicas, if enabled.
    pub fleet: Option<FleetConfig>,
    /// The ACME account, when a listener has ACME certificates.
    pub acme: Option<AcmeConfig>,
    /// What is allowed but probably not meant (a route that can never match), each as
    /// `file:line:col: message`.
    pub warnings: Vec<String>,
}

/// `[fleet]`: drains and weight overrides shared with every replica through Redis, and every
/// replica's events published there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The Redis holding the shared state (`redis://host:port/db`).
    pub redis: String,
    /// This replica's name in published events.
    pub replica: String,
}

/// Where a pool finds backends besides the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The source.
    pub source: DiscoverySource,
    /// DNS: the longest time between resolutions (shorter when the records' TTL is). Redis: the
    /// time between full reads of the registry.
    pub refresh: Duration,
    /// How long a backend that left the source may finish its requests before it is removed.
    pub drain_timeout: Duration,
}

/// A discovery source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverySource {
    /// A and AAAA records of `name`: each address one backend on `port`.
    Dns {
        /// The name resolved.
        name: String,
        /// The backends' port.
        port: u16,
        /// The DNS server asked; the system's when `None`.
        resolver: Option<std::net::SocketAddr>,
    },
    /// SRV records of `name`: targets' addresses on the records' ports, SRV weights as weights.
    DnsSrv {
        /// The SRV name, such as `_http._tcp.api.internal`.
        name: String,
        /// The DNS server asked; the system's when `None`.
        resolver: Option<std::net::SocketAddr>,
    },
    /// The instances of `service` registered in Redis.
    Redis {
        /// The registry (`redis://host:port/db`).
        url: String,
        /// The service name.
        service: String,
    },
}

/// A receiver of state-change notifications: each event's JSON, POSTed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Unique; names its metrics and log lines.
    pub name: String,
    /// Where events are POSTed (`http://` or `https://`).
    pub url: http::Uri,
    /// A bearer token to send, read at start and on reload.
    pub token: Option<TokenSource>,
    /// Event types sent (`backend`, `panic`, `weight`, `reload`); empty: all.
    pub events: Vec<String>,
    /// Further attempts after a failed delivery.
    pub retries: u32,
    /// Wait before the first retry; doubles with each.
    pub backoff: Duration,
    /// One attempt's limit, connect to response.
    pub timeout: Duration,
    /// Events waiting for delivery; beyond, new ones are dropped (and counted).
    pub queue: usize,
}

impl WebhookConfig {
    /// The event types a webhook may filter on.
    pub const EVENT_TYPES: [&'static str; 8] = [
        "backend",
        "panic",
        "weight",
        "membership",
        "reload",
        "certificate_obtained",
        "certificate_renewed",
        "certificate_failed",
    ];
    /// Deliveries retried after the first fails, when the file says nothing.
    pub const DEFAULT_RETRIES: u32 = 3;
    /// The wait before the first retry (doubling after), when the file says nothing.
    pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
    /// One delivery's limit, when the file says nothing.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Events waiting for delivery before new ones are dropped, when the file says nothing.
    pub const DEFAULT_QUEUE: usize = 1024;
}

/// Where and how requests are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Line format.
    pub format: AccessLogFormat,
    /// A file to append to; `None` for standard output.
    pub path: Option<std::path::PathBuf>,
    /// Lines queued for the writer before new ones are dropped.
    pub buffer: usize,
}

/// Access log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    Json,
    /// NGINX's combined format, exactly.
    Combined,
    /// NGINX's combined format followed by the proxy's own fields as `key=value`.
    Extended,
}

/// The admin API: its own listener and how it authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address of the admin listener.
    pub bind: SocketAddr,
    /// Where the bearer token comes from: it may do everything.
    pub token: TokenSource,
    /// Where a read-only token comes from (GETs and `/metrics`, e.g. for Prometheus), if any.
    pub read_token: Option<TokenSource>,
}

impl AdminConfig {
    /// The admin listener's address when the file does not say.
    pub const DEFAULT_BIND: &str = "127.0.0.1:9901";
    /// The environment variable read for the token when the file does not name one.
    pub const DEFAULT_TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";
}

/// Where the admin bearer token is read from (the token itself is never in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable; unset or empty means no token.
    Env(String),
    /// A file holding the token (surrounding white space ignored).
    File(std::path::PathBuf),
}

/// When the config file is reloaded on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadConfig {
    /// Reload when the file changes.
    pub watch: bool,
    /// Wait this long after a change for more changes before reloading.
    pub debounce: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: true,
            debounce: Duration::from_millis(500),
        }
    }
}

/// A listening socket, identified by its name: a reload that keeps the name and the address
/// keeps the socket, whatever else changes.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Address to bind.
    pub bind: SocketAddr,
    /// TLS termination, if the listener speaks HTTPS.
    pub tls: Option<Arc<ListenerTls>>,
    /// Answer every request with a 308 to the same host and path over HTTPS on this port.
    pub redirect_to_https: Option<u16>,
    /// Connections the kernel queues before they are accepted; `None`: 1024 or
    /// `net.core.somaxconn`, whichever is lower (as NGINX and HAProxy size it).
    pub backlog: Option<u32>,
    /// Proxies whose `X-Forwarded-For` (or `Forwarded`) names the client; empty: none, the
    /// connection's peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Whether connections start with a PROXY protocol header naming the client.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// HTTP/3 over QUIC beside the TLS listener, if on.
    pub http3: Option<Http3>,
}

/// A TLS listener's HTTP/3: a UDP socket on the listener's address, with its certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http3 {
    /// The UDP port; `None`: the listener's own (TCP) port.
    pub port: Option<u16>,
    /// The port `Alt-Svc` names, for a NAT or port map in front; `None`: the UDP port.
    pub advertised_port: Option<u16>,
    /// Whether 0-RTT early data is accepted (safe methods only; others get `425`).
    pub early_data: bool,
    /// Whether every new client is sent a Retry to validate its address, not only while many
    /// handshakes are in progress (NGINX's `quic_retry on`).
    pub retry: bool,
}

impl ListenerConfig {
    /// The port `redirect_to_https = true` sends clients to.
    pub const DEFAULT_HTTPS_PORT: u16 = 443;

    /// A plain-HTTP listener with no options.
    pub fn plain(name: &str, bind: SocketAddr) -> Self {
        Self {
            name: name.to_owned(),
            bind,
            tls: None,
            redirect_to_https: None,
            backlog: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: None,
            http3: None,
        }
    }
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
    /// Longest wait for the next piece of a request body (NGINX's `client_body_timeout`).
    pub request_body: Duration,
    /// How often an HTTP/2 client connection is PINGed.
    pub http2_ping_interval: Duration,
    /// A PING not answered within this closes the connection.
    pub http2_ping_timeout: Duration,
    /// A client connection with no request in progress is closed after this long.
    pub idle: Duration,
    /// A pooled upstream connection unused for this long is closed.
    pub upstream_idle: Duration,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown: Duration,
    /// From the first attempt to response headers, across retries; `None`: only each
    /// attempt's `response_header` bounds it.
    pub request: Option<Duration>,
    /// An upgraded connection (WebSocket) with no bytes either way for this long is closed.
    pub tunnel_idle: Duration,
    /// On SIGTERM, the proxy keeps serving this long in lame-duck mode (`/healthz` 503) before
    /// it stops accepting, so a balancer in front drains it first.
    pub shutdown_delay: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response_header: Duration::from_secs(60),
            request_header: Duration::from_secs(10),
            request_body: Duration::from_secs(60),
            http2_ping_interval: Duration::from_secs(30),
            http2_ping_timeout: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            upstream_idle: Duration::from_secs(90),
            shutdown: Duration::from_secs(30),
            request: None,
            tunnel_idle: Duration::from_secs(3600),
            shutdown_delay: Duration::ZERO,
        }
    }
}

/// Limits on client requests, with NGINX's and Envoy's usual values as defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The request line and headers together, in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Header fields in one request (431 beyond).
    pub max_headers: usize,
    /// The request target, in bytes (414 beyond).
    pub max_uri_bytes: usize,
    /// Header names such as `Transfer_Encoding` that would read as framing or hop-by-hop
    /// names to a server that treats `_` as `-`.
    pub underscore_headers: UnderscoreHeaders,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            underscore_headers: UnderscoreHeaders::Drop,
        }
    }
}

/// What to do with a header name holding `_` that reads as a framing or hop-by-hop name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    /// Remove the header before forwarding (Envoy's `DROP_HEADER`).
    Drop,
    /// Answer 400.
    Reject,
}

/// The balancing algorithm of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// NGINX's smooth weighted round-robin.
    WeightedRoundRobin,
    /// Fewest in-flight requests relative to weight.
    LeastConnections,
    /// Consistent hashing of a request key (Maglev), with an optional load bound.
    Hash,
    /// Power of two choices by peak-EWMA latency.
    LeastLatency,
}

impl Algorithm {
    /// The algorithm's name everywhere: the config file, the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WeightedRoundRobin => "weighted_round_robin",
            Self::LeastConnections => "least_connections",
            Self::Hash => "hash",
            Self::LeastLatency => "least_latency",
        }
    }
}

/// An upstream pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Unique name.
    pub name: String,
    /// How requests are spread over the backends.
    pub algorithm: Algorithm,
    /// The key and load bound of `algorithm = "hash"`.
    pub hash: Option<HashConfig>,
    /// How fast a least-latency pool's estimates give way to new samples.
    pub latency_decay: Duration,
    /// Session affinity by cookie, if any.
    pub sticky: Option<StickyConfig>,
    /// Per-backend limits and a queue, if any.
    pub admission: Option<AdmissionConfig>,
    /// The file's backends: at least one, unless the pool has discovery.
    pub backends: Vec<BackendConfig>,
    /// Further attempts on other backends after a retryable failure.
    pub retries: u32,
    /// Which failures of idempotent requests are retried.
    pub retry_on: RetryOn,
    /// Retries allowed in one second, as a share of that second's requests, plus a floor.
    pub retry_budget: RetryBudgetConfig,
    /// Below this percentage of eligible backends the pool ignores health (0: never).
    pub panic_threshold: u8,
    /// Window over which a new or recovered backend's weight ramps up to its full weight.
    pub slow_start: Option<Duration>,
    /// Active probes, if configured.
    pub health_check: Option<HealthCheckConfig>,
    /// Passive ejection from real traffic.
    pub outlier: OutlierConfig,
    /// How connections to the backends are made and kept.
    pub upstream: UpstreamConfig,
    /// Where further backends come from, if anywhere.
    pub discovery: Option<DiscoveryConfig>,
    /// Header rules for requests forwarded to the pool (before a route's).
    pub request_headers: HeaderRules,
    /// Header rules for the pool's responses (before a route's).
    pub response_headers: HeaderRules,
}

/// Which failures of idempotent requests a pool retries on another backend. A connection that
/// could not be made is always retried, whatever the method: nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOn {
    /// The connection broke before a response (or the response was unusable).
    pub reset: bool,
    /// No response headers within `timeouts.response_header`.
    pub timeout: bool,
    /// A 5xx response (passed on as is when no other backend can take the retry).
    pub server_error: bool,
}

impl Default for RetryOn {
    fn default() -> Self {
        Self {
            reset: true,
            // NGINX's `proxy_next_upstream error timeout`: a hung backend costs idempotent
            // requests one response-header timeout, not a failure.
            timeout: true,
            server_error: false,
        }
    }
}

/// How many retries a pool may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudgetConfig {
    /// Retries per second as a percentage of the previous second's requests.
    pub percent: u32,
    /// Retries per second always allowed, however few requests there were.
    pub min_per_second: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            percent: 20,
            min_per_second: 3,
        }
    }
}

/// Active health checking of a pool's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// What a probe does.
    pub probe: Probe,
    /// Time between probes of one backend (each wait is jittered by up to 10%).
    pub interval: Duration,
    /// A probe not finished in this time has failed.
    pub timeout: Duration,
    /// Consecutive passes that bring an unhealthy backend back (rise).
    pub healthy_threshold: NonZeroU32,
    /// Consecutive failures that take a healthy backend out (fall).
    pub unhealthy_threshold: NonZeroU32,
    /// State of a backend before its first probe.
    pub initial_state: InitialState,
}

/// A probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connect succeeds.
    Tcp,
    /// An HTTP request answers with an expected status.
    Http {
        /// Request method.
        method: http::Method,
        /// Path and query.
        path: String,
        /// Statuses that pass, as inclusive ranges.
        expected_status: Vec<(u16, u16)>,
        /// `Host` header; the backend's address when unset.
        host: Option<String>,
    },
    /// gRPC's `grpc.health.v1.Health/Check` answers `SERVING` (HTTP/2 pools only).
    Grpc {
        /// The service asked about; empty for the server as a whole.
        service: String,
    },
}

/// A backend's state before any probe has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    /// Serve traffic; the first failed probe takes it out (HAProxy's default).
    Healthy,
    /// Wait for the first passing probe.
    Unhealthy,
}

/// Passive ejection settings (Envoy's outlier detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Consecutive connect failures, resets and timeouts that eject (0: off).
    pub consecutive_failures: u32,
    /// Consecutive 5xx responses that eject (0: off).
    pub consecutive_5xx: u32,
    /// First ejection lasts this long; each repeat doubles it.
    pub base_ejection_time: Duration,
    /// Ceiling of the doubling.
    pub max_ejection_time: Duration,
    /// At most this percentage of a pool is ejected at once (rounded down).
    pub max_ejection_percent: u8,
    /// Any passing active probe ends an ejection early (Envoy's behaviour); else it runs its
    /// time unless the probes saw the backend fail and recover.
    pub uneject_on_probe: bool,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            consecutive_5xx: 0,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
            uneject_on_probe: false,
        }
    }
}

impl PoolConfig {
    /// Retries when the file says nothing.
    pub const DEFAULT_RETRIES: u32 = 2;
    /// Panic mode is off unless the file sets a threshold.
    pub const DEFAULT_PANIC_THRESHOLD: u8 = 0;
    /// How fast least-latency estimates give way, when the file says nothing (linkerd's 10 s).
    pub const DEFAULT_LATENCY_DECAY: Duration = Duration::from_secs(10);
}

impl DiscoveryConfig {
    /// How often the source is read again, when the file says nothing.
    pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
    /// How long a departed backend may finish its requests, when the file says nothing.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
}

impl HealthCheckConfig {
    /// Time between probes, when the file says nothing.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    /// One probe's limit, when the file says nothing.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Passes in a row that make a backend healthy, when the file says nothing.
    pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
    /// Failures in a row that make a backend unhealthy, when the file says nothing.
    pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
}

impl AccessLogConfig {
    /// Lines buffered for the writer thread before new ones are dropped, when the file says
    /// nothing.
    pub const DEFAULT_BUFFER: usize = 8192;
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
    pub max_in_flight: Option<NonZeroU32>,
    /// Connections open to the backend at once; a request finding none free waits for one.
    pub max_connections: Option<NonZeroU32>,
}

impl BackendConfig {
    /// The largest weight accepted, as in HAProxy; it also bounds the round-robin schedule.
    pub const MAX_WEIGHT: u32 = 256;
}

//! The serde mirror of the TOML file: exactly what an operator may write, nothing typed yet.
//! Every field that validation may complain about keeps its span so errors carry `line:col`.
//!
//! Longer than most files on purpose: one struct per table of the file, each field with its
//! serde and schema attributes, read top to bottom as the format itself.

mod access;
mod route;

pub use access::*;
pub use route::*;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    #[schemars(with = "Vec<ListenerFile>")]
    pub listeners: Vec<Spanned<ListenerFile>>,
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    #[schemars(with = "Vec<RouteFile>")]
    pub routes: Vec<Spanned<RouteFile>>,
    #[serde(default)]
    #[schemars(with = "Vec<PoolFile>")]
    pub pools: Vec<Spanned<PoolFile>>,
    pub admin: Option<AdminFile>,
    #[serde(default)]
    pub reload: ReloadFile,
    #[serde(default)]
    pub access_log: AccessLogFile,
    #[serde(default)]
    pub notify: NotifyFile,
    pub fleet: Option<FleetFile>,
    pub acme: Option<AcmeFile>,
}

/// The `[acme]` table: the ACME account every `[[listeners.tls.acme]]` certificate is ordered
/// with, and where what it obtains is kept.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcmeFile {
    #[schemars(with = "Option<String>")]
    pub directory: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub contact: Option<Spanned<String>>,
    #[schemars(with = "Option<EabFile>")]
    pub eab: Option<Spanned<EabFile>>,
    #[schemars(with = "Option<String>")]
    pub ca: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub storage: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub challenge: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub key_type: Option<Spanned<String>>,
}

/// `[acme.eab]`: external account binding, for CAs that require one (ZeroSSL, Google).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EabFile {
    #[schemars(with = "String")]
    pub kid: Spanned<String>,
    #[schemars(with = "String")]
    pub hmac_key: Spanned<String>,
}

/// The `[fleet]` table: operator state shared with other replicas through Redis.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    #[schemars(with = "String")]
    pub redis: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub replica: Option<Spanned<String>>,
}

/// A pool's `discovery` table: where backends come from besides the file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryFile {
    #[serde(rename = "type")]
    #[schemars(with = "DiscoveryKindFile")]
    pub kind: Spanned<DiscoveryKindFile>,
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub port: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub resolver: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub url: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub service: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub refresh: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub drain_timeout: Option<Spanned<String>>,
}

/// Discovery sources accepted in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryKindFile {
    Dns,
    DnsSrv,
    Redis,
}

/// The `[notify]` table.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    #[serde(default)]
    #[schemars(with = "Vec<WebhookFile>")]
    pub webhooks: Vec<Spanned<WebhookFile>>,
}

/// A `[[notify.webhooks]]` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub token_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub token_file: Option<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub events: Option<Spanned<Vec<String>>>,
    #[schemars(with = "Option<i64>")]
    pub retries: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub backoff: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub queue: Option<Spanned<i64>>,
}

/// The `[access_log]` table.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFile {
    pub enabled: Option<bool>,
    #[schemars(with = "Option<AccessLogFormatFile>")]
    pub format: Option<Spanned<AccessLogFormatFile>>,
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub buffer: Option<Spanned<i64>>,
}

/// Access log formats accepted in the file.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormatFile {
    Json,
    Combined,
    Extended,
}

/// The `[admin]` table.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub enabled: Option<bool>,
    #[schemars(with = "Option<String>")]
    pub bind: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub token_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub token_file: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub read_token_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub read_token_file: Option<Spanned<String>>,
}

/// The `[reload]` table.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadFile {
    pub watch: Option<bool>,
    #[schemars(with = "Option<String>")]
    pub debounce: Option<Spanned<String>>,
}

/// One `[[listeners]]` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[schemars(with = "String")]
    pub bind: Spanned<String>,
    #[schemars(with = "Option<ListenerTlsFile>")]
    pub tls: Option<Spanned<ListenerTlsFile>>,
    #[schemars(with = "Option<bool>")]
    pub redirect_to_https: Option<Spanned<bool>>,
    #[schemars(with = "Option<i64>")]
    pub https_port: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub backlog: Option<Spanned<i64>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub proxy_protocol: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub proxy_protocol_timeout: Option<Spanned<String>>,
    #[schemars(with = "Option<bool>")]
    pub http3: Option<Spanned<bool>>,
    #[schemars(with = "Option<i64>")]
    pub http3_port: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub advertised_port: Option<Spanned<i64>>,
    #[schemars(with = "Option<bool>")]
    pub early_data: Option<Spanned<bool>>,
    #[schemars(with = "Option<bool>")]
    pub quic_retry: Option<Spanned<bool>>,
}

/// A listener's `[listeners.tls]` table: terminate TLS on it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsFile {
    #[serde(default)]
    #[schemars(with = "Vec<CertificateFile>")]
    pub certificates: Vec<Spanned<CertificateFile>>,
    #[schemars(with = "Option<String>")]
    pub min_version: Option<Spanned<String>>,
    pub strict_sni: Option<bool>,
    #[schemars(with = "Option<Vec<String>>")]
    pub alpn: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<String>")]
    pub handshake_timeout: Option<Spanned<String>>,
    #[schemars(with = "Option<HstsFile>")]
    pub hsts: Option<Spanned<HstsFile>>,
    #[serde(default)]
    #[schemars(with = "Vec<AcmeCertificateFile>")]
    pub acme: Vec<Spanned<AcmeCertificateFile>>,
}

/// One `[[listeners.tls.acme]]` table: a certificate for these names, obtained and renewed by
/// ACME with the `[acme]` account.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcmeCertificateFile {
    #[schemars(with = "Vec<String>")]
    pub names: Spanned<Vec<Spanned<String>>>,
    #[schemars(with = "Option<String>")]
    pub challenge: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub key_type: Option<Spanned<String>>,
}

/// `[listeners.tls.hsts]`: `Strict-Transport-Security` on every response of the listener.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HstsFile {
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Spanned<String>>,
    pub include_subdomains: Option<bool>,
    pub preload: Option<bool>,
}

/// One `[[listeners.tls.certificates]]` table: a chain and its key, PEM files.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    #[schemars(with = "String")]
    pub cert: Spanned<String>,
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    #[schemars(with = "Option<Vec<String>>")]
    pub names: Option<Vec<Spanned<String>>>,
}

/// The `[timeouts]` table; every entry is a human duration such as `"500ms"` or `"5s"`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    #[schemars(with = "Option<String>")]
    pub connect: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub response_header: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub request_header: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub request_body: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub http2_ping_interval: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub http2_ping_timeout: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub idle: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub upstream_idle: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub shutdown: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub request: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub tunnel_idle: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub shutdown_delay: Option<Spanned<String>>,
}

/// The `[limits]` table: what a client request may hold.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    #[schemars(with = "Option<i64>")]
    pub max_header_bytes: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub max_headers: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub max_uri_bytes: Option<Spanned<i64>>,
    #[schemars(with = "Option<UnderscoreHeadersFile>")]
    pub underscore_headers: Option<Spanned<UnderscoreHeadersFile>>,
}

/// What to do with header names holding `_` that read as framing or hop-by-hop names.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreHeadersFile {
    Drop,
    Reject,
}

/// One `[[pools]]` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<AlgorithmFile>")]
    pub algorithm: Option<Spanned<AlgorithmFile>>,
    #[schemars(with = "Option<HashFile>")]
    pub hash: Option<Spanned<HashFile>>,
    #[schemars(with = "Option<String>")]
    pub latency_decay: Option<Spanned<String>>,
    #[schemars(with = "Option<StickyFile>")]
    pub sticky: Option<Spanned<StickyFile>>,
    #[schemars(with = "Option<AdmissionFile>")]
    pub admission: Option<Spanned<AdmissionFile>>,
    #[serde(default)]
    #[schemars(with = "Vec<BackendFile>")]
    pub backends: Vec<Spanned<BackendFile>>,
    #[schemars(with = "Option<i64>")]
    pub retries: Option<Spanned<i64>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub retry_on: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<i64>")]
    pub retry_budget_percent: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub retry_budget_min_per_second: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub panic_threshold: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub slow_start: Option<Spanned<String>>,
    #[schemars(with = "Option<HealthCheckFile>")]
    pub health_check: Option<Spanned<HealthCheckFile>>,
    #[serde(default)]
    pub outlier_detection: OutlierFile,
    #[schemars(with = "Option<ProtocolFile>")]
    pub protocol: Option<Spanned<ProtocolFile>>,
    #[schemars(with = "Option<UpstreamTlsFile>")]
    pub tls: Option<Spanned<UpstreamTlsFile>>,
    #[schemars(with = "Option<String>")]
    pub send_proxy_protocol: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub max_idle_per_backend: Option<Spanned<i64>>,
    #[schemars(with = "Option<DiscoveryFile>")]
    pub discovery: Option<Spanned<DiscoveryFile>>,
    #[serde(default)]
    pub request_headers: HeaderRulesFile,
    #[serde(default)]
    pub response_headers: HeaderRulesFile,
}

/// Protocols a pool speaks to its backends.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolFile {
    Http1,
    H2,
    H2c,
}

/// A pool's `[pools.tls]` table: TLS to its backends.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    #[schemars(with = "Option<String>")]
    pub ca: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub server_name: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub cert: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub key: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<bool>,
}

/// A pool's `[pools.health_check]` table: active probes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    #[serde(rename = "type")]
    #[schemars(with = "Option<ProbeKindFile>")]
    pub kind: Option<Spanned<ProbeKindFile>>,
    #[schemars(with = "Option<String>")]
    pub interval: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub healthy_threshold: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub unhealthy_threshold: Option<Spanned<i64>>,
    #[schemars(with = "Option<InitialStateFile>")]
    pub initial_state: Option<Spanned<InitialStateFile>>,
    #[schemars(with = "Option<String>")]
    pub method: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub expected_status: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub service: Option<Spanned<String>>,
}

/// Probe kinds accepted in the file.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKindFile {
    Http,
    Tcp,
    Grpc,
}

/// Initial health states accepted in the file.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InitialStateFile {
    Healthy,
    Unhealthy,
}

/// A pool's `[pools.outlier_detection]` table: passive ejection from real traffic.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutlierFile {
    #[schemars(with = "Option<i64>")]
    pub consecutive_failures: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub consecutive_5xx: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub base_ejection_time: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub max_ejection_time: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub max_ejection_percent: Option<Spanned<i64>>,
    pub uneject_on_probe: Option<bool>,
}

/// The balancing algorithm names accepted in the file.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmFile {
    WeightedRoundRobin,
    LeastConnections,
    Hash,
    LeastLatency,
}

/// A pool's `[pools.sticky]` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StickyFile {
    #[schemars(with = "Option<String>")]
    pub cookie: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub secret_file: Option<Spanned<String>>,
    #[schemars(with = "Option<bool>")]
    pub fleet_secret: Option<Spanned<bool>>,
    #[schemars(with = "Option<String>")]
    pub previous_secret_file: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub max_life: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub max_idle: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub domain: Option<Spanned<String>>,
    pub secure: Option<bool>,
}

/// A pool's `[pools.admission]` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionFile {
    #[schemars(with = "Option<i64>")]
    pub max_in_flight: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub queue: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub queue_timeout: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub retry_after: Option<Spanned<i64>>,
    pub spill: Option<bool>,
    pub adaptive: Option<bool>,
}

/// A pool's `[pools.hash]` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HashFile {
    #[schemars(with = "Option<String>")]
    pub key: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub balance_factor: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub table: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub ipv4_prefix: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub ipv6_prefix: Option<Spanned<i64>>,
}

/// One `[[pools.backends]]` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[schemars(with = "String")]
    pub address: Spanned<String>,
    #[schemars(with = "Option<i64>")]
    pub weight: Option<Spanned<i64>>,
    /// Also accepted by its earlier name, `max_requests`.
    #[serde(alias = "max_requests")]
    #[schemars(with = "Option<i64>")]
    pub max_in_flight: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub max_connections: Option<Spanned<i64>>,
}

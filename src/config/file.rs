//! The serde mirror of the TOML file: exactly what an operator may write, nothing typed yet.
//! Every field that validation may complain about keeps its span so errors carry `line:col`.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listeners: Vec<Spanned<ListenerFile>>,
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub routes: Vec<Spanned<RouteFile>>,
    #[serde(default)]
    pub pools: Vec<Spanned<PoolFile>>,
    pub admin: Option<AdminFile>,
    #[serde(default)]
    pub reload: ReloadFile,
    #[serde(default)]
    pub access_log: AccessLogFile,
    #[serde(default)]
    pub notify: NotifyFile,
    pub fleet: Option<FleetFile>,
}

/// The `[fleet]` table: operator state shared with other replicas through Redis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    pub redis: Spanned<String>,
    pub replica: Option<Spanned<String>>,
}

/// A pool's `discovery` table: where backends come from besides the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryFile {
    #[serde(rename = "type")]
    pub kind: Spanned<DiscoveryKindFile>,
    pub name: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub resolver: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub service: Option<Spanned<String>>,
    pub refresh: Option<Spanned<String>>,
    pub drain_timeout: Option<Spanned<String>>,
}

/// Discovery sources accepted in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryKindFile {
    Dns,
    DnsSrv,
    Redis,
}

/// The `[notify]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    #[serde(default)]
    pub webhooks: Vec<Spanned<WebhookFile>>,
}

/// A `[[notify.webhooks]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub events: Option<Spanned<Vec<String>>>,
    pub retries: Option<Spanned<i64>>,
    pub backoff: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub queue: Option<Spanned<i64>>,
}

/// The `[access_log]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFile {
    pub enabled: Option<bool>,
    pub format: Option<Spanned<AccessLogFormatFile>>,
    pub path: Option<Spanned<String>>,
    pub buffer: Option<Spanned<i64>>,
}

/// Access log formats accepted in the file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormatFile {
    Json,
    Combined,
    Extended,
}

/// The `[admin]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub enabled: Option<bool>,
    pub bind: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub read_token_env: Option<Spanned<String>>,
    pub read_token_file: Option<Spanned<String>>,
}

/// The `[reload]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadFile {
    pub watch: Option<bool>,
    pub debounce: Option<Spanned<String>>,
}

/// One `[[listeners]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub name: Spanned<String>,
    pub bind: Spanned<String>,
    pub tls: Option<Spanned<ListenerTlsFile>>,
    pub redirect_to_https: Option<Spanned<bool>>,
    pub https_port: Option<Spanned<i64>>,
    pub backlog: Option<Spanned<i64>>,
}

/// A listener's `[listeners.tls]` table: terminate TLS on it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsFile {
    #[serde(default)]
    pub certificates: Vec<Spanned<CertificateFile>>,
    pub min_version: Option<Spanned<String>>,
    pub strict_sni: Option<bool>,
    pub alpn: Option<Vec<Spanned<String>>>,
    pub handshake_timeout: Option<Spanned<String>>,
}

/// One `[[listeners.tls.certificates]]` table: a chain and its key, PEM files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    pub names: Option<Vec<Spanned<String>>>,
}

/// The `[timeouts]` table; every entry is a human duration such as `"500ms"` or `"5s"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    pub connect: Option<Spanned<String>>,
    pub response_header: Option<Spanned<String>>,
    pub request_header: Option<Spanned<String>>,
    pub request_body: Option<Spanned<String>>,
    pub http2_ping_interval: Option<Spanned<String>>,
    pub http2_ping_timeout: Option<Spanned<String>>,
    pub idle: Option<Spanned<String>>,
    pub upstream_idle: Option<Spanned<String>>,
    pub shutdown: Option<Spanned<String>>,
    pub request: Option<Spanned<String>>,
    pub tunnel_idle: Option<Spanned<String>>,
    pub shutdown_delay: Option<Spanned<String>>,
}

/// The `[limits]` table: what a client request may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_header_bytes: Option<Spanned<i64>>,
    pub max_headers: Option<Spanned<i64>>,
    pub max_uri_bytes: Option<Spanned<i64>>,
    pub underscore_headers: Option<Spanned<UnderscoreHeadersFile>>,
}

/// What to do with header names holding `_` that read as framing or hop-by-hop names.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreHeadersFile {
    Drop,
    Reject,
}

/// One `[[routes]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub name: Spanned<String>,
    pub host: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub pool: Spanned<String>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub websocket: Option<bool>,
}

/// One `[[pools]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub algorithm: Option<Spanned<AlgorithmFile>>,
    #[serde(default)]
    pub backends: Vec<Spanned<BackendFile>>,
    pub retries: Option<Spanned<i64>>,
    pub retry_on: Option<Vec<Spanned<String>>>,
    pub retry_budget_percent: Option<Spanned<i64>>,
    pub retry_budget_min_per_second: Option<Spanned<i64>>,
    pub panic_threshold: Option<Spanned<i64>>,
    pub slow_start: Option<Spanned<String>>,
    pub health_check: Option<Spanned<HealthCheckFile>>,
    #[serde(default)]
    pub outlier_detection: OutlierFile,
    pub protocol: Option<Spanned<ProtocolFile>>,
    pub tls: Option<Spanned<UpstreamTlsFile>>,
    pub max_idle_per_backend: Option<Spanned<i64>>,
    pub discovery: Option<Spanned<DiscoveryFile>>,
}

/// Protocols a pool speaks to its backends.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolFile {
    Http1,
    H2,
    H2c,
}

/// A pool's `[pools.tls]` table: TLS to its backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    pub ca: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<bool>,
}

/// A pool's `[pools.health_check]` table: active probes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<ProbeKindFile>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub healthy_threshold: Option<Spanned<i64>>,
    pub unhealthy_threshold: Option<Spanned<i64>>,
    pub initial_state: Option<Spanned<InitialStateFile>>,
    pub method: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub expected_status: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub service: Option<Spanned<String>>,
}

/// Probe kinds accepted in the file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKindFile {
    Http,
    Tcp,
    Grpc,
}

/// Initial health states accepted in the file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialStateFile {
    Healthy,
    Unhealthy,
}

/// A pool's `[pools.outlier_detection]` table: passive ejection from real traffic.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierFile {
    pub consecutive_failures: Option<Spanned<i64>>,
    pub consecutive_5xx: Option<Spanned<i64>>,
    pub base_ejection_time: Option<Spanned<String>>,
    pub max_ejection_time: Option<Spanned<String>>,
    pub max_ejection_percent: Option<Spanned<i64>>,
    pub uneject_on_probe: Option<bool>,
}

/// The balancing algorithm names accepted in the file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmFile {
    WeightedRoundRobin,
    LeastConnections,
}

/// One `[[pools.backends]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub max_requests: Option<Spanned<i64>>,
    pub max_connections: Option<Spanned<i64>>,
}

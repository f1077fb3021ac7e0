//! Configuration: the TOML file format, validation that reports every problem, and the typed
//! runtime `Config` the rest of the proxy uses.

mod certificate;
mod duration;
mod file;
mod model;
mod sections;
mod upstream;
mod validate;
mod validate_discovery;
mod validate_notify;
mod validate_pool;

pub use certificate::crypto_provider;
pub use duration::parse_duration;
pub use model::{
    AccessLogConfig, AccessLogFormat, AdminConfig, Algorithm, BackendConfig, Certificate, Config,
    DiscoveryConfig, DiscoverySource, FleetConfig, HealthCheckConfig, HostPattern, InitialState,
    Limits, ListenerConfig, ListenerTls, OutlierConfig, PoolConfig, Probe, Protocol, ReloadConfig,
    RetryBudgetConfig, RetryOn, RouteConfig, Timeouts, TlsVersion, TokenSource, UnderscoreHeaders,
    UpstreamConfig, UpstreamTls, WebhookConfig,
};
pub use upstream::SkipVerify;
pub use validate::{ConfigError, Problem, is_name};

/// The effective default config: every option at its default value, as TOML
/// (`switchyard config --defaults`).
pub const DEFAULTS: &str = include_str!("defaults.toml");

use std::path::Path;

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates config text; `origin` names it in error messages (usually the path).
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    validate::parse_and_validate(text, origin)
}

//! Configuration in three stages: `file` (the TOML format, a serde mirror) → `check` (every
//! problem found, by concept, each with its place) → `model` (the typed runtime `Config` the
//! rest of the proxy uses, data only: it imports neither of the others).

mod check;
mod duration;
mod file;
pub mod jwt_keys;
pub mod lasting;
mod model;
mod sections;

pub use check::{ConfigError, Problem, certificate_names, is_name};
pub use duration::parse_duration;
pub use model::{
    AccessConfig, BasicAuthConfig, ForwardAuthConfig, JwtConfig, JwtKeys, LimitKey, LimitScope,
    OnStoreError, RateLimitConfig,
};
pub use model::{
    AccessLogConfig, AccessLogFormat, AdminConfig, Algorithm, BackendConfig, Certificate,
    Compression, Config, Cors, DiscoveryConfig, DiscoverySource, Encoding, FleetConfig,
    HeaderMatch, HeaderRules, HealthCheckConfig, HostPattern, HostRewrite, InitialState, IpRule,
    Limits, ListenerConfig, ListenerTls, OutlierConfig, PathMatch, Pattern, Piece, PoolConfig,
    Probe, Protocol, ProxyProtocol, ProxyVersion, QueryMatch, Redirect, ReloadConfig, Respond,
    RetryBudgetConfig, RetryOn, Rewrite, RouteAction, RouteConfig, SkipVerify, Template, Timeouts,
    TlsVersion, TokenSource, UnderscoreHeaders, UpstreamConfig, UpstreamTls, ValueTest, Variable,
    WebhookConfig, crypto_provider,
};
pub use model::{AcmeCertificate, AcmeConfig, AcmeStorage, Challenge, Eab, KeyType};
pub use model::{AdmissionConfig, HashConfig, HashKey, HashLayout, Http3, StickyConfig};

/// The effective default config: every option at its default value, as TOML
/// (`switchyard config --defaults`).
pub const DEFAULTS: &str = include_str!("defaults.toml");

use std::path::Path;

/// A JSON Schema (draft 2020-12) of the config file, as `switchyard config --schema` prints it:
/// editors with a TOML language server complete and check `switchyard.toml` against it.
pub fn schema() -> String {
    let mut schema = schemars::schema_for!(file::FileConfig);
    schema.insert("title".into(), "Switchyard configuration".into());
    serde_json::to_string_pretty(&schema).expect("a schema is plain JSON")
}

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
    check::parse_and_validate(text, origin)
}

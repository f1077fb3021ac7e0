//! The serde mirror of the TOML file: exactly what an operator may write, nothing typed yet.
//! Every field that validation may complain about keeps its span so errors carry `line:col`.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listeners: Vec<Spanned<ListenerFile>>,
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    #[serde(default)]
    pub routes: Vec<Spanned<RouteFile>>,
    #[serde(default)]
    pub pools: Vec<Spanned<PoolFile>>,
}

/// One `[[listeners]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    pub name: Spanned<String>,
    pub bind: Spanned<String>,
}

/// The `[timeouts]` table; every entry is a human duration such as `"500ms"` or `"5s"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    pub connect: Option<Spanned<String>>,
    pub response_header: Option<Spanned<String>>,
    pub request_header: Option<Spanned<String>>,
    pub idle: Option<Spanned<String>>,
    pub upstream_idle: Option<Spanned<String>>,
}

/// One `[[routes]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub name: Spanned<String>,
    pub host: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub pool: Spanned<String>,
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
}

//! The `[[routes]]` tables: what a route matches, what it does, and what it changes on the way.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// One `[[routes]]` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub path_prefix: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub path_regex: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub methods: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub ip_rules: Vec<Spanned<String>>,
    #[schemars(with = "Option<super::BasicAuthFile>")]
    pub basic_auth: Option<Spanned<super::BasicAuthFile>>,
    #[schemars(with = "Option<super::JwtFile>")]
    pub jwt: Option<Spanned<super::JwtFile>>,
    #[schemars(with = "Option<super::ForwardAuthFile>")]
    pub forward_auth: Option<Spanned<super::ForwardAuthFile>>,
    #[serde(default)]
    #[schemars(with = "Vec<super::RateLimitFile>")]
    pub rate_limit: Vec<Spanned<super::RateLimitFile>>,
    #[serde(default)]
    #[schemars(with = "Vec<HeaderMatchFile>")]
    pub headers: Vec<Spanned<HeaderMatchFile>>,
    #[serde(default)]
    #[schemars(with = "Vec<QueryMatchFile>")]
    pub query: Vec<Spanned<QueryMatchFile>>,
    #[schemars(with = "Option<String>")]
    pub pool: Option<Spanned<String>>,
    #[schemars(with = "Option<RedirectFile>")]
    pub redirect: Option<Spanned<RedirectFile>>,
    #[schemars(with = "Option<RespondFile>")]
    pub respond: Option<Spanned<RespondFile>>,
    #[schemars(with = "Option<bool>")]
    pub strip_prefix: Option<Spanned<bool>>,
    #[schemars(with = "Option<String>")]
    pub add_prefix: Option<Spanned<String>>,
    #[schemars(with = "Option<RewriteFile>")]
    pub rewrite: Option<Spanned<RewriteFile>>,
    #[schemars(with = "Option<String>")]
    pub host_rewrite: Option<Spanned<String>>,
    #[schemars(with = "Option<bool>")]
    pub auto_host_rewrite: Option<Spanned<bool>>,
    #[serde(default)]
    pub request_headers: HeaderRulesFile,
    #[serde(default)]
    pub response_headers: HeaderRulesFile,
    #[schemars(with = "Option<CorsFile>")]
    pub cors: Option<Spanned<CorsFile>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub compress: Option<Spanned<Vec<Spanned<String>>>>,
    #[schemars(with = "Option<i64>")]
    pub compress_min_bytes: Option<Spanned<i64>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub compress_types: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<CompressLevelsFile>")]
    pub compress_levels: Option<Spanned<CompressLevelsFile>>,
    #[schemars(with = "Option<i64>")]
    pub max_body_bytes: Option<Spanned<i64>>,
    pub websocket: Option<bool>,
}

/// A route's `compress_levels` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompressLevelsFile {
    #[schemars(with = "Option<i64>")]
    pub gzip: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub br: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub zstd: Option<Spanned<i64>>,
}

/// A route's `cors` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    #[schemars(with = "Vec<String>")]
    pub allow_origins: Vec<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub allow_methods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allow_headers: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub expose_headers: Vec<Spanned<String>>,
    pub allow_credentials: Option<bool>,
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Spanned<String>>,
}

/// One of a route's `headers` conditions: `name` and exactly one of the tests.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatchFile {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    pub exact: Option<String>,
    pub prefix: Option<String>,
    #[schemars(with = "Option<String>")]
    pub regex: Option<Spanned<String>>,
    pub present: Option<bool>,
}

/// One of a route's `query` conditions: `name`, and `exact` or `present = true`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryMatchFile {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    pub exact: Option<String>,
    pub present: Option<bool>,
}

/// A route's `rewrite` table: the path becomes `replace` when it matches `regex`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RewriteFile {
    #[schemars(with = "String")]
    pub regex: Spanned<String>,
    #[schemars(with = "String")]
    pub replace: Spanned<String>,
}

/// `request_headers` or `response_headers` of a route or pool.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesFile {
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub set: std::collections::BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub add: std::collections::BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub remove: Vec<Spanned<String>>,
}

/// A route's `redirect` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectFile {
    #[schemars(with = "Option<i64>")]
    pub status: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub scheme: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub port: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub query: Option<Spanned<String>>,
}

/// A route's `respond` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RespondFile {
    #[schemars(with = "Option<i64>")]
    pub status: Option<Spanned<i64>>,
    pub body: Option<String>,
    pub content_type: Option<String>,
}

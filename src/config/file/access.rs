//! A route's access policies as written: basic auth, JWT, forward auth and rate limits.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A route's `basic_auth` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthFile {
    #[schemars(with = "String")]
    pub users_file: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub realm: Option<Spanned<String>>,
}

/// A route's `jwt` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtFile {
    #[schemars(with = "Option<String>")]
    pub jwks_url: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub keys_file: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub issuer: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub audience: Vec<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub algorithms: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<String>")]
    pub leeway: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub cookie: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub claims_to_headers: BTreeMap<String, Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub refresh: Option<Spanned<String>>,
}

/// A route's `forward_auth` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthFile {
    #[schemars(with = "String")]
    pub pool: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub copy_headers: Vec<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub on_error: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub cache: Option<Spanned<String>>,
}

/// One `[[routes.rate_limit]]` table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    #[schemars(with = "Option<String>")]
    pub key: Option<Spanned<String>>,
    #[schemars(with = "String")]
    pub rate: Spanned<String>,
    #[schemars(with = "Option<i64>")]
    pub burst: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub ipv4_prefix: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub ipv6_prefix: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub scope: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub on_store_error: Option<Spanned<String>>,
    pub dry_run: Option<bool>,
    pub legacy_headers: Option<bool>,
}

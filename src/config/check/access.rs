//! A route's access policies: the htpasswd file read and its hashes checked, JWT keys and
//! claims, the forward-auth pool, and rate-limit rules.

use super::Checker;
use crate::config::file::{BasicAuthFile, ForwardAuthFile, JwtFile, RouteFile};
use crate::config::model::{
    AccessConfig, BasicAuthConfig, ForwardAuthConfig, JwtConfig, JwtKeys, LimitKey,
};
use http::HeaderName;
use std::collections::HashSet;
use std::time::Duration;
use toml::Spanned;

impl Checker {
    /// Every access policy of route `i`.
    pub(super) fn access(
        &mut self,
        route: &RouteFile,
        i: usize,
        pools: &HashSet<&str>,
    ) -> AccessConfig {
        let field = format!("routes[{i}]");
        let access = AccessConfig {
            basic_auth: route
                .basic_auth
                .as_ref()
                .and_then(|b| self.basic_auth(b.get_ref(), &field)),
            jwt: route.jwt.as_ref().and_then(|j| self.jwt(j, &field)),
            forward_auth: route
                .forward_auth
                .as_ref()
                .and_then(|f| self.forward_auth(f.get_ref(), &field, pools)),
            rate_limits: route
                .rate_limit
                .iter()
                .enumerate()
                .filter_map(|(n, r)| self.rate_limit(r, &format!("{field}.rate_limit[{n}]")))
                .collect(),
        };
        let by_claim = access
            .rate_limits
            .iter()
            .any(|r| matches!(r.key, LimitKey::Claim(_)));
        if by_claim && access.jwt.is_none() {
            if let Some(rule) = route.rate_limit.first() {
                self.report(
                    rule.span(),
                    format!("{field}.rate_limit: a key by claim needs the route's jwt policy"),
                );
            }
        }
        access
    }

    /// `basic_auth`: the htpasswd file read now (and again at each reload); only bcrypt and
    /// argon2 hashes are accepted.
    fn basic_auth(&mut self, file: &BasicAuthFile, field: &str) -> Option<BasicAuthConfig> {
        let path = self.resolve(file.users_file.get_ref());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) => {
                return self.bad(
                    &file.users_file,
                    field,
                    "basic_auth.users_file",
                    &err.to_string(),
                );
            }
        };
        let mut users = Vec::new();
        let mut problems = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                problems.push(format!("line {}: not user:hash", n + 1));
                continue;
            };
            match password_hash_kind(hash) {
                Ok(()) => users.push((user.to_owned(), hash.to_owned())),
                Err(why) => problems.push(format!("line {} (user {user:?}): {why}", n + 1)),
            }
        }
        if users.is_empty() && problems.is_empty() {
            problems.push("holds no users".to_owned());
        }
        for problem in &problems {
            self.bad::<()>(&file.users_file, field, "basic_auth.users_file", problem);
        }
        let realm = file.realm.as_ref().map_or("restricted", |r| r.get_ref());
        if realm.contains(['"', '\\']) || http::HeaderValue::from_str(realm).is_err() {
            let span = file.realm.as_ref().map(Spanned::span).unwrap_or_default();
            self.report(span, format!("{field}.basic_auth.realm: {realm:?} must be printable text without quotes or backslashes"));
            return None;
        }
        problems.is_empty().then(|| BasicAuthConfig {
            realm: realm.to_owned(),
            users,
            file: path,
        })
    }

    /// `jwt`: keys from a URL or a file, the algorithms allowed, claims copied as headers.
    fn jwt(&mut self, jwt: &Spanned<JwtFile>, field: &str) -> Option<JwtConfig> {
        let field = format!("{field}.jwt");
        let span = jwt.span();
        let jwt = jwt.get_ref();
        let keys = match (&jwt.jwks_url, &jwt.keys_file) {
            (Some(url), None) => match url.get_ref().parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.authority().is_some() =>
                {
                    JwtKeys::Url(uri)
                }
                _ => {
                    self.report(
                        url.span(),
                        format!(
                            "{field}.jwks_url: {:?} is not an http:// or https:// URL",
                            url.get_ref()
                        ),
                    );
                    return None;
                }
            },
            (None, Some(file)) => {
                let path = self.resolve(file.get_ref());
                let text = match std::fs::read_to_string(&path) {
                    Ok(text) => text,
                    Err(err) => return self.bad(file, &field, "keys_file", &err.to_string()),
                };
                if let Err(why) = crate::config::jwt_keys::parse(&text) {
                    return self.bad(file, &field, "keys_file", &why);
                }
                JwtKeys::File { path, text }
            }
            _ => {
                self.report(span, format!("{field}: give one of jwks_url and keys_file"));
                return None;
            }
        };
        let algorithms = match &jwt.algorithms {
            None => vec![
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::Algorithm::ES256,
            ],
            Some(names) => {
                let mut out = Vec::new();
                for name in names {
                    match name.get_ref().parse::<jsonwebtoken::Algorithm>() {
                        // HMAC secrets are not public keys: a key set holds none.
                        Ok(alg) if !is_hmac(alg) => out.push(alg),
                        _ => self.report(name.span(), format!("{field}.algorithms: {:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA", name.get_ref())),
                    }
                }
                out
            }
        };
        if algorithms.is_empty() {
            self.report(
                span.clone(),
                format!("{field}.algorithms: name at least one"),
            );
        }
        let mut claims_to_headers = Vec::new();
        for (claim, header) in &jwt.claims_to_headers {
            match header_name(header.get_ref()) {
                Some(name) => claims_to_headers.push((claim.clone(), name)),
                None => self.report(
                    header.span(),
                    format!(
                        "{field}.claims_to_headers.{claim}: {:?} is not a header name",
                        header.get_ref()
                    ),
                ),
            }
        }
        Some(JwtConfig {
            keys,
            issuer: jwt.issuer.as_ref().map(|i| i.get_ref().clone()),
            audience: jwt.audience.iter().map(|a| a.get_ref().clone()).collect(),
            algorithms,
            leeway: self.duration_or_zero(
                &jwt.leeway,
                &format!("{field}.leeway"),
                Duration::from_secs(30),
            ),
            cookie: jwt.cookie.as_ref().map(|c| c.get_ref().clone()),
            claims_to_headers,
            refresh: self.duration(
                &jwt.refresh,
                &format!("{field}.refresh"),
                Duration::from_secs(300),
            ),
        })
    }

    /// `forward_auth`: a pool of this config; a path to ask, if not the request's own.
    fn forward_auth(
        &mut self,
        file: &ForwardAuthFile,
        field: &str,
        pools: &HashSet<&str>,
    ) -> Option<ForwardAuthConfig> {
        let field = format!("{field}.forward_auth");
        let pool = file.pool.get_ref();
        if !pools.contains(pool.as_str()) {
            self.report(
                file.pool.span(),
                format!("{field}.pool: no pool is named {pool:?}"),
            );
            return None;
        }
        let path = match &file.path {
            None => None,
            Some(path) => match path.get_ref().parse::<http::uri::PathAndQuery>() {
                Ok(p) if p.as_str().starts_with('/') => Some(p),
                _ => {
                    self.report(
                        path.span(),
                        format!(
                            "{field}.path: {:?} is not a path starting with '/'",
                            path.get_ref()
                        ),
                    );
                    return None;
                }
            },
        };
        let copy_headers = file
            .copy_headers
            .iter()
            .filter_map(|h| {
                let name = header_name(h.get_ref());
                if name.is_none() {
                    self.report(
                        h.span(),
                        format!(
                            "{field}.copy_headers: {:?} is not a header name",
                            h.get_ref()
                        ),
                    );
                }
                name
            })
            .collect();
        let on_error: u16 = self.int(&file.on_error, &format!("{field}.on_error"), 400..=599, 503);
        Some(ForwardAuthConfig {
            pool: pool.clone(),
            path,
            timeout: self.duration(
                &file.timeout,
                &format!("{field}.timeout"),
                Duration::from_secs(5),
            ),
            copy_headers,
            on_error: http::StatusCode::from_u16(on_error)
                .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE),
            cache: self.duration_or_zero(&file.cache, &format!("{field}.cache"), Duration::ZERO),
        })
    }
}

/// Whether `hash` is one we verify: bcrypt (`$2a$`, `$2b$`, `$2y$`) or argon2 (PHC string).
fn password_hash_kind(hash: &str) -> Result<(), String> {
    if ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|p| hash.starts_with(p))
    {
        return hash
            .parse::<bcrypt::HashParts>()
            .map(|_| ())
            .map_err(|err| format!("not a bcrypt hash: {err}"));
    }
    if hash.starts_with("$argon2") {
        return argon2::PasswordHash::new(hash)
            .map(|_| ())
            .map_err(|err| format!("not an argon2 hash: {err}"));
    }
    let kind = if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
        "an MD5-crypt hash"
    } else if hash.starts_with("{SHA}") {
        "an unsalted SHA-1 hash"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "a SHA-crypt hash"
    } else {
        "a plain or crypt(3) password"
    };
    Err(format!(
        "{kind} is refused: make the file with `htpasswd -B` (bcrypt) or an argon2 tool"
    ))
}

pub(super) fn header_name(text: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(text.as_bytes()).ok()
}

fn is_hmac(alg: jsonwebtoken::Algorithm) -> bool {
    use jsonwebtoken::Algorithm::{HS256, HS384, HS512};
    matches!(alg, HS256 | HS384 | HS512)
}

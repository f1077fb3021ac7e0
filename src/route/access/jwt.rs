//! JWT validation: a bearer token (or a cookie) checked against a key set that is fetched in
//! the background and read here through one atomic load; `iss`, `aud`, `exp` and `nbf` with
//! leeway; only the algorithms allowed, each only with a key of its own kind, and never `none`
//! or a shared secret. An unknown `kid` asks the fetcher for one early refresh.

use crate::config::JwtConfig;
use crate::config::jwt_keys::{JwtKey, KeyKind};
use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use jsonwebtoken::{Algorithm, Validation};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The claims of a verified token.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// A key set: the keys in force, swapped whole by the fetcher.
#[derive(Debug)]
pub struct KeySet {
    keys: ArcSwap<Vec<JwtKey>>,
    /// Set by a request whose `kid` is unknown; the fetcher clears it when it fetches.
    pub wanted: AtomicBool,
}

impl KeySet {
    /// A key set holding `keys`.
    pub fn new(keys: Vec<JwtKey>) -> Self {
        Self {
            keys: ArcSwap::from_pointee(keys),
            wanted: AtomicBool::new(false),
        }
    }

    /// Replaces the keys (the fetcher).
    pub fn store(&self, keys: Vec<JwtKey>) {
        self.keys.store(Arc::new(keys));
    }
}

/// A route's JWT policy, compiled.
#[derive(Debug)]
pub struct JwtGate {
    keys: Arc<KeySet>,
    /// One validation per algorithm allowed.
    validations: Box<[(Algorithm, Validation)]>,
    cookie: Option<Box<str>>,
    /// Claims copied to the forwarded request as headers.
    pub claims_to_headers: Box<[(Box<str>, HeaderName)]>,
    /// Tokens verified before, with their claims: a signature check costs far more than the
    /// request (an ES256 verification is some 200,000 instructions), and a client sends the
    /// same token many times. `exp` and `nbf` are checked again on every use. Emptied whole
    /// when full, and with every reload.
    verified: papaya::HashMap<Box<[u8]>, Arc<Verified>>,
    leeway: u64,
}

/// A token verified once: its claims and the times it is valid between.
#[derive(Debug)]
struct Verified {
    claims: Arc<Claims>,
    not_before: Option<u64>,
    expires: u64,
}

/// Tokens a JWT policy remembers at most.
const REMEMBERED_TOKENS: usize = 10_000;

/// Why a request's token was refused: RFC 6750's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token at all.
    Missing,
    /// A token that is malformed, badly signed, expired or not for us.
    Invalid(&'static str),
}

impl Refusal {
    /// The `WWW-Authenticate` value for it.
    pub fn challenge(self) -> HeaderValue {
        match self {
            Self::Missing => HeaderValue::from_static("Bearer"),
            Self::Invalid(why) => HeaderValue::from_str(&format!(
                "Bearer error=\"invalid_token\", error_description=\"{why}\""
            ))
            .unwrap_or(HeaderValue::from_static("Bearer error=\"invalid_token\"")),
        }
    }

    /// The access log's and the metric's word for it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid(_) => "invalid",
        }
    }
}

impl JwtGate {
    /// Compiles `config` around `keys` (shared by every route fetching the same URL).
    pub fn new(config: &JwtConfig, keys: Arc<KeySet>) -> Self {
        let validations = config
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = config.leeway.as_secs();
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(issuer) = &config.issuer {
                    v.set_issuer(&[issuer]);
                    required.push("iss");
                }
                if config.audience.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&config.audience);
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                (alg, v)
            })
            .collect();
        Self {
            keys,
            validations,
            cookie: config.cookie.as_deref().map(Into::into),
            claims_to_headers: config
                .claims_to_headers
                .iter()
                .map(|(claim, header)| (claim.as_str().into(), header.clone()))
                .collect(),
            verified: papaya::HashMap::new(),
            leeway: config.leeway.as_secs(),
        }
    }

    /// The request's verified claims, or why there are none.
    pub fn verify(&self, headers: &HeaderMap) -> Result<Arc<Claims>, Refusal> {
        let token = self.token(headers).ok_or(Refusal::Missing)?;
        let remembered = self.verified.pin();
        if let Some(known) = remembered.get(token.as_bytes()) {
            let now = jsonwebtoken::get_current_timestamp();
            if now > known.expires.saturating_add(self.leeway) {
                return Err(Refusal::Invalid("token expired"));
            }
            if known
                .not_before
                .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
            {
                return Err(Refusal::Invalid("token not valid yet"));
            }
            return Ok(Arc::clone(&known.claims));
        }
        let claims = Arc::new(self.check(token)?);
        let time = |name: &str| claims.get(name).and_then(serde_json::Value::as_u64);
        if let Some(expires) = time("exp") {
            if remembered.len() >= REMEMBERED_TOKENS {
                remembered.clear();
            }
            let verified = Verified {
                claims: Arc::clone(&claims),
                not_before: time("nbf"),
                expires,
            };
            remembered.insert(token.as_bytes().into(), Arc::new(verified));
        }
        Ok(claims)
    }

    /// Verifies `token`'s signature and claims.
    fn check(&self, token: &str) -> Result<Claims, Refusal> {
        let head =
            jsonwebtoken::decode_header(token).map_err(|_| Refusal::Invalid("malformed token"))?;
        let validation = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == head.alg)
            .map(|(_, v)| v)
            .ok_or(Refusal::Invalid("algorithm not allowed"))?;
        let keys = self.keys.keys.load();
        let kind = KeyKind::of(head.alg);
        let fits = |key: &&JwtKey| key.kind == kind && key.alg.is_none_or(|a| a == head.alg);
        let candidates: Vec<&JwtKey> = match &head.kid {
            Some(kid) => keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .filter(fits)
                .collect(),
            None => keys.iter().filter(fits).collect(),
        };
        if candidates.is_empty() {
            if head.kid.is_some() {
                // Relaxed: a hint for the fetcher, which reads it on its next tick.
                self.keys.wanted.store(true, Ordering::Relaxed);
            }
            return Err(Refusal::Invalid("no key for this token"));
        }
        let mut last = Refusal::Invalid("bad signature");
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, validation) {
                Ok(data) => return Ok(data.claims),
                Err(err) => last = Refusal::Invalid(describe(err.kind())),
            }
        }
        Err(last)
    }

    fn token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value.to_str().ok()?;
            let (scheme, token) = value.split_once(' ')?;
            return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
        }
        let name = self.cookie.as_deref()?;
        cookie(headers, name)
    }
}

/// The value of cookie `name` in the request's `Cookie` headers, if it is text.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    std::str::from_utf8(cookie_bytes(headers, name)?).ok()
}

/// The value of cookie `name` in the request's `Cookie` headers, as sent. The pairs are
/// found by `memchr` and never split into strings: sticky pools read a cookie on every
/// request.
pub fn cookie_bytes<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    for value in headers.get_all(header::COOKIE) {
        let mut rest = value.as_bytes();
        loop {
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            let pair = rest[..end].trim_ascii_start();
            if let Some([b'=', value @ ..]) = pair.strip_prefix(name) {
                return Some(value.trim_ascii_end());
            }
            let Some(next) = rest.get(end + 1..) else {
                break;
            };
            rest = next;
        }
    }
    None
}

/// A claim as a header value: strings as they are, numbers and booleans as JSON.
pub fn claim_value(claims: &Claims, name: &str) -> Option<HeaderValue> {
    match claims.get(name)? {
        serde_json::Value::String(s) => HeaderValue::from_str(s).ok(),
        v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
            HeaderValue::from_str(&v.to_string()).ok()
        }
        _ => None,
    }
}

fn describe(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => "token expired",
        K::ImmatureSignature => "token not valid yet",
        K::InvalidAudience => "wrong audience",
        K::InvalidIssuer => "wrong issuer",
        K::MissingRequiredClaim(_) => "a required claim is missing",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm => "algorithm not allowed",
        _ => "invalid token",
    }
}

#[cfg(test)]
mod tests {
    use super::cookie;
    use http::HeaderMap;

    #[test]
    fn a_cookie_is_found_by_its_whole_name_in_any_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", "ab=1; a=2;b=x=y ".parse().unwrap());
        headers.append("cookie", "c=3".parse().unwrap());
        assert_eq!(cookie(&headers, "a"), Some("2"));
        assert_eq!(cookie(&headers, "ab"), Some("1"));
        assert_eq!(cookie(&headers, "b"), Some("x=y"));
        assert_eq!(cookie(&headers, "c"), Some("3"));
        assert_eq!(cookie(&headers, "d"), None);
        headers.insert("cookie", "a = 1".parse().unwrap());
        assert_eq!(
            cookie(&headers, "a"),
            None,
            "a name is not trimmed inside the pair"
        );
    }
}

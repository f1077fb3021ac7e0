//! Phase 4, access: a route's auth and rate limits, in order — basic auth, JWT, forward auth,
//! then every rate-limit rule. A refusal ends the request here with its own response (401
//! with a challenge, 429 with `Retry-After` and `RateLimit` fields, or the auth service's own
//! answer); nothing reaches the route's pool.

use super::routing::Early;
use super::{Downstream, Exchange, Proxy, ProxyBody};
use crate::body::ClientRequest;
use crate::config::LimitKey;
use crate::route::access::basic::Verdict;
use crate::route::access::jwt::{Claims, Refusal, claim_value, cookie};
use crate::route::access::limit::{self, Decision};
use crate::route::access::{Failure, Gate, LimitRule, clock_at};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use std::sync::Arc;

mod forward;

/// Lets the request through `gate`, or answers it.
pub async fn admit(
    proxy: &Proxy,
    gate: &Arc<Gate>,
    req: &mut ClientRequest,
    downstream: &Downstream,
    exchange: &Exchange,
) -> Result<(), Early> {
    if let Some(basic) = &gate.basic {
        let valid = match basic.look(req.headers()) {
            Verdict::Known => true,
            Verdict::Missing => {
                gate.failed(Failure::BasicMissing);
                return Err(unauthorized(basic.challenge.clone()));
            }
            Verdict::Unknown(credentials) => {
                // A password hash takes milliseconds by design: off the runtime's threads.
                let gate = Arc::clone(gate);
                tokio::task::spawn_blocking(move || {
                    gate.basic.as_ref().is_some_and(|b| b.verify(&credentials))
                })
                .await
                .unwrap_or(false)
            }
        };
        if !valid {
            gate.failed(Failure::BasicInvalid);
            return Err(unauthorized(basic.challenge.clone()));
        }
    }
    let claims = verify_token(gate, req)?;
    if let Some(forward) = &gate.forward {
        forward::ask(proxy, gate, forward, req, downstream, exchange).await?;
    }
    limit(gate, req, downstream, exchange, claims.as_deref())
}

/// Lets the request through a `gate` that never waits (JWT, rate limits), or answers it.
#[inline]
pub fn admit_now(
    gate: &Gate,
    req: &mut ClientRequest,
    downstream: &Downstream,
    exchange: &Exchange,
) -> Result<(), Early> {
    let claims = verify_token(gate, req)?;
    limit(gate, req, downstream, exchange, claims.as_deref())
}

/// The JWT policy: the token's claims (their headers set on `req`), or a 401.
#[inline]
fn verify_token(gate: &Gate, req: &mut ClientRequest) -> Result<Option<Arc<Claims>>, Early> {
    let Some(jwt) = &gate.jwt else {
        return Ok(None);
    };
    match jwt.verify(req.headers()) {
        Ok(claims) => {
            let headers = req.headers_mut();
            for (claim, name) in &jwt.claims_to_headers {
                // Never the client's own value for a header the token fills.
                headers.remove(name);
                if let Some(value) = claim_value(&claims, claim) {
                    headers.insert(name.clone(), value);
                }
            }
            Ok(Some(claims))
        }
        Err(refusal) => {
            gate.failed(match refusal {
                Refusal::Missing => Failure::JwtMissing,
                Refusal::Invalid(_) => Failure::JwtInvalid,
            });
            Err(unauthorized(refusal.challenge()))
        }
    }
}

/// Every rate-limit rule, in order: the first that refuses answers 429.
fn limit(
    gate: &Gate,
    req: &ClientRequest,
    downstream: &Downstream,
    exchange: &Exchange,
    claims: Option<&Claims>,
) -> Result<(), Early> {
    if gate.limits.is_empty() {
        return Ok(());
    }
    let now = clock_at(exchange.started());
    for rule in &gate.limits {
        let key = key_of(rule, req, downstream, exchange, claims);
        let decision = match &rule.fleet {
            None => rule.table.admit(&rule.gcra, key, now),
            Some(share) => share.admit(key, now, rule.config.on_store_error),
        };
        if decision.admitted {
            rule.allowed.increment(1);
        } else if rule.config.dry_run {
            rule.dry_run.increment(1);
        } else {
            rule.limited.increment(1);
            return Err(Early::Reply(Box::new(too_many(rule, &decision))));
        }
    }
    Ok(())
}

/// The key `rule` counts this request by.
fn key_of(
    rule: &LimitRule,
    req: &ClientRequest,
    downstream: &Downstream,
    exchange: &Exchange,
    claims: Option<&Claims>,
) -> u128 {
    match &rule.config.key {
        LimitKey::ClientIp {
            v4_prefix,
            v6_prefix,
        } => {
            let ip = match downstream.trusted_proxies {
                // The peer, without reading back the record.
                None => Some(downstream.peer.ip()),
                Some(_) => exchange.client_ip(),
            };
            ip.map_or(0, |ip| limit::ip_key(ip, *v4_prefix, *v6_prefix))
        }
        LimitKey::Header(name) => {
            let value = req
                .headers()
                .get(name)
                .map_or(&b""[..], HeaderValue::as_bytes);
            rule.text_keys.key(value)
        }
        LimitKey::Cookie(name) => {
            let value = cookie(req.headers(), name).unwrap_or("");
            rule.text_keys.key(value.as_bytes())
        }
        LimitKey::Claim(name) => match claims.and_then(|c| c.get(name.as_str())) {
            Some(serde_json::Value::String(text)) => rule.text_keys.key(text.as_bytes()),
            Some(other) => rule.text_keys.key(other.to_string().as_bytes()),
            None => rule.text_keys.key(b""),
        },
        LimitKey::Route => 0,
    }
}

/// 401 with `challenge` in `WWW-Authenticate`.
fn unauthorized(challenge: HeaderValue) -> Early {
    let mut response = short(StatusCode::UNAUTHORIZED, "unauthorized\n");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    Early::Reply(Box::new(response))
}

/// 429 with `Retry-After`, the IETF `RateLimit-Policy` and `RateLimit` fields and, when the
/// rule asks, the legacy `X-RateLimit-*` ones.
fn too_many(rule: &LimitRule, decision: &Decision) -> Response<ProxyBody> {
    let mut response = short(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
    let retry = decision.retry_after.as_secs() + u64::from(decision.retry_after.subsec_nanos() > 0);
    let reset = decision.reset.as_secs() + u64::from(decision.reset.subsec_nanos() > 0);
    let headers = response.headers_mut();
    let number = |n: u64| HeaderValue::from(n);
    headers.insert(header::RETRY_AFTER, number(retry.max(1)));
    headers.insert(RATELIMIT_POLICY, rule.policy.clone());
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\";r=0;t={}", rule.name, retry.max(1))) {
        headers.insert(RATELIMIT, value);
    }
    if rule.config.legacy_headers {
        headers.insert(X_RATELIMIT_LIMIT, number(u64::from(rule.config.count)));
        headers.insert(X_RATELIMIT_REMAINING, number(0));
        headers.insert(X_RATELIMIT_RESET, number(reset.max(1)));
    }
    response
}

/// A short plain-text response.
fn short(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

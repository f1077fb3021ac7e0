//! Phase 5, pick: the pool's balancer chooses the backend for the first attempt; a hashing
//! pool by the request's key.

use super::exchange::Exchange;
use crate::config::{HashConfig, HashKey};
use crate::error::ProxyError;
use crate::route::access::jwt::cookie;
use crate::route::access::limit::ip_key;
use crate::snapshot::Pool;
use crate::upstream::BackendState;
use crate::upstream::sticky::{self, Binding, Sticky};
use http::Request;
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// The backend for the request's first attempt, noted in `exchange`; a 503 when no backend
/// of `pool` can take it.
#[inline]
pub fn pick<B>(
    pool: &Pool,
    req: &Request<B>,
    exchange: &mut Exchange,
) -> Result<Arc<BackendState>, ProxyError> {
    let picked = match &pool.policy.sticky {
        None => {
            let key = match &pool.policy.hash {
                None => None,
                Some(hash) => key(hash, req, exchange),
            };
            pool.pick(key)
        }
        Some(sticky) => bound(pool, sticky, req, exchange),
    };
    let Some((index, backend)) = picked else {
        pool.policy.traffic.no_backend.increment(1);
        return Err(ProxyError::NoBackend {
            pool: Arc::clone(&pool.name),
        });
    };
    exchange.chose(index, &backend.name);
    Ok(Arc::clone(backend))
}

/// A sticky pool's backend: the one the request's cookie binds it to, when it can take it;
/// else a pick, and a cookie binding the client to it.
fn bound<'p, B>(
    pool: &'p Pool,
    sticky: &Sticky,
    req: &Request<B>,
    exchange: &mut Exchange,
) -> Option<(usize, &'p Arc<BackendState>)> {
    let now = exchange.unix_seconds();
    let (mut start, mut moved) = (now, false);
    if let Some(value) = cookie(req.headers(), &sticky.config.cookie) {
        match sticky.read(value, now) {
            Binding::Bound {
                backend,
                start: began,
                seen,
                current,
            } => {
                if let Some(found) = pool.bound(&backend) {
                    sticky.results[sticky::PINNED].increment(1);
                    if sticky.refresh(seen, current, now) {
                        exchange.set_cookie = sticky.cookie(&backend, began, now);
                    }
                    return Some(found);
                }
                // The session goes on with another backend.
                sticky.results[sticky::MOVED].increment(1);
                (start, moved) = (began, true);
            }
            Binding::Invalid => sticky.results[sticky::INVALID].increment(1),
        }
    }
    if !moved {
        sticky.results[sticky::NEW].increment(1);
    }
    let picked = pool.pick(None)?;
    exchange.set_cookie = sticky.cookie(&picked.1.name, start, now);
    Some(picked)
}

/// The request's key hashed (xxh3, the same on every replica and release), or `None` when the
/// request does not carry it.
fn key<B>(hash: &HashConfig, req: &Request<B>, exchange: &Exchange) -> Option<u64> {
    match &hash.key {
        HashKey::ClientIp {
            v4_prefix,
            v6_prefix,
        } => {
            let network = ip_key(exchange.client_ip()?, *v4_prefix, *v6_prefix);
            Some(xxh3_64(&network.to_be_bytes()))
        }
        HashKey::Header(name) => Some(xxh3_64(req.headers().get(name)?.as_bytes())),
        HashKey::Cookie(name) => Some(xxh3_64(cookie(req.headers(), name)?.as_bytes())),
        HashKey::Query(name) => {
            let query = req.uri().query()?;
            let value = query.split('&').find_map(|pair| {
                let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
                (n == name).then_some(v)
            })?;
            Some(xxh3_64(value.as_bytes()))
        }
        HashKey::Path => Some(xxh3_64(req.uri().path().as_bytes())),
        HashKey::PathRegex(pattern) => {
            let captures = pattern.0.captures(req.uri().path())?;
            Some(xxh3_64(captures.get(1)?.as_str().as_bytes()))
        }
    }
}

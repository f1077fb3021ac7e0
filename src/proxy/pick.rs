//! Phase 5, pick: the pool's balancer chooses the backend for the first attempt; a hashing
//! pool by the request's key, a sticky pool by its cookie; a pool with an admission queue
//! makes the request wait while its backends are full.

use super::exchange::Exchange;
use crate::config::{HashConfig, HashKey};
use crate::error::ProxyError;
use crate::route::access::jwt::cookie_bytes;
use crate::route::access::limit::ip_key;
use crate::snapshot::Pool;
use crate::upstream::admission::{Admission, Shed};
use crate::upstream::sticky::{self, Binding, Sticky};
use crate::upstream::{BackendState, Exclusion};
use http::Request;
use std::sync::Arc;
use tokio::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

/// The backend for the request's first attempt, noted in `exchange`; a 503 when no backend
/// of `pool` can take it.
#[inline]
pub fn pick<B>(
    pool: &Pool,
    req: &Request<B>,
    exchange: &mut Exchange,
) -> Result<Arc<BackendState>, ProxyError> {
    match choose(pool, None, req, exchange) {
        Choice::Picked(backend) => Ok(backend),
        Choice::Wait(_) | Choice::Refused => Err(no_backend(pool)),
    }
}

/// As `pick`, in a pool with an admission queue: while backends are full (and for a keyed
/// request, while its own is, unless the queue spills) the request waits its turn, first come
/// first served, until a request ends and frees a place. Shed with a 503 when the queue is
/// full or the wait reaches `queue_timeout`; a client that leaves drops this future, and its
/// place with it.
pub async fn admit<B>(
    pool: &Pool,
    admission: &Arc<Admission>,
    req: &Request<B>,
    exchange: &mut Exchange,
) -> Result<Arc<BackendState>, ProxyError> {
    // Nobody waits: a place, if there is one, is this request's.
    let mut wants = None;
    if !admission.busy() {
        match choose(pool, Some(admission), req, exchange) {
            Choice::Picked(backend) => return Ok(backend),
            Choice::Refused => return Err(no_backend(pool)),
            Choice::Wait(backend) => wants = backend,
        }
    }
    let began = Instant::now();
    let deadline = began + admission.timeout;
    loop {
        let mut ticket = admission
            .enqueue()
            .map_err(|reason| shed(pool, admission, reason, began))?;
        // A place that freed before the queueing woke nobody: the longest waiter takes it.
        // Places already promised to woken requests are not promised again, or the extra
        // waiters woken would lose the race and queue anew at the back.
        let room = match &wants {
            None => pool.room(),
            Some(backend) => backend.room(),
        };
        if room > admission.promised() {
            admission.wake_one();
        }
        if tokio::time::timeout_at(deadline, &mut ticket)
            .await
            .is_err()
        {
            ticket.timed_out();
            return Err(shed(pool, admission, Shed::QueueTimeout, began));
        }
        let choice = choose(pool, Some(admission), req, exchange);
        ticket.finish(matches!(choice, Choice::Picked(_)));
        match choice {
            Choice::Picked(backend) => {
                admission.waited.record(began.elapsed().as_secs_f64());
                return Ok(backend);
            }
            Choice::Refused => return Err(no_backend(pool)),
            // Another took the place first (or a keyed request's own backend is still
            // full): back in the queue, with the same deadline.
            Choice::Wait(backend) => wants = backend,
        }
    }
}

/// What a pool can do with a request now.
enum Choice {
    /// This backend takes it (noted in the exchange).
    Picked(Arc<BackendState>),
    /// Backends are full: it may wait for a place (on this one, for a keyed request).
    Wait(Option<Arc<BackendState>>),
    /// No backend can take it.
    Refused,
}

/// The pool's choice for the request; with `queue`, a full backend is waited for rather than
/// passed over: a keyed request's own unless the queue spills, any other one's when all are.
/// Always inlined: `pick` passes no queue, and the checks for one fold away.
#[inline(always)]
fn choose<B>(
    pool: &Pool,
    queue: Option<&Admission>,
    req: &Request<B>,
    exchange: &mut Exchange,
) -> Choice {
    let picked = match &pool.policy.sticky {
        None => {
            let key = match &pool.policy.hash {
                None => None,
                Some(hash) => key(hash, req, exchange),
            };
            match (key, queue) {
                (Some(key), Some(queue)) => match pool.pick_held(key) {
                    Some((_, held)) if held.full() && !queue.spill => {
                        return Choice::Wait(Some(Arc::clone(held)));
                    }
                    Some((_, held)) if held.full() => {
                        queue.spilled.increment(1);
                        pool.pick(Some(key))
                    }
                    held => held,
                },
                _ => pool.pick(key),
            }
        }
        Some(sticky) => match bound(pool, sticky, queue, req, exchange) {
            Ok(picked) => picked,
            Err(held) => return Choice::Wait(Some(held)),
        },
    };
    match picked {
        Some((index, backend)) => {
            exchange.chose(index, &backend.name);
            Choice::Picked(Arc::clone(backend))
        }
        None if queue.is_some() && pool.saturated() => Choice::Wait(None),
        None => Choice::Refused,
    }
}

fn no_backend(pool: &Pool) -> ProxyError {
    pool.policy.traffic.no_backend.increment(1);
    ProxyError::NoBackend {
        pool: Arc::clone(&pool.name),
    }
}

/// A shed request's error, counted, its wait recorded.
fn shed(pool: &Pool, admission: &Admission, reason: Shed, began: Instant) -> ProxyError {
    admission.shed[reason as usize].increment(1);
    if reason == Shed::QueueTimeout {
        admission.waited.record(began.elapsed().as_secs_f64());
    }
    ProxyError::Shed {
        pool: Arc::clone(&pool.name),
        reason,
        retry_after: admission.retry_after,
    }
}

/// A sticky pool's backend: the one the request's cookie binds it to, when it can take it;
/// else a pick, and a cookie binding the client to it. With a `queue` that does not spill,
/// a bound backend that is only full is waited for (`Err`).
fn bound<'p, B>(
    pool: &'p Pool,
    sticky: &Sticky,
    queue: Option<&Admission>,
    req: &Request<B>,
    exchange: &mut Exchange,
) -> Result<Option<(usize, &'p Arc<BackendState>)>, Arc<BackendState>> {
    let now = exchange.unix_seconds();
    let (mut start, mut moved) = (now, false);
    if let Some(value) = cookie_bytes(req.headers(), &sticky.config.cookie) {
        match sticky.read(value, now) {
            Binding::Bound {
                backend,
                start: began,
                seen,
                current,
            } => {
                if let Some(found) = pool.bound(&backend) {
                    sticky.results[sticky::PINNED].increment(1);
                    if found.1.is(Exclusion::Draining) {
                        // Its drain completes once its sessions have stopped coming.
                        found.1.session_seen(sticky.quiet_ms);
                    }
                    if sticky.refresh(seen, current, now) {
                        exchange.set_cookie = sticky.cookie(&backend, began, now);
                    }
                    return Ok(Some(found));
                }
                if let Some(queue) = queue {
                    if let Some(held) = pool.bound_but_full(&backend) {
                        if !queue.spill {
                            return Err(Arc::clone(held));
                        }
                        queue.spilled.increment(1);
                    }
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
    let Some(picked) = pool.pick(None) else {
        return Ok(None);
    };
    exchange.set_cookie = sticky.cookie(&picked.1.name, start, now);
    Ok(Some(picked))
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
        HashKey::Cookie(name) => Some(xxh3_64(cookie_bytes(req.headers(), name)?)),
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

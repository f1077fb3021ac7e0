//! Phase 5, pick: the pool's balancer chooses the backend for the first attempt.

use super::exchange::Exchange;
use crate::error::ProxyError;
use crate::snapshot::Pool;
use crate::upstream::BackendState;
use std::sync::Arc;

/// The backend for the request's first attempt, noted in `exchange`; a 503 when no backend
/// of `pool` can take it.
#[inline]
pub fn pick(pool: &Pool, exchange: &mut Exchange) -> Result<Arc<BackendState>, ProxyError> {
    let Some((index, backend)) = pool.pick() else {
        pool.policy.traffic.no_backend.increment(1);
        return Err(ProxyError::NoBackend {
            pool: Arc::clone(&pool.name),
        });
    };
    exchange.chose(index, &backend.name);
    Ok(Arc::clone(backend))
}

//! `BackendState`: one backend's identity plus the counters every request touches.

use crate::balance::Candidate;
use crate::config::BackendConfig;
use http::uri::Authority;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// A backend as the data plane sees it; shared by `Arc` between snapshots and in-flight requests.
#[derive(Debug)]
pub struct BackendState {
    /// The pool this backend belongs to.
    pub pool: Arc<str>,
    /// Unique within the pool.
    pub name: Arc<str>,
    /// Where requests are sent (`host:port`).
    pub authority: Authority,
    /// Configured share of traffic.
    pub weight: u32,
    /// Circuit breaker: at this many requests in flight the backend is skipped.
    max_requests: u32,
    in_flight: AtomicU32,
}

impl BackendState {
    /// Creates the state of a backend of pool `pool`.
    pub fn new(pool: Arc<str>, config: &BackendConfig) -> Self {
        Self {
            pool,
            name: config.name.as_str().into(),
            authority: config.address.clone(),
            weight: config.weight.get(),
            max_requests: config.max_requests.map_or(u32::MAX, |m| m.get()),
            in_flight: AtomicU32::new(0),
        }
    }

    /// Requests sent to this backend whose response has not finished yet.
    pub fn in_flight(&self) -> u32 {
        // Relaxed: a load estimate for balancing; nothing else is published through it.
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlightGuard {
        // Relaxed: see `in_flight`. The max_requests check is not atomic with this increment, so
        // concurrent picks may overshoot by a few, as with Envoy's circuit breakers.
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(Arc::clone(self))
    }
}

impl Candidate for BackendState {
    fn weight(&self) -> u32 {
        self.weight
    }

    fn in_flight(&self) -> u32 {
        BackendState::in_flight(self)
    }

    fn is_selectable(&self) -> bool {
        self.in_flight() < self.max_requests
    }
}

/// Holds one in-flight request against a backend; dropping it ends the request.
#[derive(Debug)]
pub struct InFlightGuard(Arc<BackendState>);

impl InFlightGuard {
    /// The backend this request went to.
    pub fn backend(&self) -> &Arc<BackendState> {
        &self.0
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        // Relaxed: see `BackendState::in_flight`.
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

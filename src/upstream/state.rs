//! `BackendState`: one backend's identity plus the atomics every request touches: in-flight
//! count, exclusion flags, effective weight and passive failure counters.
//!
//! Longer than most files on purpose: every atomic and every accessor to it stays in one
//! place, so the memory orderings chosen for each can be read side by side.

use super::admission::Admission;
use super::clock::millis_now;
use super::connect_log::ConnectFailureLog;
use super::pool::ConnectionPool;
use super::status::BackendStatus;
use crate::balance::slow_start::SCALE;
use crate::balance::{Candidate, Gradient, Latency};
use crate::config::{AdmissionConfig, BackendConfig};
use crate::error::Failure;
use crate::events::State;
use crate::metrics::BackendMetrics;
use arc_swap::ArcSwap;
use http::uri::Authority;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Reasons a backend takes no new requests; each is one bit of `BackendState::exclusions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exclusion {
    /// Failed active probes.
    Unhealthy = 1,
    /// Ejected by passive outlier detection.
    Ejected = 2,
    /// Drained by an operator.
    Draining = 4,
}

impl Exclusion {
    /// Every exclusion: what a pool normally honours.
    pub const ALL: u8 = 1 | 2 | 4;
    /// What a pool in panic mode still honours: operators' drains, not health.
    pub const PANIC: u8 = Exclusion::Draining as u8;
}

/// Facts about a backend that take nothing out of service but show in its state; bits of the
/// same word as the exclusions, outside every mask a pick honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mark {
    /// Its weight is ramping up after it came (back) into service.
    SlowStart = 8,
    /// Its drain deadline passed: what was left of its connections was closed.
    DrainCut = 16,
    /// It crossed its failure threshold but stays in service: ejecting it would pass the
    /// pool's `max_ejection_percent`.
    HeldIn = 32,
}

/// Names one backend for as long as it exists: its pool's name and a serial unique in the
/// process. A name alone is not enough: a backend leaving and the one replacing it may share
/// one, and a report about the first must not reach the second.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendKey {
    /// Its pool's name.
    pub pool: Arc<str>,
    /// Its serial.
    pub serial: u64,
}

/// Sent to the control plane when a backend crosses a passive failure threshold.
#[derive(Debug)]
pub struct OutlierReport {
    /// The backend.
    pub backend: BackendKey,
    /// The failure that crossed the threshold.
    pub failure: Failure,
    /// How many in a row.
    pub consecutive: u32,
}

/// A backend as the data plane sees it; shared by `Arc` between snapshots and in-flight requests.
#[derive(Debug)]
pub struct BackendState {
    /// The pool this backend belongs to.
    pub pool: Arc<str>,
    /// Unique within the pool among backends not leaving it.
    pub name: Arc<str>,
    /// Unique in the process (see `BackendKey`).
    pub serial: u64,
    /// Where requests are sent (`host:port`).
    pub authority: Authority,
    /// At this many requests in flight the backend is skipped: the configured limit, or an
    /// adaptive pool's current one.
    max_in_flight: AtomicU32,
    /// The configured limit (`u32::MAX`: none).
    configured_limit: AtomicU32,
    /// An adaptive pool's limit for it.
    gradient: Gradient,
    in_flight: AtomicU32,
    exclusions: AtomicU8,
    /// Balancer weight in `1 / slow_start::SCALE` units; lower than configured while ramping.
    effective_weight: AtomicU32,
    consecutive_failures: AtomicU32,
    consecutive_5xx: AtomicU32,
    /// Until when (`millis_now` units) new requests avoid this backend after a refused
    /// connection; 0 when they need not.
    connect_backoff_until: AtomicU64,
    /// While draining: until when (`millis_now` units) a sticky session that used it last
    /// may still come back; its drain is not complete before. 0: none.
    sessions_until: AtomicU64,
    /// How often this backend's connect failures are logged.
    pub connect_log: ConnectFailureLog,
    status: ArcSwap<BackendStatus>,
    /// Cancelled (and replaced) when a drain's deadline closes this backend's connections.
    cut: ArcSwap<CancellationToken>,
    /// Failure counters, registered when the backend was created.
    pub metrics: BackendMetrics,
    /// Connections to this backend, kept as long as the backend is.
    pub connections: Arc<ConnectionPool>,
    /// Its latency estimate, for least-latency pools.
    pub latency: Latency,
}

impl BackendState {
    /// Creates the state of a backend of pool `pool`, healthy or not yet proven so.
    pub fn new(
        pool: Arc<str>,
        config: &BackendConfig,
        healthy: bool,
        metrics: BackendMetrics,
    ) -> Self {
        // Relaxed: only uniqueness matters.
        static SERIALS: AtomicU64 = AtomicU64::new(0);
        Self {
            pool,
            name: config.name.as_str().into(),
            serial: SERIALS.fetch_add(1, Ordering::Relaxed),
            authority: config.address.clone(),
            max_in_flight: AtomicU32::new(max_in_flight(config)),
            configured_limit: AtomicU32::new(max_in_flight(config)),
            gradient: Gradient::default(),
            in_flight: AtomicU32::new(0),
            exclusions: AtomicU8::new(if healthy {
                0
            } else {
                Exclusion::Unhealthy as u8
            }),
            effective_weight: AtomicU32::new(config.weight.get() * SCALE),
            consecutive_failures: AtomicU32::new(0),
            consecutive_5xx: AtomicU32::new(0),
            connect_backoff_until: AtomicU64::new(0),
            sessions_until: AtomicU64::new(0),
            connect_log: ConnectFailureLog::default(),
            status: ArcSwap::from_pointee(BackendStatus::initial(!healthy)),
            cut: ArcSwap::from_pointee(CancellationToken::new()),
            metrics,
            connections: Arc::new(ConnectionPool::new(config.max_connections.map(|m| m.get()))),
            latency: Latency::default(),
        }
    }

    /// Requests sent to this backend whose response has not finished yet.
    pub fn in_flight(&self) -> u32 {
        // Relaxed: a load estimate for balancing; nothing else is published through it.
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> InFlightGuard {
        // Relaxed: see `in_flight`. The max_in_flight check is not atomic with this increment, so
        // concurrent picks may overshoot by a few, as with Envoy's circuit breakers.
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            backend: Arc::clone(self),
            admission: None,
        }
    }

    /// As `begin_request`, in a pool with an admission queue: the request's end wakes the
    /// request that has waited longest.
    pub fn begin_admitted(self: &Arc<Self>, admission: &Arc<Admission>) -> InFlightGuard {
        let mut guard = self.begin_request();
        guard.admission = Some(Arc::clone(admission));
        guard
    }

    /// Its `max_in_flight` in force, if it has one.
    pub fn in_flight_limit(&self) -> Option<u32> {
        Some(self.max_in_flight.load(Ordering::Relaxed)).filter(|&limit| limit != u32::MAX)
    }

    /// An adaptive pool's sample: a response that took `nanos` sets the limit anew, up to the
    /// configured one (`AdmissionConfig::ADAPTIVE_CEILING` without one).
    pub fn adapt(&self, nanos: u64) {
        // Relaxed: see `in_flight`.
        let ceiling = match self.configured_limit.load(Ordering::Relaxed) {
            u32::MAX => AdmissionConfig::ADAPTIVE_CEILING,
            configured => configured,
        };
        let limit = self.gradient.sample(nanos, self.in_flight(), ceiling);
        self.max_in_flight.store(limit, Ordering::Relaxed);
    }

    /// A sticky session bound to this draining backend used it: its drain waits `quiet_ms`
    /// for the session's next request before it is complete.
    pub fn session_seen(&self, quiet_ms: u64) {
        // Relaxed: read by the control plane's periodic drain check only.
        self.sessions_until
            .store(millis_now().saturating_add(quiet_ms), Ordering::Relaxed);
    }

    /// Whether a sticky session may still come back to it (see `session_seen`).
    fn sessions_held(&self) -> bool {
        millis_now() < self.sessions_until.load(Ordering::Relaxed)
    }

    /// How many more requests it may take before its `max_in_flight`.
    pub fn room(&self) -> u32 {
        // Relaxed: see `in_flight`.
        self.max_in_flight
            .load(Ordering::Relaxed)
            .saturating_sub(self.in_flight())
    }

    /// Whether it is at its `max_in_flight`: open, but taking no new request.
    pub fn full(&self) -> bool {
        self.room() == 0
    }

    /// The set `Exclusion` bits.
    pub fn exclusions(&self) -> u8 {
        // Relaxed: the flags carry no other data; the snapshot swap that follows every change
        // is what publishes a consistent view.
        self.exclusions.load(Ordering::Relaxed)
    }

    /// Whether `exclusion` is set.
    pub fn is(&self, exclusion: Exclusion) -> bool {
        self.exclusions() & exclusion as u8 != 0
    }

    /// Sets or clears one exclusion. Control plane only.
    pub fn set(&self, exclusion: Exclusion, on: bool) {
        self.flip(exclusion as u8, on);
    }

    fn flip(&self, bit: u8, on: bool) {
        if on {
            self.exclusions.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.exclusions.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// Whether a new request may go here, honouring the exclusions in `mask`.
    pub fn accepts(&self, mask: u8) -> bool {
        // Relaxed: see `exclusions`.
        self.exclusions() & mask == 0
            && self.in_flight() < self.max_in_flight.load(Ordering::Relaxed)
    }

    /// Whether a connection to this backend failed moments ago: requests then go to others
    /// while there are any, whatever the ejection cap allows, so a dead backend costs a few
    /// refused connects per second rather than one per request.
    pub fn backing_off(&self) -> bool {
        // Relaxed: a hint for picking; a stale value only costs one more refused connect.
        let until = self.connect_backoff_until.load(Ordering::Relaxed);
        until != 0 && millis_now() < until
    }

    /// Applies a reloaded config of the same backend (or its pool's new admission settings):
    /// the configured limit again, an adaptive one starting over. Control plane only.
    pub fn update_limits(&self, config: &BackendConfig) {
        let limit = max_in_flight(config);
        self.max_in_flight.store(limit, Ordering::Relaxed);
        self.configured_limit.store(limit, Ordering::Relaxed);
        self.gradient.reset();
        self.connections
            .set_max_connections(config.max_connections.map(|m| m.get()));
    }

    /// Balancer weight in `1 / slow_start::SCALE` units.
    pub fn effective_weight(&self) -> u32 {
        // Relaxed: see `exclusions`.
        self.effective_weight.load(Ordering::Relaxed)
    }

    /// Sets the balancer weight. Control plane only.
    pub fn set_effective_weight(&self, weight: u32) {
        self.effective_weight
            .store(weight.max(1), Ordering::Relaxed);
    }

    /// Counts a response: it resets the connection-failure count, and a 5xx counts towards
    /// `threshold_5xx` (0: off) while anything else resets that count. Returns a report exactly
    /// when the 5xx count reaches the threshold.
    pub fn record_response(
        self: &Arc<Self>,
        status: http::StatusCode,
        threshold_5xx: u32,
    ) -> Option<OutlierReport> {
        reset(&self.consecutive_failures);
        if self.connect_backoff_until.load(Ordering::Relaxed) != 0 {
            self.connect_backoff_until.store(0, Ordering::Relaxed);
        }
        if status.is_server_error() {
            self.record_failure(Failure::Status5xx, threshold_5xx)
        } else {
            reset(&self.consecutive_5xx);
            None
        }
    }

    /// Counts a failure (and its metric); returns a report exactly when the count reaches
    /// `threshold` (0: off).
    pub fn record_failure(&self, failure: Failure, threshold: u32) -> Option<OutlierReport> {
        let counter = match failure {
            Failure::Status5xx => &self.consecutive_5xx,
            Failure::Connect => {
                self.metrics.connect_errors.increment(1);
                let until = millis_now() + CONNECT_BACKOFF.as_millis() as u64;
                self.connect_backoff_until.store(until, Ordering::Relaxed);
                &self.consecutive_failures
            }
            Failure::Timeout => {
                self.metrics.timeouts.increment(1);
                &self.consecutive_failures
            }
            Failure::Reset => &self.consecutive_failures,
        };
        // Relaxed: counters only; equality with the threshold makes exactly one caller report.
        let consecutive = counter.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        (threshold != 0 && consecutive == threshold).then(|| OutlierReport {
            backend: self.key(),
            failure,
            consecutive,
        })
    }

    /// The key the control plane knows this backend by.
    pub fn key(&self) -> BackendKey {
        BackendKey {
            pool: Arc::clone(&self.pool),
            serial: self.serial,
        }
    }

    /// Restarts the passive counters after an ejection decision. Control plane only.
    pub fn reset_failure_counts(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.consecutive_5xx.store(0, Ordering::Relaxed);
    }

    /// The control plane's last decision about this backend.
    pub fn status(&self) -> Arc<BackendStatus> {
        self.status.load_full()
    }

    /// Records a new decision. Control plane only.
    pub fn set_status(&self, status: BackendStatus) {
        self.status.store(Arc::new(status));
    }

    /// Whether `mark` is set.
    pub fn has(&self, mark: Mark) -> bool {
        self.exclusions() & mark as u8 != 0
    }

    /// Sets or clears a mark. Control plane only.
    pub fn mark(&self, mark: Mark, on: bool) {
        self.flip(mark as u8, on);
    }

    /// The state operators see, derived from the flags, the in-flight count and the sticky
    /// sessions still using a draining backend: an operator's drain first, then failed probes,
    /// a passive ejection, a ramp.
    pub fn state(&self) -> State {
        let flags = self.exclusions();
        let set = |bit: u8| flags & bit != 0;
        if set(Exclusion::Draining as u8) {
            if set(Mark::DrainCut as u8) || (self.in_flight() == 0 && !self.sessions_held()) {
                State::Drained
            } else {
                State::Draining
            }
        } else if set(Exclusion::Unhealthy as u8) {
            State::Unhealthy
        } else if set(Exclusion::Ejected as u8) {
            State::Ejected
        } else if set(Mark::SlowStart as u8) {
            State::SlowStart
        } else {
            State::Healthy
        }
    }

    /// Cancelled when this backend's remaining connections are to close (a drain deadline):
    /// connection tasks and tunnels started now listen to it.
    pub fn cut_signal(&self) -> CancellationToken {
        CancellationToken::clone(&self.cut.load())
    }

    /// Closes the connections and tunnels listening to `cut_signal`; later ones get a new
    /// signal. Control plane only.
    pub fn cut_connections(&self) {
        self.cut.swap(Arc::new(CancellationToken::new())).cancel();
    }
}

fn max_in_flight(config: &BackendConfig) -> u32 {
    config.max_in_flight.map_or(u32::MAX, |m| m.get())
}

/// Zeroes a counter, reading first so the common case (already zero) does not write a shared
/// cache line on every request.
fn reset(counter: &AtomicU32) {
    // Relaxed: counters only.
    if counter.load(Ordering::Relaxed) != 0 {
        counter.store(0, Ordering::Relaxed);
    }
}

impl Candidate for BackendState {
    fn weight(&self) -> u32 {
        self.effective_weight()
    }

    fn in_flight(&self) -> u32 {
        BackendState::in_flight(self)
    }

    fn latency(&self) -> &Latency {
        &self.latency
    }
}

/// Holds one in-flight request against a backend; dropping it ends the request.
#[derive(Debug)]
pub struct InFlightGuard {
    backend: Arc<BackendState>,
    /// The pool's queue, when it has one: a place has freed for its longest waiter.
    admission: Option<Arc<Admission>>,
}

impl InFlightGuard {
    /// The backend the request is in flight on.
    pub fn backend(&self) -> &Arc<BackendState> {
        &self.backend
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        // Relaxed: see `BackendState::in_flight`.
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(admission) = &self.admission {
            if admission.busy() {
                admission.wake_one();
            }
        }
    }
}

/// How long new requests avoid a backend after a connection to it failed.
pub const CONNECT_BACKOFF: Duration = Duration::from_millis(500);

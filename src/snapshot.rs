//! The immutable view of routes and pools that the data plane reads, rebuilt and swapped whole
//! by the control plane. Unchanged parts (the router, untouched pools) are shared by `Arc`.

use crate::balance::{Balancer, LeastLatency, median_estimate};
use crate::config::{Algorithm, Config, HashConfig, Limits, OutlierConfig, Timeouts};
use crate::metrics::PoolTraffic;
use crate::route::Router;
use crate::upstream::{BackendState, Exclusion, Mark, RetryBudget, nanos_now};
use std::sync::Arc;

/// Everything one request needs to be routed and balanced.
#[derive(Debug)]
pub struct Snapshot {
    /// Host and path to pool.
    pub router: Arc<Router>,
    /// Pools, indexed by `Route::pool`.
    pub pools: Vec<Arc<Pool>>,
    /// Timeouts in force: shared, as every client connection keeps the ones it started with.
    pub timeouts: Arc<Timeouts>,
    /// Request limits in force.
    pub limits: Limits,
    /// The certificates the listeners serve, for their expiry metric.
    pub certificates: Arc<[CertificateExpiry]>,
}

/// When one served certificate expires.
#[derive(Debug)]
pub struct CertificateExpiry {
    /// The listener serving it.
    pub listener: String,
    /// Its first host name.
    pub name: String,
    /// Unix time of its `notAfter`.
    pub expires: f64,
}

impl CertificateExpiry {
    /// Every certificate of every TLS listener in `config`.
    pub fn of(config: &Config) -> Arc<[Self]> {
        config
            .listeners
            .iter()
            .flat_map(|l| {
                l.tls
                    .iter()
                    .flat_map(move |tls| tls.certificates.iter().map(move |c| (l, c)))
            })
            .map(|(listener, certificate)| Self {
                listener: listener.name.clone(),
                name: certificate.label().to_owned(),
                expires: certificate
                    .not_after
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64()),
            })
            .collect()
    }
}

/// A pool's failure-handling settings, as the data plane needs them.
#[derive(Debug, Clone)]
pub struct PoolPolicy {
    /// How the pool balances.
    pub algorithm: Algorithm,
    /// What a hashing pool hashes requests by, and its load bound.
    pub hash: Option<Arc<HashConfig>>,
    /// How fast a least-latency pool's estimates give way.
    pub latency_decay: std::time::Duration,
    /// Sticky sessions, if the pool has them.
    pub sticky: Option<Arc<crate::upstream::sticky::Sticky>>,
    /// The queue in front of full backends, if the pool has one; shared by every snapshot of
    /// the pool while its settings stay the same.
    pub admission: Option<Arc<crate::upstream::admission::Admission>>,
    /// Further attempts after a retryable failure.
    pub retries: u32,
    /// Which failures of idempotent requests are retried.
    pub retry_on: crate::config::RetryOn,
    /// Passive ejection thresholds.
    pub outlier: OutlierConfig,
    /// Below this percentage of usable backends, ignore health (0: never).
    pub panic_threshold: u8,
    /// Shared by every snapshot of this pool.
    pub retry_budget: Arc<RetryBudget>,
    /// Request metrics per route and backend, shared by every snapshot of this pool.
    pub traffic: Arc<PoolTraffic>,
    /// How connections to the backends are made; kept across reloads that leave it unchanged.
    pub upstream: Arc<crate::upstream::pool::Upstream>,
}

/// Keys sampled to tell the share of a hashing pool's keys a rebuild moved.
pub const MOVED_SAMPLES: u32 = 65_536;

/// A pool of backends and the balancer built for its eligible ones.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: Arc<str>,
    /// Every backend, in config order.
    pub backends: Vec<Arc<BackendState>>,
    /// The backends the balancer chooses among.
    eligible: Vec<Arc<BackendState>>,
    /// For each eligible backend, its index in `backends`.
    eligible_index: Vec<usize>,
    balancer: Balancer,
    /// The exclusions a pick honours: all of them, or only drains in panic mode.
    mask: u8,
    /// Whether too few backends are usable and health is being ignored.
    pub panic: bool,
    /// A hashing pool's table entries per backend (index in `backends`).
    pub hash_entries: Option<Box<[u32]>>,
    /// Of `MOVED_SAMPLES` keys, those whose backend changed from the snapshot before.
    pub hash_moved: u32,
    /// Retry and ejection settings.
    pub policy: PoolPolicy,
}

impl Pool {
    /// Builds the pool from its backends' current exclusions and effective weights.
    pub fn build(name: Arc<str>, backends: Vec<Arc<BackendState>>, policy: PoolPolicy) -> Self {
        let usable = backends
            .iter()
            .filter(|b| b.exclusions() & Exclusion::ALL == 0)
            .count();
        let panic = policy.panic_threshold > 0
            && !backends.is_empty()
            && usable * 100 < usize::from(policy.panic_threshold) * backends.len();
        let mask = if panic {
            Exclusion::PANIC
        } else {
            Exclusion::ALL
        };
        let eligible_index: Vec<usize> = (0..backends.len())
            .filter(|&i| backends[i].exclusions() & mask == 0)
            .collect();
        let eligible: Vec<Arc<BackendState>> = eligible_index
            .iter()
            .map(|&i| Arc::clone(&backends[i]))
            .collect();
        let weights: Vec<u32> = eligible.iter().map(|b| b.effective_weight()).collect();
        let names: Vec<&str> = eligible.iter().map(|b| &*b.name).collect();
        let layout = policy.hash.as_ref().map(|h| h.layout).unwrap_or_default();
        let mut balancer = Balancer::new(policy.algorithm, layout, &names, &weights);
        if let Balancer::LeastLatency(picker) = &mut balancer {
            let decay = u64::try_from(policy.latency_decay.as_nanos()).unwrap_or(u64::MAX);
            *picker = LeastLatency::new(decay, median_estimate(&eligible, nanos_now(), decay));
        }
        let hash_entries = balancer.table().map(|table| {
            let mut counts = vec![0u32; backends.len()];
            for &entry in table.entries() {
                counts[eligible_index[entry as usize]] += 1;
            }
            counts.into_boxed_slice()
        });
        Self {
            balancer,
            hash_entries,
            hash_moved: 0,
            name,
            backends,
            eligible,
            eligible_index,
            mask,
            panic,
            policy,
        }
    }

    /// Counts, of `MOVED_SAMPLES` keys spread evenly over the hash space, those whose backend
    /// in this hashing pool's table differs from `before`'s (a pool that did not hash: all).
    pub fn count_moved(&mut self, before: &Pool) {
        let Some(table) = self.balancer.table() else {
            return;
        };
        let old = before.balancer.table();
        let step = u64::MAX / u64::from(MOVED_SAMPLES);
        let moved = (0..u64::from(MOVED_SAMPLES))
            .map(|n| n * step)
            .filter(|&key| {
                let now = table.owner(key).map(|i| &self.eligible[i as usize]);
                let was = old
                    .and_then(|old| old.owner(key))
                    .map(|i| &before.eligible[i as usize]);
                match (was, now) {
                    (Some(was), Some(now)) => !Arc::ptr_eq(was, now),
                    (None, None) => false,
                    _ => true,
                }
            })
            .count();
        self.hash_moved = u32::try_from(moved).unwrap_or(u32::MAX);
    }

    /// The backend named `name`, if it may take a request bound to it: as for a pick, except
    /// that a draining backend keeps its bound sessions until its deadline cuts it.
    pub fn bound(&self, name: &str) -> Option<(usize, &Arc<BackendState>)> {
        let mask = self.mask & !(Exclusion::Draining as u8);
        self.backends
            .iter()
            .enumerate()
            .find(|(_, b)| &*b.name == name)
            .filter(|(_, b)| b.accepts(mask) && !b.has(Mark::DrainCut) && !b.backing_off())
    }

    /// Whether a backend the balancer chooses among is in service but at its
    /// `max_in_flight`: a request that found none to take it may wait for a place.
    pub fn saturated(&self) -> bool {
        self.eligible
            .iter()
            .any(|b| b.exclusions() & self.mask == 0 && b.full())
    }

    /// How many more requests the backends in service could take now (capped at
    /// `u32::MAX`).
    pub fn room(&self) -> u32 {
        self.eligible
            .iter()
            .filter(|b| b.exclusions() & self.mask == 0)
            .fold(0u32, |room, b| room.saturating_add(b.room()))
    }

    /// The backend a keyed request belongs to, full or not (`accepts` less the limit), with
    /// its index in `backends`: the caller waits for it rather than spilling to another.
    pub fn pick_held(&self, key: u64) -> Option<(usize, &Arc<BackendState>)> {
        let open = |b: &Arc<BackendState>| b.exclusions() & self.mask == 0;
        self.pick_among(Some(key), 0, |b| open(b) && !b.backing_off())
            .or_else(|| self.pick_among(Some(key), 0, open))
            .map(|i| (self.eligible_index[i], &self.eligible[i]))
    }

    /// The backend named `name`, if it would take a request bound to it but for its
    /// `max_in_flight` (see `bound`).
    pub fn bound_but_full(&self, name: &str) -> Option<&Arc<BackendState>> {
        let mask = self.mask & !(Exclusion::Draining as u8);
        self.backends.iter().find(|b| {
            &*b.name == name && b.exclusions() & mask == 0 && !b.has(Mark::DrainCut) && b.full()
        })
    }

    /// How many backends the balancer chooses among.
    pub fn eligible_count(&self) -> usize {
        self.eligible.len()
    }

    /// Whether backend `index` (into `backends`) is among those the balancer chooses from.
    pub fn is_eligible(&self, index: usize) -> bool {
        self.eligible_index.contains(&index)
    }

    /// The backend for the next request, if any can take it, with its index in `backends`:
    /// by `key` (the request's key hashed) in a hashing pool. Backends whose connections just
    /// failed are passed over while another can take it.
    pub fn pick(&self, key: Option<u64>) -> Option<(usize, &Arc<BackendState>)> {
        // The clock is read for least-latency pools only.
        let now = match self.balancer {
            Balancer::LeastLatency(_) => nanos_now(),
            _ => 0,
        };
        self.pick_among(key, now, |b| b.accepts(self.mask) && !b.backing_off())
            .or_else(|| self.pick_among(key, now, |b| b.accepts(self.mask)))
            .map(|i| (self.eligible_index[i], &self.eligible[i]))
    }

    fn pick_among(
        &self,
        key: Option<u64>,
        now: u64,
        selectable: impl Fn(&Arc<BackendState>) -> bool,
    ) -> Option<usize> {
        match key {
            None => self.balancer.pick_at(now, &self.eligible, selectable),
            Some(key) => {
                let factor = self.policy.hash.as_ref().and_then(|h| h.balance_factor);
                self.balancer
                    .pick_keyed(key, factor, &self.eligible, selectable)
            }
        }
    }

    /// A backend for a retry: never one already tried, chosen by the balancer's retry rule
    /// (`Balancer::pick_other`). Backends backing off after a failed connect come last.
    pub fn pick_other(&self, tried: &[Arc<BackendState>]) -> Option<(usize, &Arc<BackendState>)> {
        let untried = |b: &Arc<BackendState>| {
            b.accepts(self.mask) && !tried.iter().any(|t| Arc::ptr_eq(t, b))
        };
        self.balancer
            .pick_other(&self.eligible, |b| untried(b) && !b.backing_off())
            .or_else(|| self.balancer.pick_other(&self.eligible, untried))
            .map(|i| (self.eligible_index[i], &self.eligible[i]))
    }
}

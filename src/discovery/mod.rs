//! Backend discovery: one task per pool with a `discovery` table follows its source (DNS, a
//! Redis registry) and sends the control plane each new set of backends. The tasks only read
//! and report; what a new set does to the pool (keep, add, drain then remove) is the control
//! plane's decision.

mod dns;
pub mod registry;

use crate::config::{BackendConfig, DiscoveryConfig, DiscoverySource};
use crate::metrics::{self, Metrics};
use ::metrics::{Counter, Gauge};
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A pool's backends as its source names them now.
#[derive(Debug)]
pub struct Discovered {
    /// The pool.
    pub pool: Arc<str>,
    /// Which task of the pool found them: a restarted task's predecessor may still report.
    pub epoch: u64,
    /// The backends, each named by its address.
    pub backends: Vec<BackendConfig>,
}

/// Starts following `config` for `pool`; the task ends when `stop` is cancelled.
pub fn spawn(
    pool: Arc<str>,
    epoch: u64,
    config: &DiscoveryConfig,
    sink: UnboundedSender<Discovered>,
    metrics: &Metrics,
    tasks: &TaskTracker,
    stop: CancellationToken,
) {
    let reporter = Reporter {
        errors: metrics.counter(metrics::DISCOVERY_ERRORS, &[("pool", &pool)]),
        size: metrics.gauge(metrics::DISCOVERED_BACKENDS, &[("pool", &pool)]),
        pool,
        epoch,
        sink,
        last: None,
        failing: false,
    };
    let refresh = config.refresh;
    // The task's handle is not kept: `stop` ends it, and the tracker waits for it at shutdown.
    match config.source.clone() {
        DiscoverySource::Dns {
            name,
            port,
            resolver,
        } => {
            let query = dns::Query::Addresses { name, port };
            tasks.spawn(dns::follow(query, resolver, refresh, reporter, stop));
        }
        DiscoverySource::DnsSrv { name, resolver } => {
            let query = dns::Query::Srv { name };
            tasks.spawn(dns::follow(query, resolver, refresh, reporter, stop));
        }
        DiscoverySource::Redis { url, service } => {
            tasks.spawn(registry::follow(url, service, refresh, reporter, stop));
        }
    }
}

/// Sends a pool's sets to the control plane when they change; counts and logs failures, once
/// per outage.
#[derive(Debug)]
struct Reporter {
    pool: Arc<str>,
    epoch: u64,
    sink: UnboundedSender<Discovered>,
    /// The last set sent (sorted), to send only changes.
    last: Option<Vec<BackendConfig>>,
    failing: bool,
    errors: Counter,
    size: Gauge,
}

impl Reporter {
    /// The source named these backends (any order).
    fn found(&mut self, mut backends: Vec<BackendConfig>) {
        if std::mem::take(&mut self.failing) {
            tracing::info!(pool = %self.pool, backends = backends.len(), "discovery recovered");
        }
        backends.sort_by(|a, b| a.name.cmp(&b.name));
        backends.dedup_by(|a, b| a.name == b.name);
        if self.last.as_ref() == Some(&backends) {
            return;
        }
        self.size.set(backends.len() as f64);
        self.last = Some(backends.clone());
        // The control plane gone means the proxy is stopping.
        let _closed = self.sink.send(Discovered {
            pool: Arc::clone(&self.pool),
            epoch: self.epoch,
            backends,
        });
    }

    /// The source could not be read: the last known set stays.
    fn failed(&mut self, error: &dyn std::fmt::Display) {
        self.errors.increment(1);
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(pool = %self.pool, %error, "discovery failed; keeping the last known backends");
        }
    }
}

/// A discovered backend: named by its address, with a weight clamped to the accepted range.
fn backend(address: &str, weight: u32) -> Option<BackendConfig> {
    let parsed: http::uri::Authority = address.parse().ok()?;
    parsed.port_u16().filter(|port| *port != 0)?;
    let weight = weight.clamp(1, BackendConfig::MAX_WEIGHT);
    Some(BackendConfig {
        name: address.to_owned(),
        address: parsed,
        weight: NonZeroU32::new(weight)?,
        max_in_flight: None,
        max_connections: None,
    })
}

//! The reload metrics, registered (at zero) when the reloader starts.

use crate::events::ReloadResult;
use crate::metrics::{self, Metrics};
use std::time::SystemTime;

/// The reload metrics.
#[derive(Debug)]
pub(super) struct ReloadMetrics {
    pub applied: ::metrics::Counter,
    pub rejected: ::metrics::Counter,
    generation: ::metrics::Gauge,
    last_success: ::metrics::Gauge,
    /// File changes the watcher did not reload (nothing new in them).
    pub watch_skipped: ::metrics::Counter,
}

impl ReloadMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        let this = Self {
            applied: metrics.counter(
                metrics::RELOADS,
                &[("result", ReloadResult::Applied.as_str())],
            ),
            rejected: metrics.counter(
                metrics::RELOADS,
                &[("result", ReloadResult::Rejected.as_str())],
            ),
            generation: metrics.gauge(metrics::CONFIG_GENERATION, &[]),
            last_success: metrics.gauge(metrics::LAST_RELOAD_SUCCESS, &[]),
            watch_skipped: metrics.counter(metrics::CONFIG_WATCH_SKIPPED, &[]),
        };
        this.succeeded(1);
        this
    }

    /// Records generation `generation` loaded now.
    pub fn succeeded(&self, generation: u64) {
        self.generation.set(generation as f64);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_success.set(now.as_secs_f64());
    }
}
